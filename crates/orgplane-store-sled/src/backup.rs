//! What the store gives a backup and takes from a restore.
//!
//! A backup's data is the state-machine snapshot encoding (`snapshot_format`) of a
//! [`StateCopy`]: the whole live state, model data and applied pointers, copied while no batch
//! lands ([`crate::StateReader::copy_state`]), so it is the state after exactly the entries up
//! to its last applied log id. [`seed_from_backup`] turns that data into a fresh store (its
//! current snapshot, the state a store is opened from) from which a node starts as a member of
//! a new cluster.
//!
//! Restoring keeps openraft's invariants:
//! - log ids stay monotonic: the restored last-applied id keeps its index but gets term 0
//!   (leader id `0-0`, the one `initialize` uses), so the first leader of the new cluster, at
//!   term 1 or more, appends entries whose log ids are greater;
//! - the log is empty and recorded as purged up to that id, and the restored state is the
//!   current snapshot at that id, so openraft sees an initialized node (it never proposes an
//!   initial membership over the restored data) and catches up new members from that snapshot;
//! - the membership is the new cluster's (every voter given to the restore), never the old
//!   cluster's addresses. A restore given no voters leaves the store *pending*: the snapshot with
//!   no membership, and a marker with the restored last-applied id. `open` refuses a pending
//!   store; [`finish_restore`], called by a node on its first start with the node's own
//!   `--peers`, rewrites the snapshot with that membership, so `orgplane restore --region R
//!   --from FILE --data-dir DIR` needs nothing a node's config does not already say.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use openraft::{BasicNode, CommittedLeaderId, LogId, Membership, StoredMembership};
use orgplane_raft::NodeId;

use crate::error::StoreError;
use crate::layout::{
    self, decode_json, encode_json, read_json, Trees, LAST_APPLIED_KEY, LAST_PURGED_KEY, RESTORE_PENDING_KEY,
    SNAPSHOT_CURRENT_KEY,
};
use crate::live::{LiveState, PairList};
use crate::snapshot_format::{self, SnapshotChunks};
use crate::state_machine::{encode_snapshot_record, split_snapshot_record, Meta};

/// The name of the data encoding of a backup taken from this build: the encoding of the model's
/// records and applied pointers ([`RECORD_FORMAT`]) and the snapshot format (which frames them).
/// A restore refuses data of another name.
pub fn backup_data_format() -> String {
    format!("{RECORD_FORMAT} snapshot/{}", snapshot_format::SNAPSHOT_VERSION)
}

/// How the model's records and the applied pointers are encoded, named by the store format that
/// introduced the encoding. Store format 3 moved the state out of its sled tree and changed no
/// record, so it keeps format 2's name: a backup taken before the upgrade restores into this
/// build, which is how a region moves across the store format change (a store of format 2 is
/// refused on open). Change it with any change to a record's encoding.
const RECORD_FORMAT: &str = "orgplane-store-sled/2";

/// A copy of the whole state machine, taken while no batch landed: the model's pairs and the
/// applied pointers they go with. It holds the region's state once, in memory; its encoding
/// is made a piece at a time ([`StateCopy::into_chunks`]), never all at once.
pub struct StateCopy {
    /// The pointers' pairs, then the model's, in key order.
    pairs: PairList,
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, BasicNode>,
}

impl StateCopy {
    /// Copies the whole live state. The caller holds its lock shared, so no batch lands while
    /// the copy is taken.
    pub(crate) fn of_state(state: &LiveState) -> Result<StateCopy, StoreError> {
        let mut pairs = state.pointer_pairs()?;
        pairs.reserve(state.pairs.len());
        pairs.extend(state.pairs.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(StateCopy { pairs, last_applied: state.last_applied, last_membership: state.last_membership.clone() })
    }

    /// The last log entry whose effects the copy holds; `None` if nothing was ever applied.
    pub fn last_applied(&self) -> Option<LogId<NodeId>> {
        self.last_applied
    }

    /// The membership in effect at [`StateCopy::last_applied`].
    pub fn last_membership(&self) -> &StoredMembership<NodeId, BasicNode> {
        &self.last_membership
    }

    /// How many bytes the encoding is: the total of [`StateCopy::into_chunks`].
    pub fn encoded_len(&self) -> u64 {
        snapshot_format::encoded_len(&self.pairs)
    }

    /// The encoding (named by [`backup_data_format`]), in pieces of at most `max_chunk_bytes`,
    /// each made when it is asked for.
    pub fn into_chunks(self, max_chunk_bytes: usize) -> impl Iterator<Item = Vec<u8>> + Send + 'static {
        SnapshotChunks::new(self.pairs, max_chunk_bytes)
    }
}

/// What a restore wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeededStore {
    /// The last applied log id as the original cluster had it.
    pub original_last_applied: LogId<NodeId>,
    /// The same entry as the new cluster knows it: same index, term 0 (see the module docs).
    pub restored_last_applied: LogId<NodeId>,
    /// The model's records written (the applied pointers not counted).
    pub model_keys: u64,
}

