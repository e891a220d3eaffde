//! Every metric weir exports, in one place (names are listed for operators in
//! `docs/metrics.md`). Counters are per core: each shard is the only writer of its own
//! `CoreMetrics`, so an update is a relaxed load and store on a cache line no other core
//! writes — no shared atomic read-modify-write on the request path. The control
//! listeners (`crate::admin`) sum the cores at scrape time, and render what they gathered
//! from the cores (nodes, flows) with the functions at the end of this file.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use weir_policy::health::NodeState;

use crate::bus::NodeReport;
use crate::flows::{json_str, FlowReport};

/// Status classes counted for requests.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Statuses weir itself answers when it rejects a request before any node sees it.
pub const REJECT_STATUSES: [u16; 9] = [400, 408, 411, 413, 417, 431, 501, 505, 0];

/// `reason` labels of `weir_auth_failures_total`: every `SigV4Error::metric_reason`,
/// then the edge's own refusals (`crate::identity`). Unknown reasons count as `other`.
pub const AUTH_FAILURE_REASONS: [&str; 32] = [
    "header_malformed",
    "query_malformed",
    "unsupported_algorithm",
    "multiple_auth",
    "unsigned",
    "unknown_key",
    "bad_signature",
    "bad_chunk_signature",
    "skewed",
    "expired",
    "not_yet_valid",
    "missing_date",
    "headers_not_signed",
    "missing_content_sha256",
    "invalid_content_sha256",
    "invalid_uri",
    "malformed_chunk",
    "chunk_too_large",
    "decoded_length_mismatch",
    "unsignable",
    "form_malformed",
    "form_too_large",
    "form_not_resignable",
    "policy_malformed",
    "policy_expired",
    "policy_condition",
    "security_token",
    "bucket_denied",
    "pool_denied",
    "ambiguous_target",
    "invalid_bucket_name",
    "other",
];

/// `reason` labels of `weir_tls_handshake_failures_total` (`weir_io::tls::Failure`).
pub const TLS_FAILURE_REASONS: [&str; 7] = [
    "timeout",
    "not_tls",
    "unknown_sni",
    "bad_certificate",
    "protocol",
    "io",
    "ktls",
];
/// `side` labels of the TLS metrics: weir's listeners, and its connections to nodes.
pub const TLS_SIDES: [&str; 2] = ["client", "upstream"];
/// `path` labels of `weir_tls_connections_total` (`weir_io::tls::TlsPath`).
pub const TLS_PATHS: [&str; 2] = ["ktls", "userspace"];

/// Direction of a body: `upload` is client → node, `download` node → client.
#[derive(Clone, Copy)]
pub enum Direction {
    /// Client to node.
    Upload = 0,
    /// Node to client.
    Download = 1,
}

/// One core's counters. Written only by that core.
#[repr(align(128))]
#[derive(Default)]
pub struct CoreMetrics {
    requests: [AtomicU64; 5],
    rejected: [AtomicU64; 9],
    /// [direction][0 = splice, 1 = copy]
    body_bytes: [[AtomicU64; 2]; 2],
    connections_accepted: AtomicU64,
    /// [0 = global cap, 1 = per-client-IP cap]
    connections_refused: [AtomicU64; 2],
    connections_active: AtomicU64,
    upstream_connects: AtomicU64,
    upstream_reuses: AtomicU64,
    upstream_errors: AtomicU64,
    upstream_retries: AtomicU64,
    requests_in_flight: AtomicU64,
    throttled: AtomicU64,
    access_log_dropped: AtomicU64,
    /// [0 = resumed, 1 = resume failed]
    resumes: [AtomicU64; 2],
    /// By `AUTH_FAILURE_REASONS` index.
    auth_failures: [AtomicU64; AUTH_FAILURE_REASONS.len()],
    tls_connections: [[AtomicU64; TLS_PATHS.len()]; TLS_SIDES.len()],
    tls_failures: [[AtomicU64; TLS_FAILURE_REASONS.len()]; TLS_SIDES.len()],
}

