//! `orgctl role|invite|integration|phone|audit ...`: the access API. A refusal for a missing
//! permission prints as `error: PERMISSION_DENIED: ...` with the server's message, which names
//! the permission (for example `resources.integrate`).
//!
//! Secret configuration values (`integration create --secret KEY=VALUE`) go to the server and
//! never come back: answers show secret keys as `KEY=<secret>`.

use clap::Subcommand;
use orgplane_client::{v1, Client, ClientError, Consistency, Page, PageRequest};
use orgplane_model::{AuditFilter, ConfigEntry, Permission, Role};
use serde_json::{json, Value};

use crate::cmd::PAGE_SIZE_RANGE;
use crate::output::{format_time_ms, Answer, Render, Table};

#[derive(Debug, PartialEq, Subcommand)]
pub enum RoleCommand {
    /// Define a custom role with a set of permissions (see `orgctl role permissions`).
    Create {
        org: String,
        name: String,
        #[arg(long = "permission", required = true)]
        permissions: Vec<Permission>,
    },
    /// Replace a custom role's permissions.
    Update {
        org: String,
        name: String,
        #[arg(long = "permission", required = true)]
        permissions: Vec<Permission>,
        #[arg(long)]
        expected_version: Option<u64>,
    },
    /// Delete a custom role nobody holds and no pending invitation offers.
    Delete { org: String, name: String },
    /// The built-in roles, then the org's custom roles.
    List { org: String },
    /// Every permission, and the built-in roles that hold it.
    Permissions,
}

#[derive(Debug, PartialEq, Subcommand)]
pub enum InviteCommand {
    /// Invite an email address into an org with a role (expires after 7 days by default).
    Create {
        org: String,
        email: String,
        #[arg(long)]
        role: Role,
        /// When it expires, in ms since the Unix epoch (at most 30 days ahead).
        #[arg(long)]
        expires_at_ms: Option<u64>,
    },
    /// The org's invitations, of every status.
    List { org: String },
    /// Revoke the pending invitation of an email address.
    Revoke { org: String, email: String },
    /// Accept the invitation addressed to your token's verified email.
    Accept { org: String },
}

#[derive(Debug, PartialEq, Subcommand)]
pub enum IntegrationCommand {
    /// Create an integration.
    Create {
        org: String,
        #[arg(long)]
        kind: String,
        #[arg(long)]
        name: String,
        /// A plain configuration entry, KEY=VALUE (repeatable).
        #[arg(long = "config", value_parser = parse_entry)]
        config: Vec<(String, String)>,
        /// A secret configuration entry, KEY=VALUE (repeatable): stored, never shown again.
        #[arg(long = "secret", value_parser = parse_entry)]
        secrets: Vec<(String, String)>,
    },
    /// Set or remove configuration keys; keys not named keep their values.
    Update {
        org: String,
        name: String,
        #[arg(long = "config", value_parser = parse_entry)]
        config: Vec<(String, String)>,
        #[arg(long = "secret", value_parser = parse_entry)]
        secrets: Vec<(String, String)>,
        /// A key to remove (repeatable).
        #[arg(long = "remove")]
        remove: Vec<String>,
    },
    /// Show one integration (secret keys without their values).
    Get { org: String, name: String },
    /// The org's integrations.
    List { org: String },
    /// Delete an integration.
    Delete { org: String, name: String },
}

#[derive(Debug, PartialEq, Subcommand)]
pub enum PhoneCommand {
    /// Add a phone number in E.164 form (+ and 8 to 15 digits).
    Add {
        org: String,
        number: String,
        #[arg(long, default_value = "")]
        label: String,
    },
    /// The org's phone numbers.
    List { org: String },
    /// Remove a phone number.
    Remove { org: String, number: String },
}

