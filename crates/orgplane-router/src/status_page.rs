//! The status page: one server-rendered HTML page (no JavaScript) with every region, its leader
//! and term, and each node's role, term, log and applied index, lag behind the leader and
//! health. It is built from the same per-node answers as `GetClusterStatus`, asked anew on
//! every load, so a reload shows the current state.
//!
//! The page is for people; machines read `GetClusterStatus` or `/metrics`. Still, every region
//! and node row carries `data-*` attributes (region, node id, role, health) so a test or a
//! script can read it without parsing the visible text.

use std::fmt::Write;
use std::time::SystemTime;

use orgplane_proto::v1::{NodeStatus, RegionStatus};

use crate::cluster_service::UNREACHABLE_ROLE;
use crate::deadline::Deadline;
use crate::server::RouterApi;

/// Asks every node for its status (within the router's status deadline) and renders the page.
pub(crate) async fn page(api: &RouterApi) -> String {
    let regions = api.cluster_status(Deadline::after(api.state.status_timeout)).await;
    render(&regions, &httpdate::fmt_http_date(SystemTime::now()))
}

/// How a region looks from the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegionHealth {
    /// A leader is known and every node answered and is serving.
    Healthy,
    /// A leader is known, but some node is unreachable or not serving.
    Degraded,
    /// No leader: the region cannot serve writes or linearizable reads.
    Down,
}

impl RegionHealth {
    fn of(region: &RegionStatus) -> RegionHealth {
        if region.leader_id == 0 {
            RegionHealth::Down
        } else if region.nodes.iter().all(|n| n.healthy) {
            RegionHealth::Healthy
        } else {
            RegionHealth::Degraded
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            RegionHealth::Healthy => "healthy",
            RegionHealth::Degraded => "degraded",
            RegionHealth::Down => "down",
        }
    }
}

/// Renders the page for `regions`, as merged from the nodes' answers. `generated_at` is shown
/// as is (the caller formats the time).
pub(crate) fn render(regions: &[RegionStatus], generated_at: &str) -> String {
    let mut page = String::with_capacity(4096);
    page.push_str(concat!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        "<title>orgplane status</title>\n<style>\n",
        "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\n",
        "table{border-collapse:collapse;margin-bottom:2em}\n",
        "th,td{border:1px solid #ccc;padding:.3em .7em;text-align:left}\n",
        "td.num{text-align:right;font-variant-numeric:tabular-nums}\n",
        ".healthy{color:#176f2c}.degraded{color:#a05a00}.down,.unreachable{color:#b00020}\n",
        "tr.leader{font-weight:bold}\n",
        "</style>\n</head>\n<body>\n<h1>orgplane status</h1>\n",
    ));
    let _ = writeln!(page, "<p>As seen by this router at {}. Reload the page to refresh.</p>", escape(generated_at));
    for region in regions {
        render_region(&mut page, region);
    }
    page.push_str("</body>\n</html>\n");
    page
}

fn render_region(page: &mut String, region: &RegionStatus) {
    let health = RegionHealth::of(region);
    let name = escape(&region.region);
    let _ = writeln!(
        page,
        "<section class=\"region\" id=\"region-{name}\" data-region=\"{name}\" data-leader=\"{}\" \
         data-term=\"{}\" data-health=\"{}\">",
        region.leader_id,
        region.term,
        health.as_str()
    );
    let leader =
        if region.leader_id == 0 { "no leader".to_string() } else { format!("leader node {}", region.leader_id) };
    let _ = writeln!(
        page,
        "<h2>{name}: <span class=\"{h}\">{h}</span>, {leader}, term {}</h2>",
        region.term,
        h = health.as_str()
    );
    page.push_str(concat!(
        "<table>\n<thead><tr><th>node</th><th>address</th><th>role</th><th>term</th><th>leader</th>",
        "<th>last log index</th><th>applied index</th><th>lag (entries)</th><th>health</th></tr></thead>\n<tbody>\n",
    ));
    let leader_last_log = leader_last_log_index(region);
    for node in &region.nodes {
        render_node(page, node, leader_last_log);
    }
    page.push_str("</tbody>\n</table>\n</section>\n");
}

/// The leader's last log index, when the leader answered.
fn leader_last_log_index(region: &RegionStatus) -> Option<u64> {
    region.nodes.iter().find(|n| n.node_id == region.leader_id && n.role == "leader").map(|n| n.last_log_index)
}

