//! The `MoveService` on a node: the region's half of moving an org (see
//! `orgplane_model::relocation`). The router's move driver calls these; the calls that need
//! every region (starting a move, its status, the residency report) are the router's.
//!
//! - `ApplyMoveStep`: one step, proposed like any write (a follower forwards it to the leader).
//! - `ListMoves`: the region's move records, after a linearizable read.
//! - `ExportOrgImage`: every record of the org at one index (a linearizable read, then one
//!   consistent view), only while this region's outgoing move of it is copying or frozen.
//! - `GetNodeResidency`: what this node itself holds of the org: state, log, snapshot, files.
//! - `CompactNode`: a snapshot, the log purged up to it, the store's files rewritten; after a
//!   move's source let go of an org, this is what takes its bytes off the node's disk.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use orgplane_model::relocation::MoveStep;
use orgplane_model::state::{self, StateRead};
use orgplane_model::{CommandOutcome, Op, OrgId};
use orgplane_proto::conv::{forwarding_to_wire, move_state_to_wire, move_to_wire, parse_region};
use orgplane_proto::v1::move_service_server::MoveService;
use orgplane_proto::v1::*;
use orgplane_proto::ConvError;
use tonic::{Request, Response, Status};

use crate::caller;
use crate::error::NodeError;
use crate::org_service::{unexpected, NodeCore};

/// The largest chunk of an org image: well under every message limit on the path.
pub const IMAGE_CHUNK_BYTES: usize = 1024 * 1024;
/// How long a compaction waits for its snapshot and log purge.
const COMPACT_WAIT: Duration = Duration::from_secs(60);

type ImageStream = Pin<Box<dyn Stream<Item = Result<OrgImageChunk, Status>> + Send>>;

pub struct MoveServiceImpl {
    core: Arc<NodeCore>,
}

impl MoveServiceImpl {
    pub fn new(core: Arc<NodeCore>) -> Self {
        MoveServiceImpl { core }
    }

    fn router_only(&self, call: &str) -> Status {
        Status::failed_precondition(format!(
            "{call} needs every region: ask a router (this is node {} of region {})",
            self.core.node_id, self.core.region
        ))
    }

    fn storage(&self, e: state::StorageFault) -> Status {
        self.core.storage(e).into()
    }
}

/// Splits an image into chunks of at most [`IMAGE_CHUNK_BYTES`] (a single larger record goes
/// alone), each naming the index, the last one the total.
fn image_chunks(records: Vec<(String, String)>, log_index: u64) -> Vec<OrgImageChunk> {
    let total = records.len() as u64;
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for (key, value) in records {
        let size = key.len() + value.len();
        if !current.is_empty() && bytes + size > IMAGE_CHUNK_BYTES {
            chunks.push(OrgImageChunk {
                records: std::mem::take(&mut current),
                log_index,
                total_records: 0,
                last: false,
            });
            bytes = 0;
        }
        bytes += size;
        current.push(OrgImageRecord { key, value });
    }
    chunks.push(OrgImageChunk { records: current, log_index, total_records: total, last: true });
    chunks
}

#[tonic::async_trait]
impl MoveService for MoveServiceImpl {
    async fn move_org(&self, _request: Request<MoveOrgRequest>) -> Result<Response<MoveOrgResponse>, Status> {
        Err(self.router_only("MoveOrg"))
    }

    async fn get_move_status(
        &self,
        _request: Request<GetMoveStatusRequest>,
    ) -> Result<Response<GetMoveStatusResponse>, Status> {
        Err(self.router_only("GetMoveStatus"))
    }

    async fn abort_move(&self, _request: Request<AbortMoveRequest>) -> Result<Response<AbortMoveResponse>, Status> {
        Err(self.router_only("AbortMove"))
    }

    async fn get_residency(
        &self,
        _request: Request<GetResidencyRequest>,
    ) -> Result<Response<GetResidencyResponse>, Status> {
        Err(self.router_only("GetResidency"))
    }

    async fn apply_move_step(
        &self,
        request: Request<ApplyMoveStepRequest>,
    ) -> Result<Response<ApplyMoveStepResponse>, Status> {
        let actor = caller::platform_admin(&request, "moving an org")?;
        let request = request.into_inner();
        let org_id = self.core.org_id(&request.org_id)?;
        let step: MoveStep = serde_json::from_slice(&request.step)
            .map_err(|e| NodeError::from(ConvError::new("step", format!("is not a move step: {e}"))))?;
        tracing::info!(org = %org_id, step = step.name(), move_id = step.move_id(), "move step");
        // The step's own id makes retries safe; the request id only ties the node's retries.
        let outcome = self.core.write(actor, "", Op::Relocate { org_id, step }).await?;
        match outcome {
            CommandOutcome::Move(state) => Ok(self.core.reply(move_state_to_wire(&state))),
            other => Err(unexpected(other)),
        }
    }

