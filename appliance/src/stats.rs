//! Labeled per-core statistics: requests by pool/node/op/status, request-duration and
//! first-byte histograms and body bytes per pool and node. Each core keeps plain
//! (non-atomic) counters in its own memory; the metrics thread asks every core for a
//! snapshot through the bus at scrape time and sums them. So a request costs a few
//! increments in core-local memory and no cross-core traffic; a scrape costs one message
//! per core. Label values are bounded: pools and nodes come from the config, ops are
//! `weir_policy::route::OpClass` names, statuses are classes (`2xx`…), tenants and
//! classes are the configured ones (unknown access keys count as the default tenant).
//! Latency is also kept per pool and op class (`weir_pool_*_seconds`): pools × 6 op
//! classes × 17 buckets, whatever the clients send, so a fleet can compare a GET's p99
//! across pools without summing nodes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use weir_policy::route::OpClass;

use crate::metric_table::{self as table, Metric, DIRECTIONS, STATUS_CLASSES};

/// Op classes, in the order of a pool's per-op histograms (`other` last).
const OPS: [OpClass; 6] = OpClass::ALL;

/// The slot of op class `op` (an `OpClass::as_str` name; anything else is `other`).
fn op_slot(op: &str) -> usize {
    OPS.iter()
        .position(|o| o.as_str() == op)
        .unwrap_or(OPS.len() - 1)
}

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

    /// Writes this histogram as series `values` of `metric` (cumulative buckets).
    fn render(&self, w: &mut String, metric: &Metric<2>, values: [&dyn Display; 2]) {
        let buckets = LATENCY_BUCKETS_SECONDS
            .iter()
            .zip(self.counts.iter().scan(0, |cumulative, n| {
                *cumulative += n;
                Some(*cumulative)
            }))
            .map(|(bound, n)| (*bound, n));
        metric.histogram(w, values, buckets, self.sum_seconds, self.count);
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

/// One pool's latency by op class on one core (indexed like `OPS`).
#[derive(Debug, Clone, Default)]
pub struct PoolStats {
    duration: [Histogram; OPS.len()],
    first_byte: [Histogram; OPS.len()],
}

impl PoolStats {
    fn merge(&mut self, other: &PoolStats) {
        for (a, b) in self.duration.iter_mut().zip(&other.duration) {
            a.merge(b);
        }
        for (a, b) in self.first_byte.iter_mut().zip(&other.first_byte) {
            a.merge(b);
        }
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

/// Labels of a tenant's series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantKey {
    /// Tenant name.
    pub tenant: Arc<str>,
    /// QoS class name.
    pub class: Arc<str>,
}

/// One tenant's (in one class) statistics on one core.
#[derive(Debug, Clone, Default)]
pub struct TenantStats {
    /// Requests by status class index 0..5.
    requests: [u64; 5],
    /// Requests weir answered `SlowDown` itself, by the limit's label.
    shed: HashMap<&'static str, u64>,
    /// Requests that waited for rate-limit tokens.
    waited_tokens: u64,
    /// Requests that waited in their class queue for a slot.
    waited_slot: u64,
    bytes_up: u64,
    bytes_down: u64,
}

impl TenantStats {
    fn merge(&mut self, other: &TenantStats) {
        for (a, b) in self.requests.iter_mut().zip(other.requests) {
            *a += b;
        }
        for (k, v) in &other.shed {
            *self.shed.entry(k).or_default() += v;
        }
        self.waited_tokens += other.waited_tokens;
        self.waited_slot += other.waited_slot;
        self.bytes_up += other.bytes_up;
        self.bytes_down += other.bytes_down;
    }
}

/// What one finished request contributes to its tenant's series.
pub struct TenantSample {
    /// Status answered (0: none, the connection closed).
    pub status: u16,
    /// The limit that shed it, if weir answered `SlowDown` itself.
    pub shed: Option<&'static str>,
    /// How it waited at admission.
    pub waited: crate::flows::Waited,
    /// Request body bytes to the node.
    pub bytes_up: u64,
    /// Response body bytes to the client.
    pub bytes_down: u64,
}

/// One core's statistics as sent to the metrics thread.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Per node.
    pub nodes: Vec<(NodeKey, NodeStats)>,
    /// Per tenant and class.
    pub tenants: Vec<(TenantKey, TenantStats)>,
    /// Per pool, by op class.
    pub pools: Vec<(Arc<str>, PoolStats)>,
}

/// A core's labeled statistics.
#[derive(Default)]
pub struct Stats {
    nodes: RefCell<HashMap<NodeKey, NodeStats>>,
    tenants: RefCell<HashMap<TenantKey, TenantStats>>,
    pools: RefCell<HashMap<Arc<str>, PoolStats>>,
}

impl Stats {
    /// Records a finished request served (last) by `key`.
    pub fn record(&self, key: NodeKey, s: &Sample) {
        {
            let mut pools = self.pools.borrow_mut();
            // Looked up by name first: the pool's Arc is cloned once, not per request.
            if !pools.contains_key(&*key.pool) {
                pools.insert(key.pool.clone(), PoolStats::default());
            }
            if let Some(p) = pools.get_mut(&*key.pool) {
                let op = op_slot(s.op);
                p.duration[op].observe(s.duration);
                if let Some(fb) = s.first_byte {
                    p.first_byte[op].observe(fb);
                }
            }
        }
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

    /// Records a finished request of tenant `key`.
    pub fn record_tenant(&self, key: &TenantKey, s: &TenantSample) {
        let mut tenants = self.tenants.borrow_mut();
        // Looked up by reference first: the key's Arcs are cloned once per tenant, not
        // per request.
        if !tenants.contains_key(key) {
            tenants.insert(key.clone(), TenantStats::default());
        }
        let Some(t) = tenants.get_mut(key) else {
            return;
        };
        if s.status > 0 {
            t.requests[(s.status / 100).clamp(1, 5) as usize - 1] += 1;
        }
        if let Some(reason) = s.shed {
            *t.shed.entry(reason).or_default() += 1;
        }
        t.waited_tokens += u64::from(s.waited.for_tokens);
        t.waited_slot += u64::from(s.waited.for_slot);
        t.bytes_up += s.bytes_up;
        t.bytes_down += s.bytes_down;
    }

    /// Forgets the series of nodes `keep` turns down (nodes an epoch no longer has): a
    /// name whose DNS answers keep moving would otherwise add series without bound.
    pub fn retain_nodes(&self, keep: impl Fn(&NodeKey) -> bool) {
        self.nodes.borrow_mut().retain(|k, _| keep(k));
    }

    /// A copy of this core's statistics (sent to the metrics thread).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            nodes: self
                .nodes
                .borrow()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            tenants: self
                .tenants
                .borrow()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            pools: self
                .pools
                .borrow()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

/// Sums the cores' snapshots and renders them.
pub fn render(snapshots: Vec<Snapshot>, w: &mut String) {
    let pools = merge_pools(&snapshots);
    let (total, tenants) = merge(snapshots);
    render_tenants(&tenants, w);
    table::NODE_REQUESTS.family(w);
    for (k, v) in &total {
        let mut rows: Vec<_> = v.requests.iter().collect();
        rows.sort();
        for ((op, class), n) in rows {
            let status = &STATUS_CLASSES[usize::from(*class)];
            table::NODE_REQUESTS.sample(w, [&k.pool, &k.node, op, status], n);
        }
    }
    table::REQUEST_DURATION.family(w);
    for (k, v) in &total {
        let labels: [&dyn Display; 2] = [&k.pool, &k.node];
        v.duration.render(w, &table::REQUEST_DURATION, labels);
    }
    table::UPSTREAM_FIRST_BYTE.family(w);
    for (k, v) in &total {
        let labels: [&dyn Display; 2] = [&k.pool, &k.node];
        v.first_byte.render(w, &table::UPSTREAM_FIRST_BYTE, labels);
    }
    table::NODE_BODY_BYTES.family(w);
    for (k, v) in &total {
        for (dir, n) in DIRECTIONS.iter().zip([v.bytes_up, v.bytes_down]) {
            table::NODE_BODY_BYTES.sample(w, [&k.pool, &k.node, dir], n);
        }
    }
    // Every op class of a pool that served anything: series do not come and go.
    table::POOL_REQUEST_DURATION.family(w);
    for (pool, p) in &pools {
        for (op, h) in OPS.iter().zip(&p.duration) {
            h.render(w, &table::POOL_REQUEST_DURATION, [pool, &op.as_str()]);
        }
    }
    table::POOL_FIRST_BYTE.family(w);
    for (pool, p) in &pools {
        for (op, h) in OPS.iter().zip(&p.first_byte) {
            h.render(w, &table::POOL_FIRST_BYTE, [pool, &op.as_str()]);
        }
    }
}

/// The cores' per-pool latency summed, in pool-name order.
fn merge_pools(snapshots: &[Snapshot]) -> std::collections::BTreeMap<Arc<str>, PoolStats> {
    let mut pools: std::collections::BTreeMap<Arc<str>, PoolStats> = Default::default();
    for snap in snapshots {
        for (k, v) in &snap.pools {
            pools.entry(k.clone()).or_default().merge(v);
        }
    }
    pools
}

fn render_tenants(tenants: &std::collections::BTreeMap<TenantKey, TenantStats>, w: &mut String) {
    // Tenant and class names are validated label-safe (`[A-Za-z0-9_.-]`).
    table::TENANT_REQUESTS.family(w);
    for (k, v) in tenants {
        for (i, n) in v.requests.iter().enumerate().filter(|(_, n)| **n > 0) {
            let status = &STATUS_CLASSES[i];
            table::TENANT_REQUESTS.sample(w, [&k.tenant, &k.class, status], n);
        }
    }
    table::SHED_REQUESTS.family(w);
    for (k, v) in tenants {
        let mut rows: Vec<_> = v.shed.iter().collect();
        rows.sort();
        for (reason, n) in rows {
            table::SHED_REQUESTS.sample(w, [&k.tenant, &k.class, reason], n);
        }
    }
    table::QUEUED_REQUESTS.family(w);
    for (k, v) in tenants {
        for (reason, n) in [("tokens", v.waited_tokens), ("slot", v.waited_slot)] {
            table::QUEUED_REQUESTS.sample(w, [&k.tenant, &k.class, &reason], n);
        }
    }
    table::TENANT_BODY_BYTES.family(w);
    for (k, v) in tenants {
        for (dir, n) in DIRECTIONS.iter().zip([v.bytes_up, v.bytes_down]) {
            table::TENANT_BODY_BYTES.sample(w, [&k.tenant, &k.class, dir], n);
        }
    }
}

// Read access for the status page (`crate::admin`), which computes rates and quantiles
// from the same snapshots `/metrics` renders.

impl Histogram {
    /// Per-bucket counts (not cumulative), bounds as [`LATENCY_BUCKETS_SECONDS`], the
    /// last slot +Inf.
    pub fn counts(&self) -> &[u64; LATENCY_BUCKETS_SECONDS.len() + 1] {
        &self.counts
    }

    /// Adds `other`'s observations to these.
    pub fn add(&mut self, other: &Histogram) {
        self.merge(other);
    }
}

impl NodeStats {
    /// Time to the node's response head.
    pub fn first_byte(&self) -> &Histogram {
        &self.first_byte
    }

    /// Whole request duration.
    pub fn duration(&self) -> &Histogram {
        &self.duration
    }
}

impl TenantStats {
    /// Requests answered, by status class (1xx..5xx).
    pub fn requests_by_class(&self) -> [u64; 5] {
        self.requests
    }

    /// Requests weir answered `SlowDown` itself, all reasons.
    pub fn shed_total(&self) -> u64 {
        self.shed.values().sum()
    }

    /// Requests that waited at admission (for tokens or for a slot).
    pub fn queued_total(&self) -> u64 {
        self.waited_tokens + self.waited_slot
    }
}

/// The cores' snapshots summed: per node and per tenant, in label order.
pub fn merge(
    snapshots: Vec<Snapshot>,
) -> (
    std::collections::BTreeMap<NodeKey, NodeStats>,
    std::collections::BTreeMap<TenantKey, TenantStats>,
) {
    let mut nodes: std::collections::BTreeMap<NodeKey, NodeStats> = Default::default();
    let mut tenants: std::collections::BTreeMap<TenantKey, TenantStats> = Default::default();
    for snap in snapshots {
        for (k, v) in snap.nodes {
            nodes.entry(k).or_default().merge(&v);
        }
        for (k, v) in snap.tenants {
            tenants.entry(k).or_default().merge(&v);
        }
    }
    (nodes, tenants)
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
        h.render(&mut w, &table::REQUEST_DURATION, [&"p", &"n"]);
        let x = "weir_request_duration_seconds";
        assert!(w.contains(&format!(
            "{x}_bucket{{pool=\"p\",node=\"n\",le=\"0.0005\"}} 1\n"
        )));
        assert!(w.contains(&format!(
            "{x}_bucket{{pool=\"p\",node=\"n\",le=\"0.005\"}} 2\n"
        )));
        assert!(w.contains(&format!(
            "{x}_bucket{{pool=\"p\",node=\"n\",le=\"60\"}} 2\n"
        )));
        assert!(w.contains(&format!(
            "{x}_bucket{{pool=\"p\",node=\"n\",le=\"+Inf\"}} 3\n"
        )));
        assert!(w.contains(&format!("{x}_count{{pool=\"p\",node=\"n\"}} 3\n")));
    }

    #[test]
    fn ops_outside_the_classes_count_as_other() {
        assert_eq!(OPS[op_slot("read")].as_str(), "read");
        assert_eq!(OPS[op_slot("multipart")].as_str(), "multipart");
        assert_eq!(OPS[op_slot("bogus")].as_str(), "other");
    }

    /// Nodes an epoch dropped (a DNS name that moved) leave no series behind.
    #[test]
    fn series_of_nodes_no_longer_configured_are_forgotten() {
        let stats = Stats::default();
        let s = Sample {
            op: "read",
            status: 200,
            duration: Duration::from_millis(2),
            first_byte: None,
            bytes_up: 0,
            bytes_down: 0,
        };
        for i in 0..100 {
            let node = Arc::from(format!("10.0.0.{i}:9000").as_str());
            stats.record(
                NodeKey {
                    pool: Arc::from("p"),
                    node,
                },
                &s,
            );
        }
        let kept = NodeKey {
            pool: Arc::from("p"),
            node: Arc::from("10.0.0.7:9000"),
        };
        stats.retain_nodes(|k| *k == kept);
        let nodes: Vec<NodeKey> = stats.snapshot().nodes.into_iter().map(|(k, _)| k).collect();
        assert_eq!(nodes, vec![kept]);
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
        let tenant = TenantKey {
            tenant: Arc::from("t1"),
            class: Arc::from("bulk"),
        };
        let ts = TenantSample {
            status: 503,
            shed: Some("tenant_rate"),
            waited: crate::flows::Waited {
                for_tokens: true,
                for_slot: false,
            },
            bytes_up: 3,
            bytes_down: 0,
        };
        a.record_tenant(&tenant, &ts);
        b.record_tenant(&tenant, &ts);
        render(vec![a.snapshot(), b.snapshot()], &mut w);
        for line in [
            "weir_tenant_requests_total{tenant=\"t1\",class=\"bulk\",status=\"5xx\"} 2\n",
            "weir_shed_requests_total{tenant=\"t1\",class=\"bulk\",reason=\"tenant_rate\"} 2\n",
            "weir_queued_requests_total{tenant=\"t1\",class=\"bulk\",reason=\"tokens\"} 2\n",
            "weir_queued_requests_total{tenant=\"t1\",class=\"bulk\",reason=\"slot\"} 0\n",
            "weir_tenant_body_bytes_total{tenant=\"t1\",class=\"bulk\",direction=\"upload\"} 6\n",
        ] {
            assert!(w.contains(line), "{line} missing in {w}");
        }
        assert!(
            w.contains(
                "weir_node_requests_total{pool=\"p\",node=\"n:1\",op=\"read\",status=\"2xx\"} 2\n"
            ),
            "{w}"
        );
        assert!(w.contains(
            "weir_node_body_bytes_total{pool=\"p\",node=\"n:1\",direction=\"download\"} 20\n"
        ));
        for line in [
            "weir_pool_request_duration_seconds_count{pool=\"p\",op=\"read\"} 2\n",
            "weir_pool_request_duration_seconds_bucket{pool=\"p\",op=\"read\",le=\"0.001\"} 0\n",
            "weir_pool_request_duration_seconds_bucket{pool=\"p\",op=\"read\",le=\"0.0025\"} 2\n",
            "weir_pool_request_duration_seconds_count{pool=\"p\",op=\"write\"} 0\n",
            "weir_pool_upstream_first_byte_seconds_count{pool=\"p\",op=\"read\"} 2\n",
        ] {
            assert!(w.contains(line), "{line} missing in {w}");
        }
    }
}
