//! [`NodeMetrics`]: what a node exports on `--metrics-listen` besides the RPC series.
//!
//! Raft's view (term, leader, log, commit and apply indexes, replication lag per follower) and
//! the store's size are read at scrape time from `Raft::metrics()` and sled, so no background
//! task polls them and a scrape always shows the current values. What happens between scrapes
//! is counted as it happens: leader changes (by a task watching Raft's metrics), group-commit
//! batch sizes (an [`orgplane_raft::BatchObserver`]) and snapshot builds and installs (an
//! [`orgplane_store_sled::SnapshotObserver`]); the Raft and store crates know no metrics
//! library.
//!
//! Series (all `orgplane_`, with `role="node"`, `region` and `node`):
//! - `raft_term`, `raft_is_leader` (0 or 1), `raft_leader` (the known leader's id, 0 when
//!   none), `raft_leader_changes_total`;
//! - `raft_last_log_index`, `raft_committed_index`, `raft_applied_index`,
//!   `raft_snapshot_index`;
//! - `raft_replication_lag_entries{follower}`: on the leader only, entries each other member
//!   has yet to confirm;
//! - `raft_batch_commands`: a histogram of commands per group-commit batch formed on this node;
//! - `store_size_bytes`: the sled database on disk;
//! - `snapshot_build_duration_seconds`, `snapshot_install_duration_seconds`: histograms whose
//!   `_count` is the number of snapshots built and installed.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use orgplane_model::Region;
use orgplane_raft::{BatchObserver, NodeId, Raft};
use orgplane_store_sled::{SnapshotObserver, StateReader};
use orgplane_telemetry::metrics::{
    slow_work_histogram, Collector, MetricsError, MetricsRegistry, RpcCatalog, RpcMetricsLayer, Unit,
};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// Every RPC a node serves, for the bounded `service` and `method` labels: the public and
/// peer services, gRPC health and reflection (v1, the one the node serves).
pub fn node_rpc_catalog() -> Result<RpcCatalog, MetricsError> {
    RpcCatalog::from_descriptor_sets(&[
        orgplane_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    ])
}

/// A node's metrics: the registry its endpoint serves and the hooks that feed it.
#[derive(Debug, Clone)]
pub struct NodeMetrics {
    registry: MetricsRegistry,
    rpc_layer: RpcMetricsLayer,
    batch_commands: Histogram,
    snapshot_build: Histogram,
    snapshot_install: Histogram,
    leader_changes: Counter,
    committed_index: Gauge,
}

impl NodeMetrics {
    /// Registers the node's series. Raft's series join once [`NodeMetrics::watch_raft`] is
    /// called.
    pub fn new(region: Region, node_id: NodeId) -> Result<NodeMetrics, MetricsError> {
        let registry = MetricsRegistry::for_node(region.as_str(), node_id);
        let rpc_layer = RpcMetricsLayer::new(&registry, node_rpc_catalog()?);
        // 1, 2, 4, ... 512: the proposer's largest batch is 512 commands.
        let batch_commands = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "raft_batch_commands",
            "Commands per group-commit batch formed on this node (one Raft log entry each)",
            batch_commands.clone(),
        );
        let snapshot_build = slow_work_histogram();
        registry.register_with_unit(
            "snapshot_build_duration",
            "Time to build and save a snapshot, from the copy of the state to the flush; _count is the number built",
            Unit::Seconds,
            snapshot_build.clone(),
        );
        let snapshot_install = slow_work_histogram();
        registry.register_with_unit(
            "snapshot_install_duration",
            "Time to install a snapshot sent by the leader; _count is the number installed",
            Unit::Seconds,
            snapshot_install.clone(),
        );
        let leader_changes = Counter::default();
        registry.register(
            "raft_leader_changes",
            "Times this node saw a new leadership (another leader, or a new term), the first election included",
            leader_changes.clone(),
        );
        let committed_index = Gauge::default();
        registry.register(
            "raft_committed_index",
            "Index of the last log entry this node knows to be committed",
            committed_index.clone(),
        );
        Ok(NodeMetrics {
            registry,
            rpc_layer,
            batch_commands,
            snapshot_build,
            snapshot_install,
            leader_changes,
            committed_index,
        })
    }

    /// The registry the node's metrics endpoint serves.
    pub fn registry(&self) -> &MetricsRegistry {
        &self.registry
    }

    /// The layer that counts the node's RPCs into this registry.
    pub fn rpc_layer(&self) -> RpcMetricsLayer {
        self.rpc_layer.clone()
    }

    /// The group commit's batch sizes go to `raft_batch_commands`.
    pub fn batch_observer(&self) -> Arc<dyn BatchObserver> {
        Arc::new(BatchSizes(self.batch_commands.clone()))
    }

    /// Snapshot builds and installs go to their duration histograms.
    pub fn snapshot_observer(&self) -> Arc<dyn SnapshotObserver> {
        Arc::new(SnapshotDurations { build: self.snapshot_build.clone(), install: self.snapshot_install.clone() })
    }

    /// Adds Raft's and the store's series, read at scrape time, and starts counting leader
    /// changes (a task that ends when Raft stops).
    pub fn watch_raft(&self, raft: &Raft, node_id: NodeId, state: StateReader) {
        self.registry.register_collector(NodeCollector { raft: raft.clone(), node_id, state });
        // The commit index is not in openraft's metrics; reading it takes a trip to Raft's
        // core, so it is done once per scrape rather than on every change.
        let (raft_for_scrape, committed) = (raft.clone(), self.committed_index.clone());
        self.registry.on_scrape(move || {
            let (raft, committed) = (raft_for_scrape.clone(), committed.clone());
            async move {
                if let Ok(Some(index)) = raft.with_raft_state(|st| st.committed.map(|id| id.index)).await {
                    committed.set(i64::try_from(index).unwrap_or(i64::MAX));
                }
            }
        });
        tokio::spawn(count_leader_changes(raft.metrics(), self.leader_changes.clone()));
    }
}

