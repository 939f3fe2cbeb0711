//! The per-call side of tracing: [`RpcTraceLayer`], a tower layer for the tonic servers of nodes
//! and routers, opens an `rpc` span for every call to the public API, joins the caller's trace
//! (or starts one), and answers with `traceresponse`; [`inject_traceparent`] puts the call's
//! trace on a call the server makes in turn (the router's call to a node); [`record_region`],
//! [`record_org`] and [`record_request_id`] fill in the span's fields once a handler knows them.
//!
//! The call's trace lives in a task-local for the duration of the call, so that code deep in a
//! handler (the router's per-node stack, the node's write path) reaches it without every
//! function passing it along. It is set whether or not a subscriber is installed: propagation
//! does not depend on logging.
//!
//! Only calls to `orgplane.v1` services are traced: health checks, reflection and the peer-only
//! Raft service pass through untouched.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use opentelemetry::trace::{TraceContextExt, TraceFlags, TraceState};
use tonic::codegen::http::{self, HeaderMap, HeaderValue};
use tower::{Layer, Service};
use tracing::field::Empty;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::context::{
    SpanId, TraceId, TraceParent, FLAG_SAMPLED, TRACEPARENT_HEADER, TRACERESPONSE_HEADER, TRACESTATE_HEADER,
    TRACESTATE_MAX_BYTES,
};

/// The path prefix of the services whose calls get an `rpc` span: the public API.
const TRACED_PATH_PREFIX: &str = "/orgplane.v1.";
/// The longest method path put in a span; anything longer is not a method of ours, and the
/// router's invariant is that nothing a client made up reaches the logs.
const METHOD_MAX_BYTES: usize = 96;

/// The trace of the call being served, reachable from anywhere in its task.
#[derive(Debug, Clone)]
struct CallTrace {
    trace_id: TraceId,
    /// This server's span for the call: the parent of every call it makes in turn.
    span_id: SpanId,
    flags: u8,
    /// The caller's `tracestate`, passed on unchanged.
    tracestate: Option<HeaderValue>,
    /// The `rpc` span, for handlers to record fields on.
    span: tracing::Span,
}

tokio::task_local! {
    static CURRENT_CALL: CallTrace;
}

/// Which server a [`RpcTraceLayer`] serves, for the span's `region` and `node` fields.
#[derive(Debug, Clone, Copy)]
enum Server {
    /// A router: the region is recorded per call, once routed ([`record_region`]).
    Router,
    /// A node of `region`.
    Node { region: &'static str, node: u64 },
}

/// A tower layer for a tonic server: every call to an `orgplane.v1` service runs in an `rpc`
/// span (fields `rpc`, `trace_id`, `span_id`, `parent_id`, `region`, `node`, `org`,
/// `request_id`), in the trace named by its `traceparent` or a new one, and every answer,
/// success or error, carries `traceresponse`. Add it with `Server::builder().layer(..)`.
#[derive(Debug, Clone, Copy)]
pub struct RpcTraceLayer {
    server: Server,
}

impl RpcTraceLayer {
    /// The layer of a router.
    pub fn router() -> RpcTraceLayer {
        RpcTraceLayer { server: Server::Router }
    }

    /// The layer of node `node` of `region`.
    pub fn node(region: &'static str, node: u64) -> RpcTraceLayer {
        RpcTraceLayer { server: Server::Node { region, node } }
    }
}

impl<S> Layer<S> for RpcTraceLayer {
    type Service = RpcTrace<S>;

    fn layer(&self, inner: S) -> RpcTrace<S> {
        RpcTrace { inner, server: self.server }
    }
}

/// The service of [`RpcTraceLayer`].
#[derive(Debug, Clone)]
pub struct RpcTrace<S> {
    inner: S,
    server: Server,
}

impl<S, B, RB> Service<http::Request<B>> for RpcTrace<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<RB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let Some(method) = request.uri().path().strip_prefix('/').filter(|_| is_traced(request.uri().path())) else {
            return Box::pin(self.inner.call(request));
        };
        let call = start_call(method, self.server, request.headers());
        let span = call.span.clone();
        let traceresponse = traceresponse(&call);
        // The inner call may do work before returning its future: it sees the call's trace too.
        let future = {
            let _entered = span.enter();
            CURRENT_CALL.sync_scope(call.clone(), || self.inner.call(request))
        };
        let served = async move {
            let started = Instant::now();
            let result = future.await;
            let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            match result {
                Ok(mut response) => {
                    // An error answered without a body has its status in these headers; a
                    // success has it in the trailers, which this layer does not wait for.
                    let grpc_status = response.headers().get("grpc-status").and_then(|v| v.to_str().ok());
                    tracing::debug!(grpc_status, latency_ms, "rpc answered");
                    if let Some(value) = traceresponse {
                        response.headers_mut().insert(TRACERESPONSE_HEADER, value);
                    }
                    Ok(response)
                }
                Err(error) => {
                    tracing::debug!(latency_ms, "rpc failed below gRPC");
                    Err(error)
                }
            }
        };
        Box::pin(CURRENT_CALL.scope(call, served).instrument(span))
    }
}

