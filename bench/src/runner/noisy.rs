//! The noisy-neighbour scenario: a "training" tenant streaming 64 MiB GETs, measured
//! alone and then beside a "flood" tenant hammering 4 KiB GETs on many connections. Both
//! send their own access key (a dummy SigV4 `Authorization`, see [`crate::auth`]), so weir
//! with its limits (`bench/peers/weir-limits.toml`) puts them in different tenants and
//! holds the flood to its rate; HAProxy, nginx and Envoy have no notion of tenants and
//! forward everything. The simulator nodes count requests per access key, so the flood
//! that reached the storage is measured at the storage, not inferred.

use crate::load::Summary;

use super::peers::Kind;

/// Access key id of the training tenant (`[[tenant]] training` in weir-limits.toml).
pub const TRAINING_ACCESS_KEY: &str = "TRAINKEY0000EXAMPLE1";
/// Access key id of the flood tenant (`[[tenant]] flood` in weir-limits.toml).
pub const FLOOD_ACCESS_KEY: &str = "FLOODKEY0000EXAMPLE1";
/// weir's tenant names for them (metric labels).
pub const TRAINING_TENANT: &str = "training";
/// See [`TRAINING_TENANT`].
pub const FLOOD_TENANT: &str = "flood";
/// The flood tenant's `requests_per_sec` in weir-limits.toml.
pub const FLOOD_LIMIT_PER_S: f64 = 500.0;
/// What the limit lets through on top of its rate: the `[limits] burst` of 100 ms at
/// 500 req/s, plus one request per core (docs/limits.md, "Burst").
pub const FLOOD_LIMIT_EXTRA: f64 = 50.0 + 2.0;
/// Streams of the training tenant (64 MiB GETs).
pub const TRAINING_STREAMS: usize = 16;
/// Connections of the flood tenant (4 KiB GETs, back to back).
pub const FLOOD_CONNECTIONS: usize = 256;

/// weir's own counters for one tenant over a phase (differences of `/metrics` scrapes).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TenantCounters {
    /// `weir_tenant_requests_total`: requests of the tenant, every status.
    pub requests: f64,
    /// Of those, answered with a 5xx (weir's own SlowDown included).
    pub requests_5xx: f64,
    /// `weir_shed_requests_total`: refused with SlowDown by a limit, never sent on.
    pub shed: f64,
    /// `weir_queued_requests_total`: waited at admission (then went, or were shed).
    pub queued: f64,
}

impl TenantCounters {
    /// The counters of `tenant` in a Prometheus text scrape.
    pub fn scrape(text: &str, tenant: &str) -> Self {
        let label = ("tenant", tenant);
        Self {
            requests: metric_sum(text, "weir_tenant_requests_total", &[label]),
            requests_5xx: metric_sum(
                text,
                "weir_tenant_requests_total",
                &[label, ("status", "5xx")],
            ),
            shed: metric_sum(text, "weir_shed_requests_total", &[label]),
            queued: metric_sum(text, "weir_queued_requests_total", &[label]),
        }
    }

    /// `self - earlier`.
    pub fn since(&self, earlier: &TenantCounters) -> TenantCounters {
        TenantCounters {
            requests: self.requests - earlier.requests,
            requests_5xx: self.requests_5xx - earlier.requests_5xx,
            shed: self.shed - earlier.shed,
            queued: self.queued - earlier.queued,
        }
    }
}

/// Sum of the samples of metric `name` whose labels include every `(label, value)` of
/// `labels`, in a Prometheus text exposition. Absent metrics sum to 0.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (label_text, value) = if let Some(inner) = rest.strip_prefix('{') {
                let (inner, after) = inner.split_once('}')?;
                (inner, after)
            } else if rest.starts_with(' ') {
                ("", rest)
            } else {
                return None; // another metric with `name` as its prefix
            };
            let all = labels.iter().all(|(l, v)| {
                label_text
                    .split(',')
                    .any(|p| p.trim() == format!("{l}=\"{v}\""))
            });
            if !all {
                return None;
            }
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

