//! Roles a member holds in an org: one of the four built-in roles, or a custom role that the
//! org defined ([`CustomRole`]). A role is stored and sent as its name; custom role names can
//! never be built-in names, so a name alone says which kind it is.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::id::OrgId;
use crate::permission::{Permission, PermissionSet};

/// The longest custom role name, in characters.
pub const ROLE_NAME_MAX_CHARS: usize = 64;

/// A member's role in one org.
///
/// The built-in roles' permission sets are fixed ([`BUILTIN_ROLE_TABLE`]); a custom role's set
/// is whatever its [`CustomRole`] record says now, so changing the record changes what every
/// holder may do.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Role {
    /// Everything, including members, roles, invitations and the audit log. An org that has
    /// an Admin always keeps one: the last Admin cannot be removed or demoted.
    Admin,
    /// Integrates external resources and builds, publishes and transfers apps.
    Developer,
    /// Works inside apps: reads the org, its members, resources and apps; changes nothing here.
    Agent,
    /// Watches: reads the org, its members and apps.
    Viewer,
    /// A role the org defined, by name (lowercase, validated, never a built-in name).
    Custom(String),
}

/// Which built-in role holds which permission: one row per permission, columns in
/// [`Role::BUILTIN`] order (admin, developer, agent, viewer). The same table, as the docs show
/// it (a test keeps the two equal):
///
#[doc = include_str!("role_table.md")]
///
/// Why these sets:
/// - **Admin** holds everything: it is the role that manages the people (members, roles,
///   invitations) and oversees them (the audit log).
/// - **Developer** does the technical work: reads everything an Agent reads, integrates
///   resources and builds, publishes and transfers apps. It does not manage people, rename the
///   org or read the audit log: the log records every member's actions, which is oversight of
///   people, the Admin's job. An org that wants an auditor defines a custom role with
///   `audit.read`.
/// - **Agent** works inside apps, which need the org's phone numbers and integrations to be
///   visible (secrets are never shown to anyone); it changes nothing in the control plane.
/// - **Viewer** follows what the org builds: the org, its members and its apps. Resource
///   configuration is an operational detail it has no need for, so it is left out; that is
///   the one difference from Agent.
///
/// Nobody but an Admin (or a custom role holding them) gets `members.manage`, `roles.manage`
/// or `invitations.manage`, the permissions that grant other permissions.
pub const BUILTIN_ROLE_TABLE: [(Permission, [bool; 4]); 13] = {
    const X: bool = true;
    const O: bool = false;
    [
        (Permission::OrgRead, [X, X, X, X]),
        (Permission::OrgUpdate, [X, O, O, O]),
        (Permission::MembersRead, [X, X, X, X]),
        (Permission::MembersManage, [X, O, O, O]),
        (Permission::RolesManage, [X, O, O, O]),
        (Permission::ResourcesRead, [X, X, X, O]),
        (Permission::ResourcesIntegrate, [X, X, O, O]),
        (Permission::AppsRead, [X, X, X, X]),
        (Permission::AppsBuild, [X, X, O, O]),
        (Permission::AppsPublish, [X, X, O, O]),
        (Permission::AppsTransfer, [X, X, O, O]),
        (Permission::InvitationsManage, [X, O, O, O]),
        (Permission::AuditRead, [X, O, O, O]),
    ]
};

impl Role {
    /// The built-in roles, in the column order of [`BUILTIN_ROLE_TABLE`].
    pub const BUILTIN: [Role; 4] = [Role::Admin, Role::Developer, Role::Agent, Role::Viewer];

    /// A custom role, if `name` is a valid custom role name (see [`Role::from_str`]).
    pub fn custom(name: &str) -> Result<Role, InvalidRoleName> {
        match name.parse()? {
            Role::Custom(name) => Ok(Role::Custom(name)),
            _ => Err(InvalidRoleName { given: clip(name), reason: "is the name of a built-in role" }),
        }
    }

    /// The role's name, as stored and sent.
    pub fn as_str(&self) -> &str {
        match self {
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Agent => "agent",
            Role::Viewer => "viewer",
            Role::Custom(name) => name,
        }
    }

    pub fn is_builtin(&self) -> bool {
        !matches!(self, Role::Custom(_))
    }

