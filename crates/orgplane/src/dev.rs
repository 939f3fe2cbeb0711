//! `orgplane dev`: the embedded local deployment. Three regions of three nodes and one router,
//! in one process on loopback. Each node keeps its data in `DATA_DIR/<region>/node-<id>`;
//! nothing is shared between regions, and the router has no data directory at all.
//!
//! The addresses are chosen on first start and written to `DATA_DIR/dev-layout.toml`, because
//! Raft remembers its members' addresses: a restart reuses them and finds its data.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use orgplane_model::Region;
use orgplane_node::{Node, NodeConfig};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What `orgplane dev` is asked to start.
#[derive(Debug, Clone)]
pub struct DevConfig {
    /// Where every node's data directory goes.
    pub data_dir: PathBuf,
    /// The router's address.
    pub listen: SocketAddr,
    /// The first node port; the nine nodes take the next nine ports. 0 lets the OS choose
    /// (tests).
    pub node_base_port: u16,
    /// Nodes per region.
    pub nodes_per_region: u64,
    /// Where the router serves its metrics (`GET /metrics`); port 0 lets the OS choose
    /// (tests), None serves none. The dev nodes serve no metrics.
    pub metrics_listen: Option<SocketAddr>,
    /// Run every node and the router without authentication (every caller an anonymous
    /// platform admin), for tests about other things. Otherwise (`orgplane dev`) they verify
    /// tokens signed by the dev key in `data_dir` (made on first start; `orgplane dev-token`).
    pub allow_unauthenticated: bool,
}

/// The addresses of a dev deployment, as written to `dev-layout.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DevLayout {
    /// Node addresses per region, by node id.
    pub regions: BTreeMap<Region, BTreeMap<u64, String>>,
}

const LAYOUT_FILE: &str = "dev-layout.toml";

/// Why the dev deployment could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("cannot use data dir {dir}: {source}")]
    DataDir { dir: String, source: std::io::Error },
    #[error("layout file {path} is unreadable: {reason}")]
    Layout { path: String, reason: String },
    #[error("cannot listen on {addr}: {source} (is another orgplane running? pick other ports)")]
    Bind { addr: String, source: std::io::Error },
    #[error("dev signing key: {0}")]
    Auth(#[from] orgplane_auth::SetupError),
    #[error("node {region}/{node_id} failed to start: {source}")]
    Node { region: Region, node_id: u64, source: orgplane_node::node::StartError },
}

/// A running node of the dev deployment.
pub struct DevNode {
    pub region: Region,
    pub node_id: u64,
    pub addr: String,
    pub data_dir: PathBuf,
    /// Where the node serves `GET /metrics`, when its config has `metrics-listen`.
    pub metrics_addr: Option<SocketAddr>,
    /// The node's Raft handle, for status and tests.
    pub raft: orgplane_node::node::Raft,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The running deployment.
pub struct DevDeployment {
    pub router_addr: SocketAddr,
    /// Where the router serves `GET /metrics`, if it does.
    pub router_metrics_addr: Option<SocketAddr>,
    pub data_dir: PathBuf,
    /// Whether callers need a dev token (`orgplane dev-token`).
    pub authenticated: bool,
    pub nodes: Vec<DevNode>,
    router_stop: watch::Sender<bool>,
    router_task: JoinHandle<()>,
}

impl DevLayout {
    /// Reads the layout of an existing deployment, or makes one by binding fresh listeners.
    async fn load_or_bind(config: &DevConfig) -> Result<(DevLayout, BTreeMap<(Region, u64), TcpListener>), DevError> {
        let path = config.data_dir.join(LAYOUT_FILE);
        let layout_err = |reason: String| DevError::Layout { path: path.display().to_string(), reason };
        let layout = match std::fs::read_to_string(&path) {
            Ok(text) => Some(toml::from_str::<DevLayout>(&text).map_err(|e| layout_err(e.to_string()))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(layout_err(e.to_string())),
        };
        let mut listeners = BTreeMap::new();
        let mut regions = BTreeMap::new();
        let mut next_port = config.node_base_port;
        for region in Region::ALL {
            let mut nodes = BTreeMap::new();
            for node_id in 1..=config.nodes_per_region {
                let addr = match &layout {
                    Some(l) => l
                        .regions
                        .get(&region)
                        .and_then(|n| n.get(&node_id))
                        .cloned()
                        .ok_or_else(|| layout_err(format!("no address for {region} node {node_id}")))?,
                    None if next_port == 0 => "127.0.0.1:0".to_string(),
                    None => {
                        let a = format!("127.0.0.1:{next_port}");
                        next_port += 1;
                        a
                    }
                };
                let listener =
                    TcpListener::bind(&addr).await.map_err(|source| DevError::Bind { addr: addr.clone(), source })?;
                let bound = listener.local_addr().map_err(|source| DevError::Bind { addr: addr.clone(), source })?;
                nodes.insert(node_id, bound.to_string());
                listeners.insert((region, node_id), listener);
            }
            regions.insert(region, nodes);
        }
        let layout = DevLayout { regions };
        let text = toml::to_string(&layout).map_err(|e| layout_err(e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| layout_err(e.to_string()))?;
        Ok((layout, listeners))
    }
}

/// The data directory of one node.
pub fn node_data_dir(root: &Path, region: Region, node_id: u64) -> PathBuf {
    root.join(region.as_str()).join(format!("node-{node_id}"))
}

/// Starts every node and the router.
pub async fn start(config: DevConfig) -> Result<DevDeployment, DevError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| DevError::DataDir { dir: config.data_dir.display().to_string(), source })?;
    let router_listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| DevError::Bind { addr: config.listen.to_string(), source })?;
    let router_addr =
        router_listener.local_addr().map_err(|source| DevError::Bind { addr: config.listen.to_string(), source })?;
    let router_metrics = match config.metrics_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let router_metrics_addr = router_metrics.as_ref().map(|(_, addr)| *addr);
    let (layout, mut listeners) = DevLayout::load_or_bind(&config).await?;
    // Every process verifies tokens of the same key, generated once in the data dir.
    let auth = if config.allow_unauthenticated {
        None
    } else {
        Some(orgplane_auth::dev_key::ensure(&config.data_dir)?.config().clone())
    };

