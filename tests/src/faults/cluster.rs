//! A region of real `orgplane node` processes (in the lab's namespaces or on loopback), a
//! router process, and what the scenarios ask of them over gRPC: each node's own status
//! (`ClusterService.GetClusterStatus`), its `grpc.health.v1` status, the agreed leader, and
//! health after a fault healed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use orgplane_proto::v1::cluster_service_client::ClusterServiceClient;
use orgplane_proto::v1::{GetClusterStatusRequest, NodeStatus};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::procs::{Proc, ProcSpec};

/// A lazily connected channel to `addr` (`host:port`); every call sets its own deadline.
pub fn channel(addr: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_millis(1000))
        .tcp_nodelay(true)
        .connect_lazy()
}

/// Node settings the scenarios choose; the rest are the node's defaults.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub write_timeout_ms: u64,
    pub read_timeout_ms: u64,
    pub snapshot_every_entries: Option<u64>,
    pub log_entries_kept_after_snapshot: Option<u64>,
    /// `RUST_LOG` for the nodes; `None`: the binary's default.
    pub rust_log: Option<String>,
}

impl Default for NodeSettings {
    /// Quicker elections than the defaults (150 ms heartbeat, 750-1500 ms elections), still
    /// safe on a loaded 2-core machine; writes and reads give up within 2 s.
    fn default() -> Self {
        NodeSettings {
            heartbeat_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            write_timeout_ms: 2000,
            read_timeout_ms: 2000,
            snapshot_every_entries: None,
            log_entries_kept_after_snapshot: None,
            rust_log: None,
        }
    }
}

/// One node process and where it keeps things.
pub struct NodeProc {
    pub id: u64,
    pub addr: String,
    /// The node's folder: `config.toml`, `node.log` and `data/`.
    pub dir: PathBuf,
    pub proc: Proc,
}

impl NodeProc {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("node.log")
    }
}

/// A region of node processes.
pub struct ProcRegion {
    pub region: String,
    pub nodes: BTreeMap<u64, NodeProc>,
    /// The peer list the region formed with.
    pub peers: BTreeMap<u64, String>,
    run_dir: PathBuf,
    settings: NodeSettings,
}

impl ProcRegion {
    /// Writes each node's config and starts the nodes. `placement` gives, per node id, its
    /// network namespace (or none) and address.
    pub fn start(
        region: &str,
        placement: &BTreeMap<u64, (Option<String>, String)>,
        run_dir: &Path,
        settings: &NodeSettings,
    ) -> ProcRegion {
        let peers: BTreeMap<u64, String> = placement.iter().map(|(id, (_, addr))| (*id, addr.clone())).collect();
        let mut region = ProcRegion {
            region: region.to_string(),
            nodes: BTreeMap::new(),
            peers: peers.clone(),
            run_dir: run_dir.to_path_buf(),
            settings: settings.clone(),
        };
        for (id, (netns, addr)) in placement {
            region.spawn(*id, netns.clone(), addr, &peers, false);
        }
        region
    }

    /// Writes node `id`'s config (with `join`: empty, waiting to be added) and starts it.
    fn spawn(&mut self, id: u64, netns: Option<String>, addr: &str, peers: &BTreeMap<u64, String>, join: bool) {
        let dir = self.run_dir.join(format!("{}-n{id}", self.region));
        std::fs::create_dir_all(dir.join("data")).expect("node dir");
        let mut config = node_config(&self.region, id, addr, &dir.join("data"), peers, &self.settings);
        if join {
            config = format!("join = true\n{config}");
        }
        let config_path = dir.join("config.toml");
        std::fs::write(&config_path, config).expect("write node config");
        let mut env = vec![("ORGPLANE_LOG_FORMAT".to_string(), "text".to_string())];
        if let Some(filter) = &self.settings.rust_log {
            env.push(("RUST_LOG".to_string(), filter.clone()));
        }
        let spec = ProcSpec {
            name: format!("{}-n{id}", self.region),
            netns,
            // The fault suite is about Raft and the router, not authentication.
            args: vec![
                "node".into(),
                "--allow-unauthenticated".into(),
                "--config".into(),
                config_path.display().to_string(),
            ],
            env,
            log: dir.join("node.log"),
            marker: self.run_dir.display().to_string(),
        };
        let mut proc = Proc::new(spec);
        proc.start();
        self.nodes.insert(id, NodeProc { id, addr: addr.to_string(), dir, proc });
    }

