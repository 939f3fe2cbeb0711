//! The driver of org moves: the router walks a move through its steps (see
//! `orgplane_model::relocation`), calling the source and target regions' `MoveService`.
//!
//! The router keeps nothing: both regions record the move in Raft, and the driver reads the
//! target's record before each step, so whichever router drives (the one that started the
//! move, or any router asked about a move that stopped making progress) continues from where
//! the regions are. Steps are idempotent and fenced in the regions (a step names its move, a
//! staged copy its copy id), so two drivers racing waste work but cannot break a move.
//!
//! The loop, by the target's phase:
//! - reserved: the source begins (refusals there abort the move), the target learns the epoch;
//! - copying: the org's image (source, linearizable) is staged at the target; the source
//!   freezes; the target records it;
//! - frozen: the frozen image is staged again, whole, and the target activates it: the switch;
//! - switched: the source drops the org for its forwarding record;
//! - cleaning_up: every source node snapshots, purges its log and rewrites its files;
//! - done / aborted: the end (an aborted move's source is unfrozen).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use orgplane_model::relocation::{image_delta, MoveNote, MovePhase, MoveStep};
use orgplane_model::{OrgId, Region};
use orgplane_proto::v1::{self, apply_move_step_response, OrgMove};
use tonic::Code;

use crate::deadline::Deadline;
use crate::error::RouterError;
use crate::region::Node;
use crate::server::RouterApi;
use crate::stack::NodeService;
use orgplane_proto::v1::move_service_client::MoveServiceClient;

/// The budget of one call to a region made by the driver.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// The budget of compacting one node (a snapshot, a purge and a rewrite of its files).
const COMPACT_TIMEOUT: Duration = Duration::from_secs(120);
/// The most records staged by one Raft command.
const STAGE_CHUNK_BYTES: usize = 512 * 1024;
/// The pause after a failed step, doubling up to the maximum.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How long a driver keeps retrying before it leaves the move to the next call about it.
const GIVE_UP_AFTER: Duration = Duration::from_secs(600);
/// A move whose record did not change for this long is taken over by a router asked about it.
pub(crate) const STALLED_AFTER: Duration = Duration::from_secs(3);

/// The orgs whose moves this router is driving now.
#[derive(Debug, Default)]
pub(crate) struct Movers {
    active: Mutex<HashSet<OrgId>>,
}

impl Movers {
    /// Marks `org` as driven here; false when it already is.
    fn claim(&self, org: &OrgId) -> bool {
        self.lock().insert(org.clone())
    }

    fn release(&self, org: &OrgId) {
        self.lock().remove(org);
    }

