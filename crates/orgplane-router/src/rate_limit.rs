//! The per-caller rate limit: a token bucket per authenticated subject, checked right after
//! authentication and before anything is forwarded, so one caller cannot take a router's (or a
//! region's) capacity. Keyed on the token's verified `sub`, never on anything else a client
//! sends. Over the limit a call answers RESOURCE_EXHAUSTED.
//!
//! [`CallerGate`] is the router's one interceptor: authenticate, then count the call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use orgplane_auth::Authenticator;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Buckets kept before idle (full) ones are dropped; bounds memory whatever the callers.
const PRUNE_ABOVE: usize = 10_000;

/// Token buckets, one per subject: `per_second` calls on average, bursts of `burst`.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl RateLimiter {
    /// A limiter of `per_second` calls per subject with bursts of `burst` (both above zero).
    pub fn new(per_second: u32, burst: u32) -> RateLimiter {
        RateLimiter { per_second: f64::from(per_second), burst: f64::from(burst), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one call from `subject`'s bucket at `now`; false when it is empty.
    pub fn admit(&self, subject: &str, now: Instant) -> bool {
        // A panic elsewhere leaves no half-updated bucket that matters: take the lock over.
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() > PRUNE_ABOVE {
            let (per_second, burst) = (self.per_second, self.burst);
            buckets
                .retain(|_, b| b.tokens + now.saturating_duration_since(b.refilled).as_secs_f64() * per_second < burst);
        }
        let bucket = buckets.entry(subject.to_string()).or_insert(Bucket { tokens: self.burst, refilled: now });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The router's interceptor on its public services: authenticates the caller, then applies
/// the per-caller rate limit (when configured).
#[derive(Debug, Clone)]
pub struct CallerGate {
    authenticator: Authenticator,
    limiter: Option<Arc<RateLimiter>>,
}

impl CallerGate {
    pub fn new(authenticator: Authenticator, limiter: Option<RateLimiter>) -> CallerGate {
        CallerGate { authenticator, limiter: limiter.map(Arc::new) }
    }
}

impl Interceptor for CallerGate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let request = self.authenticator.call(request)?;
        if let Some(limiter) = &self.limiter {
            let subject = &orgplane_auth::principal(&request)?.subject;
            if !limiter.admit(subject, Instant::now()) {
                return Err(Status::resource_exhausted("rate limit exceeded for this caller; retry later"));
            }
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn each_subject_gets_its_burst_then_its_rate() {
        let limiter = RateLimiter::new(2, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.admit("alice", start));
        }
        assert!(!limiter.admit("alice", start), "the burst is spent");
        assert!(limiter.admit("bob", start), "bob has his own bucket");
        assert!(limiter.admit("alice", start + Duration::from_millis(500)), "one call back after 1/rate");
        assert!(!limiter.admit("alice", start + Duration::from_millis(500)));
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(limiter.admit("alice", later), "refilled to the burst, no more");
        }
        assert!(!limiter.admit("alice", later));
    }

    #[test]
    fn the_gate_refuses_over_the_limit_and_unauthenticated_first() {
        let mut gate = CallerGate::new(Authenticator::allow_unauthenticated(), Some(RateLimiter::new(1, 2)));
        assert!(gate.call(Request::new(())).is_ok());
        assert!(gate.call(Request::new(())).is_ok());
        assert_eq!(gate.call(Request::new(())).unwrap_err().code(), tonic::Code::ResourceExhausted);
        let mut unlimited = CallerGate::new(Authenticator::allow_unauthenticated(), None);
        for _ in 0..100 {
            assert!(unlimited.call(Request::new(())).is_ok());
        }
    }
}
