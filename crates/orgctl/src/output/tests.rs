use super::*;

fn org(id: &str, name: &str) -> v1::Org {
    v1::Org {
        id: id.into(),
        name: name.into(),
        region: "eu".into(),
        version: 3,
        epoch: 1,
        create_time_ms: 1_714_564_800_000,
        update_time_ms: 1_714_568_400_123,
        allowed_import_regions: vec!["eu".into(), "us".into()],
    }
}

fn check_time(ms: u64, expected: &str) {
    assert_eq!(format_time_ms(ms), expected, "{ms}");
}

#[test]
fn formats_times_in_utc() {
    check_time(0, "-");
    check_time(1, "1970-01-01T00:00:00Z");
    check_time(86_399_999, "1970-01-01T23:59:59Z");
    check_time(951_782_400_000, "2000-02-29T00:00:00Z");
    check_time(1_714_564_800_000, "2024-05-01T12:00:00Z");
    check_time(1_735_689_599_000, "2024-12-31T23:59:59Z");
    check_time(1_735_689_600_000, "2025-01-01T00:00:00Z");
    check_time(253_402_300_799_000, "9999-12-31T23:59:59Z");
    check_time(u64::MAX, "18446744073709551615 ms");
}

#[test]
fn tables_align_columns_without_trailing_spaces() {
    let mut table = Table::new(&["ID", "NAME", "ROLE"]);
    table.row(["eu-1".into(), "Acme Corporation".into(), "admin".into()]);
    table.row(["apac-22".into(), "Zoé".into(), "".into()]);
    assert_eq!(
        table.render(),
        "ID       NAME              ROLE\n\
         eu-1     Acme Corporation  admin\n\
         apac-22  Zoé\n"
    );
}

#[test]
fn control_characters_never_reach_the_terminal() {
    let mut table = Table::new(&["NAME"]);
    table.row(["bad\u{1b}[2Jname".into()]);
    assert_eq!(table.render(), "NAME\nbad\\u{1b}[2Jname\n");
}

#[test]
fn one_org_prints_as_fields_or_one_json_object() {
    let record = OrgRecord {
        org: org("eu-1", "Acme"),
        read: Some(v1::ReadInfo {
            consistency: v1::ReadConsistency::Local as i32,
            applied_index: 42,
            node_id: 2,
            region: "eu".into(),
        }),
    };
    assert_eq!(
        record.table(),
        "id       eu-1\n\
         name     Acme\n\
         region   eu\n\
         version  3\n\
         epoch    1\n\
         created  2024-05-01T12:00:00Z\n\
         updated  2024-05-01T13:00:00Z\n\
         imports  eu,us\n\
         read     local, node 2 of eu, applied index 42\n"
    );
    assert_eq!(
        record.json(),
        json!({
            "org": {
                "id": "eu-1", "name": "Acme", "region": "eu", "version": 3, "epoch": 1,
                "create_time_ms": 1_714_564_800_000u64, "update_time_ms": 1_714_568_400_123u64,
                "allowed_import_regions": ["eu", "us"],
            },
            "read": { "consistency": "local", "applied_index": 42, "node_id": 2, "region": "eu" },
        })
    );
    let created = OrgRecord { org: org("eu-1", "Acme"), read: None };
    assert!(created.json().get("read").is_none());
}

#[test]
fn lists_carry_the_next_page_token() {
    let list = OrgList {
        region: Region::Eu,
        orgs: vec![org("eu-1", "Acme"), org("eu-2", "Beta")],
        next_page_token: Some("tok".into()),
    };
    let json = list.json();
    assert_eq!(json["orgs"].as_array().unwrap().len(), 2);
    assert_eq!(json["next_page_token"], "tok");
    assert!(list.table().ends_with("\nmore: --page-token tok\n"), "{}", list.table());

    let last = OrgList { region: Region::Eu, orgs: vec![], next_page_token: None };
    assert_eq!(last.json()["next_page_token"], Value::Null);
    assert_eq!(last.table(), "no orgs in region eu\n");
}

