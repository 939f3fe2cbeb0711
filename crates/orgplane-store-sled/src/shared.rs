//! [`Shared`]: what every handle of one open store shares: the database behind a lock that
//! compaction can take exclusively, the group flusher, and the live state of the state machine
//! behind its own lock.
//!
//! No handle keeps a `sled::Db` or `sled::Tree` of its own. Each store operation takes a
//! [`DbGuard`] (a shared lock on the current database) for as long as it uses sled, and
//! compaction takes the lock exclusively: it waits for the operations in flight, copies the
//! live data into fresh files, drops the old database completely, swaps the files and opens the
//! new database in the same slot. Every later operation of every handle (log store, log
//! readers, the flusher thread, state machine, snapshot builders, state readers) then uses the
//! new database. A guard is never held across an `.await`: a task parked while holding one
//! could keep compaction (and every operation queued behind it) waiting on a runtime whose
//! threads are all blocked.
//!
//! The live state ([`LiveState`]) is in memory and not in the database: reads and applies never
//! wait for a compaction. A batch lands under its write lock, so readers see whole batches.
//!
//! Lock order: the database guard first, then the snapshot save lock, then the state lock.
//! Compaction and the residency scans also serialize on `maintenance`, taken before the
//! database lock, so a long scan never holds a shared guard while compaction waits for it
//! (which would stall every operation queued behind compaction).

use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::async_runtime::AsyncOneshotSendExt;
use openraft::{AsyncRuntime, RaftTypeConfig};
use orgplane_raft::TypeConfig;

use crate::error::StoreError;
use crate::flusher::{FlushWaiter, GroupFlusher};
use crate::layout::Trees;
use crate::live::LiveState;

/// An open sled database and its trees.
pub(crate) struct OpenDb {
    pub(crate) db: sled::Db,
    pub(crate) trees: Trees,
}

/// The slot holding the current database. `None` only after a compaction that could not
/// reopen the store (or a simulated crash in a test); every operation then fails with
/// [`StoreError::Closed`].
pub(crate) type DbSlot = RwLock<Option<OpenDb>>;

/// What the handles of one open store share. Dropping the last handle stops the flusher thread
/// (which holds the slot too), then closes the database.
pub(crate) struct Shared {
    /// The store's directory, where compaction builds and swaps files.
    pub(crate) dir: PathBuf,
    /// The group fsync thread, for appends and every other flush. Declared before `slot`, so
    /// it is dropped first: its thread is joined, and with it goes the thread's own `Arc` of
    /// the slot, before the database is closed.
    flusher: GroupFlusher<Waiter>,
    /// The current database, swapped by compaction.
    slot: Arc<DbSlot>,
    /// The state machine's state. Written only by the state machine (one batch or one
    /// installed snapshot at a time), read by everyone.
    state: RwLock<LiveState>,
    /// Serializes writes of the current snapshot, so a slow build cannot replace a newer
    /// snapshot that an install or another build saved meanwhile.
    snapshot_save_lock: Mutex<()>,
    /// Serializes compaction with the residency scans (see the module docs).
    maintenance: Mutex<()>,
}

/// A shared lock on the current database, held for one store operation.
pub(crate) struct DbGuard<'a>(RwLockReadGuard<'a, Option<OpenDb>>);

impl Deref for DbGuard<'_> {
    type Target = OpenDb;

    fn deref(&self) -> &OpenDb {
        // Invariant: `Shared::db` makes a guard only over a slot that holds a database, and the
        // slot cannot change while the guard lives.
        self.0.as_ref().expect("a DbGuard is only made over an open database")
    }
}

/// Something the flusher thread tells after a flush: an append's callback, or an async flush.
pub(crate) enum Waiter {
    /// openraft's callback of an append.
    Append(openraft::storage::LogFlushed<TypeConfig>),
    /// A task awaiting [`Shared::flush`].
    Flush(<<TypeConfig as RaftTypeConfig>::AsyncRuntime as AsyncRuntime>::OneshotSender<io::Result<()>>),
}

