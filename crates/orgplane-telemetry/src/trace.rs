//! Tracing: log output (text or JSON), W3C trace context, optional OTLP export.
//!
//! A call's trace, end to end: a client sends `traceparent`; the router's [`RpcTraceLayer`]
//! opens an `rpc` span in that trace (or a new one), the router's per-node stack puts the same
//! trace id with the router's span as parent on the call to the node
//! ([`inject_traceparent`]), the node's [`RpcTraceLayer`] opens its own `rpc` span, and both
//! answer with `traceresponse`, so a client can find its trace. With export on, the spans reach
//! the collector under the client's trace id; without it, the ids are still in every log line.
//!
//! Layout:
//! - `context`: the `traceparent` format ([`TraceParent`], [`TraceId`], [`SpanId`]) and header
//!   names;
//! - `layer`: [`RpcTraceLayer`] for tonic servers, the call's trace in a task-local, and the
//!   functions handlers use ([`inject_traceparent`], [`record_org`], ...);
//! - `subscriber`: [`init`], the process-wide subscriber (logs and OTLP export), for binaries.

mod context;
mod layer;
mod subscriber;

pub use context::{
    SpanId, TraceId, TraceParent, TraceParentError, FLAG_SAMPLED, TRACEPARENT_HEADER, TRACERESPONSE_HEADER,
    TRACESTATE_HEADER, TRACESTATE_MAX_BYTES,
};
pub use layer::{
    current_traceparent, inject_traceparent, record_org, record_region, record_request_id, RpcTrace, RpcTraceLayer,
};
pub use subscriber::{
    check_otlp_endpoint, init, resolve_otlp_endpoint, LogFormat, TracingError, TracingGuard, TracingSettings,
    DEFAULT_FILTER, OTEL_ENDPOINT_VARIABLES,
};
