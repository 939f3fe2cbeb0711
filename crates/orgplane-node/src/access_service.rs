//! The public `AccessService` on a node: custom roles, invitations, integrations, phone numbers
//! and the audit log of this region's orgs.
//!
//! Same shape as [`crate::org_service`]: the caller's actor from the authenticator, input
//! validated and parsed before anything is proposed (so refused input changes nothing, not
//! even the audit log), writes through [`NodeCore::write_org`] (which checks the policy table
//! before proposing, and `apply` checks it again), reads linearized and then answered from one
//! consistent view of the state after [`NodeCore::authorize_read`] said yes on that same view.

use std::sync::Arc;

use orgplane_model::command::CommandOutcome;
use orgplane_model::invitation::MAX_INVITATION_TTL_MS;
use orgplane_model::policy::QueryKind;
use orgplane_model::state::{self, QueryError};
use orgplane_model::{validate, Actor, ConfigEntry, DomainError, Op, OrgId};
use orgplane_proto::conv::{self, decode_page_token, encode_page_token, parse_permissions, parse_role};
use orgplane_proto::v1::access_service_server::AccessService;
use orgplane_proto::v1::*;
use orgplane_store_sled::ConsistentView;
use tonic::{Request, Response, Status};

use crate::caller;
use crate::error::NodeError;
use crate::org_service::{now_ms, unexpected, NodeCore};

type Reply<T> = Result<Response<T>, Status>;

/// The `AccessService` of a node.
pub struct AccessServiceImpl {
    core: Arc<NodeCore>,
}

impl AccessServiceImpl {
    pub fn new(core: Arc<NodeCore>) -> Self {
        AccessServiceImpl { core }
    }

    /// Commits `op` for `actor`; an org NOT_FOUND says where the id points.
    async fn commit(&self, actor: Actor, request_id: &str, op: Op) -> Result<CommandOutcome, Status> {
        Ok(self.core.write_org(actor, request_id, op).await?)
    }
}

/// A page size and the key a page token resumes after.
fn page(page_size: u32, page_token: &str) -> Result<(usize, Option<String>), NodeError> {
    Ok((validate::page_size(page_size)?, decode_page_token(page_token)?))
}

fn next_token(next: Option<String>) -> String {
    next.map(|n| encode_page_token(&n)).unwrap_or_default()
}

/// Configuration entries of a write, checked before they are proposed. Refusals name keys,
/// never values (they may be secrets).
fn config_entries(entries: Vec<orgplane_proto::v1::ConfigEntry>) -> Result<Vec<ConfigEntry>, NodeError> {
    let entries = conv::parse_config_entries(entries);
    validate::config_entries(&entries)?;
    Ok(entries)
}

/// The expiry of a new invitation, checked against this node's clock (which also stamps the
/// command): in the future and at most 30 days away.
fn invitation_expiry(given: Option<u64>) -> Result<Option<u64>, NodeError> {
    let Some(at) = given else { return Ok(None) };
    let now = now_ms();
    if at <= now {
        return Err(invalid("expire_time_ms", "must be in the future"));
    }
    if at - now > MAX_INVITATION_TTL_MS {
        return Err(invalid("expire_time_ms", "must be at most 30 days ahead"));
    }
    Ok(Some(at))
}

fn invalid(field: &str, reason: &str) -> NodeError {
    NodeError::Domain(DomainError::InvalidArgument { field: field.into(), reason: reason.into() })
}

/// The NOT_FOUND of a resource `id` of `org` that `view` does not hold: the org's own when
/// the org is missing too (only a platform admin gets this far then).
fn not_found(view: &ConsistentView<'_>, kind: &str, id: &str, org: &OrgId) -> QueryError {
    match state::get_org(view, org) {
        Ok(Some(_)) => DomainError::not_found(kind, format!("{id} of org {org}")).into(),
        Ok(None) => DomainError::org_not_found(org).into(),
        Err(fault) => fault.into(),
    }
}

#[tonic::async_trait]
impl AccessService for AccessServiceImpl {
    // ---------------------------------------------------------------- roles

