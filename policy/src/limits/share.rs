//! One core's share of a global rate, and the rebalance that keeps the shares where the
//! demand is (docs/design.md, "Thread-per-core, shared-nothing").
//!
//! A limit of R/s is split across N cores: each core holds a [`CoreShare`] — a token
//! bucket at its share of R — and admits on its own, with no lock and no shared atomic.
//! Every `rebalance_interval` (a few ms) each core sends [`CoreShare::report`] to one
//! coordinating core, which calls [`rebalance`] and sends each core its [`Grant`]. The
//! shares always add up to R, so the global rate is R whatever `SO_REUSEPORT` does.
//!
//! How the rate is split: in proportion to each core's recent *demand* (tokens asked per
//! second, granted or refused), over a small floor per core. Under overload every core
//! with demand is saturated, so proportional shares spend all of R; a core with no demand
//! keeps only the floor, so all of R (less the floors, ≤ 1%) follows the demand to one
//! core. Refused requests count as demand, so every request of a limited tenant has the
//! same chance whichever core it lands on.
//!
//! One exception: a core may have *promised* — told waiting requests to go at set times —
//! and those requests go then whatever the next grant says. Each core reports the rate it
//! needs to pay its promises on time ([`Usage::promised_per_sec`]) and keeps at least that
//! (up to its current share); others grow only out of what is not promised. Otherwise,
//! when all of a tenant's connections move to another core, the old core's promises and
//! the new core's admissions would add up to more than R for up to a `queue_timeout`
//! (the simulation saw +15% in a one-second window). The price: while every core is
//! saturated with promises, shares move slowly — the global rate is still R; only the
//! split among a tenant's own connections lags their placement.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::bucket::{wait_secs, TokenBucket};

/// Share of the global rate split evenly as a floor, so an idle core can admit a first
/// request without waiting for a rebalance. It is also the most a skewed placement can
/// lose: the floors of idle cores go unused.
const FLOOR_FRACTION: f64 = 0.01;
/// Smoothing time of the demand estimate: short, so that when demand moves to another
/// core the rate follows within a few rebalances, long enough to average a few requests.
const DEMAND_SMOOTHING: Duration = Duration::from_millis(10);
/// Most charges a share keeps for later (one per waiting request); beyond it a charge is
/// made at once, which only makes the limit stricter for a moment.
const PENDING_MAX: usize = 65_536;
/// A share nobody asked anything of for this long has no demand left worth reporting
/// (20 smoothing times: e^-20 of it).
const IDLE_AFTER: Duration = Duration::from_millis(200);
/// Total demand below this fraction of the global rate counts as idle: even split.
const IDLE_FRACTION: f64 = 1e-4;

/// What one core tells the coordinator about one limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// Tokens per second this core was recently asked for, granted or refused (smoothed).
    pub demand: f64,
    /// Tokens the core's bucket will hold once everything kept for later is charged
    /// (its balance); negative = owed. For reports and the coordinator's logs: what the
    /// core must keep is `promised_per_sec`.
    pub unused: f64,
    /// The core's current share.
    pub rate_per_sec: f64,
    /// The rate the core needs to pay what it promised on time; the coordinator leaves
    /// it at least this much (up to its current share).
    pub promised_per_sec: f64,
}

impl Usage {
    /// What a core that has no entry for a limit is assumed to report: nothing asked,
    /// nothing owed.
    pub const IDLE: Usage = Usage {
        demand: 0.0,
        unused: 0.0,
        rate_per_sec: 0.0,
        promised_per_sec: 0.0,
    };
}

/// The coordinator's answer to one core for one limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grant {
    /// The core's new share of the global rate.
    pub rate_per_sec: f64,
}

