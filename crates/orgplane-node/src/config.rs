//! [`NodeConfig`]: everything a node needs, from flags or a TOML file, validated before start.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use orgplane_auth::{AuthConfig, TlsConfig};
use orgplane_model::Region;
use serde::{Deserialize, Serialize};

/// The configuration of one region node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NodeConfig {
    /// The region this node serves; it holds only this region's orgs.
    pub region: Region,
    /// This node's id in the region's Raft group; must be a key of `peers`.
    pub node_id: u64,
    /// Where to listen for clients and peers (port 0 picks one, for tests).
    pub listen: SocketAddr,
    /// Where the node keeps its Raft log, vote and snapshots (one sled database).
    pub data_dir: PathBuf,
    /// Every node of the region, by id: `host:port` that the others reach it at. Used to form
    /// the cluster on first start; later the membership in the Raft log is authoritative.
    /// In TOML a table whose keys are the ids (`[peers]` then `1 = "host:port"`).
    #[serde(with = "peer_table", default)]
    pub peers: BTreeMap<u64, String>,
    /// Join an existing region instead of forming a new one: the node starts empty and waits
    /// for the region's leader to add it (`orgctl cluster add-node`). `peers` may then be
    /// empty.
    #[serde(default)]
    pub join: bool,
    /// Leader heartbeat period.
    #[serde(default = "defaults::heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// A follower that hears no leader for a random time in [min, max] starts an election.
    #[serde(default = "defaults::election_timeout_min_ms")]
    pub election_timeout_min_ms: u64,
    #[serde(default = "defaults::election_timeout_max_ms")]
    pub election_timeout_max_ms: u64,
    /// Take a snapshot after this many log entries since the last one.
    #[serde(default = "defaults::snapshot_every_entries")]
    pub snapshot_every_entries: u64,
    /// Log entries kept behind a snapshot, so a briefly lagging follower catches up from the
    /// log rather than a full snapshot.
    #[serde(default = "defaults::log_entries_kept_after_snapshot")]
    pub log_entries_kept_after_snapshot: u64,
    /// How long a write may wait for a leader and its commit before failing UNAVAILABLE.
    #[serde(default = "defaults::write_timeout_ms")]
    pub write_timeout_ms: u64,
    /// How long a linearizable read may wait for a leader's confirmation.
    #[serde(default = "defaults::read_timeout_ms")]
    pub read_timeout_ms: u64,
    /// The largest gRPC message accepted or sent.
    #[serde(default = "defaults::max_message_bytes")]
    pub max_message_bytes: usize,
    /// The OpenTelemetry collector to export spans to over OTLP/gRPC (`http://host:4317`).
    /// Empty (the default): the standard `OTEL_EXPORTER_OTLP_ENDPOINT` if set, else no export
    /// and no exporter at all; logs carry the trace ids either way.
    #[serde(default)]
    pub otlp_endpoint: String,
    /// Where to serve Prometheus metrics (`GET /metrics`, plain HTTP), apart from the gRPC
    /// port so it can be opened to the monitoring network only. None (the default) serves no
    /// metrics; port 0 picks one (tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// How callers' bearer tokens are verified (`[auth]`). A node needs this or
    /// `allow-unauthenticated`, and refuses to start with neither or both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// Lets every caller in, without a token, as an anonymous platform admin: for local
    /// experiments and tests only, logged loudly at every start.
    #[serde(default)]
    pub allow_unauthenticated: bool,
    /// Mutual TLS with peers, routers and allowed clients (`[tls]`): this node's certificate
    /// (it must name this region and node id), its key, and the CA every peer must chain to.
    /// None (the default) serves plaintext: loopback and tests only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// TOML table keys are strings; the peer table's keys are node ids.
