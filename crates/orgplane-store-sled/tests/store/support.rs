//! Helpers shared by the tests: fresh stores, commands, entries, state dumps.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use orgplane_model::state::StateRead;
use orgplane_model::{Actor, Command, Op, OrgId, Region};
use orgplane_raft::{NodeId, RaftRequest, TypeConfig};
use orgplane_store_sled::{LogStore, StateMachineStore};
use tempfile::TempDir;

/// A new store in its own temporary directory, which lives as long as the returned guard.
pub fn fresh_store() -> (TempDir, LogStore, StateMachineStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, sm) = orgplane_store_sled::open(dir.path()).expect("open a fresh store");
    (dir, log, sm)
}

/// Opens the store in `dir`, which must succeed.
pub fn reopen(dir: &Path) -> (LogStore, StateMachineStore) {
    orgplane_store_sled::open(dir).expect("reopen the store")
}

pub fn org_id(n: u128) -> OrgId {
    OrgId::from_u128(Region::Eu, n)
}

pub fn cmd(request_id: &str, issued_at_ms: u64, op: Op) -> Command {
    Command { request_id: request_id.to_string(), issued_at_ms, actor: Actor::System, op }
}

pub fn log_id(term: u64, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, 0), index)
}

pub fn normal(term: u64, index: u64, commands: Vec<Command>) -> Entry<TypeConfig> {
    Entry { log_id: log_id(term, index), payload: EntryPayload::Normal(RaftRequest { commands }) }
}

pub fn blank(term: u64, index: u64) -> Entry<TypeConfig> {
    Entry { log_id: log_id(term, index), payload: EntryPayload::Blank }
}

/// Every model key and value the state holds, in key order.
pub fn dump(state: &impl StateRead) -> BTreeMap<Vec<u8>, Vec<u8>> {
    state.scan(b"", b"\xff", usize::MAX).expect("scan the whole state").into_iter().collect()
}

/// Writes `value` at `key` of `tree` in the closed store at `dir`, as sled sees it, to plant
/// damage or foreign data behind the store's back.
pub fn write_raw(dir: &Path, tree: &str, key: &[u8], value: &[u8]) {
    let db = open_raw(dir);
    db.open_tree(tree).expect("open tree").insert(key, value).expect("raw insert");
    db.flush().expect("raw flush");
}

/// Opens the closed store's sled database directly. sled's IO threads may hold the directory
/// lock for a moment after the store's handles are dropped and offer nothing to wait on, so
/// this retries for a bounded time, as the store's own `open` does.
pub fn open_raw(dir: &Path) -> sled::Db {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(e) if Instant::now() < deadline && e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("open the store's database directly: {e}"),
        }
    }
}
