//! Authorization, roles, invitations, resources and the audit log, through `apply` and the
//! queries: one test per rule.

use super::test_support::{org_id, World};
use super::*;
use crate::audit::{AuditFilter, AuditOutcome};
use crate::id::OrgId;
use crate::invitation::{InvitationStatus, DEFAULT_INVITATION_TTL_MS};
use crate::permission::{Permission as P, PermissionSet};
use crate::policy::{authorize, authorize_op, authorize_query, QueryKind};
use crate::resource::ConfigEntry;
use crate::role::Role;

fn user(subject: &str) -> Actor {
    Actor::user(subject)
}

fn code(result: &CommandResult) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

fn denied_permission(result: &CommandResult) -> Option<String> {
    match result {
        Err(DomainError::PermissionDenied { permission, .. }) => Some(permission.clone()),
        _ => None,
    }
}

fn integration(org: &OrgId, name: &str) -> Op {
    Op::CreateIntegration {
        org_id: org.clone(),
        name: name.into(),
        kind: "twilio".into(),
        config: vec![ConfigEntry::plain("account", "AC1")],
    }
}

fn set_role(org: &OrgId, user: &str, role: Role) -> Op {
    Op::SetMemberRole { org_id: org.clone(), user_id: user.into(), role }
}

fn remove(org: &OrgId, user: &str) -> Op {
    Op::RemoveMember { org_id: org.clone(), user_id: user.into() }
}

fn add(org: &OrgId, user: &str, role: Role) -> Op {
    Op::AddMember { org_id: org.clone(), user_id: user.into(), role }
}

#[test]
fn an_agent_cannot_create_an_integration_and_a_developer_can() {
    let mut w = World::new();
    let org = w.org_with_admin(1, "ada");
    w.add(&org, "agnes", Role::Agent);
    w.add(&org, "dev", Role::Developer);
    let refused = w.run(&user("agnes"), integration(&org, "main"));
    assert_eq!(denied_permission(&refused).as_deref(), Some("resources.integrate"), "{refused:?}");
    assert!(refused.unwrap_err().to_string().contains("resources.integrate"));
    assert!(w.run(&user("dev"), integration(&org, "main")).is_ok());
    // Both may read it.
    for reader in ["agnes", "dev", "ada"] {
        assert!(authorize(&w.state, &user(reader), &org, P::ResourcesRead).is_ok(), "{reader}");
    }
}

#[test]
fn the_read_table_follows_the_roles() {
    let mut w = World::new();
    let org = w.org_with_admin(1, "ada");
    for (name, role) in [("dev", Role::Developer), ("agnes", Role::Agent), ("vic", Role::Viewer)] {
        w.add(&org, name, role);
    }
    let allowed =
        |w: &World, who: &str, kind: QueryKind| authorize_query(&w.state, &user(who), Some(&org), kind).is_ok();
    assert!(allowed(&w, "vic", QueryKind::GetOrg));
    assert!(allowed(&w, "vic", QueryKind::ListMembers));
    assert!(!allowed(&w, "vic", QueryKind::ListIntegrations));
    assert!(allowed(&w, "agnes", QueryKind::ListIntegrations));
    assert!(!allowed(&w, "dev", QueryKind::ListAuditEvents));
    assert!(!allowed(&w, "dev", QueryKind::ListInvitations));
    assert!(!allowed(&w, "ada", QueryKind::ListOrgs), "listing the region's orgs is for platform admins");
    for kind in QueryKind::ALL {
        assert!(allowed(&w, "ada", kind) || kind == QueryKind::ListOrgs, "{kind:?}");
        assert!(authorize_query(&w.state, &Actor::platform_admin("ops"), Some(&org), kind).is_ok());
        assert!(authorize_query(&w.state, &Actor::System, Some(&org), kind).is_ok());
    }
}

