//! `orgplane`: run a region node, a router, or the whole thing locally (`orgplane dev`),
//! probe one's health (`orgplane health`), or seed a new node from a backup
//! (`orgplane restore`).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use orgplane::cli::{Cli, Command, DevArgs, DevCertsArgs, DevTokenArgs, RestoreArgs};
use orgplane::{health_probe, k8s};
use orgplane_node::NodeConfig;
use orgplane_router::RouterConfig;
use orgplane_telemetry::trace::{self, LogFormat, TracingGuard, TracingSettings};

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    if let Command::Health(args) = &cli.command {
        // A probe runs often and briefly: no logging, no multi-threaded runtime.
        return Ok(health_probe::run(args));
    }
    if let Command::DevToken(args) = &cli.command {
        // Offline and brief, like restore: the token goes to stdout, nothing else does.
        return Ok(run_dev_token(args));
    }
    if let Command::DevCerts(args) = &cli.command {
        return Ok(run_dev_certs(args));
    }
    if let Command::Restore(args) = &cli.command {
        // Offline and brief: no runtime and no tracing; the outcome goes to stdout or stderr.
        return Ok(run_restore(args));
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    // The OTLP exporter's channel runs on the runtime, so tracing starts inside it.
    let _runtime_context = runtime.enter();
    let log_format = cli.log_format;
    // Each process's config is read and validated first: it names the OTLP endpoint.
    let tracing = match cli.command {
        Command::Node(args) => {
            let config = args.into_config(k8s::hostname)?;
            config.validate()?;
            let instance = format!("{}-{}", config.region, config.node_id);
            let tracing = start_tracing(log_format, "orgplane-node", Some(instance), &config.otlp_endpoint)?;
            runtime.block_on(run_node(config))?;
            tracing
        }
        Command::Router(args) => {
            let config = args.into_config()?;
            config.validate()?;
            let tracing = start_tracing(log_format, "orgplane-router", None, &config.otlp_endpoint)?;
            runtime.block_on(run_router(config))?;
            tracing
        }
        Command::Dev(args) => {
            let tracing = start_tracing(log_format, "orgplane-dev", None, &args.otlp_endpoint)?;
            runtime.block_on(run_dev(args))?;
            tracing
        }
        Command::Health(_) | Command::Restore(_) | Command::DevToken(_) | Command::DevCerts(_) => {
            unreachable!("handled above")
        }
    };
    // Sends the spans still buffered while the runtime still runs the exporter's channel.
    tracing.shutdown();
    Ok(ExitCode::SUCCESS)
}

/// `orgplane restore`: exit 0 with what was restored on stdout, or 1 with why not on stderr.
fn run_restore(args: &RestoreArgs) -> ExitCode {
    let restored = args.to_config().map_err(anyhow::Error::from).and_then(|config| {
        let restored = orgplane::restore::restore(&config)?;
        Ok(orgplane::restore::describe(&config, &restored))
    });
    match restored {
        Ok(description) => {
            print!("{description}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `orgplane dev-token`: exit 0 with the token on stdout, or 1 with why not on stderr. Makes
/// the dev signing key in the data dir if it is not there yet (as `orgplane dev` would).
fn run_dev_token(args: &DevTokenArgs) -> ExitCode {
    let token = orgplane_auth::dev_key::ensure(&args.data_dir)
        .and_then(|key| key.token(&args.user, args.platform_admin, args.email.as_deref(), args.ttl));
    match token {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Writes the dev PKI and prints, per file, whose identity it carries.
fn run_dev_certs(args: &DevCertsArgs) -> ExitCode {
    let routers: Vec<&str> = args.routers.iter().map(String::as_str).collect();
    let written =
        orgplane_auth::dev_pki::generate(&args.out, &args.regions, args.nodes_per_region, &routers).and_then(|pki| {
            let clients = args.clients.iter().map(|name| orgplane_auth::dev_pki::issue_client(&args.out, name));
            Ok((pki, clients.collect::<Result<Vec<_>, _>>()?))
        });
    match written {
        Ok((pki, clients)) => {
            println!("{}  the CA", pki.ca.cert.display());
            for issued in pki.issued.iter().chain(&clients) {
                println!("{}  {}", issued.paths.cert.display(), issued.identity);
            }
            println!("keys are beside their certificates (.key, mode 0600); keep ca.key to issue more");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Installs the log subscriber, and the OTLP exporter when an endpoint is configured.
fn start_tracing(
    log_format: LogFormat,
    service_name: &'static str,
    instance: Option<String>,
    otlp_endpoint: &str,
) -> anyhow::Result<TracingGuard> {
    let settings = TracingSettings { log_format, service_name, instance, otlp_endpoint: otlp_endpoint.to_string() };
    let tracing = trace::init(settings)?;
    if let Some(endpoint) = trace::resolve_otlp_endpoint(otlp_endpoint) {
        tracing::info!(%endpoint, "exporting spans over OTLP/gRPC");
    }
    Ok(tracing)
}

async fn run_node(config: NodeConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let metrics_listener = bind_metrics(config.metrics_listen).await?;
    orgplane_node::run(config, listener, metrics_listener, orgplane::signal::shutdown_signal()).await?;
    Ok(())
}

async fn run_router(config: RouterConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let metrics_listener = bind_metrics(config.metrics_listen).await?;
    orgplane_router::run_with_http(config, listener, metrics_listener, orgplane::signal::shutdown_signal()).await?;
    Ok(())
}

/// Binds `metrics-listen`, if set, before anything starts, so a taken port fails at once.
async fn bind_metrics(addr: Option<std::net::SocketAddr>) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let Some(addr) = addr else { return Ok(None) };
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen for metrics on {addr}"))?;
    Ok(Some(listener))
}

async fn run_dev(args: DevArgs) -> anyhow::Result<()> {
    let config = orgplane::dev::DevConfig {
        data_dir: args.data_dir,
        listen: args.listen,
        node_base_port: args.node_base_port,
        nodes_per_region: 3,
        metrics_listen: Some(args.metrics_listen),
        allow_unauthenticated: false,
    };
    let deployment = orgplane::dev::start(config).await?;
    eprint!("{}", deployment.describe());
    orgplane::signal::shutdown_signal().await;
    deployment.shutdown().await;
    eprintln!("orgplane dev: stopped");
    Ok(())
}
