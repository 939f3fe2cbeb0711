//! What the benchmark talks to: an external deployment given by its endpoints, or one started in
//! this process in a temporary directory on 127.0.0.1 ports the OS picks: a single 3-node region
//! (via `orgplane_node`) or the full dev deployment (via `orgplane::dev`). Embedded deployments
//! are stopped, and their directories removed, by [`Target::shutdown`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use orgplane::dev::{DevConfig, DevDeployment};
use orgplane_model::Region;
use orgplane_node::{Node, NodeConfig};
use orgplane_proto::v1::cluster_service_client::ClusterServiceClient;
use orgplane_proto::v1::{GetClusterStatusRequest, GetClusterStatusResponse};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::runner::connect_one;
use crate::workload::code_name;

/// Nodes of an embedded region.
const EMBEDDED_NODES: u64 = 3;

/// The client name of the bench's certificate, admitted by an mTLS region's nodes.
const BENCH_CLIENT: &str = "bench";

/// How long an external deployment may take to answer its first status request.
const EXTERNAL_PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an embedded node may take to stop before it is left behind.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A deployment to benchmark.
pub struct Target {
    /// How reports name it.
    pub label: String,
    /// Where clients go unless a mode says otherwise (the router for the dev deployment).
    pub endpoints: Vec<String>,
    /// The regions whose orgs can be created through `endpoints`.
    pub regions: Vec<Region>,
    /// The node endpoints of each region, where known (embedded deployments).
    pub region_endpoints: BTreeMap<Region, Vec<String>>,
    running: Running,
}

enum Running {
    External,
    Region { nodes: Vec<EmbeddedNode>, dir: TempDir },
    Dev { deployment: DevDeployment, dir: TempDir },
}

struct EmbeddedNode {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Target {
    /// An external deployment. Asks the first endpoint for its cluster status (retrying until
    /// `deadline` while it is unreachable) to learn which regions it serves: one for a region
    /// node, every configured one for a router.
    pub async fn external(
        endpoints: Vec<String>,
        request_timeout: Duration,
        deadline: Instant,
    ) -> anyhow::Result<Target> {
        let first = endpoints.first().context("no endpoint given")?.clone();
        let probe_deadline = deadline.min(Instant::now() + EXTERNAL_PROBE_TIMEOUT);
        let status = status_until(&first, request_timeout, probe_deadline, |_| true).await?;
        let mut regions: Vec<Region> = status.regions.iter().filter_map(|r| r.region.parse().ok()).collect();
        regions.sort();
        regions.dedup();
        if regions.is_empty() {
            bail!("{first} reports no region it serves");
        }
        let label = format!("endpoints ({})", endpoints.join(","));
        Ok(Target { label, endpoints, regions, region_endpoints: BTreeMap::new(), running: Running::External })
    }

    /// A 3-node region started in this process; clients are spread over its nodes.
    pub async fn embedded_region(region: Region) -> anyhow::Result<Target> {
        Target::embedded_region_with(region, false).await
    }

    /// [`Target::embedded_region`], with `mtls`: its nodes speak mutual TLS with each other and
    /// with the bench's clients (a dev PKI in the temporary directory; the clients' certificate
    /// is an allowed client's), and its endpoints are `https://`.
    pub async fn embedded_region_with(region: Region, mtls: bool) -> anyhow::Result<Target> {
        let dir = tempfile::Builder::new().prefix("orgplane-bench-").tempdir().context("cannot create a temp dir")?;
        let pki = dir.path().join("pki");
        if mtls {
            orgplane_auth::dev_pki::generate(&pki, &[region], EMBEDDED_NODES, &[]).context("dev PKI")?;
            let client = orgplane_auth::dev_pki::issue_client(&pki, BENCH_CLIENT).context("client certificate")?;
            let read = |path: &std::path::Path| std::fs::read(path).with_context(|| format!("{}", path.display()));
            let ca = read(&orgplane_auth::dev_pki::ca_paths(&pki).cert)?;
            let identity = Identity::from_pem(read(&client.paths.cert)?, read(&client.paths.key)?);
            crate::runner::set_client_tls(
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).identity(identity),
            );
        }
        let mut listeners = Vec::new();
        let mut peers = BTreeMap::new();
        for node_id in 1..=EMBEDDED_NODES {
            let listener = TcpListener::bind("127.0.0.1:0").await.context("cannot bind a loopback port")?;
            peers.insert(node_id, listener.local_addr()?.to_string());
            listeners.push((node_id, listener));
        }
        let mut nodes = Vec::new();
        for (node_id, listener) in listeners {
            let mut config = NodeConfig::new(
                region,
                node_id,
                listener.local_addr()?,
                dir.path().join(format!("node-{node_id}")),
                peers.clone(),
            );
            // Embedded deployments measure the data path, without authentication.
            config.allow_unauthenticated = true;
            if mtls {
                let paths = orgplane_auth::dev_pki::node_paths(&pki, region, node_id);
                config.tls = Some(orgplane_auth::TlsConfig {
                    ca_file: orgplane_auth::dev_pki::ca_paths(&pki).cert,
                    cert_file: paths.cert,
                    key_file: paths.key,
                    allowed_clients: vec![BENCH_CLIENT.to_string()],
                });
            }
            let node = Node::start(config).await.with_context(|| format!("node {node_id} did not start"))?;
            let (stop, mut stopped) = watch::channel(false);
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            let task = tokio::spawn(async move {
                if let Err(e) = node.serve(listener, shutdown).await {
                    tracing::error!(node_id, error = %e, "embedded node stopped with an error");
                }
            });
            nodes.push(EmbeddedNode { stop, task });
        }
        let scheme = if mtls { "https://" } else { "" };
        let endpoints: Vec<String> = peers.into_values().map(|addr| format!("{scheme}{addr}")).collect();
        Ok(Target {
            label: format!("embedded-region {region} ({EMBEDDED_NODES} nodes{})", if mtls { ", mTLS" } else { "" }),
            endpoints: endpoints.clone(),
            regions: vec![region],
            region_endpoints: BTreeMap::from([(region, endpoints)]),
            running: Running::Region { nodes, dir },
        })
    }

