//! `OrgService` at the router: every call but `ListUserOrgs` goes to one region, picked by
//! [`Routed::region_key`] and served by that region's [`crate::region::RegionNodes`];
//! `ListUserOrgs` asks every region ([`crate::fanout`]).

use std::future::Future;
use std::time::Instant;

use orgplane_model::Region;
use orgplane_proto::v1::org_service_client::OrgServiceClient;
use orgplane_proto::v1::org_service_server::OrgService;
use orgplane_proto::v1::*;
use tonic::{Code, Request, Response, Status};

use crate::deadline::Deadline;
use crate::region::Node;
use crate::route::Routed;
use crate::server::RouterApi;
use crate::stack::NodeService;

impl RouterApi {
    /// Routes one request to its region and returns the region's answer. Logs the method,
    /// region, status code and latency of every call, and nothing of its payload.
    async fn route<R, Resp, F, Fut>(&self, request: Request<R>, send: F) -> Result<Response<Resp>, Status>
    where
        R: Routed,
        F: Fn(OrgServiceClient<NodeService>, Request<R>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        self.route_to(request, |node: &Node| node.org.clone(), send).await
    }

    /// [`Self::route`] with any of a node's clients, picked by `client`.
    #[tracing::instrument(name = "router.route", skip_all, fields(rpc = R::RPC, region))]
    pub(crate) async fn route_to<R, Resp, C, F, Fut>(
        &self,
        request: Request<R>,
        client: impl Fn(&Node) -> C,
        send: F,
    ) -> Result<Response<Resp>, Status>
    where
        R: Routed,
        F: Fn(C, Request<R>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let started = Instant::now();
        let deadline = Deadline::for_request(request.metadata(), self.state.request_timeout);
        let mut message = request.into_inner();
        let mut region = None;
        let result = async {
            let nodes = self.state.table.route(&message)?;
            region = Some(nodes.region);
            tracing::Span::current().record("region", nodes.region.as_str());
            message.ensure_request_id();
            record_call(nodes.region, &mut message);
            let retry_after_send_is_safe = message.retry_after_send_is_safe();
            nodes.call(R::RPC, deadline, message, retry_after_send_is_safe, client, send).await
        }
        .await;
        let result = result.map(Response::new).map_err(Status::from);
        log_outcome(R::RPC, region, result.as_ref().map_or_else(Status::code, |_| Code::Ok), started);
        result
    }
}

/// Fills in the call's `rpc` span once the request is routed: its region, its org (the routing
/// just parsed the id) and its request id (when it is a valid one: what a client made up never
/// reaches the logs).
fn record_call<R: Routed>(region: Region, message: &mut R) {
    orgplane_telemetry::trace::record_region(region.as_str());
    if let Some(org_id) = message.org_id() {
        orgplane_telemetry::trace::record_org(&org_id);
    }
    if let Some(request_id) = message.request_id_mut() {
        if orgplane_model::validate::request_id(request_id).is_ok() {
            orgplane_telemetry::trace::record_request_id(&request_id.as_str());
        }
    }
}

/// The one log line per client call: method, region, code, latency. Never a payload field, and
/// never a node's error message (it may quote the request).
pub(crate) fn log_outcome(rpc: &'static str, region: Option<Region>, code: Code, started: Instant) {
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let region = region.map(Region::as_str);
    match code {
        Code::Ok
        | Code::NotFound
        | Code::InvalidArgument
        | Code::AlreadyExists
        | Code::Aborted
        | Code::FailedPrecondition => {
            tracing::info!(rpc, region, code = ?code, latency_ms, "call done")
        }
        _ => tracing::warn!(rpc, region, code = ?code, latency_ms, "call failed"),
    }
}

#[tonic::async_trait]
impl OrgService for RouterApi {
    async fn create_org(&self, request: Request<CreateOrgRequest>) -> Result<Response<CreateOrgResponse>, Status> {
        self.route(request, |mut node, r| async move { node.create_org(r).await }).await
    }

    async fn get_org(&self, request: Request<GetOrgRequest>) -> Result<Response<GetOrgResponse>, Status> {
        self.route(request, |mut node, r| async move { node.get_org(r).await }).await
    }

    async fn list_orgs(&self, request: Request<ListOrgsRequest>) -> Result<Response<ListOrgsResponse>, Status> {
        self.route(request, |mut node, r| async move { node.list_orgs(r).await }).await
    }

    async fn update_org(&self, request: Request<UpdateOrgRequest>) -> Result<Response<UpdateOrgResponse>, Status> {
        self.route(request, |mut node, r| async move { node.update_org(r).await }).await
    }

    async fn delete_org(&self, request: Request<DeleteOrgRequest>) -> Result<Response<DeleteOrgResponse>, Status> {
        self.route(request, |mut node, r| async move { node.delete_org(r).await }).await
    }

    async fn add_member(&self, request: Request<AddMemberRequest>) -> Result<Response<AddMemberResponse>, Status> {
        self.route(request, |mut node, r| async move { node.add_member(r).await }).await
    }

    async fn set_member_role(
        &self,
        request: Request<SetMemberRoleRequest>,
    ) -> Result<Response<SetMemberRoleResponse>, Status> {
        self.route(request, |mut node, r| async move { node.set_member_role(r).await }).await
    }

    async fn remove_member(
        &self,
        request: Request<RemoveMemberRequest>,
    ) -> Result<Response<RemoveMemberResponse>, Status> {
        self.route(request, |mut node, r| async move { node.remove_member(r).await }).await
    }

    async fn list_members(
        &self,
        request: Request<ListMembersRequest>,
    ) -> Result<Response<ListMembersResponse>, Status> {
        self.route(request, |mut node, r| async move { node.list_members(r).await }).await
    }

    async fn list_user_orgs(
        &self,
        request: Request<ListUserOrgsRequest>,
    ) -> Result<Response<ListUserOrgsResponse>, Status> {
        crate::fanout::list_user_orgs(&self.state, request).await
    }
}
