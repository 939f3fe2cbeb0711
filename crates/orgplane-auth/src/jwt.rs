//! [`Verifier`]: from an `authorization: Bearer <JWT>` header to a [`Principal`].
//!
//! The checks, in order, each refusing with an [`AuthError`]:
//! 1. the header's size, before anything else is looked at (`max-token-bytes`);
//! 2. the `Bearer` scheme and the token's characters (base64url and dots);
//! 3. the header's `alg` equals the configured algorithm, and the signature verifies with the
//!    configured key (`jsonwebtoken`; the key's family is fixed when the key is loaded, so a
//!    public key is never used as an HMAC secret);
//! 4. `iss`, `aud` and `sub` present, `iss` and `aud` the configured ones (`jsonwebtoken`);
//! 5. `exp` present and numeric, `nbf` numeric when present, both within the leeway of this
//!    process's clock (here, with an explicit `now`, so tests pin the boundary to the second).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::config::{AuthConfig, JwtAlgorithm, MIN_HS256_SECRET_BYTES};
use crate::error::{AuthError, SetupError};

/// Room for the scheme (`Bearer`) and the spaces around the token in the first, cheap size check.
const SCHEME_OVERHEAD_BYTES: usize = 16;
/// The length of an Ed25519 public key: `jsonwebtoken` slices it without checking.
const ED25519_PUBLIC_KEY_BYTES: usize = 32;

/// Who is calling, as established by a verified token (or by `--allow-unauthenticated`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`: the stable user id that memberships, audit events and rate limits use.
    pub subject: String,
    /// Whether the platform-admin claim is `true`: allows provisioning and deleting orgs.
    pub platform_admin: bool,
    /// The token's `email`, only when `email_verified` is `true`: invitations are accepted by the
    /// verified owner of the invited address, never by whoever typed it into a token.
    pub email: Option<String>,
}

impl Principal {
    /// The subject of the caller when the process runs with `--allow-unauthenticated`.
    pub const ANONYMOUS_SUBJECT: &'static str = "anonymous";

    /// The caller of a process started with `--allow-unauthenticated`: a platform admin, so
    /// that local experiments can provision orgs. The binary logs that mode loudly at start.
    pub fn anonymous() -> Self {
        Principal { subject: Self::ANONYMOUS_SUBJECT.to_string(), platform_admin: true, email: None }
    }
}

/// Verifies bearer tokens against one [`AuthConfig`]. Cheap to share behind an `Arc`; holds no
/// per-call state.
#[derive(Debug)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    leeway_secs: u64,
    max_token_bytes: usize,
    platform_admin_claim: String,
}

impl Verifier {
    /// Validates `config`, reads its key file and builds the verifier. Every problem with the
    /// configuration or the key shows here, at start, rather than as refused calls later.
    pub fn from_config(config: &AuthConfig) -> Result<Self, SetupError> {
        config.validate()?;
        let key = std::fs::read(&config.key_file)
            .map_err(|source| SetupError::Read { path: config.key_file.clone(), source })?;
        Self::with_key(config, &key)
    }

    /// Like [`Verifier::from_config`], with the key file's contents given (`key_file` is then
    /// used only in error messages).
    pub fn with_key(config: &AuthConfig, key: &[u8]) -> Result<Self, SetupError> {
        config.validate()?;
        let key = decoding_key(config.algorithm, &config.key_file, key)?;

        let mut validation = Validation::new(config.algorithm.to_jsonwebtoken());
        validation.set_required_spec_claims(&["iss", "aud", "sub"]);
        validation.set_issuer(&[config.issuer.as_str()]);
        validation.set_audience(&[config.audience.as_str()]);
        // Times are checked in `check_times` against an explicit clock; `exp` is required there,
        // as a number (jsonwebtoken would report a string `exp` as missing).
        validation.validate_exp = false;
        validation.validate_nbf = false;

        Ok(Verifier {
            key,
            validation,
            leeway_secs: config.leeway_secs,
            max_token_bytes: config.max_token_bytes,
            platform_admin_claim: config.platform_admin_claim.clone(),
        })
    }

    /// Verifies the value of an `authorization` header (`Bearer <JWT>`) now.
    pub fn verify(&self, header_value: &str) -> Result<Principal, AuthError> {
        self.verify_at(header_value, unix_now())
    }

