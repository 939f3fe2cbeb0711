//! Moving an org between regions online (issue #9), end to end: an EU region and a US region
//! of three nodes each behind an authenticating router.
//!
//! - Under steady writes and reads from several clients, the org moves EU -> US: every
//!   acknowledged write is in the US afterwards, every read after an acknowledged write sees
//!   it, the write pause is measured (and printed); the EU nodes keep nothing of the org but
//!   the forwarding record: its name is in no file of theirs, and the residency report agrees.
//! - A router that never saw the move reaches the new home on the first forwarding answer;
//!   the old region refuses a request carrying the old epoch, and applies nothing.
//! - The process driving a move dies at each step (this test drives the steps itself through
//!   the nodes' internal API, then stops): a router asked about the move resumes it to the end;
//!   leaders of the source and the target die mid-move and the move still completes; an abort
//!   before the switch rolls back. At every step at most one region serves the org.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use orgplane_client::{Client, Consistency};
use orgplane_model::relocation::{MoveNote, MovePhase, MoveStep};
use orgplane_model::{ConfigEntry, OrgId, Region, Role};
use orgplane_proto::conv::{MOVED_TO_HEADER, ORG_EPOCH_HEADER};
use orgplane_proto::v1::move_service_client::MoveServiceClient;
use orgplane_proto::v1::org_service_client::OrgServiceClient;
use orgplane_proto::v1::{self, apply_move_step_response};
use orgplane_tests::auth::{authenticated, client_as, test_key};
use orgplane_tests::router::{start_router, RouterAuth};
use orgplane_tests::{files_containing, TestRegion, WAIT};
use tokio::sync::oneshot;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

const SECRET: &str = "sk-live-move-7d2e41";

type AddToken = Box<dyn FnMut(Request<()>) -> Result<Request<()>, Status> + Send + Sync>;
type Authed = InterceptedService<Channel, AddToken>;

/// A gRPC channel to `addr` whose calls carry an ops (platform admin) token.
fn ops_channel(addr: &str) -> Authed {
    let token = test_key().token("ops", true, None, Duration::from_secs(3600)).expect("a token");
    let bearer: MetadataValue<_> = format!("Bearer {token}").parse().expect("header");
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .connect_lazy();
    let add: AddToken = Box::new(move |mut r| {
        r.metadata_mut().insert("authorization", bearer.clone());
        Ok(r)
    });
    InterceptedService::new(channel, add)
}

fn moves_at(addr: &str) -> MoveServiceClient<Authed> {
    MoveServiceClient::new(ops_channel(addr))
}

fn orgs_at(addr: &str) -> OrgServiceClient<Authed> {
    OrgServiceClient::new(ops_channel(addr))
}

struct World {
    eu: TestRegion,
    us: TestRegion,
    router: String,
    _stop: oneshot::Sender<()>,
}

impl World {
    async fn start() -> World {
        let eu = TestRegion::start(Region::Eu, 3, authenticated).await;
        let us = TestRegion::start(Region::Us, 3, authenticated).await;
        eu.leader().await;
        us.leader().await;
        let (router, stop) = start_router(&[&eu, &us], RouterAuth::Tokens).await;
        World { eu, us, router, _stop: stop }
    }

    fn ops(&self) -> Client {
        client_as(&self.router, "ops", true, None)
    }

    /// An EU org named `name` with an Admin, a Developer, an integration holding a secret,
    /// a phone number and an app.
    async fn rich_org(&self, name: &str) -> String {
        let ops = self.ops();
        let org = ops.create_org(Region::Eu, name).await.unwrap().id;
        ops.add_member(org.as_str(), "alice", Role::Admin).await.unwrap();
        ops.add_member(org.as_str(), "dev", Role::Developer).await.unwrap();
        let alice = client_as(&self.router, "alice", false, None);
        alice
            .create_integration(org.as_str(), "crm", "salesforce", &[ConfigEntry::secret("token", SECRET)])
            .await
            .unwrap();
        alice.create_phone_number(org.as_str(), "+4930901820", "berlin").await.unwrap();
        org
    }

    async fn shutdown(self) {
        self.eu.shutdown().await;
        self.us.shutdown().await;
    }
}

