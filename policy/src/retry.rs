//! Retries before a response starts: whether a failed attempt may be sent again to
//! another node ([`may_retry`]), and whether the retry budget allows it ([`RetryBudget`]).
//!
//! The request's attempt machine (`crate::attempt`) asks in this order after a failed
//! attempt: `may_retry` (pure: is a replay safe?), then `RetryBudget::try_retry` (spends
//! budget); its driver then asks the balancer with the nodes already tried excluded. A GET
//! that dies mid-body is not a retry but a resume (`crate::resume`).

use std::time::{Duration, Instant};

/// Ratio credit decays with this time constant, so the budget follows the recent request
/// rate (about the last ten seconds, as Finagle's retry budget does) instead of banking
/// credit through a quiet hour and spending it in one storm.
const CREDIT_TIME_CONSTANT: Duration = Duration::from_secs(10);
/// Budget is kept in millionths of a retry, so deposits of a ratio add up exactly.
const MICROS_PER_RETRY: u64 = 1_000_000;

/// What is known about the request body when an attempt fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyState {
    /// No body.
    Empty,
    /// The whole body is held in memory (up to `http.buffered_body_bytes_max`).
    Buffered,
    /// `Expect: 100-continue` and the node had not said 100: no body byte was pulled.
    NotYetSent,
    /// Body bytes were streamed to a node and are gone.
    Streaming,
}

/// How an attempt failed before a response started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The TCP connect failed: nothing reached the node.
    Connect,
    /// Reset or closed after the request was (partly) sent, before a response head.
    ResetBeforeResponse,
    /// No response head within the first-byte timeout.
    TimeoutBeforeResponse,
    /// The response head was malformed.
    BadResponse,
    /// Throttled (`503 SlowDown`, `429`): the node did not do the work.
    Throttled,
    /// A 5xx that is not throttling.
    ServerError,
}

/// Whether a request that failed with `failure` may be sent again to another node.
/// `attempt` counts the attempts made so far (1 after the first failure); at most
/// `attempts_max` attempts are made in total.
///
/// - A body that was streamed cannot be replayed: the bytes are gone.
/// - A POST (CompleteMultipartUpload, DeleteObjects, …) and any method that is not
///   idempotent is retried only when the connect failed, i.e. no byte reached a node
///   (docs/design.md, "Failure is a normal state"): a node may have acted on it even if it
///   answered 5xx or nothing.
/// - GET, HEAD, PUT, DELETE, OPTIONS are idempotent in S3 and retried on any of these
///   failures.
pub fn may_retry(
    method: &str,
    body: BodyState,
    failure: Failure,
    attempt: u32,
    attempts_max: u32,
) -> bool {
    if attempt >= attempts_max {
        return false;
    }
    if body == BodyState::Streaming {
        return false;
    }
    if is_idempotent(method) {
        return true;
    }
    failure == Failure::Connect
}

/// RFC 9110 §9.2.2 idempotent methods (methods are case-sensitive).
fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
    )
}

/// The retry budget's settings for the whole appliance (`[upstream]` `retry_ratio` and
/// `retry_floor_per_sec`), before [`RetryBudget::for_core`] shares them out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryParams {
    /// Retries per original request, `0.0..=1.0`.
    pub ratio: f64,
    /// Retries per second allowed even without request credit.
    pub floor_per_sec: u32,
}

/// A retry budget: retries may add at most `ratio` of recent requests, plus a small
/// floor per second so that a quiet node can still be retried. Stops retry storms: when
/// every request fails, load grows by `ratio`, not by `attempts_max`.
///
/// Bound: over any run of `T` seconds with `R` requests, retries granted are at most
/// `ratio × R + floor_per_sec × (T + 1)` (the floor bucket starts full with one second).
/// One budget per core; the appliance divides the floor among cores.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryBudget {
    /// Deposit per request, in millionths of a retry.
    ratio_micros: u64,
    floor_per_sec: u32,
    /// Ratio credit, in millionths of a retry; decays with [`CREDIT_TIME_CONSTANT`].
    credit_micros: u64,
    /// Floor token bucket, in millionths of a retry; at most one second's worth.
    floor_micros: u64,
    last: Option<Instant>,
}

