//! weir's process-wide counters, and `/metrics` for them (names, types, help and labels
//! come from `crate::metric_table`; docs/metrics.md lists them). Counters are per core: each shard is the only writer of its own
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
use weir_policy::limits::Dir;

use crate::metric_table::{self as table, Metric, DIRECTIONS, STATUS_CLASSES};

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

/// `path` labels of `weir_body_bytes_total`: zero-copy, or through user space.
const BODY_PATHS: [&str; 2] = ["splice", "copy"];
/// `outcome` labels of `weir_config_reloads_total`.
const RELOAD_OUTCOMES: [&str; 2] = ["committed", "rejected"];
/// `outcome` labels of `weir_resumes_total`.
const RESUME_OUTCOMES: [&str; 2] = ["resumed", "failed"];
/// `reason` labels of `weir_connections_refused_total`, in [`Refused`] order.
const CONNECTION_CAPS: [&str; 4] = [
    "connections",
    "client_ip_connections",
    "proxy_untrusted",
    "proxy_header",
];

/// Why a client connection was closed before any request (docs/client-address.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `limits.connections_max`.
    Connections,
    /// `limits.client_ip_connections_max`.
    ClientIpConnections,
    /// A listener that requires a PROXY header, and a peer it does not trust.
    ProxyUntrusted,
    /// A trusted peer's PROXY header was malformed or late.
    ProxyHeader,
}

