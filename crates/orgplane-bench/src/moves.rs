//! The `move` preset: what moving an org between regions online (issue #9) costs its writers.
//!
//! On the embedded dev deployment, for each org size: an EU org with that many members, an
//! integration and an app; `--clients` writers add members to that org through the router back
//! to back; after `--warmup` the org is moved to the US (`MoveService.MoveOrg` at the router),
//! its status is polled until the move is done, and the writers go on for `--after`. Then the
//! org moves back to the EU the same way: a round trip.
//!
//! Each round reports what the move recorded (records, bytes copied, write pause), how long it
//! took as the poller saw it (to the switch and to the end), and the writes before, during and
//! after the move: counts, p99 and max latency, errors. While the org is frozen the router holds
//! its writes until the switch, so a write that fails is a bug: each one is printed. After each
//! round the org's members are read through the router: their number must be the members before
//! the round plus the acknowledged writes (no write lost, none invented).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use futures::{StreamExt, TryStreamExt};
use orgplane_model::Region;
use orgplane_proto::v1::access_service_client::AccessServiceClient;
use orgplane_proto::v1::app_service_client::AppServiceClient;
use orgplane_proto::v1::move_service_client::MoveServiceClient;
use orgplane_proto::v1::org_service_client::OrgServiceClient;
use orgplane_proto::v1::{
    AddMemberRequest, ConfigEntry, CreateIntegrationRequest, GetMoveStatusRequest, GetMoveStatusResponse,
    ListMembersRequest, MoveOrgRequest, OrgMove, ReadConsistency,
};
use serde::Serialize;
use tonic::transport::Channel;

use crate::cli::{default_conns, BenchDuration, OutputFormat};
use crate::cpu::CpuSample;
use crate::fixtures::{self, with_retries};
use crate::report::{errors_cell, render_table, OpFigures};
use crate::runner::{self, OpStats};
use crate::targets::Target;
use crate::workload::{code_name, Failure};

/// How long starting the deployment may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);

/// How often the move's status is asked for while it runs.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How many members are added at once while an org is set up.
const SETUP_CONCURRENCY: usize = 16;

/// The page size of the member count after each round.
const MEMBER_PAGE_SIZE: u32 = 500;

/// The phases of a move that has switched: the target serves the org.
const SWITCHED_PHASES: [&str; 3] = ["switched", "cleaning_up", "done"];

/// `move`: the cost of moving an org online, and a round trip back.
#[derive(Debug, Args)]
pub struct MoveArgs {
    /// Org sizes, each measured in turn: members added before the first move, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,1000")]
    pub members: Vec<usize>,
    /// Writers adding members to the moving org back to back, through the router.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// gRPC channels (HTTP/2 connections) the writers share [default: clients/8 rounded up].
    #[arg(long)]
    pub conns: Option<usize>,
    /// How long the writers run before each move starts (the "before" figures).
    #[arg(long, default_value = "2s")]
    pub warmup: BenchDuration,
    /// How long the writers go on after each move is done.
    #[arg(long, default_value = "2s")]
    pub after: BenchDuration,
    /// The deadline of one write (a write held longer fails, and is reported).
    #[arg(long, default_value = "10s")]
    pub request_timeout: BenchDuration,
    /// How long one move may take from MoveOrg to done before the run gives up.
    #[arg(long, default_value = "60s")]
    pub move_timeout: BenchDuration,
    /// What goes to stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl MoveArgs {
    /// Refuses values the preset cannot run with.
    fn validate(&self) -> anyhow::Result<()> {
        if self.members.is_empty() {
            bail!("--members names no org size");
        }
        if self.clients == 0 {
            bail!("--clients must be at least 1");
        }
        if self.conns == Some(0) {
            bail!("--conns must be at least 1");
        }
        if self.request_timeout.0.is_zero() || self.move_timeout.0.is_zero() {
            bail!("--request-timeout and --move-timeout must be above zero");
        }
        Ok(())
    }
}

/// Which part of a round a write started in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    /// Before MoveOrg was sent.
    Before,
    /// From MoveOrg until the poller saw the move done.
    During,
    /// After that.
    After,
}

