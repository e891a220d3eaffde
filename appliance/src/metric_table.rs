//! The table of every metric weir exports: one entry per metric with its name, type, help
//! text and label names (docs/metrics.md lists them for operators). `crate::metrics` and
//! `crate::stats` write `/metrics` only through these entries: a family's header and every
//! series take an entry, and a series takes exactly as many label values as its entry has
//! labels (checked by the compiler), so a render site names no metric and no label itself.
//! The tests below hold the table to docs/metrics.md, and `crate::metrics`' tests hold a
//! rendered scrape to the table.
//!
//! To add a metric: an entry here (and in [`ALL`]), its counter and render lines in
//! `crate::metrics` or `crate::stats`, its row in docs/metrics.md.

use std::fmt::{self, Display, Write as _};

use Kind::{Counter, Gauge, Histogram};
use Label::*;

/// `status` label values of the metrics counted by status class.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// `direction` label values: `upload` is client to node, `download` node to client.
pub const DIRECTIONS: [&str; 2] = ["upload", "download"];

/// The `# TYPE` of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (from 0 at start); named `*_total`.
    Counter,
    /// A value now.
    Gauge,
    /// Fixed buckets of observations, in base units.
    Histogram,
}

impl Kind {
    /// The name the Prometheus text format uses.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A label name. Every label of every metric is one of these; each takes a bounded set of
/// values (a fixed list, or names from the config: docs/design.md, "Observability").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// weir's version (`weir_info`, `weir_build_info`).
    Version,
    /// The git commit weir was built from, or `unknown` (`weir_build_info`).
    Commit,
    /// The I/O driver (`weir_info`).
    Driver,
    /// Data-path cores (`weir_info`).
    Cores,
    /// A status class (`2xx`) or one of a fixed list of statuses.
    Status,
    /// `upload` (client to node) or `download`.
    Direction,
    /// How bytes move: `splice` / `copy`, or `ktls` / `userspace`.
    Path,
    /// How something ended (a fixed list per metric).
    Outcome,
    /// Why something happened (a fixed list per metric).
    Reason,
    /// `client` (weir's listeners) or `upstream` (weir's connections to nodes).
    Side,
    /// A control listener: `metrics` or `admin`.
    Listener,
    /// A pool name from the config.
    Pool,
    /// A node address from the config.
    Node,
    /// A node state.
    State,
    /// An op class (`weir_policy::route::OpClass`).
    Op,
    /// A tenant name from the config.
    Tenant,
    /// A QoS class name from the config.
    Class,
    /// A node's DNS name from the config.
    Name,
}

impl Label {
    /// The label's name in the exposition.
    pub const fn name(self) -> &'static str {
        match self {
            Label::Version => "version",
            Label::Commit => "commit",
            Label::Driver => "driver",
            Label::Cores => "cores",
            Label::Status => "status",
            Label::Direction => "direction",
            Label::Path => "path",
            Label::Outcome => "outcome",
            Label::Reason => "reason",
            Label::Side => "side",
            Label::Listener => "listener",
            Label::Pool => "pool",
            Label::Node => "node",
            Label::State => "state",
            Label::Op => "op",
            Label::Tenant => "tenant",
            Label::Class => "class",
            Label::Name => "name",
        }
    }
}

/// One exported metric with `N` labels, written in this order on each of its series.
#[derive(Debug)]
pub struct Metric<const N: usize> {
    /// `weir_*`, in base units.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Its label names.
    pub labels: [Label; N],
}

impl<const N: usize> Metric<N> {
    /// Writes the `# HELP` and `# TYPE` lines that open the metric's family.
    pub fn family(&self, w: &mut String) {
        let _ = writeln!(
            w,
            "# HELP {} {}\n# TYPE {} {}",
            self.name,
            self.help,
            self.name,
            self.kind.as_str()
        );
    }

