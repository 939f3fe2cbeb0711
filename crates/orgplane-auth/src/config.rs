//! [`AuthConfig`]: how a node or router verifies bearer tokens.
//!
//! In a config file it is the `[auth]` table:
//!
//! ```toml
//! [auth]
//! algorithm = "EdDSA"                     # EdDSA | RS256 | HS256 (HS256 needs allow-hs256)
//! key-file = "/etc/orgplane/jwt.pub.pem"  # public key PEM (EdDSA, RS256) or secret (HS256)
//! issuer = "https://id.example.com/"
//! audience = "orgplane"
//! leeway-secs = 30
//! max-token-bytes = 8192
//! platform-admin-claim = "orgplane_platform_admin"
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::SetupError;

/// The default clock skew tolerated on `exp` and `nbf`.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// The most clock skew a configuration may allow: beyond it an expired token lives on too long.
pub const MAX_LEEWAY_SECS: u64 = 300;
/// The default limit on a token's size.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The bounds of `max-token-bytes`: below the floor no real token fits; above the ceiling the
/// header would not fit into the HTTP/2 header list a gRPC server accepts anyway.
pub const MAX_TOKEN_BYTES_RANGE: std::ops::RangeInclusive<usize> = 256..=64 * 1024;
/// The default name of the claim that makes a caller a platform admin.
pub const DEFAULT_PLATFORM_ADMIN_CLAIM: &str = "orgplane_platform_admin";
/// The shortest HS256 secret accepted: the hash's output size (RFC 7518 section 3.2).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// The one algorithm tokens must be signed with. A token naming any other algorithm is refused,
/// whatever its signature, so a public key can never be used as an HMAC secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    /// Ed25519 signatures; the key file is the issuer's public key (PEM, `PUBLIC KEY`).
    #[serde(rename = "EdDSA")]
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256; the key file is the issuer's public key (PEM).
    #[serde(rename = "RS256")]
    Rs256,
    /// HMAC with SHA-256 and a shared secret: for development only, since every verifier could
    /// also mint tokens. Refused unless `allow-hs256` is set.
    #[serde(rename = "HS256")]
    Hs256,
}

impl JwtAlgorithm {
    pub(crate) fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            JwtAlgorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
            JwtAlgorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
            JwtAlgorithm::Hs256 => jsonwebtoken::Algorithm::HS256,
        }
    }
}

/// How bearer tokens are verified. A node or router without one refuses to start unless it is
/// given `--allow-unauthenticated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AuthConfig {
    /// The algorithm every token must name and be signed with; pinned here so that a token can
    /// never choose how it is checked.
    pub algorithm: JwtAlgorithm,
    /// The verification key: a PEM public key for EdDSA and RS256, the shared secret for HS256
    /// (the file's bytes, without a trailing line ending). A file rather than a value so that
    /// secrets stay out of config files and command lines.
    pub key_file: PathBuf,
    /// The only accepted `iss`: tokens from any other issuer are refused even if the key matches.
    pub issuer: String,
    /// The accepted `aud`: a token minted for another service is refused.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds; small, because it extends the life of
    /// every token.
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
    /// Tokens longer than this are refused before they are decoded, so a caller cannot make the
    /// server parse megabytes of base64 and JSON.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// The claim that makes a caller a platform admin (allowed to provision and delete orgs) when
    /// its value is JSON `true`. Configurable because identity providers namespace custom claims.
    #[serde(default = "default_platform_admin_claim")]
    pub platform_admin_claim: String,
    /// Must be `true` for `algorithm = "HS256"`: a shared secret is a development shortcut, and
    /// this makes choosing it deliberate.
    #[serde(default)]
    pub allow_hs256: bool,
}

fn default_leeway_secs() -> u64 {
    DEFAULT_LEEWAY_SECS
}

fn default_max_token_bytes() -> usize {
    DEFAULT_MAX_TOKEN_BYTES
}

fn default_platform_admin_claim() -> String {
    DEFAULT_PLATFORM_ADMIN_CLAIM.to_string()
}

/// Claims the verifier reads itself; the platform-admin claim must not shadow one of them.
const RESERVED_CLAIMS: [&str; 9] = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "email", "email_verified"];

