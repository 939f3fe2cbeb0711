//! The fake's `MoveService`: the four calls a router serves. A move lives only in the fake's
//! memory and takes one step per `GetMoveStatus` asked about its org (reserved, copying, frozen,
//! switched, cleaning_up, done), so a test that polls sees every phase in order without waiting
//! on a clock; at the switch the org's region and epoch change. [`MoveScript`] makes moves
//! abort or never progress. The node-only calls answer UNIMPLEMENTED.

use orgplane_model::relocation::MovePhase;
use orgplane_model::Region;
use orgplane_proto::v1;
use orgplane_proto::v1::move_service_server::MoveService;
use tonic::{Request, Response, Status};

use super::{leave, now_ms, parse_org_id, parse_region, FakeService, FakeState};

/// The phases a completing move goes through, in order.
const PHASES: [MovePhase; 6] = [
    MovePhase::Reserved,
    MovePhase::Copying,
    MovePhase::Frozen,
    MovePhase::Switched,
    MovePhase::CleaningUp,
    MovePhase::Done,
];

/// The bytes the fake pretends each record of a copy takes.
const BYTES_PER_RECORD: u64 = 120;

/// How the fake's moves go. Each move keeps the script in force when it started.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MoveScript {
    /// Through every phase to done, one per `GetMoveStatus`.
    #[default]
    Complete,
    /// Like `Complete` until `after` (a phase before the switch), then aborted with `reason`.
    AbortAfter { after: MovePhase, reason: String },
    /// Stays reserved for ever.
    Stall,
}

/// A move as the fake keeps it.
#[derive(Debug, Clone)]
pub(super) struct FakeMove {
    pub(super) record: v1::OrgMove,
    phase: MovePhase,
    script: MoveScript,
}

impl FakeMove {
    /// Takes the next step of the script; at the switch the org moves.
    fn step(&mut self, org: &mut v1::Org, records: u64) {
        if self.phase.is_final() || self.script == MoveScript::Stall {
            return;
        }
        if let MoveScript::AbortAfter { after, reason } = &self.script {
            if self.phase == *after {
                self.phase = MovePhase::Aborted;
                self.record.reason = reason.clone();
                self.sync();
                return;
            }
        }
        let next = PHASES.iter().position(|p| *p == self.phase).map_or(MovePhase::Done, |i| PHASES[i + 1]);
        self.phase = next;
        match next {
            MovePhase::Copying | MovePhase::Frozen => {
                self.record.records = records;
                self.record.bytes_copied += records * BYTES_PER_RECORD;
            }
            MovePhase::Switched => {
                self.record.write_pause_ms = Some(42);
                org.region = self.record.target_region.clone();
                org.epoch = self.record.to_epoch;
            }
            _ => {}
        }
        self.sync();
    }

    fn sync(&mut self) {
        self.record.phase = self.phase.as_str().to_string();
        self.record.update_time_ms = now_ms().max(self.record.start_time_ms + 1);
    }
}

impl FakeState {
    /// The org's own records, as a copy would count them: the org and its memberships.
    fn org_records(&self, org_id: &str) -> u64 {
        1 + self.members.keys().filter(|(org, _)| org == org_id).count() as u64
    }

    fn start_move(&mut self, message: &v1::MoveOrgRequest) -> Result<v1::OrgMove, Status> {
        let org = self.org(&message.org_id)?.clone();
        let target = parse_region(&message.to_region)?;
        if org.region == target.as_str() {
            return Err(Status::invalid_argument(format!("org {} is in region {target} already", org.id)));
        }
        if let Some(running) = self.moves.get(&org.id).filter(|m| !m.phase.is_final()) {
            return Err(Status::failed_precondition(format!(
                "org {} is moving already (move {}, {})",
                org.id, running.record.move_id, running.record.phase
            )));
        }
        let now = now_ms();
        let mut record = v1::OrgMove {
            move_id: String::new(),
            org_id: org.id.clone(),
            source_region: org.region.clone(),
            target_region: target.to_string(),
            phase: MovePhase::Reserved.as_str().to_string(),
            from_epoch: org.epoch,
            to_epoch: org.epoch + 1,
            start_time_ms: now,
            update_time_ms: now,
            side: "incoming".to_string(),
            ..v1::OrgMove::default()
        };
        if message.dry_run {
            return Ok(record);
        }
        self.moves_started += 1;
        record.move_id = format!("move-{}", self.moves_started);
        let script = self.move_script.clone();
        self.moves.insert(org.id, FakeMove { record: record.clone(), phase: MovePhase::Reserved, script });
        Ok(record)
    }

    fn advance_move(&mut self, org_id: &str) -> Result<v1::GetMoveStatusResponse, Status> {
        let id = parse_org_id(org_id)?.to_string();
        let records = self.org_records(&id);
        let (Some(org), Some(fake_move)) = (self.orgs.get_mut(&id), self.moves.get_mut(&id)) else {
            return Err(Status::not_found(format!("org {id} never moved")));
        };
        fake_move.step(org, records);
        Ok(v1::GetMoveStatusResponse {
            r#move: Some(fake_move.record.clone()),
            home_region: org.region.clone(),
            epoch: org.epoch,
        })
    }

