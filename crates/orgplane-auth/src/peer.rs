//! [`PeerIdentity`]: which node or router a TLS peer is, read from its certificate, and
//! [`PeerGuard`], the interceptor that admits only the expected peers to a service.
//!
//! The identity is one SPIFFE-style URI in the certificate's subject alternative names:
//!
//! | identity               | URI                                    |
//! |------------------------|----------------------------------------|
//! | node 2 of region eu    | `spiffe://orgplane/region/eu/node/2`   |
//! | a router (any)         | `spiffe://orgplane/router`             |
//! | an allowed client `ops`| `spiffe://orgplane/client/ops`         |
//!
//! A URI rather than a DNS name, because DNS names change with the deployment (compose host
//! names, Kubernetes pod names) while the identity must not; the DNS names in the same
//! certificate are only for hostname verification.
//!
//! The identity means something only once rustls has verified the chain to the configured CA
//! (tonic's `ServerTlsConfig::client_ca_root`): tonic hands over peer certificates only after
//! that, so [`PeerGuard`] reads verified certificates.

use std::fmt;
use std::sync::Arc;

use orgplane_model::Region;
use rustls_pki_types::CertificateDer;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::error::PeerIdentityError;

/// The trust domain of every orgplane identity URI.
pub const TRUST_DOMAIN: &str = "orgplane";
const URI_PREFIX: &str = "spiffe://orgplane/";

/// What a peer is, according to its (verified) certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerIdentity {
    /// A node of a region's Raft group.
    Node { region: Region, node: u64 },
    /// A router: may call any region's public services.
    Router,
    /// A named client (e.g. an operator's `orgctl`) allowed to call public services directly.
    Client { name: String },
}

impl PeerIdentity {
    /// The identity URI written into certificates.
    pub fn uri(&self) -> String {
        match self {
            PeerIdentity::Node { region, node } => format!("{URI_PREFIX}region/{region}/node/{node}"),
            PeerIdentity::Router => format!("{URI_PREFIX}router"),
            PeerIdentity::Client { name } => format!("{URI_PREFIX}client/{name}"),
        }
    }

    /// Parses an identity URI. Only the canonical spelling is accepted (lowercase region, node id
    /// without leading zeros), so one identity has exactly one URI.
    pub fn from_uri(uri: &str) -> Result<Self, PeerIdentityError> {
        let unrecognised = || PeerIdentityError::Unrecognised { uri: uri.to_string() };
        let path = uri.strip_prefix(URI_PREFIX).ok_or_else(unrecognised)?;
        let segments: Vec<&str> = path.split('/').collect();
        let identity = match segments.as_slice() {
            ["region", region, "node", node] => {
                let region: Region = region.parse().map_err(|_| unrecognised())?;
                // Node ids start at 1 (`--node-id-from-hostname` makes pod 0 node 1).
                let node: u64 = node.parse().ok().filter(|id| *id > 0).ok_or_else(unrecognised)?;
                PeerIdentity::Node { region, node }
            }
            ["router"] => PeerIdentity::Router,
            ["client", name] if is_dns_label(name) => PeerIdentity::Client { name: name.to_string() },
            _ => return Err(unrecognised()),
        };
        if identity.uri() != uri {
            return Err(unrecognised());
        }
        Ok(identity)
    }

    /// The identity in a DER certificate: exactly one `spiffe://` URI among its subject
    /// alternative names, and it must be an orgplane one.
    ///
    /// This parses; it does not verify. Call it on certificates rustls has verified (tonic's
    /// `Request::peer_certs`), as [`PeerGuard`] does.
    pub fn from_cert_der(der: &[u8]) -> Result<Self, PeerIdentityError> {
        let der = CertificateDer::from(der);
        let cert = webpki::EndEntityCert::try_from(&der).map_err(|_| PeerIdentityError::BadCertificate)?;
        let mut spiffe = cert.valid_uri_names().filter(|uri| uri.starts_with("spiffe://"));
        let uri = spiffe.next().ok_or(PeerIdentityError::NoIdentity)?;
        if spiffe.next().is_some() {
            return Err(PeerIdentityError::AmbiguousIdentity);
        }
        PeerIdentity::from_uri(uri)
    }

    /// Whether this peer is a node of `region` (the only callers of a region's Raft service).
    pub fn is_node_of(&self, region: Region) -> bool {
        matches!(self, PeerIdentity::Node { region: r, .. } if *r == region)
    }

