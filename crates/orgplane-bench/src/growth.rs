//! `growth`: how cost grows with the size of a region. Three real `orgplane node` processes (so
//! each node's RSS can be read from `/proc`) form a region in a work directory; many concurrent
//! clients preload orgs and memberships (the group commit batches them) up to each checkpoint
//! and then to the full size; at each size the same short read runs measure get-org, list-orgs
//! and list-members, and each node's RSS and data dir bytes are recorded. At the end a follower
//! is killed (SIGKILL) and started again, timed until it serves a local read and reports
//! SERVING, and a fifth-wheel node with an empty data dir is added with AddNode after the
//! leader has snapshotted and purged its log, timed until it is caught up and promoted.
//!
//! Every process it starts is killed when the run ends, fails or is interrupted
//! (`kill_on_drop`), and the work directory is removed unless `--work-dir` named it.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use orgplane_model::Region;
use orgplane_proto::v1::admin_service_client::AdminServiceClient;
use orgplane_proto::v1::cluster_service_client::ClusterServiceClient;
use orgplane_proto::v1::org_service_client::OrgServiceClient;
use orgplane_proto::v1::{
    AddMemberRequest, AddNodeRequest, CreateOrgRequest, GetClusterStatusRequest, GetOrgRequest, ReadConsistency,
};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

use crate::app::measure;
use crate::cli::{BenchDuration, ClientCounts, LoadArgs, OutputFormat};
use crate::fixtures::{new_run_id, with_retries, Fixtures};
use crate::report::{render_table, Ratio, RunReport};
use crate::runner;
use crate::workload::{splitmix64, Mix, OpKind, Workload};

/// The region the growth run fills.
const REGION: Region = Region::Us;

/// The nodes that form the region; one more joins at the end.
const VOTERS: u64 = 3;

/// The read operations measured at every size.
const MEASURED_OPS: [OpKind; 3] = [OpKind::GetOrg, OpKind::ListOrgs, OpKind::ListMembers];

/// How long a started node may take to elect a leader, a restarted one to serve again, and a
/// scrape or status call to answer.
const START_TIMEOUT: Duration = Duration::from_secs(120);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a restarting or joining node is probed.
const PROBE_EVERY: Duration = Duration::from_millis(20);

/// `growth`: sizes, load and where the processes come from.
#[derive(Debug, Args)]
pub struct GrowthArgs {
    /// Orgs in the region at the end.
    #[arg(long, default_value_t = 100_000)]
    pub orgs: usize,
    /// Memberships at the end, spread evenly over the orgs (at each checkpoint in proportion).
    #[arg(long, default_value_t = 1_000_000)]
    pub members: usize,
    /// Org counts to stop and measure at before the full size, comma-separated, ascending.
    #[arg(long, default_value = "1000")]
    pub checkpoint: ClientCounts,
    /// Clients of each measured read run.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Concurrent clients that preload orgs and memberships.
    #[arg(long, default_value_t = 256)]
    pub preload_clients: usize,
    /// How long each read run is measured, after the warmup.
    #[arg(long, default_value = "5s")]
    pub duration: BenchDuration,
    /// How long each read run issues requests before measuring.
    #[arg(long, default_value = "1s")]
    pub warmup: BenchDuration,
    /// The deadline of one request.
    #[arg(long, default_value = "10s")]
    pub request_timeout: BenchDuration,
    /// How long the whole preload may take before the run gives up.
    #[arg(long, default_value = "40m")]
    pub preload_timeout: BenchDuration,
    /// Before each read run, wait at most this long for a quiet machine (see `run`).
    #[arg(long, default_value = "0s")]
    pub quiet_wait: BenchDuration,
    /// The nodes' snapshot-every-entries [default: (orgs + members) / 64, from 200 to the
    /// node's own default 20000: a group-commit batch holds about a dozen preload commands, so
    /// the preload crosses it a few times and a joining node needs a snapshot].
    #[arg(long)]
    pub snapshot_every_entries: Option<u64>,
    /// The nodes' log-entries-kept-after-snapshot.
    #[arg(long, default_value_t = 100)]
    pub log_entries_kept_after_snapshot: u64,
    /// Kill the joining node, and leave catch-up unmeasured, if its RSS passes this many MiB
    /// (a joining node holds the snapshot it receives in memory; at the default size it peaked
    /// at about 7 GiB here; this keeps a shared machine out of the OOM killer's way).
    #[arg(long, default_value_t = 10240)]
    pub max_join_rss_mib: u64,
    /// Stop the run if the nodes' data dirs together pass this many MiB (sled's files grow
    /// well past the records they hold: about 20 GiB for the four nodes at the default size;
    /// this keeps a shared disk from filling).
    #[arg(long, default_value_t = 24576)]
    pub max_disk_mib: u64,
    /// The `orgplane` binary [default: `orgplane` beside this binary, e.g. target/release].
    #[arg(long)]
    pub orgplane_bin: Option<PathBuf>,
    /// Keep the nodes' data and logs in this directory (created; must be empty) instead of a
    /// temporary one that is removed at the end.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// What goes to stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Also write the JSON report to this file (`orgplane-bench chart` draws it).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl GrowthArgs {
    /// The checked sizes: each checkpoint, then the full size.
    fn sizes(&self) -> anyhow::Result<Vec<Size>> {
        if self.orgs == 0 {
            bail!("--orgs must be at least 1");
        }
        if self.clients == 0 || self.preload_clients == 0 {
            bail!("--clients and --preload-clients must be at least 1");
        }
        if self.duration.0.is_zero() || self.request_timeout.0.is_zero() {
            bail!("--duration and --request-timeout must be above zero");
        }
        let mut sizes = Vec::new();
        for &orgs in &self.checkpoint.0 {
            if orgs >= self.orgs {
                bail!("checkpoint {orgs} is not below --orgs {}", self.orgs);
            }
            if sizes.last().is_some_and(|last: &Size| last.orgs >= orgs) {
                bail!("checkpoints must be ascending: {:?}", self.checkpoint.0);
            }
            sizes.push(Size { orgs, members: members_at(orgs, self.orgs, self.members) });
        }
        sizes.push(Size { orgs: self.orgs, members: self.members });
        Ok(sizes)
    }

