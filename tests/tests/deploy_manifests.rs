//! The deployment files in `deploy/`, checked against the real command line and against each
//! other, as far as that can be done without Docker or a Kubernetes cluster:
//! - every YAML file parses;
//! - every `orgplane` command line in them (node, router, health check) parses with the binary's
//!   own clap definition (`orgplane::cli()`), and the node and router configs it makes pass
//!   their `validate()`;
//! - compose: 9 nodes and 3 routers; peers lists name exactly the 3 nodes of their region at
//!   their listen port; each router names every region's nodes; one named volume per node at its
//!   data dir; health checks probe the serving port;
//! - Kubernetes: per region a StatefulSet (3 replicas, node id from the pod ordinal, peers
//!   through the headless Service), its headless Service and PodDisruptionBudget
//!   (maxUnavailable 1) selecting exactly its pods; the router's Deployment and Service; probes
//!   on the serving port; non-root as the image's user; the kustomization lists every file;
//! - the config templates hold every key of their config type and parse into a valid config.
//!
//! `deploy/smoke.sh` runs the compose deployment for real.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::FromArgMatches;
use orgplane::cli::{Cli, Command};
use orgplane_model::Region;
use orgplane_node::NodeConfig;
use orgplane_router::RouterConfig;
use yaml_rust2::{Yaml, YamlLoader};

const IMAGE: &str = "orgplane:dev";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every document of a YAML file.
fn load_yaml(path: &Path) -> Vec<Yaml> {
    let docs = YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    assert!(!docs.is_empty(), "{} has no document", path.display());
    docs
}

/// The value at a dotted path of mapping keys; missing keys fail the test, naming the path.
fn at<'a>(yaml: &'a Yaml, path: &str) -> &'a Yaml {
    let mut node = yaml;
    for key in path.split('.') {
        node = &node[key];
        assert!(!node.is_badvalue(), "no key {path:?} (stopped at {key:?}) in {yaml:?}");
    }
    node
}

fn text<'a>(yaml: &'a Yaml, path: &str) -> &'a str {
    at(yaml, path).as_str().unwrap_or_else(|| panic!("{path} is not a string in {yaml:?}"))
}

fn int(yaml: &Yaml, path: &str) -> i64 {
    at(yaml, path).as_i64().unwrap_or_else(|| panic!("{path} is not an integer in {yaml:?}"))
}

fn list<'a>(yaml: &'a Yaml, path: &str) -> &'a [Yaml] {
    at(yaml, path).as_vec().unwrap_or_else(|| panic!("{path} is not a list in {yaml:?}"))
}

fn strings(yaml: &Yaml, path: &str) -> Vec<String> {
    list(yaml, path)
        .iter()
        .map(|v| v.as_str().unwrap_or_else(|| panic!("{path}: {v:?} is not a string")).into())
        .collect()
}

/// A mapping of strings (labels, selectors).
fn string_map(yaml: &Yaml, path: &str) -> BTreeMap<String, String> {
    let map = at(yaml, path).as_hash().unwrap_or_else(|| panic!("{path} is not a mapping in {yaml:?}"));
    map.iter()
        .map(|(k, v)| {
            let value = match v {
                Yaml::String(s) => s.clone(),
                Yaml::Integer(i) => i.to_string(),
                Yaml::Boolean(b) => b.to_string(),
                other => panic!("{path}: value {other:?} is not a scalar"),
            };
            (k.as_str().expect("string keys").to_string(), value)
        })
        .collect()
}