/// One op of every kind about `org`, for the existence-leak checks.
fn every_op(org: &OrgId) -> Vec<Op> {
    vec![
        Op::CreateOrg { id: org.clone(), name: "x".into() },
        Op::UpdateOrg { id: org.clone(), name: Some("x".into()), allowed_import_regions: None, expected_version: None },
        Op::DeleteOrg { id: org.clone(), expected_version: None },
        add(org, "mallory", Role::Admin),
        set_role(org, "ada", Role::Viewer),
        remove(org, "ada"),
        Op::CreateRole { org_id: org.clone(), name: "r".into(), permissions: PermissionSet::empty() },
        Op::UpdateRole {
            org_id: org.clone(),
            name: "r".into(),
            permissions: PermissionSet::all(),
            expected_version: None,
        },
        Op::DeleteRole { org_id: org.clone(), name: "r".into() },
        Op::CreateInvitation {
            org_id: org.clone(),
            email: "m@example.com".into(),
            role: Role::Admin,
            expires_at_ms: None,
        },
        Op::RevokeInvitation { org_id: org.clone(), email: "m@example.com".into() },
        Op::AcceptInvitation { org_id: org.clone() },
        integration(org, "main"),
        Op::UpdateIntegration {
            org_id: org.clone(),
            name: "main".into(),
            set: vec![],
            remove: vec![],
            expected_version: None,
        },
        Op::DeleteIntegration { org_id: org.clone(), name: "main".into() },
        Op::CreatePhoneNumber { org_id: org.clone(), number: "+14155550100".into(), label: String::new() },
        Op::UpdatePhoneNumber {
            org_id: org.clone(),
            number: "+14155550100".into(),
            label: String::new(),
            expected_version: None,
        },
        Op::DeletePhoneNumber { org_id: org.clone(), number: "+14155550100".into() },
    ]
}

#[test]
fn outsiders_cannot_tell_an_org_they_are_not_in_from_a_missing_one() {
    let mut w = World::new();
    let existing = w.org_with_admin(1, "ada");
    w.org_with_admin(2, "mallory");
    w.run(&Actor::System, integration(&existing, "main")).unwrap();
    w.run(
        &Actor::System,
        Op::CreateRole { org_id: existing.clone(), name: "r".into(), permissions: PermissionSet::empty() },
    )
    .unwrap();
    let missing = org_id(99);
    let before = w.data();
    // mallory is an Admin elsewhere, with a verified email that no invitation names.
    let mallory = user("mallory").with_verified_email("m@example.com");
    let (a, b) = (existing.to_string(), missing.to_string());
    for (op_existing, op_missing) in every_op(&existing).into_iter().zip(every_op(&missing)) {
        let kind = op_existing.kind();
        let got_existing = w.run(&mallory, op_existing);
        let got_missing = w.run(&mallory, op_missing);
        let seen = |r: &CommandResult, id: &str| format!("{r:?}").replace(id, "ORG");
        assert_eq!(seen(&got_existing, &a), seen(&got_missing, &b), "{kind}");
        assert!(got_existing.is_err(), "{kind}");
    }
    for kind in QueryKind::ALL.into_iter().filter(|k| *k != QueryKind::ListOrgs) {
        let on = |org: &OrgId| {
            let r = authorize_query(&w.state, &mallory, Some(org), kind);
            format!("{r:?}").replace(&org.to_string(), "ORG")
        };
        assert_eq!(on(&existing), on(&missing), "{kind:?}");
        assert!(on(&existing).contains("NotFound"), "{kind:?}");
    }
    assert_eq!(w.data(), before, "nothing of an org changes by outsiders");
    assert!(list_audit_events(&w.state, &missing, &AuditFilter::default(), None, 100).unwrap().0.is_empty());
}

#[test]
fn only_platform_admins_provision_and_delete_orgs() {
    let mut w = World::new();
    let ops = Actor::platform_admin("ops");
    let created = w.run(&ops, Op::CreateOrg { id: org_id(1), name: "Acme".into() });
    assert!(created.is_ok(), "{created:?}");
    let refused = w.run(&user("ada"), Op::CreateOrg { id: org_id(2), name: "Mine".into() });
    assert_eq!(denied_permission(&refused).as_deref(), Some("platform_admin"));
    // The platform admin seats the first Admin, who may not delete the org.
    assert!(w.run(&ops, add(&org_id(1), "ada", Role::Admin)).is_ok());
    let by_admin = w.run(&user("ada"), Op::DeleteOrg { id: org_id(1), expected_version: None });
    assert_eq!(denied_permission(&by_admin).as_deref(), Some("platform_admin"));
    let by_outsider = w.run(&user("eve"), Op::DeleteOrg { id: org_id(1), expected_version: None });
    assert_eq!(code(&by_outsider), "not_found");
    assert!(w.run(&ops, Op::DeleteOrg { id: org_id(1), expected_version: None }).is_ok());
}