impl RetryBudget {
    /// A budget of `ratio` retries per request (clamped to `0.0..=1.0`) plus
    /// `floor_per_sec` retries per second.
    pub fn new(ratio: f64, floor_per_sec: u32) -> Self {
        let ratio = if ratio.is_finite() {
            ratio.clamp(0.0, 1.0)
        } else {
            0.0
        };
        RetryBudget {
            // In 0..=1_000_000 after the clamp, so the cast is exact.
            ratio_micros: (ratio * MICROS_PER_RETRY as f64).round() as u64,
            floor_per_sec,
            credit_micros: 0,
            floor_micros: u64::from(floor_per_sec) * MICROS_PER_RETRY,
            last: None,
        }
    }

    /// The budget for one of `cores` cores (the floor is divided, rounding up so each core
    /// keeps some); `params` is `[upstream]` (`&Upstream` converts).
    pub fn for_core(params: impl Into<RetryParams>, cores: usize) -> Self {
        let params = params.into();
        let cores = u32::try_from(cores.max(1)).unwrap_or(u32::MAX);
        RetryBudget::new(params.ratio, params.floor_per_sec.div_ceil(cores))
    }

    /// Counts one original request (not a retry): deposits `ratio`.
    pub fn on_request(&mut self, now: Instant) {
        self.advance(now);
        self.credit_micros = self.credit_micros.saturating_add(self.ratio_micros);
    }

    /// Spends one retry if the budget allows it.
    pub fn try_retry(&mut self, now: Instant) -> bool {
        self.advance(now);
        if self.credit_micros >= MICROS_PER_RETRY {
            self.credit_micros -= MICROS_PER_RETRY;
            return true;
        }
        if self.floor_micros >= MICROS_PER_RETRY {
            self.floor_micros -= MICROS_PER_RETRY;
            return true;
        }
        false
    }

    /// Retries the budget would grant now without spending any, rounded down (for
    /// `/nodes` and metrics).
    pub fn available(&self) -> u64 {
        (self.credit_micros + self.floor_micros) / MICROS_PER_RETRY
    }

