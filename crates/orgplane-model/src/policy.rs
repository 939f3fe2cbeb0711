//! Who may do what: the policy table and the checks `apply` and the node share.
//!
//! The table has two halves: [`crate::Op::access`] for every write and
//! [`QueryKind::access`] for every read. An [`Access`] is checked against the state by
//! [`authorize_access`] (and [`authorize`] for the common org-permission case), which the node
//! calls before proposing or reading, and which `apply` calls again, so the rule holds
//! whatever a node proposes.
//!
//! Rules, in the order they are checked:
//! 1. The system and platform admins pass every org check ([`crate::Actor::is_privileged`]).
//! 2. A user who is not a member of the org gets the org's NotFound, word for word what a
//!    missing org answers, whatever they asked: nobody learns that an org they are not in
//!    exists (the node's NotFound wording is the same for both, too).
//! 3. A member whose role lacks the permission gets PermissionDenied naming it.
//! 4. Granting: a role can only be given (to a member, an invitation) or defined (a custom
//!    role's permissions) by an actor holding every permission of it, and a member can only be
//!    changed or removed by an actor holding every permission of the member's current role.
//!    So nobody grants what they do not hold, and nobody acts on someone more privileged.
//!    Platform admins and the system are exempt.
//! 5. Invariants no actor is exempt from (checked in `apply`): the last Admin of an org cannot
//!    be removed or demoted; a role in use cannot be deleted; built-in role names cannot be
//!    taken.

use crate::actor::Actor;
use crate::error::DomainError;
use crate::id::OrgId;
use crate::permission::{Permission, PermissionSet};
use crate::role::Role;
use crate::state::{get_custom_role, get_member, QueryError, StateRead, StorageFault};

/// What an operation needs from its actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Creating an org: only a platform admin (or the system). Everyone else gets
    /// PermissionDenied; there is no org yet whose existence could leak.
    ProvisionOrg,
    /// Platform admins only, for an existing org (deleting it) or the whole region (listing
    /// every org). A member is told which right is missing; a non-member gets NotFound.
    PlatformAdmin,
    /// A member of the org whose role holds the permission.
    Permission(Permission),
    /// Any user with a verified email: accepting the invitation addressed to it.
    Invitee,
}

/// Every read, for the read half of the policy table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryKind {
    /// Every org of the region (the operators' view).
    ListOrgs,
    GetOrg,
    ListMembers,
    /// The org's custom roles (the built-in ones are the same everywhere).
    ListRoles,
    GetRole,
    ListInvitations,
    GetIntegration,
    ListIntegrations,
    GetPhoneNumber,
    ListPhoneNumbers,
    ListAuditEvents,
    GetApp,
    ListApps,
    /// Reading an app to export it as an archive.
    ExportApp,
}

impl QueryKind {
    pub const ALL: [QueryKind; 14] = [
        QueryKind::ListOrgs,
        QueryKind::GetOrg,
        QueryKind::ListMembers,
        QueryKind::ListRoles,
        QueryKind::GetRole,
        QueryKind::ListInvitations,
        QueryKind::GetIntegration,
        QueryKind::ListIntegrations,
        QueryKind::GetPhoneNumber,
        QueryKind::ListPhoneNumbers,
        QueryKind::ListAuditEvents,
        QueryKind::GetApp,
        QueryKind::ListApps,
        QueryKind::ExportApp,
    ];

    /// Who may ask it. "The orgs of a user" is not here: it is about a user, not an org
    /// ([`authorize_user_orgs`]).
    pub fn access(self) -> Access {
        use Permission as P;
        match self {
            QueryKind::ListOrgs => Access::PlatformAdmin,
            QueryKind::GetOrg => Access::Permission(P::OrgRead),
            QueryKind::ListMembers | QueryKind::ListRoles | QueryKind::GetRole => Access::Permission(P::MembersRead),
            QueryKind::ListInvitations => Access::Permission(P::InvitationsManage),
            QueryKind::GetIntegration
            | QueryKind::ListIntegrations
            | QueryKind::GetPhoneNumber
            | QueryKind::ListPhoneNumbers => Access::Permission(P::ResourcesRead),
            QueryKind::ListAuditEvents => Access::Permission(P::AuditRead),
            QueryKind::GetApp | QueryKind::ListApps => Access::Permission(P::AppsRead),
            QueryKind::ExportApp => Access::Permission(P::AppsTransfer),
        }
    }

    /// A short stable name, for refusals.
    pub fn name(self) -> &'static str {
        match self {
            QueryKind::ListOrgs => "list_orgs",
            QueryKind::GetOrg => "get_org",
            QueryKind::ListMembers => "list_members",
            QueryKind::ListRoles => "list_roles",
            QueryKind::GetRole => "get_role",
            QueryKind::ListInvitations => "list_invitations",
            QueryKind::GetIntegration => "get_integration",
            QueryKind::ListIntegrations => "list_integrations",
            QueryKind::GetPhoneNumber => "get_phone_number",
            QueryKind::ListPhoneNumbers => "list_phone_numbers",
            QueryKind::ListAuditEvents => "list_audit_events",
            QueryKind::GetApp => "get_app",
            QueryKind::ListApps => "list_apps",
            QueryKind::ExportApp => "export_app",
        }
    }
}

/// What an authorized actor may grant: everything, or the permissions it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    /// The system or a platform admin.
    Unlimited,
    /// A member, holding these permissions in the org.
    Holds(PermissionSet),
}