#[derive(Debug, PartialEq, Subcommand)]
pub enum AuditCommand {
    /// The org's audit log in time order.
    List {
        org: String,
        /// Only events at or after this time (ms since the Unix epoch).
        #[arg(long)]
        since: Option<u64>,
        /// Only events before this time (ms since the Unix epoch).
        #[arg(long)]
        until: Option<u64>,
        /// Only events of this user.
        #[arg(long)]
        actor: Option<String>,
        /// Events per page (1 to 1000; default: the server's, 100).
        #[arg(long, value_parser = clap::value_parser!(u32).range(PAGE_SIZE_RANGE))]
        page_size: Option<u32>,
        #[arg(long, conflicts_with = "all")]
        page_token: Option<String>,
        /// Follow the pages to the end.
        #[arg(long, conflicts_with = "page_size")]
        all: bool,
    },
}

/// `KEY=VALUE`, split at the first `=`.
fn parse_entry(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err("expected KEY=VALUE".to_string()),
    }
}

fn entries(config: Vec<(String, String)>, secrets: Vec<(String, String)>) -> Vec<ConfigEntry> {
    let plain = config.into_iter().map(|(k, v)| ConfigEntry::plain(k, v));
    plain.chain(secrets.into_iter().map(|(k, v)| ConfigEntry::secret(k, v))).collect()
}

fn done(json: Value, line: String) -> Box<dyn Render> {
    Box::new(Answer { json, table: line + "\n" })
}

fn next_page(token: &Option<String>) -> String {
    token.as_ref().map(|t| format!("next page token: {t}\n")).unwrap_or_default()
}

fn roles(roles: &[v1::Role]) -> Box<dyn Render> {
    let mut table = Table::new(&["ROLE", "KIND", "PERMISSIONS"]);
    for r in roles {
        table.row([r.name.clone(), if r.builtin { "built-in" } else { "custom" }.into(), r.permissions.join(",")]);
    }
    let json = roles
        .iter()
        .map(|r| json!({ "name": r.name, "builtin": r.builtin, "permissions": r.permissions, "version": r.version }))
        .collect::<Vec<_>>();
    Box::new(Answer { json: json!({ "roles": json }), table: table.render() })
}

fn invitations(invitations: &[v1::Invitation]) -> Box<dyn Render> {
    let mut table = Table::new(&["EMAIL", "ROLE", "STATUS", "INVITED BY", "EXPIRES"]);
    for i in invitations {
        table.row([
            i.email.clone(),
            i.role.clone(),
            i.status.clone(),
            i.invited_by.clone(),
            format_time_ms(i.expire_time_ms),
        ]);
    }
    let json = invitations.iter().map(invitation_json).collect::<Vec<_>>();
    Box::new(Answer { json: json!({ "invitations": json }), table: table.render() })
}

fn invitation_json(i: &v1::Invitation) -> Value {
    json!({
        "org_id": i.org_id, "email": i.email, "role": i.role, "status": i.status,
        "invited_by": i.invited_by, "create_time_ms": i.create_time_ms, "expire_time_ms": i.expire_time_ms,
    })
}

/// `KEY=VALUE` for plain entries, `KEY=<secret>` for secret ones (whose value never comes back).
fn config_text(config: &[v1::ConfigEntry]) -> String {
    let entry =
        |e: &v1::ConfigEntry| if e.secret { format!("{}=<secret>", e.key) } else { format!("{}={}", e.key, e.value) };
    config.iter().map(entry).collect::<Vec<_>>().join(" ")
}

fn integrations(integrations: &[v1::Integration]) -> Box<dyn Render> {
    let mut table = Table::new(&["NAME", "KIND", "VERSION", "CONFIG"]);
    for i in integrations {
        table.row([i.name.clone(), i.kind.clone(), i.version.to_string(), config_text(&i.config)]);
    }
    let json = integrations
        .iter()
        .map(|i| {
            let config: Vec<_> =
                i.config.iter().map(|e| json!({ "key": e.key, "value": e.value, "secret": e.secret })).collect();
            json!({ "org_id": i.org_id, "name": i.name, "kind": i.kind, "version": i.version, "config": config })
        })
        .collect::<Vec<_>>();
    Box::new(Answer { json: json!({ "integrations": json }), table: table.render() })
}

