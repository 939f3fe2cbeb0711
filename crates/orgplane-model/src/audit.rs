//! The audit log: one [`AuditEvent`] per mutating command, written by `apply` in the same
//! state change as the command's effects (so in the same Raft entry and the same atomic batch),
//! in the org's own region.
//!
//! - Every command that gets past request-id deduplication leaves an event, whether it
//!   succeeded or was refused, as long as the org exists before or after it. Refusals about
//!   orgs that do not exist leave nothing: there is no org whose log could hold them, and
//!   writing one would let anyone grow the state with made-up ids. A retry answered from the
//!   request-id record is the same command, so it leaves no second event.
//! - Events never hold secret values: the target and detail are built from names only
//!   ([`describe`]), and refusal messages never echo configuration values.
//! - Deleting an org does not delete its log: the `delete_org` event is its last entry, and
//!   platform admins can still read it. A retention sweep (by age, for live and deleted orgs
//!   alike) is not built yet; until then the log stays.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::actor::Actor;
use crate::command::Op;
use crate::error::DomainError;
use crate::id::OrgId;
use crate::resource::ConfigValue;

/// One entry of an org's audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub org_id: OrgId,
    /// The org's event counter: with `at_ms`, the event's place in the log. Increases by one
    /// per event, so events of one millisecond keep their order, and so does the log if a new
    /// leader's clock is behind the old one's.
    pub seq: u64,
    /// The command's `issued_at_ms`.
    pub at_ms: u64,
    pub actor: Actor,
    /// The op's stable name ([`Op::kind`]), for example `add_member`.
    pub action: String,
    pub target: AuditTarget,
    /// Safe facts about the change (a role name, the names of configuration keys); never a
    /// configuration value.
    pub detail: BTreeMap<String, String>,
    pub request_id: String,
    pub outcome: AuditOutcome,
}

/// What a command acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditTarget {
    /// `org`, `member`, `role`, `invitation`, `integration`, `phone_number` or `app`.
    pub kind: String,
    /// The org id, user id, role name, email, integration name, number or app id.
    pub id: String,
}

/// How the command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Ok,
    /// Refused: [`DomainError::code`] and its message.
    Refused {
        code: String,
        message: String,
    },
}

impl AuditOutcome {
    pub fn of<T>(result: &Result<T, DomainError>) -> AuditOutcome {
        match result {
            Ok(_) => AuditOutcome::Ok,
            Err(e) => AuditOutcome::Refused { code: e.code().to_string(), message: e.to_string() },
        }
    }
}

/// Which events a listing returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only events at or after this time (ms since the epoch).
    pub from_ms: Option<u64>,
    /// Only events before this time.
    pub to_ms: Option<u64>,
    /// Only events of the user with this subject (system events never match).
    pub actor_subject: Option<String>,
}

/// The target and detail of `op`'s event, from names only.
pub fn describe(op: &Op, actor: &Actor) -> (AuditTarget, BTreeMap<String, String>) {
    let target = |kind: &str, id: &str| AuditTarget { kind: kind.to_string(), id: clip(id) };
    let mut detail = BTreeMap::new();
    let mut note = |key: &str, value: String| {
        detail.insert(key.to_string(), clip(&value));
    };
    let target = match op {
        Op::CreateOrg { id, name } => {
            note("name", name.clone());
            target("org", &id.to_string())
        }
        Op::UpdateOrg { id, name, allowed_import_regions, .. } => {
            if let Some(name) = name {
                note("name", name.clone());
            }
            if let Some(regions) = allowed_import_regions {
                note("allowed_import_regions", join(regions.iter().map(|r| r.as_str())));
            }
            target("org", &id.to_string())
        }
        Op::DeleteOrg { id, .. } => target("org", &id.to_string()),
        Op::Relocate { org_id, step } => {
            note("step", step.name().to_string());
            note("move_id", step.move_id().to_string());
            target("org", &org_id.to_string())
        }
        Op::AddMember { user_id, role, .. } | Op::SetMemberRole { user_id, role, .. } => {
            note("role", role.to_string());
            target("member", user_id)
        }
        Op::RemoveMember { user_id, .. } => target("member", user_id),
        Op::CreateRole { name, permissions, .. } | Op::UpdateRole { name, permissions, .. } => {
            note("permissions", permissions.to_string());
            target("role", name)
        }
        Op::DeleteRole { name, .. } => target("role", name),
        Op::CreateInvitation { email, role, expires_at_ms, .. } => {
            note("role", role.to_string());
            if let Some(at) = expires_at_ms {
                note("expires_at_ms", at.to_string());
            }
            target("invitation", email)
        }
        Op::RevokeInvitation { email, .. } => target("invitation", email),
        Op::AcceptInvitation { .. } => {
            let email = match actor {
                Actor::User(user) => user.verified_email.clone().unwrap_or_default(),
                Actor::System => String::new(),
            };
            target("invitation", &email)
        }
        Op::CreateIntegration { name, kind, config, .. } => {
            note("kind", kind.clone());
            let (plain, secret): (Vec<_>, Vec<_>) =
                config.iter().partition(|e| matches!(e.value, ConfigValue::Plain(_)));
            note("keys", join(plain.iter().map(|e| e.key.as_str())));
            note("secret_keys", join(secret.iter().map(|e| e.key.as_str())));
            target("integration", name)
        }
        Op::UpdateIntegration { name, set, remove, .. } => {
            note("set_keys", join(set.iter().map(|e| e.key.as_str())));
            note("removed_keys", join(remove.iter().map(String::as_str)));
            target("integration", name)
        }
        Op::DeleteIntegration { name, .. } => target("integration", name),
        Op::CreatePhoneNumber { number, label, .. } | Op::UpdatePhoneNumber { number, label, .. } => {
            note("label", label.clone());
            target("phone_number", number)
        }
        Op::DeletePhoneNumber { number, .. } => target("phone_number", number),
        Op::CreateApp { app_id, name, slots, .. } => {
            note("name", name.clone());
            note("slots", join(slots.keys().map(String::as_str)));
            target("app", app_id.as_str())
        }
        Op::UpdateApp { app_id, name, slots, .. } => {
            if let Some(name) = name {
                note("name", name.clone());
            }
            if let Some(slots) = slots {
                note("slots", join(slots.keys().map(String::as_str)));
            }
            target("app", app_id.as_str())
        }
        Op::DeleteApp { app_id, .. } | Op::PublishApp { app_id, .. } => target("app", app_id.as_str()),
        Op::BindAppSlot { app_id, slot, resource_id, .. } => {
            note("slot", slot.clone());
            note("resource", resource_id.clone());
            target("app", app_id.as_str())
        }
        Op::UnbindAppSlot { app_id, slot, .. } => {
            note("slot", slot.clone());
            target("app", app_id.as_str())
        }
        Op::ImportApp { app_id, name, slots, source_org_id, source_region, .. } => {
            note("name", name.clone());
            note("slots", join(slots.keys().map(String::as_str)));
            note("source_org_id", source_org_id.clone());
            note("source_region", source_region.to_string());
            target("app", app_id.as_str())
        }
    };
    (target, detail)
}

/// The longest target id or detail value an event keeps, in characters: a refused command may
/// carry input far over the limits, and the log need not keep all of it.
pub const AUDIT_FIELD_MAX_CHARS: usize = 256;

fn clip(text: &str) -> String {
    text.chars().take(AUDIT_FIELD_MAX_CHARS).collect()
}

fn join<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(",")
}
