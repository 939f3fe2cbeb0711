//! The node's `AccessService` handlers over gRPC: one single-voter node with a dev signing key,
//! called with tokens of an org's Admin, Developer, Agent and Viewer, of an outsider and of a
//! platform admin. What is checked here is the handlers' part: the policy table applied before
//! reading or proposing, refusals (INVALID_ARGUMENT, PERMISSION_DENIED naming the permission,
//! NOT_FOUND for other orgs) that change nothing, secrets that never come back, and the audit
//! log of every change.

use std::collections::BTreeMap;
use std::time::Duration;

use orgplane_auth::DevKey;
use orgplane_model::{Permission, Region};
use orgplane_node::{Node, NodeConfig};
use orgplane_proto::v1::access_service_client::AccessServiceClient;
use orgplane_proto::v1::org_service_client::OrgServiceClient;
use orgplane_proto::v1::*;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const WAIT: Duration = Duration::from_secs(30);
const SECRET: &str = "sk-live-4f9a2c";

/// One node serving on loopback, and the key its tokens are signed with.
struct Fixture {
    key: DevKey,
    channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let key = orgplane_auth::dev_key::ensure(&dir.path().join("keys")).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peers = BTreeMap::from([(1, addr.to_string())]);
        let mut config = NodeConfig::new(Region::Us, 1, addr, dir.path().join("node"), peers);
        config.heartbeat_ms = 100;
        config.election_timeout_min_ms = 500;
        config.election_timeout_max_ms = 1000;
        config.auth = Some(key.config().clone());
        let node = Node::start(config).await.unwrap();
        node.raft().wait(Some(WAIT)).current_leader(1, "the single node leads").await.unwrap();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            node.serve(listener, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
        Fixture { key, channel, stop: Some(stop), task, _dir: dir }
    }

    fn token(&self, user: &str, platform_admin: bool, email: Option<&str>) -> String {
        self.key.token(user, platform_admin, email, Duration::from_secs(600)).unwrap()
    }

    fn access(&self) -> AccessServiceClient<Channel> {
        AccessServiceClient::new(self.channel.clone())
    }

    /// An org in which alice is Admin, dave Developer, agnes Agent and vic Viewer.
    async fn org_with_members(&self) -> String {
        let ops = self.token("ops", true, None);
        let mut orgs = OrgServiceClient::new(self.channel.clone());
        let create = CreateOrgRequest { region: "us".into(), name: "Acme".into(), request_id: String::new() };
        let org = orgs.create_org(as_user(&ops, create)).await.unwrap().into_inner().org.unwrap().id;
        for (user, role) in [("alice", "admin"), ("dave", "developer"), ("agnes", "agent"), ("vic", "viewer")] {
            let add = AddMemberRequest {
                org_id: org.clone(),
                user_id: user.into(),
                role: role.into(),
                request_id: String::new(),
            };
            orgs.add_member(as_user(&ops, add)).await.unwrap();
        }
        org
    }

    async fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        tokio::time::timeout(WAIT, &mut self.task).await.expect("node stops").unwrap();
    }
}

