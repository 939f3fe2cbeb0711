//! [`Authenticator`]: the tonic interceptor that establishes who is calling, and [`principal`],
//! which handlers use to read it back.
//!
//! Put it on the public services (`OrgService`, `ClusterService`, `AdminService`, and the
//! router's), with `tonic::service::interceptor::InterceptedService::new(svc, authenticator)` or
//! as a tower layer ([`Authenticator::layer`]). Not on gRPC health (probes carry no token) nor on
//! the peer-only Raft service (peers are identified by certificate: [`crate::PeerGuard`]).
//!
//! The `authorization` header is left in place: the router passes it on, and each region verifies
//! it again rather than trusting the router's word.

use std::sync::Arc;

use tonic::service::{Interceptor, InterceptorLayer};
use tonic::{Request, Status};

use crate::config::AuthConfig;
use crate::error::{AuthError, SetupError};
use crate::jwt::{Principal, Verifier};

/// The metadata key of the bearer token.
pub const AUTHORIZATION: &str = "authorization";

/// Verifies each call's bearer token and inserts its [`Principal`] into the request's
/// extensions; refuses the call with UNAUTHENTICATED otherwise. Cheap to clone (one `Arc`).
#[derive(Clone, Debug)]
pub struct Authenticator {
    mode: Mode,
}

#[derive(Clone, Debug)]
enum Mode {
    /// Every call needs a valid token.
    Verify(Arc<Verifier>),
    /// `--allow-unauthenticated`: no token is looked at; every caller is
    /// [`Principal::anonymous`], a platform admin, so local experiments can do everything.
    AllowUnauthenticated,
}

impl Authenticator {
    /// An authenticator that requires a token valid for `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        Authenticator { mode: Mode::Verify(Arc::new(verifier)) }
    }

    /// An authenticator that lets every call through as [`Principal::anonymous`]. Only for
    /// `--allow-unauthenticated`; the binary logs that it is on, loudly, at start.
    pub fn allow_unauthenticated() -> Self {
        Authenticator { mode: Mode::AllowUnauthenticated }
    }

    /// The startup rule of nodes and routers: a token configuration verifies tokens; without
    /// one, the process starts only with `--allow-unauthenticated` (warned about, loudly, each
    /// time); both at once is refused as contradictory rather than silently picking one.
    pub fn from_settings(config: Option<&AuthConfig>, allow_unauthenticated: bool) -> Result<Self, SetupError> {
        match (config, allow_unauthenticated) {
            (Some(config), false) => Ok(Authenticator::new(Verifier::from_config(config)?)),
            (None, true) => {
                tracing::warn!(
                    "allow-unauthenticated: NO AUTHENTICATION. Every caller, without a token, acts as an \
                     anonymous platform admin. For local experiments only."
                );
                Ok(Authenticator::allow_unauthenticated())
            }
            (Some(_), true) => Err(SetupError::InvalidSetting {
                key: "allow-unauthenticated",
                reason: "cannot be combined with an [auth] configuration".into(),
            }),
            (None, false) => Err(SetupError::InvalidSetting {
                key: "auth",
                reason: "is not configured: configure token verification, or pass \
                         --allow-unauthenticated for local experiments"
                    .into(),
            }),
        }
    }

    /// Whether every caller is let in unverified (`--allow-unauthenticated`).
    pub fn is_unauthenticated(&self) -> bool {
        matches!(self.mode, Mode::AllowUnauthenticated)
    }

    /// This authenticator as a tower layer (`Server::builder().layer(...)`, or a router stack).
    pub fn layer(&self) -> InterceptorLayer<Authenticator> {
        InterceptorLayer::new(self.clone())
    }

    /// Establishes the caller of `request` and inserts its [`Principal`] into the extensions.
    pub fn authenticate<T>(&self, request: &mut Request<T>) -> Result<(), AuthError> {
        let principal = match &self.mode {
            Mode::AllowUnauthenticated => Principal::anonymous(),
            Mode::Verify(verifier) => verifier.verify(authorization_header(request)?)?,
        };
        request.extensions_mut().insert(principal);
        Ok(())
    }
}

