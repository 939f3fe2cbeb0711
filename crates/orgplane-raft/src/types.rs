//! The openraft type config.

use std::io::Cursor;

use orgplane_model::{Command, CommandResult};
use serde::{Deserialize, Serialize};

/// A node's id within its region's Raft group.
pub type NodeId = u64;

/// One Raft log entry's application data: the commands that the group-commit batcher coalesced.
/// They are applied in order, atomically (all or none reach the state machine's disk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftRequest {
    pub commands: Vec<Command>,
}

/// The answers to a [`RaftRequest`], one per command, in the same order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RaftResponse {
    pub results: Vec<CommandResult>,
}

openraft::declare_raft_types!(
    /// orgplane's openraft type config: batched commands in, their results out, nodes known by
    /// their peer address, snapshots as byte buffers.
    pub TypeConfig:
        D = RaftRequest,
        R = RaftResponse,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);
