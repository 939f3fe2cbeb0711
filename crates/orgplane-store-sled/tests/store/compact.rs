//! Online compaction: deleted bytes leave the files, live data stays readable through the
//! handles that existed before and after a reopen, nothing acknowledged is lost to concurrent
//! writes, and a crash at any step leaves a store that opens with all of its data.

use std::io::Cursor;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine, Snapshot};
use openraft::{Entry, RaftLogReader, RaftSnapshotBuilder, Vote};
use orgplane_model::state::get_org;
use orgplane_model::Op;
use orgplane_raft::TypeConfig;
use orgplane_store_sled::{CompactStep, LogStore, StateMachineStore, StateReader, StoreError};
use tempfile::TempDir;

use crate::support::{blank, cmd, dump, fresh_store, log_id, normal, org_id, reopen};

/// The name of the org that leaves: found nowhere else in a store's files.
const MARKER: &str = "departed-org-zq7f3a9c41";

/// A store whose marker org was live (in the state, the log and the current snapshot) and
/// then deleted everywhere the store can delete it: the state and the current snapshot
/// replaced by a snapshot without it, the log purged past its entry.
struct Departed {
    dir: TempDir,
    log: LogStore,
    sm: StateMachineStore,
    reader: StateReader,
    expected: Expected,
}

/// What a store of [`departed`] must still hold besides the keeper org and the vote.
struct Expected {
    /// The log entries that remain (from index 3).
    entries: Vec<Entry<TypeConfig>>,
    /// The snapshot that replaced the marker's.
    snapshot: Snapshot<TypeConfig>,
}

async fn departed() -> Departed {
    let marker_org = || normal(1, 1, vec![cmd("m", 1_000, Op::CreateOrg { id: org_id(1), name: MARKER.into() })]);
    let keeper_org = || normal(1, 3, vec![cmd("k", 1_001, Op::CreateOrg { id: org_id(2), name: "Keeper".into() })]);
    let with_marker = snapshot_of(vec![marker_org()]).await;
    let without_marker = snapshot_of(vec![blank(1, 1), blank(1, 2), keeper_org()]).await;

    let (dir, mut log, mut sm) = fresh_store();
    let entries = vec![marker_org(), blank(1, 2), keeper_org(), blank(1, 4)];
    log.save_vote(&Vote::new(1, 1)).await.unwrap();
    log.blocking_append(entries.clone()).await.unwrap();
    install(&mut sm, &with_marker).await;
    let reader = sm.state_reader();
    assert_eq!(get_org(&reader, &org_id(1)).unwrap().map(|org| org.name), Some(MARKER.to_string()));
    assert_eq!(reader.log_entries_containing(MARKER.as_bytes()).unwrap(), 1);
    assert!(reader.snapshot_contains(MARKER.as_bytes()).unwrap());

    install(&mut sm, &without_marker).await;
    log.purge(log_id(1, 2)).await.unwrap();
    assert_eq!(get_org(&reader, &org_id(1)).unwrap(), None);
    assert_eq!(reader.log_entries_containing(MARKER.as_bytes()).unwrap(), 0);
    assert!(!reader.snapshot_contains(MARKER.as_bytes()).unwrap());
    let expected = Expected { entries: entries[2..].to_vec(), snapshot: without_marker };
    Departed { dir, log, sm, reader, expected }
}

/// A snapshot of a state machine that applied `entries`, built on a store of its own.
async fn snapshot_of(entries: Vec<Entry<TypeConfig>>) -> Snapshot<TypeConfig> {
    let (_dir, _log, mut sm) = fresh_store();
    sm.apply(entries).await.unwrap();
    sm.get_snapshot_builder().await.build_snapshot().await.unwrap()
}

async fn install(sm: &mut StateMachineStore, snapshot: &Snapshot<TypeConfig>) {
    let mut received = sm.begin_receiving_snapshot().await.unwrap();
    *received = Cursor::new(snapshot.snapshot.get_ref().clone());
    sm.install_snapshot(&snapshot.meta, received).await.unwrap();
}

/// How many times the marker occurs in the store's files, all of them counted.
fn marker_bytes_on_disk(reader: &StateReader) -> u64 {
    reader.scan_files(&[MARKER.as_bytes().to_vec()]).unwrap().iter().map(|hit| hit.count).sum()
}

