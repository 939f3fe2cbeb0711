//! Why an archive was refused (or could not be written).
//!
//! Every message is one line naming the entry and the limit or rule it broke, so the node can
//! hand it to the client unchanged as the text of an INVALID_ARGUMENT status. Entry names are
//! printed with `{:?}`: a hostile name's control characters come out escaped.

/// An app archive was refused on read, or an [`crate::AppArchive`] could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive is {size} bytes, the limit is {limit} bytes")]
    ArchiveTooLarge { size: u64, limit: u64 },

    #[error("archive has {count} entries, the limit is {limit}")]
    TooManyEntries { count: u64, limit: usize },

    #[error("not a valid zip archive: {reason}")]
    Malformed { reason: String },

    #[error("truncated zip archive: {reason}")]
    Truncated { reason: String },

    #[error("zip64 archives are not accepted (an app archive never needs zip64)")]
    Zip64,

    #[error("entry name {name:?} is not allowed: {reason}")]
    InvalidName { name: String, reason: &'static str },

    #[error("entry {name:?} appears twice")]
    DuplicateName { name: String },

    #[error("entries {name:?} and {other:?} differ only in letter case")]
    CaseCollision { name: String, other: String },

    #[error("unexpected entry {name:?}: an app archive holds only manifest.json, definition.json and assets/<path>")]
    UnknownEntry { name: String },

    #[error("directory entry {name:?} is not accepted: an app archive lists files only")]
    DirectoryEntry { name: String },

    #[error("entry {name:?} is a symbolic link, which is not accepted")]
    Symlink { name: String },

    #[error("entry {name:?} is encrypted, which is not accepted")]
    Encrypted { name: String },

    #[error("entry {name:?} uses compression method {method}: only stored (0) and deflate (8) are accepted")]
    UnsupportedCompression { name: String, method: u16 },

    #[error("entry {name:?} is a nested archive, which is not accepted")]
    NestedArchive { name: String },

    #[error("entry {name:?} overlaps {other}: overlapping entries are not accepted")]
    OverlappingEntries { name: String, other: String },

    #[error("entry {name:?} is larger than the per-entry limit of {limit} bytes")]
    EntryTooLarge { name: String, limit: u64 },

    #[error("entry {name:?} brings the archive over the total limit of {limit} uncompressed bytes")]
    TotalTooLarge { name: String, limit: u64 },

    #[error("definition.json is larger than the limit of {limit} bytes")]
    DefinitionTooLarge { limit: u64 },

    #[error("entry {name:?} declares {declared} uncompressed bytes but holds {actual}")]
    SizeMismatch { name: String, declared: u64, actual: String },

    #[error("entry {name:?} expands {ratio} times (compressed {compressed} bytes), the limit is {limit} times")]
    RatioTooHigh { name: String, ratio: u64, compressed: u64, limit: u64 },

    #[error("entry {name:?} is corrupt: {reason}")]
    Corrupt { name: String, reason: String },

    #[error("the archive has no {name:?}")]
    MissingEntry { name: &'static str },

    #[error("{name} is not valid JSON: {reason}")]
    InvalidJson { name: &'static str, reason: String },

    #[error("unsupported format version {found}, this server reads {supported}")]
    UnsupportedFormatVersion { found: u64, supported: u32 },

    #[error("invalid manifest.json: {reason}")]
    InvalidManifest { reason: String },

    #[error("cannot write the archive: {reason}")]
    Write { reason: String },
}
