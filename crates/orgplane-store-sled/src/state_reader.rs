//! [`StateReader`]: the node's read handle on the live state machine.
//!
//! The state is in memory behind a lock (see `shared`): an `apply` or snapshot install holds
//! it exclusively while its batch lands, a read holds it shared. One [`StateRead`] call on the
//! reader sees whole batches; a query that makes several calls (a scan, then a get per row)
//! gets the same guarantee through [`StateReader::read_consistent`].

use std::sync::{Arc, RwLockReadGuard};

use openraft::LogId;
use orgplane_model::state::{StateRead, StorageFault};
use orgplane_raft::NodeId;

use crate::backup::StateCopy;
use crate::compact::{self, CompactReport, CompactStep, StopAfter};
use crate::error::StoreError;
use crate::layout::SNAPSHOT_CURRENT_KEY;
use crate::live::LiveState;
use crate::residency::{self, FileHit};
use crate::shared::Shared;

/// A cheap, clonable read handle on the live state machine, for the node's queries. It sees
/// applied entries as soon as `apply` returns; after a restart it holds the state up to the
/// last committed id the log store saved, and may lag the last answered write until openraft
/// learns the rest is committed, so linearizable reads must still wait for the applied index.
///
/// It also holds the store's maintenance operations: online compaction
/// ([`StateReader::compact_files`]) and the residency scans ([`StateReader::scan_files`],
/// [`StateReader::log_entries_containing`], [`StateReader::snapshot_contains`]).
#[derive(Clone)]
pub struct StateReader {
    pub(crate) shared: Arc<Shared>,
}

/// A view in which no batch lands while it lives. Handed to the closure of
/// [`StateReader::read_consistent`].
pub struct ConsistentView<'a> {
    state: RwLockReadGuard<'a, LiveState>,
}

impl StateReader {
    pub(crate) fn new(shared: Arc<Shared>) -> StateReader {
        StateReader { shared }
    }

    /// Runs `query` against a view that no apply changes while it runs, for queries that make
    /// several reads (for example a page of a user's orgs, which scans an index and then reads
    /// each org). Keep `query` short and do not call this reader from inside it: a waiting
    /// apply blocks new readers, so a nested read could deadlock.
    pub fn read_consistent<T>(&self, query: impl FnOnce(&ConsistentView<'_>) -> T) -> T {
        let view = ConsistentView { state: self.shared.read_state() };
        query(&view)
    }

    /// A copy of the whole state machine (model data and applied pointers) for a backup, taken
    /// while no batch lands, so it is the state after exactly the entries up to its last
    /// applied id. Applies wait while the copy is taken (as they do for a Raft snapshot's
    /// copy), and reads that arrive behind a waiting apply wait too; nothing waits while the
    /// copy is streamed. Blocking: call it off the async runtime's threads.
    pub fn copy_state(&self) -> Result<StateCopy, StoreError> {
        StateCopy::of_state(&self.shared.read_state())
    }

    /// The id of the last log entry whose effects are in the state machine, or `None` before
    /// the first apply.
    pub fn last_applied(&self) -> Result<Option<LogId<NodeId>>, StoreError> {
        Ok(self.shared.read_state().last_applied)
    }

    /// The bytes the whole database (log, vote, state machine, snapshot) takes on disk, for
    /// metrics. 0 when sled cannot tell, which is logged.
    pub fn disk_size(&self) -> u64 {
        let size = self.shared.db().and_then(|db| db.db.size_on_disk().map_err(StoreError::sled("reading the size")));
        size.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not read the store's size on disk");
            0
        })
    }
}

/// Compaction and residency scans.
impl StateReader {
    /// Rewrites the store's files online so that they hold only live data: every tree is
    /// copied into a fresh database, which then replaces the old one's files in the data dir,
    /// and every handle of the store (log store, log readers, the flusher, state machine,
    /// snapshot builders, readers) goes on with it. Deleted values (a removed org's records,
    /// purged log entries, replaced snapshots) are gone from disk afterwards, which sled 0.34
    /// never does by itself.
    ///
    /// Blocking, and every store operation waits while it runs (for about the time it takes
    /// to copy the live data): call it off the async runtime's threads (`spawn_blocking`). A
    /// crash at any point leaves a store that [`crate::open`] completes or rolls back with
    /// every acknowledged write; see the `compact` module docs for the steps.
    pub fn compact_files(&self) -> Result<CompactReport, StoreError> {
        compact::compact(&self.shared, StopAfter(None))
    }

    /// [`StateReader::compact_files`], stopped after `step` as if the process had crashed
    /// there: the store is left closed (every operation fails with [`StoreError::Closed`])
    /// until its handles are dropped and it is opened again. For crash tests only.
    #[doc(hidden)]
    pub fn compact_files_crashing_after(&self, step: CompactStep) -> Result<CompactReport, StoreError> {
        compact::compact(&self.shared, StopAfter(Some(step)))
    }

    /// For every regular file under the store's directory (recursively) and every needle
    /// found in it, how many times the needle occurs (overlapping occurrences counted; an
    /// empty needle occurs nowhere). Files are streamed a chunk at a time, and occurrences
    /// across chunk boundaries are found. Hits are in path order, then needle order; a file
    /// with no needle in it has no hit.
    ///
    /// This looks at raw bytes, wherever sled keeps them: live values, deleted ones that no
    /// compaction has removed yet, snapshots. Blocking; it does not hold up store operations,
    /// but a compaction waits for it (and it for a compaction).
    #[tracing::instrument(name = "store.scan_files", skip_all)]
    pub fn scan_files(&self, needles: &[Vec<u8>]) -> Result<Vec<FileHit>, StoreError> {
        let _one_maintenance_at_a_time = self.shared.maintenance_lock();
        residency::scan_files(&self.shared.dir, needles)
    }

    /// How many stored log entries contain `needle` in their encoded bytes (an empty needle is
    /// in none). Blocking; reads the whole log.
    #[tracing::instrument(name = "store.scan_log", skip_all)]
    pub fn log_entries_containing(&self, needle: &[u8]) -> Result<u64, StoreError> {
        let _one_maintenance_at_a_time = self.shared.maintenance_lock();
        let db = self.shared.db()?;
        let mut count = 0;
        for value in db.trees.log.iter().values() {
            let value = value.map_err(StoreError::sled("scanning the log"))?;
            count += u64::from(residency::contains(&value, needle));
        }
        Ok(count)
    }

    /// Whether the stored current snapshot (its metadata and its data, as stored) contains
    /// `needle`; `false` when there is no snapshot or the needle is empty.
    #[tracing::instrument(name = "store.scan_snapshot", skip_all)]
    pub fn snapshot_contains(&self, needle: &[u8]) -> Result<bool, StoreError> {
        let _one_maintenance_at_a_time = self.shared.maintenance_lock();
        let db = self.shared.db()?;
        let record =
            db.trees.snapshot.get(SNAPSHOT_CURRENT_KEY).map_err(StoreError::sled("reading the current snapshot"))?;
        Ok(record.is_some_and(|record| residency::contains(&record, needle)))
    }
}

impl StateRead for StateReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageFault> {
        self.shared.read_state().get(key)
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageFault> {
        self.shared.read_state().scan(start, end, limit)
    }
}

impl StateRead for ConsistentView<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageFault> {
        self.state.get(key)
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageFault> {
        self.state.scan(start, end, limit)
    }
}
