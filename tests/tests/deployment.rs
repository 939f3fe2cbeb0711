//! Three regions and a router on loopback (the `orgplane dev` deployment, in this process):
//! routing by the region in the id, residency of each org's data, a region down, restarts.

use std::time::{Duration, Instant};

use orgplane::dev::{self, DevConfig, DevDeployment};
use orgplane_model::Region;
use orgplane_proto::v1::*;
use orgplane_tests::{connect, files_containing};
use tonic::Code;

async fn start(dir: &std::path::Path) -> DevDeployment {
    dev::start(DevConfig {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        node_base_port: 0,
        nodes_per_region: 3,
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        // About the deployment, not authentication (tests/tests/authn.rs).
        allow_unauthenticated: true,
    })
    .await
    .expect("dev deployment starts")
}

/// Creates an org through the typed client, as services would.
async fn create(router: &str, region: Region, name: &str) -> Org {
    let client = orgplane_client::Client::connect(router).expect("client");
    // The regions elect their leaders as the deployment starts; retry with the same request id
    // until the region answers (bounded). The client retries UNAVAILABLE itself too.
    let deadline = Instant::now() + Duration::from_secs(30);
    let request_id: orgplane_client::RequestId = format!("create-{name}").parse().unwrap();
    loop {
        match client.create_org_with_request_id(region, name, &request_id).await {
            Ok(org) => return org,
            Err(e) if e.code() == Code::Unavailable && Instant::now() < deadline => continue,
            Err(e) => panic!("create {name} in {region}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orgs_live_only_in_their_region_and_the_router_routes_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let deployment = start(dir.path()).await;
    let router = deployment.router_addr.to_string();

    let mut orgs = Vec::new();
    for region in Region::ALL {
        let name = format!("residency-probe-{region}-7f3a");
        let org = create(&router, region, &name).await;
        assert!(org.id.starts_with(&format!("{region}-")), "{} names {region}", org.id);
        assert_eq!(org.region, region.to_string());
        orgs.push((region, name, org));
    }
    let mut c = connect(&router).await;
    for (region, name, org) in &orgs {
        let got = c.get_org(GetOrgRequest { org_id: org.id.clone(), consistency: 0 }).await.unwrap().into_inner();
        assert_eq!(&got.org.unwrap().name, name);
        assert_eq!(got.read.unwrap().region, region.to_string(), "served by the org's own region");
    }

    // Each name is on disk in its region's nodes and nowhere else; the router has no data dir.
    for (region, name, _) in &orgs {
        let holders = files_containing(dir.path(), name.as_bytes());
        assert!(!holders.is_empty(), "{name} is stored somewhere");
        let region_dir = dir.path().join(region.as_str());
        for path in &holders {
            assert!(path.starts_with(&region_dir), "{name} of region {region} found outside it: {}", path.display());
        }
        for node in deployment.nodes.iter().filter(|n| n.region == *region) {
            assert!(
                holders.iter().any(|p| p.starts_with(&node.data_dir)),
                "{name} is on node {} of {region}",
                node.node_id
            );
        }
    }
    let top: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    let mut top_sorted = top.clone();
    top_sorted.sort();
    assert_eq!(top_sorted, vec!["apac", "dev-layout.toml", "eu", "us"], "only the regions' dirs and the layout file");

    // Malformed ids and unknown regions are refused by the router itself.
    for bad in ["", "nope", "mars-00000000000000000000000000"] {
        let s = c.get_org(GetOrgRequest { org_id: bad.into(), consistency: 0 }).await.unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument, "{bad}: {s:?}");
    }
    deployment.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_region_down_fails_fast_and_only_for_its_orgs() {
    let dir = tempfile::tempdir().unwrap();
    let mut deployment = start(dir.path()).await;
    let router = deployment.router_addr.to_string();
    let mut by_region = Vec::new();
    for region in Region::ALL {
        let org = create(&router, region, &format!("down-{region}")).await;
        let mut c = connect(&router).await;
        c.add_member(AddMemberRequest {
            org_id: org.id.clone(),
            user_id: "dana".into(),
            role: "agent".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
        by_region.push((region, org));
    }

    deployment.stop_region(Region::Apac).await;
    let mut c = connect(&router).await;
    let apac_org = &by_region[2].1;
    let started = Instant::now();
    let mut req = tonic::Request::new(GetOrgRequest { org_id: apac_org.id.clone(), consistency: 0 });
    req.set_timeout(Duration::from_secs(3));
    let s = c.get_org(req).await.unwrap_err();
    assert!(matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded), "{s:?}");
    assert!(s.message().contains("apac"), "the status names the region: {s:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "fails within the deadline: {:?}", started.elapsed());

    // The other regions keep working, reads and writes.
    for (region, org) in &by_region[..2] {
        let got = c.get_org(GetOrgRequest { org_id: org.id.clone(), consistency: 0 }).await;
        assert!(got.is_ok(), "{region}: {got:?}");
        let w = c
            .update_org(UpdateOrgRequest {
                org_id: org.id.clone(),
                name: format!("still-{region}"),
                expected_version: None,
                request_id: String::new(),
                allowed_import_regions: None,
            })
            .await;
        assert!(w.is_ok(), "{region}: {w:?}");
    }

    // The user-wide list returns the healthy regions' orgs and marks apac unavailable.
    let started = Instant::now();
    let list = c
        .list_user_orgs(ListUserOrgsRequest { user_id: "dana".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(started.elapsed() < Duration::from_secs(5));
    let ids: Vec<&str> = list.orgs.iter().map(|u| u.org.as_ref().unwrap().id.as_str()).collect();
    assert_eq!(ids, vec![by_region[0].1.id.as_str(), by_region[1].1.id.as_str()]);
    let apac = list.regions.iter().find(|r| r.region == "apac").expect("apac is reported");
    assert!(
        matches!(RegionState::try_from(apac.state), Ok(RegionState::Unavailable | RegionState::DeadlineExceeded)),
        "{apac:?}"
    );
    for healthy in ["us", "eu"] {
        let r = list.regions.iter().find(|r| r.region == healthy).unwrap();
        assert_eq!(r.state, RegionState::Ok as i32);
    }
    deployment.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dev_deployment_restarts_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let deployment = start(dir.path()).await;
    let org = create(&deployment.router_addr.to_string(), Region::Eu, "survives-restart").await;
    deployment.shutdown().await;

    let deployment = start(dir.path()).await;
    let mut c = connect(&deployment.router_addr.to_string()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        match c.get_org(GetOrgRequest { org_id: org.id.clone(), consistency: 0 }).await {
            Ok(r) => break r.into_inner().org.unwrap(),
            Err(s) if s.code() == Code::Unavailable && Instant::now() < deadline => continue,
            Err(s) => panic!("{s}"),
        }
    };
    assert_eq!(got.name, "survives-restart");
    deployment.shutdown().await;
}