    /// Writes one series: `values` are the label values in the order of `self.labels`.
    pub fn sample(&self, w: &mut String, values: [&dyn Display; N], value: impl Display) {
        debug_assert_ne!(self.kind, Kind::Histogram, "{}: use histogram()", self.name);
        w.push_str(self.name);
        self.write_labels(w, &values, None);
        let _ = writeln!(w, " {value}");
    }

    /// Writes one histogram series: `buckets` are (upper bound, observations at or below
    /// it) in rising order; the `+Inf` bucket is `count`.
    pub fn histogram(
        &self,
        w: &mut String,
        values: [&dyn Display; N],
        buckets: impl IntoIterator<Item = (f64, u64)>,
        sum: f64,
        count: u64,
    ) {
        debug_assert_eq!(self.kind, Kind::Histogram, "{} is no histogram", self.name);
        for (bound, n) in buckets {
            let _ = write!(w, "{}_bucket", self.name);
            self.write_labels(w, &values, Some(&bound));
            let _ = writeln!(w, " {n}");
        }
        let _ = write!(w, "{}_bucket", self.name);
        self.write_labels(w, &values, Some(&"+Inf"));
        let _ = writeln!(w, " {count}");
        let _ = write!(w, "{}_sum", self.name);
        self.write_labels(w, &values, None);
        let _ = writeln!(w, " {sum}");
        let _ = write!(w, "{}_count", self.name);
        self.write_labels(w, &values, None);
        let _ = writeln!(w, " {count}");
    }

    /// `{a="x",b="y"}` (nothing without labels); `le` is a histogram bucket's bound.
    fn write_labels(&self, w: &mut String, values: &[&dyn Display; N], le: Option<&dyn Display>) {
        if N == 0 && le.is_none() {
            return;
        }
        w.push('{');
        for (i, (label, value)) in self.labels.iter().zip(values).enumerate() {
            if i > 0 {
                w.push(',');
            }
            w.push_str(label.name());
            w.push_str("=\"");
            let _ = write!(Escaped(w), "{value}");
            w.push('"');
        }
        if let Some(le) = le {
            if N > 0 {
                w.push(',');
            }
            let _ = write!(w, "le=\"{le}\"");
        }
        w.push('}');
    }
}

/// Writes a label value escaped as the text format wants (`\\`, `\"`, `\n`): values from
/// the config are validated label-safe, this keeps a scrape parseable if one is not.
struct Escaped<'a>(&'a mut String);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            match c {
                '\\' => self.0.push_str("\\\\"),
                '"' => self.0.push_str("\\\""),
                '\n' => self.0.push_str("\\n"),
                c => self.0.push(c),
            }
        }
        Ok(())
    }
}

/// A table entry with its label count erased, for checks over the whole table.
#[cfg_attr(not(test), allow(dead_code))]
pub trait Entry: Sync {
    /// The metric's name.
    fn name(&self) -> &'static str;
    /// Its type.
    fn kind(&self) -> Kind;
    /// Its help text.
    fn help(&self) -> &'static str;
    /// Its label names, in order.
    fn labels(&self) -> &[Label];
}

impl<const N: usize> Entry for Metric<N> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn kind(&self) -> Kind {
        self.kind
    }
    fn help(&self) -> &'static str {
        self.help
    }
    fn labels(&self) -> &[Label] {
        &self.labels
    }
}

