//! Route selection, the second half: region key -> cached per-region service. The
//! [`RegionTable`] is built once from the configuration and holds, per region, a
//! [`RegionNodes`]: one client per node endpoint (each over the stack of
//! [`crate::stack::node_stack`]) and a hint of which node to try first.
//!
//! Any node of a region can serve any request (nodes forward writes to their leader
//! themselves), so the hint is an optimisation: it is the leader named by the last
//! `x-orgplane-leader` response header, or, when the hinted node stopped answering, the next
//! node. [`RegionNodes::call`] is the attempt loop: hinted node first, then each other node
//! once, while the failure says another node may do better, the request may safely be sent
//! again, and the deadline has time left.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orgplane_model::Region;
use orgplane_proto::conv::MOVING_TO_HEADER;
use orgplane_proto::v1::access_service_client::AccessServiceClient;
use orgplane_proto::v1::admin_service_client::AdminServiceClient;
use orgplane_proto::v1::app_service_client::AppServiceClient;
use orgplane_proto::v1::cluster_service_client::ClusterServiceClient;
use orgplane_proto::v1::move_service_client::MoveServiceClient;
use orgplane_proto::v1::org_service_client::OrgServiceClient;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use crate::config::{ValidatedRegions, MAX_MESSAGE_BYTES};
use crate::deadline::Deadline;
use crate::error::RouterError;
use crate::metrics::RouterMetrics;
use crate::stack::{node_channel, node_stack, NodeService, StackSettings};

/// Response header in which a node names its region's leader, as the leader's client address
/// (`host:port`, one of the configured endpoints).
pub const LEADER_HEADER: &str = "x-orgplane-leader";

/// Every region the router serves, each with its nodes. Immutable after start; the only
/// state that changes is each region's leader hint.
#[derive(Debug)]
pub(crate) struct RegionTable {
    regions: BTreeMap<Region, Arc<RegionNodes>>,
}

impl RegionTable {
    /// Builds a lazily connecting client per configured endpoint. Connects to nothing. Every
    /// call to a region is counted in `metrics`.
    pub(crate) fn new(
        regions: &ValidatedRegions,
        settings: &StackSettings,
        metrics: &RouterMetrics,
    ) -> Result<RegionTable, RouterError> {
        let mut table = BTreeMap::new();
        for (&region, endpoints) in &regions.0 {
            let mut nodes = Vec::with_capacity(endpoints.len());
            for endpoint in endpoints {
                let channel = node_channel(endpoint, settings).map_err(|e| RouterError::BadEndpoint {
                    region,
                    endpoint: endpoint.clone(),
                    reason: e.to_string(),
                })?;
                let service = node_stack(channel, region, endpoint, settings);
                nodes.push(Node {
                    endpoint: endpoint.clone(),
                    org: OrgServiceClient::new(service.clone())
                        .max_decoding_message_size(MAX_MESSAGE_BYTES)
                        .max_encoding_message_size(MAX_MESSAGE_BYTES),
                    admin: AdminServiceClient::new(service.clone())
                        .max_decoding_message_size(MAX_MESSAGE_BYTES)
                        .max_encoding_message_size(MAX_MESSAGE_BYTES),
                    access: AccessServiceClient::new(service.clone())
                        .max_decoding_message_size(MAX_MESSAGE_BYTES)
                        .max_encoding_message_size(MAX_MESSAGE_BYTES),
                    apps: AppServiceClient::new(service.clone())
                        .max_decoding_message_size(MAX_MESSAGE_BYTES)
                        .max_encoding_message_size(MAX_MESSAGE_BYTES),
                    cluster: ClusterServiceClient::new(service.clone())
                        .max_decoding_message_size(MAX_MESSAGE_BYTES)
                        .max_encoding_message_size(MAX_MESSAGE_BYTES),
                    moves: MoveServiceClient::new(service)
                        .max_decoding_message_size(MAX_MESSAGE_BYTES)
                        .max_encoding_message_size(MAX_MESSAGE_BYTES),
                });
            }
            let metrics = metrics.clone();
            table.insert(region, Arc::new(RegionNodes { region, nodes, preferred: AtomicUsize::new(0), metrics }));
        }
        Ok(RegionTable { regions: table })
    }

    /// The nodes of `region`; NOT_FOUND when the router has none for it.
    pub(crate) fn get(&self, region: Region) -> Result<&Arc<RegionNodes>, RouterError> {
        self.regions.get(&region).ok_or(RouterError::RegionNotServed { region })
    }

    /// Every served region, in [`Region::ALL`] order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<RegionNodes>> {
        self.regions.values()
    }

    pub(crate) fn regions(&self) -> impl Iterator<Item = Region> + '_ {
        self.regions.keys().copied()
    }
}

