//! One core's share of a global rate, and the rebalance that keeps the shares where the
//! demand is (DESIGN.md §2).
//!
//! A limit of R/s is split across N cores: each core holds a [`CoreShare`] — a token
//! bucket at its share of R — and admits on its own, with no lock and no shared atomic.
//! Every `rebalance_interval` (a few ms) each core sends [`CoreShare::report`] to one
//! coordinating core, which calls [`rebalance`] and sends each core its [`Grant`]. The
//! shares always add up to R, so the global rate is R whatever `SO_REUSEPORT` does.
//!
//! How the rate is split: in proportion to each core's *need* — its recent demand (tokens
//! asked per second, granted or not) plus what it has promised ahead (a negative balance,
//! to be repaid within [`DEBT_HORIZON`]) — over a small floor per core. Under overload
//! every core with demand is saturated, so proportional shares spend all of R; a core
//! with no demand keeps only the floor, so all of R (less the floors, ≤ 2%) follows the
//! demand to one core. Promises count because a request told to wait until `t` goes at
//! `t` whatever the next grant says: a core that gave them must keep the rate to honour
//! them, or the promised and the newly admitted would add up to more than R.

use std::time::{Duration, Instant};

use super::bucket::TokenBucket;

/// Share of the global rate split evenly as a floor, so an idle core can admit a first
/// request without waiting for a rebalance. It is also the most a skewed placement can
/// lose: the floors of idle cores go unused.
const FLOOR_FRACTION: f64 = 0.02;
/// Time over which a core's spent-ahead balance should be repaid: its need includes
/// `debt / DEBT_HORIZON`.
pub(crate) const DEBT_HORIZON: Duration = Duration::from_millis(500);
/// Smoothing time of the demand estimate: short, so that when demand moves to another
/// core the rate follows within a few rebalances, long enough to average a few requests.
const DEMAND_SMOOTHING: Duration = Duration::from_millis(10);
/// Total need below this fraction of the global rate counts as idle: even split.
const IDLE_FRACTION: f64 = 1e-4;

/// What one core tells the coordinator about one limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// Tokens per second this core was recently asked for, granted or refused (smoothed).
    pub demand: f64,
    /// Tokens the core's bucket holds now; negative = promised ahead to waiting requests
    /// (the core needs rate to honour those).
    pub unused: f64,
}

impl Usage {
    /// What a core that has no entry for a limit is assumed to report: nothing asked,
    /// nothing owed.
    pub const IDLE: Usage = Usage {
        demand: 0.0,
        unused: 0.0,
    };
}

/// The coordinator's answer to one core for one limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grant {
    /// The core's new share of the global rate.
    pub rate_per_sec: f64,
}

/// Splits `global_rate` among cores by need (see the module docs). Returns one grant per
/// usage, in order; the grants add up to `global_rate` (to rounding). Pure: the appliance
/// calls it on one coordinating core every `rebalance_interval` with every core's report.
pub fn rebalance(global_rate: f64, usages: &[Usage]) -> Vec<Grant> {
    let n = usages.len();
    if n == 0 {
        return Vec::new();
    }
    let global = non_negative(global_rate);
    let cores = n as f64;
    let needs: Vec<f64> = usages.iter().map(need).collect();
    let total: f64 = needs.iter().sum();
    if total <= global * IDLE_FRACTION || total <= 0.0 {
        return vec![
            Grant {
                rate_per_sec: global / cores
            };
            n
        ];
    }
    let floor = global * FLOOR_FRACTION / cores;
    let rest = global - floor * cores;
    needs
        .iter()
        .map(|need| Grant {
            rate_per_sec: floor + rest * need / total,
        })
        .collect()
}

/// A core's need in tokens per second: demand plus the repayment of what it owes.
fn need(usage: &Usage) -> f64 {
    non_negative(usage.demand) + non_negative(-usage.unused) / DEBT_HORIZON.as_secs_f64()
}

/// Non-negative and finite, or 0.
fn non_negative(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 {
        x
    } else {
        0.0
    }
}

// === impl CoreShare ===

/// One core's share of a global limit: a token bucket at `global / cores` to start with,
/// moved by [`CoreShare::apply`], plus the demand accounting for [`CoreShare::report`].
#[derive(Debug, Clone, PartialEq)]
pub struct CoreShare {
    bucket: TokenBucket,
    global_rate_per_sec: f64,
    /// Capacity as time at the share's rate, so the burst follows the share and the
    /// cores' capacities add up to the global burst.
    burst: Duration,
    /// Least capacity whatever the share (one request: see `with_burst_tokens_min`).
    burst_tokens_min: f64,
    cores: usize,
    /// Tokens asked since `window_start`.
    asked: f64,
    /// Demand estimate as of `window_start`, tokens per second.
    demand_per_sec: f64,
    window_start: Instant,
}

