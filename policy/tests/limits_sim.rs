//! A seeded, deterministic simulation of weir's per-core limits and QoS queues, driven
//! through the public API only (config from TOML, `Config::classify`, `Limiter`,
//! `rebalance_keys`, `Caps`, `rebalance_cap_keys`, `Scheduler`).
//!
//! N cores each own a `Limiter`; every 5ms each core reports its usage, the coordinator
//! rebalances, and the grants land 1ms later (a message hop), as in the appliance. Time is
//! virtual (1ms ticks from one base `Instant`) and randomness comes from one `SplitMix64`
//! per run, so any seed replays exactly: every run returns a hash of its decisions. A
//! failing seed is printed by the assertion that failed; rerun it with
//! `WEIR_SIM_SEED=<seed> cargo test -p weir-policy --test limits_sim -- --nocapture`.
//!
//! What is shown (generous bounds, as docs/design.md, "How we know it works" asks: offered
//! load ≥ 5× the limit):
//! - the global request rate of a tenant stays within ±5% of its limit over a 10s window
//!   when all its connections sit on one core, on random cores, or on one core that moves;
//!   and no one-second window exceeds the limit by more than a few percent;
//! - a byte limit on spliced GET bodies holds within ±5% under the same placements, and
//!   the rate is smooth (every 100ms window within 15% of the limit, except right after
//!   all connections moved);
//! - a bursty tenant cannot starve another: the steady tenant keeps what it asks for
//!   (it is under its own limit), even through a shared class limit;
//! - class weights 8:1 give 8:1 upstream service under contention (±10%), a
//!   latency-sensitive class jumps the queue, and deadlines expire waiting requests;
//! - caps: a tenant's in-flight cap is never exceeded across cores and its room follows
//!   the load to one core.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use weir_policy::classify::{Classified, Request};
use weir_policy::config::{ClassId, Config};
use weir_policy::limits::{
    rebalance_cap_keys, rebalance_keys, Admit, ByteGrant, CapGrant, Caps, Dir, KeyGrant, Limiter,
};
use weir_policy::qos::Scheduler;
use weir_policy::rand::SplitMix64;

/// Virtual time step.
const TICK: Duration = Duration::from_millis(1);
/// Rebalance every this many ticks (`rebalance_interval = "5ms"`).
const REBALANCE_TICKS: u64 = 5;
/// Warm-up before the measured window, and the window itself.
const WARMUP_TICKS: u64 = 1_000;
const WINDOW_TICKS: u64 = 10_000;
/// Seeds run by default.
const SEEDS: [u64; 4] = [1, 2, 3, 4];

/// Where a tenant's connections sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Every connection on core 0.
    OneCore,
    /// Connections spread at random over the cores (what `SO_REUSEPORT` hashing does).
    Random,
    /// Every connection on one core, which changes every 0.3–2s.
    Moving,
}

const PLACEMENTS: [Placement; 3] = [Placement::OneCore, Placement::Random, Placement::Moving];

fn config() -> Config {
    let text = r#"
[limits]
rebalance_interval = "5ms"
burst = "100ms"

[[pool]]
name = "default"
nodes = ["127.0.0.1:9001"]

[[class]]
name = "inference"
weight = 8
queue_max = 256
queue_timeout = "200ms"

[[class]]
name = "bulk"
weight = 1
queue_max = 256
queue_timeout = "200ms"
requests_per_sec = 2000

[[class]]
name = "interactive"
weight = 1
latency_sensitive = true

[[tenant]]
name = "flood"
access_keys = ["FLOOD"]
class = "bulk"
requests_per_sec = 1000
inflight_max = 64

[[tenant]]
name = "steady"
access_keys = ["STEADY"]
class = "bulk"
requests_per_sec = 1000

[[tenant]]
name = "capped"
access_keys = ["CAPPED"]
download_bytes_per_sec = "100MiB"
"#;
    Config::from_toml_str(text, "limits_sim.toml").expect("simulation config is valid")
}