    let mut nodes = Vec::new();
    for (region, peers) in &layout.regions {
        for (node_id, addr) in peers {
            let listener = listeners.remove(&(*region, *node_id)).expect("a listener per node");
            let data_dir = node_data_dir(&config.data_dir, *region, *node_id);
            let mut node_config = NodeConfig::new(
                *region,
                *node_id,
                listener.local_addr().map_err(|source| DevError::Bind { addr: addr.clone(), source })?,
                data_dir.clone(),
                peers.clone(),
            );
            node_config.auth = auth.clone();
            node_config.allow_unauthenticated = config.allow_unauthenticated;
            nodes.push(spawn_node(node_config, listener, addr.clone()).await?);
        }
    }

    let mut router_config = orgplane_router::RouterConfig {
        listen: router_addr,
        auth: auth.clone(),
        allow_unauthenticated: config.allow_unauthenticated,
        ..Default::default()
    };
    router_config.regions =
        layout.regions.iter().map(|(r, peers)| (r.to_string(), peers.values().cloned().collect())).collect();
    let (router_stop, mut rx) = watch::channel(false);
    let router_task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let metrics_listener = router_metrics.map(|(listener, _)| listener);
        if let Err(e) = orgplane_router::run_with_http(router_config, router_listener, metrics_listener, shutdown).await
        {
            tracing::error!(error = %e, "router stopped with an error");
        }
    });
    Ok(DevDeployment {
        router_addr,
        router_metrics_addr,
        data_dir: config.data_dir,
        authenticated: auth.is_some(),
        nodes,
        router_stop,
        router_task,
    })
}

/// Binds `addr`, and tells which address it got (port 0 picks one).
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), DevError> {
    let bind_error = |source| DevError::Bind { addr: addr.to_string(), source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    Ok((listener, bound))
}

/// Starts one node on `listener` and serves it in a task until told to stop; also its metrics,
/// when `config.metrics_listen` is set (port 0 picks one: see [`DevNode::metrics_addr`]).
pub async fn spawn_node(config: NodeConfig, listener: TcpListener, addr: String) -> Result<DevNode, DevError> {
    let (region, node_id, data_dir) = (config.region, config.node_id, config.data_dir.clone());
    let metrics = match config.metrics_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let metrics_addr = metrics.as_ref().map(|(_, addr)| *addr);
    let mut node = Node::start(config).await.map_err(|source| DevError::Node { region, node_id, source })?;
    if let Some((metrics_listener, _)) = metrics {
        node = node.with_metrics_listener(metrics_listener);
    }
    let raft = node.raft().clone();
    let (stop, mut rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        if let Err(e) = node.serve(listener, shutdown).await {
            tracing::error!(%region, node_id, error = %e, "node stopped with an error");
        }
    });
    Ok(DevNode { region, node_id, addr, data_dir, metrics_addr, raft, stop, task })
}

impl DevNode {
    /// Stops the node and waits until it has released its data directory.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

impl DevDeployment {
    /// The node addresses of `region`.
    pub fn region_endpoints(&self, region: Region) -> Vec<String> {
        self.nodes.iter().filter(|n| n.region == region).map(|n| n.addr.clone()).collect()
    }

    /// Stops every node of `region` (the router keeps running and reports it unavailable).
    pub async fn stop_region(&mut self, region: Region) {
        let (stopping, keep): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.nodes).into_iter().partition(|n| n.region == region);
        self.nodes = keep;
        for node in stopping {
            node.stop().await;
        }
    }

    /// Prints what runs where, for a person at a terminal.
    pub fn describe(&self) -> String {
        let mut out = format!("orgplane dev: router on {} (data in {})\n", self.router_addr, self.data_dir.display());
        if let Some(metrics) = self.router_metrics_addr {
            out.push_str(&format!("  status page: http://{metrics}/\n"));
            out.push_str(&format!("  router metrics: http://{metrics}/metrics\n"));
        }
        for region in Region::ALL {
            let nodes: Vec<String> = self
                .nodes
                .iter()
                .filter(|n| n.region == region)
                .map(|n| format!("node {} on {} (data {})", n.node_id, n.addr, n.data_dir.display()))
                .collect();
            out.push_str(&format!("  region {region}: {}\n", nodes.join("; ")));
        }
        if self.authenticated {
            out.push_str(&format!(
                "  callers need a token: export ORGPLANE_TOKEN=$(orgplane dev-token --data-dir {} --user alice \
                 --platform-admin)\n",
                self.data_dir.display()
            ));
        } else {
            out.push_str("  NO AUTHENTICATION: every caller is an anonymous platform admin\n");
        }
        out.push_str(&format!("try: orgctl --endpoint {} org create --region eu --name Acme\n", self.router_addr));
        out
    }

    /// Stops the router, then every node.
    pub async fn shutdown(self) {
        let _ = self.router_stop.send(true);
        let _ = self.router_task.await;
        for node in self.nodes {
            node.stop().await;
        }
    }
}
