//! The router's own series, besides the RPC series of its gRPC server: how each region answers
//! and how often a user-wide answer had to leave a region out.
//!
//! - `orgplane_router_region_requests_total{region,code}`: calls to a region (with failover
//!   inside it, one call however many nodes were tried), by the outcome's gRPC code;
//! - `orgplane_router_region_duration_seconds{region}`: their latency;
//! - `orgplane_router_fanout_partial_total{region}`: user-wide answers (`ListUserOrgs`) that
//!   went out without that region's part.
//!
//! Labels are regions (three) and gRPC codes (seventeen): bounded whatever clients send.

use std::time::Duration;

use orgplane_model::Region;
use orgplane_telemetry::metrics::{grpc_code_label, latency_histogram, HistogramFamily, MetricsRegistry, Unit};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RegionCodeLabels {
    region: &'static str,
    code: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RegionLabels {
    region: &'static str,
}

/// The router's per-region series. Cheap to clone; clones share the series.
#[derive(Debug, Clone)]
pub(crate) struct RouterMetrics {
    region_requests: Family<RegionCodeLabels, Counter>,
    region_duration: HistogramFamily<RegionLabels>,
    fanout_partial: Family<RegionLabels, Counter>,
}

impl RouterMetrics {
    /// Series that count but are not exported (a router embedded without an endpoint).
    pub(crate) fn unregistered() -> RouterMetrics {
        RouterMetrics {
            region_requests: Family::default(),
            region_duration: HistogramFamily::new_with_constructor(latency_histogram),
            fanout_partial: Family::default(),
        }
    }

    /// The series, registered in `registry` (once per registry).
    pub(crate) fn register(registry: &MetricsRegistry) -> RouterMetrics {
        let metrics = RouterMetrics::unregistered();
        registry.register(
            "router_region_requests",
            "Calls from the router to a region (failover inside the region included), by region and gRPC code",
            metrics.region_requests.clone(),
        );
        registry.register_with_unit(
            "router_region_duration",
            "Time the router spent on a call to a region, failover included",
            Unit::Seconds,
            metrics.region_duration.clone(),
        );
        registry.register(
            "router_fanout_partial",
            "User-wide answers (ListUserOrgs) sent without this region's part, which did not answer in time or failed",
            metrics.fanout_partial.clone(),
        );
        metrics
    }

    /// One call to `region` ended with `code` after `elapsed`.
    pub(crate) fn region_call(&self, region: Region, code: tonic::Code, elapsed: Duration) {
        let region = region.as_str();
        self.region_requests.get_or_create(&RegionCodeLabels { region, code: grpc_code_label(code) }).inc();
        self.region_duration.get_or_create(&RegionLabels { region }).observe(elapsed.as_secs_f64());
    }

    /// A user-wide answer left `region` out.
    pub(crate) fn fanout_partial(&self, region: Region) {
        self.fanout_partial.get_or_create(&RegionLabels { region: region.as_str() }).inc();
    }
}
