//! `write_archive`: the deterministic export.
//!
//! Same archive in, same bytes out: entries in a fixed order (manifest, definition, assets by
//! path), deflate at a fixed level, every timestamp the DOS epoch (1980-01-01 00:00:00; the
//! export time that matters is `exported_at_ms` in the manifest, and a constant cannot drift
//! with time zones or clocks), mode 0644, no extra fields, no comment.
//!
//! The written bytes are read back with the same limits before they are returned, so an export
//! that an import would refuse (an asset too large) fails here, at the source; an entry that
//! deflates past the ratio limit is stored uncompressed rather than refused.

use std::collections::BTreeSet;
use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use crate::error::ArchiveError;
use crate::layout::{self, EntryKind};
use crate::read::{check_definition, read_archive};
use crate::{AppArchive, Limits};

/// flate2's default level: the usual size/speed balance; fixed so output never changes.
const DEFLATE_LEVEL: i64 = 6;
const FILE_MODE: u32 = 0o644;

/// Writes an app archive; fails, naming the entry and limit, if it would not read back.
pub fn write_archive(archive: &AppArchive, limits: &Limits) -> Result<Vec<u8>, ArchiveError> {
    archive.manifest.validate()?;
    check_definition(&archive.definition)?;
    let entries = 2 + archive.assets.len();
    if entries > limits.max_entries {
        return Err(ArchiveError::TooManyEntries { count: entries as u64, limit: limits.max_entries });
    }
    for path in archive.assets.keys() {
        let name = format!("{}{path}", layout::ASSETS_PREFIX);
        match layout::classify(name.as_bytes())? {
            (_, EntryKind::Asset(_)) => {}
            _ => return Err(ArchiveError::UnknownEntry { name }),
        }
    }

    // An entry that deflates past `max_ratio` (a blank bitmap, a padded file) would be refused
    // by the importer as a bomb: such entries are stored instead. The choice depends only on
    // the input, so the output stays deterministic; each round stores one more entry, so the
    // loop ends.
    let mut stored = BTreeSet::new();
    loop {
        let bytes = encode(archive, &stored)?;
        match read_archive(&bytes, limits) {
            Err(ArchiveError::RatioTooHigh { name, .. }) if !stored.contains(&name) => {
                stored.insert(name);
            }
            Err(e) => return Err(e),
            Ok(back) => {
                let mut expected_manifest = archive.manifest.clone();
                expected_manifest.slots.sort();
                if back.manifest != expected_manifest
                    || back.definition != archive.definition
                    || back.assets != archive.assets
                {
                    return Err(ArchiveError::Write {
                        reason: "the written archive does not read back as written".into(),
                    });
                }
                return Ok(bytes);
            }
        }
    }
}

/// The ZIP bytes, every entry deflated but those named in `stored`.
fn encode(archive: &AppArchive, stored: &BTreeSet<String>) -> Result<Vec<u8>, ArchiveError> {
    let deflated = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(DEFLATE_LEVEL))
        .last_modified_time(DateTime::default())
        .unix_permissions(FILE_MODE)
        .large_file(false);
    let plain = deflated.compression_method(CompressionMethod::Stored).compression_level(None);
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let mut put = |name: &str, data: &[u8]| -> Result<(), ArchiveError> {
        let failed = |e: &dyn std::fmt::Display| ArchiveError::Write { reason: format!("{name}: {e}") };
        let options = if stored.contains(name) { plain } else { deflated };
        zip.start_file(name, options).map_err(|e| failed(&e))?;
        zip.write_all(data).map_err(|e| failed(&e))
    };
    put(layout::MANIFEST, &archive.manifest.to_json()?)?;
    put(layout::DEFINITION, &archive.definition)?;
    for (path, data) in &archive.assets {
        put(&format!("{}{path}", layout::ASSETS_PREFIX), data)?;
    }
    let bytes = zip.finish().map_err(|e| ArchiveError::Write { reason: e.to_string() })?.into_inner();
    Ok(bytes)
}
