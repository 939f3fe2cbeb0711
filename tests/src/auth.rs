//! Authenticated scenarios: one dev signing key per test process, the node config that verifies
//! its tokens, and a client acting as a given user.

use std::sync::OnceLock;
use std::time::Duration;

use orgplane_auth::DevKey;
use orgplane_client::{Client, ClientOptions};
use orgplane_node::NodeConfig;

use crate::{test_timings, WAIT};

/// The signing key of this test process: nodes and routers verify with it, users' tokens are
/// signed with it. Kept (with its directory) for the whole process.
pub fn test_key() -> &'static DevKey {
    static KEY: OnceLock<(tempfile::TempDir, DevKey)> = OnceLock::new();
    &KEY.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = orgplane_auth::dev_key::ensure(dir.path()).expect("a dev key");
        (dir, key)
    })
    .1
}

/// Test timings, and tokens of [`test_key`] required.
pub fn authenticated(config: &mut NodeConfig) {
    test_timings(config);
    config.auth = Some(test_key().config().clone());
    config.allow_unauthenticated = false;
}

/// A client acting as `user` (with a verified `email` if given), patient enough to wait out an
/// election.
pub fn client_as(router: &str, user: &str, platform_admin: bool, email: Option<&str>) -> Client {
    let token = test_key().token(user, platform_admin, email, Duration::from_secs(3600)).expect("a token");
    let options = ClientOptions {
        request_timeout: Duration::from_secs(10),
        total_timeout: WAIT,
        max_retries: 30,
        bearer_token: Some(token),
        ..ClientOptions::default()
    };
    Client::with_options(router, options).expect("a client")
}
