//! [`Actor`]: who issued a command or asks a query. Every command carries one, and
//! [`crate::state::apply`] decides from it (and the state) whether the command may happen, so
//! the rule holds whatever a node proposes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Who is acting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// A caller authenticated by a token.
    User(UserActor),
    /// orgplane itself: internal operations that no caller asked for (and, until
    /// authentication is wired into the node, every request). May do anything; it never comes
    /// from a client's word.
    System,
}

/// An authenticated caller, as the token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserActor {
    /// The token's `sub`: the user id that memberships name.
    pub subject: String,
    /// The token's platform-admin claim: operators who provision and delete orgs. They may do
    /// anything in any org (they provision its first Admin and can recover an org whose Admins
    /// are gone) and are exempt from the no-escalation rule, but not from the last-Admin rule.
    pub platform_admin: bool,
    /// The token's email, only when the identity provider says it is verified; accepting an
    /// invitation needs it to match the invited address.
    pub verified_email: Option<String>,
}

impl Actor {
    /// A user without platform rights or a verified email.
    pub fn user(subject: impl Into<String>) -> Actor {
        Actor::User(UserActor { subject: subject.into(), platform_admin: false, verified_email: None })
    }

    /// A platform admin.
    pub fn platform_admin(subject: impl Into<String>) -> Actor {
        Actor::User(UserActor { subject: subject.into(), platform_admin: true, verified_email: None })
    }

    /// The same actor with a verified email (no change for [`Actor::System`]).
    pub fn with_verified_email(self, email: impl Into<String>) -> Actor {
        match self {
            Actor::User(user) => Actor::User(UserActor { verified_email: Some(email.into()), ..user }),
            Actor::System => Actor::System,
        }
    }

    /// The user id, or `None` for the system.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Actor::User(user) => Some(&user.subject),
            Actor::System => None,
        }
    }

    /// The system or a platform admin: actors that org membership does not constrain.
    pub fn is_privileged(&self) -> bool {
        match self {
            Actor::User(user) => user.platform_admin,
            Actor::System => true,
        }
    }
}

impl fmt::Display for Actor {
    /// `system`, `user alice` or `platform admin ops@example.com`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::User(UserActor { subject, platform_admin: true, .. }) => write!(f, "platform admin {subject}"),
            Actor::User(UserActor { subject, .. }) => write!(f, "user {subject}"),
            Actor::System => f.write_str("system"),
        }
    }
}
