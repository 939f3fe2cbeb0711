//! Apps through `apply`: slots, bindings, publishing, the bound-resource rule, residency.

use std::collections::{BTreeMap, BTreeSet};

use super::test_support::World;
use super::*;
use crate::app::{AppId, ResourceKind};
use crate::audit::AuditFilter;
use crate::id::OrgId;
use crate::region::Region;
use crate::resource::ConfigEntry;
use crate::role::Role;
use crate::App;

fn user(subject: &str) -> Actor {
    Actor::user(subject)
}

fn twilio() -> ResourceKind {
    ResourceKind::Integration("twilio".into())
}

fn slots() -> BTreeMap<String, ResourceKind> {
    BTreeMap::from([("sms".to_string(), twilio()), ("line".to_string(), ResourceKind::PhoneNumber)])
}

fn create(org: &OrgId, n: u128) -> Op {
    Op::CreateApp {
        org_id: org.clone(),
        app_id: AppId::from_u128(n),
        name: format!("app {n}"),
        definition: r#"{"steps": [1, 2]}"#.into(),
        assets: BTreeMap::new(),
        slots: slots(),
    }
}

fn bind(org: &OrgId, n: u128, slot: &str, resource: &str) -> Op {
    Op::BindAppSlot {
        org_id: org.clone(),
        app_id: AppId::from_u128(n),
        slot: slot.into(),
        resource_id: resource.into(),
    }
}

fn publish(org: &OrgId, n: u128) -> Op {
    Op::PublishApp { org_id: org.clone(), app_id: AppId::from_u128(n), expected_version: None }
}

fn resources(w: &mut World, org: &OrgId) {
    let op = Op::CreateIntegration {
        org_id: org.clone(),
        name: "main".into(),
        kind: "twilio".into(),
        config: vec![ConfigEntry::secret("token", "sk-1")],
    };
    w.run(&Actor::System, op).unwrap();
    let op =
        Op::CreateIntegration { org_id: org.clone(), name: "crm".into(), kind: "salesforce".into(), config: vec![] };
    w.run(&Actor::System, op).unwrap();
    let op = Op::CreatePhoneNumber { org_id: org.clone(), number: "+4930123456".into(), label: String::new() };
    w.run(&Actor::System, op).unwrap();
}

fn app(result: CommandResult) -> App {
    match result {
        Ok(CommandOutcome::App(app)) => app,
        other => panic!("expected an app, got {other:?}"),
    }
}

fn refusal(result: &CommandResult) -> String {
    result.as_ref().err().map(ToString::to_string).unwrap_or_default()
}

