//! Snapshots: built on one store, installed on another; damaged or inconsistent ones refused.

use std::collections::BTreeSet;
use std::io::Cursor;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine, Snapshot};
use openraft::{Entry, EntryPayload, Membership, RaftSnapshotBuilder};
use orgplane_model::{Op, Role};
use orgplane_raft::TypeConfig;
use orgplane_store_sled::{StateMachineStore, StoreError};

use orgplane_model::state::get_org;

use crate::support::{cmd, dump, fresh_store, log_id, normal, org_id, reopen};

fn membership(term: u64, index: u64, voters: &[u64]) -> Entry<TypeConfig> {
    let voters: BTreeSet<u64> = voters.iter().copied().collect();
    Entry { log_id: log_id(term, index), payload: EntryPayload::Membership(Membership::new(vec![voters], None)) }
}

/// A state machine with orgs, members and a membership, applied up to (2, 4).
async fn populated(sm: &mut StateMachineStore) {
    let org = org_id(1);
    sm.apply([
        membership(1, 1, &[1, 2, 3]),
        normal(
            1,
            2,
            vec![
                cmd("c1", 1_000, Op::CreateOrg { id: org.clone(), name: "Acme".into() }),
                cmd("a1", 1_000, Op::AddMember { org_id: org.clone(), user_id: "alice".into(), role: Role::Developer }),
            ],
        ),
        normal(2, 3, vec![cmd("c2", 1_001, Op::CreateOrg { id: org_id(2), name: "Beta".into() })]),
        normal(2, 4, vec![cmd("r1", 1_002, Op::RemoveMember { org_id: org, user_id: "alice".into() })]),
    ])
    .await
    .unwrap();
}

/// A follower that already has state of its own, which an install must replace entirely.
async fn follower_with_other_state() -> (tempfile::TempDir, StateMachineStore) {
    let (dir, _log, mut sm) = fresh_store();
    sm.apply([normal(1, 1, vec![cmd("other", 1_000, Op::CreateOrg { id: org_id(7), name: "Other".into() })])])
        .await
        .unwrap();
    (dir, sm)
}

async fn install(sm: &mut StateMachineStore, snapshot: &Snapshot<TypeConfig>, data: Vec<u8>) -> Result<(), String> {
    let mut received = sm.begin_receiving_snapshot().await.unwrap();
    *received = Cursor::new(data);
    sm.install_snapshot(&snapshot.meta, received).await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_snapshot_installed_elsewhere_reproduces_the_state() {
    let (_leader_dir, _leader_log, mut leader) = fresh_store();
    populated(&mut leader).await;
    let snapshot = leader.get_snapshot_builder().await.build_snapshot().await.unwrap();
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(2, 4)));

    let (_follower_dir, mut follower) = follower_with_other_state().await;
    install(&mut follower, &snapshot, snapshot.snapshot.get_ref().clone()).await.unwrap();

    assert_eq!(dump(&follower.state_reader()), dump(&leader.state_reader()));
    assert!(!dump(&follower.state_reader()).is_empty());
    assert_eq!(follower.applied_state().await.unwrap(), leader.applied_state().await.unwrap());
    let current = follower.get_current_snapshot().await.unwrap().expect("installed snapshot is current");
    assert_eq!(current.meta, snapshot.meta);
    assert_eq!(current.snapshot.get_ref(), snapshot.snapshot.get_ref());
}

#[tokio::test]
async fn a_damaged_snapshot_is_refused_and_changes_nothing() {
    let (_leader_dir, _leader_log, mut leader) = fresh_store();
    populated(&mut leader).await;
    let snapshot = leader.get_snapshot_builder().await.build_snapshot().await.unwrap();
    let (_follower_dir, mut follower) = follower_with_other_state().await;
    let state_before = dump(&follower.state_reader());
    let applied_before = follower.applied_state().await.unwrap();

    let mut damaged = snapshot.snapshot.get_ref().clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x20;
    let error = install(&mut follower, &snapshot, damaged).await.expect_err("a damaged snapshot must be refused");

    assert!(error.contains("checksum mismatch"), "{error}");
    assert_eq!(dump(&follower.state_reader()), state_before);
    assert_eq!(follower.applied_state().await.unwrap(), applied_before);
    assert!(follower.get_current_snapshot().await.unwrap().is_none());
}

#[tokio::test]
async fn a_snapshot_whose_meta_disagrees_with_its_data_is_refused() {
    let (_leader_dir, _leader_log, mut leader) = fresh_store();
    populated(&mut leader).await;
    let mut snapshot = leader.get_snapshot_builder().await.build_snapshot().await.unwrap();
    snapshot.meta.last_log_id = Some(log_id(2, 9));
    let (_follower_dir, mut follower) = follower_with_other_state().await;
    let state_before = dump(&follower.state_reader());

    let error = install(&mut follower, &snapshot, snapshot.snapshot.get_ref().clone()).await.expect_err("must refuse");

    assert!(error.contains("metadata says"), "{error}");
    assert_eq!(dump(&follower.state_reader()), state_before);
}

