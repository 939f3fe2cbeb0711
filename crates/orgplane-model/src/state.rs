//! The state: its key layout, the deterministic [`apply`] of a command, and the read queries.
//!
//! The state is a sorted key-value map reached through [`StateRead`] and [`StateWrite`]; the
//! sled store implements them over its state-machine tree (with an overlay so one Raft entry's
//! commands land in one atomic batch), [`MemState`] implements them in memory for tests.
//!
//! Key layout (every record is JSON; every name in a key is validated to hold no `/`):
//! - `o/{org_id}`: the [`Org`];
//! - `m/{org_id}/{user_id}`: the [`Member`];
//! - `u/{user_id}/{org_id}`: index of a user's orgs, value is the role name;
//! - `cr/{org_id}/{role_name}`: a [`CustomRole`];
//! - `iv/{org_id}/{email}`: the [`Invitation`] of an email address;
//! - `ig/{org_id}/{name}`: an integration, secrets included (read only as [`IntegrationView`]);
//! - `pn/{org_id}/{number}`: a [`PhoneNumber`];
//! - `ap/{org_id}/{app_id}`: an [`App`];
//! - `ab/{org_id}/{pn|ig}/{resource}/{app_id}/{slot}`: index of app slots binding a resource
//!   (empty value), so a bound resource is not deleted;
//! - `al/{org_id}/{at_ms:020}/{seq:020}`: an [`AuditEvent`], in time then sequence order;
//! - `an/{org_id}`: the org's last audit sequence number;
//! - `r/{request_id}`: [`RequestRecord`], the first answer to a request id;
//! - `t/{issued_at_ms:020}/{request_id}`: index of request ids by time, for expiry;
//! - `mv/{org_id}`: a [`MoveRecord`] of the org's move in or out of this region;
//! - `fw/{org_id}`: the [`Forwarding`] of an org that moved away;
//! - `sg/{org_id}`: a moving org's own [`Org`] record, staged here until the switch makes it
//!   live; the org's other records are staged in place (nothing reaches them meanwhile: every
//!   access passes the placement check, and a user's index skips orgs not live here).
//!
//! Layout of the module: this file has the traits, the codec and [`apply`]; `orgs`, `roles`,
//! `invitations`, `resources` and `audit_log` each have their ops and queries; `keys` the key
//! builders.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::actor::Actor;
use crate::command::{Command, CommandOutcome, CommandResult, Op};
use crate::error::DomainError;
use crate::policy;
use crate::validate;

mod apps;
mod audit_log;
mod invitations;
mod keys;
mod orgs;
mod relocation;
mod resources;
mod roles;

pub use apps::{get_app, list_apps, residency_refusal};
pub use audit_log::{list_audit_events, AUDIT_SCAN_BUDGET};
pub use invitations::{get_invitation, list_invitations};
pub use keys::{org_key, prefix_end};
pub use orgs::{get_member, get_org, list_members, list_orgs, list_user_orgs};
pub use relocation::{
    check_served_here, get_forwarding, get_move, holdings, list_moves, org_image, Holdings, ImageRecord,
};
pub use resources::{get_integration, get_phone_number, list_integrations, list_phone_numbers};
pub use roles::{get_custom_role, list_custom_roles};

#[cfg(doc)]
use crate::{
    app::App, audit::AuditEvent, invitation::Invitation, org::Member, org::Org, relocation::Forwarding,
    relocation::MoveRecord, resource::IntegrationView, resource::PhoneNumber, role::CustomRole,
};

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

/// What a read, a query or a step of [`apply`] failed with: a refusal, or a storage fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Storage(#[from] StorageFault),
}

/// The remembered first answer to a request id, with whose request it was: a request id is
/// only a retry of the same caller's request about the same org (any org for a create, whose
/// id each attempt chooses anew), so nobody can read another caller's answer by reusing their
/// id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub kind: String,
    pub issued_at_ms: u64,
    /// The actor's subject; `None` for the system.
    pub actor: Option<String>,
    pub org_id: String,
    pub result: CommandResult,
}

