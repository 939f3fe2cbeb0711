//! The client side of the router: one lazily connected tonic `Channel` per node endpoint, and
//! the one function, [`node_stack`], that builds the tower stack every call to a node goes
//! through.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use orgplane_model::Region;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Layer, Service, ServiceBuilder};
use tracing::Instrument;

/// What a call to one node goes through: the type-erased stack [`node_stack`] builds.
pub(crate) type NodeService = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, NodeCallError>;

/// Why a call to a node failed below gRPC (no connection, shed, timed out, connection broken),
/// with the cause as its source so the router can tell whether the call left at all.
/// A named type rather than a bare `BoxError`, which the generated clients' `Send` bounds do
/// not accept through the type-erased stack.
#[derive(Debug)]
pub(crate) struct NodeCallError(pub(crate) BoxError);

impl std::fmt::Display for NodeCallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for NodeCallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// The settings [`node_stack`] needs, taken from the validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct StackSettings {
    pub(crate) request_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_concurrent_requests: usize,
    /// Some: nodes are dialled with mutual TLS (the router's certificate, the deployment's CA).
    pub(crate) tls: Option<ClientTlsConfig>,
}

/// A channel to `endpoint` (`host:port`) that connects on first use, so the router starts
/// while nodes are down, and reconnects after a failure on the next call.
/// Must be called within a Tokio runtime (the channel spawns its worker task).
pub(crate) fn node_channel(endpoint: &str, settings: &StackSettings) -> Result<Channel, tonic::transport::Error> {
    let scheme = if settings.tls.is_some() { "https" } else { "http" };
    let mut channel = Endpoint::from_shared(format!("{scheme}://{endpoint}"))?;
    if let Some(tls) = &settings.tls {
        channel = channel.tls_config(tls.clone())?;
    }
    Ok(channel
        .connect_timeout(settings.connect_timeout)
        .tcp_nodelay(true)
        // Notice a node that vanished without closing the connection (a crashed host, a
        // partition) before a request waits on it.
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// Builds the stack around one node's channel. Layers are listed outermost first; a call
/// passes them top to bottom.
pub(crate) fn node_stack(channel: Channel, region: Region, endpoint: &str, settings: &StackSettings) -> NodeService {
    ServiceBuilder::new()
        // One client type for every node, so a region holds a plain list of them.
        .layer(BoxCloneSyncService::layer())
        // Names the error type (see `NodeCallError`).
        .map_err(NodeCallError)
        // A `router.node` span per call naming region, node and method, with status and
        // latency: where a slow or failing node shows up. Never the payload. Also puts the
        // call's `traceparent` on the request, so the node's spans join the client's trace.
        .layer(NodeTraceLayer { region, endpoint: endpoint.to_string() })
        // Fail at once instead of queueing when the node is at its limit: the router then
        // tries another node of the region, or answers RESOURCE_EXHAUSTED.
        .load_shed()
        // A bound on calls in flight to this node (shared by all clones), so one slow node
        // cannot take all of the router's capacity.
        .concurrency_limit(settings.max_concurrent_requests)
        // A backstop: no call to a node outlives the configured request timeout, whatever a
        // client asked for (each call also carries the request's remaining budget).
        .timeout(settings.request_timeout)
        .service(channel)
}

/// The tracing layer of [`node_stack`].
#[derive(Debug, Clone)]
struct NodeTraceLayer {
    region: Region,
    endpoint: String,
}

impl<S> Layer<S> for NodeTraceLayer {
    type Service = NodeTrace<S>;

    fn layer(&self, inner: S) -> NodeTrace<S> {
        NodeTrace { inner, region: self.region, endpoint: self.endpoint.clone() }
    }
}

#[derive(Debug, Clone)]
struct NodeTrace<S> {
    inner: S,
    region: Region,
    endpoint: String,
}

impl<S, B> Service<http::Request<B>> for NodeTrace<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The node joins the client's trace, with the router's span as its parent.
        orgplane_telemetry::trace::inject_traceparent(request.headers_mut());
        // The node authenticates the caller again, from the caller's own header.
        if let Some(authorization) = crate::credentials::caller_authorization() {
            request.headers_mut().insert(crate::credentials::AUTHORIZATION, authorization);
        }
        // The path is `/orgplane.v1.OrgService/GetOrg`: the method, nothing the caller sent.
        let span = tracing::debug_span!(
            "router.node",
            region = self.region.as_str(),
            node = %self.endpoint,
            method = request.uri().path(),
        );
        let call = self.inner.call(request);
        Box::pin(
            async move {
                let started = Instant::now();
                let result = call.await.map_err(Into::into);
                let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
                match &result {
                    // The grpc-status of a successful call is in the trailers, not seen here.
                    Ok(response) => {
                        let grpc_status = response.headers().get("grpc-status").and_then(|v| v.to_str().ok());
                        tracing::debug!(
                            http_status = response.status().as_u16(),
                            grpc_status,
                            latency_ms,
                            "node answered"
                        );
                    }
                    Err(error) => tracing::debug!(error = %error, latency_ms, "node call failed"),
                }
                result
            }
            .instrument(span),
        )
    }
}
