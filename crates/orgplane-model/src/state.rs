//! The state: its key layout, the deterministic [`apply`] of a command, and the read queries.
//!
//! The state is a sorted key-value map reached through [`StateRead`] and [`StateWrite`]; the
//! sled store implements them over its state-machine tree (with an overlay so one Raft entry's
//! commands land in one atomic batch), [`MemState`] implements them in memory for tests.
//!
//! Key layout (every record is JSON):
//! - `o/{org_id}`: the [`Org`];
//! - `m/{org_id}/{user_id}`: the [`Member`];
//! - `u/{user_id}/{org_id}`: index of a user's orgs, value is the role name;
//! - `r/{request_id}`: [`RequestRecord`], the first answer to a request id;
//! - `t/{issued_at_ms:020}/{request_id}`: index of request ids by time, for expiry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandOutcome, CommandResult, Op};
use crate::error::DomainError;
use crate::id::OrgId;
use crate::org::{Member, Org, UserOrg};
use crate::role::Role;

/// How long a request id is remembered after its command was issued. A retry later than this
/// applies again. 24 hours outlasts any client retry loop.
pub const REQUEST_ID_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// At most this many expired request ids are dropped per applied command, so expiry never makes
/// one apply slow.
const REQUEST_ID_EXPIRY_PER_APPLY: usize = 16;

/// The storage under the state failed (an I/O error, a corrupt record). Not a refusal: the node
/// cannot go on applying and treats it as fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state storage fault: {0}")]
pub struct StorageFault(pub String);

/// Key-value pairs in key order, as a scan returns them.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Reading the state.
pub trait StateRead {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageFault>;
    /// Up to `limit` pairs with `start <= key < end`, in ascending key order.
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Pairs, StorageFault>;
}

/// Changing the state. Changes must be visible to the `StateRead` methods of the same value
/// at once (commands of one batch see each other's effects).
pub trait StateWrite: StateRead {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>);
    fn delete(&mut self, key: Vec<u8>);
}

/// What a read or query failed with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Storage(#[from] StorageFault),
}

/// The remembered first answer to a request id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub kind: String,
    pub issued_at_ms: u64,
    pub result: CommandResult,
}

// ---- keys

pub fn org_key(id: &OrgId) -> Vec<u8> {
    format!("o/{id}").into_bytes()
}
fn member_key(org: &OrgId, user: &str) -> Vec<u8> {
    format!("m/{org}/{user}").into_bytes()
}
fn member_prefix(org: &OrgId) -> Vec<u8> {
    format!("m/{org}/").into_bytes()
}
fn user_org_key(user: &str, org: &OrgId) -> Vec<u8> {
    format!("u/{user}/{org}").into_bytes()
}
fn user_prefix(user: &str) -> Vec<u8> {
    format!("u/{user}/").into_bytes()
}
fn request_key(id: &str) -> Vec<u8> {
    format!("r/{id}").into_bytes()
}
fn request_time_key(at_ms: u64, id: &str) -> Vec<u8> {
    format!("t/{at_ms:020}/{id}").into_bytes()
}

/// The end (exclusive) of the range of keys starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; prefix.len() + 1]
}

/// The first key after `key` (for resuming a scan after the last key returned).
fn key_after(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail: no maps with non-string keys, no custom
    // serializers that error.
    serde_json::to_vec(value).expect("state records serialize")
}

fn decode<T: for<'de> Deserialize<'de>>(key: &[u8], bytes: &[u8]) -> Result<T, StorageFault> {
    serde_json::from_slice(bytes)
        .map_err(|e| StorageFault(format!("corrupt record at {:?}: {e}", String::from_utf8_lossy(key))))
}

// ---- apply

/// Applies one command to the state and returns its answer. Deterministic: the same state and
/// command give the same changes and answer on every replica. A refusal changes nothing but
/// the request-id record.
pub fn apply(state: &mut impl StateWrite, cmd: &Command) -> Result<CommandResult, StorageFault> {
    expire_request_ids(state, cmd.issued_at_ms)?;
    let rkey = request_key(&cmd.request_id);
    if let Some(bytes) = state.get(&rkey)? {
        let record: RequestRecord = decode(&rkey, &bytes)?;
        if record.kind != cmd.op.kind() {
            return Ok(Err(DomainError::FailedPrecondition {
                reason: format!(
                    "request id {:?} was already used for a {} request, not {}",
                    cmd.request_id,
                    record.kind,
                    cmd.op.kind()
                ),
            }));
        }
        return Ok(record.result);
    }
    let result = apply_op(state, &cmd.op, cmd.issued_at_ms)?;
    let record = RequestRecord { kind: cmd.op.kind().to_string(), issued_at_ms: cmd.issued_at_ms, result };
    state.put(rkey, encode(&record));
    state.put(request_time_key(cmd.issued_at_ms, &cmd.request_id), Vec::new());
    Ok(record.result)
}

