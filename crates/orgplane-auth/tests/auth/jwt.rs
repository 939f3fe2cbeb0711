//! The JWT table: every way a token can be wrong is refused with UNAUTHENTICATED and the exact
//! reason; the good token gives the right principal; the leeway holds to the second.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use orgplane_auth::config::DEFAULT_MAX_TOKEN_BYTES;
use orgplane_auth::{dev_key, AuthConfig, AuthError, JwtAlgorithm, Principal, Verifier};
use serde_json::{json, Value};
use tonic::{Code, Status};

/// The verifier's clock in every case: fixed, so `exp` and `nbf` are checked to the second.
const NOW: u64 = 1_800_000_000;
const LEEWAY: u64 = 30;
const RSA_PRIVATE: &[u8] = include_bytes!("fixtures/rsa-test-key.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("fixtures/rsa-test-key.pub.pem");

struct Keys {
    _dirs: [tempfile::TempDir; 2],
    ed: EncodingKey,
    ed_public_pem: Vec<u8>,
    other_ed: EncodingKey,
    rsa: EncodingKey,
    ed_verifier: Verifier,
    rsa_verifier: Verifier,
}

fn keys() -> Keys {
    let (dir, other_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dev = dev_key::ensure(dir.path()).unwrap();
    dev_key::ensure(other_dir.path()).unwrap();
    let private = |d: &tempfile::TempDir| {
        let pem = std::fs::read(d.path().join(dev_key::DEV_KEY_DIR).join(dev_key::SIGNING_KEY_FILE)).unwrap();
        EncodingKey::from_ed_pem(&pem).unwrap()
    };
    let rsa_config = AuthConfig::new(JwtAlgorithm::Rs256, "rsa.pub.pem", dev_key::DEV_ISSUER, dev_key::DEV_AUDIENCE);
    Keys {
        ed: private(&dir),
        ed_public_pem: std::fs::read(dev.public_key_path()).unwrap(),
        other_ed: private(&other_dir),
        rsa: EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        ed_verifier: dev.verifier().unwrap(),
        rsa_verifier: Verifier::with_key(&rsa_config, RSA_PUBLIC).unwrap(),
        _dirs: [dir, other_dir],
    }
}

fn good_claims() -> Value {
    json!({
        "iss": dev_key::DEV_ISSUER,
        "aud": dev_key::DEV_AUDIENCE,
        "sub": "alice",
        "iat": NOW - 60,
        "nbf": NOW - 60,
        "exp": NOW + 600,
        "email": "alice@example.com",
        "email_verified": true,
    })
}

/// `good_claims` with `key` set to `value`, or removed when `value` is null.
fn claims_with(key: &str, value: Value) -> Value {
    let mut claims = good_claims();
    let map = claims.as_object_mut().unwrap();
    if value.is_null() {
        map.remove(key);
    } else {
        map.insert(key.to_string(), value);
    }
    claims
}

fn sign(algorithm: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), claims, key).unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A token with any header, unsigned: what `jsonwebtoken` refuses to make.
fn unsigned(header: Value, claims: &Value, signature: &str) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    format!("{}.{}.{signature}", part(&header), part(claims))
}

/// `header` is refused with `expected`, as UNAUTHENTICATED, and the status never contains the
/// token.
fn check_refused(verifier: &Verifier, case: &str, header: &str, expected: AuthError) {
    let err = verifier.verify_at(header, NOW).expect_err(case);
    assert_eq!(err, expected, "{case}");
    let status = Status::from(err);
    assert_eq!(status.code(), Code::Unauthenticated, "{case}");
    let token = header.trim().trim_start_matches("Bearer").trim();
    if token.len() >= 16 {
        for window in token.as_bytes().windows(16) {
            assert!(!status.message().as_bytes().windows(16).any(|w| w == window), "{case}: the token is echoed");
        }
    }
}