impl RequestRecord {
    /// The answer to `cmd`, which reuses this record's request id.
    fn replay(self, cmd: &Command) -> CommandResult {
        // A create's org id is chosen afresh by the node for each attempt, so only the caller
        // can tie its retries together.
        let same_org = matches!(cmd.op, Op::CreateOrg { .. }) || self.org_id == cmd.op.org_id().to_string();
        let same_caller = self.actor.as_deref() == cmd.actor.subject() && same_org;
        if !same_caller {
            return Err(DomainError::failed_precondition(format!(
                "request id {:?} was already used for another request; use a new one",
                cmd.request_id
            )));
        }
        if self.kind != cmd.op.kind() {
            return Err(DomainError::failed_precondition(format!(
                "request id {:?} was already used for a {} request, not {}",
                cmd.request_id,
                self.kind,
                cmd.op.kind()
            )));
        }
        self.result
    }
}

// ---- codec and scanning

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail: maps have string keys, and no serializer
    // of ours returns an error.
    serde_json::to_vec(value).expect("state records serialize")
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StorageFault> {
    serde_json::from_slice(bytes)
        .map_err(|e| StorageFault(format!("corrupt record at {:?}: {e}", String::from_utf8_lossy(key))))
}

/// The record at `key`, if any.
fn load<T: DeserializeOwned>(state: &impl StateRead, key: &[u8]) -> Result<Option<T>, StorageFault> {
    state.get(key)?.map(|bytes| decode(key, &bytes)).transpose()
}

/// The first key after `key` (for resuming a scan after the last key returned).
fn key_after(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

/// One page of the records under `prefix`, resuming after the key `prefix + after`. Returns
/// the page and, when more may follow, the key suffix to resume after.
fn list_page<T: DeserializeOwned>(
    state: &impl StateRead,
    prefix: &[u8],
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<T>, Option<String>), StorageFault> {
    let start = match after {
        Some(after) => key_after(&[prefix, after.as_bytes()].concat()),
        None => prefix.to_vec(),
    };
    let mut rows = state.scan(&start, &prefix_end(prefix), limit.saturating_add(1))?;
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|(key, _)| String::from_utf8_lossy(&key[prefix.len()..]).into_owned())
    } else {
        None
    };
    let items = rows.iter().map(|(k, v)| decode(k, v)).collect::<Result<Vec<T>, _>>()?;
    Ok((items, next))
}

/// Every pair under `prefix`, in key order, scanning in bounded chunks.
fn scan_raw(state: &impl StateRead, prefix: &[u8]) -> Result<Pairs, StorageFault> {
    const CHUNK: usize = 256;
    let end = prefix_end(prefix);
    let mut start = prefix.to_vec();
    let mut out = Vec::new();
    loop {
        let rows = state.scan(&start, &end, CHUNK)?;
        let done = rows.len() < CHUNK;
        if let Some((last, _)) = rows.last() {
            start = key_after(last);
        }
        out.extend(rows);
        if done {
            return Ok(out);
        }
    }
}

/// Every record under `prefix`, in key order, scanning in bounded chunks.
fn scan_all<T: DeserializeOwned>(state: &impl StateRead, prefix: &[u8]) -> Result<Vec<(Vec<u8>, T)>, StorageFault> {
    scan_raw(state, prefix)?
        .into_iter()
        .map(|(key, value)| {
            let record = decode(&key, &value)?;
            Ok((key, record))
        })
        .collect()
}

/// Splits a step's outcome into the replicated answer (refusals included) and the storage
/// fault that must stop the apply.
fn settle<T>(step: Result<T, QueryError>) -> Result<Result<T, DomainError>, StorageFault> {
    match step {
        Ok(value) => Ok(Ok(value)),
        Err(QueryError::Domain(refusal)) => Ok(Err(refusal)),
        Err(QueryError::Storage(fault)) => Err(fault),
    }
}

