//! [`CommandError`]: why a command failed, either in a call ([`ClientError`]), with a local
//! file (`orgctl backup`, `orgctl app`), or in how a move ended (`orgctl org move`). main
//! prints any of them the same way: `error: <CODE>: <message>` and `hint: <hint>`.

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Duration;

use orgplane_backup::BackupFileError;
use orgplane_client::{v1, ClientError};

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
    /// The move orgctl waited for was rolled back; the org stays where it was.
    #[error("move {} of org {} from {} to {} was aborted: {}; the org stays in {}", .org_move.move_id, .org_move.org_id, .org_move.source_region, .org_move.target_region, if .org_move.reason.is_empty() { "no reason given" } else { .org_move.reason.as_str() }, .org_move.source_region)]
    MoveAborted { org_move: Box<v1::OrgMove> },
    /// The move did not end within the wait; it goes on without orgctl.
    #[error("move {} of org {} to {} is still {} after {:.0} s", .org_move.move_id, .org_move.org_id, .org_move.target_region, .org_move.phase, .waited.as_secs_f64())]
    MoveWaitTimedOut { org_move: Box<v1::OrgMove>, waited: Duration },
    /// While orgctl waited, another move of the org became its latest, so how the awaited one
    /// ended cannot be read any more.
    #[error("move {} of org {} is no longer its latest move (move {} to {} is, {}): how it ended is not known here", .org_move.move_id, .org_move.org_id, .newer.move_id, .newer.target_region, .newer.phase)]
    MoveReplaced { org_move: Box<v1::OrgMove>, newer: Box<v1::OrgMove> },
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
            CommandError::MoveAborted { .. } => "ABORTED",
            CommandError::MoveWaitTimedOut { .. } => "DEADLINE_EXCEEDED",
            CommandError::MoveReplaced { .. } => "UNKNOWN",
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
    pub fn hint(&self) -> Cow<'static, str> {
        let hint = match self {
            CommandError::Client(err) => return err.hint(),
            CommandError::MoveWaitTimedOut { org_move, .. } | CommandError::MoveReplaced { org_move, .. } => {
                return format!(
                    "the router drives the move without orgctl: follow it with `orgctl org move-status {org}`; before the switch, `orgctl org move-abort {org}` rolls it back",
                    org = org_move.org_id
                )
                .into()
            }
            CommandError::MoveAborted { .. } => {
                "the org is served by its old region as before; remove the cause and run the move again"
            }
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
        };
        hint.into()
    }

    /// 2 for usage errors (the input must change), 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Client(err) if err.is_local() => 2,
            _ => 1,
        }
    }
}
