//! The retry policy and the attempt loop every typed call goes through.
//!
//! Which failures are sent again:
//!
//! | failure                                   | read  | write (same request id) |
//! |-------------------------------------------|-------|-------------------------|
//! | UNAVAILABLE (also: could not connect)     | retry | retry                   |
//! | RESOURCE_EXHAUSTED (router: not sent)     | retry | retry                   |
//! | transport failure reported as UNKNOWN, CANCELLED or INTERNAL (the connection broke, or a node shutting down sent GOAWAY; the status has a local error source) | retry | retry |
//! | DEADLINE_EXCEEDED (server's, or the attempt timed out here) | no | retry  |
//! | CANCELLED sent by the server (a tonic server's answer when the call's `grpc-timeout` passes; reported as DEADLINE_EXCEEDED) | no | retry |
//! | anything else, UNKNOWN and INTERNAL from the server included | no | no  |
//!
//! A write may be sent again after an ambiguous failure only because it carries the same
//! request id on every attempt: the server applies it once and answers the retry with the
//! first result. Attempts are bounded by [`ClientOptions::max_retries`] and by
//! [`ClientOptions::total_timeout`]; waits grow exponentially with jitter.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tonic::{Code, Request, Response, Status};

use crate::error::{code_name, ClientError};
use crate::options::ClientOptions;

/// Whether a call changes state, which decides after which failures it may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    /// Idempotent by nature.
    Read,
    /// Idempotent only through its request id.
    Write,
}

/// True when a failed attempt of a `kind` call may be sent again.
pub(crate) fn may_retry(kind: CallKind, status: &Status) -> bool {
    match status.code() {
        Code::Unavailable | Code::ResourceExhausted => true,
        Code::DeadlineExceeded => kind == CallKind::Write,
        // tonic reports HTTP/2 failures by their reason: a GOAWAY from a node shutting down, or
        // a reset stream, arrives as INTERNAL with the h2 error as its source.
        Code::Unknown | Code::Cancelled | Code::Internal => is_transport_failure(status),
        _ => false,
    }
}

/// tonic reports a broken connection as a status it made itself, with the transport error as
/// its source; a status the server sent has no source. Only the former is a transport failure.
fn is_transport_failure(status: &Status) -> bool {
    std::error::Error::source(status).is_some()
}

/// The status of an attempt that got no answer within `timeout`.
fn attempt_timed_out(timeout: Duration) -> Status {
    Status::deadline_exceeded(format!("the client got no answer within {} ms", timeout.as_millis()))
}