/// `message` with the caller's bearer token.
fn as_user<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn refused<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, needle: &str) {
    let status = result.expect_err("must be refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(needle), "{needle:?} not in {:?}", status.message());
}

fn integration(org: &str, name: &str) -> CreateIntegrationRequest {
    CreateIntegrationRequest {
        org_id: org.into(),
        name: name.into(),
        kind: "twilio".into(),
        config: vec![
            ConfigEntry { key: "account".into(), value: "AC-1".into(), secret: false },
            ConfigEntry { key: "auth_token".into(), value: SECRET.into(), secret: true },
        ],
        request_id: String::new(),
    }
}

async fn audit(f: &Fixture, org: &str, actor: &str) -> Vec<AuditEvent> {
    let alice = f.token("alice", false, None);
    let request = ListAuditEventsRequest { org_id: org.into(), actor: actor.into(), ..Default::default() };
    f.access().list_audit_events(as_user(&alice, request)).await.unwrap().into_inner().events
}

#[tokio::test]
async fn developers_integrate_agents_read_and_secrets_never_come_back() {
    let f = Fixture::start().await;
    let org = f.org_with_members().await;
    let (dave, agnes, vic) = (f.token("dave", false, None), f.token("agnes", false, None), f.token("vic", false, None));
    let mut access = f.access();

    refused(
        access.create_integration(as_user(&agnes, integration(&org, "sms"))).await,
        Code::PermissionDenied,
        "resources.integrate",
    );
    let created = access.create_integration(as_user(&dave, integration(&org, "sms"))).await.unwrap().into_inner();
    let created = created.integration.unwrap();
    assert_eq!(
        created.config,
        [
            ConfigEntry { key: "account".into(), value: "AC-1".into(), secret: false },
            ConfigEntry { key: "auth_token".into(), value: String::new(), secret: true },
        ]
    );

    // An Agent reads integrations (secrets redacted); a Viewer does not.
    let get = GetIntegrationRequest { org_id: org.clone(), name: "sms".into(), ..Default::default() };
    let read = access.get_integration(as_user(&agnes, get.clone())).await.unwrap().into_inner();
    assert_eq!(read.integration.as_ref().unwrap().config, created.config);
    refused(access.get_integration(as_user(&vic, get)).await, Code::PermissionDenied, "resources.read");
    let list = ListIntegrationsRequest { org_id: org.clone(), ..Default::default() };
    let listed = access.list_integrations(as_user(&agnes, list)).await.unwrap().into_inner();
    assert_eq!(listed.integrations.len(), 1);

    // Updating other keys keeps the secret; moving it to plain is the only way to show it.
    let update = UpdateIntegrationRequest {
        org_id: org.clone(),
        name: "sms".into(),
        set: vec![ConfigEntry { key: "account".into(), value: "AC-2".into(), secret: false }],
        ..Default::default()
    };
    let updated = access.update_integration(as_user(&dave, update)).await.unwrap().into_inner();
    assert_eq!(updated.integration.unwrap().config[1].key, "auth_token");

    let events = audit(&f, &org, "").await;
    for answer in [format!("{read:?}"), format!("{listed:?}"), format!("{events:?}")] {
        assert!(!answer.contains(SECRET), "a secret came back: {answer}");
    }

    // Phone numbers: E.164 checked before anything is proposed.
    let before = audit(&f, &org, "").await.len();
    let bad = CreatePhoneNumberRequest { org_id: org.clone(), number: "555-0100".into(), ..Default::default() };
    refused(access.create_phone_number(as_user(&dave, bad)).await, Code::InvalidArgument, "number");
    assert_eq!(audit(&f, &org, "").await.len(), before, "refused input changed the audit log");
    let good = CreatePhoneNumberRequest {
        org_id: org.clone(),
        number: "+14155550100".into(),
        label: "Support".into(),
        ..Default::default()
    };
    access.create_phone_number(as_user(&dave, good)).await.unwrap();
    let get = GetPhoneNumberRequest { org_id: org.clone(), number: "+14155550100".into(), ..Default::default() };
    let number = access.get_phone_number(as_user(&agnes, get)).await.unwrap().into_inner().phone_number.unwrap();
    assert_eq!(number.label, "Support");
    f.stop().await;
}

#[tokio::test]
async fn other_orgs_look_missing_and_callers_need_a_token() {
    let f = Fixture::start().await;
    let org = f.org_with_members().await;
    let other = f.org_with_members().await;
    let missing = "us-00000000000000000000000000";
    let (alice, outsider) = (f.token("alice", false, None), f.token("mallory", false, None));
    let mut access = f.access();

    let list = |org: &str| ListIntegrationsRequest { org_id: org.into(), ..Default::default() };
    access.list_integrations(as_user(&alice, list(&org))).await.unwrap();
    let not_member = access.list_integrations(as_user(&outsider, list(&org))).await.unwrap_err();
    let absent = access.list_integrations(as_user(&outsider, list(missing))).await.unwrap_err();
    assert_eq!((not_member.code(), absent.code()), (Code::NotFound, Code::NotFound));
    assert_eq!(not_member.message().replace(&org, "ID"), absent.message().replace(missing, "ID"));
    // alice is Admin of `other` too, but a request names one org: no spill-over.
    let mallory_in_other = access
        .list_audit_events(as_user(&outsider, ListAuditEventsRequest { org_id: other.clone(), ..Default::default() }));
    assert_eq!(mallory_in_other.await.unwrap_err().code(), Code::NotFound);

    let unauthenticated = access.list_roles(Request::new(ListRolesRequest { org_id: org, ..Default::default() }));
    assert_eq!(unauthenticated.await.unwrap_err().code(), Code::Unauthenticated);
    let catalog = access.list_permissions(as_user(&outsider, ListPermissionsRequest {})).await.unwrap();
    assert_eq!(catalog.into_inner().permissions.len(), Permission::ALL.len());
    f.stop().await;
}

#[tokio::test]
async fn custom_roles_invitations_and_their_audit_trail() {
    let f = Fixture::start().await;
    let org = f.org_with_members().await;
    let (alice, dave) = (f.token("alice", false, None), f.token("dave", false, None));
    let mut access = f.access();
    let mut orgs = OrgServiceClient::new(f.channel.clone());

    let create = CreateRoleRequest {
        org_id: org.clone(),
        name: "support".into(),
        permissions: vec!["org.read".into(), "resources.read".into()],
        request_id: "role-1".into(),
    };
    refused(access.create_role(as_user(&dave, create.clone())).await, Code::PermissionDenied, "roles.manage");
    let bad = CreateRoleRequest { permissions: vec!["org.own".into()], ..create.clone() };
    refused(access.create_role(as_user(&alice, bad)).await, Code::InvalidArgument, "org.own");
    let role = access.create_role(as_user(&alice, create)).await.unwrap().into_inner().role.unwrap();
    assert_eq!((role.name.as_str(), role.permissions.len(), role.builtin), ("support", 2, false));

    let list = ListRolesRequest { org_id: org.clone(), ..Default::default() };
    let roles = access.list_roles(as_user(&dave, list)).await.unwrap().into_inner().roles;
    let names: Vec<_> = roles.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["admin", "developer", "agent", "viewer", "support"]);

    // A role in use stays.
    let add = AddMemberRequest {
        org_id: org.clone(),
        user_id: "sam".into(),
        role: "support".into(),
        request_id: String::new(),
    };
    orgs.add_member(as_user(&alice, add)).await.unwrap();
    let delete = DeleteRoleRequest { org_id: org.clone(), name: "support".into(), request_id: String::new() };
    refused(access.delete_role(as_user(&alice, delete.clone())).await, Code::FailedPrecondition, "in use");
    let remove = RemoveMemberRequest { org_id: org.clone(), user_id: "sam".into(), request_id: String::new() };
    orgs.remove_member(as_user(&alice, remove)).await.unwrap();
    access.delete_role(as_user(&alice, delete)).await.unwrap();

    // Invitation: created by the Admin, accepted by the owner of the verified email only.
    let invite = CreateInvitationRequest {
        org_id: org.clone(),
        email: "Carol@Example.com".into(),
        role: "developer".into(),
        expire_time_ms: None,
        request_id: String::new(),
    };
    let invitation = access.create_invitation(as_user(&alice, invite)).await.unwrap().into_inner();
    let invitation = invitation.invitation.unwrap();
    assert_eq!((invitation.email.as_str(), invitation.status.as_str()), ("carol@example.com", "pending"));
    let accept = AcceptInvitationRequest { org_id: org.clone(), request_id: String::new() };
    let impostor = f.token("mallory", false, Some("mallory@example.com"));
    refused(access.accept_invitation(as_user(&impostor, accept.clone())).await, Code::NotFound, "invitation");
    let carol = f.token("carol", false, Some("carol@example.com"));
    let member = access.accept_invitation(as_user(&carol, accept.clone())).await.unwrap().into_inner();
    let member = member.member.unwrap();
    assert_eq!((member.user_id.as_str(), member.role.as_str()), ("carol", "developer"));

    // Revoked invitations cannot be accepted.
    let invite = CreateInvitationRequest {
        org_id: org.clone(),
        email: "erin@example.com".into(),
        role: "viewer".into(),
        expire_time_ms: None,
        request_id: String::new(),
    };
    access.create_invitation(as_user(&alice, invite)).await.unwrap();
    let revoke =
        RevokeInvitationRequest { org_id: org.clone(), email: "erin@example.com".into(), request_id: String::new() };
    let revoked = access.revoke_invitation(as_user(&alice, revoke)).await.unwrap().into_inner();
    assert_eq!(revoked.invitation.unwrap().status, "revoked");
    let erin = f.token("erin", false, Some("erin@example.com"));
    refused(access.accept_invitation(as_user(&erin, accept)).await, Code::FailedPrecondition, "revoked");

    // The audit log has each change with actor, action, target, request id and outcome.
    let events = audit(&f, &org, "alice").await;
    assert!(events.iter().all(|e| e.actor == "alice"), "{events:?}");
    let created = events.iter().find(|e| e.action == "create_role" && e.outcome == "ok").expect("create_role event");
    assert_eq!((created.target_kind.as_str(), created.target_id.as_str()), ("role", "support"));
    assert_eq!(created.request_id, "role-1");
    let refused_delete =
        events.iter().find(|e| e.action == "delete_role" && e.outcome == "failed_precondition").expect("refusal");
    assert!(refused_delete.time_ms <= events.last().unwrap().time_ms);
    let carol_events = audit(&f, &org, "carol").await;
    assert_eq!(carol_events.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["accept_invitation"]);
    // The time filter: nothing before the first event, everything from it on.
    let first = audit(&f, &org, "").await[0].time_ms;
    let request = ListAuditEventsRequest { org_id: org.clone(), until_ms: Some(first), ..Default::default() };
    let none = f.access().list_audit_events(as_user(&alice, request)).await.unwrap().into_inner();
    assert!(none.events.is_empty(), "{:?}", none.events);
    let request =
        ListAuditEventsRequest { org_id: org, since_ms: Some(first), until_ms: Some(first), ..Default::default() };
    refused(f.access().list_audit_events(as_user(&alice, request)).await, Code::InvalidArgument, "until_ms");
    f.stop().await;
}