#[test]
fn the_last_admin_can_be_neither_removed_nor_demoted_by_anyone() {
    let mut w = World::new();
    let org = w.org_with_admin(1, "ada");
    for actor in [user("ada"), Actor::platform_admin("ops"), Actor::System] {
        let demoted = w.run(&actor, set_role(&org, "ada", Role::Developer));
        assert_eq!(code(&demoted), "failed_precondition", "{actor}: {demoted:?}");
        assert!(demoted.unwrap_err().to_string().contains("last admin"));
        assert_eq!(code(&w.run(&actor, remove(&org, "ada"))), "failed_precondition", "{actor}");
    }
    // With a second Admin, either may go, but not both.
    w.add(&org, "bob", Role::Admin);
    assert!(w.run(&user("ada"), set_role(&org, "ada", Role::Viewer)).is_ok());
    assert_eq!(code(&w.run(&user("bob"), remove(&org, "bob"))), "failed_precondition");
    assert_eq!(get_member(&w.state, &org, "bob").unwrap().unwrap().role, Role::Admin);
    // An Admin keeping the role is no demotion.
    assert!(w.run(&user("bob"), set_role(&org, "bob", Role::Admin)).is_ok());
}

#[test]
fn nobody_grants_a_permission_they_do_not_hold() {
    let mut w = World::new();
    let org = w.org_with_admin(1, "ada");
    // hr manages members and holds what a Viewer holds, nothing else.
    w.define(&org, "hr", &[P::OrgRead, P::MembersRead, P::AppsRead, P::MembersManage]);
    w.add(&org, "hank", Role::Custom("hr".into()));
    w.add(&org, "vic", Role::Viewer);
    let hank = user("hank");

    assert!(w.run(&hank, add(&org, "val", Role::Viewer)).is_ok(), "a Viewer's permissions are all hank's");
    let r = w.run(&hank, add(&org, "dan", Role::Developer));
    assert_eq!(denied_permission(&r).as_deref(), Some("resources.read"), "{r:?}");
    assert!(r.unwrap_err().to_string().contains("granting role developer"));
    assert!(denied_permission(&w.run(&hank, set_role(&org, "vic", Role::Admin))).is_some());
    assert!(denied_permission(&w.run(&hank, set_role(&org, "hank", Role::Admin))).is_some(), "no self promotion");
    // Nor may hank act on someone more privileged than himself.
    assert!(denied_permission(&w.run(&hank, remove(&org, "ada"))).is_some());
    assert!(denied_permission(&w.run(&hank, set_role(&org, "ada", Role::Viewer))).is_some());
    // Demoting himself is fine.
    assert!(w.run(&hank, set_role(&org, "hank", Role::Viewer)).is_ok());

    // roles.manage does not let one define or widen a role beyond one's own permissions.
    w.define(&org, "roles", &[P::OrgRead, P::RolesManage]);
    w.add(&org, "rita", Role::Custom("roles".into()));
    let rita = user("rita");
    let wide =
        Op::CreateRole { org_id: org.clone(), name: "wide".into(), permissions: [P::AuditRead].into_iter().collect() };
    assert_eq!(denied_permission(&w.run(&rita, wide)).as_deref(), Some("audit.read"));
    let own = Op::UpdateRole {
        org_id: org.clone(),
        name: "roles".into(),
        permissions: [P::OrgRead, P::RolesManage, P::MembersManage].into_iter().collect(),
        expected_version: None,
    };
    assert_eq!(denied_permission(&w.run(&rita, own)).as_deref(), Some("members.manage"));
    let narrow =
        Op::CreateRole { org_id: org.clone(), name: "narrow".into(), permissions: [P::OrgRead].into_iter().collect() };
    assert!(w.run(&rita, narrow).is_ok());
    // A platform admin is exempt.
    let ops = Actor::platform_admin("ops");
    assert!(w.run(&ops, set_role(&org, "vic", Role::Admin)).is_ok());
}

