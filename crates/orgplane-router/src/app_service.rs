//! `AppService` at the router: every call is about one org and goes to the region its
//! `org_id` names, like `AccessService` ([`RouterApi::route_to`]).
//!
//! The two streams:
//! - `ExportApp` is routed like a read, then the node's stream is relayed message by message
//!   ([`crate::backup::relay`], bounded by the client's deadline and an idle limit).
//! - `ImportApp` is a client stream: the router reads its first message (the header naming
//!   the org), routes by that org's region, and forwards the header and then the rest of the
//!   upload as it arrives, holding one message at a time. An upload cannot be replayed, so it
//!   is sent to one node only (never resent). If the client's upload breaks off, the call to
//!   the node is cancelled rather than ended, so the node never takes a cut-off upload for a
//!   whole one.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::Stream;
use orgplane_proto::conv::parse_org_id;
use orgplane_proto::v1::app_service_client::AppServiceClient;
use orgplane_proto::v1::app_service_server::AppService;
use orgplane_proto::v1::*;
use tokio::sync::oneshot;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::backup::{relay, RelayedStream};
use crate::deadline::Deadline;
use crate::error::RouterError;
use crate::org_service::log_outcome;
use crate::region::Node;
use crate::route::Routed;
use crate::server::RouterApi;
use crate::stack::NodeService;

impl RouterApi {
    async fn route_apps<R, Resp, F, Fut>(&self, request: Request<R>, send: F) -> Result<Response<Resp>, Status>
    where
        R: Routed,
        F: Fn(AppServiceClient<NodeService>, Request<R>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<Resp>, Status>>,
    {
        self.route_to(request, |node: &Node| node.apps.clone(), send).await
    }
}

/// An upload on its way to one node: the header already read, the rest still with the client.
/// Clone (the attempt loop needs it), but only the first attempt gets the stream.
#[derive(Clone)]
struct Upload {
    parts: Arc<Mutex<Option<UploadParts>>>,
}

/// The header read by the router, and the client's stream of the rest.
type UploadParts = (ImportAppHeader, Streaming<ImportAppChunk>);

impl Upload {
    fn new(header: ImportAppHeader, rest: Streaming<ImportAppChunk>) -> Upload {
        Upload { parts: Arc::new(Mutex::new(Some((header, rest)))) }
    }

    /// The messages to send (header first), and what fires when the client's upload breaks:
    /// once only.
    fn take(&self) -> Option<(impl Stream<Item = ImportAppChunk> + Send + 'static, oneshot::Receiver<Status>)> {
        let (header, rest) = self.parts.lock().ok()?.take()?;
        let (broke, broken) = oneshot::channel();
        let first = ImportAppChunk { part: Some(import_app_chunk::Part::Header(header)) };
        let rest = futures::stream::unfold((rest, Some(broke)), |(mut rest, mut broke)| async move {
            match rest.message().await {
                Ok(Some(message)) => Some((message, (rest, broke))),
                Ok(None) => None,
                Err(status) => {
                    if let Some(broke) = broke.take() {
                        let _ = broke.send(status);
                    }
                    // Never end the stream here: the call is cancelled instead.
                    futures::future::pending::<()>().await;
                    None
                }
            }
        });
        Some((futures::StreamExt::chain(futures::stream::iter([first]), rest), broken))
    }
}

#[tonic::async_trait]
impl AppService for RouterApi {
    async fn create_app(&self, request: Request<CreateAppRequest>) -> Result<Response<CreateAppResponse>, Status> {
        self.route_apps(request, |mut node, r| async move { node.create_app(r).await }).await
    }

    async fn get_app(&self, request: Request<GetAppRequest>) -> Result<Response<GetAppResponse>, Status> {
        self.route_apps(request, |mut node, r| async move { node.get_app(r).await }).await
    }

    async fn list_apps(&self, request: Request<ListAppsRequest>) -> Result<Response<ListAppsResponse>, Status> {
        self.route_apps(request, |mut node, r| async move { node.list_apps(r).await }).await
    }

    async fn update_app(&self, request: Request<UpdateAppRequest>) -> Result<Response<UpdateAppResponse>, Status> {
        self.route_apps(request, |mut node, r| async move { node.update_app(r).await }).await
    }

    async fn delete_app(&self, request: Request<DeleteAppRequest>) -> Result<Response<DeleteAppResponse>, Status> {
        self.route_apps(request, |mut node, r| async move { node.delete_app(r).await }).await
    }

    async fn bind_app_slot(
        &self,
        request: Request<BindAppSlotRequest>,
    ) -> Result<Response<BindAppSlotResponse>, Status> {
        self.route_apps(request, |mut node, r| async move { node.bind_app_slot(r).await }).await
    }

    async fn unbind_app_slot(
        &self,
        request: Request<UnbindAppSlotRequest>,
    ) -> Result<Response<UnbindAppSlotResponse>, Status> {
        self.route_apps(request, |mut node, r| async move { node.unbind_app_slot(r).await }).await
    }

    async fn publish_app(&self, request: Request<PublishAppRequest>) -> Result<Response<PublishAppResponse>, Status> {
        self.route_apps(request, |mut node, r| async move { node.publish_app(r).await }).await
    }

    type ExportAppStream = RelayedStream<ExportAppChunk>;

    async fn export_app(&self, request: Request<ExportAppRequest>) -> Result<Response<Self::ExportAppStream>, Status> {
        let region = parse_org_id("org_id", &request.get_ref().org_id).map_err(RouterError::from)?.region();
        let client_deadline = Deadline::of_client(request.metadata());
        let from_node = self.route_apps(request, |mut node, r| async move { node.export_app(r).await }).await?;
        let idle = self.state.request_timeout;
        Ok(Response::new(relay(region, from_node.into_inner(), client_deadline, idle)))
    }

    async fn import_app(
        &self,
        request: Request<Streaming<ImportAppChunk>>,
    ) -> Result<Response<ImportAppResponse>, Status> {
        let started = Instant::now();
        let deadline = Deadline::for_request(request.metadata(), self.state.request_timeout);
        let mut upload = request.into_inner();
        let header = match upload.message().await? {
            Some(ImportAppChunk { part: Some(import_app_chunk::Part::Header(header)) }) => header,
            _ => {
                return Err(RouterError::InvalidArgument {
                    field: "header",
                    reason: "the first message must be the header".into(),
                }
                .into())
            }
        };
        let region = parse_org_id("org_id", &header.org_id).map_err(RouterError::from)?.region();
        let result = async {
            let nodes = self.state.table.get(region)?;
            orgplane_telemetry::trace::record_region(region.as_str());
            orgplane_telemetry::trace::record_org(&header.org_id);
            let upload = Upload::new(header, upload);
            let send = |mut node: AppServiceClient<NodeService>, request: Request<Upload>| async move {
                let (metadata, extensions, upload) = request.into_parts();
                let Some((messages, broken)) = upload.take() else {
                    let reason = "the upload was already sent to another node; send it again".into();
                    return Err(RouterError::RegionUnavailable { region, reason }.into());
                };
                let request = Request::from_parts(metadata, extensions, messages);
                tokio::select! {
                    answer = node.import_app(request) => answer,
                    Ok(status) = broken => {
                        Err(RouterError::UploadBroken { region, reason: status.message().to_string() }.into())
                    }
                }
            };
            nodes.call("ImportApp", deadline, upload, false, |n: &Node| n.apps.clone(), send).await
        }
        .await;
        let result = result.map(Response::new).map_err(Status::from);
        log_outcome("ImportApp", Some(region), result.as_ref().map_or_else(Status::code, |_| Code::Ok), started);
        result
    }
}
