//! The harness shared by the scenario tests in `tests/tests/`: a region of real nodes on
//! loopback (each node a gRPC server in this process, with its own data directory), which a
//! test can stop, restart and inspect, and small helpers to await conditions with a bound.

#![forbid(unsafe_code)]

pub mod auth;
pub mod browser;
pub mod faults;
pub mod router;
pub mod scrape;

use std::collections::BTreeMap;
use std::time::Duration;

use orgplane::dev::{spawn_node, DevNode};
use orgplane_model::Region;
use orgplane_node::node::Raft;
use orgplane_node::NodeConfig;
use orgplane_proto::v1::org_service_client::OrgServiceClient;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tonic::transport::{Channel, Endpoint};

/// A bound on any wait in these tests: generous for a loaded 2-core CI machine, yet a hang
/// still fails the test instead of stalling CI.
pub const WAIT: Duration = Duration::from_secs(30);

/// A region of nodes for a test.
pub struct TestRegion {
    pub region: Region,
    pub peers: BTreeMap<u64, String>,
    dir: TempDir,
    running: BTreeMap<u64, DevNode>,
    tune: Box<dyn Fn(&mut NodeConfig) + Send + Sync>,
}

/// Timings for tests: quick elections, still safe on a loaded machine.
pub fn test_timings(config: &mut NodeConfig) {
    config.heartbeat_ms = 100;
    config.election_timeout_min_ms = 500;
    config.election_timeout_max_ms = 1000;
}

impl TestRegion {
    /// Starts `n` nodes of `region` on fresh loopback ports; `tune` adjusts each node's config.
    pub async fn start(region: Region, n: u64, tune: impl Fn(&mut NodeConfig) + Send + Sync + 'static) -> TestRegion {
        TestRegion::start_seeded(region, n, tune, |_, _, _| {}).await
    }

    /// Like [`TestRegion::start`], but first calls `seed` with each node's id, (absent) data
    /// directory and the region's peers, before any node starts: to restore the nodes of a new
    /// cluster from a backup, for example.
    pub async fn start_seeded(
        region: Region,
        n: u64,
        tune: impl Fn(&mut NodeConfig) + Send + Sync + 'static,
        mut seed: impl FnMut(u64, &std::path::Path, &BTreeMap<u64, String>),
    ) -> TestRegion {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut listeners = BTreeMap::new();
        for id in 1..=n {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            listeners.insert(id, l);
        }
        let peers: BTreeMap<u64, String> =
            listeners.iter().map(|(id, l)| (*id, l.local_addr().unwrap().to_string())).collect();
        let mut region = TestRegion { region, peers, dir, running: BTreeMap::new(), tune: Box::new(tune) };
        for id in listeners.keys() {
            seed(*id, &region.data_dir(*id), &region.peers);
        }
        for (id, listener) in listeners {
            region.spawn(id, listener).await;
        }
        region
    }

    fn config(&self, id: u64) -> NodeConfig {
        let listen = self.peers[&id].parse().expect("addr");
        let data_dir = self.dir.path().join(format!("node-{id}"));
        let mut config = NodeConfig::new(self.region, id, listen, data_dir, self.peers.clone());
        // Tests about the region run without authentication; tests/tests/authn.rs sets [auth].
        config.allow_unauthenticated = true;
        (self.tune)(&mut config);
        config
    }

    async fn spawn(&mut self, id: u64, listener: TcpListener) {
        let node = spawn_node(self.config(id), listener, self.peers[&id].clone()).await.expect("node starts");
        self.running.insert(id, node);
    }

    /// Starts a new node `id` in join mode (empty, waiting to be added) on a fresh port, and
    /// returns its address.
    pub async fn start_joining(&mut self, id: u64) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap().to_string();
        self.peers.insert(id, addr.clone());
        let mut config = self.config(id);
        config.join = true;
        config.peers = BTreeMap::new();
        let node = spawn_node(config, listener, addr.clone()).await.expect("joining node starts");
        self.running.insert(id, node);
        addr
    }

    /// The data directory of node `id`.
    pub fn data_dir(&self, id: u64) -> std::path::PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    /// Stops node `id` and waits until it released its data directory and port.
    pub async fn stop(&mut self, id: u64) {
        if let Some(node) = self.running.remove(&id) {
            node.stop().await;
        }
    }

    /// Starts node `id` again on its old address and data directory.
    pub async fn restart(&mut self, id: u64) {
        let addr = self.peers[&id].clone();
        // The port was just released by this process; rebinding it may take a few tries.
        let mut attempts = 0;
        let listener = loop {
            match TcpListener::bind(&addr).await {
                Ok(l) => break l,
                Err(e) if attempts < 50 => {
                    attempts += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot rebind {addr}: {e}"),
            }
        };
        self.spawn(id, listener).await;
    }

    pub fn raft(&self, id: u64) -> &Raft {
        &self.running[&id].raft
    }

    /// Where node `id` serves `GET /metrics`, when `tune` gave it a `metrics_listen`.
    pub fn metrics_addr(&self, id: u64) -> Option<std::net::SocketAddr> {
        self.running[&id].metrics_addr
    }

    pub fn running_ids(&self) -> Vec<u64> {
        self.running.keys().copied().collect()
    }

    /// Waits until every running node knows the same running leader, and returns it.
    pub async fn leader(&self) -> u64 {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let leaders: Vec<Option<u64>> =
                self.running.values().map(|n| n.raft.metrics().borrow().current_leader).collect();
            if let Some(Some(first)) = leaders.first() {
                if leaders.iter().all(|l| *l == Some(*first)) && self.running.contains_key(first) {
                    let m = self.running[first].raft.metrics().borrow().clone();
                    if m.state == openraft::ServerState::Leader {
                        return *first;
                    }
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "no agreed leader within {WAIT:?}: {leaders:?}");
            // Wake on the next metrics change of any node, or after a short while.
            let changes = self.running.values().map(|n| {
                let mut rx = n.raft.metrics();
                Box::pin(async move {
                    let _ = rx.changed().await;
                })
            });
            let _ = tokio::time::timeout(Duration::from_millis(200), futures::future::select_all(changes)).await;
        }
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: u64, index: u64) {
        self.raft(id)
            .wait(Some(WAIT))
            .applied_index_at_least(Some(index), "caught up")
            .await
            .unwrap_or_else(|e| panic!("node {id} did not apply up to {index}: {e}"));
    }

    /// A client of node `id`'s public API.
    pub async fn client(&self, id: u64) -> OrgServiceClient<Channel> {
        connect(&self.peers[&id]).await
    }

    pub async fn shutdown(mut self) {
        for id in self.running_ids() {
            self.stop(id).await;
        }
    }
}

/// A client of the public API at `addr`.
pub async fn connect(addr: &str) -> OrgServiceClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(20))
        .connect_lazy();
    OrgServiceClient::new(channel)
}

/// True when a write that failed with `status` may be sent again with the same request id: the
/// region said it cannot serve now, the deadline passed (a tonic server answers CANCELLED when
/// the call's `grpc-timeout` passes), the outcome is unknown, or the call broke in transport
/// (tonic made the status from a local error, e.g. the GOAWAY of a node shutting down, which it
/// reports as INTERNAL). A status the server sent for any other reason is final.
pub fn worth_resending(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown)
        || std::error::Error::source(status).is_some()
}

/// Every file under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(path);
                }
            }
        }
    }
    found
}
