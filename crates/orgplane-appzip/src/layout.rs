//! The archive's layout and its entry-name rules.
//!
//! An app archive holds exactly `manifest.json`, `definition.json` and files under `assets/`.
//! Names are checked as raw bytes here, before the zip crate builds its name index (which keys
//! entries by name and could silently merge duplicates), and again against the zip crate's
//! `enclosed_name()` in `read`.
//!
//! Directory entries are refused, not skipped: exports never contain them, and one rule (files
//! only) is easier to state and to fuzz than "directories are fine if empty and under assets/"
//! (`zip -r -D` builds an archive without them by hand).

use crate::error::ArchiveError;

pub(crate) const MANIFEST: &str = "manifest.json";
pub(crate) const DEFINITION: &str = "definition.json";
pub(crate) const ASSETS_PREFIX: &str = "assets/";

/// The longest entry name, in bytes.
pub const MAX_NAME_BYTES: usize = 512;

/// What an entry is, by its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Manifest,
    Definition,
    /// The path below `assets/`.
    Asset(String),
}

/// Checks a raw entry name and says which entry it is.
pub(crate) fn classify(raw: &[u8]) -> Result<(String, EntryKind), ArchiveError> {
    let lossy = || String::from_utf8_lossy(raw).into_owned();
    let bad = |reason: &'static str| ArchiveError::InvalidName { name: lossy(), reason };
    let name = std::str::from_utf8(raw).map_err(|_| bad("it is not UTF-8"))?;
    check_path(name).map_err(bad)?;
    if name.ends_with('/') {
        return Err(ArchiveError::DirectoryEntry { name: name.into() });
    }
    let kind = match name {
        MANIFEST => EntryKind::Manifest,
        DEFINITION => EntryKind::Definition,
        _ => match name.strip_prefix(ASSETS_PREFIX) {
            Some(rest) if !rest.is_empty() => {
                if is_archive_name(rest) {
                    return Err(ArchiveError::NestedArchive { name: name.into() });
                }
                EntryKind::Asset(rest.to_string())
            }
            _ => return Err(ArchiveError::UnknownEntry { name: name.into() }),
        },
    };
    Ok((name.to_string(), kind))
}

/// The path rules: relative, `/`-separated, no `.`/`..`/empty components, nothing a file system
/// could read as something else (NUL, control characters, `\`, drive letters).
pub(crate) fn check_path(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > MAX_NAME_BYTES {
        return Err("it is longer than 512 bytes");
    }
    if name.contains('\0') {
        return Err("it contains NUL");
    }
    if name.chars().any(char::is_control) {
        return Err("it contains a control character");
    }
    if name.contains('\\') {
        return Err("it contains a backslash");
    }
    if name.starts_with('/') {
        return Err("it is an absolute path");
    }
    if name.contains(':') {
        return Err("it contains ':' (a drive letter or stream name)");
    }
    let trimmed = name.strip_suffix('/').unwrap_or(name);
    for component in trimmed.split('/') {
        match component {
            "" => return Err("it has an empty path component"),
            "." | ".." => return Err("it has a '.' or '..' path component"),
            _ => {}
        }
    }
    Ok(())
}

/// Names of archives an importer might be tempted to open in turn.
pub(crate) fn is_archive_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".zip") || lower.ends_with(".jar")
}

/// Content that is itself a ZIP (a local file header or an empty archive's end record).
pub(crate) fn is_archive_content(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06")
}
