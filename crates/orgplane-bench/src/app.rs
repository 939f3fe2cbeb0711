//! The three modes, each: start or reach the target, create the fixtures, run once per client
//! count, build the [`BenchReport`], stop what was started.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use orgplane_model::Region;

use crate::cli::{
    default_conns, Cli, ClientCounts, Command, LoadArgs, MtlsArgs, OutputFormat, RegionArgs, RouterOverheadArgs,
    RunArgs, WorkloadName,
};
use crate::cpu;
use crate::fixtures::{self, FixtureNeeds};
use crate::report::{errors_cell, BenchReport, Ratio, RunReport};
use crate::runner::{self, RunSpec};
use crate::targets::Target;
use crate::workload::{Mix, OpKind, Workload};

/// How many cores other processes may use while the machine counts as quiet.
const QUIET_OTHER_CORES: f64 = 0.25;

/// How long starting a target and creating the fixtures may take together.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the mode the command line asks for and prints its report.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let (report, load) = match cli.command {
        Command::Chart(args) => return crate::chart::run(&args),
        Command::Growth(args) => return crate::growth::run(args).await,
        Command::Wan(args) => return crate::wan::run(args).await,
        Command::Move(args) => return crate::moves::run(args).await,
        Command::Run(args) => {
            let load = args.load.clone();
            (run_workload(args).await?, load)
        }
        Command::Region(args) => {
            let load = args.load.clone();
            (region_preset(args).await?, load)
        }
        Command::RouterOverhead(args) => {
            let load = args.load.clone();
            (router_overhead(args).await?, load)
        }
        Command::Mtls(args) => {
            let load = args.load.clone();
            (mtls(args).await?, load)
        }
    };
    emit(&load, &report, &report.to_table(), &report.to_json())
}

