//! The Raft log and vote: [`LogStore`] (openraft's `RaftLogStorage`) and [`LogReader`], the
//! clonable reader that replication tasks use.
//!
//! Durability: `save_vote` flushes before it returns; `append` writes the entries (readable at
//! once) and hands the callback to the store's group flusher (`flusher`), which calls it after
//! a flush that covers them. A compaction in between changes nothing: it copies every write
//! made before it, and the flush then covers the new database. `truncate`, `purge` and `save_committed` do not flush: losing one in a crash
//! only brings back state that Raft already tolerates (conflicting entries that the leader
//! truncates again, purged entries that are purged again, a lower committed index), and sled
//! recovers writes in order, so a later flush makes them durable together with what follows.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, Vote};
use orgplane_raft::{codec, NodeId, TypeConfig};

use crate::error::{to_raft, RaftStorageError, StoreError};
use crate::layout::{encode_json, log_key, read_json, COMMITTED_KEY, LAST_PURGED_KEY, VOTE_KEY};
use crate::shared::Shared;

/// The Raft log and vote, in the `log` and `raft_state` trees of the store's database.
///
/// Invariant: the log is contiguous from the first present entry to the last; appends extend
/// it, truncation removes a suffix and purging a prefix, each in one atomic sled batch.
///
/// Appends are completed by the store's group flusher (shared fsyncs are what make appends
/// cheap), which keeps working across a compaction: it flushes whichever database is current.
pub struct LogStore {
    shared: Arc<Shared>,
}

/// A read-only view of the log for replication tasks. Cheap to clone.
#[derive(Clone)]
pub struct LogReader {
    shared: Arc<Shared>,
}

