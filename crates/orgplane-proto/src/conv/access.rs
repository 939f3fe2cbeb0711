//! The access API: roles and permissions, invitations, integrations, phone numbers and audit
//! events.
//!
//! Integration secrets only go one way: [`parse_config_entries`] turns wire entries marked
//! `secret` into [`ConfigValue::Secret`], and [`integration_to_wire`] starts from the
//! redacted [`IntegrationView`], which has no secret values to give, so an answer cannot hold
//! one.

use orgplane_model::invitation::Invitation;
use orgplane_model::{
    Actor, AuditEvent, AuditFilter, AuditOutcome, ConfigEntry, ConfigValue, CustomRole, IntegrationView, Permission,
    PermissionSet, PhoneNumber, Role, SecretValue,
};

use super::ConvError;
use crate::v1;

/// The most permission names one request may carry; there are far fewer permissions, so more
/// is a malformed request, refused before anything is parsed.
const PERMISSIONS_MAX: usize = 64;

/// Parses a list of permission names (`org.read`, ...) into a set. Duplicates are allowed and
/// collapse; an unknown name is refused, naming it.
pub fn parse_permissions(field: &'static str, names: &[String]) -> Result<PermissionSet, ConvError> {
    if names.len() > PERMISSIONS_MAX {
        return Err(ConvError::new(field, format!("must list at most {PERMISSIONS_MAX} permissions")));
    }
    names.iter().map(|name| name.parse::<Permission>().map_err(|e| ConvError::new(field, e))).collect()
}

fn permission_names(set: PermissionSet) -> Vec<String> {
    set.iter().map(String::from).collect()
}

/// A custom role as the org defines it.
pub fn custom_role_to_wire(role: &CustomRole) -> v1::Role {
    v1::Role {
        org_id: role.org_id.to_string(),
        name: role.name.clone(),
        permissions: permission_names(role.permissions),
        builtin: false,
        version: role.version,
        create_time_ms: role.created_at_ms,
        update_time_ms: role.updated_at_ms,
    }
}

/// The built-in roles with their permissions, in [`Role::BUILTIN`] order.
pub fn builtin_roles_to_wire() -> Vec<v1::Role> {
    Role::BUILTIN
        .iter()
        .map(|role| v1::Role {
            name: role.to_string(),
            permissions: permission_names(role.builtin_permissions().unwrap_or_default()),
            builtin: true,
            ..Default::default()
        })
        .collect()
}

/// Every permission, in catalog order, with the built-in roles that hold it.
pub fn permission_catalog() -> Vec<v1::PermissionInfo> {
    Permission::ALL
        .into_iter()
        .map(|permission| v1::PermissionInfo {
            name: permission.to_string(),
            builtin_roles: Role::BUILTIN
                .iter()
                .filter(|role| role.builtin_permissions().is_some_and(|held| held.contains(permission)))
                .map(Role::to_string)
                .collect(),
        })
        .collect()
}

/// The subject of a user actor; empty for the system.
fn actor_subject(actor: &Actor) -> String {
    actor.subject().unwrap_or_default().to_string()
}

/// An invitation, with its status at `now_ms`.
pub fn invitation_to_wire(invitation: &Invitation, now_ms: u64) -> v1::Invitation {
    v1::Invitation {
        org_id: invitation.org_id.to_string(),
        email: invitation.email.clone(),
        role: invitation.role.to_string(),
        status: invitation.status(now_ms).as_str().to_string(),
        invited_by: actor_subject(&invitation.invited_by),
        create_time_ms: invitation.created_at_ms,
        expire_time_ms: invitation.expires_at_ms,
    }
}

/// Configuration entries of a create or update; `secret` entries become secret values. Keys
/// and values are checked by the model's validation, which never echoes a value.
pub fn parse_config_entries(entries: Vec<v1::ConfigEntry>) -> Vec<ConfigEntry> {
    entries
        .into_iter()
        .map(|entry| ConfigEntry {
            key: entry.key,
            value: if entry.secret {
                ConfigValue::Secret(SecretValue::new(entry.value))
            } else {
                ConfigValue::Plain(entry.value)
            },
        })
        .collect()
}

/// Configuration entries for a create or update request: the one place a secret value is put
/// on the wire, by the client that owns it.
pub fn config_entries_to_wire(entries: &[ConfigEntry]) -> Vec<v1::ConfigEntry> {
    entries
        .iter()
        .map(|entry| match &entry.value {
            ConfigValue::Plain(value) => {
                v1::ConfigEntry { key: entry.key.clone(), value: value.clone(), secret: false }
            }
            ConfigValue::Secret(secret) => {
                v1::ConfigEntry { key: entry.key.clone(), value: secret.expose().to_string(), secret: true }
            }
        })
        .collect()
}

