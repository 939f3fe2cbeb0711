//! The access matrix (issues #4 and #5): every RPC of OrgService, AccessService and AppService,
//! called through an
//! authenticating router by every kind of caller (a platform admin, each built-in role, a
//! custom role, a member of another org, no token, a token signed by another key), about
//! every kind of target (the callers' org A, another org B, a well-formed id of a missing
//! org). Each cell's expected code is computed from the model's policy table
//! ([`Op::access`], [`QueryKind::access`], the built-in role table and the custom role's set),
//! never written by hand, and compared with what the router answers.
//!
//! Requests are valid for their fixture (fresh names per cell, fixtures made beforehand by the
//! platform admin), so "allowed" means OK, or a domain code the row documents: deleting an
//! org is asked with a stale `expected_version` (ABORTED), so org A and B survive, and
//! accepting an invitation needs a verified email, which no token here carries
//! (FAILED_PRECONDITION for everyone authenticated); a platform admin reading the audit log of
//! a missing org gets an empty log, as a deleted org's log stays readable to them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use futures::future::join_all;
use orgplane_auth::DevKey;
use orgplane_client::{AppSpec, Client, ClientOptions};
use orgplane_model::{
    Access, AppId, ConfigEntry, Op, OrgId, Permission, PermissionSet, QueryKind, Region, ResourceKind, Role,
};
use orgplane_node::NodeConfig;
use orgplane_proto::v1;
use orgplane_proto::v1::access_service_client::AccessServiceClient;
use orgplane_proto::v1::app_service_client::AppServiceClient;
use orgplane_proto::v1::org_service_client::OrgServiceClient;
use orgplane_router::RouterConfig;
use orgplane_tests::{test_timings, TestRegion, WAIT};
use prost::Message;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// The custom role of org A: reads the org and its resources, nothing else.
const CUSTOM_ROLE: &str = "support";
const CUSTOM_PERMISSIONS: [Permission; 2] = [Permission::OrgRead, Permission::ResourcesRead];
/// A user that is none of the callers, for "the orgs of another user".
const STRANGER: &str = "zed";

/// The key nodes and the router verify with; users' tokens are signed with it.
fn key() -> &'static DevKey {
    static KEY: OnceLock<(tempfile::TempDir, DevKey)> = OnceLock::new();
    &KEY.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = orgplane_auth::dev_key::ensure(dir.path()).expect("the dev key");
        (dir, key)
    })
    .1
}

/// Another dev key, same issuer and audience, that nobody trusts: the "bad token" caller's.
fn foreign_key() -> &'static DevKey {
    static KEY: OnceLock<(tempfile::TempDir, DevKey)> = OnceLock::new();
    &KEY.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = orgplane_auth::dev_key::ensure(dir.path()).expect("another dev key");
        (dir, key)
    })
    .1
}

fn authenticated(config: &mut NodeConfig) {
    test_timings(config);
    config.auth = Some(key().config().clone());
    config.allow_unauthenticated = false;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Service {
    Org,
    Access,
    App,
}

impl Service {
    fn full_name(self) -> &'static str {
        match self {
            Service::Org => "orgplane.v1.OrgService",
            Service::Access => "orgplane.v1.AccessService",
            Service::App => "orgplane.v1.AppService",
        }
    }
}

/// Every RPC of the three services; the Debug name is the proto method name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    CreateOrg,
    GetOrg,
    ListOrgs,
    UpdateOrg,
    DeleteOrg,
    AddMember,
    SetMemberRole,
    RemoveMember,
    ListMembers,
    ListUserOrgs,
    CreateRole,
    UpdateRole,
    DeleteRole,
    ListRoles,
    ListPermissions,
    CreateInvitation,
    ListInvitations,
    RevokeInvitation,
    AcceptInvitation,
    CreateIntegration,
    GetIntegration,
    ListIntegrations,
    UpdateIntegration,
    DeleteIntegration,
    CreatePhoneNumber,
    GetPhoneNumber,
    ListPhoneNumbers,
    UpdatePhoneNumber,
    DeletePhoneNumber,
    ListAuditEvents,
    CreateApp,
    GetApp,
    ListApps,
    UpdateApp,
    DeleteApp,
    BindAppSlot,
    UnbindAppSlot,
    PublishApp,
    ExportApp,
    ImportApp,
}

/// What an RPC is about, which decides the targets it is called with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// One org: called about A, B and a missing org.
    Org,
    /// The region (creating and listing orgs).
    Region,
    /// One user: called about the caller and about somebody else.
    User,
    /// Nothing: the same for every caller.
    Nothing,
}

