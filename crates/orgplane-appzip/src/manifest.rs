//! `manifest.json`: what the archive is, where it came from, and the slots the importer must bind.
//!
//! The manifest names the source org's resources only by name (a hint for the importer); it never
//! carries resource ids or secrets, so an archive leaks nothing of the source org but the app.

use std::collections::BTreeSet;
use std::str::FromStr;

use orgplane_model::Region;
use serde::{Deserialize, Serialize};

use crate::error::ArchiveError;

/// The archive format this crate writes and reads. A reader refuses any other version with a
/// message naming both, so a newer server's export fails clearly on an older one.
pub const FORMAT_VERSION: u32 = 1;

/// The longest app name, in characters.
pub const MAX_APP_NAME_CHARS: usize = 128;
/// The most binding slots an app may have (keeps the manifest small whatever it holds).
pub const MAX_SLOTS: usize = 256;
/// The longest slot kind and bound resource name, in characters.
pub const MAX_LABEL_CHARS: usize = 256;

/// The archive's `manifest.json`. Field order is the serialized order, so the JSON is stable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    pub app_name: String,
    /// The source app's version.
    pub app_version: u64,
    /// The source org's id, e.g. `eu-01k...`.
    pub source_org_id: String,
    /// The source org's region: `us`, `eu` or `apac`.
    pub source_region: String,
    /// The exported app version's `updated_at` (not the time of the export: exports of the same
    /// version are byte-identical).
    pub exported_at_ms: u64,
    /// Sorted by name; names unique.
    pub slots: Vec<SlotManifest>,
}

/// One binding slot of the app.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotManifest {
    /// `[a-z0-9_-]{1,64}`.
    pub name: String,
    /// Opaque to this crate (`phone_number`, `integration:<kind>`).
    pub kind: String,
    /// The name (never the id) of the resource the slot was bound to in the source org.
    pub bound_resource_name: Option<String>,
}

/// Only the version, read first and leniently: a newer format may add fields, and its archive
/// must still get "unsupported format version", not "unknown field".
#[derive(Deserialize)]
struct VersionProbe {
    format_version: u64,
}

impl Manifest {
    /// Parses and validates `manifest.json`; slots come back sorted by name.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Manifest, ArchiveError> {
        let probe: VersionProbe = serde_json::from_slice(bytes)
            .map_err(|e| ArchiveError::InvalidJson { name: "manifest.json", reason: e.to_string() })?;
        if probe.format_version != u64::from(FORMAT_VERSION) {
            return Err(ArchiveError::UnsupportedFormatVersion {
                found: probe.format_version,
                supported: FORMAT_VERSION,
            });
        }
        let mut manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ArchiveError::InvalidManifest { reason: e.to_string() })?;
        manifest.slots.sort();
        manifest.validate()?;
        Ok(manifest)
    }

    /// The rules both the writer and the reader hold a manifest to.
    pub(crate) fn validate(&self) -> Result<(), ArchiveError> {
        let invalid = |reason: String| Err(ArchiveError::InvalidManifest { reason });
        if self.format_version != FORMAT_VERSION {
            return Err(ArchiveError::UnsupportedFormatVersion {
                found: u64::from(self.format_version),
                supported: FORMAT_VERSION,
            });
        }
        if self.app_name.trim().is_empty() {
            return invalid("app_name is empty".into());
        }
        if self.app_name.chars().count() > MAX_APP_NAME_CHARS {
            return invalid(format!("app_name is longer than {MAX_APP_NAME_CHARS} characters"));
        }
        if self.source_org_id.is_empty() || self.source_org_id.len() > MAX_LABEL_CHARS {
            return invalid(format!("source_org_id must be 1 to {MAX_LABEL_CHARS} characters"));
        }
        match Region::from_str(&self.source_region) {
            Ok(region) if region.as_str() == self.source_region => {}
            _ => return invalid(format!("source_region {:?} is not one of us, eu, apac", self.source_region)),
        }
        if self.slots.len() > MAX_SLOTS {
            return invalid(format!("more than {MAX_SLOTS} slots"));
        }
        let mut names = BTreeSet::new();
        for slot in &self.slots {
            if !is_slot_name(&slot.name) {
                return invalid(format!("slot name {:?} must match [a-z0-9_-]{{1,64}}", slot.name));
            }
            if !names.insert(slot.name.as_str()) {
                return invalid(format!("slot {:?} appears twice", slot.name));
            }
            if slot.kind.is_empty() || slot.kind.chars().count() > MAX_LABEL_CHARS {
                return invalid(format!("slot {:?}: kind must be 1 to {MAX_LABEL_CHARS} characters", slot.name));
            }
            if let Some(resource) = &slot.bound_resource_name {
                if resource.chars().count() > MAX_LABEL_CHARS {
                    return invalid(format!(
                        "slot {:?}: bound_resource_name is longer than {MAX_LABEL_CHARS} characters",
                        slot.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// The canonical bytes of the manifest: pretty JSON in field order, slots sorted.
    pub(crate) fn to_json(&self) -> Result<Vec<u8>, ArchiveError> {
        let mut sorted = self.clone();
        sorted.slots.sort();
        let mut bytes =
            serde_json::to_vec_pretty(&sorted).map_err(|e| ArchiveError::Write { reason: e.to_string() })?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

/// `[a-z0-9_-]{1,64}`.
pub fn is_slot_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}