/// Every metric weir exports, in the order `/metrics` renders them. Only the tests read
/// the whole list (against docs/metrics.md and a scrape); the data path uses the entries.
#[cfg_attr(not(test), allow(dead_code))]
pub static ALL: [&dyn Entry; 48] = [
    &INFO,
    &BUILD_INFO,
    &PROCESS_CPU_SECONDS,
    &PROCESS_RESIDENT_MEMORY,
    &PROCESS_VIRTUAL_MEMORY,
    &PROCESS_OPEN_FDS,
    &PROCESS_MAX_FDS,
    &PROCESS_START_TIME,
    &REQUESTS,
    &REJECTED_REQUESTS,
    &BODY_BYTES,
    &CONFIG_RELOADS,
    &DNS_RESOLUTIONS,
    &DNS_NAMES_UNRESOLVED,
    &RESUMES,
    &AUTH_FAILURES,
    &TLS_CONNECTIONS,
    &TLS_HANDSHAKE_FAILURES,
    &ACCESS_LOG_DROPPED,
    &UPSTREAM_THROTTLED,
    &REQUESTS_IN_FLIGHT,
    &CONNECTIONS_ACCEPTED,
    &CONNECTIONS_ACTIVE,
    &UPSTREAM_CONNECTS,
    &UPSTREAM_REUSES,
    &UPSTREAM_ERRORS,
    &UPSTREAM_RETRIES,
    &ACCESS_LOG_LINES_LOST,
    &CONNECTIONS_REFUSED,
    &CONTROL_REQUESTS,
    &CONTROL_CONNECTIONS_DROPPED,
    &CONTROL_CONNECTIONS_ACTIVE,
    &NODE_STATE,
    &NODE_ADMIN_STATE,
    &NODE_ADMIN_WEIGHT,
    &NODE_INFLIGHT_REQUESTS,
    &NODE_CONCURRENCY_LIMIT,
    &NODE_NAME,
    &TENANT_REQUESTS,
    &SHED_REQUESTS,
    &QUEUED_REQUESTS,
    &TENANT_BODY_BYTES,
    &NODE_REQUESTS,
    &REQUEST_DURATION,
    &UPSTREAM_FIRST_BYTE,
    &NODE_BODY_BYTES,
    &POOL_REQUEST_DURATION,
    &POOL_FIRST_BYTE,
];

// Process-wide counters (`crate::metrics::Registry`).

/// `weir_info`.
pub static INFO: Metric<3> = Metric {
    name: "weir_info",
    kind: Gauge,
    help: "Build and runtime facts (value is always 1).",
    labels: [Version, Driver, Cores],
};
/// `weir_build_info`.
pub static BUILD_INFO: Metric<2> = Metric {
    name: "weir_build_info",
    kind: Gauge,
    help: "The build weir runs (value is always 1): its version and the git commit it was built from (unknown when built without git).",
    labels: [Version, Commit],
};

// The process, in the names and units of Prometheus' standard process collector
// (`crate::process`, read from /proc at scrape time), so fleet dashboards and alerts
// written for any exporter work unchanged.

/// `process_cpu_seconds_total`.
pub static PROCESS_CPU_SECONDS: Metric<0> = Metric {
    name: "process_cpu_seconds_total",
    kind: Counter,
    help: "User and system CPU time spent, all threads, in seconds.",
    labels: [],
};
/// `process_resident_memory_bytes`.
pub static PROCESS_RESIDENT_MEMORY: Metric<0> = Metric {
    name: "process_resident_memory_bytes",
    kind: Gauge,
    help: "Resident memory size in bytes.",
    labels: [],
};
/// `process_virtual_memory_bytes`.
pub static PROCESS_VIRTUAL_MEMORY: Metric<0> = Metric {
    name: "process_virtual_memory_bytes",
    kind: Gauge,
    help: "Virtual memory size in bytes.",
    labels: [],
};
/// `process_open_fds`.
pub static PROCESS_OPEN_FDS: Metric<0> = Metric {
    name: "process_open_fds",
    kind: Gauge,
    help: "Open file descriptors (sockets, pipes, files).",
    labels: [],
};
/// `process_max_fds`.
pub static PROCESS_MAX_FDS: Metric<0> = Metric {
    name: "process_max_fds",
    kind: Gauge,
    help: "The soft limit on open file descriptors (RLIMIT_NOFILE).",
    labels: [],
};
/// `process_start_time_seconds`.
pub static PROCESS_START_TIME: Metric<0> = Metric {
    name: "process_start_time_seconds",
    kind: Gauge,
    help: "Start time of the process since the Unix epoch, in seconds.",
    labels: [],
};

