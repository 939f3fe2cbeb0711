//! Moving an org to another region: the records each side keeps in its own Raft state, and the
//! steps that change them.
//!
//! A move is a fenced workflow driven from outside the regions (by a router) with its state in
//! Raft on both sides, so any process can crash and another one resumes from what the regions
//! recorded:
//!
//! | target (`mv/{org}`, [`MoveSide::Incoming`]) | source                                          |
//! |---------------------------------------------|-------------------------------------------------|
//! | `Reserve`: [`MovePhase::Reserved`]          |                                                 |
//! |                                             | `BeginOut`: `mv/{org}` Outgoing, `Copying`      |
//! | `Advance` to `Copying`; `Stage` the copy    | (serves as before; the copy is read at an index)|
//! |                                             | `Freeze`: `Frozen`, every request for the org is refused as moving |
//! | `Advance` to `Frozen`; `Stage` the whole frozen copy again; `Activate`: the org is live here at epoch e+1 (`Switched`) | |
//! |                                             | `FinishOut`: the org's records go, `fw/{org}` (moved to target at e+1) stays |
//! | `Advance` to `CleaningUp`, then `Done`      | (every node snapshots, purges its log, rewrites its files) |
//!
//! Until `Activate` the move can be aborted (`AbortIn`, then `AbortOut` unfreezes the source);
//! from then on it can only complete. Every step is idempotent (a repeated step answers the
//! record as it is), steps carry the move's id, and a staged copy carries its own id, so two
//! drivers racing cannot mix copies: `Activate` names the copy it completes.

use serde::{Deserialize, Serialize};

use crate::id::OrgId;
use crate::region::Region;

/// Which side of a move a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveSide {
    /// Kept by the region the org leaves.
    Outgoing,
    /// Kept by the region the org moves to: the move's own record, with its progress.
    Incoming,
}

/// Where a move stands, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MovePhase {
    /// The target reserved the org; the source knows nothing yet.
    Reserved,
    /// The source knows; a copy taken while it still serves is being staged at the target.
    Copying,
    /// The source refuses every request for the org; the frozen copy is being staged.
    Frozen,
    /// The target serves the org at the new epoch; the source still has to let go.
    Switched,
    /// The source holds only the forwarding record; its nodes are purging their files.
    CleaningUp,
    /// Finished.
    Done,
    /// Rolled back before the switch: the source serves the org as before.
    Aborted,
}

impl MovePhase {
    /// The lowercase name used in statuses and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            MovePhase::Reserved => "reserved",
            MovePhase::Copying => "copying",
            MovePhase::Frozen => "frozen",
            MovePhase::Switched => "switched",
            MovePhase::CleaningUp => "cleaning_up",
            MovePhase::Done => "done",
            MovePhase::Aborted => "aborted",
        }
    }

    /// Whether the move has ended, one way or the other.
    pub fn is_final(self) -> bool {
        matches!(self, MovePhase::Done | MovePhase::Aborted)
    }

    /// Whether the org is live at the target from this phase on (no abort any more).
    pub fn is_switched(self) -> bool {
        matches!(self, MovePhase::Switched | MovePhase::CleaningUp | MovePhase::Done)
    }
}

/// A move as one side records it (`mv/{org_id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveRecord {
    pub move_id: String,
    pub org_id: OrgId,
    pub source: Region,
    pub target: Region,
    pub side: MoveSide,
    pub phase: MovePhase,
    /// The org's epoch at the source (0 until the source told).
    pub from_epoch: u64,
    /// The org's epoch at the target once switched (`from_epoch + 1`).
    pub to_epoch: u64,
    /// Target only: the copy being staged, its records and bytes so far.
    pub copy_id: Option<String>,
    pub staged_records: u64,
    pub staged_bytes: u64,
    /// Target only: every byte staged over all copies.
    pub bytes_copied: u64,
    /// Target only: from the freeze at the source to the switch at the target, as the driver
    /// measured it.
    pub write_pause_ms: Option<u64>,
    pub started_at_ms: u64,
    pub updated_at_ms: u64,
    /// Why it was aborted.
    pub reason: Option<String>,
}

impl MoveRecord {
    /// A move's record as its side begins it: reserved at the target (the source's epoch not
    /// known yet, `from_epoch` 0), copying at the source (at the org's `from_epoch`).
    pub fn begun(
        move_id: &str,
        org_id: &OrgId,
        (source, target): (Region, Region),
        side: MoveSide,
        from_epoch: u64,
        now_ms: u64,
    ) -> MoveRecord {
        let phase = match side {
            MoveSide::Incoming => MovePhase::Reserved,
            MoveSide::Outgoing => MovePhase::Copying,
        };
        MoveRecord {
            move_id: move_id.to_string(),
            org_id: org_id.clone(),
            source,
            target,
            side,
            phase,
            from_epoch,
            to_epoch: if from_epoch == 0 { 0 } else { from_epoch + 1 },
            copy_id: None,
            staged_records: 0,
            staged_bytes: 0,
            bytes_copied: 0,
            write_pause_ms: None,
            started_at_ms: now_ms,
            updated_at_ms: now_ms,
            reason: None,
        }
    }
}

