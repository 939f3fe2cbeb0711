//! The network lab: one network namespace per node, joined by a bridge in a namespace of its
//! own, with the test process reaching the nodes from the root namespace over one veth pair;
//! and the faults: iptables rules inside a node's namespace that drop its traffic to or from
//! chosen peers.
//!
//! ```text
//!  root ns: test process ── opf-host 10.213.0.1 ──┐
//!                                                 │ veth
//!  ns opf-hub:                           br0 ─────┴── h1 ── h2 ── h3
//!                                                     │ veth │      │
//!  ns opf-n1 .. opf-n3:                    eth0 10.213.0.11  .12    .13
//! ```
//!
//! Everything is named with the `opf-` prefix and lives only in namespaces this module made,
//! so a leftover from a crashed run is recognized and removed at the next start. Rules drop
//! only traffic between node addresses: the test's clients (from 10.213.0.1) still reach an
//! isolated node, which is what makes stale-leader reads possible.

use std::process::Command;

/// The prefix of every namespace and root-namespace link the lab makes.
pub const PREFIX: &str = "opf-";
const HUB: &str = "opf-hub";
const HOST_LINK: &str = "opf-host";
/// A private /24 used only inside the lab's namespaces (and the host end of its veth pair).
const SUBNET: &str = "10.213.0";
const BRIDGE: &str = "br0";

/// What the fault suite needs from the machine, named for the person who must install it.
pub const INSTALL_HINT: &str =
    "the fault suite needs root and the Debian packages iproute2 (ip) and iptables: apt-get install -y iproute2 iptables";

/// Runs a command; its stdout, or an error naming the command and its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `{program} {}`: {e} ({INSTALL_HINT})", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(program: &str, args: &[&str]) -> String {
    run(program, args).unwrap_or_else(|e| panic!("{e}"))
}

/// Fails the calling test loudly unless it runs as root with `ip` and `iptables` present.
pub fn require_prerequisites() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().next());
    assert_eq!(uid, Some("0"), "not running as root (uid {uid:?}): {INSTALL_HINT}");
    // `run` names the packages when a program cannot be started.
    run("ip", &["-V"]).unwrap_or_else(|e| panic!("`ip` is missing: {e}"));
    run("iptables", &["-V"]).unwrap_or_else(|e| panic!("`iptables` is missing: {e}"));
}