fn mapping_keys(yaml: &Yaml, path: &str) -> Vec<String> {
    let map = at(yaml, path).as_hash().unwrap_or_else(|| panic!("{path} is not a mapping in {yaml:?}"));
    map.keys().map(|k| k.as_str().expect("string keys").to_string()).collect()
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Parses a command line with the real `orgplane` CLI, after checking that each flag exists
/// on the subcommand (or globally) so that a typo names itself.
fn parse_orgplane(argv: &[String], context: &str) -> Command {
    assert_eq!(argv.first().map(String::as_str), Some("orgplane"), "{context}: runs {argv:?}, not orgplane");
    let root = orgplane::cli();
    let sub_name = argv.get(1).unwrap_or_else(|| panic!("{context}: no subcommand in {argv:?}"));
    let sub = root
        .find_subcommand(sub_name)
        .unwrap_or_else(|| panic!("{context}: `orgplane {sub_name}` is not a subcommand"))
        .clone();
    let known: BTreeSet<String> = sub
        .get_arguments()
        .chain(root.get_arguments())
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    for arg in argv.iter().skip(2).filter(|a| a.starts_with("--")) {
        let flag = arg.split_once('=').map_or(arg.as_str(), |(f, _)| f);
        assert!(known.contains(flag), "{context}: `orgplane {sub_name}` has no flag {flag} (it has {known:?})");
    }
    let matches = root
        .try_get_matches_from(argv)
        .unwrap_or_else(|e| panic!("{context}: `{}` does not parse: {e}", argv.join(" ")));
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| panic!("{context}: {e}")).command
}

fn no_hostname() -> Result<String, orgplane::k8s::HostnameError> {
    panic!("this command line should not need the host name")
}

fn node_config(command: Command, hostname: Option<&str>, context: &str) -> NodeConfig {
    let Command::Node(args) = command else { panic!("{context}: not `orgplane node`") };
    let config = match hostname {
        Some(name) => args.into_config(|| Ok(name.to_string())),
        None => args.into_config(no_hostname),
    }
    .unwrap_or_else(|e| panic!("{context}: {e}"));
    config.validate().unwrap_or_else(|e| panic!("{context}: invalid node config: {e}"));
    check_starts_authenticated_or_explicitly_not(config.auth.is_some(), config.allow_unauthenticated, context);
    config
}

fn router_config(command: Command, context: &str) -> RouterConfig {
    let Command::Router(args) = command else { panic!("{context}: not `orgplane router`") };
    let config = args.into_config().unwrap_or_else(|e| panic!("{context}: {e}"));
    config.validate().unwrap_or_else(|e| panic!("{context}: invalid router config: {e}"));
    check_starts_authenticated_or_explicitly_not(config.auth.is_some(), config.allow_unauthenticated, context);
    config
}

/// A node or router starts with exactly one of `[auth]` and `--allow-unauthenticated`.
fn check_starts_authenticated_or_explicitly_not(auth: bool, allow_unauthenticated: bool, context: &str) {
    assert!(auth != allow_unauthenticated, "{context}: needs [auth] or --allow-unauthenticated (not both)");
}

/// Checks a health check command line: `orgplane health` against the serving port.
fn check_health_command(argv: &[String], port: u16, context: &str) {
    let Command::Health(args) = parse_orgplane(argv, context) else { panic!("{context}: not `orgplane health`") };
    let (host, probe_port) = args.addr.rsplit_once(':').unwrap_or_else(|| panic!("{context}: --addr {}", args.addr));
    assert_eq!(host, "127.0.0.1", "{context}: probes another host");
    assert_eq!(probe_port.parse::<u16>().ok(), Some(port), "{context}: probes port {probe_port}, serves on {port}");
}

fn image_uid() -> i64 {
    let script = read(&deploy_dir().join("build-image.sh"));
    let line = script.lines().find_map(|l| l.strip_prefix("APP_UID=")).expect("build-image.sh sets APP_UID=");
    line.trim().parse().expect("APP_UID is a number")
}

#[test]
fn every_yaml_file_parses() {
    let mut found = 0;
    let mut dirs = vec![deploy_dir()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                for doc in load_yaml(&path) {
                    assert!(doc.as_hash().is_some(), "{}: a document is not a mapping", path.display());
                }
                found += 1;
            }
        }
    }
    assert!(found >= 6, "found only {found} YAML files under deploy/");
}

