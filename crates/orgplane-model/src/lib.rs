//! orgplane's domain model: what an org, a member and a command are, and how a command changes
//! the state. Everything here is deterministic and does no I/O: the state is reached through
//! the small key-value traits in [`state`], which the sled store implements and unit tests
//! implement in memory.
//!
//! Layout:
//! - [`region`], [`id`]: regions and org ids (an org id names the region it was created in);
//! - [`org`], [`role`]: the records kept per org;
//! - [`validate`]: the input rules (names, user ids, page sizes);
//! - [`command`]: what a write asks for and what it answers;
//! - [`state`]: the key layout, [`state::apply`] and the read queries;
//! - [`error`]: [`DomainError`], the outcome of a write or read that was refused.

#![forbid(unsafe_code)]

pub mod command;
pub mod error;
pub mod id;
pub mod org;
pub mod region;
pub mod role;
pub mod state;
pub mod validate;

pub use command::{Command, CommandOutcome, CommandResult, Op};
pub use error::DomainError;
pub use id::OrgId;
pub use org::{Member, Org, UserOrg};
pub use region::Region;
pub use role::Role;