impl Window {
    /// The window of a write that started at `started`, for a move sent at `move_sent` and
    /// seen done at `move_done`.
    fn of(started: Instant, move_sent: Instant, move_done: Instant) -> Window {
        if started < move_sent {
            Window::Before
        } else if started < move_done {
            Window::During
        } else {
            Window::After
        }
    }
}

/// One write as a writer saw it.
#[derive(Debug, Clone, Copy)]
struct Write {
    started: Instant,
    latency: Duration,
    result: Result<(), Failure>,
}

/// The writes of a round, split by window.
#[derive(Debug, Default)]
struct WindowStats {
    before: OpStats,
    during: OpStats,
    after: OpStats,
}

impl WindowStats {
    /// Sorts `writes` into their windows.
    fn of(writes: &[Write], move_sent: Instant, move_done: Instant) -> WindowStats {
        let mut stats = WindowStats::default();
        for write in writes {
            let window = match Window::of(write.started, move_sent, move_done) {
                Window::Before => &mut stats.before,
                Window::During => &mut stats.during,
                Window::After => &mut stats.after,
            };
            window.record(write.result, write.latency);
        }
        stats
    }
}

/// Whether every acknowledged write of a round is in the org afterwards, and nothing else is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemberCheck {
    /// Members read through the router before the round's first write.
    pub before: u64,
    /// Writes acknowledged during the round.
    pub acknowledged: u64,
    /// Writes that failed (each may or may not have applied).
    pub failed: u64,
    /// Members read through the router after the last write.
    pub after: u64,
}

impl MemberCheck {
    /// True when no acknowledged write is lost and no member appeared that no write added:
    /// `before + acknowledged <= after <= before + acknowledged + failed` (with no failed write,
    /// exactly `before + acknowledged`).
    pub fn passes(&self) -> bool {
        let least = self.before + self.acknowledged;
        (least..=least + self.failed).contains(&self.after)
    }
}

/// One move measured: an org of `members` members moved from one region to another under load.
#[derive(Debug, Clone, Serialize)]
pub struct MoveRound {
    /// Members the org was created with (before any writer ran).
    pub members: usize,
    /// About how many members the org had when the move started: those before the round and
    /// the writes acknowledged before the move (the writers grow the org as they go).
    pub members_at_move: u64,
    /// The region the org left.
    pub from: String,
    /// The region it moved to.
    pub to: String,
    /// The move's id, as the target recorded it.
    pub move_id: String,
    /// Records in the move's latest copy (the frozen one).
    pub records: u64,
    /// Bytes staged at the target over all copies.
    pub bytes_copied: u64,
    /// From the freeze at the source to the switch at the target, as the move's driver measured it.
    pub write_pause_ms: Option<u64>,
    /// From sending MoveOrg until a poll first saw the move switched (or later), when one did
    /// (polled every 20 ms).
    pub switched_ms: Option<f64>,
    /// From sending MoveOrg until a poll saw the move done.
    pub done_ms: f64,
    /// Writes started before MoveOrg was sent.
    pub before: OpFigures,
    /// Writes started from MoveOrg until the move was seen done.
    pub during: OpFigures,
    /// Writes started after that.
    pub after: OpFigures,
    /// The p99 of writes during the move over the p99 before it.
    pub p99_ratio: f64,
    /// The slowest write during the move over the slowest before it.
    pub max_ratio: f64,
    /// The org's members before and after the round against the writes.
    pub member_check: MemberCheck,
    /// Whether the member check passed.
    pub no_write_lost: bool,
    /// Where the router says the org lives after the round.
    pub home_region: String,
    /// Cores other processes used during the round, where `/proc` tells.
    pub other_cores: Option<f64>,
}

impl MoveRound {
    /// Every failed write of the round.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        let mut errors = BTreeMap::new();
        for figures in [&self.before, &self.during, &self.after] {
            for (code, count) in &figures.errors {
                *errors.entry(code.clone()).or_insert(0) += count;
            }
        }
        errors
    }

    /// The round on one line, as it is printed while the preset runs.
    pub fn summary(&self) -> String {
        format!(
            "{} members ({} at the move), {} -> {}: pause {} ms, done in {:.0} ms, {} writes during, p99 {:.3} -> {:.3} ms, \
             max {:.3} ms, errors {}, {}",
            self.members,
            self.members_at_move,
            self.from,
            self.to,
            self.write_pause_ms.map_or_else(|| "-".to_string(), |p| p.to_string()),
            self.done_ms,
            self.during.ok,
            self.before.latency.p99_ms,
            self.during.latency.p99_ms,
            self.during.latency.max_ms,
            errors_cell(&self.errors()),
            if self.no_write_lost { "no write lost" } else { "WRITES LOST" },
        )
    }

    /// A round passes with no failed write, nothing lost, and the org where it was sent.
    pub fn passes(&self) -> bool {
        self.errors().is_empty() && self.no_write_lost && self.home_region == self.to
    }
}

