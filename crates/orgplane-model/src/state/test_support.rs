//! A small world for unit tests: a state, a clock and fresh request ids.

use super::*;
use crate::id::OrgId;
use crate::region::Region;
use crate::role::Role;

pub fn org_id(n: u128) -> OrgId {
    OrgId::from_u128(Region::Eu, n)
}

/// A state with a clock that moves 1 ms per command and a fresh request id per command.
pub struct World {
    pub state: MemState,
    pub now_ms: u64,
    requests: u64,
}

impl World {
    pub fn new() -> World {
        World { state: MemState::default(), now_ms: 1_000_000, requests: 0 }
    }

    /// A second region: its request ids never repeat the first one's (real ones are UUIDs).
    pub fn other_region() -> World {
        World { requests: 1_000_000, ..World::new() }
    }

    /// Applies `op` as `actor` with a fresh request id.
    pub fn run(&mut self, actor: &Actor, op: Op) -> CommandResult {
        self.requests += 1;
        self.now_ms += 1;
        let cmd = Command {
            request_id: format!("req-{}", self.requests),
            issued_at_ms: self.now_ms,
            actor: actor.clone(),
            op,
        };
        apply(&mut self.state, &cmd).expect("no storage faults in memory")
    }

    /// An org created by the system, with `admin` as its Admin.
    pub fn org_with_admin(&mut self, n: u128, admin: &str) -> OrgId {
        let id = org_id(n);
        self.run(&Actor::System, Op::CreateOrg { id: id.clone(), name: format!("org {n}") }).unwrap();
        self.add(&id, admin, Role::Admin);
        id
    }

    /// Adds a member as the system.
    pub fn add(&mut self, org: &OrgId, user: &str, role: Role) {
        let r = self.run(&Actor::System, Op::AddMember { org_id: org.clone(), user_id: user.into(), role });
        assert!(r.is_ok(), "adding {user}: {r:?}");
    }

    /// Defines a custom role as the system.
    pub fn define(&mut self, org: &OrgId, name: &str, permissions: &[crate::permission::Permission]) {
        let op = Op::CreateRole {
            org_id: org.clone(),
            name: name.into(),
            permissions: permissions.iter().copied().collect(),
        };
        let r = self.run(&Actor::System, op);
        assert!(r.is_ok(), "defining {name}: {r:?}");
    }

    /// The state without request records and audit events: what a refusal must not change.
    pub fn data(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.state
            .map
            .iter()
            .filter(|(k, _)| ![&b"r/"[..], b"t/", b"al/", b"an/"].iter().any(|p| k.starts_with(p)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
