//! orgplane's domain model: what an org, a member and a command are, who may issue a command,
//! and how a command changes the state. Everything here is deterministic and does no I/O: the
//! state is reached through the small key-value traits in [`state`], which the sled store
//! implements and unit tests implement in memory.
//!
//! Layout:
//! - [`region`], [`id`]: regions and org ids (an org id names the region it was created in);
//! - [`org`], [`role`], [`invitation`], [`resource`], [`app`]: the records kept per org;
//! - [`permission`], [`actor`], [`policy`]: permissions and the built-in roles' sets, who acts,
//!   and the policy table with the checks that `apply` and the node share;
//! - [`audit`]: the audit log's events;
//! - [`relocation`]: moving an org to another region: each side's record and the steps;
//! - [`validate`]: the input rules (names, user ids, emails, phone numbers, page sizes);
//! - [`command`]: what a write asks for and what it answers;
//! - [`state`]: the key layout, [`state::apply`] and the read queries;
//! - [`error`]: [`DomainError`], the outcome of a write or read that was refused.

#![forbid(unsafe_code)]

pub mod actor;
pub mod app;
pub mod audit;
pub mod command;
pub mod error;
pub mod id;
pub mod invitation;
pub mod org;
pub mod permission;
pub mod policy;
pub mod region;
pub mod relocation;
pub mod resource;
pub mod role;
pub mod state;
pub mod validate;

pub use actor::{Actor, UserActor};
pub use app::{App, AppId, ResourceKind, Slot};
pub use audit::{AuditEvent, AuditFilter, AuditOutcome, AuditTarget};
pub use command::{Command, CommandOutcome, CommandResult, Op};
pub use error::DomainError;
pub use id::OrgId;
pub use invitation::{Invitation, InvitationStatus};
pub use org::{Member, Org, UserOrg};
pub use permission::{Permission, PermissionSet};
pub use policy::{authorize, authorize_access, authorize_op, authorize_query, authorize_user_orgs, Access, QueryKind};
pub use region::Region;
pub use resource::{ConfigEntry, ConfigValue, IntegrationView, PhoneNumber, SecretValue};
pub use role::{CustomRole, Role};
