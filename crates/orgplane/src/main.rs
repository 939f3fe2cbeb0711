//! `orgplane`: run a region node, a router, or the whole thing locally (`orgplane dev`), or
//! probe one's health (`orgplane health`).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use orgplane::cli::{Cli, Command, DevArgs, NodeArgs, RouterArgs};
use orgplane::{health_probe, k8s, telemetry};

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    if let Command::Health(args) = &cli.command {
        // A probe runs often and briefly: no logging, no multi-threaded runtime.
        return Ok(health_probe::run(args));
    }
    telemetry::init(cli.log_format);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Node(args) => run_node(args).await,
            Command::Router(args) => run_router(args).await,
            Command::Dev(args) => run_dev(args).await,
            Command::Health(_) => unreachable!("handled above"),
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let config = args.into_config(k8s::hostname)?;
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    orgplane_node::run(config, listener, orgplane::signal::shutdown_signal()).await?;
    Ok(())
}

async fn run_router(args: RouterArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    orgplane_router::run(config, listener, orgplane::signal::shutdown_signal()).await?;
    Ok(())
}

async fn run_dev(args: DevArgs) -> anyhow::Result<()> {
    let config = orgplane::dev::DevConfig {
        data_dir: args.data_dir,
        listen: args.listen,
        node_base_port: args.node_base_port,
        nodes_per_region: 3,
    };
    let deployment = orgplane::dev::start(config).await?;
    eprint!("{}", deployment.describe());
    orgplane::signal::shutdown_signal().await;
    deployment.shutdown().await;
    eprintln!("orgplane dev: stopped");
    Ok(())
}
