//! orgplane's global router: a stateless gRPC front that serves the same `OrgService` and
//! `ClusterService` as the region nodes and forwards each call to the region that owns it.
//!
//! The router keeps no org data and writes nothing to disk: the configuration and the nodes'
//! answers are all it knows. It logs the method, region, status code and latency of each call,
//! never a payload (names, emails, user ids) and never a node's error message.
//!
//! A call's path: `OrgService` method -> `route` (request -> region key, from the org id or
//! the named region) -> `region` (region key -> that region's cached nodes; hinted node first,
//! failover to the others while safe and in time) -> `stack` (per-node tower stack: trace, load
//! shed, concurrency limit, timeout, lazy tonic channel) -> a region node.
//!
//! Layout:
//! - [`config`]: [`RouterConfig`], its validation, and [`parse_region_flag`];
//! - [`error`]: [`RouterError`] and its one mapping to `tonic::Status`;
//! - `deadline`: a request's time budget from `grpc-timeout` and the configured limit;
//! - `route`: which region a request goes to, and whether it may be sent twice;
//! - `region`: the per-region node table, leader hint and attempt loop;
//! - `stack`: the per-node channel and the one function that builds its tower stack;
//! - `org_service`: `OrgService` at the router; `fanout`: `ListUserOrgs` over every region
//!   and its page token;
//! - `credentials`: the caller's `authorization` header, passed on to the node (which
//!   authenticates it again; the router authenticates every call first, with `orgplane-auth`);
//! - `rate_limit`: the per-caller token bucket (keyed on the token's subject) and the router's
//!   one interceptor, authentication then the limit;
//! - `cluster_service`: `ClusterService` at the router (status of every node, topology);
//! - `app_service`: `AppService`, routed by org id; export relayed like a backup, import
//!   routed by its header and forwarded as it arrives;
//! - `admin_service`: `AdminService` (membership changes), routed by the region it names;
//!   `backup`: relaying a region's backup stream, bounded by the client's deadline;
//! - `placement`: where moved orgs live now (from forwarding answers; `route_to` follows them,
//!   carries the believed epoch, and waits out an org's freeze within the deadline);
//! - `mover`: the driver of org moves (reads the target's record, applies the next step,
//!   resumable by any router); `move_service`: `MoveService` (start, status, abort, residency);
//! - `status_page`: the HTML status page (regions, nodes, leaders, terms, lag, health);
//! - `server`: [`RouterApi`], [`router_services`] and [`run`] (with gRPC health and
//!   reflection), [`run_with_http`] (and the HTTP app on `metrics-listen`);
//! - `http`: [`http_app`], what the router serves over plain HTTP (`/metrics`, the status
//!   page); `metrics`: the per-region and fan-out series.

#![forbid(unsafe_code)]

pub mod config;
pub mod error;

mod access_service;
mod admin_service;
mod app_service;
mod backup;
mod cluster_service;
mod credentials;
mod deadline;
mod fanout;
mod http;
mod metrics;
mod move_service;
mod mover;
mod org_service;
mod placement;
mod rate_limit;
mod region;
mod route;
mod server;
mod stack;
mod status_page;

pub use cluster_service::UNREACHABLE_ROLE;
pub use config::{parse_region_flag, RouterConfig, ValidatedRegions, MAX_MESSAGE_BYTES};
pub use error::{RouterError, REGION_METADATA_KEY};
pub use http::http_app;
pub use region::LEADER_HEADER;
pub use server::{router_rpc_catalog, router_services, run, run_with_http, RouterApi, RouterServices};
