//! Fake region nodes and a router harness for the router's integration tests.
//!
//! A [`FakeNode`] serves `OrgService` and `ClusterService` on `127.0.0.1:0`, records every
//! request it gets, and answers canned data; it can be told to name a leader in the
//! `x-orgplane-leader` header, to answer UNAVAILABLE a number of times, or to never answer.
//! [`dead_endpoint`] is an address nobody listens on; [`silent_endpoint`] accepts TCP
//! connections but never speaks gRPC.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orgplane_model::{OrgId, Region};
use orgplane_proto::v1::cluster_service_client::ClusterServiceClient;
use orgplane_proto::v1::cluster_service_server::{ClusterService, ClusterServiceServer};
use orgplane_proto::v1::org_service_client::OrgServiceClient;
use orgplane_proto::v1::org_service_server::{OrgService, OrgServiceServer};
use orgplane_proto::v1::*;
use orgplane_router::{RouterConfig, RouterError, LEADER_HEADER};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};

/// Every test awaits the router through this: a hang fails the test instead of stalling it.
pub const TEST_BOUND: Duration = Duration::from_secs(10);

pub async fn bounded<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(TEST_BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {TEST_BOUND:?}"))
}

/// A request a fake node got.
#[derive(Debug, Clone)]
pub enum Seen {
    CreateOrg(CreateOrgRequest),
    GetOrg(GetOrgRequest),
    ListOrgs(ListOrgsRequest),
    UpdateOrg(UpdateOrgRequest),
    DeleteOrg(DeleteOrgRequest),
    AddMember(AddMemberRequest),
    SetMemberRole(SetMemberRoleRequest),
    RemoveMember(RemoveMemberRequest),
    ListMembers(ListMembersRequest),
    ListUserOrgs(ListUserOrgsRequest),
    GetClusterStatus,
}

impl Seen {
    /// The idempotency key of a write, if the request is one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Seen::CreateOrg(r) => Some(&r.request_id),
            Seen::UpdateOrg(r) => Some(&r.request_id),
            Seen::DeleteOrg(r) => Some(&r.request_id),
            Seen::AddMember(r) => Some(&r.request_id),
            Seen::SetMemberRole(r) => Some(&r.request_id),
            Seen::RemoveMember(r) => Some(&r.request_id),
            _ => None,
        }
    }
}

/// What a fake node knows and how it behaves; shared between the server and the test.
#[derive(Debug)]
pub struct FakeState {
    pub region: Region,
    pub node_id: u64,
    pub endpoint: String,
    seen: Mutex<Vec<Seen>>,
    /// How many requests were seen, for tests that wait until a call has arrived.
    seen_count: tokio::sync::watch::Sender<usize>,
    /// Put in the leader header of every answer, when set.
    leader_header: Mutex<Option<String>>,
    /// Answer this many calls UNAVAILABLE (after recording them), then answer normally.
    unavailable_calls: AtomicUsize,
    /// Record calls, then never answer them.
    hang: AtomicBool,
    /// The orgs `ListUserOrgs` pages through, whoever asks.
    user_orgs: Mutex<Vec<UserOrg>>,
    /// This node's view for `GetClusterStatus`: (term, leader id).
    raft_view: Mutex<(u64, u64)>,
}

/// A fake region node, serving until dropped.
pub struct FakeNode {
    pub state: Arc<FakeState>,
    _stop: oneshot::Sender<()>,
}

impl FakeNode {
    pub async fn start(region: Region, node_id: u64) -> FakeNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        let state = Arc::new(FakeState {
            region,
            node_id,
            endpoint,
            seen: Mutex::new(Vec::new()),
            seen_count: tokio::sync::watch::Sender::new(0),
            leader_header: Mutex::new(None),
            unavailable_calls: AtomicUsize::new(0),
            hang: AtomicBool::new(false),
            user_orgs: Mutex::new(Vec::new()),
            raft_view: Mutex::new((1, 0)),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let service = FakeService(state.clone());
        tokio::spawn(
            Server::builder()
                .add_service(OrgServiceServer::new(service.clone()))
                .add_service(ClusterServiceServer::new(service))
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                    let _ = stopped.await;
                }),
        );
        FakeNode { state, _stop: stop }
    }

    pub fn endpoint(&self) -> String {
        self.state.endpoint.clone()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn seen_count(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }

    /// Waits until the node has seen `count` requests.
    pub async fn wait_until_seen(&self, count: usize) {
        let mut seen = self.state.seen_count.subscribe();
        bounded("waiting for a fake node to see a request", seen.wait_for(|&n| n >= count)).await.unwrap();
    }

    pub fn name_leader(&self, leader: &str) {
        *self.state.leader_header.lock().unwrap() = Some(leader.to_string());
    }

    pub fn answer_unavailable(&self, calls: usize) {
        self.state.unavailable_calls.store(calls, Ordering::SeqCst);
    }

    pub fn hang(&self) {
        self.state.hang.store(true, Ordering::SeqCst);
    }

    /// Gives the node `count` orgs of `user`, with ids in its region.
    pub fn add_user_orgs(&self, count: u64) {
        let mut orgs = self.state.user_orgs.lock().unwrap();
        for i in 0..count {
            let id = OrgId::from_u128(self.state.region, 1000 + i as u128).to_string();
            orgs.push(UserOrg {
                org: Some(Org {
                    id,
                    name: format!("org {i}"),
                    region: self.state.region.to_string(),
                    ..Default::default()
                }),
                role: "developer".into(),
            });
        }
    }

    pub fn set_raft_view(&self, term: u64, leader_id: u64) {
        *self.state.raft_view.lock().unwrap() = (term, leader_id);
    }
}

