//! Every hostile archive of the corpus is refused with the error it is built to get; the valid
//! one round-trips.

use orgplane_appzip::corpus::{hostile_archives, valid_app, valid_archive};
use orgplane_appzip::{read_archive, write_archive, ArchiveError, Limits};

/// The variant each case must be refused with.
const EXPECTED: &[(&str, &str)] = &[
    ("path_escape", "InvalidName"),
    ("path_escape_inside_assets", "InvalidName"),
    ("absolute_path", "InvalidName"),
    ("backslash_path", "InvalidName"),
    ("drive_letter", "InvalidName"),
    ("nul_in_name", "InvalidName"),
    ("not_utf8_name", "InvalidName"),
    ("directory_entry", "DirectoryEntry"),
    ("unknown_top_level_entry", "UnknownEntry"),
    ("symlink", "Symlink"),
    ("too_many_entries", "TooManyEntries"),
    ("entries_100k_zip64", "TooManyEntries"),
    ("ratio_bomb", "RatioTooHigh"),
    ("declared_1gib_of_zeros", "EntryTooLarge"),
    ("overlapping_entry_bomb", "OverlappingEntries"),
    ("overlapping_entry_extends_over_next", "OverlappingEntries"),
    ("lying_size_declared_small", "SizeMismatch"),
    ("lying_size_declared_big", "SizeMismatch"),
    ("encrypted_entry", "Encrypted"),
    ("bzip2_method", "UnsupportedCompression"),
    ("nested_zip_by_name", "NestedArchive"),
    ("nested_zip_by_content", "NestedArchive"),
    ("truncated_in_central_directory", "Truncated"),
    ("truncated_end_record_kept", "Truncated"),
    ("duplicate_names", "DuplicateName"),
    ("case_colliding_names", "CaseCollision"),
    ("missing_manifest", "MissingEntry"),
    ("bad_format_version", "UnsupportedFormatVersion"),
    ("manifest_not_json", "InvalidJson"),
    ("manifest_unknown_field", "InvalidManifest"),
    ("definition_not_json", "InvalidJson"),
    ("crc_mismatch", "Corrupt"),
    ("not_a_zip", "Truncated"),
    ("empty", "Truncated"),
    ("too_large", "ArchiveTooLarge"),
];

fn variant(err: &ArchiveError) -> String {
    let debug = format!("{err:?}");
    debug.split(|c: char| !c.is_alphanumeric()).next().unwrap_or_default().to_string()
}

#[test]
fn every_hostile_case_is_refused_with_its_error() {
    let cases = hostile_archives();
    let names: Vec<&str> = cases.iter().map(|(name, _)| *name).collect();
    let expected: Vec<&str> = EXPECTED.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, expected, "the table lists every case, in order");
    let mut wrong = Vec::new();
    for ((name, bytes), (_, want)) in cases.iter().zip(EXPECTED) {
        if *name == "crc_mismatch" && cfg!(feature = "fuzzing") {
            continue; // the fuzzing build skips the CRC on purpose
        }
        match read_archive(bytes, &Limits::default()) {
            Ok(_) => wrong.push(format!("{name}: accepted")),
            Err(err) if variant(&err) != *want => wrong.push(format!("{name}: {err:?} (want {want})")),
            Err(err) => {
                let message = err.to_string();
                assert!(!message.contains('\n'), "{name}: one line: {message}");
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn hostile_cases_stay_small() {
    for (name, bytes) in hostile_archives() {
        if name != "too_large" {
            assert!(bytes.len() < 256 * 1024, "{name} is {} bytes", bytes.len());
        }
    }
}

#[test]
fn the_valid_archive_round_trips() {
    let bytes = valid_archive();
    let app = read_archive(&bytes, &Limits::default()).expect("valid");
    assert_eq!(app, valid_app());
    assert_eq!(write_archive(&app, &Limits::default()).expect("write"), bytes);
}

#[test]
fn messages_are_clear_for_the_client() {
    let message = |case: &str| {
        let (_, bytes) = hostile_archives().into_iter().find(|(name, _)| *name == case).expect("case");
        read_archive(&bytes, &Limits::default()).expect_err("refused").to_string()
    };
    assert_eq!(message("bad_format_version"), "unsupported format version 2, this server reads 1");
    assert_eq!(message("entries_100k_zip64"), "archive has 100000 entries, the limit is 64");
    assert_eq!(message("nul_in_name"), "entry name \"assets/a\\0.txt\" is not allowed: it contains NUL");
    assert_eq!(
        message("lying_size_declared_big"),
        "entry \"assets/hello.txt\" declares 5000 uncompressed bytes but holds 5"
    );
}

fn case(name: &str) -> Vec<u8> {
    hostile_archives().into_iter().find(|(case, _)| *case == name).map(|(_, bytes)| bytes).expect("case exists")
}

/// The limit is what refuses each bomb: relaxed, the same bytes read (so the corpus is not
/// refused for some accidental other reason).
#[test]
fn relaxing_a_limit_lets_its_case_through() {
    let ratio = Limits { max_ratio: 1000, ..Limits::default() };
    let app = read_archive(&case("ratio_bomb"), &ratio).expect("ratio 160 < 1000");
    assert_eq!(app.assets["zeros.bin"], vec![0; 1024 * 1024]);

    let entries = Limits { max_entries: 100, ..Limits::default() };
    let app = read_archive(&case("too_many_entries"), &entries).expect("67 < 100 entries");
    assert_eq!(app.assets.len(), 65);

    let total = Limits { max_total_bytes: 1024, ..Limits::default() };
    assert!(read_archive(&valid_archive(), &total).is_ok());
    let tiny = Limits { max_total_bytes: 100, ..Limits::default() };
    assert!(matches!(read_archive(&valid_archive(), &tiny), Err(ArchiveError::TotalTooLarge { .. })));
}

/// Archives written by streaming writers carry data descriptors; they are not hostile.
#[test]
fn entries_with_data_descriptors_are_read() {
    use std::io::Write;
    let app = valid_app();
    let mut writer = zip::ZipWriter::new_stream(Vec::new());
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let manifest = serde_json::to_vec(&app.manifest).expect("json");
    for (name, data) in
        [("manifest.json".to_string(), manifest.as_slice()), ("definition.json".to_string(), app.definition.as_slice())]
            .into_iter()
            .chain(app.assets.iter().map(|(p, d)| (format!("assets/{p}"), d.as_slice())))
    {
        writer.start_file(name, options).expect("start");
        writer.write_all(data).expect("write");
    }
    let bytes = writer.finish().expect("finish").into_inner();
    let first_flags = u16::from_le_bytes([bytes[6], bytes[7]]);
    assert_ne!(first_flags & 0x08, 0, "the stream writer used a data descriptor");
    assert_eq!(read_archive(&bytes, &Limits::default()).expect("read"), app);
}