/// A GET of one object by the tenant owning `key`.
fn classify(cfg: &Config, key: &str, client: u8) -> Classified {
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={key}/20240101/us-east-1/s3/aws4_request, \
         SignedHeaders=host, Signature=0"
    );
    cfg.classify(&Request {
        method: "GET",
        host: Some("s3.local"),
        path: "/data/object",
        query: None,
        access_key: weir_policy::classify::access_key(Some(&auth), None),
        client_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, client)),
        client_name: None,
        copy_sources: &[],
    })
}

#[allow(clippy::disallowed_methods)] // one real base instant; everything else is virtual
fn base() -> Instant {
    Instant::now()
}

/// FNV-style running hash of decisions, for replay checks.
fn mix(hash: &mut u64, x: u64) {
    *hash = (*hash ^ x).wrapping_mul(0x0100_0000_01b3);
}

/// Every core's rate grants and cap grants of one rebalance.
type Grants = (Vec<Vec<KeyGrant>>, Vec<Vec<CapGrant>>);

/// The cores' limiters and the report → rebalance → grant loop between them.
struct Cluster {
    now: Instant,
    tick: u64,
    limiters: Vec<Limiter>,
    caps: Vec<Caps>,
    /// Grants computed at a rebalance, landing one tick later.
    in_flight: Option<Grants>,
}

impl Cluster {
    fn new(cfg: &Config, cores: usize, t0: Instant) -> Cluster {
        Cluster {
            now: t0,
            tick: 0,
            limiters: (0..cores).map(|_| Limiter::new(cfg, cores, t0)).collect(),
            caps: (0..cores).map(|c| Caps::new(cfg, cores, c)).collect(),
            in_flight: None,
        }
    }

    /// Ends the tick: lands last tick's grants, runs a rebalance when due, advances time.
    fn step(&mut self) {
        if let Some((keys, caps)) = self.in_flight.take() {
            for (limiter, grants) in self.limiters.iter_mut().zip(&keys) {
                limiter.apply(grants, self.now);
            }
            for (core, grants) in self.caps.iter_mut().zip(&caps) {
                core.apply(grants);
            }
        }
        if self.tick.is_multiple_of(REBALANCE_TICKS) {
            let now = self.now;
            let reports: Vec<_> = self.limiters.iter_mut().map(|l| l.usage(now)).collect();

            let cap_reports: Vec<_> = self.caps.iter().map(Caps::usage).collect();
            self.in_flight = Some((rebalance_keys(&reports), rebalance_cap_keys(&cap_reports)));
        }
        self.tick += 1;
        self.now += TICK;
    }
}

/// Which core each of a tenant's connections is on.
struct Connections {
    placement: Placement,
    cores: Vec<usize>,
    core_count: usize,
    next_move: u64,
}

impl Connections {
    fn new(placement: Placement, count: usize, core_count: usize, rng: &mut SplitMix64) -> Self {
        let mut c = Connections {
            placement,
            cores: vec![0; count],
            core_count,
            next_move: 0,
        };
        if placement == Placement::Random {
            for core in &mut c.cores {
                *core = rng.below(core_count as u64) as usize;
            }
        }
        c
    }

    /// Moves the connections when a `Moving` placement is due.
    fn tick(&mut self, tick: u64, rng: &mut SplitMix64) {
        if self.placement == Placement::Moving && tick >= self.next_move {
            let hot = rng.below(self.core_count as u64) as usize;
            self.cores.iter_mut().for_each(|c| *c = hot);
            self.next_move = tick + 300 + rng.below(1_700);
        }
    }

    /// The core of a request on a random connection.
    fn pick(&self, rng: &mut SplitMix64) -> usize {
        let i = rng.below(self.cores.len() as u64) as usize;
        self.cores.get(i).copied().unwrap_or(0)
    }
}

// === request rates ===

