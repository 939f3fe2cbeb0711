//! The fault suite: real `orgplane` processes, each node in its own network namespace, clients
//! recording a history while faults are injected, and a linearizability check of the history.
//! Each scenario prints one summary line (to the real stderr and `target/faults/summary.txt`);
//! a failing run keeps its history, seed and node logs under `target/faults/` and prints where.
//!
//! Needs root and the Debian packages iproute2 and iptables. Scenarios run one at a time (they
//! share namespace names and addresses). Replay a run with `ORGPLANE_FAULTS_SEED=<seed>`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use orgplane_proto::v1::admin_service_client::AdminServiceClient;
use orgplane_proto::v1::*;
use orgplane_tests::faults::checker::Limits;
use orgplane_tests::faults::cluster::{self, NodeSettings};
use orgplane_tests::faults::history::{analyze, Kind, Outcome};
use orgplane_tests::faults::net::{Direction, Lab};
use orgplane_tests::faults::scenario::{report_line, Scenario, HEAL_BOUND, REQUEST_TIMEOUT};
use orgplane_tests::faults::workload::{Caller, Target};

/// Clients per workload, keys (orgs) per region.
const CLIENTS: usize = 4;
const KEYS: usize = 3;
/// An upper bound for any scenario's workload; each scenario stops it when its faults are done.
const WORKLOAD_BOUND: Duration = Duration::from_secs(90);

fn pause(ms: u64) -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_millis(ms))
}

/// 1. kill -9 of a random node (the leader every other round, found by asking every node's
/// `GetClusterStatus`), restarted from its data dir, in a loop during the workload.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_a_random_node_then_restart_during_the_workload() {
    let mut s = Scenario::begin("kill9-restart").await;
    let r = s.start_lab_region("eu", 3, &NodeSettings::default());
    s.region(r).wait_leader(HEAL_BOUND).await;
    let keys = s.create_keys(r, &s.node_target(r, 1), KEYS).await;
    let work = s.workload("c", CLIENTS, &keys, s.node_targets(r), WORKLOAD_BOUND);
    let mut rng = s.rng(1);
    let (mut kills, mut leader_kills, mut slowest_heal) = (0, 0, Duration::ZERO);
    pause(1500).await;
    for round in 0..8 {
        let leader = s.region(r).wait_leader(HEAL_BOUND).await;
        let victim = if round % 2 == 0 { leader } else { *rng.pick(&s.region(r).ids()) };
        leader_kills += usize::from(victim == leader);
        kills += 1;
        s.region_mut(r).kill9(victim);
        // The node stays down for a while (the fault's length), then comes back from its dir.
        pause(500 + rng.below(1500)).await;
        s.region_mut(r).restart(victim);
        let (_, took) = s.region_mut(r).wait_healthy(HEAL_BOUND).await.unwrap_or_else(|e| panic!("{e}"));
        slowest_heal = slowest_heal.max(took);
        pause(1000).await;
    }
    work.stop().await;
    let settled = s.settle(r, &keys).await;
    let fault = format!("kill -9 of a random node x{kills} (the leader x{leader_kills}), restart from its data dir");
    let extra = format!("slowest heal {:.1}s", slowest_heal.as_secs_f64());
    s.finish(&fault, &settled, &extra);
}

