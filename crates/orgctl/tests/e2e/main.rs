//! `orgctl` end to end against the real `orgplane dev` deployment (three regions of three nodes
//! and a router, started in this test process on loopback ports): the tour of the README,
//! with `--output json` parsed, and a region's backup written to a file.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

const ORGCTL: &str = env!("CARGO_BIN_EXE_orgctl");

struct Ctl {
    endpoint: String,
    /// A platform admin's dev token, sent as `ORGPLANE_TOKEN`.
    token: String,
}

impl Ctl {
    /// Runs orgctl with `--output json` and returns its one JSON document; panics on failure.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(out.status.success(), "orgctl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("orgctl {args:?} printed no single JSON document ({e}): {}", String::from_utf8_lossy(&out.stdout))
        })
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(ORGCTL)
            .env("ORGPLANE_TOKEN", &self.token)
            .args(["--endpoint", &self.endpoint, "--output", "json", "--timeout", "20"])
            .args(args)
            .output()
            .expect("orgctl runs")
    }

    /// Creates an org, retrying while the fresh deployment elects its leaders.
    fn create(&self, region: &str, name: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        let request_id = format!("e2e-create-{region}-{}", name.len());
        loop {
            let out = self.run(&["org", "create", "--region", region, "--name", name, "--request-id", &request_id]);
            if out.status.success() {
                return serde_json::from_slice(&out.stdout).expect("json");
            }
            assert!(Instant::now() < deadline, "create failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// The org object, whether printed bare or under an `org` key.
fn org_of(v: &Value) -> &Value {
    if v.get("org").is_some() {
        &v["org"]
    } else {
        v
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_readme_tour_works_against_orgplane_dev() {
    let dir = tempfile::tempdir().unwrap();
    let deployment = orgplane::dev::start(orgplane::dev::DevConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        node_base_port: 0,
        nodes_per_region: 3,
        metrics_listen: None,
        allow_unauthenticated: false,
    })
    .await
    .expect("dev starts");
    // The tour as the operator: `orgplane dev-token --platform-admin`, from the key dev made.
    let key = orgplane_auth::dev_key::ensure(dir.path()).expect("the dev key");
    let token = key.token("ops", true, None, Duration::from_secs(3600)).expect("a token");
    let ctl = Ctl { endpoint: deployment.router_addr.to_string(), token };

    let (endpoint, token) = (ctl.endpoint.clone(), ctl.token.clone());
    let result = tokio::task::spawn_blocking(move || {
        let ctl = Ctl { endpoint, token };
        let eu = ctl.create("eu", "Acme");
        let eu_id = org_of(&eu)["id"].as_str().expect("id").to_string();
        assert!(eu_id.starts_with("eu-"), "{eu}");
        let us = ctl.create("us", "Globex");
        let us_id = org_of(&us)["id"].as_str().unwrap().to_string();
        assert!(us_id.starts_with("us-"));

        let got = ctl.json(&["org", "get", &eu_id]);
        assert_eq!(org_of(&got)["name"], "Acme", "{got}");

        ctl.json(&["member", "add", &eu_id, "alice", "--role", "admin"]);
        ctl.json(&["member", "add", &us_id, "alice", "--role", "agent"]);
        let members = ctl.json(&["member", "list", &eu_id]);
        assert!(members.to_string().contains("alice"), "{members}");

        let mine = ctl.json(&["user", "orgs", "alice"]);
        let orgs = mine["orgs"].as_array().expect("orgs array");
        assert_eq!(orgs.len(), 2, "{mine}");
        let regions = mine["regions"].as_array().expect("regions");
        assert_eq!(regions.len(), 3, "every region reports: {mine}");
        assert!(regions.iter().all(|r| r["state"] == "ok"), "{mine}");

        let updated = ctl.json(&["org", "update", &eu_id, "--name", "Acme EU", "--expected-version", "1"]);
        assert_eq!(org_of(&updated)["version"], 2);
        // A stale expected version is refused: non-zero exit, the status and a hint on stderr,
        // nothing on stdout.
        let stale = ctl.run(&["org", "update", &eu_id, "--name", "lost", "--expected-version", "1"]);
        assert!(!stale.status.success());
        let stderr = String::from_utf8_lossy(&stale.stderr);
        assert!(stderr.contains("ABORTED"), "{stderr}");
        assert!(stderr.contains("hint"), "{stderr}");
        assert!(stale.stdout.is_empty());

        let list = ctl.json(&["org", "list", "--region", "eu"]);
        assert!(list.to_string().contains("Acme EU"), "{list}");

        // A backup of eu to a file: checked, and never over an existing file without --force.
        let backups = tempfile::tempdir().unwrap();
        let file = backups.path().join("eu.opb");
        let file_arg = file.to_str().expect("a UTF-8 temp path");
        let done = ctl.json(&["backup", "--region", "eu", "-o", file_arg]);
        assert_eq!(done["region"], "eu", "{done}");
        assert!(done["log_index"].as_u64().is_some_and(|i| i > 0), "{done}");
        let verified = orgplane_backup::verify_backup(std::fs::File::open(&file).unwrap()).expect("a sound file");
        assert_eq!(done["file_bytes"].as_u64(), Some(verified.file_bytes), "{done}");
        assert_eq!(done["data_crc32"], format!("{:08x}", verified.data_crc32), "{done}");
        assert_eq!(verified.header.log_index, done["log_index"].as_u64().unwrap());
        let written = std::fs::read(&file).unwrap();
        let refused = ctl.run(&["backup", "--region", "eu", "-o", file_arg]);
        assert_eq!(refused.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&refused.stderr).contains("ALREADY_EXISTS"), "{refused:?}");
        assert!(refused.stdout.is_empty());
        assert_eq!(std::fs::read(&file).unwrap(), written, "the existing file is untouched");
        let forced = ctl.json(&["backup", "--region", "eu", "-o", file_arg, "--force"]);
        assert!(forced["log_index"].as_u64() >= done["log_index"].as_u64(), "{forced}");
        let left: Vec<_> = std::fs::read_dir(backups.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["eu.opb"], "no temporary file is left behind");

        let status = ctl.json(&["cluster", "status"]);
        let text = status.to_string();
        for region in ["us", "eu", "apac"] {
            assert!(text.contains(&format!("\"{region}\"")), "status names {region}: {status}");
        }
        assert_eq!(status["regions"].as_array().map(Vec::len), Some(3), "{status}");

        // Membership through the router: three voters per region; an unsafe removal is refused.
        let members = ctl.json(&["cluster", "members", "--region", "apac"]);
        let kinds: Vec<&str> =
            members["members"].as_array().unwrap().iter().map(|m| m["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, vec!["voter"; 3], "{members}");
        let bad = ctl.run(&["cluster", "add-node", "--region", "apac", "--node-id", "1", "--addr", "127.0.0.1:1"]);
        assert!(!bad.status.success());
        assert!(
            String::from_utf8_lossy(&bad.stderr).contains("FAILED_PRECONDITION"),
            "{}",
            String::from_utf8_lossy(&bad.stderr)
        );

        let deleted = ctl.run(&["org", "delete", &us_id]);
        assert!(deleted.status.success(), "{}", String::from_utf8_lossy(&deleted.stderr));
        let gone = ctl.run(&["org", "get", &us_id]);
        assert!(!gone.status.success());
        assert!(String::from_utf8_lossy(&gone.stderr).contains("NOT_FOUND"));
    })
    .await;
    deployment.shutdown().await;
    result.unwrap();
}
