//! Prometheus metrics (`--metrics-listen`), on `prometheus-client`, the Prometheus org's client.
//!
//! - [`MetricsRegistry`]: one per process. Every series is named `orgplane_*` and carries the
//!   labels that name the process (`role`, and `region` and `node` on a node), so series from
//!   many processes never collide. Gauges that mirror state owned elsewhere (Raft, sled) are
//!   best read at scrape time by a [`Collector`]; a value that needs an `await` to read is
//!   refreshed by a hook registered with [`MetricsRegistry::on_scrape`].
//! - [`RpcMetricsLayer`] (in `rpc`): a tower layer for tonic servers counting requests and
//!   observing latency per gRPC service, method and status code.
//! - Shared vocabulary: [`grpc_code_label`], the bucket sets, [`HistogramFamily`].
//!
//! Label values come from bounded sets only (known RPC names, gRPC codes, regions, node ids),
//! so no request can grow the number of series.

mod rpc;

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

pub use prometheus_client::collector::Collector;
pub use prometheus_client::registry::Unit;
pub use rpc::{RpcCatalog, RpcMetricsBody, RpcMetricsFuture, RpcMetricsLayer, RpcMetricsService, UNKNOWN_RPC};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

/// The prefix of every series: `orgplane_rpc_requests_total`, `orgplane_raft_term`, ...
pub const PREFIX: &str = "orgplane";

/// The `Content-Type` of a scrape answer: OpenMetrics text, what `prometheus-client` writes.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long one scrape hook may take before the scrape goes on without it (the gauge it
/// refreshes then shows its previous value): a stuck component must not hang the endpoint.
pub const SCRAPE_HOOK_TIMEOUT: Duration = Duration::from_secs(1);

/// Latency buckets, in seconds, for RPCs and calls to a region: 0.5 ms (a local read) to 10 s
/// (the router's default request timeout).
pub const LATENCY_BUCKETS_SECONDS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Buckets for slow, rare work (building or installing a snapshot), in seconds.
pub const SLOW_WORK_BUCKETS_SECONDS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0];

/// A family of histograms that all use one bucket set, made by a plain function so the family
/// type can be named.
pub type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// A histogram with [`LATENCY_BUCKETS_SECONDS`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_SECONDS)
}

/// A histogram with [`SLOW_WORK_BUCKETS_SECONDS`].
pub fn slow_work_histogram() -> Histogram {
    Histogram::new(SLOW_WORK_BUCKETS_SECONDS)
}

/// The label value of a gRPC status code: its canonical name (`OK`, `NOT_FOUND`, ...), as in
/// the gRPC spec and other gRPC servers' metrics, so dashboards read the same everywhere.
pub fn grpc_code_label(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Metrics that cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot read the gRPC descriptor set: {0}")]
    DescriptorSet(#[from] prost::DecodeError),
}

/// Something that refreshes a metric before each scrape.
type ScrapeHook = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The metrics of one process. Cheap to clone; clones share the series.
///
/// Metrics are registered while the process starts; the registry is then read by every scrape.
/// Register each metric once: a name registered twice is written twice, which Prometheus
/// refuses.
#[derive(Clone)]
pub struct MetricsRegistry {
    shared: Arc<Shared>,
}

struct Shared {
    registry: RwLock<Registry>,
    scrape_hooks: Mutex<Vec<ScrapeHook>>,
}

impl fmt::Debug for MetricsRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsRegistry").finish_non_exhaustive()
    }
}