#[test]
fn a_partial_user_list_says_so_in_json_table_and_warning() {
    let result = |region: &str, state: v1::RegionState, message: &str| v1::RegionResult {
        region: region.into(),
        state: state as i32,
        message: message.into(),
    };
    let list = UserOrgList {
        user_id: "alice".into(),
        answer: orgplane_client::UserOrgs {
            orgs: vec![v1::UserOrg { org: Some(org("eu-1", "Acme")), role: "admin".into() }],
            next_page_token: None,
            regions: vec![
                result("us", v1::RegionState::DeadlineExceeded, "no answer in 2000 ms"),
                result("eu", v1::RegionState::Ok, ""),
                result("apac", v1::RegionState::Unavailable, "region apac has no leader"),
            ],
        },
    };
    let json = list.json();
    assert_eq!(json["partial"], true);
    assert_eq!(
        json["regions"][0],
        json!({ "region": "us", "state": "deadline_exceeded", "message": "no answer in 2000 ms" })
    );
    assert_eq!(json["orgs"][0]["role"], "admin");
    assert_eq!(json["orgs"][0]["org"]["id"], "eu-1");
    assert_eq!(
        list.table(),
        "ORG   NAME  REGION  ROLE\n\
         eu-1  Acme  eu      admin\n\
         \n\
         REGION  STATUS             MESSAGE\n\
         us      deadline exceeded  no answer in 2000 ms\n\
         eu      ok\n\
         apac    unavailable        region apac has no leader\n"
    );
    assert_eq!(
        list.warnings(),
        ["the list is partial: no answer from region us (deadline exceeded), apac (unavailable)"]
    );
}

#[test]
fn cluster_status_shows_every_node() {
    let node = |id: u64, role: &str, healthy: bool, error: &str| v1::NodeStatus {
        region: "us".into(),
        node_id: id,
        address: format!("10.0.0.{id}:50051"),
        role: role.into(),
        term: 7,
        leader_id: if healthy { 1 } else { 0 },
        last_log_index: 120,
        applied_index: 118,
        healthy,
        error: error.into(),
    };
    let status = ClusterStatus {
        regions: vec![v1::RegionStatus {
            region: "us".into(),
            leader_id: 1,
            term: 7,
            nodes: vec![node(1, "leader", true, ""), node(3, "unreachable", false, "connection refused")],
        }],
    };
    assert_eq!(
        status.table(),
        "REGION  NODE  ADDRESS         ROLE         LEADER  TERM  LAST LOG  APPLIED  HEALTH\n\
         us      1     10.0.0.1:50051  leader       1       7     120       118      healthy\n\
         us      3     10.0.0.3:50051  unreachable  -       7     120       118      unreachable: connection refused\n"
    );
    assert!(status.warnings().is_empty());
    let json = status.json();
    assert_eq!(json["regions"][0]["nodes"][1]["error"], "connection refused");
    assert_eq!(json["regions"][0]["nodes"][0]["healthy"], true);

    let leaderless = ClusterStatus { regions: vec![v1::RegionStatus { region: "eu".into(), ..Default::default() }] };
    assert_eq!(leaderless.warnings().len(), 1);
}

#[test]
fn json_output_is_one_document_and_warnings_go_to_stderr() {
    let list = UserOrgList {
        user_id: "bob".into(),
        answer: orgplane_client::UserOrgs {
            regions: vec![v1::RegionResult {
                region: "eu".into(),
                state: v1::RegionState::Error as i32,
                message: "boom".into(),
            }],
            ..Default::default()
        },
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    print(&list, OutputFormat::Json, &mut stdout, &mut stderr).unwrap();
    let document: Value = serde_json::from_slice(&stdout).expect("stdout is one JSON document");
    assert_eq!(document["user_id"], "bob");
    assert_eq!(String::from_utf8(stderr).unwrap(), "warning: the list is partial: no answer from region eu (error)\n");
}