#[test]
fn bad_tokens_are_refused_with_their_reason() {
    let k = keys();
    let ed = |claims: &Value| bearer(&sign(Algorithm::EdDSA, &k.ed, claims));
    let good = ed(&good_claims());
    let (good_header_b64, _) = good.trim_start_matches("Bearer ").split_once('.').unwrap();
    let admin_payload =
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims_with("orgplane_platform_admin", json!(true))).unwrap());
    let good_signature = good.rsplit('.').next().unwrap();
    let oversized = ed(&claims_with("padding", json!("x".repeat(DEFAULT_MAX_TOKEN_BYTES))));
    let none_header = json!({ "alg": "none", "typ": "JWT" });

    let cases: Vec<(&str, String, AuthError)> = vec![
        ("none algorithm", bearer(&unsigned(none_header.clone(), &good_claims(), "")), AuthError::MalformedToken),
        (
            "none algorithm with a signature",
            bearer(&unsigned(none_header, &good_claims(), good_signature)),
            AuthError::MalformedToken,
        ),
        ("wrong key", bearer(&sign(Algorithm::EdDSA, &k.other_ed, &good_claims())), AuthError::BadSignature),
        (
            "payload swapped under a valid signature",
            bearer(&format!("{good_header_b64}.{admin_payload}.{good_signature}")),
            AuthError::BadSignature,
        ),
        (
            "HS256 with the EdDSA public key as the secret",
            bearer(&sign(Algorithm::HS256, &EncodingKey::from_secret(&k.ed_public_pem), &good_claims())),
            AuthError::WrongAlgorithm,
        ),
        (
            "RS256 when EdDSA is pinned",
            bearer(&sign(Algorithm::RS256, &k.rsa, &good_claims())),
            AuthError::WrongAlgorithm,
        ),
        ("expired", ed(&claims_with("exp", json!(NOW - LEEWAY - 1))), AuthError::Expired),
        ("not yet valid", ed(&claims_with("nbf", json!(NOW + LEEWAY + 1))), AuthError::NotYetValid),
        ("missing exp", ed(&claims_with("exp", Value::Null)), AuthError::MissingClaim { claim: "exp" }),
        (
            "string exp",
            ed(&claims_with("exp", json!((NOW + 600).to_string()))),
            AuthError::InvalidClaim { claim: "exp" },
        ),
        ("negative exp", ed(&claims_with("exp", json!(-1))), AuthError::InvalidClaim { claim: "exp" }),
        (
            "string nbf",
            ed(&claims_with("nbf", json!((NOW - 60).to_string()))),
            AuthError::InvalidClaim { claim: "nbf" },
        ),
        ("wrong aud", ed(&claims_with("aud", json!("someone-else"))), AuthError::WrongAudience),
        ("aud list without ours", ed(&claims_with("aud", json!(["a", "b"]))), AuthError::WrongAudience),
        ("missing aud", ed(&claims_with("aud", Value::Null)), AuthError::MissingClaim { claim: "aud" }),
        ("wrong iss", ed(&claims_with("iss", json!("https://evil.example"))), AuthError::WrongIssuer),
        ("missing iss", ed(&claims_with("iss", Value::Null)), AuthError::MissingClaim { claim: "iss" }),
        ("missing sub", ed(&claims_with("sub", Value::Null)), AuthError::MissingClaim { claim: "sub" }),
        ("empty sub", ed(&claims_with("sub", json!(""))), AuthError::MissingClaim { claim: "sub" }),
        ("oversized token", oversized, AuthError::TokenTooLarge { limit: DEFAULT_MAX_TOKEN_BYTES }),
        ("basic scheme", "Basic dXNlcjpwYXNzd29yZA==".to_string(), AuthError::MalformedHeader),
        ("no Bearer", good.trim_start_matches("Bearer ").to_string(), AuthError::MalformedHeader),
        ("empty", String::new(), AuthError::MissingToken),
        ("Bearer and nothing", "Bearer ".to_string(), AuthError::MissingToken),
        ("not a JWT", "Bearer abc".to_string(), AuthError::MalformedToken),
        ("not base64url", "Bearer a+b.c/d.e=".to_string(), AuthError::MalformedToken),
    ];
    for (case, header, expected) in cases {
        check_refused(&k.ed_verifier, case, &header, expected);
    }
}

#[test]
fn rs256_accepts_its_key_and_refuses_the_public_key_as_an_hmac_secret() {
    let k = keys();
    let principal = k.rsa_verifier.verify_at(&bearer(&sign(Algorithm::RS256, &k.rsa, &good_claims())), NOW).unwrap();
    assert_eq!(principal.subject, "alice");

    let hmac_with_public_key = sign(Algorithm::HS256, &EncodingKey::from_secret(RSA_PUBLIC), &good_claims());
    check_refused(
        &k.rsa_verifier,
        "HS256 with the RSA public key",
        &bearer(&hmac_with_public_key),
        AuthError::WrongAlgorithm,
    );
    let eddsa = sign(Algorithm::EdDSA, &k.ed, &good_claims());
    check_refused(&k.rsa_verifier, "EdDSA when RS256 is pinned", &bearer(&eddsa), AuthError::WrongAlgorithm);
}