#[test]
fn custom_roles_are_named_apart_from_builtins_and_stay_while_in_use() {
    let mut w = World::new();
    let org = w.org_with_admin(1, "ada");
    let ada = user("ada");
    for taken in ["admin", "Viewer", " developer "] {
        let r = w
            .run(&ada, Op::CreateRole { org_id: org.clone(), name: taken.into(), permissions: PermissionSet::empty() });
        assert_eq!(code(&r), "invalid_argument", "{taken}");
    }
    let r = w.run(&ada, add(&org, "x", Role::Custom("nope".into())));
    assert_eq!(code(&r), "not_found", "{r:?}");

    let create =
        Op::CreateRole { org_id: org.clone(), name: "Billing".into(), permissions: [P::OrgRead].into_iter().collect() };
    match w.run(&ada, create.clone()) {
        Ok(CommandOutcome::Role(role)) => assert_eq!(role.name, "billing", "names are lowercase"),
        other => panic!("{other:?}"),
    }
    assert_eq!(code(&w.run(&ada, create)), "already_exists");
    let billing = Role::Custom("billing".into());
    w.run(&ada, add(&org, "bill", billing.clone())).unwrap();
    let delete = Op::DeleteRole { org_id: org.clone(), name: "billing".into() };
    let held = w.run(&ada, delete.clone());
    assert_eq!(code(&held), "failed_precondition");
    assert!(held.unwrap_err().to_string().contains("bill"));
    w.run(&ada, remove(&org, "bill")).unwrap();
    let invite =
        Op::CreateInvitation { org_id: org.clone(), email: "b@example.com".into(), role: billing, expires_at_ms: None };
    w.run(&ada, invite).unwrap();
    assert_eq!(code(&w.run(&ada, delete.clone())), "failed_precondition", "a pending invitation offers it");
    w.run(&ada, Op::RevokeInvitation { org_id: org.clone(), email: "b@example.com".into() }).unwrap();
    assert!(w.run(&ada, delete).is_ok());
    assert!(get_custom_role(&w.state, &org, "billing").unwrap().is_none());

    // Updating changes what holders may do at once.
    w.define(&org, "ops", &[P::OrgRead]);
    w.add(&org, "olga", Role::Custom("ops".into()));
    assert!(authorize(&w.state, &user("olga"), &org, P::ResourcesRead).is_err());
    let widen = Op::UpdateRole {
        org_id: org.clone(),
        name: "ops".into(),
        permissions: [P::OrgRead, P::ResourcesRead].into_iter().collect(),
        expected_version: Some(1),
    };
    assert!(w.run(&ada, widen.clone()).is_ok());
    assert!(authorize(&w.state, &user("olga"), &org, P::ResourcesRead).is_ok());
    assert_eq!(code(&w.run(&ada, widen)), "version_mismatch");
    let (roles, _) = list_custom_roles(&w.state, &org, None, 10).unwrap();
    assert_eq!(roles.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), vec!["ops"]);
}

