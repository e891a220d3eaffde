//! Throttling as backpressure: an AIMD concurrency limit (docs/design.md,
//! "Failure is a normal state").
//!
//! When storage says "slow down" (`503 SlowDown`, `429`), weir lowers how many requests
//! it keeps in flight there — multiplicatively, like TCP on loss — and grows it back by
//! about one per window of successes. Storage is never hammered harder because it asked
//! for less. Throttling is usually cluster- or prefix-wide, so the appliance keeps one
//! limiter per node *and* one per pool + bucket, and a request needs room in both:
//!
//! 1. bucket: `bucket_inflight < bucket.limit()` (else wait with [`backoff`], or
//!    answer S3 `SlowDown` when the wait would be too long);
//! 2. node: the balancer only picks nodes with `inflight < node.limit()`.
//!
//! A throttled answer calls [`Aimd::on_throttle`] on both, a success [`Aimd::on_success`]
//! on both. Pure: time comes in as `now`, randomness as `rand`.

use std::time::{Duration, Instant};

use crate::config::Upstream;

/// Factor applied to the limit on a throttle.
const DECREASE_FACTOR: f64 = 0.5;
/// After a decrease, further throttles within this time do not decrease again: they were
/// answers to requests already in flight under the old limit, not news about the new one
/// (TCP's "one decrease per round trip").
const DECREASE_HOLDOFF_DEFAULT: Duration = Duration::from_millis(100);
/// Doublings beyond which the backoff cap cannot grow (2^20 × 1ms is already 17 minutes).
const BACKOFF_DOUBLINGS_MAX: u32 = 20;
/// Smoothing of the throttled-answer ratio: about the last 64 answers.
const THROTTLE_RATIO_EWMA: f64 = 1.0 / 64.0;
/// A pool+bucket limit decreases only when at least this share of its recent answers
/// were throttled: widespread (cluster- or prefix-wide) throttling, not one node's local
/// pushback, which that node's own limit absorbs. Real prefix throttling (S3 answering
/// 10%+ SlowDown) passes this within some 20 answers.
pub const BUCKET_DECREASE_RATIO_MIN: f64 = 0.05;

/// An additive-increase / multiplicative-decrease concurrency limit with jittered
/// backoff.
#[derive(Debug, Clone, PartialEq)]
pub struct Aimd {
    /// Fractional so that `+1/limit` per success accumulates.
    limit: f64,
    min: u32,
    max: u32,
    decrease_holdoff: Duration,
    last_decrease: Option<Instant>,
    /// EWMA of "this answer was throttled", 0..=1.
    throttle_ratio: f64,
    /// Throttles below this recent ratio do not decrease the limit (0 = every one may).
    decrease_ratio_min: f64,
}

impl Aimd {
    /// A limiter starting at `limit_initial`, kept within `min..=max`. `min` is raised to
    /// 1 (a limit of 0 would starve the node for good) and `max` to `min`.
    pub fn new(limit_initial: u32, min: u32, max: u32) -> Self {
        let min = min.max(1);
        let max = max.max(min);
        Aimd {
            limit: f64::from(limit_initial.clamp(min, max)),
            min,
            max,
            decrease_holdoff: DECREASE_HOLDOFF_DEFAULT,
            last_decrease: None,
            throttle_ratio: 0.0,
            decrease_ratio_min: 0.0,
        }
    }

    /// The per-node limiter from `[upstream]`: starts at the maximum, because a node
    /// that never pushed back should not be limited by weir.
    pub fn for_node(upstream: &Upstream) -> Self {
        Aimd::new(
            upstream.node_concurrency_max,
            upstream.node_concurrency_min,
            upstream.node_concurrency_max,
        )
    }

    /// The per pool + bucket limiter from `[upstream]`, for a pool of `nodes` nodes: at
    /// most every node full, at least one node's minimum; it decreases only on
    /// widespread throttling (see [`Aimd::with_decrease_ratio_min`]).
    pub fn for_bucket(upstream: &Upstream, nodes: usize) -> Self {
        let nodes = u32::try_from(nodes.max(1)).unwrap_or(u32::MAX);
        let max = upstream.node_concurrency_max.saturating_mul(nodes);
        Aimd::new(max, upstream.node_concurrency_min, max)
            .with_decrease_ratio_min(BUCKET_DECREASE_RATIO_MIN)
    }

