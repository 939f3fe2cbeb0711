//! What survives a restart, and the on-disk format record.

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{RaftLogReader, RaftSnapshotBuilder, Vote};
use orgplane_model::{Op, Role};
use orgplane_store_sled::{StoreError, FORMAT_VERSION};

use crate::support::{blank, cmd, dump, fresh_store, log_id, normal, open_raw, org_id, reopen, write_raw};

#[tokio::test]
async fn reopening_keeps_vote_log_committed_state_and_snapshot() {
    let (dir, mut log, mut sm) = fresh_store();
    let org = org_id(1);
    let entries = vec![
        blank(1, 1),
        normal(
            1,
            2,
            vec![
                cmd("c1", 1_000, Op::CreateOrg { id: org.clone(), name: "Acme".into() }),
                cmd("a1", 1_000, Op::AddMember { org_id: org.clone(), user_id: "alice".into(), role: Role::Admin }),
            ],
        ),
        normal(1, 3, vec![cmd("c2", 1_001, Op::CreateOrg { id: org_id(2), name: "Beta".into() })]),
        normal(
            1,
            4,
            vec![cmd(
                "u1",
                1_002,
                Op::UpdateOrg {
                    id: org,
                    name: Some("Acme 2".into()),
                    allowed_import_regions: None,
                    expected_version: None,
                },
            )],
        ),
    ];
    log.save_vote(&Vote::new(3, 1)).await.unwrap();
    log.blocking_append(entries.clone()).await.unwrap();
    log.save_committed(Some(log_id(1, 4))).await.unwrap();
    sm.apply(entries[..3].to_vec()).await.unwrap();
    let snapshot = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    sm.apply(entries[3..].to_vec()).await.unwrap();
    log.purge(log_id(1, 1)).await.unwrap();
    let state_before = dump(&sm.state_reader());
    let applied_before = sm.applied_state().await.unwrap();
    drop((log, sm));

    let (mut log, mut sm) = reopen(dir.path());
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 4)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!((state.last_purged_log_id, state.last_log_id), (Some(log_id(1, 1)), Some(log_id(1, 4))));
    assert_eq!(log.try_get_log_entries(0..10).await.unwrap(), entries[1..].to_vec());
    assert_eq!(sm.applied_state().await.unwrap(), applied_before);
    assert_eq!(applied_before.0, Some(log_id(1, 4)));
    assert_eq!(sm.state_reader().last_applied().unwrap(), Some(log_id(1, 4)));
    assert_eq!(dump(&sm.state_reader()), state_before);
    let current = sm.get_current_snapshot().await.unwrap().expect("the snapshot survives");
    assert_eq!(current.meta, snapshot.meta);
    assert_eq!(current.snapshot.into_inner(), snapshot.snapshot.into_inner());
    assert!(sm.state_reader().disk_size() > 0);
}

#[tokio::test]
async fn a_store_of_another_format_is_refused() {
    let (dir, log, sm) = fresh_store();
    drop((log, sm));
    let db = open_raw(dir.path());
    let stamped = db.open_tree("meta").unwrap().get("format").unwrap();
    assert_eq!(stamped.as_deref(), Some(FORMAT_VERSION.as_bytes()), "a new store is stamped");
    drop(db);

    write_raw(dir.path(), "meta", b"format", b"orgplane-store-sled/0");
    match orgplane_store_sled::open(dir.path()) {
        Err(StoreError::FormatMismatch { found, expected, .. }) => {
            assert_eq!(found, "orgplane-store-sled/0");
            assert_eq!(expected, FORMAT_VERSION);
        }
        Err(other) => panic!("expected a format mismatch, got {other}"),
        Ok(_) => panic!("a store of another format was opened"),
    }
}

#[tokio::test]
async fn data_without_a_format_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_raw(dir.path(), "sm", b"o/x", b"{}");
    match orgplane_store_sled::open(dir.path()) {
        Err(StoreError::FormatMissing { path }) => assert_eq!(path, dir.path()),
        Err(other) => panic!("expected a missing format record, got {other}"),
        Ok(_) => panic!("unstamped data was opened"),
    }
}

