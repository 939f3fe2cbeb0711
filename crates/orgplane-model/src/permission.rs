//! Permissions: the closed list of things a role can allow inside one org, and
//! [`PermissionSet`], a set of them.
//!
//! Each permission has a stable wire name (`org.read`, `members.manage`, ...): that name is
//! what custom roles store, what the API and `orgctl` accept, and what a refusal names. Names
//! are never reused for another meaning; a permission that is no longer needed stays in the
//! list.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One thing a role may allow inside an org. Which built-in role holds which permission is in
/// [`crate::role::BUILTIN_ROLE_TABLE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Permission {
    /// `org.read`: see the org record (name, region, versions).
    OrgRead,
    /// `org.update`: rename the org. Deleting it is for platform admins only.
    OrgUpdate,
    /// `members.read`: list the members with their roles, and see the org's custom roles
    /// (whoever may see who holds a role may see what the role allows).
    MembersRead,
    /// `members.manage`: add and remove members and change their roles, within what the actor
    /// may grant (see [`crate::policy`]).
    MembersManage,
    /// `roles.manage`: create, update and delete the org's custom roles, within what the actor
    /// may grant.
    RolesManage,
    /// `resources.read`: get and list integrations (secrets redacted) and phone numbers.
    ResourcesRead,
    /// `resources.integrate`: create, update and delete integrations and phone numbers.
    ResourcesIntegrate,
    /// `apps.read`: get and list the org's apps.
    AppsRead,
    /// `apps.build`: create, update and delete apps, bind and unbind their slots.
    AppsBuild,
    /// `apps.publish`: make an app version live (every slot bound).
    AppsPublish,
    /// `apps.transfer`: export apps as archives and import them (exports never carry secrets
    /// or resource ids).
    AppsTransfer,
    /// `invitations.manage`: invite email addresses with a role (within what the actor may
    /// grant), list and revoke invitations. Listing is part of managing: invitations name
    /// email addresses of people who are not members yet.
    InvitationsManage,
    /// `audit.read`: read the org's audit log.
    AuditRead,
}

impl Permission {
    /// Every permission, in wire-name order of the list above (the order sets are printed in).
    pub const ALL: [Permission; 13] = [
        Permission::OrgRead,
        Permission::OrgUpdate,
        Permission::MembersRead,
        Permission::MembersManage,
        Permission::RolesManage,
        Permission::ResourcesRead,
        Permission::ResourcesIntegrate,
        Permission::AppsRead,
        Permission::AppsBuild,
        Permission::AppsPublish,
        Permission::AppsTransfer,
        Permission::InvitationsManage,
        Permission::AuditRead,
    ];

    /// The stable wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::OrgRead => "org.read",
            Permission::OrgUpdate => "org.update",
            Permission::MembersRead => "members.read",
            Permission::MembersManage => "members.manage",
            Permission::RolesManage => "roles.manage",
            Permission::ResourcesRead => "resources.read",
            Permission::ResourcesIntegrate => "resources.integrate",
            Permission::AppsRead => "apps.read",
            Permission::AppsBuild => "apps.build",
            Permission::AppsPublish => "apps.publish",
            Permission::AppsTransfer => "apps.transfer",
            Permission::InvitationsManage => "invitations.manage",
            Permission::AuditRead => "audit.read",
        }
    }

    /// The bit of this permission in a [`PermissionSet`].
    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not the wire name of a permission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission {given:?}: expected one of org.read, org.update, members.read, members.manage, roles.manage, resources.read, resources.integrate, apps.read, apps.build, apps.publish, apps.transfer, invitations.manage, audit.read")]
pub struct UnknownPermission {
    pub given: String,
}

impl FromStr for Permission {
    type Err = UnknownPermission;

    /// Accepts exactly the wire names, ignoring surrounding whitespace and ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| UnknownPermission { given: s.chars().take(64).collect() })
    }
}