    /// The permissions of a built-in role, from [`BUILTIN_ROLE_TABLE`]; `None` for a custom
    /// role, whose permissions are in its record.
    pub fn builtin_permissions(&self) -> Option<PermissionSet> {
        let column = match self {
            Role::Admin => 0,
            Role::Developer => 1,
            Role::Agent => 2,
            Role::Viewer => 3,
            Role::Custom(_) => return None,
        };
        Some(BUILTIN_ROLE_TABLE.iter().filter(|(_, held)| held[column]).map(|(p, _)| *p).collect())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is neither a built-in role nor a valid custom role name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid role {given:?}: {reason} (a role is admin, developer, agent, viewer or a custom role name of 1 to 64 characters a-z, 0-9, '-' and '_', starting with a letter)")]
pub struct InvalidRoleName {
    pub given: String,
    pub reason: &'static str,
}

fn clip(s: &str) -> String {
    s.chars().take(ROLE_NAME_MAX_CHARS + 1).collect()
}

impl FromStr for Role {
    type Err = InvalidRoleName;

    /// Built-in names case-insensitively; anything else must be a custom role name: after
    /// trimming and lowercasing, 1 to 64 characters of `a-z`, `0-9`, `-`, `_`, starting with a
    /// letter. Lowercasing means `Billing` and `billing` are one role.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim().to_ascii_lowercase();
        let invalid = |reason| InvalidRoleName { given: clip(s), reason };
        match name.as_str() {
            "admin" => return Ok(Role::Admin),
            "developer" => return Ok(Role::Developer),
            "agent" => return Ok(Role::Agent),
            "viewer" => return Ok(Role::Viewer),
            _ => {}
        }
        if name.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if name.chars().count() > ROLE_NAME_MAX_CHARS {
            return Err(invalid("is too long"));
        }
        if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(invalid("must start with a letter"));
        }
        if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
            return Err(invalid("has a character other than a-z, 0-9, '-' and '_'"));
        }
        Ok(Role::Custom(name))
    }
}

impl TryFrom<String> for Role {
    type Error = InvalidRoleName;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Role> for String {
    fn from(r: Role) -> String {
        match r {
            Role::Custom(name) => name,
            builtin => builtin.as_str().to_string(),
        }
    }
}

/// A role an org defined: a name and the permissions it allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomRole {
    pub org_id: OrgId,
    /// The name members' records refer to; never a built-in name.
    pub name: String,
    pub permissions: PermissionSet,
    /// Bumped by every update, so an update can say which version it expects.
    pub version: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<Role, ()>) {
        assert_eq!(input.parse::<Role>().map_err(|_| ()), expected, "input {input:?}");
    }

    #[test]
    fn parses_builtin_and_custom_names() {
        check("admin", Ok(Role::Admin));
        check(" Viewer ", Ok(Role::Viewer));
        check("billing", Ok(Role::Custom("billing".into())));
        check("Support-Lead_2", Ok(Role::Custom("support-lead_2".into())));
        check("", Err(()));
        check("   ", Err(()));
        check("2nd", Err(()));
        check("a b", Err(()));
        check("a/b", Err(()));
        check("owner!", Err(()));
        check("é", Err(()));
        check(&"r".repeat(64), Ok(Role::Custom("r".repeat(64))));
        check(&"r".repeat(65), Err(()));
        assert!(Role::custom("ADMIN").is_err());
        assert_eq!(Role::custom("ops").unwrap(), Role::Custom("ops".into()));
    }

    #[test]
    fn names_round_trip_through_serde() {
        for role in Role::BUILTIN.into_iter().chain([Role::Custom("billing".into())]) {
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("{:?}", role.as_str()));
            assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), role);
        }
        assert!(serde_json::from_str::<Role>(r#""no such role!""#).is_err());
    }

    /// The table in the docs (`role_table.md`) and [`BUILTIN_ROLE_TABLE`] say the same.
    #[test]
    fn documented_table_matches_the_code() {
        let doc = include_str!("role_table.md");
        let mut rows = doc.lines().skip(2);
        for (permission, held) in BUILTIN_ROLE_TABLE {
            let line = rows.next().unwrap_or_else(|| panic!("the doc table lacks {permission}"));
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells[0], permission.as_str());
            let doc_held: Vec<bool> = cells[1..].iter().map(|c| *c == "x").collect();
            assert_eq!(doc_held, held.to_vec(), "row {permission}");
        }
        assert_eq!(rows.next(), None, "the doc table has extra rows");
        assert_eq!(BUILTIN_ROLE_TABLE.map(|(p, _)| p), Permission::ALL, "one row per permission, in order");
    }

    #[test]
    fn builtin_sets() {
        let set = |r: Role| r.builtin_permissions().unwrap();
        assert_eq!(set(Role::Admin), PermissionSet::all());
        assert!(set(Role::Developer).contains(Permission::ResourcesIntegrate));
        assert!(!set(Role::Agent).contains(Permission::ResourcesIntegrate));
        assert!(!set(Role::Developer).contains(Permission::AuditRead));
        assert!(set(Role::Viewer).is_subset(set(Role::Agent)));
        assert!(set(Role::Agent).is_subset(set(Role::Developer)));
        assert!(set(Role::Developer).is_subset(set(Role::Admin)));
        assert_eq!(Role::Custom("x".into()).builtin_permissions(), None);
    }
}
