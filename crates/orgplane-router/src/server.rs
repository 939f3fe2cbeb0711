//! Putting the router together: [`RouterApi`] (the `OrgService` and `ClusterService`
//! implementation), [`router_services`] to embed it, and [`run`] / [`run_with_http`] to serve
//! it with gRPC health and reflection (and, on a second port, metrics) until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use orgplane_auth::{Authenticator, PeerTls};
use orgplane_proto::v1::access_service_server::AccessServiceServer;
use orgplane_proto::v1::admin_service_server::AdminServiceServer;
use orgplane_proto::v1::app_service_server::AppServiceServer;
use orgplane_proto::v1::cluster_service_server::ClusterServiceServer;
use orgplane_proto::v1::move_service_server::MoveServiceServer;
use orgplane_proto::v1::org_service_server::OrgServiceServer;
use orgplane_telemetry::metrics::{MetricsError, MetricsRegistry, RpcCatalog, RpcMetricsLayer};
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::config::{RouterConfig, MAX_MESSAGE_BYTES};
use crate::credentials::CallerCredentials;
use crate::error::RouterError;
use crate::metrics::RouterMetrics;
use crate::placement::Placements;
use crate::rate_limit::{CallerGate, RateLimiter};
use crate::region::RegionTable;
use crate::stack::StackSettings;

/// The router's state: the region table and the timeouts. Built once; shared by every call.
#[derive(Debug)]
pub(crate) struct RouterState {
    pub(crate) table: RegionTable,
    pub(crate) request_timeout: Duration,
    pub(crate) fanout_timeout: Duration,
    pub(crate) status_timeout: Duration,
    /// Per-region outcomes and fan-out partial answers.
    pub(crate) metrics: RouterMetrics,
    /// Where moved orgs live now, from forwarding answers.
    pub(crate) placements: Placements,
    /// The org moves this router drives.
    pub(crate) moves: crate::mover::Movers,
}

/// The router's implementation of `OrgService` and `ClusterService`. Cheap to clone; clones
/// share the per-node channels, concurrency limits and leader hints.
#[derive(Debug, Clone)]
pub struct RouterApi {
    pub(crate) state: Arc<RouterState>,
}

impl RouterApi {
    /// Validates `config` and builds a client per configured node. Connects to nothing yet
    /// (channels connect on first use), so it succeeds while nodes are down. Must be called
    /// within a Tokio runtime. Its per-region series count but are not exported; see
    /// [`RouterApi::with_metrics`].
    pub fn new(config: &RouterConfig) -> Result<RouterApi, RouterError> {
        RouterApi::build(config, RouterMetrics::unregistered(), router_tls(config)?.as_ref())
    }

    /// [`RouterApi::new`], with the per-region series (`orgplane_router_*`) in `registry`.
    /// Once per registry.
    pub fn with_metrics(config: &RouterConfig, registry: &MetricsRegistry) -> Result<RouterApi, RouterError> {
        RouterApi::build(config, RouterMetrics::register(registry), router_tls(config)?.as_ref())
    }

    /// `tls`: the router's checked TLS material (`[tls]`), read once by the caller.
    fn build(config: &RouterConfig, metrics: RouterMetrics, tls: Option<&PeerTls>) -> Result<RouterApi, RouterError> {
        let regions = config.validate()?;
        let settings = StackSettings {
            request_timeout: config.request_timeout(),
            connect_timeout: config.connect_timeout(),
            max_concurrent_requests: config.max_concurrent_requests_per_node,
            tls: tls.map(PeerTls::client_config),
        };
        let state = RouterState {
            table: RegionTable::new(&regions, &settings, &metrics)?,
            request_timeout: config.request_timeout(),
            fanout_timeout: config.fanout_timeout(),
            status_timeout: config.status_timeout(),
            metrics,
            placements: Placements::default(),
            moves: crate::mover::Movers::default(),
        };
        Ok(RouterApi { state: Arc::new(state) })
    }
}

/// The router's two public gRPC services, ready to add to a tonic server, with the message
/// size limits set.
#[derive(Debug, Clone)]
pub struct RouterServices {
    pub org: OrgServiceServer<RouterApi>,
    pub cluster: ClusterServiceServer<RouterApi>,
    pub admin: AdminServiceServer<RouterApi>,
    pub access: AccessServiceServer<RouterApi>,
    pub apps: AppServiceServer<RouterApi>,
    pub moves: MoveServiceServer<RouterApi>,
}

/// Builds the router's services from `config`, for embedding them in another server; [`run`]
/// is the whole router. Must be called within a Tokio runtime.
pub fn router_services(config: &RouterConfig) -> Result<RouterServices, RouterError> {
    Ok(RouterServices::of(RouterApi::new(config)?))
}