impl TryFrom<String> for Permission {
    type Error = UnknownPermission;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Permission> for String {
    fn from(p: Permission) -> String {
        p.as_str().to_string()
    }
}

/// A set of permissions. Stored and sent as the list of wire names in [`Permission::ALL`]
/// order, so the on-disk form does not depend on the bit layout.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PermissionSet {
    bits: u32,
}

impl PermissionSet {
    /// The empty set.
    pub const fn empty() -> PermissionSet {
        PermissionSet { bits: 0 }
    }

    /// Every permission.
    pub fn all() -> PermissionSet {
        Permission::ALL.into_iter().collect()
    }

    pub fn contains(self, permission: Permission) -> bool {
        self.bits & permission.bit() != 0
    }

    pub fn insert(&mut self, permission: Permission) {
        self.bits |= permission.bit();
    }

    pub fn is_empty(self) -> bool {
        self.bits == 0
    }

    pub fn len(self) -> usize {
        self.bits.count_ones() as usize
    }

    /// Whether every permission of `self` is in `other`.
    pub fn is_subset(self, other: PermissionSet) -> bool {
        self.bits & !other.bits == 0
    }

    pub fn union(self, other: PermissionSet) -> PermissionSet {
        PermissionSet { bits: self.bits | other.bits }
    }

    /// The first permission (in [`Permission::ALL`] order) of `self` that `held` lacks: the one
    /// a refusal names.
    pub fn first_missing_from(self, held: PermissionSet) -> Option<Permission> {
        self.iter().find(|p| !held.contains(*p))
    }

    /// The permissions in [`Permission::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL.into_iter().filter(move |p| self.contains(*p))
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        let mut set = PermissionSet::empty();
        for p in iter {
            set.insert(p);
        }
        set
    }
}

impl fmt::Display for PermissionSet {
    /// The wire names, comma separated (`org.read,members.read`); empty for the empty set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(p.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for PermissionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(Permission::as_str)).finish()
    }
}

impl Serialize for PermissionSet {
    /// A sequence of wire names, its length given up front: binary encodings (the Raft log's)
    /// need it, and `collect_seq` over a filtered iterator does not know it.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for permission in self.iter() {
            seq.serialize_element(&permission)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for PermissionSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let names = Vec::<Permission>::deserialize(deserializer)?;
        Ok(names.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>().unwrap(), p);
            assert!(seen.insert(p.as_str()), "duplicate name {p}");
        }
        assert_eq!(" Org.Read ".parse::<Permission>().unwrap(), Permission::OrgRead);
        assert!("org.delete".parse::<Permission>().is_err());
        assert!("".parse::<Permission>().is_err());
    }

    #[test]
    fn every_permission_has_its_own_bit() {
        let all = PermissionSet::all();
        assert_eq!(all.len(), Permission::ALL.len());
        assert!(Permission::ALL.iter().all(|p| all.contains(*p)));
    }

    #[test]
    fn subsets_and_missing() {
        let read: PermissionSet = [Permission::OrgRead, Permission::MembersRead].into_iter().collect();
        let manage: PermissionSet = [Permission::OrgRead, Permission::MembersManage].into_iter().collect();
        assert!(read.is_subset(PermissionSet::all()));
        assert!(PermissionSet::empty().is_subset(read));
        assert!(!read.is_subset(manage));
        assert_eq!(read.first_missing_from(manage), Some(Permission::MembersRead));
        assert_eq!(read.first_missing_from(read.union(manage)), None);
    }

    #[test]
    fn serializes_as_names_in_list_order() {
        let set: PermissionSet = [Permission::AuditRead, Permission::OrgRead].into_iter().collect();
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, r#"["org.read","audit.read"]"#);
        assert_eq!(serde_json::from_str::<PermissionSet>(&json).unwrap(), set);
        assert!(serde_json::from_str::<PermissionSet>(r#"["org.rule"]"#).is_err());
        assert_eq!(set.to_string(), "org.read,audit.read");
    }
}
