//! The `wan` preset: what a client sees when regions are far apart. `tc netem` is not available
//! here, so latency comes from delay proxies between each region's router and the other
//! regions' nodes.
//!
//! One run starts the embedded dev deployment (its nodes; its own router, which sees no delay,
//! only creates the fixtures), then a router per region wired through [`network::WanNetwork`],
//! and measures through those routers:
//! - each region's own orgs through its own router, with all delays zero and then with the
//!   configured ones (the own-region path crosses no proxy, so the ratio should be about 1);
//! - a cross-region call: get-org through the US router for EU and APAC orgs (about one round
//!   trip over the local cost);
//! - the fan-out (ListUserOrgs of a user with orgs in every region) through each router, beside
//!   the slowest round trip and the sum of them (the regions are asked in parallel).
//!
//! Layout: [`proxy`] (the delay line), [`network`] (delays, proxies, routers), this module (the
//! runs and their report).

pub mod network;
pub mod proxy;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use orgplane_model::Region;
use serde::Serialize;

use crate::app;
use crate::cli::LoadArgs;
use crate::fixtures::{self, FixtureNeeds};
use crate::report::{render_table, BenchReport, Ratio, RunReport};
use crate::runner;
use crate::targets::Target;
use crate::workload::{Mix, OpKind, Workload};
use network::{WanDelays, WanNetwork, WanRouters};

/// How long starting the deployment and creating the fixtures may take together.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);

/// The router whose cross-region calls are measured.
const CROSS_REGION_ROUTER: Region = Region::Us;

/// `wan`: three routers, one per region, with delayed links to the other regions' nodes.
#[derive(Debug, Args)]
pub struct WanArgs {
    /// One-way delays between regions, `A-B=DELAY` for every pair of regions (a round trip
    /// between them is twice that).
    #[arg(long, default_value = "us-eu=40ms,us-apac=75ms,eu-apac=110ms")]
    pub delays: WanDelays,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// A delayed call's median beside the round trips it crosses.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WanPath {
    /// The call and the router, e.g. `get-org eu orgs via us router, 1 client`.
    pub name: String,
    /// Its median latency with the delays on.
    pub p50_ms: f64,
    /// The median of the same call with no delay (for a cross-region call, through the owning
    /// region's own router): the local cost.
    pub no_delay_p50_ms: f64,
    /// The slowest round trip among the regions the call reaches.
    pub max_rtt_ms: f64,
    /// The round trips added up: what the call would cost if it asked the regions in turn.
    pub sum_rtt_ms: f64,
}

impl WanPath {
    /// The expected median if the regions are asked in parallel: local cost + slowest RTT.
    pub fn parallel_ms(&self) -> f64 {
        self.no_delay_p50_ms + self.max_rtt_ms
    }

    /// The expected median if they were asked one after another: local cost + every RTT.
    pub fn sequential_ms(&self) -> f64 {
        self.no_delay_p50_ms + self.sum_rtt_ms
    }
}

/// The `wan` report: the runs and ratios of every mode, the delays, and the delayed paths.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WanReport {
    #[serde(flatten)]
    pub bench: BenchReport,
    /// The configured one-way delays by pair (`us-eu`), in milliseconds.
    pub one_way_delays_ms: BTreeMap<String, f64>,
    /// Cross-region calls and fan-outs beside their round trips.
    pub paths: Vec<WanPath>,
}

impl WanReport {
    /// The delays, the runs and ratios as every mode prints them, then the paths.
    pub fn to_table(&self) -> String {
        let delays: Vec<String> = self.one_way_delays_ms.iter().map(|(pair, ms)| format!("{pair} {ms} ms")).collect();
        let mut out = format!("one-way delays: {}\n\n", delays.join(", "));
        out.push_str(&self.bench.to_table());
        out.push('\n');
        let headers = [
            "wan path",
            "p50 ms",
            "no-delay p50 ms",
            "max RTT ms",
            "sum RTT ms",
            "no-delay + max",
            "no-delay + sum",
            "p50 / (no-delay + max)",
        ];
        let rows: Vec<Vec<String>> = self
            .paths
            .iter()
            .map(|p| {
                let ms = |v: f64| format!("{v:.1}");
                vec![
                    p.name.clone(),
                    ms(p.p50_ms),
                    ms(p.no_delay_p50_ms),
                    ms(p.max_rtt_ms),
                    ms(p.sum_rtt_ms),
                    ms(p.parallel_ms()),
                    ms(p.sequential_ms()),
                    format!("{:.2}x", p.p50_ms / p.parallel_ms()),
                ]
            })
            .collect();
        out.push_str(&render_table(&headers, &[false, true, true, true, true, true, true, true], &rows));
        out
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }
}

/// Runs the preset and prints its report.
pub async fn run(args: WanArgs) -> anyhow::Result<()> {
    let report = measure_wan(&args).await?;
    app::emit(&args.load, &report.bench, &report.to_table(), &report.to_json())
}

