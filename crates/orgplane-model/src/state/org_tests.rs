//! Orgs, members, request ids and paging, issued by the system (authorization is in
//! `access_tests`).

use super::*;
use crate::id::OrgId;
use crate::org::Org;
use crate::region::Region;
use crate::role::Role;

fn org_id(n: u128) -> OrgId {
    OrgId::from_u128(Region::Eu, n)
}

fn cmd(request_id: &str, at: u64, op: Op) -> Command {
    Command { request_id: request_id.to_string(), issued_at_ms: at, actor: Actor::System, op }
}

fn run(state: &mut MemState, request_id: &str, op: Op) -> CommandResult {
    apply(state, &cmd(request_id, 1_000, op)).unwrap()
}

fn create(state: &mut MemState, n: u128, name: &str) -> Org {
    match run(state, &format!("create-{n}"), Op::CreateOrg { id: org_id(n), name: name.into() }) {
        Ok(CommandOutcome::Org(org)) => org,
        other => panic!("create failed: {other:?}"),
    }
}

#[test]
fn create_get_update_delete() {
    let mut s = MemState::default();
    let org = create(&mut s, 1, "Acme");
    assert_eq!(org.version, 1);
    assert_eq!(org.region, Region::Eu);
    assert_eq!(get_org(&s, &org.id).unwrap(), Some(org.clone()));

    let updated = run(
        &mut s,
        "u1",
        Op::UpdateOrg {
            id: org.id.clone(),
            name: Some("Acme 2".into()),
            allowed_import_regions: None,
            expected_version: Some(1),
        },
    );
    assert!(matches!(updated, Ok(CommandOutcome::Org(ref o)) if o.version == 2 && o.name == "Acme 2"));

    let stale = run(
        &mut s,
        "u2",
        Op::UpdateOrg {
            id: org.id.clone(),
            name: Some("lost".into()),
            allowed_import_regions: None,
            expected_version: Some(1),
        },
    );
    assert!(matches!(stale, Err(DomainError::VersionMismatch { expected: 1, actual: 2, .. })));
    assert_eq!(get_org(&s, &org.id).unwrap().unwrap().name, "Acme 2");

    let deleted = run(&mut s, "d1", Op::DeleteOrg { id: org.id.clone(), expected_version: None });
    assert_eq!(deleted, Ok(CommandOutcome::OrgDeleted { removed_members: 0 }));
    assert_eq!(get_org(&s, &org.id).unwrap(), None);
    let again = run(&mut s, "d2", Op::DeleteOrg { id: org.id.clone(), expected_version: None });
    assert!(matches!(again, Err(DomainError::NotFound { .. })));
}

#[test]
fn same_request_id_applies_once() {
    let mut s = MemState::default();
    let org = create(&mut s, 1, "Acme");
    let op = Op::UpdateOrg {
        id: org.id.clone(),
        name: Some("B".into()),
        allowed_import_regions: None,
        expected_version: None,
    };
    let first = run(&mut s, "same", op.clone());
    let second = run(&mut s, "same", op);
    assert_eq!(first, second);
    assert_eq!(get_org(&s, &org.id).unwrap().unwrap().version, 2, "the retry must not apply again");

    let other_kind = run(&mut s, "same", Op::RemoveMember { org_id: org.id.clone(), user_id: "x".into() });
    assert!(matches!(other_kind, Err(DomainError::FailedPrecondition { .. })));
}

#[test]
fn request_ids_expire_after_the_ttl() {
    let mut s = MemState::default();
    let org = create(&mut s, 1, "Acme");
    let op = Op::UpdateOrg {
        id: org.id.clone(),
        name: Some("B".into()),
        allowed_import_regions: None,
        expected_version: None,
    };
    assert!(apply(&mut s, &cmd("old", 1_000, op.clone())).unwrap().is_ok());
    // A later command past the TTL drops the old record, so the id applies again.
    let later =
        cmd("other", 1_000 + REQUEST_ID_TTL_MS + 1, Op::RemoveMember { org_id: org.id.clone(), user_id: "n".into() });
    assert!(apply(&mut s, &later).unwrap().is_err(), "n is not a member");
    assert!(s.get(&keys::request("old")).unwrap().is_none());
    assert!(apply(&mut s, &cmd("old", 2_000 + REQUEST_ID_TTL_MS, op)).unwrap().is_ok());
    assert_eq!(get_org(&s, &org.id).unwrap().unwrap().version, 3);
}

