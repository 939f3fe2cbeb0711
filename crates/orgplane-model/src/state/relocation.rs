//! Moving an org between regions, in the state: the placement check every request about an org
//! passes, the org's image (every record of it, for the copy), and the apply of each
//! [`MoveStep`] (see [`crate::relocation`] for the workflow).

use super::{decode, encode, keys, load, QueryError, RequestRecord, StateRead, StateWrite, StorageFault};
use crate::command::{Command, CommandOutcome};
use crate::error::DomainError;
use crate::id::OrgId;
use crate::org::{Member, Org};
use crate::policy::{self, Access};
use crate::region::Region;
use crate::relocation::{Forwarding, MoveNote, MovePhase, MoveRecord, MoveSide, MoveState, MoveStep};

/// One record of an org's image: its key and its value, both UTF-8 (keys are built from
/// validated names, values are JSON).
pub type ImageRecord = (String, String);

/// Refuses requests about an org this region no longer serves: moved away (the forwarding
/// says where, at what epoch), or frozen by a move in progress (retry shortly). Every org
/// access passes here first ([`crate::policy`]), before any membership check.
pub fn check_served_here(state: &impl StateRead, org: &OrgId) -> Result<(), QueryError> {
    if let Some(forwarding) = get_forwarding(state, org)? {
        return Err(DomainError::OrgMoved {
            org_id: org.to_string(),
            region: forwarding.region.to_string(),
            epoch: forwarding.epoch,
        }
        .into());
    }
    match get_move(state, org)? {
        Some(mv) if mv.side == MoveSide::Outgoing && mv.phase == MovePhase::Frozen => {
            Err(DomainError::OrgMoving { org_id: org.to_string(), region: mv.target.to_string() }.into())
        }
        // Being moved here: its records are staged in place, but it does not live here yet.
        Some(mv) if mv.side == MoveSide::Incoming && !mv.phase.is_switched() && !mv.phase.is_final() => {
            Err(DomainError::org_not_found(org).into())
        }
        _ => Ok(()),
    }
}

/// The move of `org` this region records, if any.
pub fn get_move(state: &impl StateRead, org: &OrgId) -> Result<Option<MoveRecord>, StorageFault> {
    load(state, &keys::org_move(org))
}

/// Where `org` went, if it moved away from this region.
pub fn get_forwarding(state: &impl StateRead, org: &OrgId) -> Result<Option<Forwarding>, StorageFault> {
    load(state, &keys::forwarding(org))
}

/// Every move this region records (in flight or finished, either side), in org id order.
pub fn list_moves(state: &impl StateRead) -> Result<Vec<MoveRecord>, StorageFault> {
    Ok(super::scan_all(state, b"mv/")?.into_iter().map(|(_, record)| record).collect())
}

/// The prefixes under which the org's own records live (the exact keys `o/` and `an/` are
/// prefixes of nothing else: org ids have one length).
fn org_prefixes(org: &OrgId) -> Vec<Vec<u8>> {
    vec![
        keys::org_key(org),
        keys::member_prefix(org),
        keys::custom_role_prefix(org),
        keys::invitation_prefix(org),
        keys::integration_prefix(org),
        keys::phone_number_prefix(org),
        keys::app_prefix(org),
        keys::app_binding_org_prefix(org),
        keys::audit_prefix(org),
        keys::audit_seq(org),
    ]
}

/// Every record of the org: the org, members, roles, invitations, resources (secrets
/// included), apps and their bindings, the audit log, and the remembered answers to requests
/// about it with their time index, so retries stay answered after the move. The index of a
/// user's orgs (`u/`) is not in it: the target derives it from the members when it switches.
pub fn org_image(state: &impl StateRead, org: &OrgId) -> Result<Vec<ImageRecord>, StorageFault> {
    let mut pairs = Vec::new();
    for prefix in org_prefixes(org) {
        pairs.extend(super::scan_raw(state, &prefix)?);
    }
    let org_text = org.to_string();
    for (key, value) in super::scan_raw(state, b"r/")? {
        let record: RequestRecord = decode(&key, &value)?;
        if record.org_id == org_text {
            let id = String::from_utf8_lossy(&key[2..]).into_owned();
            pairs.push((keys::request_time(record.issued_at_ms, &id), Vec::new()));
            pairs.push((key, value));
        }
    }
    pairs
        .into_iter()
        .map(|(key, value)| {
            let text = |bytes: Vec<u8>| {
                String::from_utf8(bytes).map_err(|e| StorageFault(format!("a record of org {org} is not UTF-8: {e}")))
            };
            Ok((text(key)?, text(value)?))
        })
        .collect()
}

