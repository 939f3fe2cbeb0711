//! Orgs and members: their ops (with the grant and last-Admin rules) and queries.

use std::collections::BTreeSet;

use super::{
    check_version, decode, encode, keys, list_page, load, scan_all, Ctx, QueryError, StateRead, StateWrite,
    StorageFault,
};
use crate::command::CommandOutcome;
use crate::error::DomainError;
use crate::id::OrgId;
use crate::org::{Member, Org, UserOrg};
use crate::policy::role_permissions;
use crate::region::Region;
use crate::role::Role;
use crate::validate;

// ---- ops

pub(super) fn create_org(
    state: &mut impl StateWrite,
    ctx: &Ctx,
    id: &OrgId,
    name: &str,
) -> Result<CommandOutcome, QueryError> {
    let name = validate::org_name(name)?;
    let key = keys::org_key(id);
    if state.get(&key)?.is_some() {
        return Err(DomainError::already_exists("org", id).into());
    }
    let org = Org {
        id: id.clone(),
        name,
        region: id.region(),
        version: 1,
        epoch: 1,
        created_at_ms: ctx.now_ms,
        updated_at_ms: ctx.now_ms,
        allowed_import_regions: BTreeSet::new(),
    };
    state.put(key, encode(&org));
    Ok(CommandOutcome::Org(org))
}

pub(super) fn update_org(
    state: &mut impl StateWrite,
    ctx: &Ctx,
    id: &OrgId,
    name: Option<&str>,
    allowed_import_regions: Option<&BTreeSet<Region>>,
    expected_version: Option<u64>,
) -> Result<CommandOutcome, QueryError> {
    if name.is_none() && allowed_import_regions.is_none() {
        return Err(DomainError::InvalidArgument {
            field: "name".into(),
            reason: "an update must change the name or the allowed import regions".into(),
        }
        .into());
    }
    let name = name.map(validate::org_name).transpose()?;
    let mut org = require_org(state, id)?;
    check_version("org", &id.to_string(), expected_version, org.version)?;
    if let Some(name) = name {
        org.name = name;
    }
    if let Some(regions) = allowed_import_regions {
        // The org's own region is always allowed; keeping it out of the set keeps one spelling.
        org.allowed_import_regions = regions.iter().copied().filter(|r| *r != org.region).collect();
    }
    org.version += 1;
    org.updated_at_ms = ctx.now_ms;
    state.put(keys::org_key(id), encode(&org));
    Ok(CommandOutcome::Org(org))
}

/// Deletes the org and everything in it but its audit log (see [`crate::audit`]).
pub(super) fn delete_org(
    state: &mut impl StateWrite,
    id: &OrgId,
    expected_version: Option<u64>,
) -> Result<CommandOutcome, QueryError> {
    let org = require_org(state, id)?;
    check_version("org", &id.to_string(), expected_version, org.version)?;
    let members = scan_all::<Member>(state, &keys::member_prefix(id))?;
    let removed_members = members.len() as u64;
    for (key, member) in members {
        state.delete(keys::user_org(&member.user_id, id));
        state.delete(key);
    }
    for prefix in [
        keys::custom_role_prefix(id),
        keys::invitation_prefix(id),
        keys::integration_prefix(id),
        keys::phone_number_prefix(id),
    ] {
        for (key, _) in scan_all::<serde_json::Value>(state, &prefix)? {
            state.delete(key);
        }
    }
    for key in super::apps::app_keys(state, id)? {
        state.delete(key);
    }
    state.delete(keys::org_key(id));
    Ok(CommandOutcome::OrgDeleted { removed_members })
}