/// 2. SIGSTOP the leader for longer than the election timeout; the others elect a new leader
/// and acknowledge a write; then SIGCONT the old leader and read through it at once (a read
/// sent while it is still stopped, and one right after it resumes). Linearizable reads must
/// not return the old value.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigstop_the_leader_then_read_through_it_the_moment_it_resumes() {
    let mut s = Scenario::begin("sigstop-leader").await;
    let settings = NodeSettings::default();
    let r = s.start_lab_region("eu", 3, &settings);
    s.region(r).wait_leader(HEAL_BOUND).await;
    let keys = s.create_keys(r, &s.node_target(r, 1), KEYS).await;
    let work = s.workload("c", CLIENTS, &keys, s.node_targets(r), WORKLOAD_BOUND);
    let all_keys = s.history.keys();
    let (mut probes_ok, mut probes_new, mut probes_failed) = (0, 0, 0);
    pause(1500).await;
    for round in 0..4 {
        let old = s.region(r).wait_leader(HEAL_BOUND).await;
        s.region_mut(r).node(old).proc.pause();
        let stopped_at = Instant::now();
        // Wait (bounded) until another node leads.
        let new = loop {
            let mut found = None;
            for id in s.region(r).ids().into_iter().filter(|id| *id != old) {
                if let Ok(st) = s.region(r).status(id, Duration::from_millis(500)).await {
                    if st.role == "leader" {
                        found = Some(id);
                    }
                }
            }
            if let Some(id) = found {
                break id;
            }
            assert!(stopped_at.elapsed() < HEAL_BOUND, "no new leader while n{old} is stopped");
            pause(100).await;
        };
        // Stay stopped well past the longest election timeout.
        let hold = Duration::from_millis(settings.election_timeout_max_ms + 1000);
        tokio::time::sleep(hold.saturating_sub(stopped_at.elapsed())).await;
        // A write acknowledged by the new majority: the old leader does not have it.
        let probe_target = s.node_target(r, new);
        let stale_target = s.node_target(r, old);
        let caller = Caller { history: &s.history, client: "probe", target: &probe_target, timeout: REQUEST_TIMEOUT };
        let mut written = BTreeMap::new();
        for &k in &keys {
            let name = format!("{}-k{k}-probe-{round}", s.tag);
            let op = caller.write(k, &all_keys[k].org_id, &name, None).await;
            if op.outcome == Outcome::Ok {
                written.insert(k, name);
            }
        }
        // Reads through the stopped leader: sent now, answered when it runs again...
        let history = s.history.clone();
        let queued: Vec<_> = keys
            .iter()
            .map(|&k| {
                let (history, target, org) = (history.clone(), stale_target.clone(), all_keys[k].org_id.clone());
                tokio::spawn(async move {
                    let caller =
                        Caller { history: &history, client: "stale-q", target: &target, timeout: REQUEST_TIMEOUT };
                    caller.read(k, &org, false).await
                })
            })
            .collect();
        // Best effort, not synchronization: lets those requests reach the stopped node's socket
        // before it resumes (nothing checked depends on it, it only makes the read more stale).
        pause(50).await;
        s.region_mut(r).node(old).proc.resume();
        // ...and sent the moment it resumes.
        let stale_caller =
            Caller { history: &s.history, client: "stale", target: &stale_target, timeout: REQUEST_TIMEOUT };
        let mut reads = Vec::new();
        for &k in &keys {
            reads.push(stale_caller.read(k, &all_keys[k].org_id, false).await);
        }
        for q in queued {
            reads.push(q.await.expect("queued read"));
        }
        for op in &reads {
            if op.outcome == Outcome::Ok {
                probes_ok += 1;
                probes_new += usize::from(written.get(&op.key) == op.value.as_ref());
            } else {
                probes_failed += 1;
            }
        }
        s.region_mut(r).wait_healthy(HEAL_BOUND).await.unwrap_or_else(|e| panic!("{e}"));
        pause(1000).await;
    }
    work.stop().await;
    let settled = s.settle(r, &keys).await;
    let fault = "SIGSTOP of the leader x4 for election-max+1s, SIGCONT, reads through it at once";
    let extra = format!(
        "reads through the resumed old leader: {probes_ok} answered ({probes_new} returned the probe write itself, \
         the rest a value written after it), {probes_failed} refused/timed out; all in the checked history"
    );
    s.finish(fault, &settled, &extra);
}

