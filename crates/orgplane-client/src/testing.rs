//! An in-memory fake of orgplane's public API (`OrgService`, `ClusterService`, and the calls of
//! `MoveService` a router serves, in [`moves`]) on `127.0.0.1:0`, for the tests of this crate
//! and of crates built on it. Feature `test-support`.
//!
//! It is a fake, not a model of the real server: one process, no Raft, no regions of its own.
//! It keeps what a client can observe: validation with the real server's codes, versions and
//! ABORTED on a stale `expected_version`, request ids (a write sent again with the same id
//! gets the first answer and changes nothing), paging, per-region results of
//! `ListUserOrgs`. A test can inject faults into the next calls ([`Fault`]) and read back every
//! call received ([`FakeServer::calls`]), request id and `authorization` included.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use orgplane_model::{DomainError, OrgId, Region, Role};
use orgplane_proto::v1;
use orgplane_proto::v1::cluster_service_server::{ClusterService, ClusterServiceServer};
use orgplane_proto::v1::move_service_server::MoveServiceServer;
use orgplane_proto::v1::org_service_server::{OrgService, OrgServiceServer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::metadata::MetadataMap;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};

use crate::error::code_name;

mod moves;

pub use moves::MoveScript;

/// A failure to inject into one coming call. Faults are used up in order, one per call, by
/// whichever RPC arrives next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this code at once; nothing is applied.
    Refuse(Code),
    /// Apply the call, then answer with this code, as when a leader commits a write and the
    /// answer is lost on the way back.
    LoseAnswer(Code),
    /// Never answer; the caller's timeout ends the call. Nothing is applied.
    Stall,
}

/// One call as the fake received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedCall {
    /// The RPC's method name, for example `CreateOrg`.
    pub rpc: &'static str,
    /// The write's request id; empty for reads and for writes sent without one.
    pub request_id: String,
    /// The `authorization` metadata, if any.
    pub authorization: Option<String>,
    /// The `grpc-timeout` metadata, if any.
    pub grpc_timeout: Option<String>,
}

/// The running fake. Dropping it stops the server and closes its connections.
#[derive(Debug)]
pub struct FakeServer {
    address: SocketAddr,
    state: Arc<Mutex<FakeState>>,
    task: JoinHandle<()>,
}