    fn abort(&mut self, message: &v1::AbortMoveRequest) -> Result<v1::OrgMove, Status> {
        let id = parse_org_id(&message.org_id)?.to_string();
        let fake_move = self.moves.get_mut(&id).ok_or_else(|| Status::not_found(format!("org {id} never moved")))?;
        if fake_move.phase.is_final() {
            return Err(Status::failed_precondition(format!("org {id} has no move in progress")));
        }
        if fake_move.phase.is_switched() {
            return Err(Status::failed_precondition(format!(
                "move {} has switched; it can only complete",
                fake_move.record.move_id
            )));
        }
        fake_move.phase = MovePhase::Aborted;
        fake_move.record.reason = message.reason.clone();
        fake_move.sync();
        Ok(fake_move.record.clone())
    }

    /// One node per region: the home region holds the records, a region the org left holds the
    /// forwarding; a region whose user-list result is set to fail did not answer.
    fn residency(&self, org_id: &str) -> Result<v1::GetResidencyResponse, Status> {
        let org = self.org(org_id)?.clone();
        let records = self.org_records(&org.id);
        let latest = self.moves.get(&org.id).map(|m| (&m.record, m.phase));
        let nodes = Region::ALL
            .iter()
            .map(|region| {
                let mut node = v1::NodeResidency { region: region.to_string(), node_id: 1, ..Default::default() };
                if let Some((state, message)) = self.region_results.get(region) {
                    if *state != v1::RegionState::Ok {
                        node.error = message.clone();
                        return node;
                    }
                }
                if org.region == region.as_str() {
                    node.state_records = records;
                    node.log_entries = records + 1;
                    node.files = vec![v1::FileHoldings { path: "db/conf".into(), occurrences: records }];
                }
                if let Some((record, phase)) = latest {
                    let left_here = record.source_region == region.as_str() && phase.is_switched();
                    node.move_record =
                        record.source_region == region.as_str() || record.target_region == region.as_str();
                    if left_here {
                        node.forwarding = true;
                        node.forwarding_region = record.target_region.clone();
                        node.forwarding_epoch = record.to_epoch;
                    }
                }
                node
            })
            .collect();
        Ok(v1::GetResidencyResponse { org_id: org.id, home_region: org.region, epoch: org.epoch, nodes })
    }
}

fn router_only() -> Status {
    Status::unimplemented("the fake serves only the calls of MoveService that a router serves")
}

#[tonic::async_trait]
impl MoveService for FakeService {
    async fn move_org(&self, request: Request<v1::MoveOrgRequest>) -> Result<Response<v1::MoveOrgResponse>, Status> {
        let exit = self.enter("MoveOrg", "", request.metadata()).await?;
        let message = request.into_inner();
        let result = self.lock().start_move(&message);
        leave(exit, result.map(|started| v1::MoveOrgResponse { r#move: Some(started) }))
    }

    async fn get_move_status(
        &self,
        request: Request<v1::GetMoveStatusRequest>,
    ) -> Result<Response<v1::GetMoveStatusResponse>, Status> {
        let exit = self.enter("GetMoveStatus", "", request.metadata()).await?;
        let result = self.lock().advance_move(&request.get_ref().org_id);
        leave(exit, result)
    }

    async fn abort_move(
        &self,
        request: Request<v1::AbortMoveRequest>,
    ) -> Result<Response<v1::AbortMoveResponse>, Status> {
        let exit = self.enter("AbortMove", "", request.metadata()).await?;
        let result = self.lock().abort(request.get_ref());
        leave(exit, result.map(|aborted| v1::AbortMoveResponse { r#move: Some(aborted) }))
    }

    async fn get_residency(
        &self,
        request: Request<v1::GetResidencyRequest>,
    ) -> Result<Response<v1::GetResidencyResponse>, Status> {
        let exit = self.enter("GetResidency", "", request.metadata()).await?;
        let result = self.lock().residency(&request.get_ref().org_id);
        leave(exit, result)
    }

    async fn apply_move_step(
        &self,
        _request: Request<v1::ApplyMoveStepRequest>,
    ) -> Result<Response<v1::ApplyMoveStepResponse>, Status> {
        Err(router_only())
    }

    async fn list_moves(
        &self,
        _request: Request<v1::ListMovesRequest>,
    ) -> Result<Response<v1::ListMovesResponse>, Status> {
        Err(router_only())
    }

    type ExportOrgImageStream = tokio_stream::Empty<Result<v1::OrgImageChunk, Status>>;

    async fn export_org_image(
        &self,
        _request: Request<v1::ExportOrgImageRequest>,
    ) -> Result<Response<Self::ExportOrgImageStream>, Status> {
        Err(router_only())
    }

    async fn get_node_residency(
        &self,
        _request: Request<v1::GetNodeResidencyRequest>,
    ) -> Result<Response<v1::GetNodeResidencyResponse>, Status> {
        Err(router_only())
    }

    async fn compact_node(
        &self,
        _request: Request<v1::CompactNodeRequest>,
    ) -> Result<Response<v1::CompactNodeResponse>, Status> {
        Err(router_only())
    }
}