/// Prints a mode's report (its table under a header naming `report`'s mode, or its JSON) and
/// writes the JSON to `--json` when given. Modes with figures beyond a [`BenchReport`] pass
/// their own table and JSON.
pub(crate) fn emit(load: &LoadArgs, report: &BenchReport, table: &str, json: &str) -> anyhow::Result<()> {
    match load.output {
        OutputFormat::Table => {
            println!(
                "# orgplane-bench {}: warmup {}s, duration {}s per run",
                report.mode, report.warmup_s, report.duration_s
            );
            print!("{table}");
        }
        OutputFormat::Json => println!("{json}"),
    }
    if let Some(path) = &load.json {
        std::fs::write(path, format!("{json}\n")).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// `run`: one workload, one target, each client count in turn.
async fn run_workload(args: RunArgs) -> anyhow::Result<BenchReport> {
    let counts = client_counts(&args.load, &[1, 16, 64, 256])?;
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let target = if let Some(endpoints) = &args.endpoints {
        Target::external(endpoints.0.clone(), args.load.request_timeout.0, deadline).await?
    } else if args.embedded_region {
        Target::embedded_region(args.region.unwrap_or(Region::Us)).await?
    } else {
        Target::embedded_dev().await?
    };
    let result: anyhow::Result<_> = async {
        target.wait_ready(args.load.request_timeout.0, deadline).await?;
        let region = match args.region {
            Some(region) => region,
            None if target.regions.len() == 1 => target.regions[0],
            None => Region::Us,
        };
        if !target.regions.contains(&region) {
            bail!("the target does not serve region {region} (it serves {:?})", target.regions);
        }
        let (endpoints, label) = if args.target_leader {
            (
                Target::leaders(&target.endpoints, args.load.request_timeout.0, deadline).await?,
                format!("{}, leader only", target.label),
            )
        } else {
            (target.endpoints.clone(), target.label.clone())
        };
        let mix = args.workload.weights(&args.mix);
        let workload = prepare(mix, &target, &endpoints, region, &counts, &args.load, deadline).await?;
        let mut runs = Vec::new();
        for clients in &counts {
            runs.push(measure(&workload, args.workload.as_str(), &label, &endpoints, *clients, &args.load).await?);
        }
        Ok(runs)
    }
    .await;
    target.shutdown().await;
    Ok(new_report("run", &args.load, result?, Vec::new()))
}

/// `region`: create-members at (by default) 1 and 64 clients on a 3-node region, and the ratio
/// of the most clients to the fewest.
async fn region_preset(args: RegionArgs) -> anyhow::Result<BenchReport> {
    let counts = client_counts(&args.load, &[1, 64])?;
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let target = match &args.endpoints {
        Some(endpoints) => Target::external(endpoints.0.clone(), args.load.request_timeout.0, deadline).await?,
        None => Target::embedded_region(Region::Us).await?,
    };
    let result: anyhow::Result<_> = async {
        target.wait_ready(args.load.request_timeout.0, deadline).await?;
        let [region] = target.regions[..] else {
            bail!("the region preset needs the nodes of one region; the target serves {:?}", target.regions);
        };
        let (endpoints, label) = if args.target_leader {
            (
                Target::leaders(&target.endpoints, args.load.request_timeout.0, deadline).await?,
                format!("{}, leader only", target.label),
            )
        } else {
            (target.endpoints.clone(), target.label.clone())
        };
        let name = WorkloadName::CreateMembers.as_str();
        let mix = Mix::single(OpKind::CreateMember);
        let workload = prepare(mix, &target, &endpoints, region, &counts, &args.load, deadline).await?;
        let mut runs = Vec::new();
        for clients in &counts {
            runs.push(measure(&workload, name, &label, &endpoints, *clients, &args.load).await?);
        }
        Ok(runs)
    }
    .await;
    target.shutdown().await;
    let runs = result?;
    let mut ratios = Vec::new();
    let most = runs.iter().max_by_key(|r| r.clients);
    let fewest = runs.iter().min_by_key(|r| r.clients);
    if let (Some(most), Some(fewest)) = (most, fewest) {
        if most.clients != fewest.clients {
            let name = format!("create-members, {} / {}", clients_label(most.clients), clients_label(fewest.clients));
            ratios.push(Ratio::of(name, most, fewest));
        }
    }
    Ok(new_report("region", &args.load, runs, ratios))
}

/// `router-overhead`: the same linearizable reads of the same orgs, directly on the owning
/// region's nodes and then through the router, at each client count.
async fn router_overhead(args: RouterOverheadArgs) -> anyhow::Result<BenchReport> {
    let counts = client_counts(&args.load, &[64])?;
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let target = Target::embedded_dev().await?;
    let result: anyhow::Result<_> = async {
        target.wait_ready(args.load.request_timeout.0, deadline).await?;
        let direct = target.region_endpoints.get(&args.region).cloned().context("no nodes for the region")?;
        let name = WorkloadName::GetOrg.as_str();
        let mix = Mix::single(OpKind::GetOrg);
        // Fixtures go through the router, as a client's would.
        let workload = prepare(mix, &target, &target.endpoints, args.region, &counts, &args.load, deadline).await?;
        let mut runs = Vec::new();
        let mut ratios = Vec::new();
        for clients in &counts {
            let label = format!("embedded-dev, {} nodes", args.region);
            let direct_run =
                measure(&workload, &format!("{name} direct"), &label, &direct, *clients, &args.load).await?;
            let router_run = measure(
                &workload,
                &format!("{name} via router"),
                "embedded-dev, router",
                &target.endpoints,
                *clients,
                &args.load,
            )
            .await?;
            ratios.push(Ratio::of(format!("router / direct, {}", clients_label(*clients)), &router_run, &direct_run));
            runs.extend([direct_run, router_run]);
        }
        Ok((runs, ratios))
    }
    .await;
    target.shutdown().await;
    let (runs, ratios) = result?;
    Ok(new_report("router-overhead", &args.load, runs, ratios))
}

/// `mtls`: the same writes (create-members) and linearizable reads (get-org) on an embedded
/// region in plaintext, then on one speaking mutual TLS (peers and clients), at each client count;
/// ratios mTLS / plaintext.
async fn mtls(args: MtlsArgs) -> anyhow::Result<BenchReport> {
    let counts = client_counts(&args.load, &[64])?;
    let mut runs = Vec::new();
    for mtls in [false, true] {
        let deadline = Instant::now() + SETUP_TIMEOUT;
        let target = Target::embedded_region_with(Region::Us, mtls).await?;
        let result: anyhow::Result<Vec<RunReport>> = async {
            target.wait_ready(args.load.request_timeout.0, deadline).await?;
            let mut runs = Vec::new();
            for (name, op) in
                [(WorkloadName::CreateMembers, OpKind::CreateMember), (WorkloadName::GetOrg, OpKind::GetOrg)]
            {
                let workload =
                    prepare(Mix::single(op), &target, &target.endpoints, Region::Us, &counts, &args.load, deadline)
                        .await?;
                for clients in &counts {
                    runs.push(
                        measure(&workload, name.as_str(), &target.label, &target.endpoints, *clients, &args.load)
                            .await?,
                    );
                }
            }
            Ok(runs)
        }
        .await;
        target.shutdown().await;
        runs.push(result?);
    }
    let [plain, tls] = <[Vec<RunReport>; 2]>::try_from(runs).expect("two targets");
    let ratios = plain
        .iter()
        .zip(&tls)
        .map(|(plain, tls)| {
            Ratio::of(format!("mTLS / plaintext, {}, {}", plain.name, clients_label(plain.clients)), tls, plain)
        })
        .collect();
    Ok(new_report("mtls", &args.load, plain.into_iter().chain(tls).collect(), ratios))
}

/// Creates the fixtures `mix` needs through the target's first endpoint and wraps them in a
/// workload.
#[allow(clippy::too_many_arguments)]
async fn prepare(
    mix: Mix,
    target: &Target,
    endpoints: &[String],
    region: Region,
    counts: &[usize],
    load: &LoadArgs,
    deadline: Instant,
) -> anyhow::Result<Arc<Workload>> {
    let max_clients = counts.iter().copied().max().unwrap_or(1);
    let needs = FixtureNeeds::for_mix(&mix, load.orgs, max_clients, &target.regions);
    let setup_channel = runner::connect_one(&endpoints[0], load.request_timeout.0).await?;
    let started = Instant::now();
    let fixtures = fixtures::create(setup_channel, region, &needs, deadline).await.context("setup failed")?;
    if mix.contains(OpKind::GetOrgLocal) {
        let channels = runner::connect(endpoints, endpoints.len(), load.request_timeout.0).await?;
        fixtures::wait_visible_locally(&channels, &fixtures.pool, deadline).await?;
    }
    eprintln!(
        "setup: {} pool orgs, {} owned orgs, fan-out user in {} region(s), in {:.1}s",
        fixtures.pool.len(),
        fixtures.owned.len(),
        needs.fanout_regions.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(Arc::new(Workload::new(mix, fixtures, load.request_ids)))
}

/// One run of `workload` at `clients` clients over `endpoints`.
pub(crate) async fn measure(
    workload: &Arc<Workload>,
    name: &str,
    target_label: &str,
    endpoints: &[String],
    clients: usize,
    load: &LoadArgs,
) -> anyhow::Result<RunReport> {
    let conns = load.conns.unwrap_or_else(|| default_conns(clients));
    if !load.quiet_wait.0.is_zero() {
        match cpu::wait_quiet(load.quiet_wait.0, QUIET_OTHER_CORES).await {
            Some((true, _)) | None => {}
            Some((false, other)) => {
                eprintln!(
                    "warning: the machine did not get quiet within {} (others use {other:.2} cores)",
                    load.quiet_wait
                )
            }
        }
    }
    let channels = runner::connect(endpoints, conns, load.request_timeout.0).await?;
    let spec =
        RunSpec { clients, warmup: load.warmup.0, duration: load.duration.0, request_timeout: load.request_timeout.0 };
    let outcome = runner::run(&spec, &channels, workload.clone()).await?;
    let report = RunReport::new(name, target_label, &outcome);
    let t = &report.total;
    eprintln!(
        "{name} [{target_label}] {clients} clients / {conns} conns: {:.1} ok/s, p50 {:.3} ms, p99 {:.3} ms, errors {}",
        t.ok_per_s,
        t.latency.p50_ms,
        t.latency.p99_ms,
        errors_cell(&t.errors)
    );
    Ok(report)
}

/// The client counts of this invocation, checked, or the mode's default.
pub(crate) fn client_counts(load: &LoadArgs, default: &[usize]) -> anyhow::Result<Vec<usize>> {
    if load.duration.0.is_zero() {
        bail!("--duration must be above zero");
    }
    if load.request_timeout.0.is_zero() {
        bail!("--request-timeout must be above zero");
    }
    if load.conns == Some(0) {
        bail!("--conns must be at least 1");
    }
    let counts = load.clients.clone().unwrap_or_else(|| ClientCounts(default.to_vec())).0;
    if counts.is_empty() {
        bail!("no client count given");
    }
    Ok(counts)
}

/// `1 client`, `64 clients`.
pub(crate) fn clients_label(count: usize) -> String {
    if count == 1 {
        "1 client".to_string()
    } else {
        format!("{count} clients")
    }
}

pub(crate) fn new_report(mode: &str, load: &LoadArgs, runs: Vec<RunReport>, ratios: Vec<Ratio>) -> BenchReport {
    BenchReport {
        mode: mode.to_string(),
        warmup_s: load.warmup.0.as_secs_f64(),
        duration_s: load.duration.0.as_secs_f64(),
        runs,
        ratios,
    }
}