/// The matrix's rows, in the order they run. DeleteOrg is last: were a deletion to go
/// through, it would break no later row.
const TABLE: [(Rpc, Service, Scope); 40] = [
    (Rpc::CreateOrg, Service::Org, Scope::Region),
    (Rpc::GetOrg, Service::Org, Scope::Org),
    (Rpc::ListOrgs, Service::Org, Scope::Region),
    (Rpc::UpdateOrg, Service::Org, Scope::Org),
    (Rpc::AddMember, Service::Org, Scope::Org),
    (Rpc::SetMemberRole, Service::Org, Scope::Org),
    (Rpc::RemoveMember, Service::Org, Scope::Org),
    (Rpc::ListMembers, Service::Org, Scope::Org),
    (Rpc::ListUserOrgs, Service::Org, Scope::User),
    (Rpc::CreateRole, Service::Access, Scope::Org),
    (Rpc::UpdateRole, Service::Access, Scope::Org),
    (Rpc::DeleteRole, Service::Access, Scope::Org),
    (Rpc::ListRoles, Service::Access, Scope::Org),
    (Rpc::ListPermissions, Service::Access, Scope::Nothing),
    (Rpc::CreateInvitation, Service::Access, Scope::Org),
    (Rpc::ListInvitations, Service::Access, Scope::Org),
    (Rpc::RevokeInvitation, Service::Access, Scope::Org),
    (Rpc::AcceptInvitation, Service::Access, Scope::Org),
    (Rpc::CreateIntegration, Service::Access, Scope::Org),
    (Rpc::GetIntegration, Service::Access, Scope::Org),
    (Rpc::ListIntegrations, Service::Access, Scope::Org),
    (Rpc::UpdateIntegration, Service::Access, Scope::Org),
    (Rpc::DeleteIntegration, Service::Access, Scope::Org),
    (Rpc::CreatePhoneNumber, Service::Access, Scope::Org),
    (Rpc::GetPhoneNumber, Service::Access, Scope::Org),
    (Rpc::ListPhoneNumbers, Service::Access, Scope::Org),
    (Rpc::UpdatePhoneNumber, Service::Access, Scope::Org),
    (Rpc::DeletePhoneNumber, Service::Access, Scope::Org),
    (Rpc::ListAuditEvents, Service::Access, Scope::Org),
    (Rpc::CreateApp, Service::App, Scope::Org),
    (Rpc::GetApp, Service::App, Scope::Org),
    (Rpc::ListApps, Service::App, Scope::Org),
    (Rpc::UpdateApp, Service::App, Scope::Org),
    (Rpc::DeleteApp, Service::App, Scope::Org),
    (Rpc::BindAppSlot, Service::App, Scope::Org),
    (Rpc::UnbindAppSlot, Service::App, Scope::Org),
    (Rpc::PublishApp, Service::App, Scope::Org),
    (Rpc::ExportApp, Service::App, Scope::Org),
    (Rpc::ImportApp, Service::App, Scope::Org),
    (Rpc::DeleteOrg, Service::Org, Scope::Org),
];

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    PlatformAdmin,
    Admin,
    Developer,
    Agent,
    Viewer,
    Custom,
    OtherOrgMember,
    NoToken,
    BadToken,
}

impl Caller {
    const ALL: [Caller; 9] = [
        Caller::PlatformAdmin,
        Caller::Admin,
        Caller::Developer,
        Caller::Agent,
        Caller::Viewer,
        Caller::Custom,
        Caller::OtherOrgMember,
        Caller::NoToken,
        Caller::BadToken,
    ];

    /// The token's subject (the bad token claims to be alice, A's Admin).
    fn subject(self) -> &'static str {
        match self {
            Caller::PlatformAdmin => "ops",
            Caller::Admin | Caller::BadToken | Caller::NoToken => "alice",
            Caller::Developer => "dave",
            Caller::Agent => "agnes",
            Caller::Viewer => "vera",
            Caller::Custom => "cus",
            Caller::OtherOrgMember => "bob",
        }
    }

    fn token(self) -> Option<String> {
        let ttl = Duration::from_secs(3600);
        match self {
            Caller::NoToken => None,
            Caller::BadToken => Some(foreign_key().token(self.subject(), true, None, ttl).expect("a foreign token")),
            _ => Some(key().token(self.subject(), self == Caller::PlatformAdmin, None, ttl).expect("a token")),
        }
    }

    /// The caller's role in org A and in org B, as the fixtures make them.
    fn roles(self) -> (Option<Role>, Option<Role>) {
        match self {
            Caller::Admin => (Some(Role::Admin), None),
            Caller::Developer => (Some(Role::Developer), None),
            Caller::Agent => (Some(Role::Agent), None),
            Caller::Viewer => (Some(Role::Viewer), None),
            Caller::Custom => (Some(Role::Custom(CUSTOM_ROLE.into())), None),
            Caller::OtherOrgMember => (None, Some(Role::Admin)),
            Caller::PlatformAdmin | Caller::NoToken | Caller::BadToken => (None, None),
        }
    }
}

/// What a cell is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The org the callers are members of.
    OrgA,
    /// Another org (only `bob` is a member).
    OrgB,
    /// A well-formed id no org has.
    Missing,
    Region,
    OwnUser,
    OtherUser,
    Nothing,
}

