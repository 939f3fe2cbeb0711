//! The manifest's rules, as the reader enforces them on hand-edited archives.

use orgplane_appzip::corpus::valid_app;
use orgplane_appzip::{read_archive, write_archive, ArchiveError, Limits, SlotManifest};

/// An archive with this manifest.json (written by the zip crate, past our writer's checks).
fn read_with_manifest(manifest: serde_json::Value) -> Result<(), ArchiveError> {
    let mut app = valid_app();
    app.assets.clear();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    use std::io::Write;
    zip.start_file("manifest.json", options).expect("start");
    zip.write_all(&serde_json::to_vec(&manifest).expect("json")).expect("write");
    zip.start_file("definition.json", options).expect("start");
    zip.write_all(&app.definition).expect("write");
    let bytes = zip.finish().expect("finish").into_inner();
    read_archive(&bytes, &Limits::default()).map(|_| ())
}

fn manifest() -> serde_json::Value {
    serde_json::to_value(valid_app().manifest).expect("value")
}

fn refused_because(manifest: serde_json::Value) -> String {
    match read_with_manifest(manifest) {
        Err(ArchiveError::InvalidManifest { reason }) => reason,
        other => panic!("expected InvalidManifest, got {other:?}"),
    }
}

#[test]
fn the_unchanged_manifest_is_accepted() {
    read_with_manifest(manifest()).expect("valid");
}

#[test]
fn app_name_must_be_present_and_short() {
    let mut m = manifest();
    m["app_name"] = "  ".into();
    assert_eq!(refused_because(m), "app_name is empty");
    let mut m = manifest();
    m["app_name"] = "é".repeat(129).into();
    assert_eq!(refused_because(m), "app_name is longer than 128 characters");
    let mut m = manifest();
    m["app_name"] = "é".repeat(128).into();
    read_with_manifest(m).expect("128 characters are fine, whatever their bytes");
}

#[test]
fn source_region_must_be_a_region_as_written() {
    for region in ["mars", "EU", " eu", ""] {
        let mut m = manifest();
        m["source_region"] = region.into();
        assert!(refused_because(m).contains("source_region"), "{region:?}");
    }
}

#[test]
fn slot_names_follow_the_pattern_and_are_unique() {
    for name in ["", "Main", "a b", "x".repeat(65).as_str(), "ü"] {
        let mut m = manifest();
        m["slots"][0]["name"] = name.into();
        assert!(refused_because(m).contains("must match"), "{name:?}");
    }
    let mut m = manifest();
    m["slots"][1]["name"] = m["slots"][0]["name"].clone();
    assert!(refused_because(m).contains("appears twice"));
}

#[test]
fn slots_come_back_sorted_whatever_the_file_order() {
    let mut m = manifest();
    let slots = m["slots"].as_array_mut().expect("slots");
    slots.reverse();
    read_with_manifest(m).expect("order is not a refusal");
    let mut app = valid_app();
    app.manifest.slots.reverse();
    let bytes = write_archive(&app, &Limits::default()).expect("write");
    let back = read_archive(&bytes, &Limits::default()).expect("read");
    let names: Vec<&str> = back.manifest.slots.iter().map(|s: &SlotManifest| s.name.as_str()).collect();
    assert_eq!(names, ["crm", "main_line"]);
}

#[test]
fn a_missing_field_is_refused() {
    let mut m = manifest();
    m.as_object_mut().expect("object").remove("source_org_id");
    assert!(refused_because(m).contains("source_org_id"));
}
