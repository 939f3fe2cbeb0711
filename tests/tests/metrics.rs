//! `--metrics-listen` on real nodes and a router, scraped over HTTP and parsed as Prometheus
//! would: the RPC series by method and code, Raft's view on every node, the group commit,
//! snapshots, the store's size, the router's per-region series and fan-out partial answers;
//! and the Grafana dashboard, whose every series must exist in a real scrape.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;

use orgplane_model::Region;
use orgplane_node::NodeConfig;
use orgplane_proto::v1::*;
use orgplane_tests::scrape::{scrape, Scrape};
use orgplane_tests::{connect, test_timings, TestRegion, WAIT};
use tonic::Code;

/// Writes made through the router in the test.
const WRITES: usize = 12;

/// Test timings, metrics on a free port, and snapshots often enough that each node builds one.
fn with_metrics(config: &mut NodeConfig) {
    test_timings(config);
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    config.snapshot_every_entries = 5;
}

/// A router over `regions`, serving metrics on a free port; stops when `stop` is sent.
async fn start_router(
    regions: &[&TestRegion],
) -> (SocketAddr, SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let config = orgplane_router::RouterConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        regions: regions.iter().map(|r| (r.region.to_string(), r.peers.values().cloned().collect())).collect(),
        fanout_timeout_ms: 2_000,
        allow_unauthenticated: true,
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, metrics_addr) = (listener.local_addr().unwrap(), metrics.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        orgplane_router::run_with_http(config, listener, Some(metrics), async {
            let _ = stopped.await;
        })
        .await
        .expect("the router runs");
    });
    (addr, metrics_addr, stop, task)
}

fn rpc<'a>(method: &'a str, code: &'a str) -> [(&'a str, &'a str); 3] {
    [("service", "orgplane.v1.OrgService"), ("method", method), ("code", code)]
}

