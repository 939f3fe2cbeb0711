//! Roles a member holds in an org. Issue "who may do what" adds permissions and custom roles;
//! until then the four built-in roles are the whole set. A role is stored as its name, so adding
//! custom roles later does not change the on-disk form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A member's role in one org.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Role {
    /// Manages members and roles, and everything a Developer does.
    Admin,
    /// Integrates external resources and builds apps.
    Developer,
    /// Works inside apps; cannot integrate resources or build apps.
    Agent,
    /// Reads the org, nothing more.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Developer, Role::Agent, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Agent => "agent",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not the name of a role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {given:?}: expected one of admin, developer, agent, viewer")]
pub struct UnknownRole {
    pub given: String,
}

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "admin" => Ok(Role::Admin),
            "developer" => Ok(Role::Developer),
            "agent" => Ok(Role::Agent),
            "viewer" => Ok(Role::Viewer),
            _ => Err(UnknownRole { given: s.chars().take(64).collect() }),
        }
    }
}

impl TryFrom<String> for Role {
    type Error = UnknownRole;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Role> for String {
    fn from(r: Role) -> String {
        r.as_str().to_string()
    }
}
