//! Moving an org through the fake's `MoveService`: the calls, and what the client does when a
//! `MoveOrg` (which carries no request id) fails after it may have started the move.

use orgplane_client::testing::{FakeServer, Fault, MoveScript};
use orgplane_client::{ClientError, Consistency};
use orgplane_model::relocation::MovePhase;
use orgplane_model::{Region, Role};
use tonic::Code;

use crate::start;

/// The RPC names the fake received, in order, leaving out the test's own setup calls.
fn move_calls(server: &FakeServer) -> Vec<&'static str> {
    server.calls().into_iter().map(|c| c.rpc).filter(|rpc| !matches!(*rpc, "CreateOrg" | "AddMember")).collect()
}

#[tokio::test]
async fn a_move_runs_to_done_and_the_status_says_where_the_org_lives() {
    let (server, client) = start().await;
    let org = client.create_org(Region::Eu, "Acme").await.unwrap();
    client.add_member(&org.id, "alice", Role::Admin).await.unwrap();

    let started = client.move_org(&org.id, Region::Us, false).await.expect("the move starts");
    assert_eq!(started.phase, "reserved");
    assert_eq!((started.source_region.as_str(), started.target_region.as_str()), ("eu", "us"));
    assert_eq!((started.from_epoch, started.to_epoch), (1, 2));
    assert!(!started.move_id.is_empty());

    let mut phases = Vec::new();
    let status = loop {
        let status = client.move_status(&org.id).await.unwrap();
        assert_eq!(status.org_move.move_id, started.move_id);
        phases.push(status.org_move.phase.clone());
        if status.org_move.phase == MovePhase::Done.as_str() {
            break status;
        }
        assert!(phases.len() < 10, "the move ends: {phases:?}");
    };
    assert_eq!(phases, ["copying", "frozen", "switched", "cleaning_up", "done"]);
    assert_eq!((status.home_region.as_str(), status.epoch), ("us", 2));
    assert_eq!(status.org_move.records, 2, "the org and its member");
    assert!(status.org_move.bytes_copied > 0);
    assert!(status.org_move.write_pause_ms.is_some());
    assert_eq!(client.get_org(&org.id, Consistency::Linearizable).await.unwrap().org.region, "us");

    let residency = client.residency(&org.id).await.unwrap();
    assert_eq!((residency.home_region.as_str(), residency.epoch), ("us", 2));
    let node = |region: &str| residency.nodes.iter().find(|n| n.region == region).expect("a node per region");
    assert_eq!(node("us").state_records, 2);
    assert_eq!((node("eu").state_records, node("eu").forwarding), (0, true));
    assert_eq!((node("eu").forwarding_region.as_str(), node("eu").forwarding_epoch), ("us", 2));
    assert_eq!(move_calls(&server)[..2], ["GetMoveStatus", "MoveOrg"], "the status is read before the move");
}

#[tokio::test]
async fn a_dry_run_changes_nothing() {
    let (server, client) = start().await;
    let org = client.create_org(Region::Eu, "Acme").await.unwrap();
    let would = client.move_org(&org.id, Region::Apac, true).await.expect("the move could start");
    assert_eq!((would.move_id.as_str(), would.target_region.as_str()), ("", "apac"));
    assert!(server.moves().is_empty());
    assert_eq!(server.orgs(), vec![org.clone()]);
    let never = client.move_status(&org.id).await.expect_err("the org never moved");
    assert_eq!(never.code(), Code::NotFound);
}

#[tokio::test]
async fn a_move_whose_answer_was_lost_is_found_by_its_status_and_not_sent_again() {
    let (server, client) = start().await;
    let org = client.create_org(Region::Eu, "Acme").await.unwrap();
    server.inject_into("MoveOrg", Fault::LoseAnswer(Code::Unavailable), 1);
    let started = client.move_org(&org.id, Region::Us, false).await.expect("the status shows the move started");
    assert_eq!(server.moves().len(), 1);
    assert_eq!(started.move_id, server.moves()[0].move_id);
    assert_eq!(started.target_region, "us");
    assert_eq!(move_calls(&server), ["GetMoveStatus", "MoveOrg", "GetMoveStatus"], "MoveOrg was sent once");
}

