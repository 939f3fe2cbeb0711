//! `AdminService` at the router: membership changes go to the region the request names, like
//! every other region-scoped call (see [`crate::route::Routed`]).

use orgplane_proto::v1::admin_service_server::AdminService;
use orgplane_proto::v1::*;
use tonic::{Request, Response, Status};

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
}
