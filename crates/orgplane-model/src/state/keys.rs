//! The key builders: one function per kind of key, so the layout in the module docs is the
//! whole truth.

use crate::app::{AppId, ResourceKind};
use crate::id::OrgId;

pub fn org_key(id: &OrgId) -> Vec<u8> {
    format!("o/{id}").into_bytes()
}
pub(super) fn member(org: &OrgId, user: &str) -> Vec<u8> {
    format!("m/{org}/{user}").into_bytes()
}
pub(super) fn member_prefix(org: &OrgId) -> Vec<u8> {
    format!("m/{org}/").into_bytes()
}
pub(super) fn user_org(user: &str, org: &OrgId) -> Vec<u8> {
    format!("u/{user}/{org}").into_bytes()
}
pub(super) fn user_prefix(user: &str) -> Vec<u8> {
    format!("u/{user}/").into_bytes()
}
pub(super) fn custom_role_prefix(org: &OrgId) -> Vec<u8> {
    format!("cr/{org}/").into_bytes()
}
pub(super) fn custom_role(org: &OrgId, name: &str) -> Vec<u8> {
    [custom_role_prefix(org), name.as_bytes().to_vec()].concat()
}
pub(super) fn invitation_prefix(org: &OrgId) -> Vec<u8> {
    format!("iv/{org}/").into_bytes()
}
pub(super) fn invitation(org: &OrgId, email: &str) -> Vec<u8> {
    [invitation_prefix(org), email.as_bytes().to_vec()].concat()
}
pub(super) fn integration_prefix(org: &OrgId) -> Vec<u8> {
    format!("ig/{org}/").into_bytes()
}
pub(super) fn integration(org: &OrgId, name: &str) -> Vec<u8> {
    [integration_prefix(org), name.as_bytes().to_vec()].concat()
}
pub(super) fn phone_number_prefix(org: &OrgId) -> Vec<u8> {
    format!("pn/{org}/").into_bytes()
}
pub(super) fn phone_number(org: &OrgId, number: &str) -> Vec<u8> {
    [phone_number_prefix(org), number.as_bytes().to_vec()].concat()
}
pub(super) fn app_prefix(org: &OrgId) -> Vec<u8> {
    format!("ap/{org}/").into_bytes()
}
pub(super) fn app(org: &OrgId, app: &AppId) -> Vec<u8> {
    [app_prefix(org), app.as_str().as_bytes().to_vec()].concat()
}
pub(super) fn app_binding_org_prefix(org: &OrgId) -> Vec<u8> {
    format!("ab/{org}/").into_bytes()
}
/// The tag of a resource kind in binding keys.
pub(super) fn resource_tag(kind: &ResourceKind) -> &'static str {
    match kind {
        ResourceKind::PhoneNumber => "pn",
        ResourceKind::Integration(_) => "ig",
    }
}
pub(super) fn app_binding_prefix(org: &OrgId, tag: &str, resource: &str) -> Vec<u8> {
    format!("ab/{org}/{tag}/{resource}/").into_bytes()
}
pub(super) fn app_binding(org: &OrgId, kind: &ResourceKind, resource: &str, app: &AppId, slot: &str) -> Vec<u8> {
    [app_binding_prefix(org, resource_tag(kind), resource), format!("{app}/{slot}").into_bytes()].concat()
}
pub(super) fn audit_prefix(org: &OrgId) -> Vec<u8> {
    format!("al/{org}/").into_bytes()
}
/// The part of an audit key after the org's prefix: also the page token of audit listings.
pub(super) fn audit_suffix(at_ms: u64, seq: u64) -> String {
    format!("{at_ms:020}/{seq:020}")
}
pub(super) fn audit_time(org: &OrgId, at_ms: u64) -> Vec<u8> {
    format!("al/{org}/{at_ms:020}/").into_bytes()
}
pub(super) fn audit_seq(org: &OrgId) -> Vec<u8> {
    format!("an/{org}").into_bytes()
}
pub(super) fn request(id: &str) -> Vec<u8> {
    format!("r/{id}").into_bytes()
}
pub(super) fn request_time(at_ms: u64, id: &str) -> Vec<u8> {
    format!("t/{at_ms:020}/{id}").into_bytes()
}

/// The end (exclusive) of the range of keys starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; prefix.len() + 1]
}
/// A move of the org, as this region records it.
pub(super) fn org_move(org: &OrgId) -> Vec<u8> {
    format!("mv/{org}").into_bytes()
}
/// Where a moved org went.
pub(super) fn forwarding(org: &OrgId) -> Vec<u8> {
    format!("fw/{org}").into_bytes()
}
/// A moving org's own record, staged here until the switch makes it live (its other records
/// are staged in place: nothing reaches them while the org record is not live).
pub(super) fn staged_org(org: &OrgId) -> Vec<u8> {
    format!("sg/{org}").into_bytes()
}
