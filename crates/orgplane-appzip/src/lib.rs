//! The app archive: how an app leaves one org as a ZIP and enters another.
//!
//! Layout: `manifest.json` ([`Manifest`]), `definition.json` (the app's definition, JSON) and
//! `assets/<relative path>`; nothing else. [`write_archive`] is deterministic;
//! [`read_archive`] is the import parser facing hostile uploads: it parses in memory only and
//! validates everything (structure, names, entry types, sizes as actually decompressed, ratio,
//! manifest) before it returns, within [`Limits`].
//!
//! Invariant: no I/O, no async; memory bounded by the limits whatever the input.
//!
//! The `zip` crate is built with only deflate (flate2 on zlib-rs, pure Rust; no zopfli):
//! an app archive needs stored and deflate only, and every other method (bzip2, zstd, lzma,
//! deflate64, ppmd, AES) would be more decoder code, some of it C, reachable from an upload.

mod central;
mod error;
mod layout;
mod manifest;
mod read;
mod write;

#[cfg(feature = "corpus")]
pub mod corpus;

use std::collections::BTreeMap;

pub use error::ArchiveError;
pub use layout::MAX_NAME_BYTES;
pub use manifest::{is_slot_name, Manifest, SlotManifest, FORMAT_VERSION, MAX_APP_NAME_CHARS, MAX_SLOTS};
pub use read::read_archive;
pub use write::write_archive;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// The compression ratio is only checked for entries larger than this: small files (a JSON
/// document of repeated keys, an empty-ish asset) legitimately compress very well, and cannot
/// make a bomb.
pub const RATIO_CHECK_MIN_BYTES: u64 = 64 * KIB;

/// An app as it travels: the manifest, the definition and the assets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppArchive {
    pub manifest: Manifest,
    /// The app's definition document, JSON bytes as stored.
    pub definition: Vec<u8>,
    /// Asset bytes by path relative to `assets/` (e.g. `img/logo.png`).
    pub assets: BTreeMap<String, Vec<u8>>,
}

/// What an archive may cost. Uncompressed sizes are counted as actually decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Compressed archive bytes.
    pub max_archive_bytes: u64,
    /// Entries in the central directory, enforced before any per-entry allocation.
    pub max_entries: usize,
    /// Uncompressed bytes of one entry.
    pub max_entry_bytes: u64,
    /// Uncompressed bytes of all entries together.
    pub max_total_bytes: u64,
    /// Uncompressed / compressed, for entries over [`RATIO_CHECK_MIN_BYTES`].
    pub max_ratio: u64,
    /// Bytes of `definition.json`.
    pub max_definition_bytes: u64,
}

impl Default for Limits {
    /// Generous for an app (a definition and a few icons), small enough that a node can parse a
    /// few uploads at once without noticing.
    fn default() -> Self {
        Limits {
            max_archive_bytes: 8 * MIB,
            max_entries: 64,
            max_entry_bytes: 2 * MIB,
            max_total_bytes: 4 * MIB,
            max_ratio: 100,
            max_definition_bytes: MIB,
        }
    }
}