/// Single-writer increment: the owning core is the only writer, so load+store is exact and
/// avoids the locked read-modify-write of `fetch_add`.
#[inline]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl CoreMetrics {
    /// Counts a request answered with `status` (by a node or by weir).
    pub fn request(&self, status: u16) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        bump(&self.requests[class], 1);
    }

    /// Counts an access-log line dropped because the log buffer was full.
    pub fn access_log_dropped(&self) {
        bump(&self.access_log_dropped, 1);
    }

    /// Counts a throttle answer (`503 SlowDown`, `429`) from a node.
    pub fn throttled(&self) {
        bump(&self.throttled, 1);
    }

    /// Counts a request refused at the edge by identity (`reason`: a label of
    /// [`AUTH_FAILURE_REASONS`]).
    pub fn auth_failure(&self, reason: &str) {
        let idx = AUTH_FAILURE_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(AUTH_FAILURE_REASONS.len() - 1);
        bump(&self.auth_failures[idx], 1);
    }

    /// Counts a mid-body GET resume attempt by outcome.
    pub fn resume(&self, ok: bool) {
        bump(&self.resumes[usize::from(!ok)], 1);
    }

    /// Marks a request as started (its head parsed).
    pub fn request_started(&self) {
        bump(&self.requests_in_flight, 1);
    }

    /// Marks a request as finished, however it ended.
    pub fn request_finished(&self) {
        let c = &self.requests_in_flight;
        let was = c.load(Ordering::Relaxed);
        // One finish per start, on the core that started it (this core's counters have
        // no other writer): a finish at zero is a request ended twice.
        debug_assert!(was > 0, "request_finished without a request in flight");
        c.store(was.saturating_sub(1), Ordering::Relaxed);
    }

    /// Counts a request weir rejected itself with `status`.
    pub fn rejected(&self, status: u16) {
        let idx = REJECT_STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(REJECT_STATUSES.len() - 1);
        bump(&self.rejected[idx], 1);
    }

    /// Counts body bytes moved in `dir`, split by mechanism.
    pub fn body(&self, dir: Direction, moved: weir_io::relay::MovedCounts) {
        let d = dir as usize;
        if moved.spliced > 0 {
            bump(&self.body_bytes[d][0], moved.spliced);
        }
        if moved.copied > 0 {
            bump(&self.body_bytes[d][1], moved.copied);
        }
    }

    /// Counts an accepted client connection (and makes it active).
    pub fn connection_opened(&self) {
        bump(&self.connections_accepted, 1);
        bump(&self.connections_active, 1);
    }

    /// Marks a client connection closed.
    pub fn connection_closed(&self) {
        let c = &self.connections_active;
        let was = c.load(Ordering::Relaxed);
        debug_assert!(was > 0, "connection_closed without an open connection");
        c.store(was.saturating_sub(1), Ordering::Relaxed);
    }

    /// Counts a finished TLS handshake by side (0 client, 1 upstream) and the path its
    /// records take (`path` a label of [`TLS_PATHS`]).
    pub fn tls_connection(&self, side: usize, path: &str) {
        let idx = TLS_PATHS.iter().position(|p| *p == path).unwrap_or(1);
        bump(&self.tls_connections[side.min(1)][idx], 1);
    }

    /// Counts a failed TLS handshake by side and reason (a label of
    /// [`TLS_FAILURE_REASONS`]; unknown ones count as `protocol`).
    pub fn tls_failure(&self, side: usize, reason: &str) {
        let idx = TLS_FAILURE_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(4);
        bump(&self.tls_failures[side.min(1)][idx], 1);
    }

    /// Counts a connection refused at a connection cap (`per_client`: the client IP's).
    pub fn connection_refused(&self, per_client: bool) {
        bump(&self.connections_refused[usize::from(per_client)], 1);
    }

    /// Counts a new upstream connection (`reused` = taken from the keep-alive pool).
    pub fn upstream_checkout(&self, reused: bool) {
        bump(
            if reused {
                &self.upstream_reuses
            } else {
                &self.upstream_connects
            },
            1,
        );
    }

    /// Counts an upstream failure (connect, reset, timeout, garbage).
    pub fn upstream_error(&self) {
        bump(&self.upstream_errors, 1);
    }

    /// Counts a request re-sent to a node after a failure before the response started.
    pub fn upstream_retry(&self) {
        bump(&self.upstream_retries, 1);
    }
}

