//! The audit log's keys: appending an event in `apply`, and listing by time range and actor.

use super::{decode, encode, key_after, keys, load, StateRead, StateWrite, StorageFault};
use crate::audit::{describe, AuditEvent, AuditFilter, AuditOutcome};
use crate::command::{Command, CommandResult};
use crate::error::DomainError;
use crate::id::OrgId;

/// At most this many events are read per listing: with an actor filter that matches rarely, a
/// page may come back short (even empty) with a token to go on, rather than one call scanning
/// the whole log.
pub const AUDIT_SCAN_BUDGET: usize = 10_000;

/// Appends the event of `cmd` with its `result` to the org's log.
pub(super) fn append(state: &mut impl StateWrite, cmd: &Command, result: &CommandResult) -> Result<(), StorageFault> {
    let org_id = cmd.op.org_id();
    let seq_key = keys::audit_seq(org_id);
    let seq = load::<u64>(state, &seq_key)?.unwrap_or(0) + 1;
    let (target, detail) = describe(&cmd.op, &cmd.actor);
    let event = AuditEvent {
        org_id: org_id.clone(),
        seq,
        at_ms: cmd.issued_at_ms,
        actor: cmd.actor.clone(),
        action: cmd.op.kind().to_string(),
        target,
        detail,
        request_id: cmd.request_id.clone(),
        outcome: AuditOutcome::of(result),
    };
    let key = [keys::audit_prefix(org_id), keys::audit_suffix(event.at_ms, seq).into_bytes()].concat();
    state.put(key, encode(&event));
    state.put(seq_key, encode(&seq));
    Ok(())
}

/// One page of the org's audit events in time order (then sequence), filtered, resuming after
/// the token `after` (a previous page's token). Returns the page and, when more may follow,
/// the token to resume after; a page can be shorter than `limit` while more follow (see
/// [`AUDIT_SCAN_BUDGET`]). The org need not exist any more: a deleted org's log stays (the
/// policy decides who may read it).
pub fn list_audit_events(
    state: &impl StateRead,
    org: &OrgId,
    filter: &AuditFilter,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<AuditEvent>, Option<String>), super::QueryError> {
    let prefix = keys::audit_prefix(org);
    let mut start = filter.from_ms.map(|from| keys::audit_time(org, from)).unwrap_or_else(|| prefix.clone());
    if let Some(after) = after {
        let (at_ms, seq) = parse_token(after)?;
        let resume = key_after(&[prefix.clone(), keys::audit_suffix(at_ms, seq).into_bytes()].concat());
        start = start.max(resume);
    }
    let end = filter.to_ms.map(|to| keys::audit_time(org, to)).unwrap_or_else(|| keys::prefix_end(&prefix));
    let mut events = Vec::new();
    let mut scanned = 0;
    let mut last_key: Option<Vec<u8>> = None;
    while events.len() < limit && scanned < AUDIT_SCAN_BUDGET {
        let chunk = (limit - events.len()).max(64).min(AUDIT_SCAN_BUDGET - scanned);
        let rows = state.scan(&start, &end, chunk)?;
        let exhausted = rows.len() < chunk;
        for (key, value) in rows {
            scanned += 1;
            let event: AuditEvent = decode(&key, &value)?;
            start = key_after(&key);
            last_key = Some(key);
            if filter.actor_subject.as_deref().is_none_or(|s| event.actor.subject() == Some(s)) {
                events.push(event);
                if events.len() == limit {
                    break;
                }
            }
        }
        if exhausted && events.len() < limit {
            return Ok((events, None));
        }
    }
    // Stopped at the page size or the budget: more may follow the last key read.
    let next = last_key.map(|key| String::from_utf8_lossy(&key[prefix.len()..]).into_owned());
    Ok((events, next))
}

/// The position an audit page token names: `{at_ms:020}/{seq:020}`.
fn parse_token(token: &str) -> Result<(u64, u64), DomainError> {
    let invalid =
        || DomainError::InvalidArgument { field: "page_token".into(), reason: "is not an audit page token".into() };
    let (at, seq) = token.split_once('/').ok_or_else(invalid)?;
    if at.len() != 20 || seq.len() != 20 {
        return Err(invalid());
    }
    Ok((at.parse().map_err(|_| invalid())?, seq.parse().map_err(|_| invalid())?))
}
