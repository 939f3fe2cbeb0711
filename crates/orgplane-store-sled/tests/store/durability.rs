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
