//! Moving an org through `apply` on two in-memory regions: the whole workflow, the fences
//! (frozen, moved, stale copies), aborts, and that the source keeps nothing but the forwarding.

use std::collections::BTreeMap;

use super::test_support::World;
use super::*;
use crate::app::{AppId, ResourceKind};
use crate::id::OrgId;
use crate::region::Region;
use crate::relocation::{MoveNote, MovePhase, MoveState, MoveStep};
use crate::resource::ConfigEntry;
use crate::role::Role;

const MOVE: &str = "move-1";

fn ops() -> Actor {
    Actor::platform_admin("ops")
}

fn step(world: &mut World, org: &OrgId, step: MoveStep) -> Result<MoveState, DomainError> {
    match world.run(&ops(), Op::Relocate { org_id: org.clone(), step }) {
        Ok(CommandOutcome::Move(state)) => Ok(state),
        Ok(other) => panic!("unexpected outcome {other:?}"),
        Err(refusal) => Err(refusal),
    }
}

/// An eu org holding one of every kind of record: members, a custom role, an invitation, an
/// integration with a secret, a phone number, an app bound to both, audit events and
/// remembered request ids.
fn rich_org(world: &mut World) -> OrgId {
    let org = world.org_with_admin(1, "alice");
    world.add(&org, "bob", Role::Developer);
    world.define(&org, "support", &[crate::permission::Permission::OrgRead]);
    let alice = Actor::user("alice");
    let run = |world: &mut World, op: Op| {
        let r = world.run(&alice, op);
        assert!(r.is_ok(), "{r:?}");
    };
    run(
        world,
        Op::CreateInvitation {
            org_id: org.clone(),
            email: "carol@example.com".into(),
            role: Role::Agent,
            expires_at_ms: None,
        },
    );
    run(
        world,
        Op::CreateIntegration {
            org_id: org.clone(),
            name: "sms".into(),
            kind: "twilio".into(),
            config: vec![ConfigEntry::secret("token", "sk-very-secret")],
        },
    );
    run(world, Op::CreatePhoneNumber { org_id: org.clone(), number: "+14155550100".into(), label: "main".into() });
    let slots = BTreeMap::from([
        ("text".to_string(), ResourceKind::Integration("twilio".into())),
        ("line".to_string(), ResourceKind::PhoneNumber),
    ]);
    let app = AppId::from_u128(9);
    run(
        world,
        Op::CreateApp {
            org_id: org.clone(),
            app_id: app.clone(),
            name: "Helpdesk".into(),
            definition: "{}".into(),
            assets: BTreeMap::new(),
            slots,
        },
    );
    run(
        world,
        Op::BindAppSlot { org_id: org.clone(), app_id: app.clone(), slot: "text".into(), resource_id: "sms".into() },
    );
    run(
        world,
        Op::BindAppSlot { org_id: org.clone(), app_id: app, slot: "line".into(), resource_id: "+14155550100".into() },
    );
    org
}

/// Every key of `state` that mentions `org`.
fn keys_of(state: &MemState, org: &OrgId) -> Vec<String> {
    let needle = org.to_string();
    state
        .map
        .iter()
        .filter(|(k, v)| String::from_utf8_lossy(k).contains(&needle) || String::from_utf8_lossy(v).contains(&needle))
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect()
}

/// Starts a move of `org` from `source` (eu) to `target` (us): reserved, begun, copying.
/// Returns the source's record.
fn begin_copying(source: &mut World, target: &mut World, org: &OrgId) -> crate::relocation::MoveRecord {
    step(target, org, MoveStep::Reserve { move_id: MOVE.into(), source: Region::Eu, target: Region::Us }).unwrap();
    let MoveState::Record(out) =
        step(source, org, MoveStep::BeginOut { move_id: MOVE.into(), target: Region::Us }).unwrap()
    else {
        panic!("begin answers the record")
    };
    let note = MoveNote { from_epoch: Some(out.from_epoch), write_pause_ms: None };
    step(
        target,
        org,
        MoveStep::Advance { move_id: MOVE.into(), from: MovePhase::Reserved, to: MovePhase::Copying, note },
    )
    .unwrap();
    out
}

