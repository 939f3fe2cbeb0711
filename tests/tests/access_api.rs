//! The access API end to end: the typed client with users' tokens, through an authenticating
//! router, to a 3-node region that checks every caller again itself. An Agent cannot create an
//! integration and a Developer can; secrets never come back from any get, list or audit
//! answer; the audit log names actor, action, target, request id and outcome of each change,
//! filtered by actor and time; custom roles are created, listed and deleted, but not while in
//! use; invitations are accepted by the verified email's owner, and not once revoked or
//! expired.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use orgplane_client::{Client, ClientError, Consistency, PageRequest, RequestId};
use orgplane_model::{AuditFilter, ConfigEntry, Permission, Region, Role};
use orgplane_tests::auth::{authenticated, client_as};
use orgplane_tests::router::{start_router, RouterAuth};
use orgplane_tests::TestRegion;
use tokio::sync::oneshot;
use tonic::Code;

const SECRET: &str = "sk-live-77c1e0d2";

fn refused<T: std::fmt::Debug>(result: Result<T, ClientError>, code: Code, needle: &str) {
    let error = result.expect_err("must be refused");
    assert_eq!(error.code(), code, "{error}");
    assert!(error.message().contains(needle), "{needle:?} not in {:?}", error.message());
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Everything of one scenario: a region, a router, and an org with alice (Admin), dave
/// (Developer) and agnes (Agent).
struct World {
    region: TestRegion,
    router: String,
    _stop: oneshot::Sender<()>,
    org: String,
}

impl World {
    async fn start() -> World {
        let region = TestRegion::start(Region::Eu, 3, authenticated).await;
        region.leader().await;
        let (router, stop) = start_router(&[&region], RouterAuth::Tokens).await;
        let ops = client_as(&router, "ops", true, None);
        let org = ops.create_org(Region::Eu, "Acme").await.unwrap().id;
        for (user, role) in [("alice", Role::Admin), ("dave", Role::Developer), ("agnes", Role::Agent)] {
            ops.add_member(org.as_str(), user, role).await.unwrap();
        }
        World { region, router, _stop: stop, org }
    }

    fn user(&self, user: &str) -> Client {
        client_as(&self.router, user, false, None)
    }

    async fn audit(&self, filter: &AuditFilter) -> Vec<orgplane_client::v1::AuditEvent> {
        self.user("alice")
            .list_all_audit_events(self.org.as_str(), filter, Consistency::Linearizable)
            .await
            .unwrap()
            .items
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cannot_integrate_a_developer_can_and_secrets_never_come_back() {
    let w = World::start().await;
    let (dave, agnes) = (w.user("dave"), w.user("agnes"));
    let org = w.org.as_str();
    let config = [ConfigEntry::plain("account", "AC-1"), ConfigEntry::secret("auth_token", SECRET)];

    refused(
        agnes.create_integration(org, "sms", "twilio", &config).await,
        Code::PermissionDenied,
        "resources.integrate",
    );
    let request_id = RequestId::generate();
    let created = dave.create_integration_with_request_id(org, "sms", "twilio", &config, &request_id).await.unwrap();
    let again = dave.create_integration_with_request_id(org, "sms", "twilio", &config, &request_id).await.unwrap();
    assert_eq!(again, created, "a retry with the same request id answers the first result");
    let secret_entry = created.config.iter().find(|e| e.key == "auth_token").unwrap();
    assert!(secret_entry.secret && secret_entry.value.is_empty(), "{secret_entry:?}");

    let got = agnes.get_integration(org, "sms", Consistency::Linearizable).await.unwrap();
    let listed = agnes.list_integrations(org, PageRequest::first(10)).await.unwrap();
    let updated =
        dave.update_integration(org, "sms", &[ConfigEntry::plain("account", "AC-2")], &[], None).await.unwrap();
    assert_eq!(updated.config.iter().filter(|e| e.secret).count(), 1, "the secret key stays set");
    let events = w.audit(&AuditFilter::default()).await;
    let creates: Vec<_> = events.iter().filter(|e| e.action == "create_integration" && e.outcome == "ok").collect();
    assert_eq!(creates.len(), 1, "the retry left no second event: {events:?}");
    assert_eq!(creates[0].request_id, request_id.as_str());
    for answer in [
        format!("{created:?}"),
        format!("{got:?}"),
        format!("{listed:?}"),
        format!("{updated:?}"),
        format!("{events:?}"),
    ] {
        assert!(!answer.contains(SECRET), "a secret came back: {answer}");
    }

    dave.create_phone_number(org, "+4930901820", "Berlin office").await.unwrap();
    refused(dave.create_phone_number(org, "030 901820", "").await, Code::InvalidArgument, "number");
    let numbers = agnes.list_phone_numbers(org, PageRequest::first(0)).await.unwrap().items;
    assert_eq!(numbers.iter().map(|n| n.number.as_str()).collect::<Vec<_>>(), ["+4930901820"]);
    refused(agnes.delete_phone_number(org, "+4930901820").await, Code::PermissionDenied, "resources.integrate");
    dave.delete_phone_number(org, "+4930901820").await.unwrap();
    dave.delete_integration(org, "sms").await.unwrap();
    refused(agnes.get_integration(org, "sms", Consistency::Linearizable).await, Code::NotFound, "sms");
    w.region.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_names_every_change_and_filters_by_actor_and_time() {
    let w = World::start().await;
    let (alice, dave) = (w.user("alice"), w.user("dave"));
    let org = w.org.as_str();
    let started = now_ms();
    let role_request = RequestId::generate();
    alice.create_role_with_request_id(org, "support", &[Permission::OrgRead], &role_request).await.unwrap();
    // Refused by the node's policy check before anything is proposed: no event.
    refused(dave.create_role(org, "ops", &[Permission::OrgRead]).await, Code::PermissionDenied, "roles.manage");
    dave.create_phone_number(org, "+14155550100", "").await.unwrap();
    alice.add_member(org, "sam", Role::Custom("support".into())).await.unwrap();
    // Refused by `apply` (the role is in use): recorded with its outcome.
    refused(alice.delete_role(org, "support").await, Code::FailedPrecondition, "in use");

    let all = w.audit(&AuditFilter::default()).await;
    let role = all.iter().find(|e| e.action == "create_role").expect("create_role event");
    assert_eq!(
        (role.actor.as_str(), role.target_kind.as_str(), role.target_id.as_str(), role.outcome.as_str()),
        ("alice", "role", "support", "ok")
    );
    assert_eq!(role.request_id, role_request.as_str());
    assert!(role.time_ms >= started, "{role:?}");
    let by_dave = w.audit(&AuditFilter { actor_subject: Some("dave".into()), ..AuditFilter::default() }).await;
    let dave_actions: Vec<_> = by_dave.iter().map(|e| (e.action.as_str(), e.outcome.as_str())).collect();
    assert_eq!(dave_actions, [("create_phone_number", "ok")]);
    let refusal = all.iter().find(|e| e.action == "delete_role").expect("delete_role event");
    assert_eq!((refusal.actor.as_str(), refusal.outcome.as_str()), ("alice", "failed_precondition"));
    assert!(refusal.outcome_message.contains("in use"), "{refusal:?}");
    assert!(by_dave.iter().all(|e| e.actor == "dave" && !e.request_id.is_empty()));

    // The time range: the member additions came before `started`, the rest at or after it.
    let since = w.audit(&AuditFilter { from_ms: Some(started), ..AuditFilter::default() }).await;
    let since_actions: Vec<_> = since.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(since_actions, ["create_role", "create_phone_number", "add_member", "delete_role"]);
    let before = w.audit(&AuditFilter { to_ms: Some(started), ..AuditFilter::default() }).await;
    assert_eq!(before.len() + since.len(), all.len());
    assert!(before.iter().all(|e| e.time_ms < started && e.action != "create_role"));

    // Paging: one event a page, the same events in the same order.
    let mut paged = Vec::new();
    let mut page = PageRequest::first(1);
    loop {
        let answer = alice.list_audit_events(org, &AuditFilter::default(), page.clone()).await.unwrap();
        paged.extend(answer.items);
        match answer.next_page_token {
            Some(token) => page = PageRequest::after(1, token),
            None => break,
        }
    }
    assert_eq!(paged, all);
    refused(
        dave.list_audit_events(org, &AuditFilter::default(), PageRequest::first(0)).await,
        Code::PermissionDenied,
        "audit.read",
    );
    w.region.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_roles_and_invitations() {
    let w = World::start().await;
    let alice = w.user("alice");
    let org = w.org.as_str();

    let role = alice.create_role(org, "support", &[Permission::OrgRead, Permission::ResourcesRead]).await.unwrap();
    assert_eq!(role.permissions, ["org.read", "resources.read"]);
    let roles = alice.list_all_roles(org, Consistency::Linearizable).await.unwrap().items;
    let names: Vec<_> = roles.iter().map(|r| (r.name.as_str(), r.builtin)).collect();
    assert_eq!(names, [("admin", true), ("developer", true), ("agent", true), ("viewer", true), ("support", false)]);
    let catalog = w.user("dave").list_permissions().await.unwrap();
    assert_eq!(catalog.len(), Permission::ALL.len());

    // Offered by a pending invitation, then held by a member: in use either way.
    alice.create_invitation(org, "sam@example.com", Role::Custom("support".into()), None).await.unwrap();
    refused(alice.delete_role(org, "support").await, Code::FailedPrecondition, "in use");
    let sam = client_as(&w.router, "sam", false, Some("sam@example.com"));
    let member = sam.accept_invitation(org).await.unwrap();
    assert_eq!((member.user_id.as_str(), member.role.as_str()), ("sam", "support"));
    refused(alice.delete_role(org, "support").await, Code::FailedPrecondition, "in use");
    alice.remove_member(org, "sam").await.unwrap();
    alice.delete_role(org, "support").await.unwrap();

    // Only the owner of the invited, verified email accepts.
    alice.create_invitation(org, "carol@example.com", Role::Developer, None).await.unwrap();
    refused(w.user("carol").accept_invitation(org).await, Code::FailedPrecondition, "verified email");
    let carol = client_as(&w.router, "carol", false, Some("carol@example.com"));
    assert_eq!(carol.accept_invitation(org).await.unwrap().role, "developer");
    carol.create_phone_number(org, "+442071838750", "London").await.expect("carol is a Developer now");

    // Revoked and expired invitations are refused.
    alice.create_invitation(org, "erin@example.com", Role::Agent, None).await.unwrap();
    assert_eq!(alice.revoke_invitation(org, "erin@example.com").await.unwrap().status, "revoked");
    let erin = client_as(&w.router, "erin", false, Some("erin@example.com"));
    refused(erin.accept_invitation(org).await, Code::FailedPrecondition, "revoked");
    let expires = now_ms() + 1500;
    alice.create_invitation(org, "fay@example.com", Role::Agent, Some(expires)).await.unwrap();
    // Expiry is a point in time: wait until the clock passed it.
    while now_ms() <= expires {
        tokio::time::sleep(Duration::from_millis(expires + 1 - now_ms())).await;
    }
    let fay = client_as(&w.router, "fay", false, Some("fay@example.com"));
    refused(fay.accept_invitation(org).await, Code::FailedPrecondition, "expired");
    let statuses: Vec<_> = alice
        .list_invitations(org, PageRequest::first(0))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|i| (i.email, i.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("carol@example.com".to_string(), "accepted".to_string()),
            ("erin@example.com".to_string(), "revoked".to_string()),
            ("fay@example.com".to_string(), "expired".to_string()),
            ("sam@example.com".to_string(), "accepted".to_string()),
        ]
    );
    w.region.shutdown().await;
}
