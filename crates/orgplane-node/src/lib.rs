//! A region node: one member of a region's Raft group, serving the public API and the
//! peer-only Raft service on one address.
//!
//! - [`config`]: [`NodeConfig`], validated before anything starts.
//! - [`node`]: [`Node::start`] wires store, Raft, group commit, reads and services, and
//!   forms the cluster from the peer list on first start; [`run`] serves until shutdown.
//! - [`org_service`]: the public `OrgService`: validation, commands, linearizable or local reads.
//! - [`access_service`]: the public `AccessService`: custom roles, invitations, integrations,
//!   phone numbers and the audit log, each call authorized against the policy table.
//! - [`app_service`]: the public `AppService`: apps, slot bindings, publishing, export and
//!   import as archives (`orgplane-appzip`), validated entirely before one command.
//! - [`admin_service`]: membership changes (add a node as learner then voter, remove one),
//!   refused when they would lose the quorum; and backups, streamed by [`backup`].
//! - [`backup`]: a linearizable, consistent copy of the region's state, streamed in chunks.
//! - [`cluster_service`]: this node's status and its region's topology.
//! - [`move_service`]: this region's half of moving an org: move steps, the org's image, the
//!   region's move records; `residency`: what the node holds of an org, and compaction.
//! - `gate`: what a call must show first: the peer certificate (with `[tls]`), then the token.
//! - [`peer_service`]: the peer-only Raft service; checks region and target of every message.
//! - [`transport`]: the gRPC [`orgplane_raft::PeerTransport`], one cached channel per peer.
//! - [`error`]: [`NodeError`] and the one function that maps errors to gRPC statuses.
//! - [`metrics`]: [`metrics::NodeMetrics`], the series behind `--metrics-listen` (RPCs, Raft,
//!   group commit, snapshots, store size).

#![forbid(unsafe_code)]

pub mod access_service;
pub mod admin_service;
pub mod app_service;
pub mod backup;
mod caller;
pub mod cluster_service;
pub mod config;
pub mod error;
mod gate;
pub mod metrics;
pub mod move_service;
pub mod node;
pub mod org_service;
pub mod peer_service;
mod residency;
pub mod transport;

pub use config::NodeConfig;
pub use error::NodeError;
pub use node::{run, Node};

/// Response header naming the region leader's address, so routers and clients can send the
/// next write straight to it.
pub const LEADER_HEADER: &str = "x-orgplane-leader";
