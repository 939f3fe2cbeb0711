//! What a call must show before a service sees it: [`PublicGate`] for the public services (the
//! peer's certificate when mutual TLS is configured, then the caller's token) and [`PeerGate`]
//! for services that need only the certificate (the peer-only Raft service; cluster status).
//!
//! Without `[tls]` there are no certificates to check and the certificate half lets every call
//! through: plaintext is for loopback and tests.

use orgplane_auth::{Authenticator, PeerGuard};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Checks the peer's certificate, when mutual TLS is configured.
#[derive(Debug, Clone)]
pub(crate) struct PeerGate(Option<PeerGuard>);

impl PeerGate {
    pub(crate) fn new(guard: Option<PeerGuard>) -> Self {
        PeerGate(guard)
    }
}

impl Interceptor for PeerGate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        match &mut self.0 {
            Some(guard) => guard.call(request),
            None => Ok(request),
        }
    }
}

/// The peer's certificate (when configured), then the caller's bearer token.
#[derive(Clone)]
pub(crate) struct PublicGate {
    peer: PeerGate,
    caller: Authenticator,
}

impl PublicGate {
    pub(crate) fn new(peer: PeerGate, caller: Authenticator) -> Self {
        PublicGate { peer, caller }
    }
}

impl Interceptor for PublicGate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let request = self.peer.call(request)?;
        self.caller.call(request)
    }
}
