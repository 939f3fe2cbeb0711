//! Every typed call once, against the fake: what is sent and what comes back.

use orgplane_client::testing::Fault;
use orgplane_client::{v1, Consistency, PageRequest};
use orgplane_model::{Region, Role};
use tonic::Code;

use crate::start;

#[tokio::test]
async fn orgs_are_created_read_listed_updated_and_deleted() {
    let (_server, client) = start().await;
    let org = client.create_org(Region::Eu, "  Acme  ").await.unwrap();
    assert_eq!((org.name.as_str(), org.region.as_str(), org.version), ("Acme", "eu", 1));
    assert!(org.id.starts_with("eu-"), "{}", org.id);

    let read = client.get_org(&org.id, Consistency::Local).await.unwrap();
    assert_eq!(read.org, org);
    let info = read.read.expect("a read says how it was served");
    assert_eq!(info.consistency(), v1::ReadConsistency::Local);

    let parsed: orgplane_model::OrgId = org.id.parse().unwrap();
    assert_eq!(client.get_org(&parsed, Consistency::Linearizable).await.unwrap().org, org, "an OrgId works too");

    let renamed = client.update_org(&org.id, "Acme Corp", Some(1)).await.unwrap();
    assert_eq!((renamed.name.as_str(), renamed.version), ("Acme Corp", 2));
    let stale = client.update_org(&org.id, "Acme Inc", Some(1)).await.expect_err("version 1 is stale");
    assert_eq!(stale.code(), Code::Aborted);
    assert_eq!(stale.hint(), "someone changed it first: get it again and retry with the new version");

    client.add_member(&org.id, "alice", Role::Admin).await.unwrap();
    assert_eq!(client.delete_org(&org.id, Some(2)).await.unwrap(), 1, "the membership went with the org");
    let gone = client.get_org(&org.id, Consistency::Linearizable).await.expect_err("deleted");
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test]
async fn lists_come_in_pages_and_list_all_follows_them() {
    let (_server, client) = start().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(client.create_org(Region::Us, &format!("org {n}")).await.unwrap().id);
    }
    client.create_org(Region::Eu, "elsewhere").await.unwrap();

    let first = client.list_orgs(Region::Us, PageRequest::first(2)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let token = first.next_page_token.clone().expect("more pages");
    let second = client.list_orgs(Region::Us, PageRequest::after(2, token)).await.unwrap();
    assert_eq!(second.items.len(), 2);
    assert!(second.items[0].id > first.items[1].id, "pages are in id order");

    let all = client.list_all_orgs(Region::Us, Consistency::Linearizable).await.unwrap();
    assert_eq!(all.items.iter().map(|o| o.id.clone()).collect::<Vec<_>>(), ids);
    assert_eq!(all.next_page_token, None);

    let too_big = client.list_orgs(Region::Us, PageRequest::first(1001)).await.expect_err("at most 1000");
    assert_eq!(too_big.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn members_are_added_changed_listed_and_removed() {
    let (_server, client) = start().await;
    let org = client.create_org(Region::Apac, "Acme").await.unwrap();
    for (user, role) in [("carol", Role::Viewer), ("alice", Role::Admin), ("bob", Role::Developer)] {
        let member = client.add_member(&org.id, user, role.clone()).await.unwrap();
        assert_eq!((member.user_id.as_str(), member.role.as_str()), (user, role.as_str()));
    }
    let twice = client.add_member(&org.id, "alice", Role::Viewer).await.expect_err("alice is a member");
    assert_eq!(twice.code(), Code::AlreadyExists);

    let changed = client.set_member_role(&org.id, "carol", Role::Agent).await.unwrap();
    assert_eq!(changed.role, "agent");
    client.remove_member(&org.id, "bob").await.unwrap();
    let missing = client.remove_member(&org.id, "bob").await.expect_err("bob is gone");
    assert_eq!(missing.code(), Code::NotFound);

    let page = client.list_members(&org.id, PageRequest::first(1)).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(page.next_page_token.is_some());
    let all = client.list_all_members(&org.id, Consistency::Local).await.unwrap();
    let users: Vec<_> = all.items.iter().map(|m| (m.user_id.as_str(), m.role.as_str())).collect();
    assert_eq!(users, [("alice", "admin"), ("carol", "agent")]);
}

#[tokio::test]
async fn user_orgs_say_which_regions_answered() {
    let (server, client) = start().await;
    let us = client.create_org(Region::Us, "in us").await.unwrap();
    let eu = client.create_org(Region::Eu, "in eu").await.unwrap();
    client.add_member(&us.id, "alice", Role::Admin).await.unwrap();
    client.add_member(&eu.id, "alice", Role::Viewer).await.unwrap();

    let complete = client.list_user_orgs("alice", PageRequest::default()).await.unwrap();
    assert_eq!(complete.orgs.len(), 2);
    assert!(!complete.is_partial());
    assert_eq!(complete.regions.len(), 3);

    server.set_region_result(Region::Eu, v1::RegionState::Unavailable, "region eu has no leader");
    let partial = client.list_all_user_orgs("alice", Consistency::Linearizable).await.unwrap();
    assert!(partial.is_partial());
    assert_eq!(partial.orgs.len(), 1);
    assert_eq!(partial.orgs[0].role, "admin");
    let unanswered: Vec<_> = partial.unanswered_regions().map(|r| (r.region.as_str(), r.message.as_str())).collect();
    assert_eq!(unanswered, [("eu", "region eu has no leader")]);
}

#[tokio::test]
async fn cluster_status_and_topology_list_every_region() {
    let (server, client) = start().await;
    let status = client.cluster_status().await.unwrap();
    assert_eq!(status.iter().map(|r| r.region.as_str()).collect::<Vec<_>>(), ["us", "eu", "apac"]);
    assert!(status.iter().all(|r| r.nodes.len() == 3));
    let topology = client.topology().await.unwrap();
    assert_eq!(topology.len(), 3);
    assert_eq!(topology[0].endpoints.len(), 3);

    server.inject(Fault::Refuse(Code::PermissionDenied), 1);
    let denied = client.topology().await.expect_err("injected");
    assert_eq!(denied.code_name(), "PERMISSION_DENIED");
}

#[tokio::test]
async fn the_raw_clients_share_the_connection_and_credentials() {
    let (server, client) = start().await;
    let mut raw = client.org_service();
    let response = raw
        .create_org(v1::CreateOrgRequest { region: "us".into(), name: "raw".into(), request_id: String::new() })
        .await
        .unwrap();
    assert_eq!(response.into_inner().org.unwrap().name, "raw");
    client.cluster_service().get_topology(v1::GetTopologyRequest {}).await.unwrap();
    assert_eq!(server.calls().len(), 2);
}