/// One node endpoint and its clients (which share one stack and channel).
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) endpoint: String,
    pub(crate) org: OrgServiceClient<NodeService>,
    pub(crate) admin: AdminServiceClient<NodeService>,
    pub(crate) access: AccessServiceClient<NodeService>,
    pub(crate) apps: AppServiceClient<NodeService>,
    pub(crate) cluster: ClusterServiceClient<NodeService>,
    pub(crate) moves: MoveServiceClient<NodeService>,
}

/// The nodes of one region.
#[derive(Debug)]
pub(crate) struct RegionNodes {
    pub(crate) region: Region,
    /// In configured order; never empty (the configuration is validated).
    pub(crate) nodes: Vec<Node>,
    /// Index into `nodes` of the node to try first: the last leader a node named, or the
    /// next node after the hinted one failed.
    preferred: AtomicUsize,
    /// Where each call's outcome and latency go.
    metrics: RouterMetrics,
}

/// How one attempt failed, which decides whether another node is tried.
#[derive(Debug)]
enum Failure {
    /// The call never left the router: no connection could be made, or the node was at the
    /// router's concurrency limit. Safe to send anywhere else.
    NotSent { reason: String, overloaded: bool },
    /// The node was reached but could not serve (UNAVAILABLE, or the connection broke
    /// mid-call): another node may, but the request may have been applied.
    Unavailable { reason: String },
    /// The call ran out of time below gRPC: the stack's backstop or the channel's own
    /// enforcement of the call's `grpc-timeout` fired.
    TimedOut,
    /// The node's own answer: final.
    Answer(Status),
}

/// The shortest share of the budget an attempt gets before the router moves on to another
/// node: long enough for a leader election and a commit, so a slow but live region is not
/// abandoned needlessly.
const MIN_ATTEMPT_BUDGET: Duration = Duration::from_millis(1500);

/// How long one attempt may take. When the call may be sent again and other nodes remain, the
/// attempt gets a share of what remains (at least [`MIN_ATTEMPT_BUDGET`]), so a node that
/// accepts the connection but never answers (paused, partitioned after connecting) does not
/// use up the whole deadline; otherwise it gets everything that remains.
fn attempt_budget(remaining: Duration, untried_after_this: usize, retry_after_send_is_safe: bool) -> Duration {
    if !retry_after_send_is_safe || untried_after_this == 0 {
        return remaining;
    }
    let share = remaining / (untried_after_this as u32 + 1);
    share.max(MIN_ATTEMPT_BUDGET).min(remaining)
}

