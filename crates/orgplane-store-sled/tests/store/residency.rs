//! Residency scans: occurrences in the store's files (also in nested files and across the
//! scan's chunk boundaries), in the stored log and in the current snapshot.

use std::path::PathBuf;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::RaftSnapshotBuilder;
use orgplane_model::Op;
use orgplane_store_sled::FileHit;

use crate::support::{cmd, fresh_store, log_id, normal, org_id};

#[test]
fn file_scans_count_every_needle_in_every_file_under_the_dir() {
    let (dir, _log, sm) = fresh_store();
    let nested = dir.path().join("planted").join("deep");
    std::fs::create_dir_all(&nested).unwrap();
    // The first needle straddles the scan's 1 MiB chunk boundary, the second occurs twice.
    let mut bytes = vec![0u8; 3 << 20];
    bytes[(1 << 20) - 4..(1 << 20) + 7].copy_from_slice(b"needle-one!");
    bytes[5..15].copy_from_slice(b"needle-two");
    bytes[(2 << 20) + 1..(2 << 20) + 11].copy_from_slice(b"needle-two");
    std::fs::write(nested.join("file.bin"), &bytes).unwrap();
    std::fs::write(dir.path().join("planted").join("other.txt"), b"needle-two, alone").unwrap();

    let needles = vec![b"needle-one!".to_vec(), b"needle-two".to_vec(), b"needle-three".to_vec()];
    let hits = sm.state_reader().scan_files(&needles).unwrap();

    let hit = |path: &str, needle, count| FileHit { path: PathBuf::from(path), needle, count };
    assert_eq!(
        hits,
        vec![hit("planted/deep/file.bin", 0, 1), hit("planted/deep/file.bin", 1, 2), hit("planted/other.txt", 1, 1)]
    );
}

#[tokio::test]
async fn log_and_snapshot_scans_see_only_what_is_stored() {
    let (_dir, mut log, mut sm) = fresh_store();
    let reader = sm.state_reader();
    let create = |index: u64, name: &str| {
        normal(
            1,
            index,
            vec![cmd(&format!("c{index}"), 1_000, Op::CreateOrg { id: org_id(index.into()), name: name.into() })],
        )
    };
    let entries = vec![create(1, "alpha-org"), create(2, "beta-org"), create(3, "alpha-org-two")];
    log.blocking_append(entries.clone()).await.unwrap();
    assert_eq!(reader.log_entries_containing(b"alpha-org").unwrap(), 2);
    assert_eq!(reader.log_entries_containing(b"beta-org").unwrap(), 1);
    assert_eq!(reader.log_entries_containing(b"").unwrap(), 0);
    assert!(!reader.snapshot_contains(b"alpha-org").unwrap(), "no snapshot yet");

    sm.apply(entries[..2].to_vec()).await.unwrap();
    sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    log.purge(log_id(1, 1)).await.unwrap();

    assert_eq!(reader.log_entries_containing(b"alpha-org").unwrap(), 1, "the purged entry is not counted");
    assert!(reader.snapshot_contains(b"alpha-org").unwrap());
    assert!(reader.snapshot_contains(b"beta-org").unwrap());
    assert!(!reader.snapshot_contains(b"alpha-org-two").unwrap(), "entry 3 was not applied before the snapshot");
}
