//! The command line of the `orgplane` binary, as clap derive types, and the merge of each
//! subcommand's flags over its config file into the config the process runs with.
//!
//! These live in the library (not in `main.rs`) so that tests can check deployment manifests
//! against the real command line: [`crate::cli`] returns the `clap::Command`, and
//! [`NodeArgs::into_config`] / [`RouterArgs::into_config`] turn parsed flags into the configs
//! that `orgplane node` and `orgplane router` would validate and run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use orgplane_node::NodeConfig;
use orgplane_router::RouterConfig;

use crate::config_file::{self, ConfigFileError};
use crate::k8s::{self, HostnameError};
use orgplane_telemetry::trace::LogFormat;

/// `orgplane`: the whole command line.
#[derive(Debug, Parser)]
#[command(name = "orgplane", version, about = "A region-sharded control plane for organizations")]
pub struct Cli {
    /// Log format on stderr (RUST_LOG filters); JSON lines carry every span's fields (trace_id,
    /// region, node, org, request_id).
    #[arg(
        long,
        global = true,
        default_value = "text",
        env = "ORGPLANE_LOG_FORMAT",
        value_parser = clap::builder::TypedValueParser::try_map(
            clap::builder::PossibleValuesParser::new(LogFormat::NAMES),
            |name| name.parse::<LogFormat>(),
        ),
    )]
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
    /// Print a bearer token signed with `orgplane dev`'s signing key (made in --data-dir if it
    /// is not there yet): `export ORGPLANE_TOKEN=$(orgplane dev-token --user alice)`.
    DevToken(DevTokenArgs),
    /// Seed a node's empty data dir from a backup (`orgctl backup`), for a new cluster: restore
    /// every node of --peers from the same file with the same --peers, then start them.
    Restore(RestoreArgs),
    /// Write a dev CA (or reuse the one in --out) and certificates for every node and router
    /// of a deployment, for mutual TLS (`[tls]` or --tls-* on each process).
    DevCerts(DevCertsArgs),
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
    #[command(flatten)]
    pub serving: ServingArgs,
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
    #[command(flatten)]
    pub serving: ServingArgs,
}

/// The flags every serving process (`node`, `router`) takes, merged into its config the same way.
#[derive(Debug, Args)]
pub struct ServingArgs {
    /// HOST:PORT to serve plain HTTP on: Prometheus metrics at /metrics (and, on a router, the
    /// status page at /); none by default.
    #[arg(long, env = "ORGPLANE_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Export spans over OTLP/gRPC to this collector (http://HOST:4317).
    #[arg(long, env = "ORGPLANE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Let every caller in without a token, as an anonymous platform admin: local experiments
    /// only, logged loudly at every start. Without it the config file's `[auth]` table is
    /// required (the process refuses to start with neither).
    #[arg(long, env = "ORGPLANE_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,
    /// Bearer tokens: the issuer's public key file (PEM; `[auth] key-file`). With
    /// --auth-issuer and --auth-audience (and --auth-algorithm), sets the `[auth]` table's keys.
    #[arg(long, env = "ORGPLANE_AUTH_KEY_FILE", value_name = "FILE")]
    pub auth_key_file: Option<PathBuf>,
    /// Bearer tokens: the only accepted `iss`.
    #[arg(long, env = "ORGPLANE_AUTH_ISSUER")]
    pub auth_issuer: Option<String>,
    /// Bearer tokens: the accepted `aud`.
    #[arg(long, env = "ORGPLANE_AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,
    /// Bearer tokens: EdDSA or RS256 (HS256 needs `allow-hs256` in the config file).
    #[arg(long, env = "ORGPLANE_AUTH_ALGORITHM")]
    pub auth_algorithm: Option<String>,
    /// Mutual TLS: the deployment's CA certificate (PEM); with --tls-cert-file and
    /// --tls-key-file, sets the `[tls]` table's keys.
    #[arg(long, env = "ORGPLANE_TLS_CA_FILE", value_name = "FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// Mutual TLS: this process's certificate (PEM), issued for its identity.
    #[arg(long, env = "ORGPLANE_TLS_CERT_FILE", value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// Mutual TLS: the certificate's private key (PEM, mode 0600).
    #[arg(long, env = "ORGPLANE_TLS_KEY_FILE", value_name = "FILE")]
    pub tls_key_file: Option<PathBuf>,
}

