//! orgplane's Raft storage on sled: the log, the vote and the snapshots of one region's Raft
//! group in ONE sled database, behind openraft's storage-v2 traits
//! ([`openraft::storage::RaftLogStorage`], [`openraft::storage::RaftStateMachine`]), so the
//! node could leave sled without touching the Raft layer.
//!
//! [`open`] returns the two halves openraft wants: a [`LogStore`] and a [`StateMachineStore`].
//! The node reads the state through a [`StateReader`].
//!
//! The state machine's state lives in memory and is made durable by the log and the current
//! snapshot, both in sled: an open decodes the snapshot and applies the committed log after it.
//! Applying a command writes nothing to disk; every node would otherwise write each command's
//! keys to sled (about half of a write's CPU when the state was a sled tree of its own).
//!
//! Layout:
//! - [`layout`]: the trees, the keys, the on-disk format record checked on open;
//! - `shared`: what the handles of one open store share: the database behind a lock that
//!   compaction takes exclusively (so every handle goes on with the new database), the group
//!   fsync thread (`flusher`) and the live state behind its lock;
//! - `log_store`: [`LogStore`] and [`LogReader`], with group fsync through `flusher`;
//! - `live`: the in-memory state, its snapshot encoding and how a batch lands in it;
//! - `state_machine`: [`StateMachineStore`] and [`SnapshotBuilder`]; each `apply` lands as one
//!   batch, built through `overlay` (the model's `StateWrite` over the live state), and
//!   `recover`, the state an open starts from;
//! - `snapshot_format`: the checksummed bytes of a snapshot;
//! - `state_reader`: [`StateReader`], the node's read handle;
//! - `backup`: [`StateCopy`], a backup's consistent copy of the state machine, and
//!   [`seed_from_backup`], which writes a fresh store from a backup's data, and [`finish_restore`];
//! - `compact`: online compaction ([`StateReader::compact_files`], [`CompactReport`]): the
//!   live data rewritten into fresh files swapped in place, and the recovery of an
//!   interrupted compaction on open;
//! - `residency`: read-only scans for an org's bytes: in every file under the data dir
//!   ([`StateReader::scan_files`], [`FileHit`]), in the stored log and in the current snapshot;
//! - [`error`]: [`StoreError`], the one error type, and its mapping to openraft's.

#![forbid(unsafe_code)]

use std::path::Path;

mod backup;
mod compact;
pub mod error;
mod flusher;
pub mod layout;
mod live;
mod log_store;
mod overlay;
mod residency;
mod shared;
mod snapshot_format;
mod state_machine;
mod state_reader;

pub use backup::{backup_data_format, finish_restore, seed_from_backup, SeededStore, StateCopy};
pub use compact::CompactReport;
#[doc(hidden)]
pub use compact::CompactStep;
pub use error::StoreError;
pub use layout::FORMAT_VERSION;
pub use log_store::{LogReader, LogStore};
pub use residency::FileHit;
pub use state_machine::{SnapshotBuilder, SnapshotObserver, StateMachineStore};
pub use state_reader::{ConsistentView, StateReader};

/// Opens (or creates) the store in `dir`. The on-disk format is checked before anything else is
/// read: a store written in another format is refused with [`StoreError::FormatMismatch`]. A
/// compaction that a crash interrupted is completed (or, if its new files were not complete,
/// discarded) first, and so is a snapshot install.
///
/// Starts the store's flusher thread; it stops when the last handle from this call is dropped.
/// The directory stays locked by sled until every handle from this call (including
/// [`StateReader`]s and [`LogReader`]s) is dropped.
pub fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    let (db, trees) = layout::open_database(dir)?;
    if trees.raft_state.contains_key(layout::RESTORE_PENDING_KEY).map_err(StoreError::sled("opening the store"))? {
        return Err(StoreError::RestorePending { path: dir.to_path_buf() });
    }
    let state = state_machine::recover(&trees)?;
    let shared = shared::Shared::start(dir, db, trees, state)?;
    Ok((LogStore::new(shared.clone()), StateMachineStore::new(shared)))
}
