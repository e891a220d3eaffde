//! The live status page (`GET /`, docs/operations.md "Status page"): three embedded files
//! and `GET /status.json`, which the page polls about once a second.
//!
//! What keeps the page from loading the appliance, however many are open:
//!
//! - **One round of questions per [`REFRESH`], per listener.** The answer's data (the
//!   nodes, statistics and flows the cores report, the same questions `/metrics`, `/nodes`
//!   and `/flows` ask) is computed at most once per [`REFRESH`] and shared by every page
//!   and poll on the listener; five pages cost the cores what one does.
//! - **Bounded answers.** Nodes come a page of at most [`NODES_PAGE_MAX`] rows at a time
//!   (problems first), with per-pool counts for the rest; flows as a count, a total rate
//!   and the [`FLOWS_SHOWN`] fastest; tenants are the configured ones.
//! - **Bounded memory.** Rates come from a ring of at most [`SAMPLES_MAX`] samples (the
//!   last minute); per-node first-byte quantiles from two baselines of the nodes'
//!   histograms, rotated every [`BASELINE_EVERY`].

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use weir_policy::health::NodeState;

use crate::bus::{Bus, Msg};
use crate::flows::{json_str, FlowReport};
use crate::metrics::{self, NodeSummary, Totals};
use crate::reload::Reloader;
use crate::settings::Settings;
use crate::stats::{self, Histogram, NodeKey, LATENCY_BUCKETS_SECONDS};

/// The page.
pub(super) const INDEX_HTML: &str = include_str!("page/index.html");
/// Its script.
pub(super) const STATUS_JS: &str = include_str!("page/status.js");
/// Its style sheet.
pub(super) const STATUS_CSS: &str = include_str!("page/status.css");

/// How long one round of answers from the cores serves every poll.
pub(super) const REFRESH: Duration = Duration::from_millis(500);
/// Most node rows in one answer.
pub(super) const NODES_PAGE_MAX: usize = 200;
/// Node rows when the page does not ask for a number.
const NODES_PAGE_DEFAULT: usize = 50;
/// Flows listed (the fastest); the rest are counted.
pub(super) const FLOWS_SHOWN: usize = 20;
/// Samples kept for rates, history and the last minute's counts.
const SAMPLES_MAX: usize = 150;
/// How far back the "last minute" counts reach.
const MINUTE: Duration = Duration::from_secs(60);
/// Window of the headline p99.
const P99_WINDOW: Duration = Duration::from_secs(10);
/// Rotation of the per-node first-byte baselines: quantiles cover the last 30–60 s.
const BASELINE_EVERY: Duration = Duration::from_secs(30);
/// Longest node filter taken from the query.
const FILTER_BYTES_MAX: usize = 64;

/// Everything a poll needs that does not depend on its query.
struct Model {
    /// JSON members (no braces) that every answer carries.
    head: String,
    /// Node rows, problems first: (lower-cased `pool node` for the filter, JSON object).
    nodes: Vec<(String, String)>,
}

/// The counters of one moment.
struct Sample {
    at: Instant,
    totals: Totals,
    /// Shed by weir itself, all tenants.
    shed: u64,
    /// Request durations, all nodes.
    duration: Histogram,
}

/// Per-listener state of the status page (its executor is single-threaded).
pub(super) struct Status {
    started: Instant,
    samples: VecDeque<Sample>,
    /// Per-node first-byte histograms: the older baseline (quantiles are measured from
    /// it) and the newer one.
    baselines: [Option<(Instant, HashMap<NodeKey, Histogram>)>; 2],
    model: Option<(Instant, std::rc::Rc<Model>)>,
    /// The last epoch and config read (a reload in progress holds them).
    config: Option<(u64, Arc<Settings>)>,
    /// Each tenant's (admitted, queued, shed) at the last refresh, for its rates.
    tenants: Option<(Instant, HashMap<stats::TenantKey, [u64; 3]>)>,
}

/// What a poll asks for (`?offset=&limit=&q=`).
pub(super) struct Query {
    offset: usize,
    limit: usize,
    filter: String,
}