pub(super) fn add_member(
    state: &mut impl StateWrite,
    ctx: &Ctx,
    org_id: &OrgId,
    user_id: &str,
    role: &Role,
) -> Result<CommandOutcome, QueryError> {
    validate::user_id(user_id)?;
    validate::role(role)?;
    require_org(state, org_id)?;
    if get_member(state, org_id, user_id)?.is_some() {
        return Err(DomainError::already_exists("member", format!("{user_id} of org {org_id}")).into());
    }
    check_may_grant(state, ctx, org_id, role)?;
    let member = Member {
        org_id: org_id.clone(),
        user_id: user_id.to_string(),
        role: role.clone(),
        added_at_ms: ctx.now_ms,
        updated_at_ms: ctx.now_ms,
    };
    put_member(state, &member);
    Ok(CommandOutcome::Member(member))
}

pub(super) fn set_member_role(
    state: &mut impl StateWrite,
    ctx: &Ctx,
    org_id: &OrgId,
    user_id: &str,
    role: &Role,
) -> Result<CommandOutcome, QueryError> {
    validate::user_id(user_id)?;
    validate::role(role)?;
    let mut member = require_member(state, org_id, user_id)?;
    check_may_manage(state, ctx, &member, "changing the role of")?;
    check_may_grant(state, ctx, org_id, role)?;
    if member.role == Role::Admin && *role != Role::Admin {
        check_not_last_admin(state, org_id, user_id, "demoted")?;
    }
    member.role = role.clone();
    member.updated_at_ms = ctx.now_ms;
    put_member(state, &member);
    Ok(CommandOutcome::Member(member))
}

pub(super) fn remove_member(
    state: &mut impl StateWrite,
    ctx: &Ctx,
    org_id: &OrgId,
    user_id: &str,
) -> Result<CommandOutcome, QueryError> {
    validate::user_id(user_id)?;
    let member = require_member(state, org_id, user_id)?;
    check_may_manage(state, ctx, &member, "removing")?;
    if member.role == Role::Admin {
        check_not_last_admin(state, org_id, user_id, "removed")?;
    }
    state.delete(keys::member(org_id, user_id));
    state.delete(keys::user_org(user_id, org_id));
    Ok(CommandOutcome::MemberRemoved)
}

/// Writes a membership and its entry in the user's index.
pub(super) fn put_member(state: &mut impl StateWrite, member: &Member) {
    state.put(keys::member(&member.org_id, &member.user_id), encode(member));
    state.put(keys::user_org(&member.user_id, &member.org_id), member.role.as_str().as_bytes().to_vec());
}

/// Refuses unless the actor may grant every permission of `role` in the org (NotFound when the
/// org defines no such custom role).
pub(super) fn check_may_grant(
    state: &impl StateRead,
    ctx: &Ctx,
    org_id: &OrgId,
    role: &Role,
) -> Result<(), QueryError> {
    let Some(permissions) = role_permissions(state, org_id, role)? else {
        return Err(DomainError::not_found("role", format!("{role} of org {org_id}")).into());
    };
    Ok(ctx.authority.may_grant(permissions, &format!("granting role {role}"))?)
}

/// Refuses unless the actor holds every permission of the member's current role: nobody
/// changes or removes someone more privileged than themselves.
fn check_may_manage(state: &impl StateRead, ctx: &Ctx, member: &Member, action: &str) -> Result<(), QueryError> {
    let held = role_permissions(state, &member.org_id, &member.role)?.unwrap_or_default();
    Ok(ctx.authority.may_grant(held, &format!("{action} a member with role {}", member.role))?)
}

/// Refuses when `user_id` is the org's only Admin. Admins are found by scanning the members;
/// this runs only when an Admin is about to lose the role, and stops at the first other Admin.
fn check_not_last_admin(state: &impl StateRead, org_id: &OrgId, user_id: &str, what: &str) -> Result<(), QueryError> {
    const CHUNK: usize = 256;
    let prefix = keys::member_prefix(org_id);
    let end = keys::prefix_end(&prefix);
    let mut start = prefix.clone();
    loop {
        let rows = state.scan(&start, &end, CHUNK)?;
        for (key, value) in &rows {
            let member: Member = decode(key, value)?;
            if member.role == Role::Admin && member.user_id != user_id {
                return Ok(());
            }
        }
        match rows.last() {
            Some((last, _)) if rows.len() == CHUNK => start = super::key_after(last),
            _ => break,
        }
    }
    Err(DomainError::failed_precondition(format!(
        "{user_id} is the last admin of org {org_id} and cannot be {what}; make another member an admin first"
    ))
    .into())
}

