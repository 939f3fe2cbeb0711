//! [`RpcMetricsLayer`]: per-RPC request counts and latency for a tonic server.
//!
//! A gRPC call's outcome is its `grpc-status`, which arrives in one of two places: in the
//! response headers when the server answers with nothing but a status (a "trailers-only"
//! response, how most errors leave tonic), or in the trailers after the body. The layer looks
//! in the headers first and otherwise wraps the body and reads the trailers as they pass, so
//! the latency it records runs from the request's arrival to the call's last frame.
//!
//! Series:
//! - `orgplane_rpc_requests_total{service,method,code}`, a counter;
//! - `orgplane_rpc_duration_seconds{service,method,code}`, a histogram.
//!
//! `service` and `method` come from an [`RpcCatalog`] of the RPCs the server serves; any other
//! path (a typo, a scanner, a request that is not gRPC at all) is counted under
//! [`UNKNOWN_RPC`], so requests cannot create series.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prost::Message;
use tonic::Code;
use tower::{Layer, Service};

use super::{grpc_code_label, latency_histogram, HistogramFamily, MetricsError, MetricsRegistry, Unit};

/// The `service` and `method` label of a request that is not a known RPC.
pub const UNKNOWN_RPC: &str = "unknown";

/// The RPCs a server serves, by request path (`/orgplane.v1.OrgService/GetOrg`).
#[derive(Debug, Clone, Default)]
pub struct RpcCatalog {
    by_path: HashMap<String, RpcName>,
}

/// The labels naming one RPC: `orgplane.v1.OrgService` and `GetOrg`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RpcName {
    service: Arc<str>,
    method: Arc<str>,
}

impl RpcName {
    fn unknown() -> RpcName {
        RpcName { service: Arc::from(UNKNOWN_RPC), method: Arc::from(UNKNOWN_RPC) }
    }
}

impl RpcCatalog {
    /// Every method of every service in the encoded `FileDescriptorSet`s (what tonic-build
    /// and protox emit for reflection), so a new RPC is counted by name without a change
    /// here.
    pub fn from_descriptor_sets(sets: &[&[u8]]) -> Result<RpcCatalog, MetricsError> {
        let mut catalog = RpcCatalog::default();
        for set in sets {
            let set = prost_types::FileDescriptorSet::decode(*set)?;
            for file in &set.file {
                let package = file.package();
                for service in &file.service {
                    let service_name = if package.is_empty() {
                        service.name().to_string()
                    } else {
                        format!("{package}.{}", service.name())
                    };
                    for method in &service.method {
                        catalog.add(&service_name, method.name());
                    }
                }
            }
        }
        Ok(catalog)
    }

    /// Adds one RPC, `service` fully qualified (`orgplane.v1.OrgService`).
    pub fn add(&mut self, service: &str, method: &str) {
        let name = RpcName { service: Arc::from(service), method: Arc::from(method) };
        self.by_path.insert(format!("/{service}/{method}"), name);
    }

    /// How many RPCs the catalog knows.
    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    /// Whether the catalog knows no RPC.
    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }

    fn name_of(&self, path: &str) -> Option<&RpcName> {
        self.by_path.get(path)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RpcLabels {
    service: Arc<str>,
    method: Arc<str>,
    code: &'static str,
}

/// The series of the layer and the catalog that bounds their labels.
#[derive(Debug)]
struct RpcMetrics {
    catalog: RpcCatalog,
    unknown: RpcName,
    requests: Family<RpcLabels, Counter>,
    duration: HistogramFamily<RpcLabels>,
}

impl RpcMetrics {
    /// The labels of a request: its RPC if the catalog knows the path and the request is gRPC.
    fn name_of<B>(&self, request: &http::Request<B>) -> RpcName {
        let is_grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"));
        match self.catalog.name_of(request.uri().path()) {
            Some(name) if is_grpc => name.clone(),
            _ => self.unknown.clone(),
        }
    }
}

/// A tower layer for a tonic server (`Server::builder().layer(...)`) that counts every call
/// and observes its latency, by service, method and gRPC status code.
#[derive(Debug, Clone)]
pub struct RpcMetricsLayer {
    metrics: Arc<RpcMetrics>,
}

impl RpcMetricsLayer {
    /// Registers the RPC series in `registry` (once per registry) and returns the layer;
    /// clones share the series.
    pub fn new(registry: &MetricsRegistry, catalog: RpcCatalog) -> RpcMetricsLayer {
        let requests = Family::<RpcLabels, Counter>::default();
        let duration = HistogramFamily::<RpcLabels>::new_with_constructor(latency_histogram);
        registry.register("rpc_requests", "gRPC calls served, by service, method and status code", requests.clone());
        registry.register_with_unit(
            "rpc_duration",
            "Time from a gRPC call's arrival to its last frame, by service, method and status code",
            Unit::Seconds,
            duration.clone(),
        );
        RpcMetricsLayer { metrics: Arc::new(RpcMetrics { catalog, unknown: RpcName::unknown(), requests, duration }) }
    }
}

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetricsService<S>;

    fn layer(&self, inner: S) -> RpcMetricsService<S> {
        RpcMetricsService { inner, metrics: self.metrics.clone() }
    }
}

