//! Commands: what a write asks for, who asks, and what it answers. A command is proposed to
//! Raft as part of a batch and applied by [`crate::state::apply`] on every replica, so it
//! carries every value that must be the same everywhere (the new org's id, the time, the
//! actor).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::actor::Actor;
use crate::app::{App, AppId, ResourceKind};
use crate::error::DomainError;
use crate::id::OrgId;
use crate::invitation::Invitation;
use crate::org::{Member, Org};
use crate::permission::{Permission, PermissionSet};
use crate::policy::Access;
use crate::region::Region;
use crate::relocation::MoveState;
use crate::relocation::MoveStep;
use crate::resource::{ConfigEntry, IntegrationView, PhoneNumber};
use crate::role::{CustomRole, Role};

/// One write, as replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The caller's idempotency key. A second command with the same id (from the same actor,
    /// about the same org) answers the first one's result and changes nothing. Never empty:
    /// the node makes one when the caller gave none, so the node's own retries stay safe too.
    pub request_id: String,
    /// Wall-clock time chosen by the node that accepted the request, in ms since the epoch.
    /// Used for timestamps, expiry (request ids, invitations) and the audit log, identically on
    /// every replica.
    pub issued_at_ms: u64,
    /// Who issued it, as the accepting node authenticated them. `apply` authorizes the command
    /// against the state with it; the router's word is never taken.
    pub actor: Actor,
    pub op: Op,
}

/// What a command does. Names given here (roles, integrations, emails, numbers) are
/// validated again by `apply`, so a command that skipped the node's checks still cannot store
/// malformed data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Create an org. The id was chosen by the accepting node and names this region.
    CreateOrg {
        id: OrgId,
        name: String,
    },
    /// Rename an org and/or replace its residency policy (the other regions whose apps may be
    /// imported); `None` keeps that part. With `expected_version`, refused unless it is the
    /// org's current version. (A plain string `name` of older entries reads as `Some`.)
    UpdateOrg {
        id: OrgId,
        name: Option<String>,
        #[serde(default)]
        allowed_import_regions: Option<BTreeSet<Region>>,
        expected_version: Option<u64>,
    },
    /// Delete an org with its members, roles, invitations and resources. Its audit log stays
    /// (see [`crate::audit`]).
    DeleteOrg {
        id: OrgId,
        expected_version: Option<u64>,
    },
    /// Add a user to an org with a role.
    AddMember {
        org_id: OrgId,
        user_id: String,
        role: Role,
    },
    /// Change a member's role.
    SetMemberRole {
        org_id: OrgId,
        user_id: String,
        role: Role,
    },
    /// Remove a member from an org.
    RemoveMember {
        org_id: OrgId,
        user_id: String,
    },
    /// Define a custom role.
    CreateRole {
        org_id: OrgId,
        name: String,
        permissions: PermissionSet,
    },
    /// Replace a custom role's permissions; every holder's permissions change with it.
    UpdateRole {
        org_id: OrgId,
        name: String,
        permissions: PermissionSet,
        expected_version: Option<u64>,
    },
    /// Delete a custom role that no member holds and no pending invitation offers.
    DeleteRole {
        org_id: OrgId,
        name: String,
    },
    /// Invite an email address with a role; expires at `expires_at_ms`, or 7 days after the
    /// command was issued.
    CreateInvitation {
        org_id: OrgId,
        email: String,
        role: Role,
        expires_at_ms: Option<u64>,
    },
    /// Revoke the pending invitation of an email address.
    RevokeInvitation {
        org_id: OrgId,
        email: String,
    },
    /// Accept the invitation addressed to the actor's verified email: the actor becomes a
    /// member with its role.
    AcceptInvitation {
        org_id: OrgId,
    },
    /// Create an integration; `name` is unique in the org.
    CreateIntegration {
        org_id: OrgId,
        name: String,
        kind: String,
        config: Vec<ConfigEntry>,
    },
    /// Change an integration's configuration: `set` keys are written (a key may move between
    /// plain and secret), `remove` keys dropped. Keys not named keep their values, so secrets
    /// need not be sent again.
    UpdateIntegration {
        org_id: OrgId,
        name: String,
        set: Vec<ConfigEntry>,
        remove: Vec<String>,
        expected_version: Option<u64>,
    },
    DeleteIntegration {
        org_id: OrgId,
        name: String,
    },
    /// Add a phone number (E.164) to the org.
    CreatePhoneNumber {
        org_id: OrgId,
        number: String,
        label: String,
    },
    /// Change a phone number's label.
    UpdatePhoneNumber {
        org_id: OrgId,
        number: String,
        label: String,
        expected_version: Option<u64>,
    },
    DeletePhoneNumber {
        org_id: OrgId,
        number: String,
    },
    /// Create an app with unbound slots. The id was chosen by the accepting node.
    CreateApp {
        org_id: OrgId,
        app_id: AppId,
        name: String,
        definition: String,
        #[serde(with = "crate::app::assets_base64")]
        assets: BTreeMap<String, Vec<u8>>,
        slots: BTreeMap<String, ResourceKind>,
    },
    /// Change an app; `None` keeps that part. New `slots` replace the old: a slot that keeps
    /// its name and kind keeps its binding, a removed or retyped slot drops it.
    UpdateApp {
        org_id: OrgId,
        app_id: AppId,
        name: Option<String>,
        definition: Option<String>,
        slots: Option<BTreeMap<String, ResourceKind>>,
        expected_version: Option<u64>,
    },
    DeleteApp {
        org_id: OrgId,
        app_id: AppId,
        expected_version: Option<u64>,
    },
    /// Bind a slot to a resource of the app's own org (an integration name or a phone number)
    /// of the slot's kind.
    BindAppSlot {
        org_id: OrgId,
        app_id: AppId,
        slot: String,
        resource_id: String,
    },
    UnbindAppSlot {
        org_id: OrgId,
        app_id: AppId,
        slot: String,
    },
    /// Publish the app's current version: refused unless every slot is bound to a resource
    /// that exists.
    PublishApp {
        org_id: OrgId,
        app_id: AppId,
        expected_version: Option<u64>,
    },
    /// Create an app from an export of another (or the same) org, every slot unbound. Refused
    /// unless the org's residency policy allows `source_region`.
    ImportApp {
        org_id: OrgId,
        app_id: AppId,
        name: String,
        definition: String,
        #[serde(with = "crate::app::assets_base64")]
        assets: BTreeMap<String, Vec<u8>>,
        slots: BTreeMap<String, ResourceKind>,
        source_org_id: String,
        source_region: Region,
    },
    /// One step of moving the org between regions (platform admins only; see
    /// [`crate::relocation`]). Applied outside the usual request-id and audit bookkeeping:
    /// every step is idempotent by itself, and a source that let go of the org keeps nothing
    /// of it but the forwarding record.
    Relocate {
        org_id: OrgId,
        step: MoveStep,
    },
}

