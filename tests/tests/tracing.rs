//! Tracing across router and region, with real processes: three `orgplane node` processes of
//! one region and an `orgplane router`, JSON logs. A trace id sent by a client in `traceparent`
//! appears in the router's spans and in a node's spans; the node sees the router's span as its
//! parent, not the client's; every answer (success, the router's own error, a node's error)
//! carries `traceresponse` with the client's trace id. With `--otlp-endpoint`, the spans of
//! router and node reach an in-test OTLP collector under the client's trace id.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as OtelValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use orgplane_proto::v1::org_service_client::OrgServiceClient;
use orgplane_proto::v1::{CreateOrgRequest, GetOrgRequest};
use orgplane_telemetry::trace::{TraceParent, TRACEPARENT_HEADER, TRACERESPONSE_HEADER};
use orgplane_tests::faults::procs::{Proc, ProcSpec};
use orgplane_tests::WAIT;
use serde_json::Value;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};

/// What the processes log: the `rpc` spans' events are at DEBUG in `orgplane_telemetry`.
const RUST_LOG: &str = "info,orgplane_telemetry=debug,openraft=error";
/// An org name that must never reach the router's logs (its invariant: no payloads).
const SECRET_NAME: &str = "Tracing Secret Name 7f3a";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Three nodes of `eu` and a router, each a real `orgplane` process logging JSON to a file.
/// Fields drop in order: the processes are killed before their folder goes.
struct Deployment {
    router_addr: String,
    /// Node id -> its process; dropping one kills it.
    nodes: BTreeMap<u64, Proc>,
    router: Proc,
    dir: tempfile::TempDir,
}

impl Deployment {
    /// Starts the processes, with `--otlp-endpoint` when `otlp` is given.
    fn start(otlp: Option<&str>) -> Deployment {
        orgplane_tests::faults::procs::kill_registered_leftovers();
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().display().to_string();
        let addrs: BTreeMap<u64, String> = (1..=3).map(|id| (id, format!("127.0.0.1:{}", free_port()))).collect();
        let peers = addrs.iter().map(|(id, a)| format!("{id}={a}")).collect::<Vec<_>>().join(",");
        let mut env = vec![("RUST_LOG".to_string(), RUST_LOG.to_string())];
        // Export batches quickly, so the test awaits them briefly.
        env.push(("OTEL_BSP_SCHEDULE_DELAY".to_string(), "100".to_string()));
        let otlp_args = |args: &mut Vec<String>| {
            if let Some(endpoint) = otlp {
                args.extend(["--otlp-endpoint".to_string(), endpoint.to_string()]);
            }
        };
        let mut nodes = BTreeMap::new();
        for (&id, addr) in &addrs {
            let mut args: Vec<String> = ["--log-format", "json", "node", "--allow-unauthenticated", "--region", "eu"]
                .map(String::from)
                .to_vec();
            args.extend([
                "--node-id".into(),
                id.to_string(),
                "--listen".into(),
                addr.clone(),
                "--peers".into(),
                peers.clone(),
            ]);
            args.extend(["--data-dir".into(), dir.path().join(format!("n{id}")).display().to_string()]);
            otlp_args(&mut args);
            let mut node = Proc::new(ProcSpec {
                name: format!("eu-n{id}"),
                netns: None,
                args,
                env: env.clone(),
                log: dir.path().join(format!("n{id}.log")),
                marker: marker.clone(),
            });
            node.start();
            nodes.insert(id, node);
        }
        let router_addr = format!("127.0.0.1:{}", free_port());
        let endpoints = addrs.values().cloned().collect::<Vec<_>>().join(",");
        let mut args: Vec<String> =
            ["--log-format", "json", "router", "--allow-unauthenticated", "--listen"].map(String::from).to_vec();
        args.extend([router_addr.clone(), "--region".into(), format!("eu={endpoints}")]);
        otlp_args(&mut args);
        let mut router = Proc::new(ProcSpec {
            name: "router".into(),
            netns: None,
            args,
            env,
            log: dir.path().join("router.log"),
            marker,
        });
        router.start();
        Deployment { router_addr, nodes, router, dir }
    }

