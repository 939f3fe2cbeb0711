//! What the move commands print: a move's report ([`MoveReport`]), an org's move status
//! ([`MoveStatusView`]), and where an org's data lives, node by node ([`ResidencyReport`]).
//! JSON follows the proto's field names; a move is an object under `move`.

use orgplane_client::v1;
use serde::Serialize;
use serde_json::{json, Value};

use super::{format_time_ms, key_values, printable, Render, Table};

/// A move as `org move` and `org move-abort` print it.
pub struct MoveReport {
    pub org_move: v1::OrgMove,
    /// The move was only checked: nothing changed.
    pub dry_run: bool,
    /// orgctl did not wait for the move to end: it goes on in the background.
    pub started_only: bool,
}

impl Render for MoveReport {
    fn json(&self) -> Value {
        let mut value = json!({ "move": MoveJson::from(&self.org_move) });
        if self.dry_run {
            value["dry_run"] = json!(true);
        }
        value
    }

    fn table(&self) -> String {
        let m = &self.org_move;
        if self.dry_run {
            return format!(
                "dry run: org {} can move from {} to {} (epoch {} → {}); nothing changed\n",
                m.org_id, m.source_region, m.target_region, m.from_epoch, m.to_epoch
            );
        }
        let mut out = key_values(&move_fields(m));
        if self.started_only {
            out.push_str(&format!(
                "\nthe move goes on in the background; follow it with: orgctl org move-status {}\n",
                m.org_id
            ));
        }
        out
    }
}

/// An org's latest move and where it is served now; `org_move` is `None` for an org that
/// never moved.
pub struct MoveStatusView {
    pub org_id: String,
    pub home_region: String,
    pub epoch: u64,
    pub org_move: Option<v1::OrgMove>,
}

impl Render for MoveStatusView {
    fn json(&self) -> Value {
        json!({
            "org_id": self.org_id,
            "home_region": self.home_region,
            "epoch": self.epoch,
            "move": self.org_move.as_ref().map(MoveJson::from),
        })
    }

    fn table(&self) -> String {
        let lives = format!("{}, epoch {}", self.home_region, self.epoch);
        match &self.org_move {
            None => format!("org {} never moved; it lives in {lives}\n", self.org_id),
            Some(m) => {
                let mut fields = vec![("org", self.org_id.clone()), ("lives in", lives)];
                fields.extend(move_fields(m).into_iter().filter(|(key, _)| *key != "org"));
                key_values(&fields)
            }
        }
    }
}

/// Every node's own account of what it holds of one org.
pub struct ResidencyReport(pub v1::GetResidencyResponse);

impl Render for ResidencyReport {
    fn json(&self) -> Value {
        let r = &self.0;
        json!({
            "org_id": r.org_id,
            "home_region": r.home_region,
            "epoch": r.epoch,
            "nodes": r.nodes.iter().map(NodeResidencyJson::from).collect::<Vec<_>>(),
        })
    }

    fn table(&self) -> String {
        let r = &self.0;
        let mut table = Table::new(&[
            "REGION",
            "NODE",
            "STATE RECORDS",
            "FORWARDING",
            "MOVE RECORD",
            "LOG ENTRIES",
            "IN SNAPSHOT",
            "FILES (PATH:COUNT)",
            "BACKUPS",
            "ERROR",
        ]);
        for node in &r.nodes {
            table.row(residency_cells(node));
        }
        format!("org {} lives in {}, epoch {}\n\n", r.org_id, r.home_region, r.epoch) + &table.render()
    }

    fn warnings(&self) -> Vec<String> {
        self.0
            .nodes
            .iter()
            .filter(|n| !n.error.is_empty())
            .map(|n| {
                format!(
                    "node {} of region {} did not answer ({}): what it holds is unknown",
                    n.node_id,
                    n.region,
                    printable(&n.error)
                )
            })
            .collect()
    }
}

/// One node's row; a node that did not answer shows `?` for everything it would have said.
fn residency_cells(node: &v1::NodeResidency) -> [String; 10] {
    let head = [node.region.clone(), node.node_id.to_string()];
    if !node.error.is_empty() {
        let unknown = || "?".to_string();
        let [region, id] = head;
        return [
            region,
            id,
            unknown(),
            unknown(),
            unknown(),
            unknown(),
            unknown(),
            unknown(),
            unknown(),
            node.error.clone(),
        ];
    }
    let yes_no = |flag: bool| if flag { "yes" } else { "no" }.to_string();
    let forwarding =
        if node.forwarding { format!("{}@{}", node.forwarding_region, node.forwarding_epoch) } else { "-".to_string() };
    let files = if node.files.is_empty() {
        "-".to_string()
    } else {
        node.files.iter().map(|f| format!("{}:{}", f.path, f.occurrences)).collect::<Vec<_>>().join(", ")
    };
    let [region, id] = head;
    [
        region,
        id,
        node.state_records.to_string(),
        forwarding,
        yes_no(node.move_record),
        node.log_entries.to_string(),
        yes_no(node.in_snapshot),
        files,
        node.backups.to_string(),
        String::new(),
    ]
}

