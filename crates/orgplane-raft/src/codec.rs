//! The one encoding of Raft data at rest and on the wire: log entries in the store, peer
//! requests and their replies. Compact binary (postcard), behind a tag byte, so the encoding can
//! change again without guessing.
//!
//! Decoding also reads the JSON that builds before the binary encoding wrote (a JSON value of
//! these types always starts with `{`), so a store written by such a build opens and its log
//! replays, and a peer running such a build is understood. Replies go out in the encoding of
//! the request ([`Encoding::of_request`]), so that peer can read them too; during a rolling
//! upgrade only the old nodes' reading of the new nodes' requests fails, and each old node
//! catches up once it runs the new build.
//!
//! Binary rather than JSON because a log entry is encoded or decoded about ten times between
//! proposal and apply (append on three nodes, replication to two, forwarding): with JSON that
//! was a tenth of a write's CPU, and the bytes sled writes were twice as many.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The first byte of a binary (postcard, version 1) value.
pub const BINARY_V1: u8 = 0xB1;

/// How a value is (or is to be) encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// [`BINARY_V1`] then postcard: what this build writes.
    Binary,
    /// JSON: what earlier builds wrote; read, and written only to answer such a peer.
    Json,
}

/// A value that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode: {0}")]
    Encode(String),
    #[error("cannot decode {encoding:?} value: {reason}")]
    Decode { encoding: Encoding, reason: String },
    #[error("empty value")]
    Empty,
    #[error("unknown encoding tag {0:#04x}")]
    UnknownTag(u8),
}

impl Encoding {
    /// The encoding of a stored or received value, from its first byte.
    pub fn of(bytes: &[u8]) -> Result<Encoding, CodecError> {
        match bytes.first() {
            Some(&BINARY_V1) => Ok(Encoding::Binary),
            Some(b'{') => Ok(Encoding::Json),
            Some(&other) => Err(CodecError::UnknownTag(other)),
            None => Err(CodecError::Empty),
        }
    }

    /// The encoding to answer a peer request in: the request's own. A request without a body
    /// (read index) is a lone tag byte from this build and empty from earlier ones, which
    /// read JSON.
    pub fn of_request(payload: &[u8]) -> Encoding {
        match payload.first() {
            Some(&BINARY_V1) => Encoding::Binary,
            _ => Encoding::Json,
        }
    }

    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, CodecError> {
        match self {
            Encoding::Binary => {
                postcard::to_extend(value, vec![BINARY_V1]).map_err(|e| CodecError::Encode(e.to_string()))
            }
            Encoding::Json => serde_json::to_vec(value).map_err(|e| CodecError::Encode(e.to_string())),
        }
    }
}

/// Encodes `value` in this build's encoding.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    Encoding::Binary.encode(value)
}