fn phone_numbers(numbers: &[v1::PhoneNumber]) -> Box<dyn Render> {
    let mut table = Table::new(&["NUMBER", "LABEL", "VERSION"]);
    for n in numbers {
        table.row([n.number.clone(), n.label.clone(), n.version.to_string()]);
    }
    let json = numbers
        .iter()
        .map(|n| json!({ "org_id": n.org_id, "number": n.number, "label": n.label, "version": n.version }))
        .collect::<Vec<_>>();
    Box::new(Answer { json: json!({ "phone_numbers": json }), table: table.render() })
}

fn audit_events(page: &Page<v1::AuditEvent>) -> Box<dyn Render> {
    let mut table = Table::new(&["TIME", "ACTOR", "ACTION", "TARGET", "OUTCOME", "REQUEST ID"]);
    for e in &page.items {
        let actor = if e.actor.is_empty() { "system".to_string() } else { e.actor.clone() };
        table.row([
            format_time_ms(e.time_ms),
            actor,
            e.action.clone(),
            format!("{} {}", e.target_kind, e.target_id),
            e.outcome.clone(),
            e.request_id.clone(),
        ]);
    }
    let json = page
        .items
        .iter()
        .map(|e| {
            json!({
                "seq": e.seq, "time_ms": e.time_ms, "actor": e.actor, "action": e.action,
                "target_kind": e.target_kind, "target_id": e.target_id, "detail": e.detail,
                "request_id": e.request_id, "outcome": e.outcome, "outcome_message": e.outcome_message,
            })
        })
        .collect::<Vec<_>>();
    Box::new(Answer {
        json: json!({ "events": json, "next_page_token": page.next_page_token }),
        table: table.render() + &next_page(&page.next_page_token),
    })
}

pub async fn run_role(client: &Client, command: RoleCommand) -> Result<Box<dyn Render>, ClientError> {
    Ok(match command {
        RoleCommand::Create { org, name, permissions } => {
            roles(&[client.create_role(&org, &name, &permissions).await?])
        }
        RoleCommand::Update { org, name, permissions, expected_version } => {
            roles(&[client.update_role(&org, &name, &permissions, expected_version).await?])
        }
        RoleCommand::Delete { org, name } => {
            client.delete_role(&org, &name).await?;
            done(json!({ "deleted": { "org_id": org, "role": name } }), format!("deleted role {name} of org {org}"))
        }
        RoleCommand::List { org } => roles(&client.list_all_roles(&org, Consistency::Linearizable).await?.items),
        RoleCommand::Permissions => {
            let catalog = client.list_permissions().await?;
            let mut table = Table::new(&["PERMISSION", "BUILT-IN ROLES"]);
            for p in &catalog {
                table.row([p.name.clone(), p.builtin_roles.join(",")]);
            }
            let json: Vec<_> =
                catalog.iter().map(|p| json!({ "name": p.name, "builtin_roles": p.builtin_roles })).collect();
            Box::new(Answer { json: json!({ "permissions": json }), table: table.render() })
        }
    })
}

pub async fn run_invite(client: &Client, command: InviteCommand) -> Result<Box<dyn Render>, ClientError> {
    Ok(match command {
        InviteCommand::Create { org, email, role, expires_at_ms } => {
            invitations(&[client.create_invitation(&org, &email, role, expires_at_ms).await?])
        }
        InviteCommand::List { org } => {
            invitations(&client.list_all_invitations(&org, Consistency::Linearizable).await?.items)
        }
        InviteCommand::Revoke { org, email } => invitations(&[client.revoke_invitation(&org, &email).await?]),
        InviteCommand::Accept { org } => {
            let member = client.accept_invitation(&org).await?;
            let line = format!("joined org {} as {} ({})", member.org_id, member.user_id, member.role);
            done(json!({ "member": { "org_id": member.org_id, "user_id": member.user_id, "role": member.role } }), line)
        }
    })
}

