//! The small types of the client's method signatures: request ids, read consistency, paging,
//! and the thin wrappers around list answers and move statuses. Records themselves stay the generated wire
//! messages ([`v1::Org`], [`v1::Member`], ...): the client adds no second model of them.

use std::fmt;
use std::str::FromStr;

use orgplane_model::OrgId;
use orgplane_proto::v1;

use crate::error::ClientError;

/// The idempotency key of one logical write. Every attempt of the write carries the same id,
/// so the server applies the write once however often it is sent.
///
/// Invariant, enforced by the constructors: 1 to 128 visible ASCII characters (an empty id
/// would silently turn idempotency off).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// A fresh random id (a UUIDv4 in hyphenated form).
    pub fn generate() -> RequestId {
        RequestId(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RequestId {
    type Err = ClientError;

    /// Accepts a caller-chosen id, checked against the server's rule so a bad id fails before
    /// anything is sent.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| ClientError::InvalidRequestId { given: s.chars().take(140).collect(), reason };
        if s.is_empty() {
            return Err(invalid("must not be empty".into()));
        }
        orgplane_model::validate::request_id(s).map_err(|e| invalid(e.to_string()))?;
        Ok(RequestId(s.to_string()))
    }
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Reflects every write acknowledged before the read started. The server's default.
    #[default]
    Linearizable,
    /// The answering replica's own state, possibly behind; cheaper, and served by any replica
    /// even while the region has no leader. The answer's `ReadInfo` says how far it had applied.
    Local,
}

impl Consistency {
    pub(crate) fn to_wire(self) -> i32 {
        match self {
            Consistency::Linearizable => v1::ReadConsistency::Linearizable as i32,
            Consistency::Local => v1::ReadConsistency::Local as i32,
        }
    }
}

/// Which page of a list to read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PageRequest {
    /// Items per page; 0 lets the server choose (100). At most 1000.
    pub page_size: u32,
    /// The previous page's `next_page_token`; `None` for the first page.
    pub page_token: Option<String>,
    pub consistency: Consistency,
}

impl PageRequest {
    /// The first page, of `page_size` items (0: the server's default).
    pub fn first(page_size: u32) -> PageRequest {
        PageRequest { page_size, ..PageRequest::default() }
    }

    /// The page after the one that returned `page_token`.
    pub fn after(page_size: u32, page_token: impl Into<String>) -> PageRequest {
        PageRequest { page_size, page_token: Some(page_token.into()), ..PageRequest::default() }
    }

    pub fn with_consistency(self, consistency: Consistency) -> PageRequest {
        PageRequest { consistency, ..self }
    }

    pub(crate) fn token_for_wire(&self) -> String {
        self.page_token.clone().unwrap_or_default()
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The token of the next page; `None` when this was the last page (the wire's empty string).
    pub next_page_token: Option<String>,
    /// How the read was served (consistency, replica, applied index).
    pub read: Option<v1::ReadInfo>,
}

/// One org as read, with how the read was served.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgRead {
    pub org: v1::Org,
    pub read: Option<v1::ReadInfo>,
}

/// An org's latest move and where the org is served now: the answer of
/// [`crate::Client::move_status`].
#[derive(Debug, Clone, PartialEq)]
pub struct MoveStatus {
    /// The latest move, as its target region records it (in progress or ended). Named
    /// `org_move` because `move` is a Rust keyword.
    pub org_move: v1::OrgMove,
    /// The region that serves the org now.
    pub home_region: String,
    /// The org's ownership epoch there, bumped by every move.
    pub epoch: u64,
}

/// The orgs of a user, gathered from every region, and which regions answered. A region that
/// did not answer contributed nothing, so the list is then partial.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserOrgs {
    pub orgs: Vec<v1::UserOrg>,
    /// `None` when every region returned its last page.
    pub next_page_token: Option<String>,
    /// One entry per region asked.
    pub regions: Vec<v1::RegionResult>,
}

impl UserOrgs {
    /// The regions whose answer is missing from `orgs`.
    pub fn unanswered_regions(&self) -> impl Iterator<Item = &v1::RegionResult> {
        self.regions.iter().filter(|r| r.state() != v1::RegionState::Ok)
    }

    /// True when some region did not answer, so orgs may be missing.
    pub fn is_partial(&self) -> bool {
        self.unanswered_regions().next().is_some()
    }
}

/// Names an org in a call: an [`OrgId`], or an id's text as a user typed it. Text is sent as
/// is; the server checks it (a malformed id comes back as INVALID_ARGUMENT).
pub trait OrgRef {
    fn org_id_text(&self) -> String;
}

impl OrgRef for OrgId {
    fn org_id_text(&self) -> String {
        self.to_string()
    }
}

impl OrgRef for str {
    fn org_id_text(&self) -> String {
        self.to_string()
    }
}

impl OrgRef for String {
    fn org_id_text(&self) -> String {
        self.clone()
    }
}

impl<T: OrgRef + ?Sized> OrgRef for &T {
    fn org_id_text(&self) -> String {
        (**self).org_id_text()
    }
}

/// The wire's "empty means none" convention for page tokens.
pub(crate) fn non_empty(token: String) -> Option<String> {
    if token.is_empty() {
        None
    } else {
        Some(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, accepted: bool) {
        assert_eq!(input.parse::<RequestId>().is_ok(), accepted, "input {input:?}");
    }

    #[test]
    fn request_ids_follow_the_server_rule() {
        check("deploy-42", true);
        check(&"a".repeat(128), true);
        check(&"a".repeat(129), false);
        check("", false);
        check("has space", false);
        check("tab\t", false);
        check("é", false);
        let generated = RequestId::generate();
        assert_eq!(generated.as_str().len(), 36);
        assert_ne!(generated, RequestId::generate());
        check(generated.as_str(), true);
    }

    #[test]
    fn user_orgs_are_partial_when_a_region_did_not_answer() {
        let region = |name: &str, state: v1::RegionState| v1::RegionResult {
            region: name.into(),
            state: state as i32,
            message: String::new(),
        };
        let mut answer = UserOrgs {
            regions: vec![region("us", v1::RegionState::Ok), region("eu", v1::RegionState::Ok)],
            ..UserOrgs::default()
        };
        assert!(!answer.is_partial());
        answer.regions.push(region("apac", v1::RegionState::Unavailable));
        assert!(answer.is_partial());
        assert_eq!(answer.unanswered_regions().map(|r| r.region.as_str()).collect::<Vec<_>>(), ["apac"]);
    }
}
