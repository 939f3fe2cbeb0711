//! Backup and restore of a region: backed up through the router while writes go on, restored
//! into a fresh 3-node cluster on other ports, and compared org by org and member by member
//! (paginated, linearizable reads) with the original. Refusals (a damaged file, another
//! region's backup, a used data dir) write nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orgplane::restore::{restore, NewCluster, RestoreConfig, RestoreError};
use orgplane_backup::{BackupSummary, BackupWriter};
use orgplane_client::{Client, ClientOptions, Consistency, PageRequest, RequestId};
use orgplane_model::{Region, Role};
use orgplane_proto::v1;
use orgplane_tests::router::{start_router, RouterAuth};
use orgplane_tests::{test_timings, TestRegion, WAIT};
use tonic::Code;

/// A page size that makes every listing take several pages.
const PAGE: u32 = 7;

/// A client that waits out elections: generous timeouts, many retries.
fn client(endpoint: &str) -> Client {
    let options = ClientOptions {
        request_timeout: Duration::from_secs(10),
        total_timeout: WAIT,
        max_retries: 30,
        ..ClientOptions::default()
    };
    Client::with_options(endpoint, options).unwrap()
}

/// Writes the backup of `region` taken through `client` to `path`, as `orgctl backup` does.
async fn backup_to_file(client: &Client, region: Region, path: &Path) -> BackupSummary {
    let mut stream = client.backup(region).await.expect("the backup starts");
    assert_eq!(stream.header().region, region);
    let file = std::fs::File::create(path).unwrap();
    let mut writer = BackupWriter::new(std::io::BufWriter::new(file), stream.header().clone()).unwrap();
    while let Some(data) = stream.next_data().await.expect("the backup streams") {
        assert!(data.len() <= 1024 * 1024, "a chunk of {} bytes", data.len());
        writer.write_data(&data).unwrap();
    }
    let (out, summary) = writer.finish(stream.data_crc32().expect("a checked trailer")).unwrap();
    out.into_inner().unwrap().sync_all().unwrap();
    summary
}

/// Restores every node of a new cluster of `region` from `file` (the same file and peers for
/// each, as the restore docs say) and starts them.
async fn restored_cluster(region: Region, file: &Path) -> TestRegion {
    let cluster = TestRegion::start_seeded(region, 3, test_timings, |node_id, data_dir, peers| {
        // Nodes 1 and 2 are restored with the new cluster named; node 3 without it, so its
        // first start completes the restore with its own --peers. Both paths meet in one cluster.
        let cluster = (node_id != 3).then(|| NewCluster { node_id, peers: peers.clone() });
        let config = RestoreConfig { region, from: file.to_path_buf(), data_dir: data_dir.to_path_buf(), cluster };
        restore(&config).unwrap_or_else(|e| panic!("restore node {node_id}: {e}"));
    })
    .await;
    cluster.leader().await;
    cluster
}

/// Every org of `region` and every member of each, read page by page, linearizably.
type RegionState = BTreeMap<String, (v1::Org, Vec<v1::Member>)>;

async fn read_region(client: &Client, region: Region) -> RegionState {
    let mut state = RegionState::new();
    let mut page = PageRequest::first(PAGE);
    loop {
        let orgs = client.list_orgs(region, page.clone()).await.expect("list orgs");
        for org in orgs.items {
            let members = read_members(client, &org.id).await;
            state.insert(org.id.clone(), (org, members));
        }
        match orgs.next_page_token {
            Some(token) => page = PageRequest::after(PAGE, token),
            None => return state,
        }
    }
}

async fn read_members(client: &Client, org_id: &str) -> Vec<v1::Member> {
    let mut members = Vec::new();
    let mut page = PageRequest::first(PAGE);
    loop {
        let answer = client.list_members(org_id, page.clone()).await.expect("list members");
        members.extend(answer.items);
        match answer.next_page_token {
            Some(token) => page = PageRequest::after(PAGE, token),
            None => return members,
        }
    }
}

/// Users added by the writers, with when each was acknowledged.
type Acks = Arc<tokio::sync::watch::Sender<Vec<(String, String, Instant)>>>;

