//! Per-node health: the state machine that decides whether a storage node gets traffic.
//!
//! Owned by one core per node (node *i* by core *i mod N*, docs/design.md,
//! "Thread-per-core, shared-nothing"): that core runs the node's probe, feeds the result to
//! [`NodeHealth::probe`], merges the passive reports other cores send it through
//! [`NodeHealth::observe`], and broadcasts every [`Transition`] so each core routes from
//! its own copy of the state. Time is passed in.
//!
//! ```text
//!            failure ratio EWMA ≥ 25%            ≥ fall failed probes,
//!            or latency EWMA > degraded_latency  or ≥ passive_fall failed requests
//!     ┌────┐ ──────────────────────────► ┌──────────┐ ───────────────────► ┌──────┐
//!     │ Up │                             │ Degraded │                      │ Down │
//!     └────┘ ◄────────────────────────── └──────────┘                      └──────┘
//!       ▲  │   ratio < 10% and latency fine                                  │  ▲
//!       │  └─────────────── ≥ fall failed probes / ≥ passive_fall ───────────┘  │
//!       └──────────────────── ≥ rise alive probes (slow start begins) ──────────┘
//!   probe says maintenance (from any state) ──► Draining ── ≥ rise alive probes ──► Up
//!                                               Draining ── ≥ fall failed probes ──► Down
//! ```
//!
//! Rules worth knowing:
//! - Only probes bring a node back (Down/Draining → Up): a late success from a request
//!   that started before the node went down proves little.
//! - Throttling ([`Observation::Throttled`]) is not a failure and does not touch health;
//!   it shrinks the node's concurrency limit instead (`crate::aimd`).
//! - 4xx answers are never reported; 501 and 505 describe the request, not the node, and
//!   count as answers.
//! - Draining ignores passive observations for its state: in-flight requests finish, and
//!   their outcome says nothing about whether maintenance is over.

pub mod admin;
mod blame;
mod params;
mod response;

#[cfg(test)]
mod tests;

use std::fmt;
use std::time::{Duration, Instant};

pub use blame::{Blame, Reports};
pub use params::{
    ExpectStatus, HealthParams, HealthPreset, PresetProbe, ProbeMethod, PROBE_BODY_BYTES_MAX,
};
pub use response::{
    classify, classify_response, parse_retry_after, s3_error_code, RETRY_AFTER_MAX,
};

use crate::retry::Failure;

/// Weight of a node at the start of its slow-start ramp.
pub const SLOW_START_WEIGHT_MIN: f64 = 0.1;
/// Failure-ratio EWMA at or above which an up node becomes degraded. With 1/16 smoothing,
/// five failures in a row from a clean record get there (as `passive_fall`'s default
/// takes it down); a steady 30% error rate does, an evenly spread 20% does not.
const DEGRADED_FAILURE_RATIO: f64 = 0.25;
/// Failure-ratio EWMA below which a degraded node is up again (hysteresis against
/// flapping at the threshold).
const RECOVERED_FAILURE_RATIO: f64 = 0.10;
/// Smoothing of the latency EWMA: each sample moves it 1/8 of the way, as TCP's SRTT
/// does, so one outlier does not flip a state.
const LATENCY_EWMA_SHIFT: u32 = 3;
/// Smoothing of the failure-ratio EWMA: 1/16 per sample, slower than latency because
/// outcomes are binary and noisier.
const RATIO_EWMA_SHIFT: u32 = 4;
/// A latency-degraded node recovers when its EWMA falls below this fraction of
/// `degraded_latency` (hysteresis).
const LATENCY_RECOVER_FRACTION: f64 = 0.8;
/// A latency-degraded node that got no request for this many probe intervals forgets
/// its latency, so it is tried again instead of being judged forever on old samples.
const LATENCY_FORGET_INTERVALS: u32 = 3;