    /// Decays the ratio credit and refills the floor bucket up to `now`. Time never
    /// runs backwards here: an earlier `now` is treated as no time passing.
    fn advance(&mut self, now: Instant) {
        let Some(last) = self.last else {
            self.last = Some(now);
            return;
        };
        if now <= last {
            return;
        }
        let elapsed = now - last;
        self.last = Some(now);
        let keep = (-elapsed.as_secs_f64() / CREDIT_TIME_CONSTANT.as_secs_f64()).exp();
        // `keep` is in (0, 1], so this only ever shrinks the credit.
        self.credit_micros = (self.credit_micros as f64 * keep).floor() as u64;
        let cap = u64::from(self.floor_per_sec) * MICROS_PER_RETRY;
        let refill = elapsed
            .as_micros()
            .saturating_mul(u128::from(self.floor_per_sec));
        let refill = u64::try_from(refill).unwrap_or(u64::MAX);
        self.floor_micros = self.floor_micros.saturating_add(refill).min(cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[allow(clippy::disallowed_methods)] // tests need one real base instant
    fn t0() -> Instant {
        Instant::now()
    }

    const ALL_FAILURES: [Failure; 6] = [
        Failure::Connect,
        Failure::ResetBeforeResponse,
        Failure::TimeoutBeforeResponse,
        Failure::BadResponse,
        Failure::Throttled,
        Failure::ServerError,
    ];

    #[test]
    fn get_and_head_always_until_attempts_run_out() {
        for method in ["GET", "HEAD"] {
            for failure in ALL_FAILURES {
                assert!(may_retry(method, BodyState::Empty, failure, 1, 3));
                assert!(may_retry(method, BodyState::Empty, failure, 2, 3));
                assert!(!may_retry(method, BodyState::Empty, failure, 3, 3));
            }
        }
        assert!(
            !may_retry("GET", BodyState::Empty, Failure::Connect, 1, 1),
            "1 = no retries"
        );
    }

    #[test]
    fn put_with_replayable_body() {
        for body in [BodyState::Empty, BodyState::Buffered, BodyState::NotYetSent] {
            for failure in ALL_FAILURES {
                assert!(
                    may_retry("PUT", body, failure, 1, 3),
                    "{body:?} {failure:?}"
                );
            }
        }
    }

    #[test]
    fn streamed_body_is_never_replayed() {
        for method in ["PUT", "POST", "GET"] {
            for failure in ALL_FAILURES {
                assert!(!may_retry(method, BodyState::Streaming, failure, 1, 3));
            }
        }
    }

    #[test]
    fn post_only_when_nothing_reached_a_node() {
        for body in [BodyState::Empty, BodyState::Buffered, BodyState::NotYetSent] {
            assert!(may_retry("POST", body, Failure::Connect, 1, 3));
            for failure in &ALL_FAILURES[1..] {
                assert!(
                    !may_retry("POST", body, *failure, 1, 3),
                    "{body:?} {failure:?}"
                );
            }
        }
    }

    #[test]
    fn unknown_and_lowercase_methods_are_not_idempotent() {
        for method in ["PATCH", "get", "FOO", ""] {
            assert!(!may_retry(
                method,
                BodyState::Empty,
                Failure::ServerError,
                1,
                3
            ));
            assert!(may_retry(method, BodyState::Empty, Failure::Connect, 1, 3));
        }
        assert!(may_retry(
            "DELETE",
            BodyState::Empty,
            Failure::TimeoutBeforeResponse,
            1,
            3
        ));
    }

    #[test]
    fn budget_ratio() {
        let now = t0();
        let mut b = RetryBudget::new(0.2, 0);
        assert!(!b.try_retry(now));
        for _ in 0..4 {
            b.on_request(now);
        }
        assert!(!b.try_retry(now), "0.8 of a retry");
        b.on_request(now);
        assert!(b.try_retry(now));
        assert!(!b.try_retry(now));
        for _ in 0..100 {
            b.on_request(now);
        }
        let granted = (0..100).filter(|_| b.try_retry(now)).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn budget_floor_refills_per_second() {
        let now = t0();
        let mut b = RetryBudget::new(0.0, 10);
        let granted = (0..50).filter(|_| b.try_retry(now)).count();
        assert_eq!(granted, 10, "one second's worth to start");
        assert!(!b.try_retry(now + Duration::from_millis(50)));
        assert!(b.try_retry(now + Duration::from_millis(150)));
        let later = now + Duration::from_secs(60);
        let granted = (0..50).filter(|_| b.try_retry(later)).count();
        assert_eq!(granted, 10, "the floor bucket holds one second");
    }

    #[test]
    fn budget_credit_decays() {
        let now = t0();
        let mut b = RetryBudget::new(0.5, 0);
        for _ in 0..100 {
            b.on_request(now);
        }
        assert_eq!(b.available(), 50);
        // After a minute of quiet (6 time constants) almost nothing is left.
        let later = now + Duration::from_secs(60);
        assert!(!b.try_retry(later) || b.available() == 0);
        assert_eq!(b.available(), 0);
    }

    #[test]
    fn budget_clamps_ratio_and_survives_backwards_time() {
        let now = t0() + Duration::from_secs(100);
        let mut b = RetryBudget::new(f64::NAN, 0);
        b.on_request(now);
        assert!(!b.try_retry(now));
        let mut b = RetryBudget::new(7.0, 0);
        b.on_request(now);
        assert!(b.try_retry(now - Duration::from_secs(50)));
        assert!(!b.try_retry(now - Duration::from_secs(50)));
    }

    #[test]
    fn for_core_divides_the_floor() {
        let u = crate::config::Upstream::default();
        let b = RetryBudget::for_core(&u, 4);
        assert_eq!(b.floor_per_sec, 3);
        assert_eq!(b.ratio_micros, 200_000);
        assert_eq!(RetryBudget::for_core(&u, 0).floor_per_sec, 10);
    }

    proptest! {
        /// Retries never exceed ratio × requests + floor × (T + 1 s).
        #[test]
        fn budget_bound(
            ratio_pct in 0u32..=100,
            floor in 0u32..50,
            events in proptest::collection::vec((0u8..4, 0u64..500), 1..2000),
        ) {
            let ratio = f64::from(ratio_pct) / 100.0;
            let start = t0();
            let mut b = RetryBudget::new(ratio, floor);
            let (mut ms, mut requests, mut retries) = (0u64, 0u64, 0u64);
            for (kind, step) in events {
                ms += step;
                let now = start + Duration::from_millis(ms);
                if kind == 0 {
                    b.on_request(now);
                    requests += 1;
                } else if b.try_retry(now) {
                    retries += 1;
                }
                let secs = ms as f64 / 1000.0;
                let bound = ratio * requests as f64 + f64::from(floor) * (secs + 1.0);
                prop_assert!(retries as f64 <= bound + 1e-9, "{retries} > {bound}");
            }
        }
    }
}