/// Starts everything, measures, and stops everything, whatever the outcome.
async fn measure_wan(args: &WanArgs) -> anyhow::Result<WanReport> {
    let counts = app::client_counts(&args.load, &[1])?;
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let target = Target::embedded_dev().await?;
    let result = async {
        target.wait_ready(args.load.request_timeout.0, deadline).await?;
        let network = WanNetwork::start(&target.region_endpoints, &WanDelays::zero()).await?;
        let routers = WanRouters::start(&network, &args.delays).await?;
        eprintln!("wan: a router per region, {} delay proxies, delays {}", network.proxies().len(), args.delays);
        let result = measure_paths(&target, &network, &routers, args, &counts, deadline).await;
        routers.shutdown().await;
        drop(network);
        result
    }
    .await;
    target.shutdown().await;
    result
}

/// The get-org workload of each region's orgs, and the fan-out workload, created through the
/// dev deployment's own (undelayed) router.
struct WanWorkloads {
    own: BTreeMap<Region, Arc<Workload>>,
    fanout: Arc<Workload>,
}

async fn create_workloads(target: &Target, load: &LoadArgs, deadline: Instant) -> anyhow::Result<WanWorkloads> {
    let setup = runner::connect_one(&target.endpoints[0], load.request_timeout.0).await?;
    let started = Instant::now();
    let get_org = Mix::single(OpKind::GetOrg);
    let mut own = BTreeMap::new();
    for region in Region::ALL {
        let needs = FixtureNeeds::for_mix(&get_org, load.orgs, 1, &[]);
        let created = fixtures::create(setup.clone(), region, &needs, deadline)
            .await
            .with_context(|| format!("setup of the {region} orgs failed"))?;
        own.insert(region, Arc::new(Workload::new(get_org.clone(), created, false)));
    }
    let user_orgs = Mix::single(OpKind::UserOrgs);
    let needs = FixtureNeeds::for_mix(&user_orgs, load.orgs, 1, &Region::ALL);
    let created =
        fixtures::create(setup, Region::Us, &needs, deadline).await.context("setup of the fan-out user failed")?;
    eprintln!(
        "setup: {} orgs in each region, a fan-out user in every region, in {:.1}s",
        load.orgs.max(1),
        started.elapsed().as_secs_f64()
    );
    Ok(WanWorkloads { own, fanout: Arc::new(Workload::new(user_orgs, created, false)) })
}

/// Every run, at each client count: first with no delays, then with the configured ones.
async fn measure_paths(
    target: &Target,
    network: &WanNetwork,
    routers: &WanRouters,
    args: &WanArgs,
    counts: &[usize],
    deadline: Instant,
) -> anyhow::Result<WanReport> {
    let load = &args.load;
    let workloads = create_workloads(target, load, deadline).await?;
    let router = |home: Region| routers.addr(home).map(|addr| vec![addr]);
    let get_org = OpKind::GetOrg.as_str();
    let user_orgs = OpKind::UserOrgs.as_str();
    let (mut runs, mut ratios, mut paths) = (Vec::new(), Vec::new(), Vec::new());
    for &clients in counts {
        let clients_label = app::clients_label(clients);
        let mut own_no_delay = BTreeMap::new();
        let mut fanout_no_delay = BTreeMap::new();
        network.set_delays(&WanDelays::zero());
        for home in Region::ALL {
            let label = format!("{home} router, no delays");
            let own = &workloads.own[&home];
            let run =
                app::measure(own, &format!("{get_org} {home} orgs"), &label, &router(home)?, clients, load).await?;
            own_no_delay.insert(home, run);
            let run = app::measure(&workloads.fanout, user_orgs, &label, &router(home)?, clients, load).await?;
            fanout_no_delay.insert(home, run);
        }

        network.set_delays(&args.delays);
        let mut delayed = Vec::new();
        for home in Region::ALL {
            let label = format!("{home} router, wan");
            let own = &workloads.own[&home];
            let run =
                app::measure(own, &format!("{get_org} {home} orgs"), &label, &router(home)?, clients, load).await?;
            ratios.push(Ratio::of(
                format!("{home} orgs via {home} router, wan / no delays, {clients_label}"),
                &run,
                &own_no_delay[&home],
            ));
            delayed.push(run);
        }
        let home = CROSS_REGION_ROUTER;
        for region in Region::ALL.into_iter().filter(|r| *r != home) {
            let label = format!("{home} router, wan");
            let owner = &workloads.own[&region];
            let run =
                app::measure(owner, &format!("{get_org} {region} orgs"), &label, &router(home)?, clients, load).await?;
            paths.push(path(
                format!("{get_org} {region} orgs via {home} router, {clients_label}"),
                &run,
                &own_no_delay[&region],
                &[args.delays.round_trip(home, region)],
            ));
            delayed.push(run);
        }
        for home in Region::ALL {
            let label = format!("{home} router, wan");
            let run = app::measure(&workloads.fanout, user_orgs, &label, &router(home)?, clients, load).await?;
            let round_trips: Vec<Duration> = Region::ALL.iter().map(|r| args.delays.round_trip(home, *r)).collect();
            paths.push(path(
                format!("{user_orgs} via {home} router, {clients_label}"),
                &run,
                &fanout_no_delay[&home],
                &round_trips,
            ));
            delayed.push(run);
        }
        runs.extend(own_no_delay.into_values().zip(fanout_no_delay.into_values()).flat_map(|(a, b)| [a, b]));
        runs.extend(delayed);
    }
    Ok(WanReport {
        bench: app::new_report("wan", load, runs, ratios),
        one_way_delays_ms: args.delays.as_millis(),
        paths,
    })
}

