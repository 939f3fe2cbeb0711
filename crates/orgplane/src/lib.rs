//! The pieces of the `orgplane` binary that tests and embedders reuse:
//! - [`dev`]: the embedded local deployment: three regions of three nodes and a router, in one
//!   process on loopback, each node with its own data directory.
//! - [`config_file`]: merging a TOML config file with command-line flags.
//! - [`telemetry`]: the tracing subscriber (text or JSON logs).
//! - [`signal`]: Ctrl-C and SIGTERM as one shutdown future.

#![forbid(unsafe_code)]

pub mod config_file;
pub mod dev;
pub mod signal;
pub mod telemetry;
