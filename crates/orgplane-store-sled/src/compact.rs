//! Online compaction of the store's files (like `etcdctl defrag`), and the recovery of an
//! interrupted one when the store is opened.
//!
//! sled 0.34 is log-structured and never punches holes: a deleted value stays in its segment
//! files. Compaction rewrites the database into fresh files that hold only live data:
//!
//! | step | what                                                                                  |
//! |------|---------------------------------------------------------------------------------------|
//! | 1    | with every operation drained (the slot's exclusive lock), copy every tree into a new database in `DIR/.compact/`, flush it, close it, fsync its files and directories |
//! | 2    | close the old database and wait until sled has released it                             |
//! | 3    | write `DIR/.compact/READY`, fsync it and the directories                               |
//! | 4    | remove the old database's files from `DIR` (`conf`, `db`, `blobs/`, `snap.*`), fsync    |
//! | 5    | rename `READY` to `MOVING`, fsync                                                      |
//! | 6    | move every entry of `DIR/.compact/` into `DIR`, fsync                                   |
//! | 7    | remove `MOVING` and `DIR/.compact/`, fsync; open the new database in the slot          |
//!
//! The data dir itself may be a mount point, so it is never renamed; only sled's own entries
//! in it are touched, never anything else there. A crash at any point leaves a store that
//! [`finish_interrupted`] (run by every open, before sled opens the directory) completes:
//! without a marker the new database may be incomplete, and the old one is untouched, so the
//! new one is discarded; with `READY` the new one is complete and the old one closed, never to
//! be written again, so the old files are removed (again) and the new ones moved; with
//! `MOVING` the old files are gone, so the remaining new ones are moved. Every step is
//! idempotent under its marker.
//!
//! `DIR/compact.lock` (an empty file, flock'ed) is held by a compaction from start to end and
//! by every open while it recovers and opens sled, so neither a second open nor its recovery
//! ever touches a store while another compacts it.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use fs2::FileExt;

use crate::error::StoreError;
use crate::layout;
use crate::shared::{OpenDb, Shared};

/// The directory inside the data dir where compaction builds the new database.
pub(crate) const COMPACT_DIR: &str = ".compact";
/// In [`COMPACT_DIR`]: the new database is complete and closed, the old one closed.
const READY_MARKER: &str = "READY";
/// In [`COMPACT_DIR`]: the old database's files are gone; the new ones are being moved.
const MOVING_MARKER: &str = "MOVING";
/// In the data dir: the lock held by a compaction, and by an open while it recovers.
pub(crate) const COMPACT_LOCK_FILE: &str = "compact.lock";

/// How many pairs go into one batch of the copy.
const COPY_BATCH_PAIRS: usize = 1024;
/// How long compaction and open wait for the compaction lock held by someone else.
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// How long compaction waits for sled to let go of a database it closed itself: longer than
/// [`LOCK_WAIT`], as nobody else holds it, and sled's last background work may take a while.
const CLOSE_WAIT: Duration = Duration::from_secs(60);
/// The longest pause between two attempts to take a file lock.
const LOCK_RETRY_MAX_PAUSE: Duration = Duration::from_millis(50);

/// What a compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactReport {
    /// The bytes of every file under the data dir before the compaction.
    pub bytes_before: u64,
    /// The bytes of every file under the data dir after it: the live data's files.
    pub bytes_after: u64,
    /// How long the compaction took, of which the store's operations waited all but the
    /// final size count.
    pub elapsed: Duration,
}

/// A point in the compaction (see the module docs) after which a test can stop it, as if the
/// process had crashed there. Not for production use.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactStep {
    /// Step 1 done: the new database is complete in `.compact/`, without a marker.
    NewDatabaseWritten,
    /// Step 3 done: `READY` written; the old files are all still there.
    MarkedReady,
    /// During step 4: one old entry removed, others still there.
    OldFilesPartlyRemoved,
    /// Step 4 done.
    OldFilesRemoved,
    /// Step 5 done.
    MarkedMoving,
    /// During step 6: one new entry moved, others still in `.compact/`.
    NewFilesPartlyMoved,
    /// Step 6 done; `.compact/` still holds `MOVING`.
    NewFilesMoved,
}

