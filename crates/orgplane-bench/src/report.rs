//! Turning histograms into figures: throughput, percentiles in milliseconds, errors by code,
//! ratios between runs; and printing them as aligned tables or one JSON document.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cpu::CpuUsage;
use crate::runner::{OpStats, RunOutcome};

/// Latency percentiles of the ok requests, in milliseconds (0 when there were none).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// The slowest ok request.
    pub max_ms: f64,
    /// The arithmetic mean.
    pub mean_ms: f64,
}

impl Latency {
    /// The percentiles of a histogram of microseconds. Each is the highest value equivalent (at
    /// the histogram's 3 significant digits) to the recorded value at that quantile.
    pub fn from_micros(histogram: &Histogram<u64>) -> Latency {
        let ms = |micros: u64| micros as f64 / 1000.0;
        if histogram.is_empty() {
            return Latency { p50_ms: 0.0, p90_ms: 0.0, p99_ms: 0.0, p999_ms: 0.0, max_ms: 0.0, mean_ms: 0.0 };
        }
        Latency {
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p90_ms: ms(histogram.value_at_quantile(0.90)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
            mean_ms: histogram.mean() / 1000.0,
        }
    }
}

/// The figures of one operation kind within a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpFigures {
    /// Ok requests in the measurement window.
    pub ok: u64,
    /// Ok requests per second of the measurement window.
    pub ok_per_s: f64,
    /// Failed requests by gRPC code name (`PARTIAL`: a user-wide list some region left out).
    pub errors: BTreeMap<String, u64>,
    /// Latency of the ok requests.
    pub latency: Latency,
}

impl OpFigures {
    /// The figures of `stats` over `seconds`.
    pub fn new(stats: &OpStats, seconds: f64) -> OpFigures {
        let ok = stats.ok();
        OpFigures {
            ok,
            ok_per_s: if seconds > 0.0 { ok as f64 / seconds } else { 0.0 },
            errors: stats.errors.iter().map(|(code, n)| (code.to_string(), *n)).collect(),
            latency: Latency::from_micros(&stats.latency_us),
        }
    }
}

/// CPU during one run's measurement window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CpuFigures {
    /// Cores this process used (the clients, and the servers when embedded).
    pub process_cores: f64,
    /// Cores everything else used.
    pub other_cores: f64,
    /// This process's CPU time per ok request, in microseconds.
    pub process_us_per_ok: f64,
}

/// One run: a workload at one client count against one target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// What ran, e.g. `create-members` or `get-org via router`.
    pub name: String,
    /// Where it ran, e.g. `embedded-region (3 nodes)`.
    pub target: String,
    /// Concurrent clients.
    pub clients: usize,
    /// gRPC channels the clients shared.
    pub conns: usize,
    /// Seconds from the end of the warmup until the last request finished.
    pub measured_s: f64,
    /// Every operation kind together.
    #[serde(flatten)]
    pub total: OpFigures,
    /// Per operation kind, when the run mixed several.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ops: BTreeMap<String, OpFigures>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuFigures>,
}

impl RunReport {
    /// The report of `outcome`.
    pub fn new(name: impl Into<String>, target: impl Into<String>, outcome: &RunOutcome) -> RunReport {
        let seconds = outcome.measured.as_secs_f64();
        let total = OpFigures::new(&outcome.total(), seconds);
        let ops = if outcome.by_op.len() > 1 {
            outcome.by_op.iter().map(|(op, stats)| (op.as_str().to_string(), OpFigures::new(stats, seconds))).collect()
        } else {
            BTreeMap::new()
        };
        let cpu = outcome.cpu.map(|usage: CpuUsage| CpuFigures {
            process_cores: usage.process_cores,
            other_cores: usage.other_cores,
            process_us_per_ok: if total.ok > 0 { usage.process_cores * seconds * 1e6 / total.ok as f64 } else { 0.0 },
        });
        RunReport {
            name: name.into(),
            target: target.into(),
            clients: outcome.clients,
            conns: outcome.conns,
            measured_s: seconds,
            total,
            ops,
            cpu,
        }
    }
}

/// One run's figures divided by another's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ratio {
    /// What is divided by what, e.g. `router / direct, 64 clients`.
    pub name: String,
    /// Throughput ratio.
    pub ok_per_s: f64,
    /// Median latency ratio.
    pub p50: f64,
    /// 99th percentile latency ratio.
    pub p99: f64,
}

impl Ratio {
    /// `numerator`'s figures over `denominator`'s.
    pub fn of(name: impl Into<String>, numerator: &RunReport, denominator: &RunReport) -> Ratio {
        let (n, d) = (&numerator.total, &denominator.total);
        Ratio {
            name: name.into(),
            ok_per_s: n.ok_per_s / d.ok_per_s,
            p50: n.latency.p50_ms / d.latency.p50_ms,
            p99: n.latency.p99_ms / d.latency.p99_ms,
        }
    }
}

/// Everything one invocation measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    /// `run`, `region` or `router-overhead`.
    pub mode: String,
    /// The warmup of each run, in seconds.
    pub warmup_s: f64,
    /// The measured time asked for each run, in seconds.
    pub duration_s: f64,
    /// Every run, in the order they ran.
    pub runs: Vec<RunReport>,
    /// Comparisons between runs (mode `region` and `router-overhead`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ratios: Vec<Ratio>,
}

