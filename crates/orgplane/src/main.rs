//! `orgplane`: run a region node, a router, or the whole thing locally (`orgplane dev`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use orgplane::config_file;
use orgplane::telemetry::{self, LogFormat};
use orgplane_node::NodeConfig;
use orgplane_router::RouterConfig;

#[derive(Parser)]
#[command(name = "orgplane", version, about = "A region-sharded control plane for organizations")]
struct Cli {
    /// Log format on stderr (RUST_LOG filters).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "ORGPLANE_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node of a region.
    Node(NodeArgs),
    /// Run the stateless global router.
    Router(RouterArgs),
    /// Run all three regions (3 nodes each) and a router in this process, on loopback.
    Dev(DevArgs),
}

#[derive(Args)]
struct NodeArgs {
    /// A TOML config file (see deploy/node.template.toml); flags override it.
    #[arg(long, env = "ORGPLANE_CONFIG")]
    config: Option<PathBuf>,
    /// us, eu or apac.
    #[arg(long, env = "ORGPLANE_REGION")]
    region: Option<String>,
    #[arg(long, env = "ORGPLANE_NODE_ID")]
    node_id: Option<u64>,
    /// HOST:PORT to serve clients and peers on.
    #[arg(long, env = "ORGPLANE_LISTEN")]
    listen: Option<String>,
    #[arg(long, env = "ORGPLANE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Every node of the region: 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT.
    #[arg(long, env = "ORGPLANE_PEERS")]
    peers: Option<String>,
}

#[derive(Args)]
struct RouterArgs {
    /// A TOML config file (see deploy/router.template.toml); flags override it.
    #[arg(long, env = "ORGPLANE_CONFIG")]
    config: Option<PathBuf>,
    /// HOST:PORT to serve on.
    #[arg(long, env = "ORGPLANE_LISTEN")]
    listen: Option<String>,
    /// A region and its nodes, NAME=HOST:PORT,HOST:PORT,HOST:PORT; once per region.
    #[arg(long = "region", value_name = "NAME=ENDPOINTS")]
    regions: Vec<String>,
}

#[derive(Args)]
struct DevArgs {
    /// Where the nodes keep their data, one folder per region and node.
    #[arg(long, default_value = "./orgplane-data", env = "ORGPLANE_DATA_DIR")]
    data_dir: PathBuf,
    /// The router's address.
    #[arg(long, default_value = "127.0.0.1:50051", env = "ORGPLANE_LISTEN")]
    listen: SocketAddr,
    /// The first of nine node ports, used on first start (later starts reuse the saved layout).
    #[arg(long, default_value_t = 50061)]
    node_base_port: u16,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Node(args) => run_node(args).await,
            Command::Router(args) => run_router(args).await,
            Command::Dev(args) => run_dev(args).await,
        }
    })
}

async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let mut table = config_file::load_table(args.config.as_deref())?;
    config_file::set(&mut table, "region", args.region);
    config_file::set(&mut table, "node-id", args.node_id.map(|n| n as i64));
    config_file::set(&mut table, "listen", args.listen);
    config_file::set(&mut table, "data-dir", args.data_dir.map(|d| d.display().to_string()));
    if let Some(peers) = args.peers {
        let peers = orgplane_node::config::parse_peers(&peers)?;
        let peers: toml::Table =
            peers.into_iter().map(|(id, addr)| (id.to_string(), toml::Value::String(addr))).collect();
        table.insert("peers".into(), toml::Value::Table(peers));
    }
    let config: NodeConfig = config_file::finish(table)?;
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    orgplane_node::run(config, listener, orgplane::signal::shutdown_signal()).await?;
    Ok(())
}

async fn run_router(args: RouterArgs) -> anyhow::Result<()> {
    let mut table = config_file::load_table(args.config.as_deref())?;
    config_file::set(&mut table, "listen", args.listen);
    if !args.regions.is_empty() {
        let mut regions = toml::Table::new();
        for flag in &args.regions {
            let (region, endpoints) = orgplane_router::parse_region_flag(flag)?;
            regions.insert(
                region.to_string(),
                toml::Value::Array(endpoints.into_iter().map(toml::Value::String).collect()),
            );
        }
        table.insert("regions".into(), toml::Value::Table(regions));
    }
    let config: RouterConfig = config_file::finish(table)?;
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
