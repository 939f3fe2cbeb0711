//! Commands: what a write asks for, and what it answers. A command is proposed to Raft as part
//! of a batch and applied by [`crate::state::apply`] on every replica, so it carries every value
//! that must be the same everywhere (the new org's id, the time).

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::id::OrgId;
use crate::org::{Member, Org};
use crate::role::Role;

/// One write, as replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The caller's idempotency key. A second command with the same id answers the first one's
    /// result and changes nothing. Never empty: the node makes one when the caller gave none,
    /// so the node's own retries stay safe too.
    pub request_id: String,
    /// Wall-clock time chosen by the node that accepted the request, in ms since the epoch.
    /// Used for timestamps and for expiring old request ids, identically on every replica.
    pub issued_at_ms: u64,
    pub op: Op,
}

/// What a command does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Create an org. The id was chosen by the accepting node and names this region.
    CreateOrg { id: OrgId, name: String },
    /// Rename an org. With `expected_version`, refused unless it is the org's current version.
    UpdateOrg { id: OrgId, name: String, expected_version: Option<u64> },
    /// Delete an org and all its memberships.
    DeleteOrg { id: OrgId, expected_version: Option<u64> },
    /// Add a user to an org with a role.
    AddMember { org_id: OrgId, user_id: String, role: Role },
    /// Change a member's role.
    SetMemberRole { org_id: OrgId, user_id: String, role: Role },
    /// Remove a member from an org.
    RemoveMember { org_id: OrgId, user_id: String },
}

impl Op {
    /// A short stable name of the kind of operation: stored with a request id so that reusing
    /// an id for a different kind of request is caught.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::CreateOrg { .. } => "create_org",
            Op::UpdateOrg { .. } => "update_org",
            Op::DeleteOrg { .. } => "delete_org",
            Op::AddMember { .. } => "add_member",
            Op::SetMemberRole { .. } => "set_member_role",
            Op::RemoveMember { .. } => "remove_member",
        }
    }

    /// The org the command is about.
    pub fn org_id(&self) -> &OrgId {
        match self {
            Op::CreateOrg { id, .. } | Op::UpdateOrg { id, .. } | Op::DeleteOrg { id, .. } => id,
            Op::AddMember { org_id, .. } | Op::SetMemberRole { org_id, .. } | Op::RemoveMember { org_id, .. } => org_id,
        }
    }
}

/// What a successful command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandOutcome {
    /// The org as it is after the command.
    Org(Org),
    /// The membership as it is after the command.
    Member(Member),
    /// The org is gone; `removed_members` memberships went with it.
    OrgDeleted { removed_members: u64 },
    /// The membership is gone.
    MemberRemoved,
}

/// The replicated answer to a command: an outcome or a deterministic refusal.
pub type CommandResult = Result<CommandOutcome, DomainError>;