impl MetricsRegistry {
    /// A registry whose series all carry `labels` (what names this process).
    pub fn with_labels(labels: impl IntoIterator<Item = (&'static str, String)>) -> MetricsRegistry {
        let labels = labels.into_iter().map(|(k, v)| (Cow::Borrowed(k), Cow::Owned(v)));
        let registry = Registry::with_prefix_and_labels(PREFIX, labels.collect::<Vec<_>>().into_iter());
        MetricsRegistry { shared: Arc::new(Shared { registry: RwLock::new(registry), scrape_hooks: Mutex::default() }) }
    }

    /// The registry of a region node: `role="node"`, `region`, `node` (its id).
    pub fn for_node(region: &str, node_id: u64) -> MetricsRegistry {
        MetricsRegistry::with_labels([
            ("role", "node".to_string()),
            ("region", region.to_string()),
            ("node", node_id.to_string()),
        ])
    }

    /// The registry of a router: `role="router"`. Routers are stateless and interchangeable;
    /// Prometheus's own `instance` label tells them apart.
    pub fn for_router() -> MetricsRegistry {
        MetricsRegistry::with_labels([("role", "router".to_string())])
    }

    /// Registers `metric` as `orgplane_<name>` (counters get `_total` from the encoder).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.write().register(name, help, metric);
    }

    /// Registers `metric` as `orgplane_<name>_<unit>`.
    pub fn register_with_unit(&self, name: &str, help: &str, unit: Unit, metric: impl Metric) {
        self.write().register_with_unit(name, help, unit, metric);
    }

    /// Registers a collector, asked for its series on every scrape. The names it writes get
    /// the `orgplane_` prefix and the process labels too.
    pub fn register_collector(&self, collector: impl Collector) {
        self.write().register_collector(Box::new(collector));
    }

    /// Runs `hook` before every scrape (bounded by [`SCRAPE_HOOK_TIMEOUT`]), for gauges whose
    /// value takes an `await` to read.
    pub fn on_scrape<F, Fut>(&self, hook: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let hook: ScrapeHook = Arc::new(move || Box::pin(hook()));
        self.shared.scrape_hooks.lock().unwrap_or_else(PoisonError::into_inner).push(hook);
    }

    /// Refreshes what the scrape hooks refresh, then writes every series as OpenMetrics text.
    pub async fn scrape(&self) -> String {
        let hooks: Vec<ScrapeHook> = self.shared.scrape_hooks.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let refreshes = hooks.iter().map(|hook| tokio::time::timeout(SCRAPE_HOOK_TIMEOUT, hook()));
        for refreshed in futures::future::join_all(refreshes).await {
            if refreshed.is_err() {
                tracing::debug!(timeout = ?SCRAPE_HOOK_TIMEOUT, "a metrics scrape hook timed out");
            }
        }
        self.encode()
    }

    /// Every series as OpenMetrics text, as they are now (no scrape hooks run).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.shared.registry.read().unwrap_or_else(PoisonError::into_inner);
        // Writing into a String cannot fail; an error could only come from a collector, and
        // one broken collector must not take the other series with it.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            tracing::warn!(error = %e, "metrics encoding failed; the scrape is partial");
        }
        text
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        // Registration never leaves the registry half-changed, so a poisoned lock is safe to use.
        self.shared.registry.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;

    use super::*;

    #[test]
    fn series_carry_the_prefix_and_the_process_labels() {
        let registry = MetricsRegistry::for_node("eu", 2);
        let counter: Counter = Counter::default();
        registry.register("things", "Things done", counter.clone());
        counter.inc_by(3);
        let text = registry.encode();
        assert!(text.contains(r#"orgplane_things_total{role="node",region="eu",node="2"} 3"#), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[tokio::test]
    async fn scrape_hooks_refresh_before_encoding_and_a_stuck_hook_does_not_hang() {
        let registry = MetricsRegistry::for_router();
        let gauge: Gauge = Gauge::default();
        registry.register("answer", "Refreshed at scrape time", gauge.clone());
        let refreshed = gauge.clone();
        registry.on_scrape(move || {
            let gauge = refreshed.clone();
            async move {
                gauge.set(42);
            }
        });
        registry.on_scrape(std::future::pending::<()>);
        let text = registry.scrape().await;
        assert!(text.contains(r#"orgplane_answer{role="router"} 42"#), "{text}");
    }

    #[test]
    fn code_labels_are_the_canonical_names() {
        assert_eq!(grpc_code_label(tonic::Code::Ok), "OK");
        assert_eq!(grpc_code_label(tonic::Code::NotFound), "NOT_FOUND");
        assert_eq!(grpc_code_label(tonic::Code::from_i32(99)), "UNKNOWN");
    }
}
