//! orgplane's Raft storage on sled: the log, the vote and the state machine of one region's
//! Raft group in ONE sled database, behind openraft's storage-v2 traits
//! ([`openraft::storage::RaftLogStorage`], [`openraft::storage::RaftStateMachine`]), so the
//! node could leave sled without touching the Raft layer.
//!
//! [`open`] returns the two halves openraft wants: a [`LogStore`] and a [`StateMachineStore`].
//! The node reads the state through a [`StateReader`].
//!
//! One database, not two, on purpose: sled recovers writes in the order they were made, so the
//! state machine on disk is never ahead of the log it was applied from, and one flush makes
//! both durable.
//!
//! Layout:
//! - [`layout`]: the trees, the keys, the on-disk format record checked on open;
//! - `log_store`: [`LogStore`] and [`LogReader`], with group fsync through `flusher`;
//! - `state_machine`: [`StateMachineStore`] and [`SnapshotBuilder`]; each `apply` is one
//!   atomic batch, built through `overlay` (the model's `StateWrite` over the tree);
//! - `snapshot_format`: the checksummed bytes of a snapshot;
//! - `state_reader`: [`StateReader`], the node's read handle;
//! - `backup`: [`StateCopy`], a backup's consistent copy of the state machine, and
//!   [`seed_from_backup`], which writes a fresh store from a backup's data, and [`finish_restore`];
//! - [`error`]: [`StoreError`], the one error type, and its mapping to openraft's.

#![forbid(unsafe_code)]

use std::path::Path;

mod backup;
pub mod error;
mod flusher;
pub mod layout;
mod log_store;
mod overlay;
mod snapshot_format;
mod state_machine;
mod state_reader;

pub use backup::{backup_data_format, finish_restore, seed_from_backup, SeededStore, StateCopy};
pub use error::StoreError;
pub use layout::FORMAT_VERSION;
pub use log_store::{LogReader, LogStore};
pub use state_machine::{SnapshotBuilder, SnapshotObserver, StateMachineStore};
pub use state_reader::{ConsistentView, StateReader};

/// Opens (or creates) the store in `dir`. The on-disk format is checked before anything else is
/// read: a store written in another format is refused with [`StoreError::FormatMismatch`].
///
/// Starts the log's flusher thread; it stops when the [`LogStore`] is dropped. The directory
/// stays locked by sled until every handle from this call (including [`StateReader`]s and
/// [`LogReader`]s) is dropped.
pub fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    let (db, trees) = layout::open_database(dir)?;
    if trees.raft_state.contains_key(layout::RESTORE_PENDING_KEY).map_err(StoreError::sled("opening the store"))? {
        return Err(StoreError::RestorePending { path: dir.to_path_buf() });
    }
    let log_store = LogStore::new(db.clone(), trees.log, trees.raft_state)?;
    let state_machine = StateMachineStore::new(db, trees.sm, trees.snapshot);
    Ok((log_store, state_machine))
}
