//! The on-disk layout: one sled database, its trees and reserved keys, the JSON codec of the
//! Raft state and snapshot meta (log entries use orgplane-raft's codec), and the format record
//! that [`crate::open`] checks before anything else is read.
//!
//! | tree         | key                                   | value                              |
//! |--------------|---------------------------------------|------------------------------------|
//! | `meta`       | `format`                              | [`FORMAT_VERSION`]                 |
//! | `log`        | log index, 8 bytes big-endian         | `Entry` in orgplane-raft's codec   |
//! | `raft_state` | `vote`, `committed`, `last_purged`    | JSON `Vote` / `LogId`              |
//! | `snapshot`   | `current`                             | meta length, JSON meta, snapshot   |
//!
//! The state machine's state is in memory (`live`); on disk it is the current snapshot (whose
//! pairs are the model's keys, `o/..`, `m/..`, ..., and the reserved `\0last_applied` and
//! `\0last_membership`) plus the log after it.
//!
//! Big-endian index keys sort like the indexes, so sled's key order is log order.
//!
//! Beside sled's own entries (`conf`, `db`, `blobs/`, `snap.*`), the data dir may hold, outside
//! sled (see the `compact` module):
//!
//! | entry                  | what                                                           |
//! |------------------------|----------------------------------------------------------------|
//! | `compact.lock`         | empty; flock'ed by a compaction and by an open while it recovers |
//! | `.compact/`            | a compaction's new database, while it is built and swapped in  |
//! | `.compact/READY`       | marker: the new database is complete, the old one closed       |
//! | `.compact/MOVING`      | marker: the old files are removed, the new ones being moved    |

use std::io::ErrorKind;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::compact;
use crate::error::StoreError;

/// The on-disk format this build reads and writes. Bump it on any change to the layout or to
/// the encoding of a stored value; a store with another value is refused on open. (2: log
/// entries' commands carry their actor; the state gained roles, invitations, resources and the
/// audit log. 3: the state is no longer a tree of its own, only the snapshot and the log. 4:
/// log entries in orgplane-raft's binary codec.)
pub const FORMAT_VERSION: &str = "orgplane-store-sled/4";

/// Earlier formats that this build reads as they are, and restamps [`FORMAT_VERSION`] on open
/// (after which builds of those formats refuse the store). Format 3 differs only in its log
/// entries being JSON, which the codec still reads.
const UPGRADED_IN_PLACE: &[&str] = &["orgplane-store-sled/3"];

pub(crate) const META_TREE: &str = "meta";
pub(crate) const FORMAT_KEY: &[u8] = b"format";

pub(crate) const LOG_TREE: &str = "log";

pub(crate) const RAFT_STATE_TREE: &str = "raft_state";
pub(crate) const VOTE_KEY: &[u8] = b"vote";
pub(crate) const COMMITTED_KEY: &[u8] = b"committed";
pub(crate) const LAST_PURGED_KEY: &[u8] = b"last_purged";
/// In `raft_state`: a restore seeded this store without a membership; the restored last
/// applied log id, until the node's first start completes the restore (`finish_restore`).
pub(crate) const RESTORE_PENDING_KEY: &[u8] = b"restore_pending";

/// Reserved keys, for the applied pointers among a snapshot's pairs, start with byte 0. Model
/// keys start with an ASCII letter (`o/`, `m/`, `u/`, `r/`, `t/`), so the two can never collide;
/// the live state holds model keys only.
pub(crate) const LAST_APPLIED_KEY: &[u8] = b"\x00last_applied";
pub(crate) const LAST_MEMBERSHIP_KEY: &[u8] = b"\x00last_membership";
/// The smallest key a model key can be: every key below it is reserved.
pub(crate) const FIRST_MODEL_KEY: &[u8] = &[0x01];

pub(crate) const SNAPSHOT_TREE: &str = "snapshot";
/// The current snapshot: its meta and its bytes in one value, so one read sees a matching pair.
pub(crate) const SNAPSHOT_CURRENT_KEY: &[u8] = b"current";

/// Whether `key` is one of the state machine's own keys rather than a model key.
pub(crate) fn is_reserved_key(key: &[u8]) -> bool {
    key < FIRST_MODEL_KEY
}

/// The key of the log entry at `index`.
pub(crate) fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The trees of the database, opened once.
pub(crate) struct Trees {
    pub(crate) log: sled::Tree,
    pub(crate) raft_state: sled::Tree,
    pub(crate) snapshot: sled::Tree,
}

/// Opens the database in `dir`, checks (or, for a new store, writes) its format record, and
/// opens the trees. The format check comes before any other tree is opened or read. A
/// compaction that was interrupted is first completed or discarded, under the compaction lock.
pub(crate) fn open_database(dir: &Path) -> Result<(sled::Db, Trees), StoreError> {
    let _no_compaction_runs = compact::lock_compaction(dir)?;
    open_database_while_locked(dir)
}