/// A node's routing state; `Display` gives the lowercase metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// Healthy: gets traffic.
    Up,
    /// Partly failing or slow: gets traffic only when no up node is eligible.
    Degraded,
    /// Failed: no traffic until probes succeed `rise` times.
    Down,
    /// In maintenance: no new requests, in-flight ones finish.
    Draining,
}

/// What the request path saw from a node, reported to the node's owner core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// A response head arrived with a status that is not a failure; `latency` is the
    /// time from the request being sent to the response head.
    Success {
        /// Time to the response head.
        latency: Duration,
    },
    /// The TCP connect failed or timed out.
    ConnectFailed,
    /// The connection was reset or closed before (or while) the response arrived.
    Reset,
    /// A first-byte or idle timeout expired.
    Timeout,
    /// The response was malformed.
    BadResponse,
    /// A 5xx that is not throttling.
    ServerError {
        /// The status code.
        status: u16,
    },
    /// `503 SlowDown` and friends, or `429`: backpressure, not a failure.
    Throttled {
        /// The node's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
}

/// The outcome of one active probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    /// The node answered as expected.
    Alive,
    /// The node did not answer, or answered wrongly; the text says how (for logs).
    Dead(String),
    /// The node says it is in maintenance: drain it.
    Maintenance,
}

/// A change of a node's state, to broadcast to every core and log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// State before.
    pub from: NodeState,
    /// State after.
    pub to: NodeState,
    /// Why, for logs and `/nodes`.
    pub reason: String,
}

/// One node's health state machine. See the module docs for the transitions.
#[derive(Debug, Clone)]
pub struct NodeHealth {
    state: NodeState,
    rise: u32,
    fall: u32,
    passive_fall: u32,
    degraded_latency: Option<Duration>,
    slow_start: Duration,
    interval: Duration,
    /// Consecutive alive probes (reset by any other probe result).
    probe_ok_streak: u32,
    /// Consecutive failed probes (reset by any answer that is not `Dead`).
    probe_fail_streak: u32,
    /// Consecutive failed requests (reset by a successful request).
    passive_fail_streak: u32,
    /// EWMA of "this request or probe failed", 0..=1.
    failure_ratio: f64,
    /// EWMA of response-head latency in nanoseconds; `None` until the first sample.
    latency_ewma_nanos: Option<u64>,
    /// When the last request outcome (success or failure) was observed.
    last_observed: Option<Instant>,
    /// When the node last came back up, for the slow-start ramp.
    recovered_at: Option<Instant>,
    last_transition: Option<(Instant, String)>,
}

// === impl NodeState ===

/// Slow-start weight of a node that came back up `recovered_for` ago (`None`: it never
/// went down): ramps linearly from [`SLOW_START_WEIGHT_MIN`] to 1.0 over `slow_start`.
/// Shared by the owner's state machine and every core's routing view, so both agree.
pub fn slow_start_weight(recovered_for: Option<Duration>, slow_start: Duration) -> f64 {
    let Some(elapsed) = recovered_for else {
        return 1.0;
    };
    if slow_start.is_zero() {
        return 1.0;
    }
    let progress = elapsed.as_secs_f64() / slow_start.as_secs_f64();
    (SLOW_START_WEIGHT_MIN + (1.0 - SLOW_START_WEIGHT_MIN) * progress)
        .clamp(SLOW_START_WEIGHT_MIN, 1.0)
}