/// All cores' counters, shared with the metrics thread.
#[derive(Clone)]
pub struct Registry {
    cores: Arc<Vec<CoreMetrics>>,
    /// Reloads by outcome [ok, rejected]; written only by the reload coordinator.
    reloads: Arc<[AtomicU64; 2]>,
    control: Arc<ControlMetrics>,
    driver: &'static str,
}

impl Registry {
    /// Counters for `cores` cores running on `driver`.
    pub fn new(cores: usize, driver: &'static str) -> Self {
        Registry {
            cores: Arc::new((0..cores).map(|_| CoreMetrics::default()).collect()),
            reloads: Arc::new([AtomicU64::new(0), AtomicU64::new(0)]),
            control: Arc::new(ControlMetrics::default()),
            driver,
        }
    }

    /// The counters core `i` writes.
    pub fn core(&self, i: usize) -> &CoreMetrics {
        &self.cores[i]
    }

    /// The control listeners' counters.
    pub fn control(&self) -> &ControlMetrics {
        &self.control
    }

    /// Counts a config reload by outcome (called by the single reload coordinator).
    pub fn reload(&self, ok: bool) {
        bump(&self.reloads[usize::from(!ok)], 1);
    }

    /// Requests in flight over all cores (the drain waits for this to reach zero).
    pub fn requests_in_flight(&self) -> u64 {
        self.sum(|c| &c.requests_in_flight)
    }

    /// The counters the status page turns into rates (`crate::admin`), summed over the
    /// cores: a few dozen relaxed loads, no rendering.
    pub fn totals(&self) -> Totals {
        let mut requests = [0u64; 5];
        for (i, r) in requests.iter_mut().enumerate() {
            *r = self.sum(|c| &c.requests[i]);
        }
        let bytes =
            |d: usize| self.sum(|c| &c.body_bytes[d][0]) + self.sum(|c| &c.body_bytes[d][1]);
        Totals {
            requests,
            rejected: (0..REJECT_STATUSES.len())
                .map(|i| self.sum(|c| &c.rejected[i]))
                .sum(),
            bytes_up: bytes(Direction::Upload as usize),
            bytes_down: bytes(Direction::Download as usize),
            retries: self.sum(|c| &c.upstream_retries),
            resumes: self.sum(|c| &c.resumes[0]),
            resumes_failed: self.sum(|c| &c.resumes[1]),
            throttled: self.sum(|c| &c.throttled),
            connections_active: self.sum(|c| &c.connections_active),
            requests_in_flight: self.requests_in_flight(),
            reloads_committed: self.reloads[0].load(Ordering::Relaxed),
            reloads_rejected: self.reloads[1].load(Ordering::Relaxed),
            cores: self.cores.len(),
            driver: self.driver,
        }
    }

