//! The real `orgctl` binary against the in-memory fake server of
//! `orgplane_client::testing`: JSON output parsed back, table output read, and the error path
//! (exit code, stderr naming the status and the hint, nothing on stdout).

use std::process::Output;

use orgplane_client::testing::{FakeServer, Fault, MoveScript};
use orgplane_client::v1;
use orgplane_model::relocation::MovePhase;
use orgplane_model::Region;
use serde_json::Value;
use tonic::Code;

/// Runs orgctl against `server` with `args`; the environment's orgplane variables are
/// removed so the test sees only what it passes.
async fn orgctl(server: &FakeServer, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_orgctl"))
        .arg("--endpoint")
        .arg(server.endpoint())
        .args(args)
        .env_remove("ORGPLANE_ENDPOINT")
        .env_remove("ORGPLANE_TOKEN")
        .env_remove("ORGPLANE_LOG")
        .output()
        .await
        .expect("orgctl runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8 output")
}

/// Runs a command with `--output json` that must succeed, and parses its one document.
async fn json(server: &FakeServer, args: &[&str]) -> Value {
    let output = orgctl(server, &[args, &["--output", "json"]].concat()).await;
    assert!(output.status.success(), "{args:?}: {}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{args:?}: stdout is not one JSON document: {e}"))
}

/// Asserts a failed run: exit code, the `error:` and `hint:` lines, and an empty stdout.
fn assert_failed(output: &Output, exit_code: i32, code_name: &str, hint: &str) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(exit_code), "{stderr}");
    assert!(stderr.contains(&format!("error: {code_name}: ")), "{stderr}");
    assert!(stderr.contains(&format!("hint: {hint}")), "{stderr}");
    assert!(output.stdout.is_empty(), "stdout: {}", text(&output.stdout));
}

#[tokio::test]
async fn orgs_and_members_round_trip_through_json() {
    let server = FakeServer::start().await.unwrap();

    let created =
        json(&server, &["org", "create", "--region", "eu", "--name", "Acme", "--request-id", "ci-run-7"]).await;
    let id = created["org"]["id"].as_str().expect("an id").to_string();
    assert_eq!(created["org"]["version"], 1);
    assert_eq!(server.calls()[0].request_id, "ci-run-7");
    let again = json(&server, &["org", "create", "--region", "eu", "--name", "Acme", "--request-id", "ci-run-7"]).await;
    assert_eq!(again["org"]["id"], id.as_str(), "the same request id creates nothing new");

    let read = json(&server, &["org", "get", &id, "--local"]).await;
    assert_eq!(read["org"]["name"], "Acme");
    assert_eq!(read["read"]["consistency"], "local");

    let renamed = json(&server, &["org", "update", &id, "--name", "Acme Corp", "--expected-version", "1"]).await;
    assert_eq!((renamed["org"]["name"].as_str(), renamed["org"]["version"].as_u64()), (Some("Acme Corp"), Some(2)));

    for (user, role) in [("bob", "viewer"), ("alice", "admin")] {
        let added = json(&server, &["member", "add", &id, user, "--role", role]).await;
        assert_eq!(added["member"]["role"], role);
    }
    let changed = json(&server, &["member", "set-role", &id, "bob", "--role", "developer"]).await;
    assert_eq!(changed["member"]["role"], "developer");
    let page = json(&server, &["member", "list", &id, "--page-size", "1"]).await;
    assert_eq!(page["members"][0]["user_id"], "alice");
    let token = page["next_page_token"].as_str().expect("a second page").to_string();
    let rest = json(&server, &["member", "list", &id, "--page-token", &token]).await;
    assert_eq!(rest["members"][0]["user_id"], "bob");
    assert_eq!(rest["next_page_token"], Value::Null);
    let removed = json(&server, &["member", "remove", &id, "bob"]).await;
    assert_eq!(removed["removed"]["user_id"], "bob");
    assert_eq!(json(&server, &["member", "list", &id, "--all"]).await["members"].as_array().unwrap().len(), 1);

    let deleted = json(&server, &["org", "delete", &id, "--expected-version", "2"]).await;
    assert_eq!(deleted["deleted"]["removed_members"], 1);
}