impl Scope {
    fn targets(self) -> &'static [Target] {
        match self {
            Scope::Org => &[Target::OrgA, Target::OrgB, Target::Missing],
            Scope::Region => &[Target::Region],
            Scope::User => &[Target::OwnUser, Target::OtherUser],
            Scope::Nothing => &[Target::Nothing],
        }
    }
}

/// The permissions a role allows: the built-in table, or the custom role of the fixtures.
fn permissions_of(role: &Role) -> PermissionSet {
    role.builtin_permissions().unwrap_or_else(|| CUSTOM_PERMISSIONS.into_iter().collect())
}

/// The policy table's entry for `rpc` about `org`: what the op (or the read) needs. `None` for
/// the two RPCs about no org (the orgs of a user, the permission catalog).
fn access(rpc: Rpc, org: &OrgId) -> Option<Access> {
    let id = org.clone();
    let org_id = org.clone();
    let s = String::new;
    let none = PermissionSet::empty();
    let op = match rpc {
        Rpc::ListUserOrgs | Rpc::ListPermissions => return None,
        Rpc::GetOrg => return Some(QueryKind::GetOrg.access()),
        Rpc::ListOrgs => return Some(QueryKind::ListOrgs.access()),
        Rpc::ListMembers => return Some(QueryKind::ListMembers.access()),
        Rpc::ListRoles => return Some(QueryKind::ListRoles.access()),
        Rpc::ListInvitations => return Some(QueryKind::ListInvitations.access()),
        Rpc::GetIntegration => return Some(QueryKind::GetIntegration.access()),
        Rpc::ListIntegrations => return Some(QueryKind::ListIntegrations.access()),
        Rpc::GetPhoneNumber => return Some(QueryKind::GetPhoneNumber.access()),
        Rpc::ListPhoneNumbers => return Some(QueryKind::ListPhoneNumbers.access()),
        Rpc::ListAuditEvents => return Some(QueryKind::ListAuditEvents.access()),
        Rpc::GetApp => return Some(QueryKind::GetApp.access()),
        Rpc::ListApps => return Some(QueryKind::ListApps.access()),
        Rpc::ExportApp => return Some(QueryKind::ExportApp.access()),
        Rpc::CreateOrg => Op::CreateOrg { id, name: s() },
        Rpc::UpdateOrg => Op::UpdateOrg { id, name: Some(s()), allowed_import_regions: None, expected_version: None },
        Rpc::DeleteOrg => Op::DeleteOrg { id, expected_version: None },
        Rpc::AddMember => Op::AddMember { org_id, user_id: s(), role: Role::Viewer },
        Rpc::SetMemberRole => Op::SetMemberRole { org_id, user_id: s(), role: Role::Viewer },
        Rpc::RemoveMember => Op::RemoveMember { org_id, user_id: s() },
        Rpc::CreateRole => Op::CreateRole { org_id, name: s(), permissions: none },
        Rpc::UpdateRole => Op::UpdateRole { org_id, name: s(), permissions: none, expected_version: None },
        Rpc::DeleteRole => Op::DeleteRole { org_id, name: s() },
        Rpc::CreateInvitation => Op::CreateInvitation { org_id, email: s(), role: Role::Viewer, expires_at_ms: None },
        Rpc::RevokeInvitation => Op::RevokeInvitation { org_id, email: s() },
        Rpc::AcceptInvitation => Op::AcceptInvitation { org_id },
        Rpc::CreateIntegration => Op::CreateIntegration { org_id, name: s(), kind: s(), config: Vec::new() },
        Rpc::UpdateIntegration => {
            Op::UpdateIntegration { org_id, name: s(), set: Vec::new(), remove: Vec::new(), expected_version: None }
        }
        Rpc::DeleteIntegration => Op::DeleteIntegration { org_id, name: s() },
        Rpc::CreatePhoneNumber => Op::CreatePhoneNumber { org_id, number: s(), label: s() },
        Rpc::UpdatePhoneNumber => Op::UpdatePhoneNumber { org_id, number: s(), label: s(), expected_version: None },
        Rpc::DeletePhoneNumber => Op::DeletePhoneNumber { org_id, number: s() },
        Rpc::CreateApp => Op::CreateApp {
            org_id,
            app_id: AppId::from_u128(1),
            name: s(),
            definition: s(),
            assets: Default::default(),
            slots: Default::default(),
        },
        Rpc::UpdateApp => Op::UpdateApp {
            org_id,
            app_id: AppId::from_u128(1),
            name: None,
            definition: None,
            slots: None,
            expected_version: None,
        },
        Rpc::DeleteApp => Op::DeleteApp { org_id, app_id: AppId::from_u128(1), expected_version: None },
        Rpc::BindAppSlot => Op::BindAppSlot { org_id, app_id: AppId::from_u128(1), slot: s(), resource_id: s() },
        Rpc::UnbindAppSlot => Op::UnbindAppSlot { org_id, app_id: AppId::from_u128(1), slot: s() },
        Rpc::PublishApp => Op::PublishApp { org_id, app_id: AppId::from_u128(1), expected_version: None },
        Rpc::ImportApp => Op::ImportApp {
            org_id,
            app_id: AppId::from_u128(1),
            name: s(),
            definition: s(),
            assets: Default::default(),
            slots: Default::default(),
            source_org_id: s(),
            source_region: Region::Eu,
        },
    };
    Some(op.access())
}