    fn snapshot_every(&self) -> u64 {
        self.snapshot_every_entries.unwrap_or_else(|| ((self.orgs + self.members) as u64 / 64).clamp(200, 20_000))
    }
}

/// A region size: orgs and memberships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Size {
    pub orgs: usize,
    pub members: usize,
}

/// Memberships at `orgs` orgs when `total_members` are spread over `total_orgs`.
fn members_at(orgs: usize, total_orgs: usize, total_members: usize) -> usize {
    (orgs as u128 * total_members as u128 / total_orgs as u128) as usize
}

/// The org (by creation index) that membership `member` belongs to: memberships fill the orgs in
/// order, so the first [`members_at`]`(n)` memberships all belong to the first `n` orgs.
fn org_of_member(member: usize, total_orgs: usize, total_members: usize) -> usize {
    (member as u128 * total_orgs as u128 / total_members.max(1) as u128) as usize
}

/// One preload step.
#[derive(Debug, Clone, Serialize)]
pub struct PreloadStep {
    /// `orgs` or `members`.
    pub kind: &'static str,
    /// First and one-past-last index created.
    pub from: usize,
    pub to: usize,
    pub seconds: f64,
    /// Created per second (every create is a durable, replicated write).
    pub per_s: f64,
}

/// One node's footprint.
#[derive(Debug, Clone, Serialize)]
pub struct NodeFootprint {
    pub node_id: u64,
    /// VmRSS from /proc/PID/status.
    pub rss_bytes: u64,
    /// Sum of the file sizes under the node's data dir (log, vote, state machine, snapshot).
    pub data_dir_bytes: u64,
}

/// The measurements at one size.
#[derive(Debug, Clone, Serialize)]
pub struct Checkpoint {
    pub orgs: usize,
    pub members: usize,
    /// One read run per operation.
    pub runs: Vec<RunReport>,
    pub nodes: Vec<NodeFootprint>,
    /// The mean data dir over the nodes, divided by orgs + memberships.
    pub data_dir_bytes_per_record: f64,
    /// The mean data dir over the nodes divided by orgs (memberships included in the bytes).
    pub data_dir_bytes_per_org: f64,
    /// The mean data dir over the nodes divided by memberships (orgs included in the bytes).
    pub data_dir_bytes_per_member: f64,
}

/// A follower killed and started again.
#[derive(Debug, Clone, Serialize)]
pub struct RestartFigures {
    pub node_id: u64,
    /// From starting the process to its first successful local GetOrg of the last org created.
    pub local_read_s: f64,
    /// From starting the process to its status saying healthy (SERVING: a leader is known).
    pub serving_s: f64,
}

/// A new node added to the loaded region.
#[derive(Debug, Clone, Serialize)]
pub struct CatchUpFigures {
    pub node_id: u64,
    /// The leader's last snapshot index when the node was added (its log is purged below it).
    pub leader_snapshot_index: u64,
    /// From the AddNode call to its answer: learner caught up (matched the leader) and promoted.
    pub seconds: f64,
    /// Whether the new node installed a snapshot (its snapshot-install count went up).
    pub by_snapshot: bool,
    /// The new node's highest RSS seen while it caught up (sampled every 20 ms).
    pub peak_rss_bytes: u64,
    pub footprint: NodeFootprint,
}

