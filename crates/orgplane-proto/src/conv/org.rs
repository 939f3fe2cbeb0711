//! Orgs, members, roles and regions.

use orgplane_model::{Member, Org, OrgId, Region, Role, UserOrg};

use super::ConvError;
use crate::v1;

pub fn org_to_wire(org: &Org) -> v1::Org {
    v1::Org {
        id: org.id.to_string(),
        name: org.name.clone(),
        region: org.region.to_string(),
        version: org.version,
        epoch: org.epoch,
        create_time_ms: org.created_at_ms,
        update_time_ms: org.updated_at_ms,
        allowed_import_regions: org.import_regions().iter().map(ToString::to_string).collect(),
    }
}

pub fn member_to_wire(member: &Member) -> v1::Member {
    v1::Member {
        org_id: member.org_id.to_string(),
        user_id: member.user_id.clone(),
        role: member.role.to_string(),
        create_time_ms: member.added_at_ms,
        update_time_ms: member.updated_at_ms,
    }
}

pub fn user_org_to_wire(user_org: &UserOrg) -> v1::UserOrg {
    v1::UserOrg { org: Some(org_to_wire(&user_org.org)), role: user_org.role.to_string() }
}

/// Parses the `org_id` field of a request.
pub fn parse_org_id(field: &'static str, text: &str) -> Result<OrgId, ConvError> {
    text.parse().map_err(|e| ConvError::new(field, e))
}

/// Parses a region name.
pub fn parse_region(field: &'static str, text: &str) -> Result<Region, ConvError> {
    if text.is_empty() {
        return Err(ConvError::new(field, "is required (us, eu or apac)"));
    }
    text.parse().map_err(|e| ConvError::new(field, e))
}

/// Parses a role name.
pub fn parse_role(field: &'static str, text: &str) -> Result<Role, ConvError> {
    text.parse().map_err(|e| ConvError::new(field, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ids_name_the_field() {
        let err = parse_org_id("org_id", "nope").unwrap_err();
        assert_eq!(err.field, "org_id");
        assert!(err.to_string().contains("malformed"), "{err}");
        assert!(parse_region("region", "").unwrap_err().reason.contains("required"));
        assert!(parse_role("role", "owner!").is_err());
    }
}
