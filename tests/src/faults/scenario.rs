//! The frame of every fault scenario: one at a time (a lock in this process and a file lock
//! across processes, since scenarios share namespace names), prerequisites checked loudly, a
//! run folder under `target/faults/`, the seed, the history; after the faults, the final reads
//! and member lists, the analysis, the data-residency check and the one summary line. A run that
//! fails keeps its folder (history JSON, seed, node configs, logs and data) and prints its path;
//! a run that passes removes it, unless `ORGPLANE_FAULTS_KEEP` is set.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::checker::Limits;
use super::cluster::{NodeSettings, ProcRegion};
use super::history::{analyze, Analysis, History, Outcome};
use super::net::{self, Lab};
use super::procs::{self, Proc};
use super::rng::{self, Rng};
use super::workload::{self, Caller, Mix, Target, Workload, WorkloadSpec};

/// How long a region may take to be healthy again after a fault healed (all nodes SERVING on
/// grpc.health.v1, one agreed leader).
pub const HEAL_BOUND: Duration = Duration::from_secs(30);
/// The deadline of each client request: past the nodes' 2 s write and read timeouts, so most
/// failures come back as the node's UNAVAILABLE rather than a client-side timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(2500);

/// Held while a scenario runs: one at a time in this process, and across processes.
pub struct SuiteGuard {
    _in_process: tokio::sync::MutexGuard<'static, ()>,
    _across_processes: std::fs::File,
}