    #[tracing::instrument(name = "node.create_role", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn create_role(&self, request: Request<CreateRoleRequest>) -> Reply<CreateRoleResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        let name = validate::custom_role_name(&req.name).map_err(NodeError::from)?;
        let permissions = parse_permissions("permissions", &req.permissions).map_err(NodeError::from)?;
        match self.commit(actor, &req.request_id, Op::CreateRole { org_id, name, permissions }).await? {
            CommandOutcome::Role(role) => {
                Ok(self.core.reply(CreateRoleResponse { role: Some(conv::custom_role_to_wire(&role)) }))
            }
            other => Err(unexpected(other)),
        }
    }

    #[tracing::instrument(name = "node.update_role", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn update_role(&self, request: Request<UpdateRoleRequest>) -> Reply<UpdateRoleResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        let name = validate::custom_role_name(&req.name).map_err(NodeError::from)?;
        let permissions = parse_permissions("permissions", &req.permissions).map_err(NodeError::from)?;
        let op = Op::UpdateRole { org_id, name, permissions, expected_version: req.expected_version };
        match self.commit(actor, &req.request_id, op).await? {
            CommandOutcome::Role(role) => {
                Ok(self.core.reply(UpdateRoleResponse { role: Some(conv::custom_role_to_wire(&role)) }))
            }
            other => Err(unexpected(other)),
        }
    }

    #[tracing::instrument(name = "node.delete_role", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn delete_role(&self, request: Request<DeleteRoleRequest>) -> Reply<DeleteRoleResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        let name = validate::custom_role_name(&req.name).map_err(NodeError::from)?;
        match self.commit(actor, &req.request_id, Op::DeleteRole { org_id, name }).await? {
            CommandOutcome::RoleDeleted => Ok(self.core.reply(DeleteRoleResponse {})),
            other => Err(unexpected(other)),
        }
    }

    #[tracing::instrument(name = "node.list_roles", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn list_roles(&self, request: Request<ListRolesRequest>) -> Reply<ListRolesResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        let (limit, after) = page(req.page_size, &req.page_token)?;
        let ((custom, next), read) = self
            .core
            .query_org(&actor, &org_id, QueryKind::ListRoles, req.consistency, |view| {
                state::list_custom_roles(view, &org_id, after.as_deref(), limit)
            })
            .await?;
        // The built-in roles lead the first page only, so paging never repeats them.
        let mut roles = if after.is_none() { conv::builtin_roles_to_wire() } else { Vec::new() };
        roles.extend(custom.iter().map(conv::custom_role_to_wire));
        Ok(self.core.reply(ListRolesResponse { roles, next_page_token: next_token(next), read: Some(read) }))
    }

    #[tracing::instrument(name = "node.list_permissions", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn list_permissions(&self, request: Request<ListPermissionsRequest>) -> Reply<ListPermissionsResponse> {
        // The catalog is public knowledge, but still only for authenticated callers.
        caller::actor(&request)?;
        Ok(self.core.reply(ListPermissionsResponse { permissions: conv::permission_catalog() }))
    }

    // ---------------------------------------------------------------- invitations

    #[tracing::instrument(name = "node.create_invitation", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn create_invitation(&self, request: Request<CreateInvitationRequest>) -> Reply<CreateInvitationResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        let email = validate::email(&req.email).map_err(NodeError::from)?;
        let role = parse_role("role", &req.role).map_err(NodeError::from)?;
        let expires_at_ms = invitation_expiry(req.expire_time_ms)?;
        let op = Op::CreateInvitation { org_id, email, role, expires_at_ms };
        match self.commit(actor, &req.request_id, op).await? {
            CommandOutcome::Invitation(invitation) => Ok(self
                .core
                .reply(CreateInvitationResponse { invitation: Some(conv::invitation_to_wire(&invitation, now_ms())) })),
            other => Err(unexpected(other)),
        }
    }

    #[tracing::instrument(name = "node.list_invitations", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn list_invitations(&self, request: Request<ListInvitationsRequest>) -> Reply<ListInvitationsResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        let (limit, after) = page(req.page_size, &req.page_token)?;
        let ((invitations, next), read) = self
            .core
            .query_org(&actor, &org_id, QueryKind::ListInvitations, req.consistency, |view| {
                state::list_invitations(view, &org_id, after.as_deref(), limit)
            })
            .await?;
        let now = now_ms();
        Ok(self.core.reply(ListInvitationsResponse {
            invitations: invitations.iter().map(|i| conv::invitation_to_wire(i, now)).collect(),
            next_page_token: next_token(next),
            read: Some(read),
        }))
    }

    #[tracing::instrument(name = "node.revoke_invitation", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn revoke_invitation(&self, request: Request<RevokeInvitationRequest>) -> Reply<RevokeInvitationResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        let email = validate::email(&req.email).map_err(NodeError::from)?;
        match self.commit(actor, &req.request_id, Op::RevokeInvitation { org_id, email }).await? {
            CommandOutcome::Invitation(invitation) => Ok(self
                .core
                .reply(RevokeInvitationResponse { invitation: Some(conv::invitation_to_wire(&invitation, now_ms())) })),
            other => Err(unexpected(other)),
        }
    }

    #[tracing::instrument(name = "node.accept_invitation", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn accept_invitation(&self, request: Request<AcceptInvitationRequest>) -> Reply<AcceptInvitationResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        match self.commit(actor, &req.request_id, Op::AcceptInvitation { org_id }).await? {
            CommandOutcome::Member(member) => {
                Ok(self.core.reply(AcceptInvitationResponse { member: Some(conv::member_to_wire(&member)) }))
            }
            other => Err(unexpected(other)),
        }
    }

    // ---------------------------------------------------------------- integrations

    #[tracing::instrument(name = "node.create_integration", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn create_integration(&self, request: Request<CreateIntegrationRequest>) -> Reply<CreateIntegrationResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        validate::resource_name("name", &req.name).map_err(NodeError::from)?;
        validate::resource_name("kind", &req.kind).map_err(NodeError::from)?;
        let config = config_entries(req.config)?;
        let op = Op::CreateIntegration { org_id, name: req.name, kind: req.kind, config };
        match self.commit(actor, &req.request_id, op).await? {
            CommandOutcome::Integration(view) => {
                Ok(self.core.reply(CreateIntegrationResponse { integration: Some(conv::integration_to_wire(&view)) }))
            }
            other => Err(unexpected(other)),
        }
    }

    #[tracing::instrument(name = "node.get_integration", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn get_integration(&self, request: Request<GetIntegrationRequest>) -> Reply<GetIntegrationResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        validate::resource_name("name", &req.name).map_err(NodeError::from)?;
        let (view, read) = self
            .core
            .query_org(&actor, &org_id, QueryKind::GetIntegration, req.consistency, |view| {
                state::get_integration(view, &org_id, &req.name)?
                    .ok_or_else(|| not_found(view, "integration", &req.name, &org_id))
            })
            .await?;
        Ok(self
            .core
            .reply(GetIntegrationResponse { integration: Some(conv::integration_to_wire(&view)), read: Some(read) }))
    }

    #[tracing::instrument(name = "node.list_integrations", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn list_integrations(&self, request: Request<ListIntegrationsRequest>) -> Reply<ListIntegrationsResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        let (limit, after) = page(req.page_size, &req.page_token)?;
        let ((views, next), read) = self
            .core
            .query_org(&actor, &org_id, QueryKind::ListIntegrations, req.consistency, |view| {
                state::list_integrations(view, &org_id, after.as_deref(), limit)
            })
            .await?;
        Ok(self.core.reply(ListIntegrationsResponse {
            integrations: views.iter().map(conv::integration_to_wire).collect(),
            next_page_token: next_token(next),
            read: Some(read),
        }))
    }

    #[tracing::instrument(name = "node.update_integration", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn update_integration(&self, request: Request<UpdateIntegrationRequest>) -> Reply<UpdateIntegrationResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        validate::resource_name("name", &req.name).map_err(NodeError::from)?;
        let set = config_entries(req.set)?;
        for key in &req.remove {
            validate::config_key(key).map_err(NodeError::from)?;
            if set.iter().any(|e| &e.key == key) {
                return Err(invalid("remove", &format!("key {key:?} is both set and removed")).into());
            }
        }
        let op = Op::UpdateIntegration {
            org_id,
            name: req.name,
            set,
            remove: req.remove,
            expected_version: req.expected_version,
        };
        match self.commit(actor, &req.request_id, op).await? {
            CommandOutcome::Integration(view) => {
                Ok(self.core.reply(UpdateIntegrationResponse { integration: Some(conv::integration_to_wire(&view)) }))
            }
            other => Err(unexpected(other)),
        }
    }

    #[tracing::instrument(name = "node.delete_integration", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn delete_integration(&self, request: Request<DeleteIntegrationRequest>) -> Reply<DeleteIntegrationResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        validate::resource_name("name", &req.name).map_err(NodeError::from)?;
        match self.commit(actor, &req.request_id, Op::DeleteIntegration { org_id, name: req.name }).await? {
            CommandOutcome::IntegrationDeleted => Ok(self.core.reply(DeleteIntegrationResponse {})),
            other => Err(unexpected(other)),
        }
    }

    // ---------------------------------------------------------------- phone numbers

    #[tracing::instrument(name = "node.create_phone_number", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn create_phone_number(
        &self,
        request: Request<CreatePhoneNumberRequest>,
    ) -> Reply<CreatePhoneNumberResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        validate::phone_number(&req.number).map_err(NodeError::from)?;
        let label = validate::label(&req.label).map_err(NodeError::from)?;
        match self.commit(actor, &req.request_id, Op::CreatePhoneNumber { org_id, number: req.number, label }).await? {
            CommandOutcome::PhoneNumber(number) => Ok(self
                .core
                .reply(CreatePhoneNumberResponse { phone_number: Some(conv::phone_number_to_wire(&number)) })),
            other => Err(unexpected(other)),
        }
    }

    #[tracing::instrument(name = "node.get_phone_number", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn get_phone_number(&self, request: Request<GetPhoneNumberRequest>) -> Reply<GetPhoneNumberResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        validate::phone_number(&req.number).map_err(NodeError::from)?;
        let (number, read) = self
            .core
            .query_org(&actor, &org_id, QueryKind::GetPhoneNumber, req.consistency, |view| {
                state::get_phone_number(view, &org_id, &req.number)?
                    .ok_or_else(|| not_found(view, "phone number", &req.number, &org_id))
            })
            .await?;
        Ok(self.core.reply(GetPhoneNumberResponse {
            phone_number: Some(conv::phone_number_to_wire(&number)),
            read: Some(read),
        }))
    }

    #[tracing::instrument(name = "node.list_phone_numbers", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn list_phone_numbers(&self, request: Request<ListPhoneNumbersRequest>) -> Reply<ListPhoneNumbersResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        let (limit, after) = page(req.page_size, &req.page_token)?;
        let ((numbers, next), read) = self
            .core
            .query_org(&actor, &org_id, QueryKind::ListPhoneNumbers, req.consistency, |view| {
                state::list_phone_numbers(view, &org_id, after.as_deref(), limit)
            })
            .await?;
        Ok(self.core.reply(ListPhoneNumbersResponse {
            phone_numbers: numbers.iter().map(conv::phone_number_to_wire).collect(),
            next_page_token: next_token(next),
            read: Some(read),
        }))
    }

    #[tracing::instrument(name = "node.update_phone_number", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn update_phone_number(
        &self,
        request: Request<UpdatePhoneNumberRequest>,
    ) -> Reply<UpdatePhoneNumberResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        validate::phone_number(&req.number).map_err(NodeError::from)?;
        let label = validate::label(&req.label).map_err(NodeError::from)?;
        let op = Op::UpdatePhoneNumber { org_id, number: req.number, label, expected_version: req.expected_version };
        match self.commit(actor, &req.request_id, op).await? {
            CommandOutcome::PhoneNumber(number) => Ok(self
                .core
                .reply(UpdatePhoneNumberResponse { phone_number: Some(conv::phone_number_to_wire(&number)) })),
            other => Err(unexpected(other)),
        }
    }

    #[tracing::instrument(name = "node.delete_phone_number", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn delete_phone_number(
        &self,
        request: Request<DeletePhoneNumberRequest>,
    ) -> Reply<DeletePhoneNumberResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        validate::phone_number(&req.number).map_err(NodeError::from)?;
        match self.commit(actor, &req.request_id, Op::DeletePhoneNumber { org_id, number: req.number }).await? {
            CommandOutcome::PhoneNumberDeleted => Ok(self.core.reply(DeletePhoneNumberResponse {})),
            other => Err(unexpected(other)),
        }
    }

    // ---------------------------------------------------------------- audit log

    #[tracing::instrument(name = "node.list_audit_events", skip_all, fields(region = %self.core.region, node = self.core.node_id))]
    async fn list_audit_events(&self, request: Request<ListAuditEventsRequest>) -> Reply<ListAuditEventsResponse> {
        let actor = caller::actor(&request)?;
        let req = request.into_inner();
        let org_id = self.core.org_id(&req.org_id)?;
        let filter = conv::parse_audit_filter(&req).map_err(NodeError::from)?;
        let (limit, after) = page(req.page_size, &req.page_token)?;
        let ((events, next), read) = self
            .core
            .query_org(&actor, &org_id, QueryKind::ListAuditEvents, req.consistency, |view| {
                state::list_audit_events(view, &org_id, &filter, after.as_deref(), limit)
            })
            .await?;
        Ok(self.core.reply(ListAuditEventsResponse {
            events: events.iter().map(conv::audit_event_to_wire).collect(),
            next_page_token: next_token(next),
            read: Some(read),
        }))
    }
}