/// The names of the `orgplane_*` series the dashboard's queries use.
fn dashboard_series() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/orgplane.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "only {} queries in the dashboard", exprs.len());
    let mut names = BTreeSet::new();
    for expr in exprs {
        let mut rest = expr.as_str();
        while let Some(start) = rest.find("orgplane_") {
            let name: String = rest[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            rest = &rest[start + name.len()..];
            names.insert(name);
        }
    }
    names
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                    _ => collect_exprs(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_and_the_router_export_the_named_series_and_the_dashboard_uses_only_real_ones() {
    let eu = TestRegion::start(Region::Eu, 3, with_metrics).await;
    let mut us = TestRegion::start(Region::Us, 1, with_metrics).await;
    let leader = eu.leader().await;
    us.leader().await;
    let (router_addr, router_metrics, stop_router, router_task) = start_router(&[&eu, &us]).await;
    let mut client = connect(&router_addr.to_string()).await;

    // Writes and reads through the router, one failing call the node answers (NOT_FOUND) and
    // one the router refuses itself (INVALID_ARGUMENT).
    let mut ids = Vec::new();
    for i in 0..WRITES {
        let request = CreateOrgRequest { region: "eu".into(), name: format!("Org {i}"), request_id: String::new() };
        let org = client.create_org(request).await.expect("create").into_inner().org.expect("org");
        ids.push(org.id);
    }
    for id in &ids {
        client.get_org(GetOrgRequest { org_id: id.clone(), consistency: 0 }).await.expect("read");
    }
    let missing = client.get_org(GetOrgRequest { org_id: format!("eu-{}", "0".repeat(26)), consistency: 0 }).await;
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);
    let garbage = client.get_org(GetOrgRequest { org_id: "garbage".into(), consistency: 0 }).await;
    assert_eq!(garbage.unwrap_err().code(), Code::InvalidArgument);
    let whole = ListUserOrgsRequest { user_id: "u1".into(), page_size: 10, ..Default::default() };
    let answer = client.list_user_orgs(whole.clone()).await.expect("list user orgs").into_inner();
    assert!(answer.regions.iter().all(|r| r.state() == RegionState::Ok), "{:?}", answer.regions);

    // Every node has applied every write and built a snapshot.
    let last_index = eu.raft(leader).metrics().borrow().last_log_index.expect("a log");
    for id in eu.running_ids() {
        eu.wait_applied(id, last_index).await;
        eu.raft(id)
            .wait(Some(WAIT))
            .metrics(|m| m.snapshot.is_some(), "a snapshot built")
            .await
            .unwrap_or_else(|e| panic!("node {id} built no snapshot: {e}"));
    }

    let mut node_scrapes = Vec::new();
    for id in eu.running_ids() {
        let at = eu.metrics_addr(id).expect("metrics are on");
        node_scrapes.push((id, scrape(at).await));
    }
    let leaders: Vec<u64> = node_scrapes
        .iter()
        .filter(|(_, s)| s.value("orgplane_raft_is_leader", &[]) == 1.0)
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(leaders, vec![leader], "exactly one node reports itself leader");
    let mut batches = 0.0;
    let mut batched_commands = 0.0;
    let mut creates_ok = 0.0;
    for (id, node) in &node_scrapes {
        let node_label = id.to_string();
        let process = [("role", "node"), ("region", "eu"), ("node", node_label.as_str())];
        // Every series names its process.
        assert_eq!(node.value("orgplane_raft_term", &process), node.value("orgplane_raft_term", &[]));
        assert!(node.value("orgplane_raft_term", &[]) >= 1.0, "node {id}: term");
        assert_eq!(node.value("orgplane_raft_leader", &[]), leader as f64, "node {id}: known leader");
        assert!(node.value("orgplane_raft_leader_changes_total", &[]) >= 1.0, "node {id}: leader changes");
        let applied = node.value("orgplane_raft_applied_index", &[]);
        assert!(applied >= WRITES as f64 && applied >= last_index as f64, "node {id}: applied {applied}");
        assert!(node.value("orgplane_raft_committed_index", &[]) >= applied, "node {id}: committed before applied");
        assert!(node.value("orgplane_raft_last_log_index", &[]) >= applied, "node {id}: log before applied");
        assert!(node.value("orgplane_raft_snapshot_index", &[]) > 0.0, "node {id}: snapshot index");
        assert!(node.value("orgplane_store_size_bytes", &[]) > 0.0, "node {id}: sled size");
        assert!(node.value("orgplane_snapshot_build_duration_seconds_count", &[]) >= 1.0, "node {id}: snapshot builds");
        assert!(node.get("orgplane_snapshot_install_duration_seconds_count", &[]).is_some(), "node {id}: installs");
        batches += node.value("orgplane_raft_batch_commands_count", &[]);
        batched_commands += node.value("orgplane_raft_batch_commands_sum", &[]);
        creates_ok += node.get("orgplane_rpc_requests_total", &rpc("CreateOrg", "OK")).unwrap_or(0.0);
        let lags: BTreeSet<String> =
            node.find("orgplane_raft_replication_lag_entries", &[]).map(|s| s.labels["follower"].clone()).collect();
        if *id == leader {
            let followers: BTreeSet<String> =
                eu.running_ids().into_iter().filter(|f| *f != leader).map(|f| f.to_string()).collect();
            assert_eq!(lags, followers, "the leader reports lag for each follower");
            for follower in &followers {
                let lag = node.value("orgplane_raft_replication_lag_entries", &[("follower", follower)]);
                assert!((0.0..=last_index as f64).contains(&lag), "lag of {follower}: {lag}");
            }
        } else {
            assert!(lags.is_empty(), "follower {id} reports replication lag");
            // The leader's appends reach followers through the peer service.
            let appends = [("service", "orgplane.raft.v1.RaftService"), ("method", "AppendEntries"), ("code", "OK")];
            assert!(node.value("orgplane_rpc_requests_total", &appends) >= 1.0, "node {id}: appends");
        }
    }
    assert!(batches > 0.0, "no group-commit batch observed");
    assert!(batched_commands >= WRITES as f64, "{batched_commands} commands in batches, {WRITES} writes");
    assert!(creates_ok >= WRITES as f64, "nodes answered {creates_ok} creates");

    // The router: its RPCs by method and code, with latency buckets; per-region outcomes.
    let router = scrape(router_metrics).await;
    assert_eq!(router.value("orgplane_rpc_requests_total", &rpc("CreateOrg", "OK")), WRITES as f64);
    assert_eq!(router.value("orgplane_rpc_requests_total", &rpc("GetOrg", "OK")), WRITES as f64);
    assert_eq!(router.value("orgplane_rpc_requests_total", &rpc("GetOrg", "NOT_FOUND")), 1.0);
    assert_eq!(router.value("orgplane_rpc_requests_total", &rpc("GetOrg", "INVALID_ARGUMENT")), 1.0);
    assert!(router.find("orgplane_rpc_requests_total", &[("role", "router")]).count() >= 4);
    check_histogram(&router, "orgplane_rpc_duration_seconds", &rpc("CreateOrg", "OK"), WRITES as f64);
    let eu_ok = router.value("orgplane_router_region_requests_total", &[("region", "eu"), ("code", "OK")]);
    assert!(eu_ok >= (2 * WRITES) as f64, "eu OK calls: {eu_ok}");
    assert_eq!(router.value("orgplane_router_region_requests_total", &[("region", "eu"), ("code", "NOT_FOUND")]), 1.0);
    let eu_calls = router.sum("orgplane_router_region_requests_total", &[("region", "eu")]);
    check_histogram(&router, "orgplane_router_region_duration_seconds", &[("region", "eu")], eu_calls);
    assert!(router.find("orgplane_router_fanout_partial_total", &[]).next().is_none(), "a partial answer already");

    // A region down: the user-wide answer goes out without it, and says so, once per call.
    us.stop(1).await;
    for _ in 0..2 {
        let answer = client.list_user_orgs(whole.clone()).await.expect("partial answer").into_inner();
        let us_result = answer.regions.iter().find(|r| r.region == "us").expect("us is reported");
        assert_ne!(us_result.state(), RegionState::Ok);
    }
    let router = scrape(router_metrics).await;
    assert_eq!(router.value("orgplane_router_fanout_partial_total", &[("region", "us")]), 2.0);
    assert!(router.get("orgplane_router_fanout_partial_total", &[("region", "eu")]).is_none());
    assert!(router.sum("orgplane_router_region_requests_total", &[("region", "us"), ("code", "UNAVAILABLE")]) >= 1.0);

    // Every series the dashboard queries exists in a real scrape of a node or the router.
    let mut scraped: BTreeSet<String> = router.names();
    for (_, node) in &node_scrapes {
        scraped.extend(node.names());
    }
    let missing: Vec<String> = dashboard_series().difference(&scraped).cloned().collect();
    assert!(missing.is_empty(), "the dashboard queries series no process exports: {missing:?}");

    stop_router.send(()).unwrap();
    tokio::time::timeout(WAIT, router_task).await.expect("the router stops").unwrap();
    eu.shutdown().await;
    us.shutdown().await;
}

/// A histogram's buckets rise with `le`, end at `+Inf` equal to `_count`, which is `count`.
fn check_histogram(scrape: &Scrape, name: &str, labels: &[(&str, &str)], count: f64) {
    let bucket = format!("{name}_bucket");
    let mut buckets: Vec<(f64, f64)> = scrape
        .find(&bucket, labels)
        .map(|s| (s.labels["le"].replace("+Inf", "inf").parse::<f64>().expect("le"), s.value))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() > 5, "{name}{labels:?}: buckets {buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{name}{labels:?}: buckets fall: {buckets:?}");
    assert_eq!(buckets.last().map(|b| (b.0, b.1)), Some((f64::INFINITY, count)), "{name}{labels:?}");
    assert_eq!(scrape.value(&format!("{name}_count"), labels), count, "{name}{labels:?}");
    assert!(scrape.value(&format!("{name}_sum"), labels) > 0.0, "{name}{labels:?}: sum");
}

#[test]
fn the_dashboard_has_a_datasource_variable_and_every_panel_queries_it() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/orgplane.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("the dashboard is JSON");
    let variables = dashboard["templating"]["list"].as_array().expect("templating.list");
    let datasource = variables.iter().find(|v| v["type"] == "datasource").expect("a datasource variable");
    assert_eq!(datasource["query"], "prometheus");
    let name = datasource["name"].as_str().expect("its name");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut queried = 0;
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().unwrap_or("?");
        assert_eq!(panel["datasource"]["uid"], format!("${{{name}}}"), "panel {title}: datasource");
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("panel {title}: no targets"));
        assert!(!targets.is_empty(), "panel {title}: no queries");
        queried += 1;
    }
    assert!(queried >= 12, "{queried} panels");
    assert!(dashboard_series().len() >= 15, "{:?}", dashboard_series());
}
