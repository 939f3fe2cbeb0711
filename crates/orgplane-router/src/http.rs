//! The router's HTTP app, served on `metrics-listen` beside the gRPC port: `GET /metrics`
//! (every series of the router's registry) and `GET /`, the status page.

use axum::response::Html;
use axum::routing::get;
use orgplane_telemetry::metrics::MetricsRegistry;

use crate::server::RouterApi;

/// Everything the router serves over plain HTTP. Another page is one more `.merge(...)` here;
/// handlers that need the router's state take `api` (the status page asks the nodes through
/// it).
pub fn http_app(api: RouterApi, registry: MetricsRegistry) -> axum::Router {
    let status = axum::Router::new().route(
        "/",
        get(move || {
            let api = api.clone();
            async move { Html(crate::status_page::page(&api).await) }
        }),
    );
    orgplane_telemetry::http::metrics_routes(registry).merge(status)
}