fn render_node(page: &mut String, node: &NodeStatus, leader_last_log: Option<u64>) {
    let reachable = node.role != UNREACHABLE_ROLE;
    let role = escape(&node.role);
    let health = match (reachable, node.healthy) {
        (false, _) => format!("unreachable: {}", escape(&node.error)),
        (true, true) => "serving".to_string(),
        (true, false) => "not serving".to_string(),
    };
    // Lag: the entries this node's log is behind the leader's, and those not yet applied.
    let lag = match (reachable, leader_last_log) {
        (true, Some(leader)) => {
            let behind = leader.saturating_sub(node.last_log_index);
            let unapplied = node.last_log_index.saturating_sub(node.applied_index);
            format!("{behind} behind, {unapplied} unapplied")
        }
        _ => "-".to_string(),
    };
    let node_id = if node.node_id == 0 { "?".to_string() } else { node.node_id.to_string() };
    let (term, leader, last_log, applied) = if reachable {
        (
            node.term.to_string(),
            if node.leader_id == 0 { "none".to_string() } else { node.leader_id.to_string() },
            node.last_log_index.to_string(),
            node.applied_index.to_string(),
        )
    } else {
        ("-".into(), "-".into(), "-".into(), "-".into())
    };
    let class = if node.role == "leader" { "node leader" } else { "node" };
    let _ = writeln!(
        page,
        "<tr class=\"{class}\" data-node-id=\"{node_id}\" data-role=\"{role}\" data-healthy=\"{}\">\
         <td>{node_id}</td><td>{}</td><td class=\"{role}\">{role}</td><td class=\"num\">{term}</td>\
         <td class=\"num\">{leader}</td><td class=\"num\">{last_log}</td><td class=\"num\">{applied}</td>\
         <td>{lag}</td><td>{health}</td></tr>",
        node.healthy,
        escape(&node.address),
    );
}

/// Escapes text for HTML content and double-quoted attributes. Addresses and error messages
/// come from configuration and from nodes: never trusted as markup.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(node_id: u64, role: &str, last_log_index: u64, applied_index: u64) -> NodeStatus {
        NodeStatus {
            region: "eu".into(),
            node_id,
            address: format!("10.0.0.{node_id}:7000"),
            role: role.into(),
            term: 3,
            leader_id: 1,
            last_log_index,
            applied_index,
            healthy: true,
            error: String::new(),
        }
    }

    #[test]
    fn a_region_shows_its_leader_term_nodes_and_lag() {
        let region = RegionStatus {
            region: "eu".into(),
            leader_id: 1,
            term: 3,
            nodes: vec![node(1, "leader", 120, 120), node(2, "follower", 117, 110), node(3, "follower", 120, 120)],
        };
        let page = render(&[region], "2026-11-29T10:00:00Z");
        assert!(
            page.contains("data-region=\"eu\" data-leader=\"1\" data-term=\"3\" data-health=\"healthy\""),
            "{page}"
        );
        assert_eq!(page.matches("<tr class=\"node").count(), 3);
        assert_eq!(page.matches("data-role=\"leader\"").count(), 1);
        assert!(page.contains("3 behind, 7 unapplied"), "{page}");
        assert!(page.contains("0 behind, 0 unapplied"), "{page}");
        assert!(!page.contains("<script"), "no JavaScript");
    }

    #[test]
    fn unreachable_nodes_and_leaderless_regions_are_marked_and_text_is_escaped() {
        let unreachable = NodeStatus {
            region: "us".into(),
            address: "n3:7000".into(),
            role: UNREACHABLE_ROLE.into(),
            error: "<connect> refused & gone".into(),
            ..Default::default()
        };
        let region = RegionStatus { region: "us".into(), leader_id: 0, term: 0, nodes: vec![unreachable] };
        let page = render(&[region], "now");
        assert!(page.contains("data-health=\"down\""), "{page}");
        assert!(page.contains("no leader"), "{page}");
        assert!(page.contains("unreachable: &lt;connect&gt; refused &amp; gone"), "{page}");
        assert!(page.contains("data-node-id=\"?\" data-role=\"unreachable\" data-healthy=\"false\""), "{page}");
    }

    #[test]
    fn a_region_with_a_leader_and_a_sick_node_is_degraded() {
        let mut sick = node(2, "follower", 10, 10);
        sick.healthy = false;
        let region =
            RegionStatus { region: "apac".into(), leader_id: 1, term: 3, nodes: vec![node(1, "leader", 10, 10), sick] };
        assert_eq!(RegionHealth::of(&region), RegionHealth::Degraded);
        assert!(render(&[region], "now").contains("not serving"));
    }
}
