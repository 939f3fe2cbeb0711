//! Apps: their ops (create, update, delete, bind, unbind, publish, import) and queries.
//!
//! Every binding is also kept in an index, `ab/{org}/{pn|ig}/{resource}/{app}/{slot}`, so
//! deleting a resource can refuse in one short scan while an app binds it, without reading
//! every app of the org.

use std::collections::BTreeMap;

use super::orgs::require_org;
use super::resources::{get_integration, get_phone_number};
use super::{check_version, encode, keys, list_page, load, Ctx, QueryError, StateRead, StateWrite};
use crate::app::{App, AppId, ResourceKind, Slot};
use crate::command::CommandOutcome;
use crate::error::DomainError;
use crate::id::OrgId;
use crate::region::Region;
use crate::state::StorageFault;
use crate::validate;

/// Everything a new app is made of, as a create or an import gives it.
pub(super) struct NewApp<'a> {
    pub org_id: &'a OrgId,
    pub app_id: &'a AppId,
    pub name: &'a str,
    pub definition: &'a str,
    pub assets: &'a BTreeMap<String, Vec<u8>>,
    pub slots: &'a BTreeMap<String, ResourceKind>,
}

pub(super) fn create_app(state: &mut impl StateWrite, ctx: &Ctx, new: &NewApp) -> Result<CommandOutcome, QueryError> {
    let app = new_app(state, ctx, new)?;
    state.put(keys::app(new.org_id, new.app_id), encode(&app));
    Ok(CommandOutcome::App(app.summary()))
}

/// Imports an app: a create whose slots all arrive unbound, refused unless the org's
/// residency policy allows the region it was exported from.
pub(super) fn import_app(
    state: &mut impl StateWrite,
    ctx: &Ctx,
    new: &NewApp,
    source_region: Region,
) -> Result<CommandOutcome, QueryError> {
    let org = require_org(state, new.org_id)?;
    if !org.allows_import_from(source_region) {
        return Err(DomainError::failed_precondition(residency_refusal(&org.id, source_region)).into());
    }
    create_app(state, ctx, new)
}

/// Why an import from `source` into `org` is refused, and how to allow it.
pub fn residency_refusal(org: &OrgId, source: Region) -> String {
    format!(
        "org {org} does not allow importing apps from region {source}; an admin can allow it with \
         `orgctl org update {org} --allow-import-from {source}` (UpdateOrg allowed_import_regions)"
    )
}

fn new_app(state: &impl StateRead, ctx: &Ctx, new: &NewApp) -> Result<App, QueryError> {
    let name = validate::app_name(new.name)?;
    let definition = validate::app_definition(new.definition)?;
    validate::app_slots(new.slots.keys())?;
    validate::app_assets(new.assets)?;
    require_org(state, new.org_id)?;
    if load::<App>(state, &keys::app(new.org_id, new.app_id))?.is_some() {
        return Err(DomainError::already_exists("app", format!("{} of org {}", new.app_id, new.org_id)).into());
    }
    Ok(App {
        id: new.app_id.clone(),
        org_id: new.org_id.clone(),
        name,
        definition,
        assets: new.assets.clone(),
        slots: new
            .slots
            .iter()
            .map(|(name, kind)| (name.clone(), Slot { kind: kind.clone(), binding: None }))
            .collect(),
        version: 1,
        published_version: None,
        created_at_ms: ctx.now_ms,
        updated_at_ms: ctx.now_ms,
    })
}

/// What an update changes; `None` keeps that part.
pub(super) struct AppChanges<'a> {
    pub name: Option<&'a str>,
    pub definition: Option<&'a str>,
    pub slots: Option<&'a BTreeMap<String, ResourceKind>>,
}

pub(super) fn update_app(
    state: &mut impl StateWrite,
    ctx: &Ctx,
    org_id: &OrgId,
    app_id: &AppId,
    changes: &AppChanges,
    expected_version: Option<u64>,
) -> Result<CommandOutcome, QueryError> {
    let name = changes.name.map(validate::app_name).transpose()?;
    let definition = changes.definition.map(validate::app_definition).transpose()?;
    let slots = changes.slots;
    if let Some(slots) = slots {
        validate::app_slots(slots.keys())?;
    }
    let mut app = require_app(state, org_id, app_id)?;
    check_version("app", app_id.as_str(), expected_version, app.version)?;
    if let Some(name) = name {
        app.name = name;
    }
    if let Some(definition) = definition {
        app.definition = definition;
    }
    if let Some(slots) = slots {
        let mut next = BTreeMap::new();
        for (slot, kind) in slots {
            let binding = match app.slots.get(slot) {
                Some(old) if old.kind == *kind => old.binding.clone(),
                _ => None,
            };
            next.insert(slot.clone(), Slot { kind: kind.clone(), binding });
        }
        for (slot, old) in &app.slots {
            if let Some(resource) = &old.binding {
                if next.get(slot).and_then(|s| s.binding.as_ref()).is_none() {
                    state.delete(keys::app_binding(org_id, &old.kind, resource, app_id, slot));
                }
            }
        }
        app.slots = next;
    }
    save(state, ctx, &mut app);
    Ok(CommandOutcome::App(app.summary()))
}