/// What a region's state holds of an org, for the residency report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holdings {
    /// The org's own records (see [`org_image`]), its entries in users' indexes, and any
    /// staged copy.
    pub records: u64,
    pub forwarding: Option<Forwarding>,
    pub move_record: Option<MoveRecord>,
}

/// What the state holds of `org`. Scans every user's index (an org that left has no members
/// here to find its entries by), so it is for reports, not for a hot path.
pub fn holdings(state: &impl StateRead, org: &OrgId) -> Result<Holdings, StorageFault> {
    let suffix = format!("/{org}");
    let index_entries =
        super::scan_raw(state, b"u/")?.iter().filter(|(key, _)| key.ends_with(suffix.as_bytes())).count() as u64;
    let staged = u64::from(state.get(&keys::staged_org(org))?.is_some());
    Ok(Holdings {
        records: org_image(state, org)?.len() as u64 + index_entries + staged,
        forwarding: get_forwarding(state, org)?,
        move_record: get_move(state, org)?,
    })
}

/// Whether `key` may be one of `org`'s records in an image (what a stage accepts).
fn belongs_to(org: &OrgId, key: &str) -> bool {
    let bytes = key.as_bytes();
    org_prefixes(org).iter().any(|prefix| bytes.starts_with(prefix)) || key.starts_with("r/") || key.starts_with("t/")
}

/// Deletes every record of the org and its entries in its members' user indexes.
fn purge_org(state: &mut impl StateWrite, org: &OrgId) -> Result<u64, StorageFault> {
    let image = org_image(state, org)?;
    for (key, value) in &image {
        if key.starts_with("m/") {
            let member: Member = decode(key.as_bytes(), value.as_bytes())?;
            state.delete(keys::user_org(&member.user_id, org));
        }
    }
    let removed = image.len() as u64;
    for (key, _) in image {
        state.delete(key.into_bytes());
    }
    Ok(removed)
}

/// Deletes the staged copy of the org (in place, with its members' index entries).
fn drop_staged(state: &mut impl StateWrite, org: &OrgId) -> Result<(), StorageFault> {
    purge_org(state, org)?;
    state.delete(keys::staged_org(org));
    Ok(())
}

/// Where a record of a moving org is staged: the org record aside, the rest in place.
fn staged_key(org: &OrgId, key: &str) -> Vec<u8> {
    if key.as_bytes() == keys::org_key(org) {
        keys::staged_org(org)
    } else {
        key.as_bytes().to_vec()
    }
}

/// Stages one record; a membership with its entry in the user's index. Returns whether the
/// key was new.
fn put_staged(state: &mut impl StateWrite, org: &OrgId, key: &str, value: &str) -> Result<bool, StorageFault> {
    let at = staged_key(org, key);
    let new = state.get(&at)?.is_none();
    if key.starts_with("m/") {
        super::orgs::put_member(state, &decode::<Member>(key.as_bytes(), value.as_bytes())?);
    } else {
        state.put(at, value.as_bytes().to_vec());
    }
    Ok(new)
}

/// Drops one staged record (a membership with its index entry). Returns whether it was there.
fn delete_staged(state: &mut impl StateWrite, org: &OrgId, key: &str) -> Result<bool, StorageFault> {
    let at = staged_key(org, key);
    let Some(value) = state.get(&at)? else { return Ok(false) };
    if key.starts_with("m/") {
        let member: Member = decode(key.as_bytes(), &value)?;
        state.delete(keys::user_org(&member.user_id, org));
    }
    state.delete(at);
    Ok(true)
}