/// Splits `global_rate` among cores by demand, never shrinking a core that has promised
/// ahead (see the module docs). Returns one grant per usage, in order; the grants add up
/// to `global_rate` (to rounding). Pure: the appliance calls it on one coordinating core
/// every `rebalance_interval` with every core's report.
pub fn rebalance(global_rate: f64, usages: &[Usage]) -> Vec<Grant> {
    let n = usages.len();
    if n == 0 {
        return Vec::new();
    }
    let global = non_negative(global_rate);
    let cores = n as f64;
    let floor = global * FLOOR_FRACTION / cores;
    let demands: Vec<f64> = usages.iter().map(|u| non_negative(u.demand)).collect();
    let total: f64 = demands.iter().sum();
    let targets: Vec<f64> = if total <= global * IDLE_FRACTION || total <= 0.0 {
        vec![global / cores; n]
    } else {
        let rest = global - floor * cores;
        demands.iter().map(|d| floor + rest * d / total).collect()
    };
    // Each core's rate as layers, given up in this order when the targets and the
    // promises together exceed the global rate: what cores without promises have above
    // their floor; what cores with promises would grow by; the floors; and last (only
    // when a smaller limit was just loaded) what cores with promises already have.
    let mut above = vec![0.0; n];
    let mut growth = vec![0.0; n];
    let mut floors = vec![0.0; n];
    let mut kept = vec![0.0; n];
    for (i, (u, &target)) in usages.iter().zip(&targets).enumerate() {
        let promised = non_negative(u.promised_per_sec).min(non_negative(u.rate_per_sec));
        if promised > 0.0 {
            kept[i] = promised;
            growth[i] = (target - promised).max(0.0);
        } else {
            floors[i] = target.min(floor);
            above[i] = target - floors[i];
        }
    }
    let mut excess = [&above, &growth, &floors, &kept]
        .iter()
        .map(|layer| layer.iter().sum::<f64>())
        .sum::<f64>()
        - global;
    for layer in [&mut above, &mut growth, &mut floors, &mut kept] {
        if excess <= 0.0 {
            break;
        }
        let size: f64 = layer.iter().sum();
        if size <= 0.0 {
            continue;
        }
        let cut = excess.min(size);
        let keep = 1.0 - cut / size;
        layer.iter_mut().for_each(|x| *x *= keep);
        excess -= cut;
    }
    (0..n)
        .map(|i| Grant {
            rate_per_sec: above[i] + growth[i] + floors[i] + kept[i],
        })
        .collect()
}

/// Non-negative and finite, or 0.
fn non_negative(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 {
        x
    } else {
        0.0
    }
}

// === impl Pending ===

/// Charges kept for later, in time order, with running sums so that "how much is due by
/// `t`" is a binary search, not a walk: it is asked on every admission.
#[derive(Debug, Clone, Default, PartialEq)]
struct Pending {
    /// (due, cost, running sum of costs up to and including this one, from `base`).
    entries: VecDeque<(Instant, f64, f64)>,
    /// Running sum at the front: what was popped since the last time it emptied.
    base: f64,
}

impl Pending {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sum of all costs kept.
    fn total(&self) -> f64 {
        self.entries.back().map_or(0.0, |e| e.2 - self.base)
    }

    /// Sum of the costs due by `at`.
    fn until(&self, at: Instant) -> f64 {
        match self.entries.partition_point(|e| e.0 <= at) {
            0 => 0.0,
            i => self.entries.get(i - 1).map_or(0.0, |e| e.2 - self.base),
        }
    }

    /// Keeps `cost` for `at`. Mostly appended (later requests go later); an insert in the
    /// middle shifts the running sums behind it.
    fn insert(&mut self, at: Instant, cost: f64) {
        let i = self.entries.partition_point(|e| e.0 <= at);
        let before = match i {
            0 => self.base,
            _ => self.entries.get(i - 1).map_or(self.base, |e| e.2),
        };
        for e in self.entries.range_mut(i..) {
            e.2 += cost;
        }
        self.entries.insert(i, (at, cost, before + cost));
    }

