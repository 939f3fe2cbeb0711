//! Linearizable reads by read index. A reader asks for a read index: the leader's last log
//! index once it has confirmed, with a quorum, that it still leads (never below any committed
//! write; see `local_read_index` for why not openraft's commit-based read log id). Once this
//! replica has applied up to it, a read of the local state sees every write acknowledged before
//! the read began.
//!
//! Concurrent readers share rounds: a task takes everyone waiting, runs ONE round (on the
//! leader: a heartbeat round; on a follower: one peer call to the leader), and answers them all.
//! Everyone in a round arrived before it started, which is what makes sharing it correct.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::RaftError;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::codec;
use crate::error::ReadError;
use crate::leader::{retry_until, Attempt, LeaderLink, RetryFailure};
use crate::transport::{PeerRpc, PeerTransport};
use crate::types::NodeId;
use crate::Raft;

type Waiter = oneshot::Sender<Result<u64, ReadError>>;

/// The node's linearizable-read path. Cheap to clone.
#[derive(Clone)]
pub struct ReadIndexer {
    queue: mpsc::Sender<Waiter>,
    raft: Raft,
    timeout: Duration,
}

impl ReadIndexer {
    /// Starts the round task. `timeout` bounds each read's wait for a leader and for apply.
    pub fn spawn(node_id: NodeId, raft: Raft, transport: Arc<dyn PeerTransport>, timeout: Duration) -> ReadIndexer {
        let (queue, rx) = mpsc::channel(16 * 1024);
        let link = LeaderLink { node_id, raft: raft.clone(), transport };
        tokio::spawn(run_rounds(link, rx, timeout).instrument(tracing::info_span!("node.raft.reader", node = node_id)));
        ReadIndexer { queue, raft, timeout }
    }

    /// Waits until this replica may serve a linearizable read; returns the applied index it
    /// waited for.
    pub async fn linearize(&self) -> Result<u64, ReadError> {
        let started = tokio::time::Instant::now();
        let index = self.read_index().await?;
        let remaining = self.timeout.saturating_sub(started.elapsed());
        self.raft.wait(Some(remaining)).applied_index_at_least(Some(index), "read index applied").await.map_err(
            |e| ReadError::Unavailable {
                waited_ms: started.elapsed().as_millis() as u64,
                last_error: format!("replica did not apply up to read index {index}: {e}"),
            },
        )?;
        Ok(index)
    }

    /// A read index, confirmed by the leader with a quorum, shared with concurrent readers.
    pub async fn read_index(&self) -> Result<u64, ReadError> {
        let (tx, rx) = oneshot::channel();
        self.queue.send(tx).await.map_err(|_| ReadError::ShuttingDown)?;
        rx.await.map_err(|_| ReadError::ShuttingDown)?
    }
}

async fn run_rounds(link: LeaderLink, mut rx: mpsc::Receiver<Waiter>, timeout: Duration) {
    while let Some(first) = rx.recv().await {
        let mut waiters = vec![first];
        while let Ok(w) = rx.try_recv() {
            waiters.push(w);
        }
        let result = read_index_round(&link, timeout).await;
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

async fn read_index_round(link: &LeaderLink, timeout: Duration) -> Result<u64, ReadError> {
    let result = retry_until(timeout, |deadline| async move {
        let Some(leader) = link.wait_leader(deadline).await else {
            return Attempt::Retry("no leader elected".into());
        };
        if leader == link.node_id {
            local_read_index(&link.raft).await
        } else {
            // No body: the lone tag byte asks for the reply in this build's encoding.
            link.call_leader::<u64>(leader, PeerRpc::ReadIndex, vec![codec::BINARY_V1], deadline).await
        }
    })
    .await;
    result.map_err(|f| match f {
        RetryFailure::TimedOut { waited_ms, last_error } => ReadError::Unavailable { waited_ms, last_error },
        RetryFailure::Stopped => ReadError::ShuttingDown,
    })
}

/// The read index on this node, which believes it leads: confirmed by a heartbeat round.
pub(crate) async fn local_read_index(raft: &Raft) -> Attempt<u64> {
    match raft.get_read_log_id().await {
        // openraft's read log id is max(the leader's first entry of its term, its commit
        // index). A leader killed and restarted before its followers time out comes back as
        // leader of the same term at once (openraft 0.9 `Engine::startup`), with its commit
        // index rebuilt from its last applied entry: entries it had committed and
        // acknowledged just before the crash, whose commit the followers never heard of, are
        // then above both, and a read at that index misses acknowledged writes (the fault
        // suite's kill -9 scenario caught exactly this). The leader's last log index, taken
        // once leadership is confirmed, is never below any committed entry: waiting for it to
        // be applied costs at most the entries in flight, and no read misses a write.
        Ok((read_log_id, _applied)) => {
            let last_log_index = raft.metrics().borrow().last_log_index.unwrap_or(0);
            Attempt::Done(read_log_id.map(|l| l.index).unwrap_or(0).max(last_log_index))
        }
        Err(RaftError::APIError(e)) => Attempt::Retry(e.to_string()),
        Err(RaftError::Fatal(_)) => Attempt::Stopped,
    }
}
