//! The records kept for an org: the org itself and its members.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::id::OrgId;
use crate::region::Region;
use crate::role::Role;

/// An organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Org {
    pub id: OrgId,
    pub name: String,
    /// The region that holds the org now. Equal to `id.region()` until the org is moved.
    pub region: Region,
    /// Bumped by every change to the org record; updates carry the version they expect so a
    /// lost update becomes a refusal instead.
    pub version: u64,
    /// Ownership epoch: bumped when the org moves to another region, so a region that no longer
    /// owns the org can refuse requests routed with a stale belief.
    pub epoch: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// The residency policy for imported apps: the regions other than its own whose apps may
    /// be imported into this org (its own region is always allowed). Empty by default, which
    /// is also what records written before the field existed read as, so the store format is
    /// unchanged.
    #[serde(default)]
    pub allowed_import_regions: BTreeSet<Region>,
}

impl Org {
    /// Whether an app exported from `region` may be imported here.
    pub fn allows_import_from(&self, region: Region) -> bool {
        region == self.region || self.allowed_import_regions.contains(&region)
    }

    /// Every region whose apps may be imported, its own included, in order.
    pub fn import_regions(&self) -> BTreeSet<Region> {
        let mut regions = self.allowed_import_regions.clone();
        regions.insert(self.region);
        regions
    }
}

/// A user's membership in an org.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub org_id: OrgId,
    pub user_id: String,
    pub role: Role,
    pub added_at_ms: u64,
    pub updated_at_ms: u64,
}

/// One entry of "the orgs of a user": the org and the user's role in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserOrg {
    pub org: Org,
    pub role: Role,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records stored before the residency policy existed read as "own region only", so the
    /// store's format version did not need a bump.
    #[test]
    fn an_org_record_of_the_previous_shape_reads() {
        let id = OrgId::from_u128(Region::Us, 7);
        let old = format!(
            r#"{{"id":"{id}","name":"Acme","region":"us","version":1,"epoch":1,"created_at_ms":1,"updated_at_ms":1}}"#
        );
        let org: Org = serde_json::from_str(&old).unwrap();
        assert!(org.allowed_import_regions.is_empty());
        assert!(org.allows_import_from(Region::Us) && !org.allows_import_from(Region::Eu));
    }
}
