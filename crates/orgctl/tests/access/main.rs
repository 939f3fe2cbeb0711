//! `orgctl role|invite|integration|phone|audit` end to end against `orgplane dev` (one node
//! per region, to stay light), each command run as a user with their own dev token: a refusal
//! names the missing permission, secrets never print, the audit log lists who did what.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

const ORGCTL: &str = env!("CARGO_BIN_EXE_orgctl");
const SECRET: &str = "tok-5e1f09aa";

struct Ctl {
    endpoint: String,
    key: orgplane_auth::DevKey,
}

impl Ctl {
    fn run(&self, user: &str, email: Option<&str>, args: &[&str]) -> Output {
        let token = self.key.token(user, user == "ops", email, Duration::from_secs(3600)).unwrap();
        Command::new(ORGCTL)
            .env("ORGPLANE_TOKEN", token)
            .args(["--endpoint", &self.endpoint, "--output", "json", "--timeout", "20"])
            .args(args)
            .output()
            .expect("orgctl runs")
    }

    /// Runs as `user`, expects success, returns the JSON document.
    fn json(&self, user: &str, args: &[&str]) -> Value {
        let out = self.run(user, None, args);
        assert!(out.status.success(), "orgctl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("one JSON document")
    }

    /// Runs as `user`, expects a refusal, returns stderr.
    fn refused(&self, user: &str, args: &[&str]) -> String {
        let out = self.run(user, None, args);
        assert!(!out.status.success(), "orgctl {args:?} succeeded");
        assert!(out.stdout.is_empty());
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_commands_against_orgplane_dev() {
    let dir = tempfile::tempdir().unwrap();
    let deployment = orgplane::dev::start(orgplane::dev::DevConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        node_base_port: 0,
        nodes_per_region: 1,
        metrics_listen: None,
        allow_unauthenticated: false,
    })
    .await
    .expect("dev starts");
    let key = orgplane_auth::dev_key::ensure(dir.path()).expect("the dev key");
    let ctl = Ctl { endpoint: deployment.router_addr.to_string(), key };

    let result = tokio::task::spawn_blocking(move || {
        // The org, retried while the fresh deployment elects its leaders.
        let deadline = Instant::now() + Duration::from_secs(60);
        let org = loop {
            let out =
                ctl.run("ops", None, &["org", "create", "--region", "eu", "--name", "Acme", "--request-id", "a-1"]);
            if out.status.success() {
                let v: Value = serde_json::from_slice(&out.stdout).unwrap();
                break v["org"]["id"].as_str().expect("org id").to_string();
            }
            assert!(Instant::now() < deadline, "create failed: {}", String::from_utf8_lossy(&out.stderr));
        };
        for (user, role) in [("alice", "admin"), ("dave", "developer"), ("agnes", "agent")] {
            ctl.json("ops", &["member", "add", &org, user, "--role", role]);
        }

        let create = ["integration", "create", &org, "--kind", "twilio", "--name", "sms"];
        let create: Vec<&str> = create.into_iter().chain(["--config", "account=AC1", "--secret"]).collect();
        let secret = format!("token={SECRET}");
        let create: Vec<&str> = create.into_iter().chain([secret.as_str()]).collect();
        let stderr = ctl.refused("agnes", &create);
        assert!(stderr.contains("PERMISSION_DENIED") && stderr.contains("resources.integrate"), "{stderr}");
        let created = ctl.json("dave", &create);
        let config = &created["integrations"][0]["config"];
        assert_eq!(config[1]["key"], "token");
        assert_eq!(config[1]["secret"], true);
        let listed = ctl.json("agnes", &["integration", "list", &org]);
        assert_eq!(listed["integrations"][0]["name"], "sms", "{listed}");

        ctl.json("dave", &["phone", "add", &org, "+4930901820", "--label", "Berlin"]);
        let phones = ctl.json("agnes", &["phone", "list", &org]);
        assert_eq!(phones["phone_numbers"][0]["number"], "+4930901820", "{phones}");

        ctl.json("alice", &["role", "create", &org, "support", "--permission", "org.read"]);
        let roles = ctl.json("alice", &["role", "list", &org]);
        assert_eq!(roles["roles"].as_array().unwrap().len(), 5, "{roles}");
        ctl.json("alice", &["role", "delete", &org, "support"]);

        ctl.json("alice", &["invite", "create", &org, "carol@example.com", "--role", "developer"]);
        let out = ctl.run("carol", Some("carol@example.com"), &["invite", "accept", &org]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let invitations = ctl.json("alice", &["invite", "list", &org]);
        assert_eq!(invitations["invitations"][0]["status"], "accepted", "{invitations}");

        let by_dave = ctl.json("alice", &["audit", "list", &org, "--actor", "dave"]);
        let actions: Vec<_> = by_dave["events"].as_array().unwrap().iter().map(|e| e["action"].clone()).collect();
        assert_eq!(actions, ["create_integration", "create_phone_number"], "{by_dave}");
        let everything = ctl.json("alice", &["audit", "list", &org, "--all"]);
        for answer in [&created, &listed, &everything] {
            assert!(!answer.to_string().contains(SECRET), "a secret was printed: {answer}");
        }
        let stderr = ctl.refused("dave", &["audit", "list", &org]);
        assert!(stderr.contains("audit.read"), "{stderr}");
    })
    .await;
    deployment.shutdown().await;
    result.expect("the scenario passed");
}
