//! [`Node`]: opens the store, starts Raft, the group-commit proposer and the read indexer,
//! forms the cluster from the peer list on first start, and serves the gRPC services until
//! shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, SnapshotPolicy};
use orgplane_auth::{Authenticator, PeerGuard, PeerIdentity, PeerTls};
use orgplane_proto::raft_v1::raft_service_server::RaftServiceServer;
use orgplane_proto::v1::access_service_server::AccessServiceServer;
use orgplane_proto::v1::admin_service_server::AdminServiceServer;
use orgplane_proto::v1::app_service_server::AppServiceServer;
use orgplane_proto::v1::cluster_service_server::ClusterServiceServer;
use orgplane_proto::v1::move_service_server::MoveServiceServer;
use orgplane_proto::v1::org_service_server::OrgServiceServer;
pub use orgplane_raft::Raft;
use orgplane_raft::{PeerHandler, PeerNetwork, PeerTransport, Proposer, ProposerConfig, ReadIndexer};
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tracing::Instrument;

use crate::access_service::AccessServiceImpl;
use crate::admin_service::AdminServiceImpl;
use crate::app_service::AppServiceImpl;
use crate::cluster_service::ClusterServiceImpl;
use crate::config::{ConfigError, NodeConfig};
use crate::gate::{PeerGate, PublicGate};
use crate::metrics::NodeMetrics;
use crate::move_service::MoveServiceImpl;
use crate::org_service::{NodeCore, OrgServiceImpl};
use crate::peer_service::PeerService;
use crate::transport::GrpcTransport;

/// The largest peer message: Raft batches and snapshot chunks, JSON-encoded. Larger than the
/// client limit because one append carries many client writes.
pub const PEER_MESSAGE_MAX_BYTES: usize = 64 * 1024 * 1024;