#[test]
fn members_and_user_index_stay_in_step() {
    let mut s = MemState::default();
    let a = create(&mut s, 1, "A");
    let b = create(&mut s, 2, "B");
    for (org, user, role) in [(&a, "alice", Role::Admin), (&b, "alice", Role::Agent), (&a, "bob", Role::Viewer)] {
        let r = run(
            &mut s,
            &format!("add-{}-{user}", org.id),
            Op::AddMember { org_id: org.id.clone(), user_id: user.into(), role },
        );
        assert!(r.is_ok(), "{r:?}");
    }
    let dup = run(&mut s, "dup", Op::AddMember { org_id: a.id.clone(), user_id: "alice".into(), role: Role::Agent });
    assert!(matches!(dup, Err(DomainError::AlreadyExists { .. })));

    let (orgs, next) = list_user_orgs(&s, "alice", None, 10).unwrap();
    assert_eq!(next, None);
    assert_eq!(
        orgs.iter().map(|u| (u.org.id.clone(), u.role.clone())).collect::<Vec<_>>(),
        vec![(a.id.clone(), Role::Admin), (b.id.clone(), Role::Agent)]
    );

    run(&mut s, "role", Op::SetMemberRole { org_id: b.id.clone(), user_id: "alice".into(), role: Role::Developer })
        .unwrap();
    let (orgs, _) = list_user_orgs(&s, "alice", None, 10).unwrap();
    assert_eq!(orgs[1].role, Role::Developer);

    run(&mut s, "del", Op::DeleteOrg { id: a.id.clone(), expected_version: None }).unwrap();
    let (orgs, _) = list_user_orgs(&s, "alice", None, 10).unwrap();
    assert_eq!(orgs.len(), 1);
    assert!(list_user_orgs(&s, "bob", None, 10).unwrap().0.is_empty());
    assert!(matches!(list_members(&s, &a.id, None, 10), Err(QueryError::Domain(DomainError::NotFound { .. }))));

    let missing = run(&mut s, "rm", Op::RemoveMember { org_id: b.id.clone(), user_id: "carol".into() });
    assert!(matches!(missing, Err(DomainError::NotFound { ref kind, .. }) if kind == "member"));
    let no_org = run(&mut s, "rm2", Op::RemoveMember { org_id: a.id.clone(), user_id: "alice".into() });
    assert!(matches!(no_org, Err(DomainError::NotFound { ref kind, .. }) if kind == "org"));
}

#[test]
fn pages_cover_everything_once() {
    let mut s = MemState::default();
    for n in 1..=25 {
        create(&mut s, n, &format!("org {n}"));
    }
    let mut seen = Vec::new();
    let mut after: Option<OrgId> = None;
    loop {
        let (page, next) = list_orgs(&s, after.as_ref(), 7).unwrap();
        assert!(page.len() <= 7);
        seen.extend(page.into_iter().map(|o| o.id));
        match next {
            Some(id) => after = Some(id.parse().unwrap()),
            None => break,
        }
    }
    let expected: Vec<OrgId> = (1..=25).map(org_id).collect();
    assert_eq!(seen, expected);
}

/// Keys a refusal does write: the request-id record and its index, the audit log.
fn is_bookkeeping(key: &[u8]) -> bool {
    [&b"r/"[..], b"t/", b"al/", b"an/"].iter().any(|p| key.starts_with(p))
}

#[test]
fn refusals_change_nothing_but_the_request_record_and_the_audit_log() {
    let mut s = MemState::default();
    let org = create(&mut s, 1, "A");
    let before: BTreeMap<_, _> =
        s.map.iter().filter(|(k, _)| !is_bookkeeping(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let refused = [
        Op::CreateOrg { id: org.id.clone(), name: "again".into() },
        Op::UpdateOrg {
            id: org.id.clone(),
            name: Some("x".into()),
            allowed_import_regions: None,
            expected_version: Some(9),
        },
        Op::UpdateOrg { id: org_id(99), name: Some("x".into()), allowed_import_regions: None, expected_version: None },
        Op::SetMemberRole { org_id: org.id.clone(), user_id: "nobody".into(), role: Role::Admin },
        Op::AddMember { org_id: org_id(99), user_id: "u".into(), role: Role::Admin },
    ];
    for (i, op) in refused.into_iter().enumerate() {
        assert!(run(&mut s, &format!("bad-{i}"), op).is_err());
    }
    let after: BTreeMap<_, _> =
        s.map.iter().filter(|(k, _)| !is_bookkeeping(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(before, after);
}

#[test]
fn prefix_end_is_exclusive_upper_bound() {
    assert_eq!(prefix_end(b"o/"), b"o0".to_vec());
    assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
}
