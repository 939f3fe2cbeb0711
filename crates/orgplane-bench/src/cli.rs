//! The command line: the modes (`run`, `region`, `router-overhead`; `growth`, `chart`, `wan`
//! and `move` bring their own arguments) over shared load options, and the small parsers for
//! the values clap cannot parse on its own (client lists, durations, endpoint lists, mix
//! weights).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use orgplane_model::Region;

use crate::workload::{Mix, OpKind};

/// orgplane's benchmark: N concurrent gRPC clients issuing requests back to back, latency in an
/// HDR histogram, throughput and percentiles as a table or JSON.
#[derive(Debug, Parser)]
#[command(name = "orgplane-bench", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to measure.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs one workload against one target, once per client count.
    Run(RunArgs),
    /// Durable writes (create-members) at 1 and 64 clients against a 3-node region, and the
    /// 64-client / 1-client throughput ratio. An embedded region unless --endpoints is given.
    Region(RegionArgs),
    /// Linearizable get-org against the same orgs, directly on the owning region's nodes and
    /// then through the router, on the embedded dev deployment; prints router / direct ratios.
    RouterOverhead(RouterOverheadArgs),
    /// The cost of mutual TLS: create-members and linearizable get-org on an embedded 3-node
    /// region in plaintext, then on one whose nodes, and the bench's clients, speak mutual TLS;
    /// prints mTLS / plaintext ratios.
    Mtls(MtlsArgs),
    /// Growth with size: a 3-node region of `orgplane node` processes preloaded to a checkpoint
    /// and then to the full size; latency at each, node RSS, disk bytes, restart and catch-up.
    Growth(crate::growth::GrowthArgs),
    /// Draws a JSON report of any mode as a PNG chart.
    Chart(crate::chart::ChartArgs),
    /// WAN latency: three routers, one per region, each reaching the other regions' nodes
    /// through delay proxies; own-region, cross-region and fan-out latency with and without
    /// the delays.
    Wan(crate::wan::WanArgs),
    /// Moving an org online: writers on one org through the router while it moves EU -> US and
    /// back, on the embedded dev deployment; the write pause, the move's duration, write latency
    /// during the move against before it, errors, and a check that no write was lost.
    Move(crate::moves::MoveArgs),
}