// ---- compose

struct ComposeNode {
    service: String,
    config: NodeConfig,
}

#[test]
fn compose_runs_three_regions_of_three_nodes_and_a_router_per_region() {
    let path = deploy_dir().join("compose.yaml");
    let docs = load_yaml(&path);
    let compose = &docs[0];
    let networks = mapping_keys(compose, "networks");
    let volumes = mapping_keys(compose, "volumes");

    let mut nodes: Vec<ComposeNode> = Vec::new();
    let mut routers: Vec<(String, RouterConfig)> = Vec::new();
    let mut used_volumes = BTreeSet::new();
    let mut host_ports = BTreeSet::new();
    let mut pki_out = None;
    let mut cert_routers = Vec::new();
    for name in mapping_keys(compose, "services") {
        let service = &compose["services"][name.as_str()];
        let context = format!("compose service {name}");
        assert_eq!(text(service, "image"), IMAGE, "{context}");
        assert_eq!(text(service, "hostname"), name, "{context}: hostname differs from the service name");
        for network in strings(service, "networks") {
            assert!(networks.contains(&network), "{context}: network {network} is not declared");
        }
        assert_eq!(strings(service, "networks").len(), 1, "{context}: one user-defined network");
        let argv = strings(service, "command");
        let mounts = strings(service, "volumes");
        let command = parse_orgplane(&argv, &context);
        if let Command::DevCerts(args) = &command {
            // The one-shot that writes the PKI into the `pki` volume.
            assert_eq!(text(service, "restart"), "no", "{context}: runs once");
            assert_eq!(mounts, [format!("{PKI_VOLUME}:{}", args.out.display())], "{context}: writes into {PKI_VOLUME}");
            assert_eq!(args.regions, Region::ALL.to_vec(), "{context}: regions");
            assert_eq!(args.nodes_per_region, 3, "{context}: nodes per region");
            cert_routers = args.routers.clone();
            pki_out = Some(args.out.clone());
            continue;
        }
        if let Command::DevToken(args) = &command {
            assert_eq!(text(service, "restart"), "no", "{context}: runs once");
            assert_eq!(
                mounts,
                [format!("{PKI_VOLUME}:{}", args.data_dir.display())],
                "{context}: writes into {PKI_VOLUME}"
            );
            continue;
        }
        assert_eq!(text(service, "restart"), "unless-stopped", "{context}");
        let health = strings(service, "healthcheck.test");
        assert_eq!(health.first().map(String::as_str), Some("CMD"), "{context}: the image has no shell: use CMD");
        // Every serving process reads the PKI (and the token key) read-only from the same volume.
        let pki_mount = format!("{PKI_VOLUME}:{PKI_DIR}:ro");
        assert!(mounts.contains(&pki_mount), "{context}: mounts {pki_mount}");
        let data_mounts: Vec<&String> = mounts.iter().filter(|m| **m != pki_mount).collect();

        match command {
            command @ Command::Node(_) => {
                let config = node_config(command, None, &context);
                check_health_command(&health[1..], config.listen.port(), &context);
                check_tls_and_auth(
                    config.tls.as_ref(),
                    config.auth.as_ref(),
                    &format!("node-{}-{}", config.region, config.node_id),
                    &health,
                    &context,
                );
                assert_eq!(data_mounts.len(), 1, "{context}: one volume, for the data dir");
                let (volume, target) =
                    data_mounts[0].split_once(':').unwrap_or_else(|| panic!("{context}: {}", data_mounts[0]));
                assert!(volumes.contains(&volume.to_string()), "{context}: volume {volume} is not a named volume");
                assert_eq!(Path::new(target), config.data_dir, "{context}: the volume is not at the data dir");
                assert!(used_volumes.insert(volume.to_string()), "{context}: volume {volume} is shared");
                nodes.push(ComposeNode { service: name.clone(), config });
            }
            command @ Command::Router(_) => {
                let config = router_config(command, &context);
                check_health_command(&health[1..], config.listen.port(), &context);
                check_tls_and_auth(
                    config.tls.as_ref(),
                    config.auth.as_ref(),
                    &format!("router-{name}"),
                    &health,
                    &context,
                );
                assert!(data_mounts.is_empty(), "{context}: a router keeps no data");
                let ports = strings(service, "ports");
                assert_eq!(ports.len(), 1, "{context}: one published port");
                let parts: Vec<&str> = ports[0].split(':').collect();
                assert_eq!(parts.len(), 3, "{context}: publish as 127.0.0.1:HOST:CONTAINER, not {}", ports[0]);
                assert_eq!(parts[0], "127.0.0.1", "{context}: published beyond loopback");
                assert_eq!(
                    parts[2].parse::<u16>().ok(),
                    Some(config.listen.port()),
                    "{context}: publishes another port"
                );
                assert!(host_ports.insert(parts[1].to_string()), "{context}: host port {} used twice", parts[1]);
                routers.push((name.clone(), config));
            }
            other => panic!("{context}: runs {other:?}"),
        }
    }
    assert!(pki_out.is_some(), "a one-shot service runs `orgplane dev-certs`");
    let router_names: Vec<String> = routers.iter().map(|(name, _)| name.clone()).collect();
    assert_eq!(cert_routers, router_names, "dev-certs makes a certificate for each router service");
    assert_eq!(nodes.len(), 9, "nodes");
    assert_eq!(routers.len(), 3, "routers");
    assert_eq!(host_ports, BTreeSet::from(["50051".into(), "50052".into(), "50053".into()]));

    // Each region: nodes 1, 2, 3, each listing exactly its region's nodes, at their listen port.
    let mut region_endpoints: BTreeMap<Region, BTreeSet<String>> = BTreeMap::new();
    for region in Region::ALL {
        let members: Vec<&ComposeNode> = nodes.iter().filter(|n| n.config.region == region).collect();
        let ids: BTreeSet<u64> = members.iter().map(|n| n.config.node_id).collect();
        assert_eq!(ids, BTreeSet::from([1, 2, 3]), "region {region}: node ids");
        let expected: BTreeMap<u64, String> =
            members.iter().map(|n| (n.config.node_id, format!("{}:{}", n.service, n.config.listen.port()))).collect();
        for node in &members {
            assert_eq!(node.config.peers, expected, "{}: --peers", node.service);
        }
        region_endpoints.insert(region, expected.into_values().collect());
    }
    // Each router knows every region, by exactly that region's nodes.
    for (name, config) in &routers {
        let regions = config.validate().unwrap().0;
        assert_eq!(regions.keys().copied().collect::<Vec<_>>(), Region::ALL.to_vec(), "{name}: regions");
        for (region, endpoints) in regions {
            let endpoints: BTreeSet<String> = endpoints.into_iter().collect();
            assert_eq!(endpoints, region_endpoints[&region], "{name}: --region {region}");
        }
    }
}

