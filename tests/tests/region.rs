//! A 3-node region on loopback, real gRPC between nodes and from clients: writes through any
//! node, leader loss, restarts, catch-up by snapshot, request-id retries, and bad input.

use std::collections::BTreeSet;
use std::time::Duration;

use orgplane_model::Region;
use orgplane_proto::v1::*;
use orgplane_tests::{test_timings, TestRegion, WAIT};
use tonic::Code;

async fn create_org(region: &TestRegion, via: u64, name: &str) -> Org {
    let mut c = region.client(via).await;
    c.create_org(CreateOrgRequest { region: region.region.to_string(), name: name.into(), request_id: String::new() })
        .await
        .unwrap_or_else(|s| panic!("create via node {via}: {s}"))
        .into_inner()
        .org
        .expect("org")
}

async fn member_ids(region: &TestRegion, via: u64, org_id: &str) -> BTreeSet<String> {
    let mut c = region.client(via).await;
    let mut out = BTreeSet::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_members(ListMembersRequest {
                org_id: org_id.into(),
                page_size: 1000,
                page_token: token,
                consistency: 0,
            })
            .await
            .expect("list members")
            .into_inner();
        out.extend(page.members.into_iter().map(|m| m.user_id));
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// How many members node `via` has for the org in its own state (a local read: no leader is
/// asked, so this shows what that replica itself holds).
async fn local_member_count(region: &TestRegion, via: u64, org_id: &str) -> usize {
    let mut c = region.client(via).await;
    let page = ListMembersRequest {
        org_id: org_id.into(),
        page_size: 1000,
        page_token: String::new(),
        consistency: ReadConsistency::Local as i32,
    };
    c.list_members(page).await.expect("local list members").into_inner().members.len()
}

fn add(org_id: &str, user: &str, request_id: &str) -> AddMemberRequest {
    AddMemberRequest {
        org_id: org_id.into(),
        user_id: user.into(),
        role: "developer".into(),
        request_id: request_id.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_node_accepts_writes_and_reads_are_linearizable_everywhere() {
    let region = TestRegion::start(Region::Eu, 3, test_timings).await;
    let leader = region.leader().await;
    let follower = region.running_ids().into_iter().find(|id| *id != leader).unwrap();

    let org = create_org(&region, follower, "Acme").await;
    assert!(org.id.starts_with("eu-"), "id names the region: {}", org.id);
    assert_eq!(org.region, "eu");

    // A linearizable read on every node sees the write at once, wherever it was made.
    for id in region.running_ids() {
        let mut c = region.client(id).await;
        let got = c.get_org(GetOrgRequest { org_id: org.id.clone(), consistency: 0 }).await.unwrap().into_inner();
        assert_eq!(got.org.unwrap().name, "Acme", "node {id}");
        let read = got.read.unwrap();
        assert_eq!(read.consistency, ReadConsistency::Linearizable as i32);
        assert_eq!(read.node_id, id);
    }

    // A local read says how fresh it is.
    let mut c = region.client(follower).await;
    let local = c
        .get_org(GetOrgRequest { org_id: org.id.clone(), consistency: ReadConsistency::Local as i32 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(local.read.unwrap().consistency, ReadConsistency::Local as i32);

    // Updates with a stale version are refused and change nothing.
    let updated = c
        .update_org(UpdateOrgRequest {
            org_id: org.id.clone(),
            name: "Acme 2".into(),
            expected_version: Some(1),
            request_id: String::new(),
            allowed_import_regions: None,
        })
        .await
        .unwrap()
        .into_inner()
        .org
        .unwrap();
    assert_eq!(updated.version, 2);
    let stale = c
        .update_org(UpdateOrgRequest {
            org_id: org.id.clone(),
            name: "lost".into(),
            expected_version: Some(1),
            request_id: String::new(),
            allowed_import_regions: None,
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    let now =
        c.get_org(GetOrgRequest { org_id: org.id.clone(), consistency: 0 }).await.unwrap().into_inner().org.unwrap();
    assert_eq!((now.name.as_str(), now.version), ("Acme 2", 2));

    // Members and the user's orgs in this region.
    c.add_member(add(&org.id, "alice", "")).await.unwrap();
    c.set_member_role(SetMemberRoleRequest {
        org_id: org.id.clone(),
        user_id: "alice".into(),
        role: "agent".into(),
        request_id: String::new(),
    })
    .await
    .unwrap();
    let mine = c
        .list_user_orgs(ListUserOrgsRequest { user_id: "alice".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.orgs.len(), 1);
    assert_eq!(mine.orgs[0].role, "agent");
    assert_eq!(mine.regions[0].state, RegionState::Ok as i32);
    c.remove_member(RemoveMemberRequest { org_id: org.id.clone(), user_id: "alice".into(), request_id: String::new() })
        .await
        .unwrap();
    assert!(member_ids(&region, leader, &org.id).await.is_empty());

    let deleted = c
        .delete_org(DeleteOrgRequest { org_id: org.id.clone(), expected_version: Some(2), request_id: String::new() })
        .await;
    assert!(deleted.is_ok(), "{deleted:?}");
    let gone = c.get_org(GetOrgRequest { org_id: org.id.clone(), consistency: 0 }).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    region.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_the_leader_loses_no_acknowledged_write() {
    let mut region = TestRegion::start(Region::Us, 3, test_timings).await;
    let leader = region.leader().await;
    let org = create_org(&region, leader, "Writers").await;
    let survivors: Vec<u64> = region.running_ids().into_iter().filter(|id| *id != leader).collect();

    // Writers on both followers write unique members through the leader change; every write
    // they saw acknowledged must be there at the end.
    let mut writers = Vec::new();
    for (w, via) in survivors.iter().copied().enumerate() {
        let mut c = region.client(via).await;
        let org_id = org.id.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..60 {
                let user = format!("w{w}-{i}");
                let request_id = format!("req-{user}");
                // Retry with the same request id until acknowledged: it applies once.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                loop {
                    match c.add_member(add(&org_id, &user, &request_id)).await {
                        Ok(_) => {
                            acked.push(user);
                            break;
                        }
                        Err(s)
                            if s.code() == Code::Unavailable
                                || s.code() == Code::DeadlineExceeded
                                || s.code() == Code::Unknown =>
                        {
                            assert!(tokio::time::Instant::now() < deadline, "write {user} never acknowledged: {s}");
                        }
                        Err(s) => panic!("write {user} refused: {s}"),
                    }
                }
            }
            acked
        }));
    }
    // Let the writers get going, then kill the leader.
    region.wait_applied(survivors[0], 20).await;
    region.stop(leader).await;
    let new_leader = region.leader().await;
    assert_ne!(new_leader, leader);

    let mut acked = BTreeSet::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert_eq!(acked.len(), 120);
    assert_eq!(member_ids(&region, new_leader, &org.id).await, acked, "acknowledged writes lost or extra members");

    // The old leader comes back from its data dir and catches up.
    region.restart(leader).await;
    let index = region.raft(new_leader).metrics().borrow().last_applied.unwrap().index;
    region.wait_applied(leader, index).await;
    assert_eq!(
        local_member_count(&region, leader, &org.id).await,
        120,
        "restarted node has every write in its own state"
    );
    region.shutdown().await;
}

fn snapshot_often(config: &mut orgplane_node::NodeConfig) {
    test_timings(config);
    config.snapshot_every_entries = 20;
    config.log_entries_kept_after_snapshot = 0;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_missed_compacted_log_catches_up_by_snapshot() {
    let mut region = TestRegion::start(Region::Apac, 3, snapshot_often).await;
    let leader = region.leader().await;
    let lagger = region.running_ids().into_iter().find(|id| *id != leader).unwrap();
    let org = create_org(&region, leader, "Snap").await;
    region.stop(lagger).await;

    let mut c = region.client(leader).await;
    for i in 0..100 {
        c.add_member(add(&org.id, &format!("u{i}"), "")).await.unwrap();
    }
    // The leader has compacted past what the stopped node has.
    let raft = region.raft(leader).clone();
    raft.trigger().snapshot().await.unwrap();
    let m = raft
        .wait(Some(orgplane_tests::WAIT))
        .metrics(|m| m.purged.map(|p| p.index).unwrap_or(0) > 50, "log purged")
        .await
        .expect("leader purges its log after a snapshot");
    let leader_applied = m.last_applied.unwrap().index;
    let leader_purged = m.purged.unwrap().index;

    region.restart(lagger).await;
    region.wait_applied(lagger, leader_applied).await;
    let lag = region.raft(lagger).metrics().borrow().clone();
    // The entries it missed are gone from every log, so only a snapshot can have brought them.
    let snapshot_index = lag.snapshot.map(|s| s.index).unwrap_or(0);
    assert!(snapshot_index >= leader_purged, "the lagging node installed a snapshot covering the purged log: {lag:?}");
    assert_eq!(local_member_count(&region, lagger, &org.id).await, 100);
    region.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_request_id_applies_once_even_across_a_leader_change() {
    let mut region = TestRegion::start(Region::Eu, 3, test_timings).await;
    let leader = region.leader().await;
    let follower = region.running_ids().into_iter().find(|id| *id != leader).unwrap();
    let mut c = region.client(follower).await;
    let org = create_org(&region, follower, "Once").await;

    let req = UpdateOrgRequest {
        org_id: org.id.clone(),
        name: "Renamed".into(),
        expected_version: None,
        request_id: "rename-1".into(),
        allowed_import_regions: None,
    };
    let first = c.update_org(req.clone()).await.unwrap().into_inner().org.unwrap();
    region.stop(leader).await;
    region.leader().await;
    let retry = c.update_org(req).await.unwrap().into_inner().org.unwrap();
    assert_eq!(first, retry, "the retry answers the first result");
    let now =
        c.get_org(GetOrgRequest { org_id: org.id.clone(), consistency: 0 }).await.unwrap().into_inner().org.unwrap();
    assert_eq!(now.version, 2, "applied once");

    // A create retried with the same id does not make a second org.
    let create = CreateOrgRequest { region: "eu".into(), name: "Single".into(), request_id: "create-1".into() };
    let a = c.create_org(create.clone()).await.unwrap().into_inner().org.unwrap();
    let b = c.create_org(create).await.unwrap().into_inner().org.unwrap();
    assert_eq!(a.id, b.id);
    let all = c
        .list_orgs(ListOrgsRequest { region: "eu".into(), page_size: 100, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.orgs.iter().filter(|o| o.name == "Single").count(), 1);
    region.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_a_clear_status_and_changes_nothing() {
    let region = TestRegion::start(Region::Us, 3, test_timings).await;
    let leader = region.leader().await;
    let mut c = region.client(leader).await;
    let org = create_org(&region, leader, "Keep").await;
    // The answer comes from the apply; the metrics publish it a moment later. Settle first.
    let settled = region
        .raft(leader)
        .wait(Some(WAIT))
        .metrics(|m| m.last_applied.map(|l| l.index) == m.last_log_index, "the leader applied its log")
        .await
        .expect("the leader applies its log");
    let before = settled.last_applied.unwrap().index;

    let create = |region: &str, name: &str| CreateOrgRequest {
        region: region.into(),
        name: name.into(),
        request_id: String::new(),
    };
    type Case = (&'static str, Result<tonic::Response<CreateOrgResponse>, tonic::Status>, Code);
    let cases: Vec<Case> = vec![
        ("empty name", c.create_org(create("us", "  ")).await, Code::InvalidArgument),
        ("oversized name", c.create_org(create("us", &"x".repeat(129))).await, Code::InvalidArgument),
        ("control char", c.create_org(create("us", "a\u{7}b")).await, Code::InvalidArgument),
        ("unknown region", c.create_org(create("mars", "A")).await, Code::InvalidArgument),
        ("other region", c.create_org(create("eu", "A")).await, Code::InvalidArgument),
        ("missing region", c.create_org(create("", "A")).await, Code::InvalidArgument),
    ];
    for (what, result, code) in cases {
        let status = result.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(!status.message().is_empty());
    }
    let get = |id: &str| GetOrgRequest { org_id: id.into(), consistency: 0 };
    for (id, code) in [
        ("", Code::InvalidArgument),
        ("nope", Code::InvalidArgument),
        ("us-", Code::InvalidArgument),
        (&"x".repeat(10_000), Code::InvalidArgument),
        ("us-00000000000000000000000000", Code::NotFound),
        ("eu-00000000000000000000000000", Code::NotFound),
    ] {
        let status = c.get_org(get(id)).await.expect_err(id);
        assert_eq!(status.code(), code, "{id}: {status:?}");
    }
    let bad_role = c
        .add_member(AddMemberRequest {
            org_id: org.id.clone(),
            user_id: "u".into(),
            role: "owner!".into(),
            request_id: String::new(),
        })
        .await;
    assert_eq!(bad_role.unwrap_err().code(), Code::InvalidArgument);
    let bad_user = c
        .add_member(AddMemberRequest {
            org_id: org.id.clone(),
            user_id: "a b".into(),
            role: "admin".into(),
            request_id: String::new(),
        })
        .await;
    assert_eq!(bad_user.unwrap_err().code(), Code::InvalidArgument);
    let bad_page = c.list_orgs(ListOrgsRequest { page_size: 5000, ..Default::default() }).await;
    assert_eq!(bad_page.unwrap_err().code(), Code::InvalidArgument);
    let bad_token = c.list_orgs(ListOrgsRequest { page_token: "%%%".into(), ..Default::default() }).await;
    assert_eq!(bad_token.unwrap_err().code(), Code::InvalidArgument);
    let bad_consistency = c.get_org(GetOrgRequest { org_id: org.id.clone(), consistency: 42 }).await;
    assert_eq!(bad_consistency.unwrap_err().code(), Code::InvalidArgument);

    // None of that reached the log.
    let after = region.raft(leader).metrics().borrow().last_applied.unwrap().index;
    assert_eq!(before, after, "refused input must not be proposed");
    let kept = c.get_org(get(&org.id)).await.unwrap().into_inner().org.unwrap();
    assert_eq!((kept.name.as_str(), kept.version), ("Keep", 1));

    // Refusals decided by the state (stale version, missing org) are replicated but change no data.
    let stale = c
        .delete_org(DeleteOrgRequest { org_id: org.id.clone(), expected_version: Some(7), request_id: String::new() })
        .await;
    assert_eq!(stale.unwrap_err().code(), Code::Aborted);
    let missing = c.add_member(add("us-00000000000000000000000000", "u", "")).await;
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);
    assert_eq!(c.get_org(get(&org.id)).await.unwrap().into_inner().org.unwrap().version, 1);
    region.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_follows_the_leader_and_peers_check_every_message() {
    use orgplane_proto::raft_v1::raft_service_client::RaftServiceClient;
    use orgplane_proto::raft_v1::{PeerHeader, PeerRequest};
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let mut region = TestRegion::start(Region::Eu, 3, test_timings).await;
    let leader = region.leader().await;
    let peers = region.peers.clone();
    let channel =
        |id: u64| tonic::transport::Endpoint::from_shared(format!("http://{}", peers[&id])).unwrap().connect_lazy();
    let check = |id: u64| {
        let mut health = HealthClient::new(channel(id));
        async move {
            health
                .check(HealthCheckRequest { service: "orgplane.v1.OrgService".into() })
                .await
                .unwrap()
                .into_inner()
                .status
        }
    };
    for id in region.running_ids() {
        assert_eq!(check(id).await, ServingStatus::Serving as i32, "node {id} sees a leader");
    }

    // A peer message for another region or another node is refused, not acted on.
    let mut peer = RaftServiceClient::new(channel(leader));
    let vote = |region: &str, target: u64| PeerRequest {
        header: Some(PeerHeader { region: region.into(), target_node_id: target, from_node_id: 99 }),
        payload: b"{}".to_vec(),
    };
    let wrong_region = peer.vote(vote("us", leader)).await.unwrap_err();
    assert_eq!(wrong_region.code(), Code::PermissionDenied, "{wrong_region:?}");
    let wrong_node = peer.vote(vote("eu", leader + 10)).await.unwrap_err();
    assert_eq!(wrong_node.code(), Code::FailedPrecondition, "{wrong_node:?}");
    let no_header = peer.vote(PeerRequest { header: None, payload: Vec::new() }).await.unwrap_err();
    assert_eq!(no_header.code(), Code::InvalidArgument);
    let garbage = peer.vote(PeerRequest { payload: b"not json".to_vec(), ..vote("eu", leader) }).await.unwrap_err();
    assert_eq!(garbage.code(), Code::InvalidArgument);

    // Without a quorum the last node loses its leader and says NOT_SERVING; writes fail
    // UNAVAILABLE naming the region rather than hanging.
    let others: Vec<u64> = region.running_ids().into_iter().filter(|id| *id != leader).collect();
    let last = others[0];
    region.stop(others[1]).await;
    region.stop(leader).await;
    region
        .raft(last)
        .wait(Some(orgplane_tests::WAIT))
        .metrics(|m| m.current_leader.is_none(), "leader lost")
        .await
        .expect("the lone node notices it has no leader");
    let deadline = tokio::time::Instant::now() + orgplane_tests::WAIT;
    while check(last).await != ServingStatus::NotServing as i32 {
        assert!(tokio::time::Instant::now() < deadline, "health still SERVING without a leader");
        tokio::task::yield_now().await;
    }
    let mut c = region.client(last).await;
    let started = std::time::Instant::now();
    let write = c
        .create_org(CreateOrgRequest { region: "eu".into(), name: "no quorum".into(), request_id: String::new() })
        .await
        .unwrap_err();
    assert_eq!(write.code(), Code::Unavailable, "{write:?}");
    assert!(write.message().contains("region eu"), "{write:?}");
    assert!(started.elapsed() < Duration::from_secs(15), "bounded by the write timeout");
    region.shutdown().await;
}

/// Writes that reach a follower are forwarded to the leader and join the leader's own group
/// commit: the leader's batches hold them, rather than each forwarded batch becoming a log
/// entry of its own (which cost an append, a flush and an apply per replica: see
/// BENCHMARKS.md, "Where a write's CPU goes").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forwarded_writes_join_the_leaders_group_commit() {
    const WRITES: usize = 8;
    let region = TestRegion::start(Region::Us, 3, |config| {
        test_timings(config);
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let leader = region.leader().await;
    let follower = region.running_ids().into_iter().find(|id| *id != leader).unwrap();
    let writes = (0..WRITES).map(|i| {
        let region = &region;
        async move { create_org(region, follower, &format!("Forwarded {i}")).await }
    });
    let orgs = futures::future::join_all(writes).await;
    assert_eq!(orgs.len(), WRITES);

    let scraped = orgplane_tests::scrape::scrape(region.metrics_addr(leader).expect("metrics are on")).await;
    let in_leader_batches = scraped.value("orgplane_raft_batch_commands_sum", &[]);
    assert!(
        in_leader_batches >= WRITES as f64,
        "the leader's group commit saw {in_leader_batches} commands; {WRITES} were forwarded to it"
    );
    region.shutdown().await;
}

/// A node of the build before the binary codec sends its peer messages as JSON (a read-index
/// request with no body at all) and reads only JSON. During a rolling upgrade such a follower
/// still forwards writes and asks for read indexes: the leader of this build understands it
/// and answers in JSON. Its own peers get binary answers to binary requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_of_the_json_build_is_understood_and_answered_in_json() {
    use orgplane_model::{Actor, Command, Op, OrgId};
    use orgplane_proto::raft_v1::raft_service_client::RaftServiceClient;
    use orgplane_proto::raft_v1::{PeerHeader, PeerRequest};
    use orgplane_raft::codec::{self, BINARY_V1};
    use orgplane_raft::{ForwardError, RaftRequest, RaftResponse};

    let region = TestRegion::start(Region::Eu, 3, test_timings).await;
    let leader = region.leader().await;
    let follower = region.running_ids().into_iter().find(|id| *id != leader).unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", region.peers[&leader])).unwrap();
    let mut peer = RaftServiceClient::new(channel.connect_lazy());
    let request = |payload: Vec<u8>| PeerRequest {
        header: Some(PeerHeader { region: "eu".into(), target_node_id: leader, from_node_id: follower }),
        payload,
    };

    // A read index, as the JSON build asks for it (an empty body) and as this build does.
    let old = peer.read_index(request(Vec::new())).await.unwrap().into_inner().payload;
    assert_eq!(old.first(), Some(&b'{'), "answered in JSON: {}", String::from_utf8_lossy(&old));
    let old_index: Result<u64, ForwardError> = serde_json::from_slice(&old).unwrap();
    assert!(old_index.unwrap() > 0);
    let new = peer.read_index(request(vec![BINARY_V1])).await.unwrap().into_inner().payload;
    assert_eq!(new.first(), Some(&BINARY_V1));
    assert!(codec::decode::<Result<u64, ForwardError>>(&new).unwrap().unwrap() > 0);

    // A forwarded write in JSON is committed, and its result comes back in JSON.
    let org = OrgId::from_u128(Region::Eu, 0x0123_4567_89ab_cdef);
    let batch = RaftRequest {
        commands: vec![Command {
            request_id: "json-peer-1".into(),
            issued_at_ms: 1_700_000_000_000,
            actor: Actor::System,
            op: Op::CreateOrg { id: org.clone(), name: "From an old follower".into() },
        }],
    };
    let reply = peer.forward(request(serde_json::to_vec(&batch).unwrap())).await.unwrap().into_inner().payload;
    let answered: Result<RaftResponse, ForwardError> = serde_json::from_slice(&reply).unwrap();
    assert_eq!(answered.unwrap().results.len(), 1);
    let mut c = region.client(follower).await;
    let got = c.get_org(GetOrgRequest { org_id: org.to_string(), consistency: 0 }).await.unwrap().into_inner();
    assert_eq!(got.org.unwrap().name, "From an old follower");

    // A message in neither encoding is refused as before.
    let garbage = peer.forward(request(b"\x07junk".to_vec())).await.unwrap_err();
    assert_eq!(garbage.code(), Code::InvalidArgument, "{garbage:?}");
    assert!(garbage.message().contains("unknown encoding tag"), "{garbage:?}");
    region.shutdown().await;
}