#[test]
fn invitations_seat_the_invitee_once_while_pending() {
    let mut w = World::new();
    let org = w.org_with_admin(1, "ada");
    let ada = user("ada");
    let invite = |email: &str, role: Role| Op::CreateInvitation {
        org_id: org.clone(),
        email: email.into(),
        role,
        expires_at_ms: None,
    };
    let created = w.run(&ada, invite("Carol@Example.com", Role::Developer));
    let Ok(CommandOutcome::Invitation(inv)) = created else { panic!("{created:?}") };
    assert_eq!(inv.email, "carol@example.com");
    assert_eq!(inv.expires_at_ms, w.now_ms + DEFAULT_INVITATION_TTL_MS);
    assert_eq!(code(&w.run(&ada, invite("carol@example.com", Role::Viewer))), "already_exists");

    let accept = Op::AcceptInvitation { org_id: org.clone() };
    // No verified email, the wrong one, the system: refused without a membership.
    assert_eq!(code(&w.run(&user("carol"), accept.clone())), "failed_precondition");
    assert_eq!(code(&w.run(&user("carol").with_verified_email("eve@example.com"), accept.clone())), "not_found");
    assert_eq!(code(&w.run(&Actor::System, accept.clone())), "failed_precondition");
    assert!(get_member(&w.state, &org, "carol").unwrap().is_none());

    let carol = user("carol").with_verified_email("CAROL@example.com");
    let accepted = w.run(&carol, accept.clone());
    assert!(matches!(&accepted, Ok(CommandOutcome::Member(m)) if m.role == Role::Developer), "{accepted:?}");
    assert_eq!(code(&w.run(&carol, accept.clone())), "failed_precondition", "accepted already");
    let status = get_invitation(&w.state, &org, "carol@example.com").unwrap().unwrap().status(w.now_ms);
    assert_eq!(status, InvitationStatus::Accepted);

    // Expired and revoked invitations are refused.
    w.run(&ada, invite("dan@example.com", Role::Viewer)).unwrap();
    w.now_ms += DEFAULT_INVITATION_TTL_MS;
    let dan = user("dan").with_verified_email("dan@example.com");
    let expired = w.run(&dan, accept.clone());
    assert!(expired.unwrap_err().to_string().contains("expired"));
    assert!(w.run(&ada, invite("dan@example.com", Role::Viewer)).is_ok(), "an expired invitation can be renewed");
    w.run(&ada, Op::RevokeInvitation { org_id: org.clone(), email: "dan@example.com".into() }).unwrap();
    assert!(w.run(&dan, accept.clone()).unwrap_err().to_string().contains("revoked"));

    // An invitation never changes an existing member's role.
    w.run(&ada, invite("ada@example.com", Role::Viewer)).unwrap();
    let r = w.run(&user("ada").with_verified_email("ada@example.com"), accept.clone());
    assert_eq!(code(&r), "already_exists");

    let (all, _) = list_invitations(&w.state, &org, None, 10).unwrap();
    assert_eq!(all.len(), 3);
}

#[test]
fn an_invitation_is_worth_what_its_inviter_may_grant_now() {
    let mut w = World::new();
    let org = w.org_with_admin(1, "ada");
    w.add(&org, "ian", Role::Admin);
    let ian = user("ian");
    let op = Op::CreateInvitation {
        org_id: org.clone(),
        email: "e@example.com".into(),
        role: Role::Admin,
        expires_at_ms: None,
    };
    w.run(&ian, op).unwrap();
    // An inviter may only offer roles they could grant.
    w.define(&org, "inviter", &[P::OrgRead, P::InvitationsManage]);
    w.add(&org, "ivy", Role::Custom("inviter".into()));
    let beyond = Op::CreateInvitation {
        org_id: org.clone(),
        email: "f@example.com".into(),
        role: Role::Viewer,
        expires_at_ms: None,
    };
    assert_eq!(denied_permission(&w.run(&user("ivy"), beyond)).as_deref(), Some("members.read"));
    // ian is demoted before the invitee accepts.
    w.run(&user("ada"), set_role(&org, "ian", Role::Viewer)).unwrap();
    let r = w.run(&user("eve").with_verified_email("e@example.com"), Op::AcceptInvitation { org_id: org.clone() });
    assert_eq!(code(&r), "failed_precondition", "{r:?}");
    assert!(get_member(&w.state, &org, "eve").unwrap().is_none());
}

#[test]
fn invitation_expiry_is_bounded() {
    let mut w = World::new();
    let org = w.org_with_admin(1, "ada");
    let now = w.now_ms;
    for (expires, expected) in
        [(now, "invalid_argument"), (now + 40 * 24 * 3_600_000, "invalid_argument"), (now + 60_000, "ok")]
    {
        let op = Op::CreateInvitation {
            org_id: org.clone(),
            email: "x@example.com".into(),
            role: Role::Viewer,
            expires_at_ms: Some(expires),
        };
        assert_eq!(code(&w.run(&user("ada"), op)), expected, "{expires}");
    }
}