/// One phase of a noisy-neighbour run: training alone, or training beside the flood.
#[derive(Clone)]
pub struct Phase {
    /// What the training load saw.
    pub training: Summary,
    /// What the flood load saw (none in the "alone" phase).
    pub flood: Option<Summary>,
    /// CPU-seconds of the proxy's processes during the phase (none for direct).
    pub proxy_cpu_s: Option<f64>,
    /// CPU-seconds of the simulator nodes.
    pub sims_cpu_s: f64,
    /// CPU-seconds of the load generators (this process).
    pub client_cpu_s: f64,
    /// 1-minute load average when the phase started.
    pub load_average: f64,
    /// Wall time of the phase (start of the loads to the end of the last one), seconds.
    pub wall_s: f64,
    /// Requests with the training key that reached the nodes (all three, summed).
    pub training_at_nodes: u64,
    /// Requests with the flood key that reached the nodes.
    pub flood_at_nodes: u64,
    /// weir's counters for the flood tenant (weir targets only).
    pub weir_flood: Option<TenantCounters>,
}

impl Phase {
    /// Training throughput, GB/s.
    pub fn training_gbps(&self) -> f64 {
        self.training.gbps()
    }

    /// Flood requests per second as the flood client saw them (answered, any status).
    pub fn flood_client_per_s(&self) -> Option<f64> {
        self.flood.as_ref().map(Summary::req_per_s)
    }

    /// Flood requests per second that reached the storage nodes, over the flood's run.
    pub fn flood_at_nodes_per_s(&self) -> Option<f64> {
        self.flood
            .as_ref()
            .map(|f| self.flood_at_nodes as f64 / f.elapsed.as_secs_f64().max(1e-9))
    }

    /// The most flood requests weir's limit lets reach the nodes in this phase (rate ×
    /// the flood's run + burst + one per core).
    pub fn flood_allowed(&self) -> Option<f64> {
        self.flood
            .as_ref()
            .map(|f| FLOOD_LIMIT_PER_S * f.elapsed.as_secs_f64() + FLOOD_LIMIT_EXTRA)
    }

    fn to_json(&self) -> String {
        let opt = |v: Option<f64>| v.map_or_else(|| "null".to_string(), |v| format!("{v:.4}"));
        let weir = self.weir_flood.as_ref().map_or_else(
            || "null".to_string(),
            |c| {
                format!(
                    "{{\"requests\":{},\"requests_5xx\":{},\"shed\":{},\"queued\":{}}}",
                    c.requests, c.requests_5xx, c.shed, c.queued
                )
            },
        );
        format!(
            "{{\"training\":{},\"flood\":{},\"proxy_cpu_s\":{},\"sims_cpu_s\":{:.3},\"client_cpu_s\":{:.3},\"load_average\":{:.2},\"wall_s\":{:.3},\"training_at_nodes\":{},\"flood_at_nodes\":{},\"weir_flood\":{weir}}}",
            self.training.to_json(),
            self.flood
                .as_ref()
                .map_or_else(|| "null".to_string(), Summary::to_json),
            opt(self.proxy_cpu_s),
            self.sims_cpu_s,
            self.client_cpu_s,
            self.load_average,
            self.wall_s,
            self.training_at_nodes,
            self.flood_at_nodes,
        )
    }
}

/// One noisy-neighbour run against one target: training alone, then beside the flood.
#[derive(Clone)]
pub struct NoisyRun {
    /// Target.
    pub kind: Kind,
    /// Round (0-based).
    pub round: usize,
    /// Position of the target within the round.
    pub position: usize,
    /// Training alone.
    pub alone: Phase,
    /// Training beside the flood.
    pub beside: Phase,
}

impl NoisyRun {
    /// Training GB/s beside the flood ÷ alone, in this run.
    pub fn kept(&self) -> Option<f64> {
        let alone = self.alone.training_gbps();
        (alone > 0.0).then(|| self.beside.training_gbps() / alone)
    }

    /// The raw record.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"scenario\":\"noisy-neighbour\",\"target\":\"{}\",\"round\":{},\"position\":{},\"alone\":{},\"beside\":{}}}",
            self.kind.name(),
            self.round,
            self.position,
            self.alone.to_json(),
            self.beside.to_json()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hist::Histogram;
    use crate::load::ErrorCounts;
    use std::time::Duration;

