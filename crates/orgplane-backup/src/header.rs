//! [`BackupHeader`]: what a backup is a copy of, sent before its data and kept in the file.

use orgplane_model::Region;
use serde::{Deserialize, Serialize};

/// The backup format version: of the stream's framing and of the file. Bump it on any change
/// to either; a reader refuses every version but its own.
pub const FORMAT_VERSION: u32 = 1;

/// What a backup is a copy of. The node that takes the backup fills it in; the file keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupHeader {
    /// The region whose state this is. A restore refuses to seed another region from it.
    pub region: Region,
    /// The Raft log index the copy is consistent at: the effects of every entry up to it and of
    /// none after it. It is at least the read index of the backup call, so every write
    /// acknowledged before the call began is in the backup.
    pub log_index: u64,
    /// The term of the entry at `log_index` in the original cluster, for the record: a restored
    /// cluster starts its own terms.
    pub log_term: u64,
    /// The original region's membership at `log_index`, for the record: a restore sets the new
    /// cluster's own (old addresses must not leak into a new cluster).
    pub membership: Vec<BackupMember>,
    /// When the node took the copy, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// How many data bytes follow the header.
    pub data_bytes: u64,
    /// The encoding of the data bytes, as the store names it; a restore refuses one it does not
    /// read.
    pub data_format: String,
    /// The node that took the copy.
    pub node_id: u64,
}

/// One member of the original region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupMember {
    pub node_id: u64,
    pub address: String,
    /// A voter, or else a learner.
    pub voter: bool,
}