    /// The first charge if it is due by `now`.
    fn pop_due(&mut self, now: Instant) -> Option<(Instant, f64)> {
        if self.entries.front().is_none_or(|e| e.0 > now) {
            return None;
        }
        let (at, cost, sum) = self.entries.pop_front()?;
        // Rebase when empty, so the running sums never grow large enough to lose bits.
        self.base = if self.entries.is_empty() { 0.0 } else { sum };
        Some((at, cost))
    }

    /// (due, cost) in time order.
    fn iter(&self) -> impl Iterator<Item = (Instant, f64)> + '_ {
        self.entries.iter().map(|e| (e.0, e.1))
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
    /// Charges due at a later instant, in time order: a shared limit is charged for a
    /// waiting request when it goes (see [`CoreShare::charge_at`]).
    pending: Pending,
    /// When the last request this core told to wait (by spending ahead) may go.
    promised_until: Option<Instant>,
    /// When anything was last asked of this share (never, for a fresh one).
    last_asked: Option<Instant>,
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
            pending: Pending::default(),
            promised_until: None,
            last_asked: None,
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

    /// The tokens this core holds at `now` (negative = promised ahead), charges due by
    /// `now` included.
    pub fn tokens(&self, now: Instant) -> f64 {
        self.bucket.tokens(now) - self.pending.until(now)
    }

    /// The tokens left at `now` once every charge kept for later is paid: negative when
    /// this core has promised more than it holds.
    pub fn balance(&self, now: Instant) -> f64 {
        self.bucket.tokens(now) - self.pending.total()
    }

    /// Takes `cost` tokens if there (see [`TokenBucket::take`]); counts as demand either
    /// way.
    pub fn take(&mut self, cost: f64, now: Instant) -> Result<(), Duration> {
        self.settle(now);
        self.ask(cost, now);
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
        self.settle(now);
        self.ask(cost, now);
        let result = self.bucket.reserve(cost, now, wait_max);
        self.note_promise(now);
        result
    }

    /// How long `cost` would wait for [`CoreShare::take`].
    pub fn wait(&self, cost: f64, now: Instant) -> Duration {
        let needed = non_negative(cost).min(self.bucket.burst());
        let tokens = self.tokens(now);
        if tokens + 1e-9 * needed.max(1.0) >= needed {
            Duration::ZERO
        } else {
            wait_secs((needed - tokens) / self.rate_per_sec())
        }
    }

    /// How long a reservation of `cost` made now would wait.
    pub fn reserve_wait(&self, cost: f64, now: Instant) -> Duration {
        self.reserve_wait_at(cost, now, now)
    }

    /// How long after `at` (≥ `now`) a charge of `cost` made at `at` would have to wait:
    /// the tokens expected at `at`, less the charges kept for before then. Charges kept
    /// for after `at` do not delay it: they were promised for later.
    pub fn reserve_wait_at(&self, cost: f64, at: Instant, now: Instant) -> Duration {
        let at = at.max(now);
        let cost = non_negative(cost);
        let after = self.bucket.tokens(at) - self.pending.until(at) - cost;
        if after + 1e-9 * cost.max(1.0) >= 0.0 {
            Duration::ZERO
        } else {
            wait_secs(-after / self.rate_per_sec())
        }
    }

    /// Spends `cost` unconditionally (counts as demand). A negative balance after it is
    /// a promise: the request goes when the balance is back at zero.
    pub fn charge(&mut self, cost: f64, now: Instant) {
        self.settle(now);
        self.ask(cost, now);
        self.bucket.charge(cost, now);
        self.note_promise(now);
    }

    /// Spends `cost` that was used at once (a body quantum that moves now): like
    /// [`CoreShare::charge`], but a negative balance after it is no promise — nothing
    /// waits on it, so the coordinator need not keep this core's share for it.
    pub fn spend(&mut self, cost: f64, now: Instant) {
        self.settle(now);
        self.ask(cost, now);
        self.bucket.charge(cost, now);
    }