impl ServingArgs {
    /// Sets the keys of the flags that were given.
    fn set_into(self, table: &mut toml::Table) {
        config_file::set(table, "metrics-listen", self.metrics_listen);
        config_file::set(table, "otlp-endpoint", self.otlp_endpoint);
        if self.allow_unauthenticated {
            table.insert("allow-unauthenticated".into(), toml::Value::Boolean(true));
        }
        let path_text = |path: Option<PathBuf>| path.map(|p| p.display().to_string());
        set_in_table(
            table,
            "auth",
            [
                ("key-file", path_text(self.auth_key_file)),
                ("issuer", self.auth_issuer),
                ("audience", self.auth_audience),
                ("algorithm", self.auth_algorithm),
            ],
        );
        set_in_table(
            table,
            "tls",
            [
                ("ca-file", path_text(self.tls_ca_file)),
                ("cert-file", path_text(self.tls_cert_file)),
                ("key-file", path_text(self.tls_key_file)),
            ],
        );
    }
}

/// Sets the given keys of the sub-table `name` (made if missing), leaving its other keys as the
/// config file has them.
fn set_in_table<const N: usize>(table: &mut toml::Table, name: &str, values: [(&str, Option<String>); N]) {
    if values.iter().all(|(_, value)| value.is_none()) {
        return;
    }
    let sub = table.entry(name).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(sub) = sub {
        for (key, value) in values {
            config_file::set(sub, key, value);
        }
    }
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
    /// The router's Prometheus metrics and status page (plain HTTP; GET /metrics). The dev
    /// nodes serve no metrics.
    #[arg(long, default_value = "127.0.0.1:9100", env = "ORGPLANE_METRICS_LISTEN")]
    pub metrics_listen: SocketAddr,
    /// Export spans over OTLP/gRPC to this collector (http://HOST:4317).
    #[arg(long, default_value = "", env = "ORGPLANE_OTLP_ENDPOINT")]
    pub otlp_endpoint: String,
}

/// `orgplane dev-certs`.
#[derive(Debug, Clone, Args)]
pub struct DevCertsArgs {
    /// Where to write `ca.pem`, `ca.key`, `node-<region>-<id>.pem|.key`, `router-<name>.pem|.key`
    /// and `client-<name>.pem|.key`. An existing CA there is reused.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The regions to make node certificates for.
    #[arg(long, value_delimiter = ',', default_value = "us,eu,apac")]
    pub regions: Vec<orgplane_model::Region>,
    /// Node certificates per region: node ids 1 to N.
    #[arg(long, default_value_t = 3)]
    pub nodes_per_region: u64,
    /// A router certificate of this name (its host name in compose); repeat for more.
    #[arg(long = "router", value_name = "NAME", default_values_t = ["router".to_string()])]
    pub routers: Vec<String>,
    /// A client certificate of this name, for a client allowed to call nodes directly
    /// (`allowed-clients` in a node's `[tls]`); repeat for more.
    #[arg(long = "client", value_name = "NAME")]
    pub clients: Vec<String>,
}

/// `orgplane dev-token`.
#[derive(Debug, Clone, Args)]
pub struct DevTokenArgs {
    /// The data dir of `orgplane dev`, which holds its signing key.
    #[arg(long, default_value = "./orgplane-data", env = "ORGPLANE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The user the token is for (its `sub`).
    #[arg(long)]
    pub user: String,
    /// The token carries the platform-admin claim: it may create and delete orgs.
    #[arg(long)]
    pub platform_admin: bool,
    /// A verified email in the token (accepting invitations needs one).
    #[arg(long)]
    pub email: Option<String>,
    /// How long the token is valid: a number and a unit, s, m, h or d (`90m`, `24h`, `7d`).
    #[arg(long, default_value = "24h", value_parser = parse_ttl)]
    pub ttl: Duration,
}

/// A lifetime like `90s`, `30m`, `24h` or `7d`; at least one second, at most a year.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let expected = || format!("{text:?} is not a lifetime: expected a number and s, m, h or d (24h)");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(expected)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| expected())?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(expected()),
    };
    let secs = number.checked_mul(unit_secs).ok_or_else(expected)?;
    if !(1..=365 * 86_400).contains(&secs) {
        return Err(format!("{text:?}: a lifetime must be between 1s and 365d"));
    }
    Ok(Duration::from_secs(secs))
}

/// `orgplane restore`.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The region the backup must be of: us, eu or apac.
    #[arg(long)]
    pub region: orgplane_model::Region,
    /// The backup file, as `orgctl backup` wrote it.
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    /// The new node's data dir; it must be absent or empty.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The new node's id, one of --peers. Without --node-id and --peers, the node's first
    /// start (`orgplane node --peers ...`) names the new cluster.
    #[arg(long, requires = "peers")]
    pub node_id: Option<u64>,
    /// Every node of the new cluster, all voters: 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT.
    #[arg(long, requires = "node_id")]
    pub peers: Option<String>,
}