/// Where a compaction stops early, in tests.
#[derive(Clone, Copy)]
pub(crate) struct StopAfter(pub(crate) Option<CompactStep>);

impl StopAfter {
    fn check(self, step: CompactStep) -> Result<(), StoreError> {
        if self.0 == Some(step) {
            tracing::warn!(?step, "compaction stopped by the test hook");
            return Err(StoreError::CompactionInterrupted { step });
        }
        Ok(())
    }
}

/// Compacts the store's files online: see the module docs. Blocking; drains and then blocks
/// every store operation until the new database is open.
#[tracing::instrument(name = "store.compact", skip_all, fields(dir = %shared.dir.display()))]
pub(crate) fn compact(shared: &Shared, stop: StopAfter) -> Result<CompactReport, StoreError> {
    let started = Instant::now();
    let _one_maintenance_at_a_time = shared.maintenance_lock();
    let dir = shared.dir.as_path();
    let _no_open_recovers = lock_compaction(dir)?;
    let bytes_before = bytes_under(dir)?;
    let mut slot = shared.db_exclusive();
    let Some(old) = slot.take() else { return Err(StoreError::Closed { path: dir.to_path_buf() }) };

    if let Err(e) = build_new_database(&old.db, dir) {
        // Nothing of the old database was touched: go on with it, without the partial copy.
        *slot = Some(old);
        remove_staging(dir)?;
        return Err(e);
    }
    if let Err(e) = stop.check(CompactStep::NewDatabaseWritten) {
        drop(old);
        return Err(e);
    }
    drop(old);
    let swapped = wait_until_closed(dir).and_then(|()| swap_files(dir, stop));
    match swapped {
        Ok(()) => *slot = Some(reopen(dir)?),
        Err(e @ StoreError::CompactionInterrupted { .. }) => return Err(e),
        Err(e) => {
            // Finish or undo what the markers say, as the next open would, and go on.
            tracing::error!(error = %e, "compaction failed after closing the old database; recovering");
            *slot = Some(finish_interrupted(dir).and_then(|()| reopen(dir))?);
            return Err(e);
        }
    }
    drop(slot);
    let report = CompactReport { bytes_before, bytes_after: bytes_under(dir)?, elapsed: started.elapsed() };
    tracing::info!(bytes_before, bytes_after = report.bytes_after, elapsed = ?report.elapsed, "store compacted");
    Ok(report)
}

/// Opens the swapped-in database. The caller holds the compaction lock.
fn reopen(dir: &Path) -> Result<OpenDb, StoreError> {
    let (db, trees) = layout::open_database_while_locked(dir)?;
    Ok(OpenDb { db, trees })
}

/// Step 1: copies every tree of `old` into a new database in the staging directory, then
/// closes it and makes every file and directory of it durable.
fn build_new_database(old: &sled::Db, dir: &Path) -> Result<(), StoreError> {
    let staging = dir.join(COMPACT_DIR);
    remove_staging(dir)?;
    fs::create_dir(&staging).map_err(StoreError::io("creating the compaction directory", &staging))?;
    let new = sled::Config::new().path(&staging).open().map_err(StoreError::sled("creating the compacted database"))?;
    for name in old.tree_names() {
        let from = old.open_tree(&name).map_err(StoreError::sled("opening a tree to compact"))?;
        let to = new.open_tree(&name).map_err(StoreError::sled("creating a compacted tree"))?;
        copy_tree(&from, &to)?;
    }
    new.flush().map_err(StoreError::sled("flushing the compacted database"))?;
    drop(new);
    wait_until_closed(&staging)?;
    sync_tree(&staging)?;
    sync_dir(dir)
}