/// A build that started before an install must not replace the installed, newer snapshot as
/// the current one when it finishes.
#[tokio::test]
async fn a_slow_build_does_not_replace_a_newer_current_snapshot() {
    let (_leader_dir, _leader_log, mut leader) = fresh_store();
    populated(&mut leader).await;
    let newer = leader.get_snapshot_builder().await.build_snapshot().await.unwrap();

    let (_follower_dir, mut follower) = follower_with_other_state().await;
    let mut slow_builder = follower.get_snapshot_builder().await;
    install(&mut follower, &newer, newer.snapshot.get_ref().clone()).await.unwrap();
    let older = slow_builder.build_snapshot().await.unwrap();

    assert_eq!(older.meta.last_log_id, Some(log_id(1, 1)), "the builder works from its copy");
    let current = follower.get_current_snapshot().await.unwrap().expect("a current snapshot");
    assert_eq!(current.meta, newer.meta);
}

/// A store opens with the state of its current snapshot plus the stored log after it, up to the
/// committed id the log store saved: an entry applied but not known to be committed is left for
/// openraft to apply again once it learns so.
#[tokio::test]
async fn a_reopened_store_starts_from_its_snapshot_and_the_committed_log_after_it() {
    let (_leader_dir, _leader_log, mut leader) = fresh_store();
    populated(&mut leader).await;
    let snapshot = leader.get_snapshot_builder().await.build_snapshot().await.unwrap();
    let snapshot_index = snapshot.meta.last_log_id.expect("the leader applied entries").index;
    let (follower_dir, mut log, mut follower) = fresh_store();
    install(&mut follower, &snapshot, snapshot.snapshot.get_ref().clone()).await.unwrap();
    log.purge(snapshot.meta.last_log_id.unwrap()).await.unwrap();

    let after = |n: u64, name: &str| {
        normal(
            2,
            snapshot_index + n,
            vec![cmd(name, 2_000, Op::CreateOrg { id: org_id(40 + u128::from(n)), name: name.into() })],
        )
    };
    let entries = vec![after(1, "Committed"), after(2, "Applied only")];
    log.blocking_append(entries.clone()).await.unwrap();
    log.save_committed(Some(entries[0].log_id)).await.unwrap();
    follower.apply(entries[..1].to_vec()).await.unwrap();
    let state_at_commit = dump(&follower.state_reader());
    follower.apply(entries[1..].to_vec()).await.unwrap();
    assert_ne!(dump(&follower.state_reader()), state_at_commit);
    drop((log, follower));

    let (_log, mut reopened) = reopen(follower_dir.path());
    assert_eq!(dump(&reopened.state_reader()), state_at_commit);
    assert_eq!(reopened.applied_state().await.unwrap().0, Some(entries[0].log_id));
    assert_eq!(get_org(&reopened.state_reader(), &org_id(41)).unwrap().map(|org| org.name), Some("Committed".into()));
    assert_eq!(get_org(&reopened.state_reader(), &org_id(42)).unwrap(), None);
    // openraft applies the rest once it learns it is committed.
    reopened.apply(entries[1..].to_vec()).await.unwrap();
    assert!(get_org(&reopened.state_reader(), &org_id(42)).unwrap().is_some());
}

/// A committed id beyond the stored log (damage, or a log purged past the snapshot) cannot be
/// recovered from: the open is refused rather than serving a state that lacks committed writes.
#[tokio::test]
async fn a_committed_log_missing_after_the_snapshot_is_refused_on_open() {
    let (dir, mut log, mut sm) = fresh_store();
    populated(&mut sm).await;
    log.save_committed(Some(log_id(1, 9))).await.unwrap();
    drop((log, sm));
    match orgplane_store_sled::open(dir.path()) {
        Err(StoreError::CorruptRecord { what, reason }) => {
            assert_eq!(what, "log");
            assert!(reason.contains("not all stored"), "{reason}");
        }
        Err(other) => panic!("expected the missing log to be named, got {other}"),
        Ok(_) => panic!("a store missing committed entries was opened"),
    }
}

/// A builder hands its copy to the one snapshot it builds; asked again, it says so.
#[tokio::test]
async fn a_builder_builds_one_snapshot() {
    let (_dir, _log, mut sm) = fresh_store();
    populated(&mut sm).await;
    let mut builder = sm.get_snapshot_builder().await;
    builder.build_snapshot().await.unwrap();
    let again = builder.build_snapshot().await.expect_err("the copy was handed out");
    assert!(again.to_string().contains("already did"), "{again}");
}