/// Refuses unless `expected` (when given) is the record's current version.
fn check_version(kind: &str, id: &str, expected: Option<u64>, actual: u64) -> Result<(), DomainError> {
    match expected {
        Some(expected) if expected != actual => Err(DomainError::version_mismatch(kind, id, expected, actual)),
        _ => Ok(()),
    }
}

// ---- apply

/// What every op handler gets: who acts, when, and what they may grant.
struct Ctx<'a> {
    actor: &'a Actor,
    now_ms: u64,
    authority: policy::Authority,
}

/// Applies one command to the state and returns its answer. Deterministic: the same state and
/// command give the same changes and answer on every replica. The command is authorized here
/// against the state (see [`crate::policy`]), whatever the proposing node checked. A refusal
/// changes nothing but the request-id record and the org's audit log.
pub fn apply(state: &mut impl StateWrite, cmd: &Command) -> Result<CommandResult, StorageFault> {
    expire_request_ids(state, cmd.issued_at_ms)?;
    let rkey = keys::request(&cmd.request_id);
    if let Op::Relocate { org_id, step } = &cmd.op {
        // Idempotent by itself and outside the org's audit log: see `relocation`.
        return settle(relocation::apply_step(state, cmd, org_id, step));
    }
    if let Some(record) = load::<RequestRecord>(state, &rkey)? {
        return Ok(record.replay(cmd));
    }
    let org_existed = get_org(state, cmd.op.org_id())?.is_some();
    let result = settle(apply_op(state, cmd))?;
    if matches!(&result, Err(refusal) if refusal.is_placement()) {
        // Where the org is depends on when one asks: a retry must ask again, so the answer is
        // neither remembered for the request id nor copied along with the org.
        return Ok(result);
    }
    if org_existed || get_org(state, cmd.op.org_id())?.is_some() {
        audit_log::append(state, cmd, &result)?;
    }
    let record = RequestRecord {
        kind: cmd.op.kind().to_string(),
        issued_at_ms: cmd.issued_at_ms,
        actor: cmd.actor.subject().map(str::to_string),
        org_id: cmd.op.org_id().to_string(),
        result,
    };
    state.put(rkey, encode(&record));
    state.put(keys::request_time(cmd.issued_at_ms, &cmd.request_id), Vec::new());
    Ok(record.result)
}

fn expire_request_ids(state: &mut impl StateWrite, now_ms: u64) -> Result<(), StorageFault> {
    let Some(cutoff) = now_ms.checked_sub(REQUEST_ID_TTL_MS) else { return Ok(()) };
    let start = b"t/".to_vec();
    let end = keys::request_time(cutoff, "");
    for (key, _) in state.scan(&start, &end, REQUEST_ID_EXPIRY_PER_APPLY)? {
        // key = t/{020 digits}/{request id}
        if let Some(id) = key.get(2 + 20 + 1..) {
            state.delete(keys::request(&String::from_utf8_lossy(id)));
        }
        state.delete(key);
    }
    Ok(())
}

