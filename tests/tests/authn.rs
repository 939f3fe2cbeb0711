//! Authentication and authorization end to end, through a router and straight to a node, both
//! verifying tokens signed by one dev key: refused tokens change nothing, roles are enforced with
//! the missing permission named, and an org a caller is not in answers exactly like a missing
//! one.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use orgplane_auth::{AuthConfig, DevKey};
use orgplane_model::{OrgId, Region};
use orgplane_node::NodeConfig;
use orgplane_proto::v1::org_service_client::OrgServiceClient;
use orgplane_proto::v1::*;
use orgplane_router::RouterConfig;
use orgplane_tests::{connect, test_timings, TestRegion, WAIT};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// The dev key every node and router of this file verifies tokens with.
struct Keys {
    dir: TempDir,
    key: DevKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = orgplane_auth::dev_key::ensure(dir.path()).expect("the dev key");
        Keys { dir, key }
    })
}

fn auth_config() -> AuthConfig {
    keys().key.config().clone()
}

/// Nodes that verify tokens of [`keys`], with test timings.
fn authenticated(config: &mut NodeConfig) {
    test_timings(config);
    config.auth = Some(auth_config());
    config.allow_unauthenticated = false;
}

fn token(user: &str, platform_admin: bool) -> String {
    keys().key.token(user, platform_admin, None, Duration::from_secs(600)).expect("a token")
}

/// A token of the right issuer and audience, signed by the dev key, that expired `ago` ago
/// (beyond the leeway).
fn expired_token(dir: &Path, ago: Duration) -> String {
    let pem = std::fs::read(dir.join("auth").join(orgplane_auth::dev_key::SIGNING_KEY_FILE)).expect("the key");
    let key = jsonwebtoken::EncodingKey::from_ed_pem(&pem).expect("an Ed25519 key");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let config = auth_config();
    let claims = serde_json::json!({
        "iss": config.issuer, "aud": config.audience, "sub": "ops",
        "iat": now - ago.as_secs() - 60, "exp": now - ago.as_secs(), "orgplane_platform_admin": true,
    });
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA), &claims, &key).expect("signed")
}

fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(WAIT);
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    }
    request
}

/// A router over `region` that verifies tokens of [`keys`]; stops when the sender is dropped.
async fn start_router(region: &TestRegion) -> (String, oneshot::Sender<()>) {
    start_router_with(region, |_| {}).await
}

