//! [`DomainError`]: why a command or query was refused. These are deterministic outcomes of
//! applying a command (they are replicated and remembered for request-id retries), never
//! transport or storage failures.

use serde::{Deserialize, Serialize};

/// A refusal. Each variant maps to one gRPC status code in the node's status mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum DomainError {
    /// The input breaks a rule; nothing was changed.
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// The thing does not exist (or the caller may not know that it exists).
    #[error("{kind} {id} not found")]
    NotFound { kind: String, id: String },
    /// The thing exists already.
    #[error("{kind} {id} already exists")]
    AlreadyExists { kind: String, id: String },
    /// The caller's expected version is not the current one: someone else changed it first.
    #[error("{kind} {id} is at version {actual}, not the expected {expected}")]
    VersionMismatch { kind: String, id: String, expected: u64, actual: u64 },
    /// The state does not allow the change (for example a request id reused for another kind
    /// of request).
    #[error("{reason}")]
    FailedPrecondition { reason: String },
    /// The actor may see the org but its role lacks `permission` for `action`. Never answered
    /// to a non-member (they get the org's NotFound, as for an org that does not exist).
    #[error("{action} requires the {permission} permission")]
    PermissionDenied { permission: String, action: String },
    /// The org is moving to another region and refuses requests until the switch (seconds at
    /// most): retry. Never remembered for a request id.
    #[error("org {org_id} is moving to region {region}; retry shortly")]
    OrgMoving { org_id: String, region: String },
    /// The org lives in another region now, at `epoch`: send the request there. Never
    /// remembered for a request id.
    #[error("org {org_id} moved to region {region} (epoch {epoch}); send requests there")]
    OrgMoved { org_id: String, region: String, epoch: u64 },
}

impl DomainError {
    /// A stable lowercase name of the variant, recorded in audit events.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::InvalidArgument { .. } => "invalid_argument",
            DomainError::NotFound { .. } => "not_found",
            DomainError::AlreadyExists { .. } => "already_exists",
            DomainError::VersionMismatch { .. } => "version_mismatch",
            DomainError::FailedPrecondition { .. } => "failed_precondition",
            DomainError::PermissionDenied { .. } => "permission_denied",
            DomainError::OrgMoving { .. } => "org_moving",
            DomainError::OrgMoved { .. } => "org_moved",
        }
    }

    pub fn not_found(kind: &str, id: impl ToString) -> DomainError {
        DomainError::NotFound { kind: kind.into(), id: id.to_string() }
    }

    pub fn already_exists(kind: &str, id: impl ToString) -> DomainError {
        DomainError::AlreadyExists { kind: kind.into(), id: id.to_string() }
    }

    pub fn failed_precondition(reason: impl Into<String>) -> DomainError {
        DomainError::FailedPrecondition { reason: reason.into() }
    }

    pub fn permission_denied(permission: impl ToString, action: impl Into<String>) -> DomainError {
        DomainError::PermissionDenied { permission: permission.to_string(), action: action.into() }
    }

    pub fn version_mismatch(kind: &str, id: impl ToString, expected: u64, actual: u64) -> DomainError {
        DomainError::VersionMismatch { kind: kind.into(), id: id.to_string(), expected, actual }
    }

    /// Whether the refusal says where the org is (moving or moved) rather than what the
    /// request did: such answers depend on when they are asked and are never remembered.
    pub fn is_placement(&self) -> bool {
        matches!(self, DomainError::OrgMoving { .. } | DomainError::OrgMoved { .. })
    }

    pub fn org_not_found(id: impl ToString) -> DomainError {
        DomainError::NotFound { kind: "org".into(), id: id.to_string() }
    }

    pub fn member_not_found(org: impl ToString, user: &str) -> DomainError {
        DomainError::NotFound { kind: "member".into(), id: format!("{} of org {}", user, org.to_string()) }
    }
}