impl Authority {
    /// Ok if every permission of `wanted` may be granted; otherwise PermissionDenied naming
    /// the first one missing, for `action` (`granting role admin`).
    pub fn may_grant(self, wanted: PermissionSet, action: &str) -> Result<(), DomainError> {
        match self {
            Authority::Unlimited => Ok(()),
            Authority::Holds(held) => match wanted.first_missing_from(held) {
                None => Ok(()),
                Some(missing) => Err(DomainError::permission_denied(missing, action)),
            },
        }
    }
}

/// The permissions a role allows in `org`: the built-in table, or the custom role's record.
/// `None` for a custom role the org does not define.
pub fn role_permissions(
    state: &impl StateRead,
    org: &OrgId,
    role: &Role,
) -> Result<Option<PermissionSet>, StorageFault> {
    match role {
        Role::Custom(name) => Ok(get_custom_role(state, org, name)?.map(|r| r.permissions)),
        builtin => Ok(builtin.builtin_permissions()),
    }
}

/// The permissions `user` holds in `org`; `None` when they are not a member. A member whose
/// custom role has vanished (which `apply` never allows) holds nothing rather than failing.
pub fn member_permissions(
    state: &impl StateRead,
    org: &OrgId,
    user: &str,
) -> Result<Option<PermissionSet>, StorageFault> {
    let Some(member) = get_member(state, org, user)? else { return Ok(None) };
    Ok(Some(role_permissions(state, org, &member.role)?.unwrap_or_default()))
}

/// Whether `actor` may use `permission` in `org`: the check for every org-scoped read and
/// write. A non-member gets exactly the NotFound of a missing org.
pub fn authorize(state: &impl StateRead, actor: &Actor, org: &OrgId, permission: Permission) -> Result<(), QueryError> {
    authority(state, actor, Some(org), Access::Permission(permission), "this request").map(|_| ())
}

/// Whether `actor` may do something needing `access` about `org` (`None` for region-wide
/// reads: listing every org). `action` names the operation in refusals (an op's
/// [`crate::Op::kind`] or a [`QueryKind::name`]).
pub fn authorize_access(
    state: &impl StateRead,
    actor: &Actor,
    org: Option<&OrgId>,
    access: Access,
    action: &str,
) -> Result<(), QueryError> {
    authority(state, actor, org, access, action).map(|_| ())
}

/// Whether `actor` may ask the read `kind` about `org` (`None` only for
/// [`QueryKind::ListOrgs`]): the node's check before every read.
pub fn authorize_query(
    state: &impl StateRead,
    actor: &Actor,
    org: Option<&OrgId>,
    kind: QueryKind,
) -> Result<(), QueryError> {
    authority(state, actor, org, kind.access(), kind.name()).map(|_| ())
}

/// Whether `actor` may issue `op`, as far as can be told before proposing it: the node's
/// early check. `apply` checks it again along with the grant rules, which depend on the
/// op's details.
pub fn authorize_op(state: &impl StateRead, actor: &Actor, op: &crate::Op) -> Result<(), QueryError> {
    if let crate::Op::Relocate { .. } = op {
        // A move step is about where the org is, so it skips the placement check; it needs a
        // platform admin whatever this region holds of the org.
        return authority(state, actor, None, Access::ProvisionOrg, op.kind()).map(|_| ());
    }
    authority(state, actor, Some(op.org_id()), op.access(), op.kind()).map(|_| ())
}

/// Whether `actor` may list the orgs of `user_id`: users their own, platform admins anyone's.
pub fn authorize_user_orgs(actor: &Actor, user_id: &str) -> Result<(), DomainError> {
    if actor.is_privileged() || actor.subject() == Some(user_id) {
        Ok(())
    } else {
        Err(DomainError::permission_denied("platform_admin", "listing another user's orgs"))
    }
}

/// The check behind all of the above, answering what the actor may grant.
pub(crate) fn authority(
    state: &impl StateRead,
    actor: &Actor,
    org: Option<&OrgId>,
    access: Access,
    action: &str,
) -> Result<Authority, QueryError> {
    if let Some(org) = org {
        crate::state::check_served_here(state, org)?;
    }
    let user = match actor {
        Actor::System => return Ok(Authority::Unlimited),
        Actor::User(user) => user,
    };
    match access {
        Access::Invitee => {
            if user.verified_email.is_none() {
                return Err(DomainError::failed_precondition(
                    "accepting an invitation needs a token with a verified email",
                )
                .into());
            }
            // What the invitee may do is the invitation's business, checked by `apply`.
            Ok(Authority::Holds(PermissionSet::empty()))
        }
        _ if user.platform_admin => Ok(Authority::Unlimited),
        Access::ProvisionOrg => Err(DomainError::permission_denied("platform_admin", action).into()),
        Access::PlatformAdmin => match org {
            Some(org) if get_member(state, org, &user.subject)?.is_none() => {
                Err(DomainError::org_not_found(org).into())
            }
            _ => Err(DomainError::permission_denied("platform_admin", action).into()),
        },
        Access::Permission(permission) => {
            let Some(org) = org else {
                return Err(DomainError::permission_denied("platform_admin", action).into());
            };
            let Some(held) = member_permissions(state, org, &user.subject)? else {
                return Err(DomainError::org_not_found(org).into());
            };
            if held.contains(permission) {
                Ok(Authority::Holds(held))
            } else {
                Err(DomainError::permission_denied(permission, action).into())
            }
        }
    }
}