/// Applies one move step. Only a platform admin (or the system) may; nothing else about the
/// org is checked by the policy (the target does not hold it yet, the source may be frozen).
pub(super) fn apply_step(
    state: &mut impl StateWrite,
    cmd: &Command,
    org: &OrgId,
    step: &MoveStep,
) -> Result<CommandOutcome, QueryError> {
    policy::authority(state, &cmd.actor, None, Access::ProvisionOrg, "relocate_org")?;
    let now = cmd.issued_at_ms;
    let state_after = match step {
        MoveStep::Reserve { move_id, source, target } => reserve(state, org, move_id, *source, *target, now)?,
        MoveStep::Advance { move_id, from, to, note } => advance(state, org, move_id, *from, *to, note, now)?,
        MoveStep::Stage { move_id, copy_id, first, records, deletes } => {
            stage(state, org, move_id, copy_id, *first, (records, deletes), now)?
        }
        MoveStep::Activate { move_id, copy_id, records, to_epoch } => {
            let was_switched = get_move(state, org)?.is_some_and(|m| m.phase.is_switched());
            let after = activate(state, org, move_id, copy_id, *records, *to_epoch, now)?;
            if !was_switched {
                // The org's own audit log (copied along) records that it arrived here.
                let outcome = Ok(CommandOutcome::Move(after.clone()));
                super::audit_log::append(state, cmd, &outcome)?;
            }
            after
        }
        MoveStep::AbortIn { move_id, reason } => abort_in(state, org, move_id, reason, now)?,
        MoveStep::BeginOut { move_id, target } => begin_out(state, org, move_id, *target, now)?,
        MoveStep::Freeze { move_id } => freeze(state, org, move_id, now)?,
        MoveStep::FinishOut { move_id, epoch } => finish_out(state, org, move_id, *epoch, now)?,
        MoveStep::AbortOut { move_id } => abort_out(state, org, move_id)?,
    };
    Ok(CommandOutcome::Move(state_after))
}

fn refuse(reason: String) -> QueryError {
    DomainError::failed_precondition(reason).into()
}

fn put_move(state: &mut impl StateWrite, record: &MoveRecord) -> MoveState {
    state.put(keys::org_move(&record.org_id), encode(record));
    MoveState::Record(record.clone())
}

/// The record of move `move_id` on `side`, or a refusal naming what is there instead.
fn require_move(state: &impl StateRead, org: &OrgId, move_id: &str, side: MoveSide) -> Result<MoveRecord, QueryError> {
    match get_move(state, org)? {
        Some(record) if record.move_id == move_id && record.side == side => Ok(record),
        Some(record) => Err(refuse(format!(
            "org {org} is in move {} ({:?}, {}), not move {move_id}",
            record.move_id,
            record.side,
            record.phase.as_str()
        ))),
        None => Err(DomainError::not_found("move", format!("{move_id} of org {org}")).into()),
    }
}

/// Refuses a new move while another one of the org is recorded here and has not ended.
fn check_no_other_move(state: &impl StateRead, org: &OrgId, move_id: &str) -> Result<Option<MoveRecord>, QueryError> {
    match get_move(state, org)? {
        Some(record) if record.move_id == move_id => Ok(Some(record)),
        Some(record) if !record.phase.is_final() => Err(refuse(format!(
            "org {org} is already moving ({} to {}, move {}, {})",
            record.source,
            record.target,
            record.move_id,
            record.phase.as_str()
        ))),
        _ => Ok(None),
    }
}

fn reserve(
    state: &mut impl StateWrite,
    org: &OrgId,
    move_id: &str,
    source: Region,
    target: Region,
    now: u64,
) -> Result<MoveState, QueryError> {
    if source == target {
        return Err(DomainError::InvalidArgument {
            field: "to_region".into(),
            reason: format!("org {org} would move from region {source} to itself"),
        }
        .into());
    }
    if let Some(same) = check_no_other_move(state, org, move_id)? {
        return Ok(MoveState::Record(same));
    }
    if let Some(live) = load::<Org>(state, &keys::org_key(org))? {
        return Err(refuse(format!("org {org} already lives in region {}", live.region)));
    }
    let record = MoveRecord::begun(move_id, org, (source, target), MoveSide::Incoming, 0, now);
    Ok(put_move(state, &record))
}

