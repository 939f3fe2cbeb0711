//! [`PeerTransport`]: how a node reaches the other nodes of its region. Bytes in, bytes out:
//! the Raft layer encodes its own messages, the transport only carries them (over gRPC in the
//! node; through drop and delay filters in tests).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::types::NodeId;

/// The peer RPCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerRpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
    /// A follower hands a batch of commands to the leader.
    Forward,
    /// A follower asks the leader for a read index.
    ReadIndex,
}

impl PeerRpc {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerRpc::AppendEntries => "append_entries",
            PeerRpc::Vote => "vote",
            PeerRpc::InstallSnapshot => "install_snapshot",
            PeerRpc::Forward => "forward",
            PeerRpc::ReadIndex => "read_index",
        }
    }
}

/// A peer call that did not produce a reply.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// The peer could not be reached (connection refused, reset, DNS). Nothing was delivered.
    #[error("peer {target} at {addr} is unreachable: {reason}")]
    Unreachable { target: NodeId, addr: String, reason: String },
    /// No reply within the deadline; the peer may or may not have acted on it.
    #[error("peer {target} did not answer {rpc} within {timeout:?}")]
    Timeout { target: NodeId, rpc: &'static str, timeout: Duration },
    /// The peer answered with an error of the transport or the peer service (for example it is
    /// not the node the message was meant for).
    #[error("peer {target} refused {rpc}: {reason}")]
    Refused { target: NodeId, rpc: &'static str, reason: String },
}

/// A boxed future, so the trait stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Carries peer RPCs to the other nodes of the region.
pub trait PeerTransport: Send + Sync + 'static {
    /// Sends `payload` as `rpc` to node `target` at `addr`, waiting at most `timeout`.
    fn call(
        &self,
        target: NodeId,
        addr: &str,
        rpc: PeerRpc,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>>;
}
