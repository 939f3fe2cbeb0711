//! The plain-HTTP side of a node or router (`--metrics-listen`): `GET /metrics` for Prometheus,
//! and whatever else the process merges into the same [`axum::Router`] (the router's status
//! page). Kept off the gRPC port so a scraper or a browser never competes with client calls,
//! and so the port can be exposed to the monitoring network only.

use std::future::{Future, IntoFuture};
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::{MetricsRegistry, OPENMETRICS_CONTENT_TYPE};

/// How long requests in flight get once shutdown begins; after it the connections are dropped,
/// so a scraper holding a connection open cannot keep a stopping process up.
pub const HTTP_SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// `GET /metrics`: every series of `registry`, as OpenMetrics text. Merge more routes into the
/// result with [`axum::Router::merge`].
pub fn metrics_routes(registry: MetricsRegistry) -> axum::Router {
    axum::Router::new().route("/metrics", get(scrape)).with_state(registry)
}

async fn scrape(State(registry): State<MetricsRegistry>) -> impl IntoResponse {
    ([(CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], registry.scrape().await)
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets requests in flight finish
/// for at most [`HTTP_SHUTDOWN_GRACE`]. The caller binds the listener (port 0 in tests).
pub async fn serve_http(
    listener: TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (began, shutdown_began) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = began.send(());
    };
    let serve = axum::serve(listener, app).with_graceful_shutdown(signal).into_future();
    tokio::select! {
        served = serve => served,
        _ = async {
            match shutdown_began.await {
                Ok(()) => tokio::time::sleep(HTTP_SHUTDOWN_GRACE).await,
                Err(_) => std::future::pending::<()>().await,
            }
        } => Ok(()),
    }
}

/// The HTTP endpoint of a serving node or router, run in a task until [`HttpServer::stop`].
pub struct HttpServer {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl HttpServer {
    /// Serves `app` on `listener` in a task, in the caller's span.
    pub fn spawn(listener: TcpListener, app: axum::Router) -> HttpServer {
        use tracing::Instrument;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tracing::info!(metrics_listen = ?listener.local_addr().ok(), "serving metrics");
        let serve = serve_http(listener, app, async move {
            let _ = stopped.await;
        });
        HttpServer { stop, task: tokio::spawn(serve.in_current_span()) }
    }

    /// Stops the endpoint and waits for it, so nothing it holds (a node's store handle among
    /// them) outlives the process's other parts.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "the metrics endpoint failed"),
            Err(e) => tracing::warn!(error = %e, "the metrics endpoint task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn serves_metrics_and_stops_on_shutdown() {
        let registry = MetricsRegistry::for_router();
        let counter: Counter = Counter::default();
        registry.register("pings", "Pings", counter.clone());
        counter.inc();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_http(listener, metrics_routes(registry), async {
            let _ = stopped.await;
        }));

        let answer = get(addr, "/metrics").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("content-type: application/openmetrics-text"), "{answer}");
        assert!(answer.contains(r#"orgplane_pings_total{role="router"} 1"#), "{answer}");
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));

        // An idle keep-alive connection must not hold the server up.
        let _idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server).await.expect("stops").unwrap().unwrap();
    }
}