impl BenchReport {
    /// The report as pretty JSON. Ratios that divide by zero are `null`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// The runs as one aligned table, the ratios as another.
    pub fn to_table(&self) -> String {
        let headers = [
            "run",
            "target",
            "clients",
            "conns",
            "ok",
            "ok/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "errors",
            "cpu us/ok",
            "other cores",
        ];
        let right = [false, false, true, true, true, true, true, true, true, true, true, false, true, true];
        let mut rows = Vec::new();
        for run in &self.runs {
            let cpu = |f: fn(&CpuFigures) -> String| run.cpu.as_ref().map_or_else(|| "-".to_string(), f);
            let mut row = vec![run.name.clone(), run.target.clone(), run.clients.to_string(), run.conns.to_string()];
            row.extend(figure_cells(&run.total));
            row.push(cpu(|c| format!("{:.0}", c.process_us_per_ok)));
            row.push(cpu(|c| format!("{:.2}", c.other_cores)));
            rows.push(row);
            for (op, figures) in &run.ops {
                let mut row = vec![format!("  {op}"), String::new(), String::new(), String::new()];
                row.extend(figure_cells(figures));
                row.extend([String::new(), String::new()]);
                rows.push(row);
            }
        }
        let mut out = render_table(&headers, &right, &rows);
        if !self.ratios.is_empty() {
            let rows: Vec<Vec<String>> = self
                .ratios
                .iter()
                .map(|r| vec![r.name.clone(), times(r.ok_per_s), times(r.p50), times(r.p99)])
                .collect();
            out.push('\n');
            out.push_str(&render_table(&["ratio", "ok/s", "p50", "p99"], &[false, true, true, true], &rows));
        }
        out
    }
}

fn figure_cells(f: &OpFigures) -> Vec<String> {
    let l = &f.latency;
    vec![
        f.ok.to_string(),
        format!("{:.1}", f.ok_per_s),
        format!("{:.3}", l.p50_ms),
        format!("{:.3}", l.p90_ms),
        format!("{:.3}", l.p99_ms),
        format!("{:.3}", l.p999_ms),
        format!("{:.3}", l.max_ms),
        errors_cell(&f.errors),
    ]
}

/// `0`, or each code with its count: `ABORTED:1 UNAVAILABLE:3`.
pub fn errors_cell(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "0".to_string();
    }
    errors.iter().map(|(code, n)| format!("{code}:{n}")).collect::<Vec<_>>().join(" ")
}

/// A ratio as `0.82x`, or `n/a` when it divided by zero.
fn times(ratio: f64) -> String {
    if ratio.is_finite() {
        format!("{ratio:.2}x")
    } else {
        "n/a".to_string()
    }
}

