//! The typed Rust client of orgplane's public gRPC API (`proto/orgplane/v1/orgplane.proto`),
//! used by `orgctl`, the tests and the benchmark. It speaks to a router or to a region node
//! alike.
//!
//! ```no_run
//! # async fn example() -> Result<(), orgplane_client::ClientError> {
//! use orgplane_client::{Client, Consistency};
//! use orgplane_model::{Region, Role};
//!
//! let client = Client::connect("127.0.0.1:50051")?;
//! let org = client.create_org(Region::Eu, "Acme").await?;
//! client.add_member(&org.id, "alice", Role::Admin).await?;
//! let read = client.get_org(&org.id, Consistency::Linearizable).await?;
//! assert_eq!(read.org.name, "Acme");
//! # Ok(())
//! # }
//! ```
//!
//! What every call gets: a per-attempt timeout sent as `grpc-timeout`, bounded retries with
//! jittered exponential backoff for the failures in [`retry`]'s table, and, for writes, one
//! request id reused by every attempt so the server applies the write once.
//!
//! Layout:
//! - [`client`] holds [`Client`], one method per RPC; [`access`] adds those of `AccessService`
//!   (roles, invitations, integrations, phone numbers, the audit log);
//! - [`apps`] adds those of `AppService` (apps, slots, publishing, export to a writer and
//!   import from a reader);
//! - [`moves`] adds those of `MoveService` that a router serves (moving an org to another
//!   region, its status, abort, and the residency report);
//! - [`backup`] holds [`BackupStream`], a region's backup as it arrives, checked as it goes;
//! - [`types`] holds [`RequestId`], [`Consistency`], [`PageRequest`], [`Page`], [`OrgRead`],
//!   [`UserOrgs`] and [`MoveStatus`];
//! - [`options`] holds [`ClientOptions`];
//! - [`retry`] says which failures are retried, and holds the backoff and the attempt loop;
//! - [`transport`] parses endpoints, builds the channel, and adds the bearer token;
//! - [`error`] holds [`ClientError`], with a human hint per status code;
//! - `testing` (feature `test-support`) is an in-memory fake server for tests.

#![forbid(unsafe_code)]

pub mod access;
pub mod apps;
pub mod backup;
pub mod client;
pub mod error;
pub mod moves;
pub mod options;
pub mod retry;
pub mod transport;
pub mod types;

#[cfg(feature = "test-support")]
pub mod testing;

pub use apps::{AppSpec, AppUpdate, ExportedApp, Progress};
pub use backup::BackupStream;
pub use client::Client;
pub use error::{code_name, hint_for_code, ClientError};
pub use options::{ClientOptions, TlsOptions, DEFAULT_MAX_MESSAGE_BYTES};
pub use transport::{endpoint_uri, Credentials, Transport};
pub use types::{Consistency, MoveStatus, OrgRead, OrgRef, Page, PageRequest, RequestId, UserOrgs};

/// The wire messages the client returns, re-exported so callers need not depend on the proto
/// crate themselves.
pub use orgplane_proto::v1;
