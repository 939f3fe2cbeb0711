//! `orgctl backup`: a region's consistent backup, written to a file that `orgplane restore`
//! seeds a new cluster from.
//!
//! The file appears whole or not at all: the stream goes to a temporary file beside the
//! target, which is checked (the stream's checksum as it arrives, then the whole file read
//! back), synced, and only then renamed into place; the directory is synced after the
//! rename. Any failure removes the temporary file. An existing file is replaced only with
//! `--force` (checked before the backup starts and again just before the rename).

use std::fs::{self, File, OpenOptions};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use clap::Args;
use orgplane_backup::{verify_backup, BackupFileError, BackupSummary, BackupWriter};
use orgplane_client::Client;
use orgplane_model::Region;

use crate::error::CommandError;
use crate::output::{BackupWritten, Render};

/// `orgctl backup --region R -o FILE [--force]`.
#[derive(Debug, PartialEq, Args)]
pub struct BackupArgs {
    /// The region to back up.
    #[arg(long)]
    pub region: Region,
    /// The file to write the backup to.
    #[arg(long = "output-file", short = 'o', visible_alias = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
}

pub async fn run(client: &Client, args: BackupArgs) -> Result<Box<dyn Render>, CommandError> {
    refuse_existing(&args.file, args.force)?;
    let partial = partial_path(&args.file);
    let written = write_backup(client, args.region, &partial).await;
    let placed = written.and_then(|summary| {
        refuse_existing(&args.file, args.force)?;
        fs::rename(&partial, &args.file).map_err(file_error(&args.file, "renaming the backup into place"))?;
        sync_parent_dir(&args.file)?;
        Ok(summary)
    });
    match placed {
        Ok(summary) => Ok(Box::new(BackupWritten { file: args.file, summary })),
        Err(err) => {
            // Whatever went wrong, no partial file is left behind.
            let _ = fs::remove_file(&partial);
            Err(err)
        }
    }
}

/// Streams the backup of `region` into `partial`, then syncs it and reads it back whole.
async fn write_backup(client: &Client, region: Region, partial: &Path) -> Result<BackupSummary, CommandError> {
    let mut stream = client.backup(region).await?;
    if stream.header().region != region {
        return Err(orgplane_client::ClientError::MalformedResponse {
            rpc: "backup",
            reason: format!("asked for a backup of {region}, got one of {}", stream.header().region),
        }
        .into());
    }
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(partial)
        .map_err(file_error(partial, "creating the temporary file"))?;
    let mut writer = BackupWriter::new(BufWriter::new(out), stream.header().clone()).map_err(backup_error(partial))?;
    while let Some(data) = stream.next_data().await? {
        writer.write_data(&data).map_err(backup_error(partial))?;
    }
    let data_crc32 = stream.data_crc32().ok_or_else(|| orgplane_client::ClientError::MalformedResponse {
        rpc: "backup",
        reason: "the stream ended without its checksum".into(),
    })?;
    let (out, written) = writer.finish(data_crc32).map_err(backup_error(partial))?;
    let out = out.into_inner().map_err(|e| e.into_error()).map_err(file_error(partial, "flushing the backup"))?;
    out.sync_all().map_err(file_error(partial, "syncing the backup to disk"))?;
    drop(out);
    let read_back = File::open(partial).map_err(file_error(partial, "reopening the backup to check it"))?;
    let verified = verify_backup(read_back).map_err(backup_error(partial))?;
    if verified != written {
        return Err(CommandError::BackupFile {
            path: partial.to_path_buf(),
            source: BackupFileError::Malformed { reason: "the file read back differs from what was written".into() },
        });
    }
    Ok(verified)
}

fn refuse_existing(file: &Path, force: bool) -> Result<(), CommandError> {
    if !force && file.exists() {
        return Err(CommandError::FileExists { path: file.to_path_buf() });
    }
    Ok(())
}

/// `.NAME.partial-PID` beside `file`: same directory, so the final rename is atomic.
fn partial_path(file: &Path) -> PathBuf {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "backup".into());
    file.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// Makes the rename durable: on Unix a directory entry is on disk only once the directory is
/// synced.
fn sync_parent_dir(file: &Path) -> Result<(), CommandError> {
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).map_err(file_error(file, "syncing the backup's directory"))
}

fn file_error(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> CommandError {
    let path = path.to_path_buf();
    move |source| CommandError::BackupFile { path, source: BackupFileError::Io { action, source } }
}

fn backup_error(path: &Path) -> impl FnOnce(BackupFileError) -> CommandError {
    let path = path.to_path_buf();
    move |source| CommandError::BackupFile { path, source }
}
