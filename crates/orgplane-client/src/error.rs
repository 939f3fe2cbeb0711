//! [`ClientError`], the one error type of the client: either the client refused to start a call
//! (bad endpoint, token, request id or options), or the call ended with a gRPC status (the
//! server's answer, or one the client made for a transport failure or its own timeout).

use std::borrow::Cow;

use orgplane_proto::conv::{MOVED_TO_HEADER, MOVING_TO_HEADER, ORG_EPOCH_HEADER};
use tonic::{Code, Status};

/// The words of a node's UNAVAILABLE for an org between the freeze and the switch of a move:
/// "org ID is moving to region REGION; retry shortly". A node also names the region in
/// `x-orgplane-moving-to`, but a router passes on only the message.
const MOVING_TO_REGION: &str = " is moving to region ";

/// Why a client call, or building a client, failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint text is not `HOST:PORT`, `http://HOST:PORT` or `https://HOST:PORT`.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    /// The bearer token cannot be sent as a gRPC metadata value.
    #[error("invalid token: {reason}")]
    InvalidToken { reason: String },
    /// A caller-chosen request id breaks the server's rule (1 to 128 visible ASCII characters).
    #[error("invalid request id {given:?}: {reason}")]
    InvalidRequestId { given: String, reason: String },
    /// A [`crate::ClientOptions`] value that cannot work (for example a zero timeout).
    #[error("invalid client options: {reason}")]
    InvalidOptions { reason: String },
    /// The call ended with a status: the last attempt's, after retries when the code allowed
    /// them. `attempts` counts every attempt made, the first one included.
    #[error("{rpc}: {}: {} ({attempts} attempt{})", code_name(.status.code()), .status.message(), if *.attempts == 1 { "" } else { "s" })]
    Status {
        rpc: &'static str,
        attempts: u32,
        /// Boxed because a `Status` is large and this error travels in every `Result`.
        status: Box<Status>,
        /// True when no server answered: the connection failed and tonic made the status in
        /// the client. It changes the hint (check the endpoint, not the region).
        from_transport: bool,
    },
    /// The server answered OK with something the API rules out (a missing record, a page
    /// token that does not advance).
    #[error("{rpc}: malformed answer: {reason}")]
    MalformedResponse { rpc: &'static str, reason: String },
    /// A [`crate::Client::move_org`] failed in a way that may have reached the router (so the
    /// move may have started), and asking for the org's move status failed too: whether the
    /// move started is unknown. Check before starting it again.
    #[error("move_org: the move of org {org_id} to region {to_region} may have started: the call failed ({failure}) and so did checking its status ({check})")]
    MoveOutcomeUnknown {
        org_id: String,
        to_region: String,
        /// How `MoveOrg` failed.
        failure: Box<ClientError>,
        /// How the `GetMoveStatus` that was to settle it failed.
        check: Box<ClientError>,
    },
    /// Reading what a call sends (an app archive) or writing what it receives failed locally.
    #[error("{rpc}: {context}: {source}")]
    Io {
        rpc: &'static str,
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl ClientError {
    pub(crate) fn status(rpc: &'static str, attempts: u32, status: Status, from_transport: bool) -> ClientError {
        ClientError::Status { rpc, attempts, status: Box::new(status), from_transport }
    }

    /// The gRPC code of the failure. Errors the client raised before sending anything are
    /// INVALID_ARGUMENT; an answer that breaks the API is INTERNAL.
    pub fn code(&self) -> Code {
        match self {
            ClientError::InvalidEndpoint { .. }
            | ClientError::InvalidToken { .. }
            | ClientError::InvalidRequestId { .. }
            | ClientError::InvalidOptions { .. } => Code::InvalidArgument,
            ClientError::Status { status, .. } => status.code(),
            ClientError::MalformedResponse { .. } => Code::Internal,
            ClientError::MoveOutcomeUnknown { failure, .. } => failure.code(),
            ClientError::Io { .. } => Code::Unknown,
        }
    }

    /// The code's name as gRPC spells it, for example `NOT_FOUND`.
    pub fn code_name(&self) -> &'static str {
        code_name(self.code())
    }

    /// The server's message for a status, or this error's own text for the others.
    pub fn message(&self) -> String {
        match self {
            ClientError::Status { status, .. } => status.message().to_string(),
            other => other.to_string(),
        }
    }

    /// The full status, metadata included (a router names the region in `x-orgplane-region`),
    /// when the call got one.
    pub fn grpc_status(&self) -> Option<&Status> {
        match self {
            ClientError::Status { status, .. } => Some(status),
            _ => None,
        }
    }

    /// Where a moved org lives now: the region (and the org's epoch there) that a region the
    /// org left names in its FAILED_PRECONDITION (metadata `x-orgplane-moved-to` and
    /// `x-orgplane-org-epoch`). A router follows this by itself; a client of one region's
    /// nodes sends the request to that region instead.
    pub fn moved_to(&self) -> Option<(&str, Option<u64>)> {
        let status = self.grpc_status().filter(|s| s.code() == Code::FailedPrecondition)?;
        let region = status.metadata().get(MOVED_TO_HEADER)?.to_str().ok()?;
        let epoch = status.metadata().get(ORG_EPOCH_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        Some((region, epoch))
    }

    /// The region an org is moving to, when the call was refused because the org is between
    /// the freeze and the switch of a move (UNAVAILABLE: writes pause during a move).
    pub fn moving_to(&self) -> Option<&str> {
        let status = self.grpc_status().filter(|s| s.code() == Code::Unavailable)?;
        if let Some(region) = status.metadata().get(MOVING_TO_HEADER).and_then(|v| v.to_str().ok()) {
            return Some(region);
        }
        let (_, rest) = status.message().split_once(MOVING_TO_REGION)?;
        let region = rest.split(|c: char| !c.is_ascii_alphanumeric()).next()?;
        (!region.is_empty()).then_some(region)
    }

    /// True when the error arose in the client before any call was made: the input or the
    /// configuration must change, retrying cannot help.
    pub fn is_local(&self) -> bool {
        matches!(
            self,
            ClientError::InvalidEndpoint { .. }
                | ClientError::InvalidToken { .. }
                | ClientError::InvalidRequestId { .. }
                | ClientError::InvalidOptions { .. }
        )
    }

    /// True when sending the same call again later may succeed: UNAVAILABLE, DEADLINE_EXCEEDED
    /// and RESOURCE_EXHAUSTED. A write must then be sent again with the same request id, which
    /// the client's own retries do; this error means they ran out of attempts or time.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Status { status, .. } => {
                matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted)
            }
            _ => false,
        }
    }

    /// A short hint for a human: what the failure usually means and what to do next.
    pub fn hint(&self) -> Cow<'static, str> {
        if let Some((region, _)) = self.moved_to() {
            return format!(
                "the org moved to region {region}; a router follows this by itself, a client of one region's nodes should send the request to region {region}"
            )
            .into();
        }
        if let Some(region) = self.moving_to() {
            return format!(
                "the org is moving to region {region} and writes to it pause until the switch (seconds at most); retry shortly"
            )
            .into();
        }
        Cow::Borrowed(self.static_hint())
    }

    fn static_hint(&self) -> &'static str {
        match self {
            ClientError::InvalidEndpoint { .. } => {
                "give the endpoint as HOST:PORT, http://HOST:PORT or https://HOST:PORT"
            }
            ClientError::InvalidToken { .. } => "a token must be visible ASCII without spaces or control characters",
            ClientError::InvalidRequestId { .. } => {
                "a request id is 1 to 128 visible ASCII characters; omit it to get a fresh one"
            }
            ClientError::InvalidOptions { .. } => "fix the client options; every timeout must be greater than zero",
            ClientError::Status { status, from_transport: true, .. } if status.code() == Code::Unavailable => {
                "the endpoint could not be reached; check the address and that the router or node runs, then retry"
            }
            ClientError::Status { status, .. } => hint_for_code(status.code()),
            ClientError::MalformedResponse { .. } => {
                "the server broke the API contract; check that client and server versions match"
            }
            ClientError::MoveOutcomeUnknown { .. } => {
                "see whether the move started (orgctl org move-status ORG) before starting it again"
            }
            ClientError::Io { .. } => "check the local file: its path, permissions and free space",
        }
    }
}