#[test]
fn publish_needs_every_slot_bound_to_a_resource_of_the_right_kind_in_the_org() {
    let mut w = World::new();
    let org = w.org_with_admin(1, "ada");
    let other = w.org_with_admin(2, "bob");
    resources(&mut w, &org);
    resources(&mut w, &other);
    let created = app(w.run(&user("ada"), create(&org, 1)));
    assert!(created.definition.is_empty(), "write answers leave the definition out");
    let stored = get_app(&w.state, &org, &created.id).unwrap().unwrap();
    assert_eq!(stored.definition, r#"{"steps":[1,2]}"#, "stored canonical");
    assert_eq!(created.unbound_slots(), ["line", "sms"]);

    let refused = w.run(&user("ada"), publish(&org, 1));
    assert_eq!(refused.as_ref().map_err(DomainError::code).err(), Some("failed_precondition"));
    assert!(refusal(&refused).contains("unbound slots: line, sms"), "{}", refusal(&refused));

    // A resource of the wrong kind, a missing one, and a slot that does not exist.
    let wrong = w.run(&user("ada"), bind(&org, 1, "sms", "crm"));
    assert!(matches!(wrong, Err(DomainError::FailedPrecondition { .. })), "{wrong:?}");
    assert!(refusal(&wrong).contains("salesforce"));
    let missing = w.run(&user("ada"), bind(&org, 1, "line", "+4930999999"));
    assert!(matches!(missing, Err(DomainError::NotFound { .. })), "{missing:?}");
    let no_slot = w.run(&user("ada"), bind(&org, 1, "fax", "main"));
    assert!(matches!(no_slot, Err(DomainError::NotFound { .. })), "{no_slot:?}");

    w.run(&user("ada"), bind(&org, 1, "sms", "main")).unwrap();
    let refused = w.run(&user("ada"), publish(&org, 1));
    assert!(refusal(&refused).contains("unbound slots: line") && !refusal(&refused).contains("sms"));
    let bound = app(w.run(&user("ada"), bind(&org, 1, "line", "+4930123456")));
    let published = app(w.run(&user("ada"), publish(&org, 1)));
    assert_eq!(published.published_version, Some(bound.version));

    // The other org's admin cannot reach this app at all, nor bind their own app to it.
    let foreign = w.run(&user("bob"), bind(&org, 1, "sms", "main"));
    assert!(matches!(foreign, Err(DomainError::NotFound { ref kind, .. }) if kind == "org"), "{foreign:?}");
    app(w.run(&user("bob"), create(&other, 2)));
    w.run(&Actor::System, Op::DeletePhoneNumber { org_id: other.clone(), number: "+4930123456".into() }).unwrap();
    // The number exists in `org`, not in `other`: binding `other`'s app to it is NotFound.
    let cross = w.run(&user("bob"), bind(&other, 2, "line", "+4930123456"));
    assert!(matches!(cross, Err(DomainError::NotFound { ref kind, .. }) if kind == "phone number"), "{cross:?}");
}

#[test]
fn a_bound_resource_cannot_be_deleted_until_unbound() {
    let mut w = World::new();
    let org = w.org_with_admin(1, "ada");
    resources(&mut w, &org);
    app(w.run(&user("ada"), create(&org, 1)));
    w.run(&user("ada"), bind(&org, 1, "sms", "main")).unwrap();
    w.run(&user("ada"), bind(&org, 1, "line", "+4930123456")).unwrap();
    let before = w.data();
    let refused = w.run(&user("ada"), Op::DeleteIntegration { org_id: org.clone(), name: "main".into() });
    assert!(matches!(refused, Err(DomainError::FailedPrecondition { .. })), "{refused:?}");
    let app_id = AppId::from_u128(1);
    assert!(refusal(&refused).contains(app_id.as_str()) && refusal(&refused).contains("slot sms"));
    let refused = w.run(&user("ada"), Op::DeletePhoneNumber { org_id: org.clone(), number: "+4930123456".into() });
    assert!(matches!(refused, Err(DomainError::FailedPrecondition { .. })), "{refused:?}");
    assert_eq!(w.data(), before, "refusals change nothing");

    w.run(&user("ada"), Op::UnbindAppSlot { org_id: org.clone(), app_id: app_id.clone(), slot: "sms".into() }).unwrap();
    w.run(&user("ada"), Op::DeleteIntegration { org_id: org.clone(), name: "main".into() }).unwrap();
    // Removing a slot drops its binding too.
    let op = Op::UpdateApp {
        org_id: org.clone(),
        app_id: app_id.clone(),
        name: None,
        definition: None,
        slots: Some(BTreeMap::from([("sms".to_string(), twilio())])),
        expected_version: None,
    };
    let updated = app(w.run(&user("ada"), op));
    assert_eq!(updated.slots.len(), 1);
    w.run(&user("ada"), Op::DeletePhoneNumber { org_id: org.clone(), number: "+4930123456".into() }).unwrap();
    // Deleting the app (then the org) leaves no binding index behind.
    w.run(&user("ada"), bind(&org, 1, "sms", "crm")).unwrap_err();
    w.run(&Actor::System, Op::DeleteOrg { id: org.clone(), expected_version: None }).unwrap();
    assert!(!w.state.map.keys().any(|k| k.starts_with(b"ap/") || k.starts_with(b"ab/")));
}

#[test]
fn update_keeps_bindings_of_unchanged_slots_and_checks_the_version() {
    let mut w = World::new();
    let org = w.org_with_admin(1, "ada");
    resources(&mut w, &org);
    app(w.run(&user("ada"), create(&org, 1)));
    let bound = app(w.run(&user("ada"), bind(&org, 1, "sms", "main")));
    let op = |slots: BTreeMap<String, ResourceKind>, expected: u64| Op::UpdateApp {
        org_id: org.clone(),
        app_id: AppId::from_u128(1),
        name: Some("renamed".into()),
        definition: Some(r#"{"v": 2}"#.into()),
        slots: Some(slots),
        expected_version: Some(expected),
    };
    let stale = w.run(&user("ada"), op(slots(), bound.version - 1));
    assert!(matches!(stale, Err(DomainError::VersionMismatch { .. })), "{stale:?}");
    let mut retyped = slots();
    retyped.insert("line".into(), ResourceKind::Integration("voice".into()));
    let updated = app(w.run(&user("ada"), op(retyped, bound.version)));
    assert_eq!(updated.name, "renamed");
    let stored = get_app(&w.state, &org, &updated.id).unwrap().unwrap();
    assert_eq!(stored.definition, r#"{"v":2}"#);
    assert_eq!(updated.slots["sms"].binding.as_deref(), Some("main"));
    assert_eq!(updated.slots["line"].kind, ResourceKind::Integration("voice".into()));
    let bad = w.run(
        &user("ada"),
        Op::UpdateApp {
            org_id: org.clone(),
            app_id: AppId::from_u128(1),
            name: None,
            definition: Some("[1]".into()),
            slots: None,
            expected_version: None,
        },
    );
    assert!(matches!(bad, Err(DomainError::InvalidArgument { .. })), "{bad:?}");
}

fn import(org: &OrgId, n: u128, source_region: Region) -> Op {
    Op::ImportApp {
        org_id: org.clone(),
        app_id: AppId::from_u128(n),
        name: "imported".into(),
        definition: "{}".into(),
        assets: BTreeMap::from([("icon.png".to_string(), vec![1, 2, 3])]),
        slots: slots(),
        source_org_id: OrgId::from_u128(source_region, 77).to_string(),
        source_region,
    }
}

#[test]
fn import_follows_the_residency_policy_and_is_audited() {
    let mut w = World::new();
    let org = w.org_with_admin(1, "ada"); // an eu org
    let refused = w.run(&user("ada"), import(&org, 1, Region::Us));
    assert!(matches!(refused, Err(DomainError::FailedPrecondition { .. })), "{refused:?}");
    assert!(refusal(&refused).contains("region us") && refusal(&refused).contains("--allow-import-from us"));
    assert!(get_app(&w.state, &org, &AppId::from_u128(1)).unwrap().is_none());
    // Its own region is always allowed.
    let same = app(w.run(&user("ada"), import(&org, 2, Region::Eu)));
    assert_eq!(same.unbound_slots().len(), 2);

    let allow = Op::UpdateOrg {
        id: org.clone(),
        name: None,
        allowed_import_regions: Some(BTreeSet::from([Region::Us, Region::Eu])),
        expected_version: None,
    };
    let updated = match w.run(&user("ada"), allow) {
        Ok(CommandOutcome::Org(org)) => org,
        other => panic!("{other:?}"),
    };
    assert_eq!(updated.name, "org 1", "the name is kept");
    assert_eq!(updated.allowed_import_regions, BTreeSet::from([Region::Us]));
    let imported = app(w.run(&user("ada"), import(&org, 3, Region::Us)));
    assert!(imported.slots.values().all(|s| s.binding.is_none()));
    let stored = get_app(&w.state, &org, &imported.id).unwrap().unwrap();
    assert_eq!(stored.assets["icon.png"], vec![1, 2, 3]);

    let (events, _) = list_audit_events(&w.state, &org, &AuditFilter::default(), None, 100).unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.action, "import_app");
    assert_eq!(last.detail["source_region"], "us");
    assert_eq!(last.detail["source_org_id"], OrgId::from_u128(Region::Us, 77).to_string());

    let neither = Op::UpdateOrg { id: org.clone(), name: None, allowed_import_regions: None, expected_version: None };
    assert!(matches!(w.run(&user("ada"), neither), Err(DomainError::InvalidArgument { .. })));
}

#[test]
fn agents_cannot_build_import_or_publish_and_developers_can() {
    let mut w = World::new();
    let org = w.org_with_admin(1, "ada");
    w.add(&org, "agnes", Role::Agent);
    w.add(&org, "dev", Role::Developer);
    for (op, permission) in [(create(&org, 1), "apps.build"), (import(&org, 2, Region::Eu), "apps.transfer")] {
        let refused = w.run(&user("agnes"), op.clone());
        assert!(
            matches!(&refused, Err(DomainError::PermissionDenied { permission: p, .. }) if p == permission),
            "{refused:?}"
        );
        w.run(&user("dev"), op).unwrap();
    }
    let refused = w.run(&user("agnes"), publish(&org, 1));
    assert!(matches!(&refused, Err(DomainError::PermissionDenied { permission, .. }) if permission == "apps.publish"));
    let outsider = w.run(&user("eve"), publish(&org, 1));
    assert!(matches!(&outsider, Err(DomainError::NotFound { kind, .. }) if kind == "org"), "{outsider:?}");
}