/// How long calls in flight get to finish once shutdown begins.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// A node failed to start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot create the data dir {dir}: {source}")]
    DataDir { dir: String, source: std::io::Error },
    #[error("cannot open the store in {dir}: {source}")]
    Store { dir: String, source: orgplane_store_sled::StoreError },
    #[error("raft failed to start: {0}")]
    Raft(String),
    #[error("metrics: {0}")]
    Metrics(#[from] orgplane_telemetry::metrics::MetricsError),
    #[error("authentication: {0}")]
    Auth(#[from] orgplane_auth::SetupError),
    #[error("tls: the certificate names {found}, but this is node {node} of region {region}")]
    WrongCertificate { found: PeerIdentity, region: orgplane_model::Region, node: u64 },
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// A started node, not yet serving.
pub struct Node {
    config: NodeConfig,
    core: Arc<NodeCore>,
    metrics: NodeMetrics,
    /// Who is calling, for the public services.
    authenticator: Authenticator,
    /// This node's certificate and the CA, when mutual TLS is configured.
    tls: Option<PeerTls>,
    /// Where `GET /metrics` is served, if anywhere (`metrics-listen`; bound by the caller).
    metrics_listener: Option<TcpListener>,
}

impl Node {
    /// Opens the store and starts Raft. On a fresh data dir, proposes the initial membership
    /// from `config.peers` (every node of a new region does; Raft settles on one).
    pub async fn start(config: NodeConfig) -> Result<Node, StartError> {
        config.validate()?;
        let span = tracing::info_span!("node", region = %config.region, node = config.node_id);
        Self::start_inner(config).instrument(span).await
    }

    async fn start_inner(config: NodeConfig) -> Result<Node, StartError> {
        let authenticator = authenticator(&config)?;
        let tls = peer_tls(&config)?;
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir)
            .map_err(|source| StartError::DataDir { dir: dir.display().to_string(), source })?;
        let metrics = NodeMetrics::new(config.region, config.node_id)?;
        if !config.join {
            // A data dir restored without a membership (`orgplane restore` with no --peers)
            // gets this node's --peers as its new cluster's voters, on this first start.
            let finished = orgplane_store_sled::finish_restore(&dir, &config.peers)
                .map_err(|source| StartError::Store { dir: dir.display().to_string(), source })?;
            if let Some(log_id) = finished {
                tracing::info!(restored_index = log_id.index, peers = ?config.peers, "restore completed: new cluster");
            }
        }
        let (log_store, mut sm_store) = orgplane_store_sled::open(&dir)
            .map_err(|source| StartError::Store { dir: dir.display().to_string(), source })?;
        sm_store.observe_snapshots(metrics.snapshot_observer());
        let state = sm_store.state_reader();

        let raft_config = raft_config(&config)?;
        let transport: Arc<dyn PeerTransport> = GrpcTransport::new(
            config.region,
            config.node_id,
            PEER_MESSAGE_MAX_BYTES,
            tls.as_ref().map(PeerTls::client_config),
        );
        let network = PeerNetwork::new(transport.clone());
        let raft = Raft::new(config.node_id, raft_config, network, log_store, sm_store)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if !config.join {
            form_cluster_if_new(&raft, &config.peers).await?;
        }

        metrics.watch_raft(&raft, config.node_id, state.clone());

        let proposer_config = ProposerConfig {
            propose_timeout: config.write_timeout(),
            batch_observer: Some(metrics.batch_observer()),
            ..ProposerConfig::default()
        };
        let proposer = Proposer::spawn(config.node_id, raft.clone(), transport.clone(), proposer_config);
        let reader = ReadIndexer::spawn(config.node_id, raft.clone(), transport, config.read_timeout());
        let core = Arc::new(NodeCore { region: config.region, node_id: config.node_id, raft, proposer, reader, state });
        tracing::info!(listen = %config.listen, data_dir = %config.data_dir.display(), mtls = tls.is_some(), "node started");
        Ok(Node { config, core, metrics, authenticator, tls, metrics_listener: None })
    }

    /// Serves `GET /metrics` on `listener` too, from [`Node::serve`] until the node stops.
    pub fn with_metrics_listener(mut self, listener: TcpListener) -> Node {
        self.metrics_listener = Some(listener);
        self
    }

    /// The node's metrics, for tests and embedding.
    pub fn metrics(&self) -> &NodeMetrics {
        &self.metrics
    }

    /// The Raft handle, for tests and embedding.
    pub fn raft(&self) -> &Raft {
        &self.core.raft
    }

    /// Serves on `listener` until `shutdown` resolves, then stops Raft.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let span = tracing::info_span!("node", region = %self.config.region, node = self.config.node_id);
        self.serve_inner(listener, shutdown).instrument(span).await
    }

    async fn serve_inner(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let max = self.config.max_message_bytes;
        let core = self.core;
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        tokio::spawn(report_health(core.raft.clone(), health_reporter));
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(orgplane_proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| StartError::Raft(format!("reflection: {e}")))?;

        // With mutual TLS, the public services (Org, Access, App, Admin) admit routers and the allowed clients by
        // certificate, then authenticate the caller's token; cluster status (no org data) needs
        // only the certificate; the Raft service admits this region's nodes only. Health and
        // reflection stay open to probes without certificates. Without TLS (loopback, tests) only
        // the token is checked, and the Raft service relies on the network.
        let (public_peers, raft_peers) = match &self.tls {
            Some(tls) => (
                PeerGate::new(Some(PeerGuard::routers_and_clients(tls.allowed_clients().iter().cloned()))),
                PeerGate::new(Some(PeerGuard::nodes_of(core.region))),
            ),
            None => (PeerGate::new(None), PeerGate::new(None)),
        };
        let public = PublicGate::new(public_peers.clone(), self.authenticator.clone());
        let org = OrgServiceServer::new(OrgServiceImpl::new(core.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let org = InterceptedService::new(org, public.clone());
        let access = AccessServiceServer::new(AccessServiceImpl::new(core.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let access = InterceptedService::new(access, public.clone());
        let apps = AppServiceServer::new(AppServiceImpl::new(core.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let apps = InterceptedService::new(apps, public.clone());
        let cluster = ClusterServiceServer::new(ClusterServiceImpl::new(core.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let cluster = InterceptedService::new(cluster, public_peers);
        let admin = AdminServiceServer::new(AdminServiceImpl::new(core.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let admin = InterceptedService::new(admin, public.clone());
        let moves = MoveServiceServer::new(MoveServiceImpl::new(core.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let moves = InterceptedService::new(moves, public);
        let handler = PeerHandler::new(core.raft.clone()).with_proposer(core.proposer.clone());
        let peer = RaftServiceServer::new(PeerService::new(core.region, core.node_id, handler))
            .max_decoding_message_size(PEER_MESSAGE_MAX_BYTES)
            .max_encoding_message_size(PEER_MESSAGE_MAX_BYTES);
        let peer = InterceptedService::new(peer, raft_peers);
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = &self.tls {
            server = server.tls_config(tls.server_config())?;
        }

        // Started last, so no early return above leaves it running.
        let metrics_server = self.metrics_listener.map(|listener| {
            let app = orgplane_telemetry::http::metrics_routes(self.metrics.registry().clone());
            orgplane_telemetry::http::HttpServer::spawn(listener, app)
        });
        let (began, shutdown_began) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            shutdown.await;
            let _ = began.send(());
        };
        let serve = server
            // Counts every call and its latency by service, method and code (`/metrics`).
            .layer(self.metrics.rpc_layer())
            // Every public call in an `rpc` span with region and node, in the caller's trace
            // (the router's `traceparent`), answered with `traceresponse`. Not the Raft service.
            .layer(orgplane_telemetry::trace::RpcTraceLayer::node(core.region.as_str(), core.node_id))
            // The org epoch the router believes, for `epoch::check`.
            .layer(orgplane_telemetry::scope::HeaderScopeLayer::new(crate::epoch::BelievedEpochScope))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(org)
            .add_service(access)
            .add_service(apps)
            .add_service(cluster)
            .add_service(admin)
            .add_service(moves)
            .add_service(peer)
            // TCP_NODELAY on accepted connections: `Server::tcp_nodelay` does not apply to an incoming
            // stream we pass in, and Nagle's algorithm puts ~40 ms on small Raft and client replies.
            .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown);
        // Graceful shutdown waits for every open connection (peers keep theirs open); calls in
        // flight get a grace period, then the connections are dropped.
        let result = tokio::select! {
            served = serve => served,
            _ = async {
                if shutdown_began.await.is_ok() {
                    tokio::time::sleep(SHUTDOWN_GRACE).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => {
                tracing::info!(grace = ?SHUTDOWN_GRACE, "closing connections still open after the grace period");
                Ok(())
            }
        };
        tracing::info!("node stopping");
        if let Err(e) = core.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not shut down cleanly");
        }
        if let Some(server) = metrics_server {
            server.stop().await;
        }
        result.map_err(StartError::from)
    }
}

/// Starts a node and serves until `shutdown` (mini-redis shape: the binary parses, validates,
/// binds and calls this). `metrics_listener` is the bound `metrics-listen`, if set.
pub async fn run(
    config: NodeConfig,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let mut node = Node::start(config).await?;
    if let Some(metrics_listener) = metrics_listener {
        node = node.with_metrics_listener(metrics_listener);
    }
    node.serve(listener, shutdown).await
}

fn raft_config(config: &NodeConfig) -> Result<Arc<openraft::Config>, StartError> {
    let raft_config = openraft::Config {
        cluster_name: format!("orgplane-{}", config.region),
        heartbeat_interval: config.heartbeat_ms,
        election_timeout_min: config.election_timeout_min_ms,
        election_timeout_max: config.election_timeout_max_ms,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every_entries),
        max_in_snapshot_log_to_keep: config.log_entries_kept_after_snapshot,
        // A chunk travels as JSON (bytes as numbers, up to 4x larger): 1 MiB chunks stay far
        // below the peer message limit.
        snapshot_max_chunk_size: 1024 * 1024,
        install_snapshot_timeout: 5_000,
        // 32 entries of at most 512 commands each stay below the peer message limit.
        max_payload_entries: 32,
        ..Default::default()
    };
    raft_config.validate().map(Arc::new).map_err(|e| StartError::Raft(e.to_string()))
}

async fn form_cluster_if_new(raft: &Raft, peers: &BTreeMap<u64, String>) -> Result<(), StartError> {
    let initialized = raft.is_initialized().await.map_err(|e| StartError::Raft(e.to_string()))?;
    if initialized {
        return Ok(());
    }
    let members: BTreeMap<u64, BasicNode> = peers.iter().map(|(id, addr)| (*id, BasicNode::new(addr))).collect();
    match raft.initialize(members).await {
        Ok(()) => Ok(()),
        // Another node's initial membership reached us first: the cluster is forming.
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(StartError::Raft(e.to_string())),
    }
}

/// The node's authenticator, from `[auth]` or `allow-unauthenticated` (exactly one of them).
fn authenticator(config: &NodeConfig) -> Result<Authenticator, StartError> {
    Ok(Authenticator::from_settings(config.auth.as_ref(), config.allow_unauthenticated)?)
}

/// The node's TLS material, if `[tls]` is configured, after checking that its certificate is
/// this node's: a certificate of another node or region would let it impersonate that one.
fn peer_tls(config: &NodeConfig) -> Result<Option<PeerTls>, StartError> {
    let Some(tls) = &config.tls else { return Ok(None) };
    let loaded = tls.load()?;
    let expected = PeerIdentity::Node { region: config.region, node: config.node_id };
    if *loaded.identity() != expected {
        return Err(StartError::WrongCertificate {
            found: loaded.identity().clone(),
            region: config.region,
            node: config.node_id,
        });
    }
    Ok(Some(loaded))
}

/// Keeps gRPC health in step with Raft: SERVING while the node knows a leader.
async fn report_health(raft: Raft, reporter: tonic_health::server::HealthReporter) {
    let mut metrics = raft.metrics();
    let mut last = None;
    loop {
        let serving = metrics.borrow_and_update().current_leader.is_some();
        if last != Some(serving) {
            let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
            for service in ["", "orgplane.v1.OrgService", "orgplane.v1.ClusterService"] {
                reporter.set_service_status(service, status).await;
            }
            last = Some(serving);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