impl RegionNodes {
    /// Sends `message` to the region with `send`, hinted node first, failing over to the other
    /// nodes as described in the module docs. Each attempt carries its budget (see
    /// [`attempt_budget`]) as its `grpc-timeout` and is cut off when it passes. The outcome
    /// and latency of the whole call go to the router's per-region metrics.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn call<Req, Resp, C, F, Fut>(
        &self,
        rpc: &'static str,
        deadline: Deadline,
        message: Req,
        retry_after_send_is_safe: bool,
        client: impl Fn(&Node) -> C,
        send: F,
    ) -> Result<Resp, RouterError>
    where
        Req: Clone,
        F: Fn(C, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let started = Instant::now();
        let result = self.attempt_nodes(rpc, deadline, message, retry_after_send_is_safe, client, send).await;
        let code = result.as_ref().map_or_else(RouterError::code, |_| Code::Ok);
        self.metrics.region_call(self.region, code, started.elapsed());
        result
    }

    /// The attempt loop of [`RegionNodes::call`].
    #[allow(clippy::too_many_arguments)]
    async fn attempt_nodes<Req, Resp, C, F, Fut>(
        &self,
        rpc: &'static str,
        deadline: Deadline,
        message: Req,
        retry_after_send_is_safe: bool,
        client: impl Fn(&Node) -> C,
        send: F,
    ) -> Result<Resp, RouterError>
    where
        Req: Clone,
        F: Fn(C, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let region = self.region;
        let mut tried = vec![false; self.nodes.len()];
        let mut last_failure: Option<(String, String)> = None;
        let mut all_overloaded = true;
        let mut next = self.preferred.load(Ordering::Relaxed) % self.nodes.len();
        for attempt in 1..=self.nodes.len() {
            let Some(remaining) = deadline.remaining() else { break };
            tried[next] = true;
            let node = &self.nodes[next];
            let untried = tried.iter().filter(|t| !**t).count();
            let budget = attempt_budget(remaining, untried, retry_after_send_is_safe);
            let mut request = tonic::Request::new(message.clone());
            request.set_timeout(budget);
            let failure = match tokio::time::timeout(budget, send(client(node), request)).await {
                Err(_elapsed) if budget < remaining => {
                    Failure::Unavailable { reason: format!("no answer within {} ms", budget.as_millis()) }
                }
                Err(_elapsed) => break,
                Ok(Ok(response)) => {
                    self.note_leader(response.metadata());
                    return Ok(response.into_inner());
                }
                Ok(Err(status)) => {
                    self.note_leader(status.metadata());
                    match classify(status) {
                        // tonic enforces the attempt's grpc-timeout itself.
                        Failure::TimedOut if budget < remaining => {
                            Failure::Unavailable { reason: format!("no answer within {} ms", budget.as_millis()) }
                        }
                        failure => failure,
                    }
                }
            };
            tracing::debug!(rpc, region = region.as_str(), node = %node.endpoint, attempt, failure = failure.kind(), "attempt failed");
            if deadline.remaining().is_none() {
                break;
            }
            match failure {
                Failure::Answer(status) => return Err(RouterError::NodeAnswer { region, status }),
                Failure::TimedOut => break,
                Failure::NotSent { reason, overloaded } => {
                    all_overloaded &= overloaded;
                    // A node busy with the router's own calls is still reachable (and maybe
                    // the leader): keep the hint.
                    if !overloaded {
                        self.note_unreachable(next);
                    }
                    last_failure = Some((node.endpoint.clone(), reason));
                }
                Failure::Unavailable { reason } => {
                    all_overloaded = false;
                    self.note_unreachable(next);
                    if !retry_after_send_is_safe {
                        return Err(RouterError::RegionUnavailable {
                            region,
                            reason: format!("node {}: {reason}", node.endpoint),
                        });
                    }
                    last_failure = Some((node.endpoint.clone(), reason));
                }
            }
            // The hinted node (it may just have been named in the failed answer) if not tried
            // yet, else the next untried node in configured order.
            let hinted = self.preferred.load(Ordering::Relaxed) % self.nodes.len();
            next = if !tried[hinted] {
                hinted
            } else {
                match (1..self.nodes.len()).map(|i| (next + i) % self.nodes.len()).find(|&i| !tried[i]) {
                    Some(i) => i,
                    None => break,
                }
            };
        }
        match last_failure {
            _ if deadline.remaining().is_none() => {
                Err(RouterError::DeadlineExceeded { region, budget_ms: deadline.budget().as_millis() as u64 })
            }
            Some(_) if all_overloaded => Err(RouterError::RegionOverloaded { region }),
            Some((endpoint, reason)) => {
                let tried = tried.iter().filter(|&&t| t).count();
                let reason = if tried == 1 {
                    format!("node {endpoint}: {reason}")
                } else {
                    format!("none of its {tried} nodes answered; last, {endpoint}: {reason}")
                };
                Err(RouterError::RegionUnavailable { region, reason })
            }
            // Only a timeout below gRPC ends the loop this way.
            None => Err(RouterError::DeadlineExceeded { region, budget_ms: deadline.budget().as_millis() as u64 }),
        }
    }

    /// Remembers the leader a node named, if it is one of this region's endpoints (anything
    /// else is ignored: a router only talks to configured nodes).
    fn note_leader(&self, metadata: &MetadataMap) {
        let Some(leader) = metadata.get(LEADER_HEADER).and_then(|v| v.to_str().ok()) else { return };
        if let Some(index) = self.nodes.iter().position(|n| n.endpoint == leader.trim()) {
            self.preferred.store(index, Ordering::Relaxed);
        }
    }

    /// Moves the hint off a node that could not serve, unless it already moved elsewhere.
    fn note_unreachable(&self, index: usize) {
        let next = (index + 1) % self.nodes.len();
        let _ = self.preferred.compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The nodes in an order that ends with the hinted leader: for work each node must do in
    /// turn that briefly stalls the node doing it (compacting its files), so the leader goes last.
    pub(crate) fn leader_last(&self) -> impl Iterator<Item = &Node> {
        let leader = self.preferred.load(Ordering::Relaxed) % self.nodes.len();
        let order: Vec<usize> = (1..=self.nodes.len()).map(|i| (leader + i) % self.nodes.len()).collect();
        order.into_iter().map(move |i| &self.nodes[i])
    }

    /// The node tried first by the next call, for tests of the hint.
    #[cfg(test)]
    fn preferred(&self) -> usize {
        self.preferred.load(Ordering::Relaxed)
    }
}

impl Failure {
    fn kind(&self) -> &'static str {
        match self {
            Failure::NotSent { overloaded: true, .. } => "overloaded",
            Failure::NotSent { .. } => "not_sent",
            Failure::Unavailable { .. } => "unavailable",
            Failure::TimedOut => "timed_out",
            Failure::Answer(_) => "answer",
        }
    }
}

