//! Per-call context from request headers: a tower layer that runs each call inside a scope
//! (typically a tokio task-local) built from the call's headers, so code deep in the handler
//! reads what the caller sent without every signature carrying it. The router uses it for the
//! caller's credentials, the node for the org epoch a router believes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower::{Layer, Service};

/// A boxed call future, as [`HeaderScoped`] returns it.
pub type ScopedCall<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// How to build a call's scope from its headers.
pub trait HeaderScope: Clone + Send + Sync + 'static {
    /// Runs `call` inside the scope `headers` call for.
    fn scope<F>(&self, headers: &http::HeaderMap, call: F) -> ScopedCall<F::Output>
    where
        F: Future + Send + 'static;
}

/// Runs every call inside its [`HeaderScope`].
#[derive(Debug, Clone, Copy, Default)]
pub struct HeaderScopeLayer<H> {
    scope: H,
}

impl<H> HeaderScopeLayer<H> {
    pub fn new(scope: H) -> Self {
        HeaderScopeLayer { scope }
    }
}

impl<S, H: Clone> Layer<S> for HeaderScopeLayer<H> {
    type Service = HeaderScoped<S, H>;

    fn layer(&self, inner: S) -> HeaderScoped<S, H> {
        HeaderScoped { inner, scope: self.scope.clone() }
    }
}

/// The service of [`HeaderScopeLayer`].
#[derive(Debug, Clone)]
pub struct HeaderScoped<S, H> {
    inner: S,
    scope: H,
}

impl<S, H, B> Service<http::Request<B>> for HeaderScoped<S, H>
where
    S: Service<http::Request<B>>,
    S::Future: Send + 'static,
    H: HeaderScope,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ScopedCall<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let headers = request.headers().clone();
        let call = self.inner.call(request);
        self.scope.scope(&headers, call)
    }
}
