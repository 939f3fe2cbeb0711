//! Invitations: create (within what the actor may grant), revoke, accept, and queries.

use super::orgs::{check_may_grant, get_member, put_member, require_org};
use super::{encode, keys, list_page, load, Ctx, QueryError, StateRead, StateWrite, StorageFault};
use crate::actor::Actor;
use crate::command::CommandOutcome;
use crate::error::DomainError;
use crate::id::OrgId;
use crate::invitation::{
    Invitation, InvitationResolution, InvitationStatus, DEFAULT_INVITATION_TTL_MS, MAX_INVITATION_TTL_MS,
};
use crate::org::Member;
use crate::permission::Permission;
use crate::policy::{self, role_permissions, Access};
use crate::role::Role;
use crate::validate;

pub(super) fn create_invitation(
    state: &mut impl StateWrite,
    ctx: &Ctx,
    org_id: &OrgId,
    email: &str,
    role: &Role,
    expires_at_ms: Option<u64>,
) -> Result<CommandOutcome, QueryError> {
    let email = validate::email(email)?;
    validate::role(role)?;
    let expires_at_ms = expiry(ctx.now_ms, expires_at_ms)?;
    require_org(state, org_id)?;
    if let Some(existing) = get_invitation(state, org_id, &email)? {
        if existing.status(ctx.now_ms) == InvitationStatus::Pending {
            return Err(DomainError::already_exists("invitation", format!("for {email} in org {org_id}")).into());
        }
    }
    check_may_grant(state, ctx, org_id, role)?;
    let invitation = Invitation {
        org_id: org_id.clone(),
        email,
        role: role.clone(),
        invited_by: ctx.actor.clone(),
        created_at_ms: ctx.now_ms,
        expires_at_ms,
        resolution: None,
    };
    state.put(keys::invitation(org_id, &invitation.email), encode(&invitation));
    Ok(CommandOutcome::Invitation(invitation))
}

/// The expiry time: the given one if it is in the future and at most 30 days away, else 7
/// days from now when none is given.
fn expiry(now_ms: u64, given: Option<u64>) -> Result<u64, DomainError> {
    let Some(at) = given else { return Ok(now_ms.saturating_add(DEFAULT_INVITATION_TTL_MS)) };
    if at <= now_ms {
        return Err(DomainError::InvalidArgument {
            field: "expires_at_ms".into(),
            reason: "must be in the future".into(),
        });
    }
    if at - now_ms > MAX_INVITATION_TTL_MS {
        return Err(DomainError::InvalidArgument {
            field: "expires_at_ms".into(),
            reason: "must be at most 30 days from now".into(),
        });
    }
    Ok(at)
}

pub(super) fn revoke_invitation(
    state: &mut impl StateWrite,
    ctx: &Ctx,
    org_id: &OrgId,
    email: &str,
) -> Result<CommandOutcome, QueryError> {
    let email = validate::email(email)?;
    let Some(mut invitation) = get_invitation(state, org_id, &email)? else {
        require_org(state, org_id)?;
        return Err(DomainError::not_found("invitation", format!("for {email} in org {org_id}")).into());
    };
    let status = invitation.status(ctx.now_ms);
    if status != InvitationStatus::Pending {
        return Err(DomainError::failed_precondition(format!(
            "the invitation for {email} is {}, not pending",
            status.as_str()
        ))
        .into());
    }
    invitation.resolution = Some(InvitationResolution::Revoked { by: ctx.actor.clone(), at_ms: ctx.now_ms });
    state.put(keys::invitation(org_id, &email), encode(&invitation));
    Ok(CommandOutcome::Invitation(invitation))
}

/// The actor accepts the invitation to their verified email and becomes a member with its
/// role. Until an invitation for that email is found, every refusal is the same NotFound, so
/// this says nothing about whether the org exists.
pub(super) fn accept_invitation(
    state: &mut impl StateWrite,
    ctx: &Ctx,
    org_id: &OrgId,
) -> Result<CommandOutcome, QueryError> {
    let Actor::User(user) = ctx.actor else {
        return Err(DomainError::failed_precondition("only a user can accept an invitation").into());
    };
    let given_email = user.verified_email.as_deref().unwrap_or_default();
    let not_found = || DomainError::not_found("invitation", format!("for {given_email} in org {org_id}"));
    let Ok(email) = validate::email(given_email) else { return Err(not_found().into()) };
    let Some(mut invitation) = get_invitation(state, org_id, &email)? else { return Err(not_found().into()) };
    match invitation.status(ctx.now_ms) {
        InvitationStatus::Pending => {}
        status => {
            return Err(DomainError::failed_precondition(format!(
                "the invitation for {email} is {}; ask for a new one",
                status.as_str()
            ))
            .into())
        }
    }
    if get_member(state, org_id, &user.subject)?.is_some() {
        return Err(DomainError::already_exists("member", format!("{} of org {org_id}", user.subject)).into());
    }
    check_inviter_still_may_grant(state, &invitation)?;
    let member = Member {
        org_id: org_id.clone(),
        user_id: user.subject.clone(),
        role: invitation.role.clone(),
        added_at_ms: ctx.now_ms,
        updated_at_ms: ctx.now_ms,
    };
    put_member(state, &member);
    invitation.resolution = Some(InvitationResolution::Accepted { user_id: user.subject.clone(), at_ms: ctx.now_ms });
    state.put(keys::invitation(org_id, &email), encode(&invitation));
    Ok(CommandOutcome::Member(member))
}

/// An invitation is worth what its inviter may grant now: an inviter who was demoted or left
/// cannot seat anyone through an old invitation.
fn check_inviter_still_may_grant(state: &impl StateRead, invitation: &Invitation) -> Result<(), QueryError> {
    let org_id = &invitation.org_id;
    let role = &invitation.role;
    let stale = |why: String| -> QueryError {
        DomainError::failed_precondition(format!("the invitation can no longer be accepted: {why}; ask for a new one"))
            .into()
    };
    let Some(permissions) = role_permissions(state, org_id, role)? else {
        return Err(stale(format!("role {role} no longer exists")));
    };
    let access = Access::Permission(Permission::InvitationsManage);
    let authority = match policy::authority(state, &invitation.invited_by, Some(org_id), access, "inviting") {
        Ok(authority) => authority,
        Err(QueryError::Domain(_)) => return Err(stale("the inviter may no longer invite".into())),
        Err(fault @ QueryError::Storage(_)) => return Err(fault),
    };
    authority
        .may_grant(permissions, &format!("granting role {role}"))
        .map_err(|_| stale(format!("the inviter may no longer grant role {role}")))
}

// ---- queries

/// The invitation of `email` (normalized) in `org`, whatever its status.
pub fn get_invitation(state: &impl StateRead, org: &OrgId, email: &str) -> Result<Option<Invitation>, StorageFault> {
    if email.contains('/') {
        return Ok(None);
    }
    load(state, &keys::invitation(org, email))
}

/// One page of the org's invitations (every status; [`Invitation::status`] tells which) in
/// email order. NotFound when the org does not exist.
pub fn list_invitations(
    state: &impl StateRead,
    org: &OrgId,
    after_email: Option<&str>,
    limit: usize,
) -> Result<(Vec<Invitation>, Option<String>), QueryError> {
    require_org(state, org)?;
    Ok(list_page(state, &keys::invitation_prefix(org), after_email, limit)?)
}
