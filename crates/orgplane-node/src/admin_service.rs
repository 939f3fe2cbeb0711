//! The `AdminService` on a node: membership changes. The leader carries them out; a follower
//! hands the call to the leader. Adding a node makes it a learner first and promotes it once it
//! has caught up, so the quorum never counts a node that has not got the log; removing a node
//! is refused when the voters that would remain could not form a caught-up quorum.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers, RaftMetrics};
use orgplane_proto::conv::parse_region;
use orgplane_proto::v1::admin_service_client::AdminServiceClient;
use orgplane_proto::v1::admin_service_server::AdminService;
use orgplane_proto::v1::*;
use orgplane_raft::{current_leader, node_addr, NodeId};
use tonic::{Request, Response, Status};

use crate::caller;
use crate::error::NodeError;
use crate::org_service::NodeCore;

/// How far behind the leader's last log a follower may be and still count as caught up when
/// deciding whether a removal keeps a quorum.
const CAUGHT_UP_LAG: u64 = 1_000;
/// How long a new node may take to catch up as a learner before the call gives up (it keeps
/// catching up; calling again resumes).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long committing a membership change may take.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a remaining voter has to answer the liveness probe before a removal.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

pub struct AdminServiceImpl {
    core: Arc<NodeCore>,
}

impl AdminServiceImpl {
    pub fn new(core: Arc<NodeCore>) -> Self {
        AdminServiceImpl { core }
    }

    fn check_region(&self, region: &str) -> Result<(), NodeError> {
        let region = parse_region("region", region)?;
        if region != self.core.region {
            return Err(NodeError::WrongRegion { serving: self.core.region, requested: region });
        }
        Ok(())
    }