/// An endpoint nothing listens on: connecting is refused.
pub async fn dead_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    drop(listener);
    endpoint
}

/// An endpoint that accepts TCP connections (the kernel does, into the backlog) but never
/// answers: keep the listener alive for as long as it should stay silent.
pub async fn silent_endpoint() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    (listener, endpoint)
}

/// A valid org id in `region`.
pub fn org_id(region: Region, n: u128) -> String {
    OrgId::from_u128(region, n).to_string()
}

#[derive(Clone)]
struct FakeService(Arc<FakeState>);

impl FakeService {
    /// Records the request, then hangs, fails or answers as the node was told.
    async fn answer<T>(
        &self,
        seen: Seen,
        answer: impl FnOnce(&FakeState) -> Result<T, Status>,
    ) -> Result<Response<T>, Status> {
        let state = &self.0;
        let count = {
            let mut all = state.seen.lock().unwrap();
            all.push(seen);
            all.len()
        };
        state.seen_count.send_replace(count);
        if state.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        let leader = state.leader_header.lock().unwrap().clone();
        let fail =
            state.unavailable_calls.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        let mut result = if fail {
            Err(Status::unavailable(format!("region {} is unavailable: no leader", state.region)))
        } else {
            answer(state).map(Response::new)
        };
        if let Some(leader) = leader {
            let value = leader.parse().unwrap();
            match &mut result {
                Ok(response) => response.metadata_mut().insert(LEADER_HEADER, value),
                Err(status) => status.metadata_mut().insert(LEADER_HEADER, value),
            };
        }
        result
    }
}

fn canned_org(state: &FakeState, id: &str, name: &str) -> Org {
    Org {
        id: id.to_string(),
        name: name.to_string(),
        region: state.region.to_string(),
        version: 1,
        ..Default::default()
    }
}

fn canned_member(org_id: &str, user_id: &str, role: &str) -> Member {
    Member { org_id: org_id.to_string(), user_id: user_id.to_string(), role: role.to_string(), ..Default::default() }
}

#[tonic::async_trait]
impl OrgService for FakeService {
    async fn create_org(&self, request: Request<CreateOrgRequest>) -> Result<Response<CreateOrgResponse>, Status> {
        let r = request.into_inner();
        self.answer(Seen::CreateOrg(r.clone()), |s| {
            let id = OrgId::from_u128(s.region, 42).to_string();
            Ok(CreateOrgResponse { org: Some(canned_org(s, &id, &r.name)) })
        })
        .await
    }

    async fn get_org(&self, request: Request<GetOrgRequest>) -> Result<Response<GetOrgResponse>, Status> {
        let r = request.into_inner();
        self.answer(Seen::GetOrg(r.clone()), |s| {
            Ok(GetOrgResponse {
                org: Some(canned_org(s, &r.org_id, "canned")),
                read: Some(ReadInfo { node_id: s.node_id, region: s.region.to_string(), ..Default::default() }),
            })
        })
        .await
    }

    async fn list_orgs(&self, request: Request<ListOrgsRequest>) -> Result<Response<ListOrgsResponse>, Status> {
        let r = request.into_inner();
        self.answer(Seen::ListOrgs(r), |s| {
            Ok(ListOrgsResponse {
                read: Some(ReadInfo { node_id: s.node_id, region: s.region.to_string(), ..Default::default() }),
                ..Default::default()
            })
        })
        .await
    }

    async fn update_org(&self, request: Request<UpdateOrgRequest>) -> Result<Response<UpdateOrgResponse>, Status> {
        let r = request.into_inner();
        self.answer(Seen::UpdateOrg(r.clone()), |s| {
            Ok(UpdateOrgResponse { org: Some(canned_org(s, &r.org_id, &r.name)) })
        })
        .await
    }

    async fn delete_org(&self, request: Request<DeleteOrgRequest>) -> Result<Response<DeleteOrgResponse>, Status> {
        let r = request.into_inner();
        self.answer(Seen::DeleteOrg(r), |_| Ok(DeleteOrgResponse { removed_members: 0 })).await
    }

    async fn add_member(&self, request: Request<AddMemberRequest>) -> Result<Response<AddMemberResponse>, Status> {
        let r = request.into_inner();
        self.answer(Seen::AddMember(r.clone()), |_| {
            if r.role == "owner" {
                // A node's error message may quote the request; the router must not log it.
                return Err(Status::invalid_argument(format!("user {} cannot be given role owner", r.user_id)));
            }
            Ok(AddMemberResponse { member: Some(canned_member(&r.org_id, &r.user_id, &r.role)) })
        })
        .await
    }

