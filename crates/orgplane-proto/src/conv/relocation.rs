//! Moves and forwardings on the wire, and the metadata a moved org's old region answers with.

use orgplane_model::relocation::{Forwarding, MoveRecord, MoveSide, MoveState};

use crate::v1;

/// Metadata of an answer about a moved org: the region it lives in now.
pub const MOVED_TO_HEADER: &str = "x-orgplane-moved-to";
/// Metadata of an answer about an org that is moving: the region it is moving to. The answer
/// (UNAVAILABLE) is the region's own, not a failure to reach it: retry shortly, same place.
pub const MOVING_TO_HEADER: &str = "x-orgplane-moving-to";
/// Metadata of an org's ownership epoch: in a moved org's answer, its epoch in the new region;
/// on a routed request, the epoch the router believes the org has where it sends it.
pub const ORG_EPOCH_HEADER: &str = "x-orgplane-org-epoch";

pub fn move_to_wire(record: &MoveRecord) -> v1::OrgMove {
    v1::OrgMove {
        move_id: record.move_id.clone(),
        org_id: record.org_id.to_string(),
        source_region: record.source.to_string(),
        target_region: record.target.to_string(),
        phase: record.phase.as_str().to_string(),
        from_epoch: record.from_epoch,
        to_epoch: record.to_epoch,
        bytes_copied: record.bytes_copied,
        records: record.staged_records,
        write_pause_ms: record.write_pause_ms,
        start_time_ms: record.started_at_ms,
        update_time_ms: record.updated_at_ms,
        reason: record.reason.clone().unwrap_or_default(),
        copy_id: record.copy_id.clone().unwrap_or_default(),
        side: match record.side {
            MoveSide::Incoming => "incoming",
            MoveSide::Outgoing => "outgoing",
        }
        .to_string(),
    }
}

pub fn forwarding_to_wire(forwarding: &Forwarding) -> v1::Forwarding {
    v1::Forwarding {
        org_id: forwarding.org_id.to_string(),
        region: forwarding.region.to_string(),
        epoch: forwarding.epoch,
        move_id: forwarding.move_id.clone(),
        moved_time_ms: forwarding.moved_at_ms,
    }
}

pub fn move_state_to_wire(state: &MoveState) -> v1::ApplyMoveStepResponse {
    use v1::apply_move_step_response::State;
    let state = match state {
        MoveState::Record(record) => State::Move(move_to_wire(record)),
        MoveState::Forwarded(forwarding) => State::Forwarding(forwarding_to_wire(forwarding)),
        MoveState::None => State::None(true),
    };
    v1::ApplyMoveStepResponse { state: Some(state) }
}