pub(super) fn delete_app(
    state: &mut impl StateWrite,
    org_id: &OrgId,
    app_id: &AppId,
    expected_version: Option<u64>,
) -> Result<CommandOutcome, QueryError> {
    let app = require_app(state, org_id, app_id)?;
    check_version("app", app_id.as_str(), expected_version, app.version)?;
    for (slot, s) in &app.slots {
        if let Some(resource) = &s.binding {
            state.delete(keys::app_binding(org_id, &s.kind, resource, app_id, slot));
        }
    }
    state.delete(keys::app(org_id, app_id));
    Ok(CommandOutcome::AppDeleted)
}

pub(super) fn bind_slot(
    state: &mut impl StateWrite,
    ctx: &Ctx,
    org_id: &OrgId,
    app_id: &AppId,
    slot: &str,
    resource_id: &str,
) -> Result<CommandOutcome, QueryError> {
    let mut app = require_app(state, org_id, app_id)?;
    let kind = require_slot(&app, slot)?.kind.clone();
    check_resource(state, org_id, &kind, resource_id)?;
    if let Some(old) = app.slots.get(slot).and_then(|s| s.binding.clone()) {
        state.delete(keys::app_binding(org_id, &kind, &old, app_id, slot));
    }
    if let Some(s) = app.slots.get_mut(slot) {
        s.binding = Some(resource_id.to_string());
    }
    state.put(keys::app_binding(org_id, &kind, resource_id, app_id, slot), Vec::new());
    save(state, ctx, &mut app);
    Ok(CommandOutcome::App(app.summary()))
}

pub(super) fn unbind_slot(
    state: &mut impl StateWrite,
    ctx: &Ctx,
    org_id: &OrgId,
    app_id: &AppId,
    slot: &str,
) -> Result<CommandOutcome, QueryError> {
    let mut app = require_app(state, org_id, app_id)?;
    let kind = require_slot(&app, slot)?.kind.clone();
    if let Some(old) = app.slots.get_mut(slot).and_then(|s| s.binding.take()) {
        state.delete(keys::app_binding(org_id, &kind, &old, app_id, slot));
    }
    save(state, ctx, &mut app);
    Ok(CommandOutcome::App(app.summary()))
}

pub(super) fn publish_app(
    state: &mut impl StateWrite,
    org_id: &OrgId,
    app_id: &AppId,
    expected_version: Option<u64>,
) -> Result<CommandOutcome, QueryError> {
    let mut app = require_app(state, org_id, app_id)?;
    check_version("app", app_id.as_str(), expected_version, app.version)?;
    let unbound = app.unbound_slots();
    let mut missing = Vec::new();
    for (slot, s) in &app.slots {
        if let Some(resource) = &s.binding {
            if check_resource(state, org_id, &s.kind, resource).is_err() {
                missing.push(format!("{slot} (bound to {resource}, which no longer exists)"));
            }
        }
    }
    if !unbound.is_empty() || !missing.is_empty() {
        let mut problems = Vec::new();
        if !unbound.is_empty() {
            problems.push(format!("unbound slots: {}", unbound.join(", ")));
        }
        if !missing.is_empty() {
            problems.push(format!("slots bound to missing resources: {}", missing.join(", ")));
        }
        return Err(DomainError::failed_precondition(format!(
            "app {app_id} cannot be published: {}; bind them with BindAppSlot first",
            problems.join("; ")
        ))
        .into());
    }
    // Neither the version nor the update time changes: publishing changes no content, and an
    // export of the version stays byte for byte the same.
    app.published_version = Some(app.version);
    state.put(keys::app(org_id, app_id), encode(&app));
    Ok(CommandOutcome::App(app.summary()))
}