    async fn set_member_role(
        &self,
        request: Request<SetMemberRoleRequest>,
    ) -> Result<Response<SetMemberRoleResponse>, Status> {
        let r = request.into_inner();
        self.answer(Seen::SetMemberRole(r.clone()), |_| {
            Ok(SetMemberRoleResponse { member: Some(canned_member(&r.org_id, &r.user_id, &r.role)) })
        })
        .await
    }

    async fn remove_member(
        &self,
        request: Request<RemoveMemberRequest>,
    ) -> Result<Response<RemoveMemberResponse>, Status> {
        let r = request.into_inner();
        self.answer(Seen::RemoveMember(r), |_| Ok(RemoveMemberResponse {})).await
    }

    async fn list_members(
        &self,
        request: Request<ListMembersRequest>,
    ) -> Result<Response<ListMembersResponse>, Status> {
        let r = request.into_inner();
        self.answer(Seen::ListMembers(r), |_| Ok(ListMembersResponse::default())).await
    }

    /// Pages through the node's user orgs; its page token is the index to resume at.
    async fn list_user_orgs(
        &self,
        request: Request<ListUserOrgsRequest>,
    ) -> Result<Response<ListUserOrgsResponse>, Status> {
        let r = request.into_inner();
        self.answer(Seen::ListUserOrgs(r.clone()), |s| {
            let orgs = s.user_orgs.lock().unwrap().clone();
            let start: usize = if r.page_token.is_empty() {
                0
            } else {
                r.page_token.parse().map_err(|_| Status::invalid_argument("bad node page token"))?
            };
            let size = if r.page_size == 0 { 100 } else { r.page_size as usize };
            let end = (start + size).min(orgs.len());
            let next = if end < orgs.len() { end.to_string() } else { String::new() };
            Ok(ListUserOrgsResponse { orgs: orgs[start..end].to_vec(), next_page_token: next, regions: vec![] })
        })
        .await
    }
}

#[tonic::async_trait]
impl ClusterService for FakeService {
    async fn get_cluster_status(
        &self,
        _request: Request<GetClusterStatusRequest>,
    ) -> Result<Response<GetClusterStatusResponse>, Status> {
        self.answer(Seen::GetClusterStatus, |s| {
            let (term, leader_id) = *s.raft_view.lock().unwrap();
            let node = NodeStatus {
                region: s.region.to_string(),
                node_id: s.node_id,
                address: s.endpoint.clone(),
                role: if leader_id == s.node_id { "leader" } else { "follower" }.into(),
                term,
                leader_id,
                healthy: leader_id != 0,
                ..Default::default()
            };
            Ok(GetClusterStatusResponse {
                regions: vec![RegionStatus { region: s.region.to_string(), leader_id, term, nodes: vec![node] }],
            })
        })
        .await
    }

    async fn get_topology(
        &self,
        _request: Request<GetTopologyRequest>,
    ) -> Result<Response<GetTopologyResponse>, Status> {
        Err(Status::unimplemented("nodes do not serve the topology"))
    }
}

/// Test timeouts: long enough for a loaded CI machine, short enough that a test waiting for
/// one stays quick.
pub fn test_config(regions: &[(Region, Vec<String>)]) -> RouterConfig {
    RouterConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        regions: regions.iter().map(|(r, endpoints)| (r.to_string(), endpoints.clone())).collect(),
        request_timeout_ms: 5_000,
        connect_timeout_ms: 1_000,
        fanout_timeout_ms: 400,
        status_timeout_ms: 400,
        max_concurrent_requests_per_node: 64,
        // The fake nodes check no tokens; tests/tests/authn.rs covers authentication.
        allow_unauthenticated: true,
        // Anything added later (metrics, tracing export) stays off in tests.
        ..RouterConfig::default()
    }
}

/// A running router and clients connected to it.
pub struct TestRouter {
    pub addr: SocketAddr,
    pub org: OrgServiceClient<Channel>,
    pub cluster: ClusterServiceClient<Channel>,
    pub channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), RouterError>>,
}

impl TestRouter {
    pub async fn start(config: RouterConfig) -> TestRouter {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(orgplane_router::run(config, listener, async {
            let _ = stopped.await;
        }));
        let channel = bounded(
            "connecting to the router",
            tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect(),
        )
        .await
        .expect("the router accepts connections");
        TestRouter {
            addr,
            org: OrgServiceClient::new(channel.clone()),
            cluster: ClusterServiceClient::new(channel.clone()),
            channel,
            stop: Some(stop),
            task,
        }
    }

    /// Shuts the router down and checks that `run` returned cleanly.
    pub async fn stop(mut self) {
        drop(self.stop.take());
        let result = bounded("router shutdown", &mut self.task).await.expect("the router task does not panic");
        result.expect("run returns Ok after shutdown");
    }
}

/// A request with a client deadline, as `grpc-timeout`.
pub fn with_deadline<T>(message: T, deadline: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(deadline);
    request
}
