//! Group commit. Every write goes through the node's [`Proposer`]: a task that takes the
//! commands waiting in its queue, puts up to `max_batch_commands` of them into one
//! [`RaftRequest`] (one log entry, one fsync on each replica), and commits it, with up to
//! `max_inflight_batches` batches in flight. While all are in flight, new writes queue up and
//! form the next, larger batch: the batch size follows the load by itself.
//!
//! On a follower the batch is forwarded to the leader in one peer call, so clients never chase
//! leaders. Commands always carry a request id, so retrying a batch whose outcome is unknown
//! (leader lost mid-commit) applies each command at most once.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use orgplane_model::{Command, CommandResult};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;
use tracing::Instrument;

use crate::codec;
use crate::error::ProposeError;
use crate::leader::{retry_until, Attempt, LeaderLink, RetryFailure};
use crate::transport::{PeerRpc, PeerTransport};
use crate::types::{NodeId, RaftRequest};
use crate::Raft;

/// Tuning of the group commit.
#[derive(Debug, Clone)]
pub struct ProposerConfig {
    /// The most commands in one log entry.
    pub max_batch_commands: usize,
    /// Batches being committed at once. More overlap replication with the next fsync; fewer
    /// make larger batches, and every entry costs an fsync and sled I/O job on each replica,
    /// two AppendEntries and an apply call whatever its size. One measured best (BENCHMARKS.md,
    /// "Binary log entries, one batch in flight"): more writes/s than 4 in every pair at 64 and
    /// 256 clients (1.06-1.30x) and than 2 in five pairs of six, with a lower p99; a single
    /// writer is unchanged.
    pub max_inflight_batches: usize,
    /// How long a write may look for a leader and wait for its commit before it fails as
    /// unavailable.
    pub propose_timeout: Duration,
    /// Writes that may wait in the queue; beyond it callers wait for room.
    pub queue_capacity: usize,
    /// Told the size of every batch formed, so the node can export the batch-size histogram
    /// without this crate knowing a metrics library.
    pub batch_observer: Option<Arc<dyn BatchObserver>>,
}

/// Watches the group commit form batches (for metrics). Called on the batching task for every
/// batch, so an implementation must be quick and must not block.
pub trait BatchObserver: std::fmt::Debug + Send + Sync + 'static {
    /// A batch of `commands` commands was formed and is about to be committed.
    fn batch_formed(&self, commands: usize);
}

impl Default for ProposerConfig {
    fn default() -> Self {
        ProposerConfig {
            max_batch_commands: 512,
            max_inflight_batches: 1,
            propose_timeout: Duration::from_secs(5),
            queue_capacity: 16 * 1024,
            batch_observer: None,
        }
    }
}

struct Pending {
    command: Command,
    reply: oneshot::Sender<Result<CommandResult, ProposeError>>,
}

/// The node's write path. Cheap to clone.
#[derive(Clone)]
pub struct Proposer {
    queue: mpsc::Sender<Pending>,
}

impl Proposer {
    /// Starts the batching task. It ends when every `Proposer` clone is dropped.
    pub fn spawn(node_id: NodeId, raft: Raft, transport: Arc<dyn PeerTransport>, config: ProposerConfig) -> Proposer {
        let (queue, rx) = mpsc::channel(config.queue_capacity.max(1));
        let link = LeaderLink { node_id, raft, transport };
        tokio::spawn(
            run_batcher(link, rx, config).instrument(tracing::info_span!("node.raft.batcher", node = node_id)),
        );
        Proposer { queue }
    }

    /// Commits `command` and returns its result. An error means the outcome is unknown.
    pub async fn propose(&self, command: Command) -> Result<CommandResult, ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.queue.send(Pending { command, reply }).await.map_err(|_| ProposeError::ShuttingDown)?;
        rx.await.map_err(|_| ProposeError::ShuttingDown)?
    }
}

async fn run_batcher(link: LeaderLink, mut rx: mpsc::Receiver<Pending>, config: ProposerConfig) {
    let inflight = Arc::new(Semaphore::new(config.max_inflight_batches.max(1)));
    while let Some(first) = rx.recv().await {
        // Waiting for a free slot first lets more writes gather behind `first`.
        let Ok(permit) = inflight.clone().acquire_owned().await else { return };
        let mut batch = vec![first];
        while batch.len() < config.max_batch_commands {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        if let Some(observer) = &config.batch_observer {
            observer.batch_formed(batch.len());
        }
        let link = link.clone();
        let timeout = config.propose_timeout;
        tokio::spawn(async move {
            let (commands, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.command, p.reply)).unzip();
            tracing::trace!(commands = commands.len(), "committing a batch");
            let outcome = commit_batch(&link, RaftRequest { commands }, timeout).await;
            drop(permit);
            match outcome {
                Ok(results) if results.len() == replies.len() => {
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(Ok(result));
                    }
                }
                Ok(results) => {
                    let e = ProposeError::Rejected(format!("{} results for {} commands", results.len(), replies.len()));
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}

/// Commits one batch on the leader, wherever it is, retrying until `timeout`.
async fn commit_batch(
    link: &LeaderLink,
    request: RaftRequest,
    timeout: Duration,
) -> Result<Vec<CommandResult>, ProposeError> {
    // Encoded before anything is proposed: a batch that cannot be encoded is refused here,
    // rather than failing the leader's log append (a storage error, fatal to its Raft). The
    // bytes are what a follower forwards.
    let payload = codec::encode(&request).map_err(|e| ProposeError::Rejected(e.to_string()))?;
    let result = retry_until(timeout, |deadline| {
        let request = request.clone();
        let payload = &payload;
        async move {
            let Some(leader) = link.wait_leader(deadline).await else {
                return Attempt::Retry("no leader elected".into());
            };
            if leader == link.node_id {
                propose_local(&link.raft, request).await
            } else {
                let forwarded = payload.clone();
                match link.call_leader::<crate::RaftResponse>(leader, PeerRpc::Forward, forwarded, deadline).await {
                    Attempt::Done(resp) => Attempt::Done(resp.results),
                    Attempt::Retry(why) => Attempt::Retry(why),
                    Attempt::Stopped => Attempt::Stopped,
                }
            }
        }
    })
    .await;
    result.map_err(|f| match f {
        RetryFailure::TimedOut { waited_ms, last_error } => ProposeError::Unavailable { waited_ms, last_error },
        RetryFailure::Stopped => ProposeError::ShuttingDown,
    })
}

/// Proposes on this node, which believes it leads.
pub(crate) async fn propose_local(raft: &Raft, request: RaftRequest) -> Attempt<Vec<CommandResult>> {
    match raft.client_write(request).await {
        Ok(resp) => Attempt::Done(resp.data.results),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Attempt::Retry(format!("leadership moved to {:?}", f.leader_id))
        }
        Err(RaftError::APIError(e)) => Attempt::Retry(e.to_string()),
        Err(RaftError::Fatal(_)) => Attempt::Stopped,
    }
}

/// A deadline `timeout` from now, for callers that share one budget over several steps.
pub fn deadline_in(timeout: Duration) -> Instant {
    Instant::now() + timeout
}
