//! The client against the in-memory fake server of `orgplane_client::testing`: the typed calls
//! (`calls`), the retry policy (`retry`), and moving orgs (`moves`: a MoveOrg is never sent
//! twice blindly). One integration-test binary for the crate.

mod calls;
mod moves;
mod retry;

use std::time::Duration;

use orgplane_client::testing::FakeServer;
use orgplane_client::{Client, ClientOptions};

/// Options that keep retries fast: backoff in milliseconds, so the tests wait on the calls
/// themselves, never on a fixed sleep.
fn fast_options() -> ClientOptions {
    ClientOptions {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        ..ClientOptions::default()
    }
}

async fn start() -> (FakeServer, Client) {
    start_with(fast_options()).await
}

async fn start_with(options: ClientOptions) -> (FakeServer, Client) {
    let server = FakeServer::start().await.expect("the fake server starts");
    let client = Client::with_options(&server.endpoint(), options).expect("the client builds");
    (server, client)
}
