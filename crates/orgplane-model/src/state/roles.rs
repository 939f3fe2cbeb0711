//! Custom roles: ops (within what the actor may grant; built-in names reserved; a role in use
//! stays) and queries.

use super::orgs::require_org;
use super::{
    check_version, encode, keys, list_page, load, scan_all, Ctx, QueryError, StateRead, StateWrite, StorageFault,
};
use crate::command::CommandOutcome;
use crate::error::DomainError;
use crate::id::OrgId;
use crate::invitation::{Invitation, InvitationStatus};
use crate::org::Member;
use crate::permission::PermissionSet;
use crate::role::{CustomRole, Role};
use crate::validate;

pub(super) fn create_role(
    state: &mut impl StateWrite,
    ctx: &Ctx,
    org_id: &OrgId,
    name: &str,
    permissions: PermissionSet,
) -> Result<CommandOutcome, QueryError> {
    let name = validate::custom_role_name(name)?;
    require_org(state, org_id)?;
    if get_custom_role(state, org_id, &name)?.is_some() {
        return Err(DomainError::already_exists("role", format!("{name} of org {org_id}")).into());
    }
    ctx.authority.may_grant(permissions, &format!("defining role {name}"))?;
    let role = CustomRole {
        org_id: org_id.clone(),
        name,
        permissions,
        version: 1,
        created_at_ms: ctx.now_ms,
        updated_at_ms: ctx.now_ms,
    };
    state.put(keys::custom_role(org_id, &role.name), encode(&role));
    Ok(CommandOutcome::Role(role))
}

/// Replaces the permissions. The actor must hold both the old and the new ones: adding grants
/// to every holder, and removing takes away from every holder.
pub(super) fn update_role(
    state: &mut impl StateWrite,
    ctx: &Ctx,
    org_id: &OrgId,
    name: &str,
    permissions: PermissionSet,
    expected_version: Option<u64>,
) -> Result<CommandOutcome, QueryError> {
    let name = validate::custom_role_name(name)?;
    let mut role = require_role(state, org_id, &name)?;
    check_version("role", &name, expected_version, role.version)?;
    ctx.authority.may_grant(role.permissions.union(permissions), &format!("changing role {name}"))?;
    role.permissions = permissions;
    role.version += 1;
    role.updated_at_ms = ctx.now_ms;
    state.put(keys::custom_role(org_id, &name), encode(&role));
    Ok(CommandOutcome::Role(role))
}

/// Deletes a role nobody holds and no pending invitation offers.
pub(super) fn delete_role(
    state: &mut impl StateWrite,
    ctx: &Ctx,
    org_id: &OrgId,
    name: &str,
) -> Result<CommandOutcome, QueryError> {
    let name = validate::custom_role_name(name)?;
    require_role(state, org_id, &name)?;
    let role = Role::Custom(name.clone());
    let holders = scan_all::<Member>(state, &keys::member_prefix(org_id))?;
    if let Some((_, holder)) = holders.iter().find(|(_, m)| m.role == role) {
        return Err(DomainError::failed_precondition(format!(
            "role {name} is in use (held by {} and maybe others); give its members another role first",
            holder.user_id
        ))
        .into());
    }
    let invitations = scan_all::<Invitation>(state, &keys::invitation_prefix(org_id))?;
    if let Some((_, inv)) =
        invitations.iter().find(|(_, i)| i.role == role && i.status(ctx.now_ms) == InvitationStatus::Pending)
    {
        return Err(DomainError::failed_precondition(format!(
            "role {name} is in use (offered by the pending invitation of {}); revoke it first",
            inv.email
        ))
        .into());
    }
    state.delete(keys::custom_role(org_id, &name));
    Ok(CommandOutcome::RoleDeleted)
}

fn require_role(state: &impl StateRead, org_id: &OrgId, name: &str) -> Result<CustomRole, QueryError> {
    if let Some(role) = get_custom_role(state, org_id, name)? {
        return Ok(role);
    }
    require_org(state, org_id)?;
    Err(DomainError::not_found("role", format!("{name} of org {org_id}")).into())
}

// ---- queries

/// The org's custom role `name`, if it defines one.
pub fn get_custom_role(state: &impl StateRead, org: &OrgId, name: &str) -> Result<Option<CustomRole>, StorageFault> {
    if name.contains('/') {
        return Ok(None);
    }
    load(state, &keys::custom_role(org, name))
}

/// One page of the org's custom roles in name order. The built-in roles are not listed: they
/// are the same in every org ([`crate::role::BUILTIN_ROLE_TABLE`]). NotFound when the org does
/// not exist.
pub fn list_custom_roles(
    state: &impl StateRead,
    org: &OrgId,
    after_name: Option<&str>,
    limit: usize,
) -> Result<(Vec<CustomRole>, Option<String>), QueryError> {
    require_org(state, org)?;
    Ok(list_page(state, &keys::custom_role_prefix(org), after_name, limit)?)
}