/// The service of [`RpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct RpcMetricsService<S> {
    inner: S,
    metrics: Arc<RpcMetrics>,
}

impl<S, B, ResBody> Service<http::Request<B>> for RpcMetricsService<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<RpcMetricsBody<ResBody>>;
    type Error = S::Error;
    type Future = RpcMetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call =
            CallRecord { name: self.metrics.name_of(&request), metrics: self.metrics.clone(), started: Instant::now() };
        RpcMetricsFuture { inner: self.inner.call(request), call: PendingCall(Some(call)) }
    }
}

/// One call being measured.
#[derive(Debug)]
struct CallRecord {
    metrics: Arc<RpcMetrics>,
    name: RpcName,
    started: Instant,
}

impl CallRecord {
    fn finish(self, code: Code) {
        let labels = RpcLabels { service: self.name.service, method: self.name.method, code: grpc_code_label(code) };
        self.metrics.requests.get_or_create(&labels).inc();
        self.metrics.duration.get_or_create(&labels).observe(self.started.elapsed().as_secs_f64());
    }
}

/// A call not yet recorded. Dropped unrecorded means the client went away before the end
/// (or the server dropped the call): counted as CANCELLED.
#[derive(Debug)]
struct PendingCall(Option<CallRecord>);

impl PendingCall {
    fn finish(&mut self, code: Code) {
        if let Some(call) = self.0.take() {
            call.finish(code);
        }
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

/// The `grpc-status` in `headers`, if any; a value that is not a code reads as UNKNOWN, as
/// gRPC clients read it.
fn grpc_status(headers: &http::HeaderMap) -> Option<Code> {
    headers.get("grpc-status").map(|v| Code::from_bytes(v.as_bytes()))
}

pin_project_lite::pin_project! {
    /// The response future of [`RpcMetricsService`].
    pub struct RpcMetricsFuture<F> {
        #[pin]
        inner: F,
        call: PendingCall,
    }
}

impl<F, ResBody, E> Future for RpcMetricsFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = Result<http::Response<RpcMetricsBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut call = PendingCall(this.call.0.take());
        match result {
            Ok(response) => {
                if let Some(code) = grpc_status(response.headers()) {
                    // Trailers-only: the status is all there is.
                    call.finish(code);
                }
                Poll::Ready(Ok(response.map(|inner| RpcMetricsBody { inner, call })))
            }
            Err(error) => {
                call.finish(Code::Unknown);
                Poll::Ready(Err(error))
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that records its call when the trailers pass (or the body ends or
    /// breaks without them).
    pub struct RpcMetricsBody<B> {
        #[pin]
        inner: B,
        call: PendingCall,
    }
}

impl<B: Body> Body for RpcMetricsBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.call.finish(grpc_status(trailers).unwrap_or(Code::Unknown));
                }
            }
            // The stream broke, or ended without the status every gRPC answer ends with.
            Some(Err(_)) | None => this.call.finish(Code::Unknown),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty, Full, StreamBody};
    use tower::ServiceExt;

    use super::*;

    const GET_ORG: &str = "/orgplane.v1.OrgService/GetOrg";

    fn layer() -> (MetricsRegistry, RpcMetricsLayer) {
        let registry = MetricsRegistry::for_router();
        let mut catalog = RpcCatalog::default();
        catalog.add("orgplane.v1.OrgService", "GetOrg");
        let layer = RpcMetricsLayer::new(&registry, catalog);
        (registry, layer)
    }

    fn grpc_request(path: &str) -> http::Request<Empty<Bytes>> {
        http::Request::builder().uri(path).header("content-type", "application/grpc").body(Empty::new()).unwrap()
    }

    fn count(registry: &MetricsRegistry, service: &str, method: &str, code: &str) -> Option<u64> {
        let text = registry.encode();
        let prefix = format!(
            "orgplane_rpc_requests_total{{role=\"router\",service=\"{service}\",method=\"{method}\",code=\"{code}\"}} "
        );
        text.lines().find_map(|l| l.strip_prefix(prefix.as_str())).map(|v| v.parse().unwrap())
    }

