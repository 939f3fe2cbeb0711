//! `read_archive`: the hardened import parser.
//!
//! Order matters: the cheap structural checks (size, our own central directory scan with the
//! entry-count limit and overlaps, names, flags) run before the zip crate opens the archive, and
//! the zip crate's view is compared with ours before any entry is decompressed. Entry data is
//! counted as actually decompressed, never as declared, through a reader capped one byte past
//! what is still allowed, so memory stays within the limits whatever the headers claim.

use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read};

use zip::ZipArchive;

use crate::central::{self, CentralEntry, FLAG_ENCRYPTED, FLAG_STRONG_ENCRYPTION};
use crate::error::ArchiveError;
use crate::layout::{self, EntryKind};
use crate::manifest::Manifest;
use crate::{AppArchive, Limits, RATIO_CHECK_MIN_BYTES};

const METHOD_STORED: u16 = 0;
const METHOD_DEFLATE: u16 = 8;
const METHOD_AES: u16 = 99;
/// "Version made by" host 3 is Unix: then the high 16 bits of the external attributes are the mode.
const HOST_UNIX: u16 = 3;
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;

/// Reads and fully validates an app archive held in memory. Nothing touches the disk.
pub fn read_archive(bytes: &[u8], limits: &Limits) -> Result<AppArchive, ArchiveError> {
    let size = bytes.len() as u64;
    if size > limits.max_archive_bytes {
        return Err(ArchiveError::ArchiveTooLarge { size, limit: limits.max_archive_bytes });
    }
    let scanned = central::scan(bytes, limits)?;
    let kinds = check_names(&scanned.entries)?;
    for entry in &scanned.entries {
        check_entry_type(entry)?;
    }

    let mut zip = ZipArchive::new(Cursor::new(bytes)).map_err(|e| ArchiveError::Malformed { reason: e.to_string() })?;
    if zip.len() != scanned.entries.len() {
        return Err(ArchiveError::Malformed {
            reason: format!(
                "the archive reads as {} or {} entries depending on the parser",
                zip.len(),
                scanned.entries.len()
            ),
        });
    }

    let mut manifest = None;
    let mut definition = None;
    let mut assets = BTreeMap::new();
    let mut total = 0u64;
    for (index, (entry, (name, kind))) in scanned.entries.iter().zip(kinds).enumerate() {
        let file = zip
            .by_index_with_options(index, read_options())
            .map_err(|e| ArchiveError::Corrupt { name: name.clone(), reason: e.to_string() })?;
        agree(&file, entry, &name)?;
        let cap = Cap::for_entry(&kind, limits, total);
        let data = read_entry(file, entry, &name, &cap, limits)?;
        total += data.len() as u64;
        match kind {
            EntryKind::Manifest => manifest = Some(data),
            EntryKind::Definition => definition = Some(data),
            EntryKind::Asset(path) => {
                if layout::is_archive_content(&data) {
                    return Err(ArchiveError::NestedArchive { name });
                }
                assets.insert(path, data);
            }
        }
    }

    let manifest = manifest.ok_or(ArchiveError::MissingEntry { name: layout::MANIFEST })?;
    let definition = definition.ok_or(ArchiveError::MissingEntry { name: layout::DEFINITION })?;
    let manifest = Manifest::parse(&manifest)?;
    check_definition(&definition)?;
    Ok(AppArchive { manifest, definition, assets })
}

/// How the zip crate reads an entry: it checks the local header against the central record too
/// (a second opinion on ours), and the CRC, except in the fuzzing build (feature `fuzzing`,
/// only the fuzz crate enables it): there a mutated byte would otherwise stop almost every
/// input at the checksum, before the decompressor and the manifest checks it is meant to reach.
fn read_options() -> zip::ZipReadOptions<'static> {
    zip::ZipReadOptions::new().enforce_header_consistency(true).ignore_crc32(cfg!(feature = "fuzzing"))
}

/// `definition.json` must be JSON; its content is the node's business.
pub(crate) fn check_definition(definition: &[u8]) -> Result<(), ArchiveError> {
    serde_json::from_slice::<serde::de::IgnoredAny>(definition)
        .map(|_| ())
        .map_err(|e| ArchiveError::InvalidJson { name: layout::DEFINITION, reason: e.to_string() })
}

/// Every name valid, no duplicates, no two equal but for case; returns each entry's kind.
fn check_names(entries: &[CentralEntry]) -> Result<Vec<(String, EntryKind)>, ArchiveError> {
    let mut seen: HashMap<String, String> = HashMap::with_capacity(entries.len());
    let mut kinds = Vec::with_capacity(entries.len());
    for entry in entries {
        let (name, kind) = layout::classify(&entry.name)?;
        if !name.is_ascii() && entry.flags & (1 << 11) == 0 {
            return Err(ArchiveError::InvalidName { name, reason: "it is not ASCII and the UTF-8 flag is not set" });
        }
        if let Some(other) = seen.insert(name.to_lowercase(), name.clone()) {
            return Err(if other == name {
                ArchiveError::DuplicateName { name }
            } else {
                ArchiveError::CaseCollision { name, other }
            });
        }
        kinds.push((name, kind));
    }
    Ok(kinds)
}

