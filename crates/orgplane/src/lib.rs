//! The pieces of the `orgplane` binary that tests and embedders reuse:
//! - [`cli`]: the command line (clap derive types) and the merge of flags over config files;
//!   [`cli()`] returns it as a `clap::Command`, so tests can check manifests against it.
//! - [`dev`]: the embedded local deployment: three regions of three nodes and a router, in one
//!   process on loopback, each node with its own data directory.
//! - [`config_file`]: merging a TOML config file with command-line flags.
//! - [`health_probe`]: `orgplane health`, one gRPC health check for container probes.
//! - [`k8s`]: the node id of a StatefulSet pod, from its host name.
//! - [`restore`]: `orgplane restore`, seeding a new node's data dir from a backup file.
//! - [`signal`]: Ctrl-C and SIGTERM as one shutdown future.

#![forbid(unsafe_code)]

pub mod cli;
pub mod config_file;
pub mod dev;
pub mod health_probe;
pub mod k8s;
pub mod restore;
pub mod signal;

/// The `orgplane` command line, every subcommand and flag, as clap sees it.
pub fn cli() -> clap::Command {
    <cli::Cli as clap::CommandFactory>::command()
}