/// `weir_requests_total`.
pub static REQUESTS: Metric<1> = Metric {
    name: "weir_requests_total",
    kind: Counter,
    help: "Requests answered, by status class.",
    labels: [Status],
};
/// `weir_rejected_requests_total`.
pub static REJECTED_REQUESTS: Metric<1> = Metric {
    name: "weir_rejected_requests_total",
    kind: Counter,
    help: "Requests weir rejected before any node saw them, by status (0 = connection closed without answer).",
    labels: [Status],
};
/// `weir_body_bytes_total`.
pub static BODY_BYTES: Metric<2> = Metric {
    name: "weir_body_bytes_total",
    kind: Counter,
    help: "Body bytes relayed, by direction and mechanism (splice = zero-copy, copy = through user space).",
    labels: [Direction, Path],
};
/// `weir_config_reloads_total`.
pub static CONFIG_RELOADS: Metric<1> = Metric {
    name: "weir_config_reloads_total",
    kind: Counter,
    help: "Config reloads, by outcome.",
    labels: [Outcome],
};
/// `weir_dns_resolutions_total`.
pub static DNS_RESOLUTIONS: Metric<1> = Metric {
    name: "weir_dns_resolutions_total",
    kind: Counter,
    help: "Lookups of node names, by outcome (unchanged, changed, failed).",
    labels: [Outcome],
};
/// `weir_dns_names_unresolved`.
pub static DNS_NAMES_UNRESOLVED: Metric<0> = Metric {
    name: "weir_dns_names_unresolved",
    kind: Gauge,
    help: "Configured node names that have no address (their nodes are left out).",
    labels: [],
};
/// `weir_resumes_total`.
pub static RESUMES: Metric<1> = Metric {
    name: "weir_resumes_total",
    kind: Counter,
    help: "Mid-body GET resumes on another node, by outcome.",
    labels: [Outcome],
};
/// `weir_auth_failures_total`.
pub static AUTH_FAILURES: Metric<1> = Metric {
    name: "weir_auth_failures_total",
    kind: Counter,
    help: "Requests refused at the edge by identity (auth.mode = verify: signatures, chunk signatures of streaming uploads, access policy), by reason; none was stored.",
    labels: [Reason],
};
/// `weir_tls_connections_total`.
pub static TLS_CONNECTIONS: Metric<2> = Metric {
    name: "weir_tls_connections_total",
    kind: Counter,
    help: "TLS handshakes completed, by side (client: weir's listeners; upstream: to nodes) and the path records take afterwards (ktls: the kernel encrypts and bodies splice; userspace: rustls in weir).",
    labels: [Side, Path],
};
/// `weir_tls_handshake_failures_total`.
pub static TLS_HANDSHAKE_FAILURES: Metric<2> = Metric {
    name: "weir_tls_handshake_failures_total",
    kind: Counter,
    help: "TLS handshakes that failed, by side and reason; a failed client handshake never reaches a node.",
    labels: [Side, Reason],
};
/// `weir_access_log_dropped_total`.
pub static ACCESS_LOG_DROPPED: Metric<0> = Metric {
    name: "weir_access_log_dropped_total",
    kind: Counter,
    help: "Access-log lines dropped because the log buffer was full.",
    labels: [],
};
/// `weir_access_log_lines_lost_total`.
pub static ACCESS_LOG_LINES_LOST: Metric<0> = Metric {
    name: "weir_access_log_lines_lost_total",
    kind: Counter,
    help: "Access-log lines the writer could not put down (full disk, write or syslog send error).",
    labels: [],
};
/// `weir_upstream_throttled_total`.
pub static UPSTREAM_THROTTLED: Metric<0> = Metric {
    name: "weir_upstream_throttled_total",
    kind: Counter,
    help: "Throttle answers (503 SlowDown, 429) from nodes: backpressure, not failures.",
    labels: [],
};
/// `weir_requests_in_flight`.
pub static REQUESTS_IN_FLIGHT: Metric<0> = Metric {
    name: "weir_requests_in_flight",
    kind: Gauge,
    help: "Requests being served now.",
    labels: [],
};
/// `weir_connections_accepted_total`.
pub static CONNECTIONS_ACCEPTED: Metric<0> = Metric {
    name: "weir_connections_accepted_total",
    kind: Counter,
    help: "Client connections accepted.",
    labels: [],
};
/// `weir_connections_active`.
pub static CONNECTIONS_ACTIVE: Metric<0> = Metric {
    name: "weir_connections_active",
    kind: Gauge,
    help: "Client connections open now.",
    labels: [],
};
/// `weir_upstream_connects_total`.
pub static UPSTREAM_CONNECTS: Metric<0> = Metric {
    name: "weir_upstream_connects_total",
    kind: Counter,
    help: "New connections opened to storage nodes.",
    labels: [],
};
/// `weir_upstream_reuses_total`.
pub static UPSTREAM_REUSES: Metric<0> = Metric {
    name: "weir_upstream_reuses_total",
    kind: Counter,
    help: "Requests sent on a pooled keep-alive connection.",
    labels: [],
};
/// `weir_upstream_errors_total`.
pub static UPSTREAM_ERRORS: Metric<0> = Metric {
    name: "weir_upstream_errors_total",
    kind: Counter,
    help: "Upstream failures (connect, reset, timeout, malformed).",
    labels: [],
};
/// `weir_upstream_retries_total`.
pub static UPSTREAM_RETRIES: Metric<0> = Metric {
    name: "weir_upstream_retries_total",
    kind: Counter,
    help: "Requests re-sent after a failure before the response started.",
    labels: [],
};
/// `weir_connections_refused_total`.
pub static CONNECTIONS_REFUSED: Metric<1> = Metric {
    name: "weir_connections_refused_total",
    kind: Counter,
    help: "Client connections closed before any request: at a connection cap (connections = global, client_ip_connections = per client IP), or for the PROXY header (proxy_untrusted = required from an untrusted peer, proxy_header = malformed or late).",
    labels: [Reason],
};

