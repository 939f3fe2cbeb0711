//! The harness of the `orgctl` tests against `orgplane dev`: a deployment of one node per region
//! verifying the dev key's tokens, and [`Ctl`], which runs the real `orgctl` binary as a user.
//! Included by each such test with `#[path = "../support/ctl.rs"] mod ctl;`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use orgplane::dev::DevDeployment;
use serde_json::Value;

const ORGCTL: &str = env!("CARGO_BIN_EXE_orgctl");

/// Runs `orgctl` against one router, each call as a user with a token of the dev key.
pub struct Ctl {
    endpoint: String,
    key: orgplane_auth::DevKey,
}

/// Starts `orgplane dev` (one node per region, tokens required) with its data in `data_dir`, and
/// a [`Ctl`] for its router.
pub async fn start_dev(data_dir: &Path) -> (DevDeployment, Ctl) {
    let deployment = orgplane::dev::start(orgplane::dev::DevConfig {
        data_dir: data_dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        node_base_port: 0,
        nodes_per_region: 1,
        metrics_listen: None,
        allow_unauthenticated: false,
    })
    .await
    .expect("dev starts");
    let key = orgplane_auth::dev_key::ensure(data_dir).expect("the dev key");
    let ctl = Ctl { endpoint: deployment.router_addr.to_string(), key };
    (deployment, ctl)
}

impl Ctl {
    /// Runs `orgctl` as `user` (a platform admin if `ops`; with a verified `email` if given),
    /// JSON output, `--timeout 20`.
    pub fn run(&self, user: &str, email: Option<&str>, args: &[&str]) -> Output {
        self.run_with_timeout(user, email, "20", args)
    }

    /// [`Ctl::run`] with another `--timeout` (seconds): `org move` waits that long for the move.
    pub fn run_with_timeout(&self, user: &str, email: Option<&str>, timeout: &str, args: &[&str]) -> Output {
        let token = self.key.token(user, user == "ops", email, Duration::from_secs(3600)).unwrap();
        Command::new(ORGCTL)
            .env("ORGPLANE_TOKEN", token)
            .args(["--endpoint", &self.endpoint, "--output", "json", "--timeout", timeout])
            .args(args)
            .output()
            .expect("orgctl runs")
    }

    /// Runs as `user`, expects success, returns the JSON document.
    pub fn json(&self, user: &str, args: &[&str]) -> Value {
        let out = self.run(user, None, args);
        assert!(out.status.success(), "orgctl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("one JSON document")
    }

    /// Runs as `user`, expects a refusal, returns stderr.
    pub fn refused(&self, user: &str, args: &[&str]) -> String {
        let out = self.run(user, None, args);
        assert!(!out.status.success(), "orgctl {args:?} succeeded");
        assert!(out.stdout.is_empty());
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Creates an org as `ops`, retried (same request id) while the fresh deployment elects its
    /// leaders.
    pub fn org(&self, region: &str, name: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        let request_id = format!("create-{region}");
        loop {
            let args = ["org", "create", "--region", region, "--name", name, "--request-id", &request_id];
            let out = self.run("ops", None, &args);
            if out.status.success() {
                let v: Value = serde_json::from_slice(&out.stdout).unwrap();
                return v["org"]["id"].as_str().expect("org id").to_string();
            }
            // Each attempt waits (the client retries within --timeout) before it fails.
            assert!(Instant::now() < deadline, "create failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}