#[derive(Debug, Default)]
struct RateReport {
    /// Requests that reached "storage" in each millisecond (by the time they were let
    /// go: at once for `Go`, at `until` for `Wait`).
    fired_per_tick: Vec<u64>,
    offered: u64,
    rejected: u64,
    waited: u64,
    hash: u64,
}

impl RateReport {
    fn fired(&mut self, at_tick: u64) {
        if let Some(slot) = self.fired_per_tick.get_mut(at_tick as usize) {
            *slot += 1;
        }
    }

    fn in_window(&self) -> u64 {
        let window = WARMUP_TICKS as usize..(WARMUP_TICKS + WINDOW_TICKS) as usize;
        self.fired_per_tick
            .get(window)
            .map_or(0, |w| w.iter().sum())
    }

    /// Most requests fired in any one-second window after the warm-up.
    fn max_per_second(&self) -> u64 {
        let end = (WARMUP_TICKS + WINDOW_TICKS) as usize;
        (WARMUP_TICKS as usize..end - 1000)
            .step_by(10)
            .map(|s| {
                self.fired_per_tick
                    .get(s..s + 1000)
                    .map_or(0, |w| w.iter().sum())
            })
            .max()
            .unwrap_or(0)
    }
}

/// One tenant limited to 1000 req/s offers 5000 req/s from 64 connections.
fn run_rates(seed: u64, placement: Placement, cores: usize) -> RateReport {
    let cfg = config();
    let t0 = base();
    let mut rng = SplitMix64::new(seed);
    let mut cluster = Cluster::new(&cfg, cores, t0);
    let mut conns = Connections::new(placement, 64, cores, &mut rng);
    let flood = classify(&cfg, "FLOOD", 1);
    let total_ticks = WARMUP_TICKS + WINDOW_TICKS + 2_000;
    let mut r = RateReport {
        fired_per_tick: vec![0; total_ticks as usize + 2_000],
        ..RateReport::default()
    };
    for tick in 0..total_ticks {
        conns.tick(tick, &mut rng);
        // 3..=7 arrivals per millisecond: 5000 req/s on average, 5× the limit.
        for _ in 0..3 + rng.below(5) {
            r.offered += 1;
            let core = conns.pick(&mut rng);
            let now = cluster.now;
            match cluster.limiters[core].admit(&flood, flood.client_ip, now) {
                Admit::Go => {
                    r.fired(tick);
                    mix(&mut r.hash, tick);
                }
                Admit::Wait { until, .. } => {
                    r.waited += 1;
                    let at = tick + ticks_until(now, until);
                    r.fired(at);
                    mix(&mut r.hash, at << 8 | 1);
                }
                Admit::Reject { retry_after, .. } => {
                    assert!(retry_after >= Duration::from_secs(1));
                    r.rejected += 1;
                    mix(&mut r.hash, 2);
                }
            }
        }
        cluster.step();
    }
    r
}

/// Whole ticks from `now` until `until`, rounded up.
fn ticks_until(now: Instant, until: Instant) -> u64 {
    let d = until.saturating_duration_since(now);
    d.as_nanos().div_ceil(TICK.as_nanos()) as u64
}

fn seeds() -> Vec<u64> {
    match std::env::var("WEIR_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("WEIR_SIM_SEED is a u64")],
        Err(_) => SEEDS.to_vec(),
    }
}

#[test]
fn global_request_rate_holds_within_5_percent_under_any_placement() {
    for seed in seeds() {
        for placement in PLACEMENTS {
            for cores in [2, 8] {
                let r = run_rates(seed, placement, cores);
                let rate = r.in_window() as f64 / (WINDOW_TICKS as f64 / 1000.0);
                let peak = r.max_per_second();
                println!(
                    "seed {seed} {placement:?} cores {cores}: {rate:.1} req/s, peak 1s {peak}, \
                     offered {} waited {} rejected {}",
                    r.offered, r.waited, r.rejected
                );
                assert!(
                    (950.0..=1050.0).contains(&rate),
                    "seed {seed} {placement:?} cores {cores}: {rate:.1} req/s vs limit 1000"
                );
                // A tenant never exceeds its rate by more than its burst: 100ms of the
                // rate, plus one request per core (each core can hold one whole request).
                let burst = 100 + cores as u64;
                assert!(
                    peak <= 1000 + burst,
                    "seed {seed} {placement:?} cores {cores}: {peak} requests in one second"
                );
            }
        }
    }
}

