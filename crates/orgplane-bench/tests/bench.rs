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
    ] {
        let output = bench().args(args).output().expect("the binary runs");
        assert!(!output.status.success(), "{args:?} succeeded");
    }
}