/// tonic's channel enforces the request's `grpc-timeout` itself and reports it as CANCELLED
/// with a `TimeoutExpired` source; it races the client's own timer, and means the same.
fn is_local_timeout(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        if err.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// A tonic server answers CANCELLED ("Timeout expired") when the call's `grpc-timeout` passes
/// before the handler finishes; for the caller that is its deadline passing, so it is reported
/// and retried as DEADLINE_EXCEEDED. A CANCELLED that tonic made here for a broken
/// connection (it has an error source) is left alone.
fn server_timeout_as_deadline_exceeded(status: Status) -> Status {
    if status.code() == Code::Cancelled && !is_transport_failure(&status) {
        Status::with_metadata(Code::DeadlineExceeded, status.message().to_string(), status.metadata().clone())
    } else {
        status
    }
}

/// The error of a call that ends with `status` after `attempts` attempts.
fn give_up(endpoint: &str, rpc: &'static str, attempts: u32, status: Status) -> ClientError {
    let from_transport = is_transport_failure(&status);
    ClientError::status(rpc, attempts, with_local_causes(endpoint, status), from_transport)
}

/// A status tonic made here for a transport failure says little ("tcp connect error"): the
/// causes are in its error sources. Spells them out after the endpoint, keeping the code.
fn with_local_causes(endpoint: &str, status: Status) -> Status {
    let Some(first) = std::error::Error::source(&status) else { return status };
    let mut message = format!("{endpoint}: {}", status.message());
    let mut cause = Some(first);
    while let Some(err) = cause {
        let text = err.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = err.source();
    }
    Status::new(status.code(), message)
}

/// The wait before retry number `retry` (1 for the first retry): `base * 2^(retry-1)`, at most
/// `max`, scaled by `0.5 + 0.5 * jitter` for a `jitter` in `[0, 1)`.
pub(crate) fn backoff_delay(retry: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exponential = base.saturating_mul(2u32.saturating_pow(retry.saturating_sub(1))).min(max);
    let scale = 0.5 + 0.5 * jitter.clamp(0.0, 1.0);
    Duration::from_nanos((exponential.as_nanos() as f64 * scale).round() as u64)
}

/// A uniformly random number in `[0, 1)`, from the 48 top bits of a UUIDv4 (all random), so the
/// client needs no random number crate besides the one `uuid` already uses.
pub(crate) fn random_unit() -> f64 {
    (uuid::Uuid::new_v4().as_u128() >> 80) as f64 / (1u64 << 48) as f64
}

/// Sends `message` with `send` until it succeeds, fails in a way that must not be retried, or
/// the attempts or the time run out. Each attempt gets `min(request_timeout, time left)` as
/// its `grpc-timeout` and is cut off here when that passes (a write keeps its request id: it
/// is inside `message`).
#[tracing::instrument(name = "client.call", skip_all, fields(rpc = rpc, request_id = tracing::field::Empty))]
pub(crate) async fn call_with_retries<Req, Resp, F, Fut>(
    options: &ClientOptions,
    endpoint: &str,
    rpc: &'static str,
    kind: CallKind,
    request_id: Option<&str>,
    message: Req,
    mut send: F,
) -> Result<Resp, ClientError>
where
    Req: Clone,
    F: FnMut(Request<Req>) -> Fut,
    Fut: Future<Output = Result<Response<Resp>, Status>>,
{
    if let Some(request_id) = request_id {
        tracing::Span::current().record("request_id", request_id);
    }
    let deadline = Instant::now() + options.total_timeout;
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let timeout = options.request_timeout.min(deadline.saturating_duration_since(Instant::now()));
        let mut request = Request::new(message.clone());
        request.set_timeout(timeout);
        let status = match tokio::time::timeout(timeout, send(request)).await {
            Ok(Ok(response)) => return Ok(response.into_inner()),
            Ok(Err(status)) if is_local_timeout(&status) => attempt_timed_out(timeout),
            Ok(Err(status)) => server_timeout_as_deadline_exceeded(status),
            Err(_elapsed) => attempt_timed_out(timeout),
        };
        if attempt > options.max_retries || !may_retry(kind, &status) {
            return Err(give_up(endpoint, rpc, attempt, status));
        }
        let delay = backoff_delay(attempt, options.backoff_base, options.backoff_max, random_unit());
        if Instant::now() + delay >= deadline {
            return Err(give_up(endpoint, rpc, attempt, status));
        }
        tracing::debug!(
            attempt,
            code = code_name(status.code()),
            status_message = status.message(),
            delay_ms = delay.as_millis() as u64,
            "attempt failed; retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(code: Code, read: bool, write: bool) {
        let status = Status::new(code, "from the server");
        assert_eq!(may_retry(CallKind::Read, &status), read, "read, {code:?}");
        assert_eq!(may_retry(CallKind::Write, &status), write, "write, {code:?}");
    }

    #[test]
    fn retries_only_what_is_safe_and_useful() {
        check(Code::Unavailable, true, true);
        check(Code::ResourceExhausted, true, true);
        check(Code::DeadlineExceeded, false, true);
        check(Code::Unknown, false, false);
        check(Code::Cancelled, false, false);
        check(Code::InvalidArgument, false, false);
        check(Code::NotFound, false, false);
        check(Code::Aborted, false, false);
        check(Code::FailedPrecondition, false, false);
        check(Code::PermissionDenied, false, false);
        check(Code::AlreadyExists, false, false);
        check(Code::Internal, false, false);
    }

    #[test]
    fn a_servers_cancelled_is_its_deadline_passing() {
        let status = server_timeout_as_deadline_exceeded(Status::cancelled("Timeout expired"));
        assert_eq!((status.code(), status.message()), (Code::DeadlineExceeded, "Timeout expired"));
        let other = server_timeout_as_deadline_exceeded(Status::not_found("org eu-1 not found"));
        assert_eq!(other.code(), Code::NotFound);
    }

    #[test]
    fn tonics_own_timeout_is_recognised() {
        let status = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(status.code(), Code::Cancelled);
        assert!(is_local_timeout(&status));
        assert!(!is_local_timeout(&Status::cancelled("Timeout expired")));
    }

    #[test]
    fn local_failures_name_the_endpoint_and_their_causes() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let status = with_local_causes("10.0.0.1:50051", Status::from_error(Box::new(refused)));
        assert_eq!(status.message(), "10.0.0.1:50051: connection refused");
        let answered = with_local_causes("10.0.0.1:50051", Status::unavailable("region eu has no leader"));
        assert_eq!(answered.message(), "region eu has no leader", "the server's own answers stay as they are");
    }

    #[test]
    fn a_broken_connection_reported_as_unknown_is_retried() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset by peer");
        let status = Status::from_error(Box::new(reset));
        assert_eq!(status.code(), Code::Unknown);
        assert!(may_retry(CallKind::Read, &status));
        assert!(may_retry(CallKind::Write, &status));
    }

    #[test]
    fn a_goaway_from_a_node_shutting_down_is_retried() {
        let goaway = Status::from_error(Box::new(h2::Error::from(h2::Reason::NO_ERROR)));
        assert_eq!(goaway.code(), Code::Internal, "tonic's code for an HTTP/2 NO_ERROR");
        assert!(may_retry(CallKind::Read, &goaway));
        assert!(may_retry(CallKind::Write, &goaway));
        assert!(!may_retry(CallKind::Write, &Status::internal("from the server")), "the server's own INTERNAL");
    }

    fn check_delay(retry: u32, jitter: f64, expected_ms: u64) {
        let got = backoff_delay(retry, Duration::from_millis(100), Duration::from_secs(1), jitter);
        assert_eq!(got, Duration::from_millis(expected_ms), "retry {retry}, jitter {jitter}");
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        check_delay(1, 1.0, 100);
        check_delay(1, 0.0, 50);
        check_delay(2, 1.0, 200);
        check_delay(3, 1.0, 400);
        check_delay(4, 0.5, 600);
        check_delay(5, 1.0, 1000);
        check_delay(40, 1.0, 1000);
        check_delay(u32::MAX, 0.0, 500);
    }

    #[test]
    fn random_unit_stays_in_range() {
        for _ in 0..1000 {
            let x = random_unit();
            assert!((0.0..1.0).contains(&x), "{x}");
        }
    }
}
