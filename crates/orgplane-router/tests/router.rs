//! The router against fake region nodes on 127.0.0.1: routing, refusals, failover, leader
//! hints, retries, fan-out, pagination, cluster status, health, reflection, and what it logs.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orgplane_model::Region;
use orgplane_proto::v1::*;
use orgplane_router::{REGION_METADATA_KEY, UNREACHABLE_ROLE};
use support::*;
use tonic::Code;

fn get_org(id: &str) -> GetOrgRequest {
    GetOrgRequest { org_id: id.to_string(), ..Default::default() }
}

fn add_member(id: &str, user: &str, request_id: &str) -> AddMemberRequest {
    AddMemberRequest {
        org_id: id.to_string(),
        user_id: user.to_string(),
        role: "viewer".into(),
        request_id: request_id.to_string(),
    }
}

#[tokio::test]
async fn routes_org_calls_by_the_region_in_the_id() {
    let us = FakeNode::start(Region::Us, 1).await;
    let eu = FakeNode::start(Region::Eu, 2).await;
    let mut router =
        TestRouter::start(test_config(&[(Region::Us, vec![us.endpoint()]), (Region::Eu, vec![eu.endpoint()])])).await;

    let eu_org = org_id(Region::Eu, 7);
    let got = bounded("GetOrg", router.org.get_org(get_org(&eu_org))).await.unwrap().into_inner();
    assert_eq!(got.read.unwrap().region, "eu");
    assert_eq!(got.org.unwrap().id, eu_org);

    let us_org = org_id(Region::Us, 8);
    bounded("AddMember", router.org.add_member(add_member(&us_org, "u1", "k1"))).await.unwrap();
    bounded(
        "ListMembers",
        router.org.list_members(ListMembersRequest { org_id: eu_org.clone(), ..Default::default() }),
    )
    .await
    .unwrap();

    assert!(
        matches!(&eu.seen()[..], [Seen::GetOrg(g), Seen::ListMembers(l)] if g.org_id == eu_org && l.org_id == eu_org)
    );
    assert!(matches!(&us.seen()[..], [Seen::AddMember(a)] if a.org_id == us_org && a.request_id == "k1"));
    router.stop().await;
}