/// Copies every pair of `from` into `to`, a bounded batch at a time.
fn copy_tree(from: &sled::Tree, to: &sled::Tree) -> Result<(), StoreError> {
    let mut batch = sled::Batch::default();
    let mut pairs = 0;
    for pair in from.iter() {
        let (key, value) = pair.map_err(StoreError::sled("reading a tree to compact"))?;
        batch.insert(key, value);
        pairs += 1;
        if pairs == COPY_BATCH_PAIRS {
            to.apply_batch(std::mem::take(&mut batch)).map_err(StoreError::sled("writing a compacted tree"))?;
            pairs = 0;
        }
    }
    to.apply_batch(batch).map_err(StoreError::sled("writing a compacted tree"))
}

/// Steps 3 to 7 (but the open): the old database is closed and the new one complete.
fn swap_files(dir: &Path, stop: StopAfter) -> Result<(), StoreError> {
    let staging = dir.join(COMPACT_DIR);
    write_marker(&staging, READY_MARKER)?;
    sync_dir(dir)?;
    stop.check(CompactStep::MarkedReady)?;
    remove_old_files(dir, stop)?;
    stop.check(CompactStep::OldFilesRemoved)?;
    mark_moving(&staging)?;
    stop.check(CompactStep::MarkedMoving)?;
    move_new_files(dir, stop)?;
    stop.check(CompactStep::NewFilesMoved)?;
    remove_staging(dir)
}

/// Completes or discards a compaction that was interrupted (a crash, or a failure after the
/// old database was closed), as its marker says; see the module docs. Does nothing when no
/// compaction was under way. The caller holds the compaction lock.
pub(crate) fn finish_interrupted(dir: &Path) -> Result<(), StoreError> {
    let staging = dir.join(COMPACT_DIR);
    if !staging.exists() {
        return Ok(());
    }
    let no_stop = StopAfter(None);
    if staging.join(MOVING_MARKER).exists() {
        tracing::warn!(dir = %dir.display(), "finishing an interrupted compaction: moving the new files in");
        move_new_files(dir, no_stop)?;
    } else if staging.join(READY_MARKER).exists() {
        tracing::warn!(dir = %dir.display(), "finishing an interrupted compaction: replacing the old files");
        // A database closed by a crash in this same process may still be letting go of them.
        wait_until_closed(dir)?;
        remove_old_files(dir, no_stop)?;
        mark_moving(&staging)?;
        move_new_files(dir, no_stop)?;
    } else {
        tracing::warn!(dir = %dir.display(), "discarding an interrupted compaction: the old files are whole");
    }
    remove_staging(dir)
}

/// Whether `name` is one of the entries sled keeps in its directory.
fn is_sled_entry(name: &str) -> bool {
    matches!(name, "conf" | "db" | "blobs") || name.starts_with("snap.")
}

/// Step 4: removes sled's entries from the data dir, then makes that durable.
fn remove_old_files(dir: &Path, stop: StopAfter) -> Result<(), StoreError> {
    for entry in sled_entries(dir)? {
        let removed = if entry.is_dir() { fs::remove_dir_all(&entry) } else { fs::remove_file(&entry) };
        match removed {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(StoreError::io("removing an old database file", &entry)(e));
            }
            _ => {}
        }
        if let Err(e) = stop.check(CompactStep::OldFilesPartlyRemoved) {
            sync_dir(dir)?;
            return Err(e);
        }
    }
    sync_dir(dir)
}

/// sled's entries in `dir`, in name order.
fn sled_entries(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(StoreError::io("listing the data dir", dir))? {
        let entry = entry.map_err(StoreError::io("listing the data dir", dir))?;
        if entry.file_name().to_str().is_some_and(is_sled_entry) {
            entries.push(entry.path());
        }
    }
    entries.sort();
    Ok(entries)
}

/// Step 5: `READY` becomes `MOVING`, durably.
fn mark_moving(staging: &Path) -> Result<(), StoreError> {
    let ready = staging.join(READY_MARKER);
    fs::rename(&ready, staging.join(MOVING_MARKER)).map_err(StoreError::io("marking the compaction moving", &ready))?;
    sync_dir(staging)
}

