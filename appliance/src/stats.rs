//! Labeled per-core statistics: requests by pool/node/op/status, request-duration and
//! first-byte histograms and body bytes per pool and node. Each core keeps plain
//! (non-atomic) counters in its own memory; the metrics thread asks every core for a
//! snapshot through the bus at scrape time and sums them. So a request costs a few
//! increments in core-local memory and no cross-core traffic; a scrape costs one message
//! per core. Label values are bounded: pools and nodes come from the config, ops are
//! `weir_policy::route::OpClass` names, statuses are classes (`2xx`…).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets: 0.5 ms to 60 s, roughly ×2.5.
pub const LATENCY_BUCKETS_SECONDS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// A fixed-bucket latency histogram (Prometheus semantics: cumulative at render time).
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// Per-bucket counts (not cumulative); the last slot is +Inf.
    counts: [u64; LATENCY_BUCKETS_SECONDS.len() + 1],
    sum_seconds: f64,
    count: u64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS_SECONDS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(LATENCY_BUCKETS_SECONDS.len());
        self.counts[i] += 1;
        self.sum_seconds += s;
        self.count += 1;
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.sum_seconds += other.sum_seconds;
        self.count += other.count;
    }

    fn render(&self, w: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS_SECONDS.iter().enumerate() {
            cumulative += self.counts[i];
            let _ = writeln!(w, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.counts[LATENCY_BUCKETS_SECONDS.len()];
        let _ = writeln!(w, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(w, "{name}_sum{{{labels}}} {}", self.sum_seconds);
        let _ = writeln!(w, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// Labels of a node's series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeKey {
    /// Pool name.
    pub pool: Arc<str>,
    /// Node address.
    pub node: Arc<str>,
}

/// One node's statistics on one core.
#[derive(Debug, Clone, Default)]
pub struct NodeStats {
    /// Requests by (op, status class index 0..5).
    requests: HashMap<(&'static str, u8), u64>,
    duration: Histogram,
    first_byte: Histogram,
    bytes_up: u64,
    bytes_down: u64,
}

impl NodeStats {
    fn merge(&mut self, other: &NodeStats) {
        for (k, v) in &other.requests {
            *self.requests.entry(*k).or_default() += v;
        }
        self.duration.merge(&other.duration);
        self.first_byte.merge(&other.first_byte);
        self.bytes_up += other.bytes_up;
        self.bytes_down += other.bytes_down;
    }
}

/// What one finished request contributes.
pub struct Sample {
    /// Op class name.
    pub op: &'static str,
    /// Status answered.
    pub status: u16,
    /// Whole request duration.
    pub duration: Duration,
    /// Time to the node's response head, if one came.
    pub first_byte: Option<Duration>,
    /// Request body bytes to the node.
    pub bytes_up: u64,
    /// Response body bytes to the client.
    pub bytes_down: u64,
}

/// A core's labeled statistics.
#[derive(Default)]
pub struct Stats {
    nodes: RefCell<HashMap<NodeKey, NodeStats>>,
}

impl Stats {
    /// Records a finished request served (last) by `key`.
    pub fn record(&self, key: NodeKey, s: &Sample) {
        let mut nodes = self.nodes.borrow_mut();
        let n = nodes.entry(key).or_default();
        let class = (s.status / 100).clamp(1, 5) as u8 - 1;
        *n.requests.entry((s.op, class)).or_default() += 1;
        n.duration.observe(s.duration);
        if let Some(fb) = s.first_byte {
            n.first_byte.observe(fb);
        }
        n.bytes_up += s.bytes_up;
        n.bytes_down += s.bytes_down;
    }

    /// A copy of this core's statistics (sent to the metrics thread).
    pub fn snapshot(&self) -> Vec<(NodeKey, NodeStats)> {
        self.nodes
            .borrow()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Sums the cores' snapshots and renders them.
pub fn render(snapshots: Vec<Vec<(NodeKey, NodeStats)>>, w: &mut String) {
    let mut total: std::collections::BTreeMap<NodeKey, NodeStats> = Default::default();
    for snap in snapshots {
        for (k, v) in snap {
            total.entry(k).or_default().merge(&v);
        }
    }
    const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
    header(
        w,
        "weir_node_requests_total",
        "counter",
        "Requests served by a node, by op class and status class.",
    );
    for (k, v) in &total {
        let mut rows: Vec<_> = v.requests.iter().collect();
        rows.sort();
        for ((op, class), n) in rows {
            let _ = writeln!(
                w,
                "weir_node_requests_total{{pool=\"{}\",node=\"{}\",op=\"{op}\",status=\"{}\"}} {n}",
                k.pool, k.node, CLASSES[*class as usize]
            );
        }
    }
    header(
        w,
        "weir_request_duration_seconds",
        "histogram",
        "Whole request duration, by the node that served it.",
    );
    for (k, v) in &total {
        v.duration.render(
            w,
            "weir_request_duration_seconds",
            &format!("pool=\"{}\",node=\"{}\"", k.pool, k.node),
        );
    }
    header(
        w,
        "weir_upstream_first_byte_seconds",
        "histogram",
        "Time from the request's start to the node's response head.",
    );
    for (k, v) in &total {
        v.first_byte.render(
            w,
            "weir_upstream_first_byte_seconds",
            &format!("pool=\"{}\",node=\"{}\"", k.pool, k.node),
        );
    }
    header(
        w,
        "weir_node_body_bytes_total",
        "counter",
        "Body bytes by node and direction (upload = to the node).",
    );
    for (k, v) in &total {
        let _ = writeln!(
            w,
            "weir_node_body_bytes_total{{pool=\"{}\",node=\"{}\",direction=\"upload\"}} {}",
            k.pool, k.node, v.bytes_up
        );
        let _ = writeln!(
            w,
            "weir_node_body_bytes_total{{pool=\"{}\",node=\"{}\",direction=\"download\"}} {}",
            k.pool, k.node, v.bytes_down
        );
    }
}

fn header(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_count_everything() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(100));
        let mut w = String::new();
        h.render(&mut w, "x", "a=\"b\"");
        assert!(w.contains("x_bucket{a=\"b\",le=\"0.0005\"} 1\n"));
        assert!(w.contains("x_bucket{a=\"b\",le=\"0.005\"} 2\n"));
        assert!(w.contains("x_bucket{a=\"b\",le=\"60\"} 2\n"));
        assert!(w.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3\n"));
        assert!(w.contains("x_count{a=\"b\"} 3\n"));
    }

    #[test]
    fn snapshots_of_cores_are_summed() {
        let a = Stats::default();
        let b = Stats::default();
        let key = NodeKey {
            pool: Arc::from("p"),
            node: Arc::from("n:1"),
        };
        let s = Sample {
            op: "read",
            status: 200,
            duration: Duration::from_millis(2),
            first_byte: Some(Duration::from_millis(1)),
            bytes_up: 0,
            bytes_down: 10,
        };
        a.record(key.clone(), &s);
        b.record(key.clone(), &s);
        let mut w = String::new();
        render(vec![a.snapshot(), b.snapshot()], &mut w);
        assert!(
            w.contains(
                "weir_node_requests_total{pool=\"p\",node=\"n:1\",op=\"read\",status=\"2xx\"} 2\n"
            ),
            "{w}"
        );
        assert!(w.contains(
            "weir_node_body_bytes_total{pool=\"p\",node=\"n:1\",direction=\"download\"} 20\n"
        ));
    }
}