impl CoreShare {
    /// A full bucket holding this core's even share: `global_rate_per_sec / cores`
    /// (`cores` of 0 counts as 1).
    pub fn new(global_rate_per_sec: f64, burst: Duration, cores: usize, now: Instant) -> Self {
        let cores = cores.max(1);
        let global = non_negative(global_rate_per_sec);
        let rate = global / cores as f64;
        CoreShare {
            bucket: TokenBucket::new(rate, rate * burst.as_secs_f64(), now),
            global_rate_per_sec: global,
            burst,
            burst_tokens_min: 0.0,
            cores,
            asked: 0.0,
            demand_per_sec: 0.0,
            window_start: now,
        }
    }

    /// Keeps the capacity at `tokens` or more whatever the share, so that a low rate
    /// split across many cores still lets a core hold one whole request (the cores'
    /// capacities then add up to at most `cores × tokens` more than the global burst).
    /// The bucket starts full at the new capacity.
    pub fn with_burst_tokens_min(mut self, tokens: f64, now: Instant) -> Self {
        self.burst_tokens_min = non_negative(tokens);
        let rate = self.bucket.rate_per_sec();
        self.bucket = TokenBucket::new(rate, self.capacity(rate), now);
        self
    }

    /// The bucket capacity for a share of `rate`.
    fn capacity(&self, rate: f64) -> f64 {
        (rate * self.burst.as_secs_f64()).max(self.burst_tokens_min)
    }

    /// The limit across all cores.
    pub fn global_rate_per_sec(&self) -> f64 {
        self.global_rate_per_sec
    }

    /// This core's current share.
    pub fn rate_per_sec(&self) -> f64 {
        self.bucket.rate_per_sec()
    }

    /// The tokens this core holds at `now` (negative = promised ahead).
    pub fn tokens(&self, now: Instant) -> f64 {
        self.bucket.tokens(now)
    }

    /// Takes `cost` tokens if there (see [`TokenBucket::take`]); counts as demand either
    /// way.
    pub fn take(&mut self, cost: f64, now: Instant) -> Result<(), Duration> {
        self.asked += non_negative(cost);
        self.bucket.take(cost, now)
    }

    /// Reserves `cost` tokens if they come within `wait_max` (see
    /// [`TokenBucket::reserve`]); counts as demand either way.
    pub fn reserve(
        &mut self,
        cost: f64,
        now: Instant,
        wait_max: Duration,
    ) -> Result<Duration, Duration> {
        self.asked += non_negative(cost);
        self.bucket.reserve(cost, now, wait_max)
    }

    /// How long `cost` would wait for [`CoreShare::take`].
    pub fn wait(&self, cost: f64, now: Instant) -> Duration {
        self.bucket.wait(cost, now)
    }

    /// How long a reservation of `cost` would wait.
    pub fn reserve_wait(&self, cost: f64, now: Instant) -> Duration {
        self.bucket.reserve_wait(cost, now)
    }

    /// Spends `cost` unconditionally (counts as demand).
    pub fn charge(&mut self, cost: f64, now: Instant) {
        self.asked += non_negative(cost);
        self.bucket.charge(cost, now);
    }

    /// Counts `cost` as demand without spending: a request refused here still shows that
    /// this core needs more.
    pub fn note_refused(&mut self, cost: f64) {
        self.asked += non_negative(cost);
    }

    /// Gives back tokens spent but not used; they no longer count as demand either.
    pub fn refund(&mut self, tokens: f64, now: Instant) {
        let tokens = non_negative(tokens);
        self.asked = (self.asked - tokens).max(0.0);
        self.bucket.refund(tokens, now);
    }

    /// This core's usage for the coordinator at `now`. Read-only: the demand window
    /// closes at [`CoreShare::apply`].
    pub fn report(&self, now: Instant) -> Usage {
        Usage {
            demand: self.demand_at(now),
            unused: self.bucket.tokens(now),
        }
    }

    /// Takes the coordinator's grant at `now` and starts a new demand window.
    pub fn apply(&mut self, grant: Grant, now: Instant) {
        self.demand_per_sec = self.demand_at(now);
        self.asked = 0.0;
        if now > self.window_start {
            self.window_start = now;
        }
        let rate = non_negative(grant.rate_per_sec).min(self.global_rate_per_sec);
        self.bucket.set_rate(rate, self.capacity(rate), now);
    }

    /// Whether this share is indistinguishable from a fresh one: even share, a full
    /// bucket and no demand left. Such an entry needs no report and may be dropped.
    pub fn is_idle(&self, now: Instant) -> bool {
        let even = self.global_rate_per_sec / self.cores as f64;
        self.asked == 0.0
            && self.demand_at(now) <= self.global_rate_per_sec * IDLE_FRACTION
            && (self.rate_per_sec() - even).abs() <= even * 1e-9
            && self.bucket.tokens(now) >= self.bucket.burst()
    }

