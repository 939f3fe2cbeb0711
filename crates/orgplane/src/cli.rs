//! The command line of the `orgplane` binary, as clap derive types, and the merge of each
//! subcommand's flags over its config file into the config the process runs with.
//!
//! These live in the library (not in `main.rs`) so that tests can check deployment manifests
//! against the real command line: [`crate::cli`] returns the `clap::Command`, and
//! [`NodeArgs::into_config`] / [`RouterArgs::into_config`] turn parsed flags into the configs
//! that `orgplane node` and `orgplane router` would validate and run.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use orgplane_node::NodeConfig;
use orgplane_router::RouterConfig;

use crate::config_file::{self, ConfigFileError};
use crate::k8s::{self, HostnameError};
use crate::telemetry::LogFormat;

/// `orgplane`: the whole command line.
#[derive(Debug, Parser)]
#[command(name = "orgplane", version, about = "A region-sharded control plane for organizations")]
pub struct Cli {
    /// Log format on stderr (RUST_LOG filters).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "ORGPLANE_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `orgplane`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one node of a region.
    Node(NodeArgs),
    /// Run the stateless global router.
    Router(RouterArgs),
    /// Run all three regions (3 nodes each) and a router in this process, on loopback.
    Dev(DevArgs),
    /// Ask a node or router for its gRPC health; exit 0 when SERVING, 1 otherwise (for
    /// container health checks: the image has no shell and no grpcurl).
    Health(HealthArgs),
}

/// `orgplane node`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// A TOML config file (see deploy/node.template.toml); flags override it.
    #[arg(long, env = "ORGPLANE_CONFIG")]
    pub config: Option<PathBuf>,
    /// us, eu or apac.
    #[arg(long, env = "ORGPLANE_REGION")]
    pub region: Option<String>,
    #[arg(long, env = "ORGPLANE_NODE_ID")]
    pub node_id: Option<u64>,
    /// Take the node id from the host name's trailing ordinal plus one (`orgplane-eu-0` is
    /// node 1): the form a Kubernetes StatefulSet gives its pods.
    #[arg(long, env = "ORGPLANE_NODE_ID_FROM_HOSTNAME", conflicts_with = "node_id")]
    pub node_id_from_hostname: bool,
    /// HOST:PORT to serve clients and peers on.
    #[arg(long, env = "ORGPLANE_LISTEN")]
    pub listen: Option<String>,
    #[arg(long, env = "ORGPLANE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Every node of the region: 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT.
    #[arg(long, env = "ORGPLANE_PEERS")]
    pub peers: Option<String>,
    /// Join an existing region (start empty and wait to be added with
    /// `orgctl cluster add-node`) instead of forming a new one from --peers.
    #[arg(long, env = "ORGPLANE_JOIN")]
    pub join: bool,
}

/// `orgplane router`.
#[derive(Debug, Args)]
pub struct RouterArgs {
    /// A TOML config file (see deploy/router.template.toml); flags override it.
    #[arg(long, env = "ORGPLANE_CONFIG")]
    pub config: Option<PathBuf>,
    /// HOST:PORT to serve on.
    #[arg(long, env = "ORGPLANE_LISTEN")]
    pub listen: Option<String>,
    /// A region and its nodes, NAME=HOST:PORT,HOST:PORT,HOST:PORT; once per region.
    #[arg(long = "region", value_name = "NAME=ENDPOINTS")]
    pub regions: Vec<String>,
}

/// `orgplane dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Where the nodes keep their data, one folder per region and node.
    #[arg(long, default_value = "./orgplane-data", env = "ORGPLANE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The router's address.
    #[arg(long, default_value = "127.0.0.1:50051", env = "ORGPLANE_LISTEN")]
    pub listen: SocketAddr,
    /// The first of nine node ports, used on first start (later starts reuse the saved layout).
    #[arg(long, default_value_t = 50061)]
    pub node_base_port: u16,
}

/// `orgplane health`.
#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// HOST:PORT of the node or router to ask.
    #[arg(long)]
    pub addr: String,
    /// The service to ask about; empty asks about the server as a whole.
    #[arg(long, default_value = "")]
    pub service: String,
    /// Give up (and exit 1) after this many milliseconds, connecting included.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
}