pub async fn run_integration(client: &Client, command: IntegrationCommand) -> Result<Box<dyn Render>, ClientError> {
    Ok(match command {
        IntegrationCommand::Create { org, kind, name, config, secrets } => {
            integrations(&[client.create_integration(&org, &name, &kind, &entries(config, secrets)).await?])
        }
        IntegrationCommand::Update { org, name, config, secrets, remove } => {
            integrations(&[client.update_integration(&org, &name, &entries(config, secrets), &remove, None).await?])
        }
        IntegrationCommand::Get { org, name } => {
            integrations(&[client.get_integration(&org, &name, Consistency::Linearizable).await?])
        }
        IntegrationCommand::List { org } => {
            integrations(&client.list_all_integrations(&org, Consistency::Linearizable).await?.items)
        }
        IntegrationCommand::Delete { org, name } => {
            client.delete_integration(&org, &name).await?;
            done(json!({ "deleted": { "org_id": org, "integration": name } }), format!("deleted integration {name}"))
        }
    })
}

pub async fn run_phone(client: &Client, command: PhoneCommand) -> Result<Box<dyn Render>, ClientError> {
    Ok(match command {
        PhoneCommand::Add { org, number, label } => {
            phone_numbers(&[client.create_phone_number(&org, &number, &label).await?])
        }
        PhoneCommand::List { org } => {
            phone_numbers(&client.list_all_phone_numbers(&org, Consistency::Linearizable).await?.items)
        }
        PhoneCommand::Remove { org, number } => {
            client.delete_phone_number(&org, &number).await?;
            done(json!({ "deleted": { "org_id": org, "number": number } }), format!("removed {number} from org {org}"))
        }
    })
}

pub async fn run_audit(client: &Client, command: AuditCommand) -> Result<Box<dyn Render>, ClientError> {
    let AuditCommand::List { org, since, until, actor, page_size, page_token, all } = command;
    let filter = AuditFilter { from_ms: since, to_ms: until, actor_subject: actor };
    let page = if all {
        client.list_all_audit_events(&org, &filter, Consistency::Linearizable).await?
    } else {
        let request = PageRequest { page_size: page_size.unwrap_or(0), page_token, ..PageRequest::default() };
        client.list_audit_events(&org, &filter, request).await?
    };
    Ok(audit_events(&page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_split_at_the_first_equals_sign() {
        assert_eq!(parse_entry("url=https://x?a=b"), Ok(("url".into(), "https://x?a=b".into())));
        assert_eq!(parse_entry("empty="), Ok(("empty".into(), String::new())));
        assert!(parse_entry("=v").is_err());
        assert!(parse_entry("novalue").is_err());
        let made = entries(vec![("a".into(), "1".into())], vec![("k".into(), "s".into())]);
        assert_eq!(made, [ConfigEntry::plain("a", "1"), ConfigEntry::secret("k", "s")]);
    }

    #[test]
    fn secret_keys_print_without_values() {
        let integration = v1::Integration {
            name: "sms".into(),
            kind: "twilio".into(),
            config: vec![
                v1::ConfigEntry { key: "account".into(), value: "AC-1".into(), secret: false },
                v1::ConfigEntry { key: "token".into(), value: String::new(), secret: true },
            ],
            ..Default::default()
        };
        let answer = integrations(&[integration]);
        assert!(answer.table().contains("account=AC-1 token=<secret>"), "{}", answer.table());
        assert_eq!(answer.json()["integrations"][0]["config"][1]["secret"], true);
    }

    #[test]
    fn audit_rows_name_actor_action_target_outcome_and_request_id() {
        let event = v1::AuditEvent {
            time_ms: 0,
            actor: "alice".into(),
            action: "create_role".into(),
            target_kind: "role".into(),
            target_id: "support".into(),
            request_id: "r-1".into(),
            outcome: "ok".into(),
            ..Default::default()
        };
        let page = Page { items: vec![event], next_page_token: Some("t".into()), read: None };
        let table = audit_events(&page).table();
        let row = table.lines().nth(1).unwrap();
        for cell in ["alice", "create_role", "role support", "ok", "r-1"] {
            assert!(row.contains(cell), "{cell} not in {row:?}");
        }
        assert!(table.ends_with("next page token: t\n"), "{table}");
    }
}