    fn sum(&self, f: impl Fn(&CoreMetrics) -> &AtomicU64) -> u64 {
        self.cores
            .iter()
            .map(|c| f(c).load(Ordering::Relaxed))
            .sum()
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let w = &mut out;
        family(
            w,
            "weir_info",
            "gauge",
            "Build and runtime facts (value is always 1).",
        );
        let _ = writeln!(
            w,
            "weir_info{{version=\"{}\",driver=\"{}\",cores=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            self.driver,
            self.cores.len()
        );
        family(
            w,
            "weir_requests_total",
            "counter",
            "Requests answered, by status class.",
        );
        for (i, class) in STATUS_CLASSES.iter().enumerate() {
            let v = self.sum(|c| &c.requests[i]);
            let _ = writeln!(w, "weir_requests_total{{status=\"{class}\"}} {v}");
        }
        family(
            w,
            "weir_rejected_requests_total",
            "counter",
            "Requests weir rejected before any node saw them, by status (0 = connection closed without answer).",
        );
        for (i, status) in REJECT_STATUSES.iter().enumerate() {
            let v = self.sum(|c| &c.rejected[i]);
            let _ = writeln!(w, "weir_rejected_requests_total{{status=\"{status}\"}} {v}");
        }
        family(
            w,
            "weir_body_bytes_total",
            "counter",
            "Body bytes relayed, by direction and mechanism (splice = zero-copy, copy = through user space).",
        );
        for (d, dir) in ["upload", "download"].iter().enumerate() {
            for (p, path) in ["splice", "copy"].iter().enumerate() {
                let v = self.sum(|c| &c.body_bytes[d][p]);
                let _ = writeln!(
                    w,
                    "weir_body_bytes_total{{direction=\"{dir}\",path=\"{path}\"}} {v}"
                );
            }
        }
        family(
            w,
            "weir_config_reloads_total",
            "counter",
            "Config reloads, by outcome.",
        );
        for (i, outcome) in ["committed", "rejected"].iter().enumerate() {
            let v = self.reloads[i].load(Ordering::Relaxed);
            let _ = writeln!(w, "weir_config_reloads_total{{outcome=\"{outcome}\"}} {v}");
        }
        family(
            w,
            "weir_resumes_total",
            "counter",
            "Mid-body GET resumes on another node, by outcome.",
        );
        for (i, outcome) in ["resumed", "failed"].iter().enumerate() {
            let v = self.sum(|c| &c.resumes[i]);
            let _ = writeln!(w, "weir_resumes_total{{outcome=\"{outcome}\"}} {v}");
        }
        family(
            w,
            "weir_auth_failures_total",
            "counter",
            "Requests refused at the edge by identity (auth.mode = verify: signatures, chunk signatures of streaming uploads, access policy), by reason; none was stored.",
        );
        for (i, reason) in AUTH_FAILURE_REASONS.iter().enumerate() {
            let v = self.sum(|c| &c.auth_failures[i]);
            let _ = writeln!(w, "weir_auth_failures_total{{reason=\"{reason}\"}} {v}");
        }
        family(
            w,
            "weir_tls_connections_total",
            "counter",
            "TLS handshakes completed, by side (client: weir's listeners; upstream: to nodes) and the path records take afterwards (ktls: the kernel encrypts and bodies splice; userspace: rustls in weir).",
        );
        for (s, side) in TLS_SIDES.iter().enumerate() {
            for (p, path) in TLS_PATHS.iter().enumerate() {
                let v = self.sum(|c| &c.tls_connections[s][p]);
                let _ = writeln!(
                    w,
                    "weir_tls_connections_total{{side=\"{side}\",path=\"{path}\"}} {v}"
                );
            }
        }
        family(
            w,
            "weir_tls_handshake_failures_total",
            "counter",
            "TLS handshakes that failed, by side and reason; a failed client handshake never reaches a node.",
        );
        for (s, side) in TLS_SIDES.iter().enumerate() {
            for (r, reason) in TLS_FAILURE_REASONS.iter().enumerate() {
                let v = self.sum(|c| &c.tls_failures[s][r]);
                let _ = writeln!(
                    w,
                    "weir_tls_handshake_failures_total{{side=\"{side}\",reason=\"{reason}\"}} {v}"
                );
            }
        }
        let simple: [Simple; 9] = [
            (
                "weir_access_log_dropped_total",
                "counter",
                "Access-log lines dropped because the log buffer was full.",
                |c| &c.access_log_dropped,
            ),
            (
                "weir_upstream_throttled_total",
                "counter",
                "Throttle answers (503 SlowDown, 429) from nodes: backpressure, not failures.",
                |c| &c.throttled,
            ),
            (
                "weir_requests_in_flight",
                "gauge",
                "Requests being served now.",
                |c| &c.requests_in_flight,
            ),
            (
                "weir_connections_accepted_total",
                "counter",
                "Client connections accepted.",
                |c| &c.connections_accepted,
            ),
            (
                "weir_connections_active",
                "gauge",
                "Client connections open now.",
                |c| &c.connections_active,
            ),
            (
                "weir_upstream_connects_total",
                "counter",
                "New connections opened to storage nodes.",
                |c| &c.upstream_connects,
            ),
            (
                "weir_upstream_reuses_total",
                "counter",
                "Requests sent on a pooled keep-alive connection.",
                |c| &c.upstream_reuses,
            ),
            (
                "weir_upstream_errors_total",
                "counter",
                "Upstream failures (connect, reset, timeout, malformed).",
                |c| &c.upstream_errors,
            ),
            (
                "weir_upstream_retries_total",
                "counter",
                "Requests re-sent after a failure before the response started.",
                |c| &c.upstream_retries,
            ),
        ];
        for (name, kind, help, f) in simple {
            family(w, name, kind, help);
            let _ = writeln!(w, "{name} {}", self.sum(f));
        }
        family(
            w,
            "weir_connections_refused_total",
            "counter",
            "Client connections closed at once at a connection cap, by cap (connections = global, client_ip_connections = per client IP).",
        );
        for (i, reason) in ["connections", "client_ip_connections"].iter().enumerate() {
            let v = self.sum(|c| &c.connections_refused[i]);
            let _ = writeln!(
                w,
                "weir_connections_refused_total{{reason=\"{reason}\"}} {v}"
            );
        }
        self.control.render(w);
        out
    }
}