impl Op {
    /// A short stable name of the kind of operation: stored with a request id so that reusing
    /// an id for a different kind of request is caught, and the `action` of its audit event.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::CreateOrg { .. } => "create_org",
            Op::UpdateOrg { .. } => "update_org",
            Op::DeleteOrg { .. } => "delete_org",
            Op::AddMember { .. } => "add_member",
            Op::SetMemberRole { .. } => "set_member_role",
            Op::RemoveMember { .. } => "remove_member",
            Op::CreateRole { .. } => "create_role",
            Op::UpdateRole { .. } => "update_role",
            Op::DeleteRole { .. } => "delete_role",
            Op::CreateInvitation { .. } => "create_invitation",
            Op::RevokeInvitation { .. } => "revoke_invitation",
            Op::AcceptInvitation { .. } => "accept_invitation",
            Op::CreateIntegration { .. } => "create_integration",
            Op::UpdateIntegration { .. } => "update_integration",
            Op::DeleteIntegration { .. } => "delete_integration",
            Op::CreatePhoneNumber { .. } => "create_phone_number",
            Op::UpdatePhoneNumber { .. } => "update_phone_number",
            Op::DeletePhoneNumber { .. } => "delete_phone_number",
            Op::CreateApp { .. } => "create_app",
            Op::UpdateApp { .. } => "update_app",
            Op::DeleteApp { .. } => "delete_app",
            Op::BindAppSlot { .. } => "bind_app_slot",
            Op::UnbindAppSlot { .. } => "unbind_app_slot",
            Op::PublishApp { .. } => "publish_app",
            Op::ImportApp { .. } => "import_app",
            Op::Relocate { .. } => "relocate_org",
        }
    }

    /// The org the command is about.
    pub fn org_id(&self) -> &OrgId {
        match self {
            Op::CreateOrg { id, .. } | Op::UpdateOrg { id, .. } | Op::DeleteOrg { id, .. } => id,
            Op::AddMember { org_id, .. }
            | Op::SetMemberRole { org_id, .. }
            | Op::RemoveMember { org_id, .. }
            | Op::CreateRole { org_id, .. }
            | Op::UpdateRole { org_id, .. }
            | Op::DeleteRole { org_id, .. }
            | Op::CreateInvitation { org_id, .. }
            | Op::RevokeInvitation { org_id, .. }
            | Op::AcceptInvitation { org_id }
            | Op::CreateIntegration { org_id, .. }
            | Op::UpdateIntegration { org_id, .. }
            | Op::DeleteIntegration { org_id, .. }
            | Op::CreatePhoneNumber { org_id, .. }
            | Op::UpdatePhoneNumber { org_id, .. }
            | Op::DeletePhoneNumber { org_id, .. }
            | Op::CreateApp { org_id, .. }
            | Op::UpdateApp { org_id, .. }
            | Op::DeleteApp { org_id, .. }
            | Op::BindAppSlot { org_id, .. }
            | Op::UnbindAppSlot { org_id, .. }
            | Op::PublishApp { org_id, .. }
            | Op::ImportApp { org_id, .. }
            | Op::Relocate { org_id, .. } => org_id,
        }
    }

    /// Who may issue it: the write half of the policy table (the read half is
    /// [`crate::policy::QueryKind::access`]). Some ops check more in `apply` (granting a
    /// role needs its permissions too; see [`crate::policy`]).
    pub fn access(&self) -> Access {
        use Permission as P;
        match self {
            Op::CreateOrg { .. } => Access::ProvisionOrg,
            Op::DeleteOrg { .. } | Op::Relocate { .. } => Access::PlatformAdmin,
            Op::UpdateOrg { .. } => Access::Permission(P::OrgUpdate),
            Op::AddMember { .. } | Op::SetMemberRole { .. } | Op::RemoveMember { .. } => {
                Access::Permission(P::MembersManage)
            }
            Op::CreateRole { .. } | Op::UpdateRole { .. } | Op::DeleteRole { .. } => Access::Permission(P::RolesManage),
            Op::CreateInvitation { .. } | Op::RevokeInvitation { .. } => Access::Permission(P::InvitationsManage),
            Op::AcceptInvitation { .. } => Access::Invitee,
            Op::CreateIntegration { .. }
            | Op::UpdateIntegration { .. }
            | Op::DeleteIntegration { .. }
            | Op::CreatePhoneNumber { .. }
            | Op::UpdatePhoneNumber { .. }
            | Op::DeletePhoneNumber { .. } => Access::Permission(P::ResourcesIntegrate),
            Op::CreateApp { .. }
            | Op::UpdateApp { .. }
            | Op::DeleteApp { .. }
            | Op::BindAppSlot { .. }
            | Op::UnbindAppSlot { .. } => Access::Permission(P::AppsBuild),
            Op::PublishApp { .. } => Access::Permission(P::AppsPublish),
            Op::ImportApp { .. } => Access::Permission(P::AppsTransfer),
        }
    }
}