/// The namespaces the lab (or a crashed earlier run) left, by name.
fn lab_namespaces() -> Vec<String> {
    run("ip", &["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(PREFIX))
        .map(str::to_string)
        .collect()
}

/// Removes whatever an earlier run left: kills the processes inside the lab's namespaces (only
/// those: they can be nobody else's), deletes the namespaces and the host link.
pub fn remove_leftovers() {
    for ns in lab_namespaces() {
        for pid in run("ip", &["netns", "pids", &ns]).unwrap_or_default().split_whitespace() {
            super::procs::signal(pid.parse().unwrap_or(0), "KILL");
        }
        let _ = run("ip", &["netns", "del", &ns]);
    }
    if run("ip", &["link", "show", HOST_LINK]).is_ok() {
        let _ = run("ip", &["link", "del", HOST_LINK]);
    }
}

/// Which of a node's traffic with its peers a cut drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Packets from the peers (the node can send, but hears nothing back).
    Inbound,
    /// Packets to the peers (the node hears them, but nothing it sends arrives).
    Outbound,
    Both,
}

/// The namespaces, bridge and links of one run, removed on drop.
pub struct Lab {
    nodes: Vec<u64>,
}

impl Lab {
    /// Makes the lab for nodes `1..=n`, after removing any leftover of an earlier run.
    pub fn create(n: u64) -> Lab {
        remove_leftovers();
        if let Ok(routes) = run("ip", &["route", "show", &format!("{SUBNET}.0/24")]) {
            assert!(
                routes.trim().is_empty(),
                "{SUBNET}.0/24 is already routed on this machine ({}); the lab needs it to itself",
                routes.trim()
            );
        }
        let mut lab = Lab { nodes: Vec::new() };
        must("ip", &["netns", "add", HUB]);
        must("ip", &["-n", HUB, "link", "set", "lo", "up"]);
        must("ip", &["-n", HUB, "link", "add", BRIDGE, "type", "bridge"]);
        must("ip", &["-n", HUB, "link", "set", BRIDGE, "up"]);
        must("ip", &["link", "add", HOST_LINK, "type", "veth", "peer", "name", "h0", "netns", HUB]);
        must("ip", &["addr", "add", &format!("{}/24", Self::host_ip()), "dev", HOST_LINK]);
        must("ip", &["link", "set", HOST_LINK, "up"]);
        must("ip", &["-n", HUB, "link", "set", "h0", "master", BRIDGE]);
        must("ip", &["-n", HUB, "link", "set", "h0", "up"]);
        for id in 1..=n {
            lab.add_node(id);
        }
        // iptables must work inside a namespace (the nf_tables or legacy backend, and the
        // kernel modules behind it); find out now rather than in the middle of a fault.
        lab.iptables(1, &["-L", "INPUT", "-n"]).unwrap_or_else(|e| panic!("iptables does not work in a netns: {e}"));
        lab
    }

    /// Adds node `id`'s namespace, plugged into the bridge (also after the start: a node that
    /// replaces another one gets a namespace of its own).
    pub fn add_node(&mut self, id: u64) {
        assert!(!self.nodes.contains(&id), "node {id} already has a namespace");
        let ns = Self::ns(id);
        let hub_end = format!("h{id}");
        must("ip", &["netns", "add", &ns]);
        must("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        must("ip", &["-n", HUB, "link", "add", &hub_end, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
        must("ip", &["-n", HUB, "link", "set", &hub_end, "master", BRIDGE]);
        must("ip", &["-n", HUB, "link", "set", &hub_end, "up"]);
        must("ip", &["-n", &ns, "addr", "add", &format!("{}/24", Self::node_ip(id)), "dev", "eth0"]);
        must("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
        self.nodes.push(id);
    }

    /// The namespace of node `id`.
    pub fn ns(id: u64) -> String {
        format!("{PREFIX}n{id}")
    }

    pub fn node_ip(id: u64) -> String {
        format!("{SUBNET}.{}", 10 + id)
    }

    pub fn host_ip() -> String {
        format!("{SUBNET}.1")
    }

    fn iptables(&self, id: u64, args: &[&str]) -> Result<String, String> {
        let ns = Self::ns(id);
        let mut all = vec!["netns", "exec", &ns, "iptables", "-w"];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Drops node `id`'s traffic with each of `peers` in `direction`, inside its namespace.
    pub fn cut(&self, id: u64, peers: &[u64], direction: Direction) {
        for peer in peers.iter().filter(|p| **p != id) {
            let ip = Self::node_ip(*peer);
            if matches!(direction, Direction::Inbound | Direction::Both) {
                self.iptables(id, &["-A", "INPUT", "-s", &ip, "-j", "DROP"]).unwrap_or_else(|e| panic!("{e}"));
            }
            if matches!(direction, Direction::Outbound | Direction::Both) {
                self.iptables(id, &["-A", "OUTPUT", "-d", &ip, "-j", "DROP"]).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }

    /// Cuts node `id` off from every other node, both ways (its clients still reach it).
    pub fn isolate(&self, id: u64) {
        let others: Vec<u64> = self.nodes.iter().copied().filter(|n| *n != id).collect();
        self.cut(id, &others, Direction::Both);
    }

    /// Splits the nodes into two sides that cannot reach each other.
    pub fn split(&self, side: &[u64]) {
        let other: Vec<u64> = self.nodes.iter().copied().filter(|n| !side.contains(n)).collect();
        for id in side {
            self.cut(*id, &other, Direction::Both);
        }
    }

    /// Removes every rule from every node's namespace.
    pub fn heal(&self) {
        for id in &self.nodes {
            for chain in ["INPUT", "OUTPUT"] {
                self.iptables(*id, &["-F", chain]).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }

    /// The rules in force, for a report.
    pub fn rules(&self) -> String {
        self.nodes
            .iter()
            .map(|id| format!("n{id}: {}", self.iptables(*id, &["-S"]).unwrap_or_else(|e| e).replace('\n', "; ")))
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        remove_leftovers();
    }
}