/// Bumps the version and writes the app.
fn save(state: &mut impl StateWrite, ctx: &Ctx, app: &mut App) {
    app.version += 1;
    app.updated_at_ms = ctx.now_ms;
    state.put(keys::app(&app.org_id, &app.id), encode(app));
}

fn require_app(state: &impl StateRead, org_id: &OrgId, app_id: &AppId) -> Result<App, QueryError> {
    if let Some(app) = get_app(state, org_id, app_id)? {
        return Ok(app);
    }
    require_org(state, org_id)?;
    Err(DomainError::not_found("app", format!("{app_id} of org {org_id}")).into())
}

fn require_slot<'a>(app: &'a App, slot: &str) -> Result<&'a Slot, DomainError> {
    validate::slot_name(slot)?;
    app.slots.get(slot).ok_or_else(|| DomainError::not_found("slot", format!("{slot} of app {}", app.id)))
}

/// Ok when `resource_id` names a resource of `org_id` of `kind`: NotFound when the org has no
/// such resource, FailedPrecondition when it has one of another kind.
fn check_resource(
    state: &impl StateRead,
    org_id: &OrgId,
    kind: &ResourceKind,
    resource_id: &str,
) -> Result<(), QueryError> {
    match kind {
        ResourceKind::PhoneNumber => {
            if get_phone_number(state, org_id, resource_id)?.is_none() {
                return Err(DomainError::not_found("phone number", format!("{resource_id} of org {org_id}")).into());
            }
        }
        ResourceKind::Integration(wanted) => {
            let Some(integration) = get_integration(state, org_id, resource_id)? else {
                return Err(DomainError::not_found("integration", format!("{resource_id} of org {org_id}")).into());
            };
            if integration.kind != *wanted {
                return Err(DomainError::failed_precondition(format!(
                    "integration {resource_id} is of kind {}, but the slot needs {kind}",
                    integration.kind
                ))
                .into());
            }
        }
    }
    Ok(())
}

/// The first app slot that binds the resource, as `(app id, slot)`: deleting a bound resource
/// is refused while there is one.
pub(super) fn first_binding(
    state: &impl StateRead,
    org_id: &OrgId,
    tag: &str,
    resource_id: &str,
) -> Result<Option<(String, String)>, StorageFault> {
    let prefix = keys::app_binding_prefix(org_id, tag, resource_id);
    let rows = state.scan(&prefix, &keys::prefix_end(&prefix), 1)?;
    Ok(rows.first().and_then(|(key, _)| {
        let rest = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
        rest.split_once('/').map(|(app, slot)| (app.to_string(), slot.to_string()))
    }))
}

/// Refuses deleting a resource that an app's slot binds, naming the app and the slot.
pub(super) fn check_unbound(
    state: &impl StateRead,
    org_id: &OrgId,
    tag: &str,
    what: &str,
    resource_id: &str,
) -> Result<(), QueryError> {
    if let Some((app, slot)) = first_binding(state, org_id, tag, resource_id)? {
        return Err(DomainError::failed_precondition(format!(
            "{what} {resource_id} is bound to slot {slot} of app {app}; unbind it (or delete the app) first"
        ))
        .into());
    }
    Ok(())
}

/// Every key of the org's apps and bindings, for deleting the org.
pub(super) fn app_keys(state: &impl StateRead, org_id: &OrgId) -> Result<Vec<Vec<u8>>, StorageFault> {
    let mut out = Vec::new();
    for prefix in [keys::app_prefix(org_id), keys::app_binding_org_prefix(org_id)] {
        let end = keys::prefix_end(&prefix);
        let mut start = prefix.clone();
        loop {
            let rows = state.scan(&start, &end, 256)?;
            let done = rows.len() < 256;
            if let Some((last, _)) = rows.last() {
                start = super::key_after(last);
            }
            out.extend(rows.into_iter().map(|(k, _)| k));
            if done {
                break;
            }
        }
    }
    Ok(out)
}

// ---- queries

/// The app of `org`, if it has it.
pub fn get_app(state: &impl StateRead, org: &OrgId, app: &AppId) -> Result<Option<App>, StorageFault> {
    load(state, &keys::app(org, app))
}

/// One page of the org's apps in id (creation) order. NotFound when the org does not exist.
pub fn list_apps(
    state: &impl StateRead,
    org: &OrgId,
    after_app: Option<&str>,
    limit: usize,
) -> Result<(Vec<App>, Option<String>), QueryError> {
    require_org(state, org)?;
    Ok(list_page(state, &keys::app_prefix(org), after_app, limit)?)
}