    /// The demand estimate including the open window: an exponentially weighted mean
    /// over time, so irregular report intervals weigh correctly.
    fn demand_at(&self, now: Instant) -> f64 {
        let window = now.saturating_duration_since(self.window_start);
        if window.is_zero() {
            return self.demand_per_sec;
        }
        let recent = self.asked / window.as_secs_f64();
        let alpha = 1.0 - (-window.as_secs_f64() / DEMAND_SMOOTHING.as_secs_f64()).exp();
        alpha * recent + (1.0 - alpha) * self.demand_per_sec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // tests need one real base instant
    fn t0() -> Instant {
        Instant::now()
    }
    use proptest::prelude::*;

    fn usage(demand: f64, unused: f64) -> Usage {
        Usage { demand, unused }
    }

    fn rates(grants: &[Grant]) -> Vec<f64> {
        grants.iter().map(|g| g.rate_per_sec).collect()
    }

    #[test]
    fn idle_cores_split_evenly() {
        let g = rebalance(1000.0, &[Usage::IDLE; 4]);
        assert_eq!(rates(&g), [250.0; 4]);
        assert!(rebalance(1000.0, &[]).is_empty());
    }

    #[test]
    fn all_demand_on_one_core_gets_all_but_the_floors() {
        let g = rates(&rebalance(
            1000.0,
            &[usage(5000.0, -10.0), Usage::IDLE, Usage::IDLE, Usage::IDLE],
        ));
        assert!(g[0] >= 1000.0 * (1.0 - FLOOR_FRACTION), "{g:?}");
        assert!((g.iter().sum::<f64>() - 1000.0).abs() < 1e-6);
        assert!(g[1] > 0.0, "an idle core keeps a floor");
    }

    #[test]
    fn debt_keeps_rate_where_promises_were_made() {
        // Core 0 promised 500 tokens ahead and lost its demand to core 1.
        let g = rates(&rebalance(
            1000.0,
            &[usage(0.0, -500.0), usage(5000.0, 0.0)],
        ));
        assert!(g[0] > 100.0, "{g:?}");
        assert!((g.iter().sum::<f64>() - 1000.0).abs() < 1e-6);
    }

    #[test]
    fn a_share_follows_demand_and_keeps_its_burst_proportional() {
        let t0 = t0();
        let mut s = CoreShare::new(1000.0, Duration::from_millis(100), 4, t0);
        assert_eq!(s.rate_per_sec(), 250.0);
        assert_eq!(s.tokens(t0), 25.0);
        assert!(s.is_idle(t0));
        for _ in 0..30 {
            let _ = s.take(1.0, t0);
        }
        let t1 = t0 + Duration::from_millis(5);
        let u = s.report(t1);
        assert!(u.demand > 1000.0, "{u:?}");
        s.apply(
            Grant {
                rate_per_sec: 900.0,
            },
            t1,
        );
        assert_eq!(s.rate_per_sec(), 900.0);
        assert!(!s.is_idle(t1));
        // A grant above the global rate is clamped.
        s.apply(
            Grant {
                rate_per_sec: 5000.0,
            },
            t1,
        );
        assert_eq!(s.rate_per_sec(), 1000.0);
    }

    #[test]
    fn demand_decays_when_asks_stop() {
        let t0 = t0();
        let mut s = CoreShare::new(100.0, Duration::from_millis(100), 2, t0);
        for _ in 0..10 {
            s.note_refused(1.0);
        }
        let t1 = t0 + Duration::from_millis(5);
        s.apply(Grant { rate_per_sec: 50.0 }, t1);
        let before = s.report(t1).demand;
        let later = s.report(t1 + Duration::from_millis(100)).demand;
        assert!(before > 0.0 && later < before * 0.01, "{before} {later}");
        assert!(s.is_idle(t1 + Duration::from_secs(1)));
    }

    proptest! {
        /// Grants add up to the global rate and never go below the floor.
        #[test]
        fn grants_conserve_the_global_rate(
            global in 1.0f64..1e10,
            usages in proptest::collection::vec((0.0f64..1e9, -1e9f64..1e9), 1..64),
        ) {
            let usages: Vec<Usage> = usages.into_iter().map(|(d, u)| usage(d, u)).collect();
            let g = rebalance(global, &usages);
            prop_assert_eq!(g.len(), usages.len());
            let sum: f64 = g.iter().map(|g| g.rate_per_sec).sum();
            prop_assert!((sum - global).abs() <= global * 1e-9, "{sum} vs {global}");
            let floor = global * FLOOR_FRACTION / usages.len() as f64;
            for grant in &g {
                prop_assert!(grant.rate_per_sec >= floor * (1.0 - 1e-9));
            }
        }

        /// Garbage in (NaN, infinities, negatives) never panics and never grants NaN.
        #[test]
        fn garbage_never_poisons_grants(
            global in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(-1.0), 0.0f64..1e6],
            d in prop_oneof![Just(f64::NAN), Just(f64::NEG_INFINITY), 0.0f64..1e6],
        ) {
            for g in rebalance(global, &[usage(d, d), Usage::IDLE]) {
                prop_assert!(g.rate_per_sec.is_finite() && g.rate_per_sec >= 0.0);
            }
        }
    }
}