fn is_traced(path: &str) -> bool {
    path.starts_with(TRACED_PATH_PREFIX)
        && path.len() <= METHOD_MAX_BYTES
        && path.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/' | b'_'))
}

/// Opens the call's span and settles its trace: the caller's, when its `traceparent` is valid,
/// else a new one. With OpenTelemetry export installed, the exported span takes the caller's
/// span as its parent and its ids are the ones propagated, so the collector and the logs agree.
fn start_call(method: &str, server: Server, headers: &HeaderMap) -> CallTrace {
    let span = tracing::info_span!(
        parent: None,
        "rpc",
        rpc = method,
        otel.name = method,
        otel.kind = "server",
        trace_id = Empty,
        span_id = Empty,
        parent_id = Empty,
        region = Empty,
        node = Empty,
        org = Empty,
        request_id = Empty,
    );
    if let Server::Node { region, node } = server {
        span.record("region", region);
        span.record("node", node);
    }
    let incoming = incoming_trace(headers);
    let tracestate = incoming.as_ref().and_then(|(_, state)| state.clone());
    if let Some((parent, _)) = &incoming {
        span.record("parent_id", tracing::field::display(parent.parent_id));
        let state = tracestate.as_ref().and_then(|v| v.to_str().ok()?.parse::<TraceState>().ok()).unwrap_or_default();
        let remote = opentelemetry::trace::SpanContext::new(
            opentelemetry::trace::TraceId::from_bytes(parent.trace_id.0),
            opentelemetry::trace::SpanId::from_bytes(parent.parent_id.0),
            TraceFlags::new(parent.flags),
            true,
            state,
        );
        // Fails only when no OpenTelemetry layer is installed (or the span is disabled):
        // then there is nothing to export and the ids below are ours.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    let otel = span.context();
    let exported = otel.span().span_context().clone();
    let (trace_id, span_id, flags) = if exported.is_valid() {
        (TraceId(exported.trace_id().to_bytes()), SpanId(exported.span_id().to_bytes()), exported.trace_flags().to_u8())
    } else {
        match &incoming {
            Some((parent, _)) => (parent.trace_id, SpanId::random(), parent.flags),
            // A new trace asks to be recorded downstream: this server may not export, a node
            // behind it may.
            None => (TraceId::random(), SpanId::random(), FLAG_SAMPLED),
        }
    };
    span.record("trace_id", tracing::field::display(trace_id));
    span.record("span_id", tracing::field::display(span_id));
    CallTrace { trace_id, span_id, flags, tracestate, span }
}

/// The caller's `traceparent`, if there is exactly one and it is valid, with its `tracestate`
/// (several `tracestate` headers are one list, joined by commas). The spec: a `tracestate`
/// without a valid `traceparent` is dropped.
fn incoming_trace(headers: &HeaderMap) -> Option<(TraceParent, Option<HeaderValue>)> {
    let mut values = headers.get_all(TRACEPARENT_HEADER).iter();
    let (Some(value), None) = (values.next(), values.next()) else { return None };
    let parent = match value.to_str().map_err(|_| None).and_then(|v| TraceParent::parse(v).map_err(Some)) {
        Ok(parent) => parent,
        Err(reason) => {
            let reason = reason.map_or_else(|| "traceparent is not ASCII".to_string(), |e| e.to_string());
            tracing::debug!(%reason, "ignoring the caller's traceparent; starting a new trace");
            return None;
        }
    };
    let states: Vec<&HeaderValue> = headers.get_all(TRACESTATE_HEADER).iter().collect();
    let tracestate = match states.as_slice() {
        [] => None,
        [one] => Some((*one).clone()),
        many => {
            let joined = many.iter().map(|v| v.as_bytes()).collect::<Vec<_>>().join(&b","[..]);
            HeaderValue::from_bytes(&joined).ok()
        }
    }
    .filter(|v| v.len() <= TRACESTATE_MAX_BYTES);
    Some((parent, tracestate))
}

/// The `traceresponse` of a call: its trace, and this server's span as the "parent" a caller
/// can look up.
fn traceresponse(call: &CallTrace) -> Option<HeaderValue> {
    let value = TraceParent { trace_id: call.trace_id, parent_id: call.span_id, flags: call.flags };
    HeaderValue::from_str(&value.to_string()).ok()
}

/// Puts the current call's trace on an outgoing call: `traceparent` with the same trace id and
/// this server's span as the parent, and the caller's `tracestate` unchanged. Outside a traced
/// call it removes both headers, so nothing a client sent is forwarded blindly.
pub fn inject_traceparent(headers: &mut HeaderMap) {
    headers.remove(TRACEPARENT_HEADER);
    headers.remove(TRACESTATE_HEADER);
    let _ = CURRENT_CALL.try_with(|call| {
        let parent = TraceParent { trace_id: call.trace_id, parent_id: call.span_id, flags: call.flags };
        if let Ok(value) = HeaderValue::from_str(&parent.to_string()) {
            headers.insert(TRACEPARENT_HEADER, value);
        }
        if let Some(state) = &call.tracestate {
            headers.insert(TRACESTATE_HEADER, state.clone());
        }
    });
}

/// The current call's `traceparent` for an outgoing call (see [`inject_traceparent`]), if
/// this task serves a traced call.
pub fn current_traceparent() -> Option<TraceParent> {
    CURRENT_CALL
        .try_with(|call| TraceParent { trace_id: call.trace_id, parent_id: call.span_id, flags: call.flags })
        .ok()
}

/// Records the region that serves the current call on its `rpc` span (the router knows it once
/// it has routed the call).
pub fn record_region(region: &'static str) {
    record("region", &region);
}

/// Records the org the current call is about on its `rpc` span. Pass only a validated org id:
/// whatever is recorded reaches the logs and the collector.
pub fn record_org(org_id: &dyn fmt::Display) {
    record("org", org_id);
}

/// Records the current call's idempotency key on its `rpc` span. Pass only a validated request
/// id (visible ASCII, bounded length).
pub fn record_request_id(request_id: &dyn fmt::Display) {
    record("request_id", request_id);
}

fn record(field: &'static str, value: &dyn fmt::Display) {
    let _ = CURRENT_CALL.try_with(|call| {
        call.span.record(field, tracing::field::display(value));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn joins_a_valid_trace_with_a_new_span_and_keeps_tracestate() {
        let call = start_call(
            "orgplane.v1.OrgService/GetOrg",
            Server::Router,
            &headers(&[(TRACEPARENT_HEADER, PARENT), (TRACESTATE_HEADER, "a=1"), (TRACESTATE_HEADER, "b=2")]),
        );
        assert_eq!(call.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(call.span_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(call.flags, FLAG_SAMPLED);
        assert_eq!(call.tracestate.as_ref().unwrap(), "a=1,b=2");
    }

    #[test]
    fn starts_a_new_trace_on_a_bad_or_repeated_traceparent() {
        for bad in [
            headers(&[(TRACEPARENT_HEADER, "00-00000000000000000000000000000000-00f067aa0ba902b7-01")]),
            headers(&[(TRACEPARENT_HEADER, "garbage"), (TRACESTATE_HEADER, "a=1")]),
            headers(&[(TRACEPARENT_HEADER, PARENT), (TRACEPARENT_HEADER, PARENT)]),
            headers(&[]),
        ] {
            let call = start_call("orgplane.v1.OrgService/GetOrg", Server::Router, &bad);
            assert_ne!(call.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736", "{bad:?}");
            assert_ne!(call.trace_id.0, [0; 16]);
            assert!(call.tracestate.is_none(), "{bad:?}: tracestate without a valid traceparent is dropped");
        }
    }

    #[tokio::test]
    async fn outgoing_calls_carry_the_trace_with_this_servers_span() {
        let mut outgoing = headers(&[(TRACEPARENT_HEADER, "stale"), (TRACESTATE_HEADER, "stale=1")]);
        inject_traceparent(&mut outgoing);
        assert!(outgoing.is_empty(), "outside a call nothing is forwarded: {outgoing:?}");

        let call = start_call(
            "orgplane.v1.OrgService/GetOrg",
            Server::Node { region: "eu", node: 2 },
            &headers(&[(TRACEPARENT_HEADER, PARENT), (TRACESTATE_HEADER, "a=1")]),
        );
        let span_id = call.span_id;
        CURRENT_CALL
            .scope(call, async {
                let mut outgoing = HeaderMap::new();
                inject_traceparent(&mut outgoing);
                let sent = TraceParent::parse(outgoing[TRACEPARENT_HEADER].to_str().unwrap()).unwrap();
                assert_eq!(sent.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
                assert_eq!(sent.parent_id, span_id);
                assert_eq!(outgoing[TRACESTATE_HEADER], "a=1");
                assert_eq!(current_traceparent(), Some(sent));
            })
            .await;
    }

    #[test]
    fn traces_only_public_methods() {
        assert!(is_traced("/orgplane.v1.OrgService/GetOrg"));
        assert!(!is_traced("/orgplane.raft.v1.RaftService/Append"));
        assert!(!is_traced("/grpc.health.v1.Health/Check"));
        assert!(!is_traced(&format!("/orgplane.v1.OrgService/{}", "x".repeat(200))));
        assert!(!is_traced("/orgplane.v1.OrgService/Get%20Org"));
    }
}
