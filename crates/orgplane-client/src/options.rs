//! [`ClientOptions`]: timeouts, retry bounds, message size limits and credentials.

use std::time::Duration;

use crate::error::ClientError;

/// The largest gRPC message the client sends or accepts, set explicitly so the limit does not
/// move with a tonic upgrade. The same value as the router's limit; the largest orgplane
/// message, a page of 1000 orgs, is far below it.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// How a [`crate::Client`] connects, waits and retries. `Default` gives the values documented
/// on each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// How long one attempt may wait for an answer (default 5 s). Sent to the server as the
    /// call's `grpc-timeout`, so the server gives up too instead of working for nobody.
    pub request_timeout: Duration,
    /// How long a whole call may take, retries and backoff included (default 15 s): no attempt
    /// starts, and none runs, past this budget.
    pub total_timeout: Duration,
    /// How long establishing a connection may take (default 3 s). The channel connects lazily,
    /// on the first call, and reconnects by itself after a failure.
    pub connect_timeout: Duration,
    /// How many times a failed attempt is sent again, when its code allows it (default 3, so
    /// at most 4 attempts). 0 turns retries off.
    pub max_retries: u32,
    /// The backoff before the first retry (default 50 ms); it doubles per retry up to
    /// `backoff_max`, and each wait is jittered to between half and all of it so that many
    /// clients failing together do not retry together.
    pub backoff_base: Duration,
    /// The longest backoff between two attempts (default 1 s).
    pub backoff_max: Duration,
    /// The largest message sent or accepted, in bytes (default [`DEFAULT_MAX_MESSAGE_BYTES`]).
    pub max_message_bytes: usize,
    /// Sent with every call as `authorization: Bearer <token>` when set.
    pub bearer_token: Option<String>,
    /// TLS settings: the CA to trust and a client certificate. Set, a bare `HOST:PORT` endpoint
    /// is dialled over TLS too. None: `https://` endpoints trust the system's roots.
    pub tls: Option<TlsOptions>,
}

/// How a client speaks TLS to a router or node of a deployment with its own CA.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct TlsOptions {
    /// The CA certificate (PEM) to trust instead of the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate and its private key (PEM), presented to the server: needed to call
    /// a node directly (its `[tls] allowed-clients` names the certificate's client), not a router.
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsOptions {
    /// Never prints the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca_pem", &self.ca_pem.as_ref().map(|pem| format!("<{} bytes>", pem.len())))
            .field("identity_pem", &self.identity_pem.as_ref().map(|_| "<certificate and key>"))
            .finish()
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            request_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(3),
            max_retries: 3,
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            bearer_token: None,
            tls: None,
        }
    }
}

impl ClientOptions {
    /// Refuses values that cannot work. Called by [`crate::Client::with_options`].
    pub fn validate(&self) -> Result<(), ClientError> {
        let invalid = |reason: &str| Err(ClientError::InvalidOptions { reason: reason.to_string() });
        if self.request_timeout.is_zero() {
            return invalid("request_timeout must be greater than zero");
        }
        if self.total_timeout.is_zero() {
            return invalid("total_timeout must be greater than zero");
        }
        if self.connect_timeout.is_zero() {
            return invalid("connect_timeout must be greater than zero");
        }
        if self.backoff_base > self.backoff_max {
            return invalid("backoff_base must not be greater than backoff_max");
        }
        if self.max_message_bytes == 0 {
            return invalid("max_message_bytes must be greater than zero");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(options: ClientOptions, accepted: bool) {
        assert_eq!(options.validate().is_ok(), accepted, "{options:?}");
    }

    #[test]
    fn validates() {
        check(ClientOptions::default(), true);
        check(ClientOptions { max_retries: 0, ..ClientOptions::default() }, true);
        check(ClientOptions { request_timeout: Duration::ZERO, ..ClientOptions::default() }, false);
        check(ClientOptions { total_timeout: Duration::ZERO, ..ClientOptions::default() }, false);
        check(ClientOptions { connect_timeout: Duration::ZERO, ..ClientOptions::default() }, false);
        check(ClientOptions { backoff_base: Duration::from_secs(2), ..ClientOptions::default() }, false);
        check(ClientOptions { max_message_bytes: 0, ..ClientOptions::default() }, false);
    }
}
