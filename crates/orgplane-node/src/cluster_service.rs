//! The `ClusterService` on a node: this node's own status (the router asks every node and
//! merges), and its region's endpoints from the Raft membership.

use std::sync::Arc;

use openraft::ServerState;
use orgplane_proto::v1::cluster_service_server::ClusterService;
use orgplane_proto::v1::*;
use tonic::{Request, Response, Status};

use crate::org_service::NodeCore;

pub struct ClusterServiceImpl {
    core: Arc<NodeCore>,
}

impl ClusterServiceImpl {
    pub fn new(core: Arc<NodeCore>) -> Self {
        ClusterServiceImpl { core }
    }
}

/// This node's status, from its Raft metrics.
pub fn node_status(core: &NodeCore) -> NodeStatus {
    let m = core.raft.metrics().borrow().clone();
    let role = match m.state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    };
    let address = m.membership_config.membership().get_node(&core.node_id).map(|n| n.addr.clone()).unwrap_or_default();
    NodeStatus {
        region: core.region.to_string(),
        node_id: core.node_id,
        address,
        role: role.to_string(),
        term: m.current_term,
        leader_id: m.current_leader.unwrap_or(0),
        last_log_index: m.last_log_index.unwrap_or(0),
        applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
        healthy: m.current_leader.is_some(),
        error: String::new(),
    }
}

#[tonic::async_trait]
impl ClusterService for ClusterServiceImpl {
    async fn get_cluster_status(
        &self,
        _request: Request<GetClusterStatusRequest>,
    ) -> Result<Response<GetClusterStatusResponse>, Status> {
        let status = node_status(&self.core);
        let region = RegionStatus {
            region: status.region.clone(),
            leader_id: status.leader_id,
            term: status.term,
            nodes: vec![status],
        };
        Ok(self.core.reply(GetClusterStatusResponse { regions: vec![region] }))
    }

    async fn get_topology(
        &self,
        _request: Request<GetTopologyRequest>,
    ) -> Result<Response<GetTopologyResponse>, Status> {
        let endpoints = {
            let metrics = self.core.raft.metrics();
            let m = metrics.borrow();
            m.membership_config.membership().nodes().map(|(_, n)| n.addr.clone()).collect()
        };
        Ok(self.core.reply(GetTopologyResponse {
            regions: vec![RegionEndpoints { region: self.core.region.to_string(), endpoints }],
        }))
    }
}
