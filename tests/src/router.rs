//! A router in front of test regions, in this process.

use orgplane_router::RouterConfig;
use tokio::sync::oneshot;

use crate::auth::test_key;
use crate::TestRegion;

/// Who a test router lets in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterAuth {
    /// Tokens of [`test_key`] required (as the regions of [`crate::auth::authenticated`]).
    Tokens,
    /// Anyone (`allow-unauthenticated`).
    Open,
}

/// A router over `regions` on a fresh loopback port. Returns its address; it stops when the
/// returned sender is dropped.
pub async fn start_router(regions: &[&TestRegion], auth: RouterAuth) -> (String, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let addr = listener.local_addr().expect("bound").to_string();
    let config = RouterConfig {
        listen: listener.local_addr().expect("bound"),
        regions: regions.iter().map(|r| (r.region.to_string(), r.peers.values().cloned().collect())).collect(),
        auth: (auth == RouterAuth::Tokens).then(|| test_key().config().clone()),
        allow_unauthenticated: auth == RouterAuth::Open,
        ..RouterConfig::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(orgplane_router::run(config, listener, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}