/// What a cell must answer: a code, and a text its message must contain.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    code: Code,
    needle: String,
}

impl Expected {
    fn new(code: Code, needle: impl Into<String>) -> Expected {
        Expected { code, needle: needle.into() }
    }

    fn ok() -> Expected {
        Expected::new(Code::Ok, "")
    }
}

/// The ids of the matrix's orgs.
struct Orgs {
    a: OrgId,
    b: OrgId,
    missing: OrgId,
}

impl Orgs {
    fn id(&self, target: Target) -> Option<&OrgId> {
        match target {
            Target::OrgA => Some(&self.a),
            Target::OrgB => Some(&self.b),
            Target::Missing => Some(&self.missing),
            _ => None,
        }
    }
}

/// The cell's expected answer, from the policy table and the fixtures' roles, in the order
/// `orgplane_model::policy` checks its rules.
fn expected(rpc: Rpc, caller: Caller, target: Target, orgs: &Orgs) -> Expected {
    if matches!(caller, Caller::NoToken | Caller::BadToken) {
        return Expected::new(Code::Unauthenticated, "");
    }
    let platform_admin = caller == Caller::PlatformAdmin;
    let actor = if platform_admin {
        orgplane_model::Actor::platform_admin(caller.subject())
    } else {
        orgplane_model::Actor::user(caller.subject())
    };
    match rpc {
        Rpc::ListPermissions => return Expected::ok(),
        Rpc::ListUserOrgs => {
            let user = if target == Target::OwnUser { caller.subject() } else { STRANGER };
            return match orgplane_model::authorize_user_orgs(&actor, user) {
                Ok(()) => Expected::ok(),
                Err(_) => Expected::new(Code::PermissionDenied, "platform_admin"),
            };
        }
        _ => {}
    }
    let org = orgs.id(target).unwrap_or(&orgs.missing);
    let access = access(rpc, org).expect("an org-scoped or region-scoped RPC");
    let role = match target {
        Target::OrgA => caller.roles().0,
        Target::OrgB => caller.roles().1,
        _ => None,
    };
    let org_exists = matches!(target, Target::OrgA | Target::OrgB);
    let not_found = Expected::new(Code::NotFound, org.to_string());
    // Allowed by the policy: OK, unless the row's request meets a documented domain refusal.
    let allowed = || match rpc {
        // A deleted org's log stays readable by platform admins (`state::list_audit_events`
        // does not require the org), so an org that is not there has an empty log.
        Rpc::ListAuditEvents if target == Target::Missing => Expected::ok(),
        _ if target == Target::Missing => not_found.clone(),
        Rpc::DeleteOrg => Expected::new(Code::Aborted, "version"),
        _ => Expected::ok(),
    };
    match access {
        Access::Invitee => Expected::new(Code::FailedPrecondition, "verified email"),
        _ if platform_admin => allowed(),
        Access::ProvisionOrg => Expected::new(Code::PermissionDenied, "platform_admin"),
        Access::PlatformAdmin if target == Target::Region => Expected::new(Code::PermissionDenied, "platform_admin"),
        Access::PlatformAdmin => match role {
            Some(_) => Expected::new(Code::PermissionDenied, "platform_admin"),
            None => not_found,
        },
        Access::Permission(permission) => match role {
            None => not_found,
            Some(role) if permissions_of(&role).contains(permission) && org_exists => allowed(),
            Some(_) => Expected::new(Code::PermissionDenied, permission.as_str()),
        },
    }
}

fn fresh() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn phone(n: u64) -> String {
    format!("+4930{n:08}")
}

/// The number of the phone every org of the matrix has, for gets.
const SHARED_PHONE: &str = "+4930999999";
const SHARED_INTEGRATION: &str = "shared";

/// The app of a cell's fixture: one slot for the shared integration's kind, unbound.
fn app_spec(n: u64) -> AppSpec {
    AppSpec {
        name: format!("app {n}"),
        definition: r#"{"steps":[]}"#.into(),
        slots: vec![("sms".into(), ResourceKind::Integration("twilio".into()))],
        assets: Vec::new(),
    }
}

