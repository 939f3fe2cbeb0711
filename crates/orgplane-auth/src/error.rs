//! The errors of this crate, and the one place a refused token becomes a `tonic::Status`.
//!
//! Three enums, because they live at three different moments:
//! - [`AuthError`]: a call's credentials are refused. Always UNAUTHENTICATED, with a short
//!   reason that names what was wrong but never contains the token or a claim's value.
//! - [`PeerIdentityError`]: a peer certificate carries no orgplane identity, or a malformed one.
//! - [`SetupError`]: configuration, key and certificate files, at start or in a CLI command;
//!   never seen by a caller.

use std::path::PathBuf;

use tonic::Status;

/// Why a call's credentials were refused. Every variant maps to UNAUTHENTICATED.
///
/// Messages are fixed text plus numbers or claim names; they never carry the token, its claims'
/// values or the key, so they are safe to return to the caller and to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    MissingToken,
    #[error("malformed authorization header: expected `Bearer <token>`")]
    MalformedHeader,
    #[error("more than one authorization header")]
    DuplicateHeader,
    #[error("token larger than {limit} bytes")]
    TokenTooLarge { limit: usize },
    #[error("malformed token")]
    MalformedToken,
    #[error("token algorithm not accepted")]
    WrongAlgorithm,
    #[error("bad token signature")]
    BadSignature,
    #[error("token has no {claim} claim")]
    MissingClaim { claim: &'static str },
    #[error("token claim {claim} has the wrong type")]
    InvalidClaim { claim: &'static str },
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token issuer not accepted")]
    WrongIssuer,
    #[error("token audience not accepted")]
    WrongAudience,
    #[error("invalid token")]
    Invalid,
}

impl From<AuthError> for Status {
    fn from(err: AuthError) -> Self {
        Status::unauthenticated(err.to_string())
    }
}

/// A peer certificate does not say which orgplane node or router it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerIdentityError {
    #[error("the peer certificate cannot be parsed")]
    BadCertificate,
    #[error("the peer certificate has no spiffe:// identity")]
    NoIdentity,
    #[error("the peer certificate has more than one spiffe:// identity")]
    AmbiguousIdentity,
    #[error("unrecognised peer identity {uri:?}")]
    Unrecognised { uri: String },
}

/// Configuration, key and certificate files: what stops a process from starting, or a CLI
/// command (`orgplane dev-token`, the dev PKI) from finishing.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("auth: {key} {reason}")]
    InvalidSetting { key: &'static str, reason: String },
    #[error("auth: algorithm HS256 is for development only: set allow-hs256 = true to use it")]
    Hs256NotAllowed,
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is readable by group or others (mode {mode:o}): make it 0600")]
    LooseKeyPermissions { path: PathBuf, mode: u32 },
    #[error("{path} does not hold a usable {expected}: {reason}")]
    BadKey { path: PathBuf, expected: &'static str, reason: String },
    #[error("{path} holds a private key: configure the public key (the signing key stays with the issuer)")]
    PrivateKeyConfigured { path: PathBuf },
    #[error("cannot sign a token: {0}")]
    Sign(String),
    #[error("cannot make a certificate: {0}")]
    Certificate(String),
    #[error("invalid {what} {given:?}: {reason}")]
    InvalidName { what: &'static str, given: String, reason: &'static str },
}