    /// A client of the leader's admin service, or None when this node leads.
    fn leader_client(&self) -> Result<Option<AdminServiceClient<tonic::transport::Channel>>, NodeError> {
        let raft = &self.core.raft;
        let unavailable = |reason: &str| NodeError::Unavailable { region: self.core.region, reason: reason.into() };
        let leader = current_leader(raft).ok_or_else(|| unavailable("no leader is known"))?;
        if leader == self.core.node_id {
            return Ok(None);
        }
        let addr = node_addr(raft, leader).ok_or_else(|| unavailable("the leader is not in the membership"))?;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| unavailable(&format!("bad leader address {addr}: {e}")))?
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy();
        Ok(Some(AdminServiceClient::new(channel)))
    }

    fn membership(&self) -> Membership {
        membership_of(self.core.region.as_str(), &self.core.raft.metrics().borrow())
    }

    fn refuse(&self, reason: impl Into<String>) -> Status {
        NodeError::Membership { region: self.core.region, reason: reason.into() }.into()
    }

    async fn add_as_leader(&self, node_id: NodeId, address: String) -> Result<Membership, Status> {
        let raft = &self.core.raft;
        let known = raft.metrics().borrow().membership_config.membership().get_node(&node_id).cloned();
        if let Some(node) = &known {
            if node.addr != address {
                return Err(self.refuse(format!("node {node_id} is already a member at {}", node.addr)));
            }
        }
        let add = raft.add_learner(node_id, BasicNode::new(&address), true);
        match tokio::time::timeout(CATCH_UP_TIMEOUT, add).await {
            Err(_) => {
                return Err(NodeError::Unavailable {
                    region: self.core.region,
                    reason: format!("node {node_id} is still catching up as a learner; call again to finish"),
                }
                .into())
            }
            Ok(Err(e)) => return Err(self.refuse(e.to_string())),
            Ok(Ok(_)) => {}
        }
        self.commit_change(ChangeMembers::AddVoterIds(BTreeSet::from([node_id]))).await?;
        tracing::info!(node_id, %address, "node added to the region");
        Ok(self.membership())
    }

    /// Commits a membership change, bounded: a change that cannot reach a quorum fails
    /// UNAVAILABLE instead of hanging (it may still complete once the quorum is back).
    async fn commit_change(&self, change: ChangeMembers<NodeId, BasicNode>) -> Result<(), Status> {
        match tokio::time::timeout(CHANGE_TIMEOUT, self.core.raft.change_membership(change, false)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.refuse(e.to_string())),
            Err(_) => Err(NodeError::Unavailable {
                region: self.core.region,
                reason: format!(
                    "the membership change was not committed within {CHANGE_TIMEOUT:?}; it may still complete, check the membership"
                ),
            }
            .into()),
        }
    }

    /// The voters (other than `removing`) that answer a health check now. The leader's
    /// replication metrics say how far each follower got, not whether it is still there.
    async fn reachable_voters(&self, voters: &BTreeSet<NodeId>, removing: NodeId) -> BTreeSet<NodeId> {
        let probes = voters.iter().copied().filter(|v| *v != removing && *v != self.core.node_id).map(|id| {
            let addr = node_addr(&self.core.raft, id);
            async move {
                let addr = addr?;
                let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                    .ok()?
                    .connect_timeout(PROBE_TIMEOUT)
                    .connect_lazy();
                let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
                let mut req = Request::new(tonic_health::pb::HealthCheckRequest { service: String::new() });
                req.set_timeout(PROBE_TIMEOUT);
                tokio::time::timeout(PROBE_TIMEOUT, health.check(req)).await.ok()?.ok().map(|_| id)
            }
        });
        let mut reachable: BTreeSet<NodeId> = futures::future::join_all(probes).await.into_iter().flatten().collect();
        reachable.insert(self.core.node_id);
        reachable
    }

    async fn remove_as_leader(&self, node_id: NodeId) -> Result<Membership, Status> {
        let raft = &self.core.raft;
        let metrics = raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if membership.get_node(&node_id).is_none() {
            return Err(NodeError::Domain(orgplane_model::DomainError::NotFound {
                kind: "node".into(),
                id: format!("{node_id} in region {}", self.core.region),
            })
            .into());
        }
        let change = if voters.contains(&node_id) {
            let reachable = self.reachable_voters(&voters, node_id).await;
            check_quorum_after_removal(&metrics, &voters, node_id, &reachable).map_err(|reason| self.refuse(reason))?;
            ChangeMembers::RemoveVoters(BTreeSet::from([node_id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([node_id]))
        };
        self.commit_change(change).await?;
        tracing::info!(node_id, "node removed from the region");
        Ok(self.membership())
    }
}

/// Refuses a removal after which the remaining voters could not form a quorum of reachable,
/// caught-up nodes (the leader counts as both).
fn check_quorum_after_removal(
    metrics: &RaftMetrics<NodeId, BasicNode>,
    voters: &BTreeSet<NodeId>,
    removing: NodeId,
    reachable: &BTreeSet<NodeId>,
) -> Result<(), String> {
    let remaining: Vec<NodeId> = voters.iter().copied().filter(|v| *v != removing).collect();
    if remaining.is_empty() {
        return Err("it is the last voter".into());
    }
    let last = metrics.last_log_index.unwrap_or(0);
    let empty = BTreeMap::new();
    let replication = metrics.replication.as_ref().unwrap_or(&empty);
    let caught_up = remaining
        .iter()
        .filter(|v| reachable.contains(v))
        .filter(|v| {
            **v == metrics.id
                || replication.get(v).and_then(|m| m.map(|l| l.index)).is_some_and(|m| m + CAUGHT_UP_LAG >= last)
        })
        .count();
    let quorum = remaining.len() / 2 + 1;
    if caught_up < quorum {
        return Err(format!(
            "only {caught_up} of the {} remaining voters are reachable and caught up; a quorum needs {quorum}",
            remaining.len()
        ));
    }
    Ok(())
}

/// The membership as the API shows it.
pub fn membership_of(region: &str, metrics: &RaftMetrics<NodeId, BasicNode>) -> Membership {
    let stored = &metrics.membership_config;
    let membership = stored.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let members = membership
        .nodes()
        .map(|(id, node)| ClusterMember {
            node_id: *id,
            address: node.addr.clone(),
            kind: if voters.contains(id) { "voter" } else { "learner" }.into(),
        })
        .collect();
    Membership { region: region.into(), members, log_index: stored.log_id().map(|l| l.index).unwrap_or(0) }
}

/// A call handed to the leader joins the caller's trace with this node's span as its parent,
/// in place of the `traceparent` the caller sent.
fn to_leader<T>(mut request: Request<T>) -> Request<T> {
    let mut headers = std::mem::take(request.metadata_mut()).into_headers();
    orgplane_telemetry::trace::inject_traceparent(&mut headers);
    *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
    request
}

#[tonic::async_trait]
impl AdminService for AdminServiceImpl {
    #[tracing::instrument(name = "node.admin.add_node", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn add_node(&self, request: Request<AddNodeRequest>) -> Result<Response<AddNodeResponse>, Status> {
        caller::platform_admin(&request, "add_node")?;
        let req = request.get_ref().clone();
        self.check_region(&req.region)?;
        if req.node_id == 0 {
            return Err(Status::invalid_argument("invalid node_id: 0 is reserved"));
        }
        if !req.address.contains(':') || req.address.trim() != req.address {
            return Err(Status::invalid_argument(format!("invalid address {:?}: expected host:port", req.address)));
        }
        if let Some(mut leader) = self.leader_client()? {
            return leader.add_node(to_leader(request)).await;
        }
        let membership = self.add_as_leader(req.node_id, req.address).await?;
        Ok(self.core.reply(AddNodeResponse { membership: Some(membership) }))
    }

    #[tracing::instrument(name = "node.admin.remove_node", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn remove_node(&self, request: Request<RemoveNodeRequest>) -> Result<Response<RemoveNodeResponse>, Status> {
        caller::platform_admin(&request, "remove_node")?;
        let req = request.get_ref().clone();
        self.check_region(&req.region)?;
        if let Some(mut leader) = self.leader_client()? {
            return leader.remove_node(to_leader(request)).await;
        }
        let membership = self.remove_as_leader(req.node_id).await?;
        Ok(self.core.reply(RemoveNodeResponse { membership: Some(membership) }))
    }

    async fn get_membership(
        &self,
        request: Request<GetMembershipRequest>,
    ) -> Result<Response<GetMembershipResponse>, Status> {
        caller::platform_admin(&request, "get_membership")?;
        let req = request.into_inner();
        if !req.region.is_empty() {
            self.check_region(&req.region)?;
        }
        Ok(self.core.reply(GetMembershipResponse { membership: Some(self.membership()) }))
    }

    type BackupStream = crate::backup::BackupStream;

    #[tracing::instrument(name = "node.admin.backup", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn backup(&self, request: Request<BackupRequest>) -> Result<Response<Self::BackupStream>, Status> {
        caller::platform_admin(&request, "backup")?;
        let stream = crate::backup::start_backup(&self.core, &request.get_ref().region).await?;
        Ok(self.core.reply(stream))
    }
}
