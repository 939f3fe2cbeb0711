//! An integration's secret never reaches a log line: every span and event of the router and
//! of the three nodes, at TRACE level and for every crate (openraft's included), is captured
//! while the secret is written, replicated, read, updated and audited, and searched for it.
//!
//! One test per binary: the capturing subscriber is global to the process.

use std::io::Write;
use std::sync::{Arc, Mutex};

use orgplane_client::{Consistency, PageRequest};
use orgplane_model::{AuditFilter, ConfigEntry, Region, Role};
use orgplane_router::RouterConfig;
use orgplane_tests::auth::{authenticated, client_as, test_key};
use orgplane_tests::TestRegion;
use tokio::sync::oneshot;

const SECRET: &str = "sk-live-5e3c7a91d04b";

/// Every byte any log line wrote.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_a_log_line() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_writer(move || writer.clone())
        .init();

    let region = TestRegion::start(Region::Eu, 3, authenticated).await;
    region.leader().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let router = listener.local_addr().unwrap().to_string();
    let config = RouterConfig {
        listen: listener.local_addr().unwrap(),
        regions: [("eu".to_string(), region.peers.values().cloned().collect())].into(),
        auth: Some(test_key().config().clone()),
        ..RouterConfig::default()
    };
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(orgplane_router::run(config, listener, async {
        let _ = stopped.await;
    }));

    let ops = client_as(&router, "ops", true, None);
    let org = ops.create_org(Region::Eu, "Logged").await.unwrap().id;
    ops.add_member(org.as_str(), "dave", Role::Developer).await.unwrap();
    let dave = client_as(&router, "dave", false, None);
    let config = [ConfigEntry::plain("account", "AC-1"), ConfigEntry::secret("auth_token", SECRET)];
    dave.create_integration(org.as_str(), "sms", "twilio", &config).await.unwrap();
    let rotated = format!("{SECRET}-rotated");
    dave.update_integration(org.as_str(), "sms", &[ConfigEntry::secret("auth_token", &rotated)], &[], None)
        .await
        .unwrap();
    dave.get_integration(org.as_str(), "sms", Consistency::Linearizable).await.unwrap();
    dave.list_integrations(org.as_str(), PageRequest::first(10)).await.unwrap();
    ops.list_all_audit_events(org.as_str(), &AuditFilter::default(), Consistency::Linearizable).await.unwrap();
    // Every node applied the writes (so their apply paths logged too).
    let last = region.raft(region.leader().await).metrics().borrow().last_applied.map(|l| l.index).unwrap();
    for id in region.running_ids() {
        region.wait_applied(id, last).await;
    }
    region.shutdown().await;

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    // The capture saw the calls: it is not vacuous.
    assert!(logs.contains("create_integration") || logs.contains("CreateIntegration"), "nothing captured");
    assert!(logs.lines().count() > 100, "only {} lines captured", logs.lines().count());
    let leaks: Vec<&str> = logs.lines().filter(|line| line.contains(SECRET)).collect();
    assert!(leaks.is_empty(), "{} log lines carry the secret, e.g. {:?}", leaks.len(), &leaks[..leaks.len().min(3)]);
}
