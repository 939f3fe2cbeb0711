//! The load loop: `clients` tokio tasks sharing `conns` gRPC channels, each issuing requests
//! back to back until the run ends. Requests that start during the warmup are sent but not
//! counted. Every request has a deadline (set on the channel), and a client starts no request
//! after the end, so a run lasts at most warmup + duration + one request timeout.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::cpu::{CpuSample, CpuUsage};
use crate::workload::{Clients, Failure, OpKind, Workload};

/// The largest latency a histogram holds exactly: one minute, in microseconds. Longer ones are
/// recorded as one minute (the request timeout is far below).
const MAX_LATENCY_US: u64 = 60_000_000;

/// One run's shape.
#[derive(Debug, Clone, Copy)]
pub struct RunSpec {
    /// Concurrent clients.
    pub clients: usize,
    /// Time before measuring.
    pub warmup: Duration,
    /// Time measured.
    pub duration: Duration,
    /// One request's deadline; bounds how long the run outlasts `warmup + duration`.
    pub request_timeout: Duration,
}

/// The results of one operation kind: latencies of the ok requests and failures by code, both
/// counted only for requests started in the measurement window.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Latency in microseconds of every ok request.
    pub latency_us: Histogram<u64>,
    /// Failed requests by gRPC code name.
    pub errors: BTreeMap<Failure, u64>,
}

impl OpStats {
    /// Empty stats.
    pub fn new() -> OpStats {
        OpStats { latency_us: new_histogram(), errors: BTreeMap::new() }
    }

    /// Ok requests.
    pub fn ok(&self) -> u64 {
        self.latency_us.len()
    }

    /// Counts one request that took `latency`.
    pub fn record(&mut self, result: Result<(), Failure>, latency: Duration) {
        match result {
            Ok(()) => {
                let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
                self.latency_us.saturating_record(micros);
            }
            Err(code) => *self.errors.entry(code).or_insert(0) += 1,
        }
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &OpStats) {
        self.latency_us.add(&other.latency_us).expect("histograms with the same bounds merge");
        for (code, count) in &other.errors {
            *self.errors.entry(code).or_insert(0) += count;
        }
    }
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats::new()
    }
}

/// A histogram of 1 us to one minute at 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Concurrent clients.
    pub clients: usize,
    /// gRPC channels they shared.
    pub conns: usize,
    /// From the end of the warmup until the last client finished its last request.
    pub measured: Duration,
    /// Results per operation kind.
    pub by_op: BTreeMap<OpKind, OpStats>,
    /// CPU used during the measurement window, where `/proc` tells.
    pub cpu: Option<CpuUsage>,
}

impl RunOutcome {
    /// Every operation kind together.
    pub fn total(&self) -> OpStats {
        let mut total = OpStats::new();
        for stats in self.by_op.values() {
            total.merge(stats);
        }
        total
    }
}

/// Opens `conns` channels, spread round-robin over `endpoints`, each request on them bounded by
/// `request_timeout`.
pub async fn connect(endpoints: &[String], conns: usize, request_timeout: Duration) -> anyhow::Result<Vec<Channel>> {
    if endpoints.is_empty() {
        bail!("no endpoint to connect to");
    }
    let mut channels = Vec::with_capacity(conns);
    for i in 0..conns.max(1) {
        let endpoint = &endpoints[i % endpoints.len()];
        channels.push(connect_one(endpoint, request_timeout).await?);
    }
    Ok(channels)
}

/// How this process's clients speak TLS to `https://` endpoints: the CA they trust and the
/// certificate they show. Set once, by the target that serves TLS (the `mtls` preset).
static CLIENT_TLS: OnceLock<ClientTlsConfig> = OnceLock::new();

/// Makes `https://` endpoints use `tls`. Once per process; a second call changes nothing.
pub fn set_client_tls(tls: ClientTlsConfig) {
    let _ = CLIENT_TLS.set(tls);
}