/// The counter slot of a body's direction, which is also its `direction` label's index in
/// [`DIRECTIONS`]: `upload` is a request body (client → node), `download` a response body.
fn slot(dir: Dir) -> usize {
    match dir {
        Dir::Up => 0,
        Dir::Down => 1,
    }
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
    connections_refused: [AtomicU64; 4],
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
    pub fn body(&self, dir: Dir, moved: weir_io::relay::MovedCounts) {
        let d = slot(dir);
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

    /// Counts a client connection closed before any request, and why.
    pub fn connection_refused(&self, why: Refused) {
        bump(&self.connections_refused[why as usize], 1);
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
    /// Node-name lookups (written by the resolver thread, `crate::dns`).
    dns: Arc<crate::dns::Counters>,
    control: Arc<ControlMetrics>,
    driver: &'static str,
}

impl Registry {
    /// Counters for `cores` cores running on `driver`.
    pub fn new(cores: usize, driver: &'static str) -> Self {
        Registry {
            cores: Arc::new((0..cores).map(|_| CoreMetrics::default()).collect()),
            reloads: Arc::new([AtomicU64::new(0), AtomicU64::new(0)]),
            dns: Arc::default(),
            control: Arc::new(ControlMetrics::default()),
            driver,
        }
    }

    /// The same registry reading the resolver's counters `dns`.
    pub fn with_dns(mut self, dns: Arc<crate::dns::Counters>) -> Self {
        self.dns = dns;
        self
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

    /// Client connections open now, over all cores (an upgrade's drain waits for them).
    pub fn connections_active(&self) -> u64 {
        self.sum(|c| &c.connections_active)
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
            bytes_up: bytes(slot(Dir::Up)),
            bytes_down: bytes(slot(Dir::Down)),
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

    /// Prometheus text exposition of the process-wide and control metrics.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let w = &mut out;
        table::INFO.family(w);
        table::INFO.sample(
            w,
            [&env!("CARGO_PKG_VERSION"), &self.driver, &self.cores.len()],
            1,
        );
        table::BUILD_INFO.family(w);
        table::BUILD_INFO.sample(w, [&env!("CARGO_PKG_VERSION"), &BUILD_COMMIT], 1);
        render_process(w, &crate::process::read());
        table::REQUESTS.family(w);
        for (i, class) in STATUS_CLASSES.iter().enumerate() {
            table::REQUESTS.sample(w, [class], self.sum(|c| &c.requests[i]));
        }
        table::REJECTED_REQUESTS.family(w);
        for (i, status) in REJECT_STATUSES.iter().enumerate() {
            table::REJECTED_REQUESTS.sample(w, [status], self.sum(|c| &c.rejected[i]));
        }
        table::BODY_BYTES.family(w);
        for dir in [Dir::Up, Dir::Down] {
            for (p, path) in BODY_PATHS.iter().enumerate() {
                let v = self.sum(|c| &c.body_bytes[slot(dir)][p]);
                table::BODY_BYTES.sample(w, [&DIRECTIONS[slot(dir)], path], v);
            }
        }
        table::CONFIG_RELOADS.family(w);
        for (i, outcome) in RELOAD_OUTCOMES.iter().enumerate() {
            let v = self.reloads[i].load(Ordering::Relaxed);
            table::CONFIG_RELOADS.sample(w, [outcome], v);
        }
        table::DNS_RESOLUTIONS.family(w);
        for (i, outcome) in crate::dns::OUTCOMES.iter().enumerate() {
            let v = self.dns.resolutions[i].load(Ordering::Relaxed);
            table::DNS_RESOLUTIONS.sample(w, [outcome], v);
        }
        table::DNS_NAMES_UNRESOLVED.family(w);
        let unresolved = self.dns.unresolved.load(Ordering::Relaxed);
        table::DNS_NAMES_UNRESOLVED.sample(w, [], unresolved);
        table::RESUMES.family(w);
        for (i, outcome) in RESUME_OUTCOMES.iter().enumerate() {
            table::RESUMES.sample(w, [outcome], self.sum(|c| &c.resumes[i]));
        }
        table::AUTH_FAILURES.family(w);
        for (i, reason) in AUTH_FAILURE_REASONS.iter().enumerate() {
            table::AUTH_FAILURES.sample(w, [reason], self.sum(|c| &c.auth_failures[i]));
        }
        table::TLS_CONNECTIONS.family(w);
        for (s, side) in TLS_SIDES.iter().enumerate() {
            for (p, path) in TLS_PATHS.iter().enumerate() {
                let v = self.sum(|c| &c.tls_connections[s][p]);
                table::TLS_CONNECTIONS.sample(w, [side, path], v);
            }
        }
        table::TLS_HANDSHAKE_FAILURES.family(w);
        for (s, side) in TLS_SIDES.iter().enumerate() {
            for (r, reason) in TLS_FAILURE_REASONS.iter().enumerate() {
                let v = self.sum(|c| &c.tls_failures[s][r]);
                table::TLS_HANDSHAKE_FAILURES.sample(w, [side, reason], v);
            }
        }
        let simple: [Simple; 9] = [
            (&table::ACCESS_LOG_DROPPED, |c| &c.access_log_dropped),
            (&table::UPSTREAM_THROTTLED, |c| &c.throttled),
            (&table::REQUESTS_IN_FLIGHT, |c| &c.requests_in_flight),
            (&table::CONNECTIONS_ACCEPTED, |c| &c.connections_accepted),
            (&table::CONNECTIONS_ACTIVE, |c| &c.connections_active),
            (&table::UPSTREAM_CONNECTS, |c| &c.upstream_connects),
            (&table::UPSTREAM_REUSES, |c| &c.upstream_reuses),
            (&table::UPSTREAM_ERRORS, |c| &c.upstream_errors),
            (&table::UPSTREAM_RETRIES, |c| &c.upstream_retries),
        ];
        for (metric, f) in simple {
            metric.family(w);
            metric.sample(w, [], self.sum(f));
        }
        table::ACCESS_LOG_LINES_LOST.family(w);
        let lost = crate::access_log::LINES_LOST.load(Ordering::Relaxed);
        table::ACCESS_LOG_LINES_LOST.sample(w, [], lost);
        table::CONNECTIONS_REFUSED.family(w);
        for (i, reason) in CONNECTION_CAPS.iter().enumerate() {
            let v = self.sum(|c| &c.connections_refused[i]);
            table::CONNECTIONS_REFUSED.sample(w, [reason], v);
        }
        self.control.render(w);
        out
    }
}

/// The git commit this binary was built from (`unknown` without git: appliance/build.rs).
pub const BUILD_COMMIT: &str = env!("WEIR_GIT_COMMIT");

/// The standard `process_*` families; a figure `/proc` did not give has no series.
fn render_process(w: &mut String, p: &crate::process::ProcessStats) {
    table::PROCESS_CPU_SECONDS.family(w);
    if let Some(v) = p.cpu_seconds {
        table::PROCESS_CPU_SECONDS.sample(w, [], v);
    }
    let gauges: [(&Metric<0>, Option<u64>); 4] = [
        (&table::PROCESS_RESIDENT_MEMORY, p.resident_bytes),
        (&table::PROCESS_VIRTUAL_MEMORY, p.virtual_bytes),
        (&table::PROCESS_OPEN_FDS, p.open_fds),
        (&table::PROCESS_MAX_FDS, p.max_fds),
    ];
    for (metric, value) in gauges {
        metric.family(w);
        if let Some(v) = value {
            metric.sample(w, [], v);
        }
    }
    table::PROCESS_START_TIME.family(w);
    if let Some(v) = p.start_time_seconds {
        table::PROCESS_START_TIME.sample(w, [], v);
    }
}

/// A label-less per-core metric: its table entry and the counter it reads.
type Simple = (&'static Metric<0>, fn(&CoreMetrics) -> &AtomicU64);

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
        table::CONTROL_REQUESTS.family(w);
        for (l, listener) in CONTROL_LISTENERS.iter().enumerate() {
            for (i, c) in self.requests[l].iter().enumerate() {
                let v = c.load(Ordering::Relaxed);
                match CONTROL_STATUSES.get(i) {
                    Some(status) => table::CONTROL_REQUESTS.sample(w, [listener, status], v),
                    None => table::CONTROL_REQUESTS.sample(w, [listener, &"other"], v),
                }
            }
        }
        table::CONTROL_CONNECTIONS_DROPPED.family(w);
        for (l, listener) in CONTROL_LISTENERS.iter().enumerate() {
            for (i, reason) in CONTROL_DROP_REASONS.iter().enumerate() {
                let v = self.dropped[l][i].load(Ordering::Relaxed);
                table::CONTROL_CONNECTIONS_DROPPED.sample(w, [listener, reason], v);
            }
        }
        table::CONTROL_CONNECTIONS_ACTIVE.family(w);
        for (l, listener) in CONTROL_LISTENERS.iter().enumerate() {
            let v = self.active[l].load(Ordering::Relaxed);
            table::CONTROL_CONNECTIONS_ACTIVE.sample(w, [listener], v);
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
    /// The DNS name the address comes from; `None` for a literal node.
    name: Option<Arc<str>>,
    state: NodeState,
    reason: Arc<str>,
    since_secs: f64,
    inflight: u32,
    limit: u32,
    latency_ewma: Option<Duration>,
    admin: Option<crate::bus::AdminSet>,
}

impl NodeSummary {
    /// Whether the node may take requests (`/readyz` needs one): its health and the
    /// operator's override agree.
    pub fn is_routable(&self) -> bool {
        weir_policy::health::admin::routing_state(self.state, self.admin_override()).is_routable()
    }

    /// The operator's override (the default when none was set).
    pub fn admin_override(&self) -> weir_policy::health::admin::Override {
        self.admin.as_ref().map_or_else(Default::default, |a| a.set)
    }

    /// The override's fields of `/nodes` and `status.json`: `"admin":{...}`.
    pub fn admin_json(&self) -> String {
        let set = self.admin_override();
        let (by, token, at) = match &self.admin {
            Some(a) => (
                json_str(&a.by.client.to_canonical().to_string()),
                a.by.token.to_string(),
                format!("{:.3}", a.by.at_unix),
            ),
            None => ("null".into(), "null".into(), "null".into()),
        };
        format!(
            "\"admin\":{{\"state\":\"{}\",\"weight\":{},\"set_by\":{by},\"token\":{token},\"set_at_unix_seconds\":{at}}}",
            set.state.as_str(),
            set.weight
        )
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
                    name: r.name.clone(),
                    state: r.state,
                    reason: r.reason.clone(),
                    since_secs: r.since_secs,
                    inflight: 0,
                    limit: 0,
                    latency_ewma: None,
                    admin: r.admin.clone(),
                });
                latency_samples.push((Duration::ZERO, 0));
                out.len() - 1
            });
            let n = &mut out[i];
            if r.owned {
                n.state = r.state;
                n.reason = r.reason.clone();
                n.since_secs = r.since_secs;
                n.admin = r.admin.clone();
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
            "\n{{\"pool\":{},\"node\":{},\"name\":{},\"state\":\"{}\",\"reason\":{},\"since_seconds\":{:.3},\"inflight\":{},\"limit\":{},\"latency_ewma_seconds\":{},{}}}",
            json_str(&n.pool),
            json_str(&n.addr),
            n.name.as_deref().map_or_else(|| "null".to_string(), json_str),
            n.state,
            json_str(&n.reason),
            n.since_secs,
            n.inflight,
            n.limit,
            n.latency_ewma.map_or("null".to_string(), |l| format!("{:.6}", l.as_secs_f64())),
            n.admin_json(),
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
    table::NODE_STATE.family(w);
    for n in nodes {
        for state in [
            NodeState::Up,
            NodeState::Degraded,
            NodeState::Down,
            NodeState::Draining,
        ] {
            let v = u8::from(n.state == state);
            table::NODE_STATE.sample(w, [&n.pool, &n.addr, &state], v);
        }
    }
    table::NODE_ADMIN_STATE.family(w);
    for n in nodes {
        let set = n.admin_override();
        for state in weir_policy::health::admin::AdminState::ALL {
            let v = u8::from(set.state == state);
            table::NODE_ADMIN_STATE.sample(w, [&n.pool, &n.addr, &state.as_str()], v);
        }
    }
    table::NODE_ADMIN_WEIGHT.family(w);
    for n in nodes {
        table::NODE_ADMIN_WEIGHT.sample(w, [&n.pool, &n.addr], n.admin_override().weight);
    }
    table::NODE_INFLIGHT_REQUESTS.family(w);
    for n in nodes {
        table::NODE_INFLIGHT_REQUESTS.sample(w, [&n.pool, &n.addr], n.inflight);
    }
    table::NODE_CONCURRENCY_LIMIT.family(w);
    for n in nodes {
        table::NODE_CONCURRENCY_LIMIT.sample(w, [&n.pool, &n.addr], n.limit);
    }
    table::NODE_NAME.family(w);
    for n in nodes {
        // A literal node has the empty name: every node has its series to join on.
        let name = n.name.as_deref().unwrap_or("");
        table::NODE_NAME.sample(w, [&n.pool, &n.addr, &name], 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric_table::{Kind, ALL};
    use crate::stats::{NodeKey, Sample, Stats, TenantKey, TenantSample};

    /// What `GET /metrics` serves (`crate::admin`), from two cores that saw a little of
    /// everything.
    fn scrape() -> String {
        let registry = Registry::new(2, "io_uring");
        for core in [registry.core(0), registry.core(1)] {
            core.request(200);
            core.rejected(400);
            core.body(
                Dir::Up,
                weir_io::relay::MovedCounts {
                    spliced: 5,
                    copied: 1,
                },
            );
            core.auth_failure("bad_signature");
            core.tls_connection(0, "ktls");
            core.tls_failure(1, "timeout");
            core.resume(true);
            core.connection_opened();
            core.connection_refused(Refused::ClientIpConnections);
            core.upstream_checkout(false);
            core.upstream_error();
            core.upstream_retry();
            core.throttled();
            core.access_log_dropped();
        }
        registry.reload(false);
        registry.control().request(0, 200);
        registry.control().dropped(1, "evicted");
        let mut body = registry.render();
        let report = |owned| NodeReport {
            pool: Arc::from("main"),
            addr: "127.0.0.1:9000".parse().expect("address"),
            name: Some(Arc::from("store.example")),
            owned,
            state: NodeState::Up,
            inflight: 1,
            limit: 8,
            latency_ewma: Some(Duration::from_millis(3)),
            reason: Arc::from("probe"),
            since_secs: 1.0,
            admin: None,
        };
        let nodes = merge_nodes(vec![vec![report(true)], vec![report(false)]]);
        render_nodes(&mut body, &nodes);
        let stats = Stats::default();
        stats.record(
            NodeKey {
                pool: Arc::from("main"),
                node: Arc::from("127.0.0.1:9000"),
            },
            &Sample {
                op: "read",
                status: 200,
                duration: Duration::from_millis(4),
                first_byte: Some(Duration::from_millis(1)),
                bytes_up: 0,
                bytes_down: 100,
            },
        );
        stats.record_tenant(
            &TenantKey {
                tenant: Arc::from("default"),
                class: Arc::from("bulk"),
            },
            &TenantSample {
                status: 503,
                shed: Some("queue_full"),
                waited: crate::flows::Waited {
                    for_tokens: true,
                    for_slot: true,
                },
                bytes_up: 7,
                bytes_down: 0,
            },
        );
        crate::stats::render(vec![stats.snapshot()], &mut body);
        body
    }

    /// `name{a="x",b="y"} v` → (name, [a, b]).
    fn series(line: &str) -> (&str, Vec<&str>) {
        let Some((name, rest)) = line.split_once('{') else {
            let name = line.split_once(' ').map_or(line, |(n, _)| n);
            return (name, Vec::new());
        };
        let (labels, _) = rest.rsplit_once('}').expect("labels end with }");
        let names = labels
            .split("\",")
            .map(|pair| pair.split_once("=\"").expect("label=\"value\"").0)
            .collect();
        (name, names)
    }

    #[test]
    fn a_scrape_has_exactly_the_tables_families_with_their_types_and_labels() {
        let text = scrape();
        let mut families: Vec<(&str, &str)> = Vec::new();
        for line in text.lines() {
            if let Some(decl) = line.strip_prefix("# TYPE ") {
                let (name, kind) = decl.split_once(' ').expect("# TYPE name kind");
                families.push((name, kind));
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            // Every series belongs to the family declared last, with the entry's labels.
            let (name, labels) = series(line);
            let &(family, _) = families.last().expect("a series before any # TYPE");
            let entry = ALL
                .iter()
                .find(|m| m.name() == family)
                .unwrap_or_else(|| panic!("{family} is rendered but not in the table"));
            let mut want: Vec<&str> = entry.labels().iter().map(|l| l.name()).collect();
            let suffix = name.strip_prefix(family);
            match (entry.kind(), suffix) {
                (Kind::Histogram, Some("_bucket")) => want.push("le"),
                (Kind::Histogram, Some("_sum" | "_count")) => {}
                (_, Some("")) => {}
                _ => panic!("series {name} under family {family}"),
            }
            assert_eq!(labels, want, "labels of {line}");
        }
        let declared: Vec<(&str, &str)> =
            ALL.iter().map(|m| (m.name(), m.kind().as_str())).collect();
        assert_eq!(
            families, declared,
            "families of a scrape vs the table, in order"
        );
        // Every family has series in this scrape (so the label check above saw them all).
        for (name, _) in &families {
            assert!(
                text.lines()
                    .any(|l| !l.starts_with('#') && l.starts_with(name)),
                "{name} has no series"
            );
        }
    }

    #[test]
    fn a_scrape_counts_what_the_cores_saw() {
        let text = scrape();
        for line in [
            "weir_info{version=\"",
            "weir_build_info{version=\"",
            "weir_pool_request_duration_seconds_count{pool=\"main\",op=\"read\"} 1\n",
            "weir_pool_request_duration_seconds_count{pool=\"main\",op=\"write\"} 0\n",
            "weir_pool_upstream_first_byte_seconds_count{pool=\"main\",op=\"read\"} 1\n",
            "weir_requests_total{status=\"2xx\"} 2\n",
            "weir_rejected_requests_total{status=\"400\"} 2\n",
            "weir_body_bytes_total{direction=\"upload\",path=\"splice\"} 10\n",
            "weir_body_bytes_total{direction=\"upload\",path=\"copy\"} 2\n",
            "weir_config_reloads_total{outcome=\"rejected\"} 1\n",
            "weir_auth_failures_total{reason=\"bad_signature\"} 2\n",
            "weir_tls_connections_total{side=\"client\",path=\"ktls\"} 2\n",
            "weir_tls_handshake_failures_total{side=\"upstream\",reason=\"timeout\"} 2\n",
            "weir_connections_refused_total{reason=\"client_ip_connections\"} 2\n",
            "weir_connections_active 2\n",
            "weir_upstream_connects_total 2\n",
            "weir_control_requests_total{listener=\"metrics\",status=\"200\"} 1\n",
            "weir_control_connections_dropped_total{listener=\"admin\",reason=\"evicted\"} 1\n",
            "weir_node_state{pool=\"main\",node=\"127.0.0.1:9000\",state=\"up\"} 1\n",
            "weir_node_admin_state{pool=\"main\",node=\"127.0.0.1:9000\",state=\"enabled\"} 1\n",
            "weir_node_admin_state{pool=\"main\",node=\"127.0.0.1:9000\",state=\"drain\"} 0\n",
            "weir_node_admin_weight{pool=\"main\",node=\"127.0.0.1:9000\"} 100\n",
            "weir_node_inflight_requests{pool=\"main\",node=\"127.0.0.1:9000\"} 2\n",
            "weir_node_concurrency_limit{pool=\"main\",node=\"127.0.0.1:9000\"} 16\n",
            "weir_shed_requests_total{tenant=\"default\",class=\"bulk\",reason=\"queue_full\"} 1\n",
            "weir_request_duration_seconds_count{pool=\"main\",node=\"127.0.0.1:9000\"} 1\n",
        ] {
            assert!(text.contains(line), "{line:?} missing in:\n{text}");
        }
    }
}
