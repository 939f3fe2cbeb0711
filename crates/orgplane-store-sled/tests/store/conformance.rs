//! openraft's own storage conformance suite, run against the sled store.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use orgplane_raft::{NodeId, TypeConfig};
use orgplane_store_sled::{LogStore, StateMachineStore};
use tempfile::TempDir;

/// Opens a fresh store in a temporary directory; the directory is the guard that keeps it
/// alive for the length of one suite test.
struct TempDirStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempDirStores {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let (dir, log, sm) = crate::support::fresh_store();
        Ok((dir, log, sm))
    }
}

/// The suite makes its own runtime per test, so this is a plain test.
#[test]
fn openraft_storage_suite_passes() {
    if let Err(e) = Suite::test_all(TempDirStores) {
        panic!("openraft's storage suite failed: {e}");
    }
}