#[test]
fn the_good_token_gives_the_right_principal() {
    let k = keys();
    let ed = |claims: &Value| bearer(&sign(Algorithm::EdDSA, &k.ed, claims));
    let verify = |claims: &Value| k.ed_verifier.verify_at(&ed(claims), NOW).unwrap();

    assert_eq!(
        verify(&good_claims()),
        Principal { subject: "alice".into(), platform_admin: false, email: Some("alice@example.com".into()) }
    );
    assert!(verify(&claims_with("orgplane_platform_admin", json!(true))).platform_admin);
    for not_true in [json!("true"), json!(1), json!(false)] {
        assert!(!verify(&claims_with("orgplane_platform_admin", not_true.clone())).platform_admin, "{not_true}");
    }
    assert_eq!(verify(&claims_with("email_verified", Value::Null)).email, None);
    assert_eq!(verify(&claims_with("email_verified", json!(false))).email, None);
    assert_eq!(verify(&claims_with("email_verified", json!("true"))).email, None);
    assert_eq!(verify(&claims_with("nbf", Value::Null)).subject, "alice");
    assert_eq!(verify(&claims_with("aud", json!(["other", dev_key::DEV_AUDIENCE]))).subject, "alice");
    // The scheme is case-insensitive (RFC 7235).
    let lower = format!("bearer {}", sign(Algorithm::EdDSA, &k.ed, &good_claims()));
    assert_eq!(k.ed_verifier.verify_at(&lower, NOW).unwrap().subject, "alice");
}

#[test]
fn leeway_holds_to_the_second() {
    let k = keys();
    let ed = |claims: &Value| bearer(&sign(Algorithm::EdDSA, &k.ed, claims));

    let expiring = ed(&claims_with("exp", json!(NOW)));
    assert!(k.ed_verifier.verify_at(&expiring, NOW + LEEWAY).is_ok());
    assert_eq!(k.ed_verifier.verify_at(&expiring, NOW + LEEWAY + 1), Err(AuthError::Expired));

    let starting = ed(&claims_with("nbf", json!(NOW)));
    assert!(k.ed_verifier.verify_at(&starting, NOW - LEEWAY).is_ok());
    assert_eq!(k.ed_verifier.verify_at(&starting, NOW - LEEWAY - 1), Err(AuthError::NotYetValid));
}

#[test]
fn hs256_needs_the_explicit_dev_switch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    let secret = "an hs256 secret of at least 32 bytes";
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    let mut config = AuthConfig::new(JwtAlgorithm::Hs256, &path, dev_key::DEV_ISSUER, dev_key::DEV_AUDIENCE);
    assert!(Verifier::from_config(&config).is_err());

    config.allow_hs256 = true;
    let verifier = Verifier::from_config(&config).unwrap();
    let token = sign(Algorithm::HS256, &EncodingKey::from_secret(secret.as_bytes()), &good_claims());
    assert_eq!(verifier.verify_at(&bearer(&token), NOW).unwrap().subject, "alice");

    std::fs::write(&path, "too short").unwrap();
    assert!(Verifier::from_config(&config).is_err());
}

#[test]
fn unusable_verification_keys_are_refused_at_start() {
    let ed_config = AuthConfig::new(JwtAlgorithm::EdDsa, "k.pem", "i", "a");
    let rsa_config = AuthConfig::new(JwtAlgorithm::Rs256, "k.pem", "i", "a");
    assert!(Verifier::with_key(&ed_config, RSA_PUBLIC).is_err(), "an RSA key for EdDSA");
    assert!(Verifier::with_key(&ed_config, b"not a pem").is_err());
    assert!(Verifier::with_key(&rsa_config, RSA_PRIVATE).is_err(), "a private key");
    assert!(Verifier::with_key(&rsa_config, b"").is_err());
    assert!(Verifier::from_config(&AuthConfig::new(JwtAlgorithm::EdDsa, "/does/not/exist.pem", "i", "a")).is_err());
}
