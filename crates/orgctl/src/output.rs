//! Everything orgctl prints. Each command's answer is a value implementing [`Render`]: one
//! JSON document for `--output json`, aligned columns for `--output table`, and warning lines
//! that go to stderr in both formats.
//!
//! The move commands' answers are in [`moves`].
//!
//! JSON field names follow the proto's (snake_case; times in milliseconds since the Unix
//! epoch; a missing page token is `null`), through this module's own serde structs so that the
//! generated wire types need no serde.

use std::io::{self, Write};

use orgplane_client::v1;
use orgplane_model::Region;
use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::OutputFormat;

mod moves;

pub use moves::{MoveReport, MoveStatusView, ResidencyReport};

/// What a command prints.
pub trait Render {
    /// The one JSON document printed for `--output json`.
    fn json(&self) -> Value;
    /// The text printed for `--output table`, ending with a newline.
    fn table(&self) -> String;
    /// Lines for stderr, whatever the format: things the reader must not miss.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Prints `answer` in `format` on `stdout`, and its warnings on `stderr`.
pub fn print(
    answer: &dyn Render,
    format: OutputFormat,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> io::Result<()> {
    match format {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut *stdout, &answer.json())?;
            writeln!(stdout)?;
        }
        OutputFormat::Table => stdout.write_all(answer.table().as_bytes())?,
    }
    stdout.flush()?;
    for warning in answer.warnings() {
        writeln!(stderr, "warning: {warning}")?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------- answers

/// An answer whose JSON document and table were built together (the access and app commands).
pub(crate) struct Answer {
    pub(crate) json: Value,
    pub(crate) table: String,
}

impl Render for Answer {
    fn json(&self) -> Value {
        self.json.clone()
    }

    fn table(&self) -> String {
        self.table.clone()
    }
}

/// One org: created, read or updated. `read` is set for reads.
pub struct OrgRecord {
    pub org: v1::Org,
    pub read: Option<v1::ReadInfo>,
}

impl Render for OrgRecord {
    fn json(&self) -> Value {
        let mut value = json!({ "org": OrgJson::from(&self.org) });
        if let Some(read) = &self.read {
            value["read"] = json!(ReadJson::from(read));
        }
        value
    }

    fn table(&self) -> String {
        let mut fields = org_fields(&self.org);
        if let Some(read) = &self.read {
            fields.push((
                "read",
                format!(
                    "{}, node {} of {}, applied index {}",
                    consistency_name(read.consistency()),
                    read.node_id,
                    read.region,
                    read.applied_index
                ),
            ));
        }
        key_values(&fields)
    }
}

/// One page (or all pages) of a region's orgs.
pub struct OrgList {
    pub region: Region,
    pub orgs: Vec<v1::Org>,
    pub next_page_token: Option<String>,
}

impl Render for OrgList {
    fn json(&self) -> Value {
        json!({
            "region": self.region.as_str(),
            "orgs": self.orgs.iter().map(OrgJson::from).collect::<Vec<_>>(),
            "next_page_token": self.next_page_token,
        })
    }

    fn table(&self) -> String {
        if self.orgs.is_empty() {
            return format!("no orgs in region {}\n", self.region);
        }
        let mut table = Table::new(&["ID", "NAME", "REGION", "VERSION", "UPDATED"]);
        for org in &self.orgs {
            table.row([
                org.id.clone(),
                org.name.clone(),
                org.region.clone(),
                org.version.to_string(),
                format_time_ms(org.update_time_ms),
            ]);
        }
        table.render() + &next_page_line(&self.next_page_token)
    }
}

/// An org that was deleted.
pub struct DeletedOrg {
    pub org_id: String,
    pub removed_members: u64,
}

impl Render for DeletedOrg {
    fn json(&self) -> Value {
        json!({ "deleted": { "org_id": self.org_id, "removed_members": self.removed_members } })
    }

    fn table(&self) -> String {
        let plural = if self.removed_members == 1 { "" } else { "s" };
        format!("deleted org {} and its {} membership{plural}\n", self.org_id, self.removed_members)
    }
}

/// One membership: added or changed.
pub struct MemberRecord {
    pub member: v1::Member,
}

impl Render for MemberRecord {
    fn json(&self) -> Value {
        json!({ "member": MemberJson::from(&self.member) })
    }

    fn table(&self) -> String {
        let m = &self.member;
        key_values(&[
            ("org", m.org_id.clone()),
            ("user", m.user_id.clone()),
            ("role", m.role.clone()),
            ("added", format_time_ms(m.create_time_ms)),
            ("updated", format_time_ms(m.update_time_ms)),
        ])
    }
}

/// A membership that was removed.
pub struct RemovedMember {
    pub org_id: String,
    pub user_id: String,
}

impl Render for RemovedMember {
    fn json(&self) -> Value {
        json!({ "removed": { "org_id": self.org_id, "user_id": self.user_id } })
    }

    fn table(&self) -> String {
        format!("removed {} from org {}\n", self.user_id, self.org_id)
    }
}

/// One page (or all pages) of an org's members.
pub struct MemberList {
    pub org_id: String,
    pub members: Vec<v1::Member>,
    pub next_page_token: Option<String>,
}

impl Render for MemberList {
    fn json(&self) -> Value {
        json!({
            "org_id": self.org_id,
            "members": self.members.iter().map(MemberJson::from).collect::<Vec<_>>(),
            "next_page_token": self.next_page_token,
        })
    }

    fn table(&self) -> String {
        if self.members.is_empty() {
            return format!("org {} has no members\n", self.org_id);
        }
        let mut table = Table::new(&["USER", "ROLE", "ADDED", "UPDATED"]);
        for m in &self.members {
            table.row([
                m.user_id.clone(),
                m.role.clone(),
                format_time_ms(m.create_time_ms),
                format_time_ms(m.update_time_ms),
            ]);
        }
        table.render() + &next_page_line(&self.next_page_token)
    }
}

/// A user's orgs and which regions answered.
pub struct UserOrgList {
    pub user_id: String,
    pub answer: orgplane_client::UserOrgs,
}

impl Render for UserOrgList {
    fn json(&self) -> Value {
        let orgs: Vec<Value> = self
            .answer
            .orgs
            .iter()
            .map(|user_org| json!({ "org": user_org.org.as_ref().map(OrgJson::from), "role": user_org.role }))
            .collect();
        json!({
            "user_id": self.user_id,
            "orgs": orgs,
            "next_page_token": self.answer.next_page_token,
            "regions": self.answer.regions.iter().map(RegionResultJson::from).collect::<Vec<_>>(),
            "partial": self.answer.is_partial(),
        })
    }

    fn table(&self) -> String {
        let mut out = if self.answer.orgs.is_empty() {
            format!("{} belongs to no orgs in the regions that answered\n", self.user_id)
        } else {
            let mut table = Table::new(&["ORG", "NAME", "REGION", "ROLE"]);
            for user_org in &self.answer.orgs {
                let org = user_org.org.clone().unwrap_or_default();
                table.row([org.id, org.name, org.region, user_org.role.clone()]);
            }
            table.render()
        };
        out.push('\n');
        let mut regions = Table::new(&["REGION", "STATUS", "MESSAGE"]);
        for result in &self.answer.regions {
            regions.row([
                result.region.clone(),
                region_state_name(result.state()).replace('_', " "),
                result.message.clone(),
            ]);
        }
        out + &regions.render() + &next_page_line(&self.answer.next_page_token)
    }

    fn warnings(&self) -> Vec<String> {
        let missing: Vec<String> = self
            .answer
            .unanswered_regions()
            .map(|r| format!("{} ({})", r.region, region_state_name(r.state()).replace('_', " ")))
            .collect();
        if missing.is_empty() {
            Vec::new()
        } else {
            vec![format!("the list is partial: no answer from region {}", missing.join(", "))]
        }
    }
}

/// Every node of every region.
pub struct ClusterStatus {
    pub regions: Vec<v1::RegionStatus>,
}

impl Render for ClusterStatus {
    fn json(&self) -> Value {
        json!({ "regions": self.regions.iter().map(RegionStatusJson::from).collect::<Vec<_>>() })
    }

    fn table(&self) -> String {
        if self.regions.is_empty() {
            return "no regions\n".to_string();
        }
        let mut table =
            Table::new(&["REGION", "NODE", "ADDRESS", "ROLE", "LEADER", "TERM", "LAST LOG", "APPLIED", "HEALTH"]);
        for region in &self.regions {
            for node in &region.nodes {
                table.row([
                    node.region.clone(),
                    node.node_id.to_string(),
                    node.address.clone(),
                    node.role.clone(),
                    if node.leader_id == 0 { "-".to_string() } else { node.leader_id.to_string() },
                    node.term.to_string(),
                    node.last_log_index.to_string(),
                    node.applied_index.to_string(),
                    node_health(node),
                ]);
            }
        }
        table.render()
    }

    fn warnings(&self) -> Vec<String> {
        self.regions
            .iter()
            .filter(|r| r.leader_id == 0)
            .map(|r| {
                format!(
                    "region {} has no leader: writes and linearizable reads there fail until one is elected",
                    r.region
                )
            })
            .collect()
    }
}

/// The regions and their node endpoints.
pub struct Topology {
    pub regions: Vec<v1::RegionEndpoints>,
}

impl Render for Topology {
    fn json(&self) -> Value {
        let regions: Vec<Value> =
            self.regions.iter().map(|r| json!({ "region": r.region, "endpoints": r.endpoints })).collect();
        json!({ "regions": regions })
    }

    fn table(&self) -> String {
        if self.regions.is_empty() {
            return "no regions\n".to_string();
        }
        let mut table = Table::new(&["REGION", "ENDPOINT"]);
        for region in &self.regions {
            for endpoint in &region.endpoints {
                table.row([region.region.clone(), endpoint.clone()]);
            }
        }
        table.render()
    }
}

/// A region's membership.
pub struct MembershipView(pub v1::Membership);

impl Render for MembershipView {
    fn json(&self) -> Value {
        let members: Vec<Value> = self
            .0
            .members
            .iter()
            .map(|m| json!({ "node_id": m.node_id, "address": m.address, "kind": m.kind }))
            .collect();
        json!({ "region": self.0.region, "log_index": self.0.log_index, "members": members })
    }

    fn table(&self) -> String {
        let mut table = Table::new(&["REGION", "NODE", "ADDRESS", "KIND"]);
        for m in &self.0.members {
            table.row([self.0.region.clone(), m.node_id.to_string(), m.address.clone(), m.kind.clone()]);
        }
        table.render()
    }
}

/// A backup written to a file.
pub struct BackupWritten {
    pub file: std::path::PathBuf,
    pub summary: orgplane_backup::BackupSummary,
}

impl Render for BackupWritten {
    fn json(&self) -> Value {
        let header = &self.summary.header;
        json!({
            "file": self.file.display().to_string(),
            "region": header.region.as_str(),
            "log_index": header.log_index,
            "log_term": header.log_term,
            "created_at_ms": header.created_at_ms,
            "node_id": header.node_id,
            "data_bytes": header.data_bytes,
            "file_bytes": self.summary.file_bytes,
            "data_crc32": format!("{:08x}", self.summary.data_crc32),
        })
    }

    fn table(&self) -> String {
        let header = &self.summary.header;
        key_values(&[
            ("file", self.file.display().to_string()),
            ("region", header.region.to_string()),
            ("log index", format!("{} (term {})", header.log_index, header.log_term)),
            ("taken", format!("{} by node {}", format_time_ms(header.created_at_ms), header.node_id)),
            ("size", format!("{} bytes ({} of data)", self.summary.file_bytes, header.data_bytes)),
            ("data crc32", format!("{:08x}", self.summary.data_crc32)),
        ])
    }
}

// ---------------------------------------------------------------------------- JSON shapes

#[derive(Debug, Serialize)]
struct OrgJson<'a> {
    id: &'a str,
    name: &'a str,
    region: &'a str,
    version: u64,
    epoch: u64,
    create_time_ms: u64,
    update_time_ms: u64,
    allowed_import_regions: &'a [String],
}

impl<'a> From<&'a v1::Org> for OrgJson<'a> {
    fn from(org: &'a v1::Org) -> Self {
        OrgJson {
            id: &org.id,
            name: &org.name,
            region: &org.region,
            version: org.version,
            epoch: org.epoch,
            create_time_ms: org.create_time_ms,
            update_time_ms: org.update_time_ms,
            allowed_import_regions: &org.allowed_import_regions,
        }
    }
}