// === bytes ===

#[derive(Debug, Default)]
struct ByteReport {
    moved_per_tick: Vec<u64>,
    hash: u64,
}

impl ByteReport {
    fn in_window(&self) -> u64 {
        let window = WARMUP_TICKS as usize..(WARMUP_TICKS + WINDOW_TICKS) as usize;
        self.moved_per_tick
            .get(window)
            .map_or(0, |w| w.iter().sum())
    }

    /// Bytes in each 100ms window after the warm-up.
    fn per_100ms(&self) -> Vec<u64> {
        let window = WARMUP_TICKS as usize..(WARMUP_TICKS + WINDOW_TICKS) as usize;
        self.moved_per_tick
            .get(window)
            .map(|w| w.chunks(100).map(|c| c.iter().sum()).collect())
            .unwrap_or_default()
    }
}

/// The byte limit of the tenant "capped".
const CAPPED_BYTES_PER_SEC: f64 = 100.0 * 1024.0 * 1024.0;
/// What one client connection could take without weir in the way (about 8 Gbit/s).
const LINK_BYTES_PER_TICK: u64 = 1 << 20;

/// 16 spliced GETs of a tenant capped at 100MiB/s, each of which could take 1GiB/s.
fn run_bytes(seed: u64, placement: Placement, cores: usize) -> ByteReport {
    let cfg = config();
    let t0 = base();
    let mut rng = SplitMix64::new(seed);
    let mut cluster = Cluster::new(&cfg, cores, t0);
    let mut conns = Connections::new(placement, 16, cores, &mut rng);
    let capped = classify(&cfg, "CAPPED", 2);
    let total_ticks = WARMUP_TICKS + WINDOW_TICKS;
    let mut r = ByteReport {
        moved_per_tick: vec![0; total_ticks as usize],
        ..ByteReport::default()
    };
    // Per flow: the tick it may ask again.
    let mut resume_at = [0u64; 16];
    for tick in 0..total_ticks {
        conns.tick(tick, &mut rng);
        // Flows take turns starting first, as a shard's event loop would.
        let first = rng.below(16) as usize;
        for k in 0..16 {
            let flow = (first + k) % 16;
            if resume_at[flow] > tick {
                continue;
            }
            let core = conns.cores[flow];
            let mut link = LINK_BYTES_PER_TICK;
            while link > 0 {
                let now = cluster.now;
                match cluster.limiters[core].bytes(&capped, Dir::Down, link, now) {
                    ByteGrant::Go(n) => {
                        assert!(n > 0 && n <= link);
                        link -= n;
                        r.moved_per_tick[tick as usize] += n;
                        mix(&mut r.hash, n);
                    }
                    ByteGrant::Wait(d) => {
                        resume_at[flow] = tick + ticks_until(now, now + d).max(1);
                        mix(&mut r.hash, resume_at[flow]);
                        break;
                    }
                }
            }
        }
        cluster.step();
    }
    r
}

#[test]
fn byte_rate_holds_within_5_percent_and_is_smooth() {
    for seed in seeds() {
        for placement in PLACEMENTS {
            for cores in [2, 8] {
                let r = run_bytes(seed, placement, cores);
                let rate = r.in_window() as f64 / (WINDOW_TICKS as f64 / 1000.0);
                let windows = r.per_100ms();
                let expect = CAPPED_BYTES_PER_SEC / 10.0;
                let worst = windows
                    .iter()
                    .map(|&w| (w as f64 - expect).abs() / expect)
                    .fold(0.0, f64::max);
                println!(
                    "seed {seed} {placement:?} cores {cores}: {:.2} MiB/s, worst 100ms window \
                     off by {:.1}%",
                    rate / 1048576.0,
                    worst * 100.0
                );
                let ratio = rate / CAPPED_BYTES_PER_SEC;
                assert!(
                    (0.95..=1.05).contains(&ratio),
                    "seed {seed} {placement:?} cores {cores}: {ratio:.3} of the byte limit"
                );
                if placement != Placement::Moving {
                    assert!(
                        worst <= 0.15,
                        "seed {seed} {placement:?} cores {cores}: a 100ms window off by {:.1}%",
                        worst * 100.0
                    );
                }
            }
        }
    }
}

