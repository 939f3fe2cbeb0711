//! A dev CA and the certificates of a deployment's nodes and routers, for mTLS between them.
//!
//! Files in the output directory (keys mode 0600, PKCS#8 PEM; certificates PEM):
//!
//! | file                                   | what                                       |
//! |----------------------------------------|--------------------------------------------|
//! | `ca.pem`, `ca.key`                     | the CA (ECDSA P-256, 10 years)             |
//! | `node-<region>-<id>.pem`, `.key`       | node `<id>` of `<region>` (2 years)        |
//! | `router-<name>.pem`, `.key`            | router `<name>` (2 years)                  |
//! | `client-<name>.pem`, `.key`            | an allowed client, from [`issue_client`]   |
//!
//! Every leaf certificate is valid for TLS server and client authentication and carries its
//! identity as a URI ([`PeerIdentity::uri`], e.g. `spiffe://orgplane/region/eu/node/2`) beside
//! the DNS names the deployment uses to reach it:
//! - node `<id>` of `<region>`: `<region>-<id>` (compose), `orgplane-<region>-<id-1>.orgplane-<region>`
//!   and its `.orgplane`, `.orgplane.svc`, `.orgplane.svc.cluster.local` forms (Kubernetes: pod
//!   `<id-1>` of the region's StatefulSet in namespace `orgplane`);
//! - router `<name>`: `<name>` (compose: `router-us`, ...), `orgplane-router` and its namespace
//!   forms (the Kubernetes Service);
//! - all: `localhost`, `127.0.0.1`, `::1`.
//!
//! An existing CA in the directory is reused (so certificates for added nodes chain to the same
//! CA); leaf certificates are written anew on every run.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use orgplane_model::Region;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::error::SetupError;
use crate::files;
use crate::peer::{is_dns_label, PeerIdentity};

/// The CA certificate's file name.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA key's file name.
pub const CA_KEY_FILE: &str = "ca.key";
/// The Kubernetes namespace the manifests in `deploy/kubernetes` use.
pub const KUBERNETES_NAMESPACE: &str = "orgplane";
/// The most nodes per region this generates certificates for: a sanity bound on the input.
pub const MAX_NODES_PER_REGION: u64 = 99;

const CA_COMMON_NAME: &str = "orgplane dev CA";
const ORGANIZATION: &str = "orgplane";
const DAY: Duration = Duration::from_secs(24 * 60 * 60);
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
const LEAF_LIFETIME: Duration = Duration::from_secs(2 * 365 * 24 * 60 * 60);

/// Where one certificate and its key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertPaths {
    fn named(dir: &Path, stem: &str) -> Self {
        CertPaths { cert: dir.join(format!("{stem}.pem")), key: dir.join(format!("{stem}.key")) }
    }
}

/// One certificate this module wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    pub identity: PeerIdentity,
    /// The DNS names (and IP addresses, as text) the certificate is valid for.
    pub names: Vec<String>,
    pub paths: CertPaths,
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevPki {
    /// The CA's certificate and key: give the certificate to every node and router as the root
    /// they trust; keep the key for issuing more.
    pub ca: CertPaths,
    /// The certificates of the nodes, then of the routers, in the order asked for.
    pub issued: Vec<IssuedCert>,
}

/// The paths of the CA in `dir`.
pub fn ca_paths(dir: &Path) -> CertPaths {
    CertPaths { cert: dir.join(CA_CERT_FILE), key: dir.join(CA_KEY_FILE) }
}

/// The paths of node `node`'s certificate of `region` in `dir`.
pub fn node_paths(dir: &Path, region: Region, node: u64) -> CertPaths {
    CertPaths::named(dir, &format!("node-{region}-{node}"))
}

/// The paths of router `name`'s certificate in `dir`.
pub fn router_paths(dir: &Path, name: &str) -> CertPaths {
    CertPaths::named(dir, &format!("router-{name}"))
}

/// The paths of client `name`'s certificate in `dir`.
pub fn client_paths(dir: &Path, name: &str) -> CertPaths {
    CertPaths::named(dir, &format!("client-{name}"))
}

