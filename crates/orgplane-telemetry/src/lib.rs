//! Telemetry shared by nodes and routers: Prometheus metrics and the HTTP endpoint that serves
//! them ([`metrics`], [`http`]), and tracing: log output, W3C trace context, optional OTLP export
//! ([`trace`]).

pub mod http;
pub mod metrics;
pub mod scope;
pub mod trace;