/// The report of one move, field by field.
pub(crate) fn move_fields(m: &v1::OrgMove) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("move", m.move_id.clone()),
        ("org", m.org_id.clone()),
        ("regions", format!("{} → {}", m.source_region, m.target_region)),
        ("phase", m.phase.clone()),
        ("epoch", format!("{} → {}", m.from_epoch, m.to_epoch)),
        ("records", m.records.to_string()),
        ("bytes copied", format_bytes(m.bytes_copied)),
        ("write pause", m.write_pause_ms.map_or("-".to_string(), |ms| format!("{ms} ms"))),
        ("duration", format_duration_ms(m.start_time_ms, m.update_time_ms)),
        ("started", format_time_ms(m.start_time_ms)),
        ("updated", format_time_ms(m.update_time_ms)),
    ];
    if !m.reason.is_empty() {
        fields.push(("reason", m.reason.clone()));
    }
    fields
}

/// `1234` as `1234 B`, larger sizes with their binary unit too: `6840 B (6.7 KiB)`.
pub(crate) fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{bytes} B ({value:.1} {})", UNITS[unit])
}

/// From `start_ms` to `end_ms` as `850 ms` or `3.2 s`; `-` when either is unset or they are
/// out of order.
pub(crate) fn format_duration_ms(start_ms: u64, end_ms: u64) -> String {
    match end_ms.checked_sub(start_ms) {
        Some(ms) if start_ms > 0 && ms < 1000 => format!("{ms} ms"),
        Some(ms) if start_ms > 0 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => "-".to_string(),
    }
}

#[derive(Debug, Serialize)]
struct MoveJson<'a> {
    move_id: &'a str,
    org_id: &'a str,
    source_region: &'a str,
    target_region: &'a str,
    phase: &'a str,
    from_epoch: u64,
    to_epoch: u64,
    bytes_copied: u64,
    records: u64,
    write_pause_ms: Option<u64>,
    start_time_ms: u64,
    update_time_ms: u64,
    reason: &'a str,
    side: &'a str,
}

impl<'a> From<&'a v1::OrgMove> for MoveJson<'a> {
    fn from(m: &'a v1::OrgMove) -> Self {
        MoveJson {
            move_id: &m.move_id,
            org_id: &m.org_id,
            source_region: &m.source_region,
            target_region: &m.target_region,
            phase: &m.phase,
            from_epoch: m.from_epoch,
            to_epoch: m.to_epoch,
            bytes_copied: m.bytes_copied,
            records: m.records,
            write_pause_ms: m.write_pause_ms,
            start_time_ms: m.start_time_ms,
            update_time_ms: m.update_time_ms,
            reason: &m.reason,
            side: &m.side,
        }
    }
}

#[derive(Debug, Serialize)]
struct FileHoldingsJson<'a> {
    path: &'a str,
    occurrences: u64,
}

#[derive(Debug, Serialize)]
struct NodeResidencyJson<'a> {
    region: &'a str,
    node_id: u64,
    error: &'a str,
    state_records: u64,
    forwarding: bool,
    forwarding_region: &'a str,
    forwarding_epoch: u64,
    move_record: bool,
    log_entries: u64,
    in_snapshot: bool,
    files: Vec<FileHoldingsJson<'a>>,
    backups: u64,
}

impl<'a> From<&'a v1::NodeResidency> for NodeResidencyJson<'a> {
    fn from(n: &'a v1::NodeResidency) -> Self {
        NodeResidencyJson {
            region: &n.region,
            node_id: n.node_id,
            error: &n.error,
            state_records: n.state_records,
            forwarding: n.forwarding,
            forwarding_region: &n.forwarding_region,
            forwarding_epoch: n.forwarding_epoch,
            move_record: n.move_record,
            log_entries: n.log_entries,
            in_snapshot: n.in_snapshot,
            files: n.files.iter().map(|f| FileHoldingsJson { path: &f.path, occurrences: f.occurrences }).collect(),
            backups: n.backups,
        }
    }
}