impl NodeState {
    /// The lowercase name used as a metric label and in `/nodes`.
    pub const fn as_str(self) -> &'static str {
        match self {
            NodeState::Up => "up",
            NodeState::Degraded => "degraded",
            NodeState::Down => "down",
            NodeState::Draining => "draining",
        }
    }

    /// Whether new requests may be sent to a node in this state.
    pub const fn is_routable(self) -> bool {
        matches!(self, NodeState::Up | NodeState::Degraded)
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Observation ===

impl Observation {
    /// Whether this counts against the node's health. Throttling and 501/505 (which
    /// describe the request, not the node) do not.
    pub const fn is_failure(&self) -> bool {
        match self {
            Observation::Success { .. } | Observation::Throttled { .. } => false,
            Observation::ServerError { status } => !matches!(*status, 501 | 505),
            Observation::ConnectFailed
            | Observation::Reset
            | Observation::Timeout
            | Observation::BadResponse => true,
        }
    }

    /// The retry-relevant failure this observation stands for, when it happened before a
    /// response started (the caller knows whether it did); `None` for a success.
    pub const fn failure(&self) -> Option<Failure> {
        match self {
            Observation::Success { .. } => None,
            Observation::ConnectFailed => Some(Failure::Connect),
            Observation::Reset => Some(Failure::ResetBeforeResponse),
            Observation::Timeout => Some(Failure::TimeoutBeforeResponse),
            Observation::BadResponse => Some(Failure::BadResponse),
            Observation::ServerError { .. } => Some(Failure::ServerError),
            Observation::Throttled { .. } => Some(Failure::Throttled),
        }
    }

    /// Short text for transition reasons and logs.
    fn describe(&self) -> String {
        match self {
            Observation::Success { .. } => "success".to_owned(),
            Observation::ConnectFailed => "connect failed".to_owned(),
            Observation::Reset => "connection reset".to_owned(),
            Observation::Timeout => "timeout".to_owned(),
            Observation::BadResponse => "malformed response".to_owned(),
            Observation::ServerError { status } => format!("status {status}"),
            Observation::Throttled { .. } => "throttled".to_owned(),
        }
    }
}

// === impl NodeHealth ===

impl NodeHealth {
    /// A node in state `Up`. Starting optimistic is deliberate: starting down would refuse
    /// all traffic for `rise × interval` after every start, and a node that really is dead
    /// costs at most a retried request before the first probe or `passive_fall` failed
    /// requests correct it. No slow start at creation: every node starts cold together,
    /// so ramping them all would change nothing but the total.
    pub fn new(params: &HealthParams, now: Instant) -> Self {
        let _ = now; // Kept in the signature so a future creation-time ramp needs no API change.
        NodeHealth {
            state: NodeState::Up,
            rise: params.rise.max(1),
            fall: params.fall.max(1),
            passive_fall: params.passive_fall,
            degraded_latency: params.degraded_latency.filter(|d| !d.is_zero()),
            slow_start: params.slow_start,
            interval: params.interval,
            probe_ok_streak: 0,
            probe_fail_streak: 0,
            passive_fail_streak: 0,
            failure_ratio: 0.0,
            latency_ewma_nanos: None,
            last_observed: None,
            recovered_at: None,
            last_transition: None,
        }
    }

    /// A state machine for a node that already has a known state (after a config reload
    /// moved the node to another owner or changed its probe settings): it continues from
    /// `state`, as if it had entered it at `since`, with fresh streaks.
    pub fn restore(params: &HealthParams, state: NodeState, since: Instant, reason: &str) -> Self {
        let mut h = NodeHealth::new(params, since);
        h.state = state;
        if state != NodeState::Up {
            h.last_transition = Some((since, reason.to_string()));
        }
        h
    }

    /// Merges one passive report from the request path (any core's).
    pub fn observe(&mut self, obs: &Observation, now: Instant) -> Option<Transition> {
        match obs {
            // Backpressure: the concurrency limit reacts, health does not.
            Observation::Throttled { .. } => return None,
            Observation::Success { latency } => {
                self.last_observed = Some(now);
                self.passive_fail_streak = 0;
                self.record_outcome(false);
                self.record_latency(*latency);
            }
            failure if failure.is_failure() => {
                self.last_observed = Some(now);
                self.passive_fail_streak = self.passive_fail_streak.saturating_add(1);
                self.record_outcome(true);
            }
            // A 501/505: the node answered; no latency sample, since the request failed
            // early for its own reasons.
            _ => {
                self.last_observed = Some(now);
                self.passive_fail_streak = 0;
                self.record_outcome(false);
            }
        }
        match self.state {
            NodeState::Up | NodeState::Degraded => {
                if obs.is_failure()
                    && self.passive_fall > 0
                    && self.passive_fail_streak >= self.passive_fall
                {
                    let reason = format!(
                        "{} consecutive failed requests (last: {})",
                        self.passive_fail_streak,
                        obs.describe()
                    );
                    return self.go(NodeState::Down, reason, now);
                }
                self.reassess_degraded(now)
            }
            NodeState::Down | NodeState::Draining => None,
        }
    }

    /// Merges a failure that may belong to the request rather than the node (see
    /// [`Blame`]): a request failed here once and could not show, on another node, whose
    /// failure it was. Alone it says nothing about the node, so it counts only when it
    /// follows other failed requests (the node's streak of failures is already running);
    /// a poison request mixed into healthy traffic never adds up to a node going down.
    pub fn observe_unconfirmed(&mut self, obs: &Observation, now: Instant) -> Option<Transition> {
        if !obs.is_failure() || self.passive_fail_streak == 0 {
            return None;
        }
        self.observe(obs, now)
    }

    /// Applies one active probe result.
    pub fn probe(&mut self, result: ProbeResult, now: Instant) -> Option<Transition> {
        match result {
            ProbeResult::Alive => {
                self.probe_fail_streak = 0;
                self.probe_ok_streak = self.probe_ok_streak.saturating_add(1);
                self.record_outcome(false);
                match self.state {
                    NodeState::Down | NodeState::Draining => {
                        if self.probe_ok_streak >= self.rise {
                            let reason =
                                format!("{} consecutive probes alive", self.probe_ok_streak);
                            self.reset_evidence();
                            self.recovered_at = Some(now);
                            return self.go(NodeState::Up, reason, now);
                        }
                        None
                    }
                    NodeState::Degraded => {
                        self.forget_stale_latency(now);
                        self.reassess_degraded(now)
                    }
                    NodeState::Up => None,
                }
            }
            ProbeResult::Dead(why) => {
                self.probe_ok_streak = 0;
                self.probe_fail_streak = self.probe_fail_streak.saturating_add(1);
                self.record_outcome(true);
                match self.state {
                    NodeState::Up | NodeState::Degraded | NodeState::Draining => {
                        if self.probe_fail_streak >= self.fall {
                            let reason = format!(
                                "{} consecutive probes failed (last: {why})",
                                self.probe_fail_streak
                            );
                            return self.go(NodeState::Down, reason, now);
                        }
                        if self.state == NodeState::Draining {
                            return None;
                        }
                        self.reassess_degraded(now)
                    }
                    NodeState::Down => None,
                }
            }
            ProbeResult::Maintenance => {
                // It answered, so it is not failing; leaving maintenance takes `rise`
                // alive probes like any recovery.
                self.probe_fail_streak = 0;
                self.probe_ok_streak = 0;
                if self.state == NodeState::Draining {
                    return None;
                }
                self.go(
                    NodeState::Draining,
                    "probe reports maintenance".to_owned(),
                    now,
                )
            }
        }
    }

    /// The current state.
    pub fn state(&self) -> NodeState {
        self.state
    }

    /// When and why the state last changed; `None` if it never did.
    pub fn last_transition(&self) -> Option<(Instant, &str)> {
        self.last_transition
            .as_ref()
            .map(|(at, reason)| (*at, reason.as_str()))
    }

    /// Smoothed response-head latency; `None` before the first success (or after a
    /// recovery, when old samples no longer describe the node).
    pub fn latency_ewma(&self) -> Option<Duration> {
        self.latency_ewma_nanos.map(Duration::from_nanos)
    }

    /// Balancer weight: ramps linearly from [`SLOW_START_WEIGHT_MIN`] to 1.0 over
    /// `slow_start` after the node came back up, so a cold node is not stampeded; 1.0
    /// otherwise. Never below the minimum, so it is always safe to divide by.
    pub fn weight(&self, now: Instant) -> f64 {
        slow_start_weight(
            self.recovered_at
                .map(|since| now.saturating_duration_since(since)),
            self.slow_start,
        )
    }

    /// Smoothed failure ratio of recent requests and probes (0..=1), for `/nodes`.
    pub fn failure_ratio(&self) -> f64 {
        self.failure_ratio
    }

    // --- internals ---

    /// Changes state and records why.
    fn go(&mut self, to: NodeState, reason: String, now: Instant) -> Option<Transition> {
        let from = self.state;
        if from == to {
            return None;
        }
        self.state = to;
        self.last_transition = Some((now, reason.clone()));
        Some(Transition { from, to, reason })
    }

    /// Up ↔ Degraded from the failure ratio and latency, with hysteresis.
    fn reassess_degraded(&mut self, now: Instant) -> Option<Transition> {
        match self.state {
            NodeState::Up => {
                if self.failure_ratio >= DEGRADED_FAILURE_RATIO {
                    let reason = format!("failure ratio {:.0}%", self.failure_ratio * 100.0);
                    return self.go(NodeState::Degraded, reason, now);
                }
                if let (Some(limit), Some(latency)) = (self.degraded_latency, self.latency_ewma()) {
                    if latency > limit {
                        let reason = format!("latency {latency:?} above {limit:?}");
                        return self.go(NodeState::Degraded, reason, now);
                    }
                }
                None
            }
            NodeState::Degraded => {
                let ratio_ok = self.failure_ratio < RECOVERED_FAILURE_RATIO;
                let latency_ok = match (self.degraded_latency, self.latency_ewma()) {
                    (Some(limit), Some(latency)) => {
                        latency.as_secs_f64() < limit.as_secs_f64() * LATENCY_RECOVER_FRACTION
                    }
                    _ => true,
                };
                if ratio_ok && latency_ok {
                    let reason = format!(
                        "recovered (failure ratio {:.0}%)",
                        self.failure_ratio * 100.0
                    );
                    return self.go(NodeState::Up, reason, now);
                }
                None
            }
            NodeState::Down | NodeState::Draining => None,
        }
    }

    /// One sample of the failure-ratio EWMA.
    fn record_outcome(&mut self, failed: bool) {
        let sample = if failed { 1.0 } else { 0.0 };
        self.failure_ratio += (sample - self.failure_ratio) / f64::from(1u32 << RATIO_EWMA_SHIFT);
    }

    /// One sample of the latency EWMA, in integer nanoseconds so replays are exact.
    fn record_latency(&mut self, latency: Duration) {
        let sample = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency_ewma_nanos = Some(match self.latency_ewma_nanos {
            None => sample,
            Some(old) => old - (old >> LATENCY_EWMA_SHIFT) + (sample >> LATENCY_EWMA_SHIFT),
        });
    }

    /// A latency-degraded node gets no traffic while up nodes exist, so its EWMA would
    /// never move again; after a few quiet probe intervals it is forgotten and the node
    /// is tried afresh (and degraded again quickly if it is still slow).
    fn forget_stale_latency(&mut self, now: Instant) {
        let quiet = self.interval.saturating_mul(LATENCY_FORGET_INTERVALS);
        let stale = self
            .last_observed
            .is_none_or(|at| now.saturating_duration_since(at) >= quiet);
        if stale {
            self.latency_ewma_nanos = None;
        }
    }

    /// Evidence from before a recovery does not describe the recovered node.
    fn reset_evidence(&mut self) {
        self.passive_fail_streak = 0;
        self.probe_fail_streak = 0;
        self.failure_ratio = 0.0;
        self.latency_ewma_nanos = None;
    }
}
