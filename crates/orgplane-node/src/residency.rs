//! What this node holds of an org (its state, its Raft log, its snapshot, the bytes of its
//! files), and the compaction that makes a node's files forget what Raft deleted.
//!
//! Residency is checked by the node itself, on its own disk: the state through the model's
//! [`state::holdings`], the log and snapshot through the store, and every file of the data dir
//! byte by byte for the org's record keys and the caller's needles (its name). A moved org's
//! old region should show the forwarding record and nothing else once its move cleaned up.

use std::time::Duration;

use orgplane_model::state;
use orgplane_model::OrgId;
use orgplane_proto::conv::forwarding_to_wire;
use orgplane_proto::v1::{CompactNodeResponse, FileHoldings, NodeResidency};

use crate::error::NodeError;
use crate::org_service::NodeCore;

/// The byte strings that betray the org's records in a file: its record keys, and the
/// caller's needles (empty ones skipped).
pub(crate) fn needles(org: &OrgId, extra: &[String]) -> Vec<Vec<u8>> {
    let mut needles = vec![format!("o/{org}").into_bytes(), format!("m/{org}/").into_bytes()];
    needles.extend(extra.iter().filter(|n| !n.is_empty()).map(|n| n.as_bytes().to_vec()));
    needles
}

/// What this node holds of `org`, as found on its own state and disk now.
pub(crate) async fn of_node(core: &NodeCore, org: &OrgId, extra: &[String]) -> Result<NodeResidency, NodeError> {
    let holdings = core.state.read_consistent(|view| state::holdings(view, org)).map_err(|e| core.storage(e))?;
    let reader = core.state.clone();
    let org_text = org.to_string();
    let needles = needles(org, extra);
    let scanned = tokio::task::spawn_blocking(move || -> Result<_, orgplane_store_sled::StoreError> {
        let log_entries = reader.log_entries_containing(org_text.as_bytes())?;
        let mut in_snapshot = false;
        for needle in &needles {
            in_snapshot |= reader.snapshot_contains(needle)?;
        }
        let files = reader.scan_files(&needles)?;
        Ok((log_entries, in_snapshot, files))
    })
    .await
    .map_err(|e| NodeError::Unavailable { region: core.region, reason: format!("the residency scan failed: {e}") })?
    .map_err(|e| core.storage(state::StorageFault(e.to_string())))?;
    let (log_entries, in_snapshot, hits) = scanned;
    let mut files: Vec<FileHoldings> = Vec::new();
    for hit in hits {
        let path = hit.path.display().to_string();
        match files.iter_mut().find(|f| f.path == path) {
            Some(file) => file.occurrences += hit.count,
            None => files.push(FileHoldings { path, occurrences: hit.count }),
        }
    }
    files.retain(|f| f.occurrences > 0);
    let forwarding = holdings.forwarding.as_ref().map(forwarding_to_wire);
    Ok(NodeResidency {
        region: core.region.to_string(),
        node_id: core.node_id,
        error: String::new(),
        state_records: holdings.records,
        forwarding: forwarding.is_some(),
        forwarding_region: forwarding.as_ref().map(|f| f.region.clone()).unwrap_or_default(),
        forwarding_epoch: forwarding.as_ref().map(|f| f.epoch).unwrap_or(0),
        move_record: holdings.move_record.is_some(),
        log_entries,
        in_snapshot,
        files,
        backups: 0,
    })
}

/// Builds a snapshot of everything committed when called (and at least `min_index`), purges
/// the log up to it, then rewrites the store's files with live data only. Bounded by `wait`.
pub(crate) async fn compact(core: &NodeCore, min_index: u64, wait: Duration) -> Result<CompactNodeResponse, NodeError> {
    let unavailable = |reason: String| NodeError::Unavailable { region: core.region, reason };
    let raft = &core.raft;
    // Everything committed before the call (the change whose bytes must go, say) is applied
    // here before the snapshot: a node still catching up would otherwise snapshot, purge and
    // rewrite its files before it applied the deletion, and keep the bytes.
    let committed = core.reader.linearize().await.map_err(|source| NodeError::Read { region: core.region, source })?;
    let target = committed.max(min_index);
    raft.wait(Some(wait))
        .applied_index_at_least(Some(target), "applied up to the compaction's index")
        .await
        .map_err(|e| unavailable(format!("node {} has not applied index {target}: {e}", core.node_id)))?;
    raft.trigger().snapshot().await.map_err(|e| unavailable(format!("cannot build a snapshot: {e}")))?;
    let metrics = raft
        .wait(Some(wait))
        .metrics(|m| m.snapshot.is_some_and(|s| s.index >= target), "a snapshot covering the compaction's index")
        .await
        .map_err(|e| unavailable(format!("no snapshot reached index {target}: {e}")))?;
    let snapshot_index = metrics.snapshot.map(|s| s.index).unwrap_or(0);
    raft.trigger().purge_log(snapshot_index).await.map_err(|e| unavailable(format!("cannot purge the log: {e}")))?;
    let metrics = raft
        .wait(Some(wait))
        .metrics(|m| m.purged.is_some_and(|p| p.index >= snapshot_index), "the log purged up to the snapshot")
        .await
        .map_err(|e| unavailable(format!("the log was not purged up to {snapshot_index}: {e}")))?;
    let purged_to = metrics.purged.map(|p| p.index).unwrap_or(0);
    let reader = core.state.clone();
    let report = tokio::task::spawn_blocking(move || reader.compact_files())
        .await
        .map_err(|e| unavailable(format!("the compaction task failed: {e}")))?
        .map_err(|e| core.storage(state::StorageFault(e.to_string())))?;
    tracing::info!(
        snapshot_index,
        purged_to,
        bytes_before = report.bytes_before,
        bytes_after = report.bytes_after,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "store compacted"
    );
    Ok(CompactNodeResponse {
        snapshot_index,
        purged_to,
        bytes_before: report.bytes_before,
        bytes_after: report.bytes_after,
    })
}
