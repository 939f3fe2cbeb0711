//! orgplane's Raft layer, on openraft 0.9 with storage v2. It knows no gRPC and no storage
//! engine: peers are reached through the [`PeerTransport`] trait (the node implements it over
//! gRPC, tests wrap it to cut links), and storage comes in through openraft's traits.
//!
//! - [`types`]: the openraft type config; one log entry carries a batch of commands.
//! - [`codec`]: the one encoding of log entries and peer messages (binary; reads earlier JSON).
//! - [`transport`]: [`PeerTransport`], the byte-level peer link, and the peer RPC kinds.
//! - [`network`]: openraft's network traits over a [`PeerTransport`].
//! - [`proposer`]: group commit. Concurrent writes coalesce into one entry; a follower forwards
//!   its batch to the leader, so any node accepts any write.
//! - [`reader`]: linearizable reads. Concurrent readers share one read-index round; followers
//!   get the read index from the leader and read locally once they have applied up to it.
//! - [`peer_handler`]: the receiving side of every peer RPC.
//! - [`error`]: [`ProposeError`], [`ReadError`] and the wire-level errors of forwarding.

#![forbid(unsafe_code)]

pub mod codec;
pub mod error;
mod leader;
pub mod network;
pub mod peer_handler;
pub mod proposer;
pub mod reader;
pub mod transport;
pub mod types;

pub use error::{ForwardError, ProposeError, ReadError};
pub use network::PeerNetwork;
pub use peer_handler::{PeerCallError, PeerHandler};
pub use proposer::{BatchObserver, Proposer, ProposerConfig};
pub use reader::ReadIndexer;
pub use transport::{PeerRpc, PeerTransport, TransportError};
pub use types::{NodeId, RaftRequest, RaftResponse, TypeConfig};

/// The openraft handle of a region node.
pub type Raft = openraft::Raft<TypeConfig>;

/// The peer address of `node` in the current membership, if it is a member.
pub fn node_addr(raft: &Raft, node: NodeId) -> Option<String> {
    let metrics = raft.metrics();
    let m = metrics.borrow();
    m.membership_config.membership().get_node(&node).map(|n| n.addr.clone())
}

/// The leader this node currently knows of.
pub fn current_leader(raft: &Raft) -> Option<NodeId> {
    raft.metrics().borrow().current_leader
}