/// Runs a move of `org` from `source` (eu) to `target` (us) up to and including the switch.
fn move_until_switch(source: &mut World, target: &mut World, org: &OrgId) {
    let out = begin_copying(source, target, org);
    let early = org_image(&source.state, org).unwrap();
    step(
        target,
        org,
        MoveStep::Stage { move_id: MOVE.into(), copy_id: "c1".into(), first: true, records: early, deletes: vec![] },
    )
    .unwrap();
    step(source, org, MoveStep::Freeze { move_id: MOVE.into() }).unwrap();
    step(
        target,
        org,
        MoveStep::Advance {
            move_id: MOVE.into(),
            from: MovePhase::Copying,
            to: MovePhase::Frozen,
            note: MoveNote::default(),
        },
    )
    .unwrap();
    let frozen = org_image(&source.state, org).unwrap();
    let (first, rest) = frozen.split_at(frozen.len() / 2);
    step(
        target,
        org,
        MoveStep::Stage {
            move_id: MOVE.into(),
            copy_id: "c2".into(),
            first: true,
            records: first.to_vec(),
            deletes: vec![],
        },
    )
    .unwrap();
    step(
        target,
        org,
        MoveStep::Stage {
            move_id: MOVE.into(),
            copy_id: "c2".into(),
            first: false,
            records: rest.to_vec(),
            deletes: vec![],
        },
    )
    .unwrap();
    let records = frozen.len() as u64;
    step(
        target,
        org,
        MoveStep::Activate { move_id: MOVE.into(), copy_id: "c2".into(), records, to_epoch: out.to_epoch },
    )
    .unwrap();
}

#[test]
fn a_moved_org_keeps_everything_and_the_source_keeps_only_the_forwarding() {
    let mut source = World::new();
    let mut target = World::other_region();
    let org = rich_org(&mut source);
    let before = org_image(&source.state, &org).unwrap();
    move_until_switch(&mut source, &mut target, &org);
    let forwarded = step(&mut source, &org, MoveStep::FinishOut { move_id: MOVE.into(), epoch: 2 }).unwrap();
    assert!(matches!(forwarded, MoveState::Forwarded(ref f) if f.region == Region::Us && f.epoch == 2));

    // The target holds every record the source had; only the org record (region, epoch, time)
    // changed, and its audit log gained the arrival.
    let after: BTreeMap<_, _> = org_image(&target.state, &org).unwrap().into_iter().collect();
    for (key, value) in &before {
        if key.starts_with("o/") || key.starts_with("an/") {
            continue; // the org record and the audit counter change; the rest is equal
        }
        assert_eq!(after.get(key), Some(value), "{key} differs after the move");
    }
    let moved = get_org(&target.state, &org).unwrap().unwrap();
    assert_eq!((moved.region, moved.epoch, moved.name.as_str()), (Region::Us, 2, "org 1"));
    assert_eq!(after.len(), before.len() + 1, "one audit event more: the arrival");
    let users = list_user_orgs(&target.state, "bob", None, 10).unwrap().0;
    assert_eq!(users.len(), 1, "the user index is rebuilt at the target");
    assert!(!keys_of(&target.state, &org).iter().any(|k| k.starts_with("sg/")), "nothing left staged");

    // The source: nothing of the org but the forwarding record, and it says where to go.
    assert_eq!(keys_of(&source.state, &org), vec![format!("fw/{org}")]);
    assert!(!source.state.map.values().any(|v| String::from_utf8_lossy(v).contains("sk-very-secret")));
    let refused = source
        .run(&Actor::user("alice"), Op::AddMember { org_id: org.clone(), user_id: "dan".into(), role: Role::Agent });
    assert_eq!(refused, Err(DomainError::OrgMoved { org_id: org.to_string(), region: "us".into(), epoch: 2 }));
    assert_eq!(keys_of(&source.state, &org), vec![format!("fw/{org}")], "a refusal there records nothing");

    // The target serves it: alice is still its Admin.
    let added = target
        .run(&Actor::user("alice"), Op::AddMember { org_id: org.clone(), user_id: "dan".into(), role: Role::Agent });
    assert!(added.is_ok(), "{added:?}");
}

