//! Property test of apps through the public API: random sequences of app, binding, publish and
//! resource commands never leave a slot bound to a resource that is missing, of another kind,
//! or of another org; the binding index always matches the apps exactly; a publish succeeds
//! only with every slot bound; and a refused command changes no data.

use std::collections::{BTreeMap, BTreeSet};

use orgplane_model::state::{apply, get_app, get_integration, get_phone_number, MemState};
use orgplane_model::{Actor, AppId, Command, CommandOutcome, ConfigEntry, Op, OrgId, Region, ResourceKind};
use proptest::prelude::*;

const APPS: u128 = 3;
const SLOTS: [&str; 3] = ["s0", "s1", "s2"];

fn org_a() -> OrgId {
    OrgId::from_u128(Region::Eu, 1)
}

fn org_b() -> OrgId {
    OrgId::from_u128(Region::Eu, 2)
}

fn kind(n: u8) -> ResourceKind {
    match n % 3 {
        0 => ResourceKind::Integration("twilio".into()),
        1 => ResourceKind::Integration("salesforce".into()),
        _ => ResourceKind::PhoneNumber,
    }
}

/// A resource id: the integrations and numbers of A, and of B (which A must never bind).
fn resource(n: u8) -> String {
    ["i-twilio", "i-sales", "+4930100000", "b-twilio", "+4930200000"][usize::from(n % 5)].to_string()
}

#[derive(Debug, Clone)]
struct Step {
    kind: u8,
    app: u128,
    slot: usize,
    arg: u8,
    mask: u8,
}

fn step() -> impl Strategy<Value = Step> {
    (0u8..8, 0..APPS, 0..SLOTS.len(), 0u8..15, 0u8..64).prop_map(|(kind, app, slot, arg, mask)| Step {
        kind,
        app,
        slot,
        arg,
        mask,
    })
}

fn slots(mask: u8) -> BTreeMap<String, ResourceKind> {
    SLOTS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(i, s)| (s.to_string(), kind(mask >> 3 >> i)))
        .collect()
}

fn op(step: &Step) -> Op {
    let (org_id, app_id) = (org_a(), AppId::from_u128(step.app));
    let slot = SLOTS[step.slot].to_string();
    match step.kind {
        0 => Op::CreateApp {
            org_id,
            app_id,
            name: "app".into(),
            definition: "{}".into(),
            assets: BTreeMap::new(),
            slots: slots(step.mask),
        },
        1 => Op::DeleteApp { org_id, app_id, expected_version: None },
        2 | 3 => Op::BindAppSlot { org_id, app_id, slot, resource_id: resource(step.arg) },
        4 => Op::UnbindAppSlot { org_id, app_id, slot },
        5 => Op::UpdateApp {
            org_id,
            app_id,
            name: None,
            definition: None,
            slots: Some(slots(step.mask)),
            expected_version: None,
        },
        6 => Op::PublishApp { org_id, app_id, expected_version: None },
        _ => match step.arg % 3 {
            0 => Op::DeleteIntegration { org_id, name: "i-twilio".into() },
            1 => Op::DeletePhoneNumber { org_id, number: "+4930100000".into() },
            _ => Op::CreateIntegration { org_id, name: "i-twilio".into(), kind: "twilio".into(), config: vec![] },
        },
    }
}

struct Run {
    state: MemState,
    requests: u64,
}

impl Run {
    fn apply(&mut self, op: Op) -> orgplane_model::CommandResult {
        self.requests += 1;
        let cmd = Command {
            request_id: format!("r{}", self.requests),
            issued_at_ms: 1_000_000 + self.requests,
            actor: Actor::System,
            op,
        };
        apply(&mut self.state, &cmd).expect("no storage fault in memory")
    }

    fn start() -> Run {
        let mut run = Run { state: MemState::default(), requests: 0 };
        let (a, b) = (org_a(), org_b());
        let integration = |org: &OrgId, name: &str, kind: &str| Op::CreateIntegration {
            org_id: org.clone(),
            name: name.into(),
            kind: kind.into(),
            config: vec![ConfigEntry::secret("token", "s")],
        };
        let phone = |org: &OrgId, number: &str| Op::CreatePhoneNumber {
            org_id: org.clone(),
            number: number.into(),
            label: String::new(),
        };
        for op in [
            Op::CreateOrg { id: a.clone(), name: "A".into() },
            Op::CreateOrg { id: b.clone(), name: "B".into() },
            integration(&a, "i-twilio", "twilio"),
            integration(&a, "i-sales", "salesforce"),
            phone(&a, "+4930100000"),
            integration(&b, "b-twilio", "twilio"),
            phone(&b, "+4930200000"),
        ] {
            run.apply(op).unwrap();
        }
        run
    }

    /// The state without request records and audit events.
    fn data(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let kept = |k: &Vec<u8>| ![&b"r/"[..], b"t/", b"al/", b"an/"].iter().any(|p| k.starts_with(p));
        self.state.map.iter().filter(|(k, _)| kept(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// The binding index's keys, as (resource, app, slot).
    fn index(&self) -> BTreeSet<(String, String, String)> {
        let prefix = format!("ab/{}/", org_a());
        self.state
            .map
            .keys()
            .filter_map(|k| String::from_utf8_lossy(k).strip_prefix(&prefix).map(str::to_string))
            .map(|rest| {
                let parts: Vec<&str> = rest.splitn(4, '/').collect();
                (parts[1].to_string(), parts[2].to_string(), parts[3].to_string())
            })
            .collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn bindings_stay_in_the_org_of_the_right_kind_and_indexed(steps in proptest::collection::vec(step(), 1..40)) {
        let mut run = Run::start();
        let a = org_a();
        for step in &steps {
            let before = run.data();
            let op = op(step);
            let result = run.apply(op.clone());
            if result.is_err() {
                prop_assert_eq!(&run.data(), &before, "refused {:?} changed data: {:?}", op, result);
            }
            let mut expected_index = BTreeSet::new();
            for n in 0..APPS {
                let Some(app) = get_app(&run.state, &a, &AppId::from_u128(n)).unwrap() else { continue };
                for (slot, s) in &app.slots {
                    let Some(resource) = &s.binding else { continue };
                    expected_index.insert((resource.clone(), app.id.to_string(), slot.clone()));
                    let ok = match &s.kind {
                        ResourceKind::PhoneNumber => get_phone_number(&run.state, &a, resource).unwrap().is_some(),
                        ResourceKind::Integration(k) => {
                            get_integration(&run.state, &a, resource).unwrap().is_some_and(|i| &i.kind == k)
                        }
                    };
                    prop_assert!(ok, "slot {} of {} bound to {} which A lacks (kind {})", slot, app.id, resource, s.kind);
                }
            }
            prop_assert_eq!(run.index(), expected_index, "the index disagrees after {:?}", op);
            if let (Op::PublishApp { .. }, Ok(CommandOutcome::App(app))) = (&op, &result) {
                prop_assert!(app.unbound_slots().is_empty(), "published with unbound slots: {:?}", app);
            }
        }
    }
}
