//! Apps: the app record, slot specs, and the residency policy's region sets.

use std::collections::{BTreeMap, BTreeSet};

use orgplane_model::{App, AppId, Region, ResourceKind};

use super::ConvError;
use crate::v1;

/// The app as a get (or a write's answer) shows it.
pub fn app_to_wire(app: &App) -> v1::App {
    v1::App {
        id: app.id.to_string(),
        org_id: app.org_id.to_string(),
        name: app.name.clone(),
        definition: app.definition.clone(),
        assets: app.assets.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        slots: app
            .slots
            .iter()
            .map(|(name, slot)| v1::AppSlot {
                name: name.clone(),
                kind: slot.kind.to_string(),
                binding: slot.binding.clone().unwrap_or_default(),
            })
            .collect(),
        version: app.version,
        published_version: app.published_version,
        create_time_ms: app.created_at_ms,
        update_time_ms: app.updated_at_ms,
    }
}

/// The app as a list shows it: without the definition and assets, which can be large.
pub fn app_summary_to_wire(app: &App) -> v1::App {
    let mut wire = app_to_wire(app);
    wire.definition.clear();
    wire.assets.clear();
    wire
}

/// Parses an app id.
pub fn parse_app_id(field: &'static str, text: &str) -> Result<AppId, ConvError> {
    if text.is_empty() {
        return Err(ConvError::new(field, "is required"));
    }
    text.parse::<AppId>().map_err(|_| ConvError::new(field, format!("{text:?} is not an app id (app-<26 base32>)")))
}

/// Parses slot specs into name -> kind; a name given twice is refused.
pub fn parse_slot_specs(
    field: &'static str,
    specs: &[v1::AppSlotSpec],
) -> Result<BTreeMap<String, ResourceKind>, ConvError> {
    if specs.len() > orgplane_model::validate::APP_MAX_SLOTS {
        return Err(ConvError::new(field, format!("must be at most {}", orgplane_model::validate::APP_MAX_SLOTS)));
    }
    let mut slots = BTreeMap::new();
    for spec in specs {
        let kind: ResourceKind =
            spec.kind.parse().map_err(|e| ConvError::new(field, format!("slot {:?}: {e}", spec.name)))?;
        if slots.insert(spec.name.clone(), kind).is_some() {
            return Err(ConvError::new(field, format!("slot {:?} is given twice", spec.name)));
        }
    }
    Ok(slots)
}

/// Parses a set of region names.
pub fn parse_regions(field: &'static str, names: &[String]) -> Result<BTreeSet<Region>, ConvError> {
    if names.len() > 16 {
        return Err(ConvError::new(field, "must list at most 16 regions"));
    }
    names.iter().map(|name| name.parse::<Region>().map_err(|e| ConvError::new(field, e))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_specs_are_checked() {
        let spec = |name: &str, kind: &str| v1::AppSlotSpec { name: name.into(), kind: kind.into() };
        let slots =
            parse_slot_specs("slots", &[spec("sms", "integration:twilio"), spec("line", "phone_number")]).unwrap();
        assert_eq!(slots["line"], ResourceKind::PhoneNumber);
        assert!(parse_slot_specs("slots", &[spec("a", "phone_number"), spec("a", "phone_number")]).is_err());
        assert!(parse_slot_specs("slots", &[spec("a", "fax")]).is_err());
        assert!(parse_app_id("app_id", "nope").is_err());
        assert!(parse_regions("regions", &["mars".into()]).is_err());
    }
}