    /// Verifies `header_value` as if the clock read `now_unix_secs`. [`Verifier::verify`] is this
    /// with the system clock; tests use it to check `exp` and `nbf` to the second.
    pub fn verify_at(&self, header_value: &str, now_unix_secs: u64) -> Result<Principal, AuthError> {
        let token = bearer_token(header_value, self.max_token_bytes)?;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|err| from_jsonwebtoken(err.kind()))?
            .claims;
        self.check_times(&claims, now_unix_secs)?;
        self.principal(&claims)
    }

    fn check_times(&self, claims: &Map<String, Value>, now: u64) -> Result<(), AuthError> {
        let exp = numeric_date(claims, "exp")?.ok_or(AuthError::MissingClaim { claim: "exp" })?;
        if now > exp.saturating_add(self.leeway_secs) {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = numeric_date(claims, "nbf")? {
            if nbf > now.saturating_add(self.leeway_secs) {
                return Err(AuthError::NotYetValid);
            }
        }
        Ok(())
    }

    fn principal(&self, claims: &Map<String, Value>) -> Result<Principal, AuthError> {
        let subject = match claims.get("sub") {
            Some(Value::String(sub)) if !sub.trim().is_empty() => sub.clone(),
            Some(Value::String(_)) | Some(Value::Null) | None => return Err(AuthError::MissingClaim { claim: "sub" }),
            Some(_) => return Err(AuthError::InvalidClaim { claim: "sub" }),
        };
        let platform_admin = claims.get(&self.platform_admin_claim) == Some(&Value::Bool(true));
        let email = match (claims.get("email"), claims.get("email_verified")) {
            (Some(Value::String(email)), Some(Value::Bool(true))) => Some(email.clone()),
            _ => None,
        };
        Ok(Principal { subject, platform_admin, email })
    }
}

/// The token of a `Bearer` header, after the size and character checks.
fn bearer_token(header_value: &str, max_token_bytes: usize) -> Result<&str, AuthError> {
    // Before anything else: an oversized header is refused without being scanned.
    if header_value.len() > max_token_bytes.saturating_add(SCHEME_OVERHEAD_BYTES) {
        return Err(AuthError::TokenTooLarge { limit: max_token_bytes });
    }
    let header_value = header_value.trim();
    if header_value.is_empty() {
        return Err(AuthError::MissingToken);
    }
    let Some((scheme, token)) = header_value.split_once(' ') else {
        let scheme_only = header_value.eq_ignore_ascii_case("bearer");
        return Err(if scheme_only { AuthError::MissingToken } else { AuthError::MalformedHeader });
    };
    // RFC 7235: the scheme is case-insensitive.
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MalformedHeader);
    }
    let token = token.trim_start();
    if token.is_empty() {
        return Err(AuthError::MissingToken);
    }
    if token.len() > max_token_bytes {
        return Err(AuthError::TokenTooLarge { limit: max_token_bytes });
    }
    let jws_compact = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.';
    if !token.bytes().all(jws_compact) {
        return Err(AuthError::MalformedToken);
    }
    Ok(token)
}

/// A NumericDate claim (RFC 7519 section 2): absent or null is `None`; a number must be a
/// non-negative, finite count of seconds; anything else, a string in particular, is refused.
fn numeric_date(claims: &Map<String, Value>, claim: &'static str) -> Result<Option<u64>, AuthError> {
    let invalid = AuthError::InvalidClaim { claim };
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(secs), _) => Ok(Some(secs)),
            (None, Some(secs)) if secs.is_finite() && secs >= 0.0 && secs < u64::MAX as f64 => Ok(Some(secs as u64)),
            _ => Err(invalid),
        },
        Some(_) => Err(invalid),
    }
}

/// The refusal a `jsonwebtoken` error stands for. Its messages are not passed on: they are not
/// promised to stay free of token contents.
fn from_jsonwebtoken(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            AuthError::MalformedToken
        }
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm | ErrorKind::InvalidAlgorithmName => {
            AuthError::WrongAlgorithm
        }
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim { claim: registered_claim(claim) },
        ErrorKind::InvalidClaimFormat(claim) => AuthError::InvalidClaim { claim: registered_claim(claim) },
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        _ => AuthError::Invalid,
    }
}

fn registered_claim(name: &str) -> &'static str {
    match name {
        "iss" => "iss",
        "aud" => "aud",
        "sub" => "sub",
        "exp" => "exp",
        "nbf" => "nbf",
        _ => "registered",
    }
}