    /// Spends `cost` at `at` (now, if `at` is not later). Shared limits (class, rule,
    /// bucket) charge a request that waits for its own tenant's tokens at the time it
    /// goes, so that its wait does not book the shared limit ahead of tenants that are
    /// within their own limits. Counts as demand when it falls due, which is when the
    /// request really asks for the shared limit.
    pub fn charge_at(&mut self, cost: f64, at: Instant, now: Instant) {
        self.settle(now);
        let cost = non_negative(cost);
        if at <= now || self.pending.len() >= PENDING_MAX {
            self.ask(cost, now);
            self.bucket.charge(cost, now);
            self.note_promise(now);
            return;
        }
        self.pending.insert(at, cost);
    }

    /// Counts `cost` as demand without spending: a request refused here still shows that
    /// this core needs more.
    pub fn note_refused(&mut self, cost: f64, now: Instant) {
        self.ask(cost, now);
    }

    /// Gives back tokens spent but not used; they no longer count as demand either.
    pub fn refund(&mut self, tokens: f64, now: Instant) {
        self.settle(now);
        let tokens = non_negative(tokens);
        self.asked = (self.asked - tokens).max(0.0);
        self.bucket.refund(tokens, now);
    }

    /// This core's usage for the coordinator at `now`. Read-only: the demand window
    /// closes at [`CoreShare::apply`].
    pub fn report(&self, now: Instant) -> Usage {
        Usage {
            demand: self.demand_at(now),
            unused: self.balance(now),
            rate_per_sec: self.rate_per_sec(),
            promised_per_sec: self.promised_per_sec(now),
        }
    }

    /// Takes the coordinator's grant at `now` and starts a new demand window.
    pub fn apply(&mut self, grant: Grant, now: Instant) {
        self.settle(now);
        self.demand_per_sec = self.demand_at(now);
        self.asked = 0.0;
        if now > self.window_start {
            self.window_start = now;
        }
        let rate = non_negative(grant.rate_per_sec).min(self.global_rate_per_sec);
        self.bucket.set_rate(rate, self.capacity(rate), now);
    }

    /// Whether this share is indistinguishable from a fresh one: even share, a full
    /// bucket, nothing kept for later and nothing asked for a while. Such an entry needs
    /// no report and may be dropped.
    pub fn is_idle(&self, now: Instant) -> bool {
        let even = self.global_rate_per_sec / self.cores as f64;
        self.last_asked
            .is_none_or(|t| now.saturating_duration_since(t) >= IDLE_AFTER)
            && self.pending.is_empty()
            && (self.rate_per_sec() - even).abs() <= even * 1e-9
            && self.bucket.tokens(now) >= self.bucket.burst()
    }

    /// Makes the charges due by `now`, each at its own time.
    fn settle(&mut self, now: Instant) {
        while let Some((at, cost)) = self.pending.pop_due(now) {
            self.ask(cost, at);
            self.bucket.charge(cost, at);
            self.note_promise(at);
        }
    }

    /// Counts `cost` as asked at `at`.
    fn ask(&mut self, cost: f64, at: Instant) {
        self.asked += non_negative(cost);
        self.last_asked = Some(self.last_asked.map_or(at, |t| t.max(at)));
    }

    /// Records how far ahead this core has promised, after spending at `now`.
    fn note_promise(&mut self, now: Instant) {
        let tokens = self.bucket.tokens(now);
        if tokens < 0.0 {
            let until = now + wait_secs(-tokens / self.rate_per_sec());
            self.promised_until = Some(self.promised_until.map_or(until, |u| u.max(until)));
        }
    }