/// What a successful command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandOutcome {
    /// The org as it is after the command.
    Org(Org),
    /// The membership as it is after the command (also the answer to accepting an invitation).
    Member(Member),
    /// The org is gone; `removed_members` memberships went with it.
    OrgDeleted {
        removed_members: u64,
    },
    /// The membership is gone.
    MemberRemoved,
    /// The custom role as it is after the command.
    Role(CustomRole),
    RoleDeleted,
    /// The invitation as it is after the command (created or revoked).
    Invitation(Invitation),
    /// The integration after the command, secrets redacted: outcomes are remembered for
    /// retries and returned to callers, so they never hold secrets.
    Integration(IntegrationView),
    IntegrationDeleted,
    PhoneNumber(PhoneNumber),
    PhoneNumberDeleted,
    /// The app as it is after the command (created, changed, bound, published or imported),
    /// without its definition and assets ([`App::summary`]).
    App(App),
    AppDeleted,
    /// A move step's side as it is after the step.
    Move(MoveState),
}

/// The replicated answer to a command: an outcome or a deterministic refusal.
pub type CommandResult = Result<CommandOutcome, DomainError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Raft entries written before apps existed still read: `UpdateOrg`'s name was a plain
    /// string and it had no residency field.
    #[test]
    fn an_update_org_entry_of_the_previous_shape_reads() {
        let id = OrgId::from_u128(Region::Eu, 7);
        let old = format!(r#"{{"UpdateOrg":{{"id":"{id}","name":"Acme 2","expected_version":3}}}}"#);
        let op: Op = serde_json::from_str(&old).unwrap();
        assert_eq!(
            op,
            Op::UpdateOrg { id, name: Some("Acme 2".into()), allowed_import_regions: None, expected_version: Some(3) }
        );
    }

    #[test]
    fn commands_carry_assets_as_base64() {
        let op = Op::CreateApp {
            org_id: OrgId::from_u128(Region::Eu, 7),
            app_id: AppId::from_u128(1),
            name: "a".into(),
            definition: "{}".into(),
            assets: BTreeMap::from([("icon.png".to_string(), vec![0, 1, 2, 255])]),
            slots: BTreeMap::new(),
        };
        let json = serde_json::to_string(&op).unwrap();
        assert!(json.contains("AAEC/w=="), "{json}");
        assert_eq!(serde_json::from_str::<Op>(&json).unwrap(), op);
    }
}