/// Makes what cell `n` of `rpc` acts on in `org`, as the platform admin; returns the id of the
/// app it made, if any.
async fn prepare(ops: &Client, rpc: Rpc, org: &str, n: u64) -> Option<String> {
    if matches!(
        rpc,
        Rpc::GetApp | Rpc::UpdateApp | Rpc::DeleteApp | Rpc::BindAppSlot | Rpc::UnbindAppSlot | Rpc::ExportApp
    ) {
        let app = ops.create_app(org, &app_spec(n)).await;
        return Some(app.unwrap_or_else(|e| panic!("the app of {rpc:?} cell {n} in {org}: {e}")).id);
    }
    if rpc == Rpc::PublishApp {
        // No slots: publishable as soon as it exists.
        let app = ops.create_app(org, &AppSpec { slots: Vec::new(), ..app_spec(n) }).await;
        return Some(app.unwrap_or_else(|e| panic!("the app of {rpc:?} cell {n} in {org}: {e}")).id);
    }
    let made = match rpc {
        Rpc::SetMemberRole | Rpc::RemoveMember => ops.add_member(org, &format!("u{n}"), Role::Viewer).await.map(drop),
        Rpc::UpdateRole | Rpc::DeleteRole => {
            ops.create_role(org, &format!("r{n}"), &[Permission::OrgRead]).await.map(drop)
        }
        Rpc::RevokeInvitation => {
            ops.create_invitation(org, &format!("i{n}@example.com"), Role::Viewer, None).await.map(drop)
        }
        Rpc::UpdateIntegration | Rpc::DeleteIntegration => ops
            .create_integration(org, &format!("int{n}"), "twilio", &[ConfigEntry::plain("account", "AC-1")])
            .await
            .map(drop),
        Rpc::UpdatePhoneNumber | Rpc::DeletePhoneNumber => ops.create_phone_number(org, &phone(n), "").await.map(drop),
        _ => Ok(()),
    };
    made.unwrap_or_else(|e| panic!("the fixture of {rpc:?} cell {n} in {org}: {e}"));
    None
}

fn request<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(WAIT);
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    }
    request
}