/// `a / b`, `NaN` (JSON `null`, table `n/a`) when `b` is zero.
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

/// The `move` report.
#[derive(Debug, Clone, Serialize)]
pub struct MoveReport {
    /// Always `move`.
    pub mode: String,
    /// Where it ran.
    pub target: String,
    /// Writers.
    pub clients: usize,
    /// Channels they shared.
    pub conns: usize,
    /// Writing before each move, in seconds.
    pub warmup_s: f64,
    /// Writing after each move, in seconds.
    pub after_s: f64,
    /// Every move, in the order they ran: per size, out and back.
    pub rounds: Vec<MoveRound>,
}

impl MoveReport {
    /// One row per move.
    pub fn to_table(&self) -> String {
        let headers = [
            "created with",
            "members at move",
            "move",
            "records",
            "bytes copied",
            "pause ms",
            "switched ms",
            "done ms",
            "writes before",
            "writes during",
            "p99 before",
            "p99 during",
            "p99 ratio",
            "max before",
            "max during",
            "max ratio",
            "errors",
            "no write lost",
            "other cores",
        ];
        let mut right = [true; 19];
        right[2] = false;
        right[16] = false;
        right[17] = false;
        let ms = |v: f64| format!("{v:.1}");
        let rows: Vec<Vec<String>> = self
            .rounds
            .iter()
            .map(|r| {
                let check = &r.member_check;
                vec![
                    r.members.to_string(),
                    r.members_at_move.to_string(),
                    format!("{} -> {}", r.from, r.to),
                    r.records.to_string(),
                    r.bytes_copied.to_string(),
                    r.write_pause_ms.map_or_else(|| "-".to_string(), |p| p.to_string()),
                    r.switched_ms.map_or_else(|| "-".to_string(), ms),
                    ms(r.done_ms),
                    r.before.ok.to_string(),
                    r.during.ok.to_string(),
                    format!("{:.3}", r.before.latency.p99_ms),
                    format!("{:.3}", r.during.latency.p99_ms),
                    times(r.p99_ratio),
                    format!("{:.3}", r.before.latency.max_ms),
                    format!("{:.3}", r.during.latency.max_ms),
                    times(r.max_ratio),
                    errors_cell(&r.errors()),
                    format!(
                        "{} ({} = {} + {})",
                        if r.no_write_lost { "PASS" } else { "FAIL" },
                        check.after,
                        check.before,
                        check.acknowledged
                    ),
                    r.other_cores.map_or_else(|| "-".to_string(), |cores| format!("{cores:.2}")),
                ]
            })
            .collect();
        format!(
            "# orgplane-bench move: {}, {}, {}s before and {}s after each move; latencies in ms\n{}",
            counted(self.clients, "writer"),
            counted(self.conns, "connection"),
            self.warmup_s,
            self.after_s,
            render_table(&headers, &right, &rows)
        )
    }

    /// The report as pretty JSON; ratios that divide by zero are `null`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }
}

/// `1 writer`, `16 writers`.
fn counted(count: usize, what: &str) -> String {
    if count == 1 {
        format!("1 {what}")
    } else {
        format!("{count} {what}s")
    }
}

/// A ratio as `3.20x`, or `n/a`.
fn times(ratio: f64) -> String {
    if ratio.is_finite() {
        format!("{ratio:.2}x")
    } else {
        "n/a".to_string()
    }
}