#[test]
fn a_frozen_source_refuses_reads_and_writes_without_remembering_the_refusal() {
    let mut source = World::new();
    let org = rich_org(&mut source);
    step(&mut source, &org, MoveStep::BeginOut { move_id: MOVE.into(), target: Region::Us }).unwrap();
    let served = source
        .run(&Actor::user("alice"), Op::AddMember { org_id: org.clone(), user_id: "erin".into(), role: Role::Agent });
    assert!(served.is_ok(), "the source serves while the copy is taken: {served:?}");
    step(&mut source, &org, MoveStep::Freeze { move_id: MOVE.into() }).unwrap();

    let cmd = Command {
        request_id: "retry-me".into(),
        issued_at_ms: source.now_ms + 1,
        actor: Actor::user("alice"),
        op: Op::AddMember { org_id: org.clone(), user_id: "dan".into(), role: Role::Agent },
    };
    let moving = DomainError::OrgMoving { org_id: org.to_string(), region: "us".into() };
    assert_eq!(apply(&mut source.state, &cmd).unwrap(), Err(moving.clone()));
    assert!(source.state.get(b"r/retry-me").unwrap().is_none(), "the refusal is not remembered");
    let read =
        crate::policy::authorize_query(&source.state, &Actor::user("alice"), Some(&org), crate::QueryKind::GetOrg);
    assert_eq!(read, Err(QueryError::Domain(moving)));

    // Rolled back, the same request applies.
    step(&mut source, &org, MoveStep::AbortOut { move_id: MOVE.into() }).unwrap();
    assert!(apply(&mut source.state, &cmd).unwrap().is_ok());
}

#[test]
fn a_stale_copy_cannot_be_activated_and_staging_needs_the_newest_copy() {
    let mut source = World::new();
    let mut target = World::other_region();
    let org = rich_org(&mut source);
    begin_copying(&mut source, &mut target, &org);
    let image = org_image(&source.state, &org).unwrap();
    let n = image.len() as u64;
    step(
        &mut target,
        &org,
        MoveStep::Stage {
            move_id: MOVE.into(),
            copy_id: "a".into(),
            first: true,
            records: image.clone(),
            deletes: vec![],
        },
    )
    .unwrap();
    // Another driver starts a copy of its own: the first one's later chunks are refused.
    step(
        &mut target,
        &org,
        MoveStep::Stage { move_id: MOVE.into(), copy_id: "b".into(), first: true, records: vec![], deletes: vec![] },
    )
    .unwrap();
    let late = step(
        &mut target,
        &org,
        MoveStep::Stage { move_id: MOVE.into(), copy_id: "a".into(), first: false, records: image, deletes: vec![] },
    );
    assert!(matches!(late, Err(DomainError::FailedPrecondition { .. })), "{late:?}");
    step(
        &mut target,
        &org,
        MoveStep::Advance {
            move_id: MOVE.into(),
            from: MovePhase::Copying,
            to: MovePhase::Frozen,
            note: MoveNote::default(),
        },
    )
    .unwrap();
    let stale = step(
        &mut target,
        &org,
        MoveStep::Activate { move_id: MOVE.into(), copy_id: "a".into(), records: n, to_epoch: 2 },
    );
    assert!(matches!(stale, Err(DomainError::FailedPrecondition { .. })), "{stale:?}");
    let short = step(
        &mut target,
        &org,
        MoveStep::Activate { move_id: MOVE.into(), copy_id: "b".into(), records: n, to_epoch: 2 },
    );
    assert!(matches!(short, Err(DomainError::FailedPrecondition { .. })), "{short:?}");
    assert!(get_org(&target.state, &org).unwrap().is_none(), "nothing went live");
}