/// The org, or its NotFound.
pub(super) fn require_org(state: &impl StateRead, id: &OrgId) -> Result<Org, QueryError> {
    get_org(state, id)?.ok_or_else(|| DomainError::org_not_found(id).into())
}

/// The membership, or the NotFound of the member (or of the org, when that is what is missing).
fn require_member(state: &impl StateRead, org: &OrgId, user: &str) -> Result<Member, QueryError> {
    if let Some(member) = get_member(state, org, user)? {
        return Ok(member);
    }
    require_org(state, org)?;
    Err(DomainError::member_not_found(org, user).into())
}

// ---- queries

/// The org, if it exists.
pub fn get_org(state: &impl StateRead, id: &OrgId) -> Result<Option<Org>, StorageFault> {
    load(state, &keys::org_key(id))
}

/// The membership of `user` in `org`, if any.
pub fn get_member(state: &impl StateRead, org: &OrgId, user: &str) -> Result<Option<Member>, StorageFault> {
    if user.contains('/') {
        // Not a user id; it could only address a key of another member.
        return Ok(None);
    }
    load(state, &keys::member(org, user))
}

/// One page of orgs in id order, starting after `after`. Returns the page and, when more may
/// follow, the id to resume after.
pub fn list_orgs(
    state: &impl StateRead,
    after: Option<&OrgId>,
    limit: usize,
) -> Result<(Vec<Org>, Option<String>), StorageFault> {
    let after = after.map(OrgId::to_string);
    list_page(state, b"o/", after.as_deref(), limit)
}

/// One page of an org's members in user-id order. NotFound when the org does not exist.
pub fn list_members(
    state: &impl StateRead,
    org: &OrgId,
    after_user: Option<&str>,
    limit: usize,
) -> Result<(Vec<Member>, Option<String>), QueryError> {
    require_org(state, org)?;
    Ok(list_page(state, &keys::member_prefix(org), after_user, limit)?)
}

/// One page of the orgs `user` belongs to in this state, with the role in each, in org-id order.
pub fn list_user_orgs(
    state: &impl StateRead,
    user: &str,
    after_org: Option<&OrgId>,
    limit: usize,
) -> Result<(Vec<UserOrg>, Option<String>), StorageFault> {
    let prefix = keys::user_prefix(user);
    let start = match after_org {
        Some(org) => super::key_after(&keys::user_org(user, org)),
        None => prefix.clone(),
    };
    let mut rows = state.scan(&start, &keys::prefix_end(&prefix), limit.saturating_add(1))?;
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|(key, _)| String::from_utf8_lossy(&key[prefix.len()..]).into_owned())
    } else {
        None
    };
    let mut out = Vec::with_capacity(rows.len());
    for (key, value) in rows {
        let org_id: OrgId = String::from_utf8_lossy(&key[prefix.len()..])
            .parse()
            .map_err(|e| StorageFault(format!("corrupt user index key {:?}: {e}", String::from_utf8_lossy(&key))))?;
        let role: Role = String::from_utf8_lossy(&value)
            .parse()
            .map_err(|e| StorageFault(format!("corrupt user index value: {e}")))?;
        // The index and the org are written in the same batch, except for an org being moved
        // here: its members arrive before its record goes live at the switch. Not listed yet.
        let Some(org) = get_org(state, &org_id)? else { continue };
        out.push(UserOrg { org, role });
    }
    Ok((out, next))
}
