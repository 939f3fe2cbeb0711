//! The dev signing key: an Ed25519 key that `orgplane dev` keeps in its data dir, the
//! [`AuthConfig`] that verifies its tokens, and the tokens themselves (`orgplane dev-token`).
//!
//! Files, under `DATA_DIR/auth/`:
//! - `dev-signing-key.pem`: the private key (PKCS#8 PEM), mode 0600, made once and then reused;
//! - `dev-signing-key.pub.pem`: its public key (SPKI PEM), the `key-file` of the configuration,
//!   rewritten from the private key whenever it is missing or differs.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Map, Value};

use crate::config::{AuthConfig, JwtAlgorithm};
use crate::error::SetupError;
use crate::files;
use crate::jwt::Verifier;

/// The `iss` of dev tokens.
pub const DEV_ISSUER: &str = "orgplane-dev";
/// The `aud` of dev tokens.
pub const DEV_AUDIENCE: &str = "orgplane";
/// The directory under the data dir that holds the dev key.
pub const DEV_KEY_DIR: &str = "auth";
/// The private key's file name.
pub const SIGNING_KEY_FILE: &str = "dev-signing-key.pem";
/// The public key's file name.
pub const PUBLIC_KEY_FILE: &str = "dev-signing-key.pub.pem";

/// The dev signing key of one data dir, and the configuration that verifies its tokens.
pub struct DevKey {
    encoding: EncodingKey,
    config: AuthConfig,
}

impl std::fmt::Debug for DevKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevKey").field("config", &self.config).field("signing_key", &"[redacted]").finish()
    }
}

/// The dev key of `data_dir`: made the first time (Ed25519, written with mode 0600), read back
/// afterwards. Safe to call from several processes at once: the first key written wins, and all
/// of them use it.
pub fn ensure(data_dir: &Path) -> Result<DevKey, SetupError> {
    let dir = data_dir.join(DEV_KEY_DIR);
    files::create_key_dir(&dir)?;
    let key_path = dir.join(SIGNING_KEY_FILE);
    let public_path = dir.join(PUBLIC_KEY_FILE);

    if !key_path.exists() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(|e| SetupError::Sign(e.to_string()))?;
        // `false` means another process wrote its key first: that one is used below.
        files::write_new(&key_path, key.serialize_pem().as_bytes(), files::PRIVATE_MODE)?;
    }
    files::check_owner_only(&key_path)?;
    let private_pem = files::read_text(&key_path)?;
    let bad_key =
        |reason: String| SetupError::BadKey { path: key_path.clone(), expected: "Ed25519 private key", reason };
    let key = rcgen::KeyPair::from_pem(&private_pem).map_err(|e| bad_key(e.to_string()))?;
    if key.algorithm() != &rcgen::PKCS_ED25519 {
        return Err(bad_key("not an Ed25519 key".into()));
    }
    let encoding = EncodingKey::from_ed_pem(private_pem.as_bytes()).map_err(|e| bad_key(e.to_string()))?;

    let public_pem = key.public_key_pem();
    if std::fs::read_to_string(&public_path).ok().as_deref() != Some(public_pem.as_str()) {
        files::write_replace(&public_path, public_pem.as_bytes(), files::PUBLIC_MODE)?;
    }

    let config = AuthConfig::new(JwtAlgorithm::EdDsa, public_path, DEV_ISSUER, DEV_AUDIENCE);
    Ok(DevKey { encoding, config })
}

impl DevKey {
    /// The configuration that verifies this key's tokens: EdDSA, the public key file, issuer
    /// [`DEV_ISSUER`], audience [`DEV_AUDIENCE`], default leeway and limits.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// The path of the public key (the configuration's `key-file`).
    pub fn public_key_path(&self) -> &PathBuf {
        &self.config.key_file
    }

    /// A verifier for this key's tokens.
    pub fn verifier(&self) -> Result<Verifier, SetupError> {
        Verifier::from_config(&self.config)
    }

    /// A token for `user`, valid from now for `ttl`. `email`, when given, is marked verified:
    /// it is how a dev user accepts an invitation.
    pub fn token(
        &self,
        user: &str,
        platform_admin: bool,
        email: Option<&str>,
        ttl: Duration,
    ) -> Result<String, SetupError> {
        if user.trim().is_empty() {
            return Err(SetupError::InvalidName { what: "user", given: user.to_string(), reason: "must not be empty" });
        }
        if ttl.as_secs() == 0 {
            return Err(SetupError::InvalidSetting { key: "ttl", reason: "must be at least one second".into() });
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.config.issuer));
        claims.insert("aud".into(), json!(self.config.audience));
        claims.insert("sub".into(), json!(user));
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(now.saturating_add(ttl.as_secs())));
        if platform_admin {
            claims.insert(self.config.platform_admin_claim.clone(), Value::Bool(true));
        }
        if let Some(email) = email {
            claims.insert("email".into(), json!(email));
            claims.insert("email_verified".into(), Value::Bool(true));
        }
        let header = Header::new(jsonwebtoken::Algorithm::EdDSA);
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|e| SetupError::Sign(e.to_string()))
    }
}
