//! What the store gives a backup and takes from a restore.
//!
//! A backup's data is the state-machine snapshot encoding (`snapshot_format`) of a
//! [`StateCopy`]: the whole `sm` tree, model data and applied pointers, copied while no batch
//! lands ([`crate::StateReader::copy_state`]), so it is the state after exactly the entries up
//! to its last applied log id. [`seed_from_backup`] turns that data into a fresh store from
//! which a node starts as a member of a new cluster.
//!
//! Restoring keeps openraft's invariants:
//! - log ids stay monotonic: the restored last-applied id keeps its index but gets term 0
//!   (leader id `0-0`, the one `initialize` uses), so the first leader of the new cluster, at
//!   term 1 or more, appends entries whose log ids are greater;
//! - the log is empty and recorded as purged up to that id, so openraft sees an initialized
//!   node (it never proposes an initial membership over the restored data), builds a snapshot
//!   of it on first start, and catches up new members from that snapshot;
//! - the membership is the new cluster's (every voter given to the restore), never the old
//!   cluster's addresses. A restore given no voters leaves the store *pending*: the model data
//!   and a marker with the restored last-applied id, but no applied pointers. `open` refuses a
//!   pending store; [`finish_restore`], called by a node on its first start with the node's own
//!   `--peers`, writes the pointers and that membership, so `orgplane restore --region R --from
//!   FILE --data-dir DIR` needs nothing a node's config does not already say.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use openraft::{BasicNode, CommittedLeaderId, LogId, Membership, StoredMembership};
use orgplane_raft::NodeId;

use crate::error::StoreError;
use crate::layout::{
    self, decode_json, encode_json, read_json, Trees, LAST_APPLIED_KEY, LAST_MEMBERSHIP_KEY, LAST_PURGED_KEY,
    RESTORE_PENDING_KEY,
};
use crate::snapshot_format::{self, SnapshotChunks};

/// The name of the data encoding of a backup taken from this build: the store's on-disk format
/// (which fixes how model records are encoded) and the snapshot format (which frames them).
/// A restore refuses data of another name.
pub fn backup_data_format() -> String {
    format!("{} snapshot/{}", layout::FORMAT_VERSION, snapshot_format::SNAPSHOT_VERSION)
}

/// A copy of the whole state machine, taken while no batch landed: the model's pairs and the
/// applied pointers they go with. It holds the region's state once, in memory; its encoding
/// is made a piece at a time ([`StateCopy::into_chunks`]), never all at once.
pub struct StateCopy {
    pairs: Vec<(sled::IVec, sled::IVec)>,
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, BasicNode>,
}

impl StateCopy {
    /// Copies every pair of `sm`. The caller holds the apply lock shared, so no batch lands
    /// while the copy is taken.
    pub(crate) fn of_tree(sm: &sled::Tree) -> Result<StateCopy, StoreError> {
        let pairs: Vec<(sled::IVec, sled::IVec)> =
            sm.iter().collect::<Result<_, _>>().map_err(StoreError::sled("copying the state for a backup"))?;
        let value_of = |wanted: &[u8]| pairs.iter().find(|(key, _)| key.as_ref() == wanted).map(|(_, v)| v.clone());
        let last_applied = value_of(LAST_APPLIED_KEY).map(|v| decode_json("last applied log id", &v)).transpose()?;
        let last_membership =
            value_of(LAST_MEMBERSHIP_KEY).map(|v| decode_json("last membership", &v)).transpose()?.unwrap_or_default();
        Ok(StateCopy { pairs, last_applied, last_membership })
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

    let (db, trees) = layout::open_database(dir)?;
    for (name, tree) in
        [("log", &trees.log), ("raft_state", &trees.raft_state), ("sm", &trees.sm), ("snapshot", &trees.snapshot)]
    {
        if !tree.is_empty() {
            return Err(StoreError::NotPristine { path: dir.to_path_buf(), tree: name });
        }
    }
    let mut write_result = Ok(());
    let mut model_keys = 0;
    snapshot_format::decode_each(data, |key, value| {
        if write_result.is_err() || key == LAST_APPLIED_KEY || key == LAST_MEMBERSHIP_KEY {
            return;
        }
        write_result = trees.sm.insert(key, value).map(drop);
        model_keys += 1;
    })?;
    write_result.map_err(StoreError::sled("writing the restored state"))?;
    match voters {
        Some(voters) => write_applied_pointers(&trees, restored_last_applied, voters)?,
        None => write(&trees.raft_state, RESTORE_PENDING_KEY, "marking the restore pending", {
            encode_json("restored last applied log id", &restored_last_applied)?
        })?,
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
    write_applied_pointers(&trees, restored_last_applied, voters)?;
    trees.raft_state.remove(RESTORE_PENDING_KEY).map_err(StoreError::sled("clearing the pending restore"))?;
    db.flush().map_err(StoreError::sled("flushing the restored store"))?;
    Ok(Some(restored_last_applied))
}

/// The applied pointers of a restored store: its last applied id, the new cluster's
/// membership at that id, and the log recorded as purged up to it.
fn write_applied_pointers(
    trees: &Trees,
    restored_last_applied: LogId<NodeId>,
    voters: &BTreeMap<NodeId, String>,
) -> Result<(), StoreError> {
    let membership = new_cluster_membership(restored_last_applied, voters);
    write(&trees.sm, LAST_APPLIED_KEY, "writing the restored last applied id", {
        encode_json("last applied log id", &restored_last_applied)?
    })?;
    write(&trees.sm, LAST_MEMBERSHIP_KEY, "writing the new membership", encode_json("last membership", &membership)?)?;
    write(&trees.raft_state, LAST_PURGED_KEY, "recording the purged log", {
        encode_json("last purged log id", &restored_last_applied)?
    })
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
