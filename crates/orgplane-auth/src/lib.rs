//! Who is calling: bearer tokens (JWT) for users, certificates (mTLS) for nodes and routers.
//!
//! Layout:
//! - [`config`]: [`AuthConfig`], the token settings of a node or router (algorithm, key file,
//!   issuer, audience, leeway, size limit, platform-admin claim), validated before start.
//! - [`jwt`]: [`Verifier`], which turns an `authorization` header into a [`Principal`].
//! - [`interceptor`]: [`Authenticator`], the tonic interceptor (usable as a tower layer) that puts
//!   the [`Principal`] into each request's extensions, or an anonymous one with
//!   `--allow-unauthenticated`.
//! - [`peer`]: [`PeerIdentity`], the identity a node or router certificate carries (a SPIFFE URI),
//!   and [`PeerGuard`], the interceptor that admits only the expected peers.
//! - [`tls`]: [`TlsConfig`], the `[tls]` table (CA, certificate, key, allowed clients), checked at
//!   start into [`PeerTls`], tonic's server and client settings for mutual TLS.
//! - [`dev_key`]: the dev signing key in a data dir and the tokens it signs (`orgplane dev-token`).
//! - [`dev_pki`]: a dev CA and the certificates of a deployment's nodes and routers.
//! - [`error`]: [`AuthError`] (a refused call: always UNAUTHENTICATED), [`PeerIdentityError`],
//!   [`SetupError`] (configuration, key and certificate files).
//!
//! Invariants: a token is never logged nor echoed in an error; the signing algorithm is pinned by
//! configuration, never taken from the token.

#![forbid(unsafe_code)]

pub mod config;
pub mod dev_key;
pub mod dev_pki;
pub mod error;
mod files;
pub mod interceptor;
pub mod jwt;
pub mod peer;
pub mod tls;

pub use config::{AuthConfig, JwtAlgorithm};
pub use dev_key::DevKey;
pub use error::{AuthError, PeerIdentityError, SetupError};
pub use interceptor::{principal, Authenticator};
pub use jwt::{Principal, Verifier};
pub use peer::{PeerGuard, PeerIdentity};
pub use tls::{PeerTls, TlsConfig};