impl FlushWaiter for Waiter {
    fn flush_done(self, result: io::Result<()>) {
        match self {
            Waiter::Append(callback) => callback.flush_done(result),
            // The receiver is gone only when its task was cancelled; nobody is left to tell.
            Waiter::Flush(sender) => drop(sender.send(result)),
        }
    }
}

impl Shared {
    /// Wraps the opened database of `dir` and starts the flusher thread.
    pub(crate) fn start(dir: &Path, db: sled::Db, trees: Trees, state: LiveState) -> Result<Arc<Shared>, StoreError> {
        let slot = Arc::new(RwLock::new(Some(OpenDb { db, trees })));
        let flushed = slot.clone();
        let flusher = GroupFlusher::start(move || flush_current(&flushed))?;
        Ok(Arc::new(Shared {
            dir: dir.to_path_buf(),
            flusher,
            slot,
            state: RwLock::new(state),
            snapshot_save_lock: Mutex::default(),
            maintenance: Mutex::default(),
        }))
    }

    /// A shared lock on the current database, for one operation. Waits while a compaction runs.
    pub(crate) fn db(&self) -> Result<DbGuard<'_>, StoreError> {
        let guard = self.slot.read().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            return Err(StoreError::Closed { path: self.dir.clone() });
        }
        Ok(DbGuard(guard))
    }

    /// The exclusive lock on the slot: no operation runs while it lives.
    pub(crate) fn db_exclusive(&self) -> RwLockWriteGuard<'_, Option<OpenDb>> {
        self.slot.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// A shared lock on the live state: no batch lands while it lives. Never hold one across
    /// an `.await`, nor ask for a second one while holding it: a waiting writer blocks new
    /// readers.
    pub(crate) fn read_state(&self) -> RwLockReadGuard<'_, LiveState> {
        // A panic while the lock was held cannot leave half a batch: batches land whole.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live state's lock itself, for the state machine's applies.
    pub(crate) fn state_lock(&self) -> &RwLock<LiveState> {
        &self.state
    }

    /// The exclusive lock on the live state, for landing a batch or replacing the state.
    pub(crate) fn write_state(&self) -> RwLockWriteGuard<'_, LiveState> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Held while the current snapshot is written.
    pub(crate) fn snapshot_save_lock(&self) -> MutexGuard<'_, ()> {
        // The mutex guards no data of its own; a panic elsewhere leaves nothing to repair.
        self.snapshot_save_lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Held by compaction and by the residency scans.
    pub(crate) fn maintenance_lock(&self) -> MutexGuard<'_, ()> {
        self.maintenance.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Calls `callback` after a flush that covers every write made before this call.
    pub(crate) fn notify_after_next_flush(
        &self,
        callback: openraft::storage::LogFlushed<TypeConfig>,
    ) -> Result<(), StoreError> {
        self.flusher.notify_after_next_flush(Waiter::Append(callback))
    }

    /// Makes every write made before this call durable, sharing the flusher thread's next
    /// flush. Async without holding a database guard: a compaction may run meanwhile, and the
    /// flush then covers the new database, which holds those writes.
    pub(crate) async fn flush(&self, action: &'static str) -> Result<(), StoreError> {
        let (sender, receiver) = <<TypeConfig as RaftTypeConfig>::AsyncRuntime as AsyncRuntime>::oneshot();
        self.flusher.notify_after_next_flush(Waiter::Flush(sender))?;
        match receiver.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(StoreError::Flush { action, source }),
            Err(_) => Err(StoreError::FlusherStopped),
        }
    }
}

/// The flusher thread's flush: of whichever database is current when it runs.
fn flush_current(slot: &DbSlot) -> io::Result<()> {
    let guard = slot.read().unwrap_or_else(PoisonError::into_inner);
    match guard.as_ref() {
        Some(open) => open.db.flush().map(drop).map_err(io::Error::from),
        None => Err(io::Error::other("the store is closed: a compaction could not reopen it")),
    }
}
