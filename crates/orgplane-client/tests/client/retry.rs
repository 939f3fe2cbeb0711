//! The retry policy, observed from the server side: which failures are sent again, with which
//! request id, and how many times.

use std::time::{Duration, Instant};

use orgplane_client::testing::{FakeServer, Fault};
use orgplane_client::{Client, ClientOptions, Consistency, RequestId};
use orgplane_model::Region;
use tonic::Code;

use crate::{fast_options, start, start_with};

/// The request ids of the calls of `rpc` the server received, in order.
fn request_ids(server: &FakeServer, rpc: &str) -> Vec<String> {
    server.calls().into_iter().filter(|c| c.rpc == rpc).map(|c| c.request_id).collect()
}

fn assert_one_id_repeated(ids: &[String], times: usize) {
    assert_eq!(ids.len(), times, "{ids:?}");
    assert!(!ids[0].is_empty(), "a write carries a request id");
    assert!(ids.iter().all(|id| *id == ids[0]), "every attempt carries the same id: {ids:?}");
}

#[tokio::test]
async fn a_write_is_retried_on_unavailable_with_the_same_request_id() {
    let (server, client) = start().await;
    server.inject(Fault::Refuse(Code::Unavailable), 2);
    let org = client.create_org(Region::Eu, "Acme").await.expect("the third attempt succeeds");
    assert_eq!(org.name, "Acme");
    assert_one_id_repeated(&request_ids(&server, "CreateOrg"), 3);
    assert_eq!(server.orgs().len(), 1);
}

#[tokio::test]
async fn a_write_whose_answer_was_lost_is_applied_once() {
    let (server, client) = start().await;
    server.inject(Fault::LoseAnswer(Code::Unavailable), 1);
    let org = client.create_org(Region::Us, "Acme").await.expect("the retry gets the first result");
    assert_one_id_repeated(&request_ids(&server, "CreateOrg"), 2);
    assert_eq!(server.orgs(), vec![org], "applied once, and the retry answered with that org");
}

#[tokio::test]
async fn a_write_is_retried_after_deadline_exceeded_but_a_read_is_not() {
    let (server, client) = start().await;
    server.inject(Fault::LoseAnswer(Code::DeadlineExceeded), 1);
    let org = client.create_org(Region::Apac, "Acme").await.expect("the write is retried");
    assert_one_id_repeated(&request_ids(&server, "CreateOrg"), 2);
    assert_eq!(server.orgs().len(), 1);

    server.inject(Fault::Refuse(Code::DeadlineExceeded), 1);
    let err = client.get_org(&org.id, Consistency::Linearizable).await.expect_err("the read is not retried");
    assert_eq!(err.code(), Code::DeadlineExceeded);
    assert_eq!(request_ids(&server, "GetOrg").len(), 1);
}

#[tokio::test]
async fn a_read_is_retried_on_unavailable() {
    let (server, client) = start().await;
    let org = client.create_org(Region::Eu, "Acme").await.unwrap();
    server.inject(Fault::Refuse(Code::Unavailable), 2);
    let read = client.get_org(&org.id, Consistency::Local).await.expect("the third attempt succeeds");
    assert_eq!(read.org, org);
    assert_eq!(request_ids(&server, "GetOrg"), vec![String::new(); 3], "reads carry no request id");
}

#[tokio::test]
async fn final_codes_are_never_retried() {
    let (server, client) = start().await;
    let final_codes = [
        Code::InvalidArgument,
        Code::NotFound,
        Code::Aborted,
        Code::FailedPrecondition,
        Code::PermissionDenied,
        Code::AlreadyExists,
        Code::Unknown,
        Code::Internal,
    ];
    for (n, code) in final_codes.into_iter().enumerate() {
        server.inject(Fault::Refuse(code), 1);
        let err = client.create_org(Region::Eu, "Acme").await.expect_err("the injected failure ends the call");
        assert_eq!(err.code(), code);
        assert!(!err.is_retryable(), "{code:?}");
        assert_eq!(request_ids(&server, "CreateOrg").len(), n + 1, "{code:?} was sent once");
    }
    assert!(server.orgs().is_empty());
}