#[tokio::test]
async fn create_and_list_go_to_the_named_region_and_writes_get_a_request_id() {
    let us = FakeNode::start(Region::Us, 1).await;
    let eu = FakeNode::start(Region::Eu, 2).await;
    let mut router =
        TestRouter::start(test_config(&[(Region::Us, vec![us.endpoint()]), (Region::Eu, vec![eu.endpoint()])])).await;

    let created = bounded(
        "CreateOrg",
        router.org.create_org(CreateOrgRequest { region: "eu".into(), name: "Acme".into(), request_id: String::new() }),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(created.org.unwrap().region, "eu");
    bounded("ListOrgs", router.org.list_orgs(ListOrgsRequest { region: "US".into(), ..Default::default() }))
        .await
        .unwrap();

    let [Seen::CreateOrg(create)] = &eu.seen()[..] else { panic!("eu saw {:?}", eu.seen()) };
    assert_eq!(create.name, "Acme");
    assert_eq!(create.request_id.len(), 32, "the router fills in a missing request id: {:?}", create.request_id);
    assert!(create.request_id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(matches!(&us.seen()[..], [Seen::ListOrgs(_)]));
    router.stop().await;
}

#[tokio::test]
async fn refuses_bad_ids_and_unserved_regions_without_forwarding() {
    let us = FakeNode::start(Region::Us, 1).await;
    let eu = FakeNode::start(Region::Eu, 2).await;
    let mut router =
        TestRouter::start(test_config(&[(Region::Us, vec![us.endpoint()]), (Region::Eu, vec![eu.endpoint()])])).await;

    for bad in
        ["", "eu", "eu-nope", "EU-01jdq3n8x2k7m4p9r5t6v8w0yz", "mars-01jdq3n8x2k7m4p9r5t6v8w0yz", &"x".repeat(500)]
    {
        let status = bounded("GetOrg", router.org.get_org(get_org(bad))).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "id {bad:?}: {status:?}");
        assert!(status.message().starts_with("invalid org_id"), "{status:?}");
        let status = bounded(
            "RemoveMember",
            router.org.remove_member(RemoveMemberRequest { org_id: bad.to_string(), ..Default::default() }),
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "id {bad:?}: {status:?}");
    }
    for bad in ["", "mars"] {
        let status =
            bounded("CreateOrg", router.org.create_org(CreateOrgRequest { region: bad.into(), ..Default::default() }))
                .await
                .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "region {bad:?}: {status:?}");
        let status =
            bounded("ListOrgs", router.org.list_orgs(ListOrgsRequest { region: bad.into(), ..Default::default() }))
                .await
                .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "region {bad:?}: {status:?}");
    }

    // apac is a region, but this router has no nodes for it.
    let status = bounded("GetOrg", router.org.get_org(get_org(&org_id(Region::Apac, 1)))).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "region apac is not served by this router");
    assert_eq!(status.metadata().get(REGION_METADATA_KEY).unwrap(), "apac");
    let status =
        bounded("CreateOrg", router.org.create_org(CreateOrgRequest { region: "apac".into(), ..Default::default() }))
            .await
            .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let status = bounded(
        "ListUserOrgs",
        router.org.list_user_orgs(ListUserOrgsRequest {
            user_id: "u".into(),
            page_token: "not-a-token".into(),
            ..Default::default()
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    assert_eq!(us.seen_count() + eu.seen_count(), 0, "nothing refused may reach a node");
    router.stop().await;
}

#[tokio::test]
async fn a_region_without_reachable_nodes_is_unavailable_and_named() {
    let us = FakeNode::start(Region::Us, 1).await;
    let eu_nodes = vec![dead_endpoint().await, dead_endpoint().await];
    let mut router = TestRouter::start(test_config(&[(Region::Us, vec![us.endpoint()]), (Region::Eu, eu_nodes)])).await;

    let started = Instant::now();
    let status =
        bounded("GetOrg", router.org.get_org(with_deadline(get_org(&org_id(Region::Eu, 1)), Duration::from_secs(3))))
            .await
            .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().starts_with("region eu is unavailable: none of its 2 nodes answered"), "{status:?}");
    assert!(status.message().contains("refused"), "the cause is named: {status:?}");
    assert_eq!(status.metadata().get(REGION_METADATA_KEY).unwrap(), "eu");
    assert!(started.elapsed() < Duration::from_secs(3), "answered after the deadline: {:?}", started.elapsed());

    // A write fails the same way (it never reached a node), and the other region still works.
    let status =
        bounded("AddMember", router.org.add_member(add_member(&org_id(Region::Eu, 1), "u", ""))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("region eu"));
    bounded("GetOrg", router.org.get_org(get_org(&org_id(Region::Us, 1)))).await.unwrap();
    router.stop().await;
}

#[tokio::test]
async fn a_region_that_never_answers_is_deadline_exceeded_within_the_deadline() {
    let eu = FakeNode::start(Region::Eu, 1).await;
    eu.hang();
    let (_silent, silent) = silent_endpoint().await;
    let mut router =
        TestRouter::start(test_config(&[(Region::Eu, vec![eu.endpoint()]), (Region::Us, vec![silent])])).await;

    for id in [org_id(Region::Eu, 1), org_id(Region::Us, 1)] {
        let started = Instant::now();
        let status = bounded("GetOrg", router.org.get_org(with_deadline(get_org(&id), Duration::from_secs(1))))
            .await
            .unwrap_err();
        let region = &id[..2];
        assert_eq!(status.code(), Code::DeadlineExceeded, "{id}: {status:?}");
        assert!(status.message().starts_with(&format!("region {region} did not answer within")), "{status:?}");
        // Answered before the client's deadline (else tonic would have cancelled the call).
        assert!(started.elapsed() < Duration::from_secs(1), "answered after the deadline: {:?}", started.elapsed());
    }
    assert_eq!(eu.seen_count(), 1, "a read that timed out is not sent again after the deadline");
    router.stop().await;
}

#[tokio::test]
async fn a_node_that_accepts_but_never_answers_does_not_use_up_the_deadline() {
    let frozen = FakeNode::start(Region::Eu, 1).await;
    frozen.hang();
    let live = FakeNode::start(Region::Eu, 2).await;
    let mut router = TestRouter::start(test_config(&[(Region::Eu, vec![frozen.endpoint(), live.endpoint()])])).await;

    // The frozen node is tried first; the read moves on to the live node after its share of
    // the deadline instead of waiting for all of it.
    let started = Instant::now();
    let read = router.org.get_org(with_deadline(get_org(&org_id(Region::Eu, 1)), Duration::from_secs(6)));
    bounded("GetOrg", read).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(frozen.seen_count(), 1);
    assert_eq!(live.seen_count(), 1);

    // A write with a request id may move on the same way (the region applies it once).
    let write =
        router.org.add_member(with_deadline(add_member(&org_id(Region::Eu, 1), "u", "rid-1"), Duration::from_secs(6)));
    bounded("AddMember", write).await.unwrap();
    router.stop().await;
}

#[tokio::test]
async fn fan_out_answers_with_the_regions_that_answered_and_says_which_did_not() {
    let us = FakeNode::start(Region::Us, 1).await;
    us.add_user_orgs(2);
    let eu = FakeNode::start(Region::Eu, 2).await;
    eu.add_user_orgs(2);
    eu.hang();
    let apac = dead_endpoint().await;
    let config = test_config(&[
        (Region::Us, vec![us.endpoint()]),
        (Region::Eu, vec![eu.endpoint()]),
        (Region::Apac, vec![apac]),
    ]);
    let fanout_timeout = Duration::from_millis(config.fanout_timeout_ms);
    let mut router = TestRouter::start(config).await;

    let started = Instant::now();
    let page = bounded(
        "ListUserOrgs",
        router.org.list_user_orgs(with_deadline(
            ListUserOrgsRequest { user_id: "u1".into(), ..Default::default() },
            Duration::from_secs(5),
        )),
    )
    .await
    .unwrap()
    .into_inner();
    let elapsed = started.elapsed();
    assert!(elapsed >= fanout_timeout && elapsed < fanout_timeout + Duration::from_secs(1), "took {elapsed:?}");

    let states: Vec<_> = page.regions.iter().map(|r| (r.region.as_str(), r.state())).collect();
    assert_eq!(
        states,
        [("us", RegionState::Ok), ("eu", RegionState::DeadlineExceeded), ("apac", RegionState::Unavailable)]
    );
    assert!(page.regions[1].message.contains("region eu did not answer"), "{:?}", page.regions[1]);
    assert!(page.regions[2].message.contains("region apac is unavailable"), "{:?}", page.regions[2]);
    assert_eq!(page.orgs.len(), 2);
    assert!(page.orgs.iter().all(|o| o.org.as_ref().unwrap().region == "us"));
    assert!(!page.next_page_token.is_empty(), "the regions that did not answer are still to be listed");

    // The next page asks only the regions not done: us returned its last page.
    let us_calls = us.seen_count();
    let next = bounded(
        "ListUserOrgs",
        router.org.list_user_orgs(ListUserOrgsRequest {
            user_id: "u1".into(),
            page_token: page.next_page_token,
            ..Default::default()
        }),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(us.seen_count(), us_calls);
    let asked: Vec<_> = next.regions.iter().map(|r| r.region.as_str()).collect();
    assert_eq!(asked, ["eu", "apac"]);
    router.stop().await;
}

#[tokio::test]
async fn pagination_across_regions_lists_every_org_exactly_once() {
    let us = FakeNode::start(Region::Us, 1).await;
    us.add_user_orgs(1);
    let eu = FakeNode::start(Region::Eu, 2).await;
    eu.add_user_orgs(5);
    let apac = FakeNode::start(Region::Apac, 3).await;
    apac.add_user_orgs(3);
    let config = test_config(&[
        (Region::Us, vec![us.endpoint()]),
        (Region::Eu, vec![eu.endpoint()]),
        (Region::Apac, vec![apac.endpoint()]),
    ]);
    let mut router = TestRouter::start(config).await;

    let mut listed = Vec::new();
    let mut token = String::new();
    for page_number in 1.. {
        assert!(page_number <= 10, "the listing does not end");
        let request =
            ListUserOrgsRequest { user_id: "u1".into(), page_size: 2, page_token: token.clone(), ..Default::default() };
        let page = bounded("ListUserOrgs", router.org.list_user_orgs(request)).await.unwrap().into_inner();
        assert!(page.regions.iter().all(|r| r.state() == RegionState::Ok), "{:?}", page.regions);
        let regions: Vec<_> =
            page.orgs.iter().map(|o| o.org.as_ref().unwrap().region.parse::<Region>().unwrap()).collect();
        assert!(regions.is_sorted(), "orgs are merged in region order: {regions:?}");
        listed.extend(page.orgs.into_iter().map(|o| o.org.unwrap().id));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let unique: BTreeSet<_> = listed.iter().cloned().collect();
    assert_eq!(listed.len(), 9, "{listed:?}");
    assert_eq!(unique.len(), 9, "an org was listed twice: {listed:?}");
    // page_size applies per region; a region whose pages are done is not asked again.
    assert_eq!((us.seen_count(), eu.seen_count(), apac.seen_count()), (1, 3, 2));
    for seen in eu.seen() {
        let Seen::ListUserOrgs(request) = seen else { panic!("{seen:?}") };
        assert_eq!(request.page_size, 2);
        assert_eq!(request.user_id, "u1");
    }
    router.stop().await;
}

#[tokio::test]
async fn the_leader_hint_picks_the_node_for_the_next_request() {
    let a = FakeNode::start(Region::Eu, 1).await;
    let b = FakeNode::start(Region::Eu, 2).await;
    let c = FakeNode::start(Region::Eu, 3).await;
    for node in [&a, &b, &c] {
        node.name_leader(&c.endpoint());
    }
    let mut router =
        TestRouter::start(test_config(&[(Region::Eu, vec![a.endpoint(), b.endpoint(), c.endpoint()])])).await;
    let id = org_id(Region::Eu, 1);

    let first = bounded("GetOrg", router.org.get_org(get_org(&id))).await.unwrap().into_inner();
    assert_eq!(first.read.unwrap().node_id, 1, "without a hint the first configured node is tried");
    let second = bounded("GetOrg", router.org.get_org(get_org(&id))).await.unwrap().into_inner();
    assert_eq!(second.read.unwrap().node_id, 3, "the node named leader is tried next");
    bounded("AddMember", router.org.add_member(add_member(&id, "u", "k"))).await.unwrap();
    assert_eq!((a.seen_count(), b.seen_count(), c.seen_count()), (1, 0, 2));
    router.stop().await;
}

#[tokio::test]
async fn an_unknown_leader_is_ignored() {
    let a = FakeNode::start(Region::Eu, 1).await;
    let b = FakeNode::start(Region::Eu, 2).await;
    a.name_leader("10.9.9.9:1");
    let mut router = TestRouter::start(test_config(&[(Region::Eu, vec![a.endpoint(), b.endpoint()])])).await;
    for _ in 0..2 {
        bounded("GetOrg", router.org.get_org(get_org(&org_id(Region::Eu, 1)))).await.unwrap();
    }
    assert_eq!((a.seen_count(), b.seen_count()), (2, 0));
    router.stop().await;
}

#[tokio::test]
async fn fails_over_to_the_next_node_when_the_first_is_dead() {
    let alive = FakeNode::start(Region::Eu, 2).await;
    let mut router =
        TestRouter::start(test_config(&[(Region::Eu, vec![dead_endpoint().await, alive.endpoint()])])).await;
    let id = org_id(Region::Eu, 1);

    let got = bounded("GetOrg", router.org.get_org(get_org(&id))).await.unwrap().into_inner();
    assert_eq!(got.read.unwrap().node_id, 2);
    // A write that could not connect is safe to send elsewhere, whatever its request id.
    bounded(
        "UpdateOrg",
        router.org.update_org(UpdateOrgRequest { org_id: id.clone(), name: "n".into(), ..Default::default() }),
    )
    .await
    .unwrap();
    assert!(matches!(&alive.seen()[..], [Seen::GetOrg(_), Seen::UpdateOrg(_)]));
    router.stop().await;
}

#[tokio::test]
async fn a_retried_write_carries_the_clients_request_id() {
    let a = FakeNode::start(Region::Eu, 1).await;
    let b = FakeNode::start(Region::Eu, 2).await;
    a.answer_unavailable(1);
    let mut router = TestRouter::start(test_config(&[(Region::Eu, vec![a.endpoint(), b.endpoint()])])).await;

    bounded("AddMember", router.org.add_member(add_member(&org_id(Region::Eu, 1), "u", "client-key-1"))).await.unwrap();
    let ids: Vec<_> = a.seen().iter().chain(b.seen().iter()).map(|s| s.request_id().unwrap().to_string()).collect();
    assert_eq!(ids, ["client-key-1", "client-key-1"], "both nodes saw the write, with the same key");
    router.stop().await;
}

#[tokio::test]
async fn a_retried_write_without_a_request_id_gets_one_and_keeps_it() {
    let a = FakeNode::start(Region::Eu, 1).await;
    let b = FakeNode::start(Region::Eu, 2).await;
    a.answer_unavailable(1);
    let mut router = TestRouter::start(test_config(&[(Region::Eu, vec![a.endpoint(), b.endpoint()])])).await;

    let request = SetMemberRoleRequest {
        org_id: org_id(Region::Eu, 1),
        user_id: "u".into(),
        role: "admin".into(),
        request_id: String::new(),
    };
    bounded("SetMemberRole", router.org.set_member_role(request)).await.unwrap();
    let ids: Vec<_> = a.seen().iter().chain(b.seen().iter()).map(|s| s.request_id().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(!ids[0].is_empty());
    assert_eq!(ids[0], ids[1], "the router's retry reuses the id it made up");
    router.stop().await;
}

#[tokio::test]
async fn a_node_answer_passes_through_unchanged_and_is_not_retried() {
    let a = FakeNode::start(Region::Eu, 1).await;
    let b = FakeNode::start(Region::Eu, 2).await;
    let mut router = TestRouter::start(test_config(&[(Region::Eu, vec![a.endpoint(), b.endpoint()])])).await;
    let mut request = add_member(&org_id(Region::Eu, 1), "u9", "k");
    request.role = "owner".into();
    let status = bounded("AddMember", router.org.add_member(request)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "user u9 cannot be given role owner");
    assert_eq!((a.seen_count(), b.seen_count()), (1, 0));
    router.stop().await;
}

#[tokio::test]
async fn sheds_load_instead_of_queueing_behind_a_busy_node() {
    let eu = FakeNode::start(Region::Eu, 1).await;
    eu.hang();
    let config = orgplane_router::RouterConfig {
        max_concurrent_requests_per_node: 1,
        ..test_config(&[(Region::Eu, vec![eu.endpoint()])])
    };
    let mut router = TestRouter::start(config).await;
    let id = org_id(Region::Eu, 1);

    // The first call takes the node's only slot and hangs there.
    let mut first_client = router.org.clone();
    let first = tokio::spawn({
        let id = id.clone();
        async move { first_client.get_org(with_deadline(get_org(&id), Duration::from_secs(2))).await }
    });
    eu.wait_until_seen(1).await;

    let started = Instant::now();
    let status = bounded("GetOrg", router.org.get_org(get_org(&id))).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().starts_with("region eu is overloaded"), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(1), "shed at once, not queued: {:?}", started.elapsed());
    assert_eq!(eu.seen_count(), 1, "the shed call never reached the node");

    let first = bounded("the hanging call", first).await.unwrap().unwrap_err();
    assert_eq!(first.code(), Code::DeadlineExceeded);
    router.stop().await;
}

#[tokio::test]
async fn cluster_status_asks_every_node_and_marks_the_unreachable() {
    let us1 = FakeNode::start(Region::Us, 1).await;
    let us2 = FakeNode::start(Region::Us, 2).await;
    // us1 still believes it leads term 4; us2 leads term 5.
    us1.set_raft_view(4, 1);
    us2.set_raft_view(5, 2);
    let us_dead = dead_endpoint().await;
    let eu1 = FakeNode::start(Region::Eu, 7).await;
    eu1.set_raft_view(9, 7);
    let (_silent, eu_silent) = silent_endpoint().await;
    let config = test_config(&[
        (Region::Us, vec![us1.endpoint(), us_dead.clone(), us2.endpoint()]),
        (Region::Eu, vec![eu1.endpoint(), eu_silent.clone()]),
    ]);
    let status_timeout = Duration::from_millis(config.status_timeout_ms);
    let mut router = TestRouter::start(config).await;

    let started = Instant::now();
    let status = bounded("GetClusterStatus", router.cluster.get_cluster_status(GetClusterStatusRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(started.elapsed() < status_timeout + Duration::from_secs(1), "took {:?}", started.elapsed());

    let [us, eu] = &status.regions[..] else { panic!("{status:?}") };
    assert_eq!((us.region.as_str(), us.term, us.leader_id), ("us", 5, 2), "the highest term wins");
    let us_nodes: Vec<_> = us.nodes.iter().map(|n| (n.address.as_str(), n.role.as_str(), n.node_id)).collect();
    assert_eq!(
        us_nodes,
        [
            (us1.endpoint().as_str(), "leader", 1),
            (us_dead.as_str(), UNREACHABLE_ROLE, 0),
            (us2.endpoint().as_str(), "leader", 2)
        ]
    );
    assert!(!us.nodes[1].error.is_empty() && !us.nodes[1].healthy);
    assert_eq!((eu.region.as_str(), eu.term, eu.leader_id), ("eu", 9, 7));
    assert_eq!(eu.nodes.len(), 2);
    assert_eq!((eu.nodes[1].address.as_str(), eu.nodes[1].role.as_str()), (eu_silent.as_str(), UNREACHABLE_ROLE));
    assert!(eu.nodes[1].error.contains("no answer within"), "{:?}", eu.nodes[1]);

    let topology =
        bounded("GetTopology", router.cluster.get_topology(GetTopologyRequest {})).await.unwrap().into_inner();
    let topology: Vec<_> = topology.regions.iter().map(|r| (r.region.as_str(), r.endpoints.clone())).collect();
    assert_eq!(
        topology,
        [("us", vec![us1.endpoint(), us_dead, us2.endpoint()]), ("eu", vec![eu1.endpoint(), eu_silent])]
    );
    router.stop().await;
}

#[tokio::test]
async fn serves_health_and_reflection() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let us = FakeNode::start(Region::Us, 1).await;
    let router = TestRouter::start(test_config(&[(Region::Us, vec![us.endpoint()])])).await;

    let mut health = HealthClient::new(router.channel.clone());
    for service in ["", "orgplane.v1.OrgService", "orgplane.v1.ClusterService"] {
        let answer = bounded("health check", health.check(HealthCheckRequest { service: service.into() }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.status(), ServingStatus::Serving, "service {service:?}");
    }

    let mut reflection = ServerReflectionClient::new(router.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = bounded("reflection", reflection.server_reflection_info(tokio_stream::iter([request])))
        .await
        .unwrap()
        .into_inner();
    let answer = bounded("reflection answer", answers.message()).await.unwrap().expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else { panic!("{answer:?}") };
    let names: BTreeSet<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains("orgplane.v1.OrgService") && names.contains("orgplane.v1.ClusterService"), "{names:?}");
    assert!(!names.iter().any(|n| n.contains("raft")), "the peer-only Raft service is not the router's: {names:?}");
    router.stop().await;
}

/// A `tracing` writer that keeps everything written to it.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;
    fn make_writer(&'a self) -> CapturedLogs {
        self.clone()
    }
}

/// Everything runs on this test's one thread, so the thread-local subscriber sees the
/// router's, tonic's and hyper's events at every level.
#[tokio::test(flavor = "current_thread")]
async fn logs_carry_no_payload() {
    let logs = CapturedLogs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(logs.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    const ORG_NAME: &str = "Zanzibar Quokka Holdings 7731";
    const USER_ID: &str = "user-secret-9f3a";
    let eu = FakeNode::start(Region::Eu, 1).await;
    let mut router = TestRouter::start(test_config(&[(Region::Eu, vec![dead_endpoint().await, eu.endpoint()])])).await;

    let created = bounded(
        "CreateOrg",
        router.org.create_org(CreateOrgRequest {
            region: "eu".into(),
            name: ORG_NAME.into(),
            request_id: String::new(),
        }),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(created.org.unwrap().name, ORG_NAME);
    let id = org_id(Region::Eu, 1);
    bounded("AddMember", router.org.add_member(add_member(&id, USER_ID, ""))).await.unwrap();
    let mut owner = add_member(&id, USER_ID, "");
    owner.role = "owner".into();
    let status = bounded("AddMember", router.org.add_member(owner)).await.unwrap_err();
    assert!(status.message().contains(USER_ID), "the client gets the node's message: {status:?}");
    let listed = bounded(
        "ListUserOrgs",
        router.org.list_user_orgs(ListUserOrgsRequest { user_id: USER_ID.into(), ..Default::default() }),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(listed.regions[0].state(), RegionState::Ok);
    router.stop().await;

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("rpc=\"CreateOrg\"") && logs.contains("rpc=\"AddMember\"") && logs.contains("region=\"eu\""),
        "{logs}"
    );
    assert!(logs.contains("code=InvalidArgument") && logs.contains("latency_ms"), "{logs}");
    assert!(!logs.contains(ORG_NAME) && !logs.contains("Zanzibar"), "the org name was logged:\n{logs}");
    assert!(!logs.contains(USER_ID), "the user id was logged:\n{logs}");
}

// ---------------------------------------------------------------------------- backup relay

/// A node whose `AdminService` answers `Backup` with a header and one data chunk, then either
/// nothing more, ever (`every: None`: a stalled stream), or another chunk every `every`.
struct ScriptedBackupNode {
    every: Option<Duration>,
}

fn data_chunk() -> BackupChunk {
    BackupChunk { part: Some(backup_chunk::Part::Data(vec![7; 16])) }
}

#[tonic::async_trait]
impl orgplane_proto::v1::admin_service_server::AdminService for ScriptedBackupNode {
    async fn add_node(
        &self,
        _: tonic::Request<AddNodeRequest>,
    ) -> Result<tonic::Response<AddNodeResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("scripted backups only"))
    }

    async fn remove_node(
        &self,
        _: tonic::Request<RemoveNodeRequest>,
    ) -> Result<tonic::Response<RemoveNodeResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("scripted backups only"))
    }

    async fn get_membership(
        &self,
        _: tonic::Request<GetMembershipRequest>,
    ) -> Result<tonic::Response<GetMembershipResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("scripted backups only"))
    }

    type BackupStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<BackupChunk, tonic::Status>> + Send>>;

    async fn backup(
        &self,
        _: tonic::Request<BackupRequest>,
    ) -> Result<tonic::Response<Self::BackupStream>, tonic::Status> {
        use futures::StreamExt;
        let header = BackupChunk { part: Some(backup_chunk::Part::Header(BackupHeader::default())) };
        let first = futures::stream::iter(vec![Ok(header), Ok(data_chunk())]);
        let rest: Self::BackupStream = match self.every {
            None => Box::pin(futures::stream::pending()),
            Some(every) => Box::pin(futures::stream::unfold((), move |()| async move {
                tokio::time::sleep(every).await;
                Some((Ok(data_chunk()), ()))
            })),
        };
        Ok(tonic::Response::new(Box::pin(first.chain(rest))))
    }
}