// The control listeners (`crate::metrics::ControlMetrics`).

/// `weir_control_requests_total`.
pub static CONTROL_REQUESTS: Metric<2> = Metric {
    name: "weir_control_requests_total",
    kind: Counter,
    help: "Requests answered by the control listeners (metrics and admin ports), by listener and status.",
    labels: [Listener, Status],
};
/// `weir_control_connections_dropped_total`.
pub static CONTROL_CONNECTIONS_DROPPED: Metric<2> = Metric {
    name: "weir_control_connections_dropped_total",
    kind: Counter,
    help: "Control connections closed by weir before they were done, by listener and reason (connections / client_ip_connections = refused at a cap, evicted = closed to make room for a newcomer, head_timeout, connection_timeout).",
    labels: [Listener, Reason],
};
/// `weir_control_connections_active`.
pub static CONTROL_CONNECTIONS_ACTIVE: Metric<1> = Metric {
    name: "weir_control_connections_active",
    kind: Gauge,
    help: "Connections open now on each control listener.",
    labels: [Listener],
};

// Nodes as their owner cores see them (`crate::metrics::render_nodes`).

/// `weir_node_state`.
pub static NODE_STATE: Metric<3> = Metric {
    name: "weir_node_state",
    kind: Gauge,
    help: "Node state as decided by its owner core (1 for the current state).",
    labels: [Pool, Node, State],
};
/// `weir_node_admin_state`.
pub static NODE_ADMIN_STATE: Metric<3> = Metric {
    name: "weir_node_admin_state",
    kind: Gauge,
    help: "Operator's override of the node (runtime node control; 1 for the current state).",
    labels: [Pool, Node, State],
};
/// `weir_node_admin_weight`.
pub static NODE_ADMIN_WEIGHT: Metric<2> = Metric {
    name: "weir_node_admin_weight",
    kind: Gauge,
    help: "Operator-set weight of the node (100 unless set; 0 takes no new requests).",
    labels: [Pool, Node],
};
/// `weir_node_inflight_requests`.
pub static NODE_INFLIGHT_REQUESTS: Metric<2> = Metric {
    name: "weir_node_inflight_requests",
    kind: Gauge,
    help: "Requests in flight to the node, all cores.",
    labels: [Pool, Node],
};
/// `weir_node_concurrency_limit`.
pub static NODE_CONCURRENCY_LIMIT: Metric<2> = Metric {
    name: "weir_node_concurrency_limit",
    kind: Gauge,
    help: "Concurrency limit for the node (AIMD under throttling), all cores.",
    labels: [Pool, Node],
};
/// `weir_node_name`.
pub static NODE_NAME: Metric<3> = Metric {
    name: "weir_node_name",
    kind: Gauge,
    help: "The DNS name a node's address comes from (value is always 1; empty for a literal node).",
    labels: [Pool, Node, Name],
};

