//! The public `OrgService` on a node: turns requests into commands (writes) or queries (reads)
//! against this region's state. Every refusal happens before anything is proposed, so bad
//! input changes nothing.

use std::sync::Arc;

use orgplane_model::command::CommandOutcome;
use orgplane_model::policy::{self, QueryKind};
use orgplane_model::state::{self, QueryError, StateRead};
use orgplane_model::{validate, Actor, Command, DomainError, Op, OrgId, Region};
use orgplane_proto::conv::{self, decode_page_token, encode_page_token, parse_org_id, parse_region, parse_role};
use orgplane_proto::v1::org_service_server::OrgService;
use orgplane_proto::v1::*;
use orgplane_proto::ConvError;
use orgplane_raft::{current_leader, node_addr, Proposer, Raft, ReadIndexer};
use orgplane_store_sled::{ConsistentView, StateReader};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use crate::caller;
use crate::error::NodeError;
use crate::LEADER_HEADER;

/// What the node's services share: identity, Raft, the write and read paths, and the state.
pub struct NodeCore {
    pub region: Region,
    pub node_id: u64,
    pub raft: Raft,
    pub proposer: Proposer,
    pub reader: ReadIndexer,
    /// The local state; multi-read queries go through `read_consistent` so they never see
    /// half of an applied batch.
    pub state: StateReader,
}

impl NodeCore {
    /// Commits `op` for `actor` and returns its outcome. The actor is checked against the
    /// policy table first (`apply` checks it again, with the grant rules), so a refused request
    /// proposes nothing. A missing request id gets a fresh one so that the node's own retries
    /// apply once.
    pub async fn write(&self, actor: Actor, request_id: &str, op: Op) -> Result<CommandOutcome, NodeError> {
        validate::request_id(request_id)?;
        policy::authorize_op(&self.state, &actor, &op).map_err(|e| NodeError::from_query(self.region, e))?;
        let request_id = if request_id.is_empty() { uuid::Uuid::new_v4().to_string() } else { request_id.to_string() };
        orgplane_telemetry::trace::record_request_id(&request_id.as_str());
        let command = Command { request_id, issued_at_ms: now_ms(), actor, op };
        let result =
            self.proposer.propose(command).await.map_err(|source| NodeError::Write { region: self.region, source })?;
        Ok(result?)
    }

    /// Commits a command about an org for `actor`; an org NOT_FOUND (missing, or not the
    /// actor's) says where the id points.
    pub async fn write_org(&self, actor: Actor, request_id: &str, op: Op) -> Result<CommandOutcome, NodeError> {
        let org_id = op.org_id().clone();
        crate::epoch::check(&self.state, self.region, &org_id)?;
        self.write(actor, request_id, op).await.map_err(|e| not_found_here(self, &org_id, e))
    }

    /// Whether `actor` may ask the read `kind` about `org` (`None`: region-wide), checked
    /// against `view` so that the answer and the data come from the same state. A non-member
    /// gets the NOT_FOUND of a missing org, word for word.
    pub fn authorize_read(
        &self,
        view: &impl StateRead,
        actor: &Actor,
        org: Option<&OrgId>,
        kind: QueryKind,
    ) -> Result<(), NodeError> {
        policy::authorize_query(view, actor, org, kind).map_err(|e| {
            let e = NodeError::from_query(self.region, e);
            match org {
                Some(org) => not_found_here(self, org, e),
                None => e,
            }
        })
    }