impl LogStore {
    pub(crate) fn new(shared: Arc<Shared>) -> LogStore {
        LogStore { shared }
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, StoreError> {
        let db = self.shared.db()?;
        let last_purged_log_id: Option<LogId<NodeId>> =
            read_json(&db.trees.raft_state, LAST_PURGED_KEY, "last purged log id")?;
        let last_entry_log_id = last_entry_log_id(&db.trees.log)?;
        // After a crash between recording `last_purged` and removing the entries, entries at
        // or below it may remain; the larger of the two is the last log id either way.
        let last_log_id = last_entry_log_id.max(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    fn append_entries(&self, entries: impl IntoIterator<Item = Entry<TypeConfig>>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let value = codec::encode(&entry).map_err(|source| StoreError::EncodeEntry { source })?;
            batch.insert(&log_key(entry.log_id.index), value);
        }
        // One batch: a crash keeps all of this append or none of it, never a hole.
        self.shared.db()?.trees.log.apply_batch(batch).map_err(StoreError::sled("appending log entries"))
    }

    fn truncate_since(&self, index: u64) -> Result<(), StoreError> {
        let db = self.shared.db()?;
        let doomed = db.trees.log.range(log_key(index)..);
        remove_keys(&db.trees.log, doomed, "truncating the log")
    }

    fn purge_up_to(&self, log_id: &LogId<NodeId>) -> Result<(), StoreError> {
        // Invariant: `last_purged` is written before any entry is removed, so there is never a
        // moment (or a crash) where entries are gone but the log state does not say so.
        let record = encode_json("last purged log id", log_id)?;
        let db = self.shared.db()?;
        db.trees
            .raft_state
            .insert(LAST_PURGED_KEY, record)
            .map_err(StoreError::sled("recording the last purged log id"))?;
        let doomed = db.trees.log.range(..=log_key(log_id.index));
        remove_keys(&db.trees.log, doomed, "purging the log")
    }

    fn write_vote(&self, vote: &Vote<NodeId>) -> Result<(), StoreError> {
        let record = encode_json("vote", vote)?;
        self.shared.db()?.trees.raft_state.insert(VOTE_KEY, record).map_err(StoreError::sled("saving the vote"))?;
        Ok(())
    }

    fn write_committed(&self, committed: Option<&LogId<NodeId>>) -> Result<(), StoreError> {
        let db = self.shared.db()?;
        let written = match committed {
            Some(log_id) => db.trees.raft_state.insert(COMMITTED_KEY, encode_json("committed log id", log_id)?),
            None => db.trees.raft_state.remove(COMMITTED_KEY),
        };
        written.map(drop).map_err(StoreError::sled("saving the committed log id"))
    }

    fn read_raft_state<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>, StoreError> {
        read_json(&self.shared.db()?.trees.raft_state, key, what)
    }
}

/// Removes every key of `range` from `log` in one batch.
fn remove_keys(log: &sled::Tree, range: sled::Iter, action: &'static str) -> Result<(), StoreError> {
    let mut batch = sled::Batch::default();
    for key in range.keys() {
        batch.remove(key.map_err(StoreError::sled(action))?);
    }
    log.apply_batch(batch).map_err(StoreError::sled(action))
}

impl LogReader {
    fn entries(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry<TypeConfig>>, StoreError> {
        read_entries(&self.shared.db()?.trees.log, range)
    }
}

/// Reads the entries with index in `range`, in index order.
pub(crate) fn read_entries(
    log: &sled::Tree,
    range: impl RangeBounds<u64>,
) -> Result<Vec<Entry<TypeConfig>>, StoreError> {
    let keys = (range.start_bound().map(|i| log_key(*i)), range.end_bound().map(|i| log_key(*i)));
    if is_empty_range(&keys) {
        return Ok(Vec::new());
    }
    log.range(keys)
        .values()
        .map(|value| decode_entry(&value.map_err(StoreError::sled("reading log entries"))?))
        .collect()
}

/// Whether the key range can contain no key, such as `3..3`: answered without asking sled.
fn is_empty_range(keys: &(Bound<[u8; 8]>, Bound<[u8; 8]>)) -> bool {
    match keys {
        (Bound::Included(start), Bound::Included(end)) => start > end,
        (Bound::Included(start) | Bound::Excluded(start), Bound::Excluded(end)) => start >= end,
        (Bound::Excluded(start), Bound::Included(end)) => start >= end,
        _ => false,
    }
}

/// Decodes a stored log entry (binary, or JSON from format 3); a failure means corruption.
fn decode_entry(value: &[u8]) -> Result<Entry<TypeConfig>, StoreError> {
    codec::decode(value).map_err(|e| StoreError::CorruptRecord { what: "log entry", reason: e.to_string() })
}

/// The log id of the last entry.
fn last_entry_log_id(log: &sled::Tree) -> Result<Option<LogId<NodeId>>, StoreError> {
    match log.last().map_err(StoreError::sled("reading the last log entry"))? {
        Some((_, value)) => Ok(Some(decode_entry(&value)?.log_id)),
        None => Ok(None),
    }
}

fn read_logs_error(error: StoreError) -> RaftStorageError {
    to_raft(ErrorSubject::Logs, ErrorVerb::Read, &error)
}

fn write_logs_error(error: StoreError) -> RaftStorageError {
    to_raft(ErrorSubject::Logs, ErrorVerb::Write, &error)
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, RaftStorageError> {
        self.entries(range).map_err(read_logs_error)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, RaftStorageError> {
        read_entries(&self.shared.db().map_err(read_logs_error)?.trees.log, range).map_err(read_logs_error)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, RaftStorageError> {
        self.log_state().map_err(read_logs_error)
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader { shared: self.shared.clone() }
    }

    #[tracing::instrument(name = "store.save_vote", skip_all)]
    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), RaftStorageError> {
        let vote_error = |e: StoreError| to_raft(ErrorSubject::Vote, ErrorVerb::Write, &e);
        self.write_vote(vote).map_err(vote_error)?;
        // The contract: the vote is on disk before this returns.
        self.shared.flush("flushing the vote").await.map_err(vote_error)?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, RaftStorageError> {
        self.read_raft_state(VOTE_KEY, "vote").map_err(|e| to_raft(ErrorSubject::Vote, ErrorVerb::Read, &e))
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), RaftStorageError> {
        self.write_committed(committed.as_ref()).map_err(|e| to_raft(ErrorSubject::Store, ErrorVerb::Write, &e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, RaftStorageError> {
        self.read_raft_state(COMMITTED_KEY, "committed log id")
            .map_err(|e| to_raft(ErrorSubject::Store, ErrorVerb::Read, &e))
    }

    #[tracing::instrument(name = "store.append", skip_all)]
    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), RaftStorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // The entries are written (and readable) before the callback is queued, so the flush
        // that completes the callback covers them.
        self.append_entries(entries).map_err(write_logs_error)?;
        self.shared.notify_after_next_flush(callback).map_err(write_logs_error)
    }

    #[tracing::instrument(name = "store.truncate", skip_all, fields(index = log_id.index))]
    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), RaftStorageError> {
        self.truncate_since(log_id.index).map_err(|e| to_raft(ErrorSubject::Logs, ErrorVerb::Delete, &e))
    }

    #[tracing::instrument(name = "store.purge", skip_all, fields(index = log_id.index))]
    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), RaftStorageError> {
        self.purge_up_to(&log_id).map_err(|e| to_raft(ErrorSubject::Logs, ErrorVerb::Delete, &e))
    }
}