impl RouterServices {
    fn of(api: RouterApi) -> RouterServices {
        RouterServices {
            org: OrgServiceServer::new(api.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            admin: AdminServiceServer::new(api.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            access: AccessServiceServer::new(api.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            apps: AppServiceServer::new(api.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            moves: MoveServiceServer::new(api.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            cluster: ClusterServiceServer::new(api)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        }
    }
}

/// Every RPC the router serves, for the bounded `service` and `method` labels of its RPC
/// series: the public services, gRPC health and reflection (v1 and v1alpha).
pub fn router_rpc_catalog() -> Result<RpcCatalog, MetricsError> {
    RpcCatalog::from_descriptor_sets(&[
        orgplane_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ])
}

/// The router's authenticator, from `[auth]` or `allow-unauthenticated` (exactly one of them).
/// The router's TLS material, if `[tls]` is configured, after checking that its certificate is
/// a router's (nodes admit routers by that identity).
pub(crate) fn router_tls(config: &RouterConfig) -> Result<Option<PeerTls>, RouterError> {
    let Some(tls) = &config.tls else { return Ok(None) };
    let loaded = tls.load()?;
    if !loaded.identity().is_router() {
        return Err(RouterError::NotARouterCertificate { found: loaded.identity().clone() });
    }
    Ok(Some(loaded))
}

fn authenticator(config: &RouterConfig) -> Result<Authenticator, RouterError> {
    Ok(Authenticator::from_settings(config.auth.as_ref(), config.allow_unauthenticated)?)
}

/// How long calls in flight get to finish once shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves the router on `listener` until `shutdown` completes, then stops accepting, reports
/// NOT_SERVING on the health service, and lets calls in flight finish. Besides `OrgService`
/// and `ClusterService` it serves gRPC health (SERVING for `""` and for each service) and
/// server reflection (v1 and v1alpha). `config.listen` is not used: the caller bound the
/// listener (tests bind `127.0.0.1:0`).
pub async fn run(
    config: RouterConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RouterError> {
    run_with_http(config, listener, None, shutdown).await
}

/// [`run`], and when `http_listener` is given (the bound `metrics-listen`), the HTTP app of
/// [`crate::http::http_app`] on it (`GET /metrics`, the status page) until the router stops.
pub async fn run_with_http(
    config: RouterConfig,
    listener: TcpListener,
    http_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RouterError> {
    let limiter = (config.rate_limit_per_second > 0)
        .then(|| RateLimiter::new(config.rate_limit_per_second, config.rate_limit_burst));
    let gate = CallerGate::new(authenticator(&config)?, limiter);
    let registry = MetricsRegistry::for_router();
    let rpc_metrics = RpcMetricsLayer::new(&registry, router_rpc_catalog()?);
    // Read and checked once: the client side for the nodes, the server side for the clients.
    let tls = router_tls(&config)?;
    let api = RouterApi::build(&config, RouterMetrics::register(&registry), tls.as_ref())?;
    let services = RouterServices::of(api.clone());

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<OrgServiceServer<RouterApi>>().await;
    health.set_serving::<ClusterServiceServer<RouterApi>>().await;
    health.set_serving::<AccessServiceServer<RouterApi>>().await;
    health.set_serving::<AppServiceServer<RouterApi>>().await;
    health.set_serving::<MoveServiceServer<RouterApi>>().await;

    let reflection_names = [
        "orgplane.v1.OrgService",
        "orgplane.v1.AccessService",
        "orgplane.v1.AppService",
        "orgplane.v1.ClusterService",
        "orgplane.v1.MoveService",
        "grpc.health.v1.Health",
    ];
    let mut reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(orgplane_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("grpc.reflection.v1.ServerReflection");
    let mut reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(orgplane_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("grpc.reflection.v1alpha.ServerReflection");
    for name in reflection_names {
        reflection_v1 = reflection_v1.with_service_name(name);
        reflection_v1alpha = reflection_v1alpha.with_service_name(name);
    }

    let (reflection_v1, reflection_v1alpha) = (reflection_v1.build_v1()?, reflection_v1alpha.build_v1alpha()?);
    // Started once nothing above can fail, so no early return leaves it running.
    let http = http_listener
        .map(|listener| orgplane_telemetry::http::HttpServer::spawn(listener, crate::http::http_app(api, registry)));

    let local_addr = listener.local_addr().ok();
    tracing::info!(addr = ?local_addr, regions = ?config.regions.keys().collect::<Vec<_>>(), "router serving");
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut server = Server::builder();
    if let Some(tls) = &tls {
        server = server.tls_config(tls.server_config())?;
    }
    let (began, shutdown_began) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!("router shutting down");
        let _ = began.send(());
        health.set_service_status("", ServingStatus::NotServing).await;
        health.set_not_serving::<OrgServiceServer<RouterApi>>().await;
        health.set_not_serving::<ClusterServiceServer<RouterApi>>().await;
        health.set_not_serving::<AccessServiceServer<RouterApi>>().await;
        health.set_not_serving::<AppServiceServer<RouterApi>>().await;
        health.set_not_serving::<MoveServiceServer<RouterApi>>().await;
    };
    let serve = server
        // Counts every call and its latency by service, method and code (`/metrics`).
        .layer(rpc_metrics)
        // Every public call in a span of its trace (the caller's or a new one), answered with
        // `traceresponse`; the per-node stack passes the trace on to the node.
        .layer(orgplane_telemetry::trace::RpcTraceLayer::router())
        // The caller's `authorization` header, for the calls to nodes made while serving it.
        .layer(orgplane_telemetry::scope::HeaderScopeLayer::new(CallerCredentials))
        // Notice clients that vanished without closing their connection.
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        // Every public call authenticated, then counted against its caller's rate limit,
        // before anything is forwarded; not health nor reflection.
        .add_service(InterceptedService::new(services.org, gate.clone()))
        .add_service(InterceptedService::new(services.cluster, gate.clone()))
        .add_service(InterceptedService::new(services.access, gate.clone()))
        .add_service(InterceptedService::new(services.apps, gate.clone()))
        .add_service(InterceptedService::new(services.moves, gate.clone()))
        .add_service(InterceptedService::new(services.admin, gate))
        .serve_with_incoming_shutdown(incoming, signal);
    // Graceful shutdown waits for every open connection; an idle client must not keep the
    // router up, so calls get a grace period and then their connections are dropped.
    tokio::select! {
        served = serve => served?,
        _ = async {
            if shutdown_began.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => tracing::warn!(grace = ?SHUTDOWN_GRACE, "connections still open after the grace period; closing them"),
    }
    if let Some(http) = http {
        http.stop().await;
    }
    tracing::info!("router stopped");
    Ok(())
}