/// 3. Partitions with iptables inside a node's namespace, each for a few seconds under the
/// workload, then healed: the leader isolated; a minority (a follower) split from the
/// majority; one-way loss at the leader, inbound only and then outbound only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitions_isolate_leader_split_minority_one_way_loss_then_heal() {
    let mut s = Scenario::begin("partitions").await;
    let r = s.start_lab_region("eu", 3, &NodeSettings::default());
    s.region(r).wait_leader(HEAL_BOUND).await;
    let keys = s.create_keys(r, &s.node_target(r, 1), KEYS).await;
    let work = s.workload("c", CLIENTS, &keys, s.node_targets(r), WORKLOAD_BOUND);
    let mut heals = Vec::new();
    pause(1500).await;
    for fault in ["isolate-leader", "split-minority-follower", "leader-drops-inbound", "leader-drops-outbound"] {
        let leader = s.region(r).wait_leader(HEAL_BOUND).await;
        let term = s.region(r).status(leader, Duration::from_secs(1)).await.map(|st| st.term).unwrap_or(0);
        let follower = s.region(r).ids().into_iter().find(|id| *id != leader).expect("a follower");
        let others: Vec<u64> = s.region(r).ids().into_iter().filter(|id| *id != leader).collect();
        match fault {
            "isolate-leader" => s.lab().isolate(leader),
            "split-minority-follower" => s.lab().split(&[follower]),
            "leader-drops-inbound" => s.lab().cut(leader, &others, Direction::Inbound),
            _ => s.lab().cut(leader, &others, Direction::Outbound),
        }
        pause(5000).await;
        s.lab().heal();
        let (after, took) = s.region_mut(r).wait_healthy(HEAL_BOUND).await.unwrap_or_else(|e| panic!("{fault}: {e}"));
        let term_after = s.region(r).status(after, Duration::from_secs(1)).await.map(|st| st.term).unwrap_or(0);
        heals.push(format!(
            "{fault} (leader n{leader} term {term} -> n{after} term {term_after}) {:.1}s",
            took.as_secs_f64()
        ));
        pause(1500).await;
    }
    work.stop().await;
    let settled = s.settle(r, &keys).await;
    let fault = "iptables: isolate leader; split {follower}|{leader,follower}; leader drops INPUT; leader drops OUTPUT; 5s each";
    s.finish(fault, &settled, &format!("healthy after each heal: {}", heals.join(", ")));
}

/// 4. A follower cut off until the leader has compacted its log past it (a snapshot every 50
/// entries, none kept after it), then healed: it must catch up by installing a snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_cut_off_past_log_compaction_catches_up_by_snapshot() {
    let mut s = Scenario::begin("snapshot-catch-up").await;
    let settings = NodeSettings {
        snapshot_every_entries: Some(50),
        log_entries_kept_after_snapshot: Some(0),
        // openraft says at INFO when it purges its log and when it installs a snapshot.
        rust_log: Some(
            "info,openraft=error,openraft::engine::engine_impl=info,openraft::engine::handler::following_handler=info,\
             openraft::engine::handler::log_handler=info,openraft::core::sm::worker=info,sled=warn,h2=warn,tower=warn,\
             hyper=warn"
                .into(),
        ),
        ..NodeSettings::default()
    };
    let r = s.start_lab_region("eu", 3, &settings);
    let leader = s.region(r).wait_leader(HEAL_BOUND).await;
    let keys = s.create_keys(r, &s.node_target(r, leader), KEYS).await;
    let lagging = s.region(r).ids().into_iter().find(|id| *id != leader).expect("a follower");
    let majority: Vec<Target> =
        s.region(r).ids().into_iter().filter(|id| *id != lagging).map(|id| s.node_target(r, id)).collect();
    let work = s.workload("c", CLIENTS, &keys, s.node_targets(r), WORKLOAD_BOUND);
    pause(1000).await;

    let before = s.region(r).status(lagging, Duration::from_secs(1)).await.expect("lagging node status");
    let lagging_log_path = s.region(r).nodes[&lagging].log_path();
    let log_at_cut = std::fs::metadata(&lagging_log_path).map(|m| m.len() as usize).unwrap_or(0);
    s.lab().isolate(lagging);
    // Writes through the majority until the leader is 200 entries past the lagging node, so it
    // has taken several snapshots and purged everything the lagging node would need.
    let writer = s.workload("w", 2, &keys, majority.clone(), WORKLOAD_BOUND);
    let cut_at = Instant::now();
    let leader_now = loop {
        let leader_now = s.region(r).wait_leader(HEAL_BOUND).await;
        let st = s.region(r).status(leader_now, Duration::from_secs(1)).await.expect("leader status");
        if st.applied_index >= before.last_log_index + 200 {
            break leader_now;
        }
        assert!(cut_at.elapsed() < Duration::from_secs(90), "the majority did not get 200 entries ahead: {st:?}");
        pause(250).await;
    };
    writer.stop().await;
    let leader_log = std::fs::read_to_string(s.region(r).nodes[&leader_now].log_path()).unwrap_or_default();
    // openraft's `purge_log` line says how far the log was purged: "purge_upto=Some(T1-N3-299)".
    let purge_index = |line: &str| {
        let upto = line.split("purge_upto=").nth(1)?.split_whitespace().next()?;
        upto.trim_end_matches(')').rsplit('-').next()?.parse::<u64>().ok()
    };
    let purged = leader_log.lines().filter(|l| l.contains("purge_log")).filter_map(purge_index).max().unwrap_or(0);
    let lagging_status = s.region(r).status(lagging, Duration::from_secs(1)).await.expect("lagging node status");
    s.lab().heal();

    // The lagging node catches up: its applied index reaches the leader's (bounded).
    let healed_at = Instant::now();
    let target_index =
        s.region(r).status(leader_now, Duration::from_secs(1)).await.expect("leader status").applied_index;
    let caught_up = loop {
        let st = s.region(r).status(lagging, Duration::from_secs(1)).await;
        if let Ok(st) = &st {
            if st.applied_index >= target_index {
                break healed_at.elapsed();
            }
        }
        assert!(healed_at.elapsed() < HEAL_BOUND, "n{lagging} did not catch up to {target_index}: {st:?}");
        pause(100).await;
    };
    work.stop().await;
    let mut settled = s.settle(r, &keys).await;

    // Its own state (a LOCAL read on it) now equals the final linearizable values, and its log
    // says it installed a snapshot.
    let lagging_target = s.node_target(r, lagging);
    let all_keys = s.history.keys();
    let mut local = Vec::new();
    for (k, value) in &settled.final_values {
        let mut c = lagging_target.client();
        let got = c
            .get_org(GetOrgRequest { org_id: all_keys[*k].org_id.clone(), consistency: ReadConsistency::Local as i32 })
            .await
            .map(|r| r.into_inner().org.unwrap_or_default().name)
            .map_err(|e| format!("{:?}: {}", e.code(), e.message()));
        if got.as_ref() != Ok(value) {
            local.push(format!("key {k}: n{lagging} holds {got:?}, the region {value:?}"));
        }
    }
    settled.problems.extend(local);
    let lagging_log = std::fs::read(&lagging_log_path).unwrap_or_default();
    let since_cut = String::from_utf8_lossy(lagging_log.get(log_at_cut..).unwrap_or_default());
    let installed = since_cut
        .lines()
        .filter(|l| l.contains("install_full_snapshot") || l.contains("install complete snapshot"))
        .count();
    if installed == 0 {
        settled.problems.push(format!("n{lagging}'s log shows no snapshot install"));
    }
    if purged <= lagging_status.last_log_index {
        settled.problems.push(format!(
            "n{leader_now} purged its log only up to {purged}, not past n{lagging}'s last entry {}",
            lagging_status.last_log_index
        ));
    }
    let fault = "follower isolated while the leader wrote 200+ entries (snapshot every 50, 0 kept), healed";
    let extra = format!(
        "n{lagging} was at log index {} (applied {}), leader at {target_index} had purged its log up to {purged}; \
         n{lagging} installed a snapshot ({installed} log lines) and applied {target_index} in {:.1}s",
        lagging_status.last_log_index,
        lagging_status.applied_index,
        caught_up.as_secs_f64()
    );
    s.finish(fault, &settled, &extra);
}