/// Tells a node's answer from a failure of the call itself. A status that tonic made from a
/// local error keeps that error as its source; a status the node sent has none.
fn classify(status: Status) -> Failure {
    let mut source = std::error::Error::source(&status);
    let local = source.is_some();
    while let Some(error) = source {
        if error.is::<tonic::ConnectError>() {
            return Failure::NotSent { reason: describe_chain(error), overloaded: false };
        }
        if error.is::<tower::load_shed::error::Overloaded>() {
            return Failure::NotSent { reason: "at the router's concurrency limit".to_string(), overloaded: true };
        }
        // The stack's backstop, or the channel enforcing the call's own `grpc-timeout`.
        if error.is::<tower::timeout::error::Elapsed>() || error.is::<tonic::TimeoutExpired>() {
            return Failure::TimedOut;
        }
        source = error.source();
    }
    if status.metadata().contains_key(MOVING_TO_HEADER) {
        // The region's own answer about a moving org: the caller decides (see `route_to`).
        return Failure::Answer(status);
    }
    if local || status.code() == Code::Unavailable {
        let reason = if status.message().is_empty() {
            status.code().description().to_string()
        } else {
            status.message().to_string()
        };
        return Failure::Unavailable { reason };
    }
    Failure::Answer(status)
}

/// An error and its causes on one line ("tcp connect error: Connection refused (os error
/// 111)"), skipping causes that repeat the text before them.
fn describe_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut last = text.clone();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !last.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        last = cause_text;
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_budgets_share_the_deadline_only_when_moving_on_is_safe() {
        let secs = Duration::from_secs;
        let check = |remaining, untried, safe, expected: Duration| {
            assert_eq!(attempt_budget(remaining, untried, safe), expected, "{remaining:?} {untried} {safe}");
        };
        check(secs(9), 2, true, secs(3));
        check(secs(9), 0, true, secs(9));
        check(secs(9), 2, false, secs(9));
        check(secs(2), 2, true, Duration::from_millis(1500));
        check(Duration::from_millis(800), 2, true, Duration::from_millis(800));
    }
    use crate::stack::{NodeCallError, StackSettings};
    use std::time::Duration;
    use tower::BoxError;

    fn region_nodes(endpoints: &[&str]) -> Arc<RegionNodes> {
        let settings = StackSettings {
            request_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            max_concurrent_requests: 1,
            tls: None,
        };
        let regions = ValidatedRegions([(Region::Eu, endpoints.iter().map(|e| e.to_string()).collect())].into());
        let table = RegionTable::new(&regions, &settings, &RouterMetrics::unregistered()).unwrap();
        table.get(Region::Eu).unwrap().clone()
    }

    #[tokio::test]
    async fn leader_hint_follows_known_endpoints_only() {
        let nodes = region_nodes(&["a:1", "b:1", "c:1"]);
        let mut metadata = MetadataMap::new();
        metadata.insert(LEADER_HEADER, "c:1".parse().unwrap());
        nodes.note_leader(&metadata);
        assert_eq!(nodes.preferred(), 2);
        metadata.insert(LEADER_HEADER, "evil:1".parse().unwrap());
        nodes.note_leader(&metadata);
        assert_eq!(nodes.preferred(), 2, "an unknown leader is ignored");
        nodes.note_unreachable(0);
        assert_eq!(nodes.preferred(), 2, "a failure of another node keeps the hint");
        nodes.note_unreachable(2);
        assert_eq!(nodes.preferred(), 0, "a failure of the hinted node moves the hint on");
        let order: Vec<_> = nodes.leader_last().map(|n| n.endpoint.as_str()).collect();
        assert_eq!(order, vec!["b:1", "c:1", "a:1"], "every node once, the hinted leader last");
    }

    #[test]
    fn classifies_failures() {
        let kind = |status: Status| classify(status).kind();
        // What the generated client makes of an error of the node stack.
        let local = |error: BoxError| Status::from_error(Box::new(NodeCallError(error)));
        assert_eq!(kind(Status::not_found("no such org")), "answer");
        assert_eq!(kind(Status::unavailable("no leader")), "unavailable");
        assert_eq!(kind(local(Box::new(tonic::ConnectError("refused".into())))), "not_sent");
        assert_eq!(kind(local(Box::new(tower::load_shed::error::Overloaded::new()))), "overloaded");
        assert_eq!(kind(local(Box::new(tower::timeout::error::Elapsed::new()))), "timed_out");
        assert_eq!(kind(local(Box::new(tonic::TimeoutExpired(())))), "timed_out");
        assert_eq!(kind(local("connection reset".into())), "unavailable");
    }
}
