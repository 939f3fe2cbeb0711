//! Apps: an org's buildable artifacts. An app has a name, a definition document (canonical
//! JSON), a few small assets, and named binding slots, each asking for one org resource of a
//! kind (a phone number, or an integration of a kind) and bound to one of the org's resources
//! or unbound. An app can be published only when every slot is bound to a resource that exists.
//!
//! An app's id is chosen by the node that accepts its creation (or import), like an org id:
//! `app-` and 26 base32 characters of a UUIDv7, so ids sort by creation time.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::id::{self, OrgId};

/// The id of an app, unique in its region (and, being a UUIDv7, everywhere).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AppId(String);

const APP_ID_PREFIX: &str = "app-";

impl AppId {
    /// The id of a new app from 128 bits the caller chose (a UUIDv7).
    pub fn from_u128(value: u128) -> AppId {
        AppId(format!("{APP_ID_PREFIX}{}", id::base32_128(value)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for AppId {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || DomainError::InvalidArgument {
            field: "app_id".into(),
            reason: format!("expected app-<{} base32 characters>", id::ORG_ID_SUFFIX_LEN),
        };
        let suffix = s.strip_prefix(APP_ID_PREFIX).ok_or_else(malformed)?;
        if !id::is_base32_128(suffix) {
            return Err(malformed());
        }
        Ok(AppId(s.to_string()))
    }
}

impl TryFrom<String> for AppId {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<AppId> for String {
    fn from(id: AppId) -> String {
        id.0
    }
}

/// What a slot asks for. Spelled `phone_number` or `integration:<kind>` on the wire, in
/// manifests and in records.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ResourceKind {
    PhoneNumber,
    /// An integration whose `kind` is this (`twilio`, `salesforce`, ...).
    Integration(String),
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourceKind::PhoneNumber => f.write_str("phone_number"),
            ResourceKind::Integration(kind) => write!(f, "integration:{kind}"),
        }
    }
}

impl FromStr for ResourceKind {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "phone_number" {
            return Ok(ResourceKind::PhoneNumber);
        }
        match s.strip_prefix("integration:") {
            Some(kind) => {
                crate::validate::resource_name("kind", kind).map_err(|_| DomainError::InvalidArgument {
                    field: "kind".into(),
                    reason: format!(
                        "{s:?}: the integration kind must be 1 to 64 characters of a-z, 0-9, '-', '_', '.'"
                    ),
                })?;
                Ok(ResourceKind::Integration(kind.to_string()))
            }
            None => Err(DomainError::InvalidArgument {
                field: "kind".into(),
                reason: format!("{s:?}: expected phone_number or integration:<kind>"),
            }),
        }
    }
}

impl TryFrom<String> for ResourceKind {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ResourceKind> for String {
    fn from(kind: ResourceKind) -> String {
        kind.to_string()
    }
}

/// One binding slot of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub kind: ResourceKind,
    /// The bound resource of the app's org: an integration's name or a phone number. `None`
    /// until bound.
    pub binding: Option<String>,
}

/// An app as stored and as readers see it (it holds no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    pub id: AppId,
    pub org_id: OrgId,
    pub name: String,
    /// The definition document: canonical JSON (keys sorted, no insignificant whitespace), so
    /// equal documents are equal text and exports are deterministic.
    pub definition: String,
    /// Small named files (icons, templates), name -> bytes.
    #[serde(default, with = "assets_base64")]
    pub assets: BTreeMap<String, Vec<u8>>,
    pub slots: BTreeMap<String, Slot>,
    /// Bumped by every change to the app (name, definition, slots, bindings).
    pub version: u64,
    /// The version that was last published, if any.
    pub published_version: Option<u64>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

impl App {
    /// The app without its definition and assets: what a write answers. Answers are
    /// remembered with their request id for a day, and an app may hold over a MiB of them.
    pub fn summary(&self) -> App {
        App { definition: String::new(), assets: BTreeMap::new(), ..self.clone() }
    }

    /// The names of the slots that are not bound, in name order.
    pub fn unbound_slots(&self) -> Vec<&str> {
        self.slots.iter().filter(|(_, s)| s.binding.is_none()).map(|(n, _)| n.as_str()).collect()
    }
}

/// Stores asset bytes as base64 text: JSON arrays of numbers would quadruple them. Used by the
/// app record and by the commands that carry assets (so Raft entries stay small too).
pub(crate) mod assets_base64 {
    use std::collections::BTreeMap;

    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(assets: &BTreeMap<String, Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        let text: BTreeMap<&str, String> = assets.iter().map(|(k, v)| (k.as_str(), STANDARD.encode(v))).collect();
        text.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Vec<u8>>, D::Error> {
        let text = BTreeMap::<String, String>::deserialize(d)?;
        text.into_iter()
            .map(|(k, v)| STANDARD.decode(v).map(|bytes| (k, bytes)).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_refuse_junk() {
        let id = AppId::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(id.to_string().parse::<AppId>().unwrap(), id);
        for bad in ["", "app-", "app-xyz", "eu-0123456789abcdefghjkmnpqrs", "app-0000000000000000000000000u"] {
            assert!(bad.parse::<AppId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn resource_kinds_use_the_wire_spelling() {
        assert_eq!("phone_number".parse::<ResourceKind>().unwrap(), ResourceKind::PhoneNumber);
        let twilio: ResourceKind = "integration:twilio".parse().unwrap();
        assert_eq!(twilio, ResourceKind::Integration("twilio".into()));
        assert_eq!(twilio.to_string(), "integration:twilio");
        for bad in ["", "phone", "integration:", "integration:Twilio", "integration:a/b"] {
            assert!(bad.parse::<ResourceKind>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn assets_are_stored_as_base64() {
        let app = App {
            id: AppId::from_u128(1),
            org_id: OrgId::from_u128(crate::Region::Eu, 1),
            name: "a".into(),
            definition: "{}".into(),
            assets: BTreeMap::from([("icon.png".to_string(), vec![0, 1, 2, 255])]),
            slots: BTreeMap::new(),
            version: 1,
            published_version: None,
            created_at_ms: 1,
            updated_at_ms: 1,
        };
        let json = serde_json::to_string(&app).unwrap();
        assert!(json.contains("AAEC/w=="), "{json}");
        assert_eq!(serde_json::from_str::<App>(&json).unwrap(), app);
    }
}