/// Writes a CA (or reuses the one in `dir`) and a certificate for nodes `1..=nodes_per_region`
/// of each region and for each router name, into `dir`.
pub fn generate(
    dir: &Path,
    regions: &[Region],
    nodes_per_region: u64,
    router_names: &[&str],
) -> Result<DevPki, SetupError> {
    if !(1..=MAX_NODES_PER_REGION).contains(&nodes_per_region) {
        return Err(SetupError::InvalidSetting {
            key: "nodes-per-region",
            reason: format!("must be between 1 and {MAX_NODES_PER_REGION}"),
        });
    }
    for (i, name) in router_names.iter().enumerate() {
        check_name("router name", name)?;
        if router_names[..i].contains(name) {
            return Err(SetupError::InvalidName {
                what: "router name",
                given: name.to_string(),
                reason: "given twice",
            });
        }
    }
    let mut regions = regions.to_vec();
    regions.sort();
    regions.dedup();

    files::create_key_dir(dir)?;
    let ca = load_or_create_ca(dir)?;
    let mut issued = Vec::new();
    for &region in &regions {
        for node in 1..=nodes_per_region {
            let identity = PeerIdentity::Node { region, node };
            let names = node_names(region, node);
            issued.push(issue(&ca, identity, names, node_paths(dir, region, node), true)?);
        }
    }
    for name in router_names {
        let names = router_names_for(name);
        issued.push(issue(&ca, PeerIdentity::Router, names, router_paths(dir, name), true)?);
    }
    Ok(DevPki { ca: ca_paths(dir), issued })
}

/// Writes a client certificate for `name` (identity `spiffe://orgplane/client/<name>`, client
/// authentication only), signed by the CA that [`generate`] left in `dir`.
pub fn issue_client(dir: &Path, name: &str) -> Result<IssuedCert, SetupError> {
    check_name("client name", name)?;
    let ca = load_ca(dir)?;
    issue(&ca, PeerIdentity::Client { name: name.to_string() }, Vec::new(), client_paths(dir, name), false)
}

fn check_name(what: &'static str, name: &str) -> Result<(), SetupError> {
    if is_dns_label(name) {
        return Ok(());
    }
    Err(SetupError::InvalidName {
        what,
        given: name.to_string(),
        reason: "must be 1 to 63 lowercase letters, digits or '-', not starting or ending with '-'",
    })
}

fn node_names(region: Region, node: u64) -> Vec<String> {
    let pod = format!("orgplane-{region}-{}.orgplane-{region}", node - 1);
    let mut names = vec![format!("{region}-{node}")];
    names.extend(kubernetes_forms(&pod));
    names
}

fn router_names_for(name: &str) -> Vec<String> {
    let mut names = vec![name.to_string()];
    if name != "orgplane-router" {
        names.push("orgplane-router".to_string());
    }
    names.extend(kubernetes_forms("orgplane-router").into_iter().skip(1));
    names
}

/// `host` as written in the manifests, then qualified with the namespace, `.svc` and the
/// cluster domain: each a name a client in the cluster may use.
fn kubernetes_forms(host: &str) -> Vec<String> {
    let ns = KUBERNETES_NAMESPACE;
    vec![host.to_string(), format!("{host}.{ns}"), format!("{host}.{ns}.svc"), format!("{host}.{ns}.svc.cluster.local")]
}

/// The CA's parameters. [`Issuer::new`] needs only its name, key usages and key-id method,
/// which are fixed here, so a CA written earlier is reloaded from its key alone.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(CA_COMMON_NAME);
    // Path length 0: the CA signs leaf certificates only.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = SystemTime::now();
    params.not_before = (now - DAY).into();
    params.not_after = (now + CA_LIFETIME).into();
    params
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, ORGANIZATION);
    name.push(DnType::CommonName, common_name);
    name
}