#[tokio::test]
async fn a_move_refused_before_it_started_is_sent_again() {
    let (server, client) = start().await;
    let org = client.create_org(Region::Eu, "Acme").await.unwrap();
    server.inject_into("MoveOrg", Fault::Refuse(Code::Unavailable), 1);
    let started = client.move_org(&org.id, Region::Us, false).await.expect("the second attempt starts it");
    assert_eq!(server.moves().len(), 1);
    assert_eq!(started.move_id, server.moves()[0].move_id);
    assert_eq!(move_calls(&server), ["GetMoveStatus", "MoveOrg", "GetMoveStatus", "MoveOrg"]);
}

#[tokio::test]
async fn an_earlier_move_is_not_taken_for_this_one() {
    let (server, client) = start().await;
    let org = client.create_org(Region::Eu, "Acme").await.unwrap();
    let first = client.move_org(&org.id, Region::Us, false).await.unwrap();
    while client.move_status(&org.id).await.unwrap().org_move.phase != "done" {}
    // Back to eu; the first attempt is refused, so the latest move is still the first one
    // (to us, not eu): the client sends the call again.
    server.inject_into("MoveOrg", Fault::Refuse(Code::Unavailable), 1);
    let back = client.move_org(&org.id, Region::Eu, false).await.unwrap();
    assert_ne!(back.move_id, first.move_id);
    assert_eq!(back.target_region, "eu");
    assert_eq!(server.calls().iter().filter(|c| c.rpc == "MoveOrg").count(), 3);
}

#[tokio::test]
async fn when_neither_the_move_nor_its_check_answers_the_error_says_it_may_have_started() {
    let (server, client) = start().await;
    let org = client.create_org(Region::Eu, "Acme").await.unwrap();
    // The status read before the move finds none; the move starts but its answer is lost; then
    // the region with its status stays unavailable.
    server.inject_into("GetMoveStatus", Fault::Refuse(Code::NotFound), 1);
    server.inject_into("MoveOrg", Fault::LoseAnswer(Code::Unavailable), 1);
    server.inject_into("GetMoveStatus", Fault::Refuse(Code::Unavailable), 100);
    let err = client.move_org(&org.id, Region::Us, false).await.expect_err("the outcome is unknown");
    assert!(matches!(err, ClientError::MoveOutcomeUnknown { .. }), "{err:?}");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(!err.is_retryable(), "not to be sent again blindly");
    assert!(err.to_string().contains("may have started"), "{err}");
    assert!(err.hint().contains("move-status"), "{}", err.hint());
    assert_eq!(server.moves().len(), 1, "it did start");
    assert_eq!(server.calls().iter().filter(|c| c.rpc == "MoveOrg").count(), 1, "and was sent once");
}

#[tokio::test]
async fn a_refused_move_is_not_retried_or_checked() {
    let (server, client) = start().await;
    let org = client.create_org(Region::Eu, "Acme").await.unwrap();
    let err = client.move_org(&org.id, Region::Eu, false).await.expect_err("the org is in eu already");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("already"), "{err}");
    assert_eq!(move_calls(&server), ["GetMoveStatus", "MoveOrg"]);

    client.move_org(&org.id, Region::Us, false).await.unwrap();
    let busy = client.move_org(&org.id, Region::Apac, false).await.expect_err("one move at a time");
    assert_eq!(busy.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn a_move_is_aborted_before_the_switch_only() {
    let (server, client) = start().await;
    let org = client.create_org(Region::Eu, "Acme").await.unwrap();
    client.move_org(&org.id, Region::Us, false).await.unwrap();
    let aborted = client.abort_move(&org.id, "customer changed their mind").await.unwrap();
    assert_eq!((aborted.phase.as_str(), aborted.reason.as_str()), ("aborted", "customer changed their mind"));
    assert_eq!(server.orgs()[0].region, "eu", "the org stays");

    client.move_org(&org.id, Region::Us, false).await.unwrap();
    while client.move_status(&org.id).await.unwrap().org_move.phase != "switched" {}
    let late = client.abort_move(&org.id, "too late").await.expect_err("switched moves only complete");
    assert_eq!(late.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn an_abort_whose_answer_was_lost_reports_the_aborted_move() {
    let (server, client) = start().await;
    let org = client.create_org(Region::Eu, "Acme").await.unwrap();
    server.script_moves(MoveScript::Stall);
    client.move_org(&org.id, Region::Us, false).await.unwrap();
    server.inject_into("AbortMove", Fault::LoseAnswer(Code::Unavailable), 1);
    let aborted = client.abort_move(&org.id, "ops").await.expect("the first attempt aborted it");
    assert_eq!(aborted.phase, "aborted");
    assert_eq!(server.calls().iter().filter(|c| c.rpc == "AbortMove").count(), 2);
}
