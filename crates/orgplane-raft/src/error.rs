//! Errors of the Raft layer.

use serde::{Deserialize, Serialize};

use crate::types::NodeId;

/// A write could not be committed. Whether it was applied is unknown unless the variant says
/// so; retrying with the same request id is always safe.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    /// No leader could be found or reached in time.
    #[error("no leader in the region could commit the write within {waited_ms} ms: {last_error}")]
    Unavailable { waited_ms: u64, last_error: String },
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The batch was rejected as too large to propose.
    #[error("write rejected: {0}")]
    Rejected(String),
}

/// A linearizable read could not be confirmed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    #[error("no leader could confirm the read within {waited_ms} ms: {last_error}")]
    Unavailable { waited_ms: u64, last_error: String },
    #[error("the node is shutting down")]
    ShuttingDown,
}

/// Why a leader did not take a forwarded batch or read. Sent back over the wire in the codec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    /// The receiver is not the leader; it names the leader it knows, if any.
    #[error("node is not the leader (leader hint: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// The receiver is the leader but could not finish (it lost leadership or is stopping).
    #[error("{0}")]
    Failed(String),
}
