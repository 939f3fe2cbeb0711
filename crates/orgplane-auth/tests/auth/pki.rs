//! The dev PKI: certificates carry the identities asked for and chain to their own CA only; and
//! a tonic server with mTLS on loopback refuses no certificate, another CA's certificate and
//! the wrong peer, and serves the right one.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use orgplane_auth::dev_pki::{self, DevPki};
use orgplane_auth::{PeerGuard, PeerIdentity, SetupError};
use orgplane_model::Region;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

fn cert_der(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

/// Whether `leaf` chains to the CA certificate `ca`, for client authentication (what the
/// server's rustls verifier checks).
fn chains_to(leaf: &Path, ca: &Path) -> Result<(), webpki::Error> {
    let ca = cert_der(ca);
    let anchor = webpki::anchor_from_trusted_cert(&ca).unwrap();
    let leaf = cert_der(leaf);
    let leaf = webpki::EndEntityCert::try_from(&leaf).unwrap();
    let algs = [webpki::ring::ECDSA_P256_SHA256];
    leaf.verify_for_usage(&algs, &[anchor], &[], UnixTime::now(), webpki::KeyUsage::client_auth(), None, None)
        .map(|_| ())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn generate(dir: &Path) -> DevPki {
    dev_pki::generate(dir, &[Region::Eu, Region::Us], 3, &["router-us", "router-eu"]).unwrap()
}

#[test]
fn certificates_parse_back_to_their_identities() {
    let dir = tempfile::tempdir().unwrap();
    let pki = generate(dir.path());
    assert_eq!(pki.issued.len(), 2 * 3 + 2);
    assert_eq!(mode(&pki.ca.key), 0o600);

    for issued in &pki.issued {
        assert_eq!(mode(&issued.paths.key), 0o600, "{}", issued.paths.key.display());
        let identity = PeerIdentity::from_cert_der(&cert_der(&issued.paths.cert)).unwrap();
        assert_eq!(identity, issued.identity);
        chains_to(&issued.paths.cert, &pki.ca.cert).unwrap();
    }
    let eu2 = dev_pki::node_paths(dir.path(), Region::Eu, 2);
    assert_eq!(eu2.cert, dir.path().join("node-eu-2.pem"));
    assert_eq!(
        PeerIdentity::from_cert_der(&cert_der(&eu2.cert)).unwrap(),
        PeerIdentity::Node { region: Region::Eu, node: 2 }
    );
    let router = dev_pki::router_paths(dir.path(), "router-eu");
    assert_eq!(PeerIdentity::from_cert_der(&cert_der(&router.cert)).unwrap(), PeerIdentity::Router);
    let eu2_names = &pki.issued.iter().find(|i| i.paths == eu2).unwrap().names;
    for name in ["eu-2", "orgplane-eu-1.orgplane-eu", "localhost", "127.0.0.1"] {
        assert!(eu2_names.iter().any(|n| n == name), "{name} in {eu2_names:?}");
    }

    // The CA's own certificate names nobody.
    assert!(PeerIdentity::from_cert_der(&cert_der(&pki.ca.cert)).is_err());

    let client = dev_pki::issue_client(dir.path(), "ops").unwrap();
    assert_eq!(
        PeerIdentity::from_cert_der(&cert_der(&client.paths.cert)).unwrap(),
        PeerIdentity::Client { name: "ops".into() }
    );
}

#[test]
fn a_certificate_from_another_ca_is_distinguishable() {
    let (dir, other_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pki = generate(dir.path());
    let other = generate(other_dir.path());
    let impostor = dev_pki::node_paths(other_dir.path(), Region::Eu, 2);
    // It claims the same identity...
    assert_eq!(
        PeerIdentity::from_cert_der(&cert_der(&impostor.cert)).unwrap(),
        PeerIdentity::Node { region: Region::Eu, node: 2 }
    );
    // ...but does not chain to this deployment's CA.
    assert!(chains_to(&impostor.cert, &pki.ca.cert).is_err());
    assert!(chains_to(&impostor.cert, &other.ca.cert).is_ok());
}

#[test]
fn the_ca_is_reused_and_checked() {
    let (dir, other_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = generate(dir.path());
    let ca_before = std::fs::read(&first.ca.cert).unwrap();
    // A later run (a node added) keeps the CA; old and new certificates chain to it.
    let old_eu1 = std::fs::read(dev_pki::node_paths(dir.path(), Region::Eu, 1).cert).unwrap();
    let second = dev_pki::generate(dir.path(), &[Region::Apac], 1, &[]).unwrap();
    assert_eq!(std::fs::read(&second.ca.cert).unwrap(), ca_before);
    chains_to(&dev_pki::node_paths(dir.path(), Region::Apac, 1).cert, &second.ca.cert).unwrap();
    assert_eq!(std::fs::read(dev_pki::node_paths(dir.path(), Region::Eu, 1).cert).unwrap(), old_eu1);

    // A CA key that is not the certificate's is refused rather than used.
    let other = generate(other_dir.path());
    std::fs::copy(&other.ca.key, &first.ca.key).unwrap();
    assert!(matches!(dev_pki::generate(dir.path(), &[Region::Eu], 1, &[]), Err(SetupError::BadKey { .. })));
}

#[test]
fn bad_input_writes_nothing() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("pki");
    for (case, result) in [
        ("no nodes", dev_pki::generate(&dir, &[Region::Eu], 0, &[])),
        ("too many nodes", dev_pki::generate(&dir, &[Region::Eu], 100, &[])),
        ("uppercase router", dev_pki::generate(&dir, &[Region::Eu], 3, &["Router"])),
        ("router with a slash", dev_pki::generate(&dir, &[Region::Eu], 3, &["a/b"])),
        ("router twice", dev_pki::generate(&dir, &[Region::Eu], 3, &["r", "r"])),
    ] {
        assert!(result.is_err(), "{case}");
        assert!(!dir.exists(), "{case} wrote files");
    }
    assert!(dev_pki::issue_client(&dir, "ops").is_err(), "a client without a CA");
}

/// A TLS channel to `port` that trusts `ca` and presents `identity` (cert, key) if given.
async fn connect(
    port: u16,
    ca: &Path,
    identity: Option<&dev_pki::CertPaths>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
        .domain_name("localhost");
    if let Some(paths) = identity {
        tls = tls.identity(Identity::from_pem(std::fs::read(&paths.cert).unwrap(), std::fs::read(&paths.key).unwrap()));
    }
    Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
}

/// A health check over a new connection: the stand-in for any call, `Ok` only if it was served.
async fn call(port: u16, ca: &Path, identity: Option<&dev_pki::CertPaths>) -> Result<(), tonic::Status> {
    let channel = connect(port, ca, identity).await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.map(|_| ())
}

#[tokio::test]
async fn mtls_refuses_missing_foreign_and_wrong_peers() {
    let (dir, other_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pki = generate(dir.path());
    generate(other_dir.path());
    let node = |d: &Path, region, id| dev_pki::node_paths(d, region, id);

    // Node eu-1 serves a stand-in for its peer-only Raft service: only eu nodes may call it.
    let server_paths = node(dir.path(), Region::Eu, 1);
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            std::fs::read(&server_paths.cert).unwrap(),
            std::fs::read(&server_paths.key).unwrap(),
        ))
        .client_ca_root(Certificate::from_pem(std::fs::read(&pki.ca.cert).unwrap()));
    let (_reporter, health) = tonic_health::server::health_reporter();
    let guarded = InterceptedService::new(health, PeerGuard::nodes_of(Region::Eu));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(
        Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(guarded)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    // The configured path works: another node of eu, certificate from this CA.
    call(port, &pki.ca.cert, Some(&node(dir.path(), Region::Eu, 2))).await.unwrap();

    // No client certificate: the TLS handshake is refused.
    // No client certificate, or one from another CA claiming the same identity: refused by TLS,
    // before any service sees the call (not the guard's UNAUTHENTICATED or PERMISSION_DENIED).
    let impostor = node(other_dir.path(), Region::Eu, 2);
    for (case, identity) in [("no client certificate", None), ("another CA", Some(&impostor))] {
        let status = call(port, &pki.ca.cert, identity).await.unwrap_err();
        assert!(!matches!(status.code(), Code::Unauthenticated | Code::PermissionDenied), "{case}: {status:?}");
    }

    // Valid certificates of the wrong peers: refused by the guard.
    let router = dev_pki::router_paths(dir.path(), "router-us");
    let us_node = node(dir.path(), Region::Us, 1);
    for (case, paths) in [("router", &router), ("node of another region", &us_node)] {
        let status = call(port, &pki.ca.cert, Some(paths)).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{case}: {status:?}");
    }
    let client = dev_pki::issue_client(dir.path(), "ops").unwrap();
    let status = call(port, &pki.ca.cert, Some(&client.paths)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "a client: {status:?}");

    // And the right peer still gets in after all the refusals.
    call(port, &pki.ca.cert, Some(&node(dir.path(), Region::Eu, 3))).await.unwrap();
    server.abort();
}