/// Authorizes the command, then does it. Every handler checks everything before its first
/// write, so a refusal leaves the state as it was.
fn apply_op(state: &mut impl StateWrite, cmd: &Command) -> Result<CommandOutcome, QueryError> {
    if let Actor::User(user) = &cmd.actor {
        validate::user_id(&user.subject).map_err(|_| DomainError::InvalidArgument {
            field: "actor".into(),
            reason: "the subject is not a valid user id".into(),
        })?;
    }
    let op = &cmd.op;
    let authority = policy::authority(state, &cmd.actor, Some(op.org_id()), op.access(), op.kind())?;
    let ctx = Ctx { actor: &cmd.actor, now_ms: cmd.issued_at_ms, authority };
    match op {
        Op::CreateOrg { id, name } => orgs::create_org(state, &ctx, id, name),
        Op::UpdateOrg { id, name, allowed_import_regions, expected_version } => {
            orgs::update_org(state, &ctx, id, name.as_deref(), allowed_import_regions.as_ref(), *expected_version)
        }
        Op::DeleteOrg { id, expected_version } => orgs::delete_org(state, id, *expected_version),
        Op::AddMember { org_id, user_id, role } => orgs::add_member(state, &ctx, org_id, user_id, role),
        Op::SetMemberRole { org_id, user_id, role } => orgs::set_member_role(state, &ctx, org_id, user_id, role),
        Op::RemoveMember { org_id, user_id } => orgs::remove_member(state, &ctx, org_id, user_id),
        Op::CreateRole { org_id, name, permissions } => roles::create_role(state, &ctx, org_id, name, *permissions),
        Op::UpdateRole { org_id, name, permissions, expected_version } => {
            roles::update_role(state, &ctx, org_id, name, *permissions, *expected_version)
        }
        Op::DeleteRole { org_id, name } => roles::delete_role(state, &ctx, org_id, name),
        Op::CreateInvitation { org_id, email, role, expires_at_ms } => {
            invitations::create_invitation(state, &ctx, org_id, email, role, *expires_at_ms)
        }
        Op::RevokeInvitation { org_id, email } => invitations::revoke_invitation(state, &ctx, org_id, email),
        Op::AcceptInvitation { org_id } => invitations::accept_invitation(state, &ctx, org_id),
        Op::CreateIntegration { org_id, name, kind, config } => {
            resources::create_integration(state, &ctx, org_id, name, kind, config)
        }
        Op::UpdateIntegration { org_id, name, set, remove, expected_version } => {
            resources::update_integration(state, &ctx, org_id, name, set, remove, *expected_version)
        }
        Op::DeleteIntegration { org_id, name } => resources::delete_integration(state, org_id, name),
        Op::CreatePhoneNumber { org_id, number, label } => {
            resources::create_phone_number(state, &ctx, org_id, number, label)
        }
        Op::UpdatePhoneNumber { org_id, number, label, expected_version } => {
            resources::update_phone_number(state, &ctx, org_id, number, label, *expected_version)
        }
        Op::DeletePhoneNumber { org_id, number } => resources::delete_phone_number(state, org_id, number),
        Op::CreateApp { org_id, app_id, name, definition, assets, slots } => {
            apps::create_app(state, &ctx, &apps::NewApp { org_id, app_id, name, definition, assets, slots })
        }
        Op::UpdateApp { org_id, app_id, name, definition, slots, expected_version } => {
            let changes =
                apps::AppChanges { name: name.as_deref(), definition: definition.as_deref(), slots: slots.as_ref() };
            apps::update_app(state, &ctx, org_id, app_id, &changes, *expected_version)
        }
        Op::DeleteApp { org_id, app_id, expected_version } => {
            apps::delete_app(state, org_id, app_id, *expected_version)
        }
        Op::BindAppSlot { org_id, app_id, slot, resource_id } => {
            apps::bind_slot(state, &ctx, org_id, app_id, slot, resource_id)
        }
        Op::UnbindAppSlot { org_id, app_id, slot } => apps::unbind_slot(state, &ctx, org_id, app_id, slot),
        Op::PublishApp { org_id, app_id, expected_version } => {
            apps::publish_app(state, org_id, app_id, *expected_version)
        }
        Op::ImportApp { org_id, app_id, name, definition, assets, slots, source_org_id: _, source_region } => {
            let new = apps::NewApp { org_id, app_id, name, definition, assets, slots };
            apps::import_app(state, &ctx, &new, *source_region)
        }
        Op::Relocate { org_id, step } => relocation::apply_step(state, cmd, org_id, step),
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
mod access_tests;
#[cfg(test)]
mod app_tests;
#[cfg(test)]
mod org_tests;
#[cfg(test)]
mod relocation_tests;
#[cfg(test)]
mod test_support;