/// `run`: a workload and a target.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["endpoints", "embedded_region", "embedded_dev"])))]
pub struct RunArgs {
    /// The request pattern each client repeats.
    #[arg(long, value_enum)]
    pub workload: WorkloadName,
    /// The weights of `--workload mix`, as OP=WEIGHT pairs.
    #[arg(long, default_value = "get-org=80,create-members=15,update-org=5")]
    pub mix: Mix,
    /// Bench an external deployment: region nodes or routers, HOST:PORT,... (clients are
    /// spread over them).
    #[arg(long)]
    pub endpoints: Option<EndpointList>,
    /// Start a 3-node region (us, or --region) in this process, in a temporary directory on
    /// 127.0.0.1, and spread the clients over its three nodes.
    #[arg(long)]
    pub embedded_region: bool,
    /// Start the dev deployment (3 regions of 3 nodes and a router) in this process, in a
    /// temporary directory, and send every request through the router.
    #[arg(long)]
    pub embedded_dev: bool,
    /// Send every request to the region leader only (region node endpoints only), as etcd's
    /// benchmark `--target-leader` does.
    #[arg(long)]
    pub target_leader: bool,
    /// The region the benchmark's orgs are created in (default: the region of the nodes given,
    /// else us).
    #[arg(long)]
    pub region: Option<Region>,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// `region`: the preset for "A region of orgplane".
#[derive(Debug, Args)]
pub struct RegionArgs {
    /// Bench an external region's nodes (HOST:PORT,...) instead of an embedded one.
    #[arg(long)]
    pub endpoints: Option<EndpointList>,
    /// Send every request to the region leader only, as etcd's benchmark `--target-leader`.
    #[arg(long)]
    pub target_leader: bool,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// `router-overhead`: direct versus through the router.
#[derive(Debug, Args)]
pub struct RouterOverheadArgs {
    /// The region whose orgs are read.
    #[arg(long, default_value = "us")]
    pub region: Region,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// `mtls`: plaintext versus mutual TLS.
#[derive(Debug, Args)]
pub struct MtlsArgs {
    #[command(flatten)]
    pub load: LoadArgs,
}

/// How much load, for how long, and where the results go. Shared by every mode.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Client counts, run in turn, comma-separated [default: run 1,16,64,256; region 1,64;
    /// router-overhead 64].
    #[arg(long)]
    pub clients: Option<ClientCounts>,
    /// gRPC channels (HTTP/2 connections) shared by the clients [default: clients/8 rounded up].
    #[arg(long)]
    pub conns: Option<usize>,
    /// How long each run is measured, after the warmup (e.g. 5s, 500ms, 2m).
    #[arg(long, default_value = "10s")]
    pub duration: BenchDuration,
    /// How long each run issues requests before measuring.
    #[arg(long, default_value = "2s")]
    pub warmup: BenchDuration,
    /// The deadline of one request; also bounds how long a run can outlast its duration.
    #[arg(long, default_value = "10s")]
    pub request_timeout: BenchDuration,
    /// How many orgs the read and member workloads spread over (created before the first run).
    #[arg(long, default_value_t = 64)]
    pub orgs: usize,
    /// Give every write a client-chosen request id, as a retrying client does (without one the
    /// node assigns its own).
    #[arg(long)]
    pub request_ids: bool,
    /// Before each run, wait at most this long for 3 s in which other processes use at most a
    /// quarter of a core (0: start at once). A run that could not wait says so.
    #[arg(long, default_value = "0s")]
    pub quiet_wait: BenchDuration,
    /// What goes to stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The workloads of `run --workload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkloadName {
    /// AddMember with a fresh user id each time, over the pre-created orgs (durable writes).
    CreateMembers,
    /// UpdateOrg with the expected version; each client owns one org and tracks its version.
    UpdateOrg,
    /// Linearizable GetOrg over the pre-created orgs.
    GetOrg,
    /// GetOrg with READ_CONSISTENCY_LOCAL (the answering replica's own state).
    GetOrgLocal,
    /// ListUserOrgs for a user who is a member in every reachable region (the router's fan-out).
    UserOrgs,
    /// ExportApp of one app (a few KiB of definition, two slots), streamed to the end.
    ExportApp,
    /// ImportApp of that app's archive into the pre-created orgs: each a new app.
    ImportApp,
    /// A weighted mix of the others (see --mix).
    Mix,
}

impl WorkloadName {
    /// The weights this workload stands for; `mix` takes the given ones.
    pub fn weights(self, mix: &Mix) -> Mix {
        let only = |op| Mix::single(op);
        match self {
            WorkloadName::CreateMembers => only(OpKind::CreateMember),
            WorkloadName::UpdateOrg => only(OpKind::UpdateOrg),
            WorkloadName::GetOrg => only(OpKind::GetOrg),
            WorkloadName::GetOrgLocal => only(OpKind::GetOrgLocal),
            WorkloadName::UserOrgs => only(OpKind::UserOrgs),
            WorkloadName::ExportApp => only(OpKind::ExportApp),
            WorkloadName::ImportApp => only(OpKind::ImportApp),
            WorkloadName::Mix => mix.clone(),
        }
    }

    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadName::CreateMembers => "create-members",
            WorkloadName::UpdateOrg => "update-org",
            WorkloadName::GetOrg => "get-org",
            WorkloadName::GetOrgLocal => "get-org-local",
            WorkloadName::UserOrgs => "user-orgs",
            WorkloadName::ExportApp => "export-app",
            WorkloadName::ImportApp => "import-app",
            WorkloadName::Mix => "mix",
        }
    }
}

/// Where the report goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned tables for a person.
    Table,
    /// One JSON document.
    Json,
}

/// A comma-separated list of client counts, each at least 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCounts(pub Vec<usize>);

impl FromStr for ClientCounts {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut counts = Vec::new();
        for part in text.split(',').map(str::trim) {
            let count: usize = part.parse().map_err(|_| format!("{part:?} is not a client count"))?;
            if count == 0 {
                return Err("a client count must be at least 1".to_string());
            }
            counts.push(count);
        }
        Ok(ClientCounts(counts))
    }
}

/// A duration written as `500ms`, `5s`, `1.5s`, `2m`, or a bare number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchDuration(pub Duration);

impl FromStr for BenchDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration (try 5s or 500ms)"))?;
        let seconds = match unit.trim() {
            "ms" => value / 1000.0,
            "" | "s" => value,
            "m" => value * 60.0,
            other => return Err(format!("unknown duration unit {other:?} (use ms, s or m)")),
        };
        if !seconds.is_finite() || !(0.0..=86_400.0).contains(&seconds) {
            return Err(format!("{text:?} is out of range (0 to 24h)"));
        }
        Ok(BenchDuration(Duration::from_secs_f64(seconds)))
    }
}

impl fmt::Display for BenchDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0.as_secs_f64())
    }
}

/// A comma-separated list of `HOST:PORT` endpoints (an `http://` prefix is accepted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointList(pub Vec<String>);

