//! Applying entries: order, atomicity, and agreement with the model's in-memory reference.

use openraft::storage::RaftStateMachine;
use openraft::Entry;
use orgplane_model::state::{apply, get_org, list_members, MemState, REQUEST_ID_TTL_MS};
use orgplane_model::{Command, CommandOutcome, DomainError, Op, Role};
use orgplane_raft::TypeConfig;
use proptest::prelude::*;

use crate::support::{blank, cmd, dump, fresh_store, log_id, normal, org_id};

#[tokio::test]
async fn commands_of_one_request_see_each_other_and_answer_in_order() {
    let (_dir, _log, mut sm) = fresh_store();
    let org = org_id(1);
    let add = |request: &str, user: &str, role| {
        cmd(request, 1_000, Op::AddMember { org_id: org.clone(), user_id: user.into(), role })
    };
    let responses = sm
        .apply([
            // The members can only be added because the overlay shows them the new org.
            normal(
                1,
                1,
                vec![
                    cmd("create", 1_000, Op::CreateOrg { id: org.clone(), name: "Acme".into() }),
                    add("alice", "alice", Role::Admin),
                    add("bob", "bob", Role::Viewer),
                ],
            ),
            blank(1, 2),
            normal(
                1,
                3,
                vec![
                    add("alice-again", "alice", Role::Agent),
                    cmd(
                        "promote",
                        1_000,
                        Op::SetMemberRole { org_id: org.clone(), user_id: "bob".into(), role: Role::Developer },
                    ),
                ],
            ),
        ])
        .await
        .unwrap();

    let shapes: Vec<Vec<String>> = responses.iter().map(|r| r.results.iter().map(outcome_shape).collect()).collect();
    assert_eq!(
        shapes,
        vec![
            vec!["org Acme".to_string(), "member alice Admin".into(), "member bob Viewer".into()],
            vec![],
            vec!["already exists".into(), "member bob Developer".into()],
        ]
    );
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1, 3)));
    let (members, _) = list_members(&sm.state_reader(), &org, None, 10).unwrap();
    let roles: Vec<_> = members.iter().map(|m| (m.user_id.as_str(), m.role.clone())).collect();
    assert_eq!(roles, vec![("alice", Role::Admin), ("bob", Role::Developer)]);
}

/// A short description of a command's answer, to compare answers in order.
fn outcome_shape(result: &Result<CommandOutcome, DomainError>) -> String {
    match result {
        Ok(CommandOutcome::Org(org)) => format!("org {}", org.name),
        Ok(CommandOutcome::Member(m)) => format!("member {} {:?}", m.user_id, m.role),
        Ok(other) => format!("{other:?}"),
        Err(DomainError::AlreadyExists { .. }) => "already exists".into(),
        Err(other) => format!("refused: {other}"),
    }
}

#[tokio::test]
async fn a_fault_in_any_entry_writes_nothing_of_the_call() {
    let (_dir, _log, mut sm) = fresh_store();
    sm.apply([normal(1, 1, vec![cmd("c0", 1_000, Op::CreateOrg { id: org_id(5), name: "Before".into() })])])
        .await
        .unwrap();
    // An org record that is not JSON: touching it is a storage fault, not a refusal.
    sm.plant_record_for_test(format!("o/{}", org_id(9)).as_bytes(), b"not json");
    let before = dump(&sm.state_reader());

    let result = sm
        .apply([
            normal(1, 2, vec![cmd("c1", 1_000, Op::CreateOrg { id: org_id(1), name: "Lost".into() })]),
            normal(
                1,
                3,
                vec![cmd(
                    "u9",
                    1_000,
                    Op::UpdateOrg {
                        id: org_id(9),
                        name: Some("x".into()),
                        allowed_import_regions: None,
                        expected_version: None,
                    },
                )],
            ),
        ])
        .await;

    let error = result.expect_err("a corrupt record must fail the apply").to_string();
    assert!(error.contains("applying log index 3"), "{error}");
    assert_eq!(get_org(&sm.state_reader(), &org_id(1)).unwrap(), None, "the first entry's org must not be written");
    assert_eq!(dump(&sm.state_reader()), before);
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1, 1)));
}

