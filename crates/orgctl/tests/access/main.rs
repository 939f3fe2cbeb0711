//! `orgctl role|invite|integration|phone|audit` end to end against `orgplane dev` (one node
//! per region, to stay light), each command run as a user with their own dev token: a refusal
//! names the missing permission, secrets never print, the audit log lists who did what.

#[path = "../support/ctl.rs"]
mod ctl;

use ctl::start_dev;

const SECRET: &str = "tok-5e1f09aa";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_commands_against_orgplane_dev() {
    let dir = tempfile::tempdir().unwrap();
    let (deployment, ctl) = start_dev(dir.path()).await;

    let result = tokio::task::spawn_blocking(move || {
        let org = ctl.org("eu", "Acme");
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