/// A label-less metric: name, type, help, and the counter it reads.
type Simple = (
    &'static str,
    &'static str,
    &'static str,
    fn(&CoreMetrics) -> &AtomicU64,
);

fn family(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// `listener` labels of the control metrics: the metrics port, the admin port.
pub const CONTROL_LISTENERS: [&str; 2] = ["metrics", "admin"];
/// Statuses the control listeners answer with (`status` label of
/// `weir_control_requests_total`); any other counts as `other`.
pub const CONTROL_STATUSES: [u16; 14] = [
    200, 400, 401, 403, 404, 405, 408, 411, 413, 417, 431, 501, 503, 505,
];
/// `reason` labels of `weir_control_connections_dropped_total`: refused at the global or
/// per-address cap, evicted to make room for a newcomer, cut at a deadline.
pub const CONTROL_DROP_REASONS: [&str; 5] = [
    "connections",
    "client_ip_connections",
    "evicted",
    "head_timeout",
    "connection_timeout",
];

/// The control listeners' counters. Each listener's thread is the only writer of its own
/// row, so updates use the single-writer [`bump`] like the cores' counters.
#[derive(Default)]
pub struct ControlMetrics {
    /// [listener][status index; the last one is `other`]
    requests: [[AtomicU64; CONTROL_STATUSES.len() + 1]; 2],
    /// [listener][reason index]
    dropped: [[AtomicU64; CONTROL_DROP_REASONS.len()]; 2],
    /// [listener]
    active: [AtomicU64; 2],
}

impl ControlMetrics {
    /// Counts an answer with `status` on `listener` (an index of [`CONTROL_LISTENERS`]).
    pub fn request(&self, listener: usize, status: u16) {
        let idx = CONTROL_STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(CONTROL_STATUSES.len());
        bump(&self.requests[listener][idx], 1);
    }

    /// Counts a connection closed for `reason` (a label of [`CONTROL_DROP_REASONS`]).
    pub fn dropped(&self, listener: usize, reason: &str) {
        if let Some(idx) = CONTROL_DROP_REASONS.iter().position(|r| *r == reason) {
            bump(&self.dropped[listener][idx], 1);
        }
    }

    /// Sets how many connections `listener` holds now.
    pub fn set_active(&self, listener: usize, n: usize) {
        self.active[listener].store(n as u64, Ordering::Relaxed);
    }

    fn render(&self, w: &mut String) {
        family(
            w,
            "weir_control_requests_total",
            "counter",
            "Requests answered by the control listeners (metrics and admin ports), by listener and status.",
        );
        for (l, listener) in CONTROL_LISTENERS.iter().enumerate() {
            for (i, c) in self.requests[l].iter().enumerate() {
                let v = c.load(Ordering::Relaxed);
                let status = CONTROL_STATUSES
                    .get(i)
                    .map_or("other".to_string(), u16::to_string);
                let _ = writeln!(
                    w,
                    "weir_control_requests_total{{listener=\"{listener}\",status=\"{status}\"}} {v}"
                );
            }
        }
        family(
            w,
            "weir_control_connections_dropped_total",
            "counter",
            "Control connections closed by weir before they were done, by listener and reason (connections / client_ip_connections = refused at a cap, evicted = closed to make room for a newcomer, head_timeout, connection_timeout).",
        );
        for (l, listener) in CONTROL_LISTENERS.iter().enumerate() {
            for (i, reason) in CONTROL_DROP_REASONS.iter().enumerate() {
                let v = self.dropped[l][i].load(Ordering::Relaxed);
                let _ = writeln!(
                    w,
                    "weir_control_connections_dropped_total{{listener=\"{listener}\",reason=\"{reason}\"}} {v}"
                );
            }
        }
        family(
            w,
            "weir_control_connections_active",
            "gauge",
            "Connections open now on each control listener.",
        );
        for (l, listener) in CONTROL_LISTENERS.iter().enumerate() {
            let v = self.active[l].load(Ordering::Relaxed);
            let _ = writeln!(
                w,
                "weir_control_connections_active{{listener=\"{listener}\"}} {v}"
            );
        }
    }
}

/// The process-wide counters at one moment ([`Registry::totals`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    /// Requests answered, by status class (1xx..5xx).
    pub requests: [u64; 5],
    /// Requests weir rejected before any node saw them.
    pub rejected: u64,
    /// Body bytes client to node.
    pub bytes_up: u64,
    /// Body bytes node to client.
    pub bytes_down: u64,
    /// Requests retried on another node.
    pub retries: u64,
    /// Mid-body GET resumes that worked.
    pub resumes: u64,
    /// Mid-body GET resumes that failed.
    pub resumes_failed: u64,
    /// Throttle answers from nodes.
    pub throttled: u64,
    /// Client connections open.
    pub connections_active: u64,
    /// Requests in flight.
    pub requests_in_flight: u64,
    /// Config reloads committed.
    pub reloads_committed: u64,
    /// Config reloads rejected.
    pub reloads_rejected: u64,
    /// Data-path cores.
    pub cores: usize,
    /// Executor driver name.
    pub driver: &'static str,
}

