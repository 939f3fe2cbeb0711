//! `ClusterService` at the router. `GetClusterStatus` asks every node of every region in
//! parallel, each within the status deadline, and merges the answers into one `RegionStatus`
//! per region; a node that does not answer is listed with role `unreachable` and the reason.
//! `GetTopology` answers from the configuration.

use std::time::Instant;

use futures::future::join_all;
use orgplane_model::Region;
use orgplane_proto::v1::cluster_service_server::ClusterService;
use orgplane_proto::v1::{
    GetClusterStatusRequest, GetClusterStatusResponse, GetTopologyRequest, GetTopologyResponse, NodeStatus,
    RegionEndpoints, RegionStatus,
};
use tonic::{Code, Request, Response, Status};

use crate::deadline::Deadline;
use crate::org_service::log_outcome;
use crate::region::{Node, RegionNodes};
use crate::server::RouterApi;

/// The role of a node the router could not get an answer from.
pub const UNREACHABLE_ROLE: &str = "unreachable";

#[tonic::async_trait]
impl ClusterService for RouterApi {
    #[tracing::instrument(name = "router.cluster_status", skip_all)]
    async fn get_cluster_status(
        &self,
        request: Request<GetClusterStatusRequest>,
    ) -> Result<Response<GetClusterStatusResponse>, Status> {
        let started = Instant::now();
        let deadline =
            Deadline::for_request(request.metadata(), self.state.request_timeout).at_most(self.state.status_timeout);
        let regions = self.cluster_status(deadline).await;
        log_outcome("GetClusterStatus", None, Code::Ok, started);
        Ok(Response::new(GetClusterStatusResponse { regions }))
    }

    async fn get_topology(
        &self,
        _request: Request<GetTopologyRequest>,
    ) -> Result<Response<GetTopologyResponse>, Status> {
        let started = Instant::now();
        let regions = self
            .state
            .table
            .iter()
            .map(|nodes| RegionEndpoints {
                region: nodes.region.to_string(),
                endpoints: nodes.nodes.iter().map(|n| n.endpoint.clone()).collect(),
            })
            .collect();
        log_outcome("GetTopology", None, Code::Ok, started);
        Ok(Response::new(GetTopologyResponse { regions }))
    }
}

impl RouterApi {
    /// Every region's status, each node asked in parallel within `deadline`.
    pub(crate) async fn cluster_status(&self, deadline: Deadline) -> Vec<RegionStatus> {
        join_all(self.state.table.iter().map(|nodes| region_status(nodes, deadline))).await
    }
}

/// Asks every node of one region for its status, in parallel, and merges the answers.
async fn region_status(nodes: &RegionNodes, deadline: Deadline) -> RegionStatus {
    let answers = join_all(nodes.nodes.iter().map(|node| node_status(node, deadline))).await;
    merge_region(nodes.region, nodes.nodes.iter().map(|n| n.endpoint.as_str()).zip(answers))
}

/// One node's own status, or why it could not be had. Only this node is asked: no failover.
async fn node_status(node: &Node, deadline: Deadline) -> Result<GetClusterStatusResponse, String> {
    let Some(remaining) = deadline.remaining() else {
        return Err(format!("no answer within {} ms", deadline.budget().as_millis()));
    };
    let mut request = Request::new(GetClusterStatusRequest {});
    request.set_timeout(remaining);
    let no_answer = || format!("no answer within {} ms", deadline.budget().as_millis());
    match tokio::time::timeout(remaining, node.cluster.clone().get_cluster_status(request)).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        // The channel enforces the call's `grpc-timeout` too, and may be first to give up.
        Ok(Err(_)) if deadline.remaining().is_none() => Err(no_answer()),
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Err(no_answer()),
    }
}

/// Merges the nodes' answers of one region, nodes in configured order. The region's leader
/// and term are those of the answer with the highest term (a node that knows a leader wins a
/// tie), so a deposed leader's stale view loses to the current one.
fn merge_region<'a>(
    region: Region,
    answers: impl IntoIterator<Item = (&'a str, Result<GetClusterStatusResponse, String>)>,
) -> RegionStatus {
    let mut merged = RegionStatus { region: region.to_string(), ..Default::default() };
    let mut best: Option<(u64, bool)> = None;
    for (endpoint, answer) in answers {
        match answer {
            Ok(response) => {
                for status in response.regions {
                    let leader_id = if status.leader_id != 0 {
                        status.leader_id
                    } else {
                        status.nodes.iter().map(|n| n.leader_id).find(|&id| id != 0).unwrap_or(0)
                    };
                    let term = status.nodes.iter().map(|n| n.term).fold(status.term, u64::max);
                    let rank = (term, leader_id != 0);
                    if best.is_none_or(|best| rank > best) {
                        best = Some(rank);
                        merged.term = term;
                        merged.leader_id = leader_id;
                    }
                    merged.nodes.extend(status.nodes.into_iter().map(|mut node| {
                        if node.address.is_empty() {
                            node.address = endpoint.to_string();
                        }
                        if node.region.is_empty() {
                            node.region = region.to_string();
                        }
                        node
                    }));
                }
            }
            Err(error) => merged.nodes.push(NodeStatus {
                region: region.to_string(),
                address: endpoint.to_string(),
                role: UNREACHABLE_ROLE.to_string(),
                healthy: false,
                error,
                ..Default::default()
            }),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(node_id: u64, term: u64, leader_id: u64) -> Result<GetClusterStatusResponse, String> {
        Ok(GetClusterStatusResponse {
            regions: vec![RegionStatus {
                region: "eu".into(),
                leader_id,
                term,
                nodes: vec![NodeStatus {
                    region: "eu".into(),
                    node_id,
                    role: if node_id == leader_id { "leader" } else { "follower" }.into(),
                    term,
                    leader_id,
                    healthy: true,
                    ..Default::default()
                }],
            }],
        })
    }

    #[test]
    fn highest_term_wins_and_unreachable_nodes_are_listed() {
        let merged = merge_region(
            Region::Eu,
            [("a:1", answer(1, 4, 1)), ("b:1", answer(2, 5, 3)), ("c:1", Err("tcp connect error".to_string()))],
        );
        assert_eq!((merged.term, merged.leader_id), (5, 3));
        assert_eq!(merged.nodes.len(), 3);
        assert_eq!(merged.nodes[0].address, "a:1");
        assert_eq!(merged.nodes[2].role, UNREACHABLE_ROLE);
        assert_eq!(merged.nodes[2].address, "c:1");
        assert_eq!(merged.nodes[2].error, "tcp connect error");
        assert!(!merged.nodes[2].healthy);
    }

    #[test]
    fn a_node_that_knows_the_leader_wins_a_tie() {
        let merged = merge_region(Region::Eu, [("a:1", answer(1, 7, 0)), ("b:1", answer(2, 7, 2))]);
        assert_eq!((merged.term, merged.leader_id), (7, 2));
        let nobody = merge_region(Region::Eu, [("a:1", Err("down".to_string()))]);
        assert_eq!((nobody.term, nobody.leader_id), (0, 0));
    }
}
