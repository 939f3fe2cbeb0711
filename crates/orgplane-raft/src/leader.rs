//! [`LeaderLink`]: finding the region's leader and reaching it, shared by the proposer and the
//! reader. Every loop here is bounded by a deadline.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::codec;
use crate::error::ForwardError;
use crate::transport::{PeerRpc, PeerTransport};
use crate::types::NodeId;
use crate::{current_leader, node_addr, Raft};

/// Longest single wait on one peer call; a leader that does not answer within it is treated
/// as lost for this attempt, and the next attempt asks the metrics again.
const MAX_PEER_ATTEMPT: Duration = Duration::from_secs(3);

/// What one attempt against the leader came to.
pub(crate) enum Attempt<T> {
    Done(T),
    /// Worth another try after a short pause (no leader, leader moved, peer unreachable).
    Retry(String),
    /// The node is stopping.
    Stopped,
}

#[derive(Clone)]
pub(crate) struct LeaderLink {
    pub node_id: NodeId,
    pub raft: Raft,
    pub transport: Arc<dyn PeerTransport>,
}

impl LeaderLink {
    /// The leader this node knows of, waiting until `deadline` for one to be elected.
    pub async fn wait_leader(&self, deadline: Instant) -> Option<NodeId> {
        if let Some(leader) = current_leader(&self.raft) {
            return Some(leader);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let metrics = self.raft.wait(Some(remaining)).metrics(|m| m.current_leader.is_some(), "a leader").await;
        metrics.ok().and_then(|m| m.current_leader)
    }

    /// Sends `payload` to the leader `leader` and decodes its `Result<T, ForwardError>`.
    pub async fn call_leader<T: DeserializeOwned>(
        &self,
        leader: NodeId,
        rpc: PeerRpc,
        payload: Vec<u8>,
        deadline: Instant,
    ) -> Attempt<T> {
        let Some(addr) = node_addr(&self.raft, leader) else {
            return Attempt::Retry(format!("leader {leader} is not in the membership"));
        };
        let timeout = deadline.saturating_duration_since(Instant::now()).min(MAX_PEER_ATTEMPT);
        let reply = match self.transport.call(leader, &addr, rpc, payload, timeout).await {
            Ok(reply) => reply,
            Err(e) => return Attempt::Retry(e.to_string()),
        };
        match codec::decode::<Result<T, ForwardError>>(&reply) {
            Ok(Ok(value)) => Attempt::Done(value),
            Ok(Err(e)) => Attempt::Retry(e.to_string()),
            Err(e) => Attempt::Retry(format!("undecodable reply from leader {leader}: {e}")),
        }
    }
}

/// Runs `attempt` until it is done, the node stops, or `timeout` passes, pausing a little
/// longer after each failure. Returns the value, or the last failure and how long it tried.
pub(crate) async fn retry_until<T, F, Fut>(timeout: Duration, mut attempt: F) -> Result<T, RetryFailure>
where
    F: FnMut(Instant) -> Fut,
    Fut: std::future::Future<Output = Attempt<T>>,
{
    let start = Instant::now();
    let deadline = start + timeout;
    let mut pause = Duration::from_millis(5);
    let mut last_error = String::from("no leader known");
    loop {
        if Instant::now() >= deadline {
            return Err(RetryFailure::TimedOut { waited_ms: start.elapsed().as_millis() as u64, last_error });
        }
        match attempt(deadline).await {
            Attempt::Done(value) => return Ok(value),
            Attempt::Stopped => return Err(RetryFailure::Stopped),
            Attempt::Retry(why) => last_error = why,
        }
        // A backoff between attempts, not a synchronization: the next attempt re-reads state.
        let wake = (Instant::now() + pause).min(deadline);
        tokio::time::sleep_until(wake).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

pub(crate) enum RetryFailure {
    TimedOut { waited_ms: u64, last_error: String },
    Stopped,
}
