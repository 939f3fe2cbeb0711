//! The receiving side of the peer RPCs: decodes the payload, hands it to openraft (or, for
//! forwarded writes and read-index requests, acts as the leader), and encodes the `Result`
//! for the sender. The node's gRPC service checks the region and target node before calling
//! in here.
//!
//! A forwarded batch joins the leader's own group commit (when the handler has the node's
//! [`Proposer`]) instead of becoming a log entry of its own. With clients spread over three
//! nodes, two thirds of the writes arrive as small forwarded batches; as entries of their own
//! each cost an append and a flush on every replica, two AppendEntries messages and an apply
//! batch, which profiling showed to be a large share of a write's CPU. Joined, they fill the
//! leader's batches instead.

use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

use crate::codec::{self, CodecError, Encoding};
use crate::error::ForwardError;
use crate::leader::Attempt;
use crate::proposer::Proposer;
use crate::reader::local_read_index;
use crate::transport::PeerRpc;
use crate::types::{NodeId, RaftRequest, RaftResponse, TypeConfig};
use crate::Raft;

/// A peer call that [`PeerHandler::handle`] could not answer.
#[derive(Debug, thiserror::Error)]
pub enum PeerCallError {
    /// The payload could not be decoded: nothing was done.
    #[error("undecodable {rpc} payload: {reason}")]
    BadPayload { rpc: &'static str, reason: String },
    /// The call was handled but its reply could not be encoded (a bug: every reply type must
    /// encode in both encodings).
    #[error("cannot encode the {rpc} reply: {reason}")]
    Unencodable { rpc: &'static str, reason: String },
}

/// Answers peer RPCs for one node.
#[derive(Clone)]
pub struct PeerHandler {
    raft: Raft,
    /// The node's write path; `None`: forwarded batches are proposed as entries of their own.
    proposer: Option<Proposer>,
}

impl PeerHandler {
    pub fn new(raft: Raft) -> PeerHandler {
        PeerHandler { raft, proposer: None }
    }

    /// Forwarded batches join `proposer`'s group commit (the node's own write path).
    pub fn with_proposer(mut self, proposer: Proposer) -> PeerHandler {
        self.proposer = Some(proposer);
        self
    }

    /// Handles one peer RPC; the reply is the RPC's `Result`, in the request's encoding.
    pub async fn handle(&self, rpc: PeerRpc, payload: &[u8]) -> Result<Vec<u8>, PeerCallError> {
        let bad = |e: CodecError| PeerCallError::BadPayload { rpc: rpc.as_str(), reason: e.to_string() };
        let reply = Encoding::of_request(payload);
        let encoded = match rpc {
            PeerRpc::AppendEntries => {
                let req: AppendEntriesRequest<TypeConfig> = codec::decode(payload).map_err(bad)?;
                reply.encode(&self.raft.append_entries(req).await)
            }
            PeerRpc::Vote => {
                let req: VoteRequest<NodeId> = codec::decode(payload).map_err(bad)?;
                reply.encode(&self.raft.vote(req).await)
            }
            PeerRpc::InstallSnapshot => {
                let req: InstallSnapshotRequest<TypeConfig> = codec::decode(payload).map_err(bad)?;
                reply.encode(&self.raft.install_snapshot(req).await)
            }
            PeerRpc::Forward => {
                let req: RaftRequest = codec::decode(payload).map_err(bad)?;
                reply.encode(&self.commit_forwarded(req).await)
            }
            PeerRpc::ReadIndex => reply.encode(&self.read_index_as_leader().await),
        };
        encoded.map_err(|e| PeerCallError::Unencodable { rpc: rpc.as_str(), reason: e.to_string() })
    }

    async fn commit_forwarded(&self, req: RaftRequest) -> Result<RaftResponse, ForwardError> {
        if let Some(proposer) = &self.proposer {
            return self.join_group_commit(proposer, req).await;
        }
        match self.raft.client_write(req).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ForwardError::NotLeader { leader: f.leader_id })
            }
            Err(e) => Err(ForwardError::Failed(e.to_string())),
        }
    }

    /// Proposes a forwarded batch's commands through this leader's group commit and answers
    /// their results in order. Each command carries a request id, so when one of them fails
    /// (outcome unknown) the sender may retry the whole batch: those already applied answer
    /// their first result again.
    async fn join_group_commit(&self, proposer: &Proposer, req: RaftRequest) -> Result<RaftResponse, ForwardError> {
        let (me, leader) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            (m.id, m.current_leader)
        };
        if leader != Some(me) {
            return Err(ForwardError::NotLeader { leader });
        }
        let outcomes = futures::future::join_all(req.commands.into_iter().map(|c| proposer.propose(c))).await;
        let results = outcomes.into_iter().collect::<Result<Vec<_>, _>>();
        results.map(|results| RaftResponse { results }).map_err(|e| ForwardError::Failed(e.to_string()))
    }

    async fn read_index_as_leader(&self) -> Result<u64, ForwardError> {
        match local_read_index(&self.raft).await {
            Attempt::Done(index) => Ok(index),
            Attempt::Retry(why) => {
                tracing::debug!(%why, "refused a read index request");
                Err(ForwardError::NotLeader { leader: crate::current_leader(&self.raft) })
            }
            Attempt::Stopped => Err(ForwardError::Failed("the node is shutting down".into())),
        }
    }
}