fn advance(
    state: &mut impl StateWrite,
    org: &OrgId,
    move_id: &str,
    from: MovePhase,
    to: MovePhase,
    note: &MoveNote,
    now: u64,
) -> Result<MoveState, QueryError> {
    use MovePhase as P;
    let allowed = matches!(
        (from, to),
        (P::Reserved, P::Copying) | (P::Copying, P::Frozen) | (P::Switched, P::CleaningUp) | (P::CleaningUp, P::Done)
    );
    if !allowed {
        return Err(DomainError::InvalidArgument {
            field: "step".into(),
            reason: format!("a move does not go from {} to {} by itself", from.as_str(), to.as_str()),
        }
        .into());
    }
    let mut record = require_move(state, org, move_id, MoveSide::Incoming)?;
    if record.phase == to {
        return Ok(MoveState::Record(record));
    }
    if record.phase != from {
        return Err(refuse(format!("move {move_id} of org {org} is {}, not {}", record.phase.as_str(), from.as_str())));
    }
    if let Some(epoch) = note.from_epoch {
        record.from_epoch = epoch;
    }
    if let Some(pause) = note.write_pause_ms {
        record.write_pause_ms = Some(pause);
    }
    record.phase = to;
    record.updated_at_ms = now;
    Ok(put_move(state, &record))
}

fn stage(
    state: &mut impl StateWrite,
    org: &OrgId,
    move_id: &str,
    copy_id: &str,
    first: bool,
    (records, deletes): (&[(String, String)], &[String]),
    now: u64,
) -> Result<MoveState, QueryError> {
    let mut record = require_move(state, org, move_id, MoveSide::Incoming)?;
    if !matches!(record.phase, MovePhase::Copying | MovePhase::Frozen) {
        return Err(refuse(format!("move {move_id} of org {org} is {}: nothing to stage", record.phase.as_str())));
    }
    if let Some(key) = records.iter().map(|(key, _)| key).chain(deletes).find(|key| !belongs_to(org, key)) {
        return Err(DomainError::InvalidArgument {
            field: "records".into(),
            reason: format!("{key:?} is not a record of org {org}"),
        }
        .into());
    }
    if first {
        drop_staged(state, org)?;
        record.copy_id = Some(copy_id.to_string());
        record.staged_records = 0;
        record.staged_bytes = 0;
    } else if record.copy_id.as_deref() != Some(copy_id) {
        return Err(refuse(format!("copy {copy_id} of move {move_id} was replaced by a newer copy")));
    }
    for key in deletes {
        if delete_staged(state, org, key)? {
            record.staged_records = record.staged_records.saturating_sub(1);
        }
    }
    for (key, value) in records {
        let bytes = (key.len() + value.len()) as u64;
        if put_staged(state, org, key, value)? {
            record.staged_records += 1;
        }
        record.staged_bytes += bytes;
        record.bytes_copied += bytes;
    }
    record.updated_at_ms = now;
    Ok(put_move(state, &record))
}

fn activate(
    state: &mut impl StateWrite,
    org: &OrgId,
    move_id: &str,
    copy_id: &str,
    records: u64,
    to_epoch: u64,
    now: u64,
) -> Result<MoveState, QueryError> {
    let mut record = require_move(state, org, move_id, MoveSide::Incoming)?;
    if record.phase.is_switched() {
        return Ok(MoveState::Record(record));
    }
    if record.phase != MovePhase::Frozen {
        return Err(refuse(format!("move {move_id} of org {org} is {}, not frozen", record.phase.as_str())));
    }
    if record.copy_id.as_deref() != Some(copy_id) || record.staged_records != records {
        return Err(refuse(format!(
            "the staged copy of move {move_id} is not copy {copy_id} of {records} records (it holds {} of {:?})",
            record.staged_records, record.copy_id
        )));
    }
    if to_epoch <= record.from_epoch {
        return Err(DomainError::InvalidArgument {
            field: "to_epoch".into(),
            reason: format!("must be above the source's epoch {}", record.from_epoch),
        }
        .into());
    }
    // The records are in place already; going live is the org record's move, in O(1).
    let live_org: Option<Org> = load(state, &keys::staged_org(org))?;
    let Some(mut live) = live_org else {
        return Err(refuse(format!("the staged copy of move {move_id} holds no org record")));
    };
    live.region = record.target;
    live.epoch = to_epoch;
    live.updated_at_ms = now;
    state.put(keys::org_key(org), encode(&live));
    state.delete(keys::staged_org(org));
    state.delete(keys::forwarding(org));
    record.phase = MovePhase::Switched;
    record.staged_records = records;
    record.to_epoch = to_epoch;
    record.updated_at_ms = now;
    Ok(put_move(state, &record))
}

