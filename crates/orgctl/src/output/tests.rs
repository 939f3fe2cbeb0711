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

fn org_move(phase: &str) -> v1::OrgMove {
    v1::OrgMove {
        move_id: "mv-7".into(),
        org_id: "eu-1".into(),
        source_region: "eu".into(),
        target_region: "us".into(),
        phase: phase.into(),
        from_epoch: 1,
        to_epoch: 2,
        bytes_copied: 6840,
        records: 57,
        write_pause_ms: Some(840),
        start_time_ms: 1_714_564_800_000,
        update_time_ms: 1_714_564_803_250,
        reason: String::new(),
        side: "incoming".into(),
        copy_id: String::new(),
    }
}

#[test]
fn a_finished_move_prints_its_report() {
    let report = MoveReport { org_move: org_move("done"), dry_run: false, started_only: false };
    assert_eq!(
        report.table(),
        "move          mv-7\n\
         org           eu-1\n\
         regions       eu → us\n\
         phase         done\n\
         epoch         1 → 2\n\
         records       57\n\
         bytes copied  6840 B (6.7 KiB)\n\
         write pause   840 ms\n\
         duration      3.2 s\n\
         started       2024-05-01T12:00:00Z\n\
         updated       2024-05-01T12:00:03Z\n"
    );
    assert_eq!(
        report.json(),
        json!({ "move": {
            "move_id": "mv-7", "org_id": "eu-1", "source_region": "eu", "target_region": "us",
            "phase": "done", "from_epoch": 1, "to_epoch": 2, "bytes_copied": 6840, "records": 57,
            "write_pause_ms": 840, "start_time_ms": 1_714_564_800_000u64,
            "update_time_ms": 1_714_564_803_250u64, "reason": "", "side": "incoming",
        }})
    );
}

#[test]
fn a_started_aborted_or_dry_run_move_says_so() {
    let mut started = org_move("reserved");
    started.write_pause_ms = None;
    let table = MoveReport { org_move: started.clone(), dry_run: false, started_only: true }.table();
    assert!(table.contains("write pause   -\n"), "{table}");
    assert!(table.ends_with("follow it with: orgctl org move-status eu-1\n"), "{table}");

    let mut aborted = org_move("aborted");
    aborted.reason = "target region full".into();
    let table = MoveReport { org_move: aborted, dry_run: false, started_only: false }.table();
    assert!(table.ends_with("reason        target region full\n"), "{table}");

    started.move_id.clear();
    let dry = MoveReport { org_move: started, dry_run: true, started_only: false };
    assert_eq!(dry.table(), "dry run: org eu-1 can move from eu to us (epoch 1 → 2); nothing changed\n");
    assert_eq!(dry.json()["dry_run"], true);
    assert_eq!(dry.json()["move"]["move_id"], "");
    assert_eq!(dry.json()["move"]["write_pause_ms"], Value::Null);
}

#[test]
fn a_move_status_says_where_the_org_lives() {
    let status = MoveStatusView {
        org_id: "eu-1".into(),
        home_region: "us".into(),
        epoch: 2,
        org_move: Some(org_move("cleaning_up")),
    };
    let table = status.table();
    assert!(table.starts_with("org           eu-1\nlives in      us, epoch 2\nmove          mv-7\n"), "{table}");
    assert_eq!(table.matches("eu-1").count(), 1, "the org is named once: {table}");
    assert_eq!(status.json()["home_region"], "us");
    assert_eq!(status.json()["move"]["phase"], "cleaning_up");

    let never = MoveStatusView { org_id: "eu-1".into(), home_region: "eu".into(), epoch: 1, org_move: None };
    assert_eq!(never.table(), "org eu-1 never moved; it lives in eu, epoch 1\n");
    assert_eq!(never.json()["move"], Value::Null);
}

fn check_size(bytes: u64, expected: &str) {
    assert_eq!(moves::format_bytes(bytes), expected, "{bytes}");
}

fn check_duration(start_ms: u64, end_ms: u64, expected: &str) {
    assert_eq!(moves::format_duration_ms(start_ms, end_ms), expected, "{start_ms}..{end_ms}");
}

#[test]
fn sizes_and_durations_read_easily() {
    check_size(0, "0 B");
    check_size(1023, "1023 B");
    check_size(1024, "1024 B (1.0 KiB)");
    check_size(5 * 1024 * 1024 + 512 * 1024, "5767168 B (5.5 MiB)");
    check_size(u64::MAX, "18446744073709551615 B (16777216.0 TiB)");
    check_duration(1_000, 1_850, "850 ms");
    check_duration(1_000, 4_250, "3.2 s");
    check_duration(0, 4_250, "-");
    check_duration(5_000, 4_000, "-");
}

#[test]
fn residency_shows_every_node_and_warns_of_silent_ones() {
    let node = |region: &str, id: u64| v1::NodeResidency { region: region.into(), node_id: id, ..Default::default() };
    let report = ResidencyReport(v1::GetResidencyResponse {
        org_id: "eu-1".into(),
        home_region: "us".into(),
        epoch: 2,
        nodes: vec![
            v1::NodeResidency {
                forwarding: true,
                forwarding_region: "us".into(),
                forwarding_epoch: 2,
                move_record: true,
                ..node("eu", 1)
            },
            v1::NodeResidency { error: "connection refused".into(), ..node("eu", 2) },
            v1::NodeResidency {
                state_records: 57,
                move_record: true,
                log_entries: 40,
                in_snapshot: true,
                files: vec![
                    v1::FileHoldings { path: "db/blobs/3".into(), occurrences: 12 },
                    v1::FileHoldings { path: "snap/1".into(), occurrences: 2 },
                ],
                ..node("us", 1)
            },
        ],
    });
    assert_eq!(
        report.table(),
        "org eu-1 lives in us, epoch 2\n\
         \n\
         REGION  NODE  STATE RECORDS  FORWARDING  MOVE RECORD  LOG ENTRIES  IN SNAPSHOT  FILES (PATH:COUNT)       BACKUPS  ERROR\n\
         eu      1     0              us@2        yes          0            no           -                        0\n\
         eu      2     ?              ?           ?            ?            ?            ?                        ?        connection refused\n\
         us      1     57             -           yes          40           yes          db/blobs/3:12, snap/1:2  0\n"
    );
    assert_eq!(
        report.warnings(),
        ["node 2 of region eu did not answer (connection refused): what it holds is unknown"]
    );
    let json = report.json();
    assert_eq!(json["nodes"][0]["forwarding_region"], "us");
    assert_eq!(json["nodes"][2]["files"][1], json!({ "path": "snap/1", "occurrences": 2 }));
    assert_eq!(json["nodes"][1]["error"], "connection refused");
}
