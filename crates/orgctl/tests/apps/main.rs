//! `orgctl app ...` end to end against `orgplane dev` (one node per region): an app built and
//! published in an EU org is exported to a file, refused by a US org until it allows EU
//! imports, imported with its slot unbound (publish names it), bound there and published. The
//! archive holds no secret.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

const ORGCTL: &str = env!("CARGO_BIN_EXE_orgctl");
const SECRET: &str = "tok-a11c3b7e";

struct Ctl {
    endpoint: String,
    key: orgplane_auth::DevKey,
}

impl Ctl {
    fn run(&self, user: &str, args: &[&str]) -> Output {
        let token = self.key.token(user, user == "ops", None, Duration::from_secs(3600)).unwrap();
        Command::new(ORGCTL)
            .env("ORGPLANE_TOKEN", token)
            .args(["--endpoint", &self.endpoint, "--output", "json", "--timeout", "20"])
            .args(args)
            .output()
            .expect("orgctl runs")
    }

    fn json(&self, user: &str, args: &[&str]) -> Value {
        let out = self.run(user, args);
        assert!(out.status.success(), "orgctl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("one JSON document")
    }

    fn refused(&self, user: &str, args: &[&str]) -> String {
        let out = self.run(user, args);
        assert!(!out.status.success(), "orgctl {args:?} succeeded");
        assert!(out.stdout.is_empty());
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Creates an org, retried while the fresh deployment elects its leaders.
    fn org(&self, region: &str, name: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        let request_id = format!("create-{region}");
        loop {
            let out =
                self.run("ops", &["org", "create", "--region", region, "--name", name, "--request-id", &request_id]);
            if out.status.success() {
                let v: Value = serde_json::from_slice(&out.stdout).unwrap();
                return v["org"]["id"].as_str().expect("org id").to_string();
            }
            // Each attempt waits (the client retries within --timeout) before it fails.
            assert!(Instant::now() < deadline, "create failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_commands_move_an_app_from_eu_to_us() {
    let dir = tempfile::tempdir().unwrap();
    let deployment = orgplane::dev::start(orgplane::dev::DevConfig {
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        node_base_port: 0,
        nodes_per_region: 1,
        metrics_listen: None,
        allow_unauthenticated: false,
    })
    .await
    .expect("dev starts");
    let key = orgplane_auth::dev_key::ensure(&dir.path().join("data")).expect("the dev key");
    let ctl = Ctl { endpoint: deployment.router_addr.to_string(), key };
    let files = dir.path().to_path_buf();

    let result = tokio::task::spawn_blocking(move || {
        let (eu, us) = (ctl.org("eu", "Acme EU"), ctl.org("us", "Acme US"));
        ctl.json("ops", &["member", "add", &eu, "alice", "--role", "admin"]);
        ctl.json("ops", &["member", "add", &us, "bob", "--role", "admin"]);
        let secret = format!("token={SECRET}");
        let integration = |org: &str, user: &str| {
            ctl.json(user, &["integration", "create", org, "--kind", "twilio", "--name", "main", "--secret", &secret]);
        };

        integration(&eu, "alice");
        let definition = files.join("bot.json");
        std::fs::write(&definition, r#"{"entry": "greet", "steps": {"greet": {"say": "Hello"}}}"#).unwrap();
        let definition = definition.to_str().unwrap();
        let created = ctl.json(
            "alice",
            &["app", "create", &eu, "--name", "Bot", "--definition", definition, "--slot", "sms:integration:twilio"],
        );
        let app = created["app"]["id"].as_str().expect("app id").to_string();
        assert_eq!(created["app"]["slots"][0]["binding"], Value::Null, "{created}");
        let stderr = ctl.refused("alice", &["app", "publish", &eu, &app]);
        assert!(stderr.contains("FAILED_PRECONDITION") && stderr.contains("unbound slots: sms"), "{stderr}");
        ctl.json("alice", &["app", "bind", &eu, &app, "sms", "main"]);
        ctl.json("alice", &["app", "publish", &eu, &app]);

        let archive = files.join("bot.zip");
        let archive = archive.to_str().unwrap();
        let exported = ctl.json("alice", &["app", "export", &eu, &app, "-o", archive]);
        let bytes = std::fs::read(archive).unwrap();
        assert_eq!(exported["bytes"].as_u64(), Some(bytes.len() as u64), "{exported}");
        assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()), "the secret is in the archive");
        let stderr = ctl.refused("alice", &["app", "export", &eu, &app, "-o", archive]);
        assert!(stderr.contains("exists"), "an existing file is kept without --force: {stderr}");

        let stderr = ctl.refused("bob", &["app", "import", &us, archive]);
        assert!(stderr.contains("FAILED_PRECONDITION") && stderr.contains("--allow-import-from eu"), "{stderr}");
        let org = ctl.json("bob", &["org", "update", &us, "--allow-import-from", "eu"]);
        assert!(org["org"]["allowed_import_regions"].as_array().unwrap().contains(&Value::from("eu")), "{org}");
        integration(&us, "bob");
        let imported = ctl.json("bob", &["app", "import", &us, archive]);
        assert_eq!(imported["slots_to_bind"], serde_json::json!(["sms"]), "{imported}");
        assert_eq!(imported["hints"][0]["candidates"], serde_json::json!(["main"]), "{imported}");
        assert_eq!(imported["source_org_id"], eu.as_str());
        let copy = imported["app"]["id"].as_str().unwrap().to_string();
        let stderr = ctl.refused("bob", &["app", "publish", &us, &copy]);
        assert!(stderr.contains("unbound slots: sms"), "{stderr}");
        ctl.json("bob", &["app", "bind", &us, &copy, "sms", "main"]);
        let published = ctl.json("bob", &["app", "publish", &us, &copy]);
        assert!(published["app"]["published_version"].is_u64(), "{published}");
        let listed = ctl.json("bob", &["app", "list", &us]);
        assert_eq!(listed["apps"][0]["id"], copy.as_str(), "{listed}");
    })
    .await;
    deployment.shutdown().await;
    result.expect("the scenario passed");
}