mod peer_table {
    use std::collections::BTreeMap;

    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(peers: &BTreeMap<u64, String>, s: S) -> Result<S::Ok, S::Error> {
        let as_text: BTreeMap<String, &String> = peers.iter().map(|(id, addr)| (id.to_string(), addr)).collect();
        as_text.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<u64, String>, D::Error> {
        let as_text = BTreeMap::<String, String>::deserialize(d)?;
        as_text
            .into_iter()
            .map(|(id, addr)| {
                let id = id.parse::<u64>().map_err(|_| D::Error::custom(format!("peer id {id:?} is not a number")))?;
                Ok((id, addr))
            })
            .collect()
    }
}

mod defaults {
    pub fn heartbeat_ms() -> u64 {
        150
    }
    pub fn election_timeout_min_ms() -> u64 {
        750
    }
    pub fn election_timeout_max_ms() -> u64 {
        1500
    }
    pub fn snapshot_every_entries() -> u64 {
        20_000
    }
    pub fn log_entries_kept_after_snapshot() -> u64 {
        1_000
    }
    pub fn write_timeout_ms() -> u64 {
        5_000
    }
    pub fn read_timeout_ms() -> u64 {
        5_000
    }
    pub fn max_message_bytes() -> usize {
        4 * 1024 * 1024
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("node id {node_id} is not in the peer list ({known})")]
    NodeNotInPeers { node_id: u64, known: String },
    #[error("node id 0 is reserved; use 1 and up")]
    ZeroNodeId,
    #[error("peer {id} has an empty address")]
    EmptyPeerAddress { id: u64 },
    #[error("invalid peer list entry {entry:?}: expected ID=HOST:PORT")]
    BadPeerEntry { entry: String },
    #[error("election timeout must be a range with min < max and both above 2 heartbeats (heartbeat {heartbeat_ms} ms, election {min_ms}..{max_ms} ms)")]
    BadTimeouts { heartbeat_ms: u64, min_ms: u64, max_ms: u64 },
    #[error("{field} must be greater than zero")]
    Zero { field: &'static str },
    #[error("invalid otlp-endpoint {endpoint:?}: {reason}")]
    BadOtlpEndpoint { endpoint: String, reason: String },
    #[error("metrics-listen {addr} is the gRPC listen address; give metrics a port of their own")]
    MetricsOnListenAddress { addr: SocketAddr },
}

impl NodeConfig {
    /// A config with the defaults for everything but identity and addresses.
    pub fn new(
        region: Region,
        node_id: u64,
        listen: SocketAddr,
        data_dir: PathBuf,
        peers: BTreeMap<u64, String>,
    ) -> Self {
        NodeConfig {
            region,
            node_id,
            listen,
            data_dir,
            peers,
            join: false,
            heartbeat_ms: defaults::heartbeat_ms(),
            election_timeout_min_ms: defaults::election_timeout_min_ms(),
            election_timeout_max_ms: defaults::election_timeout_max_ms(),
            snapshot_every_entries: defaults::snapshot_every_entries(),
            log_entries_kept_after_snapshot: defaults::log_entries_kept_after_snapshot(),
            write_timeout_ms: defaults::write_timeout_ms(),
            read_timeout_ms: defaults::read_timeout_ms(),
            max_message_bytes: defaults::max_message_bytes(),
            otlp_endpoint: String::new(),
            metrics_listen: None,
            auth: None,
            allow_unauthenticated: false,
            tls: None,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(ConfigError::ZeroNodeId);
        }
        if !self.join && !self.peers.contains_key(&self.node_id) {
            let known = self.peers.keys().map(u64::to_string).collect::<Vec<_>>().join(", ");
            return Err(ConfigError::NodeNotInPeers { node_id: self.node_id, known });
        }
        if let Some((id, _)) = self.peers.iter().find(|(_, addr)| addr.trim().is_empty()) {
            return Err(ConfigError::EmptyPeerAddress { id: *id });
        }
        let (hb, min, max) = (self.heartbeat_ms, self.election_timeout_min_ms, self.election_timeout_max_ms);
        if hb == 0 || min >= max || min < 2 * hb {
            return Err(ConfigError::BadTimeouts { heartbeat_ms: hb, min_ms: min, max_ms: max });
        }
        orgplane_telemetry::trace::check_otlp_endpoint(&self.otlp_endpoint)
            .map_err(|reason| ConfigError::BadOtlpEndpoint { endpoint: self.otlp_endpoint.clone(), reason })?;
        if self.metrics_listen == Some(self.listen) && self.listen.port() != 0 {
            return Err(ConfigError::MetricsOnListenAddress { addr: self.listen });
        }
        for (field, value) in [
            ("snapshot-every-entries", self.snapshot_every_entries),
            ("write-timeout-ms", self.write_timeout_ms),
            ("read-timeout-ms", self.read_timeout_ms),
            ("max-message-bytes", self.max_message_bytes as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { field });
            }
        }
        Ok(())
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }

    pub fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.read_timeout_ms)
    }
}

/// Parses the `--peers` form `1=HOST:PORT,2=HOST:PORT,3=HOST:PORT`.
pub fn parse_peers(text: &str) -> Result<BTreeMap<u64, String>, ConfigError> {
    let mut peers = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || ConfigError::BadPeerEntry { entry: entry.to_string() };
        let (id, addr) = entry.split_once('=').ok_or_else(bad)?;
        let id: u64 = id.trim().parse().map_err(|_| bad())?;
        let addr = addr.trim();
        if addr.is_empty() || !addr.contains(':') || peers.insert(id, addr.to_string()).is_some() {
            return Err(bad());
        }
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse() {
        let p = parse_peers("1=127.0.0.1:1,2=h:2, 3=h:3").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[&2], "h:2");
        for bad in ["1", "x=h:1", "1=h", "1=h:1,1=h:2", "1="] {
            assert!(parse_peers(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validation() {
        let peers = parse_peers("1=h:1,2=h:2,3=h:3").unwrap();
        let ok = NodeConfig::new(Region::Eu, 1, "127.0.0.1:0".parse().unwrap(), "d".into(), peers);
        assert!(ok.validate().is_ok());
        let mut c = ok.clone();
        c.node_id = 4;
        assert!(matches!(c.validate(), Err(ConfigError::NodeNotInPeers { .. })));
        let mut c = ok.clone();
        c.election_timeout_min_ms = 100;
        assert!(matches!(c.validate(), Err(ConfigError::BadTimeouts { .. })));
        let mut c = ok.clone();
        c.metrics_listen = Some(c.listen);
        assert!(c.validate().is_ok(), "port 0 twice is two ports");
        c.listen = "127.0.0.1:7000".parse().unwrap();
        c.metrics_listen = Some(c.listen);
        assert!(matches!(c.validate(), Err(ConfigError::MetricsOnListenAddress { .. })));
        c.metrics_listen = Some("0.0.0.0:9100".parse().unwrap());
        assert!(c.validate().is_ok());
        let mut c = ok.clone();
        c.otlp_endpoint = "collector:4317".into();
        assert!(matches!(c.validate(), Err(ConfigError::BadOtlpEndpoint { .. })));
        c.otlp_endpoint = "http://collector:4317".into();
        assert!(c.validate().is_ok());
        let mut c = ok;
        c.node_id = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroNodeId));
    }
}
