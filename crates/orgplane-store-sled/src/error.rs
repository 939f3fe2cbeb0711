//! [`StoreError`]: what opening or using the store failed with, and its conversion into
//! openraft's [`StorageError`], which openraft treats as fatal for the node.

use std::path::PathBuf;

use openraft::{AnyError, ErrorSubject, ErrorVerb, LogId, StorageError, StorageIOError};
use orgplane_model::state::StorageFault;
use orgplane_raft::NodeId;

/// A failure of the sled store. Every variant says what was being done, so the message alone
/// points at the cause.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled itself failed (I/O error, corruption detected by sled, a bug report from sled).
    #[error("sled failed while {action}: {source}")]
    Sled { action: &'static str, source: sled::Error },

    /// The directory holds a store written in another on-disk format. Nothing was read or
    /// written besides the format record.
    #[error("store at {path} has on-disk format {found:?}, but this build reads only {expected:?}")]
    FormatMismatch { path: PathBuf, found: String, expected: &'static str },

    /// Another handle (in this process or another) still holds the directory after waiting.
    #[error("store at {path} is still locked by another handle after waiting {waited:?}; is another node using it?")]
    Locked { path: PathBuf, waited: std::time::Duration },

    /// The directory holds sled data but no format record, so it was not written by this crate
    /// (or by a version that predates the record). Refused rather than guessed at.
    #[error("store at {path} holds data but no format record; refusing to guess its format")]
    FormatMissing { path: PathBuf },

    /// A value could not be serialized.
    #[error("could not encode {what}: {source}")]
    Encode { what: &'static str, source: serde_json::Error },

    /// A log entry could not be encoded.
    #[error("could not encode a log entry: {source}")]
    EncodeEntry { source: orgplane_raft::codec::CodecError },

    /// A stored value could not be read back: the store is corrupt.
    #[error("corrupt {what}: {source}")]
    Corrupt { what: &'static str, source: serde_json::Error },

    /// A stored record does not have the shape the layout gives it: the store is corrupt.
    #[error("corrupt {what}: {reason}")]
    CorruptRecord { what: &'static str, reason: String },

    /// The state under the model failed while applying a log entry; the whole `apply` call
    /// wrote nothing.
    #[error("state machine fault while applying log index {}: {fault}", .log_id.index)]
    Apply { log_id: LogId<NodeId>, fault: StorageFault },

    /// A snapshot was refused before anything was changed: wrong format, failed checksum,
    /// truncated, or its data disagrees with its metadata.
    #[error("snapshot refused: {reason}")]
    SnapshotRefused { reason: String },

    /// A restore was asked to seed a store that already holds something.
    #[error("store at {path} is not pristine: its {tree} tree holds data; restore only into an empty data dir")]
    NotPristine { path: PathBuf, tree: &'static str },

    /// The store was restored without a membership, and nothing has given it one yet.
    #[error(
        "store at {path} holds a restored backup waiting for its cluster's membership: start it with \
         --peers (forming a new cluster), not --join"
    )]
    RestorePending { path: PathBuf },

    /// The background thread that flushes appended log entries is gone (it panicked).
    #[error("the log flusher thread is not running")]
    FlusherStopped,

    /// The background thread that flushes appended log entries could not be started.
    #[error("could not start the log flusher thread: {source}")]
    FlusherStart { source: std::io::Error },

    /// A flush of the database (shared with the log's group flush) failed.
    #[error("flush failed while {action}: {source}")]
    Flush { action: &'static str, source: std::io::Error },

    /// A file operation of compaction, of its recovery on open, or of a residency scan failed.
    #[error("{action} failed at {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },

    /// A compaction failed after the old database was closed, and the store could not be
    /// reopened; every operation fails until the node restarts (whose `open` finishes or
    /// discards the compaction).
    #[error("store at {path} is closed: a compaction could not reopen it")]
    Closed { path: PathBuf },

    /// A test stopped a compaction after `step`, as if the process had crashed there.
    #[doc(hidden)]
    #[error("compaction stopped after step {step:?} (test hook)")]
    CompactionInterrupted { step: crate::compact::CompactStep },
    /// A snapshot builder was asked for a second snapshot: it hands its one copy of the state
    /// to the first.
    #[error("a snapshot builder builds one snapshot, and this one already did")]
    BuilderSpent,
}

impl StoreError {
    /// Wraps a sled error with what was being done.
    pub(crate) fn sled(action: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
        move |source| StoreError::Sled { action, source }
    }

    /// Wraps an I/O error with what was being done, and where.
    pub(crate) fn io(action: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.to_path_buf();
        move |source| StoreError::Io { action, path, source }
    }
}

/// The openraft error type of the storage traits, for this crate's node id.
pub(crate) type RaftStorageError = StorageError<NodeId>;

/// Converts a [`StoreError`] into openraft's storage error for `subject` and `verb`. openraft
/// stops the node on any storage error: the store does not try to limp on.
pub(crate) fn to_raft(subject: ErrorSubject<NodeId>, verb: ErrorVerb, error: &StoreError) -> RaftStorageError {
    StorageIOError::new(subject, verb, AnyError::new(error)).into()
}