    /// The least rate that keeps every promise: while requests this core told to wait
    /// are still to go, its whole current share (they were spaced at it, and each must go
    /// on time, not just the last); and for each charge kept for later, what pays it —
    /// after whatever is owed — by its time. At most the current share: a promise made
    /// by a tenant's own limit may ask more of a shared limit than it has, and that
    /// excess cannot be protected anyway. Debt from spending (body quanta that already
    /// moved) is owed but promised to no one.
    pub fn promised_per_sec(&self, now: Instant) -> f64 {
        let rate = self.rate_per_sec();
        let mut owed = -self.tokens(now);
        if owed > 0.0 && self.promised_until.is_some_and(|u| u > now) {
            return rate;
        }
        let mut need: f64 = 0.0;
        for (at, cost) in self.pending.iter().skip_while(|(t, _)| *t <= now) {
            owed += cost;
            if owed > 0.0 {
                need = need.max(owed / at.duration_since(now).as_secs_f64());
            }
        }
        need.min(rate)
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

    /// A usage whose promises (a negative `unused`) need the whole current share.
    fn usage(demand: f64, unused: f64, rate_per_sec: f64) -> Usage {
        Usage {
            demand,
            unused,
            rate_per_sec,
            promised_per_sec: if unused < 0.0 { rate_per_sec } else { 0.0 },
        }
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
            &[
                usage(5000.0, -10.0, 250.0),
                Usage::IDLE,
                Usage::IDLE,
                Usage::IDLE,
            ],
        ));
        assert!(g[0] >= 1000.0 * (1.0 - FLOOR_FRACTION), "{g:?}");
        assert!((g.iter().sum::<f64>() - 1000.0).abs() < 1e-6);
        assert!(g[1] > 0.0, "an idle core keeps a floor");
    }

    #[test]
    fn promises_keep_their_rate_until_paid() {
        // Core 0 promised ahead at 980/s and lost its demand to core 1: it keeps its
        // rate, core 1 gets what is left.
        let g = rates(&rebalance(
            1000.0,
            &[usage(0.0, -200.0, 980.0), usage(5000.0, 0.0, 20.0)],
        ));
        assert_eq!(g[0], 980.0);
        assert!((g[1] - 20.0).abs() < 1e-9, "{g:?}");
        // Paid: the rate follows the demand.
        let g = rates(&rebalance(
            1000.0,
            &[usage(0.0, 5.0, 980.0), usage(5000.0, -3.0, 20.0)],
        ));
        assert!(g[1] >= 980.0 - 1e-9, "{g:?}");
        // Promises above a smaller new limit shrink in proportion.
        let g = rates(&rebalance(
            100.0,
            &[
                usage(10.0, -5.0, 600.0),
                usage(10.0, -5.0, 200.0),
                Usage::IDLE,
            ],
        ));
        assert!((g.iter().sum::<f64>() - 100.0).abs() < 1e-9, "{g:?}");
        assert!((g[0] / g[1] - 3.0).abs() < 1e-9, "{g:?}");
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
            s.note_refused(1.0, t0);
        }
        let t1 = t0 + Duration::from_millis(5);
        s.apply(Grant { rate_per_sec: 50.0 }, t1);
        let before = s.report(t1).demand;
        let later = s.report(t1 + Duration::from_millis(100)).demand;
        assert!(before > 0.0 && later < before * 0.01, "{before} {later}");
        assert!(s.is_idle(t1 + Duration::from_secs(1)));
    }

    #[test]
    fn shared_charges_land_when_due() {
        let t0 = t0();
        let ms = Duration::from_millis;
        let mut s = CoreShare::new(100.0, ms(100), 1, t0);
        assert_eq!(s.tokens(t0), 10.0);
        s.charge_at(4.0, t0 + ms(50), t0);
        s.charge_at(1.0, t0 + ms(20), t0);
        s.charge_at(2.0, t0 + ms(30), t0);
        // Not spent yet, but promised.
        assert_eq!(s.tokens(t0), 10.0);
        assert_eq!(s.balance(t0), 3.0);
        assert!(s.report(t0).demand == 0.0, "demand counts when due");
        // A charge for later waits behind those due before it, not those due after.
        assert_eq!(s.reserve_wait_at(8.0, t0 + ms(20), t0), ms(0));
        assert_eq!(s.reserve_wait_at(8.0, t0 + ms(30), t0), ms(10));
        // Read-only, due charges count in full against the full bucket (conservative:
        // refill between them is not credited)...
        let now = t0 + ms(40);
        assert!((s.tokens(now) - 7.0).abs() < 1e-9, "{}", s.tokens(now));
        // ...settling makes each at its own time: 10 - 1 at 20ms, back to 10 by 30ms (the
        // burst), - 2, + 1 by 40ms.
        let _ = s.take(0.0, now);
        assert_eq!(s.pending.len(), 1);
        assert!((s.tokens(now) - 9.0).abs() < 1e-9, "{}", s.tokens(now));
        assert!((s.balance(now) - 5.0).abs() < 1e-9);
        assert!(s.report(now).demand > 0.0, "due charges are demand");
        let _ = s.take(0.0, t0 + ms(60));
        assert!(s.pending.is_empty());
        assert_eq!(s.pending.total(), 0.0);
    }

    #[test]
    fn promised_rate_is_what_pays_promises_on_time() {
        let t0 = t0();
        let ms = Duration::from_millis;
        let mut s = CoreShare::new(1000.0, ms(10), 1, t0);
        assert_eq!(s.promised_per_sec(t0), 0.0);
        // 10 tokens held; 30 spent: 20 owed, paid at 1000/s by t0 + 20ms.
        s.charge(30.0, t0);
        assert!((s.promised_per_sec(t0) - 1000.0).abs() < 1e-6);
        // Until the last waiting request goes, the share is kept whole.
        let later = t0 + ms(10);
        assert!((s.promised_per_sec(later) - 1000.0).abs() < 1e-6);
        assert_eq!(s.promised_per_sec(t0 + ms(21)), 0.0);
        // Spent, not promised: owed to no one.
        let mut s = CoreShare::new(1000.0, ms(10), 1, t0);
        s.spend(30.0, t0);
        assert_eq!(s.promised_per_sec(t0), 0.0);
        // Charges kept for later need what pays them by their time.
        let mut s = CoreShare::new(1000.0, ms(10), 1, t0);
        s.charge_at(110.0, t0 + ms(200), t0);
        assert!((s.promised_per_sec(t0) - 500.0).abs() < 1e-6);
    }

    proptest! {
        /// Grants add up to the global rate and never go below the floor.
        #[test]
        fn grants_conserve_the_global_rate(
            global in 1.0f64..1e10,
            usages in proptest::collection::vec((0.0f64..1e9, -1e9f64..1e9, 0.0f64..1.0), 1..64),
        ) {
            // Current rates that add up to the global rate, as they do in operation.
            let weight: f64 = usages.iter().map(|u| u.2).sum::<f64>().max(1e-9);
            let usages: Vec<Usage> = usages
                .into_iter()
                .map(|(d, u, r)| usage(d, u, global * r / weight))
                .collect();
            let g = rebalance(global, &usages);
            prop_assert_eq!(g.len(), usages.len());
            let sum: f64 = g.iter().map(|g| g.rate_per_sec).sum();
            prop_assert!((sum - global).abs() <= global * 1e-9, "{sum} vs {global}");
            for (grant, u) in g.iter().zip(&usages) {
                prop_assert!(grant.rate_per_sec >= 0.0);
                prop_assert!(
                    grant.rate_per_sec >= u.promised_per_sec.min(u.rate_per_sec) * (1.0 - 1e-9),
                    "a core got less than it promised: {u:?} -> {grant:?}"
                );
            }
        }

        /// Garbage in (NaN, infinities, negatives) never panics and never grants NaN.
        #[test]
        fn garbage_never_poisons_grants(
            global in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(-1.0), 0.0f64..1e6],
            d in prop_oneof![Just(f64::NAN), Just(f64::NEG_INFINITY), 0.0f64..1e6],
        ) {
            for g in rebalance(global, &[usage(d, d, d), Usage::IDLE]) {
                prop_assert!(g.rate_per_sec.is_finite() && g.rate_per_sec >= 0.0);
            }
        }
    }
}