#[test]
fn phone_numbers_are_e164_and_unique() {
    let mut w = World::new();
    let org = w.org_with_admin(1, "ada");
    let ada = user("ada");
    let create =
        |number: &str| Op::CreatePhoneNumber { org_id: org.clone(), number: number.into(), label: " Support ".into() };
    for bad in ["4155550100", "+0415555010", "+1 415 555 0100", "+1234567"] {
        assert_eq!(code(&w.run(&ada, create(bad))), "invalid_argument", "{bad}");
    }
    let r = w.run(&ada, create("+14155550100"));
    assert!(matches!(&r, Ok(CommandOutcome::PhoneNumber(p)) if p.label == "Support"), "{r:?}");
    assert_eq!(code(&w.run(&ada, create("+14155550100"))), "already_exists");
    let update = Op::UpdatePhoneNumber {
        org_id: org.clone(),
        number: "+14155550100".into(),
        label: "Sales".into(),
        expected_version: Some(1),
    };
    assert!(w.run(&ada, update).is_ok());
    assert_eq!(get_phone_number(&w.state, &org, "+14155550100").unwrap().unwrap().label, "Sales");
    assert_eq!(list_phone_numbers(&w.state, &org, None, 10).unwrap().0.len(), 1);
    assert!(w.run(&ada, Op::DeletePhoneNumber { org_id: org.clone(), number: "+14155550100".into() }).is_ok());
    assert_eq!(
        code(&w.run(&ada, Op::DeletePhoneNumber { org_id: org.clone(), number: "+14155550100".into() })),
        "not_found"
    );
}

const SECRET: &str = "sk_live_7Hq2ZpQ9secretvalue";
const SECRET_2: &str = "whsec_second_secret_0042";

#[test]
fn integrations_keep_secrets_write_only() {
    let mut w = World::new();
    let org = w.org_with_admin(1, "ada");
    w.add(&org, "dev", Role::Developer);
    let dev = user("dev");
    let create = Op::CreateIntegration {
        org_id: org.clone(),
        name: "payments".into(),
        kind: "stripe".into(),
        config: vec![ConfigEntry::plain("account", "acct_1"), ConfigEntry::secret("api_key", SECRET)],
    };
    let created = w.run(&dev, create.clone());
    let Ok(CommandOutcome::Integration(view)) = &created else { panic!("{created:?}") };
    assert_eq!(view.secret_keys, vec!["api_key".to_string()]);
    assert!(!view.config.contains_key("api_key"));
    assert_eq!(code(&w.run(&dev, create)), "already_exists");

    // Patch: the secret stays without being sent again; a key can turn secret; keys go.
    let update = Op::UpdateIntegration {
        org_id: org.clone(),
        name: "payments".into(),
        set: vec![ConfigEntry::secret("account", SECRET_2), ConfigEntry::plain("mode", "live")],
        remove: vec![],
        expected_version: Some(1),
    };
    let updated = w.run(&dev, update);
    let Ok(CommandOutcome::Integration(view)) = &updated else { panic!("{updated:?}") };
    assert_eq!(view.secret_keys, vec!["account".to_string(), "api_key".to_string()]);
    assert_eq!(view.config.keys().collect::<Vec<_>>(), vec!["mode"]);
    let clash = Op::UpdateIntegration {
        org_id: org.clone(),
        name: "payments".into(),
        set: vec![ConfigEntry::plain("mode", "test")],
        remove: vec!["mode".into()],
        expected_version: None,
    };
    assert_eq!(code(&w.run(&dev, clash)), "invalid_argument");
    // A refused update whose input holds a secret leaves no trace of it either.
    let bad = Op::UpdateIntegration {
        org_id: org.clone(),
        name: "payments".into(),
        set: vec![ConfigEntry::secret("bad key", SECRET)],
        remove: vec![],
        expected_version: None,
    };
    assert_eq!(code(&w.run(&dev, bad)), "invalid_argument");

    let got = get_integration(&w.state, &org, "payments").unwrap().unwrap();
    let (listed, _) = list_integrations(&w.state, &org, None, 10).unwrap();
    let (events, _) = list_audit_events(&w.state, &org, &AuditFilter::default(), None, 100).unwrap();
    let readable = [
        serde_json::to_string(&got).unwrap(),
        serde_json::to_string(&listed).unwrap(),
        serde_json::to_string(&events).unwrap(),
        format!("{got:?} {listed:?} {events:?} {created:?} {updated:?}"),
    ];
    for text in readable {
        assert!(!text.contains(SECRET) && !text.contains(SECRET_2), "a secret leaked: {text}");
    }
    // Only the integration's own record holds the secrets; request records (replayed to
    // retries) and everything else do not.
    for (key, value) in &w.state.map {
        let text = String::from_utf8_lossy(value);
        if !key.starts_with(b"ig/") {
            assert!(!text.contains(SECRET) && !text.contains(SECRET_2), "{}", String::from_utf8_lossy(key));
        }
    }
    assert!(w.run(&dev, Op::DeleteIntegration { org_id: org.clone(), name: "payments".into() }).is_ok());
    assert!(!w.state.map.values().any(|v| String::from_utf8_lossy(v).contains(SECRET)));
}