/// Step 6: moves every entry of the staging directory but the marker into the data dir.
fn move_new_files(dir: &Path, stop: StopAfter) -> Result<(), StoreError> {
    let staging = dir.join(COMPACT_DIR);
    let mut entries = Vec::new();
    for entry in fs::read_dir(&staging).map_err(StoreError::io("listing the compacted database", &staging))? {
        let entry = entry.map_err(StoreError::io("listing the compacted database", &staging))?;
        if entry.file_name() != MOVING_MARKER {
            entries.push(entry.file_name());
        }
    }
    entries.sort();
    for name in entries {
        let from = staging.join(&name);
        fs::rename(&from, dir.join(&name)).map_err(StoreError::io("moving a compacted file into place", &from))?;
        if let Err(e) = stop.check(CompactStep::NewFilesPartlyMoved) {
            sync_dir(dir)?;
            return Err(e);
        }
    }
    sync_dir(dir)
}

/// Step 7 (and discarding): removes the staging directory, durably.
fn remove_staging(dir: &Path) -> Result<(), StoreError> {
    let staging = dir.join(COMPACT_DIR);
    match fs::remove_dir_all(&staging) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io("removing the compaction directory", &staging)(e)),
    }
}

/// Creates the empty marker `name` in `staging`, durably.
fn write_marker(staging: &Path, name: &str) -> Result<(), StoreError> {
    let path = staging.join(name);
    let marker = File::create(&path).map_err(StoreError::io("writing a compaction marker", &path))?;
    marker.sync_all().map_err(StoreError::io("syncing a compaction marker", &path))?;
    sync_dir(staging)
}

/// fsyncs a directory, so the entries created, renamed or removed in it are durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(StoreError::io("syncing a directory", dir))
}

/// fsyncs every file and directory under `root`, and `root` itself.
fn sync_tree(root: &Path) -> Result<(), StoreError> {
    for entry in fs::read_dir(root).map_err(StoreError::io("listing a directory to sync", root))? {
        let path = entry.map_err(StoreError::io("listing a directory to sync", root))?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            File::open(&path).and_then(|f| f.sync_all()).map_err(StoreError::io("syncing a file", &path))?;
        }
    }
    sync_dir(root)
}

/// The bytes of every regular file under `root`.
fn bytes_under(root: &Path) -> Result<u64, StoreError> {
    let mut total = 0;
    for file in crate::residency::regular_files(root)? {
        total += file.len;
    }
    Ok(total)
}

/// Takes the compaction lock of `dir`, waiting up to [`LOCK_WAIT`] for whoever holds it.
pub(crate) fn lock_compaction(dir: &Path) -> Result<File, StoreError> {
    // A new store's directory may not exist yet (sled would create it).
    fs::create_dir_all(dir).map_err(StoreError::io("creating the data dir", dir))?;
    let path = dir.join(COMPACT_LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(StoreError::io("opening the compaction lock", &path))?;
    wait_for_lock(&file, dir, LOCK_WAIT)?;
    Ok(file)
}

/// Waits until no sled instance holds the database in `dir` (sled locks its `db` file, and
/// releases it only when the last of its threads let go of it): after this, nothing of that
/// database writes in `dir` any more.
fn wait_until_closed(dir: &Path) -> Result<(), StoreError> {
    let path = dir.join("db");
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io("opening the database file", &path)(e)),
    };
    wait_for_lock(&file, dir, CLOSE_WAIT)?;
    FileExt::unlock(&file).map_err(StoreError::io("releasing the database file", &path))
}

/// Takes an exclusive flock on `file`, polling with growing pauses for up to `wait` (the
/// holder may be sled's own threads, which offer nothing to wait on).
fn wait_for_lock(file: &File, dir: &Path, wait: Duration) -> Result<(), StoreError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match file.try_lock_exclusive() {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() != fs2::lock_contended_error().kind() => {
                return Err(StoreError::io("locking", dir)(e));
            }
            Err(_) if started.elapsed() < wait => {
                thread::sleep(pause);
                pause = (pause * 2).min(LOCK_RETRY_MAX_PAUSE);
            }
            Err(_) => return Err(StoreError::Locked { path: dir.to_path_buf(), waited: started.elapsed() }),
        }
    }
}
