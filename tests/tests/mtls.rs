//! Mutual TLS between nodes and router, end to end: a region of three nodes replicating over
//! mTLS with a router in front (itself serving TLS) works; the peer-only Raft service refuses a
//! caller without a certificate, with a certificate from another CA, a router, and a node of
//! another region; the public services admit routers and allowed clients only; plaintext
//! clients get nowhere; and a process given someone else's certificate refuses to start.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use orgplane::health_probe;
use orgplane_auth::dev_pki::{self, CertPaths};
use orgplane_auth::TlsConfig;
use orgplane_client::{Client, ClientOptions, Consistency, TlsOptions};
use orgplane_model::{Region, Role};
use orgplane_node::NodeConfig;
use orgplane_proto::raft_v1::raft_service_client::RaftServiceClient;
use orgplane_proto::raft_v1::{PeerHeader, PeerRequest};
use orgplane_proto::v1::org_service_client::OrgServiceClient;
use orgplane_proto::v1::GetOrgRequest;
use orgplane_router::RouterConfig;
use orgplane_tests::{test_timings, TestRegion, WAIT};
use tokio::sync::oneshot;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

/// The dev PKI of the deployment under test (eu and us nodes, one router, client `ops`) and a
/// second PKI from another CA, whose certificates claim the same identities.
struct Pki {
    dir: tempfile::TempDir,
    foreign: tempfile::TempDir,
}

impl Pki {
    fn generate() -> Pki {
        let (dir, foreign) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for d in [dir.path(), foreign.path()] {
            dev_pki::generate(d, &[Region::Eu, Region::Us], 3, &["router"]).unwrap();
            dev_pki::issue_client(d, "ops").unwrap();
        }
        Pki { dir, foreign }
    }

    fn ca(&self) -> std::path::PathBuf {
        dev_pki::ca_paths(self.dir.path()).cert
    }

    fn node(&self, region: Region, id: u64) -> CertPaths {
        dev_pki::node_paths(self.dir.path(), region, id)
    }

    fn tls_config(&self, paths: &CertPaths) -> TlsConfig {
        TlsConfig {
            ca_file: self.ca(),
            cert_file: paths.cert.clone(),
            key_file: paths.key.clone(),
            allowed_clients: vec!["ops".into()],
        }
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// A channel to `addr` over TLS trusting `ca`, presenting `identity` if given.
fn tls_channel(addr: &str, ca: &Path, identity: Option<&CertPaths>) -> Channel {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)));
    if let Some(paths) = identity {
        tls = tls.identity(Identity::from_pem(read(&paths.cert), read(&paths.key)));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(WAIT)
        .connect_lazy()
}

/// A Raft message to node 1 of eu that names node 9 as its target: a caller the guard admits
/// gets FAILED_PRECONDITION from the service itself, and nothing happens.
fn misaddressed_vote() -> PeerRequest {
    PeerRequest {
        header: Some(PeerHeader { region: "eu".into(), target_node_id: 9, from_node_id: 2 }),
        payload: Vec::new(),
    }
}

async fn start_region(pki: &Pki) -> TestRegion {
    let dir = pki.dir.path().to_path_buf();
    let ca = pki.ca();
    TestRegion::start(Region::Eu, 3, move |config: &mut NodeConfig| {
        test_timings(config);
        let paths = dev_pki::node_paths(&dir, Region::Eu, config.node_id);
        config.tls = Some(TlsConfig {
            ca_file: ca.clone(),
            cert_file: paths.cert,
            key_file: paths.key,
            allowed_clients: vec!["ops".into()],
        });
    })
    .await
}

