//! A seeded, deterministic simulation of weir's decisions at a scale no test machine holds:
//! 300 storage nodes in three priority groups (site-a → site-b → cloud), with flapping
//! nodes, blackholes, maintenance, flaky and slow nodes, throttling storms, a partition
//! of the preferred site and a recovery — driven through the public API only (config from
//! TOML, `NodeHealth`, `Aimd`, `balance::pick`, `RetryBudget`). Each request's attempts
//! are decided by `attempt::Attempts`, the machine the appliance's request pipeline
//! drives too: no copy of the retry loop lives here.
//!
//! Time is virtual (10ms ticks from one base `Instant`), randomness comes from one
//! `SplitMix64` per run, so any seed replays exactly: `sim_seed(seed)` returns a hash of
//! every decision. A failing seed is printed by the assertion that failed; rerun it with
//! `WEIR_SIM_SEED=<seed> cargo test -p weir-policy --test sim -- --nocapture`.
//!
//! Invariants checked on every decision (not snapshots):
//! - never routes to a node it holds down or draining;
//! - never sends a node more than its concurrency limit, nor a pool+bucket more than its;
//! - degraded nodes only when no eligible up node exists; the best qualifying priority
//!   group is always used first;
//! - concurrency limits stay within `min..=max`;
//! - every retry goes to a node the request has not tried; a POST is replayed only
//!   after a connect failure; a budget-limited run never retries more than
//!   `ratio × requests + floor × (T + 1s)`;
//! - a node dead for `(fall + 1) × interval` is held down; a node in maintenance for an
//!   interval is draining; a healthy node is not held down after `(rise + 1) × interval`;
//! - a failure after a request reached a node is held until the request shows whose it
//!   was (`health::Blame`): a request that fails on two nodes is tried on no third.
//!
//! Scenario checks (generous bounds: offered load well above what is tested): the
//! partition moves traffic to site-b and it comes back; clients see few errors while a
//! healthy node remains. A second scenario mixes "queries of death" (requests every node
//! resets) into normal traffic on a small pool: no healthy node ever goes down, and every
//! innocent request succeeds.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use weir_policy::aimd::Aimd;
use weir_policy::attempt::{Answer, Attempts, Decision, Env, Failed, Limit, Outcome, Params};
use weir_policy::balance::{pick, Affinity, Algorithm, Candidate, NodeLoad, PoolState, PoolView};
use weir_policy::config::Config;
use weir_policy::health::{NodeHealth, NodeState, ProbeResult, Transition};
use weir_policy::rand::SplitMix64;
use weir_policy::retry::{BodyState, RetryBudget};
use weir_policy::s3code::S3Code;

/// Virtual time step.
const TICK: Duration = Duration::from_millis(10);
/// Simulated run length.
const RUN_TICKS: u64 = 6_000; // 60 s
/// New client requests per tick (1,000 per second).
const REQUESTS_PER_TICK: u64 = 10;
/// Nodes per pool.
const NODES: usize = 100;
/// Buckets requests are spread over (each has a pool+bucket AIMD limit).
const BUCKETS: usize = 4;
/// How long a blackholed node holds a request before the first-byte timeout fires.
const BLACKHOLE_TICKS: u64 = 100;

/// The preferred site is partitioned (85% of its nodes unreachable) in this window.
const PARTITION: (u64, u64) = (1_500, 3_000);
/// After the partition, recovery and slow start: the preferred site serves again here.
const AFTER: (u64, u64) = (4_000, 5_000);
/// The preferred site throttles most requests in this window (a SlowDown storm).
const STORM: (u64, u64) = (5_200, 5_600);
/// Ticks after a scripted disaster during which client errors are expected.
const SETTLE_TICKS: u64 = 500;