/// Adds members `w{writer}-{n}` to the orgs in turn until `stop`; records every acknowledged
/// one with the time it was acknowledged. Every attempt of a write has the same request id.
async fn write_members(client: Client, orgs: Vec<String>, writer: usize, acks: Acks, stop: Arc<tokio::sync::Notify>) {
    let mut stopped = std::pin::pin!(stop.notified());
    for n in 0.. {
        let org = &orgs[n % orgs.len()];
        let user = format!("w{writer}-{n:05}");
        let request_id: RequestId = format!("load-{user}").parse().unwrap();
        client.add_member_with_request_id(org, &user, Role::Agent, &request_id).await.expect("a write under load");
        acks.send_modify(|acked| acked.push((org.clone(), user, Instant::now())));
        if futures::FutureExt::now_or_never(stopped.as_mut()).is_some() {
            return;
        }
    }
}

/// Waits until the writers have `more` acknowledgements beyond what they had.
async fn wait_for_acks(acks: &Acks, more: usize) {
    let target = acks.borrow().len() + more;
    tokio::time::timeout(WAIT, acks.subscribe().wait_for(|acked| acked.len() >= target))
        .await
        .expect("the write load stalled")
        .expect("the writers hold the sender");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restored_region_answers_exactly_as_the_original_did_at_the_backup_index() {
    let eu = TestRegion::start(Region::Eu, 3, test_timings).await;
    let us = TestRegion::start(Region::Us, 1, test_timings).await;
    eu.leader().await;
    us.leader().await;
    let (router, _stop_router) = start_router(&[&eu, &us], RouterAuth::Open).await;
    let original = client(&router);

    // Orgs with members, renamed, re-roled and deleted, and one org in another region that
    // shares a user with them.
    let mut eu_orgs = Vec::new();
    for n in 0..10 {
        let request_id: RequestId = format!("create-eu-{n}").parse().unwrap();
        let org = original.create_org_with_request_id(Region::Eu, &format!("Org {n}"), &request_id).await.unwrap();
        for m in 0..n {
            original.add_member(&org.id, &format!("user-{m}"), Role::Developer).await.unwrap();
        }
        eu_orgs.push(org.id);
    }
    original.update_org(&eu_orgs[3], "Org three", Some(1)).await.unwrap();
    original.set_member_role(&eu_orgs[5], "user-2", Role::Admin).await.unwrap();
    original.remove_member(&eu_orgs[6], "user-0").await.unwrap();
    original.delete_org(&eu_orgs[1], None).await.unwrap();
    let us_org = original.create_org(Region::Us, "Only in us").await.unwrap();
    original.add_member(&us_org.id, "user-1", Role::Viewer).await.unwrap();

    // A write load, stopped before the backup: the original's state when the backup call
    // begins is the state at the backup's index.
    let acks = Acks::new(tokio::sync::watch::Sender::new(Vec::new()));
    let stop = Arc::new(tokio::sync::Notify::new());
    let writers: Vec<_> = (0..2)
        .map(|w| tokio::spawn(write_members(original.clone(), eu_orgs[4..8].to_vec(), w, acks.clone(), stop.clone())))
        .collect();
    wait_for_acks(&acks, 20).await;
    stop.notify_waiters();
    for writer in writers {
        writer.await.unwrap();
    }
    let before = read_region(&original, Region::Eu).await;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("eu.opb");
    let summary = backup_to_file(&original, Region::Eu, &file).await;
    let header = &summary.header;
    assert_eq!(header.region, Region::Eu);
    let original_membership: BTreeSet<String> = header.membership.iter().map(|m| m.address.clone()).collect();
    assert_eq!(original_membership, eu.peers.values().cloned().collect(), "the header records the old membership");
    // Nothing was written since: the backup's state is the original's now.
    assert_eq!(read_region(&original, Region::Eu).await, before);

    let mut restored = restored_cluster(Region::Eu, &file).await;
    assert!(restored.peers.values().all(|addr| !original_membership.contains(addr)), "other ports");
    let node = restored.peers[&restored.leader().await].clone();
    let copy = client(&node);
    let after = read_region(&copy, Region::Eu).await;
    assert_eq!(after.len(), 9, "ten orgs, one deleted");
    assert_eq!(after, before, "every org and member as the original had them");
    let first = copy.get_org(&eu_orgs[0], Consistency::Linearizable).await.unwrap();
    let applied = first.read.expect("read info").applied_index;
    assert!(applied >= header.log_index, "the restored cluster continues from index {}", header.log_index);
    // Nothing of another region: the us org is unknown, and user-1's orgs are eu orgs only.
    let missing = copy.get_org(&us_org.id, Consistency::Linearizable).await.expect_err("a us org");
    assert_eq!(missing.code(), Code::NotFound, "{missing}");
    let user_orgs = copy.list_all_user_orgs("user-1", Consistency::Linearizable).await.unwrap();
    assert!(!user_orgs.orgs.is_empty());
    assert!(user_orgs.orgs.iter().all(|o| o.org.as_ref().is_some_and(|o| o.id.starts_with("eu-"))), "{user_orgs:?}");
    // The remembered request ids came along: a retried create answers the first result.
    let retried = copy.create_org_with_request_id(Region::Eu, "Org 0", &"create-eu-0".parse().unwrap()).await.unwrap();
    assert_eq!(retried.id, eu_orgs[0]);

    // The new cluster takes writes, and keeps everything across a node restart.
    let new_org = copy.create_org(Region::Eu, "Born after the restore").await.unwrap();
    copy.add_member(&new_org.id, "newcomer", Role::Admin).await.unwrap();
    let restarted = restored.leader().await;
    restored.stop(restarted).await;
    restored.restart(restarted).await;
    restored.leader().await;
    // Read on the restarted node itself: a linearizable read there waits until it caught up.
    let on_restarted = client(&restored.peers[&restarted]);
    let members = read_members(&on_restarted, &new_org.id).await;
    assert_eq!(members.iter().map(|m| m.user_id.as_str()).collect::<Vec<_>>(), ["newcomer"]);
    let mut now = read_region(&on_restarted, Region::Eu).await;
    assert!(now.remove(&new_org.id).is_some());
    assert_eq!(now, before, "the restored state survives a restart");
    on_restarted.add_member(&eu_orgs[2], "after-restart", Role::Viewer).await.unwrap();

    restored.shutdown().await;
    eu.shutdown().await;
    us.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_load_holds_every_write_acknowledged_before_it_began() {
    let eu = TestRegion::start(Region::Eu, 3, test_timings).await;
    eu.leader().await;
    let (router, _stop_router) = start_router(&[&eu], RouterAuth::Open).await;
    let original = client(&router);
    let mut orgs = Vec::new();
    for n in 0..3 {
        orgs.push(original.create_org(Region::Eu, &format!("Loaded {n}")).await.unwrap().id);
    }

    let acks = Acks::new(tokio::sync::watch::Sender::new(Vec::new()));
    let stop = Arc::new(tokio::sync::Notify::new());
    let writers: Vec<_> = (0..3)
        .map(|w| tokio::spawn(write_members(original.clone(), orgs.clone(), w, acks.clone(), stop.clone())))
        .collect();
    wait_for_acks(&acks, 30).await;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("eu-under-load.opb");
    let began = Instant::now();
    let summary = backup_to_file(&original, Region::Eu, &file).await;
    // Writes go on during and after the backup.
    wait_for_acks(&acks, 10).await;
    stop.notify_waiters();
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = acks.borrow().clone();
    let acked_before: BTreeSet<(String, String)> =
        acked.iter().filter(|(_, _, at)| *at < began).map(|(org, user, _)| (org.clone(), user.clone())).collect();
    let attempted: BTreeSet<(String, String)> =
        acked.iter().map(|(org, user, _)| (org.clone(), user.clone())).collect();
    assert!(acked_before.len() >= 30);

    let restored = restored_cluster(Region::Eu, &file).await;
    let copy = client(&restored.peers[&restored.leader().await]);
    let mut in_backup = BTreeSet::new();
    for org in &orgs {
        for member in read_members(&copy, org).await {
            in_backup.insert((org.clone(), member.user_id));
        }
    }
    let missing: Vec<_> = acked_before.difference(&in_backup).collect();
    assert!(missing.is_empty(), "acknowledged before the backup began, missing from it: {missing:?}");
    let unknown: Vec<_> = in_backup.difference(&attempted).collect();
    assert!(unknown.is_empty(), "in the backup but never written: {unknown:?}");
    // The restored state is the original's at the backup's index: a prefix of each writer's
    // sequence of adds (each writer waits for one add before the next).
    for w in 0..3 {
        let prefix = format!("w{w}-");
        let mine: Vec<&String> = acked.iter().filter(|(_, u, _)| u.starts_with(&prefix)).map(|(_, u, _)| u).collect();
        let kept = in_backup.iter().filter(|(_, u)| u.starts_with(&prefix)).count();
        assert!(mine[..kept].iter().all(|u| in_backup.iter().any(|(_, b)| b == *u)), "writer {w}: not a prefix");
    }
    assert!(summary.header.log_index > 0);

    restored.shutdown().await;
    eu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_backup_calls_and_bad_restores_are_refused_and_change_nothing() {
    let eu = TestRegion::start(Region::Eu, 1, test_timings).await;
    eu.leader().await;
    let node = client(&eu.peers[&1]);
    let org = node.create_org(Region::Eu, "Refusals").await.unwrap();

    // A node backs up only its own region; a router only the regions it serves.
    let wrong = node.backup(Region::Us).await.err().expect("another region");
    assert_eq!(wrong.code(), Code::InvalidArgument, "{wrong}");
    let (router, _stop_router) = start_router(&[&eu], RouterAuth::Open).await;
    let unserved = client(&router).backup(Region::Apac).await.err().expect("a region the router lacks");
    assert_eq!(unserved.code(), Code::NotFound, "{unserved}");
    let mut raw = orgplane_proto::v1::admin_service_client::AdminServiceClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{}", eu.peers[&1])).unwrap().connect_lazy(),
    );
    let empty = raw.backup(v1::BackupRequest { region: String::new() }).await.expect_err("no region");
    assert_eq!(empty.code(), Code::InvalidArgument, "{empty}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("eu.opb");
    backup_to_file(&node, Region::Eu, &file).await;
    let peers: BTreeMap<u64, String> = [(1, "127.0.0.1:1".to_string())].into();
    let config = |from: &Path, region: Region, data_dir: &Path| RestoreConfig {
        region,
        from: from.to_path_buf(),
        data_dir: data_dir.to_path_buf(),
        cluster: Some(NewCluster { node_id: 1, peers: peers.clone() }),
    };

    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let damaged = dir.path().join("damaged.opb");
    std::fs::write(&damaged, &bytes).unwrap();
    let target = dir.path().join("from-damaged");
    let error = restore(&config(&damaged, Region::Eu, &target)).expect_err("a damaged file");
    assert!(matches!(error, RestoreError::Backup { .. }), "{error}");
    assert!(error.to_string().contains("checksum mismatch"), "{error}");
    assert!(!target.exists(), "a refused restore writes nothing");

    let target = dir.path().join("as-us");
    let error = restore(&config(&file, Region::Us, &target)).expect_err("another region");
    assert!(error.to_string().contains("is of region eu, not us"), "{error}");
    assert!(!target.exists());

    let used = dir.path().join("used");
    std::fs::create_dir(&used).unwrap();
    std::fs::write(used.join("keep.txt"), b"mine").unwrap();
    let error = restore(&config(&file, Region::Eu, &used)).expect_err("a used data dir");
    assert!(matches!(error, RestoreError::DataDirNotEmpty { .. }), "{error}");
    let left: Vec<_> = std::fs::read_dir(&used).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["keep.txt"], "the used dir is untouched");

    let stranger = RestoreConfig {
        cluster: Some(NewCluster { node_id: 9, peers: peers.clone() }),
        ..config(&file, Region::Eu, &dir.path().join("stranger"))
    };
    let error = restore(&stranger).expect_err("a node that is not a peer");
    assert!(matches!(error, RestoreError::NodeNotInPeers { .. }), "{error}");

    // An empty, existing dir is fine, and gets exactly the backup.
    let empty_dir = dir.path().join("empty");
    std::fs::create_dir(&empty_dir).unwrap();
    let restored = restore(&config(&file, Region::Eu, &empty_dir)).unwrap();
    assert_eq!(restored.header.region, Region::Eu);
    assert!(restored.seeded.model_keys > 0);
    let again = restore(&config(&file, Region::Eu, &empty_dir)).expect_err("now it is used");
    assert!(matches!(again, RestoreError::DataDirNotEmpty { .. }), "{again}");

    // The original is unchanged by all of this.
    assert_eq!(node.get_org(&org.id, Consistency::Linearizable).await.unwrap().org, org);

    // With the region down, the router says which region is unavailable.
    let mut eu = eu;
    eu.stop(1).await;
    let once = ClientOptions { max_retries: 0, ..ClientOptions::default() };
    let down = Client::with_options(&router, once).unwrap().backup(Region::Eu).await.err().expect("eu is down");
    assert_eq!(down.code(), Code::Unavailable, "{down}");
    assert!(down.message().contains("region eu"), "{down}");
    eu.shutdown().await;
}
