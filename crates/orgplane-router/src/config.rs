//! The router's configuration: where it listens, which nodes serve which region, and how long it
//! waits for them. [`RouterConfig::validate`] checks everything before the router starts, and
//! [`parse_region_flag`] reads the command-line form of one region.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use orgplane_auth::{AuthConfig, TlsConfig};
use orgplane_model::Region;
use serde::Deserialize;

use crate::error::RouterError;

/// The largest gRPC message the router accepts from clients or nodes, in either direction.
/// Set explicitly so the limit does not change with a tonic upgrade; orgplane's largest
/// message is a page of 1000 orgs, far below it.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Everything the router needs to run. The router keeps no other state: this and the nodes'
/// answers are all it knows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RouterConfig {
    /// The address clients connect to. Port 0 picks a free port (tests); `run` takes an
    /// already-bound listener, so this is for binaries that bind it themselves.
    pub listen: SocketAddr,
    /// The node endpoints (`host:port` of their public API) of each region the router
    /// serves, keyed by region name (`us`, `eu`, `apac`). A region missing here is not served:
    /// requests for it fail with NOT_FOUND, and user-wide lists do not ask it.
    pub regions: BTreeMap<String, Vec<String>>,
    /// The longest a routed call may take, from arrival to answer, including failover to
    /// other nodes of the region; a shorter client deadline (`grpc-timeout`) wins.
    pub request_timeout_ms: u64,
    /// How long to wait for a TCP connection to a node before trying the next one; keeps a
    /// blackholed node from eating the whole request budget.
    pub connect_timeout_ms: u64,
    /// How long a user-wide query (`ListUserOrgs`) waits for each region before reporting it
    /// as DEADLINE_EXCEEDED and answering with the others; a shorter client deadline wins.
    pub fanout_timeout_ms: u64,
    /// How long `GetClusterStatus` waits for each node before reporting it unreachable.
    pub status_timeout_ms: u64,
    /// Calls the router keeps in flight to one node; beyond it the router sheds load (tries
    /// another node of the region, then answers RESOURCE_EXHAUSTED) instead of queueing, so
    /// one slow node cannot absorb the router's capacity.
    pub max_concurrent_requests_per_node: usize,
    /// Where to serve Prometheus metrics (`GET /metrics`, plain HTTP) and the status page, apart
    /// from the gRPC port so it can be opened to operators only. None (the default) serves
    /// neither; port 0 picks one (tests).
    pub metrics_listen: Option<SocketAddr>,
    /// The OpenTelemetry collector to export spans to over OTLP/gRPC (`http://host:4317`).
    /// Empty (the default): the standard `OTEL_EXPORTER_OTLP_ENDPOINT` if set, else no export
    /// and no exporter at all; logs carry the trace ids either way.
    pub otlp_endpoint: String,
    /// How callers' bearer tokens are verified (`[auth]`). The router needs this or
    /// `allow-unauthenticated`, and refuses to start with neither or both. The nodes verify
    /// the same tokens again.
    pub auth: Option<AuthConfig>,
    /// Lets every caller in, without a token, as an anonymous platform admin: for local
    /// experiments and tests only, logged loudly at every start. The nodes must allow it too.
    pub allow_unauthenticated: bool,
    /// Calls per second each caller (the token's subject) may make on average; 0 (the
    /// default) sets no limit. Over it a call answers RESOURCE_EXHAUSTED.
    pub rate_limit_per_second: u32,
    /// The burst a caller may make above the rate, in calls; at least 1 when the rate is set.
    pub rate_limit_burst: u32,
    /// Mutual TLS (`[tls]`): the router's certificate (a router identity), its key and the CA.
    /// The router then dials nodes over TLS showing its certificate, and serves its clients
    /// over TLS (they verify it against the CA; their own certificate is not required, their
    /// token is). None (the default): plaintext, for loopback and tests.
    pub tls: Option<TlsConfig>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 50050)),
            regions: BTreeMap::new(),
            request_timeout_ms: 10_000,
            connect_timeout_ms: 1_000,
            fanout_timeout_ms: 2_000,
            status_timeout_ms: 1_000,
            max_concurrent_requests_per_node: 256,
            metrics_listen: None,
            otlp_endpoint: String::new(),
            auth: None,
            allow_unauthenticated: false,
            rate_limit_per_second: 0,
            rate_limit_burst: 50,
            tls: None,
        }
    }
}