/// What the old region keeps of a moved org (`fw/{org_id}`): where it went, at what epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forwarding {
    pub org_id: OrgId,
    pub region: Region,
    pub epoch: u64,
    pub move_id: String,
    pub moved_at_ms: u64,
}

/// What a driver measured or learned, recorded at the target by [`MoveStep::Advance`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveNote {
    /// The org's epoch at the source, learned from `BeginOut`.
    pub from_epoch: Option<u64>,
    /// The write pause, measured around the freeze and the switch.
    pub write_pause_ms: Option<u64>,
}

/// One step of a move, applied by one side (see the module docs for the order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MoveStep {
    /// Target (`target`, the region applying it): reserve the org for a move from `source`.
    Reserve { move_id: String, source: Region, target: Region },
    /// Target: record the next phase (a compare-and-set from `from`), with what was learned.
    Advance { move_id: String, from: MovePhase, to: MovePhase, note: MoveNote },
    /// Target: stage records of copy `copy_id`, and drop the staged records at `deletes`;
    /// `first` starts the copy anew (dropping any earlier staged copy). A frozen copy is staged
    /// as the difference from the copy taken while the source still served, when the driver
    /// still has that one.
    Stage {
        move_id: String,
        copy_id: String,
        first: bool,
        records: Vec<(String, String)>,
        #[serde(default)]
        deletes: Vec<String>,
    },
    /// Target: the staged copy `copy_id`, which must hold exactly `records` records, becomes
    /// the live org at epoch `to_epoch`.
    Activate { move_id: String, copy_id: String, records: u64, to_epoch: u64 },
    /// Target: roll back (refused once switched).
    AbortIn { move_id: String, reason: String },
    /// Source: the org is moving to `target`; refused if it is already moving.
    BeginOut { move_id: String, target: Region },
    /// Source: refuse every request for the org from now on.
    Freeze { move_id: String },
    /// Source: the target serves the org at `epoch`; drop every record of it but the forwarding.
    FinishOut { move_id: String, epoch: u64 },
    /// Source: roll back (unfreeze); refused once finished.
    AbortOut { move_id: String },
}

impl MoveStep {
    /// The move this step belongs to.
    pub fn move_id(&self) -> &str {
        match self {
            MoveStep::Reserve { move_id, .. }
            | MoveStep::Advance { move_id, .. }
            | MoveStep::Stage { move_id, .. }
            | MoveStep::Activate { move_id, .. }
            | MoveStep::AbortIn { move_id, .. }
            | MoveStep::BeginOut { move_id, .. }
            | MoveStep::Freeze { move_id }
            | MoveStep::FinishOut { move_id, .. }
            | MoveStep::AbortOut { move_id } => move_id,
        }
    }

    /// A short stable name, for logs and refusals.
    pub fn name(&self) -> &'static str {
        match self {
            MoveStep::Reserve { .. } => "reserve",
            MoveStep::Advance { .. } => "advance",
            MoveStep::Stage { .. } => "stage",
            MoveStep::Activate { .. } => "activate",
            MoveStep::AbortIn { .. } => "abort_in",
            MoveStep::BeginOut { .. } => "begin_out",
            MoveStep::Freeze { .. } => "freeze",
            MoveStep::FinishOut { .. } => "finish_out",
            MoveStep::AbortOut { .. } => "abort_out",
        }
    }
}

/// What turns the staged copy `old` into `new`: the records to write (new or changed) and the
/// keys to delete. Both images are in key order (as [`crate::state::org_image`] gives them, up
/// to its request records, which are sorted here too).
pub fn image_delta(old: &[(String, String)], new: &[(String, String)]) -> (Vec<(String, String)>, Vec<String>) {
    let old: std::collections::BTreeMap<&str, &str> = old.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let new_keys: std::collections::BTreeSet<&str> = new.iter().map(|(k, _)| k.as_str()).collect();
    let writes = new.iter().filter(|(k, v)| old.get(k.as_str()) != Some(&v.as_str())).cloned().collect();
    let deletes = old.keys().filter(|k| !new_keys.contains(*k)).map(|k| k.to_string()).collect();
    (writes, deletes)
}

/// What a step answers: the side's record after it, or the forwarding once the source let go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MoveState {
    Record(MoveRecord),
    Forwarded(Forwarding),
    /// No move recorded (an abort of a move that never began here).
    None,
}
