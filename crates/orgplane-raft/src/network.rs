//! openraft's network traits over a [`PeerTransport`]: requests and replies travel in [`codec`];
//! a reply carries the receiver's `Result`, so a remote Raft error comes back as
//! [`RemoteError`], and a transport failure as unreachable or timeout.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::transport::{PeerRpc, PeerTransport, TransportError};
use crate::types::{NodeId, TypeConfig};

/// Builds a [`PeerClient`] per target; openraft keeps one per replication stream.
#[derive(Clone)]
pub struct PeerNetwork {
    transport: Arc<dyn PeerTransport>,
}

impl PeerNetwork {
    pub fn new(transport: Arc<dyn PeerTransport>) -> PeerNetwork {
        PeerNetwork { transport }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient { target, addr: node.addr.clone(), transport: self.transport.clone() }
    }
}

/// The link to one peer.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    transport: Arc<dyn PeerTransport>,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, E>>;

impl PeerClient {
    async fn call<Req, Resp, E>(&self, rpc: PeerRpc, req: &Req, timeout: Duration) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload = codec::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let reply = self.transport.call(self.target, &self.addr, rpc, payload, timeout).await.map_err(|e| match e {
            TransportError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&e)),
            _ => RPCError::Network(NetworkError::new(&e)),
        })?;
        let result: Result<Resp, E> = codec::decode(&reply).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, RaftError<NodeId>> {
        self.call(PeerRpc::AppendEntries, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        self.call(PeerRpc::InstallSnapshot, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, RaftError<NodeId>> {
        self.call(PeerRpc::Vote, &rpc, option.hard_ttl()).await
    }
}
