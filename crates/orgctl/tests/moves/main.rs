//! `orgctl org move|move-status|move-abort|residency` end to end against `orgplane dev` (one
//! node per region): an EU org with members moves to us; the router then serves it from us at
//! epoch 2, its members with it; the residency report shows eu's node holding only the
//! forwarding and us's node the records; a second move to us and a non-admin's move are
//! refused; a dry run changes nothing.

#[path = "../support/ctl.rs"]
mod ctl;

use serde_json::Value;

use ctl::start_dev;

/// `org move` waits for the move to end within this many seconds.
const MOVE_WAIT_SECONDS: &str = "120";

/// The nodes of `region` in a residency report.
fn nodes_of<'a>(residency: &'a Value, region: &str) -> Vec<&'a Value> {
    let nodes = residency["nodes"].as_array().expect("a list of nodes");
    nodes.iter().filter(|n| n["region"] == region).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_org_moves_from_eu_to_us_and_only_a_forwarding_stays_in_eu() {
    let dir = tempfile::tempdir().unwrap();
    let (deployment, ctl) = start_dev(dir.path()).await;

    let result = tokio::task::spawn_blocking(move || {
        let org = ctl.org("eu", "Acme Moving");
        for (user, role) in [("alice", "admin"), ("bob", "viewer")] {
            ctl.json("ops", &["member", "add", &org, user, "--role", role]);
        }

        // A dry run checks and changes nothing.
        let dry = ctl.json("ops", &["org", "move", &org, "--to", "us", "--dry-run"]);
        assert_eq!(
            (dry["dry_run"].as_bool(), dry["move"]["target_region"].as_str()),
            (Some(true), Some("us")),
            "{dry}"
        );
        let still = ctl.json("ops", &["org", "get", &org]);
        assert_eq!((still["org"]["region"].as_str(), still["org"]["epoch"].as_u64()), (Some("eu"), Some(1)), "{still}");
        let never = ctl.json("ops", &["org", "move-status", &org]);
        assert_eq!(never["move"], Value::Null, "{never}");

        // Only a platform admin moves orgs, not the org's own admin; the refusal names the
        // permission.
        let stderr = ctl.refused("alice", &["org", "move", &org, "--to", "us"]);
        assert!(stderr.contains("platform_admin"), "{stderr}");

        let out = ctl.run_with_timeout("ops", None, MOVE_WAIT_SECONDS, &["org", "move", &org, "--to", "us"]);
        assert!(out.status.success(), "the move failed: {}", String::from_utf8_lossy(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
        let moved = &report["move"];
        assert_eq!(moved["phase"], "done", "{report}");
        assert_eq!((moved["from_epoch"].as_u64(), moved["to_epoch"].as_u64()), (Some(1), Some(2)), "{report}");
        assert!(moved["records"].as_u64().is_some_and(|n| n > 0), "{report}");
        assert!(moved["bytes_copied"].as_u64().is_some_and(|n| n > 0), "{report}");
        let move_id = moved["move_id"].as_str().expect("a move id").to_string();

        // Through the router, as before: same id, now served by us at epoch 2, members along.
        let read = ctl.json("ops", &["org", "get", &org]);
        assert_eq!((read["org"]["region"].as_str(), read["org"]["epoch"].as_u64()), (Some("us"), Some(2)), "{read}");
        assert_eq!(read["org"]["name"], "Acme Moving");
        let members = ctl.json("alice", &["member", "list", &org]);
        assert_eq!(members["members"].as_array().map(Vec::len), Some(2), "{members}");

        let status = ctl.json("ops", &["org", "move-status", &org]);
        assert_eq!((status["home_region"].as_str(), status["epoch"].as_u64()), (Some("us"), Some(2)), "{status}");
        assert_eq!(
            (status["move"]["move_id"].as_str(), status["move"]["phase"].as_str()),
            (Some(&*move_id), Some("done"))
        );

        let residency = ctl.json("ops", &["org", "residency", &org]);
        assert_eq!(residency["home_region"], "us", "{residency}");
        let (eu, us) = (nodes_of(&residency, "eu"), nodes_of(&residency, "us"));
        assert!(!eu.is_empty() && !us.is_empty(), "{residency}");
        for node in eu {
            assert_eq!(node["error"], "", "{node}");
            assert_eq!(node["state_records"], 0, "eu keeps none of the org's records: {node}");
            assert_eq!((node["forwarding"].as_bool(), node["forwarding_region"].as_str()), (Some(true), Some("us")));
            assert_eq!(node["forwarding_epoch"], 2, "{node}");
        }
        for node in us {
            assert!(node["state_records"].as_u64().is_some_and(|n| n > 0), "us holds the records: {node}");
            assert_eq!(node["forwarding"], false, "{node}");
        }

        // It lives in us now: moving it there again is refused, and changes nothing.
        let stderr = ctl.refused("ops", &["org", "move", &org, "--to", "us"]);
        assert!(stderr.contains("INVALID_ARGUMENT"), "{stderr}");
        let dry_back = ctl.json("ops", &["org", "move", &org, "--to", "eu", "--dry-run"]);
        assert_eq!(dry_back["move"]["source_region"], "us", "{dry_back}");
        let after = ctl.json("ops", &["org", "move-status", &org]);
        assert_eq!(after["move"]["move_id"], move_id.as_str(), "no new move: {after}");
        assert_eq!(after["home_region"], "us");
    })
    .await;
    deployment.shutdown().await;
    result.expect("the scenario passed");
}
