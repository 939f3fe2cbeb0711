//! The writer and the reader agree, and the writer is deterministic.

use std::collections::BTreeMap;

use orgplane_appzip::{
    read_archive, write_archive, AppArchive, ArchiveError, Limits, Manifest, SlotManifest, FORMAT_VERSION,
};

fn sample() -> AppArchive {
    AppArchive {
        manifest: Manifest {
            format_version: FORMAT_VERSION,
            app_name: "Support line".into(),
            app_version: 7,
            source_org_id: "eu-01k0000000000000000000000".into(),
            source_region: "eu".into(),
            exported_at_ms: 1_790_000_000_123,
            slots: vec![
                SlotManifest {
                    name: "crm".into(),
                    kind: "integration:salesforce".into(),
                    bound_resource_name: Some("Main CRM".into()),
                },
                SlotManifest { name: "main_line".into(), kind: "phone_number".into(), bound_resource_name: None },
            ],
        },
        definition: br#"{"steps":[{"say":"hello"}]}"#.to_vec(),
        assets: BTreeMap::from([
            ("img/logo.svg".to_string(), b"<svg/>".to_vec()),
            ("prompts/en.txt".to_string(), b"Welcome".repeat(100)),
        ]),
    }
}

#[test]
fn write_then_read_gives_the_same_archive() {
    let archive = sample();
    let bytes = write_archive(&archive, &Limits::default()).expect("write");
    let back = read_archive(&bytes, &Limits::default()).expect("read");
    assert_eq!(back, archive);
}

#[test]
fn same_input_writes_identical_bytes() {
    let first = write_archive(&sample(), &Limits::default()).expect("write");
    let second = write_archive(&sample(), &Limits::default()).expect("write");
    assert_eq!(first, second);
    // another manifest field changes the bytes: the comparison is not vacuous
    let mut other = sample();
    other.manifest.exported_at_ms += 1;
    assert_ne!(write_archive(&other, &Limits::default()).expect("write"), first);
}

#[test]
fn unsorted_slots_are_written_sorted() {
    let mut archive = sample();
    archive.manifest.slots.reverse();
    let bytes = write_archive(&archive, &Limits::default()).expect("write");
    assert_eq!(bytes, write_archive(&sample(), &Limits::default()).expect("write"));
    let back = read_archive(&bytes, &Limits::default()).expect("read");
    assert_eq!(back.manifest.slots, sample().manifest.slots);
}

#[test]
fn entries_are_in_fixed_order_with_fixed_metadata() {
    let bytes = write_archive(&sample(), &Limits::default()).expect("write");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("zip");
    let names: Vec<String> = zip.file_names().map(|n| n.expect("name").to_string()).collect();
    assert_eq!(names, ["manifest.json", "definition.json", "assets/img/logo.svg", "assets/prompts/en.txt"]);
    for index in 0..zip.len() {
        let file = zip.by_index(index).expect("entry");
        assert_eq!(file.compression(), zip::CompressionMethod::Deflated);
        assert_eq!(file.unix_mode(), Some(0o100644));
        assert_eq!(file.last_modified(), Some(zip::DateTime::default()));
        assert!(file.extra_data().is_none_or(|e| e.is_empty()), "{}", file.name().unwrap_or_default());
    }
}

#[test]
fn manifest_json_is_stable_and_has_no_ids_but_the_org() {
    let bytes = write_archive(&sample(), &Limits::default()).expect("write");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("zip");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("manifest.json").expect("manifest"), &mut text).expect("read");
    let keys: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix('"')?.split('"').next())
        .filter(|k| {
            ["format_version", "app_name", "app_version", "source_org_id", "source_region", "exported_at_ms", "slots"]
                .contains(k)
        })
        .collect();
    assert_eq!(
        keys,
        ["format_version", "app_name", "app_version", "source_org_id", "source_region", "exported_at_ms", "slots"]
    );
}

#[test]
fn writer_refuses_what_the_reader_would_refuse() {
    let limits = Limits::default();
    let mut bad_name = sample();
    bad_name.assets.insert("../escape".into(), b"x".to_vec());
    assert!(matches!(write_archive(&bad_name, &limits), Err(ArchiveError::InvalidName { .. })));

    let mut bad_definition = sample();
    bad_definition.definition = b"{not json".to_vec();
    assert!(matches!(
        write_archive(&bad_definition, &limits),
        Err(ArchiveError::InvalidJson { name: "definition.json", .. })
    ));

    let mut bad_slot = sample();
    bad_slot.manifest.slots[0].name = "Has Spaces".into();
    assert!(matches!(write_archive(&bad_slot, &limits), Err(ArchiveError::InvalidManifest { .. })));

    let mut too_big = sample();
    too_big.definition = format!("\"{}\"", "ab".repeat(600 * 1024)).into_bytes();
    assert!(matches!(write_archive(&too_big, &limits), Err(ArchiveError::DefinitionTooLarge { .. })));

    let mut nested = sample();
    nested.assets.insert("inner.bin".into(), b"PK\x03\x04rest".to_vec());
    assert!(matches!(write_archive(&nested, &limits), Err(ArchiveError::NestedArchive { .. })));
}

#[test]
fn messages_name_the_entry_and_the_limit() {
    let mut archive = sample();
    archive.assets.insert("big.txt".into(), b"0123456789abcdef".repeat(200 * 1024));
    let err = write_archive(&archive, &Limits::default()).expect_err("too big");
    assert_eq!(err.to_string(), "entry \"assets/big.txt\" is larger than the per-entry limit of 2097152 bytes");
    assert!(!err.to_string().contains('\n'));
}

/// A highly compressible asset would be refused by the importer as a bomb if deflated: the
/// writer stores it, and only it, so the export imports.
#[test]
fn entries_that_deflate_past_the_ratio_are_stored() {
    let mut archive = sample();
    archive.assets.insert("blank.bmp".into(), vec![0; 1024 * 1024]);
    let bytes = write_archive(&archive, &Limits::default()).expect("write");
    assert_eq!(read_archive(&bytes, &Limits::default()).expect("read"), archive);
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.clone())).expect("zip");
    for index in 0..zip.len() {
        let file = zip.by_index(index).expect("entry");
        let want = if file.name_raw() == b"assets/blank.bmp" {
            zip::CompressionMethod::Stored
        } else {
            zip::CompressionMethod::Deflated
        };
        assert_eq!(file.compression(), want, "{:?}", file.name_raw());
    }
    assert_eq!(write_archive(&archive, &Limits::default()).expect("again"), bytes);
}

#[test]
fn too_many_slots_are_refused() {
    let mut archive = sample();
    archive.manifest.slots = (0..257)
        .map(|i| SlotManifest { name: format!("s{i:03}"), kind: "phone_number".into(), bound_resource_name: None })
        .collect();
    assert!(matches!(write_archive(&archive, &Limits::default()), Err(ArchiveError::InvalidManifest { .. })));
    archive.manifest.slots.truncate(256);
    assert!(write_archive(&archive, &Limits::default()).is_ok());
}