fn load_or_create_ca(dir: &Path) -> Result<Issuer<'static, KeyPair>, SetupError> {
    let paths = ca_paths(dir);
    if paths.cert.exists() || paths.key.exists() {
        return load_ca(dir);
    }
    let key = new_key()?;
    let cert = ca_params().self_signed(&key).map_err(cert_err)?;
    // The key first: a certificate without its key would be reused by the next run and fail.
    files::write_new(&paths.key, key.serialize_pem().as_bytes(), files::PRIVATE_MODE)?;
    files::write_new(&paths.cert, cert.pem().as_bytes(), files::PUBLIC_MODE)?;
    load_ca(dir)
}

/// The CA in `dir`, after checking that its key is private and belongs to its certificate.
fn load_ca(dir: &Path) -> Result<Issuer<'static, KeyPair>, SetupError> {
    let paths = ca_paths(dir);
    files::check_owner_only(&paths.key)?;
    let bad = |path: &Path, reason: String| SetupError::BadKey {
        path: path.to_path_buf(),
        expected: "orgplane dev CA",
        reason,
    };
    let key = KeyPair::from_pem(&files::read_text(&paths.key)?).map_err(|e| bad(&paths.key, e.to_string()))?;
    let cert_pem = files::read_text(&paths.cert)?;
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| bad(&paths.cert, e.to_string()))?;
    let parsed = webpki::EndEntityCert::try_from(&cert).map_err(|e| bad(&paths.cert, e.to_string()))?;
    if parsed.subject_public_key_info().as_ref() != key.subject_public_key_info().as_slice() {
        return Err(bad(&paths.key, format!("does not belong to {}", paths.cert.display())));
    }
    Ok(Issuer::new(ca_params(), key))
}

fn issue(
    ca: &Issuer<'static, KeyPair>,
    identity: PeerIdentity,
    dns_names: Vec<String>,
    paths: CertPaths,
    server: bool,
) -> Result<IssuedCert, SetupError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(&identity.uri());
    params.subject_alt_names.push(SanType::URI(identity.uri().try_into().map_err(cert_err)?));
    let mut names = Vec::new();
    if server {
        for name in dns_names.iter().map(String::as_str).chain(["localhost"]) {
            params.subject_alt_names.push(SanType::DnsName(name.try_into().map_err(cert_err)?));
            names.push(name.to_string());
        }
        for ip in [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)] {
            params.subject_alt_names.push(SanType::IpAddress(ip));
            names.push(ip.to_string());
        }
        params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let now = SystemTime::now();
    params.not_before = (now - DAY).into();
    params.not_after = (now + LEAF_LIFETIME).into();

    let key = new_key()?;
    let cert = params.signed_by(&key, ca).map_err(cert_err)?;
    files::write_replace(&paths.key, key.serialize_pem().as_bytes(), files::PRIVATE_MODE)?;
    files::write_replace(&paths.cert, cert.pem().as_bytes(), files::PUBLIC_MODE)?;
    Ok(IssuedCert { identity, names, paths })
}

/// ECDSA P-256: what every TLS stack and tool (rustls, grpcurl, curl) accepts.
fn new_key() -> Result<KeyPair, SetupError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(cert_err)
}

fn cert_err(err: rcgen::Error) -> SetupError {
    SetupError::Certificate(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_deployment_manifests() {
        assert_eq!(
            node_names(Region::Eu, 2),
            [
                "eu-2",
                "orgplane-eu-1.orgplane-eu",
                "orgplane-eu-1.orgplane-eu.orgplane",
                "orgplane-eu-1.orgplane-eu.orgplane.svc",
                "orgplane-eu-1.orgplane-eu.orgplane.svc.cluster.local",
            ]
        );
        assert_eq!(
            router_names_for("router-us"),
            [
                "router-us",
                "orgplane-router",
                "orgplane-router.orgplane",
                "orgplane-router.orgplane.svc",
                "orgplane-router.orgplane.svc.cluster.local",
            ]
        );
        assert_eq!(router_names_for("orgplane-router")[..2], ["orgplane-router", "orgplane-router.orgplane"]);
    }
}
