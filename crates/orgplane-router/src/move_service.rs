//! `MoveService` at the router: starting, following and aborting org moves (driven by
//! [`crate::mover`]) and the residency report, which asks every node of every region. The
//! node-internal calls are not served here.

use std::time::Duration;

use futures::future::join_all;
use orgplane_model::relocation::{MovePhase, MoveStep};
use orgplane_model::{OrgId, Region};
use orgplane_proto::conv::{parse_org_id, parse_region};
use orgplane_proto::v1::move_service_server::MoveService;
use orgplane_proto::v1::*;
use tonic::{Request, Response, Status};

use crate::deadline::Deadline;
use crate::error::RouterError;
use crate::mover::{phase_of, StepAnswer, STALLED_AFTER};
use crate::region::Node;
use crate::server::RouterApi;

/// How long one node gets to report its residency.
const RESIDENCY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long reading the org's name for the residency needles may take.
const NAME_TIMEOUT: Duration = Duration::from_secs(5);

/// What every region records about an org.
struct Located {
    /// Where the org is served, and its epoch there (the newest, while two regions hold it
    /// around a switch).
    home: Option<(Region, u64)>,
    /// Every move record of the org, of every region that answered.
    moves: Vec<OrgMove>,
}

impl Located {
    /// The org's latest move, as its target records it.
    fn latest_incoming(&self) -> Option<&OrgMove> {
        self.moves.iter().filter(|m| m.side == "incoming").max_by_key(|m| (m.start_time_ms, m.update_time_ms))
    }

    /// The move in progress, if any.
    fn in_progress(&self) -> Option<&OrgMove> {
        self.latest_incoming().filter(|m| phase_of(m).is_some_and(|p| !p.is_final()))
    }
}

