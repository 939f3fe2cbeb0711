//! Conversions between wire messages and domain types, one file per message family.
//! Wire-to-domain parsing fails with [`ConvError`], which names the field.

mod access;
mod app;
mod backup;
mod org;
mod page_token;
mod relocation;

pub use access::{
    audit_event_to_wire, builtin_roles_to_wire, config_entries_to_wire, custom_role_to_wire, integration_to_wire,
    invitation_to_wire, parse_audit_filter, parse_config_entries, parse_permissions, permission_catalog,
    phone_number_to_wire,
};
pub use app::{app_summary_to_wire, app_to_wire, parse_app_id, parse_regions, parse_slot_specs};
pub use backup::{backup_header_to_wire, parse_backup_header};

pub use org::{member_to_wire, org_to_wire, parse_org_id, parse_region, parse_role, user_org_to_wire};
pub use page_token::{decode_page_token, encode_page_token};
pub use relocation::{
    forwarding_to_wire, move_state_to_wire, move_to_wire, MOVED_TO_HEADER, MOVING_TO_HEADER, ORG_EPOCH_HEADER,
};

/// A wire message that does not make a valid domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct ConvError {
    pub field: &'static str,
    pub reason: String,
}

impl ConvError {
    pub fn new(field: &'static str, reason: impl ToString) -> ConvError {
        ConvError { field, reason: reason.to_string() }
    }
}
