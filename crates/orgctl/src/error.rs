//! [`CommandError`]: why a command failed, either in a call ([`ClientError`]) or, for
//! `orgctl backup`, with the local file. main prints any of them the same way:
//! `error: <CODE>: <message>` and `hint: <hint>`.

use std::path::PathBuf;

use orgplane_backup::BackupFileError;
use orgplane_client::ClientError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A call failed, or the client refused to make it.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The backup file exists and `--force` was not given.
    #[error("{} exists; nothing was written", .path.display())]
    FileExists { path: PathBuf },
    /// An app file (a definition, an archive) could not be read or written.
    #[error("{}: {action}: {source}", .path.display())]
    AppFile { path: PathBuf, action: &'static str, source: std::io::Error },
    /// The backup could not be written, or the file did not check out; no file was left.
    #[error("backup to {}: {source}", .path.display())]
    BackupFile { path: PathBuf, source: BackupFileError },
}

impl CommandError {
    /// The gRPC-style code name printed after `error:`.
    pub fn code_name(&self) -> &'static str {
        match self {
            CommandError::Client(err) => err.code_name(),
            CommandError::FileExists { .. } => "ALREADY_EXISTS",
            CommandError::BackupFile { source: BackupFileError::Io { .. }, .. } => "INTERNAL",
            CommandError::AppFile { .. } => "INTERNAL",
            CommandError::BackupFile { .. } => "DATA_LOSS",
        }
    }

    /// The message printed after the code.
    pub fn message(&self) -> String {
        match self {
            CommandError::Client(err) => err.message(),
            other => other.to_string(),
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            CommandError::Client(err) => err.hint(),
            CommandError::FileExists { .. } => "pass --force to replace it, or name another file",
            CommandError::BackupFile { source: BackupFileError::Io { .. }, .. } => {
                "check that the file's directory exists, is writable and has room; then run the backup again"
            }
            CommandError::AppFile { .. } => {
                "check the file's path, that it is readable, and that its directory is writable"
            }
            CommandError::BackupFile { .. } => {
                "the backup was damaged on its way or on disk and was not kept; run the backup again"
            }
        }
    }

    /// 2 for usage errors (the input must change), 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Client(err) if err.is_local() => 2,
            _ => 1,
        }
    }
}
