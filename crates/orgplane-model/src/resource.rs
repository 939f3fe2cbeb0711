//! Org-level resources: integrations with external services, and phone numbers.
//!
//! An integration's configuration is key/value pairs, some of them secret (API keys, tokens).
//! Secrets are write-only: they are stored, but every read of the model answers an
//! [`IntegrationView`], which lists the secret keys and never their values; audit events and
//! `Debug` output never carry them either. The full record stays inside this crate.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::id::OrgId;

/// A secret configuration value. `Debug` prints `<redacted>`, so a secret that ends up in a
/// log line through an `Op` or a record says nothing.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> SecretValue {
        SecretValue(value.into())
    }

    /// The value itself, for the validation that must see it. Nothing in the model returns it
    /// to a reader.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The value of one configuration key: shown to readers, or secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigValue {
    Plain(String),
    Secret(SecretValue),
}

impl ConfigValue {
    /// The text, for validation only.
    pub(crate) fn text(&self) -> &str {
        match self {
            ConfigValue::Plain(text) => text,
            ConfigValue::Secret(secret) => secret.expose(),
        }
    }
}

/// One key of an integration's configuration, as a create or update gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigEntry {
    pub key: String,
    pub value: ConfigValue,
}

impl ConfigEntry {
    pub fn plain(key: impl Into<String>, value: impl Into<String>) -> ConfigEntry {
        ConfigEntry { key: key.into(), value: ConfigValue::Plain(value.into()) }
    }

    pub fn secret(key: impl Into<String>, value: impl Into<String>) -> ConfigEntry {
        ConfigEntry { key: key.into(), value: ConfigValue::Secret(SecretValue::new(value)) }
    }
}

/// An integration as stored, secrets included. Deliberately not public: readers get
/// [`IntegrationView`] through [`Integration::view`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Integration {
    pub org_id: OrgId,
    pub name: String,
    pub kind: String,
    pub config: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, SecretValue>,
    pub version: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

impl Integration {
    /// Sets `entry`, moving the key between plain and secret if its kind changed.
    pub fn set(&mut self, entry: &ConfigEntry) {
        match &entry.value {
            ConfigValue::Plain(text) => {
                self.secrets.remove(&entry.key);
                self.config.insert(entry.key.clone(), text.clone());
            }
            ConfigValue::Secret(secret) => {
                self.config.remove(&entry.key);
                self.secrets.insert(entry.key.clone(), secret.clone());
            }
        }
    }

    pub fn remove(&mut self, key: &str) {
        self.config.remove(key);
        self.secrets.remove(key);
    }

    pub fn key_count(&self) -> usize {
        self.config.len() + self.secrets.len()
    }

    /// What a reader may see: everything but the secret values.
    pub fn view(&self) -> IntegrationView {
        IntegrationView {
            org_id: self.org_id.clone(),
            name: self.name.clone(),
            kind: self.kind.clone(),
            config: self.config.clone(),
            secret_keys: self.secrets.keys().cloned().collect(),
            version: self.version,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
        }
    }
}

/// An integration as readers see it: the plain configuration, and the names of the secret
/// keys (so a client knows they are set) without their values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrationView {
    pub org_id: OrgId,
    /// Unique in the org; the integration's identity.
    pub name: String,
    /// What it integrates with (`twilio`, `salesforce`, ...), free-form.
    pub kind: String,
    pub config: BTreeMap<String, String>,
    /// Keys whose values are secret, in key order.
    pub secret_keys: Vec<String>,
    pub version: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// A phone number of the org, in E.164 form (`+` and 8 to 15 digits); the number is its
/// identity in the org.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneNumber {
    pub org_id: OrgId,
    pub number: String,
    /// A human label (`Support line`); may be empty.
    pub label: String,
    pub version: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_secret() {
        let entry = ConfigEntry::secret("api_key", "sk-live-123");
        assert!(!format!("{entry:?}").contains("sk-live-123"));
    }
}