    fn client(&self) -> OrgServiceClient<Channel> {
        let channel = Endpoint::from_shared(format!("http://{}", self.router_addr))
            .unwrap()
            .connect_timeout(Duration::from_secs(1))
            .connect_lazy();
        OrgServiceClient::new(channel)
    }

    /// Waits until the region has a leader and the router reaches it: a write through the
    /// router succeeds (without a traceparent, so it starts a trace of its own).
    async fn wait_ready(&mut self) {
        let started = Instant::now();
        let mut client = self.client();
        loop {
            for (id, node) in &mut self.nodes {
                assert!(
                    node.is_running(),
                    "node {id} exited; its log:\n{}",
                    read(&self.dir.path().join(format!("n{id}.log")))
                );
            }
            assert!(
                self.router.is_running(),
                "the router exited; its log:\n{}",
                read(&self.dir.path().join("router.log"))
            );
            let mut request = tonic::Request::new(CreateOrgRequest {
                region: "eu".into(),
                name: "warm-up".into(),
                request_id: "warm-up".into(),
            });
            request.set_timeout(Duration::from_secs(2));
            match client.create_org(request).await {
                Ok(_) => return,
                Err(status) => {
                    assert!(started.elapsed() < WAIT, "no write through the router within {WAIT:?}; last: {status:?}")
                }
            }
            // Polling other processes: nothing to subscribe to, so a short pause between tries.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn router_log(&self) -> PathBuf {
        self.dir.path().join("router.log")
    }

    fn node_logs(&self) -> Vec<PathBuf> {
        self.nodes.keys().map(|id| self.dir.path().join(format!("n{id}.log"))).collect()
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A request with the client's `traceparent`.
fn traced<T>(message: T, traceparent: &TraceParent) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(TRACEPARENT_HEADER, MetadataValue::try_from(traceparent.to_string()).unwrap());
    request.set_timeout(Duration::from_secs(10));
    request
}

/// The `traceresponse` of an answer, parsed.
fn traceresponse(metadata: &MetadataMap) -> TraceParent {
    let value = metadata.get(TRACERESPONSE_HEADER).unwrap_or_else(|| panic!("no traceresponse in {metadata:?}"));
    TraceParent::parse(value.to_str().unwrap()).unwrap_or_else(|e| panic!("traceresponse {value:?}: {e}"))
}

/// The `rpc` spans (their fields, as JSON objects) of every log line in `log` that belongs to
/// `trace_id`, one per distinct span id.
fn rpc_spans(log: &Path, trace_id: &str) -> Vec<serde_json::Map<String, Value>> {
    let mut spans: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    for line in read(log).lines() {
        let Ok(Value::Object(entry)) = serde_json::from_str::<Value>(line) else { continue };
        let Some(Value::Array(list)) = entry.get("spans") else { continue };
        for span in list {
            let Value::Object(fields) = span else { continue };
            if fields.get("name").and_then(Value::as_str) == Some("rpc")
                && fields.get("trace_id").and_then(Value::as_str) == Some(trace_id)
            {
                let span_id = fields.get("span_id").and_then(Value::as_str).unwrap_or_default().to_string();
                // A later line may hold more recorded fields (org, request id): keep the fullest.
                let entry = spans.entry(span_id).or_default();
                if fields.len() >= entry.len() {
                    *entry = fields.clone();
                }
            }
        }
    }
    spans.into_values().collect()
}

/// Waits until `found` finds something in the logs (processes write their lines as calls
/// finish, a moment after the client has its answer).
async fn await_in_logs<T>(what: &str, mut found: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = found() {
            return value;
        }
        assert!(started.elapsed() < WAIT, "{what}: not in the logs within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn field<'a>(span: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a str> {
    span.get(name).and_then(Value::as_str)
}

fn new_traceparent() -> TraceParent {
    let text = format!("00-{}-{}-01", uuid::Uuid::new_v4().simple(), &uuid::Uuid::new_v4().simple().to_string()[..16]);
    TraceParent::parse(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trace_id_appears_in_the_routers_and_the_nodes_spans() {
    let mut deployment = Deployment::start(None);
    deployment.wait_ready().await;
    let mut client = deployment.client();

    // A write: the router routes it by region, a node commits it.
    let sent = new_traceparent();
    let trace_id = sent.trace_id.to_string();
    let request = CreateOrgRequest { region: "eu".into(), name: SECRET_NAME.into(), request_id: "trace-req-1".into() };
    let response = client.create_org(traced(request, &sent)).await.expect("create through the router");
    let answered = traceresponse(response.metadata());
    let org_id = response.into_inner().org.unwrap().id;
    assert_eq!(answered.trace_id, sent.trace_id, "the answer names the client's trace");
    assert_ne!(answered.parent_id, sent.parent_id, "the answer names the router's span, not the client's");

    let router_span = await_in_logs("the router's rpc span", || {
        rpc_spans(&deployment.router_log(), &trace_id).into_iter().find(|s| field(s, "request_id").is_some())
    })
    .await;
    assert_eq!(field(&router_span, "rpc"), Some("orgplane.v1.OrgService/CreateOrg"));
    assert_eq!(field(&router_span, "parent_id"), Some(sent.parent_id.to_string().as_str()));
    assert_eq!(field(&router_span, "span_id"), Some(answered.parent_id.to_string().as_str()));
    assert_eq!(field(&router_span, "region"), Some("eu"));
    assert_eq!(field(&router_span, "request_id"), Some("trace-req-1"));

    let node_span = await_in_logs("a node's rpc span", || {
        deployment.node_logs().iter().flat_map(|log| rpc_spans(log, &trace_id)).find(|s| field(s, "org").is_some())
    })
    .await;
    assert_eq!(field(&node_span, "rpc"), Some("orgplane.v1.OrgService/CreateOrg"));
    assert_eq!(
        field(&node_span, "parent_id"),
        field(&router_span, "span_id"),
        "the node's parent is the router's span"
    );
    assert_ne!(field(&node_span, "parent_id"), Some(sent.parent_id.to_string().as_str()));
    assert_eq!(field(&node_span, "region"), Some("eu"));
    assert!(node_span.get("node").and_then(Value::as_u64).is_some_and(|n| (1..=3).contains(&n)), "{node_span:?}");
    assert_eq!(field(&node_span, "org"), Some(org_id.as_str()));
    assert_eq!(field(&node_span, "request_id"), Some("trace-req-1"));

    // A read names its org at the router too.
    let reading = new_traceparent();
    let response = client
        .get_org(traced(GetOrgRequest { org_id: org_id.clone(), ..Default::default() }, &reading))
        .await
        .expect("read through the router");
    assert_eq!(traceresponse(response.metadata()).trace_id, reading.trace_id);
    let read_id = reading.trace_id.to_string();
    let router_read = await_in_logs("the router's span of the read", || {
        rpc_spans(&deployment.router_log(), &read_id).into_iter().find(|s| field(s, "org").is_some())
    })
    .await;
    assert_eq!(field(&router_read, "org"), Some(org_id.as_str()));
    await_in_logs("a node's span of the read", || {
        deployment.node_logs().iter().flat_map(|log| rpc_spans(log, &read_id)).next()
    })
    .await;

    // Errors carry the trace back too: one the router makes itself (a malformed id, never
    // sent to a node) and one a node answers (no such org).
    let invalid = new_traceparent();
    let status = client
        .get_org(traced(GetOrgRequest { org_id: "eu-not-an-id".into(), ..Default::default() }, &invalid))
        .await
        .expect_err("a malformed id is refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(traceresponse(status.metadata()).trace_id, invalid.trace_id);

    let missing = new_traceparent();
    let status = client
        .get_org(traced(
            GetOrgRequest { org_id: "eu-01jdq3n8x2k7m4p9r5t6v8w0yz".into(), ..Default::default() },
            &missing,
        ))
        .await
        .expect_err("no such org");
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(traceresponse(status.metadata()).trace_id, missing.trace_id);

    // A malformed traceparent starts a new trace; the call still succeeds.
    let mut request = tonic::Request::new(GetOrgRequest { org_id: org_id.clone(), ..Default::default() });
    request.metadata_mut().insert(
        TRACEPARENT_HEADER,
        MetadataValue::from_static("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
    );
    let response = client.get_org(request).await.expect("a bad traceparent does not fail the call");
    assert_ne!(traceresponse(response.metadata()).trace_id.0, [0; 16]);

    let router_log = read(&deployment.router_log());
    assert!(!router_log.contains(SECRET_NAME), "the router logged a payload");
}

/// The collector: keeps every span it receives, with its resource's `service.name`.
#[derive(Debug, Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<ExportedSpan>>>,
    arrived: Arc<tokio::sync::Notify>,
}

#[derive(Debug, Clone)]
struct ExportedSpan {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: BTreeMap<String, String>,
}

fn text(value: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(OtelValue::StringValue(s)) => s.clone(),
        Some(OtelValue::IntValue(i)) => i.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter().map(|kv| (kv.key.clone(), text(&kv.value))).collect()
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans.resource.map(|r| attributes(&r.attributes)).unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                received.push(ExportedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent_span_id: span.parent_span_id,
                    attributes: attributes(&span.attributes),
                });
            }
        }
        self.spans.lock().unwrap().extend(received);
        self.arrived.notify_waiters();
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Waits until `found` finds something among the spans received.
    async fn await_spans<T>(&self, what: &str, found: impl Fn(&[ExportedSpan]) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let arrived = self.arrived.notified();
            if let Some(value) = found(&self.spans.lock().unwrap()) {
                return value;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                let services: Vec<(String, String)> =
                    self.spans.lock().unwrap().iter().map(|s| (s.service.clone(), s.name.clone())).collect();
                panic!("{what}: not exported within {WAIT:?}; received {services:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_collector_under_the_clients_trace_id() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let mut deployment = Deployment::start(Some(&endpoint));
    deployment.wait_ready().await;
    let sent = new_traceparent();
    let request = CreateOrgRequest { region: "eu".into(), name: SECRET_NAME.into(), request_id: "otlp-req-1".into() };
    let response = deployment.client().create_org(traced(request, &sent)).await.expect("create through the router");
    let answered = traceresponse(response.metadata());

    let is_rpc = |span: &ExportedSpan, service: &str| {
        span.trace_id == sent.trace_id.0 && span.service == service && span.name == "orgplane.v1.OrgService/CreateOrg"
    };
    let router_span = collector
        .await_spans("the router's rpc span", |spans| spans.iter().find(|s| is_rpc(s, "orgplane-router")).cloned())
        .await;
    assert_eq!(router_span.parent_span_id, sent.parent_id.0, "the router's span is a child of the client's");
    assert_eq!(router_span.span_id, answered.parent_id.0, "traceresponse names the exported span");
    assert_eq!(router_span.attributes.get("request_id").map(String::as_str), Some("otlp-req-1"));
    assert_eq!(router_span.attributes.get("region").map(String::as_str), Some("eu"));

    let node_span = collector
        .await_spans("a node's rpc span", |spans| spans.iter().find(|s| is_rpc(s, "orgplane-node")).cloned())
        .await;
    assert_eq!(node_span.parent_span_id, router_span.span_id, "the node's span is a child of the router's");
    assert_eq!(node_span.attributes.get("region").map(String::as_str), Some("eu"));
    assert_eq!(node_span.attributes.get("request_id").map(String::as_str), Some("otlp-req-1"));
    assert!(node_span.attributes.contains_key("org"), "{:?}", node_span.attributes);

    drop(deployment);
    server.abort();
}
