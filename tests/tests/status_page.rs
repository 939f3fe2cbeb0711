//! The router's status page, loaded in headless Chromium from a real `orgplane dev` process:
//! every region with its leader, all nine nodes, their roles and health.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use orgplane_tests::browser::{attribute, dump_dom, elements_with_class};
use orgplane_tests::faults::procs::orgplane_binary;
use orgplane_tests::WAIT;
use tokio::io::{AsyncBufReadExt, BufReader};

/// What the page says of one region.
#[derive(Debug)]
struct RegionView {
    leader: u64,
    /// node id -> (role, healthy)
    nodes: BTreeMap<u64, (String, bool)>,
}

/// Reads the regions and node rows off the page, by their `data-*` attributes.
fn read_page(dom: &str) -> BTreeMap<String, RegionView> {
    let mut regions = BTreeMap::new();
    // Each region is a <section class="region">, followed by its rows until the next one.
    for section in dom.split("<section ").skip(1) {
        let section = format!("<section {section}");
        let Some(region) = elements_with_class(&section, "section", "region").into_iter().next() else { continue };
        let name = attribute(&region, "data-region").expect("data-region").to_string();
        let leader = attribute(&region, "data-leader").expect("data-leader").parse().expect("leader id");
        let nodes = elements_with_class(&section, "tr", "node")
            .iter()
            .filter_map(|row| {
                let id = attribute(row, "data-node-id")?.parse().ok()?;
                let role = attribute(row, "data-role")?.to_string();
                Some((id, (role, attribute(row, "data-healthy") == Some("true"))))
            })
            .collect();
        regions.insert(name, RegionView { leader, nodes });
    }
    regions
}

/// True when every region has a leader, three healthy nodes, and the leader's row says so.
fn settled(regions: &BTreeMap<String, RegionView>) -> bool {
    regions.len() == 3
        && regions.values().all(|r| {
            r.leader != 0
                && r.nodes.len() == 3
                && r.nodes.values().all(|(_, healthy)| *healthy)
                && r.nodes.get(&r.leader).is_some_and(|(role, _)| role == "leader")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_of_orgplane_dev_shows_nine_nodes_and_three_leaders() {
    let dir = tempfile::tempdir().unwrap();
    let mut dev = tokio::process::Command::new(orgplane_binary())
        .arg("dev")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--node-base-port", "0", "--metrics-listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start orgplane dev");

    // `orgplane dev` says where its status page is once it is up.
    let mut lines = BufReader::new(dev.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.expect("read orgplane dev's output") {
            if let Some(at) = line.find("status page: ") {
                return line[at + "status page: ".len()..].trim().to_string();
            }
        }
        panic!("orgplane dev exited without printing its status page address");
    })
    .await
    .expect("orgplane dev prints its status page address");
    // Keep draining its output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    // The regions elect their leaders as they start: reload until the page shows all three.
    let started = Instant::now();
    let regions = loop {
        let dom = dump_dom(&url).await;
        assert!(dom.contains("<h1>orgplane status</h1>"), "not the status page: {dom}");
        assert!(!dom.contains("<script"), "the page needs no JavaScript");
        let regions = read_page(&dom);
        if settled(&regions) {
            break regions;
        }
        assert!(started.elapsed() < WAIT, "the page never showed three leaders and nine healthy nodes: {regions:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    assert_eq!(regions.keys().map(String::as_str).collect::<Vec<_>>(), ["apac", "eu", "us"]);
    let nodes: usize = regions.values().map(|r| r.nodes.len()).sum();
    assert_eq!(nodes, 9, "{regions:?}");
    for (name, region) in &regions {
        let leaders: Vec<_> = region.nodes.iter().filter(|(_, (role, _))| role == "leader").collect();
        assert_eq!(leaders.len(), 1, "region {name}: exactly one leader row: {region:?}");
        assert_eq!(*leaders[0].0, region.leader, "region {name}: the leader row is the region's leader");
        assert!(region.nodes.values().filter(|(role, _)| role == "follower").count() == 2, "{region:?}");
    }
    dev.kill().await.expect("stop orgplane dev");
}