#[test]
fn every_change_and_refusal_is_audited_once() {
    let mut w = World::new();
    let org = w.org_with_admin(1, "ada");
    w.add(&org, "vic", Role::Viewer);
    let ada = user("ada");
    w.run(
        &ada,
        Op::UpdateOrg {
            id: org.clone(),
            name: Some("Renamed".into()),
            allowed_import_regions: None,
            expected_version: None,
        },
    )
    .unwrap();
    let refused = w.run(
        &user("vic"),
        Op::UpdateOrg {
            id: org.clone(),
            name: Some("Mine".into()),
            allowed_import_regions: None,
            expected_version: None,
        },
    );
    assert!(refused.is_err());
    // A retry answered from the request record leaves no second event.
    let retry = Command {
        request_id: "req-5".into(),
        issued_at_ms: w.now_ms + 1,
        actor: user("vic"),
        op: Op::UpdateOrg {
            id: org.clone(),
            name: Some("Mine".into()),
            allowed_import_regions: None,
            expected_version: None,
        },
    };
    assert_eq!(apply(&mut w.state, &retry).unwrap(), refused);

    let (events, next) = list_audit_events(&w.state, &org, &AuditFilter::default(), None, 100).unwrap();
    assert_eq!(next, None);
    let summary: Vec<_> =
        events.iter().map(|e| (e.action.as_str(), e.actor.to_string(), e.target.id.clone())).collect();
    assert_eq!(
        summary,
        vec![
            ("create_org", "system".to_string(), org.to_string()),
            ("add_member", "system".into(), "ada".into()),
            ("add_member", "system".into(), "vic".into()),
            ("update_org", "user ada".into(), org.to_string()),
            ("update_org", "user vic".into(), org.to_string()),
        ]
    );
    assert_eq!(events[1].detail.get("role").map(String::as_str), Some("admin"));
    assert_eq!(events[3].outcome, AuditOutcome::Ok);
    assert!(
        matches!(&events[4].outcome, AuditOutcome::Refused { code, message } if code == "permission_denied" && message.contains("org.update"))
    );
    assert_eq!(events[4].request_id, "req-5");
    assert!(events.windows(2).all(|p| (p[0].at_ms, p[0].seq) < (p[1].at_ms, p[1].seq)));
}

#[test]
fn audit_listing_pages_and_filters() {
    let mut w = World::new();
    let org = w.org_with_admin(1, "ada");
    for n in 0..30 {
        let who = if n % 3 == 0 { "ada" } else { "eve" };
        // eve is an outsider: her refusals are in the org's log too.
        let r = w.run(
            &user(who),
            Op::UpdateOrg {
                id: org.clone(),
                name: Some(format!("n{n}")),
                allowed_import_regions: None,
                expected_version: None,
            },
        );
        assert_eq!(code(&r), if who == "ada" { "ok" } else { "not_found" });
    }
    let all = list_audit_events(&w.state, &org, &AuditFilter::default(), None, 1000).unwrap().0;
    assert_eq!(all.len(), 32);

    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let (page, next) = list_audit_events(&w.state, &org, &AuditFilter::default(), token.as_deref(), 7).unwrap();
        assert!(page.len() <= 7);
        seen.extend(page);
        match next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(seen, all);

    let eve = AuditFilter { actor_subject: Some("eve".into()), ..Default::default() };
    let (eves, _) = list_audit_events(&w.state, &org, &eve, None, 1000).unwrap();
    assert_eq!(eves.len(), 20);
    assert!(eves.iter().all(|e| e.actor.subject() == Some("eve")));

    let window = AuditFilter { from_ms: Some(all[5].at_ms), to_ms: Some(all[9].at_ms), ..Default::default() };
    let (in_window, _) = list_audit_events(&w.state, &org, &window, None, 1000).unwrap();
    assert_eq!(in_window, all[5..9].to_vec());

    let bad = list_audit_events(&w.state, &org, &AuditFilter::default(), Some("nope"), 10);
    assert!(matches!(bad, Err(QueryError::Domain(DomainError::InvalidArgument { .. }))));
}