impl Query {
    /// Reads the query string; anything unknown or malformed takes its default.
    pub(super) fn parse(query: Option<&str>) -> Query {
        let mut q = Query {
            offset: 0,
            limit: NODES_PAGE_DEFAULT,
            filter: String::new(),
        };
        for pair in query.unwrap_or("").split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "offset" => q.offset = value.parse().unwrap_or(0),
                "limit" => {
                    q.limit = value
                        .parse::<usize>()
                        .unwrap_or(NODES_PAGE_DEFAULT)
                        .clamp(1, NODES_PAGE_MAX)
                }
                "q" => q.filter = percent_decode(value, FILTER_BYTES_MAX).to_lowercase(),
                _ => {}
            }
        }
        q
    }
}

/// `value` percent-decoded (`+` as space), cut at `max` bytes; invalid UTF-8 is replaced.
fn percent_decode(value: &str, max: usize) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len().min(max));
    let mut i = 0;
    while i < bytes.len() && out.len() < max {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let v = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Status {
    /// Empty state; the first poll asks the cores.
    pub(super) fn new(started: Instant) -> Status {
        Status {
            started,
            samples: VecDeque::new(),
            baselines: [None, None],
            model: None,
            config: None,
            tenants: None,
        }
    }

    /// The current model if it is younger than [`REFRESH`].
    fn fresh(&self, now: Instant) -> Option<std::rc::Rc<Model>> {
        match &self.model {
            Some((at, m)) if now.saturating_duration_since(*at) < REFRESH => Some(m.clone()),
            _ => None,
        }
    }
}

/// The answer to `GET /status.json`: from the shared model when it is fresh, else after
/// one round of questions to the cores (taken through the listener's gate by the caller).
pub(super) fn fresh_answer(status: &std::cell::RefCell<Status>, query: &Query) -> Option<String> {
    let model = status.borrow().fresh(Instant::now())?;
    Some(render(&model, query))
}

/// Asks the cores, updates the shared model and renders the answer.
pub(super) async fn refresh_answer(
    status: &std::cell::RefCell<Status>,
    bus: &Bus,
    registry: &metrics::Registry,
    reloader: &Reloader,
    query: &Query,
) -> String {
    // Another poll may have refreshed it while this one waited at the gate.
    if let Some(answer) = fresh_answer(status, query) {
        return answer;
    }
    let nodes = super::cores::ask(bus, Msg::QueryNodes);
    let stats = super::cores::ask(bus, Msg::QueryStats);
    let flows = super::cores::ask(bus, Msg::QueryFlows);
    let nodes = metrics::merge_nodes(super::cores::collect(nodes).await);
    let stats = super::cores::collect(stats).await;
    let flows = super::cores::collect(flows).await;
    let totals = registry.totals();
    let config = reloader.current();
    let last_reload = reloader.last();
    let model = {
        let mut s = status.borrow_mut();
        if let Some(c) = config {
            s.config = Some(c);
        }
        let model = std::rc::Rc::new(build(
            &mut s,
            Instant::now(),
            totals,
            nodes,
            stats,
            flows,
            last_reload,
        ));
        s.model = Some((Instant::now(), model.clone()));
        model
    };
    render(&model, query)
}

/// The JSON answer for `query` from `model`.
fn render(model: &Model, query: &Query) -> String {
    let matched: Vec<&String> = model
        .nodes
        .iter()
        .filter(|(key, _)| query.filter.is_empty() || key.contains(&query.filter))
        .map(|(_, json)| json)
        .collect();
    let offset = query.offset.min(matched.len());
    let rows = &matched[offset..(offset + query.limit).min(matched.len())];
    let mut w = String::with_capacity(model.head.len() + rows.len() * 256 + 128);
    w.push('{');
    w.push_str(&model.head);
    let _ = write!(
        w,
        ",\"nodes\":{{\"total\":{},\"matched\":{},\"offset\":{offset},\"limit\":{},\"rows\":[",
        model.nodes.len(),
        matched.len(),
        query.limit
    );
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            w.push(',');
        }
        w.push_str(row);
    }
    w.push_str("]}}\n");
    w
}

/// Sort rank of a state: what needs attention first.
fn rank(state: NodeState) -> u8 {
    match state {
        NodeState::Down => 0,
        NodeState::Degraded => 1,
        NodeState::Draining => 2,
        NodeState::Up => 3,
    }
}

/// A JSON number, or `null` for none (and for what JSON cannot carry).
fn num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.6}"),
        _ => "null".into(),
    }
}

/// Per-second rate of a counter between two samples.
fn rate(new: u64, old: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        new.saturating_sub(old) as f64 / secs
    } else {
        0.0
    }
}

