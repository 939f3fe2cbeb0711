//! Property test of the access rules through the public API: random sequences of membership,
//! role and invitation commands by random actors (members of every kind, an outsider, a
//! platform admin) never leave the org without an Admin, never let anyone grant a permission
//! they do not hold, and never let a member raise their own permissions.

use orgplane_model::invitation::InvitationResolution;
use orgplane_model::policy::member_permissions;
use orgplane_model::state::{apply, get_invitation, list_members, list_user_orgs, MemState};
use orgplane_model::{Actor, Command, Op, OrgId, Permission, PermissionSet, Region, Role};
use proptest::prelude::*;

const USERS: usize = 7;
const CUSTOM: [&str; 3] = ["c0", "c1", "c2"];

fn org() -> OrgId {
    OrgId::from_u128(Region::Us, 7)
}

fn subject(n: usize) -> String {
    format!("u{n}")
}

fn email(n: usize) -> String {
    format!("u{n}@example.com")
}

/// Actor `n`: users `0..USERS` (with their verified email), then a platform admin.
fn actor(n: usize) -> Actor {
    if n < USERS {
        Actor::user(subject(n)).with_verified_email(email(n))
    } else {
        Actor::platform_admin("ops")
    }
}

fn role(n: u8) -> Role {
    match n % 7 {
        0 => Role::Admin,
        1 => Role::Developer,
        2 => Role::Agent,
        3 => Role::Viewer,
        k => Role::Custom(CUSTOM[usize::from(k - 4)].to_string()),
    }
}

fn permissions(mask: u16) -> PermissionSet {
    Permission::ALL.into_iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, p)| p).collect()
}

#[derive(Debug, Clone)]
struct Step {
    actor: usize,
    kind: u8,
    target: usize,
    role: u8,
    mask: u16,
}

fn step() -> impl Strategy<Value = Step> {
    (0..=USERS, 0u8..8, 0..USERS, 0u8..7, 0u16..(1 << 13)).prop_map(|(actor, kind, target, role, mask)| Step {
        actor,
        kind,
        target,
        role,
        mask,
    })
}

fn op(step: &Step) -> Op {
    let org_id = org();
    let custom = CUSTOM[step.target % CUSTOM.len()].to_string();
    match step.kind {
        0 => Op::AddMember { org_id, user_id: subject(step.target), role: role(step.role) },
        1 => Op::SetMemberRole { org_id, user_id: subject(step.target), role: role(step.role) },
        2 => Op::RemoveMember { org_id, user_id: subject(step.target) },
        3 => Op::CreateRole { org_id, name: custom, permissions: permissions(step.mask) },
        4 => Op::UpdateRole { org_id, name: custom, permissions: permissions(step.mask), expected_version: None },
        5 => Op::DeleteRole { org_id, name: custom },
        6 => Op::CreateInvitation { org_id, email: email(step.target), role: role(step.role), expires_at_ms: None },
        _ => Op::AcceptInvitation { org_id },
    }
}

struct Run {
    state: MemState,
    now_ms: u64,
    requests: u64,
}

impl Run {
    fn apply(&mut self, actor: Actor, op: Op) -> orgplane_model::CommandResult {
        self.requests += 1;
        self.now_ms += 1_000;
        let cmd = Command { request_id: format!("r{}", self.requests), issued_at_ms: self.now_ms, actor, op };
        apply(&mut self.state, &cmd).expect("no storage fault in memory")
    }

    /// What every user holds now (`None`: not a member).
    fn holdings(&self) -> Vec<Option<PermissionSet>> {
        (0..USERS).map(|n| member_permissions(&self.state, &org(), &subject(n)).unwrap()).collect()
    }