/// Columns padded to their widest cell, two spaces apart; `right[i]` right-aligns column i.
/// Trailing spaces are trimmed.
pub fn render_table(headers: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(
                |(i, cell)| {
                    if right[i] {
                        format!("{cell:>w$}", w = widths[i])
                    } else {
                        format!("{cell:<w$}", w = widths[i])
                    }
                },
            )
            .collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::runner::new_histogram;
    use crate::workload::OpKind;

    fn check(actual: &str, expected: &str) {
        assert_eq!(actual, expected, "\nactual:\n{actual}\nexpected:\n{expected}");
    }

    fn histogram_of(micros: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = new_histogram();
        for v in micros {
            h.record(v).unwrap();
        }
        h
    }

    #[test]
    fn percentiles_of_one_to_a_thousand() {
        // 1..=1000 us: below 2048 the histogram is exact.
        let latency = Latency::from_micros(&histogram_of(1..=1000));
        assert_eq!(
            latency,
            Latency { p50_ms: 0.5, p90_ms: 0.9, p99_ms: 0.99, p999_ms: 0.999, max_ms: 1.0, mean_ms: 0.5005 }
        );
    }

    #[test]
    fn percentiles_of_a_tail() {
        // 990 fast requests at 1 ms and 10 slow ones at 100 ms: p99 is still fast, p99.9 is slow.
        let h = histogram_of(std::iter::repeat_n(1_000, 990).chain(std::iter::repeat_n(100_000, 10)));
        let latency = Latency::from_micros(&h);
        assert_eq!(latency.p50_ms, 1.0);
        assert_eq!(latency.p99_ms, 1.0);
        // 100 ms is held at 3 significant digits: within 0.1 %.
        assert!((latency.p999_ms - 100.0).abs() <= 0.1, "{}", latency.p999_ms);
        assert!((latency.mean_ms - 1.99).abs() < 0.01, "{}", latency.mean_ms);
    }

    #[test]
    fn empty_histogram_is_all_zero() {
        let latency = Latency::from_micros(&new_histogram());
        assert_eq!(latency.p99_ms, 0.0);
        assert_eq!(latency.max_ms, 0.0);
    }

    fn outcome(ops: &[(OpKind, &[u64], &[&'static str])], seconds: u64) -> RunOutcome {
        let mut by_op = BTreeMap::new();
        for (op, micros, errors) in ops {
            let mut stats = OpStats::new();
            for v in micros.iter() {
                stats.record(Ok(()), Duration::from_micros(*v));
            }
            for e in errors.iter() {
                stats.record(Err(e), Duration::ZERO);
            }
            by_op.insert(*op, stats);
        }
        RunOutcome { clients: 2, conns: 1, measured: Duration::from_secs(seconds), by_op, cpu: None }
    }

    #[test]
    fn throughput_counts_ok_requests_only() {
        let run = RunReport::new("get-org", "t", &outcome(&[(OpKind::GetOrg, &[1000; 10], &["UNAVAILABLE"; 3])], 2));
        assert_eq!(run.total.ok, 10);
        assert_eq!(run.total.ok_per_s, 5.0);
        assert_eq!(run.total.errors.values().sum::<u64>(), 3);
        assert!(run.ops.is_empty(), "one operation: no per-operation figures");
    }

    #[test]
    fn ratios_divide_figures() {
        let fast = RunReport::new("a", "t", &outcome(&[(OpKind::GetOrg, &[1000; 20], &[])], 1));
        let slow = RunReport::new("b", "t", &outcome(&[(OpKind::GetOrg, &[2000; 10], &[])], 1));
        let ratio = Ratio::of("b / a", &slow, &fast);
        assert_eq!(ratio, Ratio { name: "b / a".into(), ok_per_s: 0.5, p50: 2.0, p99: 2.0 });
        let none = RunReport::new("c", "t", &outcome(&[(OpKind::GetOrg, &[], &["UNAVAILABLE"])], 1));
        assert!(Ratio::of("a / c", &fast, &none).ok_per_s.is_infinite());
    }

    #[test]
    fn table_is_aligned() {
        let rows = vec![vec!["get-org".to_string(), "12.5".to_string()], vec!["x".to_string(), "1234.0".to_string()]];
        check(
            &render_table(&["run", "ok/s"], &[false, true], &rows),
            "run        ok/s\nget-org    12.5\nx        1234.0\n",
        );
    }

    #[test]
    fn report_table() {
        let mixed = outcome(
            &[
                (OpKind::GetOrg, &[1000, 1000, 3000], &[]),
                (OpKind::UpdateOrg, &[2000], &["ABORTED", "UNAVAILABLE", "ABORTED"]),
            ],
            2,
        );
        // 3000 us is reported as 3.001 ms: above 2048 us the histogram's buckets are 2 us wide
        // and a percentile is the highest value of its bucket.
        let single = outcome(&[(OpKind::GetOrg, &[500; 4], &[])], 1);
        let report = BenchReport {
            mode: "run".into(),
            warmup_s: 1.0,
            duration_s: 2.0,
            runs: vec![RunReport::new("mix", "r", &mixed), RunReport::new("get-org", "r", &single)],
            ratios: vec![Ratio::of(
                "get-org / mix",
                &RunReport::new("get-org", "r", &single),
                &RunReport::new("mix", "r", &mixed),
            )],
        };
        check(
            &report.to_table(),
            "\
run           target  clients  conns  ok  ok/s  p50 ms  p90 ms  p99 ms  p99.9 ms  max ms  errors                   cpu us/ok  other cores
mix           r             2      1   4   2.0   1.000   3.001   3.001     3.001   3.001  ABORTED:2 UNAVAILABLE:1          -            -
  get-org                              3   1.5   1.000   3.001   3.001     3.001   3.001  0
  update-org                           1   0.5   2.000   2.000   2.000     2.000   2.000  ABORTED:2 UNAVAILABLE:1
get-org       r             2      1   4   4.0   0.500   0.500   0.500     0.500   0.500  0                                -            -

ratio           ok/s    p50    p99
get-org / mix  2.00x  0.50x  0.17x
",
        );
    }

    #[test]
    fn report_json() {
        let report = BenchReport {
            mode: "region".into(),
            warmup_s: 1.0,
            duration_s: 5.0,
            runs: vec![RunReport::new(
                "create-members",
                "r",
                &outcome(&[(OpKind::CreateMember, &[2000; 5], &["UNAVAILABLE"])], 5),
            )],
            ratios: vec![Ratio { name: "x".into(), ok_per_s: f64::NAN, p50: 1.0, p99: 1.0 }],
        };
        let value: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        let expected = serde_json::json!({
            "mode": "region",
            "warmup_s": 1.0,
            "duration_s": 5.0,
            "runs": [{
                "name": "create-members",
                "target": "r",
                "clients": 2,
                "conns": 1,
                "measured_s": 5.0,
                "ok": 5,
                "ok_per_s": 1.0,
                "errors": { "UNAVAILABLE": 1 },
                "latency": { "p50_ms": 2.0, "p90_ms": 2.0, "p99_ms": 2.0, "p999_ms": 2.0, "max_ms": 2.0, "mean_ms": 2.0 }
            }],
            "ratios": [{ "name": "x", "ok_per_s": null, "p50": 1.0, "p99": 1.0 }]
        });
        assert_eq!(value, expected);
    }
}