    /// Makes throttles decrease the limit only while at least `ratio` of the recent
    /// answers (about the last 64) were throttled. For limiters shared by many nodes,
    /// so that one node's local throttling does not shrink the whole pool's share.
    pub fn with_decrease_ratio_min(mut self, ratio: f64) -> Self {
        self.decrease_ratio_min = if ratio.is_finite() {
            ratio.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// Sets how long after a decrease further throttles are ignored.
    pub fn with_decrease_holdoff(mut self, holdoff: Duration) -> Self {
        self.decrease_holdoff = holdoff;
        self
    }

    /// A request completed without throttling: grow by `1/limit`, i.e. about one per
    /// full window of successes.
    pub fn on_success(&mut self) {
        self.throttle_ratio -= self.throttle_ratio * THROTTLE_RATIO_EWMA;
        self.limit = (self.limit + 1.0 / self.limit.max(1.0)).min(f64::from(self.max));
    }

    /// A throttled answer: halve the limit unless a decrease happened within the holdoff
    /// (or, for shared limiters, throttling is not widespread). Returns whether the limit
    /// decreased.
    pub fn on_throttle(&mut self, now: Instant) -> bool {
        self.throttle_ratio += (1.0 - self.throttle_ratio) * THROTTLE_RATIO_EWMA;
        if self.throttle_ratio < self.decrease_ratio_min {
            return false;
        }
        let recent = self
            .last_decrease
            .is_some_and(|at| now.saturating_duration_since(at) < self.decrease_holdoff);
        if recent {
            return false;
        }
        self.last_decrease = Some(now);
        self.limit = (self.limit * DECREASE_FACTOR).max(f64::from(self.min));
        true
    }

    /// Requests that may be in flight now; always within `min..=max`.
    pub fn limit(&self) -> u32 {
        // `limit` is kept within min..=max, both u32, so the cast is exact after floor.
        (self.limit.floor() as u32).clamp(self.min, self.max)
    }

    /// The configured `(min, max)`.
    pub fn bounds(&self) -> (u32, u32) {
        (self.min, self.max)
    }
}

/// How long to wait before attempt number `attempt + 1` after a throttle (`attempt`
/// counts the attempts made so far, from 0 for the first retry's wait): a cap doubling
/// from the `base` step up to the `max` step, with "equal jitter" — uniform in
/// `[cap/2, cap]` from `rand` — so concurrent retries spread out yet always back off.
/// A `Retry-After` longer than that wins, even beyond the max step: the caller that
/// will not wait so long should answer the client `SlowDown` with that `Retry-After`.
pub fn backoff(
    base: Duration,
    max: Duration,
    attempt: u32,
    retry_after: Option<Duration>,
    rand: u64,
) -> Duration {
    let doublings = attempt.min(BACKOFF_DOUBLINGS_MAX);
    let cap = base.saturating_mul(1u32 << doublings).min(max.max(base));
    // 53 random bits make a uniform fraction in [0, 1).
    let fraction = (rand >> 11) as f64 / (1u64 << 53) as f64;
    // Computed in f64 seconds; a cap too large for that falls back to the cap itself.
    let jittered = Duration::try_from_secs_f64(cap.as_secs_f64() * (0.5 + 0.5 * fraction))
        .map_or(cap, |d| d.min(cap));
    match retry_after {
        Some(asked) if asked > jittered => asked,
        _ => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::SplitMix64;
    use proptest::prelude::*;

    /// The backoff steps the tests use (`[upstream]`'s defaults).
    const B: Duration = Duration::from_millis(50);
    const M: Duration = Duration::from_secs(2);

    #[allow(clippy::disallowed_methods)] // tests need one real base instant
    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn new_clamps_bounds() {
        let a = Aimd::new(500, 0, 100);
        assert_eq!(a.bounds(), (1, 100));
        assert_eq!(a.limit(), 100);
        let a = Aimd::new(0, 4, 2);
        assert_eq!(a.bounds(), (4, 4));
        assert_eq!(a.limit(), 4);
    }

    #[test]
    fn throttle_halves_then_holds_off() {
        let now = t0();
        let mut a = Aimd::new(256, 4, 256);
        assert!(a.on_throttle(now));
        assert_eq!(a.limit(), 128);
        // A burst of throttles from requests already in flight: one decrease only.
        for ms in [0, 10, 50, 99] {
            assert!(!a.on_throttle(now + Duration::from_millis(ms)));
        }
        assert_eq!(a.limit(), 128);
        assert!(a.on_throttle(now + Duration::from_millis(100)));
        assert_eq!(a.limit(), 64);
    }

    #[test]
    fn never_below_min() {
        let now = t0();
        let mut a = Aimd::new(256, 4, 256);
        for i in 0..50 {
            a.on_throttle(now + Duration::from_secs(i));
        }
        assert_eq!(a.limit(), 4);
    }

    #[test]
    fn additive_increase_about_one_per_window() {
        let now = t0();
        let mut a = Aimd::new(256, 4, 256);
        a.on_throttle(now);
        a.on_throttle(now + Duration::from_secs(1));
        assert_eq!(a.limit(), 64);
        // +1/limit each: 64 successes leave it just short of 65, a 66th gets there.
        for _ in 0..64 {
            a.on_success();
        }
        assert_eq!(a.limit(), 64);
        a.on_success();
        a.on_success();
        assert_eq!(a.limit(), 65);
        for _ in 0..100_000 {
            a.on_success();
        }
        assert_eq!(a.limit(), 256, "capped at max");
    }

    #[test]
    fn holdoff_is_configurable() {
        let now = t0();
        let mut a = Aimd::new(100, 1, 100).with_decrease_holdoff(Duration::ZERO);
        assert!(a.on_throttle(now));
        assert!(a.on_throttle(now));
        assert_eq!(a.limit(), 25);
    }

    #[test]
    fn time_going_backwards_does_not_decrease_again() {
        let now = t0() + Duration::from_secs(10);
        let mut a = Aimd::new(100, 1, 100);
        assert!(a.on_throttle(now));
        assert!(!a.on_throttle(now - Duration::from_secs(5)));
    }

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let base = Duration::from_millis(50);
        for attempt in 0..10 {
            let cap = (base * (1 << attempt)).min(Duration::from_secs(2));
            for r in [0, u64::MAX, 1 << 63, 12345] {
                let d = backoff(B, M, attempt, None, r);
                assert!(
                    d >= cap / 2 && d <= cap,
                    "attempt {attempt}: {d:?} vs cap {cap:?}"
                );
            }
        }
        assert_eq!(backoff(B, M, 0, None, 0), Duration::from_millis(25));
        assert_eq!(backoff(B, M, u32::MAX, None, 0), Duration::from_secs(1));
    }

    #[test]
    fn backoff_honours_retry_after() {
        assert_eq!(
            backoff(B, M, 0, Some(Duration::from_secs(5)), 7),
            Duration::from_secs(5),
            "Retry-After above the max step still wins"
        );
        let short = backoff(B, M, 3, Some(Duration::from_millis(1)), 7);
        assert!(short >= Duration::from_millis(200), "{short:?}");
    }

    #[test]
    fn backoff_is_jittered() {
        let mut rng = SplitMix64::new(1);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..100 {
            seen.insert(backoff(B, M, 4, None, rng.next_u64()));
        }
        assert!(seen.len() > 90, "{} distinct delays", seen.len());
    }

    #[test]
    fn shared_limit_ignores_isolated_throttles() {
        let now = t0();
        let mut a = Aimd::new(1000, 4, 1000).with_decrease_ratio_min(0.05);
        // One throttle per hundred answers (one node of many pushing back): no decrease.
        for i in 0..10_000u64 {
            if i % 100 == 0 {
                assert!(!a.on_throttle(now + Duration::from_millis(i)));
            } else {
                a.on_success();
            }
        }
        assert_eq!(a.limit(), 1000);
        // Widespread throttling (one answer in five): the limit comes down.
        let mut decreased = 0;
        for i in 0..500u64 {
            let at = now + Duration::from_millis(20_000 + i * 10);
            if i % 5 == 0 {
                decreased += u32::from(a.on_throttle(at));
            } else {
                a.on_success();
            }
        }
        assert!(
            decreased >= 3 && a.limit() < 200,
            "{decreased} decreases, limit {}",
            a.limit()
        );
    }

    #[test]
    fn from_upstream() {
        let u = Upstream::default();
        let node = Aimd::for_node(&u);
        assert_eq!(node.bounds(), (4, 256));
        assert_eq!(node.limit(), 256);
        let bucket = Aimd::for_bucket(&u, 3);
        assert_eq!(bucket.bounds(), (4, 768));
        assert_eq!(Aimd::for_bucket(&u, 0).bounds(), (4, 256));
    }

    proptest! {
        #[test]
        fn limit_always_within_bounds(
            min in 0u32..50,
            max in 0u32..500,
            initial in 0u32..1000,
            events in proptest::collection::vec((any::<bool>(), 0u64..300), 0..400),
        ) {
            let start = t0();
            let mut a = Aimd::new(initial, min, max);
            let (lo, hi) = a.bounds();
            prop_assert!(lo >= 1 && hi >= lo);
            let mut ms = 0;
            for (throttle, step) in events {
                ms += step;
                if throttle {
                    a.on_throttle(start + Duration::from_millis(ms));
                } else {
                    a.on_success();
                }
                prop_assert!((lo..=hi).contains(&a.limit()), "{} not in {lo}..={hi}", a.limit());
            }
        }

        #[test]
        fn backoff_bounded(attempt in any::<u32>(), rand in any::<u64>(), after in proptest::option::of(0u64..10_000)) {
                let retry_after = after.map(Duration::from_millis);
            let d = backoff(B, M, attempt, retry_after, rand);
            let ceiling = Duration::from_secs(2).max(retry_after.unwrap_or_default());
            prop_assert!(d <= ceiling);
            prop_assert!(d >= retry_after.unwrap_or_default());
            prop_assert!(d >= Duration::from_millis(25));
        }
    }
}
