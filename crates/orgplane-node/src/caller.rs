//! Who is calling: the [`Actor`] of a request, from the principal that the `Authenticator`
//! layer (orgplane-auth) put in the request's extensions. Every service asks here, so a
//! request that reached a handler without passing the authenticator is refused, never run as
//! somebody.

use orgplane_model::{Actor, UserActor};
use tonic::{Request, Status};

/// The actor of `request`, or UNAUTHENTICATED when no principal is attached.
#[allow(dead_code)] // used by the services as authentication is wired in (issue #4)
pub(crate) fn actor<T>(request: &Request<T>) -> Result<Actor, Status> {
    let principal = orgplane_auth::principal(request)?;
    Ok(Actor::User(UserActor {
        subject: principal.subject.clone(),
        platform_admin: principal.platform_admin,
        verified_email: principal.email.clone(),
    }))
}