impl FakeServer {
    /// Starts serving on a fresh port of 127.0.0.1.
    pub async fn start() -> std::io::Result<FakeServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let state = Arc::new(Mutex::new(FakeState::default()));
        let service = FakeService { state: state.clone() };
        let server = tonic::transport::Server::builder()
            .add_service(OrgServiceServer::new(service.clone()))
            .add_service(MoveServiceServer::new(service.clone()))
            .add_service(ClusterServiceServer::new(service));
        let task = tokio::spawn(async move {
            if let Err(err) = server.serve_with_incoming(TcpIncoming::from(listener)).await {
                tracing::error!(%err, "the fake orgplane server failed");
            }
        });
        Ok(FakeServer { address, state, task })
    }

    /// `127.0.0.1:PORT`, as `Client::connect` takes it.
    pub fn endpoint(&self) -> String {
        self.address.to_string()
    }

    /// Makes the next `times` calls fail with `fault`, after the faults already queued.
    pub fn inject(&self, fault: Fault, times: usize) {
        let mut state = self.lock();
        state.faults.extend(std::iter::repeat_n((None, fault), times));
    }

    /// Makes the next `times` calls of `rpc` (a method name, for example `MoveOrg`) fail with
    /// `fault`; other calls pass these faults by.
    pub fn inject_into(&self, rpc: &'static str, fault: Fault, times: usize) {
        let mut state = self.lock();
        state.faults.extend(std::iter::repeat_n((Some(rpc), fault), times));
    }

    /// Every call received so far, in arrival order.
    pub fn calls(&self) -> Vec<ReceivedCall> {
        self.lock().calls.clone()
    }

    /// How `ListUserOrgs` reports `region` from now on; a region not OK contributes no orgs.
    pub fn set_region_result(&self, region: Region, state: v1::RegionState, message: &str) {
        self.lock().region_results.insert(region, (state, message.to_string()));
    }

    /// Every org the fake holds, in id order.
    pub fn orgs(&self) -> Vec<v1::Org> {
        self.lock().orgs.values().cloned().collect()
    }

    /// How the moves started from now on go (see [`MoveScript`]).
    pub fn script_moves(&self, script: MoveScript) {
        self.lock().move_script = script;
    }

    /// Every move the fake recorded, the latest of each org, in org id order.
    pub fn moves(&self) -> Vec<v1::OrgMove> {
        self.lock().moves.values().map(|m| m.record.clone()).collect()
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A write's first outcome, kept by request id.
#[derive(Debug, Clone)]
enum Applied {
    Org(v1::Org),
    Deleted(u64),
    Member(v1::Member),
    Removed,
}

/// A write's outcome as kept for its request id: what it applied, or the code and message it
/// was refused with.
type Outcome = Result<Applied, (Code, String)>;

#[derive(Debug, Default)]
struct FakeState {
    orgs: BTreeMap<String, v1::Org>,
    /// Keyed by (org id, user id), so an org's members are a range in user-id order.
    members: BTreeMap<(String, String), v1::Member>,
    /// Request id -> the RPC it was first used for, and that call's outcome.
    applied: HashMap<String, (&'static str, Outcome)>,
    /// Counts applied writes; reported as the read's applied index.
    applied_index: u64,
    /// Faults to use up in order; one named for an RPC waits for a call of that RPC.
    faults: VecDeque<(Option<&'static str>, Fault)>,
    calls: Vec<ReceivedCall>,
    region_results: BTreeMap<Region, (v1::RegionState, String)>,
    /// The latest move of each org, by org id.
    moves: BTreeMap<String, moves::FakeMove>,
    /// Counts moves started, for their ids.
    moves_started: u64,
    move_script: MoveScript,
}

#[derive(Debug, Clone)]
struct FakeService {
    state: Arc<Mutex<FakeState>>,
}

/// What the fault (if any) leaves for the end of the call.
enum Exit {
    Answer,
    LoseAnswer(Code),
}

impl FakeService {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the call and applies the next fault.
    async fn enter(&self, rpc: &'static str, request_id: &str, metadata: &MetadataMap) -> Result<Exit, Status> {
        let text = |key: &str| metadata.get(key).and_then(|v| v.to_str().ok()).map(str::to_string);
        let fault = {
            let mut state = self.lock();
            state.calls.push(ReceivedCall {
                rpc,
                request_id: request_id.to_string(),
                authorization: text("authorization"),
                grpc_timeout: text("grpc-timeout"),
            });
            let next = state.faults.iter().position(|(only, _)| only.is_none_or(|only| only == rpc));
            next.and_then(|i| state.faults.remove(i)).map(|(_, fault)| fault)
        };
        match fault {
            None => Ok(Exit::Answer),
            Some(Fault::Refuse(code)) => {
                Err(Status::new(code, format!("injected {} before applying", code_name(code))))
            }
            Some(Fault::LoseAnswer(code)) => Ok(Exit::LoseAnswer(code)),
            Some(Fault::Stall) => std::future::pending().await,
        }
    }

    /// Runs a write once per request id: a repeated id gets the first outcome back.
    fn write(
        &self,
        rpc: &'static str,
        request_id: &str,
        apply: impl FnOnce(&mut FakeState) -> Result<Applied, Status>,
    ) -> Result<Applied, Status> {
        let mut state = self.lock();
        if !request_id.is_empty() {
            if let Some((first_rpc, outcome)) = state.applied.get(request_id) {
                if *first_rpc != rpc {
                    return Err(Status::failed_precondition(format!(
                        "request id {request_id} was used for {first_rpc}, not {rpc}"
                    )));
                }
                return outcome.clone().map_err(|(code, message)| Status::new(code, message));
            }
        }
        let outcome = apply(&mut state);
        if outcome.is_ok() {
            state.applied_index += 1;
        }
        if !request_id.is_empty() {
            let kept = outcome.clone().map_err(|s| (s.code(), s.message().to_string()));
            state.applied.insert(request_id.to_string(), (rpc, kept));
        }
        outcome
    }

    fn read_info(&self, consistency: i32, region: &str) -> v1::ReadInfo {
        v1::ReadInfo { consistency, applied_index: self.lock().applied_index, node_id: 1, region: region.to_string() }
    }
}

fn leave<T>(exit: Exit, result: Result<T, Status>) -> Result<Response<T>, Status> {
    match exit {
        Exit::LoseAnswer(code) => Err(Status::new(code, format!("injected {} after applying", code_name(code)))),
        Exit::Answer => result.map(Response::new),
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn domain(err: DomainError) -> Status {
    let code = match &err {
        DomainError::InvalidArgument { .. } => Code::InvalidArgument,
        DomainError::NotFound { .. } => Code::NotFound,
        DomainError::AlreadyExists { .. } => Code::AlreadyExists,
        DomainError::VersionMismatch { .. } => Code::Aborted,
        DomainError::FailedPrecondition { .. } => Code::FailedPrecondition,
        DomainError::PermissionDenied { .. } => Code::PermissionDenied,
        DomainError::OrgMoving { .. } => Code::Unavailable,
        DomainError::OrgMoved { .. } => Code::FailedPrecondition,
    };
    Status::new(code, err.to_string())
}

fn parse_org_id(text: &str) -> Result<OrgId, Status> {
    text.parse::<OrgId>().map_err(|e| Status::invalid_argument(format!("invalid org_id: {e}")))
}

fn parse_role(text: &str) -> Result<Role, Status> {
    text.parse::<Role>().map_err(|e| Status::invalid_argument(format!("invalid role: {e}")))
}

fn parse_region(text: &str) -> Result<Region, Status> {
    if text.is_empty() {
        return Err(Status::invalid_argument("invalid region: is required (us, eu or apac)"));
    }
    text.parse::<Region>().map_err(|e| Status::invalid_argument(format!("invalid region: {e}")))
}

fn page_size(size: u32) -> Result<usize, Status> {
    orgplane_model::validate::page_size(size).map_err(domain)
}

impl FakeState {
    fn org(&self, id: &str) -> Result<&v1::Org, Status> {
        let id = parse_org_id(id)?;
        self.orgs.get(&id.to_string()).ok_or_else(|| domain(DomainError::org_not_found(&id)))
    }

    fn org_mut(&mut self, id: &str) -> Result<&mut v1::Org, Status> {
        let id = parse_org_id(id)?;
        self.orgs.get_mut(&id.to_string()).ok_or_else(|| domain(DomainError::org_not_found(&id)))
    }

    fn check_version(org: &v1::Org, expected: Option<u64>) -> Result<(), Status> {
        match expected {
            Some(expected) if expected != org.version => Err(domain(DomainError::VersionMismatch {
                kind: "org".into(),
                id: org.id.clone(),
                expected,
                actual: org.version,
            })),
            _ => Ok(()),
        }
    }
}

/// One page of `items` after `token` (the last key of the previous page).
fn page_after<K: Ord + Clone, T: Clone>(
    items: impl Iterator<Item = (K, T)>,
    token: Option<&K>,
    size: usize,
    token_of: impl Fn(&K) -> String,
) -> (Vec<T>, String) {
    let mut rest = items.filter(|(key, _)| token.is_none_or(|t| key > t));
    let page: Vec<(K, T)> = rest.by_ref().take(size).collect();
    let next = match (rest.next(), page.last()) {
        (Some(_), Some((last, _))) => token_of(last),
        _ => String::new(),
    };
    (page.into_iter().map(|(_, item)| item).collect(), next)
}

fn optional_token(token: &str) -> Option<String> {
    (!token.is_empty()).then(|| token.to_string())
}

#[tonic::async_trait]
impl OrgService for FakeService {
    async fn create_org(
        &self,
        request: Request<v1::CreateOrgRequest>,
    ) -> Result<Response<v1::CreateOrgResponse>, Status> {
        let exit = self.enter("CreateOrg", &request.get_ref().request_id, request.metadata()).await?;
        let message = request.into_inner();
        let result = self.write("CreateOrg", &message.request_id, |state| {
            let region = parse_region(&message.region)?;
            let name = orgplane_model::validate::org_name(&message.name).map_err(domain)?;
            let id = OrgId::from_u128(region, uuid::Uuid::now_v7().as_u128()).to_string();
            let now = now_ms();
            let org = v1::Org {
                id: id.clone(),
                name,
                region: region.to_string(),
                version: 1,
                epoch: 1,
                create_time_ms: now,
                update_time_ms: now,
                allowed_import_regions: vec![region.to_string()],
            };
            state.orgs.insert(id, org.clone());
            Ok(Applied::Org(org))
        });
        leave(exit, result.map(|applied| v1::CreateOrgResponse { org: as_org(applied) }))
    }

    async fn get_org(&self, request: Request<v1::GetOrgRequest>) -> Result<Response<v1::GetOrgResponse>, Status> {
        let exit = self.enter("GetOrg", "", request.metadata()).await?;
        let message = request.into_inner();
        let org = self.lock().org(&message.org_id).cloned();
        let result = org.map(|org| {
            let read = self.read_info(message.consistency, &org.region);
            v1::GetOrgResponse { org: Some(org), read: Some(read) }
        });
        leave(exit, result)
    }

    async fn list_orgs(&self, request: Request<v1::ListOrgsRequest>) -> Result<Response<v1::ListOrgsResponse>, Status> {
        let exit = self.enter("ListOrgs", "", request.metadata()).await?;
        let message = request.into_inner();
        let result = (|| {
            let region = parse_region(&message.region)?;
            let size = page_size(message.page_size)?;
            let token = optional_token(&message.page_token);
            let state = self.lock();
            let in_region = state.orgs.iter().filter(|(_, org)| org.region == region.as_str());
            let (orgs, next_page_token) =
                page_after(in_region.map(|(id, org)| (id.clone(), org.clone())), token.as_ref(), size, Clone::clone);
            drop(state);
            let read = self.read_info(message.consistency, region.as_str());
            Ok(v1::ListOrgsResponse { orgs, next_page_token, read: Some(read) })
        })();
        leave(exit, result)
    }

    async fn update_org(
        &self,
        request: Request<v1::UpdateOrgRequest>,
    ) -> Result<Response<v1::UpdateOrgResponse>, Status> {
        let exit = self.enter("UpdateOrg", &request.get_ref().request_id, request.metadata()).await?;
        let message = request.into_inner();
        let result = self.write("UpdateOrg", &message.request_id, |state| {
            let name = orgplane_model::validate::org_name(&message.name).map_err(domain)?;
            let org = state.org_mut(&message.org_id)?;
            FakeState::check_version(org, message.expected_version)?;
            org.name = name;
            org.version += 1;
            org.update_time_ms = now_ms();
            Ok(Applied::Org(org.clone()))
        });
        leave(exit, result.map(|applied| v1::UpdateOrgResponse { org: as_org(applied) }))
    }

    async fn delete_org(
        &self,
        request: Request<v1::DeleteOrgRequest>,
    ) -> Result<Response<v1::DeleteOrgResponse>, Status> {
        let exit = self.enter("DeleteOrg", &request.get_ref().request_id, request.metadata()).await?;
        let message = request.into_inner();
        let result = self.write("DeleteOrg", &message.request_id, |state| {
            let org = state.org(&message.org_id)?;
            FakeState::check_version(org, message.expected_version)?;
            let id = org.id.clone();
            state.orgs.remove(&id);
            let before = state.members.len();
            state.members.retain(|(org_id, _), _| *org_id != id);
            Ok(Applied::Deleted((before - state.members.len()) as u64))
        });
        let result = result.map(|applied| match applied {
            Applied::Deleted(removed_members) => v1::DeleteOrgResponse { removed_members },
            _ => v1::DeleteOrgResponse::default(),
        });
        leave(exit, result)
    }

    async fn add_member(
        &self,
        request: Request<v1::AddMemberRequest>,
    ) -> Result<Response<v1::AddMemberResponse>, Status> {
        let exit = self.enter("AddMember", &request.get_ref().request_id, request.metadata()).await?;
        let message = request.into_inner();
        let result = self.write("AddMember", &message.request_id, |state| {
            orgplane_model::validate::user_id(&message.user_id).map_err(domain)?;
            let role = parse_role(&message.role)?;
            let org_id = state.org(&message.org_id)?.id.clone();
            let key = (org_id.clone(), message.user_id.clone());
            if state.members.contains_key(&key) {
                return Err(domain(DomainError::AlreadyExists {
                    kind: "member".into(),
                    id: format!("{} of org {org_id}", message.user_id),
                }));
            }
            let now = now_ms();
            let member = v1::Member {
                org_id,
                user_id: message.user_id.clone(),
                role: role.to_string(),
                create_time_ms: now,
                update_time_ms: now,
            };
            state.members.insert(key, member.clone());
            Ok(Applied::Member(member))
        });
        leave(exit, result.map(|applied| v1::AddMemberResponse { member: as_member(applied) }))
    }

    async fn set_member_role(
        &self,
        request: Request<v1::SetMemberRoleRequest>,
    ) -> Result<Response<v1::SetMemberRoleResponse>, Status> {
        let exit = self.enter("SetMemberRole", &request.get_ref().request_id, request.metadata()).await?;
        let message = request.into_inner();
        let result = self.write("SetMemberRole", &message.request_id, |state| {
            let role = parse_role(&message.role)?;
            let org_id = state.org(&message.org_id)?.id.clone();
            let member = state
                .members
                .get_mut(&(org_id.clone(), message.user_id.clone()))
                .ok_or_else(|| domain(DomainError::member_not_found(&org_id, &message.user_id)))?;
            member.role = role.to_string();
            member.update_time_ms = now_ms();
            Ok(Applied::Member(member.clone()))
        });
        leave(exit, result.map(|applied| v1::SetMemberRoleResponse { member: as_member(applied) }))
    }

    async fn remove_member(
        &self,
        request: Request<v1::RemoveMemberRequest>,
    ) -> Result<Response<v1::RemoveMemberResponse>, Status> {
        let exit = self.enter("RemoveMember", &request.get_ref().request_id, request.metadata()).await?;
        let message = request.into_inner();
        let result = self.write("RemoveMember", &message.request_id, |state| {
            let org_id = state.org(&message.org_id)?.id.clone();
            state
                .members
                .remove(&(org_id.clone(), message.user_id.clone()))
                .ok_or_else(|| domain(DomainError::member_not_found(&org_id, &message.user_id)))?;
            Ok(Applied::Removed)
        });
        leave(exit, result.map(|_| v1::RemoveMemberResponse {}))
    }

    async fn list_members(
        &self,
        request: Request<v1::ListMembersRequest>,
    ) -> Result<Response<v1::ListMembersResponse>, Status> {
        let exit = self.enter("ListMembers", "", request.metadata()).await?;
        let message = request.into_inner();
        let result = (|| {
            let size = page_size(message.page_size)?;
            let token = optional_token(&message.page_token);
            let state = self.lock();
            let org = state.org(&message.org_id)?.clone();
            let of_org = state.members.iter().filter(|((org_id, _), _)| *org_id == org.id);
            let (members, next_page_token) =
                page_after(of_org.map(|((_, user), m)| (user.clone(), m.clone())), token.as_ref(), size, Clone::clone);
            drop(state);
            let read = self.read_info(message.consistency, &org.region);
            Ok(v1::ListMembersResponse { members, next_page_token, read: Some(read) })
        })();
        leave(exit, result)
    }

    async fn list_user_orgs(
        &self,
        request: Request<v1::ListUserOrgsRequest>,
    ) -> Result<Response<v1::ListUserOrgsResponse>, Status> {
        let exit = self.enter("ListUserOrgs", "", request.metadata()).await?;
        let message = request.into_inner();
        let result = (|| {
            orgplane_model::validate::user_id(&message.user_id).map_err(domain)?;
            let size = page_size(message.page_size)?;
            let token = optional_token(&message.page_token);
            let state = self.lock();
            let regions: Vec<v1::RegionResult> = Region::ALL
                .iter()
                .map(|region| {
                    let (region_state, text) =
                        state.region_results.get(region).cloned().unwrap_or((v1::RegionState::Ok, String::new()));
                    v1::RegionResult { region: region.to_string(), state: region_state as i32, message: text }
                })
                .collect();
            let answering =
                |org: &v1::Org| regions.iter().any(|r| r.region == org.region && r.state() == v1::RegionState::Ok);
            let of_user = state.members.values().filter(|m| m.user_id == message.user_id).filter_map(|m| {
                let org = state.orgs.get(&m.org_id)?;
                answering(org).then(|| (org.id.clone(), v1::UserOrg { org: Some(org.clone()), role: m.role.clone() }))
            });
            let (orgs, next_page_token) = page_after(of_user, token.as_ref(), size, Clone::clone);
            Ok(v1::ListUserOrgsResponse { orgs, next_page_token, regions })
        })();
        leave(exit, result)
    }
}

fn as_org(applied: Applied) -> Option<v1::Org> {
    match applied {
        Applied::Org(org) => Some(org),
        _ => None,
    }
}

fn as_member(applied: Applied) -> Option<v1::Member> {
    match applied {
        Applied::Member(member) => Some(member),
        _ => None,
    }
}

#[tonic::async_trait]
impl ClusterService for FakeService {
    async fn get_cluster_status(
        &self,
        request: Request<v1::GetClusterStatusRequest>,
    ) -> Result<Response<v1::GetClusterStatusResponse>, Status> {
        let exit = self.enter("GetClusterStatus", "", request.metadata()).await?;
        let applied_index = self.lock().applied_index;
        let regions = Region::ALL
            .iter()
            .enumerate()
            .map(|(r, region)| v1::RegionStatus {
                region: region.to_string(),
                leader_id: 1,
                term: 3,
                nodes: (1..=3u64)
                    .map(|node_id| v1::NodeStatus {
                        region: region.to_string(),
                        node_id,
                        address: format!("127.0.0.1:{}", 50060 + 10 * r as u64 + node_id),
                        role: if node_id == 1 { "leader" } else { "follower" }.to_string(),
                        term: 3,
                        leader_id: 1,
                        last_log_index: applied_index,
                        applied_index,
                        healthy: true,
                        error: String::new(),
                    })
                    .collect(),
            })
            .collect();
        leave(exit, Ok(v1::GetClusterStatusResponse { regions }))
    }

    async fn get_topology(
        &self,
        request: Request<v1::GetTopologyRequest>,
    ) -> Result<Response<v1::GetTopologyResponse>, Status> {
        let exit = self.enter("GetTopology", "", request.metadata()).await?;
        let regions = Region::ALL
            .iter()
            .enumerate()
            .map(|(r, region)| v1::RegionEndpoints {
                region: region.to_string(),
                endpoints: (1..=3).map(|node| format!("127.0.0.1:{}", 50060 + 10 * r + node)).collect(),
            })
            .collect();
        leave(exit, Ok(v1::GetTopologyResponse { regions }))
    }
}