/// 5. Two regions and a router (on loopback); one region's nodes are all killed: the other
/// region's latency and success rate stay as they were (generous tolerance, measured in this
/// run), and the user-wide list through the router is partial and says which region is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_region_down_leaves_the_other_region_unaffected() {
    let mut s = Scenario::begin("region-down").await;
    let settings = NodeSettings::default();
    let us = s.start_loopback_region("us", 3, &settings);
    let eu = s.start_loopback_region("eu", 3, &settings);
    let router_addr = format!("127.0.0.1:{}", cluster::free_loopback_port());
    let endpoints = |r: usize, s: &Scenario| s.region(r).nodes.values().map(|n| n.addr.clone()).collect::<Vec<_>>();
    let regions = [("us", endpoints(us, &s)), ("eu", endpoints(eu, &s))];
    s.router = Some(cluster::start_router(&s.dir, &router_addr, &regions));
    s.region(us).wait_leader(HEAL_BOUND).await;
    s.region(eu).wait_leader(HEAL_BOUND).await;
    let router = Target::new("router", &router_addr);
    let us_keys = s.create_keys(us, &router, 1).await;
    let eu_keys = s.create_keys(eu, &router, KEYS).await;
    let all_keys = s.history.keys();
    let user = format!("{}-everywhere", s.tag);
    for &k in us_keys.iter().chain(&eu_keys[..1]) {
        let caller = Caller { history: &s.history, client: "setup", target: &router, timeout: REQUEST_TIMEOUT };
        let op = caller.add_member(k, &all_keys[k].org_id, &user).await;
        assert_eq!(op.outcome, Outcome::Ok, "setup member-add: {op:?}");
    }

    // Phase A: both regions up. Phase B: us down. The eu clients and one us client run
    // throughout; latency and success are compared between the phases.
    let eu_work = s.workload("eu", 3, &eu_keys, vec![router.clone()], WORKLOAD_BOUND);
    let us_work = s.workload("us", 1, &us_keys, vec![router.clone()], WORKLOAD_BOUND);
    pause(1000).await;
    let a_start = s.history.now_us();
    pause(8000).await;
    let a_end = s.history.now_us();
    for id in s.region(us).ids() {
        s.region_mut(us).kill9(id);
    }
    pause(1000).await;
    let b_start = s.history.now_us();
    // The user-wide list through the router: partial, and marked.
    let mut c = router.client();
    let mut request = tonic::Request::new(ListUserOrgsRequest { user_id: user.clone(), ..Default::default() });
    request.set_timeout(Duration::from_secs(5));
    let asked = Instant::now();
    let list = c.list_user_orgs(request).await.expect("ListUserOrgs answers with one region down").into_inner();
    let list_took = asked.elapsed();
    pause(8000).await;
    let b_end = s.history.now_us();
    eu_work.stop().await;
    us_work.stop().await;

    let data = s.history.snapshot();
    let phase = |from: u64, to: u64| {
        let ops: Vec<_> = data
            .ops
            .iter()
            .filter(|o| {
                o.client.starts_with("eu") && o.invoke_us >= from && o.invoke_us < to && o.kind != Kind::ReadLocal
            })
            .collect();
        let mut latencies: Vec<u64> = ops
            .iter()
            .filter(|o| o.outcome == Outcome::Ok)
            .filter_map(|o| o.complete_us.map(|c| c - o.invoke_us))
            .collect();
        latencies.sort_unstable();
        let p50 = latencies.get(latencies.len() / 2).copied().unwrap_or(u64::MAX);
        let success = latencies.len() as f64 / ops.len().max(1) as f64;
        (ops.len(), p50, success)
    };
    let (a_ops, a_p50, a_ok) = phase(a_start, a_end);
    let (b_ops, b_p50, b_ok) = phase(b_start, b_end);
    let us_during: Vec<_> = data
        .ops
        .iter()
        .filter(|o| o.client.starts_with("us") && o.invoke_us >= b_start && o.invoke_us < b_end)
        .collect();
    let us_failed_fast =
        us_during.iter().filter(|o| o.complete_us.is_some_and(|c| c - o.invoke_us < 3_000_000)).count();

    let mut problems = Vec::new();
    let ratio = b_p50 as f64 / a_p50.max(1) as f64;
    if a_ops < 20 || b_ops < 20 {
        problems.push(format!("too few eu operations to compare: {a_ops} before, {b_ops} after"));
    }
    // Generous: the machine is shared, and killing a region frees CPU as often as not.
    if ratio > 3.0 && b_p50.saturating_sub(a_p50) > 20_000 {
        problems.push(format!("eu p50 went from {a_p50} us to {b_p50} us (x{ratio:.2}) with us down"));
    }
    if b_ok < 0.95 || b_ok + 0.05 < a_ok {
        problems.push(format!("eu success rate went from {a_ok:.3} to {b_ok:.3} with us down"));
    }
    let state_of = |region: &str| list.regions.iter().find(|x| x.region == region).map(|x| x.state);
    let us_state = state_of("us");
    if !matches!(us_state, Some(x) if x == RegionState::Unavailable as i32 || x == RegionState::DeadlineExceeded as i32)
    {
        problems.push(format!("ListUserOrgs marks us as {us_state:?}, expected UNAVAILABLE or DEADLINE_EXCEEDED"));
    }
    if state_of("eu") != Some(RegionState::Ok as i32) {
        problems.push(format!("ListUserOrgs marks eu as {:?}, expected OK", state_of("eu")));
    }
    let listed: Vec<&str> = list.orgs.iter().filter_map(|o| o.org.as_ref()).map(|o| o.id.as_str()).collect();
    if listed != vec![all_keys[eu_keys[0]].org_id.as_str()] {
        problems.push(format!("ListUserOrgs listed {listed:?}, expected only the eu org"));
    }

    // Heal: the us nodes come back from their data dirs; everything acknowledged is there.
    for id in s.region(us).ids() {
        s.region_mut(us).restart(id);
    }
    let (_, us_healed) =
        s.region_mut(us).wait_healthy(HEAL_BOUND).await.unwrap_or_else(|e| panic!("us after restart: {e}"));
    let mut settled = s.settle(eu, &eu_keys).await;
    let (us_final, us_members) = s.final_reads(&router, &us_keys).await;
    settled.final_values.extend(us_final.clone());
    let mut members = us_members;
    let (eu_final, eu_members) = s.final_reads(&router, &eu_keys).await;
    members.extend(eu_members);
    settled.final_values.extend(eu_final);
    settled.analysis = analyze(&s.history.snapshot(), &members, Limits::default());
    settled.problems.extend(problems);
    settled.problems.extend(s.residency_problems(&us_final).await);
    let mut c = router.client();
    let whole = c.list_user_orgs(ListUserOrgsRequest { user_id: user, ..Default::default() }).await;
    let complete = whole.as_ref().is_ok_and(|w| w.get_ref().regions.iter().all(|x| x.state == RegionState::Ok as i32));
    if !complete {
        settled.problems.push(format!("ListUserOrgs after the us region came back: {whole:?}"));
    }
    let fault = "kill -9 of all 3 us nodes (us + eu regions, router, loopback), then restart";
    let extra = format!(
        "eu before: {a_ops} ops p50 {:.1} ms ok {:.1}% | eu with us down: {b_ops} ops p50 {:.1} ms ok {:.1}% (p50 x{ratio:.2}) \
         | us ops during outage: {} ({} failed within 3 s) | ListUserOrgs {:.0} ms: us={:?} eu=OK, {} org(s) \
         | us healthy {:.1}s after restart",
        a_p50 as f64 / 1000.0,
        a_ok * 100.0,
        b_p50 as f64 / 1000.0,
        b_ok * 100.0,
        us_during.len(),
        us_failed_fast,
        list_took.as_secs_f64() * 1000.0,
        us_state.and_then(|x| RegionState::try_from(x).ok()),
        listed.len(),
        us_healed.as_secs_f64()
    );
    s.finish(fault, &settled, &extra);
}