/// Whether a region failed to answer (rather than refused).
fn is_unreachable(error: &RouterError) -> bool {
    matches!(error.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::ResourceExhausted)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl RouterApi {
    /// Asks every region what it records about `org`. Fails (UNAVAILABLE naming them) when
    /// regions did not answer and the org's home is not known from those that did.
    async fn locate(&self, org: &OrgId) -> Result<Located, RouterError> {
        let regions: Vec<Region> = self.state.table.regions().collect();
        let answers = join_all(regions.iter().map(|r| self.region_moves(*r, org))).await;
        let mut located = Located { home: None, moves: Vec::new() };
        let mut failed = Vec::new();
        for (region, answer) in regions.into_iter().zip(answers) {
            match answer {
                Ok(answer) => {
                    if answer.epoch > 0 && located.home.is_none_or(|(_, epoch)| answer.epoch > epoch) {
                        located.home = Some((region, answer.epoch));
                    }
                    located.moves.extend(answer.moves);
                }
                // A refusal (not a platform admin, a bad id) is the caller's answer.
                Err(e) if !is_unreachable(&e) => return Err(e),
                Err(e) => failed.push((region, e)),
            }
        }
        if located.home.is_none() {
            if let Some((region, e)) = failed.into_iter().next() {
                return Err(RouterError::RegionUnavailable {
                    region,
                    reason: format!("cannot tell where the org is: {e}"),
                });
            }
        }
        Ok(located)
    }

    /// Resumes the move in progress if nobody seems to drive it (this router does not, and its
    /// record has not changed for [`STALLED_AFTER`]).
    fn resume_if_stalled(&self, located: &Located, org: &OrgId) {
        if let Some(record) = located.in_progress() {
            let idle = now_ms().saturating_sub(record.update_time_ms);
            if !self.state.moves.is_driving(org) && idle >= STALLED_AFTER.as_millis() as u64 {
                tracing::info!(org = %org, move_id = %record.move_id, idle_ms = idle, "resuming a stalled move");
                self.spawn_driver(record.clone());
            }
        }
    }

    /// Rolls back outgoing records at `region` whose move the target no longer has in
    /// progress (a driver stopped between the target's abort and the source's).
    async fn clear_orphans(&self, located: &Located, org: &OrgId) -> Result<(), RouterError> {
        for out in located.moves.iter().filter(|m| m.side == "outgoing") {
            let target_has_it = located.moves.iter().any(|m| {
                m.side == "incoming" && m.move_id == out.move_id && phase_of(m).is_some_and(|p| !p.is_final())
            });
            if !target_has_it {
                let region: Region = out.source_region.parse().map_err(|_| RouterError::InvalidArgument {
                    field: "source_region",
                    reason: out.source_region.clone(),
                })?;
                tracing::info!(org = %org, move_id = %out.move_id, "rolling back an orphaned outgoing move record");
                self.move_step(region, org, MoveStep::AbortOut { move_id: out.move_id.clone() }).await?;
            }
        }
        Ok(())
    }

    async fn start_move(&self, request: MoveOrgRequest) -> Result<OrgMove, RouterError> {
        let org = parse_org_id("org_id", &request.org_id)?;
        let to = parse_region("to_region", &request.to_region)?;
        self.state.table.get(to)?;
        let located = self.locate(&org).await?;
        let Some((home, epoch)) = located.home else {
            return Err(RouterError::NodeAnswer {
                region: org.region(),
                status: Status::not_found(format!("org {org} not found in any region")),
            });
        };
        if home == to {
            return Err(RouterError::InvalidArgument {
                field: "to_region",
                reason: format!("org {org} already lives in region {to}"),
            });
        }
        if let Some(moving) = located.in_progress() {
            self.resume_if_stalled(&located, &org);
            return Err(RouterError::NodeAnswer {
                region: home,
                status: Status::failed_precondition(format!(
                    "org {org} is already moving ({} to {}, move {}, {})",
                    moving.source_region, moving.target_region, moving.move_id, moving.phase
                )),
            });
        }
        let planned = OrgMove {
            org_id: org.to_string(),
            source_region: home.to_string(),
            target_region: to.to_string(),
            phase: MovePhase::Reserved.as_str().into(),
            from_epoch: epoch,
            to_epoch: epoch + 1,
            side: "incoming".into(),
            ..OrgMove::default()
        };
        if request.dry_run {
            return Ok(planned);
        }
        self.clear_orphans(&located, &org).await?;
        let move_id = uuid::Uuid::new_v4().simple().to_string();
        let reserved =
            self.move_step(to, &org, MoveStep::Reserve { move_id: move_id.clone(), source: home, target: to }).await?;
        let StepAnswer::Move(record) = reserved else {
            return Err(RouterError::RegionUnavailable {
                region: to,
                reason: "the reservation answered no record".into(),
            });
        };
        // The source begins before the call answers, so a refusal there (another move got the
        // org first) is this call's answer, and the reservation is rolled back.
        if let Err(refused) =
            self.move_step(home, &org, MoveStep::BeginOut { move_id: move_id.clone(), target: to }).await
        {
            let reason = format!("the source region {home} refused: {refused}");
            let _ = self.move_step(to, &org, MoveStep::AbortIn { move_id: move_id.clone(), reason }).await;
            return Err(refused);
        }
        tracing::info!(org = %org, move_id = %move_id, from = %home, to = %to, "org move started");
        self.spawn_driver((*record).clone());
        Ok(*record)
    }

    async fn abort(&self, request: AbortMoveRequest) -> Result<OrgMove, RouterError> {
        let org = parse_org_id("org_id", &request.org_id)?;
        let located = self.locate(&org).await?;
        let Some(moving) = located.in_progress().cloned() else {
            return Err(RouterError::NodeAnswer {
                region: org.region(),
                status: Status::failed_precondition(format!("org {org} has no move in progress")),
            });
        };
        let target: Region = moving.target_region.parse().map_err(|_| RouterError::InvalidArgument {
            field: "target_region",
            reason: moving.target_region.clone(),
        })?;
        let source: Region = moving.source_region.parse().map_err(|_| RouterError::InvalidArgument {
            field: "source_region",
            reason: moving.source_region.clone(),
        })?;
        let reason = if request.reason.is_empty() { "aborted by an operator".to_string() } else { request.reason };
        let aborted =
            self.move_step(target, &org, MoveStep::AbortIn { move_id: moving.move_id.clone(), reason }).await?;
        self.move_step(source, &org, MoveStep::AbortOut { move_id: moving.move_id.clone() }).await?;
        tracing::info!(org = %org, move_id = %moving.move_id, "org move aborted");
        match aborted {
            StepAnswer::Move(record) => Ok(*record),
            _ => Ok(moving),
        }
    }

    /// The org's current name at its home, for the residency needles (empty if unknown).
    async fn org_name(&self, home: Region, org: &OrgId) -> String {
        let Ok(nodes) = self.state.table.get(home) else { return String::new() };
        let request = GetOrgRequest { org_id: org.to_string(), ..GetOrgRequest::default() };
        let answer = nodes
            .call(
                "GetOrg",
                Deadline::after(NAME_TIMEOUT),
                request,
                true,
                |n: &Node| n.org.clone(),
                |mut node, r| async move { node.get_org(r).await },
            )
            .await;
        answer.ok().and_then(|a| a.org).map(|o| o.name).unwrap_or_default()
    }

    async fn residency(&self, request: GetResidencyRequest) -> Result<GetResidencyResponse, RouterError> {
        let org = parse_org_id("org_id", &request.org_id)?;
        let located = self.locate(&org).await?;
        let name = match located.home {
            Some((home, _)) => self.org_name(home, &org).await,
            None => String::new(),
        };
        let mut asks = Vec::new();
        for nodes in self.state.table.iter() {
            for node in &nodes.nodes {
                let region = nodes.region;
                let request = GetNodeResidencyRequest { org_id: org.to_string(), needles: vec![name.clone()] };
                let mut client = node.moves.clone();
                let endpoint = node.endpoint.clone();
                asks.push(async move {
                    let mut call = Request::new(request);
                    call.set_timeout(RESIDENCY_TIMEOUT);
                    match tokio::time::timeout(RESIDENCY_TIMEOUT, client.get_node_residency(call)).await {
                        Ok(Ok(answer)) => answer.into_inner().residency.unwrap_or_default(),
                        Ok(Err(status)) => NodeResidency {
                            region: region.to_string(),
                            error: format!("{endpoint}: {:?}: {}", status.code(), status.message()),
                            ..NodeResidency::default()
                        },
                        Err(_) => NodeResidency {
                            region: region.to_string(),
                            error: format!("{endpoint}: no answer within {RESIDENCY_TIMEOUT:?}"),
                            ..NodeResidency::default()
                        },
                    }
                });
            }
        }
        let nodes = join_all(asks).await;
        let (home_region, epoch) = located.home.map(|(r, e)| (r.to_string(), e)).unwrap_or_default();
        Ok(GetResidencyResponse { org_id: org.to_string(), home_region, epoch, nodes })
    }
}

/// The status of a node-internal call made to the router.
fn node_only(call: &str) -> Status {
    Status::failed_precondition(format!("{call} is served by the region's nodes, not by the router"))
}

#[tonic::async_trait]
impl MoveService for RouterApi {
    async fn move_org(&self, request: Request<MoveOrgRequest>) -> Result<Response<MoveOrgResponse>, Status> {
        let record = self.start_move(request.into_inner()).await?;
        Ok(Response::new(MoveOrgResponse { r#move: Some(record) }))
    }

    async fn get_move_status(
        &self,
        request: Request<GetMoveStatusRequest>,
    ) -> Result<Response<GetMoveStatusResponse>, Status> {
        let org = parse_org_id("org_id", &request.get_ref().org_id).map_err(RouterError::from)?;
        let located = self.locate(&org).await?;
        self.resume_if_stalled(&located, &org);
        let Some(latest) = located.latest_incoming().cloned() else {
            return Err(Status::not_found(format!("org {org} has never moved")));
        };
        let (home_region, epoch) = located.home.map(|(r, e)| (r.to_string(), e)).unwrap_or_default();
        Ok(Response::new(GetMoveStatusResponse { r#move: Some(latest), home_region, epoch }))
    }

    async fn abort_move(&self, request: Request<AbortMoveRequest>) -> Result<Response<AbortMoveResponse>, Status> {
        let record = self.abort(request.into_inner()).await?;
        Ok(Response::new(AbortMoveResponse { r#move: Some(record) }))
    }

    async fn get_residency(
        &self,
        request: Request<GetResidencyRequest>,
    ) -> Result<Response<GetResidencyResponse>, Status> {
        Ok(Response::new(self.residency(request.into_inner()).await?))
    }

    async fn apply_move_step(
        &self,
        _request: Request<ApplyMoveStepRequest>,
    ) -> Result<Response<ApplyMoveStepResponse>, Status> {
        Err(node_only("ApplyMoveStep"))
    }

    async fn list_moves(&self, _request: Request<ListMovesRequest>) -> Result<Response<ListMovesResponse>, Status> {
        Err(node_only("ListMoves"))
    }

    type ExportOrgImageStream = futures::stream::Empty<Result<OrgImageChunk, Status>>;

    async fn export_org_image(
        &self,
        _request: Request<ExportOrgImageRequest>,
    ) -> Result<Response<Self::ExportOrgImageStream>, Status> {
        Err(node_only("ExportOrgImage"))
    }

    async fn get_node_residency(
        &self,
        _request: Request<GetNodeResidencyRequest>,
    ) -> Result<Response<GetNodeResidencyResponse>, Status> {
        Err(node_only("GetNodeResidency"))
    }

    async fn compact_node(
        &self,
        _request: Request<CompactNodeRequest>,
    ) -> Result<Response<CompactNodeResponse>, Status> {
        Err(node_only("CompactNode"))
    }
}
