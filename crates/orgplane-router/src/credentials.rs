//! The caller's credentials, passed on to the node. The router authenticates every call itself
//! (so a bad token fails fast, before any forwarding), but the region checks again: it does not
//! trust the router's word. So the caller's `authorization` header reaches the node unchanged.
//!
//! [`CallerCredentials`], a scope on the router's server, keeps the header of the call being
//! served in a task-local while the call runs; the per-node stack ([`crate::stack`]) puts it on
//! every call to a node made for it (failover attempts, fan-out). The router's own calls (the
//! status page) run outside any client call and carry no credentials.

use std::future::Future;

use orgplane_telemetry::scope::{HeaderScope, ScopedCall};
use tonic::codegen::http::{self, HeaderValue};

/// The header that carries the caller's bearer token.
pub(crate) const AUTHORIZATION: &str = "authorization";

tokio::task_local! {
    static CALLER_AUTHORIZATION: Option<HeaderValue>;
}

/// The `authorization` header of the client call being served, if any.
pub(crate) fn caller_authorization() -> Option<HeaderValue> {
    CALLER_AUTHORIZATION.try_with(Clone::clone).ok().flatten()
}

/// Runs `work` (a task that outlives the call that started it, like a move's driver) with
/// `authorization` as its caller's header.
pub(crate) async fn with_authorization<F: Future>(authorization: Option<HeaderValue>, work: F) -> F::Output {
    CALLER_AUTHORIZATION.scope(authorization, work).await
}

/// Keeps each call's `authorization` header for the calls to nodes made while serving it
/// (with [`orgplane_telemetry::scope::HeaderScopeLayer`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct CallerCredentials;

impl HeaderScope for CallerCredentials {
    fn scope<F: Future + Send + 'static>(&self, headers: &http::HeaderMap, call: F) -> ScopedCall<F::Output> {
        Box::pin(CALLER_AUTHORIZATION.scope(headers.get(AUTHORIZATION).cloned(), call))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orgplane_telemetry::scope::HeaderScopeLayer;
    use tower::{Layer, Service};

    #[tokio::test]
    async fn the_header_is_seen_while_the_call_runs_and_only_then() {
        let mut service =
            HeaderScopeLayer::new(CallerCredentials).layer(tower::service_fn(|_: http::Request<()>| async {
                Ok::<_, std::convert::Infallible>(caller_authorization())
            }));
        let request = http::Request::builder().header(AUTHORIZATION, "Bearer t").body(()).unwrap();
        assert_eq!(service.call(request).await.unwrap(), Some(HeaderValue::from_static("Bearer t")));
        assert_eq!(service.call(http::Request::new(())).await.unwrap(), None);
        assert_eq!(caller_authorization(), None);
    }
}
