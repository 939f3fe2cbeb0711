//! orgplane's Raft layer, on openraft 0.9 with storage v2.
//!
//! - [`types`]: the openraft type config ([`TypeConfig`]) and the replicated request and
//!   response ([`RaftRequest`], [`RaftResponse`]): one log entry carries a batch of commands.
//!
//! This crate knows no gRPC and no storage engine.

#![forbid(unsafe_code)]

pub mod types;

pub use types::{NodeId, RaftRequest, RaftResponse, TypeConfig};
