//! [`TlsConfig`]: the `[tls]` table of a node or router, and [`PeerTls`], the checked files it
//! names, turned into tonic's server and client TLS settings for mutual TLS.
//!
//! ```toml
//! [tls]
//! ca-file = "/etc/orgplane/tls/ca.pem"          # the deployment's CA: the only root trusted
//! cert-file = "/etc/orgplane/tls/node-eu-1.pem" # this process's certificate (its identity)
//! key-file = "/etc/orgplane/tls/node-eu-1.key"  # its private key, mode 0600
//! allowed-clients = ["ops"]                     # nodes: named client certificates that may call
//!                                               # the public services directly (routers always may)
//! ```
//!
//! Servers ask for a client certificate but do not require one at the handshake, so gRPC health
//! stays reachable by probes that have none; each guarded service then requires one through
//! [`crate::PeerGuard`]. Clients verify the server against the CA and the host name they dial,
//! and present their own certificate.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::error::SetupError;
use crate::files;
use crate::peer::{is_dns_label, PeerIdentity};

/// Where a node's or router's TLS files are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TlsConfig {
    /// The CA certificate (PEM): peers are trusted only if their certificate chains to it.
    pub ca_file: PathBuf,
    /// This process's certificate (PEM), carrying its identity URI (see [`PeerIdentity`]).
    pub cert_file: PathBuf,
    /// The certificate's private key (PEM, PKCS#8), readable by its owner only.
    pub key_file: PathBuf,
    /// On a node: the client names (`spiffe://orgplane/client/<name>`) that may call its public
    /// services directly, besides routers. Ignored on a router.
    #[serde(default)]
    pub allowed_clients: Vec<String>,
}

impl TlsConfig {
    /// Reads and checks the files: the key is private, the certificate chains to the CA, is
    /// valid now, and carries an orgplane identity. The identity is returned for the caller to
    /// compare with what it is configured to be (a node of its region, a router).
    pub fn load(&self) -> Result<PeerTls, SetupError> {
        for name in &self.allowed_clients {
            if !is_dns_label(name) {
                return Err(SetupError::InvalidName {
                    what: "tls.allowed-clients entry",
                    given: name.clone(),
                    reason: "must be 1 to 63 lowercase letters, digits or '-', not starting or ending with '-'",
                });
            }
        }
        files::check_owner_only(&self.key_file)?;
        let ca_pem = read(&self.ca_file)?;
        let cert_pem = read(&self.cert_file)?;
        let key_pem = read(&self.key_file)?;
        let ca = first_cert(&self.ca_file, &ca_pem, "CA certificate")?;
        let cert = first_cert(&self.cert_file, &cert_pem, "certificate")?;
        let bad_cert =
            |reason: String| SetupError::BadKey { path: self.cert_file.clone(), expected: "certificate", reason };
        let identity = PeerIdentity::from_cert_der(cert.as_ref()).map_err(|e| bad_cert(e.to_string()))?;
        chains_to(&cert, &ca).map_err(|e| bad_cert(format!("does not chain to {}: {e}", self.ca_file.display())))?;
        Ok(PeerTls {
            ca: Certificate::from_pem(ca_pem),
            identity: Identity::from_pem(cert_pem, key_pem),
            peer_identity: identity,
            allowed_clients: self.allowed_clients.clone(),
        })
    }
}

/// Checked TLS material of one process.
#[derive(Debug, Clone)]
pub struct PeerTls {
    ca: Certificate,
    identity: Identity,
    peer_identity: PeerIdentity,
    allowed_clients: Vec<String>,
}

impl PeerTls {
    /// Who this process's certificate says it is.
    pub fn identity(&self) -> &PeerIdentity {
        &self.peer_identity
    }

    /// The client names a node admits to its public services besides routers.
    pub fn allowed_clients(&self) -> &[String] {
        &self.allowed_clients
    }

    /// Serve with this certificate; ask clients for one chaining to the CA (optional at the
    /// handshake: guarded services require it, health does not).
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
            .client_auth_optional(true)
    }

    /// Dial peers trusting only the CA, verifying the host name dialled, presenting this
    /// process's certificate.
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new().ca_certificate(self.ca.clone()).identity(self.identity.clone())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, SetupError> {
    std::fs::read(path).map_err(|source| SetupError::Read { path: path.to_path_buf(), source })
}

fn first_cert(path: &Path, pem: &[u8], expected: &'static str) -> Result<CertificateDer<'static>, SetupError> {
    CertificateDer::from_pem_slice(pem).map_err(|e| SetupError::BadKey {
        path: path.to_path_buf(),
        expected,
        reason: e.to_string(),
    })
}

/// Whether `leaf` chains to `ca` and is valid now, for both TLS usages a peer certificate
/// serves (node and router certificates are server and client certificates).
fn chains_to(leaf: &CertificateDer<'_>, ca: &CertificateDer<'_>) -> Result<(), webpki::Error> {
    let anchor = webpki::anchor_from_trusted_cert(ca)?;
    let parsed = webpki::EndEntityCert::try_from(leaf)?;
    parsed
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &[],
            UnixTime::now(),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map(|_| ())
}
