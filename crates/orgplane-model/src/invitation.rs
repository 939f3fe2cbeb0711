//! Invitations: an offer of a role in an org to whoever proves (by a token with that verified
//! email) that they own an email address.
//!
//! An org has at most one invitation per email address; it is the invitation's identity, so
//! accepting needs no id and nobody can probe for invitations addressed to someone else. A new
//! invitation may replace an old one once that is no longer pending (expired, revoked or
//! accepted).

use serde::{Deserialize, Serialize};

use crate::actor::Actor;
use crate::id::OrgId;
use crate::role::Role;

/// How long an invitation stays open when the command gives no expiry: 7 days.
pub const DEFAULT_INVITATION_TTL_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// The longest expiry a command may ask for: 30 days after it is issued.
pub const MAX_INVITATION_TTL_MS: u64 = 30 * 24 * 60 * 60 * 1000;

/// An invitation as stored and read (it holds nothing secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    pub org_id: OrgId,
    /// The invited address, normalized (trimmed, lowercase).
    pub email: String,
    pub role: Role,
    /// Who invited. Accepting checks that this actor may still grant the role, so an inviter
    /// who lost the right also loses their pending invitations.
    pub invited_by: Actor,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    /// What happened to it after creation; expiry is not stored but computed from the time
    /// ([`Invitation::status`]).
    pub resolution: Option<InvitationResolution>,
}

/// How an invitation ended, when it ended other than by expiring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvitationResolution {
    Revoked {
        by: Actor,
        at_ms: u64,
    },
    /// `user_id` became a member with the invitation's role.
    Accepted {
        user_id: String,
        at_ms: u64,
    },
}

/// Where an invitation stands at some time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvitationStatus {
    Pending,
    Expired,
    Revoked,
    Accepted,
}

impl InvitationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvitationStatus::Pending => "pending",
            InvitationStatus::Expired => "expired",
            InvitationStatus::Revoked => "revoked",
            InvitationStatus::Accepted => "accepted",
        }
    }
}

impl Invitation {
    /// The status at `now_ms`: revoked and accepted are final; otherwise pending until
    /// `expires_at_ms` (exclusive), expired from then on.
    pub fn status(&self, now_ms: u64) -> InvitationStatus {
        match self.resolution {
            Some(InvitationResolution::Revoked { .. }) => InvitationStatus::Revoked,
            Some(InvitationResolution::Accepted { .. }) => InvitationStatus::Accepted,
            None if now_ms >= self.expires_at_ms => InvitationStatus::Expired,
            None => InvitationStatus::Pending,
        }
    }
}