/// Polls the router until the org's latest move is in one of `phases`; returns it.
async fn wait_for_phase(router: &str, org: &str, phases: &[&str]) -> v1::OrgMove {
    let mut moves = moves_at(router);
    let deadline = Instant::now() + WAIT * 4;
    let mut last = None;
    loop {
        let status = moves.get_move_status(v1::GetMoveStatusRequest { org_id: org.into() }).await;
        if let Ok(status) = status {
            let record = status.into_inner().r#move.expect("a move");
            if phases.contains(&record.phase.as_str()) {
                return record;
            }
            last = Some(record);
        }
        assert!(Instant::now() < deadline, "the move of {org} did not reach {phases:?} in time: {last:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the router until the org's latest move has ended; returns it.
async fn wait_for_end(router: &str, org: &str) -> v1::OrgMove {
    wait_for_phase(router, org, &["done", "aborted"]).await
}

/// The regions whose nodes answer a linearizable read of the org (straight to a node, no
/// router): where the org is served right now.
async fn serving_regions(world: &World, org: &str) -> Vec<Region> {
    let mut serving = Vec::new();
    for region in [&world.eu, &world.us] {
        let leader = region.leader().await;
        let answer = orgs_at(&region.peers[&leader])
            .get_org(v1::GetOrgRequest { org_id: org.into(), ..Default::default() })
            .await;
        if answer.is_ok() {
            serving.push(region.region);
        }
    }
    serving
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_org_moves_under_load_keeps_every_write_and_its_old_region_forgets_it() {
    let world = World::start().await;
    let name = "Zephyr Orbital Freight";
    let org = world.rich_org(name).await;

    // Several clients write and read the org through the router while it moves.
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (router, org, stop, acknowledged) = (world.router.clone(), org.clone(), stop.clone(), acknowledged.clone());
        writers.push(tokio::spawn(async move {
            let client = client_as(&router, "alice", false, None);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let user = format!("w{w}-u{n}");
                n += 1;
                if client.add_member(org.as_str(), &user, Role::Agent).await.is_ok() {
                    acknowledged.lock().unwrap().insert(user.clone());
                    // A read after an acknowledged write sees it, whichever region answers.
                    let seen = client.list_all_members(org.as_str(), Consistency::Linearizable).await.unwrap();
                    assert!(seen.items.iter().any(|m| m.user_id == user), "{user} acknowledged but not read back");
                }
            }
        }));
    }
    // Let the load run before the move begins.
    let before = Instant::now();
    while acknowledged.lock().unwrap().len() < 20 {
        assert!(before.elapsed() < WAIT, "the load did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let started = moves_at(&world.router)
        .move_org(v1::MoveOrgRequest { org_id: org.clone(), to_region: "us".into(), dry_run: false })
        .await
        .expect("the move starts")
        .into_inner()
        .r#move
        .unwrap();
    assert_eq!((started.source_region.as_str(), started.target_region.as_str()), ("eu", "us"));
    let done = wait_for_end(&world.router, &org).await;
    let writes_during = acknowledged.lock().unwrap().len();
    // Some more writes after the switch, then stop.
    while acknowledged.lock().unwrap().len() < writes_during + 20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("a writer failed");
    }
    assert_eq!(done.phase, "done", "{done:?}");
    assert_eq!((done.from_epoch, done.to_epoch), (1, 2));
    let pause = done.write_pause_ms.expect("the write pause is measured");
    println!(
        "move of {org}: {} records, {} bytes copied, write pause {pause} ms, {} writes acknowledged",
        done.records,
        done.bytes_copied,
        acknowledged.lock().unwrap().len()
    );

    // Every acknowledged write is in the new region; the org kept its id, members and
    // resources, and says where it lives.
    let ops = world.ops();
    let read = ops.get_org(org.as_str(), Consistency::Linearizable).await.unwrap();
    let moved = read.org;
    assert_eq!((moved.region.as_str(), moved.epoch, moved.name.as_str()), ("us", 2, name));
    assert_eq!(read.read.as_ref().map(|r| r.region.as_str()), Some("us"), "answered by the new region");
    let members: BTreeSet<String> = ops
        .list_all_members(org.as_str(), Consistency::Linearizable)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    for user in acknowledged.lock().unwrap().iter() {
        assert!(members.contains(user), "acknowledged member {user} lost in the move");
    }
    let alice = client_as(&world.router, "alice", false, None);
    assert_eq!(alice.list_integrations(org.as_str(), Default::default()).await.unwrap().items.len(), 1);
    let alices = alice.list_all_user_orgs("alice", Consistency::Linearizable).await.unwrap();
    let listed: Vec<_> = alices.orgs.iter().filter_map(|o| o.org.as_ref()).filter(|o| o.id == org).collect();
    assert_eq!(listed.len(), 1, "the user's org list names it once");
    assert_eq!(listed[0].region, "us");

    // The old region: nothing of the org in any file of any of its nodes.
    for id in world.eu.running_ids() {
        let dir = world.eu.data_dir(id);
        for needle in [name.as_bytes(), SECRET.as_bytes(), b"alice"] {
            let files = files_containing(&dir, needle);
            assert!(files.is_empty(), "eu node {id} still holds {:?} in {files:?}", String::from_utf8_lossy(needle));
        }
    }
    for id in world.us.running_ids() {
        assert!(!files_containing(&world.us.data_dir(id), name.as_bytes()).is_empty(), "us node {id} holds the org");
    }
    // The residency report, each node checking itself, agrees.
    let report = moves_at(&world.router)
        .get_residency(v1::GetResidencyRequest { org_id: org.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((report.home_region.as_str(), report.epoch), ("us", 2));
    assert_eq!(report.nodes.len(), 6, "{report:?}");
    for node in &report.nodes {
        assert!(node.error.is_empty(), "{node:?}");
        match node.region.as_str() {
            "eu" => {
                assert_eq!(node.state_records, 0, "{node:?}");
                assert!(node.forwarding && node.forwarding_region == "us" && node.forwarding_epoch == 2, "{node:?}");
                assert!(node.files.is_empty() && !node.in_snapshot && node.log_entries == 0, "{node:?}");
            }
            _ => assert!(node.state_records > 0 && !node.files.is_empty() && !node.forwarding, "{node:?}"),
        }
    }
    world.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fresh_router_follows_the_forwarding_and_the_old_region_refuses_the_old_epoch() {
    let world = World::start().await;
    let org = world.rich_org("Stale Cache Ltd").await;
    moves_at(&world.router)
        .move_org(v1::MoveOrgRequest { org_id: org.clone(), to_region: "us".into(), dry_run: false })
        .await
        .unwrap();
    assert_eq!(wait_for_end(&world.router, &org).await.phase, "done");

    // A router that never saw the move: its first request is answered by the new home.
    let (fresh, _stop) = start_router(&[&world.eu, &world.us], RouterAuth::Tokens).await;
    let read = client_as(&fresh, "alice", false, None).get_org(org.as_str(), Consistency::Linearizable).await.unwrap();
    assert_eq!(read.org.region, "us");
    assert_eq!(read.read.as_ref().map(|r| r.region.as_str()), Some("us"), "answered by the new region");

    // Straight to the old region with the old epoch: refused, saying where the org went.
    let eu_node = world.eu.peers[&world.eu.leader().await].clone();
    let mut request = Request::new(v1::AddMemberRequest {
        org_id: org.clone(),
        user_id: "mallory".into(),
        role: "admin".into(),
        ..Default::default()
    });
    request.metadata_mut().insert(ORG_EPOCH_HEADER, "1".parse().unwrap());
    let refused = orgs_at(&eu_node).add_member(request).await.expect_err("the old region refuses");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(refused.metadata().get(MOVED_TO_HEADER).unwrap(), "us");
    assert_eq!(refused.metadata().get(ORG_EPOCH_HEADER).unwrap(), "2");
    let members = world.ops().list_all_members(org.as_str(), Consistency::Linearizable).await.unwrap();
    assert!(!members.items.iter().any(|m| m.user_id == "mallory"), "nothing was applied anywhere");
    // Moving it again to where it is, or to a region without nodes, is refused.
    let again = moves_at(&world.router)
        .move_org(v1::MoveOrgRequest { org_id: org.clone(), to_region: "us".into(), dry_run: false })
        .await
        .expect_err("already there");
    assert_eq!(again.code(), Code::InvalidArgument, "{again:?}");
    let nowhere = moves_at(&world.router)
        .move_org(v1::MoveOrgRequest { org_id: org.clone(), to_region: "apac".into(), dry_run: false })
        .await
        .expect_err("no apac nodes");
    assert_eq!(nowhere.code(), Code::NotFound, "{nowhere:?}");
    world.shutdown().await;
}

/// Applies `step` at `region` through one of its nodes, as a driver would.
async fn step(region: &TestRegion, org: &str, step: MoveStep) -> apply_move_step_response::State {
    let node = region.peers[&region.leader().await].clone();
    let request = v1::ApplyMoveStepRequest { org_id: org.into(), step: serde_json::to_vec(&step).unwrap() };
    moves_at(&node).apply_move_step(request).await.expect("the step applies").into_inner().state.expect("a state")
}

/// The source's image of the org for `move_id`.
async fn image(region: &TestRegion, org: &str, move_id: &str) -> Vec<(String, String)> {
    let node = region.peers[&region.leader().await].clone();
    let request = v1::ExportOrgImageRequest { org_id: org.into(), move_id: move_id.into() };
    let mut stream = moves_at(&node).export_org_image(request).await.expect("an image").into_inner();
    let mut records = Vec::new();
    while let Some(chunk) = stream.next().await {
        records.extend(chunk.expect("a chunk").records.into_iter().map(|r| (r.key, r.value)));
    }
    records
}

/// How far a test-driven move goes before its "driver" dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum DiesAfter {
    Reserve,
    Begin,
    FirstCopy,
    Freeze,
    Switch,
    Finish,
}

/// Drives a move of `org` (EU -> US) by hand up to `dies_after`, checking after each step
/// that at most one region serves the org. Returns the move id.
async fn drive_until(world: &World, org: &str, dies_after: DiesAfter) -> String {
    let move_id = format!("manual-{dies_after:?}").to_lowercase();
    let id = || move_id.clone();
    let check = |phase: &'static str| async move {
        let serving = serving_regions(world, org).await;
        assert!(serving.len() <= 1, "after {phase}: {serving:?} serve the org");
    };
    step(&world.us, org, MoveStep::Reserve { move_id: id(), source: Region::Eu, target: Region::Us }).await;
    check("reserve").await;
    if dies_after == DiesAfter::Reserve {
        return move_id;
    }
    step(&world.eu, org, MoveStep::BeginOut { move_id: id(), target: Region::Us }).await;
    let note = MoveNote { from_epoch: Some(1), write_pause_ms: None };
    step(&world.us, org, MoveStep::Advance { move_id: id(), from: MovePhase::Reserved, to: MovePhase::Copying, note })
        .await;
    check("begin").await;
    if dies_after == DiesAfter::Begin {
        return move_id;
    }
    let copy = image(&world.eu, org, &move_id).await;
    step(
        &world.us,
        org,
        MoveStep::Stage { move_id: id(), copy_id: "first".into(), first: true, records: copy, deletes: vec![] },
    )
    .await;
    check("first copy").await;
    if dies_after == DiesAfter::FirstCopy {
        return move_id;
    }
    step(&world.eu, org, MoveStep::Freeze { move_id: id() }).await;
    let note = MoveNote::default();
    step(&world.us, org, MoveStep::Advance { move_id: id(), from: MovePhase::Copying, to: MovePhase::Frozen, note })
        .await;
    assert!(serving_regions(world, org).await.is_empty(), "frozen: writes pause everywhere");
    if dies_after == DiesAfter::Freeze {
        return move_id;
    }
    let copy = image(&world.eu, org, &move_id).await;
    let records = copy.len() as u64;
    step(
        &world.us,
        org,
        MoveStep::Stage { move_id: id(), copy_id: "tail".into(), first: true, records: copy, deletes: vec![] },
    )
    .await;
    step(&world.us, org, MoveStep::Activate { move_id: id(), copy_id: "tail".into(), records, to_epoch: 2 }).await;
    assert_eq!(serving_regions(world, org).await, vec![Region::Us], "switched: only the target serves");
    if dies_after == DiesAfter::Switch {
        return move_id;
    }
    step(&world.eu, org, MoveStep::FinishOut { move_id: id(), epoch: 2 }).await;
    let note = MoveNote::default();
    step(
        &world.us,
        org,
        MoveStep::Advance { move_id: id(), from: MovePhase::Switched, to: MovePhase::CleaningUp, note },
    )
    .await;
    check("finish").await;
    move_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_move_whose_driver_dies_at_any_step_is_resumed_to_the_end_by_a_router() {
    let world = World::start().await;
    for dies_after in [
        DiesAfter::Reserve,
        DiesAfter::Begin,
        DiesAfter::FirstCopy,
        DiesAfter::Freeze,
        DiesAfter::Switch,
        DiesAfter::Finish,
    ] {
        let name = format!("Resumed {dies_after:?} GmbH");
        let org = world.rich_org(&name).await;
        let move_id = drive_until(&world, &org, dies_after).await;
        // Its driver is gone. Asking a router about the move resumes it (once it stalled).
        let done = wait_for_end(&world.router, &org).await;
        assert_eq!((done.move_id.as_str(), done.phase.as_str()), (move_id.as_str(), "done"), "after {dies_after:?}");
        assert_eq!(serving_regions(&world, &org).await, vec![Region::Us], "after {dies_after:?}");
        let members = world.ops().list_all_members(org.as_str(), Consistency::Linearizable).await.unwrap();
        assert_eq!(members.items.len(), 2, "after {dies_after:?}: {members:?}");
        for id in world.eu.running_ids() {
            assert!(
                files_containing(&world.eu.data_dir(id), name.as_bytes()).is_empty(),
                "after {dies_after:?}: eu node {id}"
            );
        }
    }
    world.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leaders_die_mid_move_and_an_abort_before_the_switch_rolls_back() {
    let mut world = World::start().await;
    // The source's leader dies while the org is frozen: a new leader serves the rest.
    let org = world.rich_org("Leaderless Source AB").await;
    drive_until(&world, &org, DiesAfter::Freeze).await;
    let eu_leader = world.eu.leader().await;
    world.eu.stop(eu_leader).await;
    // The switch needs only a quorum; the cleanup waits for every source node (each one's own
    // files must forget the org), so it finishes once the stopped node is back.
    wait_for_phase(&world.router, &org, &["cleaning_up"]).await;
    assert_eq!(serving_regions(&world, &org).await, vec![Region::Us]);
    world.eu.restart(eu_leader).await;
    let done = wait_for_end(&world.router, &org).await;
    assert_eq!(done.phase, "done");
    assert!(files_containing(&world.eu.data_dir(eu_leader), b"Leaderless Source AB").is_empty());

    // The target's leader dies while the first copy is staged.
    let org = world.rich_org("Leaderless Target AB").await;
    drive_until(&world, &org, DiesAfter::FirstCopy).await;
    let us_leader = world.us.leader().await;
    world.us.stop(us_leader).await;
    let done = wait_for_end(&world.router, &org).await;
    assert_eq!(done.phase, "done");
    assert_eq!(serving_regions(&world, &org).await, vec![Region::Us]);
    world.us.restart(us_leader).await;

    // Aborted while frozen: the source serves again as before, the target holds nothing.
    let org = world.rich_org("Changed Its Mind SA").await;
    drive_until(&world, &org, DiesAfter::Freeze).await;
    let aborted = moves_at(&world.router)
        .abort_move(v1::AbortMoveRequest { org_id: org.clone(), reason: "customer changed its mind".into() })
        .await
        .expect("an abort before the switch")
        .into_inner()
        .r#move
        .unwrap();
    assert_eq!((aborted.phase.as_str(), aborted.reason.as_str()), ("aborted", "customer changed its mind"));
    assert_eq!(serving_regions(&world, &org).await, vec![Region::Eu]);
    world.ops().add_member(org.as_str(), "after-abort", Role::Agent).await.expect("the source takes writes again");
    let report = moves_at(&world.router)
        .get_residency(v1::GetResidencyRequest { org_id: org.clone() })
        .await
        .unwrap()
        .into_inner();
    for node in report.nodes.iter().filter(|n| n.region == "us") {
        assert_eq!(node.state_records, 0, "the target keeps nothing of an aborted move: {node:?}");
    }
    // After the switch, an abort is refused: the move can only complete.
    let org = world.rich_org("Too Late Oy").await;
    drive_until(&world, &org, DiesAfter::Switch).await;
    let late = moves_at(&world.router)
        .abort_move(v1::AbortMoveRequest { org_id: org.clone(), reason: String::new() })
        .await
        .expect_err("past the switch");
    assert_eq!(late.code(), Code::FailedPrecondition, "{late:?}");
    assert_eq!(wait_for_end(&world.router, &org).await.phase, "done");
    let parsed: OrgId = org.parse().unwrap();
    assert_eq!(parsed.region(), Region::Eu, "the id keeps the region it was created in");
    world.shutdown().await;
}
