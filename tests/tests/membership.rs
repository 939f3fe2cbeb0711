//! Growing, shrinking and replacing the nodes of a region under a steady write load.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orgplane_model::Region;
use orgplane_proto::v1::admin_service_client::AdminServiceClient;
use orgplane_proto::v1::*;
use orgplane_tests::{connect, test_timings, worth_resending, TestRegion};
use tonic::Code;

fn admin(addr: &str) -> AdminServiceClient<tonic::transport::Channel> {
    AdminServiceClient::new(tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_lazy())
}

fn members(m: &Membership) -> Vec<(u64, String)> {
    m.members.iter().map(|c| (c.node_id, c.kind.clone())).collect()
}

/// Acknowledged writes awaited before and after every membership change.
const WRITES_PER_STEP: usize = 10;

/// What a writer saw: the users it got acknowledged, and its longest run without success.
struct Writer {
    acked: Vec<String>,
    longest_outage: Duration,
}

/// Writes unique members until `stop`, through whichever live node answers.
async fn write_until(
    org_id: String,
    live: Arc<Mutex<Vec<String>>>,
    w: usize,
    stop: Arc<tokio::sync::Notify>,
    acks: Arc<tokio::sync::watch::Sender<usize>>,
) -> Writer {
    let mut acked = Vec::new();
    let mut longest_outage = Duration::ZERO;
    let mut last_ok = Instant::now();
    let mut pick = w;
    let mut stopped = std::pin::pin!(stop.notified());
    for i in 0..100_000 {
        let user = format!("w{w}-{i}");
        let request_id = format!("req-{user}");
        loop {
            let addr = {
                let live = live.lock().unwrap();
                live[pick % live.len()].clone()
            };
            let mut c = connect(&addr).await;
            let mut req = tonic::Request::new(AddMemberRequest {
                org_id: org_id.clone(),
                user_id: user.clone(),
                role: "agent".into(),
                request_id: request_id.clone(),
            });
            req.set_timeout(Duration::from_secs(3));
            match c.add_member(req).await {
                Ok(_) => {
                    longest_outage = longest_outage.max(last_ok.elapsed());
                    last_ok = Instant::now();
                    acked.push(user);
                    acks.send_modify(|n| *n += 1);
                    break;
                }
                // Same request id on every attempt: the write applies once.
                Err(s) if worth_resending(&s) => {
                    pick += 1;
                    assert!(last_ok.elapsed() < Duration::from_secs(60), "writer {w} stuck: {s}");
                }
                Err(s) => panic!("write {user} refused: {s}"),
            }
        }
        if futures::FutureExt::now_or_never(stopped.as_mut()).is_some() {
            break;
        }
    }
    Writer { acked, longest_outage }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_replaced_one_at_a_time_under_load_loses_nothing() {
    let mut region = TestRegion::start(Region::Eu, 3, test_timings).await;
    let leader = region.leader().await;
    let mut c = region.client(leader).await;
    let org = c
        .create_org(CreateOrgRequest { region: "eu".into(), name: "Replaced".into(), request_id: String::new() })
        .await
        .unwrap()
        .into_inner()
        .org
        .unwrap();

    let live = Arc::new(Mutex::new(region.peers.values().cloned().collect::<Vec<_>>()));
    let stop = Arc::new(tokio::sync::Notify::new());
    let acks = Arc::new(tokio::sync::watch::Sender::new(0usize));
    let writers: Vec<_> = (0..3)
        .map(|w| tokio::spawn(write_until(org.id.clone(), live.clone(), w, stop.clone(), acks.clone())))
        .collect();
    // Every change happens while writes are being acknowledged, however fast the change is.
    let mut seen = acks.subscribe();
    let more_writes = |seen: &mut tokio::sync::watch::Receiver<usize>| {
        let target = *seen.borrow() + WRITES_PER_STEP;
        let mut seen = seen.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(30), seen.wait_for(|n| *n >= target))
                .await
                .expect("writes go on during membership changes")
                .expect("writers alive");
        }
    };
    more_writes(&mut seen).await;

    for old in 1..=3u64 {
        let new = old + 3;
        let addr = region.start_joining(new).await;
        let via = live.lock().unwrap()[0].clone();
        let added = admin(&via)
            .add_node(AddNodeRequest { region: "eu".into(), node_id: new, address: addr.clone() })
            .await
            .unwrap_or_else(|s| panic!("add node {new}: {s}"))
            .into_inner()
            .membership
            .unwrap();
        assert!(members(&added).contains(&(new, "voter".into())), "{added:?}");
        live.lock().unwrap().push(addr);
        more_writes(&mut seen).await;

        let removed = admin(&via)
            .remove_node(RemoveNodeRequest { region: "eu".into(), node_id: old })
            .await
            .unwrap_or_else(|s| panic!("remove node {old}: {s}"))
            .into_inner()
            .membership
            .unwrap();
        assert!(!members(&removed).iter().any(|(id, _)| *id == old), "{removed:?}");
        let old_addr = region.peers[&old].clone();
        live.lock().unwrap().retain(|a| *a != old_addr);
        region.stop(old).await;
        region.leader().await;
        more_writes(&mut seen).await;
    }

    stop.notify_waiters();
    let mut acked = BTreeSet::new();
    for w in writers {
        let writer = w.await.unwrap();
        assert!(
            writer.longest_outage < Duration::from_secs(10),
            "a writer went {:?} without a successful write",
            writer.longest_outage
        );
        acked.extend(writer.acked);
    }
    assert!(acked.len() >= 7 * WRITES_PER_STEP, "the load was steady: {} writes", acked.len());

    let leader = region.leader().await;
    assert!(leader > 3, "only new nodes remain");
    let mut c = region.client(leader).await;
    let mut found = BTreeSet::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_members(ListMembersRequest {
                org_id: org.id.clone(),
                page_size: 1000,
                page_token: token,
                consistency: 0,
            })
            .await
            .unwrap()
            .into_inner();
        found.extend(page.members.into_iter().map(|m| m.user_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let lost: Vec<_> = acked.difference(&found).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    region.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn membership_changes_that_would_lose_the_quorum_are_refused() {
    let mut region = TestRegion::start(Region::Us, 3, test_timings).await;
    let leader = region.leader().await;
    let followers: Vec<u64> = region.running_ids().into_iter().filter(|id| *id != leader).collect();
    let leader_addr = region.peers[&leader].clone();

    // With one follower down, removing the other would leave {leader, dead}: no quorum.
    region.stop(followers[0]).await;
    let refused = admin(&leader_addr)
        .remove_node(RemoveNodeRequest { region: "us".into(), node_id: followers[1] })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("quorum"), "{refused:?}");

    // Bad requests are refused before anything changes.
    let wrong_region =
        admin(&leader_addr).remove_node(RemoveNodeRequest { region: "eu".into(), node_id: 2 }).await.unwrap_err();
    assert_eq!(wrong_region.code(), Code::InvalidArgument);
    let unknown =
        admin(&leader_addr).remove_node(RemoveNodeRequest { region: "us".into(), node_id: 42 }).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let bad_addr = admin(&leader_addr)
        .add_node(AddNodeRequest { region: "us".into(), node_id: 9, address: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(bad_addr.code(), Code::InvalidArgument);
    let taken = admin(&leader_addr)
        .add_node(AddNodeRequest { region: "us".into(), node_id: followers[1], address: "127.0.0.1:1".into() })
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::FailedPrecondition, "{taken:?}");

    let m =
        admin(&leader_addr).get_membership(GetMembershipRequest { region: "us".into() }).await.unwrap().into_inner();
    assert_eq!(m.membership.unwrap().members.len(), 3, "nothing changed");
    region.shutdown().await;
}