/// A delayed run beside its no-delay twin and the round trips it crosses.
fn path(name: String, delayed: &RunReport, no_delay: &RunReport, round_trips: &[Duration]) -> WanPath {
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    WanPath {
        name,
        p50_ms: delayed.total.latency.p50_ms,
        no_delay_p50_ms: no_delay.total.latency.p50_ms,
        max_rtt_ms: round_trips.iter().map(ms).fold(0.0, f64::max),
        sum_rtt_ms: round_trips.iter().map(ms).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_compared_with_the_slowest_and_the_summed_round_trips() {
        let p = WanPath { name: "x".into(), p50_ms: 151.0, no_delay_p50_ms: 1.0, max_rtt_ms: 150.0, sum_rtt_ms: 230.0 };
        assert_eq!(p.parallel_ms(), 151.0);
        assert_eq!(p.sequential_ms(), 231.0);
    }

    #[test]
    fn the_report_adds_the_delays_and_paths_to_the_common_table_and_json() {
        let bench = BenchReport { mode: "wan".into(), warmup_s: 1.0, duration_s: 2.0, runs: vec![], ratios: vec![] };
        let path = WanPath {
            name: "user-orgs via us router".into(),
            p50_ms: 151.0,
            no_delay_p50_ms: 1.0,
            max_rtt_ms: 150.0,
            sum_rtt_ms: 230.0,
        };
        let report = WanReport { bench, one_way_delays_ms: WanDelays::zero().as_millis(), paths: vec![path] };
        let table = report.to_table();
        assert!(table.starts_with("one-way delays: eu-apac 0 ms, us-apac 0 ms, us-eu 0 ms\n\nrun "), "{table}");
        assert!(table.ends_with("user-orgs via us router   151.0              1.0       150.0       230.0           151.0           231.0                   1.00x\n"), "{table}");
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["mode"], "wan", "the common fields stay at the top level");
        assert_eq!(json["one_way_delays_ms"]["us-eu"], 0.0);
        assert_eq!(json["paths"][0]["sum_rtt_ms"], 230.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_preset_runs_end_to_end_and_no_delayed_call_beats_its_round_trip() {
        use clap::Parser;
        let line =
            "orgplane-bench wan --delays us-eu=2ms,us-apac=4ms,eu-apac=6ms --duration 300ms --warmup 100ms --orgs 2";
        let cli = crate::cli::Cli::try_parse_from(line.split_whitespace()).unwrap();
        let crate::cli::Command::Wan(args) = cli.command else { panic!("not wan") };
        let report = measure_wan(&args).await.unwrap();
        // Per router: own orgs and fan-out with no delays, own orgs with delays; two
        // cross-region runs; a fan-out per router with delays.
        assert_eq!(report.bench.runs.len(), 3 * 3 + 2 + 3);
        for run in &report.bench.runs {
            assert!(run.total.ok > 0 && run.total.errors.is_empty(), "{} [{}]: {:?}", run.name, run.target, run.total);
        }
        assert_eq!(report.bench.ratios.len(), 3);
        assert_eq!(report.paths.len(), 2 + 3);
        for path in &report.paths {
            assert!(path.p50_ms >= path.max_rtt_ms, "{}: {} ms is below the round trip", path.name, path.p50_ms);
        }
        let fanout_via_eu = report.paths.iter().find(|p| p.name.starts_with("user-orgs via eu")).unwrap();
        assert_eq!((fanout_via_eu.max_rtt_ms, fanout_via_eu.sum_rtt_ms), (12.0, 16.0));
    }

    #[test]
    fn the_preset_parses_its_delays() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(["orgplane-bench", "wan", "--duration", "2s"]).unwrap();
        let crate::cli::Command::Wan(args) = cli.command else { panic!("not wan") };
        assert_eq!(args.delays.round_trip(Region::Us, Region::Apac), Duration::from_millis(150));
        let line = ["orgplane-bench", "wan", "--delays", "us-eu=1ms,us-apac=2ms,eu-apac=3ms", "--clients", "1,4"];
        let cli = crate::cli::Cli::try_parse_from(line).unwrap();
        let crate::cli::Command::Wan(args) = cli.command else { panic!("not wan") };
        assert_eq!(args.delays.between(Region::Eu, Region::Apac), Duration::from_millis(3));
        assert!(crate::cli::Cli::try_parse_from(["orgplane-bench", "wan", "--delays", "us-eu=1ms"]).is_err());
    }
}