/// Everything a store of [`departed`] must still hold: the keeper org, the vote, the kept log
/// entries and purge point, the applied state and the current snapshot.
async fn assert_live_data_intact(expected: &Expected, log: &mut LogStore, sm: &mut StateMachineStore) {
    let reader = sm.state_reader();
    assert_eq!(get_org(&reader, &org_id(2)).unwrap().map(|org| org.name), Some("Keeper".to_string()));
    assert_eq!(get_org(&reader, &org_id(1)).unwrap(), None);
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(1, 1)));
    assert_eq!(log.try_get_log_entries(0..10).await.unwrap(), expected.entries);
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 2)));
    assert_eq!(state.last_log_id, expected.entries.last().map(|entry| entry.log_id));
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1, 3)));
    let current = sm.get_current_snapshot().await.unwrap().expect("the current snapshot stays");
    assert_eq!(current.meta, expected.snapshot.meta);
    assert_eq!(current.snapshot.get_ref(), expected.snapshot.snapshot.get_ref());
}

fn no_compaction_left(dir: &Path) {
    assert!(!dir.join(".compact").exists(), "the compaction directory is gone");
}

/// The names in the data dir: after a compaction, sled's own entries and the lock only.
fn only_sled_entries_and_the_lock(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let sled_or_lock =
            ["conf", "db", "blobs", "compact.lock"].contains(&name.as_str()) || name.starts_with("snap.");
        assert!(sled_or_lock, "unexpected entry {name} in the data dir");
    }
}

#[tokio::test]
async fn compaction_removes_deleted_bytes_and_keeps_live_data_for_every_handle() {
    let Departed { dir, mut log, mut sm, reader, mut expected } = departed().await;
    assert!(marker_bytes_on_disk(&reader) > 0, "sled keeps deleted values in its files until they are compacted");
    let mut log_reader = log.get_log_reader().await;
    let state_before = dump(&reader);

    let report = reader.compact_files().unwrap();

    assert_eq!(marker_bytes_on_disk(&reader), 0, "no file holds the deleted org any more");
    assert!(report.bytes_before > 0 && report.bytes_after > 0, "{report:?}");
    no_compaction_left(dir.path());
    only_sled_entries_and_the_lock(dir.path());
    // The handles made before the compaction read (and write) the new database.
    assert_eq!(dump(&reader), state_before);
    assert_eq!(log_reader.try_get_log_entries(0..10).await.unwrap(), expected.entries);
    assert_live_data_intact(&expected, &mut log, &mut sm).await;
    let after = normal(1, 5, vec![cmd("a", 1_002, Op::CreateOrg { id: org_id(3), name: "After".into() })]);
    log.blocking_append([after.clone()]).await.unwrap();
    log.save_committed(Some(after.log_id)).await.unwrap();
    sm.apply([after.clone()]).await.unwrap();
    assert_eq!(get_org(&reader, &org_id(3)).unwrap().map(|org| org.name), Some("After".to_string()));
    expected.entries.push(after);
    drop((log, sm, log_reader, reader));

    let (mut log, mut sm) = reopen(dir.path());
    let reader = sm.state_reader();
    assert_eq!(marker_bytes_on_disk(&reader), 0);
    assert_eq!(get_org(&reader, &org_id(3)).unwrap().map(|org| org.name), Some("After".to_string()));
    assert_eq!(log.try_get_log_entries(0..10).await.unwrap(), expected.entries);
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1, 5)));
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(1, 1)));
    assert_eq!(sm.get_current_snapshot().await.unwrap().map(|s| s.meta), Some(expected.snapshot.meta));
}

const EVERY_STEP: [CompactStep; 7] = [
    CompactStep::NewDatabaseWritten,
    CompactStep::MarkedReady,
    CompactStep::OldFilesPartlyRemoved,
    CompactStep::OldFilesRemoved,
    CompactStep::MarkedMoving,
    CompactStep::NewFilesPartlyMoved,
    CompactStep::NewFilesMoved,
];

