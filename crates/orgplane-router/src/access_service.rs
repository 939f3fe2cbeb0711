//! `AccessService` at the router: every call is about one org and goes to the region its
//! `org_id` names, through the same path as `OrgService` ([`RouterApi::route_to`]: the
//! per-node stack that forwards the caller's `authorization` and trace, leader hints,
//! retries of reads and of writes with a request id). The region checks the caller itself.
//! `ListPermissions` names no org: the catalog is the same everywhere, so the router answers
//! it from the model's table.

use orgplane_proto::conv;
use orgplane_proto::v1::access_service_client::AccessServiceClient;
use orgplane_proto::v1::access_service_server::AccessService;
use orgplane_proto::v1::*;
use tonic::{Request, Response, Status};

use crate::region::Node;
use crate::route::Routed;
use crate::server::RouterApi;
use crate::stack::NodeService;

impl RouterApi {
    /// Routes an access call to the region of its org, to that region's `AccessService`.
    async fn route_access<R, Resp, F, Fut>(&self, request: Request<R>, send: F) -> Result<Response<Resp>, Status>
    where
        R: Routed,
        F: Fn(AccessServiceClient<NodeService>, Request<R>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<Resp>, Status>>,
    {
        self.route_to(request, |node: &Node| node.access.clone(), send).await
    }
}

#[tonic::async_trait]
impl AccessService for RouterApi {
    async fn create_role(&self, request: Request<CreateRoleRequest>) -> Result<Response<CreateRoleResponse>, Status> {
        self.route_access(request, |mut node, r| async move { node.create_role(r).await }).await
    }

    async fn update_role(&self, request: Request<UpdateRoleRequest>) -> Result<Response<UpdateRoleResponse>, Status> {
        self.route_access(request, |mut node, r| async move { node.update_role(r).await }).await
    }

    async fn delete_role(&self, request: Request<DeleteRoleRequest>) -> Result<Response<DeleteRoleResponse>, Status> {
        self.route_access(request, |mut node, r| async move { node.delete_role(r).await }).await
    }

    async fn list_roles(&self, request: Request<ListRolesRequest>) -> Result<Response<ListRolesResponse>, Status> {
        self.route_access(request, |mut node, r| async move { node.list_roles(r).await }).await
    }

    async fn list_permissions(
        &self,
        _request: Request<ListPermissionsRequest>,
    ) -> Result<Response<ListPermissionsResponse>, Status> {
        Ok(Response::new(ListPermissionsResponse { permissions: conv::permission_catalog() }))
    }

    async fn create_invitation(
        &self,
        request: Request<CreateInvitationRequest>,
    ) -> Result<Response<CreateInvitationResponse>, Status> {
        self.route_access(request, |mut node, r| async move { node.create_invitation(r).await }).await
    }

    async fn list_invitations(
        &self,
        request: Request<ListInvitationsRequest>,
    ) -> Result<Response<ListInvitationsResponse>, Status> {
        self.route_access(request, |mut node, r| async move { node.list_invitations(r).await }).await
    }

    async fn revoke_invitation(
        &self,
        request: Request<RevokeInvitationRequest>,
    ) -> Result<Response<RevokeInvitationResponse>, Status> {
        self.route_access(request, |mut node, r| async move { node.revoke_invitation(r).await }).await
    }

    async fn accept_invitation(
        &self,
        request: Request<AcceptInvitationRequest>,
    ) -> Result<Response<AcceptInvitationResponse>, Status> {
        self.route_access(request, |mut node, r| async move { node.accept_invitation(r).await }).await
    }

    async fn create_integration(
        &self,
        request: Request<CreateIntegrationRequest>,
    ) -> Result<Response<CreateIntegrationResponse>, Status> {
        self.route_access(request, |mut node, r| async move { node.create_integration(r).await }).await
    }

    async fn get_integration(
        &self,
        request: Request<GetIntegrationRequest>,
    ) -> Result<Response<GetIntegrationResponse>, Status> {
        self.route_access(request, |mut node, r| async move { node.get_integration(r).await }).await
    }

    async fn list_integrations(
        &self,
        request: Request<ListIntegrationsRequest>,
    ) -> Result<Response<ListIntegrationsResponse>, Status> {
        self.route_access(request, |mut node, r| async move { node.list_integrations(r).await }).await
    }

    async fn update_integration(
        &self,
        request: Request<UpdateIntegrationRequest>,
    ) -> Result<Response<UpdateIntegrationResponse>, Status> {
        self.route_access(request, |mut node, r| async move { node.update_integration(r).await }).await
    }

    async fn delete_integration(
        &self,
        request: Request<DeleteIntegrationRequest>,
    ) -> Result<Response<DeleteIntegrationResponse>, Status> {
        self.route_access(request, |mut node, r| async move { node.delete_integration(r).await }).await
    }

    async fn create_phone_number(
        &self,
        request: Request<CreatePhoneNumberRequest>,
    ) -> Result<Response<CreatePhoneNumberResponse>, Status> {
        self.route_access(request, |mut node, r| async move { node.create_phone_number(r).await }).await
    }

    async fn get_phone_number(
        &self,
        request: Request<GetPhoneNumberRequest>,
    ) -> Result<Response<GetPhoneNumberResponse>, Status> {
        self.route_access(request, |mut node, r| async move { node.get_phone_number(r).await }).await
    }

    async fn list_phone_numbers(
        &self,
        request: Request<ListPhoneNumbersRequest>,
    ) -> Result<Response<ListPhoneNumbersResponse>, Status> {
        self.route_access(request, |mut node, r| async move { node.list_phone_numbers(r).await }).await
    }

    async fn update_phone_number(
        &self,
        request: Request<UpdatePhoneNumberRequest>,
    ) -> Result<Response<UpdatePhoneNumberResponse>, Status> {
        self.route_access(request, |mut node, r| async move { node.update_phone_number(r).await }).await
    }

    async fn delete_phone_number(
        &self,
        request: Request<DeletePhoneNumberRequest>,
    ) -> Result<Response<DeletePhoneNumberResponse>, Status> {
        self.route_access(request, |mut node, r| async move { node.delete_phone_number(r).await }).await
    }

    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Result<Response<ListAuditEventsResponse>, Status> {
        self.route_access(request, |mut node, r| async move { node.list_audit_events(r).await }).await
    }
}