#[tokio::test]
async fn the_servers_own_invalid_argument_is_not_retried() {
    let (server, client) = start().await;
    let err = client.create_org(Region::Eu, "   ").await.expect_err("an empty name is refused");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("name"), "{err}");
    assert_eq!(request_ids(&server, "CreateOrg").len(), 1);
}

#[tokio::test]
async fn attempts_are_bounded_by_max_retries() {
    let (server, client) = start_with(ClientOptions { max_retries: 2, ..fast_options() }).await;
    server.inject(Fault::Refuse(Code::Unavailable), 10);
    let err = client.delete_org("eu-00000000000000000000000000", None).await.expect_err("retries run out");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.is_retryable());
    assert!(err.to_string().ends_with("(3 attempts)"), "{err}");
    assert_one_id_repeated(&request_ids(&server, "DeleteOrg"), 3);
}

#[tokio::test]
async fn a_stalled_write_times_out_and_is_retried_with_the_same_request_id() {
    let options = ClientOptions { request_timeout: Duration::from_millis(200), ..fast_options() };
    let (server, client) = start_with(options).await;
    server.inject(Fault::Stall, 1);
    let org = client.create_org(Region::Eu, "Acme").await.expect("the second attempt succeeds");
    assert_one_id_repeated(&request_ids(&server, "CreateOrg"), 2);
    assert_eq!(server.orgs(), vec![org]);
    let timeouts: Vec<_> = server.calls().into_iter().map(|c| c.grpc_timeout).collect();
    assert!(timeouts.iter().all(Option::is_some), "every attempt tells the server its deadline: {timeouts:?}");
}

#[tokio::test]
async fn the_total_timeout_bounds_a_call() {
    let options = ClientOptions {
        request_timeout: Duration::from_millis(100),
        total_timeout: Duration::from_millis(350),
        max_retries: 100,
        ..fast_options()
    };
    let (server, client) = start_with(options).await;
    server.inject(Fault::Stall, 100);
    let started = Instant::now();
    let err = client.update_org("eu-00000000000000000000000000", "x", None).await.expect_err("time runs out");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err} {:?}", err.grpc_status());
    // Three full attempts fit in the budget and a fourth gets what is left of it; a loaded
    // machine may fit fewer, never more.
    let attempts = request_ids(&server, "UpdateOrg").len();
    assert!((2..=4).contains(&attempts), "{attempts} attempts");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_callers_request_id_makes_a_repeated_write_apply_once() {
    let (server, client) = start().await;
    let id: RequestId = "deploy-2024-05-01".parse().unwrap();
    let first = client.create_org_with_request_id(Region::Us, "Acme", &id).await.unwrap();
    let again = client.create_org_with_request_id(Region::Us, "Acme", &id).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(server.orgs().len(), 1);
    assert_eq!(request_ids(&server, "CreateOrg"), vec!["deploy-2024-05-01".to_string(); 2]);
    // Without a caller id, each logical call gets its own.
    client.create_org(Region::Us, "Acme").await.unwrap();
    client.create_org(Region::Us, "Acme").await.unwrap();
    let ids = request_ids(&server, "CreateOrg");
    assert_ne!(ids[2], ids[3]);
    assert_eq!(server.orgs().len(), 3);
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_after_the_retries() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client =
        Client::with_options(&format!("127.0.0.1:{port}"), ClientOptions { max_retries: 1, ..fast_options() }).unwrap();
    let err = client.cluster_status().await.expect_err("nothing listens");
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.to_string().ends_with("(2 attempts)"), "{err}");
    assert!(err.hint().starts_with("the endpoint could not be reached"), "{}", err.hint());
    assert!(err.message().starts_with(&format!("127.0.0.1:{port}: ")), "{err}");
}

#[tokio::test]
async fn the_bearer_token_is_sent_with_every_call() {
    let options = ClientOptions { bearer_token: Some("s3cret".into()), ..fast_options() };
    let (server, client) = start_with(options).await;
    client.topology().await.unwrap();
    client.create_org(Region::Eu, "Acme").await.unwrap();
    let tokens: Vec<_> = server.calls().into_iter().map(|c| c.authorization).collect();
    assert_eq!(tokens, vec![Some("Bearer s3cret".to_string()); 2]);

    let anonymous = Client::with_options(&server.endpoint(), fast_options()).unwrap();
    anonymous.topology().await.unwrap();
    assert_eq!(server.calls().last().unwrap().authorization, None);
}