fn config_text() -> String {
    let nodes = |prefix: &str| {
        (0..NODES)
            .map(|i| format!("\"{prefix}-{i}.example:9000\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"
[upstream]
retry_ratio = 0.2
retry_floor_per_sec = 10
attempts_max = 3
node_concurrency_max = 32
node_concurrency_min = 2
[[pool]]
name = "site-a"
priority = 0
min_active = 30
nodes = [{a}]
health = {{ preset = "seaweedfs", interval = "1s", timeout = "500ms", rise = 2, fall = 3, passive_fall = 5 }}
[[pool]]
name = "cloud"
priority = 2
nodes = [{c}]
[[pool]]
name = "site-b"
priority = 1
min_active = 10
nodes = [{b}]
health = {{ preset = "minio", interval = "1s", timeout = "500ms", degraded_latency = "200ms" }}
[[route]]
bucket = "*"
pools = ["cloud", "site-a", "site-b"]
"#,
        a = nodes("a"),
        b = nodes("b"),
        c = nodes("c"),
    )
}

// === the world: what is really true about each node ===

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Unreachable: refuses connections, or (blackhole) swallows them.
    Dead { blackhole: bool },
    /// Says so on its probe; still serves what it gets.
    Maintenance,
    /// Answers `503 SlowDown` to this fraction of requests.
    Throttle { ratio: f64 },
    /// Answers 500 to this fraction of requests.
    Flaky { ratio: f64 },
    /// Takes this many times longer.
    Slow { factor: u64 },
}

#[derive(Debug, Clone)]
struct Truth {
    /// Base latency to the response head, in ticks (>= 1).
    latency_ticks: u64,
    /// Faults as `[from, to)` tick windows.
    faults: Vec<(u64, u64, Fault)>,
}

impl Truth {
    fn fault(&self, tick: u64, want: impl Fn(&Fault) -> bool) -> Option<Fault> {
        self.faults
            .iter()
            .find(|(from, to, f)| (*from..*to).contains(&tick) && want(f))
            .map(|(_, _, f)| *f)
    }

    fn dead(&self, tick: u64) -> Option<bool> {
        match self.fault(tick, |f| matches!(f, Fault::Dead { .. })) {
            Some(Fault::Dead { blackhole }) => Some(blackhole),
            _ => None,
        }
    }

    fn in_maintenance(&self, tick: u64) -> bool {
        self.fault(tick, |f| matches!(f, Fault::Maintenance))
            .is_some()
    }

    /// The tick since which `pred` has held without a break, if it holds now.
    fn held_since(&self, tick: u64, pred: impl Fn(u64) -> bool) -> Option<u64> {
        if !pred(tick) {
            return None;
        }
        // Fault windows only start or end at window edges: walk back over them.
        let mut since = tick;
        loop {
            let edge = self
                .faults
                .iter()
                .flat_map(|(from, to, _)| [*from, *to])
                .filter(|&e| e <= since && e > 0)
                .max();
            match edge {
                Some(e) if pred(e - 1) => since = e - 1,
                Some(e) => return Some(e),
                None => return Some(0),
            }
        }
    }
}

/// Builds every node's truth from the seed: random flaps and faults on top of the
/// scripted partition and storm.
fn world(rng: &mut SplitMix64, pools: usize) -> Vec<Vec<Truth>> {
    let mut world = Vec::new();
    for pool in 0..pools {
        let mut nodes = Vec::new();
        for node in 0..NODES {
            let mut faults = Vec::new();
            // A few random faults per node over the run.
            for _ in 0..rng.below(3) {
                let from = rng.below(RUN_TICKS);
                let len = 100 + rng.below(1_500);
                let fault = match rng.below(10) {
                    0..=3 => Fault::Dead {
                        blackhole: rng.below(2) == 0,
                    },
                    4 => Fault::Maintenance,
                    5 => Fault::Throttle { ratio: 0.5 },
                    6 | 7 => Fault::Flaky { ratio: 0.4 },
                    _ => Fault::Slow { factor: 20 },
                };
                // Keep dead and maintenance windows apart, so "should be draining"
                // and "should be down" never contradict each other.
                let exclusive = |f: &Fault| matches!(f, Fault::Dead { .. } | Fault::Maintenance);
                let overlaps = faults.iter().any(|(f0, t0, f): &(u64, u64, Fault)| {
                    exclusive(f) && exclusive(&fault) && from < *t0 + 200 && *f0 < from + len + 200
                });
                if !overlaps {
                    faults.push((from, from + len, fault));
                }
            }
            // site-a is the pool named first in the file: config index 0.
            if pool == 0 && node < NODES * 85 / 100 {
                faults.retain(|(f, t, fault)| {
                    !matches!(fault, Fault::Dead { .. } | Fault::Maintenance)
                        || *t + 200 < PARTITION.0
                        || *f > PARTITION.1 + 200
                });
                faults.push((
                    PARTITION.0,
                    PARTITION.1,
                    Fault::Dead {
                        blackhole: node % 2 == 0,
                    },
                ));
            }
            if pool == 0 {
                faults.push((STORM.0, STORM.1, Fault::Throttle { ratio: 0.8 }));
            }
            nodes.push(Truth {
                latency_ticks: 1 + rng.below(4),
                faults,
            });
        }
        world.push(nodes);
    }
    world
}

/// Every node healthy for the whole run, each with the same small latency.
fn healthy_world(config: &Config) -> Vec<Vec<Truth>> {
    config
        .pools
        .iter()
        .map(|p| {
            p.nodes
                .iter()
                .map(|_| Truth {
                    latency_ticks: 2,
                    faults: Vec::new(),
                })
                .collect()
        })
        .collect()
}

// === requests ===

#[derive(Debug, Clone)]
struct Request {
    method: &'static str,
    body: BodyState,
    bucket: usize,
    /// The object's placement key.
    affinity: Affinity,
    /// A "query of death": every live node resets the connection on it.
    poison: bool,
    /// Its attempts: tried nodes, retries, blame (the appliance's machine).
    attempts: Attempts<Candidate>,
}

#[derive(Debug)]
enum Event {
    /// An attempt ends in `outcome`.
    Finish {
        req: Request,
        node: Candidate,
        outcome: Outcome,
    },
    /// A retry is due (after a throttle's backoff, or at the next tick).
    Retry { req: Request },
}

/// Counts and the replay hash of one run.
#[derive(Debug, Default, Clone, PartialEq)]
struct Report {
    hash: u64,
    requests: u64,
    retries: u64,
    ok: u64,
    client_errors: u64,
    no_node: u64,
    transitions: u64,
    picks_by_pool_partition: [u64; 3],
    picks_by_pool_after: [u64; 3],
    errors_outside_disasters: u64,
    requests_outside_disasters: u64,
    /// Mean node limit of the preferred site at the end of the storm, in hundredths.
    storm_node_limit_mean_centi: u64,
    /// Lowest pool+bucket limit of the preferred site at the end of the storm.
    storm_bucket_limit_min: u32,
    /// Poison requests offered, and attempts they made in all.
    poison_requests: u64,
    poison_attempts: u64,
    /// Innocent (non-poison) requests that failed.
    innocent_errors: u64,
    /// Transitions to down of a node whose truth was healthy at the time.
    healthy_taken_down: u64,
}

fn fnv(hash: &mut u64, word: u64) {
    for byte in word.to_le_bytes() {
        *hash ^= u64::from(byte);
        *hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
    }
}

struct Sim {
    config: Config,
    base: Instant,
    rng: SplitMix64,
    world: Vec<Vec<Truth>>,
    health: Vec<Vec<NodeHealth>>,
    node_limits: Vec<Vec<Aimd>>,
    bucket_limits: Vec<Vec<Aimd>>,
    inflight: Vec<Vec<u32>>,
    bucket_inflight: Vec<Vec<u32>>,
    views: Vec<Vec<NodeLoad>>,
    /// This (single) core's balancing state per pool.
    balance_states: Vec<PoolState>,
    /// Objects requests are spread over (placement keys for `rendezvous` pools).
    next_object: u64,
    budget: RetryBudget,
    events: BTreeMap<u64, Vec<Event>>,
    report: Report,
    tick: u64,
    run_ticks: u64,
    scenario: Scenario,
}

/// What a run simulates.
#[derive(Debug, Clone)]
struct Scenario {
    /// The config, as TOML.
    config: String,
    /// Random flaps and faults, the partition and the storm (else every node stays healthy).
    faults: bool,
    /// New client requests per tick.
    requests_per_tick: u64,
    /// Per mille of requests that are queries of death.
    poison_per_mille: u64,
}

impl Scenario {
    /// 300 nodes in three priority groups, with every kind of failure.
    fn sites() -> Scenario {
        Scenario {
            config: config_text(),
            faults: true,
            requests_per_tick: REQUESTS_PER_TICK,
            poison_per_mille: 0,
        }
    }
}

impl Sim {
    fn new(seed: u64, run_ticks: u64, scenario: Scenario) -> Sim {
        let config = Config::from_toml_str(&scenario.config, "sim.toml").expect("sim config");
        // One real instant as the origin of virtual time; only offsets from it are used.
        #[allow(clippy::disallowed_methods)]
        let base = Instant::now();
        let mut rng = SplitMix64::new(seed);
        let world = if scenario.faults {
            world(&mut rng, config.pools.len())
        } else {
            healthy_world(&config)
        };
        let health = config
            .pools
            .iter()
            .map(|p| {
                p.nodes
                    .iter()
                    .map(|_| NodeHealth::new(&p.health, base))
                    .collect()
            })
            .collect();
        let node_limits = config
            .pools
            .iter()
            .map(|p| {
                p.nodes
                    .iter()
                    .map(|_| Aimd::for_node(&config.upstream))
                    .collect()
            })
            .collect();
        let bucket_limits = config
            .pools
            .iter()
            .map(|p| {
                (0..BUCKETS)
                    .map(|_| Aimd::for_bucket(&config.upstream, p.nodes.len() / 2))
                    .collect()
            })
            .collect();
        let inflight = config
            .pools
            .iter()
            .map(|p| vec![0; p.nodes.len()])
            .collect();
        let bucket_inflight = config.pools.iter().map(|_| vec![0; BUCKETS]).collect();
        let budget = RetryBudget::for_core(&config.upstream, 1);
        let mut sim = Sim {
            config,
            base,
            rng,
            world,
            health,
            node_limits,
            bucket_limits,
            inflight,
            bucket_inflight,
            views: Vec::new(),
            balance_states: Vec::new(),
            next_object: 0,
            budget,
            events: BTreeMap::new(),
            report: Report {
                hash: 0xCBF2_9CE4_8422_2325,
                ..Report::default()
            },
            tick: 0,
            run_ticks,
            scenario,
        };
        sim.balance_states = sim
            .config
            .pools
            .iter()
            .map(|_| PoolState::default())
            .collect();
        sim.refresh_views();
        sim
    }

    fn now(&self) -> Instant {
        self.base + TICK * u32::try_from(self.tick).expect("tick fits u32")
    }

    fn view(&self, pool: usize, node: usize) -> NodeLoad {
        let h = &self.health[pool][node];
        NodeLoad {
            state: h.state(),
            inflight: self.inflight[pool][node],
            limit: self.node_limits[pool][node].limit(),
            latency_ewma: h.latency_ewma(),
            weight: h.weight(self.now()),
            id: node as u64,
        }
    }

    fn refresh_views(&mut self) {
        self.views = (0..self.health.len())
            .map(|p| (0..self.health[p].len()).map(|n| self.view(p, n)).collect())
            .collect();
    }

    fn refresh_node(&mut self, c: Candidate) {
        self.views[c.pool][c.node] = self.view(c.pool, c.node);
    }

    fn transition(&mut self, c: Candidate, t: Option<Transition>) {
        if let Some(t) = t {
            let truth = &self.world[c.pool][c.node];
            if t.to == NodeState::Down
                && truth.dead(self.tick).is_none()
                && truth
                    .fault(self.tick, |f| matches!(f, Fault::Flaky { .. }))
                    .is_none()
            {
                self.report.healthy_taken_down += 1;
            }
            self.report.transitions += 1;
            fnv(&mut self.report.hash, (c.pool * 1000 + c.node) as u64);
            fnv(&mut self.report.hash, t.to as u64);
        }
        self.refresh_node(c);
    }

    fn run(mut self) -> Report {
        while self.tick < self.run_ticks {
            self.step();
            self.tick += 1;
        }
        // Drain what is still in flight so every request is accounted for.
        while !self.events.is_empty() {
            self.step();
            self.tick += 1;
        }
        let r = &self.report;
        assert_eq!(
            r.requests,
            r.ok + r.client_errors,
            "every request ends exactly once"
        );
        self.report
    }

    fn step(&mut self) {
        let now = self.now();
        self.refresh_views();
        self.probes(now);
        if let Some(events) = self.events.remove(&self.tick) {
            for event in events {
                match event {
                    Event::Finish { req, node, outcome } => self.finish(req, node, outcome, now),
                    Event::Retry { req } => self.attempt(req),
                }
            }
        }
        if self.tick == STORM.1 - 1 {
            let limits: Vec<u32> = self.node_limits[0].iter().map(Aimd::limit).collect();
            self.report.storm_node_limit_mean_centi =
                limits.iter().map(|&l| u64::from(l)).sum::<u64>() * 100 / limits.len() as u64;
            self.report.storm_bucket_limit_min = self.bucket_limits[0]
                .iter()
                .map(Aimd::limit)
                .min()
                .unwrap_or(0);
        }
        if self.tick < self.run_ticks {
            for _ in 0..self.scenario.requests_per_tick {
                let req = self.new_request();
                self.report.requests += 1;
                self.budget.on_request(now);
                if !self.in_disaster() {
                    self.report.requests_outside_disasters += 1;
                }
                self.attempt(req);
            }
        }
        self.check_limits_and_liveness();
        // The budget bound, with the retries granted so far.
        let secs = self.tick as f64 * TICK.as_secs_f64();
        let up = &self.config.upstream;
        let bound = up.retry_ratio * self.report.requests as f64
            + f64::from(up.retry_floor_per_sec) * (secs + 1.0);
        assert!(
            self.report.retries as f64 <= bound + 1e-9,
            "tick {}: {} retries > budget {bound}",
            self.tick,
            self.report.retries
        );
    }

    /// Whether the scripted partition or storm (or their aftermath) is under way.
    fn in_disaster(&self) -> bool {
        (PARTITION.0..PARTITION.1 + SETTLE_TICKS).contains(&self.tick)
            || (STORM.0..STORM.1 + SETTLE_TICKS).contains(&self.tick)
    }

    fn new_request(&mut self) -> Request {
        let (method, body) = match self.rng.below(20) {
            0 => ("POST", BodyState::Buffered),
            1..=3 => ("PUT", BodyState::Buffered),
            4 => ("PUT", BodyState::NotYetSent),
            5 => ("HEAD", BodyState::Empty),
            _ => ("GET", BodyState::Empty),
        };
        let poison = self.scenario.poison_per_mille > 0
            && self.rng.below(1000) < self.scenario.poison_per_mille;
        if poison {
            self.report.poison_requests += 1;
        }
        // A working set of 10,000 objects, each asked for again and again.
        self.next_object = (self.next_object + 1) % 10_000;
        Request {
            method,
            body,
            bucket: self.rng.below(BUCKETS as u64) as usize,
            affinity: Affinity::of("bucket", &format!("obj-{}", self.next_object)),
            poison,
            attempts: Attempts::new(method, Params::from_upstream(&self.config.upstream)),
        }
    }

    fn probes(&mut self, now: Instant) {
        for pool in 0..self.health.len() {
            let interval_ticks =
                (self.config.pools[pool].health.interval.as_millis() / TICK.as_millis()) as u64;
            for node in 0..self.health[pool].len() {
                // Each node's probe has its own phase, as on a real appliance.
                if !(self.tick + node as u64 * 7).is_multiple_of(interval_ticks) {
                    continue;
                }
                let truth = &self.world[pool][node];
                let result = if truth.dead(self.tick).is_some() {
                    ProbeResult::Dead("connect refused".into())
                } else if truth.in_maintenance(self.tick) {
                    ProbeResult::Maintenance
                } else {
                    ProbeResult::Alive
                };
                let t = self.health[pool][node].probe(result, now);
                self.transition(Candidate { pool, node }, t);
            }
        }
    }

    /// Picks a node for `req` and starts the attempt, checking every routing invariant.
    fn attempt(&mut self, mut req: Request) {
        let chain = self.config.route(Some("bucket")).to_vec();
        let pools: Vec<PoolView<'_>> = chain
            .iter()
            .map(|&p| PoolView {
                pool: p,
                min_active: self.config.pools[p].min_active,
                nodes: &self.views[p],
                algorithm: self.config.pools[p].balance,
                state: &self.balance_states[p],
            })
            .collect();
        let rand = self.rng.next_u64();
        let bucket = req.bucket;
        let bucket_full = |c: Candidate| {
            self.bucket_inflight[c.pool][bucket] >= self.bucket_limits[c.pool][bucket].limit()
        };
        let exclude = |c: Candidate| req.attempts.tried().contains(&c) || bucket_full(c);
        let Some(c) = pick(&pools, exclude, rand, Some(req.affinity)) else {
            self.report.no_node += 1;
            drop(pools);
            // Relaying a held failure answer or weir's own error: the client sees an error.
            let _ = req.attempts.on_no_node();
            self.request_failed(req, self.now());
            return;
        };
        let eligible = |c: Candidate, state: NodeState| {
            let v = &self.views[c.pool][c.node];
            v.state == state && v.inflight < v.limit && !exclude(c)
        };
        // Invariants of the choice.
        let v = self.views[c.pool][c.node];
        let tick = self.tick;
        let note = || format!("tick {tick} pick {c:?} {v:?}");
        assert!(
            v.state.is_routable(),
            "{}: routed to a node held {}",
            note(),
            v.state
        );
        assert!(v.inflight < v.limit, "{}: over the node limit", note());
        assert!(!bucket_full(c), "{}: over the pool+bucket limit", note());
        assert!(
            !req.attempts.tried().contains(&c),
            "{}: retry to a node already tried",
            note()
        );
        let candidates =
            |p: usize| (0..self.views[p].len()).map(move |n| Candidate { pool: p, node: n });
        if v.state == NodeState::Degraded {
            let any_up = chain
                .iter()
                .flat_map(|&p| candidates(p))
                .any(|c| eligible(c, NodeState::Up));
            assert!(
                !any_up,
                "{}: degraded node while an up node was eligible",
                note()
            );
        }
        let qualifies = |p: usize| {
            self.views[p]
                .iter()
                .filter(|v| v.state == NodeState::Up)
                .count()
                >= self.config.pools[p].min_active
        };
        if v.state == NodeState::Up {
            let position = chain
                .iter()
                .position(|&p| p == c.pool)
                .expect("pool in chain");
            for &earlier in &chain[..position] {
                let better =
                    qualifies(earlier) && candidates(earlier).any(|c| eligible(c, NodeState::Up));
                assert!(!better, "{}: pool {earlier} qualifies and had room", note());
            }
        }
        drop(pools);

        fnv(&mut self.report.hash, self.tick);
        fnv(&mut self.report.hash, (c.pool * 1000 + c.node) as u64);
        let slot = match self.tick {
            t if (PARTITION.0 + 300..PARTITION.1).contains(&t) => {
                Some(&mut self.report.picks_by_pool_partition)
            }
            t if (AFTER.0..AFTER.1).contains(&t) => Some(&mut self.report.picks_by_pool_after),
            _ => None,
        };
        if let Some(counts) = slot {
            let group = chain
                .iter()
                .position(|&p| p == c.pool)
                .expect("pool in chain");
            counts[group] += 1;
        }

        self.inflight[c.pool][c.node] += 1;
        self.bucket_inflight[c.pool][bucket] += 1;
        self.refresh_node(c);
        req.attempts.start(c);
        if req.poison {
            self.report.poison_attempts += 1;
        }
        let (outcome, after) = self.outcome(c, req.poison, req.body);
        self.events
            .entry(self.tick + after)
            .or_default()
            .push(Event::Finish {
                req,
                node: c,
                outcome,
            });
    }

    /// What the node really does with a request sent now, and after how many ticks.
    fn outcome(&mut self, c: Candidate, poison: bool, body: BodyState) -> (Outcome, u64) {
        let failed = |how| Outcome::Failed { how, body };
        let answer = |status, code, retry_after, latency| {
            Outcome::Answered(Answer {
                status,
                code,
                retry_after,
                latency,
                held: true,
                request_complete: true,
                body,
            })
        };
        let truth = &self.world[c.pool][c.node];
        if let Some(blackhole) = truth.dead(self.tick) {
            return if blackhole {
                (failed(Failed::Timeout), BLACKHOLE_TICKS)
            } else {
                (failed(Failed::Connect), 1)
            };
        }
        if poison {
            // It reads the head, refuses it and closes the connection.
            return (failed(Failed::Reset), 1);
        }
        let mut latency = truth.latency_ticks;
        if let Some(Fault::Slow { factor }) =
            truth.fault(self.tick, |f| matches!(f, Fault::Slow { .. }))
        {
            latency *= factor;
        }
        let head = TICK * u32::try_from(latency).expect("latency fits");
        let roll = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        if let Some(Fault::Throttle { ratio }) =
            truth.fault(self.tick, |f| matches!(f, Fault::Throttle { .. }))
        {
            if roll < ratio {
                let retry_after = (self.rng.below(4) == 0).then(|| Duration::from_millis(100));
                return (answer(503, Some(S3Code::SlowDown), retry_after, TICK), 1);
            }
        }
        if let Some(Fault::Flaky { ratio }) =
            truth.fault(self.tick, |f| matches!(f, Fault::Flaky { .. }))
        {
            if roll < ratio {
                return (
                    answer(500, Some(S3Code::InternalError), None, head),
                    latency,
                );
            }
        }
        (answer(200, None, None, head), latency + self.rng.below(20))
    }

    fn finish(&mut self, mut req: Request, c: Candidate, outcome: Outcome, now: Instant) {
        self.inflight[c.pool][c.node] -= 1;
        self.bucket_inflight[c.pool][req.bucket] -= 1;
        let env = Env {
            now,
            rand: self.rng.next_u64(),
            budget: &mut self.budget,
        };
        let step = req.attempts.on_outcome(c, outcome, env);
        for (node, obs) in step.reports {
            let t = self.health[node.pool][node.node].observe(&obs, now);
            self.transition(node, t);
        }
        match step.limit {
            Some(Limit::Success) => {
                self.node_limits[c.pool][c.node].on_success();
                self.bucket_limits[c.pool][req.bucket].on_success();
            }
            Some(Limit::Throttle) => {
                self.node_limits[c.pool][c.node].on_throttle(now);
                self.bucket_limits[c.pool][req.bucket].on_throttle(now);
            }
            None => {}
        }
        self.refresh_node(c);
        let succeeded = matches!(outcome, Outcome::Answered(a) if (200..300).contains(&a.status));
        match step.decision {
            Decision::Relay if succeeded => self.report.ok += 1,
            Decision::Retry { wait } => {
                // End to end: a POST goes again only if nothing reached a node.
                if req.method == "POST" {
                    assert!(
                        matches!(
                            outcome,
                            Outcome::Failed {
                                how: Failed::Connect,
                                ..
                            }
                        ),
                        "tick {}: POST replayed after {outcome:?}",
                        self.tick
                    );
                }
                self.report.retries += 1;
                let delay = wait.as_millis().div_ceil(TICK.as_millis()) as u64;
                self.events
                    .entry(self.tick + delay.max(1))
                    .or_default()
                    .push(Event::Retry { req });
            }
            // A failure answer relayed, weir's own error, or a reset: the client sees it.
            Decision::Relay | Decision::GiveUp(_) | Decision::Resume { .. } | Decision::Abort => {
                self.request_failed(req, now)
            }
        }
    }

    /// A request ends failed: a failure still held is reported as unconfirmed.
    fn request_failed(&mut self, mut req: Request, now: Instant) {
        if let Some((node, obs)) = req.attempts.finish() {
            let t = self.health[node.pool][node.node].observe_unconfirmed(&obs, now);
            self.transition(node, t);
        }
        if !req.poison {
            self.report.innocent_errors += 1;
        }
        self.client_error();
    }

    fn client_error(&mut self) {
        self.report.client_errors += 1;
        if !self.in_disaster() {
            self.report.errors_outside_disasters += 1;
        }
    }

    fn check_limits_and_liveness(&self) {
        let (lo, hi) = (
            self.config.upstream.node_concurrency_min,
            self.config.upstream.node_concurrency_max,
        );
        for (p, pool) in self.config.pools.iter().enumerate() {
            let interval = (pool.health.interval.as_millis() / TICK.as_millis()) as u64;
            let (rise, fall) = (u64::from(pool.health.rise), u64::from(pool.health.fall));
            for n in 0..pool.nodes.len() {
                let limit = self.node_limits[p][n].limit();
                assert!(
                    (lo..=hi).contains(&limit),
                    "node limit {limit} outside {lo}..={hi}"
                );
                let state = self.health[p][n].state();
                let truth = &self.world[p][n];
                let at = || format!("tick {} node {p}/{n} {state} {:?}", self.tick, truth.faults);
                if let Some(since) = truth.held_since(self.tick, |t| truth.dead(t).is_some()) {
                    if self.tick - since >= (fall + 1) * interval {
                        assert_eq!(state, NodeState::Down, "{}: dead since {since}", at());
                    }
                }
                if let Some(since) = truth.held_since(self.tick, |t| truth.in_maintenance(t)) {
                    if self.tick - since > interval {
                        assert_eq!(
                            state,
                            NodeState::Draining,
                            "{}: in maintenance since {since}",
                            at()
                        );
                    }
                }
                // Flaky nodes may be taken down by their failed requests at any time.
                let healthy = |t: u64| {
                    truth.dead(t).is_none()
                        && !truth.in_maintenance(t)
                        && truth
                            .fault(t, |f| matches!(f, Fault::Flaky { .. }))
                            .is_none()
                };
                if let Some(since) = truth.held_since(self.tick, healthy) {
                    if self.tick - since >= (rise + 1) * interval {
                        assert!(state.is_routable(), "{}: healthy since {since}", at());
                    }
                }
            }
            for b in 0..BUCKETS {
                let (blo, bhi) = self.bucket_limits[p][b].bounds();
                let limit = self.bucket_limits[p][b].limit();
                assert!(blo >= 1 && (blo..=bhi).contains(&limit));
            }
        }
    }
}

fn sim_seed(seed: u64, run_ticks: u64) -> Report {
    Sim::new(seed, run_ticks, Scenario::sites()).run()
}

/// Mean node limit (in hundredths) the storm must bring the preferred site's nodes below,
/// from 32: how many throttle answers each node gets depends on how the choice within the
/// pool spreads requests, so algorithms other than `p2c` (which prefers the fast nodes the
/// storm throttles) get a looser bound; it still takes a shrink to under a third.
const STORM_LIMIT_CENTI_P2C: u64 = 800;
/// [`STORM_LIMIT_CENTI_P2C`] for the other algorithms.
const STORM_LIMIT_CENTI_OTHERS: u64 = 1_000;

fn check_scenario(seed: u64, r: &Report) {
    check_scenario_with(seed, r, STORM_LIMIT_CENTI_P2C);
}

fn check_scenario_with(seed: u64, r: &Report, storm_limit_centi: u64) {
    let during = r.picks_by_pool_partition;
    let after = r.picks_by_pool_after;
    let share =
        |counts: [u64; 3], i: usize| counts[i] as f64 / counts.iter().sum::<u64>().max(1) as f64;
    // site-a (group 0) lost 85% of its nodes, below min_active: site-b takes over.
    assert!(
        share(during, 1) > 0.9,
        "seed {seed}: partition picks by group {during:?}"
    );
    // After recovery and slow start, site-a serves again.
    assert!(
        share(after, 0) > 0.9,
        "seed {seed}: post-recovery picks by group {after:?}"
    );
    // Outside the scripted disasters, clients rarely see an error (random flaps and
    // flaky nodes are absorbed by retries within the budget).
    let rate = r.errors_outside_disasters as f64 / r.requests_outside_disasters.max(1) as f64;
    assert!(
        rate < 0.01,
        "seed {seed}: client error rate {rate:.4} outside the partition ({r:?})"
    );
    assert!(
        r.transitions > 100,
        "seed {seed}: the world should have moved: {r:?}"
    );
    // The SlowDown storm shrank the preferred site's limits (backpressure) — node limits
    // from 32 towards 2, and the shared pool+bucket limits too — without marking any
    // node down (the liveness invariant above checks that).
    assert!(
        r.storm_node_limit_mean_centi < storm_limit_centi,
        "seed {seed}: node limits after the storm: {r:?}"
    );
    assert!(
        r.storm_bucket_limit_min < 32 * 50,
        "seed {seed}: bucket limits after the storm: {r:?}"
    );
}

#[test]
fn invariants_hold_across_seeds() {
    let seeds: Vec<u64> = match std::env::var("WEIR_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("WEIR_SIM_SEED is a u64")],
        Err(_) => vec![1, 2, 3],
    };
    for seed in seeds {
        let r = sim_seed(seed, RUN_TICKS);
        println!("seed {seed}: {r:?}");
        check_scenario(seed, &r);
    }
}

/// The chain walk is the same whatever picks within a pool: the scenario, with every
/// pool balanced by each other algorithm, keeps every invariant and the failover.
#[test]
fn invariants_hold_for_every_algorithm() {
    for (name, algorithm) in Algorithm::ALL {
        if algorithm == Algorithm::default() {
            continue; // the scenario above
        }
        let mut scenario = Scenario::sites();
        scenario.config = scenario
            .config
            .replace("[[pool]]\n", &format!("[[pool]]\nbalance = \"{name}\"\n"));
        let r = Sim::new(1, RUN_TICKS, scenario).run();
        println!("{name} seed 1: {r:?}");
        check_scenario_with(1, &r, STORM_LIMIT_CENTI_OTHERS);
    }
}

#[test]
fn any_seed_replays_identically() {
    // A shorter run than the scenario test: replay is about determinism, not scale.
    const REPLAY_TICKS: u64 = 2_000;
    let a = sim_seed(42, REPLAY_TICKS);
    let b = sim_seed(42, REPLAY_TICKS);
    assert_eq!(a, b);
    let c = sim_seed(43, REPLAY_TICKS);
    assert_ne!(a.hash, c.hash, "different seeds, different runs");
}

/// Three nodes and nothing wrong with them, with queries of death mixed into the traffic
/// (the appliance's end-to-end test sends the real thing: a head the nodes refuse by
/// closing the connection).
fn poison_config() -> String {
    r#"
[upstream]
retry_ratio = 0.5
retry_floor_per_sec = 50
attempts_max = 3
[[pool]]
name = "site"
nodes = ["n-0.example:9000", "n-1.example:9000", "n-2.example:9000"]
health = { interval = "1s", timeout = "500ms", rise = 2, fall = 3, passive_fall = 5 }
[[route]]
bucket = "*"
pool = "site"
"#
    .to_string()
}

#[test]
fn poison_requests_never_take_a_healthy_node_down() {
    for seed in [1, 2, 3, 4] {
        // 30% of 200 requests/s are poison: far more than passive_fall per node per
        // second, so counting them against the nodes would take the pool down at once.
        let scenario = Scenario {
            config: poison_config(),
            faults: false,
            requests_per_tick: 2,
            poison_per_mille: 300,
        };
        let r = Sim::new(seed, 3_000, scenario).run();
        println!("poison seed {seed}: {r:?}");
        assert!(r.poison_requests > 1_000, "seed {seed}: {r:?}");
        assert_eq!(r.healthy_taken_down, 0, "seed {seed}: {r:?}");
        assert_eq!(
            r.transitions, 0,
            "seed {seed}: nodes never even degrade: {r:?}"
        );
        assert_eq!(r.innocent_errors, 0, "seed {seed}: {r:?}");
        // Each query of death reached at most two nodes.
        assert!(
            r.poison_attempts <= 2 * r.poison_requests,
            "seed {seed}: {r:?}"
        );
        assert_eq!(r.client_errors, r.poison_requests, "seed {seed}: {r:?}");
    }
}