#[test]
fn a_deleted_orgs_log_stays_for_platform_admins() {
    let mut w = World::new();
    let org = w.org_with_admin(1, "ada");
    w.run(&Actor::System, integration(&org, "main")).unwrap();
    w.run(&Actor::platform_admin("ops"), Op::DeleteOrg { id: org.clone(), expected_version: None }).unwrap();
    let prefixes = ["o/", "m/", "u/", "cr/", "iv/", "ig/", "pn/"];
    assert!(!w.state.map.keys().any(|k| prefixes.iter().any(|p| k.starts_with(p.as_bytes()))), "all org data gone");
    let (events, _) = list_audit_events(&w.state, &org, &AuditFilter::default(), None, 100).unwrap();
    assert_eq!(events.last().map(|e| e.action.as_str()), Some("delete_org"));
    let kind = QueryKind::ListAuditEvents;
    assert!(authorize_query(&w.state, &Actor::platform_admin("ops"), Some(&org), kind).is_ok());
    let former = authorize_query(&w.state, &user("ada"), Some(&org), kind);
    assert!(matches!(former, Err(QueryError::Domain(DomainError::NotFound { .. }))));
}

#[test]
fn a_request_id_is_only_a_retry_for_its_own_caller() {
    let mut w = World::new();
    let a = w.org_with_admin(1, "ada");
    let b = w.org_with_admin(2, "bob");
    let first = Command {
        request_id: "shared".into(),
        issued_at_ms: w.now_ms,
        actor: user("ada"),
        op: integration(&a, "main"),
    };
    assert!(apply(&mut w.state, &first).unwrap().is_ok());
    // bob reuses ada's id, about his own org: he must not get ada's answer.
    let reuse = Command { actor: user("bob"), op: integration(&b, "main"), ..first.clone() };
    let got = apply(&mut w.state, &reuse).unwrap();
    assert_eq!(code(&got), "failed_precondition");
    assert!(!format!("{got:?}").contains(&a.to_string()));
    assert_eq!(apply(&mut w.state, &first).unwrap().map(|_| ()), Ok(()), "ada's retry still answers");
    // The same caller about another org is not a retry, except for a create: the node picks a
    // new org id for each attempt.
    let elsewhere = Command { op: integration(&b, "main"), ..first.clone() };
    assert_eq!(code(&apply(&mut w.state, &elsewhere).unwrap()), "failed_precondition");
    let ops = Actor::platform_admin("ops");
    let create = |n| Command {
        request_id: "create-once".into(),
        issued_at_ms: w.now_ms,
        actor: ops.clone(),
        op: Op::CreateOrg { id: org_id(n), name: "Once".into() },
    };
    let (c1, c2) = (create(10), create(11));
    let made = apply(&mut w.state, &c1).unwrap();
    assert_eq!(apply(&mut w.state, &c2).unwrap(), made);
    assert!(get_org(&w.state, &org_id(11)).unwrap().is_none(), "the retry made no second org");
}

#[test]
fn the_node_can_check_before_proposing() {
    let mut w = World::new();
    let org = w.org_with_admin(1, "ada");
    w.add(&org, "vic", Role::Viewer);
    assert!(authorize_op(&w.state, &user("ada"), &integration(&org, "x")).is_ok());
    let r = authorize_op(&w.state, &user("vic"), &integration(&org, "x"));
    assert!(matches!(r, Err(QueryError::Domain(DomainError::PermissionDenied { .. }))));
    let r = authorize_op(&w.state, &user("eve"), &integration(&org, "x"));
    assert_eq!(r, Err(QueryError::Domain(DomainError::org_not_found(&org))));
    assert!(crate::policy::authorize_user_orgs(&user("eve"), "eve").is_ok());
    assert!(crate::policy::authorize_user_orgs(&user("eve"), "ada").is_err());
}
