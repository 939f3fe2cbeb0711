//! [`StateReader`]: the node's read handle on the live state machine, and the model-key reads
//! it shares with the apply overlay.
//!
//! sled has no point-in-time snapshots, and one sled scan can straddle a batch (it takes sled's
//! internal read guard per step, not per scan). So the state machine and its readers share a
//! lock: an `apply` or snapshot install holds it exclusively while its batch lands, a read
//! holds it shared. One [`StateRead`] call on the reader sees whole batches; a query that makes
//! several calls (a scan, then a get per row) gets the same guarantee through
//! [`StateReader::read_consistent`].

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use openraft::LogId;
use orgplane_model::state::{StateRead, StorageFault};
use orgplane_raft::NodeId;

use crate::backup::StateCopy;
use crate::error::StoreError;
use crate::layout::{is_reserved_key, read_json, FIRST_MODEL_KEY, LAST_APPLIED_KEY};

/// Serializes batch writes to the state machine tree against reads of it. It guards no data of
/// its own, so a poisoned lock (a panic elsewhere) is simply taken over.
#[derive(Clone, Default)]
pub(crate) struct ApplyLock(Arc<RwLock<()>>);

impl ApplyLock {
    /// Held by writers while a batch lands in the tree.
    pub(crate) fn write(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> RwLockReadGuard<'_, ()> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A cheap, clonable read handle on the live state machine (the `sm` tree), for the node's
/// queries. It sees applied entries as soon as `apply` returns; after a restart it may lag the
/// last answered write until openraft re-applies the committed log (see the state machine's
/// durability notes), so linearizable reads must still wait for the applied index.
#[derive(Clone)]
pub struct StateReader {
    db: sled::Db,
    sm: sled::Tree,
    lock: ApplyLock,
}

/// A view in which no batch lands while it lives. Handed to the closure of
/// [`StateReader::read_consistent`].
pub struct ConsistentView<'a> {
    sm: &'a sled::Tree,
    _no_batch_lands: RwLockReadGuard<'a, ()>,
}

impl StateReader {
    pub(crate) fn new(db: sled::Db, sm: sled::Tree, lock: ApplyLock) -> StateReader {
        StateReader { db, sm, lock }
    }

    /// Runs `query` against a view that no apply changes while it runs, for queries that make
    /// several reads (for example a page of a user's orgs, which scans an index and then reads
    /// each org). Keep `query` short and do not call this reader from inside it: a waiting
    /// apply blocks new readers, so a nested read could deadlock.
    pub fn read_consistent<T>(&self, query: impl FnOnce(&ConsistentView<'_>) -> T) -> T {
        let view = ConsistentView { sm: &self.sm, _no_batch_lands: self.lock.read() };
        query(&view)
    }

    /// A copy of the whole state machine (model data and applied pointers) for a backup, taken
    /// while no batch lands, so it is the state after exactly the entries up to its last
    /// applied id. sled has no point-in-time snapshots and a plain scan could straddle a
    /// batch; the lock is what makes the copy consistent. Applies wait while the copy is
    /// taken (as they do for a Raft snapshot's copy), and reads that arrive behind a waiting
    /// apply wait too; nothing waits while the copy is streamed. Blocking: call it off the
    /// async runtime's threads.
    pub fn copy_state(&self) -> Result<StateCopy, StoreError> {
        let _no_batch_lands = self.lock.read();
        StateCopy::of_tree(&self.sm)
    }

    /// The id of the last log entry whose effects are in the state machine, or `None` before
    /// the first apply.
    pub fn last_applied(&self) -> Result<Option<LogId<NodeId>>, StoreError> {
        read_json(&self.sm, LAST_APPLIED_KEY, "last applied log id")
    }

    /// The bytes the whole database (log, vote, state machine, snapshot) takes on disk, for
    /// metrics. 0 when sled cannot tell, which is logged.
    pub fn disk_size(&self) -> u64 {
        self.db.size_on_disk().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not read the store's size on disk");
            0
        })
    }
}

impl StateRead for StateReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageFault> {
        let _no_batch_lands = self.lock.read();
        read_model_key(&self.sm, key)
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageFault> {
        let _no_batch_lands = self.lock.read();
        scan_model_range(&self.sm, start, end, limit)
    }
}

impl StateRead for ConsistentView<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageFault> {
        read_model_key(self.sm, key)
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageFault> {
        scan_model_range(self.sm, start, end, limit)
    }
}

/// Reads a model key. Reserved keys are not part of the model's state and read as absent.
pub(crate) fn read_model_key(tree: &sled::Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StorageFault> {
    if is_reserved_key(key) {
        return Ok(None);
    }
    Ok(tree.get(key).map_err(sled_fault)?.map(|value| value.to_vec()))
}

/// Key-value pairs in key order, as the model's `scan` returns them.
pub(crate) type ModelPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Scans model keys in `start..end`, in key order, at most `limit` of them.
pub(crate) fn scan_model_range(
    tree: &sled::Tree,
    start: &[u8],
    end: &[u8],
    limit: usize,
) -> Result<ModelPairs, StorageFault> {
    let start = model_scan_start(start);
    if start >= end {
        return Ok(Vec::new());
    }
    tree.range(start..end)
        .take(limit)
        .map(|pair| pair.map(|(key, value)| (key.to_vec(), value.to_vec())).map_err(sled_fault))
        .collect()
}

/// Where a model scan from `start` begins: never below the first model key, so reserved keys
/// stay invisible to the model.
pub(crate) fn model_scan_start(start: &[u8]) -> &[u8] {
    start.max(FIRST_MODEL_KEY)
}

pub(crate) fn sled_fault(error: sled::Error) -> StorageFault {
    StorageFault(format!("sled: {error}"))
}
