//! Snapshots: built on one store, installed on another; damaged or inconsistent ones refused.

use std::collections::BTreeSet;
use std::io::Cursor;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{Entry, EntryPayload, Membership, RaftSnapshotBuilder};
use orgplane_model::{Op, Role};
use orgplane_raft::TypeConfig;
use orgplane_store_sled::{StateMachineStore, StoreError};

use crate::support::{cmd, dump, fresh_store, log_id, normal, open_raw, org_id, reopen};

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

/// A leader state large enough that an install writes it in several batches.
async fn populated_large(sm: &mut StateMachineStore) {
    let org = org_id(1);
    let mut commands = vec![cmd("c1", 1_000, Op::CreateOrg { id: org.clone(), name: "Acme".into() })];
    commands.extend((0..3_000).map(|n| {
        let user_id = format!("user-{n:05}");
        cmd(&format!("a{n}"), 1_000, Op::AddMember { org_id: org.clone(), user_id, role: Role::Agent })
    }));
    sm.apply([membership(1, 1, &[1, 2, 3]), normal(1, 2, commands)]).await.unwrap();
}

/// An install that a crash interrupts after part of the state is written is completed by the
/// next open, before anything reads the state: the follower ends with exactly the snapshot's
/// state and applied pointers, never with a mix of its old state and part of the new.
#[tokio::test]
async fn an_install_interrupted_by_a_crash_is_completed_on_open() {
    let (_leader_dir, _leader_log, mut leader) = fresh_store();
    populated_large(&mut leader).await;
    let snapshot = leader.get_snapshot_builder().await.build_snapshot().await.unwrap();
    let (follower_dir, log, follower) = fresh_store();
    let mut follower_sm = follower;
    follower_sm
        .apply([normal(1, 1, vec![cmd("other", 1_000, Op::CreateOrg { id: org_id(7), name: "Other".into() })])])
        .await
        .unwrap();

    let interrupted =
        follower_sm.install_snapshot_crashing_after(&snapshot.meta, snapshot.snapshot.get_ref().clone(), 1);
    assert!(matches!(interrupted, Err(StoreError::InstallInterrupted { batches: 1 })), "{interrupted:?}");
    drop((log, follower_sm));

    // What the crash left: the mark, and a tree that holds only part of the snapshot's state.
    let leader_state = dump(&leader.state_reader());
    {
        let raw = open_raw(follower_dir.path());
        let snapshot_tree = raw.open_tree("snapshot").unwrap();
        assert!(snapshot_tree.contains_key("installing").unwrap(), "the install is marked");
        let written = raw.open_tree("sm").unwrap().len();
        assert!(written < leader_state.len(), "part of the state: {written} of {} keys", leader_state.len());
        assert!(!raw.open_tree("sm").unwrap().contains_key(b"\x00last_applied").unwrap(), "no pointers yet");
    }

    let (_log, mut reopened) = reopen(follower_dir.path());
    assert_eq!(dump(&reopened.state_reader()), leader_state);
    assert_eq!(reopened.applied_state().await.unwrap(), leader.applied_state().await.unwrap());
    let current = reopened.get_current_snapshot().await.unwrap().expect("the installed snapshot is current");
    assert_eq!(current.meta, snapshot.meta);
    drop((_log, reopened));
    assert!(!open_raw(follower_dir.path()).open_tree("snapshot").unwrap().contains_key("installing").unwrap());
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