/// Counts each new (term, leader) pair with a known leader.
async fn count_leader_changes(
    mut metrics: tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, openraft::BasicNode>>,
    changes: Counter,
) {
    let mut last = None;
    loop {
        let seen = {
            let m = metrics.borrow_and_update();
            m.current_leader.map(|leader| (m.current_term, leader))
        };
        if seen.is_some() && seen != last {
            changes.inc();
            last = seen;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

#[derive(Debug)]
struct BatchSizes(Histogram);

impl BatchObserver for BatchSizes {
    fn batch_formed(&self, commands: usize) {
        self.0.observe(commands as f64);
    }
}

struct SnapshotDurations {
    build: Histogram,
    install: Histogram,
}

impl SnapshotObserver for SnapshotDurations {
    fn snapshot_built(&self, elapsed: Duration) {
        self.build.observe(elapsed.as_secs_f64());
    }

    fn snapshot_installed(&self, elapsed: Duration) {
        self.install.observe(elapsed.as_secs_f64());
    }
}

/// Raft's and the store's gauges, read on every scrape.
struct NodeCollector {
    raft: Raft,
    node_id: NodeId,
    state: StateReader,
}

impl fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCollector").field("node_id", &self.node_id).finish_non_exhaustive()
    }
}

/// What one scrape reads of Raft's metrics (copied out, so the watch is not held while
/// encoding).
struct RaftView {
    term: u64,
    is_leader: bool,
    leader: u64,
    last_log_index: Option<u64>,
    applied_index: u64,
    snapshot_index: u64,
    /// Follower id and the index of the last entry it confirmed, if any; leader only.
    matched: Vec<(NodeId, Option<u64>)>,
}

impl NodeCollector {
    fn view(&self) -> RaftView {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        RaftView {
            term: m.current_term,
            is_leader: m.state == ServerState::Leader,
            leader: m.current_leader.unwrap_or(0),
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map_or(0, |id| id.index),
            snapshot_index: m.snapshot.map_or(0, |id| id.index),
            matched: m
                .replication
                .iter()
                .flatten()
                .filter(|(id, _)| **id != self.node_id)
                .map(|(id, matched)| (*id, matched.map(|l| l.index)))
                .collect(),
        }
    }
}

/// Entries of the leader's log that a follower has not confirmed.
fn replication_lag(last_log_index: Option<u64>, matched: Option<u64>) -> u64 {
    let leader_entries = last_log_index.map_or(0, |i| i + 1);
    let confirmed_entries = matched.map_or(0, |i| i + 1);
    leader_entries.saturating_sub(confirmed_entries)
}

fn encode_gauge(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> fmt::Result {
    let gauge = ConstGauge::new(value);
    let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
    gauge.encode(metric)
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let view = self.view();
        encode_gauge(&mut encoder, "raft_term", "The current Raft term", view.term)?;
        encode_gauge(&mut encoder, "raft_is_leader", "1 if this node is its region's leader", view.is_leader.into())?;
        encode_gauge(&mut encoder, "raft_leader", "The id of the leader this node knows, 0 when none", view.leader)?;
        encode_gauge(
            &mut encoder,
            "raft_last_log_index",
            "Index of the last entry in this node's log",
            view.last_log_index.unwrap_or(0),
        )?;
        encode_gauge(
            &mut encoder,
            "raft_applied_index",
            "Index of the last entry applied to this node's state",
            view.applied_index,
        )?;
        encode_gauge(
            &mut encoder,
            "raft_snapshot_index",
            "Index of the last entry in this node's current snapshot",
            view.snapshot_index,
        )?;
        if !view.matched.is_empty() {
            let gauge_type = ConstGauge::new(0u64).metric_type();
            let mut family = encoder.encode_descriptor(
                "raft_replication_lag_entries",
                "On the leader: entries of its log each other member has not confirmed yet",
                None,
                gauge_type,
            )?;
            for (follower, matched) in &view.matched {
                let labels = [("follower", follower.to_string())];
                let lag = ConstGauge::new(replication_lag(view.last_log_index, *matched));
                lag.encode(family.encode_family(&labels)?)?;
            }
        }
        let size = ConstGauge::new(self.state.disk_size());
        let bytes = Unit::Bytes;
        let metric = encoder.encode_descriptor(
            "store_size",
            "Bytes the node's sled database takes on disk (log, vote, snapshot)",
            Some(&bytes),
            size.metric_type(),
        )?;
        size.encode(metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_lag_counts_unconfirmed_entries() {
        let check =
            |last, matched, expected| assert_eq!(replication_lag(last, matched), expected, "{last:?} {matched:?}");
        check(Some(10), Some(10), 0);
        check(Some(10), Some(7), 3);
        check(Some(10), None, 11);
        check(None, None, 0);
        check(Some(3), Some(5), 0);
    }

    #[test]
    fn the_catalog_knows_public_peer_health_and_reflection_rpcs() {
        let catalog = node_rpc_catalog().unwrap();
        // 10 OrgService + 2 ClusterService + AdminService + 5 RaftService + 2 health + 1 reflection.
        assert!(catalog.len() >= 20, "{}", catalog.len());
    }
}
