//! A token bucket on injected time: `rate_per_sec` tokens accrue continuously up to
//! `burst`, and a request or a body quantum spends them.
//!
//! Tokens may go negative: [`TokenBucket::reserve`] and [`TokenBucket::charge`] spend
//! ahead of time, which is how a waiting request keeps its place (its tokens are reserved
//! when it is told to wait, so later arrivals cannot overtake it) and how a body quantum
//! larger than what is left is granted whole. Whatever is spent ahead is repaid before
//! anything else is granted, so the long-run rate is exact.

use std::time::{Duration, Instant};

/// The longest wait a bucket ever reports: a zero rate would otherwise mean "forever",
/// which no timer wants.
pub(crate) const WAIT_MAX: Duration = Duration::from_secs(24 * 3600);

/// A token bucket. All arithmetic is `f64`: byte rates reach 2^40 per second, and
/// fractional tokens keep low request rates exact.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    rate_per_sec: f64,
    /// Capacity in tokens.
    burst: f64,
    /// Tokens as of `last`; negative when spent ahead.
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. Negative or non-finite rates and bursts count as 0.
    pub fn new(rate_per_sec: f64, burst: f64, now: Instant) -> Self {
        let burst = clean(burst);
        TokenBucket {
            rate_per_sec: clean(rate_per_sec),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Tokens added per second.
    pub fn rate_per_sec(&self) -> f64 {
        self.rate_per_sec
    }

    /// Capacity in tokens.
    pub fn burst(&self) -> f64 {
        self.burst
    }

    /// The tokens the bucket holds at `now` (negative = spent ahead). A `now` earlier
    /// than the last update counts as no time passing.
    pub fn tokens(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        (self.tokens + self.rate_per_sec * elapsed).min(self.burst.max(self.tokens))
    }

    /// How long until `cost` tokens can be taken by [`TokenBucket::take`]: zero if they
    /// can now. A cost above the burst needs a full bucket (see `take`).
    pub fn wait(&self, cost: f64, now: Instant) -> Duration {
        let needed = clean(cost).min(self.burst);
        let tokens = self.tokens(now);
        if tokens + slack(needed) >= needed {
            return Duration::ZERO;
        }
        wait_secs((needed - tokens) / self.rate_per_sec)
    }

    /// Takes `cost` tokens if the bucket holds them, else says how long to wait. A cost
    /// larger than the burst is granted when the bucket is full (leaving it negative), so
    /// a big cost is slow but never impossible.
    pub fn take(&mut self, cost: f64, now: Instant) -> Result<(), Duration> {
        let wait = self.wait(cost, now);
        if wait.is_zero() {
            self.charge(cost, now);
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// Spends `cost` tokens now if they will be there within `wait_max`, and says when:
    /// `Ok(wait)` means the tokens are reserved and the caller may proceed after `wait`
    /// (zero = now); `Err(wait)` means nothing was spent and `wait` is how long the
    /// tokens would take.
    pub fn reserve(
        &mut self,
        cost: f64,
        now: Instant,
        wait_max: Duration,
    ) -> Result<Duration, Duration> {
        let wait = self.reserve_wait(cost, now);
        if wait > wait_max {
            return Err(wait);
        }
        self.charge(cost, now);
        Ok(wait)
    }

    /// How long a reservation of `cost` would wait: until the bucket, after paying `cost`,
    /// is back at zero.
    pub fn reserve_wait(&self, cost: f64, now: Instant) -> Duration {
        let cost = clean(cost);
        let after = self.tokens(now) - cost;
        if after + slack(cost) >= 0.0 {
            Duration::ZERO
        } else {
            wait_secs(-after / self.rate_per_sec)
        }
    }

    /// Spends `cost` tokens unconditionally (the bucket may go negative).
    pub fn charge(&mut self, cost: f64, now: Instant) {
        self.refill(now);
        self.tokens -= clean(cost);
    }

    /// Gives back tokens that were spent but not used (a reservation abandoned, a body
    /// quantum that moved fewer bytes); never above the burst.
    pub fn refund(&mut self, tokens: f64, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens + clean(tokens)).min(self.burst.max(self.tokens));
    }

    /// Changes the rate and capacity from `now` on: time until `now` accrues at the old
    /// rate. Saved-up tokens above the new capacity are dropped; a negative balance is
    /// kept (it is owed whatever the rate).
    pub fn set_rate(&mut self, rate_per_sec: f64, burst: f64, now: Instant) {
        self.refill(now);
        self.rate_per_sec = clean(rate_per_sec);
        self.burst = clean(burst);
        self.tokens = self.tokens.min(self.burst);
    }

    /// Accrues tokens for the time since the last update.
    fn refill(&mut self, now: Instant) {
        self.tokens = self.tokens(now);
        if now > self.last {
            self.last = now;
        }
    }
}

/// Rounding slack when comparing a balance with a cost: a caller who waited the exact
/// wait must not be refused over the last bits of a float.
fn slack(cost: f64) -> f64 {
    1e-9 * cost.max(1.0)
}

/// Non-negative, finite, or 0.
fn clean(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 {
        x
    } else {
        0.0
    }
}

/// Seconds → a wait, rounded *up* to the nanosecond so that a caller coming back after
/// exactly that wait finds the tokens there; capped at [`WAIT_MAX`] (also for a zero
/// rate, where the division gives infinity or NaN).
pub(crate) fn wait_secs(secs: f64) -> Duration {
    if secs.is_nan() || secs >= WAIT_MAX.as_secs_f64() {
        return WAIT_MAX;
    }
    if secs <= 0.0 {
        return Duration::ZERO;
    }
    let nanos = (secs * 1e9).ceil();
    Duration::from_nanos(nanos as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // tests need one real base instant
    fn t0() -> Instant {
        Instant::now()
    }
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn starts_full_and_refills_by_elapsed_time() {
        let t0 = t0();
        let mut b = TokenBucket::new(10.0, 5.0, t0);
        for _ in 0..5 {
            assert_eq!(b.take(1.0, t0), Ok(()));
        }
        assert_eq!(b.take(1.0, t0), Err(ms(100)));
        assert!(b.take(1.0, t0 + ms(99)).is_err());
        assert_eq!(b.take(1.0, t0 + ms(100)), Ok(()));
        // Refill stops at the burst.
        assert_eq!(b.tokens(t0 + ms(100_000)), 5.0);
    }

    #[test]
    fn a_cost_above_the_burst_needs_a_full_bucket() {
        let t0 = t0();
        let mut b = TokenBucket::new(100.0, 10.0, t0);
        assert_eq!(b.take(25.0, t0), Ok(()));
        assert_eq!(b.tokens(t0), -15.0);
        // Back to full (10 tokens) after 250ms.
        assert_eq!(b.wait(25.0, t0), ms(250));
        assert_eq!(b.take(25.0, t0 + ms(250)), Ok(()));
    }

    #[test]
    fn reservations_queue_in_order() {
        let t0 = t0();
        let mut b = TokenBucket::new(10.0, 1.0, t0);
        let waits: Vec<_> = (0..4).map(|_| b.reserve(1.0, t0, ms(250))).collect();
        assert_eq!(waits, [Ok(ms(0)), Ok(ms(100)), Ok(ms(200)), Err(ms(300))]);
        // The refused one spent nothing.
        assert!((b.tokens(t0) + 2.0).abs() < 1e-9);
        b.refund(1.0, t0);
        assert!((b.tokens(t0) + 1.0).abs() < 1e-9);
    }

    #[test]
    fn rate_changes_apply_from_now() {
        let t0 = t0();
        let mut b = TokenBucket::new(10.0, 10.0, t0);
        b.charge(20.0, t0);
        b.set_rate(100.0, 1.0, t0 + ms(500)); // -10 + 5 = -5 at the old rate
        assert!((b.tokens(t0 + ms(500)) + 5.0).abs() < 1e-9);
        assert!((b.tokens(t0 + ms(550))).abs() < 1e-9);
        assert_eq!(b.tokens(t0 + ms(1000)), 1.0, "capped at the new burst");
    }

    #[test]
    fn zero_or_bad_rates_never_panic() {
        let t0 = t0();
        let mut b = TokenBucket::new(f64::NAN, -1.0, t0);
        assert_eq!(
            b.take(1.0, t0),
            Ok(()),
            "a cost above a zero burst needs a full bucket"
        );
        assert_eq!(b.take(1.0, t0), Err(WAIT_MAX));
        assert_eq!(b.reserve(1.0, t0, ms(1)), Err(WAIT_MAX));
        assert_eq!(wait_secs(f64::INFINITY), WAIT_MAX);
        assert_eq!(wait_secs(-1.0), Duration::ZERO);
    }

    proptest! {
        /// Over any run of takes, what was taken never exceeds burst + rate × elapsed.
        #[test]
        fn never_exceeds_rate_plus_burst(
            rate in 1.0f64..10_000.0,
            burst in 1.0f64..1_000.0,
            steps in proptest::collection::vec((0u64..50, 1u32..5), 1..300),
        ) {
            let t0 = t0();
            let mut b = TokenBucket::new(rate, burst, t0);
            let mut now = t0;
            let mut taken = 0.0;
            for (dt_ms, cost) in steps {
                now += ms(dt_ms);
                let cost = f64::from(cost).min(burst);
                if b.take(cost, now).is_ok() {
                    taken += cost;
                }
                let allowed = burst + rate * (now - t0).as_secs_f64();
                prop_assert!(taken <= allowed + 1e-6, "{taken} > {allowed}");
            }
        }

        /// Coming back after the wait always succeeds.
        #[test]
        fn the_wait_is_enough(rate in 0.5f64..1e9, burst in 0.5f64..1e9, cost in 0.0f64..2e9, spent in 0.0f64..2e9) {
            let t0 = t0();
            let mut b = TokenBucket::new(rate, burst, t0);
            b.charge(spent, t0);
            let wait = b.wait(cost, t0);
            prop_assume!(wait < WAIT_MAX);
            prop_assert_eq!(b.take(cost, t0 + wait), Ok(()));
        }
    }
}
