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
    use orgplane_model::{
        Actor, AppId, Command, CommandOutcome, CustomRole, Op, OrgId, Permission, PermissionSet, Region, ResourceKind,
        Role, UserActor,
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