fn abort_in(
    state: &mut impl StateWrite,
    org: &OrgId,
    move_id: &str,
    reason: &str,
    now: u64,
) -> Result<MoveState, QueryError> {
    let mut record = require_move(state, org, move_id, MoveSide::Incoming)?;
    match record.phase {
        MovePhase::Aborted => return Ok(MoveState::Record(record)),
        phase if phase.is_switched() => {
            return Err(refuse(format!("move {move_id} of org {org} is past the switch: it can only complete")))
        }
        _ => {}
    }
    drop_staged(state, org)?;
    record.phase = MovePhase::Aborted;
    record.reason = Some(reason.to_string());
    record.copy_id = None;
    record.updated_at_ms = now;
    Ok(put_move(state, &record))
}

fn begin_out(
    state: &mut impl StateWrite,
    org: &OrgId,
    move_id: &str,
    target: Region,
    now: u64,
) -> Result<MoveState, QueryError> {
    check_served_here(state, org)?;
    if let Some(same) = check_no_other_move(state, org, move_id)? {
        return Ok(MoveState::Record(same));
    }
    let Some(live) = load::<Org>(state, &keys::org_key(org))? else {
        return Err(DomainError::org_not_found(org).into());
    };
    if live.region == target {
        return Err(DomainError::InvalidArgument {
            field: "to_region".into(),
            reason: format!("org {org} already lives in region {target}"),
        }
        .into());
    }
    let record = MoveRecord::begun(move_id, org, (live.region, target), MoveSide::Outgoing, live.epoch, now);
    Ok(put_move(state, &record))
}

fn freeze(state: &mut impl StateWrite, org: &OrgId, move_id: &str, now: u64) -> Result<MoveState, QueryError> {
    let mut record = require_move(state, org, move_id, MoveSide::Outgoing)?;
    match record.phase {
        MovePhase::Frozen => Ok(MoveState::Record(record)),
        MovePhase::Copying => {
            record.phase = MovePhase::Frozen;
            record.updated_at_ms = now;
            Ok(put_move(state, &record))
        }
        other => Err(refuse(format!("move {move_id} of org {org} is {}, not copying", other.as_str()))),
    }
}

fn finish_out(
    state: &mut impl StateWrite,
    org: &OrgId,
    move_id: &str,
    epoch: u64,
    now: u64,
) -> Result<MoveState, QueryError> {
    if let Some(forwarding) = get_forwarding(state, org)? {
        if forwarding.move_id == move_id {
            return Ok(MoveState::Forwarded(forwarding));
        }
    }
    let record = require_move(state, org, move_id, MoveSide::Outgoing)?;
    if record.phase != MovePhase::Frozen {
        return Err(refuse(format!("move {move_id} of org {org} is {}, not frozen", record.phase.as_str())));
    }
    if epoch != record.to_epoch {
        return Err(DomainError::InvalidArgument {
            field: "epoch".into(),
            reason: format!("move {move_id} switches to epoch {}, not {epoch}", record.to_epoch),
        }
        .into());
    }
    purge_org(state, org)?;
    state.delete(keys::org_move(org));
    let forwarding = Forwarding {
        org_id: org.clone(),
        region: record.target,
        epoch,
        move_id: move_id.to_string(),
        moved_at_ms: now,
    };
    state.put(keys::forwarding(org), encode(&forwarding));
    Ok(MoveState::Forwarded(forwarding))
}

fn abort_out(state: &mut impl StateWrite, org: &OrgId, move_id: &str) -> Result<MoveState, QueryError> {
    if let Some(forwarding) = get_forwarding(state, org)? {
        if forwarding.move_id == move_id {
            return Err(refuse(format!("move {move_id} of org {org} is past the switch: it can only complete")));
        }
    }
    match get_move(state, org)? {
        Some(record) if record.move_id == move_id && record.side == MoveSide::Outgoing => {
            state.delete(keys::org_move(org));
            Ok(MoveState::None)
        }
        Some(record) if record.move_id == move_id => {
            Err(refuse(format!("move {move_id} of org {org} is recorded here as incoming; abort it with abort_in")))
        }
        Some(_) | None => Ok(MoveState::None),
    }
}
