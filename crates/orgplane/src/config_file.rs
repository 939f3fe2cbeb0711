//! One TOML file per process, overridden by flags: the file is read into a TOML table, each
//! flag that was given replaces its key, and the result is deserialized into the process's
//! config type (which rejects unknown keys) and validated by the caller.

use std::path::Path;

use serde::de::DeserializeOwned;

/// A config file or flag set that does not make a config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config file {path} is not valid TOML: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("invalid configuration: {0}")]
    Invalid(toml::de::Error),
}

/// Reads `path` (if any) into a table; a missing `--config` means an empty table.
pub fn load_table(path: Option<&Path>) -> Result<toml::Table, ConfigFileError> {
    let Some(path) = path else { return Ok(toml::Table::new()) };
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigFileError::Read { path: path.display().to_string(), source })?;
    text.parse::<toml::Table>().map_err(|source| ConfigFileError::Parse { path: path.display().to_string(), source })
}

/// Sets `key` to `value` when the flag was given.
pub fn set<V: Into<toml::Value>>(table: &mut toml::Table, key: &str, value: Option<V>) {
    if let Some(v) = value {
        table.insert(key.to_string(), v.into());
    }
}

/// Deserializes the merged table into the config type.
pub fn finish<T: DeserializeOwned>(table: toml::Table) -> Result<T, ConfigFileError> {
    toml::Value::Table(table).try_into().map_err(ConfigFileError::Invalid)
}