impl RestoreArgs {
    /// The restore these flags ask for.
    pub fn to_config(&self) -> Result<crate::restore::RestoreConfig, ArgsError> {
        Ok(crate::restore::RestoreConfig {
            region: self.region,
            from: self.from.clone(),
            data_dir: self.data_dir.clone(),
            cluster: match (self.node_id, &self.peers) {
                (Some(node_id), Some(peers)) => {
                    Some(crate::restore::NewCluster { node_id, peers: orgplane_node::config::parse_peers(peers)? })
                }
                _ => None,
            },
        })
    }
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
    /// Speak TLS and trust this CA (PEM): for processes serving with `[tls]`. Health needs no
    /// client certificate.
    #[arg(long, env = "ORGPLANE_TLS_CA_FILE", value_name = "FILE")]
    pub tls_ca_file: Option<PathBuf>,
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
        self.serving.set_into(&mut table);
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
        self.serving.set_into(&mut table);
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
    fn metrics_listen_is_off_unless_asked_for() {
        let node = format!("{NODE} --node-id 1");
        assert_eq!(node_args(&node).into_config(no_hostname).unwrap().metrics_listen, None);
        let config = node_args(&format!("{node} --metrics-listen 0.0.0.0:9100")).into_config(no_hostname).unwrap();
        assert_eq!(config.metrics_listen, Some("0.0.0.0:9100".parse().unwrap()));
        config.validate().unwrap();
        let Command::Router(args) = parse("router --region eu=a:1 --metrics-listen 127.0.0.1:9101").unwrap().command
        else {
            panic!()
        };
        assert_eq!(args.into_config().unwrap().metrics_listen, Some("127.0.0.1:9101".parse().unwrap()));
        let Command::Dev(args) = parse("dev").unwrap().command else { panic!() };
        assert_eq!(args.metrics_listen, "127.0.0.1:9100".parse().unwrap());
        let err = node_args(&format!("{node} --metrics-listen nowhere")).into_config(no_hostname).unwrap_err();
        assert!(err.to_string().contains("metrics-listen"), "{err}");
    }

    #[test]
    fn allow_unauthenticated_is_off_unless_asked_for() {
        let node = format!("{NODE} --node-id 1");
        assert!(!node_args(&node).into_config(no_hostname).unwrap().allow_unauthenticated);
        let config = node_args(&format!("{node} --allow-unauthenticated")).into_config(no_hostname).unwrap();
        assert!(config.allow_unauthenticated);
        let Command::Router(args) = parse("router --region eu=a:1 --allow-unauthenticated").unwrap().command else {
            panic!()
        };
        assert!(args.into_config().unwrap().allow_unauthenticated);
    }

    #[test]
    fn auth_and_tls_flags_fill_their_tables() {
        let node = format!("{NODE} --node-id 1 --auth-key-file /k.pem --auth-issuer iss --auth-audience aud --auth-algorithm EdDSA --tls-ca-file /ca.pem --tls-cert-file /c.pem --tls-key-file /c.key");
        let config = node_args(&node).into_config(no_hostname).unwrap();
        let auth = config.auth.expect("[auth] from flags");
        assert_eq!((auth.issuer.as_str(), auth.audience.as_str()), ("iss", "aud"));
        assert_eq!(auth.key_file, PathBuf::from("/k.pem"));
        let tls = config.tls.expect("[tls] from flags");
        assert_eq!((tls.ca_file, tls.cert_file, tls.key_file), ("/ca.pem".into(), "/c.pem".into(), "/c.key".into()));
        // Half an [auth] table is refused, naming what is missing.
        let err = node_args(&format!("{NODE} --node-id 1 --auth-issuer iss")).into_config(no_hostname).unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
    }

    #[test]
    fn dev_token_lifetimes() {
        assert_eq!(parse_ttl("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["", "h", "24", "0s", "1y", "-1h", "366d", "99999999999999999999d"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
        let Command::DevToken(args) = parse("dev-token --user alice --platform-admin").unwrap().command else {
            panic!()
        };
        assert_eq!((args.user.as_str(), args.platform_admin, args.ttl), ("alice", true, Duration::from_secs(86_400)));
    }

    fn no_hostname() -> Result<String, HostnameError> {
        panic!("read the host name")
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