/// Flags and config file that do not make a config.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error(transparent)]
    ConfigFile(#[from] ConfigFileError),
    #[error(transparent)]
    Hostname(#[from] HostnameError),
    #[error("--peers: {0}")]
    Peers(#[from] orgplane_node::config::ConfigError),
    #[error("--region: {0}")]
    Region(#[from] orgplane_router::RouterError),
}

impl NodeArgs {
    /// Merges the flags over the config file (if any) into a node config, not yet validated.
    /// `hostname` is asked only for `--node-id-from-hostname`.
    pub fn into_config(
        self,
        hostname: impl FnOnce() -> Result<String, HostnameError>,
    ) -> Result<NodeConfig, ArgsError> {
        let mut table = config_file::load_table(self.config.as_deref())?;
        let node_id =
            if self.node_id_from_hostname { Some(k8s::node_id_from_hostname(&hostname()?)?) } else { self.node_id };
        config_file::set(&mut table, "region", self.region);
        config_file::set(&mut table, "node-id", node_id.map(|n| n as i64));
        config_file::set(&mut table, "listen", self.listen);
        config_file::set(&mut table, "data-dir", self.data_dir.map(|d| d.display().to_string()));
        if self.join {
            table.insert("join".into(), toml::Value::Boolean(true));
        }
        if let Some(peers) = self.peers {
            let peers = orgplane_node::config::parse_peers(&peers)?;
            let peers: toml::Table =
                peers.into_iter().map(|(id, addr)| (id.to_string(), toml::Value::String(addr))).collect();
            table.insert("peers".into(), toml::Value::Table(peers));
        }
        Ok(config_file::finish(table)?)
    }
}

impl RouterArgs {
    /// Merges the flags over the config file (if any) into a router config, not yet validated.
    pub fn into_config(self) -> Result<RouterConfig, ArgsError> {
        let mut table = config_file::load_table(self.config.as_deref())?;
        config_file::set(&mut table, "listen", self.listen);
        if !self.regions.is_empty() {
            let mut regions = toml::Table::new();
            for flag in &self.regions {
                let (region, endpoints) = orgplane_router::parse_region_flag(flag)?;
                regions.insert(
                    region.to_string(),
                    toml::Value::Array(endpoints.into_iter().map(toml::Value::String).collect()),
                );
            }
            table.insert("regions".into(), toml::Value::Table(regions));
        }
        Ok(config_file::finish(table)?)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("orgplane").chain(args.split_whitespace()))
    }

    fn node_args(args: &str) -> NodeArgs {
        match parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}")).command {
            Command::Node(node) => node,
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    const NODE: &str = "node --region eu --listen 0.0.0.0:50061 --data-dir /d --peers 1=a:1,2=b:1,3=c:1";

    #[test]
    fn node_id_from_hostname_is_ordinal_plus_one() {
        let args = node_args(&format!("{NODE} --node-id-from-hostname"));
        let config = args.into_config(|| Ok("orgplane-eu-2".into())).unwrap();
        assert_eq!(config.node_id, 3);
        config.validate().unwrap();

        let args = node_args(&format!("{NODE} --node-id-from-hostname"));
        let err = args.into_config(|| Ok("orgplane".into())).unwrap_err();
        assert!(matches!(err, ArgsError::Hostname(HostnameError::NoOrdinal { .. })), "{err}");
    }

    #[test]
    fn the_host_name_is_not_read_without_the_flag() {
        let config = node_args(&format!("{NODE} --node-id 2")).into_config(|| panic!("read the host name")).unwrap();
        assert_eq!(config.node_id, 2);
    }

    #[test]
    fn node_id_and_node_id_from_hostname_conflict() {
        let err = parse(&format!("{NODE} --node-id 1 --node-id-from-hostname")).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict, "{err}");
    }

    #[test]
    fn health_needs_an_address_and_has_defaults() {
        assert_eq!(parse("health").unwrap_err().kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let Command::Health(args) = parse("health --addr 127.0.0.1:50061").unwrap().command else { panic!() };
        assert_eq!((args.addr.as_str(), args.service.as_str(), args.timeout_ms), ("127.0.0.1:50061", "", 2000));
    }

    #[test]
    fn router_flags_make_a_valid_config() {
        let Command::Router(args) =
            parse("router --listen 127.0.0.1:7000 --region eu=a:1,b:1 --region us=c:1").unwrap().command
        else {
            panic!()
        };
        let config = args.into_config().unwrap();
        assert_eq!(config.listen.port(), 7000);
        assert_eq!(config.validate().unwrap().0.len(), 2);
    }
}