    /// Whether this peer is a router.
    pub fn is_router(&self) -> bool {
        matches!(self, PeerIdentity::Router)
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

/// A DNS label: what names of routers and clients must be, since they appear in host names,
/// file names and identity URIs.
pub(crate) fn is_dns_label(name: &str) -> bool {
    let ok_chars = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    ok_chars && (1..=63).contains(&name.len()) && !name.starts_with('-') && !name.ends_with('-')
}

/// Admits a call only from the expected peers, by their verified client certificate; inserts
/// the caller's [`PeerIdentity`] into the request's extensions.
///
/// Install it only where mTLS is configured: without TLS there is no certificate and every call
/// is refused. With the server's client authentication optional, gRPC health stays reachable by
/// probes without certificates while guarded services still require one.
#[derive(Debug, Clone)]
pub struct PeerGuard {
    admits: Admits,
}

#[derive(Debug, Clone)]
enum Admits {
    NodesOf(Region),
    RoutersAndClients(Arc<[String]>),
}

impl PeerGuard {
    /// For the peer-only Raft service of a node of `region`: its own region's nodes only.
    pub fn nodes_of(region: Region) -> Self {
        PeerGuard { admits: Admits::NodesOf(region) }
    }

    /// For a node's public services: routers, and the clients named in `allowed_clients`.
    pub fn routers_and_clients(allowed_clients: impl IntoIterator<Item = String>) -> Self {
        PeerGuard { admits: Admits::RoutersAndClients(allowed_clients.into_iter().collect()) }
    }

    /// Whether a peer with this identity may call the guarded service.
    pub fn admits(&self, identity: &PeerIdentity) -> bool {
        match (&self.admits, identity) {
            (Admits::NodesOf(region), identity) => identity.is_node_of(*region),
            (Admits::RoutersAndClients(_), PeerIdentity::Router) => true,
            (Admits::RoutersAndClients(clients), PeerIdentity::Client { name }) => clients.contains(name),
            (Admits::RoutersAndClients(_), PeerIdentity::Node { .. }) => false,
        }
    }

    /// The identity of `request`'s peer if it is admitted. No client certificate is
    /// UNAUTHENTICATED; a certificate without an admitted identity is PERMISSION_DENIED.
    pub fn check<T>(&self, request: &Request<T>) -> Result<PeerIdentity, Status> {
        let certs = request.peer_certs().filter(|certs| !certs.is_empty());
        let Some(certs) = certs else {
            return Err(Status::unauthenticated("a client certificate is required"));
        };
        let identity = PeerIdentity::from_cert_der(&certs[0])
            .map_err(|err| Status::permission_denied(format!("peer not admitted: {err}")))?;
        if !self.admits(&identity) {
            return Err(Status::permission_denied(format!("peer {identity} may not call this service")));
        }
        Ok(identity)
    }
}

impl Interceptor for PeerGuard {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        match self.check(&request) {
            Ok(identity) => {
                request.extensions_mut().insert(identity);
                Ok(request)
            }
            Err(status) => {
                tracing::debug!(reason = status.message(), "auth.peer_refused");
                Err(status)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(uri: &str, expected: Option<PeerIdentity>) {
        assert_eq!(PeerIdentity::from_uri(uri).ok(), expected, "uri {uri:?}");
        if let Some(identity) = expected {
            assert_eq!(identity.uri(), uri);
        }
    }

    #[test]
    fn identity_uris_round_trip_and_only_canonical_ones_parse() {
        check("spiffe://orgplane/region/eu/node/2", Some(PeerIdentity::Node { region: Region::Eu, node: 2 }));
        check("spiffe://orgplane/region/apac/node/17", Some(PeerIdentity::Node { region: Region::Apac, node: 17 }));
        check("spiffe://orgplane/router", Some(PeerIdentity::Router));
        check("spiffe://orgplane/client/ops-1", Some(PeerIdentity::Client { name: "ops-1".into() }));
        for bad in [
            "",
            "spiffe://orgplane/",
            "spiffe://orgplane/region/EU/node/2",
            "spiffe://orgplane/region/eu/node/02",
            "spiffe://orgplane/region/eu/node/0",
            "spiffe://orgplane/region/eu/node/+2",
            "spiffe://orgplane/region/eu/node/-2",
            "spiffe://orgplane/region/mars/node/2",
            "spiffe://orgplane/region/eu/node/2/",
            "spiffe://orgplane/region/eu",
            "spiffe://orgplane/router/x",
            "spiffe://orgplane/client/",
            "spiffe://orgplane/client/Ops",
            "spiffe://other/router",
            "SPIFFE://orgplane/router",
            "https://orgplane/router",
        ] {
            check(bad, None);
        }
    }

    #[test]
    fn guards_admit_only_their_peers() {
        let eu2 = PeerIdentity::Node { region: Region::Eu, node: 2 };
        let us1 = PeerIdentity::Node { region: Region::Us, node: 1 };
        let ops = PeerIdentity::Client { name: "ops".into() };
        let other = PeerIdentity::Client { name: "other".into() };

        let raft = PeerGuard::nodes_of(Region::Eu);
        assert!(raft.admits(&eu2));
        assert!(!raft.admits(&us1));
        assert!(!raft.admits(&PeerIdentity::Router));
        assert!(!raft.admits(&ops));

        let public = PeerGuard::routers_and_clients(["ops".to_string()]);
        assert!(public.admits(&PeerIdentity::Router));
        assert!(public.admits(&ops));
        assert!(!public.admits(&other));
        assert!(!public.admits(&eu2));
    }

    #[test]
    fn a_request_without_tls_is_refused() {
        let status = PeerGuard::nodes_of(Region::Eu).check(&Request::new(())).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(PeerIdentity::from_cert_der(b"not a certificate"), Err(PeerIdentityError::BadCertificate));
        assert_eq!(PeerIdentity::from_cert_der(&[]), Err(PeerIdentityError::BadCertificate));
    }
}