/// Opens one channel to `host:port` (plaintext), or to `https://host:port` with the client TLS
/// settings of [`set_client_tls`].
pub async fn connect_one(endpoint: &str, request_timeout: Duration) -> anyhow::Result<Channel> {
    let uri = if endpoint.starts_with("https://") { endpoint.to_string() } else { format!("http://{endpoint}") };
    let mut channel = Endpoint::from_shared(uri).with_context(|| format!("{endpoint} is not a valid endpoint"))?;
    if endpoint.starts_with("https://") {
        let tls = CLIENT_TLS.get().with_context(|| format!("{endpoint}: no client TLS settings"))?;
        channel = channel.tls_config(tls.clone()).with_context(|| format!("{endpoint}: TLS settings"))?;
    }
    channel
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .timeout(request_timeout)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {endpoint}"))
}

/// Runs `workload` with `spec.clients` clients over `channels` (client i uses channel
/// i mod channels) and returns what the measurement window saw.
pub async fn run(spec: &RunSpec, channels: &[Channel], workload: Arc<Workload>) -> anyhow::Result<RunOutcome> {
    if channels.is_empty() {
        bail!("no channel to run on");
    }
    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let mut tasks = Vec::with_capacity(spec.clients);
    for index in 0..spec.clients {
        let channel = channels[index % channels.len()].clone();
        tasks.push(tokio::spawn(client_loop(workload.clone(), index, channel, measure_from, end)));
    }

    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_before = CpuSample::now();
    // Each client stops within one request timeout of the end (plus the unmeasured re-read
    // before an update, bounded the same way); the margin covers scheduling on a busy machine.
    let bound = (end - Instant::now()) + 2 * spec.request_timeout + Duration::from_secs(5);
    let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
    let joined = match tokio::time::timeout(bound, futures::future::join_all(tasks)).await {
        Ok(joined) => joined,
        Err(_) => {
            aborts.iter().for_each(|a| a.abort());
            bail!("clients did not stop within {bound:?} of the measurement start");
        }
    };
    let measured = measure_from.elapsed();
    let cpu = cpu_before.zip(CpuSample::now()).and_then(|(before, after)| before.usage_until(&after));

    let mut by_op: BTreeMap<OpKind, OpStats> = BTreeMap::new();
    for result in joined {
        let client_stats = result.context("a client task failed")?;
        for (op, stats) in client_stats {
            by_op.entry(op).or_default().merge(&stats);
        }
    }
    Ok(RunOutcome { clients: spec.clients, conns: channels.len(), measured, by_op, cpu })
}

/// One client: requests back to back until `end`; those started from `measure_from` count.
async fn client_loop(
    workload: Arc<Workload>,
    index: usize,
    channel: Channel,
    measure_from: Instant,
    end: Instant,
) -> BTreeMap<OpKind, OpStats> {
    let mut clients = Clients::new(channel);
    let mut state = workload.client(index);
    let mut stats: BTreeMap<OpKind, OpStats> = BTreeMap::new();
    loop {
        let op = workload.pick(&mut state);
        workload.prepare(op, &mut clients, &mut state).await;
        let started = Instant::now();
        if started >= end {
            break;
        }
        let result = workload.issue(op, &mut clients, &mut state).await;
        if started >= measure_from {
            stats.entry(op).or_default().record(result, started.elapsed());
        }
    }
    workload.finish_client(state);
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_record_and_merge() {
        let mut a = OpStats::new();
        a.record(Ok(()), Duration::from_micros(1500));
        a.record(Ok(()), Duration::from_nanos(10)); // below 1 us: counted as 1 us
        a.record(Err("UNAVAILABLE"), Duration::from_millis(3));
        let mut b = OpStats::new();
        b.record(Ok(()), Duration::from_secs(3600)); // beyond the histogram: saturates
        b.record(Err("UNAVAILABLE"), Duration::ZERO);
        b.record(Err("ABORTED"), Duration::ZERO);
        a.merge(&b);
        assert_eq!(a.ok(), 3);
        assert_eq!(a.latency_us.min(), 1);
        assert!(a.latency_us.max() >= MAX_LATENCY_US && a.latency_us.max() < MAX_LATENCY_US + MAX_LATENCY_US / 1000);
        assert_eq!(a.errors, BTreeMap::from([("ABORTED", 1), ("UNAVAILABLE", 2)]));
    }
}