/// One node merged over all cores.
pub struct NodeSummary {
    pool: String,
    addr: String,
    state: NodeState,
    reason: Arc<str>,
    since_secs: f64,
    inflight: u32,
    limit: u32,
    latency_ewma: Option<Duration>,
}

impl NodeSummary {
    /// Whether the node may take requests (`/readyz` needs one).
    pub fn is_routable(&self) -> bool {
        self.state.is_routable()
    }

    /// Pool name.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// Node address as text.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// State decided by the node's owner core.
    pub fn state(&self) -> NodeState {
        self.state
    }

    /// Why the node entered its state (a probe's or the request path's verdict).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Seconds in the current state.
    pub fn since_secs(&self) -> f64 {
        self.since_secs
    }

    /// Requests in flight to the node, all cores.
    pub fn inflight(&self) -> u32 {
        self.inflight
    }

    /// Concurrency limit, all cores.
    pub fn limit(&self) -> u32 {
        self.limit
    }
}

/// Merges every core's view of the nodes: the state comes from the node's owner (it
/// decides), in-flight and limits are summed, latency averaged.
pub fn merge_nodes(replies: Vec<Vec<NodeReport>>) -> Vec<NodeSummary> {
    // Keyed by (pool, address) from the cores' own epochs: after a reload the start-up
    // config no longer describes the nodes.
    let mut out: Vec<NodeSummary> = Vec::new();
    let mut index: std::collections::HashMap<(Arc<str>, SocketAddr), usize> = Default::default();
    let mut latency_samples: Vec<(Duration, u32)> = Vec::new();
    for reports in replies {
        for r in reports {
            let i = *index.entry((r.pool.clone(), r.addr)).or_insert_with(|| {
                out.push(NodeSummary {
                    pool: r.pool.to_string(),
                    addr: r.addr.to_string(),
                    state: r.state,
                    reason: r.reason.clone(),
                    since_secs: r.since_secs,
                    inflight: 0,
                    limit: 0,
                    latency_ewma: None,
                });
                latency_samples.push((Duration::ZERO, 0));
                out.len() - 1
            });
            let n = &mut out[i];
            if r.owned {
                n.state = r.state;
                n.reason = r.reason.clone();
                n.since_secs = r.since_secs;
            }
            n.inflight += r.inflight;
            n.limit += r.limit;
            if let Some(l) = r.latency_ewma {
                latency_samples[i].0 += l;
                latency_samples[i].1 += 1;
            }
        }
    }
    for (n, (sum, count)) in out.iter_mut().zip(latency_samples) {
        if count > 0 {
            n.latency_ewma = Some(sum / count);
        }
    }
    out
}