impl RouterConfig {
    /// Checks the configuration and resolves region names, so nothing starts half-configured.
    /// Every region name must be known, every region must list at least one endpoint, every
    /// endpoint must be a `host:port` that appears once in its region, and every duration and
    /// limit must be positive.
    pub fn validate(&self) -> Result<ValidatedRegions, RouterError> {
        if self.regions.is_empty() {
            return Err(RouterError::NoRegions);
        }
        for (key, value) in [
            ("request-timeout-ms", self.request_timeout_ms),
            ("connect-timeout-ms", self.connect_timeout_ms),
            ("fanout-timeout-ms", self.fanout_timeout_ms),
            ("status-timeout-ms", self.status_timeout_ms),
            ("max-concurrent-requests-per-node", self.max_concurrent_requests_per_node as u64),
        ] {
            if value == 0 {
                return Err(RouterError::ZeroSetting { key });
            }
        }
        if self.rate_limit_per_second > 0 && self.rate_limit_burst == 0 {
            return Err(RouterError::ZeroSetting { key: "rate-limit-burst" });
        }
        orgplane_telemetry::trace::check_otlp_endpoint(&self.otlp_endpoint)
            .map_err(|reason| RouterError::BadOtlpEndpoint { endpoint: self.otlp_endpoint.clone(), reason })?;
        if self.metrics_listen == Some(self.listen) && self.listen.port() != 0 {
            return Err(RouterError::MetricsOnListenAddress { addr: self.listen });
        }
        let mut regions = BTreeMap::new();
        for (name, endpoints) in &self.regions {
            let region: Region = name.parse().map_err(|_| RouterError::UnknownRegionName { name: name.clone() })?;
            if regions.contains_key(&region) {
                return Err(RouterError::DuplicateRegion { region });
            }
            regions.insert(region, check_endpoints(region, endpoints)?);
        }
        Ok(ValidatedRegions(regions))
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub(crate) fn fanout_timeout(&self) -> Duration {
        Duration::from_millis(self.fanout_timeout_ms)
    }

    pub(crate) fn status_timeout(&self) -> Duration {
        Duration::from_millis(self.status_timeout_ms)
    }
}

/// The regions of a validated [`RouterConfig`], keyed by [`Region`] (so in [`Region::ALL`]
/// order), each with at least one well-formed, distinct endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedRegions(pub BTreeMap<Region, Vec<String>>);

/// Parses the command-line form of one region, `NAME=HOST:PORT,HOST:PORT`, for example
/// `eu=10.0.1.1:50051,10.0.1.2:50051`.
pub fn parse_region_flag(flag: &str) -> Result<(Region, Vec<String>), RouterError> {
    let bad = |reason: &str| RouterError::BadRegionFlag { flag: flag.to_string(), reason: reason.to_string() };
    let (name, list) = flag.split_once('=').ok_or_else(|| bad("expected NAME=HOST:PORT,HOST:PORT"))?;
    let region: Region = name.parse().map_err(|_| bad("unknown region name (expected us, eu or apac)"))?;
    let endpoints: Vec<String> = list.split(',').map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect();
    let endpoints = check_endpoints(region, &endpoints)?;
    Ok((region, endpoints))
}

/// Checks one region's endpoint list; returns it trimmed.
fn check_endpoints(region: Region, endpoints: &[String]) -> Result<Vec<String>, RouterError> {
    if endpoints.is_empty() {
        return Err(RouterError::NoEndpoints { region });
    }
    let mut checked: Vec<String> = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints {
        let endpoint = endpoint.trim();
        check_endpoint(endpoint).map_err(|reason| RouterError::BadEndpoint {
            region,
            endpoint: endpoint.to_string(),
            reason,
        })?;
        if checked.iter().any(|e| e == endpoint) {
            return Err(RouterError::DuplicateEndpoint { region, endpoint: endpoint.to_string() });
        }
        checked.push(endpoint.to_string());
    }
    Ok(checked)
}

/// Checks that `endpoint` is `host:port` (an IPv6 host in brackets), with no scheme or path:
/// the router adds the scheme itself, and a node's leader header names nodes in this form.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    if endpoint.contains("://") {
        return Err("must be host:port, without a scheme".to_string());
    }
    if endpoint.contains(['/', '?', '#', ' ', '@']) {
        return Err("must be host:port, without a path or spaces".to_string());
    }
    let (host, port) = endpoint.rsplit_once(':').ok_or_else(|| "must be host:port".to_string())?;
    if host.is_empty() {
        return Err("has no host".to_string());
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err("an IPv6 host must be in brackets".to_string());
    }
    match port.parse::<u16>() {
        Ok(0) => return Err("port 0 cannot be connected to".to_string()),
        Ok(_) => {}
        Err(_) => return Err("port must be a number from 1 to 65535".to_string()),
    }
    tonic::transport::Endpoint::from_shared(format!("http://{endpoint}")).map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_flag(input: &str, expected: Result<(Region, &[&str]), &str>) {
        let got = parse_region_flag(input);
        match (got, expected) {
            (Ok((region, endpoints)), Ok((want_region, want_endpoints))) => {
                assert_eq!(region, want_region, "input {input:?}");
                assert_eq!(endpoints, want_endpoints, "input {input:?}");
            }
            (Err(err), Err(want)) => assert!(err.to_string().contains(want), "input {input:?}: {err}"),
            (got, want) => panic!("input {input:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parses_region_flags() {
        check_flag("eu=10.0.0.1:50051,10.0.0.2:50051", Ok((Region::Eu, &["10.0.0.1:50051", "10.0.0.2:50051"])));
        check_flag("US=node-1.us:50051", Ok((Region::Us, &["node-1.us:50051"])));
        check_flag("apac=[::1]:7000, localhost:7001", Ok((Region::Apac, &["[::1]:7000", "localhost:7001"])));
        check_flag("eu", Err("expected NAME=HOST:PORT"));
        check_flag("mars=a:1", Err("unknown region name"));
        check_flag("eu=", Err("no endpoints"));
        check_flag("eu=,,", Err("no endpoints"));
        check_flag("eu=host", Err("must be host:port"));
        check_flag("eu=http://host:1", Err("without a scheme"));
        check_flag("eu=host:0", Err("port 0"));
        check_flag("eu=host:99999", Err("port must be"));
        check_flag("eu=:50051", Err("has no host"));
        check_flag("eu=::1:50051", Err("brackets"));
        check_flag("eu=a:1,a:1", Err("more than once"));
        check_flag("eu=a:1/x", Err("without a path"));
    }

    fn config(regions: &[(&str, &[&str])]) -> RouterConfig {
        RouterConfig {
            regions: regions
                .iter()
                .map(|(name, endpoints)| (name.to_string(), endpoints.iter().map(|e| e.to_string()).collect()))
                .collect(),
            ..RouterConfig::default()
        }
    }

    #[test]
    fn validates_regions_and_settings() {
        let ok = config(&[("eu", &["a:1"]), ("us", &["b:1", "c:1"])]).validate().unwrap();
        assert_eq!(ok.0.keys().copied().collect::<Vec<_>>(), vec![Region::Us, Region::Eu]);

        let err = |c: RouterConfig| c.validate().unwrap_err().to_string();
        assert!(err(config(&[])).contains("no regions"));
        assert!(err(config(&[("mars", &["a:1"])])).contains("unknown region"));
        assert!(err(config(&[("eu", &[])])).contains("no endpoints"));
        assert!(err(config(&[("eu", &["a"])])).contains("a"));
        assert!(err(config(&[("eu", &["a:1"]), ("EU", &["b:1"])])).contains("more than once"));
        assert!(err(RouterConfig { fanout_timeout_ms: 0, ..config(&[("eu", &["a:1"])]) }).contains("fanout-timeout-ms"));
        assert!(err(RouterConfig { max_concurrent_requests_per_node: 0, ..config(&[("eu", &["a:1"])]) })
            .contains("max-concurrent-requests-per-node"));
        let same_port = config(&[("eu", &["a:1"])]);
        assert!(err(RouterConfig { metrics_listen: Some(same_port.listen), ..same_port }).contains("metrics-listen"));
        let otlp = |endpoint: &str| RouterConfig { otlp_endpoint: endpoint.into(), ..config(&[("eu", &["a:1"])]) };
        assert!(err(otlp("collector:4317")).contains("invalid otlp-endpoint"));
        assert!(otlp("http://collector:4317").validate().is_ok());
    }

    #[test]
    fn reads_kebab_case_toml_and_refuses_unknown_keys() {
        let config: RouterConfig = toml::from_str(
            r#"
            listen = "127.0.0.1:0"
            fanout-timeout-ms = 750
            max-concurrent-requests-per-node = 8
            [regions]
            us = ["10.0.0.1:50051", "10.0.0.2:50051"]
            eu = ["10.1.0.1:50051"]
            "#,
        )
        .unwrap();
        assert_eq!(config.fanout_timeout_ms, 750);
        assert_eq!(config.max_concurrent_requests_per_node, 8);
        assert_eq!(
            config.request_timeout_ms,
            RouterConfig::default().request_timeout_ms,
            "missing keys take the default"
        );
        assert_eq!(config.validate().unwrap().0[&Region::Us].len(), 2);

        let unknown = toml::from_str::<RouterConfig>("fanout-timeout = 1").unwrap_err().to_string();
        assert!(unknown.contains("unknown field"), "{unknown}");
        let snake = toml::from_str::<RouterConfig>("fanout_timeout_ms = 1").unwrap_err().to_string();
        assert!(snake.contains("unknown field"), "{snake}");
    }
}