// Labeled per-core statistics (`crate::stats`).

/// `weir_tenant_requests_total`.
pub static TENANT_REQUESTS: Metric<3> = Metric {
    name: "weir_tenant_requests_total",
    kind: Counter,
    help: "Requests answered, by tenant, QoS class and status class.",
    labels: [Tenant, Class, Status],
};
/// `weir_shed_requests_total`.
pub static SHED_REQUESTS: Metric<3> = Metric {
    name: "weir_shed_requests_total",
    kind: Counter,
    help: "Requests weir answered SlowDown itself (a limit, cap or queue), by tenant, class and reason.",
    labels: [Tenant, Class, Reason],
};
/// `weir_queued_requests_total`.
pub static QUEUED_REQUESTS: Metric<3> = Metric {
    name: "weir_queued_requests_total",
    kind: Counter,
    help: "Requests that waited at admission, by tenant, class and what for (tokens = a rate limit, slot = an in-flight cap or a node).",
    labels: [Tenant, Class, Reason],
};
/// `weir_tenant_body_bytes_total`.
pub static TENANT_BODY_BYTES: Metric<3> = Metric {
    name: "weir_tenant_body_bytes_total",
    kind: Counter,
    help: "Body bytes by tenant, class and direction (upload = to the node).",
    labels: [Tenant, Class, Direction],
};
/// `weir_node_requests_total`.
pub static NODE_REQUESTS: Metric<4> = Metric {
    name: "weir_node_requests_total",
    kind: Counter,
    help: "Requests served by a node, by op class and status class.",
    labels: [Pool, Node, Op, Status],
};
/// `weir_request_duration_seconds`.
pub static REQUEST_DURATION: Metric<2> = Metric {
    name: "weir_request_duration_seconds",
    kind: Histogram,
    help: "Whole request duration, by the node that served it.",
    labels: [Pool, Node],
};
/// `weir_upstream_first_byte_seconds`.
pub static UPSTREAM_FIRST_BYTE: Metric<2> = Metric {
    name: "weir_upstream_first_byte_seconds",
    kind: Histogram,
    help: "Time from the request's start to the node's response head.",
    labels: [Pool, Node],
};
/// `weir_node_body_bytes_total`.
pub static NODE_BODY_BYTES: Metric<3> = Metric {
    name: "weir_node_body_bytes_total",
    kind: Counter,
    help: "Body bytes by node and direction (upload = to the node).",
    labels: [Pool, Node, Direction],
};
/// `weir_pool_request_duration_seconds`.
pub static POOL_REQUEST_DURATION: Metric<2> = Metric {
    name: "weir_pool_request_duration_seconds",
    kind: Histogram,
    help: "Whole request duration of requests a node of the pool served, by pool and op class.",
    labels: [Pool, Op],
};
/// `weir_pool_upstream_first_byte_seconds`.
pub static POOL_FIRST_BYTE: Metric<2> = Metric {
    name: "weir_pool_upstream_first_byte_seconds",
    kind: Histogram,
    help: "Time from the request's start to the node's response head, by pool and op class.",
    labels: [Pool, Op],
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The operators' list, as this build sees it.
    const DOCS: &str = include_str!("../../docs/metrics.md");

    /// One row of docs/metrics.md's table: type and label names by metric name.
    fn documented() -> BTreeMap<String, (String, Vec<String>)> {
        let mut rows = DOCS.lines().skip_while(|l| !l.starts_with("| name |"));
        let header = rows
            .next()
            .expect("docs/metrics.md has no `| name | ...` table");
        assert_eq!(
            cells(header),
            ["name", "type", "labels", "meaning"],
            "docs/metrics.md: the table's columns changed"
        );
        let mut out = BTreeMap::new();
        for line in rows.skip(1).take_while(|l| l.starts_with('|')) {
            let c = cells(line);
            assert_eq!(c.len(), 4, "docs/metrics.md: not 4 cells: {line}");
            let name = ticked(c[0])
                .unwrap_or_else(|| panic!("docs/metrics.md: no `name` in {line}"))
                .to_string();
            let labels = label_names(c[2]);
            let dup = out.insert(name.clone(), (c[1].to_string(), labels));
            assert!(dup.is_none(), "docs/metrics.md lists {name} twice");
        }
        out
    }

    fn cells(line: &str) -> Vec<&str> {
        let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
        inner.split('|').map(str::trim).collect()
    }

    /// The first `code span` of `s`.
    fn ticked(s: &str) -> Option<&str> {
        let (_, rest) = s.split_once('`')?;
        Some(rest.split_once('`')?.0)
    }

    /// Label names of a labels cell: each comma-separated item outside parentheses (which
    /// hold the values) starts with the name as a code span; `—` is none.
    fn label_names(cell: &str) -> Vec<String> {
        if cell == "—" {
            return Vec::new();
        }
        let mut items = vec![String::new()];
        let mut depth = 0usize;
        for ch in cell.chars() {
            match ch {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => {
                    items.push(String::new());
                    continue;
                }
                _ => {}
            }
            if depth == 0 && ch != ')' {
                items.last_mut().expect("one item at least").push(ch);
            }
        }
        items
            .iter()
            .map(|item| {
                ticked(item)
                    .unwrap_or_else(|| panic!("docs/metrics.md: label without `name`: {cell}"))
                    .to_string()
            })
            .collect()
    }

    fn names(labels: &[Label]) -> Vec<String> {
        labels.iter().map(|l| l.name().to_string()).collect()
    }

    #[test]
    fn docs_list_exactly_the_table_with_its_types_and_labels() {
        let docs = documented();
        for m in ALL {
            let Some((kind, labels)) = docs.get(m.name()) else {
                panic!(
                    "{} is exported but not in docs/metrics.md's table",
                    m.name()
                );
            };
            assert_eq!(
                kind,
                m.kind().as_str(),
                "{}: type in docs/metrics.md",
                m.name()
            );
            assert_eq!(
                *labels,
                names(m.labels()),
                "{}: label names in docs/metrics.md",
                m.name()
            );
        }
        for name in docs.keys() {
            assert!(
                ALL.iter().any(|m| m.name() == name),
                "docs/metrics.md lists {name}, which weir does not export"
            );
        }
    }

    #[test]
    fn the_docs_parser_reads_labels_and_values_apart() {
        assert_eq!(
            label_names("`version`, `driver` (`io_uring` / `epoll`), `cores`"),
            ["version", "driver", "cores"]
        );
        assert_eq!(label_names("`status` (400, 408, 0 = other)"), ["status"]);
        assert!(label_names("—").is_empty());
    }

    /// The process collector's names every Prometheus client library exports.
    const STANDARD_PROCESS: [&str; 6] = [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ];

    #[test]
    fn names_types_and_labels_follow_the_conventions() {
        let mut seen = std::collections::BTreeSet::new();
        for m in ALL {
            let name = m.name();
            assert!(seen.insert(name), "{name} is in the table twice");
            // Prometheus' standard process metrics keep their names (see PROCESS_CPU_SECONDS).
            let standard = STANDARD_PROCESS.contains(&name);
            assert!(
                (name.starts_with("weir_") || standard)
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{name}: names are weir_[a-z0-9_]* (or a standard process_* name)"
            );
            assert_eq!(
                name.ends_with("_total"),
                m.kind() == Kind::Counter,
                "{name}: counters, and only counters, end in _total"
            );
            if m.kind() == Kind::Histogram {
                assert!(
                    name.ends_with("_seconds") || name.ends_with("_bytes"),
                    "{name}: a histogram observes seconds or bytes"
                );
            }
            for unit in [
                "_ms",
                "_milliseconds",
                "_us",
                "_kb",
                "_kib",
                "_mb",
                "_mib",
                "_minutes",
            ] {
                assert!(
                    !name.contains(&format!("{unit}_")) && !name.ends_with(unit),
                    "{name}: base units only (seconds, bytes)"
                );
            }
            let labels = m.labels();
            for (i, l) in labels.iter().enumerate() {
                assert!(!labels[..i].contains(l), "{name}: label {l:?} twice");
            }
            assert!(
                !m.help().is_empty() && !m.help().contains('\n'),
                "{name}: help"
            );
        }
    }

    #[test]
    fn other_docs_name_only_exported_metrics() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs");
        let exported = |t: &str| {
            ALL.iter().any(|m| {
                m.name() == t
                    || (m.kind() == Kind::Histogram
                        && ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|s| t.strip_suffix(s) == Some(m.name())))
            })
        };
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).expect("docs/") {
            let path = entry.expect("docs/ entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("md") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read a doc");
            for (at, _) in text.match_indices("weir_") {
                let before = text[..at].chars().next_back();
                if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                    continue;
                }
                let token: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '*')
                    .collect();
                let after = &text[at + token.len()..];
                // Crate paths (`weir_io::...`) and patterns (`weir_node_*`) are not names.
                if after.starts_with("::") || token.contains('*') {
                    continue;
                }
                checked += 1;
                assert!(
                    exported(&token),
                    "{}: names {token}, which weir does not export",
                    path.display()
                );
            }
        }
        assert!(
            checked > ALL.len(),
            "only {checked} metric names found in docs/"
        );
    }

    #[test]
    fn series_are_written_with_the_entrys_labels_escaped() {
        let mut w = String::new();
        NODE_INFLIGHT_REQUESTS.family(&mut w);
        NODE_INFLIGHT_REQUESTS.sample(&mut w, [&"p", &"a\"b\\c\nd"], 3);
        ACCESS_LOG_DROPPED.sample(&mut w, [], 0);
        REQUEST_DURATION.histogram(&mut w, [&"p", &"n"], [(0.5, 1), (1.0, 2)], 1.25, 3);
        assert_eq!(
            w,
            "# HELP weir_node_inflight_requests Requests in flight to the node, all cores.\n\
             # TYPE weir_node_inflight_requests gauge\n\
             weir_node_inflight_requests{pool=\"p\",node=\"a\\\"b\\\\c\\nd\"} 3\n\
             weir_access_log_dropped_total 0\n\
             weir_request_duration_seconds_bucket{pool=\"p\",node=\"n\",le=\"0.5\"} 1\n\
             weir_request_duration_seconds_bucket{pool=\"p\",node=\"n\",le=\"1\"} 2\n\
             weir_request_duration_seconds_bucket{pool=\"p\",node=\"n\",le=\"+Inf\"} 3\n\
             weir_request_duration_seconds_sum{pool=\"p\",node=\"n\"} 1.25\n\
             weir_request_duration_seconds_count{pool=\"p\",node=\"n\"} 3\n"
        );
    }
}