/// Serves a scripted backup node on 127.0.0.1:0; returns its endpoint.
async fn scripted_backup_node(every: Option<Duration>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    let service = orgplane_proto::v1::admin_service_server::AdminServiceServer::new(ScriptedBackupNode { every });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    endpoint
}

/// Reads `stream` until it fails; returns how many messages came first, and the failure.
async fn messages_until_failure(stream: &mut tonic::Streaming<BackupChunk>) -> (usize, tonic::Status) {
    let mut received = 0;
    loop {
        match bounded("the next backup message", stream.message()).await {
            Ok(Some(_)) => received += 1,
            Ok(None) => panic!("the stream ended cleanly after {received} messages"),
            Err(status) => return (received, status),
        }
    }
}

#[tokio::test]
async fn a_backup_stream_that_stalls_ends_unavailable_naming_the_region() {
    let node = scripted_backup_node(None).await;
    let config = orgplane_router::RouterConfig { request_timeout_ms: 600, ..test_config(&[(Region::Eu, vec![node])]) };
    let router = TestRouter::start(config).await;
    let mut admin = orgplane_proto::v1::admin_service_client::AdminServiceClient::new(router.channel.clone());

    let started = Instant::now();
    let mut stream = bounded("Backup", admin.backup(BackupRequest { region: "eu".into() })).await.unwrap().into_inner();
    let (received, status) = messages_until_failure(&mut stream).await;
    assert_eq!(received, 2, "the header and the chunk the node sent are relayed");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("region eu") && status.message().contains("stalled"), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "the stall is cut after the request timeout");

    let refused = bounded("Backup", admin.backup(BackupRequest { region: "mars".into() })).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    router.stop().await;
}

#[tokio::test]
async fn a_backup_stream_ends_at_the_clients_deadline_naming_the_region() {
    let node = scripted_backup_node(Some(Duration::from_millis(50))).await;
    let router = TestRouter::start(test_config(&[(Region::Eu, vec![node])])).await;
    let mut admin = orgplane_proto::v1::admin_service_client::AdminServiceClient::new(router.channel.clone());

    let started = Instant::now();
    let request = with_deadline(BackupRequest { region: "eu".into() }, Duration::from_millis(800));
    let mut stream = bounded("Backup", admin.backup(request)).await.unwrap().into_inner();
    let (received, status) = messages_until_failure(&mut stream).await;
    assert!(received > 2, "chunks flow until the deadline: {received}");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("region eu"), "{status:?}");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "cut at the client's deadline, not the request timeout: {elapsed:?}");
    router.stop().await;
}
