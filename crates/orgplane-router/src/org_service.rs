//! `OrgService` at the router: every call but `ListUserOrgs` goes to one region, picked by
//! [`Routed::region_key`] and served by that region's [`crate::region::RegionNodes`];
//! `ListUserOrgs` asks every region ([`crate::fanout`]).

use std::future::Future;
use std::time::Instant;

use orgplane_model::{OrgId, Region};
use orgplane_proto::conv::{MOVING_TO_HEADER, ORG_EPOCH_HEADER};
use orgplane_proto::v1::org_service_client::OrgServiceClient;
use orgplane_proto::v1::org_service_server::OrgService;
use orgplane_proto::v1::*;
use tonic::{Code, Request, Response, Status};

use crate::deadline::Deadline;
use crate::error::RouterError;
use crate::placement::forwarded_to;
use crate::region::Node;
use crate::route::Routed;
use crate::server::RouterApi;
use crate::stack::NodeService;

/// How many forwarding answers one call follows.
const MAX_FORWARDING_HOPS: usize = 3;
/// The first and the longest wait before asking a region again about an org it is moving away.
const MOVING_PAUSE_FIRST: std::time::Duration = std::time::Duration::from_millis(25);
const MOVING_PAUSE_MAX: std::time::Duration = std::time::Duration::from_millis(100);

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
            // The id's region (validated here) unless a forwarding answer said the org moved:
            // a router may not serve the region an org was created in, only the one it moved to.
            let home_by_id = message.region_key()?;
            let org = message.org_id().and_then(|id| id.parse::<OrgId>().ok());
            let mut placement = org.as_ref().and_then(|org| self.state.placements.get(org));
            message.ensure_request_id();
            let retry_after_send_is_safe = message.retry_after_send_is_safe();
            let mut hops = 0;
            let mut pause = MOVING_PAUSE_FIRST;
            loop {
                let nodes = self.state.table.get(placement.map_or(home_by_id, |p| p.region))?;
                region = Some(nodes.region);
                tracing::Span::current().record("region", nodes.region.as_str());
                record_call(nodes.region, &mut message);
                let epoch = placement.map(|p| p.epoch);
                let send_with_epoch = |node: C, mut request: Request<R>| {
                    if let Some(value) = epoch.and_then(|e| e.to_string().parse().ok()) {
                        request.metadata_mut().insert(ORG_EPOCH_HEADER, value);
                    }
                    send(node, request)
                };
                let outcome = nodes
                    .call(R::RPC, deadline, message.clone(), retry_after_send_is_safe, &client, send_with_epoch)
                    .await;
                let Err(RouterError::NodeAnswer { status, .. }) = &outcome else { return outcome };
                if let (Some(org), Some(moved)) = (&org, forwarded_to(status.metadata())) {
                    // The org lives elsewhere now: remember, and go there (a few hops at most,
                    // in case it moved again meanwhile).
                    if hops < MAX_FORWARDING_HOPS {
                        self.state.placements.learn(org, moved);
                        placement = Some(moved);
                        hops += 1;
                        continue;
                    }
                }
                if status.metadata().contains_key(MOVING_TO_HEADER) && retry_after_send_is_safe {
                    // Frozen by a move: writes pause until the switch (well under a second to a
                    // few seconds), so wait here
                    // within the caller's deadline rather than fail.
                    if let Some(remaining) = deadline.remaining().filter(|r| *r > pause) {
                        tokio::time::sleep(pause.min(remaining)).await;
                        pause = (pause * 2).min(MOVING_PAUSE_MAX);
                        continue;
                    }
                }
                return outcome;
            }
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