#[derive(Debug, Serialize)]
struct MemberJson<'a> {
    org_id: &'a str,
    user_id: &'a str,
    role: &'a str,
    create_time_ms: u64,
    update_time_ms: u64,
}

impl<'a> From<&'a v1::Member> for MemberJson<'a> {
    fn from(m: &'a v1::Member) -> Self {
        MemberJson {
            org_id: &m.org_id,
            user_id: &m.user_id,
            role: &m.role,
            create_time_ms: m.create_time_ms,
            update_time_ms: m.update_time_ms,
        }
    }
}

#[derive(Debug, Serialize)]
struct ReadJson<'a> {
    consistency: &'static str,
    applied_index: u64,
    node_id: u64,
    region: &'a str,
}

impl<'a> From<&'a v1::ReadInfo> for ReadJson<'a> {
    fn from(read: &'a v1::ReadInfo) -> Self {
        ReadJson {
            consistency: consistency_name(read.consistency()),
            applied_index: read.applied_index,
            node_id: read.node_id,
            region: &read.region,
        }
    }
}

#[derive(Debug, Serialize)]
struct RegionResultJson<'a> {
    region: &'a str,
    state: &'static str,
    message: &'a str,
}

impl<'a> From<&'a v1::RegionResult> for RegionResultJson<'a> {
    fn from(r: &'a v1::RegionResult) -> Self {
        RegionResultJson { region: &r.region, state: region_state_name(r.state()), message: &r.message }
    }
}