/// `new - old`, bucket by bucket (counters only grow; saturating anyway).
fn delta(new: &Histogram, old: Option<&Histogram>) -> [u64; LATENCY_BUCKETS_SECONDS.len() + 1] {
    let mut out = *new.counts();
    if let Some(old) = old {
        for (a, b) in out.iter_mut().zip(old.counts()) {
            *a = a.saturating_sub(*b);
        }
    }
    out
}

/// The `q` quantile of bucket counts, interpolated linearly inside its bucket (as
/// Prometheus' `histogram_quantile`); the +Inf bucket answers the largest finite bound.
pub(super) fn quantile(counts: &[u64; LATENCY_BUCKETS_SECONDS.len() + 1], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &n) in counts.iter().enumerate() {
        if n > 0 && (below + n) as f64 >= rank {
            let Some(&upper) = LATENCY_BUCKETS_SECONDS.get(i) else {
                return LATENCY_BUCKETS_SECONDS.last().copied();
            };
            let lower = if i == 0 {
                0.0
            } else {
                LATENCY_BUCKETS_SECONDS[i - 1]
            };
            let into = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
            return Some(lower + (upper - lower) * into);
        }
        below += n;
    }
    LATENCY_BUCKETS_SECONDS.last().copied()
}

/// One refresh: takes a sample, rotates baselines, and renders everything but the node
/// page.
fn build(
    s: &mut Status,
    now: Instant,
    totals: Totals,
    nodes: Vec<NodeSummary>,
    stats: Vec<stats::Snapshot>,
    flows: Vec<Vec<FlowReport>>,
    last_reload: Option<crate::reload::LastReload>,
) -> Model {
    let (node_stats, tenant_stats) = stats::merge(stats);
    let mut duration = Histogram::default();
    for v in node_stats.values() {
        duration.add(v.duration());
    }
    let shed = tenant_stats
        .values()
        .map(stats::TenantStats::shed_total)
        .sum();
    let sample = Sample {
        at: now,
        totals,
        shed,
        duration,
    };

    // Baselines for the per-node first-byte quantiles.
    let rotate = match &s.baselines[1] {
        None => true,
        Some((at, _)) => now.saturating_duration_since(*at) >= BASELINE_EVERY,
    };
    if rotate {
        let current: HashMap<NodeKey, Histogram> = node_stats
            .iter()
            .map(|(k, v)| (k.clone(), v.first_byte().clone()))
            .collect();
        s.baselines[0] = s.baselines[1].take();
        s.baselines[1] = Some((now, current));
    }
    let (base_at, base) = match &s.baselines[0] {
        Some((at, map)) => (Some(*at), Some(map)),
        None => (None, None),
    };

    let mut w = String::with_capacity(4096);
    // Identity and config.
    let _ = write!(
        w,
        "\"version\":{},\"driver\":{},\"cores\":{},\"uptime_seconds\":{:.0},\"refresh_seconds\":{}",
        json_str(env!("CARGO_PKG_VERSION")),
        json_str(totals.driver),
        totals.cores,
        now.saturating_duration_since(s.started).as_secs_f64(),
        REFRESH.as_secs_f64(),
    );
    match &s.config {
        Some((epoch, _)) => {
            let _ = write!(w, ",\"epoch\":{epoch}");
        }
        None => w.push_str(",\"epoch\":null"),
    }
    let _ = write!(
        w,
        ",\"reloads\":{{\"committed\":{},\"rejected\":{}}}",
        totals.reloads_committed, totals.reloads_rejected
    );
    match last_reload {
        Some(last) => {
            let ago = SystemTime::now()
                .duration_since(last.at)
                .unwrap_or_default()
                .as_secs_f64();
            let (ok, message) = match &last.outcome {
                Ok(m) => (true, m.as_str()),
                Err(m) => (false, m.as_str()),
            };
            let _ = write!(
                w,
                ",\"last_reload\":{{\"ok\":{ok},\"message\":{},\"age_seconds\":{ago:.0}}}",
                json_str(message)
            );
        }
        None => w.push_str(",\"last_reload\":null"),
    }

    // Rates now, the history, the last minute.
    s.samples.push_back(sample);
    while s.samples.len() > SAMPLES_MAX
        || s.samples
            .front()
            .is_some_and(|f| now.saturating_duration_since(f.at) > MINUTE + BASELINE_EVERY)
    {
        s.samples.pop_front();
    }
    let newest = s.samples.back();
    let previous = s.samples.iter().rev().nth(1);
    let (rps, eps, bin, bout) = match (newest, previous) {
        (Some(n), Some(p)) => {
            let secs = n.at.saturating_duration_since(p.at).as_secs_f64();
            (
                rate(
                    n.totals.requests.iter().sum(),
                    p.totals.requests.iter().sum(),
                    secs,
                ),
                rate(n.totals.requests[4], p.totals.requests[4], secs),
                rate(n.totals.bytes_up, p.totals.bytes_up, secs),
                rate(n.totals.bytes_down, p.totals.bytes_down, secs),
            )
        }
        _ => (0.0, 0.0, 0.0, 0.0),
    };
    let p99_base = s
        .samples
        .iter()
        .find(|x| now.saturating_duration_since(x.at) <= P99_WINDOW)
        .filter(|x| x.at < now);
    let p99 =
        newest.and_then(|n| quantile(&delta(&n.duration, p99_base.map(|b| &b.duration)), 0.99));
    let _ = write!(
        w,
        ",\"now\":{{\"requests_per_second\":{rps:.1},\"errors_per_second\":{eps:.1},\"bytes_in_per_second\":{bin:.0},\"bytes_out_per_second\":{bout:.0},\"p99_seconds\":{},\"connections\":{},\"in_flight\":{}}}",
        num(p99),
        totals.connections_active,
        totals.requests_in_flight,
    );
    let mut history = [
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    ];
    let list: Vec<&Sample> = s.samples.iter().collect();
    for (i, pair) in list.windows(2).enumerate() {
        let (p, n) = (pair[0], pair[1]);
        let secs = n.at.saturating_duration_since(p.at).as_secs_f64();
        let sep = if i > 0 { "," } else { "" };
        let values = [
            format!("{:.2}", -now.saturating_duration_since(n.at).as_secs_f64()),
            format!(
                "{:.1}",
                rate(
                    n.totals.requests.iter().sum(),
                    p.totals.requests.iter().sum(),
                    secs
                )
            ),
            format!(
                "{:.1}",
                rate(n.totals.requests[4], p.totals.requests[4], secs)
            ),
            format!("{:.0}", rate(n.totals.bytes_up, p.totals.bytes_up, secs)),
            format!(
                "{:.0}",
                rate(n.totals.bytes_down, p.totals.bytes_down, secs)
            ),
            num(quantile(&delta(&n.duration, Some(&p.duration)), 0.99)),
        ];
        for (h, v) in history.iter_mut().zip(values) {
            h.push_str(sep);
            h.push_str(&v);
        }
    }
    let _ = write!(
        w,
        ",\"history\":{{\"at_seconds\":[{}],\"requests_per_second\":[{}],\"errors_per_second\":[{}],\"bytes_in_per_second\":[{}],\"bytes_out_per_second\":[{}],\"p99_seconds\":[{}]}}",
        history[0], history[1], history[2], history[3], history[4], history[5]
    );
    let minute_base = s
        .samples
        .iter()
        .find(|x| now.saturating_duration_since(x.at) <= MINUTE);
    if let (Some(n), Some(o)) = (newest, minute_base) {
        let _ = write!(
            w,
            ",\"minute\":{{\"window_seconds\":{:.1},\"retries\":{},\"resumes\":{},\"resumes_failed\":{},\"throttled\":{},\"shed\":{},\"rejected\":{}}}",
            now.saturating_duration_since(o.at).as_secs_f64(),
            n.totals.retries.saturating_sub(o.totals.retries),
            n.totals.resumes.saturating_sub(o.totals.resumes),
            n.totals.resumes_failed.saturating_sub(o.totals.resumes_failed),
            n.totals.throttled.saturating_sub(o.totals.throttled),
            n.shed.saturating_sub(o.shed),
            n.totals.rejected.saturating_sub(o.totals.rejected),
        );
    }

    // Pools: every node counted by state.
    let mut pools: Vec<(&str, [u32; 4], u64, u64)> = Vec::new();
    for n in &nodes {
        let i = match pools.iter().position(|p| p.0 == n.pool()) {
            Some(i) => i,
            None => {
                pools.push((n.pool(), [0; 4], 0, 0));
                pools.len() - 1
            }
        };
        let p = &mut pools[i];
        let slot = match n.state() {
            NodeState::Up => 0,
            NodeState::Degraded => 1,
            NodeState::Down => 2,
            NodeState::Draining => 3,
        };
        p.1[slot] += 1;
        p.2 += u64::from(n.inflight());
        p.3 += u64::from(n.limit());
    }
    w.push_str(",\"pools\":[");
    for (i, (name, states, inflight, limit)) in pools.iter().enumerate() {
        let _ = write!(
            w,
            "{}{{\"pool\":{},\"up\":{},\"degraded\":{},\"down\":{},\"draining\":{},\"inflight\":{inflight},\"limit\":{limit}}}",
            if i > 0 { "," } else { "" },
            json_str(name),
            states[0],
            states[1],
            states[2],
            states[3],
        );
    }
    w.push(']');

    // Flows: a count, a total rate and the fastest.
    let mut all: Vec<FlowReport> = flows.into_iter().flatten().collect();
    let flows_total = all.len();
    let flows_rate: f64 = all.iter().map(FlowReport::rate_bytes_per_sec).sum();
    if all.len() > FLOWS_SHOWN {
        all.select_nth_unstable_by(FLOWS_SHOWN - 1, |a, b| {
            b.rate_bytes_per_sec().total_cmp(&a.rate_bytes_per_sec())
        });
        all.truncate(FLOWS_SHOWN);
    }
    all.sort_by(|a, b| b.rate_bytes_per_sec().total_cmp(&a.rate_bytes_per_sec()));
    let _ = write!(
        w,
        ",\"flows\":{{\"total\":{flows_total},\"bytes_per_second\":{flows_rate:.0},\"shown\":["
    );
    for (i, f) in all.iter().enumerate() {
        if i > 0 {
            w.push(',');
        }
        w.push_str(&f.to_json());
    }
    w.push_str("]}");

    // Tenants and classes: rates over the last refresh, and their limits.
    w.push_str(",\"tenants\":[");
    let counts: HashMap<stats::TenantKey, [u64; 3]> = tenant_stats
        .iter()
        .map(|(k, v)| {
            let requests: u64 = v.requests_by_class().iter().sum();
            let shed = v.shed_total();
            // Admitted: answered without weir shedding it.
            (
                k.clone(),
                [requests.saturating_sub(shed), v.queued_total(), shed],
            )
        })
        .collect();
    let before = s.tenants.take();
    let secs = before
        .as_ref()
        .map(|(at, _)| now.saturating_duration_since(*at).as_secs_f64());
    for (i, (k, c)) in tenant_stats
        .keys()
        .filter_map(|k| Some((k, counts.get(k)?)))
        .enumerate()
    {
        let old = before
            .as_ref()
            .and_then(|(_, m)| m.get(k))
            .copied()
            .unwrap_or(*c);
        let per_sec = |j: usize| rate(c[j], old[j], secs.unwrap_or(0.0));
        let limits = s
            .config
            .as_ref()
            .map(|(_, cfg)| limits_text(cfg, &k.tenant, &k.class))
            .unwrap_or_default();
        let _ = write!(
            w,
            "{}{{\"tenant\":{},\"class\":{},\"admitted_per_second\":{:.1},\"queued_per_second\":{:.1},\"shed_per_second\":{:.1},\"admitted\":{},\"queued\":{},\"shed\":{},\"limits\":{}}}",
            if i > 0 { "," } else { "" },
            json_str(&k.tenant),
            json_str(&k.class),
            per_sec(0),
            per_sec(1),
            per_sec(2),
            c[0],
            c[1],
            c[2],
            json_str(&limits),
        );
    }
    w.push(']');
    s.tenants = Some((now, counts));

    // Nodes: problems first, then by pool and address.
    let window_secs = base_at.map(|at| now.saturating_duration_since(at).as_secs_f64());
    let _ = write!(w, ",\"first_byte_window_seconds\":{}", num(window_secs));
    let mut order: Vec<&NodeSummary> = nodes.iter().collect();
    order.sort_by(|a, b| {
        (rank(a.state()), a.pool(), a.addr()).cmp(&(rank(b.state()), b.pool(), b.addr()))
    });
    let rows = order
        .into_iter()
        .map(|n| {
            let key = NodeKey {
                pool: Arc::from(n.pool()),
                node: Arc::from(n.addr()),
            };
            let fb = node_stats
                .get(&key)
                .map(|st| delta(st.first_byte(), base.and_then(|b| b.get(&key))));
            let p50 = fb.as_ref().and_then(|c| quantile(c, 0.5));
            let p99 = fb.as_ref().and_then(|c| quantile(c, 0.99));
            let json = format!(
                "{{\"pool\":{},\"node\":{},\"state\":\"{}\",\"reason\":{},\"since_seconds\":{:.1},\"inflight\":{},\"limit\":{},\"first_byte_p50_seconds\":{},\"first_byte_p99_seconds\":{},{}}}",
                json_str(n.pool()),
                json_str(n.addr()),
                n.state(),
                json_str(n.reason()),
                n.since_secs(),
                n.inflight(),
                n.limit(),
                num(p50),
                num(p99),
                n.admin_json(),
            );
            (format!("{} {}", n.pool(), n.addr()).to_lowercase(), json)
        })
        .collect();
    Model {
        head: w,
        nodes: rows,
    }
}

