//! The peer-only Raft service. Only nodes of this region may call it (mutual TLS enforces that
//! when configured); every message must name this region and this node, so a misaddressed or
//! stale message is refused instead of acted on.

use orgplane_model::Region;
use orgplane_proto::raft_v1::raft_service_server::RaftService;
use orgplane_proto::raft_v1::{PeerReply, PeerRequest};
use orgplane_raft::{NodeId, PeerCallError, PeerHandler, PeerRpc};
use tonic::{Request, Response, Status};

/// For trusted peers of the same region only.
pub struct PeerService {
    region: Region,
    node_id: NodeId,
    handler: PeerHandler,
}

impl PeerService {
    pub fn new(region: Region, node_id: NodeId, handler: PeerHandler) -> PeerService {
        PeerService { region, node_id, handler }
    }

    async fn serve(&self, rpc: PeerRpc, request: Request<PeerRequest>) -> Result<Response<PeerReply>, Status> {
        let req = request.into_inner();
        let header = req.header.ok_or_else(|| Status::invalid_argument("peer message without a header"))?;
        if header.region != self.region.as_str() {
            return Err(Status::permission_denied(format!(
                "peer message for region {:?} reached a node of region {}",
                header.region, self.region
            )));
        }
        if header.target_node_id != self.node_id {
            return Err(Status::failed_precondition(format!(
                "peer message for node {} reached node {}",
                header.target_node_id, self.node_id
            )));
        }
        let payload = self.handler.handle(rpc, &req.payload).await.map_err(|e| match e {
            PeerCallError::BadPayload { .. } => Status::invalid_argument(e.to_string()),
            PeerCallError::Unencodable { .. } => Status::internal(e.to_string()),
        })?;
        Ok(Response::new(PeerReply { payload }))
    }
}

#[tonic::async_trait]
impl RaftService for PeerService {
    async fn append_entries(&self, request: Request<PeerRequest>) -> Result<Response<PeerReply>, Status> {
        self.serve(PeerRpc::AppendEntries, request).await
    }
    async fn vote(&self, request: Request<PeerRequest>) -> Result<Response<PeerReply>, Status> {
        self.serve(PeerRpc::Vote, request).await
    }
    async fn install_snapshot(&self, request: Request<PeerRequest>) -> Result<Response<PeerReply>, Status> {
        self.serve(PeerRpc::InstallSnapshot, request).await
    }
    async fn forward(&self, request: Request<PeerRequest>) -> Result<Response<PeerReply>, Status> {
        self.serve(PeerRpc::Forward, request).await
    }
    async fn read_index(&self, request: Request<PeerRequest>) -> Result<Response<PeerReply>, Status> {
        self.serve(PeerRpc::ReadIndex, request).await
    }
}