/// An integration as readers see it: plain keys with values, then secret keys flagged and
/// without values.
pub fn integration_to_wire(view: &IntegrationView) -> v1::Integration {
    let plain = view.config.iter().map(|(key, value)| v1::ConfigEntry {
        key: key.clone(),
        value: value.clone(),
        secret: false,
    });
    let secret =
        view.secret_keys.iter().map(|key| v1::ConfigEntry { key: key.clone(), value: String::new(), secret: true });
    v1::Integration {
        org_id: view.org_id.to_string(),
        name: view.name.clone(),
        kind: view.kind.clone(),
        config: plain.chain(secret).collect(),
        version: view.version,
        create_time_ms: view.created_at_ms,
        update_time_ms: view.updated_at_ms,
    }
}

pub fn phone_number_to_wire(number: &PhoneNumber) -> v1::PhoneNumber {
    v1::PhoneNumber {
        org_id: number.org_id.to_string(),
        number: number.number.clone(),
        label: number.label.clone(),
        version: number.version,
        create_time_ms: number.created_at_ms,
        update_time_ms: number.updated_at_ms,
    }
}

pub fn audit_event_to_wire(event: &AuditEvent) -> v1::AuditEvent {
    let (outcome, outcome_message) = match &event.outcome {
        AuditOutcome::Ok => ("ok".to_string(), String::new()),
        AuditOutcome::Refused { code, message } => (code.clone(), message.clone()),
    };
    v1::AuditEvent {
        org_id: event.org_id.to_string(),
        seq: event.seq,
        time_ms: event.at_ms,
        actor: actor_subject(&event.actor),
        actor_platform_admin: matches!(&event.actor, Actor::User(user) if user.platform_admin),
        action: event.action.clone(),
        target_kind: event.target.kind.clone(),
        target_id: event.target.id.clone(),
        detail: event.detail.clone().into_iter().collect(),
        request_id: event.request_id.clone(),
        outcome,
        outcome_message,
    }
}