/// The named volume holding the PKI and the token-signing key, and where serving processes
/// mount it.
const PKI_VOLUME: &str = "pki";
const PKI_DIR: &str = "/etc/orgplane/pki";

/// A serving process in compose: mutual TLS with its own certificate (`stem`.pem/.key) and the
/// CA from the PKI volume, tokens verified with the dev key's public half there, and a health
/// check that trusts the same CA.
fn check_tls_and_auth(
    tls: Option<&orgplane_auth::TlsConfig>,
    auth: Option<&orgplane_auth::AuthConfig>,
    stem: &str,
    health: &[String],
    context: &str,
) {
    let tls = tls.unwrap_or_else(|| panic!("{context}: no [tls]"));
    let pki = Path::new(PKI_DIR);
    assert_eq!(tls.ca_file, pki.join("ca.pem"), "{context}: CA");
    assert_eq!(tls.cert_file, pki.join(format!("{stem}.pem")), "{context}: certificate");
    assert_eq!(tls.key_file, pki.join(format!("{stem}.key")), "{context}: key");
    let auth = auth.unwrap_or_else(|| panic!("{context}: no [auth]"));
    assert_eq!(auth.key_file, pki.join("auth").join(orgplane_auth::dev_key::PUBLIC_KEY_FILE), "{context}: token key");
    assert_eq!(auth.issuer, orgplane_auth::dev_key::DEV_ISSUER, "{context}: issuer");
    assert_eq!(auth.audience, orgplane_auth::dev_key::DEV_AUDIENCE, "{context}: audience");
    let Command::Health(probe) = parse_orgplane(&health[1..], context) else { panic!("{context}: not a health check") };
    assert_eq!(probe.tls_ca_file.as_deref(), Some(tls.ca_file.as_path()), "{context}: the health check trusts the CA");
}