/// Regular files only, unencrypted, stored or deflated.
fn check_entry_type(entry: &CentralEntry) -> Result<(), ArchiveError> {
    let name = || String::from_utf8_lossy(&entry.name).into_owned();
    if entry.version_made_by >> 8 == HOST_UNIX {
        match (entry.external_attrs >> 16) & S_IFMT {
            0 | S_IFREG => {}
            S_IFLNK => return Err(ArchiveError::Symlink { name: name() }),
            S_IFDIR => return Err(ArchiveError::DirectoryEntry { name: name() }),
            _ => {
                return Err(ArchiveError::InvalidName {
                    name: name(),
                    reason: "it is a device, pipe or socket, not a regular file",
                })
            }
        }
    }
    if entry.flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION) != 0 || entry.method == METHOD_AES {
        return Err(ArchiveError::Encrypted { name: name() });
    }
    if entry.method != METHOD_STORED && entry.method != METHOD_DEFLATE {
        return Err(ArchiveError::UnsupportedCompression { name: name(), method: entry.method });
    }
    Ok(())
}

/// The zip crate must see the entry as our scan did (a second name from an extra field, a
/// different header or size would mean the two parsers read different archives).
fn agree<R: Read>(file: &zip::read::ZipFile<'_, R>, entry: &CentralEntry, name: &str) -> Result<(), ArchiveError> {
    let differs = |what: &str| ArchiveError::Malformed {
        reason: format!("entry {name:?}: the zip parser reads a different {what}"),
    };
    if file.name_raw() != entry.name.as_slice() || file.name().ok().as_deref() != Some(name) {
        return Err(differs("name"));
    }
    if file.header_start() != entry.local_offset {
        return Err(differs("header offset"));
    }
    if file.compressed_size() != entry.compressed_size || file.size() != entry.uncompressed_size {
        return Err(differs("size"));
    }
    if file.encrypted() {
        return Err(ArchiveError::Encrypted { name: name.into() });
    }
    if file.is_symlink() {
        return Err(ArchiveError::Symlink { name: name.into() });
    }
    if file.is_dir() {
        return Err(ArchiveError::DirectoryEntry { name: name.into() });
    }
    match file.enclosed_name() {
        Some(path) if path.to_str() == Some(name) => Ok(()),
        _ => Err(ArchiveError::InvalidName { name: name.into(), reason: "it does not stay inside the archive's root" }),
    }
}

/// How many bytes an entry may still decompress to, and which limit says so.
struct Cap {
    bytes: u64,
    exceeded: ArchiveError,
}

impl Cap {
    fn for_entry(kind: &EntryKind, limits: &Limits, total_so_far: u64) -> Cap {
        let name = match kind {
            EntryKind::Manifest => layout::MANIFEST.to_string(),
            EntryKind::Definition => layout::DEFINITION.to_string(),
            EntryKind::Asset(path) => format!("{}{path}", layout::ASSETS_PREFIX),
        };
        let remaining = limits.max_total_bytes.saturating_sub(total_so_far);
        let mut cap = Cap {
            bytes: limits.max_entry_bytes,
            exceeded: ArchiveError::EntryTooLarge { name: name.clone(), limit: limits.max_entry_bytes },
        };
        if *kind == EntryKind::Definition && limits.max_definition_bytes < cap.bytes {
            cap = Cap {
                bytes: limits.max_definition_bytes,
                exceeded: ArchiveError::DefinitionTooLarge { limit: limits.max_definition_bytes },
            };
        }
        if remaining < cap.bytes {
            cap =
                Cap { bytes: remaining, exceeded: ArchiveError::TotalTooLarge { name, limit: limits.max_total_bytes } };
        }
        cap
    }
}

/// Decompresses one entry, counting what comes out: never more than `cap + 1` bytes are held.
fn read_entry<R: Read>(
    file: R,
    entry: &CentralEntry,
    name: &str,
    cap: &Cap,
    limits: &Limits,
) -> Result<Vec<u8>, ArchiveError> {
    let declared = entry.uncompressed_size;
    if declared > cap.bytes {
        return Err(cap.exceeded.clone());
    }
    // `declared <= cap.bytes`, itself bounded by the limits: a safe preallocation.
    let mut data = Vec::with_capacity(usize::try_from(declared).unwrap_or(0));
    let mut limited = file.take(cap.bytes.saturating_add(1));
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match limited.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => data.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                // The zip crate stops an entry that decompresses past its declared size with
                // this error (zip 9.5 `Crc32Reader`); pinned by the corpus test
                // `lying_size_declared_small`, and still a refusal if its wording changes.
                if e.to_string().contains("larger than its declared") {
                    return Err(ArchiveError::SizeMismatch {
                        name: name.into(),
                        declared,
                        actual: format!("more than {declared}"),
                    });
                }
                return Err(ArchiveError::Corrupt { name: name.into(), reason: e.to_string() });
            }
        }
    }
    let actual = data.len() as u64;
    if actual > cap.bytes {
        return Err(cap.exceeded.clone());
    }
    if actual > RATIO_CHECK_MIN_BYTES {
        let compressed = entry.compressed_size.max(1);
        let ratio = actual / compressed;
        if ratio > limits.max_ratio {
            return Err(ArchiveError::RatioTooHigh {
                name: name.into(),
                ratio,
                compressed: entry.compressed_size,
                limit: limits.max_ratio,
            });
        }
    }
    if actual != declared {
        return Err(ArchiveError::SizeMismatch { name: name.into(), declared, actual: actual.to_string() });
    }
    Ok(data)
}