/// A tenant's and its class's limits in words ("" when none is set).
fn limits_text(cfg: &Settings, tenant: &str, class: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let rate = |r: &weir_policy::config::RateLimit, parts: &mut Vec<String>, who: &str| {
        if let Some(n) = r.requests_per_sec {
            parts.push(format!("{who} {n} req/s"));
        }
        if let Some(n) = r.upload_bytes_per_sec {
            parts.push(format!("{who} up {n} B/s"));
        }
        if let Some(n) = r.download_bytes_per_sec {
            parts.push(format!("{who} down {n} B/s"));
        }
    };
    if let Some(t) = cfg.config.tenants.iter().find(|t| t.name == tenant) {
        rate(&t.rate, &mut parts, "tenant");
        if let Some(n) = t.inflight_max {
            parts.push(format!("tenant {n} in flight"));
        }
    }
    if let Some(c) = cfg.config.classes.iter().find(|c| c.name == class) {
        rate(&c.rate, &mut parts, "class");
        parts.push(format!("class weight {}, queue {}", c.weight, c.queue_max));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_inside_the_bucket() {
        let mut counts = [0u64; LATENCY_BUCKETS_SECONDS.len() + 1];
        assert_eq!(quantile(&counts, 0.99), None);
        // 100 observations in (1 ms, 2.5 ms].
        counts[2] = 100;
        let p50 = quantile(&counts, 0.5).unwrap();
        assert!((p50 - 0.00175).abs() < 1e-9, "{p50}");
        // One slow outlier above 60 s: p99 stays in the first bucket, p100 is capped.
        counts[LATENCY_BUCKETS_SECONDS.len()] = 1;
        assert!(quantile(&counts, 0.99).unwrap() <= 0.0025);
        assert_eq!(quantile(&counts, 1.0), Some(60.0));
    }

    #[test]
    fn query_is_bounded_and_decoded() {
        let q = Query::parse(Some("offset=40&limit=100000&q=Pool%20A+b"));
        assert_eq!(
            (q.offset, q.limit, q.filter.as_str()),
            (40, NODES_PAGE_MAX, "pool a b")
        );
        let q = Query::parse(Some("limit=x&offset=-1&q=%zz"));
        assert_eq!(
            (q.offset, q.limit, q.filter.as_str()),
            (0, NODES_PAGE_DEFAULT, "%zz")
        );
        let long = "a".repeat(1000);
        assert_eq!(
            Query::parse(Some(&format!("q={long}"))).filter.len(),
            FILTER_BYTES_MAX
        );
        assert_eq!(Query::parse(None).limit, NODES_PAGE_DEFAULT);
    }

    #[test]
    fn render_pages_and_filters_the_nodes() {
        let model = Model {
            head: "\"version\":\"x\"".into(),
            nodes: (0..10)
                .map(|i| (format!("p 10.0.0.{i}:9000"), format!("{{\"n\":{i}}}")))
                .collect(),
        };
        let out = render(&model, &Query::parse(Some("offset=8&limit=5")));
        assert_eq!(
            out,
            "{\"version\":\"x\",\"nodes\":{\"total\":10,\"matched\":10,\"offset\":8,\"limit\":5,\"rows\":[{\"n\":8},{\"n\":9}]}}\n"
        );
        let out = render(&model, &Query::parse(Some("q=10.0.0.3")));
        assert!(
            out.ends_with("\"matched\":1,\"offset\":0,\"limit\":50,\"rows\":[{\"n\":3}]}}\n"),
            "{out}"
        );
        let out = render(&model, &Query::parse(Some("offset=99")));
        assert!(
            out.ends_with("\"offset\":10,\"limit\":50,\"rows\":[]}}\n"),
            "{out}"
        );
    }
}