#[derive(Debug, Serialize)]
struct NodeJson<'a> {
    region: &'a str,
    node_id: u64,
    address: &'a str,
    role: &'a str,
    term: u64,
    leader_id: u64,
    last_log_index: u64,
    applied_index: u64,
    healthy: bool,
    error: &'a str,
}

#[derive(Debug, Serialize)]
struct RegionStatusJson<'a> {
    region: &'a str,
    leader_id: u64,
    term: u64,
    nodes: Vec<NodeJson<'a>>,
}

impl<'a> From<&'a v1::RegionStatus> for RegionStatusJson<'a> {
    fn from(r: &'a v1::RegionStatus) -> Self {
        RegionStatusJson {
            region: &r.region,
            leader_id: r.leader_id,
            term: r.term,
            nodes: r
                .nodes
                .iter()
                .map(|n| NodeJson {
                    region: &n.region,
                    node_id: n.node_id,
                    address: &n.address,
                    role: &n.role,
                    term: n.term,
                    leader_id: n.leader_id,
                    last_log_index: n.last_log_index,
                    applied_index: n.applied_index,
                    healthy: n.healthy,
                    error: &n.error,
                })
                .collect(),
        }
    }
}

/// The proto says UNSPECIFIED means the default, which is linearizable.
fn consistency_name(consistency: v1::ReadConsistency) -> &'static str {
    match consistency {
        v1::ReadConsistency::Unspecified | v1::ReadConsistency::Linearizable => "linearizable",
        v1::ReadConsistency::Local => "local",
    }
}

