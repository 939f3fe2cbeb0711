//! `orgplane-bench`: orgplane's own benchmark. N concurrent gRPC clients (tokio tasks sharing a
//! few channels, like etcd's benchmark `--clients`/`--conns`) issue requests back to back for a
//! fixed time after a warmup; latencies go into HDR histograms; the report gives ok requests per
//! second, p50/p90/p99/p99.9 latency and errors by gRPC code, as a table or JSON.
//!
//! Layout:
//! - [`cli`]: the command line and its value parsers;
//! - [`app`]: the modes (`run`, `region`, `router-overhead`; `growth`, `chart`, `wan` and
//!   `move` have their own modules) from target to report;
//! - [`targets`]: external endpoints, or an embedded region or dev deployment;
//! - [`fixtures`]: the orgs and members created before the clock starts;
//! - [`workload`]: the operations, their weights, and building each request;
//! - [`runner`]: the client tasks, the warmup and measurement window, the histograms;
//! - [`report`]: percentiles, throughput, ratios, tables and JSON;
//! - [`cpu`]: CPU used during a run, from `/proc`;
//! - [`growth`]: the `growth` preset: node processes, preload, footprint, restart, catch-up;
//! - [`chart`]: PNG charts drawn from the JSON reports;
//! - [`wan`]: the `wan` preset: delay proxies between regions, a router per region;
//! - [`moves`]: the `move` preset: an org moved between regions and back under writes.

#![forbid(unsafe_code)]

mod app;
mod chart;
mod cli;
mod cpu;
mod fixtures;
mod growth;
mod moves;
mod report;
mod runner;
mod targets;
mod wan;
mod workload;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    // Embedded nodes log through this subscriber too: warnings only (openraft: errors only, its
    // election chatter is expected) unless RUST_LOG says more.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,openraft=error")))
        .with_writer(std::io::stderr)
        .init();
    tokio::select! {
        result = app::run(cli) => result,
        // Dropping the run drops its temporary directories.
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
    }
}