fn expire_request_ids(state: &mut impl StateWrite, now_ms: u64) -> Result<(), StorageFault> {
    let Some(cutoff) = now_ms.checked_sub(REQUEST_ID_TTL_MS) else { return Ok(()) };
    let start = b"t/".to_vec();
    let end = request_time_key(cutoff, "");
    for (key, _) in state.scan(&start, &end, REQUEST_ID_EXPIRY_PER_APPLY)? {
        // key = t/{020 digits}/{request id}
        if let Some(id) = key.get(2 + 20 + 1..) {
            state.delete(request_key(&String::from_utf8_lossy(id)));
        }
        state.delete(key);
    }
    Ok(())
}

fn apply_op(state: &mut impl StateWrite, op: &Op, now_ms: u64) -> Result<CommandResult, StorageFault> {
    Ok(match op {
        Op::CreateOrg { id, name } => {
            let key = org_key(id);
            if state.get(&key)?.is_some() {
                return Ok(Err(DomainError::AlreadyExists { kind: "org".into(), id: id.to_string() }));
            }
            let org = Org {
                id: id.clone(),
                name: name.clone(),
                region: id.region(),
                version: 1,
                epoch: 1,
                created_at_ms: now_ms,
                updated_at_ms: now_ms,
            };
            state.put(key, encode(&org));
            Ok(CommandOutcome::Org(org))
        }
        Op::UpdateOrg { id, name, expected_version } => {
            let mut org = match load_org_for_change(state, id, *expected_version)? {
                Ok(org) => org,
                Err(e) => return Ok(Err(e)),
            };
            org.name = name.clone();
            org.version += 1;
            org.updated_at_ms = now_ms;
            state.put(org_key(id), encode(&org));
            Ok(CommandOutcome::Org(org))
        }
        Op::DeleteOrg { id, expected_version } => {
            if let Err(e) = load_org_for_change(state, id, *expected_version)? {
                return Ok(Err(e));
            }
            let prefix = member_prefix(id);
            let end = prefix_end(&prefix);
            let mut removed = 0;
            for (key, bytes) in state.scan(&prefix, &end, usize::MAX)? {
                let member: Member = decode(&key, &bytes)?;
                state.delete(user_org_key(&member.user_id, id));
                state.delete(key);
                removed += 1;
            }
            state.delete(org_key(id));
            Ok(CommandOutcome::OrgDeleted { removed_members: removed })
        }
        Op::AddMember { org_id, user_id, role } => {
            if get_org(state, org_id)?.is_none() {
                return Ok(Err(DomainError::org_not_found(org_id)));
            }
            let key = member_key(org_id, user_id);
            if state.get(&key)?.is_some() {
                return Ok(Err(DomainError::AlreadyExists {
                    kind: "member".into(),
                    id: format!("{user_id} of org {org_id}"),
                }));
            }
            let member = Member {
                org_id: org_id.clone(),
                user_id: user_id.clone(),
                role: *role,
                added_at_ms: now_ms,
                updated_at_ms: now_ms,
            };
            state.put(key, encode(&member));
            state.put(user_org_key(user_id, org_id), role.as_str().as_bytes().to_vec());
            Ok(CommandOutcome::Member(member))
        }
        Op::SetMemberRole { org_id, user_id, role } => {
            let key = member_key(org_id, user_id);
            let Some(bytes) = state.get(&key)? else {
                return Ok(Err(not_found_member_or_org(state, org_id, user_id)?));
            };
            let mut member: Member = decode(&key, &bytes)?;
            member.role = *role;
            member.updated_at_ms = now_ms;
            state.put(key, encode(&member));
            state.put(user_org_key(user_id, org_id), role.as_str().as_bytes().to_vec());
            Ok(CommandOutcome::Member(member))
        }
        Op::RemoveMember { org_id, user_id } => {
            let key = member_key(org_id, user_id);
            if state.get(&key)?.is_none() {
                return Ok(Err(not_found_member_or_org(state, org_id, user_id)?));
            }
            state.delete(key);
            state.delete(user_org_key(user_id, org_id));
            Ok(CommandOutcome::MemberRemoved)
        }
    })
}

/// Loads an org that is about to change, checking the caller's expected version.
fn load_org_for_change(
    state: &impl StateRead,
    id: &OrgId,
    expected_version: Option<u64>,
) -> Result<Result<Org, DomainError>, StorageFault> {
    let Some(org) = get_org(state, id)? else { return Ok(Err(DomainError::org_not_found(id))) };
    if let Some(expected) = expected_version {
        if expected != org.version {
            return Ok(Err(DomainError::VersionMismatch {
                kind: "org".into(),
                id: id.to_string(),
                expected,
                actual: org.version,
            }));
        }
    }
    Ok(Ok(org))
}