// === a bursty tenant next to a steady one ===

#[derive(Debug, Default)]
struct FairReport {
    steady_offered: u64,
    steady_fired: u64,
    steady_rejected: u64,
    flood_fired_in_window: u64,
    hash: u64,
}

/// "flood" bursts at 40,000 req/s for 100ms every 500ms, each burst from one random core
/// (when `flood`); "steady" asks 800 req/s from 64 random connections. Both have their
/// own 1000 req/s limit and share the class "bulk" (2000 req/s).
fn run_fair(seed: u64, cores: usize, flood_on: bool) -> FairReport {
    let cfg = config();
    let t0 = base();
    let mut rng = SplitMix64::new(seed);
    let mut cluster = Cluster::new(&cfg, cores, t0);
    let steady_conns = Connections::new(Placement::Random, 64, cores, &mut rng);
    let flood = classify(&cfg, "FLOOD", 1);
    let steady = classify(&cfg, "STEADY", 3);
    assert_eq!(
        flood.class, steady.class,
        "they share a class and its limit"
    );
    let total_ticks = WARMUP_TICKS + WINDOW_TICKS;
    let window = WARMUP_TICKS..total_ticks;
    let mut r = FairReport::default();
    let mut burst_core = 0;
    for tick in 0..total_ticks {
        if tick % 500 == 0 {
            burst_core = rng.below(cores as u64) as usize;
        }
        let now = cluster.now;
        if flood_on && tick % 500 < 100 {
            for _ in 0..40 {
                let at = match cluster.limiters[burst_core].admit(&flood, flood.client_ip, now) {
                    Admit::Go => Some(tick),
                    Admit::Wait { until, .. } => Some(tick + ticks_until(now, until)),
                    Admit::Reject { .. } => None,
                };
                if let Some(at) = at.filter(|at| window.contains(at)) {
                    r.flood_fired_in_window += 1;
                    mix(&mut r.hash, at);
                }
            }
        }
        if rng.below(10) < 8 {
            let core = steady_conns.pick(&mut rng);
            let in_window = window.contains(&tick);
            r.steady_offered += u64::from(in_window);
            match cluster.limiters[core].admit(&steady, steady.client_ip, now) {
                Admit::Go | Admit::Wait { .. } => r.steady_fired += u64::from(in_window),
                Admit::Reject { .. } => r.steady_rejected += u64::from(in_window),
            }
        }
        cluster.step();
    }
    r
}

#[test]
fn a_bursty_tenant_cannot_starve_a_steady_one() {
    for seed in seeds() {
        for cores in [2, 8] {
            // The same steady tenant, alone and next to the flood (same seed, so the same
            // arrivals): per-core granularity costs it a little either way; the flood
            // must not cost it more than 1% on top.
            let alone = run_fair(seed, cores, false);
            let r = run_fair(seed, cores, true);
            println!("seed {seed} cores {cores}: {r:?}, alone {alone:?}");
            let kept = r.steady_fired as f64 / r.steady_offered as f64;
            let kept_alone = alone.steady_fired as f64 / alone.steady_offered as f64;
            assert!(
                kept >= 0.98 && kept >= kept_alone - 0.01,
                "seed {seed} cores {cores}: steady tenant got {kept:.4} of what it asked \
                 ({kept_alone:.4} alone)"
            );
            let flood_rate = r.flood_fired_in_window as f64 / (WINDOW_TICKS as f64 / 1000.0);
            assert!(
                flood_rate <= 1050.0,
                "seed {seed} cores {cores}: flood at {flood_rate:.0} req/s"
            );
        }
    }
}