/// One command of a generated sequence, with where it goes: the same request as the previous
/// command, a new entry, or a new `apply` call.
#[derive(Debug, Clone)]
struct Step {
    op: u8,
    org: u8,
    user: u8,
    role: u8,
    expected_version: Option<u8>,
    reused_request_id: Option<u8>,
    /// Past the request-id TTL, so the model expires old ids inside this batch.
    jump_past_ttl: bool,
    placement: u8,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0u8..6,
        0u8..3,
        0u8..3,
        0u8..4,
        proptest::option::of(1u8..4),
        proptest::option::weighted(0.3, 0u8..4),
        proptest::bool::weighted(0.1),
        0u8..3,
    )
        .prop_map(|(op, org, user, role, expected_version, reused_request_id, jump_past_ttl, placement)| Step {
            op,
            org,
            user,
            role,
            expected_version,
            reused_request_id,
            jump_past_ttl,
            placement,
        })
}

fn command(step: &Step, position: usize, at_ms: u64) -> Command {
    let org = org_id(u128::from(step.org) + 1);
    let user = ["alice", "bob", "carol"][usize::from(step.user)].to_string();
    let role = Role::BUILTIN[usize::from(step.role)].clone();
    let expected_version = step.expected_version.map(u64::from);
    let op = match step.op {
        0 => Op::CreateOrg { id: org, name: format!("org {position}") },
        1 => Op::UpdateOrg {
            id: org,
            name: Some(format!("renamed {position}")),
            allowed_import_regions: None,
            expected_version,
        },
        2 => Op::DeleteOrg { id: org, expected_version },
        3 => Op::AddMember { org_id: org, user_id: user, role },
        4 => Op::SetMemberRole { org_id: org, user_id: user, role },
        _ => Op::RemoveMember { org_id: org, user_id: user },
    };
    let request_id = match step.reused_request_id {
        Some(n) => format!("shared-{n}"),
        None => format!("req-{position}"),
    };
    cmd(&request_id, at_ms, op)
}

/// Places the commands into `apply` calls of entries of requests, as `placement` says.
fn into_calls(steps: &[Step]) -> (Vec<Command>, Vec<Vec<Entry<TypeConfig>>>) {
    let mut commands = Vec::new();
    let mut calls: Vec<Vec<Vec<Command>>> = Vec::new();
    let mut at_ms = 1_000;
    for (position, step) in steps.iter().enumerate() {
        at_ms += if step.jump_past_ttl { REQUEST_ID_TTL_MS + 1 } else { 1 };
        let command = command(step, position, at_ms);
        commands.push(command.clone());
        match (step.placement, calls.last_mut()) {
            (0, Some(call)) => call.last_mut().expect("a call has an entry").push(command),
            (1, Some(call)) => call.push(vec![command]),
            _ => calls.push(vec![vec![command]]),
        }
    }
    let mut index = 0;
    let calls = calls
        .into_iter()
        .map(|call| {
            call.into_iter()
                .map(|request| {
                    index += 1;
                    normal(1, index, request)
                })
                .collect()
        })
        .collect();
    (commands, calls)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// The same commands through the store (batched into requests, entries and calls at
    /// random) and through the model's `MemState` give the same answers and the same state.
    /// This exercises the overlay where it matters: commands that read what earlier commands
    /// of the same batch wrote or deleted, scans included (deleting an org scans its members,
    /// expiry scans the request-id index).
    #[test]
    fn the_store_agrees_with_the_in_memory_reference(steps in proptest::collection::vec(step(), 1..60)) {
        let (commands, calls) = into_calls(&steps);
        let mut reference = MemState::default();
        let expected: Vec<_> = commands.iter().map(|c| apply(&mut reference, c).unwrap()).collect();
        let last_index = calls.iter().map(Vec::len).sum::<usize>() as u64;

        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (got, state, applied) = runtime.block_on(async {
            let (_dir, _log, mut sm) = fresh_store();
            let mut got = Vec::new();
            for call in calls {
                for response in sm.apply(call).await.unwrap() {
                    got.extend(response.results);
                }
            }
            (got, dump(&sm.state_reader()), sm.applied_state().await.unwrap().0)
        });

        prop_assert_eq!(got, expected);
        prop_assert_eq!(state, reference.map);
        prop_assert_eq!(applied, Some(log_id(1, last_index)));
    }
}