/// `GET /nodes`: one JSON object per node.
pub fn nodes_json(nodes: &[NodeSummary]) -> String {
    let mut w = String::from("[");
    for (i, n) in nodes.iter().enumerate() {
        if i > 0 {
            w.push(',');
        }
        let _ = write!(
            w,
            "\n{{\"pool\":{},\"node\":{},\"state\":\"{}\",\"reason\":{},\"since_seconds\":{:.3},\"inflight\":{},\"limit\":{},\"latency_ewma_seconds\":{}}}",
            json_str(&n.pool),
            json_str(&n.addr),
            n.state,
            json_str(&n.reason),
            n.since_secs,
            n.inflight,
            n.limit,
            n.latency_ewma.map_or("null".to_string(), |l| format!("{:.6}", l.as_secs_f64())),
        );
    }
    w.push_str("\n]\n");
    w
}

/// `GET /flows`: every core's live transfers, core by core.
pub fn flows_json(per_core: Vec<Vec<FlowReport>>) -> String {
    let mut w = String::from("[");
    let mut first = true;
    for f in per_core.into_iter().flatten() {
        w.push_str(if first { "\n" } else { ",\n" });
        first = false;
        w.push_str(&f.to_json());
    }
    w.push_str("\n]\n");
    w
}

/// The per-node gauges of `/metrics`.
pub fn render_nodes(w: &mut String, nodes: &[NodeSummary]) {
    family(
        w,
        "weir_node_state",
        "gauge",
        "Node state as decided by its owner core (1 for the current state).",
    );
    for n in nodes {
        for state in [
            NodeState::Up,
            NodeState::Degraded,
            NodeState::Down,
            NodeState::Draining,
        ] {
            let v = u8::from(n.state == state);
            let _ = writeln!(
                w,
                "weir_node_state{{pool=\"{}\",node=\"{}\",state=\"{state}\"}} {v}",
                n.pool, n.addr
            );
        }
    }
    family(
        w,
        "weir_node_inflight_requests",
        "gauge",
        "Requests in flight to the node, all cores.",
    );
    for n in nodes {
        let _ = writeln!(
            w,
            "weir_node_inflight_requests{{pool=\"{}\",node=\"{}\"}} {}",
            n.pool, n.addr, n.inflight
        );
    }
    family(
        w,
        "weir_node_concurrency_limit",
        "gauge",
        "Concurrency limit for the node (AIMD under throttling), all cores.",
    );
    for n in nodes {
        let _ = writeln!(
            w,
            "weir_node_concurrency_limit{{pool=\"{}\",node=\"{}\"}} {}",
            n.pool, n.addr, n.limit
        );
    }
}