    /// Answers the read `kind` about `org` for `actor`: made as fresh as `consistency` asks,
    /// then authorized and run on one consistent view, so the permission check and the answer
    /// see the same state. A missing org and one the actor may not see answer alike.
    pub(crate) async fn query_org<T>(
        &self,
        actor: &Actor,
        org: &OrgId,
        kind: QueryKind,
        consistency: i32,
        run: impl FnOnce(&ConsistentView<'_>) -> Result<T, QueryError>,
    ) -> Result<(T, ReadInfo), Status> {
        let read = self.prepare_read(consistency).await?;
        let answer = self.state.read_consistent(|view| {
            self.authorize_read(view, actor, Some(org), kind)?;
            crate::epoch::check(view, self.region, org)?;
            run(view).map_err(|e| not_found_here(self, org, NodeError::from_query(self.region, e)))
        })?;
        Ok((answer, read))
    }

    /// The org and user of a membership request, validated.
    fn member_target(&self, org_id: &str, user_id: &str) -> Result<OrgId, NodeError> {
        let org_id = self.org_id(org_id)?;
        validate::user_id(user_id)?;
        Ok(org_id)
    }

    /// Makes a read of the local state as fresh as `consistency` asks, and says how it was
    /// served.
    pub async fn prepare_read(&self, consistency: i32) -> Result<ReadInfo, NodeError> {
        let consistency = match ReadConsistency::try_from(consistency) {
            Ok(ReadConsistency::Local) => ReadConsistency::Local,
            Ok(ReadConsistency::Unspecified | ReadConsistency::Linearizable) => ReadConsistency::Linearizable,
            Err(_) => return Err(ConvError::new("consistency", "unknown read consistency").into()),
        };
        if consistency == ReadConsistency::Linearizable {
            self.reader.linearize().await.map_err(|source| NodeError::Read { region: self.region, source })?;
        }
        let applied_index = self.raft.metrics().borrow().last_applied.map(|l| l.index).unwrap_or(0);
        Ok(ReadInfo {
            consistency: consistency as i32,
            applied_index,
            node_id: self.node_id,
            region: self.region.to_string(),
        })
    }

    /// Wraps a reply with the leader hint header.
    pub fn reply<T>(&self, message: T) -> Response<T> {
        let mut response = Response::new(message);
        if let Some(addr) = current_leader(&self.raft).and_then(|leader| node_addr(&self.raft, leader)) {
            if let Ok(value) = MetadataValue::try_from(addr.as_str()) {
                response.metadata_mut().insert(LEADER_HEADER, value);
            }
        }
        response
    }

    pub(crate) fn storage(&self, source: state::StorageFault) -> NodeError {
        NodeError::Storage { region: self.region, source }
    }

    /// An org id from a request. Ids of other regions are accepted: an org can move here.
    /// Valid ids are recorded on the call's span.
    pub(crate) fn org_id(&self, text: &str) -> Result<OrgId, NodeError> {
        let id = parse_org_id("org_id", text)?;
        orgplane_telemetry::trace::record_org(&id);
        Ok(id)
    }

    /// NOT_FOUND for an org this region does not hold, saying where its id points when that is
    /// another region.
    fn org_not_found(&self, id: &OrgId) -> NodeError {
        if id.region() == self.region {
            NodeError::Domain(DomainError::org_not_found(id))
        } else {
            NodeError::Domain(DomainError::NotFound {
                kind: "org".into(),
                id: format!("{id} in region {} (the id was issued by region {})", self.region, id.region()),
            })
        }
    }
}

/// The org id a page token resumes after.
fn org_page_token(token: &str) -> Result<Option<OrgId>, NodeError> {
    let not_ours = || NodeError::from(ConvError::new("page_token", "is not a token this service issued"));
    decode_page_token(token)?.map(|t| t.parse::<OrgId>().map_err(|_| not_ours())).transpose()
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub(crate) fn unexpected(outcome: CommandOutcome) -> Status {
    Status::internal(format!("unexpected command outcome {outcome:?}"))
}

/// The `OrgService` of a node.
pub struct OrgServiceImpl {
    core: Arc<NodeCore>,
}

impl OrgServiceImpl {
    pub fn new(core: Arc<NodeCore>) -> Self {
        OrgServiceImpl { core }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl OrgService for OrgServiceImpl {
    #[tracing::instrument(name = "node.create_org", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn create_org(&self, request: Request<CreateOrgRequest>) -> Reply<CreateOrgResponse> {
        let core = &self.core;
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let region = parse_region("region", &req.region).map_err(NodeError::from)?;
        if region != core.region {
            return Err(NodeError::WrongRegion { serving: core.region, requested: region }.into());
        }
        let name = validate::org_name(&req.name).map_err(NodeError::from)?;
        let id = OrgId::from_u128(region, uuid::Uuid::now_v7().as_u128());
        orgplane_telemetry::trace::record_org(&id);
        match core.write(actor, &req.request_id, Op::CreateOrg { id, name }).await? {
            CommandOutcome::Org(org) => Ok(core.reply(CreateOrgResponse { org: Some(conv::org_to_wire(&org)) })),
            other => Err(unexpected(other)),
        }
    }

    #[tracing::instrument(name = "node.get_org", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn get_org(&self, request: Request<GetOrgRequest>) -> Reply<GetOrgResponse> {
        let core = &self.core;
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let id = core.org_id(&req.org_id)?;
        let read = core.prepare_read(req.consistency).await?;
        let org = core.state.read_consistent(|view| {
            core.authorize_read(view, &actor, Some(&id), QueryKind::GetOrg)?;
            state::get_org(view, &id).map_err(|e| core.storage(e))?.ok_or_else(|| core.org_not_found(&id))
        })?;
        Ok(core.reply(GetOrgResponse { org: Some(conv::org_to_wire(&org)), read: Some(read) }))
    }

    #[tracing::instrument(name = "node.list_orgs", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn list_orgs(&self, request: Request<ListOrgsRequest>) -> Reply<ListOrgsResponse> {
        let core = &self.core;
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        if !req.region.is_empty() {
            let region = parse_region("region", &req.region).map_err(NodeError::from)?;
            if region != core.region {
                return Err(NodeError::WrongRegion { serving: core.region, requested: region }.into());
            }
        }
        let limit = validate::page_size(req.page_size).map_err(NodeError::from)?;
        let after = org_page_token(&req.page_token)?;
        let read = core.prepare_read(req.consistency).await?;
        let (orgs, next) = core.state.read_consistent(|view| {
            core.authorize_read(view, &actor, None, QueryKind::ListOrgs)?;
            state::list_orgs(view, after.as_ref(), limit).map_err(|e| core.storage(e))
        })?;
        Ok(core.reply(ListOrgsResponse {
            orgs: orgs.iter().map(conv::org_to_wire).collect(),
            next_page_token: next.map(|n| encode_page_token(&n)).unwrap_or_default(),
            read: Some(read),
        }))
    }

    #[tracing::instrument(name = "node.update_org", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn update_org(&self, request: Request<UpdateOrgRequest>) -> Reply<UpdateOrgResponse> {
        let core = &self.core;
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let id = core.org_id(&req.org_id)?;
        let allowed_import_regions = match &req.allowed_import_regions {
            Some(given) => {
                Some(conv::parse_regions("allowed_import_regions", &given.regions).map_err(NodeError::from)?)
            }
            None => None,
        };
        // An empty name is kept only when the update is about the residency policy.
        let name = if req.name.is_empty() && allowed_import_regions.is_some() {
            None
        } else {
            Some(validate::org_name(&req.name).map_err(NodeError::from)?)
        };
        let op = Op::UpdateOrg { id, name, allowed_import_regions, expected_version: req.expected_version };
        match core.write_org(actor, &req.request_id, op).await? {
            CommandOutcome::Org(org) => Ok(core.reply(UpdateOrgResponse { org: Some(conv::org_to_wire(&org)) })),
            other => Err(unexpected(other)),
        }
    }