#[tokio::test]
async fn lists_page_and_print_tables() {
    let server = FakeServer::start().await.unwrap();
    for n in 0..3 {
        json(&server, &["org", "create", "--region", "apac", "--name", &format!("team {n}")]).await;
    }
    let first = json(&server, &["org", "list", "--region", "apac", "--page-size", "2"]).await;
    assert_eq!(first["orgs"].as_array().unwrap().len(), 2);
    assert!(first["next_page_token"].is_string());
    let all = json(&server, &["org", "list", "--region", "apac", "--all"]).await;
    assert_eq!(all["orgs"].as_array().unwrap().len(), 3);
    assert_eq!(all["next_page_token"], Value::Null);

    let table = orgctl(&server, &["org", "list", "--region", "apac"]).await;
    assert!(table.status.success());
    let stdout = text(&table.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("ID "), "{stdout}");
    assert_eq!(lines.len(), 4, "a header and three rows: {stdout}");
    assert!(lines[1..].iter().all(|l| l.starts_with("apac-")), "{stdout}");
    // Columns line up: NAME starts at the same offset on every line.
    let name_at = lines[0].find("NAME").unwrap();
    assert!(lines[1..].iter().all(|l| l[name_at..].starts_with("team ")), "{stdout}");
}

#[tokio::test]
async fn a_partial_user_list_is_reported_in_json_and_on_stderr() {
    let server = FakeServer::start().await.unwrap();
    let us = json(&server, &["org", "create", "--region", "us", "--name", "in us"]).await;
    let us_id = us["org"]["id"].as_str().unwrap().to_string();
    json(&server, &["member", "add", &us_id, "alice", "--role", "agent"]).await;
    server.set_region_result(Region::Apac, v1::RegionState::Unavailable, "region apac has no leader");

    let output = orgctl(&server, &["user", "orgs", "alice", "--output", "json"]).await;
    assert!(output.status.success(), "a partial list is still an answer");
    let document: Value = serde_json::from_slice(&output.stdout).expect("one JSON document");
    assert_eq!(document["partial"], true);
    assert_eq!(document["orgs"][0]["role"], "agent");
    let states: Vec<&str> =
        document["regions"].as_array().unwrap().iter().map(|r| r["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["ok", "ok", "unavailable"]);
    assert_eq!(text(&output.stderr), "warning: the list is partial: no answer from region apac (unavailable)\n");

    let table = orgctl(&server, &["user", "orgs", "alice"]).await;
    let stdout = text(&table.stdout);
    assert!(stdout.contains("apac    unavailable  region apac has no leader"), "{stdout}");
    assert!(text(&table.stderr).starts_with("warning: the list is partial"), "the warning is on stderr");
}

#[tokio::test]
async fn cluster_commands_print_every_region() {
    let server = FakeServer::start().await.unwrap();
    let status = json(&server, &["cluster", "status"]).await;
    let regions = status["regions"].as_array().unwrap();
    assert_eq!(regions.len(), 3);
    assert_eq!(regions[0]["nodes"][0]["role"], "leader");
    let topology = json(&server, &["cluster", "topology"]).await;
    assert_eq!(topology["regions"][2]["region"], "apac");
    assert_eq!(topology["regions"][2]["endpoints"].as_array().unwrap().len(), 3);

    let table = text(&orgctl(&server, &["cluster", "status"]).await.stdout);
    assert!(table.starts_with("REGION  NODE  ADDRESS"), "{table}");
    assert_eq!(table.lines().filter(|l| l.ends_with("healthy")).count(), 9, "{table}");
}

#[tokio::test]
async fn server_errors_name_the_status_and_the_hint() {
    let server = FakeServer::start().await.unwrap();
    let missing = orgctl(&server, &["org", "get", "eu-00000000000000000000000000", "--output", "json"]).await;
    assert_failed(&missing, 1, "NOT_FOUND", "check the id");

    let created = json(&server, &["org", "create", "--region", "us", "--name", "Acme"]).await;
    let id = created["org"]["id"].as_str().unwrap().to_string();
    let stale = orgctl(&server, &["org", "update", &id, "--name", "New", "--expected-version", "7"]).await;
    assert_failed(&stale, 1, "ABORTED", "someone changed it first: get it again and retry with the new version");

    let invalid = orgctl(&server, &["member", "add", &id, "has space", "--role", "viewer"]).await;
    assert_failed(&invalid, 1, "INVALID_ARGUMENT", "the input was refused");

    server.inject(Fault::Refuse(Code::Unavailable), 100);
    let down = orgctl(&server, &["cluster", "topology", "--timeout", "1"]).await;
    assert_failed(&down, 1, "UNAVAILABLE", "the region may be down or electing a leader; retry");
}

#[tokio::test]
async fn usage_errors_exit_with_2() {
    let server = FakeServer::start().await.unwrap();
    let bad_region = orgctl(&server, &["org", "create", "--region", "mars", "--name", "x"]).await;
    assert_eq!(bad_region.status.code(), Some(2));
    assert!(text(&bad_region.stderr).contains("unknown region"), "{}", text(&bad_region.stderr));
    assert!(bad_region.stdout.is_empty());
    assert!(server.calls().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn the_endpoint_and_token_come_from_flags_or_the_environment() {
    let server = FakeServer::start().await.unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_orgctl"))
        .args(["cluster", "topology", "--output", "json"])
        .env("ORGPLANE_ENDPOINT", format!("http://{}", server.endpoint()))
        .env("ORGPLANE_TOKEN", "from-env")
        .env_remove("ORGPLANE_LOG")
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(server.calls()[0].authorization.as_deref(), Some("Bearer from-env"));

    json(&server, &["cluster", "topology", "--token", "from-flag"]).await;
    assert_eq!(server.calls()[1].authorization.as_deref(), Some("Bearer from-flag"));
    json(&server, &["cluster", "topology"]).await;
    assert_eq!(server.calls()[2].authorization, None);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_orgctl"))
        .args(["--endpoint", &format!("127.0.0.1:{port}"), "cluster", "status", "--timeout", "2"])
        .env_remove("ORGPLANE_LOG")
        .output()
        .await
        .unwrap();
    assert_failed(&output, 1, "UNAVAILABLE", "the endpoint could not be reached");
}

/// Creates an org in eu with one member through the fake; returns its id.
async fn eu_org_with_a_member(server: &FakeServer) -> String {
    let created = json(server, &["org", "create", "--region", "eu", "--name", "Acme"]).await;
    let id = created["org"]["id"].as_str().expect("an id").to_string();
    json(server, &["member", "add", &id, "alice", "--role", "admin"]).await;
    id
}

#[tokio::test]
async fn a_move_is_followed_to_done_with_one_line_per_phase_and_one_json_document() {
    let server = FakeServer::start().await.unwrap();
    let id = eu_org_with_a_member(&server).await;

    let output = orgctl(&server, &["org", "move", &id, "--to", "us", "--output", "json"]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("stdout is one JSON document");
    let moved = &report["move"];
    assert_eq!((moved["phase"].as_str(), moved["to_epoch"].as_u64()), (Some("done"), Some(2)), "{report}");
    assert_eq!((moved["source_region"].as_str(), moved["target_region"].as_str()), (Some("eu"), Some("us")));
    assert_eq!(moved["records"], 2, "{report}");
    // stderr is not a terminal here: one line per phase, in order.
    let phases: Vec<String> = ["reserved", "copying", "frozen", "switched", "cleaning_up", "done"]
        .iter()
        .map(|phase| format!("move move-1 of org {id} (eu → us): {phase}"))
        .collect();
    assert_eq!(text(&output.stderr).lines().collect::<Vec<_>>(), phases);

    let read = json(&server, &["org", "get", &id]).await;
    assert_eq!((read["org"]["region"].as_str(), read["org"]["epoch"].as_u64()), (Some("us"), Some(2)));
    let status = json(&server, &["org", "move-status", &id]).await;
    assert_eq!((status["home_region"].as_str(), status["epoch"].as_u64()), (Some("us"), Some(2)));
    assert_eq!(status["move"]["move_id"], "move-1");
    let residency = json(&server, &["org", "residency", &id]).await;
    let eu = residency["nodes"].as_array().unwrap().iter().find(|n| n["region"] == "eu").expect("an eu node").clone();
    assert_eq!((eu["state_records"].as_u64(), eu["forwarding_region"].as_str()), (Some(0), Some("us")), "{eu}");

    let table = text(&orgctl(&server, &["org", "residency", &id]).await.stdout);
    assert!(table.starts_with(&format!("org {id} lives in us, epoch 2\n\nREGION  NODE")), "{table}");
    let table = text(&orgctl(&server, &["org", "move-status", &id]).await.stdout);
    assert!(table.contains("lives in      us, epoch 2\n"), "{table}");
    assert!(table.contains("regions       eu → us\n"), "{table}");
}

#[tokio::test]
async fn an_aborted_move_fails_with_its_reason() {
    let server = FakeServer::start().await.unwrap();
    let id = eu_org_with_a_member(&server).await;
    server.script_moves(MoveScript::AbortAfter { after: MovePhase::Copying, reason: "target region full".into() });
    let output = orgctl(&server, &["org", "move", &id, "--to", "us", "--output", "json"]).await;
    assert_failed(&output, 1, "ABORTED", "the org is served by its old region as before");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("was aborted: target region full; the org stays in eu"), "{stderr}");
    assert!(stderr.contains(": copying\n"), "the phases were shown before: {stderr}");
}

#[tokio::test]
async fn a_wait_that_runs_out_fails_and_says_how_to_follow_the_move() {
    let server = FakeServer::start().await.unwrap();
    let id = eu_org_with_a_member(&server).await;
    server.script_moves(MoveScript::Stall);
    let started = std::time::Instant::now();
    let output = orgctl(&server, &["org", "move", &id, "--to", "us", "--timeout", "1"]).await;
    assert_failed(&output, 1, "DEADLINE_EXCEEDED", "the router drives the move without orgctl");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("is still reserved after 1 s"), "{stderr}");
    assert!(stderr.contains(&format!("orgctl org move-status {id}")), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "bounded by --timeout: {:?}", started.elapsed());
    let polls = server.calls().iter().filter(|c| c.rpc == "GetMoveStatus").count();
    assert!(polls >= 3, "it polled while it waited: {polls}");
}

#[tokio::test]
async fn a_dry_run_changes_nothing_and_no_wait_returns_at_once() {
    let server = FakeServer::start().await.unwrap();
    let id = eu_org_with_a_member(&server).await;
    let dry = orgctl(&server, &["org", "move", &id, "--to", "apac", "--dry-run"]).await;
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    assert_eq!(
        text(&dry.stdout),
        format!("dry run: org {id} can move from eu to apac (epoch 1 → 2); nothing changed\n")
    );
    assert!(server.moves().is_empty());
    let never = json(&server, &["org", "move-status", &id]).await;
    assert_eq!((never["move"].clone(), never["home_region"].as_str()), (Value::Null, Some("eu")), "{never}");

    let calls_before = server.calls().len();
    let started = json(&server, &["org", "move", &id, "--to", "apac", "--no-wait"]).await;
    assert_eq!(started["move"]["phase"], "reserved");
    let rpcs: Vec<_> = server.calls()[calls_before..].iter().map(|c| c.rpc).collect();
    assert_eq!(rpcs, ["GetMoveStatus", "MoveOrg"], "no polling");

    let again = orgctl(&server, &["org", "move", &id, "--to", "us"]).await;
    assert_failed(&again, 1, "FAILED_PRECONDITION", "the current state does not allow this");
    let aborted = json(&server, &["org", "move-abort", &id, "--reason", "wrong region"]).await;
    assert_eq!(
        (aborted["move"]["phase"].as_str(), aborted["move"]["reason"].as_str()),
        (Some("aborted"), Some("wrong region"))
    );

    let missing = orgctl(&server, &["org", "move-status", "eu-00000000000000000000000000"]).await;
    assert_failed(&missing, 1, "NOT_FOUND", "check the id");
}
