//! `AdminService` at the router: membership changes and backups go to the region the request
//! names, like every other region-scoped call (see [`crate::route::Routed`]); a backup's
//! stream is then relayed by [`crate::backup`].

use orgplane_proto::conv::parse_region;
use orgplane_proto::v1::admin_service_server::AdminService;
use orgplane_proto::v1::*;
use tonic::{Request, Response, Status};

use crate::deadline::Deadline;
use crate::error::RouterError;
use crate::region::Node;
use crate::server::RouterApi;

#[tonic::async_trait]
impl AdminService for RouterApi {
    async fn add_node(&self, request: Request<AddNodeRequest>) -> Result<Response<AddNodeResponse>, Status> {
        self.route_to(request, |n: &Node| n.admin.clone(), |mut node, r| async move { node.add_node(r).await }).await
    }

    async fn remove_node(&self, request: Request<RemoveNodeRequest>) -> Result<Response<RemoveNodeResponse>, Status> {
        self.route_to(request, |n: &Node| n.admin.clone(), |mut node, r| async move { node.remove_node(r).await }).await
    }

    async fn get_membership(
        &self,
        request: Request<GetMembershipRequest>,
    ) -> Result<Response<GetMembershipResponse>, Status> {
        self.route_to(request, |n: &Node| n.admin.clone(), |mut node, r| async move { node.get_membership(r).await })
            .await
    }

    type BackupStream = crate::backup::BackupStream;

    async fn backup(&self, request: Request<BackupRequest>) -> Result<Response<Self::BackupStream>, Status> {
        let region = parse_region("region", &request.get_ref().region).map_err(RouterError::from)?;
        let client_deadline = Deadline::of_client(request.metadata());
        let from_node = self
            .route_to(request, |n: &Node| n.admin.clone(), |mut node, r| async move { node.backup(r).await })
            .await?;
        let idle = self.state.request_timeout;
        Ok(Response::new(crate::backup::relay(region, from_node.into_inner(), client_deadline, idle)))
    }
}