impl FromStr for EndpointList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut endpoints = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let host_port = part.strip_prefix("http://").unwrap_or(part);
            let (host, port) = host_port.rsplit_once(':').ok_or_else(|| format!("{part:?} is not HOST:PORT"))?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(format!("{part:?} is not HOST:PORT"));
            }
            endpoints.push(host_port.to_string());
        }
        if endpoints.is_empty() {
            return Err("no endpoint given".to_string());
        }
        Ok(EndpointList(endpoints))
    }
}

/// The default channel count for `clients` clients: one per 8 clients, rounded up.
pub fn default_conns(clients: usize) -> usize {
    clients.div_ceil(8).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: FromStr<Err = String> + PartialEq + fmt::Debug>(input: &str, expected: Result<T, ()>) {
        let got = input.parse::<T>();
        match expected {
            Ok(value) => assert_eq!(got, Ok(value), "{input:?}"),
            Err(()) => assert!(got.is_err(), "{input:?} parsed as {got:?}"),
        }
    }

    #[test]
    fn client_counts() {
        check("1,16,64,256", Ok(ClientCounts(vec![1, 16, 64, 256])));
        check(" 8 ", Ok(ClientCounts(vec![8])));
        check::<ClientCounts>("0", Err(()));
        check::<ClientCounts>("1,,2", Err(()));
        check::<ClientCounts>("x", Err(()));
        check::<ClientCounts>("-1", Err(()));
    }

    #[test]
    fn durations() {
        let d = |ms| Ok(BenchDuration(Duration::from_millis(ms)));
        check("5s", d(5_000));
        check("5", d(5_000));
        check("500ms", d(500));
        check("1.5s", d(1_500));
        check("2m", d(120_000));
        check("0s", d(0));
        check::<BenchDuration>("5h", Err(()));
        check::<BenchDuration>("s", Err(()));
        check::<BenchDuration>("", Err(()));
        check::<BenchDuration>("1e9", Err(()));
        check::<BenchDuration>("100000s", Err(()));
    }

    #[test]
    fn endpoints() {
        let list = |v: &[&str]| Ok(EndpointList(v.iter().map(|s| s.to_string()).collect()));
        check("127.0.0.1:50061", list(&["127.0.0.1:50061"]));
        check("a:1, http://b:2,", list(&["a:1", "b:2"]));
        check::<EndpointList>("", Err(()));
        check::<EndpointList>("host", Err(()));
        check::<EndpointList>(":80", Err(()));
        check::<EndpointList>("host:99999", Err(()));
    }

    #[test]
    fn conns_default_to_one_per_eight_clients() {
        for (clients, conns) in [(1, 1), (8, 1), (9, 2), (16, 2), (64, 8), (256, 32)] {
            assert_eq!(default_conns(clients), conns, "{clients} clients");
        }
    }

    #[test]
    fn command_lines() {
        let parse = |line: &str| Cli::try_parse_from(line.split_whitespace());
        let cli =
            parse("orgplane-bench run --workload get-org --embedded-region --clients 1,4 --duration 5s --warmup 1s")
                .unwrap();
        let Command::Run(run) = cli.command else { panic!("not run") };
        assert_eq!(run.workload, WorkloadName::GetOrg);
        assert!(run.embedded_region);
        assert_eq!(run.load.clients, Some(ClientCounts(vec![1, 4])));
        assert_eq!(run.load.duration, BenchDuration(Duration::from_secs(5)));
        assert_eq!(run.load.output, OutputFormat::Table);

        let cli =
            parse("orgplane-bench run --workload mix --mix get-org=1,update-org=1 --endpoints h:1,h:2 --output json")
                .unwrap();
        let Command::Run(run) = cli.command else { panic!("not run") };
        assert_eq!(run.endpoints, Some(EndpointList(vec!["h:1".into(), "h:2".into()])));
        assert_eq!(run.load.output, OutputFormat::Json);
        assert_eq!(run.workload.weights(&run.mix).to_string(), "get-org=1,update-org=1");

        // Exactly one target.
        assert!(parse("orgplane-bench run --workload get-org").is_err());
        assert!(parse("orgplane-bench run --workload get-org --embedded-region --embedded-dev").is_err());
        assert!(parse("orgplane-bench run --workload get-org --embedded-dev --endpoints h:1").is_err());

        let cli = parse("orgplane-bench region --duration 5s --json out.json").unwrap();
        let Command::Region(region) = cli.command else { panic!("not region") };
        assert_eq!(region.load.json, Some(PathBuf::from("out.json")));
        assert_eq!(region.load.clients, None);

        let cli = parse("orgplane-bench router-overhead --region eu --clients 16").unwrap();
        let Command::RouterOverhead(overhead) = cli.command else { panic!("not router-overhead") };
        assert_eq!(overhead.region, Region::Eu);
        assert!(parse("orgplane-bench router-overhead --region mars").is_err());
    }
}