fn region_state_name(state: v1::RegionState) -> &'static str {
    match state {
        v1::RegionState::Unspecified => "unspecified",
        v1::RegionState::Ok => "ok",
        v1::RegionState::Unavailable => "unavailable",
        v1::RegionState::DeadlineExceeded => "deadline_exceeded",
        v1::RegionState::Error => "error",
    }
}

fn node_health(node: &v1::NodeStatus) -> String {
    match (node.healthy, node.error.is_empty()) {
        (true, _) => "healthy".to_string(),
        (false, true) => "unhealthy".to_string(),
        (false, false) => format!("unreachable: {}", node.error),
    }
}

// ---------------------------------------------------------------------------- text helpers

/// Columns padded to their widest cell, two spaces apart, no trailing spaces.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table { headers: headers.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    /// Adds a row; it must have one cell per header.
    pub fn row<const N: usize>(&mut self, cells: [String; N]) {
        debug_assert_eq!(N, self.headers.len(), "one cell per column");
        self.rows.push(cells.into_iter().map(|cell| printable(&cell)).collect());
    }

    pub fn render(&self) -> String {
        let width = |text: &str| text.chars().count();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (column, cell) in row.iter().enumerate() {
                widths[column] = widths[column].max(width(cell));
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut text = String::new();
            for (column, cell) in line.iter().enumerate() {
                if column > 0 {
                    text.push_str("  ");
                }
                text.push_str(cell);
                text.extend(std::iter::repeat_n(' ', widths[column] - width(cell)));
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `field  value` lines with the values aligned, for one record.
fn key_values(fields: &[(&str, String)]) -> String {
    let width = fields.iter().map(|(key, _)| key.len()).max().unwrap_or(0);
    fields.iter().map(|(key, value)| format!("{key:<width$}  {}\n", printable(value))).collect()
}

fn org_fields(org: &v1::Org) -> Vec<(&'static str, String)> {
    vec![
        ("id", org.id.clone()),
        ("name", org.name.clone()),
        ("region", org.region.clone()),
        ("version", org.version.to_string()),
        ("epoch", org.epoch.to_string()),
        ("created", format_time_ms(org.create_time_ms)),
        ("updated", format_time_ms(org.update_time_ms)),
        ("imports", org.allowed_import_regions.join(",")),
    ]
}

fn next_page_line(token: &Option<String>) -> String {
    match token {
        Some(token) => format!("\nmore: --page-token {token}\n"),
        None => String::new(),
    }
}

/// Control characters (which the server refuses in names, but a table must never pass to the
/// terminal) shown escaped.
pub(crate) fn printable(text: &str) -> String {
    if text.chars().any(char::is_control) {
        text.chars()
            .flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] })
            .collect()
    } else {
        text.to_string()
    }
}