/// The filter of an audit listing: a time range (`since` inclusive, `until` exclusive) and an
/// actor. An empty range is refused: it is a mistake, not a question.
pub fn parse_audit_filter(request: &v1::ListAuditEventsRequest) -> Result<AuditFilter, ConvError> {
    if let (Some(since), Some(until)) = (request.since_ms, request.until_ms) {
        if since >= until {
            return Err(ConvError::new("until_ms", "must be after since_ms"));
        }
    }
    let actor_subject = match request.actor.as_str() {
        "" => None,
        actor => {
            orgplane_model::validate::user_id(actor).map_err(|e| ConvError::new("actor", e))?;
            Some(actor.to_string())
        }
    };
    Ok(AuditFilter { from_ms: request.since_ms, to_ms: request.until_ms, actor_subject })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use orgplane_model::{AuditTarget, OrgId, Region};

    use super::*;

    fn org() -> OrgId {
        OrgId::from_u128(Region::Eu, 42)
    }

    #[test]
    fn permissions_parse_by_name_and_refuse_unknown_ones() {
        let set =
            parse_permissions("permissions", &["org.read".into(), " AUDIT.read ".into(), "org.read".into()]).unwrap();
        assert_eq!(permission_names(set), ["org.read", "audit.read"]);
        let err = parse_permissions("permissions", &["org.own".into()]).unwrap_err();
        assert_eq!(err.field, "permissions");
        assert!(err.reason.contains("org.own"), "{err}");
        assert!(parse_permissions("permissions", &vec!["org.read".to_string(); 65]).is_err());
        assert!(parse_permissions("permissions", &[]).unwrap().is_empty());
    }

    #[test]
    fn builtin_roles_and_catalog_come_from_the_role_table() {
        let roles = builtin_roles_to_wire();
        assert_eq!(
            roles.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["admin", "developer", "agent", "viewer"]
        );
        assert!(roles.iter().all(|r| r.builtin && r.org_id.is_empty()));
        assert_eq!(roles[0].permissions.len(), Permission::ALL.len());
        let catalog = permission_catalog();
        assert_eq!(catalog.len(), Permission::ALL.len());
        let integrate = catalog.iter().find(|p| p.name == "resources.integrate").unwrap();
        assert_eq!(integrate.builtin_roles, ["admin", "developer"]);
        for role in &roles {
            for name in &role.permissions {
                let entry = catalog.iter().find(|p| &p.name == name).unwrap();
                assert!(entry.builtin_roles.contains(&role.name), "{name} / {}", role.name);
            }
        }
    }

    #[test]
    fn secrets_go_in_and_never_come_out() {
        let entries = parse_config_entries(vec![
            v1::ConfigEntry { key: "region".into(), value: "eu-1".into(), secret: false },
            v1::ConfigEntry { key: "api_key".into(), value: "sk-live-123".into(), secret: true },
        ]);
        assert_eq!(entries, [ConfigEntry::plain("region", "eu-1"), ConfigEntry::secret("api_key", "sk-live-123")]);
        assert_eq!(parse_config_entries(config_entries_to_wire(&entries)), entries);

        let view = IntegrationView {
            org_id: org(),
            name: "crm".into(),
            kind: "salesforce".into(),
            config: BTreeMap::from([("region".to_string(), "eu-1".to_string())]),
            secret_keys: vec!["api_key".into()],
            version: 2,
            created_at_ms: 1,
            updated_at_ms: 3,
        };
        let wire = integration_to_wire(&view);
        assert_eq!(
            wire.config,
            [
                v1::ConfigEntry { key: "region".into(), value: "eu-1".into(), secret: false },
                v1::ConfigEntry { key: "api_key".into(), value: String::new(), secret: true },
            ]
        );
        assert_eq!((wire.name.as_str(), wire.kind.as_str(), wire.version), ("crm", "salesforce", 2));
    }

    #[test]
    fn audit_events_carry_who_what_and_how_it_ended() {
        let event = AuditEvent {
            org_id: org(),
            seq: 7,
            at_ms: 1000,
            actor: Actor::platform_admin("ops"),
            action: "delete_role".into(),
            target: AuditTarget { kind: "role".into(), id: "billing".into() },
            detail: BTreeMap::from([("k".to_string(), "v".to_string())]),
            request_id: "r-1".into(),
            outcome: AuditOutcome::Refused { code: "failed_precondition".into(), message: "in use".into() },
        };
        let wire = audit_event_to_wire(&event);
        assert_eq!((wire.actor.as_str(), wire.actor_platform_admin), ("ops", true));
        assert_eq!((wire.target_kind.as_str(), wire.target_id.as_str()), ("role", "billing"));
        assert_eq!((wire.outcome.as_str(), wire.outcome_message.as_str()), ("failed_precondition", "in use"));
        assert_eq!((wire.seq, wire.time_ms, wire.request_id.as_str()), (7, 1000, "r-1"));
        let system = audit_event_to_wire(&AuditEvent { actor: Actor::System, outcome: AuditOutcome::Ok, ..event });
        assert_eq!((system.actor.as_str(), system.outcome.as_str()), ("", "ok"));
    }

    #[test]
    fn audit_filters_refuse_empty_ranges_and_bad_actors() {
        let request = |since, until, actor: &str| v1::ListAuditEventsRequest {
            since_ms: since,
            until_ms: until,
            actor: actor.into(),
            ..Default::default()
        };
        assert_eq!(parse_audit_filter(&request(None, None, "")).unwrap(), AuditFilter::default());
        let filter = parse_audit_filter(&request(Some(5), Some(9), "alice")).unwrap();
        assert_eq!((filter.from_ms, filter.to_ms, filter.actor_subject.as_deref()), (Some(5), Some(9), Some("alice")));
        assert_eq!(parse_audit_filter(&request(Some(9), Some(9), "")).unwrap_err().field, "until_ms");
        assert_eq!(parse_audit_filter(&request(None, None, "a/b")).unwrap_err().field, "actor");
    }

    #[test]
    fn invitations_say_their_status_at_the_time_asked() {
        let invitation = Invitation {
            org_id: org(),
            email: "bob@example.com".into(),
            role: Role::Developer,
            invited_by: Actor::user("alice"),
            created_at_ms: 10,
            expires_at_ms: 20,
            resolution: None,
        };
        let wire = invitation_to_wire(&invitation, 15);
        assert_eq!(
            (wire.status.as_str(), wire.invited_by.as_str(), wire.role.as_str()),
            ("pending", "alice", "developer")
        );
        assert_eq!(invitation_to_wire(&invitation, 20).status, "expired");
    }
}