    /// Node replacement, step 1: node `id` dies for good (kill -9, data dir deleted) and
    /// leaves the set of nodes this harness waits on. Its membership stays in the region's
    /// Raft configuration until the membership API removes it.
    pub fn destroy(&mut self, id: u64) {
        if let Some(mut node) = self.nodes.remove(&id) {
            node.proc.kill9();
            let _ = std::fs::remove_dir_all(node.data_dir());
        }
    }

    /// Node replacement, step 2: a fresh node `id` at `addr` started in join mode (empty,
    /// waiting for the leader to add it). Needs the node's `join` setting; adding it to the
    /// region needs the membership API.
    pub fn start_joining(&mut self, id: u64, netns: Option<String>, addr: &str) {
        assert!(!self.nodes.contains_key(&id), "node {id} exists");
        self.spawn(id, netns, addr, &BTreeMap::new(), true);
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    pub fn addr(&self, id: u64) -> &str {
        &self.nodes[&id].addr
    }

    pub fn node(&mut self, id: u64) -> &mut NodeProc {
        self.nodes.get_mut(&id).unwrap_or_else(|| panic!("no node {id}"))
    }

    /// kill -9 of node `id`.
    pub fn kill9(&mut self, id: u64) {
        self.node(id).proc.kill9();
    }

    /// Starts node `id` again from its data dir.
    pub fn restart(&mut self, id: u64) {
        self.node(id).proc.start();
    }

    /// The status node `id` reports of itself, within `timeout`.
    pub async fn status(&self, id: u64, timeout: Duration) -> Result<NodeStatus, String> {
        node_status(self.addr(id), timeout).await
    }

    /// Whether node `id` answers SERVING on `grpc.health.v1`.
    pub async fn serving(&self, id: u64, timeout: Duration) -> bool {
        serving(self.addr(id), timeout).await
    }

    /// The leader a majority of the nodes agrees on, itself included (it must say it leads);
    /// a node cut off in a minority may disagree.
    pub async fn agreed_leader(&self) -> Option<u64> {
        let statuses = self.statuses().await;
        let answered: Vec<&NodeStatus> = statuses.values().filter_map(|s| s.as_ref().ok()).collect();
        let leader = answered.iter().find(|s| s.role == "leader" && s.leader_id == s.node_id)?.node_id;
        let votes = answered.iter().filter(|s| s.leader_id == leader).count();
        (votes * 2 > self.nodes.len()).then_some(leader)
    }

    /// Every node's status (or why it did not answer), asked in parallel.
    pub async fn statuses(&self) -> BTreeMap<u64, Result<NodeStatus, String>> {
        let asks =
            self.nodes.values().map(|n| async move { (n.id, node_status(&n.addr, Duration::from_secs(1)).await) });
        futures::future::join_all(asks).await.into_iter().collect()
    }

    /// Waits (bounded) for an agreed leader and returns it.
    pub async fn wait_leader(&self, bound: Duration) -> u64 {
        let started = Instant::now();
        loop {
            if let Some(leader) = self.agreed_leader().await {
                return leader;
            }
            assert!(
                started.elapsed() < bound,
                "region {}: no agreed leader within {bound:?}: {:?}",
                self.region,
                self.statuses().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (bounded) until every node is SERVING on grpc.health.v1 and they agree on a
    /// leader; returns the leader and how long it took. Only running, unpaused nodes count;
    /// the caller makes sure all are running when it means "the whole region".
    pub async fn wait_healthy(&mut self, bound: Duration) -> Result<(u64, Duration), String> {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < bound {
            let mut all_serving = true;
            for n in self.nodes.values() {
                if !serving(&n.addr, Duration::from_secs(1)).await {
                    all_serving = false;
                    last = format!("node {} not SERVING", n.id);
                    break;
                }
            }
            if all_serving {
                let statuses = self.statuses().await;
                let leaders: Vec<u64> =
                    statuses.values().filter_map(|s| s.as_ref().ok()).map(|s| s.leader_id).collect();
                let leader = leaders.first().copied().unwrap_or(0);
                let leads = statuses.get(&leader).and_then(|s| s.as_ref().ok()).is_some_and(|s| s.role == "leader");
                if leaders.len() == self.nodes.len() && leader != 0 && leaders.iter().all(|l| *l == leader) && leads {
                    return Ok((leader, started.elapsed()));
                }
                last = format!("no agreed leader: {leaders:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("region {} not healthy within {bound:?}: {last}", self.region))
    }
}

/// The TOML config of one node.
fn node_config(
    region: &str,
    id: u64,
    addr: &str,
    data_dir: &Path,
    peers: &BTreeMap<u64, String>,
    s: &NodeSettings,
) -> String {
    let mut text = format!(
        "region = \"{region}\"\nnode-id = {id}\nlisten = \"{addr}\"\ndata-dir = \"{}\"\n\
         heartbeat-ms = {}\nelection-timeout-min-ms = {}\nelection-timeout-max-ms = {}\n\
         write-timeout-ms = {}\nread-timeout-ms = {}\n",
        data_dir.display(),
        s.heartbeat_ms,
        s.election_timeout_min_ms,
        s.election_timeout_max_ms,
        s.write_timeout_ms,
        s.read_timeout_ms,
    );
    if let Some(n) = s.snapshot_every_entries {
        text.push_str(&format!("snapshot-every-entries = {n}\n"));
    }
    if let Some(n) = s.log_entries_kept_after_snapshot {
        text.push_str(&format!("log-entries-kept-after-snapshot = {n}\n"));
    }
    text.push_str("\n[peers]\n");
    for (peer, peer_addr) in peers {
        text.push_str(&format!("{peer} = \"{peer_addr}\"\n"));
    }
    text
}

/// The status a node at `addr` reports of itself.
pub async fn node_status(addr: &str, timeout: Duration) -> Result<NodeStatus, String> {
    let mut client = ClusterServiceClient::new(channel(addr));
    let mut request = tonic::Request::new(GetClusterStatusRequest {});
    request.set_timeout(timeout);
    let reply = tokio::time::timeout(timeout + Duration::from_millis(200), client.get_cluster_status(request))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
    reply
        .into_inner()
        .regions
        .into_iter()
        .flat_map(|r| r.nodes)
        .next()
        .ok_or_else(|| "the status names no node".to_string())
}

/// Whether the server at `addr` answers SERVING for the whole server (service "").
pub async fn serving(addr: &str, timeout: Duration) -> bool {
    let mut client = HealthClient::new(channel(addr));
    let mut request = tonic::Request::new(HealthCheckRequest { service: String::new() });
    request.set_timeout(timeout);
    match tokio::time::timeout(timeout + Duration::from_millis(200), client.check(request)).await {
        Ok(Ok(reply)) => reply.into_inner().status == ServingStatus::Serving as i32,
        _ => false,
    }
}

/// A free port on 127.0.0.1 (bound, then released for the process that will use it).
pub fn free_loopback_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local addr").port()
}

/// The `orgplane router` process in front of the given regions (on loopback).
pub fn start_router(run_dir: &Path, listen: &str, regions: &[(&str, Vec<String>)]) -> Proc {
    let mut args = vec!["router".into(), "--allow-unauthenticated".into(), "--listen".into(), listen.to_string()];
    for (region, endpoints) in regions {
        args.push("--region".into());
        args.push(format!("{region}={}", endpoints.join(",")));
    }
    let mut proc = Proc::new(ProcSpec {
        name: "router".into(),
        netns: None,
        args,
        env: vec![],
        log: run_dir.join("router.log"),
        marker: run_dir.display().to_string(),
    });
    proc.start();
    proc
}