// ---- config templates

/// The field names of a config type, as its `Deserialize` implementation knows them: a
/// template that lacks one is out of date.
fn config_keys<T: serde::de::DeserializeOwned>() -> BTreeSet<&'static str> {
    #[derive(Debug)]
    struct Fields(&'static [&'static str]);
    impl std::fmt::Display for Fields {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "fields {:?}", self.0)
        }
    }
    impl std::error::Error for Fields {}
    impl serde::de::Error for Fields {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Fields(&[])
        }
    }
    /// Answers `deserialize_struct` with the field list, and nothing else.
    struct Capture;
    impl<'de> serde::Deserializer<'de> for Capture {
        type Error = Fields;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Fields> {
            Err(Fields(&[]))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Fields> {
            Err(Fields(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    match T::deserialize(Capture) {
        Err(Fields(fields)) if !fields.is_empty() => fields.iter().copied().collect(),
        _ => panic!("not a struct with named fields"),
    }
}

fn template_table(name: &str) -> toml::Table {
    let path = deploy_dir().join(name);
    read(&path).parse().unwrap_or_else(|e| panic!("{} is not TOML: {e}", path.display()))
}

#[test]
fn router_template_lists_every_key_with_its_default() {
    let table = template_table("router.template.toml");
    let keys: BTreeSet<&str> = table.keys().map(String::as_str).collect();
    assert_eq!(keys, config_keys::<RouterConfig>(), "router.template.toml keys");
    let config: RouterConfig = toml::Value::Table(table).try_into().expect("the template is a router config");
    config.validate().expect("the template's config is valid");
    assert_eq!(
        config,
        RouterConfig {
            regions: config.regions.clone(),
            metrics_listen: config.metrics_listen,
            auth: config.auth.clone(),
            tls: config.tls.clone(),
            ..RouterConfig::default()
        },
        "every key but regions (no default), metrics-listen, auth and tls (off by default) holds its default"
    );
    assert!(config.metrics_listen.is_some(), "the template shows metrics-listen");
    assert!(config.auth.is_some(), "the template shows [auth]");
    assert!(config.tls.is_some(), "the template shows [tls]");
}

#[test]
fn node_template_lists_every_key_with_its_default() {
    let table = template_table("node.template.toml");
    let keys: BTreeSet<&str> = table.keys().map(String::as_str).collect();
    assert_eq!(keys, config_keys::<NodeConfig>(), "node.template.toml keys");
    let config: NodeConfig = toml::Value::Table(table.clone()).try_into().expect("the template is a node config");
    config.validate().expect("the template's config is valid");
    let defaults =
        NodeConfig::new(config.region, config.node_id, config.listen, config.data_dir.clone(), config.peers.clone());
    let defaults = toml::Table::try_from(&defaults).expect("a node config serializes");
    for (key, value) in &table {
        match defaults.get(key) {
            Some(default) => assert_eq!(value, default, "node.template.toml: {key} is not the default"),
            // An optional key with no default (off unless set) is shown with an example value.
            None => {
                assert!(
                    ["metrics-listen", "auth", "tls"].contains(&key.as_str()),
                    "node.template.toml: {key} has no default"
                )
            }
        }
    }
}

// ---- Kubernetes

struct Manifests {
    /// (kind, name) -> the resource.
    by_kind: BTreeMap<(String, String), Yaml>,
}

impl Manifests {
    fn load() -> (Manifests, Yaml) {
        let dir = deploy_dir().join("kubernetes");
        let kustomization = load_yaml(&dir.join("kustomization.yaml")).remove(0);
        let resources = strings(&kustomization, "resources");
        let listed: BTreeSet<String> = resources.iter().cloned().collect();
        let present: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
            .collect();
        assert_eq!(listed, present, "kustomization.yaml resources vs the files in deploy/kubernetes");

        let mut by_kind = BTreeMap::new();
        for file in &resources {
            for doc in load_yaml(&dir.join(file)) {
                let key = (text(&doc, "kind").to_string(), text(&doc, "metadata.name").to_string());
                assert!(by_kind.insert(key.clone(), doc).is_none(), "{key:?} defined twice");
            }
        }
        (Manifests { by_kind }, kustomization)
    }

    fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a str, &'a Yaml)> + 'a {
        self.by_kind.iter().filter(move |((k, _), _)| k == kind).map(|((_, name), doc)| (name.as_str(), doc))
    }

    fn get(&self, kind: &str, name: &str) -> &Yaml {
        self.by_kind.get(&(kind.to_string(), name.to_string())).unwrap_or_else(|| panic!("no {kind} {name}"))
    }
}

/// The container's command line, `command` then `args`.
fn container_argv(container: &Yaml) -> Vec<String> {
    let mut argv = strings(container, "command");
    argv.extend(strings(container, "args"));
    argv
}

/// The port number a Service's targetPort or a probe's port means in `container`.
fn resolve_port(port: &Yaml, container: &Yaml, context: &str) -> u16 {
    match port {
        Yaml::Integer(n) => u16::try_from(*n).unwrap_or_else(|_| panic!("{context}: port {n}")),
        Yaml::String(name) => list(container, "ports")
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .map(|p| int(p, "containerPort") as u16)
            .unwrap_or_else(|| panic!("{context}: no container port named {name}")),
        other => panic!("{context}: port {other:?}"),
    }
}

/// Checks what every orgplane pod shares: the image, the serving port (and the metrics port, when
/// `--metrics-listen` is given) declared, probes on the serving port, Prometheus's scrape
/// annotations naming the metrics port, resources, and running as the image's non-root user.
fn check_pod(template: &Yaml, container: &Yaml, port: u16, metrics_port: Option<u16>, context: &str) {
    let pod = at(template, "spec");
    assert_eq!(text(container, "image"), IMAGE, "{context}: image");
    let ports: Vec<u16> = list(container, "ports").iter().map(|p| int(p, "containerPort") as u16).collect();
    let expected: Vec<u16> = std::iter::once(port).chain(metrics_port).collect();
    assert_eq!(ports, expected, "{context}: container ports vs --listen and --metrics-listen");
    if let Some(metrics_port) = metrics_port {
        let annotations = string_map(template, "metadata.annotations");
        assert_eq!(annotations.get("prometheus.io/scrape").map(String::as_str), Some("true"), "{context}: scrape");
        assert_eq!(annotations.get("prometheus.io/port"), Some(&metrics_port.to_string()), "{context}: scrape port");
    }
    assert_eq!(
        resolve_port(at(container, "readinessProbe.grpc.port"), container, context),
        port,
        "{context}: readiness"
    );
    let liveness = at(container, "livenessProbe");
    let live_port =
        if !liveness["grpc"].is_badvalue() { at(liveness, "grpc.port") } else { at(liveness, "tcpSocket.port") };
    assert_eq!(resolve_port(live_port, container, context), port, "{context}: liveness");
    for key in ["requests.cpu", "requests.memory", "limits.cpu", "limits.memory"] {
        at(&container["resources"], key);
    }
    let uid = image_uid();
    assert_eq!(at(pod, "securityContext.runAsNonRoot").as_bool(), Some(true), "{context}: runAsNonRoot");
    assert_eq!(int(pod, "securityContext.runAsUser"), uid, "{context}: runAsUser vs the image's user");
    assert_eq!(at(container, "securityContext.allowPrivilegeEscalation").as_bool(), Some(false), "{context}");
    assert_eq!(at(pod, "enableServiceLinks").as_bool(), Some(false), "{context}: service variables named ORGPLANE_*");
}

/// Which pod names of a StatefulSet reach the node, through its headless Service.
fn pod_endpoints(statefulset: &str, service: &str, replicas: i64, port: u16) -> Vec<String> {
    (0..replicas).map(|i| format!("{statefulset}-{i}.{service}:{port}")).collect()
}

#[test]
fn kubernetes_runs_a_statefulset_per_region_and_a_router() {
    let (manifests, kustomization) = Manifests::load();
    let namespace = text(&kustomization, "namespace");
    manifests.get("Namespace", namespace);

    let mut region_endpoints: BTreeMap<Region, BTreeSet<String>> = BTreeMap::new();
    let mut node_pod_labels = Vec::new();
    for (name, sts) in manifests.of_kind("StatefulSet") {
        let context = format!("StatefulSet {name}");
        let pod = at(sts, "spec.template.spec");
        let pod_labels = string_map(sts, "spec.template.metadata.labels");
        let selector = string_map(sts, "spec.selector.matchLabels");
        assert!(selects(&selector, &pod_labels), "{context}: selector does not select its pods");
        let replicas = int(sts, "spec.replicas");
        assert_eq!(replicas, 3, "{context}: replicas");
        assert_eq!(text(sts, "spec.podManagementPolicy"), "Parallel", "{context}: pod 0 cannot be ready alone");
        let containers = list(pod, "containers");
        assert_eq!(containers.len(), 1, "{context}: containers");
        let container = &containers[0];

        // The node id comes from the pod's ordinal; each pod's config is valid.
        let argv = container_argv(container);
        assert!(argv.contains(&"--node-id-from-hostname".to_string()), "{context}: node id from the pod ordinal");
        let service_name = text(sts, "spec.serviceName");
        let mut configs = Vec::new();
        for ordinal in 0..replicas {
            let hostname = format!("{name}-{ordinal}");
            let config = node_config(parse_orgplane(&argv, &context), Some(&hostname), &context);
            assert_eq!(config.node_id, ordinal as u64 + 1, "{context}: node id of pod {hostname}");
            configs.push(config);
        }
        let config = &configs[0];
        let port = config.listen.port();
        let endpoints = pod_endpoints(name, service_name, replicas, port);
        let expected_peers: BTreeMap<u64, String> = (1..).zip(endpoints.iter().cloned()).collect();
        assert_eq!(config.peers, expected_peers, "{context}: --peers must name its pods via {service_name}");
        assert!(
            region_endpoints.insert(config.region, endpoints.into_iter().collect()).is_none(),
            "{context}: a second StatefulSet for region {}",
            config.region
        );
        let metrics_port = config.metrics_listen.map(|a| a.port());
        check_pod(at(sts, "spec.template"), container, port, metrics_port, &context);

        // The data dir is on a volume claim of its own.
        let claims: Vec<&str> =
            list(sts, "spec.volumeClaimTemplates").iter().map(|c| text(c, "metadata.name")).collect();
        let data_mount = list(container, "volumeMounts")
            .iter()
            .find(|m| Path::new(text(m, "mountPath")) == config.data_dir)
            .unwrap_or_else(|| panic!("{context}: nothing mounted at the data dir {}", config.data_dir.display()));
        assert!(claims.contains(&text(data_mount, "name")), "{context}: the data dir is not on a volume claim");

        // Two nodes of a region never share a machine.
        let anti = list(pod, "affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution");
        assert!(
            anti.iter().any(|term| text(term, "topologyKey") == "kubernetes.io/hostname"
                && selects(&string_map(term, "labelSelector.matchLabels"), &pod_labels)),
            "{context}: no pod anti-affinity between its own pods"
        );

        // The headless Service: a DNS name per pod, published before the pods are ready.
        let service = manifests.get("Service", service_name);
        assert_eq!(text(service, "spec.clusterIP"), "None", "Service {service_name}: headless");
        assert_eq!(at(service, "spec.publishNotReadyAddresses").as_bool(), Some(true), "Service {service_name}");
        assert_eq!(string_map(service, "spec.selector"), selector, "Service {service_name}: selector");
        let service_ports = list(service, "spec.ports");
        assert!(
            service_ports.iter().all(|p| resolve_port(at(p, "targetPort"), container, &context) == port),
            "Service {service_name}: targets another port than --listen"
        );

        // A disruption budget of one pod.
        let budgets: Vec<&Yaml> = manifests
            .of_kind("PodDisruptionBudget")
            .map(|(_, pdb)| pdb)
            .filter(|pdb| selects(&string_map(pdb, "spec.selector.matchLabels"), &pod_labels))
            .collect();
        assert_eq!(budgets.len(), 1, "{context}: PodDisruptionBudgets");
        assert_eq!(int(budgets[0], "spec.maxUnavailable"), 1, "{context}: PodDisruptionBudget maxUnavailable");
        node_pod_labels.push(pod_labels);
    }
    assert_eq!(region_endpoints.keys().copied().collect::<Vec<_>>(), Region::ALL.to_vec(), "a StatefulSet per region");
    // No selector takes pods of another region.
    for (name, pdb) in manifests.of_kind("PodDisruptionBudget") {
        let selector = string_map(pdb, "spec.selector.matchLabels");
        assert_eq!(node_pod_labels.iter().filter(|l| selects(&selector, l)).count(), 1, "PodDisruptionBudget {name}");
    }

    // The router: every region, by exactly the pods of its StatefulSet.
    let deployments: Vec<(&str, &Yaml)> = manifests.of_kind("Deployment").collect();
    assert_eq!(deployments.len(), 1, "one router Deployment");
    let (name, router) = deployments[0];
    let context = format!("Deployment {name}");
    let pod = at(router, "spec.template.spec");
    let pod_labels = string_map(router, "spec.template.metadata.labels");
    assert!(selects(&string_map(router, "spec.selector.matchLabels"), &pod_labels), "{context}: selector");
    let container = &list(pod, "containers")[0];
    let config = router_config(parse_orgplane(&container_argv(container), &context), &context);
    for (region, endpoints) in config.validate().unwrap().0 {
        let endpoints: BTreeSet<String> = endpoints.into_iter().collect();
        assert_eq!(Some(&endpoints), region_endpoints.get(&region), "{context}: --region {region}");
    }
    assert_eq!(config.regions.len(), 3, "{context}: every region");
    let port = config.listen.port();
    check_pod(at(router, "spec.template"), container, port, config.metrics_listen.map(|a| a.port()), &context);
    assert!(at(container, "livenessProbe.grpc").as_hash().is_some(), "{context}: liveness on gRPC health");

    let services: Vec<(&str, &Yaml)> =
        manifests.of_kind("Service").filter(|(_, s)| selects(&string_map(s, "spec.selector"), &pod_labels)).collect();
    assert_eq!(services.len(), 1, "{context}: one Service selects the router");
    let (service_name, service) = services[0];
    assert!(
        node_pod_labels.iter().all(|l| !selects(&string_map(service, "spec.selector"), l)),
        "Service {service_name} also selects nodes"
    );
    for p in list(service, "spec.ports") {
        assert_eq!(resolve_port(at(p, "targetPort"), container, &context), port, "Service {service_name}: targetPort");
    }
}
