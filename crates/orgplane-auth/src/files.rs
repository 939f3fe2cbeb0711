//! Writing key and certificate files: whole or not at all, and private keys readable by their
//! owner only from the moment they exist.

use std::io::Write;
use std::path::Path;

use crate::error::SetupError;

/// Permissions of a private key file.
pub(crate) const PRIVATE_MODE: u32 = 0o600;
/// Permissions of a public key or certificate file.
pub(crate) const PUBLIC_MODE: u32 = 0o644;
/// Permissions of a directory this crate creates for keys.
const KEY_DIR_MODE: u32 = 0o700;

/// Creates `dir` (and its parents) when missing; a new directory is private to its owner.
pub(crate) fn create_key_dir(dir: &Path) -> Result<(), SetupError> {
    let write_err = |source| SetupError::Write { path: dir.to_path_buf(), source };
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, KEY_DIR_MODE);
    builder.create(dir).map_err(write_err)
}

/// Writes `path` unless it already exists; `Ok(false)` when it did (another process may have
/// won the race, and its file is kept). The file appears whole, with `mode`, or not at all.
pub(crate) fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<bool, SetupError> {
    let temp = write_temp(path, contents, mode)?;
    match temp.persist_noclobber(path) {
        Ok(_) => Ok(true),
        Err(err) if err.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(err) => Err(SetupError::Write { path: path.to_path_buf(), source: err.error }),
    }
}

/// Writes `path`, replacing any earlier file atomically.
pub(crate) fn write_replace(path: &Path, contents: &[u8], mode: u32) -> Result<(), SetupError> {
    let temp = write_temp(path, contents, mode)?;
    temp.persist(path).map_err(|err| SetupError::Write { path: path.to_path_buf(), source: err.error })?;
    Ok(())
}

/// A synced temporary file beside `path` (so that the rename stays on one file system). tempfile
/// creates it with mode 0600, so a private key is never readable by others, not even briefly.
fn write_temp(path: &Path, contents: &[u8], mode: u32) -> Result<tempfile::NamedTempFile, SetupError> {
    let write_err = |source| SetupError::Write { path: path.to_path_buf(), source };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(write_err)?;
    temp.write_all(contents).map_err(write_err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        temp.as_file().set_permissions(std::fs::Permissions::from_mode(mode)).map_err(write_err)?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    temp.as_file().sync_all().map_err(write_err)?;
    Ok(temp)
}

/// Refuses a private key file that group or others can read (as ssh does): a key that leaked
/// once cannot be trusted again, so better to stop and say so.
pub(crate) fn check_owner_only(path: &Path) -> Result<(), SetupError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let metadata =
            std::fs::metadata(path).map_err(|source| SetupError::Read { path: path.to_path_buf(), source })?;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SetupError::LooseKeyPermissions { path: path.to_path_buf(), mode });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Reads a whole file as text.
pub(crate) fn read_text(path: &Path) -> Result<String, SetupError> {
    std::fs::read_to_string(path).map_err(|source| SetupError::Read { path: path.to_path_buf(), source })
}
