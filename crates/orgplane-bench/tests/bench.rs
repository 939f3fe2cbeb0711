//! The binary end to end: a short run against an embedded region must measure ok requests and
//! no errors, and report them as JSON; bad arguments must fail before anything starts.

use std::process::Command;

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_orgplane-bench"))
}

#[test]
fn short_run_against_an_embedded_region_reports_json() {
    let output = bench()
        .args(["run", "--workload", "mix", "--embedded-region", "--clients", "1,4", "--orgs", "4"])
        .args(["--warmup", "200ms", "--duration", "500ms", "--output", "json"])
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {:?}; stderr:\n{stderr}", output.status);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is one JSON document");
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    for (run, clients) in runs.iter().zip([1, 4]) {
        assert_eq!(run["clients"], clients);
        assert!(run["ok"].as_u64().unwrap() > 0, "no ok request: {run}");
        assert_eq!(run["errors"], serde_json::json!({}), "{run}");
        assert!(run["latency"]["p50_ms"].as_f64().unwrap() > 0.0);
        // The mix's three operations each get their own figures.
        assert_eq!(run["ops"].as_object().map(|ops| ops.len()), Some(3), "{run}");
    }
}

#[test]
fn bad_arguments_fail_before_starting() {
    for args in [
        &["run", "--workload", "get-org"][..],
        &["run", "--workload", "get-org", "--embedded-region", "--clients", "0"],
        &["run", "--workload", "get-org", "--embedded-region", "--duration", "0s"],
        &["run", "--workload", "mix", "--mix", "get-org=0", "--embedded-region"],
        // growth: a checkpoint at or above the full size, and a missing orgplane binary.
        &["growth", "--orgs", "100", "--checkpoint", "100"],
        &["growth", "--orgs", "100", "--checkpoint", "10", "--orgplane-bin", "/nonexistent/orgplane"],
        // chart: no such report, and a report with nothing to draw.
        &["chart", "--report", "/nonexistent/report.json", "--output", "/tmp/never.png"],
    ] {
        let output = bench().args(args).output().expect("the binary runs");
        assert!(!output.status.success(), "{args:?} succeeded");
    }
}

#[test]
fn chart_draws_a_png_from_a_json_report() {
    let dir = tempfile::tempdir().unwrap();
    let (report, png) = (dir.path().join("report.json"), dir.path().join("chart.png"));
    let run = |clients: u64, ok_per_s: f64, p99: f64| {
        serde_json::json!({ "name": "get-org", "clients": clients, "ok_per_s": ok_per_s,
                            "latency": { "p50_ms": p99 / 2.0, "p99_ms": p99 } })
    };
    let json = serde_json::json!({ "mode": "run", "runs": [run(1, 500.0, 2.0), run(16, 6000.0, 4.0)] });
    std::fs::write(&report, json.to_string()).unwrap();
    let output = bench().arg("chart").arg("--report").arg(&report).arg("--output").arg(&png).output().unwrap();
    assert!(output.status.success(), "stderr:\n{}", String::from_utf8_lossy(&output.stderr));
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");

    std::fs::write(&report, r#"{"mode": "run", "runs": []}"#).unwrap();
    let output = bench().arg("chart").arg("--report").arg(&report).arg("--output").arg(&png).output().unwrap();
    assert!(!output.status.success(), "an empty report drew a chart");
}