/// [`start_router`], with `tune` applied to its config.
async fn start_router_with(region: &TestRegion, tune: impl FnOnce(&mut RouterConfig)) -> (String, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut config = RouterConfig {
        listen: listener.local_addr().unwrap(),
        regions: [(region.region.to_string(), region.peers.values().cloned().collect())].into(),
        auth: Some(auth_config()),
        ..RouterConfig::default()
    };
    tune(&mut config);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(orgplane_router::run(config, listener, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// Creates an org as the platform admin `ops`, retrying while the region elects its leader.
async fn create_org(client: &mut OrgServiceClient<Channel>, name: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    let request_id = format!("authn-create-{name}");
    loop {
        let message = CreateOrgRequest { region: "eu".into(), name: name.into(), request_id: request_id.clone() };
        match client.create_org(with_token(message, Some(&token("ops", true)))).await {
            Ok(response) => return response.into_inner().org.expect("an org").id,
            Err(status) if status.code() == Code::Unavailable && tokio::time::Instant::now() < deadline => {
                tokio::task::yield_now().await
            }
            Err(status) => panic!("create {name}: {status:?}"),
        }
    }
}

async fn add_member(
    client: &mut OrgServiceClient<Channel>,
    org: &str,
    user: &str,
    role: &str,
    as_: &str,
) -> Result<(), Status> {
    let message =
        AddMemberRequest { org_id: org.into(), user_id: user.into(), role: role.into(), ..Default::default() };
    client.add_member(with_token(message, Some(as_))).await.map(|_| ())
}

async fn get_org(
    client: &mut OrgServiceClient<Channel>,
    org: &str,
    as_: Option<&str>,
) -> Result<GetOrgResponse, Status> {
    let message = GetOrgRequest { org_id: org.into(), ..Default::default() };
    client.get_org(with_token(message, as_)).await.map(|r| r.into_inner())
}

async fn list_orgs(client: &mut OrgServiceClient<Channel>) -> Vec<String> {
    let message = ListOrgsRequest { region: "eu".into(), page_size: 100, ..Default::default() };
    let response = client.list_orgs(with_token(message, Some(&token("ops", true)))).await.expect("list orgs");
    response.into_inner().orgs.into_iter().map(|o| o.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tokens_are_unauthenticated_at_router_and_node_and_change_nothing() {
    let region = TestRegion::start(Region::Eu, 1, authenticated).await;
    let (router_addr, _stop) = start_router(&region).await;
    let mut router = connect(&router_addr).await;
    let mut node = region.client(1).await;
    create_org(&mut router, "Before").await;
    let before = list_orgs(&mut router).await;

    let other_dir = tempfile::tempdir().unwrap();
    let wrong_key = orgplane_auth::dev_key::ensure(other_dir.path()).unwrap();
    let bad_signature = wrong_key.token("ops", true, None, Duration::from_secs(600)).unwrap();
    let expired = expired_token(keys().dir.path(), Duration::from_secs(3600));
    let tampered = format!("{}x", token("ops", true));
    let cases: [(&str, Option<&str>); 4] = [
        ("no token", None),
        ("bad signature", Some(&bad_signature)),
        ("expired", Some(&expired)),
        ("tampered", Some(&tampered)),
    ];
    for (case, token) in cases {
        for (target, client) in [("router", &mut router), ("node", &mut node)] {
            let message =
                CreateOrgRequest { region: "eu".into(), name: format!("Refused {case}"), ..Default::default() };
            let status = client.create_org(with_token(message, token)).await.unwrap_err();
            assert_eq!(status.code(), Code::Unauthenticated, "{case} at the {target}: {status:?}");
        }
    }
    assert_eq!(list_orgs(&mut router).await, before, "a refused call changed nothing");

    // The router lets a valid token through, and so does the node: the router passed the
    // caller's header on. A request forged straight to the node without it is refused.
    let org = before[0].clone();
    get_org(&mut router, &org, Some(&token("ops", true))).await.expect("through the router");
    let status = get_org(&mut node, &org, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    region.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_enforced_and_other_orgs_look_missing() {
    let region = TestRegion::start(Region::Eu, 1, authenticated).await;
    let (router_addr, _stop) = start_router(&region).await;
    let mut router = connect(&router_addr).await;
    let ops = token("ops", true);
    let acme = create_org(&mut router, "Acme").await;
    let globex = create_org(&mut router, "Globex").await;
    add_member(&mut router, &acme, "ada", "admin", &ops).await.unwrap();
    add_member(&mut router, &acme, "dave", "developer", &ops).await.unwrap();
    add_member(&mut router, &acme, "ann", "agent", &ops).await.unwrap();
    add_member(&mut router, &globex, "bob", "admin", &ops).await.unwrap();
    let (ada, dave, ann, bob) = (token("ada", false), token("dave", false), token("ann", false), token("bob", false));

    // A Developer reads the org and its members, but cannot add members.
    assert_eq!(get_org(&mut router, &acme, Some(&dave)).await.unwrap().org.unwrap().name, "Acme");
    let members = ListMembersRequest { org_id: acme.clone(), page_size: 100, ..Default::default() };
    router.list_members(with_token(members, Some(&dave))).await.expect("a developer lists members");
    let status = add_member(&mut router, &acme, "eve", "viewer", &dave).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("members.manage"), "names the permission: {}", status.message());
    // The Admin can.
    add_member(&mut router, &acme, "eve", "viewer", &ada).await.expect("an admin adds a member");

    // An Agent cannot update the org.
    let update = UpdateOrgRequest { org_id: acme.clone(), name: "Hacked".into(), ..Default::default() };
    let status = router.update_org(with_token(update, Some(&ann))).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("org.update"), "names the permission: {}", status.message());
    assert_eq!(get_org(&mut router, &acme, Some(&ops)).await.unwrap().org.unwrap().name, "Acme", "unchanged");

    // A member of Globex learns nothing of Acme: NOT_FOUND exactly as for a missing org.
    let missing = OrgId::from_u128(Region::Eu, 42).to_string();
    let other = get_org(&mut router, &acme, Some(&bob)).await.unwrap_err();
    let absent = get_org(&mut router, &missing, Some(&bob)).await.unwrap_err();
    assert_eq!((other.code(), absent.code()), (Code::NotFound, Code::NotFound), "{other:?} {absent:?}");
    assert_eq!(other.message().replace(&acme, "ID"), absent.message().replace(&missing, "ID"), "same wording");
    let members = ListMembersRequest { org_id: acme.clone(), page_size: 100, ..Default::default() };
    let status = router.list_members(with_token(members, Some(&bob))).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    // Only platform admins create orgs or list every org; users list their own orgs only.
    let create = CreateOrgRequest { region: "eu".into(), name: "Mine".into(), ..Default::default() };
    let status = router.create_org(with_token(create, Some(&ada))).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("platform_admin"), "{}", status.message());
    let list = ListOrgsRequest { region: "eu".into(), page_size: 10, ..Default::default() };
    let status = router.list_orgs(with_token(list, Some(&ada))).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let own = ListUserOrgsRequest { user_id: "dave".into(), page_size: 10, ..Default::default() };
    let orgs = router.list_user_orgs(with_token(own, Some(&dave))).await.expect("own orgs").into_inner().orgs;
    assert_eq!(orgs.len(), 1, "{orgs:?}");
    let others = ListUserOrgsRequest { user_id: "bob".into(), page_size: 10, ..Default::default() };
    let status = router.list_user_orgs(with_token(others, Some(&dave))).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    region.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_caller_is_rate_limited_on_its_own_subject() {
    let region = TestRegion::start(Region::Eu, 1, authenticated).await;
    let (router_addr, _stop) = start_router_with(&region, |config| {
        // A rate this slow refills nothing during the test: only the burst counts.
        config.rate_limit_per_second = 1;
        config.rate_limit_burst = 3;
    })
    .await;
    let mut router = connect(&router_addr).await;
    let missing = OrgId::from_u128(Region::Eu, 7).to_string();
    let (carol, dan) = (token("carol", false), token("dan", false));
    // The burst is answered (NOT_FOUND: carol is in no org) whatever the timing; then, since
    // the bucket refills at one call a second, a refusal comes within a few quick calls.
    for _ in 0..3 {
        assert_eq!(get_org(&mut router, &missing, Some(&carol)).await.unwrap_err().code(), Code::NotFound);
    }
    let mut refused = false;
    for _ in 0..50 {
        let code = get_org(&mut router, &missing, Some(&carol)).await.unwrap_err().code();
        assert!(matches!(code, Code::NotFound | Code::ResourceExhausted), "{code:?}");
        if code == Code::ResourceExhausted {
            refused = true;
            break;
        }
    }
    assert!(refused, "carol was never limited");
    // Another caller is not limited by carol's calls, whatever headers carol sends.
    assert_eq!(get_org(&mut router, &missing, Some(&dan)).await.unwrap_err().code(), Code::NotFound);
    region.shutdown().await;
}