/// The verification key for `algorithm`, checked as far as possible now rather than per call.
fn decoding_key(algorithm: JwtAlgorithm, path: &Path, key: &[u8]) -> Result<DecodingKey, SetupError> {
    let bad =
        |expected: &'static str, reason: String| SetupError::BadKey { path: path.to_path_buf(), expected, reason };
    match algorithm {
        JwtAlgorithm::EdDsa => {
            refuse_private_pem(path, key)?;
            let key = DecodingKey::from_ed_pem(key).map_err(|e| bad("Ed25519 public key (PEM)", e.to_string()))?;
            if key.as_bytes().len() != ED25519_PUBLIC_KEY_BYTES {
                return Err(bad("Ed25519 public key (PEM)", "not a 32-byte Ed25519 key".into()));
            }
            Ok(key)
        }
        JwtAlgorithm::Rs256 => {
            refuse_private_pem(path, key)?;
            DecodingKey::from_rsa_pem(key).map_err(|e| bad("RSA public key (PEM)", e.to_string()))
        }
        JwtAlgorithm::Hs256 => {
            let secret = key.strip_suffix(b"\n").map(|s| s.strip_suffix(b"\r").unwrap_or(s)).unwrap_or(key);
            if secret.len() < MIN_HS256_SECRET_BYTES {
                return Err(bad("HS256 secret", format!("shorter than {MIN_HS256_SECRET_BYTES} bytes")));
            }
            Ok(DecodingKey::from_secret(secret))
        }
    }
}

/// A private key in a verifier's key file is a mistake twice over: verification would fail for
/// every token (jsonwebtoken reads it as a public key), and the signing key would be spread to
/// every server.
fn refuse_private_pem(path: &Path, key: &[u8]) -> Result<(), SetupError> {
    let text = String::from_utf8_lossy(key);
    let labels = text.lines().filter_map(|line| line.trim().strip_prefix("-----BEGIN "));
    if labels.into_iter().any(|label| label.contains("PRIVATE")) {
        return Err(SetupError::PrivateKeyConfigured { path: path.to_path_buf() });
    }
    Ok(())
}

fn unix_now() -> u64 {
    // A clock before 1970 makes every token look expired: refused, never a panic.
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: &str, expected: Result<&str, AuthError>) {
        assert_eq!(bearer_token(header, 300), expected, "header {header:?}");
    }

    #[test]
    fn bearer_header_shapes() {
        check("Bearer a.b.c", Ok("a.b.c"));
        check("bearer a.b.c", Ok("a.b.c"));
        check("  BEARER   a-_.b.c  ", Ok("a-_.b.c"));
        check("", Err(AuthError::MissingToken));
        check("   ", Err(AuthError::MissingToken));
        check("Bearer ", Err(AuthError::MissingToken));
        check("Bearer", Err(AuthError::MissingToken));
        check("Bearerx", Err(AuthError::MalformedHeader));
        check("a.b.c", Err(AuthError::MalformedHeader));
        check("Basic dXNlcjpwYXNz", Err(AuthError::MalformedHeader));
        check("Bearer a.b c", Err(AuthError::MalformedToken));
        check("Bearer a.b+c/=", Err(AuthError::MalformedToken));
        check(&format!("Bearer {}", "a".repeat(301)), Err(AuthError::TokenTooLarge { limit: 300 }));
        check(&format!("Bearer {}", "a".repeat(300)), Ok(&"a".repeat(300)));
        check(&" ".repeat(400), Err(AuthError::TokenTooLarge { limit: 300 }));
    }

    fn claims(json: Value) -> Map<String, Value> {
        json.as_object().unwrap().clone()
    }

    #[test]
    fn numeric_dates() {
        let exp = |v: Value| numeric_date(&claims(serde_json::json!({ "exp": v })), "exp");
        assert_eq!(exp(serde_json::json!(17)), Ok(Some(17)));
        assert_eq!(exp(serde_json::json!(17.9)), Ok(Some(17)));
        assert_eq!(exp(Value::Null), Ok(None));
        assert_eq!(numeric_date(&claims(serde_json::json!({})), "exp"), Ok(None));
        for bad in [serde_json::json!("17"), serde_json::json!(-1), serde_json::json!(-0.5), serde_json::json!(true)] {
            assert_eq!(exp(bad.clone()), Err(AuthError::InvalidClaim { claim: "exp" }), "{bad}");
        }
    }

    #[test]
    fn private_keys_are_refused_as_verification_keys() {
        let path = Path::new("k.pem");
        for label in ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY"] {
            let pem = format!("-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n");
            assert!(matches!(refuse_private_pem(path, pem.as_bytes()), Err(SetupError::PrivateKeyConfigured { .. })));
        }
        assert!(refuse_private_pem(path, b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").is_ok());
    }
}