/// Runs the preset, prints its report, and fails when a round did not pass.
pub async fn run(args: MoveArgs) -> anyhow::Result<()> {
    args.validate()?;
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let target = Target::embedded_dev().await?;
    let result = async {
        target.wait_ready(args.request_timeout.0, deadline).await?;
        measure_sizes(&args, &target).await
    }
    .await;
    target.shutdown().await;
    let report = result?;
    match args.output {
        OutputFormat::Table => print!("{}", report.to_table()),
        OutputFormat::Json => println!("{}", report.to_json()),
    }
    if let Some(path) = &args.json {
        std::fs::write(path, report.to_json() + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    }
    let failed = report.rounds.iter().filter(|r| !r.passes()).count();
    if failed > 0 {
        bail!("{failed} of {} moves lost or failed writes, or left the org elsewhere", report.rounds.len());
    }
    Ok(())
}

/// Every size: an org set up in the EU, moved to the US and back under load.
async fn measure_sizes(args: &MoveArgs, target: &Target) -> anyhow::Result<MoveReport> {
    let router = target.endpoints.first().context("the dev deployment has no router")?;
    let conns = args.conns.unwrap_or_else(|| default_conns(args.clients));
    let setup = runner::connect_one(router, args.request_timeout.0).await?;
    let channels = runner::connect(std::slice::from_ref(router), conns, args.request_timeout.0).await?;
    let run_id = fixtures::new_run_id();
    let mut rounds = Vec::new();
    for (index, members) in args.members.iter().copied().enumerate() {
        let started = Instant::now();
        let org = create_org(&setup, &format!("{run_id}-{index}"), members).await?;
        eprintln!("setup: {org} with {members} members, an integration and an app, in {:.1}s", secs(started));
        for (from, to) in [(Region::Eu, Region::Us), (Region::Us, Region::Eu)] {
            let round_id = format!("{run_id}-{index}-{to}");
            let round = measure_move(args, &setup, &channels, &org, &round_id, members, (from, to)).await?;
            eprintln!("{}", round.summary());
            rounds.push(round);
        }
    }
    Ok(MoveReport {
        mode: "move".to_string(),
        target: target.label.clone(),
        clients: args.clients,
        conns: channels.len(),
        warmup_s: args.warmup.0.as_secs_f64(),
        after_s: args.after.0.as_secs_f64(),
        rounds,
    })
}

fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

/// Creates an EU org with `members` members (viewers), an integration with a secret, and an
/// app, through the router; returns its id.
async fn create_org(channel: &Channel, key: &str, members: usize) -> anyhow::Result<String> {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let orgs = OrgServiceClient::new(channel.clone());
    let org = fixtures::create_org(orgs.clone(), Region::Eu, format!("bench-move-{key}"), deadline).await?.id;
    futures::stream::iter(0..members)
        .map(|i| {
            let request = AddMemberRequest {
                org_id: org.clone(),
                user_id: format!("bench-{key}-m{i}"),
                role: "viewer".to_string(),
                request_id: format!("bench-{key}-m{i}"),
            };
            let orgs = orgs.clone();
            with_retries("adding a member", deadline, move || {
                let (mut orgs, request) = (orgs.clone(), request.clone());
                async move { orgs.add_member(request).await }
            })
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    let integration = CreateIntegrationRequest {
        org_id: org.clone(),
        name: "crm".to_string(),
        kind: "salesforce".to_string(),
        config: vec![
            ConfigEntry { key: "url".into(), value: "https://crm.example".into(), secret: false },
            ConfigEntry { key: "token".into(), value: format!("sk-bench-{key}"), secret: true },
        ],
        request_id: format!("bench-{key}-integration"),
    };
    let access = AccessServiceClient::new(channel.clone());
    with_retries("creating the integration", deadline, || {
        let (mut access, request) = (access.clone(), integration.clone());
        async move { access.create_integration(request).await }
    })
    .await?;
    fixtures::create_app(AppServiceClient::new(channel.clone()), &org, key, deadline).await?;
    Ok(org)
}

/// One round: writers on `org` for the warmup, the move `from` -> `to` followed to its end, the
/// writers for `--after` more, then the member check.
#[allow(clippy::too_many_arguments)]
async fn measure_move(
    args: &MoveArgs,
    setup: &Channel,
    channels: &[Channel],
    org: &str,
    round_id: &str,
    members: usize,
    (from, to): (Region, Region),
) -> anyhow::Result<MoveRound> {
    let members_before = count_members(setup, org).await?;
    let cpu_before = CpuSample::now();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..args.clients)
        .map(|client| {
            let orgs = OrgServiceClient::new(channels[client % channels.len()].clone());
            let user_prefix = format!("bench-{round_id}-c{client}");
            tokio::spawn(write_until(orgs, org.to_string(), user_prefix, stop.clone()))
        })
        .collect();
    tokio::time::sleep(args.warmup.0).await;

    let followed = follow_move(setup, org, to, args.move_timeout.0).await;
    if followed.is_ok() {
        tokio::time::sleep(args.after.0).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut writes = Vec::new();
    for writer in writers {
        writes.extend(writer.await.context("a writer task failed")?);
    }
    let followed = followed?;
    let other_cores =
        cpu_before.zip(CpuSample::now()).and_then(|(b, a)| b.usage_until(&a)).map(|usage| usage.other_cores);

    let stats = WindowStats::of(&writes, followed.sent, followed.done);
    let member_check = MemberCheck {
        before: members_before,
        acknowledged: writes.iter().filter(|w| w.result.is_ok()).count() as u64,
        failed: writes.iter().filter(|w| w.result.is_err()).count() as u64,
        after: count_members(setup, org).await?,
    };
    let status = move_status(setup, org).await?;
    let figures = |stats: &OpStats, seconds: f64| OpFigures::new(stats, seconds);
    let before = figures(&stats.before, args.warmup.0.as_secs_f64());
    let during = figures(&stats.during, (followed.done - followed.sent).as_secs_f64());
    let after = figures(&stats.after, args.after.0.as_secs_f64());
    let record = followed.record;
    Ok(MoveRound {
        members,
        members_at_move: member_check.before + before.ok,
        from: from.to_string(),
        to: to.to_string(),
        move_id: record.move_id,
        records: record.records,
        bytes_copied: record.bytes_copied,
        write_pause_ms: record.write_pause_ms,
        switched_ms: followed.switched.map(|at| (at - followed.sent).as_secs_f64() * 1000.0),
        done_ms: (followed.done - followed.sent).as_secs_f64() * 1000.0,
        p99_ratio: ratio(during.latency.p99_ms, before.latency.p99_ms),
        max_ratio: ratio(during.latency.max_ms, before.latency.max_ms),
        before,
        during,
        after,
        no_write_lost: member_check.passes(),
        member_check,
        home_region: status.home_region,
        other_cores,
    })
}

/// One writer: adds a new member to `org` back to back until `stop`, each write with its own
/// request id and no retry; prints every write that fails.
async fn write_until(
    mut orgs: OrgServiceClient<Channel>,
    org: String,
    user_prefix: String,
    stop: Arc<AtomicBool>,
) -> Vec<Write> {
    let mut writes = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let user = format!("{user_prefix}-{n}");
        n += 1;
        let request = AddMemberRequest {
            org_id: org.clone(),
            user_id: user.clone(),
            role: "viewer".to_string(),
            request_id: user.clone(),
        };
        let started = Instant::now();
        let result = orgs.add_member(request).await;
        let latency = started.elapsed();
        let result = result.map(drop).map_err(|status| {
            eprintln!(
                "write failed after {:.1} ms: adding {user} to {org}: {} {}",
                latency.as_secs_f64() * 1000.0,
                code_name(status.code()),
                status.message()
            );
            code_name(status.code())
        });
        writes.push(Write { started, latency, result });
    }
    writes
}

/// A move followed from MoveOrg to its end.
struct FollowedMove {
    /// When MoveOrg was sent.
    sent: Instant,
    /// When a poll first saw it switched or later.
    switched: Option<Instant>,
    /// When a poll saw it done.
    done: Instant,
    /// The move as the target recorded it at the end.
    record: OrgMove,
}

/// Starts moving `org` to `to` through the router and polls its status until it is done.
/// Fails when it is refused, aborted, or not done within `timeout`.
async fn follow_move(channel: &Channel, org: &str, to: Region, timeout: Duration) -> anyhow::Result<FollowedMove> {
    let mut moves = MoveServiceClient::new(channel.clone());
    let sent = Instant::now();
    let request = MoveOrgRequest { org_id: org.to_string(), to_region: to.to_string(), dry_run: false };
    let started = moves
        .move_org(request)
        .await
        .map_err(|status| anyhow::anyhow!("MoveOrg {org} to {to}: {} {}", code_name(status.code()), status.message()))?
        .into_inner()
        .r#move
        .context("MoveOrg answered without a move")?;
    let deadline = sent + timeout;
    let mut switched = None;
    loop {
        // Polls that fail (a region busy with the move) are tried again until the deadline.
        let polled = move_status(channel, org).await;
        let now = Instant::now();
        if let Ok(GetMoveStatusResponse { r#move: Some(record), .. }) = &polled {
            if record.move_id == started.move_id {
                if switched.is_none() && SWITCHED_PHASES.contains(&record.phase.as_str()) {
                    switched = Some(now);
                }
                match record.phase.as_str() {
                    "done" => return Ok(FollowedMove { sent, switched, done: now, record: record.clone() }),
                    "aborted" => bail!("the move of {org} to {to} was aborted: {}", record.reason),
                    _ => {}
                }
            }
        }
        if now >= deadline {
            bail!("the move of {org} to {to} was not done within {timeout:?}; last status: {polled:?}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The org's latest move and where it lives, from the router.
async fn move_status(channel: &Channel, org: &str) -> anyhow::Result<GetMoveStatusResponse> {
    let request = GetMoveStatusRequest { org_id: org.to_string() };
    MoveServiceClient::new(channel.clone())
        .get_move_status(request)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| anyhow::anyhow!("GetMoveStatus {org}: {} {}", code_name(status.code()), status.message()))
}

/// The org's members, counted by a linearizable read through the router, page by page.
async fn count_members(channel: &Channel, org: &str) -> anyhow::Result<u64> {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let orgs = OrgServiceClient::new(channel.clone());
    let mut count = 0u64;
    let mut page_token = String::new();
    loop {
        let request = ListMembersRequest {
            org_id: org.to_string(),
            page_size: MEMBER_PAGE_SIZE,
            page_token: page_token.clone(),
            consistency: ReadConsistency::Linearizable as i32,
        };
        let page = with_retries("listing the org's members", deadline, || {
            let (mut orgs, request) = (orgs.clone(), request.clone());
            async move { orgs.list_members(request).await }
        })
        .await?
        .into_inner();
        count += page.members.len() as u64;
        if page.next_page_token.is_empty() {
            return Ok(count);
        }
        page_token = page.next_page_token;
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn writes_fall_in_the_window_they_started_in() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let (sent, done) = (at(100), at(200));
        let check = |started, expected| assert_eq!(Window::of(at(started), sent, done), expected, "{started} ms");
        check(0, Window::Before);
        check(99, Window::Before);
        check(100, Window::During);
        check(199, Window::During);
        check(200, Window::After);

        // A write that starts before the move and ends during it counts before.
        let write = |started, latency_ms, result| Write {
            started: at(started),
            latency: Duration::from_millis(latency_ms),
            result,
        };
        let writes = [
            write(10, 2, Ok(())),
            write(90, 50, Ok(())),
            write(120, 400, Ok(())),
            write(150, 1, Err("UNAVAILABLE")),
            write(250, 3, Ok(())),
        ];
        let stats = WindowStats::of(&writes, sent, done);
        assert_eq!((stats.before.ok(), stats.during.ok(), stats.after.ok()), (2, 1, 1));
        assert_eq!(stats.during.errors, BTreeMap::from([("UNAVAILABLE", 1)]));
        assert!(stats.before.errors.is_empty() && stats.after.errors.is_empty());
        assert_eq!(stats.during.latency_us.max(), stats.during.latency_us.highest_equivalent(400_000));
    }

    #[test]
    fn member_check_finds_lost_and_invented_writes() {
        let check = |after, failed, expected| {
            let check = MemberCheck { before: 1000, acknowledged: 50, failed, after };
            assert_eq!(check.passes(), expected, "{check:?}");
        };
        check(1050, 0, true);
        check(1049, 0, false); // an acknowledged write lost
        check(1051, 0, false); // a member no write added
        check(1050, 2, true); // failed writes that did not apply
        check(1052, 2, true); // or did
        check(1053, 2, false);
    }

    /// A round whose writes took `before_us` and `during_us` (below 2048 us the histogram is exact).
    fn round(before_us: &[u64], during_us: &[u64], errors: &[Failure], check: MemberCheck) -> MoveRound {
        let stats = |us: &[u64], errors: &[Failure]| {
            let mut stats = OpStats::new();
            us.iter().for_each(|us| stats.record(Ok(()), Duration::from_micros(*us)));
            errors.iter().for_each(|e| stats.record(Err(e), Duration::ZERO));
            OpFigures::new(&stats, 1.0)
        };
        let (before, during) = (stats(before_us, &[]), stats(during_us, errors));
        MoveRound {
            members: 10,
            members_at_move: check.before + before.ok,
            from: "eu".into(),
            to: "us".into(),
            move_id: "m1".into(),
            records: 25,
            bytes_copied: 9000,
            write_pause_ms: Some(40),
            switched_ms: Some(120.0),
            done_ms: 300.0,
            p99_ratio: ratio(during.latency.p99_ms, before.latency.p99_ms),
            max_ratio: ratio(during.latency.max_ms, before.latency.max_ms),
            before,
            during,
            after: stats(&[], &[]),
            no_write_lost: check.passes(),
            member_check: check,
            home_region: "us".into(),
            other_cores: Some(0.5),
        }
    }

    #[test]
    fn report_table_and_json() {
        let check = MemberCheck { before: 11, acknowledged: 4, failed: 0, after: 15 };
        let ok = round(&[200, 200, 400], &[1000], &[], check);
        assert!(ok.passes());
        assert_eq!((ok.p99_ratio, ok.max_ratio), (2.5, 2.5));
        let lost = MemberCheck { before: 11, acknowledged: 4, failed: 1, after: 14 };
        let mut failed = round(&[], &[800], &["DEADLINE_EXCEEDED"], lost);
        failed.other_cores = None;
        assert!(!failed.passes());
        let report = MoveReport {
            mode: "move".into(),
            target: "t".into(),
            clients: 2,
            conns: 1,
            warmup_s: 1.0,
            after_s: 1.0,
            rounds: vec![ok, failed],
        };
        let table = report.to_table();
        let expected = "\
# orgplane-bench move: 2 writers, 1 connection, 1s before and 1s after each move; latencies in ms
created with  members at move  move      records  bytes copied  pause ms  switched ms  done ms  writes before  writes during  p99 before  p99 during  p99 ratio  max before  max during  max ratio  errors               no write lost       other cores
          10               14  eu -> us       25          9000        40        120.0    300.0              3              1       0.400       1.000      2.50x       0.400       1.000      2.50x  0                    PASS (15 = 11 + 4)         0.50
          10               11  eu -> us       25          9000        40        120.0    300.0              0              1       0.000       0.800        n/a       0.000       0.800        n/a  DEADLINE_EXCEEDED:1  FAIL (14 = 11 + 4)            -
";
        assert_eq!(table, expected, "\n{table}");
        assert_eq!(
            report.rounds[1].summary(),
            "10 members (11 at the move), eu -> us: pause 40 ms, done in 300 ms, 1 writes during, p99 0.000 -> 0.800 ms, \
             max 0.800 ms, errors DEADLINE_EXCEEDED:1, WRITES LOST"
        );
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["rounds"][0]["p99_ratio"], 2.5);
        assert_eq!(json["rounds"][1]["p99_ratio"], serde_json::Value::Null);
        assert_eq!(json["rounds"][1]["during"]["errors"]["DEADLINE_EXCEEDED"], 1);
        assert_eq!(json["rounds"][0]["member_check"]["after"], 15);
        assert_eq!(json["rounds"][0]["write_pause_ms"], 40);
    }

    #[test]
    fn command_line() {
        let parse = |line: &str| Cli::try_parse_from(line.split_whitespace());
        let Command::Move(args) = parse("orgplane-bench move").unwrap().command else { panic!("not move") };
        assert_eq!((args.members, args.clients), (vec![10, 1000], 16));
        assert_eq!((args.warmup.0, args.after.0), (Duration::from_secs(2), Duration::from_secs(2)));
        let Command::Move(args) = parse("orgplane-bench move --members 5 --clients 4 --after 500ms").unwrap().command
        else {
            panic!("not move")
        };
        assert_eq!((args.members.as_slice(), args.clients, args.after.0), (&[5][..], 4, Duration::from_millis(500)));
        assert!(args.validate().is_ok());
        let Command::Move(args) = parse("orgplane-bench move --clients 0").unwrap().command else { panic!("not move") };
        assert!(args.validate().is_err());
        assert!(parse("orgplane-bench move --members x").is_err());
    }
}