/// Milliseconds since the Unix epoch as UTC `YYYY-MM-DDTHH:MM:SSZ`; 0 (unset) as `-`; past
/// the year 9999 as the raw number.
pub fn format_time_ms(ms: u64) -> String {
    /// 9999-12-31T23:59:59Z.
    const LAST_SECOND: u64 = 253_402_300_799;
    if ms == 0 {
        return "-".to_string();
    }
    let seconds = ms / 1000;
    if seconds > LAST_SECOND {
        return format!("{ms} ms");
    }
    let (mut days, seconds_of_day) = (seconds / 86_400, seconds % 86_400);
    let is_leap = |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let mut year = 1970;
    loop {
        let days_in_year = if is_leap(year) { 366 } else { 365 };
        if days < days_in_year {
            break;
        }
        days -= days_in_year;
        year += 1;
    }
    let month_lengths = [31, if is_leap(year) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut month = 1;
    for length in month_lengths {
        if days < length {
            break;
        }
        days -= length;
        month += 1;
    }
    format!(
        "{year:04}-{month:02}-{:02}T{:02}:{:02}:{:02}Z",
        days + 1,
        seconds_of_day / 3600,
        seconds_of_day / 60 % 60,
        seconds_of_day % 60
    )
}

#[cfg(test)]
mod tests;
