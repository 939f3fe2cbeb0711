//! Deadlines: how long the router may spend on a request. A request's budget is the shorter of
//! the client's `grpc-timeout` and the router's own limit; the time left of it is what each call
//! to a node is given (as that call's `grpc-timeout`), so a node never works on an answer
//! nobody waits for any more.
//!
//! When the client's deadline is the shorter one, the router keeps a small reply margin of it
//! back ([`REPLY_MARGIN`], at most a tenth of the deadline): its own answer, such as
//! DEADLINE_EXCEEDED naming the region that did not answer, or a partial `ListUserOrgs`, must
//! reach the client before the client gives up (and before tonic's server cancels the call
//! when the same `grpc-timeout` runs out, which would turn it into a bare CANCELLED).

use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::MetadataMap;

/// The most of a client's deadline the router keeps back to deliver its answer in time.
pub(crate) const REPLY_MARGIN: Duration = Duration::from_millis(100);

/// The point in time by which the router must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    /// A deadline `budget` from now.
    pub(crate) fn after(budget: Duration) -> Deadline {
        Deadline { at: Instant::now() + budget, budget }
    }

    /// The deadline of an incoming request: the client's `grpc-timeout`, less the reply margin,
    /// if it sent one and that is shorter than `limit`; else `limit`. A malformed
    /// `grpc-timeout` is ignored, as tonic's own server does.
    pub(crate) fn for_request(metadata: &MetadataMap, limit: Duration) -> Deadline {
        let client = client_budget(metadata);
        Deadline::after(client.map_or(limit, |client| client.min(limit)))
    }

    /// The client's own deadline (its `grpc-timeout`, less the reply margin), if it sent one:
    /// the bound of a stream, which may rightly outlast the router's request limit.
    pub(crate) fn of_client(metadata: &MetadataMap) -> Option<Deadline> {
        client_budget(metadata).map(Deadline::after)
    }

    /// This deadline, or `budget` from now if that comes sooner.
    pub(crate) fn at_most(self, budget: Duration) -> Deadline {
        let other = Deadline::after(budget);
        if other.at < self.at {
            other
        } else {
            self
        }
    }

    /// The time left, or `None` once the deadline has passed.
    pub(crate) fn remaining(&self) -> Option<Duration> {
        let left = self.at.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// The whole budget this deadline was made with, for error messages.
    pub(crate) fn budget(&self) -> Duration {
        self.budget
    }
}

/// The client's `grpc-timeout` less the reply margin; `None` without a (well-formed) one.
fn client_budget(metadata: &MetadataMap) -> Option<Duration> {
    let client = metadata.get("grpc-timeout").and_then(|v| v.to_str().ok()).and_then(parse_grpc_timeout)?;
    Some(client - (client / 10).min(REPLY_MARGIN))
}

/// Parses a `grpc-timeout` value: at most 8 digits and a unit, `H M S m u n` (hours to
/// nanoseconds), as the gRPC-over-HTTP/2 spec defines it.
pub(crate) fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || !value.is_ascii() {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<Duration>) {
        assert_eq!(parse_grpc_timeout(input), expected, "input {input:?}");
    }

    #[test]
    fn parses_grpc_timeouts() {
        check("1H", Some(Duration::from_secs(3600)));
        check("2M", Some(Duration::from_secs(120)));
        check("30S", Some(Duration::from_secs(30)));
        check("250m", Some(Duration::from_millis(250)));
        check("99999999u", Some(Duration::from_micros(99_999_999)));
        check("5n", Some(Duration::from_nanos(5)));
        check("123456789m", None);
        check("m", None);
        check("", None);
        check("10x", None);
        check("-1S", None);
        check("1.5S", None);
        check("١S", None);
    }

    fn close_to(deadline: Deadline, want_ms: u64) {
        let left = deadline.remaining().expect("deadline passed too early");
        let want = Duration::from_millis(want_ms);
        assert!(left <= want && left > want - Duration::from_millis(100), "{left:?} is not close to {want:?}");
    }

    #[tokio::test]
    async fn takes_the_shorter_of_client_and_limit() {
        let mut metadata = MetadataMap::new();
        metadata.insert("grpc-timeout", "2000m".parse().unwrap());
        close_to(Deadline::for_request(&metadata, Duration::from_secs(10)), 1900);
        close_to(Deadline::for_request(&metadata, Duration::from_millis(500)), 500);
        metadata.insert("grpc-timeout", "200m".parse().unwrap());
        close_to(Deadline::for_request(&metadata, Duration::from_secs(10)), 180);
        metadata.insert("grpc-timeout", "garbage".parse().unwrap());
        close_to(Deadline::for_request(&metadata, Duration::from_secs(3)), 3000);
        assert_eq!(Deadline::of_client(&metadata), None, "a malformed grpc-timeout is no deadline");
        metadata.insert("grpc-timeout", "2000m".parse().unwrap());
        close_to(Deadline::of_client(&metadata).expect("the client's deadline"), 1900);
        let deadline = Deadline::for_request(&MetadataMap::new(), Duration::from_secs(3));
        close_to(deadline, 3000);
        close_to(deadline.at_most(Duration::from_secs(1)), 1000);
        close_to(deadline.at_most(Duration::from_secs(9)), 3000);
        assert_eq!(Deadline::after(Duration::ZERO).remaining(), None);
    }
}
