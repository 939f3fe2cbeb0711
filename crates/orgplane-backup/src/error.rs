//! [`BackupFileError`]: why a backup file could not be written or was refused.

/// Why a backup file could not be written, or why one was refused. Every refusal happens
/// before the caller is handed any data.
#[derive(Debug, thiserror::Error)]
pub enum BackupFileError {
    /// Reading or writing the file failed.
    #[error("i/o error while {action}: {source}")]
    Io { action: &'static str, source: std::io::Error },

    /// A stored CRC-32 does not match the bytes it covers: the file was damaged after it was
    /// written (or the stream was damaged before it was).
    #[error("checksum mismatch in the {what}: stored {stored:08x}, computed {computed:08x}; the backup is damaged")]
    ChecksumMismatch { what: &'static str, stored: u32, computed: u32 },

    /// The bytes are not a backup file at all (wrong magic, too short to be one).
    #[error("not an orgplane backup file: {reason}")]
    NotABackup { reason: String },

    /// A backup in another format version than this build reads.
    #[error("backup format version {found}, but this build reads only version {expected}")]
    UnsupportedVersion { found: u32, expected: u32 },

    /// The file passed its checksum but does not have the shape the format gives it; a bug in
    /// whatever wrote it.
    #[error("malformed backup: {reason}")]
    Malformed { reason: String },

    /// The writer was given more or fewer data bytes than the header announced.
    #[error("the backup data is {got} bytes, but its header announced {announced}")]
    DataLength { got: u64, announced: u64 },
}

impl BackupFileError {
    pub(crate) fn io(action: &'static str) -> impl FnOnce(std::io::Error) -> BackupFileError {
        move |source| BackupFileError::Io { action, source }
    }
}