impl Interceptor for Authenticator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        match self.authenticate(&mut request) {
            Ok(()) => Ok(request),
            Err(err) => {
                // The reason only: never the header, which holds the token.
                tracing::debug!(reason = %err, "auth.refused");
                Err(err.into())
            }
        }
    }
}

/// The one `authorization` header of `request`, as text.
fn authorization_header<T>(request: &Request<T>) -> Result<&str, AuthError> {
    let mut values = request.metadata().get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthError::MissingToken)?;
    if values.next().is_some() {
        return Err(AuthError::DuplicateHeader);
    }
    value.to_str().map_err(|_| AuthError::MalformedHeader)
}

/// The caller of `request`, as the [`Authenticator`] established it. A request that never went
/// through one is refused (UNAUTHENTICATED) rather than served as nobody in particular: a
/// missing interceptor is a wiring bug, and it must fail closed.
pub fn principal<T>(request: &Request<T>) -> Result<&Principal, Status> {
    request.extensions().get::<Principal>().ok_or_else(|| {
        tracing::error!("auth.missing_principal: a handler was reached without the Authenticator");
        Status::unauthenticated("no authenticated caller")
    })
}

#[cfg(test)]
mod tests {
    use tonic::metadata::MetadataValue;
    use tonic::Code;

    use super::*;
    use crate::config::JwtAlgorithm;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn authenticator() -> Authenticator {
        let mut config = AuthConfig::new(JwtAlgorithm::Hs256, "secret", "iss", "aud");
        config.allow_hs256 = true;
        Authenticator::new(Verifier::with_key(&config, SECRET).unwrap())
    }

    fn token(sub: &str) -> String {
        let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
        let claims = serde_json::json!({ "iss": "iss", "aud": "aud", "sub": sub, "exp": exp });
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET);
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    }

    fn request(authorization: &[&str]) -> Request<()> {
        let mut request = Request::new(());
        for value in authorization {
            request.metadata_mut().append(AUTHORIZATION, MetadataValue::try_from(*value).unwrap());
        }
        request
    }

    #[test]
    fn a_valid_token_puts_its_principal_into_the_extensions() {
        let request = authenticator().call(request(&[&format!("Bearer {}", token("alice"))])).unwrap();
        let caller = principal(&request).unwrap();
        assert_eq!(caller, &Principal { subject: "alice".into(), platform_admin: false, email: None });
    }

    #[test]
    fn calls_without_a_single_valid_token_are_unauthenticated() {
        let good = format!("Bearer {}", token("alice"));
        let tampered = format!("Bearer {}x", token("alice"));
        for (case, headers) in [
            ("no header", vec![]),
            ("two headers", vec![good.as_str(), good.as_str()]),
            ("basic", vec!["Basic dXNlcjpwYXNz"]),
            ("tampered", vec![tampered.as_str()]),
        ] {
            let status = authenticator().call(request(&headers)).unwrap_err();
            assert_eq!(status.code(), Code::Unauthenticated, "{case}");
            assert!(!status.message().contains(&token("alice")[..40]), "{case}: the token is echoed");
        }
    }

    #[test]
    fn unauthenticated_mode_lets_everyone_in_as_the_anonymous_platform_admin() {
        let mut authenticator = Authenticator::allow_unauthenticated();
        assert!(authenticator.is_unauthenticated());
        for headers in [vec![], vec!["Bearer not-a-token"]] {
            let request = authenticator.call(request(&headers)).unwrap();
            let caller = principal(&request).unwrap();
            assert_eq!(caller, &Principal::anonymous());
            assert!(caller.platform_admin);
        }
    }

    #[test]
    fn a_handler_reached_without_the_authenticator_refuses() {
        assert_eq!(principal(&Request::new(())).unwrap_err().code(), Code::Unauthenticated);
    }

    #[test]
    fn startup_needs_a_configuration_or_the_explicit_flag() {
        assert!(Authenticator::from_settings(None, true).unwrap().is_unauthenticated());
        assert!(Authenticator::from_settings(None, false).is_err());
        let config = AuthConfig::new(JwtAlgorithm::EdDsa, "/missing/key.pem", "iss", "aud");
        assert!(Authenticator::from_settings(Some(&config), true).is_err());
        assert!(matches!(Authenticator::from_settings(Some(&config), false), Err(SetupError::Read { .. })));
    }
}
