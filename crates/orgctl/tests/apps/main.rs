//! `orgctl app ...` end to end against `orgplane dev` (one node per region): an app built and
//! published in an EU org is exported to a file, refused by a US org until it allows EU
//! imports, imported with its slot unbound (publish names it), bound there and published. The
//! archive holds no secret.

#[path = "../support/ctl.rs"]
mod ctl;

use serde_json::Value;

use ctl::start_dev;

const SECRET: &str = "tok-a11c3b7e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_commands_move_an_app_from_eu_to_us() {
    let dir = tempfile::tempdir().unwrap();
    let (deployment, ctl) = start_dev(&dir.path().join("data")).await;
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