    async fn list_moves(&self, request: Request<ListMovesRequest>) -> Result<Response<ListMovesResponse>, Status> {
        caller::platform_admin(&request, "listing moves")?;
        let request = request.into_inner();
        let org = (!request.org_id.is_empty()).then(|| self.core.org_id(&request.org_id)).transpose()?;
        self.core.prepare_read(ReadConsistency::Linearizable as i32).await?;
        let answer = self.core.state.read_consistent(|view| -> Result<ListMovesResponse, state::StorageFault> {
            let Some(org) = &org else {
                let moves = state::list_moves(view)?.iter().map(move_to_wire).collect();
                return Ok(ListMovesResponse { moves, forwarding: None, epoch: 0 });
            };
            Ok(ListMovesResponse {
                moves: state::get_move(view, org)?.iter().map(move_to_wire).collect(),
                forwarding: state::get_forwarding(view, org)?.as_ref().map(forwarding_to_wire),
                epoch: state::get_org(view, org)?.map(|o| o.epoch).unwrap_or(0),
            })
        });
        Ok(self.core.reply(answer.map_err(|e| self.storage(e))?))
    }

    type ExportOrgImageStream = ImageStream;

    async fn export_org_image(&self, request: Request<ExportOrgImageRequest>) -> Result<Response<ImageStream>, Status> {
        caller::platform_admin(&request, "copying an org")?;
        let request = request.into_inner();
        let org = self.core.org_id(&request.org_id)?;
        // The image is at least as new as this read: every write acknowledged before the call.
        let index = self.core.prepare_read(ReadConsistency::Linearizable as i32).await?.applied_index;
        let image = self.core.state.read_consistent(|view| -> Result<_, Status> {
            check_exporting(&self.core, view, &org, &request.move_id)?;
            state::org_image(view, &org).map_err(|e| self.storage(e))
        })?;
        tracing::info!(org = %org, move_id = %request.move_id, records = image.len(), log_index = index, "org image copied");
        let chunks = image_chunks(image, index);
        Ok(Response::new(Box::pin(futures::stream::iter(chunks.into_iter().map(Ok)))))
    }

    async fn get_node_residency(
        &self,
        request: Request<GetNodeResidencyRequest>,
    ) -> Result<Response<GetNodeResidencyResponse>, Status> {
        caller::platform_admin(&request, "checking residency")?;
        let request = request.into_inner();
        let org = self.core.org_id(&request.org_id)?;
        let residency = crate::residency::of_node(&self.core, &org, &request.needles).await?;
        Ok(Response::new(GetNodeResidencyResponse { residency: Some(residency) }))
    }

    async fn compact_node(
        &self,
        request: Request<CompactNodeRequest>,
    ) -> Result<Response<CompactNodeResponse>, Status> {
        caller::platform_admin(&request, "compacting a node")?;
        let request = request.into_inner();
        let region = parse_region("region", &request.region).map_err(NodeError::from)?;
        if region != self.core.region {
            return Err(NodeError::WrongRegion { serving: self.core.region, requested: region }.into());
        }
        let report = crate::residency::compact(&self.core, request.min_index, COMPACT_WAIT).await?;
        Ok(Response::new(report))
    }
}

/// Refuses an export unless this region's outgoing move `move_id` of `org` is copying or
/// frozen: an image is handed out for a move, and only while the source still holds the org.
fn check_exporting(core: &NodeCore, view: &impl StateRead, org: &OrgId, move_id: &str) -> Result<(), Status> {
    use orgplane_model::relocation::{MovePhase, MoveSide};
    let record = state::get_move(view, org).map_err(|e| Status::from(core.storage(e)))?;
    match record {
        Some(mv)
            if mv.move_id == move_id
                && mv.side == MoveSide::Outgoing
                && matches!(mv.phase, MovePhase::Copying | MovePhase::Frozen) =>
        {
            Ok(())
        }
        other => Err(Status::failed_precondition(format!(
            "region {} has no outgoing move {move_id} of org {org} in progress ({})",
            core.region,
            match other {
                Some(mv) => format!("it records move {} {}", mv.move_id, mv.phase.as_str()),
                None => "it records none".into(),
            }
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_is_cut_into_bounded_chunks_and_the_last_one_counts_them() {
        let big = "x".repeat(IMAGE_CHUNK_BYTES / 3);
        let records: Vec<_> = (0..7).map(|i| (format!("m/o/{i}"), big.clone())).collect();
        let chunks = image_chunks(records, 42);
        assert_eq!(chunks.iter().map(|c| c.records.len()).sum::<usize>(), 7);
        assert!(chunks.iter().all(|c| c.log_index == 42));
        assert!(chunks
            .iter()
            .all(|c| c.records.iter().map(|r| r.key.len() + r.value.len()).sum::<usize>() <= IMAGE_CHUNK_BYTES));
        let last = chunks.last().unwrap();
        assert!(last.last && last.total_records == 7);
        assert!(chunks[..chunks.len() - 1].iter().all(|c| !c.last));
        let empty = image_chunks(Vec::new(), 1);
        assert_eq!(empty.len(), 1, "an empty image is one last chunk");
        assert!(empty[0].last && empty[0].total_records == 0);
    }
}