/// Adds node `id` at `address` to the region through `via` (any node: a follower hands the
/// call to the leader), retrying (bounded) while the region is between leaders.
async fn add_node(via: &str, id: u64, address: &str) -> Membership {
    admin_call(via, |mut admin| {
        let request = AddNodeRequest { region: "eu".into(), node_id: id, address: address.into() };
        async move {
            admin.add_node(with_deadline(request, Duration::from_secs(60))).await.map(|r| r.into_inner().membership)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("AddNode {id}: {e}"))
}

/// Removes node `id` from the region through `via`, retrying (bounded) like [`add_node`].
async fn remove_node(via: &str, id: u64) -> Membership {
    admin_call(via, |mut admin| {
        let request = RemoveNodeRequest { region: "eu".into(), node_id: id };
        async move {
            admin.remove_node(with_deadline(request, Duration::from_secs(60))).await.map(|r| r.into_inner().membership)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("RemoveNode {id}: {e}"))
}

async fn admin_call<F, Fut>(via: &str, call: F) -> Result<Membership, String>
where
    F: Fn(AdminServiceClient<tonic::transport::Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<Option<Membership>, tonic::Status>>,
{
    let started = Instant::now();
    loop {
        match call(AdminServiceClient::new(cluster::channel(via))).await {
            Ok(membership) => return membership.ok_or_else(|| "no membership in the answer".to_string()),
            Err(status)
                if matches!(status.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded)
                    && started.elapsed() < Duration::from_secs(120) =>
            {
                pause(500).await;
            }
            Err(status) => return Err(format!("{:?}: {}", status.code(), status.message())),
        }
    }
}

fn with_deadline<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

/// 6. Node replacement under the workload: a follower dies for good (kill -9, data dir
/// deleted) and a fresh node in a namespace of its own replaces it (AddNode: learner, caught
/// up, voter; then RemoveNode of the dead one); then the same for the leader. The new nodes
/// must hold everything: their applied index reaches the leader's, their own state equals the
/// final values, and they serve the rest of the workload.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_replacement_of_a_dead_follower_then_of_a_dead_leader() {
    let mut s = Scenario::begin("node-replacement").await;
    let r = s.start_lab_region("eu", 3, &NodeSettings::default());
    let leader = s.region(r).wait_leader(HEAL_BOUND).await;
    let keys = s.create_keys(r, &s.node_target(r, leader), KEYS).await;
    let work = s.workload("c", CLIENTS, &keys, s.node_targets(r), WORKLOAD_BOUND);
    pause(1500).await;
    let mut steps = Vec::new();
    for (new, which) in [(4u64, "follower"), (5u64, "leader")] {
        let leader = s.region(r).wait_leader(HEAL_BOUND).await;
        let dead = match which {
            "leader" => leader,
            _ => s.region(r).ids().into_iter().find(|id| *id != leader).expect("a follower"),
        };
        s.region_mut(r).destroy(dead);
        let started = Instant::now();
        s.lab_mut().add_node(new);
        let address = format!("{}:50061", Lab::node_ip(new));
        s.region_mut(r).start_joining(new, Some(Lab::ns(new)), &address);
        let via = s.region(r).ids().into_iter().find(|id| *id != new).map(|id| s.region(r).addr(id).to_string());
        let via = via.expect("a live node");
        let added = add_node(&via, new, &address).await;
        assert!(
            added.members.iter().any(|m| m.node_id == new && m.kind == "voter"),
            "n{new} is a voter after AddNode: {added:?}"
        );
        let removed = remove_node(&via, dead).await;
        assert!(!removed.members.iter().any(|m| m.node_id == dead), "n{dead} is gone after RemoveNode: {removed:?}");
        let (now_leading, _) = s.region_mut(r).wait_healthy(HEAL_BOUND).await.unwrap_or_else(|e| panic!("{e}"));
        steps.push(format!(
            "{which} n{dead} -> n{new} in {:.1}s (voters {:?}, leader n{now_leading})",
            started.elapsed().as_secs_f64(),
            removed.members.iter().map(|m| m.node_id).collect::<Vec<_>>()
        ));
        pause(1000).await;
    }
    work.stop().await;
    // The rest of the workload goes to the region as it is now, new nodes included.
    let after = s.workload("d", CLIENTS, &keys, s.node_targets(r), Duration::from_secs(5));
    after.finish().await;
    let mut settled = s.settle(r, &keys).await;

    // The new nodes caught up: applied index at the leader's, own state equal to the final values.
    let leader = s.region(r).wait_leader(HEAL_BOUND).await;
    let target_index = s.region(r).status(leader, Duration::from_secs(1)).await.expect("status").applied_index;
    let all_keys = s.history.keys();
    for new in [4u64, 5] {
        let started = Instant::now();
        loop {
            let st = s.region(r).status(new, Duration::from_secs(1)).await;
            if st.as_ref().is_ok_and(|st| st.applied_index >= target_index) {
                break;
            }
            if started.elapsed() > HEAL_BOUND {
                settled.problems.push(format!("n{new} did not apply up to {target_index}: {st:?}"));
                break;
            }
            pause(100).await;
        }
        for (k, value) in &settled.final_values {
            let caller = Caller {
                history: &s.history,
                client: "check",
                target: &s.node_target(r, new),
                timeout: REQUEST_TIMEOUT,
            };
            let op = caller.read(*k, &all_keys[*k].org_id, true).await;
            if op.value.as_ref() != Some(value) {
                settled.problems.push(format!("key {k}: n{new} holds {:?}, the region {value:?}", op.value));
            }
        }
    }
    let membership = AdminServiceClient::new(cluster::channel(s.region(r).addr(leader)))
        .get_membership(GetMembershipRequest { region: "eu".into() })
        .await
        .map(|m| m.into_inner().membership.unwrap_or_default());
    let voters: Vec<u64> =
        membership.as_ref().map(|m| m.members.iter().map(|m| m.node_id).collect()).unwrap_or_default();
    if voters != s.region(r).ids() {
        settled.problems.push(format!("membership {membership:?} is not the live nodes {:?}", s.region(r).ids()));
    }
    let fault = "destroy (kill -9, data wiped) a follower, then the leader; replace each by a fresh node via AddNode/RemoveNode";
    s.finish(fault, &settled, &steps.join("; "));
}

/// The checker's power, end to end: LOCAL reads on a follower cut off from the others, after
/// a write the majority acknowledged, return the old value; the checker must say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_checker_catches_local_reads_on_a_partitioned_follower() {
    let mut s = Scenario::begin("checker-power").await;
    let r = s.start_lab_region("eu", 3, &NodeSettings::default());
    let leader = s.region(r).wait_leader(HEAL_BOUND).await;
    let keys = s.create_keys(r, &s.node_target(r, leader), KEYS).await;
    let stale = s.region(r).ids().into_iter().find(|id| *id != leader).expect("a follower");
    let majority: Vec<Target> =
        s.region(r).ids().into_iter().filter(|id| *id != stale).map(|id| s.node_target(r, id)).collect();
    let all_keys = s.history.keys();
    // Every node has the orgs before the cut.
    let index = s.region(r).status(leader, Duration::from_secs(1)).await.expect("status").applied_index;
    let started = Instant::now();
    while s.region(r).status(stale, Duration::from_secs(1)).await.map(|st| st.applied_index) != Ok(index) {
        assert!(started.elapsed() < HEAL_BOUND, "n{stale} did not apply up to {index}");
        pause(100).await;
    }
    s.lab().isolate(stale);
    // The majority acknowledges a new value of every key...
    let new_leader = s.region(r).wait_leader(HEAL_BOUND).await;
    let leader_target = majority.iter().find(|t| t.label == format!("n{new_leader}")).unwrap_or(&majority[0]).clone();
    let writer = Caller { history: &s.history, client: "c1", target: &leader_target, timeout: REQUEST_TIMEOUT };
    for &k in &keys {
        let op = writer.write(k, &all_keys[k].org_id, &format!("{}-k{k}-after-cut", s.tag), None).await;
        assert_eq!(op.outcome, Outcome::Ok, "the majority acknowledges a write: {op:?}");
    }
    // ...then LOCAL reads on the cut-off follower, strictly after: they see the old value.
    let stale_target = s.node_target(r, stale);
    let reader = Caller { history: &s.history, client: "c2", target: &stale_target, timeout: REQUEST_TIMEOUT };
    let mut stale_reads = 0;
    for &k in &keys {
        let op = reader.read(k, &all_keys[k].org_id, true).await;
        assert_eq!(op.outcome, Outcome::Ok, "a LOCAL read answers on a cut-off node: {op:?}");
        stale_reads += usize::from(op.value.as_deref() == Some(all_keys[k].initial.as_str()));
    }
    // Also a short random workload of linearizable writes via the majority and LOCAL reads on
    // the cut-off node, as the history of an unsafe read path would look.
    for i in 0..20 {
        let k = keys[i % keys.len()];
        writer.write(k, &all_keys[k].org_id, &format!("{}-k{k}-w{i}", s.tag), None).await;
        reader.read(k, &all_keys[k].org_id, true).await;
    }
    s.lab().heal();
    s.region_mut(r).wait_healthy(HEAL_BOUND).await.unwrap_or_else(|e| panic!("{e}"));
    let settled = s.settle(r, &keys).await;
    let a = &settled.analysis;
    let mut problems = settled.problems.clone();
    if stale_reads == 0 {
        problems.push("no LOCAL read on the cut-off node returned the old value".into());
    }
    let caught = a.violations.iter().filter(|v| v.contains("not linearizable")).count();
    if caught == 0 {
        problems.push("the checker found no violation in a history with stale LOCAL reads".into());
    }
    // The same history without the LOCAL reads is linearizable: the violations are theirs.
    let mut safe_only = s.history.snapshot();
    safe_only.ops.retain(|o| o.kind != Kind::ReadLocal);
    let without = analyze(&safe_only, &BTreeMap::new(), Limits::default());
    if !without.violations.is_empty() || !without.undecided.is_empty() {
        problems.push(format!("without the LOCAL reads the history should pass: {:?}", without.violations));
    }
    let verdict = if problems.is_empty() { "PASS" } else { "FAIL" };
    report_line(&format!(
        "FAULTS {verdict} checker-power | fault: LOCAL reads on a follower isolated with iptables, after majority writes \
         | {} | expected violations found on {caught} of {} keys ({stale_reads} stale LOCAL reads); first: {}",
        a.counts(),
        keys.len(),
        a.violations.first().map(String::as_str).unwrap_or("none")
    ));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // A history with violations is the expected result here: the run passed.
    s.pass();
}