async fn start_router(pki: &Pki, region: &TestRegion) -> (String, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let config = RouterConfig {
        listen: listener.local_addr().unwrap(),
        regions: [("eu".to_string(), region.peers.values().cloned().collect())].into(),
        allow_unauthenticated: true,
        tls: Some(pki.tls_config(&dev_pki::router_paths(pki.dir.path(), "router"))),
        ..RouterConfig::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(orgplane_router::run(config, listener, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_region_replicates_over_mtls_and_its_services_admit_only_their_peers() {
    let pki = Pki::generate();
    let region = start_region(&pki).await;
    region.leader().await;
    let (router, _stop_router) = start_router(&pki, &region).await;

    // The configured path: client -TLS-> router -mTLS-> node -mTLS-> peers (replication, and
    // forwarding when the router reached a follower).
    let options = ClientOptions {
        tls: Some(TlsOptions { ca_pem: Some(read(&pki.ca())), identity_pem: None }),
        total_timeout: WAIT,
        ..ClientOptions::default()
    };
    let client = Client::with_options(&router, options).unwrap();
    let org = client.create_org(Region::Eu, "Mutual").await.unwrap();
    client.add_member(org.id.as_str(), "alice", Role::Admin).await.unwrap();
    let read = client.get_org(org.id.as_str(), Consistency::Linearizable).await.unwrap();
    assert_eq!(read.org.name, "Mutual");
    let last = region.raft(region.leader().await).metrics().borrow().last_applied.map(|l| l.index).unwrap();
    for id in region.running_ids() {
        region.wait_applied(id, last).await;
    }

    // A plaintext client reaches neither the router nor a node.
    let plain = Client::with_options(&router, ClientOptions { max_retries: 0, ..ClientOptions::default() }).unwrap();
    assert!(plain.get_org(org.id.as_str(), Consistency::Linearizable).await.is_err());
    let node1 = region.peers[&1].clone();
    let plain_get = orgplane_tests::connect(&node1)
        .await
        .get_org(GetOrgRequest { org_id: org.id.clone(), ..Default::default() })
        .await;
    assert!(plain_get.is_err(), "plaintext to a TLS node: {plain_get:?}");

    // The peer-only Raft service.
    let raft = |identity: Option<&CertPaths>| RaftServiceClient::new(tls_channel(&node1, &pki.ca(), identity));
    let status = raft(None).vote(misaddressed_vote()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "no client certificate: {status:?}");
    let impostor = dev_pki::node_paths(pki.foreign.path(), Region::Eu, 2);
    let status = raft(Some(&impostor)).vote(misaddressed_vote()).await.unwrap_err();
    assert!(
        !matches!(status.code(), Code::Ok | Code::FailedPrecondition | Code::PermissionDenied),
        "another CA's certificate must fail the handshake: {status:?}"
    );
    let router_cert = dev_pki::router_paths(pki.dir.path(), "router");
    let ops = dev_pki::client_paths(pki.dir.path(), "ops");
    for (case, paths) in [("router", &router_cert), ("node of us", &pki.node(Region::Us, 2)), ("client ops", &ops)] {
        let status = raft(Some(paths)).vote(misaddressed_vote()).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{case}: {status:?}");
    }
    let status = raft(Some(&pki.node(Region::Eu, 2))).vote(misaddressed_vote()).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "eu node 2 passes the guard: {status:?}");

    // The public services: routers and allowed clients by certificate, nobody else.
    let org_service = |identity: Option<&CertPaths>| OrgServiceClient::new(tls_channel(&node1, &pki.ca(), identity));
    let get = || GetOrgRequest { org_id: org.id.clone(), ..Default::default() };
    let status = org_service(None).get_org(get()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "no certificate: {status:?}");
    let status = org_service(Some(&pki.node(Region::Eu, 2))).get_org(get()).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "a node is not a client: {status:?}");
    let answer = org_service(Some(&ops)).get_org(get()).await.unwrap().into_inner();
    assert_eq!(answer.org.unwrap().name, "Mutual");

    // Health stays open to probes without a certificate, over TLS.
    let serving = health_probe::check(&node1, "", WAIT, Some(&pki.ca())).await.unwrap();
    assert_eq!(serving, tonic_health::pb::health_check_response::ServingStatus::Serving);

    region.shutdown().await;
}

#[tokio::test]
async fn a_process_refuses_to_start_with_a_certificate_that_is_not_its_own() {
    let pki = Pki::generate();
    let dir = tempfile::tempdir().unwrap();
    let listen = "127.0.0.1:0".parse().unwrap();
    let peers = [(1, "127.0.0.1:1".to_string())].into();
    let mut config = NodeConfig::new(Region::Eu, 1, listen, dir.path().join("n1"), peers);
    config.allow_unauthenticated = true;

    // Node 2's certificate on node 1; a us node's on an eu node; a router's on a node.
    let router_cert = dev_pki::router_paths(pki.dir.path(), "router");
    for (case, paths) in
        [("node 2", pki.node(Region::Eu, 2)), ("a us node", pki.node(Region::Us, 1)), ("a router", router_cert.clone())]
    {
        config.tls = Some(pki.tls_config(&paths));
        let err = orgplane_node::Node::start(config.clone()).await.err().unwrap_or_else(|| panic!("{case} started"));
        assert!(err.to_string().contains("certificate names"), "{case}: {err}");
    }

    // A certificate that does not chain to the configured CA.
    let foreign = dev_pki::node_paths(pki.foreign.path(), Region::Eu, 1);
    config.tls = Some(TlsConfig { ca_file: pki.ca(), ..pki.tls_config(&foreign) });
    let err = orgplane_node::Node::start(config.clone()).await.err().expect("a foreign certificate");
    assert!(err.to_string().contains("does not chain"), "{err}");

    // A key readable by others.
    let own = pki.node(Region::Eu, 1);
    std::fs::set_permissions(&own.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    config.tls = Some(pki.tls_config(&own));
    let err = orgplane_node::Node::start(config.clone()).await.err().expect("a loose key");
    assert!(err.to_string().contains("0600"), "{err}");
    assert!(!dir.path().join("n1").exists(), "a refused start created the data dir");

    // A router given a node's certificate.
    let router = RouterConfig {
        regions: [("eu".to_string(), vec!["127.0.0.1:1".to_string()])].into(),
        allow_unauthenticated: true,
        tls: Some(pki.tls_config(&pki.node(Region::Eu, 2))),
        ..RouterConfig::default()
    };
    let err = orgplane_router::RouterApi::new(&router).expect_err("a node certificate on a router");
    assert!(err.to_string().contains("not a router"), "{err}");
}