    /// The dev deployment (every region, 3 nodes each, and a router) started in this process;
    /// clients go through the router.
    pub async fn embedded_dev() -> anyhow::Result<Target> {
        let dir =
            tempfile::Builder::new().prefix("orgplane-bench-dev-").tempdir().context("cannot create a temp dir")?;
        let config = DevConfig {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().expect("a valid address"),
            node_base_port: 0,
            nodes_per_region: EMBEDDED_NODES,
            // The benchmark measures the router without anyone scraping it.
            metrics_listen: None,
            // Embedded deployments measure the data path; they run without authentication
            // (every caller an anonymous platform admin), so no token is needed.
            allow_unauthenticated: true,
        };
        let deployment = orgplane::dev::start(config).await.context("the dev deployment did not start")?;
        let region_endpoints: BTreeMap<Region, Vec<String>> =
            Region::ALL.into_iter().map(|r| (r, deployment.region_endpoints(r))).collect();
        Ok(Target {
            label: "embedded-dev (router)".to_string(),
            endpoints: vec![deployment.router_addr.to_string()],
            regions: Region::ALL.to_vec(),
            region_endpoints,
            running: Running::Dev { deployment, dir },
        })
    }

    /// Waits until every known region node sees a leader (for an external target, whose nodes
    /// are not known, setup's retries do the waiting).
    pub async fn wait_ready(&self, request_timeout: Duration, deadline: Instant) -> anyhow::Result<()> {
        for endpoint in self.region_endpoints.values().flatten() {
            status_until(endpoint, request_timeout, deadline, |s| s.regions.iter().all(|r| r.leader_id != 0)).await?;
        }
        Ok(())
    }

    /// Of `endpoints`, the ones that are their region's current leader. Fails if an endpoint is
    /// not a single region node (a router cannot be targeted this way) or no leader is found.
    pub async fn leaders(
        endpoints: &[String],
        request_timeout: Duration,
        deadline: Instant,
    ) -> anyhow::Result<Vec<String>> {
        let mut leaders = Vec::new();
        for endpoint in endpoints {
            let status =
                status_until(endpoint, request_timeout, deadline, |s| s.regions.iter().all(|r| r.leader_id != 0))
                    .await?;
            match status.regions.as_slice() {
                [region] if region.nodes.len() == 1 => {
                    if region.nodes[0].role == "leader" {
                        leaders.push(endpoint.clone());
                    }
                }
                _ => bail!(
                    "--target-leader needs region node endpoints; {endpoint} answered for several nodes (a router?)"
                ),
            }
        }
        if leaders.is_empty() {
            bail!("none of {} is a leader", endpoints.join(","));
        }
        Ok(leaders)
    }

    /// Stops what this process started and removes its data.
    pub async fn shutdown(self) {
        match self.running {
            Running::External => {}
            Running::Region { nodes, dir } => {
                for node in &nodes {
                    let _ = node.stop.send(true);
                }
                for node in nodes {
                    if tokio::time::timeout(STOP_TIMEOUT, node.task).await.is_err() {
                        tracing::warn!("an embedded node did not stop within {STOP_TIMEOUT:?}");
                    }
                }
                drop(dir);
            }
            Running::Dev { deployment, dir } => {
                if tokio::time::timeout(3 * STOP_TIMEOUT, deployment.shutdown()).await.is_err() {
                    tracing::warn!("the dev deployment did not stop within {:?}", 3 * STOP_TIMEOUT);
                }
                drop(dir);
            }
        }
    }
}

/// Asks `endpoint` for its cluster status until `ready` holds or `deadline` passes.
async fn status_until(
    endpoint: &str,
    request_timeout: Duration,
    deadline: Instant,
    ready: impl Fn(&GetClusterStatusResponse) -> bool,
) -> anyhow::Result<GetClusterStatusResponse> {
    let mut last_error = String::from("no answer yet");
    let mut attempts = 0u32;
    while Instant::now() < deadline {
        match connect_one(endpoint, request_timeout).await {
            Ok(channel) => {
                match ClusterServiceClient::new(channel).get_cluster_status(GetClusterStatusRequest {}).await {
                    Ok(response) if ready(response.get_ref()) => return Ok(response.into_inner()),
                    Ok(_) => last_error = "no leader yet".to_string(),
                    Err(status) => last_error = format!("{} {}", code_name(status.code()), status.message()),
                }
            }
            Err(e) => last_error = format!("{e:#}"),
        }
        attempts += 1;
        // Say once, after a few seconds, what is being waited for.
        if attempts == 30 {
            eprintln!("waiting for {endpoint}: {last_error}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{endpoint} was not ready in time: {last_error}")
}