/// Calls `rpc` about `target` (an org id, a region, a user id or nothing) through the router;
/// `app_id` is the cell's app (a well-formed id nobody has, about a missing org).
async fn call(
    channel: Channel,
    token: Option<String>,
    rpc: Rpc,
    target: String,
    n: u64,
    app_id: String,
) -> Result<(), Status> {
    let mut orgs = OrgServiceClient::new(channel.clone());
    let mut access = AccessServiceClient::new(channel.clone());
    let mut apps = AppServiceClient::new(channel);
    let t = token.as_deref();
    let org_id = target.clone();
    let rid = String::new;
    let config = vec![v1::ConfigEntry { key: "account".into(), value: "AC-2".into(), secret: false }];
    match rpc {
        Rpc::CreateOrg => {
            let m = v1::CreateOrgRequest { region: target, name: format!("Matrix {n}"), request_id: rid() };
            orgs.create_org(request(m, t)).await.map(drop)
        }
        Rpc::GetOrg => orgs.get_org(request(v1::GetOrgRequest { org_id, ..Default::default() }, t)).await.map(drop),
        Rpc::ListOrgs => {
            orgs.list_orgs(request(v1::ListOrgsRequest { region: target, ..Default::default() }, t)).await.map(drop)
        }
        Rpc::UpdateOrg => {
            let m = v1::UpdateOrgRequest { org_id, name: format!("Renamed {n}"), ..Default::default() };
            orgs.update_org(request(m, t)).await.map(drop)
        }
        Rpc::DeleteOrg => {
            // A stale version: a deletion the policy allows is refused for it, and A and B stay.
            let m = v1::DeleteOrgRequest { org_id, expected_version: Some(u64::MAX), request_id: rid() };
            orgs.delete_org(request(m, t)).await.map(drop)
        }
        Rpc::AddMember => {
            let m = v1::AddMemberRequest { org_id, user_id: format!("u{n}"), role: "viewer".into(), request_id: rid() };
            orgs.add_member(request(m, t)).await.map(drop)
        }
        Rpc::SetMemberRole => {
            let m =
                v1::SetMemberRoleRequest { org_id, user_id: format!("u{n}"), role: "agent".into(), request_id: rid() };
            orgs.set_member_role(request(m, t)).await.map(drop)
        }
        Rpc::RemoveMember => {
            let m = v1::RemoveMemberRequest { org_id, user_id: format!("u{n}"), request_id: rid() };
            orgs.remove_member(request(m, t)).await.map(drop)
        }
        Rpc::ListMembers => {
            let m = v1::ListMembersRequest { org_id, ..Default::default() };
            orgs.list_members(request(m, t)).await.map(drop)
        }
        Rpc::ListUserOrgs => {
            let m = v1::ListUserOrgsRequest { user_id: target, ..Default::default() };
            orgs.list_user_orgs(request(m, t)).await.map(drop)
        }
        Rpc::CreateRole => {
            let m = v1::CreateRoleRequest {
                org_id,
                name: format!("r{n}"),
                permissions: vec!["org.read".into()],
                request_id: rid(),
            };
            access.create_role(request(m, t)).await.map(drop)
        }
        Rpc::UpdateRole => {
            let m = v1::UpdateRoleRequest {
                org_id,
                name: format!("r{n}"),
                permissions: vec!["org.read".into(), "members.read".into()],
                ..Default::default()
            };
            access.update_role(request(m, t)).await.map(drop)
        }
        Rpc::DeleteRole => {
            let m = v1::DeleteRoleRequest { org_id, name: format!("r{n}"), request_id: rid() };
            access.delete_role(request(m, t)).await.map(drop)
        }
        Rpc::ListRoles => {
            access.list_roles(request(v1::ListRolesRequest { org_id, ..Default::default() }, t)).await.map(drop)
        }
        Rpc::ListPermissions => access.list_permissions(request(v1::ListPermissionsRequest {}, t)).await.map(drop),
        Rpc::CreateInvitation => {
            let m = v1::CreateInvitationRequest {
                org_id,
                email: format!("i{n}@example.com"),
                role: "viewer".into(),
                ..Default::default()
            };
            access.create_invitation(request(m, t)).await.map(drop)
        }
        Rpc::ListInvitations => {
            let m = v1::ListInvitationsRequest { org_id, ..Default::default() };
            access.list_invitations(request(m, t)).await.map(drop)
        }
        Rpc::RevokeInvitation => {
            let m = v1::RevokeInvitationRequest { org_id, email: format!("i{n}@example.com"), request_id: rid() };
            access.revoke_invitation(request(m, t)).await.map(drop)
        }
        Rpc::AcceptInvitation => {
            let m = v1::AcceptInvitationRequest { org_id, request_id: rid() };
            access.accept_invitation(request(m, t)).await.map(drop)
        }
        Rpc::CreateIntegration => {
            let m = v1::CreateIntegrationRequest {
                org_id,
                name: format!("int{n}"),
                kind: "twilio".into(),
                config,
                request_id: rid(),
            };
            access.create_integration(request(m, t)).await.map(drop)
        }
        Rpc::GetIntegration => {
            let m = v1::GetIntegrationRequest { org_id, name: SHARED_INTEGRATION.into(), ..Default::default() };
            access.get_integration(request(m, t)).await.map(drop)
        }
        Rpc::ListIntegrations => {
            let m = v1::ListIntegrationsRequest { org_id, ..Default::default() };
            access.list_integrations(request(m, t)).await.map(drop)
        }
        Rpc::UpdateIntegration => {
            let m = v1::UpdateIntegrationRequest { org_id, name: format!("int{n}"), set: config, ..Default::default() };
            access.update_integration(request(m, t)).await.map(drop)
        }
        Rpc::DeleteIntegration => {
            let m = v1::DeleteIntegrationRequest { org_id, name: format!("int{n}"), request_id: rid() };
            access.delete_integration(request(m, t)).await.map(drop)
        }
        Rpc::CreatePhoneNumber => {
            let m =
                v1::CreatePhoneNumberRequest { org_id, number: phone(n), label: "matrix".into(), request_id: rid() };
            access.create_phone_number(request(m, t)).await.map(drop)
        }
        Rpc::GetPhoneNumber => {
            let m = v1::GetPhoneNumberRequest { org_id, number: SHARED_PHONE.into(), ..Default::default() };
            access.get_phone_number(request(m, t)).await.map(drop)
        }
        Rpc::ListPhoneNumbers => {
            let m = v1::ListPhoneNumbersRequest { org_id, ..Default::default() };
            access.list_phone_numbers(request(m, t)).await.map(drop)
        }
        Rpc::UpdatePhoneNumber => {
            let m = v1::UpdatePhoneNumberRequest {
                org_id,
                number: phone(n),
                label: "relabelled".into(),
                ..Default::default()
            };
            access.update_phone_number(request(m, t)).await.map(drop)
        }
        Rpc::DeletePhoneNumber => {
            let m = v1::DeletePhoneNumberRequest { org_id, number: phone(n), request_id: rid() };
            access.delete_phone_number(request(m, t)).await.map(drop)
        }
        Rpc::ListAuditEvents => {
            let m = v1::ListAuditEventsRequest { org_id, ..Default::default() };
            access.list_audit_events(request(m, t)).await.map(drop)
        }
        Rpc::CreateApp => {
            let m = v1::CreateAppRequest {
                org_id,
                name: format!("app {n}"),
                definition: "{}".into(),
                slots: vec![v1::AppSlotSpec { name: "line".into(), kind: "phone_number".into() }],
                ..Default::default()
            };
            apps.create_app(request(m, t)).await.map(drop)
        }
        Rpc::GetApp => {
            apps.get_app(request(v1::GetAppRequest { org_id, app_id, ..Default::default() }, t)).await.map(drop)
        }
        Rpc::ListApps => {
            apps.list_apps(request(v1::ListAppsRequest { org_id, ..Default::default() }, t)).await.map(drop)
        }
        Rpc::UpdateApp => {
            let m = v1::UpdateAppRequest { org_id, app_id, name: Some(format!("renamed {n}")), ..Default::default() };
            apps.update_app(request(m, t)).await.map(drop)
        }
        Rpc::DeleteApp => {
            apps.delete_app(request(v1::DeleteAppRequest { org_id, app_id, ..Default::default() }, t)).await.map(drop)
        }
        Rpc::BindAppSlot => {
            let m = v1::BindAppSlotRequest {
                org_id,
                app_id,
                slot: "sms".into(),
                resource_id: SHARED_INTEGRATION.into(),
                request_id: rid(),
            };
            apps.bind_app_slot(request(m, t)).await.map(drop)
        }
        Rpc::UnbindAppSlot => {
            let m = v1::UnbindAppSlotRequest { org_id, app_id, slot: "sms".into(), request_id: rid() };
            apps.unbind_app_slot(request(m, t)).await.map(drop)
        }
        Rpc::PublishApp => {
            let m = v1::PublishAppRequest { org_id, app_id, ..Default::default() };
            apps.publish_app(request(m, t)).await.map(drop)
        }
        Rpc::ExportApp => {
            let m = v1::ExportAppRequest { org_id, app_id, ..Default::default() };
            let mut stream = apps.export_app(request(m, t)).await?.into_inner();
            while stream.message().await?.is_some() {}
            Ok(())
        }
        Rpc::ImportApp => {
            // A valid archive exported from region eu, this org's own region: allowed by
            // every org's residency policy.
            let header = v1::ImportAppHeader { org_id, request_id: rid() };
            let messages = vec![
                v1::ImportAppChunk { part: Some(v1::import_app_chunk::Part::Header(header)) },
                v1::ImportAppChunk {
                    part: Some(v1::import_app_chunk::Part::Data(orgplane_appzip::corpus::valid_archive())),
                },
            ];
            apps.import_app(request(futures::stream::iter(messages), t)).await.map(drop)
        }
    }
}