#[test]
fn a_store_in_use_is_refused_as_locked() {
    let (dir, _log, _sm) = fresh_store();
    match orgplane_store_sled::open(dir.path()) {
        Err(StoreError::Locked { path, .. }) => assert_eq!(path, dir.path()),
        Err(other) => panic!("expected the store to be locked, got {other}"),
        Ok(_) => panic!("a store in use was opened twice"),
    }
}

/// A store of format 3 (log entries in JSON) opens in place: it is restamped with this build's
/// format, its JSON log replays into the state and reads back, and entries appended after are
/// in the binary codec, side by side with the JSON ones.
#[tokio::test]
async fn a_format_3_store_with_a_json_log_is_upgraded_in_place() {
    let (dir, log, sm) = fresh_store();
    drop((log, sm));
    let org = org_id(7);
    let old_entries = vec![
        blank(1, 1),
        normal(1, 2, vec![cmd("c1", 1_000, Op::CreateOrg { id: org.clone(), name: "Legacy".into() })]),
    ];
    // What a format-3 build wrote: JSON entries and a JSON committed id.
    for entry in &old_entries {
        write_raw(dir.path(), "log", &entry.log_id.index.to_be_bytes(), &serde_json::to_vec(entry).unwrap());
    }
    write_raw(dir.path(), "raft_state", b"committed", &serde_json::to_vec(&log_id(1, 2)).unwrap());
    write_raw(dir.path(), "meta", b"format", b"orgplane-store-sled/3");

    let (mut log, sm) = reopen(dir.path());
    assert_eq!(sm.state_reader().last_applied().unwrap(), Some(log_id(1, 2)), "the JSON log replayed");
    assert!(dump(&sm.state_reader()).keys().any(|k| k.starts_with(b"o/")), "the org is in the state");
    assert_eq!(log.try_get_log_entries(1..3).await.unwrap(), old_entries);
    let new_entry = normal(1, 3, vec![cmd("c2", 1_001, Op::CreateOrg { id: org_id(8), name: "New".into() })]);
    log.blocking_append(vec![new_entry.clone()]).await.unwrap();
    log.save_committed(Some(log_id(1, 3))).await.unwrap();
    drop((log, sm));

    let db = open_raw(dir.path());
    let stamped = db.open_tree("meta").unwrap().get("format").unwrap();
    assert_eq!(stamped.as_deref(), Some(FORMAT_VERSION.as_bytes()), "restamped on open");
    let stored = db.open_tree("log").unwrap().get(3u64.to_be_bytes()).unwrap().unwrap();
    assert_eq!(stored[0], orgplane_raft::codec::BINARY_V1, "new entries are binary");
    drop(db);

    let (mut log, sm) = reopen(dir.path());
    let mut all = old_entries;
    all.push(new_entry);
    assert_eq!(log.try_get_log_entries(1..4).await.unwrap(), all);
    assert_eq!(sm.state_reader().last_applied().unwrap(), Some(log_id(1, 3)));
}

#[tokio::test]
async fn a_log_entry_in_no_known_encoding_is_refused_as_corrupt_on_open() {
    let (dir, mut log, sm) = fresh_store();
    log.blocking_append(vec![blank(1, 1)]).await.unwrap();
    log.save_committed(Some(log_id(1, 1))).await.unwrap();
    drop((log, sm));
    write_raw(dir.path(), "log", &1u64.to_be_bytes(), b"\x07garbage");
    match orgplane_store_sled::open(dir.path()) {
        Err(StoreError::CorruptRecord { what, reason }) => {
            assert_eq!(what, "log entry");
            assert!(reason.contains("unknown encoding tag 0x07"), "{reason}");
        }
        Err(other) => panic!("expected a corrupt log entry, got {other}"),
        Ok(_) => panic!("a store with an undecodable committed entry was opened"),
    }
}