/// A short human hint for a gRPC code, as the orgplane API uses it.
pub fn hint_for_code(code: Code) -> &'static str {
    match code {
        Code::Ok => "no error",
        Code::Cancelled => "the call was cancelled before it finished; run it again if it is still wanted",
        Code::Unknown => {
            "the server failed in an unexpected way; check the server logs before sending a write again"
        }
        Code::InvalidArgument => "the input was refused and nothing changed; fix the named field and try again",
        Code::DeadlineExceeded => {
            "the region did not answer in time; retry (a write with the same request id applies once) or allow a longer timeout"
        }
        Code::NotFound => "check the id: it does not exist, or was deleted",
        Code::AlreadyExists => "it exists already; get it instead of creating it again",
        Code::PermissionDenied => "the credentials do not allow this call",
        Code::ResourceExhausted => "the region is overloaded; retry after a short wait",
        Code::FailedPrecondition => {
            "the current state does not allow this and nothing changed; the message says what must change first (a slot to bind, a region to allow, a role still in use...)"
        }
        Code::Aborted => "someone changed it first: get it again and retry with the new version",
        Code::OutOfRange => "a value is out of range, for example a message larger than the size limit",
        Code::Unimplemented => "the server does not serve this call; check that the endpoint is an orgplane router or node",
        Code::Internal => "a server bug; report it with the message",
        Code::Unavailable => "the region may be down or electing a leader; retry",
        Code::DataLoss => "data was lost or corrupted; report it with the message",
        Code::Unauthenticated => "the server did not accept the credentials; check the bearer token",
    }
}