/// An authenticating router over `region`; it stops when the returned sender is dropped.
async fn start_router(region: &TestRegion) -> (String, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let addr = listener.local_addr().expect("an address").to_string();
    let config = RouterConfig {
        listen: listener.local_addr().expect("an address"),
        regions: [(region.region.to_string(), region.peers.values().cloned().collect())].into_iter().collect(),
        auth: Some(key().config().clone()),
        ..RouterConfig::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(orgplane_router::run(config, listener, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// The methods of OrgService, AccessService and AppService as the proto declares them.
fn declared_methods() -> BTreeSet<(String, String)> {
    let set = prost_types::FileDescriptorSet::decode(orgplane_proto::FILE_DESCRIPTOR_SET).expect("the descriptor");
    let wanted = [Service::Org.full_name(), Service::Access.full_name(), Service::App.full_name()];
    let mut methods = BTreeSet::new();
    for file in set.file {
        let package = file.package().to_string();
        for service in file.service {
            let name = format!("{package}.{}", service.name());
            if wanted.contains(&name.as_str()) {
                methods.extend(service.method.iter().map(|m| (name.clone(), m.name().to_string())));
            }
        }
    }
    methods
}

#[test]
fn the_matrix_has_one_row_per_method_of_every_service() {
    let rows: BTreeSet<(String, String)> =
        TABLE.iter().map(|(rpc, service, _)| (service.full_name().to_string(), format!("{rpc:?}"))).collect();
    assert_eq!(rows.len(), TABLE.len(), "a row appears twice");
    let declared = declared_methods();
    assert!(!declared.is_empty(), "no methods found in the descriptor");
    let missing: Vec<_> = declared.difference(&rows).collect();
    let unknown: Vec<_> = rows.difference(&declared).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "methods without a row: {missing:?}; rows without a method: {unknown:?}"
    );
}

#[test]
fn the_policy_says_an_agent_cannot_integrate_and_a_developer_can() {
    let orgs = Orgs {
        a: OrgId::from_u128(Region::Eu, 1),
        b: OrgId::from_u128(Region::Eu, 2),
        missing: OrgId::from_u128(Region::Eu, 3),
    };
    assert_eq!(
        expected(Rpc::CreateIntegration, Caller::Agent, Target::OrgA, &orgs),
        Expected::new(Code::PermissionDenied, "resources.integrate")
    );
    assert_eq!(expected(Rpc::CreateIntegration, Caller::Developer, Target::OrgA, &orgs), Expected::ok());
    assert_eq!(
        expected(Rpc::ImportApp, Caller::Agent, Target::OrgA, &orgs),
        Expected::new(Code::PermissionDenied, "apps.transfer")
    );
    assert_eq!(
        expected(Rpc::PublishApp, Caller::Agent, Target::OrgA, &orgs),
        Expected::new(Code::PermissionDenied, "apps.publish")
    );
    assert_eq!(expected(Rpc::ExportApp, Caller::OtherOrgMember, Target::OrgA, &orgs).code, Code::NotFound);
}

/// One cell's outcome, for the report.
struct Cell {
    rpc: Rpc,
    caller: Caller,
    target: Target,
    target_id: String,
    expected: Expected,
    got: Result<(), Status>,
}

impl Cell {
    /// Why the answer disagrees with the policy, if it does.
    fn disagreement(&self) -> Option<String> {
        let (code, message) = match &self.got {
            Ok(()) => (Code::Ok, ""),
            Err(status) => (status.code(), status.message()),
        };
        let agrees = code == self.expected.code && message.contains(&self.expected.needle);
        (!agrees).then(|| {
            format!(
                "{:?} by {:?} about {:?} ({}): expected {:?} containing {:?}, got {:?}: {:?}",
                self.rpc,
                self.caller,
                self.target,
                self.target_id,
                self.expected.code,
                self.expected.needle,
                code,
                message
            )
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_by_every_caller_about_every_org_answers_as_the_policy_says() {
    let region = TestRegion::start(Region::Eu, 1, authenticated).await;
    region.leader().await;
    let (router, _stop) = start_router(&region).await;
    let options = ClientOptions {
        request_timeout: Duration::from_secs(10),
        total_timeout: WAIT,
        max_retries: 30,
        bearer_token: Caller::PlatformAdmin.token(),
        ..ClientOptions::default()
    };
    let ops = Client::with_options(&router, options).expect("the platform admin's client");

    // The fixtures: org A with one member of each role, org B with bob, a shared integration
    // and phone number in each.
    let a = ops.create_org(Region::Eu, "Org A").await.expect("org A").id;
    let b = ops.create_org(Region::Eu, "Org B").await.expect("org B").id;
    ops.create_role(a.as_str(), CUSTOM_ROLE, &CUSTOM_PERMISSIONS).await.expect("the custom role");
    for caller in Caller::ALL {
        let (in_a, in_b) = caller.roles();
        for (org, role) in [(&a, in_a), (&b, in_b)] {
            if let Some(role) = role {
                ops.add_member(org.as_str(), caller.subject(), role).await.expect("a member");
            }
        }
    }
    for org in [&a, &b] {
        ops.create_integration(org.as_str(), SHARED_INTEGRATION, "twilio", &[ConfigEntry::plain("account", "AC-1")])
            .await
            .expect("the shared integration");
        ops.create_phone_number(org.as_str(), SHARED_PHONE, "").await.expect("the shared phone");
    }
    let parse = |id: &str| id.parse::<OrgId>().expect("an org id");
    let orgs = Orgs {
        a: parse(&a),
        b: parse(&b),
        missing: OrgId::from_u128(Region::Eu, 0x5eed_0000_0000_0000_0000_0000_0001),
    };
    let channel = Channel::from_shared(format!("http://{router}")).expect("a url").connect().await.expect("connect");

    let mut cells = Vec::new();
    for (rpc, _, scope) in TABLE {
        // One row at a time (DeleteOrg last), its cells in parallel.
        let row = Caller::ALL.into_iter().flat_map(|caller| scope.targets().iter().map(move |&t| (caller, t)));
        let runs = row.map(|(caller, target)| {
            let (ops, orgs, channel) = (&ops, &orgs, channel.clone());
            async move {
                let n = fresh();
                let target_id = match target {
                    Target::Region => Region::Eu.to_string(),
                    Target::OwnUser => caller.subject().to_string(),
                    Target::OtherUser => STRANGER.to_string(),
                    Target::Nothing => String::new(),
                    org => orgs.id(org).expect("an org target").to_string(),
                };
                let app_id = if matches!(target, Target::OrgA | Target::OrgB) {
                    prepare(ops, rpc, &target_id, n).await
                } else {
                    None
                };
                let app_id = app_id.unwrap_or_else(|| AppId::from_u128(u128::from(n)).to_string());
                let expected = expected(rpc, caller, target, orgs);
                let got = call(channel, caller.token(), rpc, target_id.clone(), n, app_id).await;
                Cell { rpc, caller, target, target_id, expected, got }
            }
        });
        cells.extend(join_all(runs).await);
    }

    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for cell in &cells {
        let kind = match cell.expected.code {
            Code::Ok => "allowed",
            Code::PermissionDenied => "denied",
            Code::NotFound => "not found",
            Code::Unauthenticated => "unauthenticated",
            _ => "allowed with a domain refusal",
        };
        *counts.entry(kind).or_default() += 1;
    }
    println!("access matrix: {} cells: {counts:?}", cells.len());

    let disagreements: Vec<String> = cells.iter().filter_map(Cell::disagreement).collect();
    assert!(
        disagreements.is_empty(),
        "{} cells disagree with the policy:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );

    // No existence leak: every "no such org" answer reads the same, whichever org it names.
    let shapes: BTreeSet<String> = cells
        .iter()
        .filter(|c| c.expected.code == Code::NotFound)
        .filter_map(|c| c.got.as_ref().err().map(|s| s.message().replace(&c.target_id, "<org>")))
        .collect();
    assert_eq!(shapes.len(), 1, "NOT_FOUND answers differ in shape: {shapes:?}");
    // Not vacuous: cells of both kinds ran.
    assert!(counts.get("denied").copied().unwrap_or(0) > 0 && counts.get("allowed").copied().unwrap_or(0) > 0);
    region.shutdown().await;
}