fn not_found_member_or_org(state: &impl StateRead, org: &OrgId, user: &str) -> Result<DomainError, StorageFault> {
    Ok(if get_org(state, org)?.is_none() {
        DomainError::org_not_found(org)
    } else {
        DomainError::member_not_found(org, user)
    })
}

// ---- queries

/// The org, if it exists.
pub fn get_org(state: &impl StateRead, id: &OrgId) -> Result<Option<Org>, StorageFault> {
    let key = org_key(id);
    state.get(&key)?.map(|bytes| decode(&key, &bytes)).transpose()
}

/// One page of orgs in id order, starting after `after`. Returns the page and, when more may
/// follow, the id to resume after.
pub fn list_orgs(
    state: &impl StateRead,
    after: Option<&OrgId>,
    limit: usize,
) -> Result<(Vec<Org>, Option<String>), StorageFault> {
    let start = after.map(|id| key_after(&org_key(id))).unwrap_or_else(|| b"o/".to_vec());
    let rows = state.scan(&start, &prefix_end(b"o/"), limit.saturating_add(1))?;
    let mut orgs = rows.iter().map(|(k, v)| decode::<Org>(k, v)).collect::<Result<Vec<_>, _>>()?;
    let next = page_rest(&mut orgs, limit, |o| o.id.to_string());
    Ok((orgs, next))
}

/// One page of an org's members in user-id order. NotFound when the org does not exist.
pub fn list_members(
    state: &impl StateRead,
    org: &OrgId,
    after_user: Option<&str>,
    limit: usize,
) -> Result<(Vec<Member>, Option<String>), QueryError> {
    if get_org(state, org)?.is_none() {
        return Err(DomainError::org_not_found(org).into());
    }
    let prefix = member_prefix(org);
    let start = after_user.map(|u| key_after(&member_key(org, u))).unwrap_or_else(|| prefix.clone());
    let rows = state.scan(&start, &prefix_end(&prefix), limit.saturating_add(1))?;
    let mut members = rows.iter().map(|(k, v)| decode::<Member>(k, v)).collect::<Result<Vec<_>, _>>()?;
    let next = page_rest(&mut members, limit, |m| m.user_id.clone());
    Ok((members, next))
}

/// One page of the orgs `user` belongs to in this state, with the role in each, in org-id order.
pub fn list_user_orgs(
    state: &impl StateRead,
    user: &str,
    after_org: Option<&OrgId>,
    limit: usize,
) -> Result<(Vec<UserOrg>, Option<String>), StorageFault> {
    let prefix = user_prefix(user);
    let start = after_org.map(|o| key_after(&user_org_key(user, o))).unwrap_or_else(|| prefix.clone());
    let rows = state.scan(&start, &prefix_end(&prefix), limit.saturating_add(1))?;
    let mut out = Vec::with_capacity(rows.len());
    for (key, value) in rows {
        let org_part = &key[prefix.len()..];
        let org_id: OrgId = String::from_utf8_lossy(org_part)
            .parse()
            .map_err(|e| StorageFault(format!("corrupt user index key {:?}: {e}", String::from_utf8_lossy(&key))))?;
        let role: Role = String::from_utf8_lossy(&value)
            .parse()
            .map_err(|e| StorageFault(format!("corrupt user index value: {e}")))?;
        // The index and the org are written in the same batch, so the org is there.
        let org =
            get_org(state, &org_id)?.ok_or_else(|| StorageFault(format!("user index names missing org {org_id}")))?;
        out.push(UserOrg { org, role });
    }
    let next = page_rest(&mut out, limit, |u| u.org.id.to_string());
    Ok((out, next))
}

/// Trims a page fetched with one extra row to `limit`, returning the resume key when the extra
/// row showed that more follow.
fn page_rest<T>(items: &mut Vec<T>, limit: usize, key: impl Fn(&T) -> String) -> Option<String> {
    if items.len() > limit {
        items.truncate(limit);
        items.last().map(key)
    } else {
        None
    }
}

// ---- in-memory state

/// The state in a `BTreeMap`: the reference implementation for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemState {
    pub map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl StateRead for MemState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageFault> {
        Ok(self.map.get(key).cloned())
    }
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageFault> {
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(self.map.range(start.to_vec()..end.to_vec()).take(limit).map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

impl StateWrite for MemState {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.map.insert(key, value);
    }
    fn delete(&mut self, key: Vec<u8>) {
        self.map.remove(&key);
    }
}

#[cfg(test)]
mod tests;