    const SCRAPE: &str = "\
# HELP weir_tenant_requests_total requests by tenant
# TYPE weir_tenant_requests_total counter
weir_tenant_requests_total{tenant=\"flood\",class=\"bulk\",status=\"2xx\"} 4000
weir_tenant_requests_total{tenant=\"flood\",class=\"bulk\",status=\"5xx\"} 25
weir_tenant_requests_total{tenant=\"training\",class=\"bulk\",status=\"2xx\"} 90
weir_tenant_requests_total_other{tenant=\"flood\"} 7
weir_shed_requests_total{tenant=\"flood\",class=\"bulk\",reason=\"tenant_rate\"} 20
weir_shed_requests_total{tenant=\"flood\",class=\"bulk\",reason=\"queue_timeout\"} 5
weir_queued_requests_total{tenant=\"flood\",class=\"bulk\",reason=\"tokens\"} 3900
weir_up 1
";

    #[test]
    fn prometheus_samples_are_summed_by_label() {
        assert_eq!(
            metric_sum(SCRAPE, "weir_tenant_requests_total", &[("tenant", "flood")]),
            4025.0
        );
        assert_eq!(
            metric_sum(SCRAPE, "weir_tenant_requests_total", &[]),
            4115.0
        );
        assert_eq!(metric_sum(SCRAPE, "weir_up", &[]), 1.0);
        assert_eq!(metric_sum(SCRAPE, "weir_missing", &[]), 0.0);
        assert_eq!(
            metric_sum(SCRAPE, "weir_tenant_requests_total", &[("tenant", "flo")]),
            0.0
        );
        let c = TenantCounters::scrape(SCRAPE, FLOOD_TENANT);
        assert_eq!(
            c,
            TenantCounters {
                requests: 4025.0,
                requests_5xx: 25.0,
                shed: 25.0,
                queued: 3900.0
            }
        );
        assert_eq!(c.since(&c), TenantCounters::default());
    }

    fn summary(secs: f64, bytes: u64, requests: u64) -> Summary {
        Summary {
            elapsed: Duration::from_secs_f64(secs),
            bytes,
            requests,
            errors: ErrorCounts::default(),
            latency_us: Histogram::new(),
            ttfb_us: Histogram::new(),
        }
    }

    fn phase(training: Summary, flood: Option<Summary>, flood_at_nodes: u64) -> Phase {
        Phase {
            training,
            flood,
            proxy_cpu_s: Some(1.0),
            sims_cpu_s: 1.0,
            client_cpu_s: 1.0,
            load_average: 2.0,
            wall_s: 10.0,
            training_at_nodes: 0,
            flood_at_nodes,
            weir_flood: None,
        }
    }

    #[test]
    fn rates_and_ratios() {
        let run = NoisyRun {
            kind: Kind::WeirProtected,
            round: 0,
            position: 0,
            alone: phase(summary(10.0, 40_000_000_000, 600), None, 0),
            beside: phase(
                summary(10.0, 30_000_000_000, 450),
                Some(summary(8.0, 0, 40_000)),
                4_000,
            ),
        };
        assert!((run.kept().unwrap() - 0.75).abs() < 1e-12);
        assert_eq!(run.beside.flood_at_nodes_per_s(), Some(500.0));
        assert_eq!(run.beside.flood_client_per_s(), Some(5000.0));
        assert_eq!(run.beside.flood_allowed(), Some(4000.0 + FLOOD_LIMIT_EXTRA));
        assert_eq!(run.alone.flood_at_nodes_per_s(), None);
        let json = run.to_json();
        assert!(
            json.starts_with("{\"scenario\":\"noisy-neighbour\""),
            "{json}"
        );
        assert!(json.contains("\"flood\":null"), "{json}");
    }

    #[test]
    fn weir_limits_give_the_flood_its_limit() {
        let limits = super::super::peers::WEIR_LIMITS_TEMPLATE;
        for key in [TRAINING_ACCESS_KEY, FLOOD_ACCESS_KEY] {
            assert!(limits.contains(&format!("\"{key}\"")), "{key}");
        }
        let flood = limits
            .split("[[")
            .find(|block| block.contains(&format!("name = \"{FLOOD_TENANT}\"")))
            .expect("a flood tenant block");
        assert!(
            flood.contains(&format!("requests_per_sec = {}", FLOOD_LIMIT_PER_S as u64)),
            "{flood}"
        );
        let training = limits
            .split("[[")
            .find(|block| block.contains(&format!("name = \"{TRAINING_TENANT}\"")))
            .expect("a training tenant block");
        assert!(!training.contains("_per_sec"), "training is unlimited");
    }
}
