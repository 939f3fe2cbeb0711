//! Integrations and phone numbers: ops and queries. Queries answer [`IntegrationView`]s only;
//! the stored [`Integration`] with its secrets never leaves this module.

use std::collections::BTreeMap;

use super::orgs::require_org;
use super::{check_version, encode, keys, list_page, load, Ctx, QueryError, StateRead, StateWrite, StorageFault};
use crate::command::CommandOutcome;
use crate::error::DomainError;
use crate::id::OrgId;
use crate::resource::{ConfigEntry, Integration, IntegrationView, PhoneNumber};
use crate::validate;

pub(super) fn create_integration(
    state: &mut impl StateWrite,
    ctx: &Ctx,
    org_id: &OrgId,
    name: &str,
    kind: &str,
    config: &[ConfigEntry],
) -> Result<CommandOutcome, QueryError> {
    validate::resource_name("name", name)?;
    validate::resource_name("kind", kind)?;
    validate::config_entries(config)?;
    require_org(state, org_id)?;
    if load_integration(state, org_id, name)?.is_some() {
        return Err(DomainError::already_exists("integration", format!("{name} of org {org_id}")).into());
    }
    let mut integration = Integration {
        org_id: org_id.clone(),
        name: name.to_string(),
        kind: kind.to_string(),
        config: BTreeMap::new(),
        secrets: BTreeMap::new(),
        version: 1,
        created_at_ms: ctx.now_ms,
        updated_at_ms: ctx.now_ms,
    };
    for entry in config {
        integration.set(entry);
    }
    state.put(keys::integration(org_id, name), encode(&integration));
    Ok(CommandOutcome::Integration(integration.view()))
}

pub(super) fn update_integration(
    state: &mut impl StateWrite,
    ctx: &Ctx,
    org_id: &OrgId,
    name: &str,
    set: &[ConfigEntry],
    remove: &[String],
    expected_version: Option<u64>,
) -> Result<CommandOutcome, QueryError> {
    validate::resource_name("name", name)?;
    validate::config_entries(set)?;
    for key in remove {
        validate::config_key(key)?;
        if set.iter().any(|e| &e.key == key) {
            return Err(DomainError::InvalidArgument {
                field: "remove".into(),
                reason: format!("key {key:?} is both set and removed"),
            }
            .into());
        }
    }
    let Some(mut integration) = load_integration(state, org_id, name)? else {
        require_org(state, org_id)?;
        return Err(DomainError::not_found("integration", format!("{name} of org {org_id}")).into());
    };
    check_version("integration", name, expected_version, integration.version)?;
    for entry in set {
        integration.set(entry);
    }
    for key in remove {
        integration.remove(key);
    }
    if integration.key_count() > validate::CONFIG_MAX_KEYS {
        return Err(DomainError::InvalidArgument {
            field: "config".into(),
            reason: format!("must have at most {} keys", validate::CONFIG_MAX_KEYS),
        }
        .into());
    }
    integration.version += 1;
    integration.updated_at_ms = ctx.now_ms;
    state.put(keys::integration(org_id, name), encode(&integration));
    Ok(CommandOutcome::Integration(integration.view()))
}

pub(super) fn delete_integration(
    state: &mut impl StateWrite,
    org_id: &OrgId,
    name: &str,
) -> Result<CommandOutcome, QueryError> {
    validate::resource_name("name", name)?;
    if load_integration(state, org_id, name)?.is_none() {
        require_org(state, org_id)?;
        return Err(DomainError::not_found("integration", format!("{name} of org {org_id}")).into());
    }
    super::apps::check_unbound(state, org_id, "ig", "integration", name)?;
    state.delete(keys::integration(org_id, name));
    Ok(CommandOutcome::IntegrationDeleted)
}