#[test]
fn a_move_aborts_until_the_switch_and_only_completes_after_it() {
    let mut source = World::new();
    let mut target = World::other_region();
    let org = rich_org(&mut source);
    let data_before = source.data();
    step(&mut target, &org, MoveStep::Reserve { move_id: MOVE.into(), source: Region::Eu, target: Region::Us })
        .unwrap();
    step(&mut source, &org, MoveStep::BeginOut { move_id: MOVE.into(), target: Region::Us }).unwrap();
    step(&mut source, &org, MoveStep::Freeze { move_id: MOVE.into() }).unwrap();
    let note = MoveNote { from_epoch: Some(1), write_pause_ms: None };
    step(
        &mut target,
        &org,
        MoveStep::Advance { move_id: MOVE.into(), from: MovePhase::Reserved, to: MovePhase::Copying, note },
    )
    .unwrap();
    let image = org_image(&source.state, &org).unwrap();
    step(
        &mut target,
        &org,
        MoveStep::Stage { move_id: MOVE.into(), copy_id: "a".into(), first: true, records: image, deletes: vec![] },
    )
    .unwrap();
    step(&mut target, &org, MoveStep::AbortIn { move_id: MOVE.into(), reason: "ops asked".into() }).unwrap();
    step(&mut source, &org, MoveStep::AbortOut { move_id: MOVE.into() }).unwrap();
    assert_eq!(keys_of(&target.state, &org), vec![format!("mv/{org}")], "the target keeps only the aborted record");
    assert_eq!(source.data(), data_before, "the source is as it was");
    assert!(source
        .run(&Actor::user("alice"), Op::AddMember { org_id: org.clone(), user_id: "dan".into(), role: Role::Agent })
        .is_ok());

    // A new move after the abort, to the switch: now neither side may abort.
    let mut target = World::other_region();
    move_until_switch(&mut source, &mut target, &org);
    let late = step(&mut target, &org, MoveStep::AbortIn { move_id: MOVE.into(), reason: "too late".into() });
    assert!(matches!(late, Err(DomainError::FailedPrecondition { .. })), "{late:?}");
    step(&mut source, &org, MoveStep::FinishOut { move_id: MOVE.into(), epoch: 2 }).unwrap();
    let late = step(&mut source, &org, MoveStep::AbortOut { move_id: MOVE.into() });
    assert!(matches!(late, Err(DomainError::FailedPrecondition { .. })), "{late:?}");
    // Repeating the finish answers the forwarding again.
    assert!(matches!(
        step(&mut source, &org, MoveStep::FinishOut { move_id: MOVE.into(), epoch: 2 }),
        Ok(MoveState::Forwarded(_))
    ));
}

#[test]
fn concurrent_moves_and_moves_of_what_is_not_here_are_refused() {
    let mut source = World::new();
    let org = rich_org(&mut source);
    step(&mut source, &org, MoveStep::BeginOut { move_id: MOVE.into(), target: Region::Us }).unwrap();
    let second = step(&mut source, &org, MoveStep::BeginOut { move_id: "move-2".into(), target: Region::Apac });
    assert!(matches!(second, Err(DomainError::FailedPrecondition { .. })), "{second:?}");
    let again = step(&mut source, &org, MoveStep::BeginOut { move_id: MOVE.into(), target: Region::Us });
    assert!(again.is_ok(), "a repeated step answers the record: {again:?}");
    let missing = step(
        &mut source,
        &OrgId::from_u128(Region::Eu, 77),
        MoveStep::BeginOut { move_id: "m".into(), target: Region::Us },
    );
    assert!(matches!(missing, Err(DomainError::NotFound { .. })), "{missing:?}");
    let here =
        step(&mut source, &org, MoveStep::Reserve { move_id: "m3".into(), source: Region::Us, target: Region::Eu });
    assert!(matches!(here, Err(DomainError::FailedPrecondition { .. })), "{here:?}");
    let member = source.run(
        &Actor::user("alice"),
        Op::Relocate { org_id: org.clone(), step: MoveStep::Freeze { move_id: MOVE.into() } },
    );
    assert!(matches!(member, Err(DomainError::PermissionDenied { .. })), "only platform admins move orgs: {member:?}");
}