/// Everything one growth run measured.
#[derive(Debug, Clone, Serialize)]
pub struct GrowthReport {
    pub mode: &'static str,
    pub region: String,
    pub clients: usize,
    pub preload_clients: usize,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub snapshot_every_entries: u64,
    pub log_entries_kept_after_snapshot: u64,
    pub preload: Vec<PreloadStep>,
    pub checkpoints: Vec<Checkpoint>,
    /// Each operation at the full size over the first checkpoint.
    pub ratios: Vec<Ratio>,
    pub restart: Option<RestartFigures>,
    pub catch_up: Option<CatchUpFigures>,
    /// Why restart or catch-up was not measured, when it was not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Runs the growth preset and prints its report.
pub async fn run(args: GrowthArgs) -> anyhow::Result<()> {
    let sizes = args.sizes()?;
    let binary = orgplane_binary(args.orgplane_bin.as_deref())?;
    let (work_dir, _temp) = match &args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            if std::fs::read_dir(dir)?.next().is_some() {
                bail!("--work-dir {} is not empty", dir.display());
            }
            (dir.clone(), None)
        }
        None => {
            let temp = tempfile::Builder::new().prefix("orgplane-growth-").tempdir().context("no temp dir")?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    let mut region = RegionProcesses::start(&binary, &work_dir, &args).await?;
    let result = tokio::select! {
        result = measure_growth(&args, &sizes, &mut region) => result,
        exceeded = disk_guard(&work_dir, args.max_disk_mib) => Err(exceeded),
    };
    region.stop_all().await;
    let report = result?;
    match args.output {
        OutputFormat::Table => print!("{}", report.to_table()),
        OutputFormat::Json => println!("{}", to_json(&report)),
    }
    if let Some(path) = &args.json {
        std::fs::write(path, to_json(&report) + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn to_json(report: &GrowthReport) -> String {
    serde_json::to_string_pretty(report).expect("a report always serializes")
}

/// Returns (an error to stop the run with) once the files under `work_dir` pass `max_mib`.
async fn disk_guard(work_dir: &Path, max_mib: u64) -> anyhow::Error {
    let max = max_mib * 1024 * 1024;
    loop {
        let used = dir_bytes(work_dir);
        if used > max {
            return anyhow::anyhow!(
                "the nodes' data passed --max-disk-mib {max_mib} ({} MiB); stopped to keep the disk from filling",
                used / (1024 * 1024)
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The steps between starting the region and stopping it.
async fn measure_growth(
    args: &GrowthArgs,
    sizes: &[Size],
    region: &mut RegionProcesses,
) -> anyhow::Result<GrowthReport> {
    let endpoints = region.endpoints();
    let preload_deadline = Instant::now() + args.preload_timeout.0;
    let conns = runner::connect(&endpoints, args.preload_clients.div_ceil(8), args.request_timeout.0).await?;
    let run_id = new_run_id();
    let load = LoadArgs {
        clients: None,
        conns: None,
        duration: args.duration,
        warmup: args.warmup,
        request_timeout: args.request_timeout,
        orgs: 0,
        request_ids: false,
        quiet_wait: args.quiet_wait,
        output: args.output,
        json: None,
    };
    let mut org_ids: Vec<String> = Vec::with_capacity(args.orgs);
    let mut members_done = 0;
    let mut preload = Vec::new();
    let mut checkpoints = Vec::new();
    for size in sizes {
        let step =
            preload_orgs(&conns, &run_id, org_ids.len()..size.orgs, args.preload_clients, preload_deadline).await?;
        org_ids.extend(step.1);
        preload.push(step.0);
        let ids = Arc::new(org_ids.clone());
        let plan = MemberPlan { run_id: run_id.clone(), org_ids: ids, total_orgs: args.orgs, total: args.members };
        preload.push(
            preload_members(&conns, &plan, members_done..size.members, args.preload_clients, preload_deadline).await?,
        );
        members_done = size.members;

        region.wait_applied(START_TIMEOUT).await?;
        let mut runs = Vec::new();
        for op in MEASURED_OPS {
            let fixtures = Fixtures {
                run_id: run_id.clone(),
                pool: shuffled(&org_ids),
                owned: Vec::new(),
                fanout_user: None,
                app: None,
            };
            let workload = Arc::new(Workload::new(Mix::single(op), fixtures, false));
            let label = format!("growth {} orgs", size.orgs);
            runs.push(measure(&workload, op.as_str(), &label, &endpoints, args.clients, &load).await?);
        }
        let nodes = region.footprints(VOTERS);
        let mean_bytes = nodes.iter().map(|n| n.data_dir_bytes as f64).sum::<f64>() / nodes.len().max(1) as f64;
        let per = |count: usize| if count > 0 { mean_bytes / count as f64 } else { 0.0 };
        checkpoints.push(Checkpoint {
            orgs: size.orgs,
            members: size.members,
            runs,
            nodes,
            data_dir_bytes_per_record: per(size.orgs + size.members),
            data_dir_bytes_per_org: per(size.orgs),
            data_dir_bytes_per_member: per(size.members),
        });
    }

    let mut ratios = Vec::new();
    if let (Some(first), Some(last)) = (checkpoints.first(), checkpoints.last()) {
        if first.orgs != last.orgs {
            for (small, large) in first.runs.iter().zip(&last.runs) {
                let name = format!("{}, {} / {} orgs", large.name, last.orgs, first.orgs);
                ratios.push(Ratio::of(name, large, small));
            }
        }
    }

    let mut notes = Vec::new();
    let last_org = org_ids.last().cloned().context("no org was created")?;
    let restart = match region.restart_a_follower(&last_org, args.request_timeout.0).await {
        Ok(figures) => Some(figures),
        Err(e) => {
            eprintln!("growth: restart not measured: {e:#}");
            notes.push(format!("restart not measured: {e:#}"));
            None
        }
    };
    let catch_up = match region.add_a_node(args.log_entries_kept_after_snapshot, args.max_join_rss_mib).await {
        Ok(figures) => Some(figures),
        Err(e) => {
            eprintln!("growth: catch-up not measured: {e:#}");
            notes.push(format!("catch-up not measured: {e:#}"));
            None
        }
    };
    Ok(GrowthReport {
        mode: "growth",
        region: REGION.to_string(),
        clients: args.clients,
        preload_clients: args.preload_clients,
        warmup_s: args.warmup.0.as_secs_f64(),
        duration_s: args.duration.0.as_secs_f64(),
        snapshot_every_entries: args.snapshot_every(),
        log_entries_kept_after_snapshot: args.log_entries_kept_after_snapshot,
        preload,
        checkpoints,
        ratios,
        restart,
        catch_up,
        notes,
    })
}

/// `ids` in a fixed pseudo-random order, so the clients of a read run spread over the whole
/// region rather than walking neighbours.
fn shuffled(ids: &[String]) -> Vec<String> {
    let mut ids = ids.to_vec();
    let mut rng = 0x6f72_6770_6c61_6e65;
    for i in (1..ids.len()).rev() {
        rng = splitmix64(rng);
        ids.swap(i, (rng % (i as u64 + 1)) as usize);
    }
    ids
}

/// Runs `work(index, channel)` for every index of `range` with `clients` concurrent workers
/// over `conns`, and returns the results by index.
async fn in_parallel<T, F, Fut>(
    conns: &[Channel],
    range: Range<usize>,
    clients: usize,
    work: F,
) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize, Channel) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<T>> + Send,
{
    let next = Arc::new(AtomicUsize::new(range.start));
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..clients.min(range.len()).max(1) {
        let (next, work, channel, end) = (next.clone(), work.clone(), conns[worker % conns.len()].clone(), range.end);
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= end {
                    return anyhow::Ok(done);
                }
                done.push((index, work(index, channel.clone()).await?));
            }
        });
    }
    let mut results = BTreeMap::new();
    while let Some(joined) = workers.join_next().await {
        // The first failure ends the preload; dropping the set aborts the other workers.
        results.extend(joined.context("a preload worker panicked")??);
    }
    Ok(results.into_values().collect())
}

/// Creates orgs `range` (by creation index) and returns the step and their ids in index order.
async fn preload_orgs(
    conns: &[Channel],
    run_id: &str,
    range: Range<usize>,
    clients: usize,
    deadline: Instant,
) -> anyhow::Result<(PreloadStep, Vec<String>)> {
    let started = Instant::now();
    let run_id = run_id.to_string();
    let ids = in_parallel(conns, range.clone(), clients, move |index, channel| {
        let key = format!("growth-{run_id}-org-{index}");
        async move {
            let request =
                CreateOrgRequest { region: REGION.to_string(), name: format!("growth org {index}"), request_id: key };
            let response = with_retries("creating an org", deadline, || {
                let (mut client, request) = (OrgServiceClient::new(channel.clone()), request.clone());
                async move { client.create_org(request).await }
            })
            .await?;
            Ok(response.into_inner().org.context("CreateOrg answered without an org")?.id)
        }
    })
    .await?;
    let step = preload_step("orgs", range, started.elapsed());
    Ok((step, ids))
}

/// What the membership preload needs to know.
struct MemberPlan {
    run_id: String,
    /// Every org created so far, by creation index.
    org_ids: Arc<Vec<String>>,
    total_orgs: usize,
    total: usize,
}

/// Adds memberships `range` (member `m` is user `g<run>-u<m>` in org [`org_of_member`]).
async fn preload_members(
    conns: &[Channel],
    plan: &MemberPlan,
    range: Range<usize>,
    clients: usize,
    deadline: Instant,
) -> anyhow::Result<PreloadStep> {
    let started = Instant::now();
    let (run_id, org_ids, total_orgs, total) = (plan.run_id.clone(), plan.org_ids.clone(), plan.total_orgs, plan.total);
    in_parallel(conns, range.clone(), clients, move |member, channel| {
        let org_id = org_ids.get(org_of_member(member, total_orgs, total)).cloned();
        let request = org_id.map(|org_id| AddMemberRequest {
            org_id,
            user_id: format!("g{run_id}-u{member}"),
            role: "viewer".to_string(),
            request_id: format!("growth-{run_id}-member-{member}"),
        });
        async move {
            let request = request.context("a membership's org was not created yet")?;
            with_retries("adding a member", deadline, || {
                let (mut client, request) = (OrgServiceClient::new(channel.clone()), request.clone());
                async move { client.add_member(request).await }
            })
            .await?;
            Ok(())
        }
    })
    .await?;
    Ok(preload_step("members", range, started.elapsed()))
}

fn preload_step(kind: &'static str, range: Range<usize>, took: Duration) -> PreloadStep {
    let seconds = took.as_secs_f64();
    let count = range.len();
    let per_s = if seconds > 0.0 { count as f64 / seconds } else { 0.0 };
    eprintln!("growth: preloaded {kind} {}..{} ({count}) in {seconds:.1}s: {per_s:.0}/s", range.start, range.end);
    PreloadStep { kind, from: range.start, to: range.end, seconds, per_s }
}

/// The `orgplane` binary to start.
fn orgplane_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe().context("cannot locate this binary")?.with_file_name("orgplane"),
    };
    if !path.is_file() {
        bail!(
            "no orgplane binary at {} (build it with `cargo build --release -p orgplane`, or pass --orgplane-bin)",
            path.display()
        );
    }
    Ok(path)
}

/// One `orgplane node` process and how to start it again.
struct NodeProcess {
    node_id: u64,
    addr: String,
    metrics_addr: String,
    data_dir: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Child,
}

/// The region's node processes.
struct RegionProcesses {
    binary: PathBuf,
    work_dir: PathBuf,
    config: PathBuf,
    nodes: Vec<NodeProcess>,
}

impl RegionProcesses {
    /// Starts [`VOTERS`] nodes forming the region and waits until each sees a leader.
    async fn start(binary: &Path, work_dir: &Path, args: &GrowthArgs) -> anyhow::Result<RegionProcesses> {
        let config = work_dir.join("node.toml");
        let snapshot_every = args.snapshot_every();
        std::fs::write(
            &config,
            format!(
                "# written by orgplane-bench growth\nsnapshot-every-entries = {snapshot_every}\n\
                 log-entries-kept-after-snapshot = {}\n",
                args.log_entries_kept_after_snapshot
            ),
        )?;
        let mut ports = BTreeMap::new();
        for node_id in 1..=VOTERS {
            ports.insert(node_id, (free_port()?, free_port()?));
        }
        let peers: Vec<String> = ports.iter().map(|(id, (port, _))| format!("{id}=127.0.0.1:{port}")).collect();
        let mut region = RegionProcesses {
            binary: binary.to_path_buf(),
            work_dir: work_dir.to_path_buf(),
            config,
            nodes: Vec::new(),
        };
        for (node_id, (port, metrics_port)) in ports {
            let node = region.spawn_node(node_id, port, metrics_port, Some(peers.join(",")))?;
            region.nodes.push(node);
        }
        eprintln!(
            "growth: 3 orgplane nodes in {} (snapshot every {snapshot_every} entries, {} kept after)",
            work_dir.display(),
            args.log_entries_kept_after_snapshot
        );
        let deadline = Instant::now() + START_TIMEOUT;
        for node in &region.nodes {
            wait_for(deadline, &format!("node {} to see a leader", node.node_id), || serving(&node.addr)).await?;
        }
        Ok(region)
    }

    /// Starts `orgplane node` `node_id`: forming the region with `peers`, or joining it.
    fn spawn_node(
        &self,
        node_id: u64,
        port: u16,
        metrics_port: u16,
        peers: Option<String>,
    ) -> anyhow::Result<NodeProcess> {
        let addr = format!("127.0.0.1:{port}");
        let metrics_addr = format!("127.0.0.1:{metrics_port}");
        let data_dir = self.work_dir.join(format!("node-{node_id}"));
        let mut args: Vec<String> = vec![
            "node".into(),
            "--config".into(),
            self.config.display().to_string(),
            "--region".into(),
            REGION.to_string(),
            "--node-id".into(),
            node_id.to_string(),
            "--listen".into(),
            addr.clone(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--metrics-listen".into(),
            metrics_addr.clone(),
            // The benchmark's clients send no tokens: it measures the data path, as etcd's
            // benchmark does against an etcd without auth.
            "--allow-unauthenticated".into(),
        ];
        match peers {
            Some(peers) => args.extend(["--peers".into(), peers]),
            None => args.push("--join".into()),
        }
        let log = self.work_dir.join(format!("node-{node_id}.log"));
        let child = self.spawn(&args, &log)?;
        Ok(NodeProcess { node_id, addr, metrics_addr, data_dir, args, log, child })
    }

    fn spawn(&self, args: &[String], log: &Path) -> anyhow::Result<Child> {
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        Command::new(&self.binary)
            .args(args)
            // Warnings only: the nodes' own logging is not what is measured.
            .env("RUST_LOG", "warn,openraft=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))
    }

    fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// The RSS and data dir size of the first `count` nodes.
    fn footprints(&self, count: u64) -> Vec<NodeFootprint> {
        self.nodes.iter().filter(|n| n.node_id <= count).map(footprint).collect()
    }

    /// Kills a follower with SIGKILL, starts it again on the same data dir, and times it until
    /// it reads `org_id` locally and until it reports SERVING.
    async fn restart_a_follower(&mut self, org_id: &str, request_timeout: Duration) -> anyhow::Result<RestartFigures> {
        let mut follower = None;
        for (index, node) in self.nodes.iter().enumerate() {
            if role(&node.addr).await.as_deref() == Some("follower") {
                follower = Some(index);
                break;
            }
        }
        let index = follower.context("no node says it is a follower")?;
        let node = &mut self.nodes[index];
        node.child.start_kill().context("cannot kill the follower")?;
        node.child.wait().await?;
        let log = node.log.clone();
        let args = node.args.clone();
        let child = self.spawn(&args, &log)?;
        let started = Instant::now();
        let node = &mut self.nodes[index];
        node.child = child;
        eprintln!("growth: node {} killed and started again", node.node_id);

        let deadline = started + START_TIMEOUT;
        let request = GetOrgRequest { org_id: org_id.to_string(), consistency: ReadConsistency::Local as i32 };
        let (mut local_read, mut serving_at) = (None, None);
        while local_read.is_none() || serving_at.is_none() {
            if Instant::now() >= deadline {
                bail!("node {} did not serve again within {START_TIMEOUT:?} (see {})", node.node_id, log.display());
            }
            if let Ok(channel) = runner::connect_one(&node.addr, request_timeout.min(PROBE_TIMEOUT)).await {
                if local_read.is_none() && OrgServiceClient::new(channel).get_org(request.clone()).await.is_ok() {
                    local_read = Some(started.elapsed());
                }
                if serving_at.is_none() && serving(&node.addr).await {
                    serving_at = Some(started.elapsed());
                }
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
        let (local_read, serving_at) = (local_read.unwrap_or_default(), serving_at.unwrap_or_default());
        Ok(RestartFigures {
            node_id: node.node_id,
            local_read_s: local_read.as_secs_f64(),
            serving_s: serving_at.as_secs_f64(),
        })
    }

    /// Waits until the leader has a snapshot past the kept log (so its log is purged below what
    /// a new node needs), starts a node with an empty data dir, adds it with AddNode, and times
    /// the call until the node is caught up and promoted.
    async fn add_a_node(&mut self, kept: u64, max_rss_mib: u64) -> anyhow::Result<CatchUpFigures> {
        let mut leader = None;
        for node in &self.nodes {
            if role(&node.addr).await.as_deref() == Some("leader") {
                leader = Some((node.addr.clone(), node.metrics_addr.clone()));
            }
        }
        let (leader_addr, leader_metrics) = leader.context("no node says it is the leader")?;
        let snapshot_index = metric(&leader_metrics, "orgplane_raft_snapshot_index").await?.unwrap_or(0.0) as u64;
        if snapshot_index <= kept {
            bail!(
                "the leader has no snapshot past the {kept} kept entries (snapshot index {snapshot_index}), so a new node \
                 would catch up from the log; lower --snapshot-every-entries"
            );
        }
        let node_id = VOTERS + 1;
        let node = self.spawn_node(node_id, free_port()?, free_port()?, None)?;
        let (addr, metrics_addr) = (node.addr.clone(), node.metrics_addr.clone());
        self.nodes.push(node);
        let deadline = Instant::now() + START_TIMEOUT;
        wait_for(deadline, &format!("node {node_id} to listen"), || async {
            runner::connect_one(&addr, PROBE_TIMEOUT).await.is_ok()
        })
        .await?;

        // AddNode answers once the learner has caught up and been promoted, or UNAVAILABLE
        // after the node's own catch-up bound ("call again to finish").
        let started = Instant::now();
        let channel = runner::connect_one(&leader_addr, Duration::from_secs(600)).await?;
        let request = AddNodeRequest { region: REGION.to_string(), node_id, address: addr.clone() };
        let add_deadline = started + Duration::from_secs(1200);
        let add = async {
            loop {
                match AdminServiceClient::new(channel.clone()).add_node(request.clone()).await {
                    Ok(_) => return Ok(()),
                    Err(status) if status.code() == tonic::Code::Unavailable && Instant::now() < add_deadline => {
                        tracing::debug!(message = status.message(), "add-node: again");
                    }
                    Err(status) => bail!("AddNode failed: {:?} {}", status.code(), status.message()),
                }
            }
        };
        let pid = self.nodes.last().and_then(|n| n.child.id()).context("the new node exited")?;
        let max_rss = max_rss_mib * 1024 * 1024;
        let mut peak_rss_bytes = 0;
        let watch_rss = async {
            loop {
                peak_rss_bytes = peak_rss_bytes.max(rss_bytes(pid).unwrap_or(0));
                if peak_rss_bytes > max_rss {
                    return;
                }
                tokio::time::sleep(PROBE_EVERY).await;
            }
        };
        tokio::select! {
            added = add => added?,
            _ = watch_rss => {
                let _ = self.nodes.last_mut().map(|n| n.child.start_kill());
                bail!("node {node_id} passed --max-join-rss-mib {max_rss_mib} while catching up; killed it");
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let installs = metric(&metrics_addr, "orgplane_snapshot_install_duration_seconds_count").await?.unwrap_or(0.0);
        eprintln!("growth: node {node_id} caught up and promoted in {seconds:.2}s");
        let footprint = footprint(self.nodes.last().expect("the node just added"));
        Ok(CatchUpFigures {
            node_id,
            leader_snapshot_index: snapshot_index,
            seconds,
            by_snapshot: installs >= 1.0,
            peak_rss_bytes: peak_rss_bytes.max(footprint.rss_bytes),
            footprint,
        })
    }

    /// Waits until every node has applied the leader's last log index, so a read run does not
    /// start while followers still apply the preload.
    async fn wait_applied(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut target = None;
        for node in &self.nodes {
            if let Some(status) = node_status(&node.addr).await.filter(|s| s.role == "leader") {
                target = Some(status.last_log_index);
            }
        }
        let target = target.context("no node says it is the leader")?;
        for node in &self.nodes {
            let what = format!("node {} to apply index {target}", node.node_id);
            wait_for(deadline, &what, || async {
                node_status(&node.addr).await.is_some_and(|s| s.applied_index >= target)
            })
            .await?;
        }
        Ok(())
    }

    /// Kills every node and waits for each to exit.
    async fn stop_all(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.start_kill();
        }
        for node in &mut self.nodes {
            let _ = tokio::time::timeout(Duration::from_secs(10), node.child.wait()).await;
        }
    }
}

fn footprint(node: &NodeProcess) -> NodeFootprint {
    let rss_bytes = node.child.id().and_then(rss_bytes).unwrap_or(0);
    NodeFootprint { node_id: node.node_id, rss_bytes, data_dir_bytes: dir_bytes(&node.data_dir) }
}

/// A loopback port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// Polls `ready` every [`PROBE_EVERY`] until it holds or `deadline` passes.
async fn wait_for<F, Fut>(deadline: Instant, what: &str, ready: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    while !ready().await {
        if Instant::now() >= deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
    Ok(())
}

/// The node's own status, if it answers.
async fn node_status(addr: &str) -> Option<orgplane_proto::v1::NodeStatus> {
    let channel = runner::connect_one(addr, PROBE_TIMEOUT).await.ok()?;
    let status = ClusterServiceClient::new(channel).get_cluster_status(GetClusterStatusRequest {}).await.ok()?;
    status.into_inner().regions.into_iter().next()?.nodes.into_iter().next()
}

/// Whether the node answers and is healthy (SERVING: it knows a leader).
async fn serving(addr: &str) -> bool {
    node_status(addr).await.is_some_and(|s| s.healthy && s.leader_id != 0)
}

async fn role(addr: &str) -> Option<String> {
    node_status(addr).await.map(|s| s.role)
}

/// Reads one unlabelled-or-labelled series from a node's `/metrics` (the first sample whose
/// name matches exactly).
async fn metric(metrics_addr: &str, name: &str) -> anyhow::Result<Option<f64>> {
    let scrape = async {
        let mut stream = tokio::net::TcpStream::connect(metrics_addr).await?;
        stream.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {metrics_addr}\r\n\r\n").as_bytes()).await?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await?;
        anyhow::Ok(body)
    };
    let body = tokio::time::timeout(PROBE_TIMEOUT * 5, scrape)
        .await
        .with_context(|| format!("{metrics_addr}: no metrics in time"))?
        .with_context(|| format!("cannot scrape {metrics_addr}"))?;
    Ok(sample(&body, name))
}

/// The value of the first sample of `name` in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let rest = line.strip_prefix(name)?;
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            return None;
        }
        line.rsplit(' ').next()?.parse().ok()
    })
}

/// VmRSS of process `pid`, in bytes.
fn rss_bytes(pid: u32) -> Option<u64> {
    parse_vm_rss(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The sum of the sizes of the files under `dir` (0 for what cannot be read).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

impl GrowthReport {
    /// The figures as aligned tables.
    pub fn to_table(&self) -> String {
        let mut out = format!(
            "# orgplane-bench growth: region {}, {} read clients, warmup {}s, duration {}s per run; \
             snapshot every {} entries\n",
            self.region, self.clients, self.warmup_s, self.duration_s, self.snapshot_every_entries
        );
        let rows: Vec<Vec<String>> = self
            .preload
            .iter()
            .map(|s| {
                vec![
                    s.kind.to_string(),
                    format!("{}..{}", s.from, s.to),
                    format!("{:.1}", s.seconds),
                    format!("{:.0}", s.per_s),
                ]
            })
            .collect();
        out += &format!("\npreload ({} clients)\n", self.preload_clients);
        out += &render_table(&["created", "range", "seconds", "per s"], &[false, false, true, true], &rows);
        let mut rows = Vec::new();
        for c in &self.checkpoints {
            for r in &c.runs {
                let l = &r.total.latency;
                rows.push(vec![
                    c.orgs.to_string(),
                    c.members.to_string(),
                    r.name.clone(),
                    format!("{:.1}", r.total.ok_per_s),
                    format!("{:.3}", l.p50_ms),
                    format!("{:.3}", l.p99_ms),
                    crate::report::errors_cell(&r.total.errors),
                ]);
            }
        }
        out += "\nreads\n";
        out += &render_table(
            &["orgs", "members", "op", "ok/s", "p50 ms", "p99 ms", "errors"],
            &[true, true, false, true, true, true, false],
            &rows,
        );
        let mib = |b: u64| format!("{:.1}", b as f64 / (1024.0 * 1024.0));
        let mut rows = Vec::new();
        for c in &self.checkpoints {
            for n in &c.nodes {
                rows.push(vec![
                    c.orgs.to_string(),
                    n.node_id.to_string(),
                    mib(n.rss_bytes),
                    mib(n.data_dir_bytes),
                    format!("{:.0}", c.data_dir_bytes_per_record),
                    format!("{:.0}", c.data_dir_bytes_per_org),
                    format!("{:.0}", c.data_dir_bytes_per_member),
                ]);
            }
        }
        out += "\nfootprint (per-record figures: mean data dir over the nodes / count)\n";
        out += &render_table(
            &["orgs", "node", "RSS MiB", "data dir MiB", "B/record", "B/org", "B/member"],
            &[true, true, true, true, true, true, true],
            &rows,
        );
        if !self.ratios.is_empty() {
            let times = |v: f64| if v.is_finite() { format!("{v:.2}x") } else { "n/a".into() };
            let rows: Vec<Vec<String>> = self
                .ratios
                .iter()
                .map(|r| vec![r.name.clone(), times(r.ok_per_s), times(r.p50), times(r.p99)])
                .collect();
            out += "\n";
            out += &render_table(&["ratio", "ok/s", "p50", "p99"], &[false, true, true, true], &rows);
        }
        out += "\n";
        if let Some(r) = &self.restart {
            out += &format!(
                "restart (SIGKILL, start): node {} read locally after {:.3}s, SERVING after {:.3}s\n",
                r.node_id, r.local_read_s, r.serving_s
            );
        }
        if let Some(c) = &self.catch_up {
            out += &format!(
                "new node {}: caught up and promoted {:.2}s after AddNode ({}; leader snapshot index {}); \
                 peak RSS {} MiB, RSS after {} MiB, data dir {} MiB\n",
                c.node_id,
                c.seconds,
                if c.by_snapshot { "by snapshot" } else { "from the log, no snapshot installed" },
                c.leader_snapshot_index,
                mib(c.peak_rss_bytes),
                mib(c.footprint.rss_bytes),
                mib(c.footprint.data_dir_bytes)
            );
        }
        for note in &self.notes {
            out += &format!("note: {note}\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> GrowthArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            growth: GrowthArgs,
        }
        Wrap::try_parse_from(std::iter::once("growth").chain(line.split_whitespace())).unwrap().growth
    }

    #[test]
    fn sizes_end_at_the_full_size_with_members_in_proportion() {
        let sizes = args("--orgs 100000 --members 1000000 --checkpoint 1000,10000").sizes().unwrap();
        let expected = [(1_000, 10_000), (10_000, 100_000), (100_000, 1_000_000)];
        assert_eq!(sizes, expected.map(|(orgs, members)| Size { orgs, members }));
        assert!(args("--orgs 1000 --checkpoint 1000").sizes().is_err(), "a checkpoint at the full size");
        assert!(args("--orgs 1000 --checkpoint 500,100").sizes().is_err(), "descending checkpoints");
        assert!(args("--orgs 0").sizes().is_err());
        assert!(args("--orgs 10 --checkpoint 1 --clients 0").sizes().is_err());
    }

    #[test]
    fn members_fill_orgs_in_order() {
        let (orgs, members) = (100, 1_000);
        // The memberships up to a checkpoint all belong to the orgs up to it.
        for checkpoint in [1, 10, 37, 100] {
            let upto = members_at(checkpoint, orgs, members);
            assert!((0..upto).all(|m| org_of_member(m, orgs, members) < checkpoint), "{checkpoint}");
        }
        // And every org gets its share.
        let mut per_org = vec![0; orgs];
        (0..members).for_each(|m| per_org[org_of_member(m, orgs, members)] += 1);
        assert!(per_org.iter().all(|n| *n == 10), "{per_org:?}");
        // Fewer memberships than orgs, or none, still map inside.
        assert!((0..7).all(|m| org_of_member(m, 100, 7) < 100));
        assert_eq!(members_at(50, 100, 0), 0);
    }

    #[test]
    fn snapshot_interval_follows_the_size() {
        assert_eq!(args("").snapshot_every(), 1_100_000 / 64);
        assert_eq!(args("--orgs 1000000 --members 10000000").snapshot_every(), 20_000);
        assert_eq!(args("--orgs 100 --members 100").snapshot_every(), 200);
        assert_eq!(args("--snapshot-every-entries 7").snapshot_every(), 7);
    }

    #[test]
    fn reads_proc_status_and_metrics_text() {
        let status = "Name:\torgplane\nVmPeak:\t  9000 kB\nVmRSS:\t   123456 kB\nThreads:\t9\n";
        assert_eq!(parse_vm_rss(status), Some(123_456 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        let text = "# HELP orgplane_raft_snapshot_index x\n\
                    orgplane_raft_snapshot_index_total 9\n\
                    orgplane_raft_snapshot_index{role=\"node\",region=\"us\",node=\"1\"} 4096\n";
        assert_eq!(sample(text, "orgplane_raft_snapshot_index"), Some(4096.0));
        assert_eq!(sample(text, "orgplane_raft_term"), None);
    }

    #[test]
    fn shuffle_keeps_every_id() {
        let ids: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        let mut out = shuffled(&ids);
        assert_ne!(out, ids);
        out.sort_by_key(|s| s.parse::<u32>().unwrap());
        assert_eq!(out, ids);
    }
}