pub(super) fn create_phone_number(
    state: &mut impl StateWrite,
    ctx: &Ctx,
    org_id: &OrgId,
    number: &str,
    label: &str,
) -> Result<CommandOutcome, QueryError> {
    validate::phone_number(number)?;
    let label = validate::label(label)?;
    require_org(state, org_id)?;
    if get_phone_number(state, org_id, number)?.is_some() {
        return Err(DomainError::already_exists("phone number", format!("{number} of org {org_id}")).into());
    }
    let phone = PhoneNumber {
        org_id: org_id.clone(),
        number: number.to_string(),
        label,
        version: 1,
        created_at_ms: ctx.now_ms,
        updated_at_ms: ctx.now_ms,
    };
    state.put(keys::phone_number(org_id, number), encode(&phone));
    Ok(CommandOutcome::PhoneNumber(phone))
}

pub(super) fn update_phone_number(
    state: &mut impl StateWrite,
    ctx: &Ctx,
    org_id: &OrgId,
    number: &str,
    label: &str,
    expected_version: Option<u64>,
) -> Result<CommandOutcome, QueryError> {
    validate::phone_number(number)?;
    let label = validate::label(label)?;
    let mut phone = require_phone_number(state, org_id, number)?;
    check_version("phone number", number, expected_version, phone.version)?;
    phone.label = label;
    phone.version += 1;
    phone.updated_at_ms = ctx.now_ms;
    state.put(keys::phone_number(org_id, number), encode(&phone));
    Ok(CommandOutcome::PhoneNumber(phone))
}

pub(super) fn delete_phone_number(
    state: &mut impl StateWrite,
    org_id: &OrgId,
    number: &str,
) -> Result<CommandOutcome, QueryError> {
    validate::phone_number(number)?;
    require_phone_number(state, org_id, number)?;
    super::apps::check_unbound(state, org_id, "pn", "phone number", number)?;
    state.delete(keys::phone_number(org_id, number));
    Ok(CommandOutcome::PhoneNumberDeleted)
}

fn require_phone_number(state: &impl StateRead, org_id: &OrgId, number: &str) -> Result<PhoneNumber, QueryError> {
    if let Some(phone) = get_phone_number(state, org_id, number)? {
        return Ok(phone);
    }
    require_org(state, org_id)?;
    Err(DomainError::not_found("phone number", format!("{number} of org {org_id}")).into())
}

/// The stored integration, secrets included: for this module only.
fn load_integration(state: &impl StateRead, org: &OrgId, name: &str) -> Result<Option<Integration>, StorageFault> {
    if name.contains('/') {
        return Ok(None);
    }
    load(state, &keys::integration(org, name))
}

// ---- queries

/// The integration `name` of `org`, secrets redacted.
pub fn get_integration(
    state: &impl StateRead,
    org: &OrgId,
    name: &str,
) -> Result<Option<IntegrationView>, StorageFault> {
    Ok(load_integration(state, org, name)?.map(|i| i.view()))
}

/// One page of the org's integrations in name order, secrets redacted. NotFound when the org
/// does not exist.
pub fn list_integrations(
    state: &impl StateRead,
    org: &OrgId,
    after_name: Option<&str>,
    limit: usize,
) -> Result<(Vec<IntegrationView>, Option<String>), QueryError> {
    require_org(state, org)?;
    let (page, next) = list_page::<Integration>(state, &keys::integration_prefix(org), after_name, limit)?;
    Ok((page.iter().map(Integration::view).collect(), next))
}

/// The phone number of `org`, if it has it.
pub fn get_phone_number(
    state: &impl StateRead,
    org: &OrgId,
    number: &str,
) -> Result<Option<PhoneNumber>, StorageFault> {
    if number.contains('/') {
        return Ok(None);
    }
    load(state, &keys::phone_number(org, number))
}

/// One page of the org's phone numbers in number order. NotFound when the org does not exist.
pub fn list_phone_numbers(
    state: &impl StateRead,
    org: &OrgId,
    after_number: Option<&str>,
    limit: usize,
) -> Result<(Vec<PhoneNumber>, Option<String>), QueryError> {
    require_org(state, org)?;
    Ok(list_page(state, &keys::phone_number_prefix(org), after_number, limit)?)
}
