//! Who is calling: the [`Actor`] of a request, from the principal that the `Authenticator`
//! layer (orgplane-auth) put in the request's extensions. Every service asks here, so a
//! request that reached a handler without passing the authenticator is refused, never run as
//! somebody.

use orgplane_model::{Actor, DomainError, UserActor};
use tonic::{Request, Status};

use crate::error::NodeError;

/// The actor of `request`, or UNAUTHENTICATED when no principal is attached.
pub(crate) fn actor<T>(request: &Request<T>) -> Result<Actor, Status> {
    let principal = orgplane_auth::principal(request)?;
    Ok(Actor::User(UserActor {
        subject: principal.subject.clone(),
        platform_admin: principal.platform_admin,
        verified_email: principal.email.clone(),
    }))
}

/// The actor of `request` when it is a platform admin (or the system), for the operators'
/// calls (`action`, in refusals): membership changes, backups. Anyone else gets
/// PERMISSION_DENIED naming `platform_admin`.
pub(crate) fn platform_admin<T>(request: &Request<T>, action: &str) -> Result<Actor, Status> {
    let actor = actor(request)?;
    if actor.is_privileged() {
        Ok(actor)
    } else {
        Err(NodeError::from(DomainError::permission_denied("platform_admin", action)).into_status())
    }
}