/// Takes the suite's locks (bounded wait).
pub async fn acquire() -> SuiteGuard {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let in_process = LOCK.lock().await;
    let path = std::env::temp_dir().join("orgplane-faults.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let started = Instant::now();
    while fs2::FileExt::try_lock_exclusive(&file).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(15 * 60),
            "another run of the fault suite has held {} for 15 minutes",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    SuiteGuard { _in_process: in_process, _across_processes: file }
}

/// Writes a line to the real stderr (not captured by the test harness) and to
/// `target/faults/summary.txt`.
pub fn report_line(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
    let path = procs::target_dir().join("faults").join("summary.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}

/// What the final checks found, beyond the history's own analysis.
pub struct Settled {
    pub analysis: Analysis,
    /// How long the region took to be healthy after the last heal.
    pub healthy_after: Duration,
    /// Per key: the value the final linearizable read returned.
    pub final_values: BTreeMap<usize, String>,
    /// Failed checks outside the history: residency, health, catch-up.
    pub problems: Vec<String>,
}

/// One scenario's run.
pub struct Scenario {
    pub name: String,
    pub seed: u64,
    pub dir: PathBuf,
    pub history: Arc<History>,
    /// Every written name starts with this, unique per run.
    pub tag: String,
    pub regions: Vec<ProcRegion>,
    pub router: Option<Proc>,
    pub lab: Option<Lab>,
    started: Instant,
    passed: bool,
    _guard: SuiteGuard,
}

impl Scenario {
    /// Takes the suite's locks, checks prerequisites, removes leftovers of a crashed run,
    /// makes sure the binary is built and makes the run folder.
    pub async fn begin(name: &str) -> Scenario {
        net::require_prerequisites();
        let guard = acquire().await;
        net::remove_leftovers();
        procs::kill_registered_leftovers();
        tokio::task::spawn_blocking(procs::orgplane_binary).await.expect("binary lookup");
        let seed = rng::seed_from_env();
        let dir = procs::target_dir().join("faults").join(format!("{name}-{seed}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot make {}: {e}", dir.display()));
        std::fs::write(dir.join("seed.txt"), format!("{seed}\n")).expect("write seed");
        Scenario {
            name: name.to_string(),
            seed,
            dir,
            history: Arc::new(History::new(Vec::new())),
            tag: format!("fx{:06x}", seed & 0xff_ffff),
            regions: Vec::new(),
            router: None,
            lab: None,
            started: Instant::now(),
            passed: false,
            _guard: guard,
        }
    }

    /// A generator for the scenario's own choices, derived from the seed.
    pub fn rng(&self, stream: u64) -> Rng {
        Rng::new(self.seed ^ stream.wrapping_mul(0xA24B_AED4_963E_E407))
    }

    /// Makes the lab and starts `n` nodes of `region`, each in its own namespace; returns the
    /// region's index.
    pub fn start_lab_region(&mut self, region: &str, n: u64, settings: &NodeSettings) -> usize {
        self.lab = Some(Lab::create(n));
        let placement = (1..=n)
            .map(|id| (id, (Some(Lab::ns(id)), format!("{}:50061", Lab::node_ip(id)))))
            .collect::<BTreeMap<_, _>>();
        self.regions.push(ProcRegion::start(region, &placement, &self.dir, settings));
        self.regions.len() - 1
    }

    /// Starts `n` nodes of `region` on loopback in the root namespace; returns its index.
    pub fn start_loopback_region(&mut self, region: &str, n: u64, settings: &NodeSettings) -> usize {
        let placement = (1..=n)
            .map(|id| (id, (None, format!("127.0.0.1:{}", super::cluster::free_loopback_port()))))
            .collect::<BTreeMap<_, _>>();
        self.regions.push(ProcRegion::start(region, &placement, &self.dir, settings));
        self.regions.len() - 1
    }

    pub fn lab(&self) -> &Lab {
        self.lab.as_ref().expect("the scenario has no lab")
    }

    pub fn lab_mut(&mut self) -> &mut Lab {
        self.lab.as_mut().expect("the scenario has no lab")
    }

    pub fn region(&self, r: usize) -> &ProcRegion {
        &self.regions[r]
    }

    pub fn region_mut(&mut self, r: usize) -> &mut ProcRegion {
        &mut self.regions[r]
    }

    /// A target per node of region `r`, labelled `n1`...
    pub fn node_targets(&self, r: usize) -> Vec<Target> {
        self.regions[r].nodes.values().map(|n| Target::new(format!("n{}", n.id), &n.addr)).collect()
    }

    pub fn node_target(&self, r: usize, id: u64) -> Target {
        Target::new(format!("n{id}"), self.regions[r].addr(id))
    }

    /// Creates `n` orgs in region `r` through `via` and adds them to the history as keys.
    pub async fn create_keys(&mut self, r: usize, via: &Target, n: usize) -> Vec<usize> {
        let region = self.regions[r].region.clone();
        let mut keys = Vec::new();
        for k in 0..n {
            let name = format!("{}-{region}-init-{k}", self.tag);
            let key = workload::create_org(via, &region, &name, HEAL_BOUND).await;
            keys.push(self.history.add_key(key));
        }
        keys
    }

    /// The usual workload: `clients` sequential clients on `keys`, to random `targets`.
    pub fn workload(
        &self,
        prefix: &str,
        clients: usize,
        keys: &[usize],
        targets: Vec<Target>,
        duration: Duration,
    ) -> Workload {
        Workload::start(
            self.history.clone(),
            WorkloadSpec {
                prefix: prefix.to_string(),
                clients,
                keys: keys.to_vec(),
                targets,
                duration,
                max_ops_per_client: 2_000,
                pace: Duration::from_millis(10),
                timeout: REQUEST_TIMEOUT,
                mix: Mix::default(),
                seed: self.seed ^ prefix.len() as u64 ^ u64::from(prefix.as_bytes()[0]) << 8,
                tag: self.tag.clone(),
            },
        )
    }

    /// After the last fault healed: waits until region `r` is healthy, reads every key's final
    /// value (linearizable, recorded as client `final`) and member list, analyzes the history
    /// and checks residency.
    pub async fn settle(&mut self, r: usize, keys: &[usize]) -> Settled {
        let mut problems = Vec::new();
        let (leader, healthy_after) = match self.regions[r].wait_healthy(HEAL_BOUND).await {
            Ok(ok) => ok,
            Err(e) => panic!("{e}"),
        };
        let target = self.node_target(r, leader);
        let (final_values, members) = self.final_reads(&target, keys).await;
        for k in keys {
            if !final_values.contains_key(k) {
                problems.push(format!("key {k}: no final read succeeded via n{leader}"));
            }
        }
        let analysis = analyze(&self.history.snapshot(), &members, Limits::default());
        problems.extend(self.residency_problems(&final_values).await);
        Settled { analysis, healthy_after, final_values, problems }
    }

    /// The final linearizable read of each key (bounded retries) and its members.
    pub async fn final_reads(
        &self,
        target: &Target,
        keys: &[usize],
    ) -> (BTreeMap<usize, String>, BTreeMap<usize, BTreeSet<String>>) {
        let all_keys = self.history.keys();
        let caller = Caller { history: &self.history, client: "final", target, timeout: REQUEST_TIMEOUT };
        let mut values = BTreeMap::new();
        let mut members = BTreeMap::new();
        for &k in keys {
            let org_id = &all_keys[k].org_id;
            for _attempt in 0..10 {
                let op = caller.read(k, org_id, false).await;
                if op.outcome == Outcome::Ok {
                    values.insert(k, op.value.unwrap_or_default());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if let Ok(users) = workload::list_members(target, org_id, HEAL_BOUND).await {
                members.insert(k, users.into_iter().collect());
            }
        }
        (values, members)
    }

    /// Each key's final name must be in the data dir of every node of its region, and in no
    /// other file of the run (other regions' data dirs, configs) except logs.
    pub async fn residency_problems(&self, final_values: &BTreeMap<usize, String>) -> Vec<String> {
        let keys = self.history.keys();
        let mut problems = Vec::new();
        for (k, value) in final_values {
            let region = &keys[*k].region;
            let own: Vec<PathBuf> = self
                .regions
                .iter()
                .filter(|r| &r.region == region)
                .flat_map(|r| r.nodes.values().map(|n| n.data_dir()))
                .collect();
            // The store flushes the log before acknowledging; the state may reach disk a
            // moment later: look again for a while (bounded) before calling it missing.
            let started = Instant::now();
            let mut missing: Vec<PathBuf>;
            loop {
                let holders = files_containing(&self.dir, value.as_bytes());
                missing = own.iter().filter(|d| !holders.iter().any(|h| h.starts_with(d))).cloned().collect();
                let strays: Vec<&PathBuf> = holders
                    .iter()
                    .filter(|h| !own.iter().any(|d| h.starts_with(d)))
                    .filter(|h| h.extension().is_none_or(|e| e != "log"))
                    .collect();
                if !strays.is_empty() {
                    problems
                        .push(format!("key {k} of region {region}: {value:?} found outside its region: {strays:?}"));
                    break;
                }
                if missing.is_empty() || started.elapsed() > Duration::from_secs(10) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            if !missing.is_empty() {
                problems.push(format!("key {k} of region {region}: {value:?} missing from {missing:?}"));
            }
        }
        problems
    }

    /// Prints the scenario's one summary line, then fails the test on any violation,
    /// undecided key or problem; on success the run folder is removed when this drops.
    pub fn finish(mut self, fault: &str, settled: &Settled, extra: &str) {
        let a = &settled.analysis;
        let verdict = if a.violations.is_empty() && a.undecided.is_empty() && settled.problems.is_empty() {
            "PASS"
        } else {
            "FAIL"
        };
        report_line(&format!(
            "FAULTS {verdict} {} | fault: {fault} | {} | final health check {:.1}s{} | {:.1}s seed={}",
            self.name,
            a.counts(),
            settled.healthy_after.as_secs_f64(),
            if extra.is_empty() { String::new() } else { format!(" | {extra}") },
            self.started.elapsed().as_secs_f64(),
            self.seed
        ));
        let mut failures: Vec<String> = Vec::new();
        failures.extend(a.violations.iter().map(|v| format!("violation: {v}")));
        failures.extend(a.undecided.iter().map(|u| format!("checker gave up: {u}")));
        failures.extend(settled.problems.iter().cloned());
        assert!(failures.is_empty(), "{}: {} finding(s):\n{}", self.name, failures.len(), failures.join("\n"));
        self.passed = true;
    }

    /// Marks the run as passed without the usual summary (for scenarios that print their own).
    pub fn pass(mut self) {
        self.passed = true;
    }

    /// Writes the history to the run folder now (it is also written when a run fails).
    pub fn save_history(&self) -> PathBuf {
        let path = self.dir.join("history.json");
        let _ = std::fs::write(&path, self.history.to_json());
        path
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if !self.passed {
            self.save_history();
        }
        // Processes first (they live in the lab's namespaces), then the lab.
        self.router.take();
        self.regions.clear();
        self.lab.take();
        if self.passed && std::env::var_os("ORGPLANE_FAULTS_KEEP").is_some() {
            self.save_history();
            report_line(&format!("FAULTS {}: kept (ORGPLANE_FAULTS_KEEP) in {}", self.name, self.dir.display()));
        } else if self.passed {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            report_line(&format!(
                "FAULTS {}: FAILED; kept history.json, seed.txt ({}), node configs, logs and data in {}",
                self.name,
                self.seed,
                self.dir.display()
            ));
        }
    }
}

/// Every file under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    crate::files_containing(dir, needle)
}