/// A crash after each step: the next open completes the compaction (or, before the new
/// database was marked complete, discards it) and the store holds all of its data.
#[tokio::test]
async fn a_compaction_interrupted_at_any_step_is_recovered_by_open() {
    for step in EVERY_STEP {
        let Departed { dir, log, sm, reader, mut expected } = departed().await;

        match reader.compact_files_crashing_after(step) {
            Err(StoreError::CompactionInterrupted { step: stopped }) => assert_eq!(stopped, step),
            other => panic!("expected the compaction to stop after {step:?}, got {other:?}"),
        }
        let down = reader.log_entries_containing(MARKER.as_bytes());
        assert!(matches!(down, Err(StoreError::Closed { .. })), "{step:?}: the store is down");
        drop((log, sm, reader));

        let (mut log, mut sm) = reopen(dir.path());
        no_compaction_left(dir.path());
        assert_live_data_intact(&expected, &mut log, &mut sm).await;
        let reader = sm.state_reader();
        let marker_bytes = marker_bytes_on_disk(&reader);
        if step == CompactStep::NewDatabaseWritten {
            assert!(marker_bytes > 0, "{step:?}: the incomplete new database is discarded, the old files kept");
        } else {
            assert_eq!(marker_bytes, 0, "{step:?}: the complete new database is swapped in");
        }
        // The recovered store takes writes and compacts again.
        let after = normal(1, 5, vec![cmd("a", 1_002, Op::CreateOrg { id: org_id(3), name: "After".into() })]);
        log.blocking_append([after.clone()]).await.unwrap();
        reader.compact_files().unwrap();
        expected.entries.push(after);
        assert_eq!(log.try_get_log_entries(0..10).await.unwrap(), expected.entries, "{step:?}");
        assert_eq!(marker_bytes_on_disk(&reader), 0, "{step:?}");
    }
}

/// Appends, applies and reads run on other threads while the store is compacted again and
/// again: every acknowledged append and every applied entry is there afterwards, readers never
/// see the state go back, and all of it survives a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compaction_concurrent_with_appends_applies_and_reads_loses_nothing() {
    /// Compactions that must complete while entries are still being written.
    const OVERLAPPING_COMPACTIONS: usize = 3;
    /// At least this many entries are written.
    const MIN_ENTRIES: u64 = 100;
    let (dir, mut log, mut sm) = fresh_store();
    let writing_done = Arc::new(AtomicBool::new(false));
    let compactions = Arc::new(AtomicUsize::new(0));

    let compactor = tokio::task::spawn_blocking({
        let (reader, writing_done, compactions) = (sm.state_reader(), writing_done.clone(), compactions.clone());
        move || {
            while !writing_done.load(Ordering::SeqCst) {
                reader.compact_files().expect("compact while writes go on");
                compactions.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let watcher = tokio::task::spawn_blocking({
        let (reader, writing_done) = (sm.state_reader(), writing_done.clone());
        move || {
            let mut seen = 0;
            while !writing_done.load(Ordering::SeqCst) {
                let orgs = dump(&reader).keys().filter(|key| key.starts_with(b"o/")).count();
                assert!(orgs >= seen, "a reader saw {orgs} orgs after {seen}");
                seen = orgs;
            }
        }
    });

    let mut last = 0;
    while last < MIN_ENTRIES || compactions.load(Ordering::SeqCst) < OVERLAPPING_COMPACTIONS {
        assert!(!compactor.is_finished() && !watcher.is_finished(), "a helper thread stopped early");
        last += 1;
        let create = Op::CreateOrg { id: org_id(u128::from(last)), name: format!("Org {last}") };
        let entry = normal(1, last, vec![cmd(&format!("c{last}"), 1_000 + last, create)]);
        log.blocking_append([entry.clone()]).await.unwrap();
        log.save_committed(Some(entry.log_id)).await.unwrap();
        sm.apply([entry]).await.unwrap();
    }
    writing_done.store(true, Ordering::SeqCst);
    compactor.await.unwrap();
    watcher.await.unwrap();

    let expect_everything = |entries: Vec<Entry<TypeConfig>>, reader: &StateReader| {
        assert_eq!(entries.iter().map(|entry| entry.log_id.index).collect::<Vec<_>>(), (1..=last).collect::<Vec<_>>());
        let orgs = dump(reader).keys().filter(|key| key.starts_with(b"o/")).count();
        assert_eq!(orgs as u64, last);
    };
    expect_everything(log.try_get_log_entries(0..).await.unwrap(), &sm.state_reader());
    drop((log, sm));
    let (mut log, sm) = reopen(dir.path());
    expect_everything(log.try_get_log_entries(0..).await.unwrap(), &sm.state_reader());
}