impl AuthConfig {
    /// A configuration with the defaults for leeway, size limit and platform-admin claim.
    pub fn new(
        algorithm: JwtAlgorithm,
        key_file: impl Into<PathBuf>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Self {
        AuthConfig {
            algorithm,
            key_file: key_file.into(),
            issuer: issuer.into(),
            audience: audience.into(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            platform_admin_claim: DEFAULT_PLATFORM_ADMIN_CLAIM.to_string(),
            allow_hs256: false,
        }
    }

    /// Checks every setting that can be checked without reading the key file.
    pub fn validate(&self) -> Result<(), SetupError> {
        if self.algorithm == JwtAlgorithm::Hs256 && !self.allow_hs256 {
            return Err(SetupError::Hs256NotAllowed);
        }
        if self.key_file.as_os_str().is_empty() {
            return Err(invalid("key-file", "must not be empty"));
        }
        if self.issuer.trim().is_empty() {
            return Err(invalid("issuer", "must not be empty"));
        }
        if self.audience.trim().is_empty() {
            return Err(invalid("audience", "must not be empty"));
        }
        if self.leeway_secs > MAX_LEEWAY_SECS {
            return Err(invalid("leeway-secs", format!("must be at most {MAX_LEEWAY_SECS}")));
        }
        if !MAX_TOKEN_BYTES_RANGE.contains(&self.max_token_bytes) {
            let (lo, hi) = (MAX_TOKEN_BYTES_RANGE.start(), MAX_TOKEN_BYTES_RANGE.end());
            return Err(invalid("max-token-bytes", format!("must be between {lo} and {hi}")));
        }
        if self.platform_admin_claim.trim().is_empty() {
            return Err(invalid("platform-admin-claim", "must not be empty"));
        }
        if RESERVED_CLAIMS.contains(&self.platform_admin_claim.as_str()) {
            return Err(invalid("platform-admin-claim", "must not be a registered claim"));
        }
        Ok(())
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> SetupError {
    SetupError::InvalidSetting { key, reason: reason.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> AuthConfig {
        AuthConfig::new(JwtAlgorithm::EdDsa, "/k.pem", "iss", "aud")
    }

    fn check(change: impl FnOnce(&mut AuthConfig), valid: bool) {
        let mut config = base();
        change(&mut config);
        assert_eq!(config.validate().is_ok(), valid, "{config:?}: {:?}", config.validate());
    }

    #[test]
    fn validate_checks_every_setting() {
        check(|_| {}, true);
        check(|c| c.algorithm = JwtAlgorithm::Hs256, false);
        check(
            |c| {
                c.algorithm = JwtAlgorithm::Hs256;
                c.allow_hs256 = true
            },
            true,
        );
        check(|c| c.algorithm = JwtAlgorithm::Rs256, true);
        check(|c| c.key_file = PathBuf::new(), false);
        check(|c| c.issuer = " ".into(), false);
        check(|c| c.audience = String::new(), false);
        check(|c| c.leeway_secs = MAX_LEEWAY_SECS, true);
        check(|c| c.leeway_secs = MAX_LEEWAY_SECS + 1, false);
        check(|c| c.max_token_bytes = 255, false);
        check(|c| c.max_token_bytes = 64 * 1024 + 1, false);
        check(|c| c.platform_admin_claim = String::new(), false);
        check(|c| c.platform_admin_claim = "sub".into(), false);
    }

    #[test]
    fn parses_kebab_case_toml_with_defaults() {
        let config: AuthConfig = toml::from_str(
            r#"
            algorithm = "EdDSA"
            key-file = "/etc/orgplane/jwt.pub.pem"
            issuer = "https://id.example.com/"
            audience = "orgplane"
            "#,
        )
        .unwrap();
        assert_eq!(config.algorithm, JwtAlgorithm::EdDsa);
        assert_eq!(config.leeway_secs, DEFAULT_LEEWAY_SECS);
        assert_eq!(config.max_token_bytes, DEFAULT_MAX_TOKEN_BYTES);
        assert_eq!(config.platform_admin_claim, DEFAULT_PLATFORM_ADMIN_CLAIM);
        assert!(!config.allow_hs256);
    }

    #[test]
    fn refuses_unknown_keys_and_algorithms() {
        let unknown_key = "algorithm = \"EdDSA\"\nkey-file = \"k\"\nissuer = \"i\"\naudience = \"a\"\nleeway = 5\n";
        assert!(toml::from_str::<AuthConfig>(unknown_key).is_err());
        for alg in ["none", "ES256", "eddsa", "HS512"] {
            let text = format!("algorithm = \"{alg}\"\nkey-file = \"k\"\nissuer = \"i\"\naudience = \"a\"\n");
            assert!(toml::from_str::<AuthConfig>(&text).is_err(), "{alg}");
        }
    }
}