/// The name of a gRPC code as the gRPC specification spells it (`tonic::Code`'s `Display`
/// prints a description instead).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(code: Code, name: &str, retryable: bool) {
        let err = ClientError::status("get_org", 1, Status::new(code, "m"), false);
        assert_eq!(err.code_name(), name);
        assert_eq!(err.is_retryable(), retryable, "{name}");
        assert!(!err.hint().is_empty());
        assert!(!err.is_local());
    }

    #[test]
    fn codes_have_names_hints_and_retryability() {
        check(Code::Unavailable, "UNAVAILABLE", true);
        check(Code::DeadlineExceeded, "DEADLINE_EXCEEDED", true);
        check(Code::ResourceExhausted, "RESOURCE_EXHAUSTED", true);
        check(Code::Aborted, "ABORTED", false);
        check(Code::InvalidArgument, "INVALID_ARGUMENT", false);
        check(Code::NotFound, "NOT_FOUND", false);
        check(Code::Unknown, "UNKNOWN", false);
        check(Code::FailedPrecondition, "FAILED_PRECONDITION", false);
    }

    #[test]
    fn display_names_the_rpc_code_message_and_attempts() {
        let err = ClientError::status("create_org", 3, Status::unavailable("region eu has no leader"), false);
        assert_eq!(err.to_string(), "create_org: UNAVAILABLE: region eu has no leader (3 attempts)");
        assert_eq!(err.message(), "region eu has no leader");
        assert_eq!(err.hint(), "the region may be down or electing a leader; retry");
        let unreached = ClientError::status("create_org", 1, Status::unavailable("tcp connect error"), true);
        assert!(unreached.hint().starts_with("the endpoint could not be reached"));
        let local = ClientError::InvalidToken { reason: "x".into() };
        assert!(local.is_local());
        assert_eq!(local.code(), Code::InvalidArgument);
    }

    #[test]
    fn a_moving_org_says_where_to_and_to_retry_shortly() {
        let status = Status::unavailable("org eu-01abc is moving to region us; retry shortly");
        let err = ClientError::status("update_org", 4, status, false);
        assert_eq!(err.moving_to(), Some("us"));
        assert!(err.is_retryable());
        assert_eq!(
            err.hint(),
            "the org is moving to region us and writes to it pause until the switch (seconds at most); retry shortly"
        );
        let mut direct = Status::unavailable("org eu-01abc is frozen");
        direct.metadata_mut().insert(MOVING_TO_HEADER, "apac".parse().unwrap());
        assert_eq!(ClientError::status("update_org", 1, direct, false).moving_to(), Some("apac"));
        let down = ClientError::status("update_org", 4, Status::unavailable("region eu has no leader"), false);
        assert_eq!(down.moving_to(), None);
        assert_eq!(down.hint(), hint_for_code(Code::Unavailable));
    }

    #[test]
    fn a_moved_org_names_its_new_region_and_epoch() {
        let mut status =
            Status::failed_precondition("org eu-01abc moved to region apac (epoch 3); send requests there");
        status.metadata_mut().insert(MOVED_TO_HEADER, "apac".parse().unwrap());
        status.metadata_mut().insert(ORG_EPOCH_HEADER, "3".parse().unwrap());
        let err = ClientError::status("get_org", 1, status, false);
        assert_eq!(err.moved_to(), Some(("apac", Some(3))));
        assert!(
            err.hint().starts_with("the org moved to region apac; a router follows this by itself"),
            "{}",
            err.hint()
        );
        let other = ClientError::status("publish_app", 1, Status::failed_precondition("slot line is unbound"), false);
        assert_eq!(other.moved_to(), None);
        assert_eq!(other.hint(), hint_for_code(Code::FailedPrecondition));
    }
}