    /// A body of ready frames.
    type FramesBody = StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

    /// A server answering with `grpc-status` in the trailers after one data frame.
    fn with_trailers(code: &'static str) -> http::Response<FramesBody> {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static(code));
        let frames = vec![Ok(Frame::data(Bytes::from_static(b"answer"))), Ok(Frame::trailers(trailers))];
        http::Response::new(StreamBody::new(futures::stream::iter(frames)))
    }

    #[tokio::test]
    async fn counts_the_status_from_the_trailers_once_the_body_is_read() {
        let (registry, layer) = layer();
        let service = layer.layer(tower::service_fn(|_req: http::Request<Empty<Bytes>>| async {
            Ok::<_, Infallible>(with_trailers("0"))
        }));
        let response = service.oneshot(grpc_request(GET_ORG)).await.unwrap();
        assert_eq!(count(&registry, "orgplane.v1.OrgService", "GetOrg", "OK"), None, "recorded before the end");
        let _ = response.into_body().collect().await.unwrap();
        assert_eq!(count(&registry, "orgplane.v1.OrgService", "GetOrg", "OK"), Some(1));
        let text = registry.encode();
        let bucket = r#"orgplane_rpc_duration_seconds_bucket{role="router",le="+Inf",service="orgplane.v1.OrgService",method="GetOrg",code="OK"} 1"#;
        assert!(text.contains(bucket), "{text}");
    }

    #[tokio::test]
    async fn counts_a_trailers_only_error_from_the_headers() {
        let (registry, layer) = layer();
        let service = layer.layer(tower::service_fn(|_req: http::Request<Empty<Bytes>>| async {
            let response = http::Response::builder().header("grpc-status", "5").body(Full::new(Bytes::new())).unwrap();
            Ok::<_, Infallible>(response)
        }));
        let response = service.oneshot(grpc_request(GET_ORG)).await.unwrap();
        assert_eq!(count(&registry, "orgplane.v1.OrgService", "GetOrg", "NOT_FOUND"), Some(1));
        drop(response);
        assert_eq!(count(&registry, "orgplane.v1.OrgService", "GetOrg", "CANCELLED"), None, "counted once");
    }

    #[tokio::test]
    async fn unknown_paths_and_non_grpc_requests_share_one_label() {
        let (registry, layer) = layer();
        let service = layer.layer(tower::service_fn(|_req: http::Request<Empty<Bytes>>| async {
            let response = http::Response::builder().header("grpc-status", "12").body(Full::new(Bytes::new())).unwrap();
            Ok::<_, Infallible>(response)
        }));
        for path in ["/orgplane.v1.OrgService/Nope", "/x/y", "/random-1", "/random-2"] {
            let _ = service.clone().oneshot(grpc_request(path)).await.unwrap();
        }
        let not_grpc = http::Request::builder().uri(GET_ORG).body(Empty::new()).unwrap();
        let _ = service.oneshot(not_grpc).await.unwrap();
        assert_eq!(count(&registry, UNKNOWN_RPC, UNKNOWN_RPC, "UNIMPLEMENTED"), Some(5));
        assert!(!registry.encode().contains("random"), "a path became a label");
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_trailers_is_cancelled() {
        let (registry, layer) = layer();
        let service = layer.layer(tower::service_fn(|_req: http::Request<Empty<Bytes>>| async {
            Ok::<_, Infallible>(with_trailers("0"))
        }));
        drop(service.oneshot(grpc_request(GET_ORG)).await.unwrap());
        assert_eq!(count(&registry, "orgplane.v1.OrgService", "GetOrg", "CANCELLED"), Some(1));
    }

    #[test]
    fn the_catalog_reads_descriptor_sets() {
        let method = prost_types::MethodDescriptorProto { name: Some("Check".into()), ..Default::default() };
        let service = prost_types::ServiceDescriptorProto {
            name: Some("Health".into()),
            method: vec![method],
            ..Default::default()
        };
        let file = prost_types::FileDescriptorProto {
            package: Some("grpc.health.v1".into()),
            service: vec![service],
            ..Default::default()
        };
        let set = prost_types::FileDescriptorSet { file: vec![file] }.encode_to_vec();
        let catalog = RpcCatalog::from_descriptor_sets(&[&set]).unwrap();
        assert_eq!(catalog.len(), 1);
        assert!(catalog.name_of("/grpc.health.v1.Health/Check").is_some());
        assert!(RpcCatalog::from_descriptor_sets(&[b"\xff\xff"]).is_err());
    }
}