/// Seeds a fresh store in `dir` with backup data, for a node of a new cluster whose voters are
/// `voters` (node id -> peer address), or, with `None`, whose voters its first start names
/// ([`finish_restore`]).
///
/// Everything is checked before anything is written: the data's name is this build's
/// ([`backup_data_format`]), its checksum and structure are sound, it holds a last applied log
/// id, and `voters` is not empty. Then the store is opened (created) and must be pristine: no
/// log, vote, state or snapshot. The data is written with the applied pointers rewritten as the
/// module docs say, and flushed before this returns.
///
/// If writing fails half way the directory holds a partial store; the caller removes it.
pub fn seed_from_backup(
    dir: &Path,
    data_format: &str,
    data: &[u8],
    voters: Option<&BTreeMap<NodeId, String>>,
) -> Result<SeededStore, StoreError> {
    let refused = |reason: String| StoreError::SnapshotRefused { reason };
    if data_format != backup_data_format() {
        return Err(refused(format!(
            "its data is in format {data_format:?}, but this build reads only {:?}",
            backup_data_format()
        )));
    }
    if voters.is_some_and(BTreeMap::is_empty) {
        return Err(refused("the new cluster needs at least one voter".into()));
    }
    let mut original_last_applied = None;
    snapshot_format::decode_each(data, |key, value| {
        if key == LAST_APPLIED_KEY {
            original_last_applied = Some(value);
        }
    })?;
    let original_last_applied: LogId<NodeId> = match original_last_applied {
        Some(value) => decode_json("last applied log id", value)?,
        None => return Err(refused("it holds no last applied log id".into())),
    };
    let restored_last_applied = LogId::new(CommittedLeaderId::new(0, 0), original_last_applied.index);

    let mut state = LiveState::from_snapshot(data)?;
    state.last_applied = Some(restored_last_applied);
    state.last_membership = match voters {
        Some(voters) => new_cluster_membership(restored_last_applied, voters),
        None => StoredMembership::default(),
    };
    let model_keys = state.pairs.len() as u64;

    let (db, trees) = layout::open_database(dir)?;
    for (name, tree) in [("log", &trees.log), ("raft_state", &trees.raft_state), ("snapshot", &trees.snapshot)] {
        if !tree.is_empty() {
            return Err(StoreError::NotPristine { path: dir.to_path_buf(), tree: name });
        }
    }
    write_restored_snapshot(&trees, &state)?;
    drop(state);
    write(&trees.raft_state, LAST_PURGED_KEY, "recording the purged log", {
        encode_json("last purged log id", &restored_last_applied)?
    })?;
    if voters.is_none() {
        write(&trees.raft_state, RESTORE_PENDING_KEY, "marking the restore pending", {
            encode_json("restored last applied log id", &restored_last_applied)?
        })?;
    }
    db.flush().map_err(StoreError::sled("flushing the restored store"))?;
    Ok(SeededStore { original_last_applied, restored_last_applied, model_keys })
}

/// Completes a restore that was given no voters (see the module docs): when the store in `dir`
/// is pending, writes its applied pointers with `voters` as the new cluster's membership and
/// clears the mark; answers the restored last-applied id then, `None` for any other store.
/// A node calls this before [`crate::open`] on every start that forms a cluster from its peers.
pub fn finish_restore(dir: &Path, voters: &BTreeMap<NodeId, String>) -> Result<Option<LogId<NodeId>>, StoreError> {
    let empty = std::fs::read_dir(dir).map(|mut entries| entries.next().is_none()).unwrap_or(true);
    if empty {
        // No store here yet (a new node): nothing was restored.
        return Ok(None);
    }
    let (db, trees) = layout::open_database(dir)?;
    let Some(restored_last_applied) =
        read_json::<LogId<NodeId>>(&trees.raft_state, RESTORE_PENDING_KEY, "restored last applied log id")?
    else {
        return Ok(None);
    };
    if voters.is_empty() {
        return Err(StoreError::SnapshotRefused { reason: "the new cluster needs at least one voter".into() });
    }
    let record = trees
        .snapshot
        .get(SNAPSHOT_CURRENT_KEY)
        .map_err(StoreError::sled("reading the restored snapshot"))?
        .ok_or_else(|| StoreError::CorruptRecord {
        what: "current snapshot record",
        reason: "a restore is pending, but there is no restored snapshot".into(),
    })?;
    let mut state = LiveState::from_snapshot(split_snapshot_record(&record)?.1)?;
    drop(record);
    state.last_applied = Some(restored_last_applied);
    state.last_membership = new_cluster_membership(restored_last_applied, voters);
    write_restored_snapshot(&trees, &state)?;
    trees.raft_state.remove(RESTORE_PENDING_KEY).map_err(StoreError::sled("clearing the pending restore"))?;
    db.flush().map_err(StoreError::sled("flushing the restored store"))?;
    Ok(Some(restored_last_applied))
}

/// Saves `state` as the store's current snapshot, the state the store opens with.
fn write_restored_snapshot(trees: &Trees, state: &LiveState) -> Result<(), StoreError> {
    let last_applied = state.last_applied;
    let snapshot_id = match last_applied {
        Some(log_id) => format!("restored-{}", log_id.index),
        None => "restored-none".to_string(),
    };
    let meta = Meta { last_log_id: last_applied, last_membership: state.last_membership.clone(), snapshot_id };
    let record = encode_snapshot_record(&meta, &state.encode()?)?;
    write(&trees.snapshot, SNAPSHOT_CURRENT_KEY, "writing the restored snapshot", record)
}

fn write(tree: &sled::Tree, key: &[u8], what: &'static str, value: Vec<u8>) -> Result<(), StoreError> {
    tree.insert(key, value).map(drop).map_err(StoreError::sled(what))
}

/// Every one of `voters` a voter, at their new addresses, as of `log_id`.
fn new_cluster_membership(
    log_id: LogId<NodeId>,
    voters: &BTreeMap<NodeId, String>,
) -> StoredMembership<NodeId, BasicNode> {
    let ids: BTreeSet<NodeId> = voters.keys().copied().collect();
    let nodes: BTreeMap<NodeId, BasicNode> = voters.iter().map(|(id, addr)| (*id, BasicNode::new(addr))).collect();
    StoredMembership::new(Some(log_id), Membership::new(vec![ids], nodes))
}