/// [`open_database`], for a caller that holds the compaction lock already.
pub(crate) fn open_database_while_locked(dir: &Path) -> Result<(sled::Db, Trees), StoreError> {
    compact::finish_interrupted(dir)?;
    let db = open_when_unlocked(dir)?;
    check_or_write_format(&db, dir)?;
    let open = |name: &'static str| db.open_tree(name).map_err(StoreError::sled("opening a tree"));
    let trees = Trees { log: open(LOG_TREE)?, raft_state: open(RAFT_STATE_TREE)?, snapshot: open(SNAPSHOT_TREE)? };
    Ok((db, trees))
}

/// How long [`open_when_unlocked`] waits for sled's lock on the directory.
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// The longest pause between two attempts to take the lock.
const LOCK_RETRY_MAX_PAUSE: Duration = Duration::from_millis(50);

/// Opens the sled database, waiting up to [`LOCK_WAIT`] while its directory is locked.
///
/// sled holds an exclusive file lock until the last of its internal handles is gone, and its
/// IO threads can keep one for a moment after every handle of the store has been dropped (they
/// signal completion before releasing what they hold). So reopening a store in the same process
/// (a restarted node in a test) can briefly find it locked. sled offers nothing to wait on, so
/// this polls with growing pauses; a directory still locked after the wait is really in use.
fn open_when_unlocked(dir: &Path) -> Result<sled::Db, StoreError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match sled::Config::new().path(dir).open() {
            Err(e) if is_lock_conflict(&e) && started.elapsed() < LOCK_WAIT => {
                thread::sleep(pause);
                pause = (pause * 2).min(LOCK_RETRY_MAX_PAUSE);
            }
            Err(e) if is_lock_conflict(&e) => {
                return Err(StoreError::Locked { path: dir.to_path_buf(), waited: started.elapsed() })
            }
            opened => return opened.map_err(StoreError::sled("opening the database")),
        }
    }
}

/// Whether sled refused to open because another handle holds the directory's lock. sled 0.34
/// reports it only as an `Other` I/O error with this message.
fn is_lock_conflict(error: &sled::Error) -> bool {
    matches!(error, sled::Error::Io(e) if e.kind() == ErrorKind::Other && e.to_string().starts_with("could not acquire lock"))
}

/// Refuses a store of another format; stamps a new, empty store, or one of a format in
/// [`UPGRADED_IN_PLACE`], with [`FORMAT_VERSION`] and makes the stamp durable before returning.
fn check_or_write_format(db: &sled::Db, dir: &Path) -> Result<(), StoreError> {
    let meta = db.open_tree(META_TREE).map_err(StoreError::sled("opening the meta tree"))?;
    match meta.get(FORMAT_KEY).map_err(StoreError::sled("reading the format record"))? {
        Some(found) if found.as_ref() == FORMAT_VERSION.as_bytes() => Ok(()),
        Some(found) if UPGRADED_IN_PLACE.iter().any(|old| found.as_ref() == old.as_bytes()) => {
            tracing::info!(path = %dir.display(), from = %String::from_utf8_lossy(&found), to = FORMAT_VERSION, "upgrading the store's format in place");
            stamp_format(db, &meta)
        }
        Some(found) => Err(StoreError::FormatMismatch {
            path: dir.to_path_buf(),
            found: String::from_utf8_lossy(&found).into_owned(),
            expected: FORMAT_VERSION,
        }),
        None if holds_data(db)? => Err(StoreError::FormatMissing { path: dir.to_path_buf() }),
        None => stamp_format(db, &meta),
    }
}

fn stamp_format(db: &sled::Db, meta: &sled::Tree) -> Result<(), StoreError> {
    meta.insert(FORMAT_KEY, FORMAT_VERSION.as_bytes()).map_err(StoreError::sled("writing the format record"))?;
    db.flush().map_err(StoreError::sled("flushing the format record"))?;
    Ok(())
}

/// Whether the database holds anything besides an empty default tree and the meta tree: that
/// is, whether it was written by someone who did not stamp a format.
fn holds_data(db: &sled::Db) -> Result<bool, StoreError> {
    if !db.is_empty() {
        return Ok(true);
    }
    for name in db.tree_names() {
        if name.as_ref() == META_TREE.as_bytes() || name.as_ref() == b"__sled__default" {
            continue;
        }
        let tree = db.open_tree(&name).map_err(StoreError::sled("inspecting an unknown tree"))?;
        if !tree.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Serializes a stored value.
pub(crate) fn encode_json<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Encode { what, source })
}

/// Deserializes a stored value; a failure means the store is corrupt.
pub(crate) fn decode_json<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt { what, source })
}

/// Reads and decodes the value at `key`, if any.
pub(crate) fn read_json<T: DeserializeOwned>(
    tree: &sled::Tree,
    key: &[u8],
    what: &'static str,
) -> Result<Option<T>, StoreError> {
    match tree.get(key).map_err(StoreError::sled("reading a record"))? {
        Some(bytes) => decode_json(what, &bytes).map(Some),
        None => Ok(None),
    }
}