    /// An org with an Admin (u0), one member of each other built-in role, and two custom
    /// roles held by u4 (member management) and u5 (role management).
    fn start() -> Run {
        let mut run = Run { state: MemState::default(), now_ms: 1_000_000, requests: 0 };
        let org_id = org();
        let setup = [
            Op::CreateOrg { id: org_id.clone(), name: "Prop".into() },
            Op::CreateRole {
                org_id: org_id.clone(),
                name: "c0".into(),
                permissions: [
                    Permission::OrgRead,
                    Permission::MembersRead,
                    Permission::AppsRead,
                    Permission::MembersManage,
                ]
                .into_iter()
                .collect(),
            },
            Op::CreateRole {
                org_id: org_id.clone(),
                name: "c1".into(),
                permissions: [Permission::OrgRead, Permission::RolesManage, Permission::InvitationsManage]
                    .into_iter()
                    .collect(),
            },
        ];
        for op in setup {
            run.apply(Actor::System, op).unwrap();
        }
        for (n, r) in [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5)] {
            let op = Op::AddMember { org_id: org_id.clone(), user_id: subject(n), role: role(r) };
            run.apply(Actor::System, op).unwrap();
        }
        run
    }
}

fn admins(state: &MemState) -> usize {
    let (members, _) = list_members(state, &org(), None, 1000).unwrap();
    members.iter().filter(|m| m.role == Role::Admin).count()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn access_rules_hold_under_any_sequence(steps in proptest::collection::vec(step(), 1..40)) {
        let mut run = Run::start();
        prop_assert_eq!(admins(&run.state), 1);
        // Accepting is done by the user invited last (successfully), so invitations are
        // accepted often enough to matter.
        let mut last_invited: Option<usize> = None;
        for step in &steps {
            let mut step = step.clone();
            if step.kind == 7 {
                step.actor = last_invited.unwrap_or(step.actor);
            }
            let step = &step;
            let before = run.holdings();
            let op = op(step);
            let accepting = matches!(op, Op::AcceptInvitation { .. });
            let invitation = get_invitation(&run.state, &org(), &email(step.actor)).unwrap();
            let result = run.apply(actor(step.actor), op.clone());
            let after = run.holdings();
            if step.kind == 6 && result.is_ok() {
                last_invited = Some(step.target);
            }

            prop_assert!(admins(&run.state) >= 1, "no Admin left after {:?} by {}: {:?}", op, step.actor, result);
            for n in 0..USERS {
                // The user index always agrees with the membership.
                let (orgs, _) = list_user_orgs(&run.state, &subject(n), None, 10).unwrap();
                let member = list_members(&run.state, &org(), None, 1000).unwrap().0.into_iter().find(|m| m.user_id == subject(n));
                prop_assert_eq!(orgs.first().map(|u| u.role.clone()), member.map(|m| m.role));
            }
            if step.actor >= USERS {
                continue; // a platform admin may grant anything
            }
            let actor_before = before[step.actor].unwrap_or_default();
            if accepting {
                // Accepting seats a non-member with what the (still entitled) inviter offered.
                if result.is_ok() {
                    prop_assert!(before[step.actor].is_none(), "a member accepted an invitation");
                    let invitation = invitation.expect("accepted an invitation that was there");
                    let resolution = get_invitation(&run.state, &org(), &email(step.actor)).unwrap().unwrap().resolution;
                    let accepted = matches!(resolution, Some(InvitationResolution::Accepted { .. }));
                    prop_assert!(accepted, "the invitation is not marked accepted");
                    if let Some(inviter) = invitation.invited_by.subject() {
                        if !invitation.invited_by.is_privileged() {
                            let inviter_holds = member_permissions(&run.state, &org(), inviter).unwrap().unwrap_or_default();
                            prop_assert!(after[step.actor].unwrap().is_subset(inviter_holds));
                        }
                    }
                }
                for n in (0..USERS).filter(|n| *n != step.actor) {
                    prop_assert_eq!(before[n], after[n]);
                }
                continue;
            }
            prop_assert!(
                after[step.actor].unwrap_or_default().is_subset(actor_before),
                "u{} raised their own permissions with {:?}: {:?} -> {:?}",
                step.actor, op, before[step.actor], after[step.actor]
            );
            for n in 0..USERS {
                let allowed = before[n].unwrap_or_default().union(actor_before);
                prop_assert!(
                    after[n].unwrap_or_default().is_subset(allowed),
                    "u{} granted u{} more than they hold with {:?}: {:?} -> {:?}",
                    step.actor, n, op, before[n], after[n]
                );
            }
        }
    }
}