// === QoS classes ===

#[derive(Debug, Default)]
struct QosReport {
    /// Served in the window, per class index.
    served: [u64; 3],
    expired: [u64; 3],
    full: [u64; 3],
    /// Queue waits of served requests, per class, in ticks.
    waits: [Vec<u64>; 3],
    hash: u64,
}

/// One core with 16 upstream slots (each request holds one 1–8ms): far fewer than asked
/// for. `arrivals[c]` is requests per tick of class c, in tenths.
fn run_qos(seed: u64, arrivals_tenths: [u64; 3]) -> QosReport {
    let cfg = config();
    let t0 = base();
    let mut rng = SplitMix64::new(seed);
    let mut sched: Scheduler<(usize, u64)> = Scheduler::new(&cfg.classes);
    let timeouts: Vec<Duration> = cfg.classes.iter().map(|c| c.queue_timeout).collect();
    let mut busy_until: Vec<u64> = Vec::new();
    let slots = 16;
    let total_ticks = WARMUP_TICKS + WINDOW_TICKS;
    let window = WARMUP_TICKS..total_ticks;
    let mut r = QosReport::default();
    let mut now = t0;
    for tick in 0..total_ticks {
        busy_until.retain(|&end| end > tick);
        for (class, &tenths) in arrivals_tenths.iter().enumerate() {
            let mut n = tenths / 10;
            if rng.below(10) < tenths % 10 {
                n += 1;
            }
            for _ in 0..n {
                let deadline = now + timeouts[class];
                if sched.push(ClassId(class), (class, tick), deadline).is_err() {
                    r.full[class] += u64::from(window.contains(&tick));
                }
            }
        }
        for (class, _) in sched.expire(now) {
            r.expired[class] += u64::from(window.contains(&tick));
            mix(&mut r.hash, class as u64 | 0x100);
        }
        while busy_until.len() < slots {
            let Some((class, pushed)) = sched.pop(now) else {
                break;
            };
            let waited = tick - pushed;
            assert!(
                Duration::from_millis(waited) <= timeouts[class],
                "served after its deadline"
            );
            if window.contains(&tick) {
                r.served[class] += 1;
                r.waits[class].push(waited);
            }
            busy_until.push(tick + 1 + rng.below(8));
            mix(&mut r.hash, (class as u64) << 32 | waited);
        }
        now += TICK;
    }
    r
}

fn percentile(values: &mut [u64], p: f64) -> u64 {
    values.sort_unstable();
    let i = ((values.len() as f64 - 1.0) * p).round() as usize;
    values.get(i).copied().unwrap_or(0)
}

#[test]
fn class_weights_8_to_1_give_8_to_1_service_and_deadlines_expire() {
    for seed in seeds() {
        // inference and bulk each ask 5 requests/ms; the slots serve about 3.5/ms.
        let r = run_qos(seed, [50, 50, 0]);
        let ratio = r.served[0] as f64 / r.served[1] as f64;
        println!(
            "seed {seed}: served {:?} ratio {ratio:.2}, expired {:?}, queue full {:?}",
            r.served, r.expired, r.full
        );
        assert!(
            (7.2..=8.8).contains(&ratio),
            "seed {seed}: inference:bulk served {ratio:.2}, want 8 ± 10%"
        );
        assert!(
            r.expired[1] + r.full[1] > 0,
            "seed {seed}: overload must shed bulk requests (deadline or queue bound)"
        );
    }
}