/// Decodes a value in either encoding, telling them apart by the first byte.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let encoding = Encoding::of(bytes)?;
    let failed = |reason: String| CodecError::Decode { encoding, reason };
    match encoding {
        Encoding::Binary => match postcard::take_from_bytes(&bytes[1..]) {
            Ok((value, [])) => Ok(value),
            Ok((_, rest)) => Err(failed(format!("{} bytes left over", rest.len()))),
            Err(e) => Err(failed(e.to_string())),
        },
        Encoding::Json => serde_json::from_slice(bytes).map_err(|e| failed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use openraft::raft::AppendEntriesRequest;
    use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, Vote};
    use orgplane_model::relocation::{MoveNote, MovePhase, MoveStep};
    use orgplane_model::{
        Actor, AppId, Command, CommandOutcome, ConfigEntry, ConfigValue, CustomRole, Op, OrgId, Permission,
        PermissionSet, Region, ResourceKind, Role, SecretValue, UserActor,
    };

    use super::*;
    use crate::error::ForwardError;
    use crate::types::{RaftRequest, RaftResponse, TypeConfig};

    fn permissions() -> PermissionSet {
        [Permission::OrgRead, Permission::MembersRead].into_iter().collect()
    }

    fn log_id(index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(3, 1), index)
    }

    /// Entries of every payload kind, with commands whose fields use the model's own serde
    /// (ids parsed from strings, base64 assets, maps, options, a user actor).
    fn entries() -> Vec<Entry<TypeConfig>> {
        let org = OrgId::from_u128(Region::Apac, 42);
        let user = Actor::User(UserActor {
            subject: "alice".into(),
            platform_admin: false,
            verified_email: Some("alice@example.com".into()),
        });
        let commands = vec![
            Command {
                request_id: "r0".into(),
                issued_at_ms: 5,
                actor: Actor::System,
                op: Op::CreateRole { org_id: org.clone(), name: "support".into(), permissions: permissions() },
            },
            Command {
                request_id: "r1".into(),
                issued_at_ms: 1_700_000_000_000,
                actor: user,
                op: Op::AddMember { org_id: org.clone(), user_id: "bob".into(), role: Role::Developer },
            },
            Command {
                request_id: "r2".into(),
                issued_at_ms: 1,
                actor: Actor::System,
                op: Op::ImportApp {
                    org_id: org,
                    app_id: AppId::from_u128(7),
                    name: "Support bot ✓".into(),
                    definition: "{\"steps\":[]}".into(),
                    assets: BTreeMap::from([("logo.png".to_string(), vec![0, 159, 146, 150, 255])]),
                    slots: BTreeMap::from([
                        ("crm".to_string(), ResourceKind::Integration("salesforce".into())),
                        ("line".to_string(), ResourceKind::PhoneNumber),
                    ]),
                    source_org_id: "org_elsewhere".into(),
                    source_region: Region::Eu,
                },
            },
        ];
        let nodes = BTreeMap::from([(1, BasicNode::new("10.0.0.1:7000")), (2, BasicNode::new("10.0.0.2:7000"))]);
        vec![
            Entry { log_id: log_id(1), payload: EntryPayload::Blank },
            Entry { log_id: log_id(2), payload: EntryPayload::Membership(Membership::new(vec![[1, 2].into()], nodes)) },
            Entry { log_id: log_id(3), payload: EntryPayload::Normal(RaftRequest { commands }) },
        ]
    }

    fn append_request() -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(3, 1),
            prev_log_id: None,
            entries: entries(),
            leader_commit: Some(log_id(1)),
        }
    }

    #[test]
    fn values_round_trip_through_the_binary_encoding() {
        let request = append_request();
        let bytes = encode(&request).unwrap();
        assert_eq!(bytes[0], BINARY_V1);
        assert_eq!(Encoding::of(&bytes).unwrap(), Encoding::Binary);
        let decoded: AppendEntriesRequest<TypeConfig> = decode(&bytes).unwrap();
        assert_eq!(
            (decoded.vote, decoded.prev_log_id, decoded.entries, decoded.leader_commit),
            (request.vote, request.prev_log_id, request.entries, request.leader_commit)
        );
        for entry in entries() {
            assert_eq!(decode::<Entry<TypeConfig>>(&encode(&entry).unwrap()).unwrap(), entry);
        }
    }

    /// A forwarded batch's answer carries the model's outcomes, a custom role's permission set
    /// among them (a set whose serializer once gave no length, which a binary encoding needs).
    #[test]
    fn forwarded_results_round_trip() {
        let role = CustomRole {
            org_id: OrgId::from_u128(Region::Us, 9),
            name: "support".into(),
            permissions: permissions(),
            version: 2,
            created_at_ms: 10,
            updated_at_ms: 20,
        };
        let reply: Result<RaftResponse, ForwardError> =
            Ok(RaftResponse { results: vec![Ok(CommandOutcome::Role(role)), Ok(CommandOutcome::RoleDeleted)] });
        for encoding in [Encoding::Binary, Encoding::Json] {
            let bytes = encoding.encode(&reply).unwrap();
            assert_eq!(decode::<Result<RaftResponse, ForwardError>>(&bytes).unwrap(), reply, "{encoding:?}");
        }
        let empty = PermissionSet::empty();
        assert_eq!(decode::<PermissionSet>(&encode(&empty).unwrap()).unwrap(), empty);
    }

    /// One op of every kind, with the optional parts filled in. `op_kind_index` names every
    /// variant without a wildcard, so a new kind of op does not compile until it is added here.
    fn one_op_of_each_kind() -> Vec<Op> {
        let org_id = OrgId::from_u128(Region::Eu, 7);
        let app_id = AppId::from_u128(11);
        let config = vec![
            ConfigEntry::plain("url", "https://api.example.com"),
            ConfigEntry { key: "token".into(), value: ConfigValue::Secret(SecretValue::new("s3cret")) },
        ];
        let slots = BTreeMap::from([("crm".to_string(), ResourceKind::Integration("salesforce".into()))]);
        let mut ops = vec![
            Op::CreateOrg { id: org_id.clone(), name: "Acme".into() },
            Op::UpdateOrg {
                id: org_id.clone(),
                name: Some("Acme EU".into()),
                allowed_import_regions: Some([Region::Us, Region::Apac].into_iter().collect()),
                expected_version: Some(3),
            },
            Op::DeleteOrg { id: org_id.clone(), expected_version: None },
            Op::AddMember { org_id: org_id.clone(), user_id: "bob".into(), role: Role::Custom("support".into()) },
            Op::SetMemberRole { org_id: org_id.clone(), user_id: "bob".into(), role: Role::Agent },
            Op::RemoveMember { org_id: org_id.clone(), user_id: "bob".into() },
            Op::CreateRole { org_id: org_id.clone(), name: "support".into(), permissions: permissions() },
            Op::UpdateRole {
                org_id: org_id.clone(),
                name: "support".into(),
                permissions: PermissionSet::empty(),
                expected_version: Some(1),
            },
            Op::DeleteRole { org_id: org_id.clone(), name: "support".into() },
            Op::CreateInvitation {
                org_id: org_id.clone(),
                email: "carol@example.com".into(),
                role: Role::Viewer,
                expires_at_ms: Some(9),
            },
            Op::RevokeInvitation { org_id: org_id.clone(), email: "carol@example.com".into() },
            Op::AcceptInvitation { org_id: org_id.clone() },
            Op::CreateIntegration {
                org_id: org_id.clone(),
                name: "crm".into(),
                kind: "salesforce".into(),
                config: config.clone(),
            },
            Op::UpdateIntegration {
                org_id: org_id.clone(),
                name: "crm".into(),
                set: config,
                remove: vec!["old".into()],
                expected_version: None,
            },
            Op::DeleteIntegration { org_id: org_id.clone(), name: "crm".into() },
            Op::CreatePhoneNumber { org_id: org_id.clone(), number: "+4930123456".into(), label: "Berlin".into() },
            Op::UpdatePhoneNumber {
                org_id: org_id.clone(),
                number: "+4930123456".into(),
                label: "HQ".into(),
                expected_version: Some(2),
            },
            Op::DeletePhoneNumber { org_id: org_id.clone(), number: "+4930123456".into() },
            Op::CreateApp {
                org_id: org_id.clone(),
                app_id: app_id.clone(),
                name: "Bot".into(),
                definition: "{}".into(),
                assets: BTreeMap::from([("a.bin".to_string(), vec![0, 255])]),
                slots: slots.clone(),
            },
            Op::UpdateApp {
                org_id: org_id.clone(),
                app_id: app_id.clone(),
                name: None,
                definition: Some("{\"v\":2}".into()),
                slots: Some(slots.clone()),
                expected_version: Some(4),
            },
            Op::DeleteApp { org_id: org_id.clone(), app_id: app_id.clone(), expected_version: None },
            Op::BindAppSlot {
                org_id: org_id.clone(),
                app_id: app_id.clone(),
                slot: "crm".into(),
                resource_id: "crm".into(),
            },
            Op::UnbindAppSlot { org_id: org_id.clone(), app_id: app_id.clone(), slot: "crm".into() },
            Op::PublishApp { org_id: org_id.clone(), app_id: app_id.clone(), expected_version: Some(5) },
            Op::ImportApp {
                org_id: org_id.clone(),
                app_id,
                name: "Bot".into(),
                definition: "{}".into(),
                assets: BTreeMap::new(),
                slots,
                source_org_id: "org_elsewhere".into(),
                source_region: Region::Us,
            },
        ];
        let move_id = || "mv-1".to_string();
        let steps = vec![
            MoveStep::Reserve { move_id: move_id(), source: Region::Us, target: Region::Eu },
            MoveStep::Advance {
                move_id: move_id(),
                from: MovePhase::Copying,
                to: MovePhase::Frozen,
                note: MoveNote { from_epoch: Some(2), write_pause_ms: Some(40) },
            },
            MoveStep::Stage {
                move_id: move_id(),
                copy_id: "c1".into(),
                first: true,
                records: vec![("o/x".into(), "{}".into())],
                deletes: vec!["m/x/gone".into()],
            },
            MoveStep::Activate { move_id: move_id(), copy_id: "c1".into(), records: 1, to_epoch: 3 },
            MoveStep::AbortIn { move_id: move_id(), reason: "operator".into() },
            MoveStep::BeginOut { move_id: move_id(), target: Region::Apac },
            MoveStep::Freeze { move_id: move_id() },
            MoveStep::FinishOut { move_id: move_id(), epoch: 3 },
            MoveStep::AbortOut { move_id: move_id() },
        ];
        ops.extend(steps.into_iter().map(|step| Op::Relocate { org_id: org_id.clone(), step }));
        ops
    }

    /// Each kind of op, and each step of a move, has its own index.
    fn op_kind_index(op: &Op) -> usize {
        match op {
            Op::CreateOrg { .. } => 0,
            Op::UpdateOrg { .. } => 1,
            Op::DeleteOrg { .. } => 2,
            Op::AddMember { .. } => 3,
            Op::SetMemberRole { .. } => 4,
            Op::RemoveMember { .. } => 5,
            Op::CreateRole { .. } => 6,
            Op::UpdateRole { .. } => 7,
            Op::DeleteRole { .. } => 8,
            Op::CreateInvitation { .. } => 9,
            Op::RevokeInvitation { .. } => 10,
            Op::AcceptInvitation { .. } => 11,
            Op::CreateIntegration { .. } => 12,
            Op::UpdateIntegration { .. } => 13,
            Op::DeleteIntegration { .. } => 14,
            Op::CreatePhoneNumber { .. } => 15,
            Op::UpdatePhoneNumber { .. } => 16,
            Op::DeletePhoneNumber { .. } => 17,
            Op::CreateApp { .. } => 18,
            Op::UpdateApp { .. } => 19,
            Op::DeleteApp { .. } => 20,
            Op::BindAppSlot { .. } => 21,
            Op::UnbindAppSlot { .. } => 22,
            Op::PublishApp { .. } => 23,
            Op::ImportApp { .. } => 24,
            Op::Relocate { step, .. } => match step {
                MoveStep::Reserve { .. } => 25,
                MoveStep::Advance { .. } => 26,
                MoveStep::Stage { .. } => 27,
                MoveStep::Activate { .. } => 28,
                MoveStep::AbortIn { .. } => 29,
                MoveStep::BeginOut { .. } => 30,
                MoveStep::Freeze { .. } => 31,
                MoveStep::FinishOut { .. } => 32,
                MoveStep::AbortOut { .. } => 33,
            },
        }
    }

    /// Every kind of op survives the binary encoding inside a log entry, as the proposer, the
    /// log store and a follower's forward use it.
    #[test]
    fn every_kind_of_op_round_trips_in_a_log_entry() {
        let ops = one_op_of_each_kind();
        let kinds: std::collections::BTreeSet<usize> = ops.iter().map(op_kind_index).collect();
        assert_eq!(kinds, (0..=33).collect(), "one op of each kind");
        for (n, op) in ops.into_iter().enumerate() {
            let command = Command { request_id: format!("r{n}"), issued_at_ms: 7, actor: Actor::System, op };
            let entry = Entry {
                log_id: log_id(n as u64),
                payload: EntryPayload::Normal(RaftRequest { commands: vec![command.clone()] }),
            };
            let bytes = encode(&entry).unwrap_or_else(|e| panic!("{:?}: {e}", command.op.kind()));
            assert_eq!(decode::<Entry<TypeConfig>>(&bytes).unwrap(), entry, "{:?}", command.op.kind());
        }
    }

    #[test]
    fn json_written_by_earlier_builds_still_decodes() {
        for entry in entries() {
            let json = serde_json::to_vec(&entry).unwrap();
            assert_eq!(Encoding::of(&json).unwrap(), Encoding::Json);
            assert_eq!(decode::<Entry<TypeConfig>>(&json).unwrap(), entry);
        }
        let reply: Result<u64, String> = Ok(17);
        assert_eq!(decode::<Result<u64, String>>(&Encoding::Json.encode(&reply).unwrap()).unwrap(), reply);
    }

    #[test]
    fn the_binary_encoding_is_smaller_than_json() {
        let request = append_request();
        let binary = encode(&request).unwrap().len();
        let json = serde_json::to_vec(&request).unwrap().len();
        assert!(binary * 2 < json, "binary {binary} bytes, JSON {json}");
    }

    #[test]
    fn replies_follow_the_request_encoding() {
        assert_eq!(Encoding::of_request(&encode(&append_request()).unwrap()), Encoding::Binary);
        assert_eq!(Encoding::of_request(&[BINARY_V1]), Encoding::Binary);
        assert_eq!(Encoding::of_request(&serde_json::to_vec(&append_request()).unwrap()), Encoding::Json);
        assert_eq!(Encoding::of_request(&[]), Encoding::Json, "an earlier build's body-less request");
    }

    #[test]
    fn damaged_values_are_errors_not_panics() {
        let bytes = encode(&append_request()).unwrap();
        assert!(matches!(decode::<Entry<TypeConfig>>(&[]), Err(CodecError::Empty)));
        assert!(matches!(decode::<Entry<TypeConfig>>(b"\x07abc"), Err(CodecError::UnknownTag(0x07))));
        for cut in [1, 2, bytes.len() / 2, bytes.len() - 1] {
            let err = decode::<AppendEntriesRequest<TypeConfig>>(&bytes[..cut]).unwrap_err();
            assert!(matches!(err, CodecError::Decode { encoding: Encoding::Binary, .. }), "cut at {cut}: {err}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let err = decode::<AppendEntriesRequest<TypeConfig>>(&longer).unwrap_err();
        assert!(err.to_string().contains("1 bytes left over"), "{err}");
        assert!(matches!(
            decode::<Entry<TypeConfig>>(b"{\"log_id\":"),
            Err(CodecError::Decode { encoding: Encoding::Json, .. })
        ));
    }
}