    pub(crate) fn is_driving(&self, org: &OrgId) -> bool {
        self.lock().contains(org)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<OrgId>> {
        self.active.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One staging pass at the target.
struct StagedCopy {
    copy_id: String,
    first: bool,
    records: Vec<(String, String)>,
    deletes: Vec<String>,
}

/// What one driver remembers between steps (a driver that takes a move over starts without).
#[derive(Default)]
struct DriverMemory {
    /// When this driver froze the source, for the write pause.
    frozen_at: Option<Instant>,
    write_pause_ms: Option<u64>,
    /// The copy this driver staged while the source still served: the frozen copy is staged
    /// as the difference from it, so the write pause does not grow with the org.
    first_copy: Option<(String, Vec<(String, String)>)>,
}

/// What a region answered to a move step.
#[derive(Debug)]
pub(crate) enum StepAnswer {
    Move(Box<OrgMove>),
    /// The source let go: it holds only the forwarding record.
    Forwarded,
    None,
}

/// The phase named in a record from the wire.
pub(crate) fn phase_of(record: &OrgMove) -> Option<MovePhase> {
    use MovePhase as P;
    [P::Reserved, P::Copying, P::Frozen, P::Switched, P::CleaningUp, P::Done, P::Aborted]
        .into_iter()
        .find(|p| p.as_str() == record.phase)
}

/// Whether a failed call may succeed if made again (the region was unreachable or busy),
/// rather than being the region's refusal.
fn is_transient(error: &RouterError) -> bool {
    matches!(
        error.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Aborted | Code::Internal
    )
}

/// Whether an image holds the org's own record (it does unless the org was deleted).
fn holds_org_record(image: &[(String, String)], org: &OrgId) -> bool {
    let key = format!("o/{org}");
    image.iter().any(|(k, _)| *k == key)
}

impl RouterApi {
    /// Calls `region`'s `MoveService` with `send` (any node; retried on another while safe:
    /// every move call is idempotent), within [`STEP_TIMEOUT`].
    async fn on_region<Req, Resp, F, Fut>(
        &self,
        region: Region,
        rpc: &'static str,
        request: Req,
        send: F,
    ) -> Result<Resp, RouterError>
    where
        Req: Clone,
        F: Fn(MoveServiceClient<NodeService>, tonic::Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let nodes = self.state.table.get(region)?;
        nodes.call(rpc, Deadline::after(STEP_TIMEOUT), request, true, |n: &Node| n.moves.clone(), send).await
    }

    /// Applies `step` to `org` in `region`.
    pub(crate) async fn move_step(
        &self,
        region: Region,
        org: &OrgId,
        step: MoveStep,
    ) -> Result<StepAnswer, RouterError> {
        let request = v1::ApplyMoveStepRequest {
            org_id: org.to_string(),
            step: serde_json::to_vec(&step)
                .map_err(|e| RouterError::InvalidArgument { field: "step", reason: e.to_string() })?,
        };
        let answer = self
            .on_region(region, "ApplyMoveStep", request, |mut node, r| async move { node.apply_move_step(r).await })
            .await?;
        Ok(match answer.state {
            Some(apply_move_step_response::State::Move(record)) => StepAnswer::Move(Box::new(record)),
            Some(apply_move_step_response::State::Forwarding(_)) => StepAnswer::Forwarded,
            _ => StepAnswer::None,
        })
    }

    /// What `region` records about `org`: its moves, its forwarding, its epoch if it lives there.
    pub(crate) async fn region_moves(&self, region: Region, org: &OrgId) -> Result<v1::ListMovesResponse, RouterError> {
        let request = v1::ListMovesRequest { org_id: org.to_string() };
        self.on_region(region, "ListMoves", request, |mut node, r| async move { node.list_moves(r).await }).await
    }

    /// The source's image of `org` for move `move_id`, every record, at one index.
    async fn export_image(
        &self,
        source: Region,
        org: &OrgId,
        move_id: &str,
    ) -> Result<Vec<(String, String)>, RouterError> {
        let request = v1::ExportOrgImageRequest { org_id: org.to_string(), move_id: move_id.to_string() };
        let mut stream = self
            .on_region(source, "ExportOrgImage", request, |mut node, r| async move { node.export_org_image(r).await })
            .await?;
        let mut records = Vec::new();
        let broken = |reason: String| RouterError::RegionUnavailable { region: source, reason };
        loop {
            let chunk = tokio::time::timeout(STEP_TIMEOUT, stream.next())
                .await
                .map_err(|_| broken("the org's image stalled".into()))?;
            let Some(chunk) = chunk else { return Err(broken("the org's image ended early".into())) };
            let chunk = chunk.map_err(|status| RouterError::NodeAnswer { region: source, status })?;
            records.extend(chunk.records.into_iter().map(|r| (r.key, r.value)));
            if chunk.last {
                if chunk.total_records != records.len() as u64 {
                    return Err(broken(format!(
                        "the org's image announced {} records and held {}",
                        chunk.total_records,
                        records.len()
                    )));
                }
                return Ok(records);
            }
        }
    }

    /// Stages `records` (and drops the staged `deletes`) at the target as copy `copy_id`, in
    /// bounded commands; `first` starts the copy anew.
    async fn stage(&self, target: Region, org: &OrgId, move_id: &str, copy: StagedCopy) -> Result<(), RouterError> {
        let StagedCopy { copy_id, first, records, deletes } = copy;
        let mut chunks: Vec<Vec<(String, String)>> = vec![Vec::new()];
        let mut bytes = 0;
        for record in records {
            let size = record.0.len() + record.1.len();
            if bytes + size > STAGE_CHUNK_BYTES && !chunks.last().is_some_and(Vec::is_empty) {
                chunks.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            chunks.last_mut().expect("one chunk at least").push(record);
        }
        let mut deletes = Some(deletes);
        for (i, chunk) in chunks.into_iter().enumerate() {
            let step = MoveStep::Stage {
                move_id: move_id.into(),
                copy_id: copy_id.clone(),
                first: first && i == 0,
                records: chunk,
                deletes: deletes.take().unwrap_or_default(),
            };
            self.move_step(target, org, step).await?;
        }
        Ok(())
    }

    /// Compacts every node of `region`, each on its own (not "any node"): each node's own
    /// files must forget the org. One at a time, the leader last: a node's store pauses while
    /// its files are rewritten.
    async fn compact_region(&self, region: Region) -> Result<(), RouterError> {
        let nodes = self.state.table.get(region)?;
        for node in nodes.leader_last() {
            let mut client = node.moves.clone();
            let mut request = tonic::Request::new(v1::CompactNodeRequest { region: region.to_string(), min_index: 0 });
            request.set_timeout(COMPACT_TIMEOUT);
            match tokio::time::timeout(COMPACT_TIMEOUT, client.compact_node(request)).await {
                Ok(Ok(_)) => {}
                Ok(Err(status)) => {
                    return Err(RouterError::RegionUnavailable {
                        region,
                        reason: format!("node {} did not compact: {}", node.endpoint, status.message()),
                    })
                }
                Err(_) => {
                    return Err(RouterError::RegionUnavailable {
                        region,
                        reason: format!("node {} did not compact within {COMPACT_TIMEOUT:?}", node.endpoint),
                    })
                }
            }
        }
        Ok(())
    }

    /// The target's record of move `move_id`, or None when it records another move (or none).
    async fn target_record(&self, target: Region, org: &OrgId, move_id: &str) -> Result<Option<OrgMove>, RouterError> {
        let moves = self.region_moves(target, org).await?;
        Ok(moves.moves.into_iter().find(|m| m.move_id == move_id && m.side == "incoming"))
    }

    /// Rolls the move back: the org was deleted at the source while it moved.
    async fn abort_deleted(
        &self,
        target: Region,
        org: &OrgId,
        move_id: &str,
    ) -> Result<Option<MovePhase>, RouterError> {
        let reason = "the org was deleted at the source during the move".to_string();
        self.move_step(target, org, MoveStep::AbortIn { move_id: move_id.into(), reason }).await?;
        Ok(None)
    }

    /// Starts driving move `record` in the background (with the caller's credentials), unless
    /// this router drives it already.
    pub(crate) fn spawn_driver(&self, record: OrgMove) {
        let Ok(org) = record.org_id.parse::<OrgId>() else { return };
        if !self.state.moves.claim(&org) {
            return;
        }
        let api = self.clone();
        let authorization = crate::credentials::caller_authorization();
        tokio::spawn(crate::credentials::with_authorization(authorization, async move {
            let span = tracing::info_span!("org_move", org = %org, move_id = %record.move_id, from = %record.source_region, to = %record.target_region);
            let outcome = tracing::Instrument::instrument(api.drive(&org, &record), span).await;
            api.state.moves.release(&org);
            match outcome {
                Ok(phase) => {
                    tracing::info!(org = %org, move_id = %record.move_id, phase = phase.as_str(), "move driver finished")
                }
                Err(e) => {
                    tracing::warn!(org = %org, move_id = %record.move_id, error = %e, "move driver stopped; the next call about the move resumes it")
                }
            }
        }));
    }

    /// Drives the move to its end, retrying transient failures for up to [`GIVE_UP_AFTER`].
    async fn drive(&self, org: &OrgId, record: &OrgMove) -> Result<MovePhase, RouterError> {
        let bad = |field: &'static str| RouterError::InvalidArgument { field, reason: "not a region".into() };
        let source: Region = record.source_region.parse().map_err(|_| bad("source_region"))?;
        let target: Region = record.target_region.parse().map_err(|_| bad("target_region"))?;
        let move_id = record.move_id.as_str();
        let started = Instant::now();
        let mut pause = RETRY_FIRST;
        let mut memory = DriverMemory::default();
        loop {
            let step = self.drive_once(org, (source, target), move_id, &mut memory).await;
            match step {
                Ok(Some(end)) => return Ok(end),
                Ok(None) => pause = RETRY_FIRST,
                Err(e) if is_transient(&e) && started.elapsed() < GIVE_UP_AFTER => {
                    tracing::debug!(error = %e, "move step failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_MAX);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One step of the loop in the module docs; `Some(phase)` once the move has ended.
    async fn drive_once(
        &self,
        org: &OrgId,
        (source, target): (Region, Region),
        move_id: &str,
        memory: &mut DriverMemory,
    ) -> Result<Option<MovePhase>, RouterError> {
        let Some(record) = self.target_record(target, org, move_id).await? else {
            return Err(RouterError::InvalidArgument {
                field: "move_id",
                reason: format!("region {target} has no move {move_id}"),
            });
        };
        let phase = phase_of(&record).unwrap_or(MovePhase::Aborted);
        tracing::debug!(phase = phase.as_str(), "move step");
        let id = || move_id.to_string();
        match phase {
            MovePhase::Reserved => {
                let began = self.move_step(source, org, MoveStep::BeginOut { move_id: id(), target }).await;
                let from_epoch = match began {
                    Ok(StepAnswer::Move(out)) => out.from_epoch,
                    Ok(_) => {
                        return Err(RouterError::RegionUnavailable {
                            region: source,
                            reason: "the source answered no record".into(),
                        })
                    }
                    Err(e) if is_transient(&e) => return Err(e),
                    Err(refused) => {
                        // The source cannot give the org away: roll back.
                        let reason = format!("the source region {source} refused: {refused}");
                        self.move_step(target, org, MoveStep::AbortIn { move_id: id(), reason }).await?;
                        return Ok(None);
                    }
                };
                let note = MoveNote { from_epoch: Some(from_epoch), write_pause_ms: None };
                self.move_step(
                    target,
                    org,
                    MoveStep::Advance { move_id: id(), from: MovePhase::Reserved, to: MovePhase::Copying, note },
                )
                .await?;
            }
            MovePhase::Copying => {
                let image = self.export_image(source, org, move_id).await?;
                if !holds_org_record(&image, org) {
                    return self.abort_deleted(target, org, move_id).await;
                }
                let copy_id = uuid::Uuid::new_v4().simple().to_string();
                let copy =
                    StagedCopy { copy_id: copy_id.clone(), first: true, records: image.clone(), deletes: Vec::new() };
                self.stage(target, org, move_id, copy).await?;
                memory.first_copy = Some((copy_id, image));
                memory.frozen_at = Some(Instant::now());
                self.move_step(source, org, MoveStep::Freeze { move_id: id() }).await?;
                let note = MoveNote::default();
                self.move_step(
                    target,
                    org,
                    MoveStep::Advance { move_id: id(), from: MovePhase::Copying, to: MovePhase::Frozen, note },
                )
                .await?;
            }
            MovePhase::Frozen => {
                let frozen_since = *memory.frozen_at.get_or_insert_with(Instant::now);
                let image = self.export_image(source, org, move_id).await?;
                if !holds_org_record(&image, org) {
                    return self.abort_deleted(target, org, move_id).await;
                }
                let records = image.len() as u64;
                // The difference from this driver's first copy when it is the one staged;
                // otherwise (another driver's copy, or none) the whole frozen copy.
                let copy = match memory.first_copy.take() {
                    Some((copy_id, first)) if record.copy_id == copy_id => {
                        let (writes, deletes) = image_delta(&first, &image);
                        tracing::debug!(
                            writes = writes.len(),
                            deletes = deletes.len(),
                            records,
                            "staging the frozen copy as a delta"
                        );
                        StagedCopy { copy_id, first: false, records: writes, deletes }
                    }
                    _ => StagedCopy {
                        copy_id: uuid::Uuid::new_v4().simple().to_string(),
                        first: true,
                        records: image,
                        deletes: Vec::new(),
                    },
                };
                let copy_id = copy.copy_id.clone();
                self.stage(target, org, move_id, copy).await?;
                let to_epoch = record.from_epoch + 1;
                self.move_step(target, org, MoveStep::Activate { move_id: id(), copy_id, records, to_epoch }).await?;
                memory.write_pause_ms = Some(frozen_since.elapsed().as_millis() as u64);
                tracing::info!(write_pause_ms = ?memory.write_pause_ms, to_epoch, "org switched to its new region");
            }
            MovePhase::Switched => {
                self.move_step(source, org, MoveStep::FinishOut { move_id: id(), epoch: record.to_epoch }).await?;
                let note = MoveNote { from_epoch: None, write_pause_ms: memory.write_pause_ms };
                self.move_step(
                    target,
                    org,
                    MoveStep::Advance { move_id: id(), from: MovePhase::Switched, to: MovePhase::CleaningUp, note },
                )
                .await?;
            }
            MovePhase::CleaningUp => {
                self.compact_region(source).await?;
                let note = MoveNote::default();
                self.move_step(
                    target,
                    org,
                    MoveStep::Advance { move_id: id(), from: MovePhase::CleaningUp, to: MovePhase::Done, note },
                )
                .await?;
            }
            MovePhase::Done => return Ok(Some(MovePhase::Done)),
            MovePhase::Aborted => {
                // Unfreeze the source (nothing to do when it never began or already did).
                self.move_step(source, org, MoveStep::AbortOut { move_id: id() }).await?;
                return Ok(Some(MovePhase::Aborted));
            }
        }
        Ok(None)
    }
}