#[test]
fn a_latency_sensitive_class_jumps_the_queue() {
    for seed in seeds() {
        // bulk floods (8/ms); interactive asks 0.3/ms and is latency-sensitive.
        let mut r = run_qos(seed, [0, 80, 3]);
        let interactive_p99 = percentile(&mut r.waits[2], 0.99);
        let bulk_median = percentile(&mut r.waits[1], 0.5);
        println!(
            "seed {seed}: interactive p99 wait {interactive_p99}ms, bulk median {bulk_median}ms, \
             served {:?}",
            r.served
        );
        assert!(
            interactive_p99 <= 5,
            "seed {seed}: interactive p99 {interactive_p99}ms"
        );
        assert!(
            bulk_median >= 50,
            "seed {seed}: bulk median {bulk_median}ms"
        );
        assert_eq!(r.expired[2] + r.full[2], 0, "seed {seed}: interactive shed");
    }
}

// === caps ===

/// "flood" (in-flight cap 64) sends 5 requests/ms, each held 5–50ms.
fn run_caps(seed: u64, placement: Placement, cores: usize) -> (u64, f64, u64) {
    let cfg = config();
    let t0 = base();
    let mut rng = SplitMix64::new(seed);
    let mut cluster = Cluster::new(&cfg, cores, t0);
    let mut conns = Connections::new(placement, 64, cores, &mut rng);
    let flood = classify(&cfg, "FLOOD", 1);
    // (core, tick it ends)
    let mut inflight: Vec<(usize, u64)> = Vec::new();
    let total_ticks = WARMUP_TICKS + WINDOW_TICKS;
    let (mut peak, mut sum, mut hash) = (0u64, 0u64, 0u64);
    for tick in 0..total_ticks {
        conns.tick(tick, &mut rng);
        inflight.retain(|&(core, end)| {
            if end <= tick {
                cluster.caps[core].end_request(flood.tenant);
            }
            end > tick
        });
        for _ in 0..5 {
            let core = conns.pick(&mut rng);
            if cluster.caps[core].start_request(flood.tenant).is_ok() {
                inflight.push((core, tick + 5 + rng.below(46)));
                mix(&mut hash, tick);
            }
        }
        let n = inflight.len() as u64;
        peak = peak.max(n);
        if tick >= WARMUP_TICKS {
            sum += n;
        }
        cluster.step();
    }
    (peak, sum as f64 / WINDOW_TICKS as f64, hash)
}

#[test]
fn a_tenant_inflight_cap_holds_across_cores_and_follows_the_load() {
    for seed in seeds() {
        for placement in PLACEMENTS {
            for cores in [2, 8] {
                let (peak, mean, _) = run_caps(seed, placement, cores);
                println!("seed {seed} {placement:?} cores {cores}: peak {peak}, mean {mean:.1}");
                assert!(
                    peak <= 64,
                    "seed {seed} {placement:?}: {peak} in flight > 64"
                );
                // Room freed on one core waits for that core's next request: with 8
                // cores at 0.6 requests/ms each and requests held 27ms on average, that
                // leaves about 4 of 64 idle. One core or two lose almost nothing.
                assert!(
                    mean >= 0.85 * 64.0,
                    "seed {seed} {placement:?} cores {cores}: mean in flight {mean:.1}"
                );
            }
        }
    }
}

// === replay ===

#[test]
fn any_seed_replays_identically() {
    let a = run_rates(7, Placement::Moving, 8);
    let b = run_rates(7, Placement::Moving, 8);
    assert_eq!(a.hash, b.hash, "same seed, same decisions");
    assert_eq!(a.fired_per_tick, b.fired_per_tick);
    assert_ne!(a.hash, run_rates(8, Placement::Moving, 8).hash);
    assert_eq!(
        run_bytes(7, Placement::Random, 4).hash,
        run_bytes(7, Placement::Random, 4).hash
    );
    assert_eq!(run_fair(7, 4, true).hash, run_fair(7, 4, true).hash);
    assert_eq!(run_qos(7, [50, 50, 3]).hash, run_qos(7, [50, 50, 3]).hash);
    assert_ne!(run_qos(7, [50, 50, 3]).hash, run_qos(8, [50, 50, 3]).hash);
    assert_eq!(
        run_caps(7, Placement::Moving, 4).2,
        run_caps(7, Placement::Moving, 4).2
    );
}