    #[tracing::instrument(name = "node.delete_org", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn delete_org(&self, request: Request<DeleteOrgRequest>) -> Reply<DeleteOrgResponse> {
        let core = &self.core;
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let id = core.org_id(&req.org_id)?;
        let op = Op::DeleteOrg { id, expected_version: req.expected_version };
        match core.write_org(actor, &req.request_id, op).await? {
            CommandOutcome::OrgDeleted { removed_members } => Ok(core.reply(DeleteOrgResponse { removed_members })),
            other => Err(unexpected(other)),
        }
    }

    #[tracing::instrument(name = "node.add_member", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn add_member(&self, request: Request<AddMemberRequest>) -> Reply<AddMemberResponse> {
        let core = &self.core;
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = core.member_target(&req.org_id, &req.user_id)?;
        let role = parse_role("role", &req.role).map_err(NodeError::from)?;
        let op = Op::AddMember { org_id, user_id: req.user_id, role };
        match core.write_org(actor, &req.request_id, op).await? {
            CommandOutcome::Member(m) => Ok(core.reply(AddMemberResponse { member: Some(conv::member_to_wire(&m)) })),
            other => Err(unexpected(other)),
        }
    }

    #[tracing::instrument(name = "node.set_member_role", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn set_member_role(&self, request: Request<SetMemberRoleRequest>) -> Reply<SetMemberRoleResponse> {
        let core = &self.core;
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = core.member_target(&req.org_id, &req.user_id)?;
        let role = parse_role("role", &req.role).map_err(NodeError::from)?;
        let op = Op::SetMemberRole { org_id, user_id: req.user_id, role };
        match core.write_org(actor, &req.request_id, op).await? {
            CommandOutcome::Member(m) => {
                Ok(core.reply(SetMemberRoleResponse { member: Some(conv::member_to_wire(&m)) }))
            }
            other => Err(unexpected(other)),
        }
    }

    #[tracing::instrument(name = "node.remove_member", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn remove_member(&self, request: Request<RemoveMemberRequest>) -> Reply<RemoveMemberResponse> {
        let core = &self.core;
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = core.member_target(&req.org_id, &req.user_id)?;
        let op = Op::RemoveMember { org_id, user_id: req.user_id };
        match core.write_org(actor, &req.request_id, op).await? {
            CommandOutcome::MemberRemoved => Ok(core.reply(RemoveMemberResponse {})),
            other => Err(unexpected(other)),
        }
    }

    #[tracing::instrument(name = "node.list_members", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn list_members(&self, request: Request<ListMembersRequest>) -> Reply<ListMembersResponse> {
        let core = &self.core;
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = core.org_id(&req.org_id)?;
        let limit = validate::page_size(req.page_size).map_err(NodeError::from)?;
        let after = decode_page_token(&req.page_token).map_err(NodeError::from)?;
        let read = core.prepare_read(req.consistency).await?;
        let (members, next) = core.state.read_consistent(|view| {
            core.authorize_read(view, &actor, Some(&org_id), QueryKind::ListMembers)?;
            state::list_members(view, &org_id, after.as_deref(), limit)
                .map_err(|e| NodeError::from_query(core.region, e))
                .map_err(|e| not_found_here(core, &org_id, e))
        })?;
        Ok(core.reply(ListMembersResponse {
            members: members.iter().map(conv::member_to_wire).collect(),
            next_page_token: next.map(|n| encode_page_token(&n)).unwrap_or_default(),
            read: Some(read),
        }))
    }

    #[tracing::instrument(name = "node.list_user_orgs", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn list_user_orgs(&self, request: Request<ListUserOrgsRequest>) -> Reply<ListUserOrgsResponse> {
        let core = &self.core;
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        validate::user_id(&req.user_id).map_err(NodeError::from)?;
        policy::authorize_user_orgs(&actor, &req.user_id).map_err(NodeError::from)?;
        let limit = validate::page_size(req.page_size).map_err(NodeError::from)?;
        let after = org_page_token(&req.page_token)?;
        core.prepare_read(req.consistency).await?;
        let (orgs, next) = core
            .state
            .read_consistent(|view| state::list_user_orgs(view, &req.user_id, after.as_ref(), limit))
            .map_err(|e| core.storage(e))?;
        Ok(core.reply(ListUserOrgsResponse {
            orgs: orgs.iter().map(conv::user_org_to_wire).collect(),
            next_page_token: next.map(|n| encode_page_token(&n)).unwrap_or_default(),
            regions: vec![RegionResult {
                region: core.region.to_string(),
                state: RegionState::Ok as i32,
                message: String::new(),
            }],
        }))
    }
}

/// Rewrites the plain org NOT_FOUND of a command into the node's own wording (which says where
/// the id points when that is elsewhere).
pub(crate) fn not_found_here(core: &NodeCore, id: &OrgId, e: NodeError) -> NodeError {
    match e {
        NodeError::Domain(DomainError::NotFound { ref kind, .. }) if kind == "org" => core.org_not_found(id),
        other => other,
    }
}