#[test]
fn the_frozen_copy_staged_as_a_delta_of_the_first_one_moves_the_org_whole() {
    let mut source = World::new();
    let mut target = World::other_region();
    let org = rich_org(&mut source);
    begin_copying(&mut source, &mut target, &org);
    let early = org_image(&source.state, &org).unwrap();
    let staged = MoveStep::Stage {
        move_id: MOVE.into(),
        copy_id: "c1".into(),
        first: true,
        records: early.clone(),
        deletes: vec![],
    };
    step(&mut target, &org, staged).unwrap();
    // The source keeps serving while the copy is staged: a member comes, another goes.
    let alice = Actor::user("alice");
    source.run(&alice, Op::AddMember { org_id: org.clone(), user_id: "late".into(), role: Role::Agent }).unwrap();
    source.run(&alice, Op::RemoveMember { org_id: org.clone(), user_id: "bob".into() }).unwrap();
    step(&mut source, &org, MoveStep::Freeze { move_id: MOVE.into() }).unwrap();
    let note = MoveNote::default();
    step(
        &mut target,
        &org,
        MoveStep::Advance { move_id: MOVE.into(), from: MovePhase::Copying, to: MovePhase::Frozen, note },
    )
    .unwrap();
    let frozen = org_image(&source.state, &org).unwrap();
    let (writes, deletes) = crate::relocation::image_delta(&early, &frozen);
    assert!(writes.len() < frozen.len() / 2, "the delta is small: {} of {}", writes.len(), frozen.len());
    assert!(deletes.iter().any(|k| k.ends_with("/bob")), "bob's membership goes: {deletes:?}");
    let delta = MoveStep::Stage { move_id: MOVE.into(), copy_id: "c1".into(), first: false, records: writes, deletes };
    step(&mut target, &org, delta).unwrap();
    // Staged in place, yet nothing of it is reachable at the target before the switch.
    let staged_read = crate::policy::authorize_query(&target.state, &alice, Some(&org), crate::QueryKind::ListMembers);
    assert_eq!(staged_read, Err(QueryError::Domain(DomainError::org_not_found(&org))));
    assert!(list_user_orgs(&target.state, "alice", None, 10).unwrap().0.is_empty());
    assert!(get_org(&target.state, &org).unwrap().is_none());
    let records = frozen.len() as u64;
    step(&mut target, &org, MoveStep::Activate { move_id: MOVE.into(), copy_id: "c1".into(), records, to_epoch: 2 })
        .unwrap();
    assert_eq!(list_user_orgs(&target.state, "alice", None, 10).unwrap().0.len(), 1, "live: listed");

    let moved: BTreeMap<_, _> = org_image(&target.state, &org).unwrap().into_iter().collect();
    for (key, value) in &frozen {
        if !(key.starts_with("o/") || key.starts_with("an/")) {
            assert_eq!(moved.get(key), Some(value), "{key} differs after the move");
        }
    }
    assert!(get_member(&target.state, &org, "late").unwrap().is_some());
    assert!(get_member(&target.state, &org, "bob").unwrap().is_none());
    assert_eq!(list_user_orgs(&target.state, "bob", None, 10).unwrap().0.len(), 0, "bob's index entry never arrives");
}
