//! The comparison runner behind `weir-bench-run`: the same workload straight at the
//! simulator nodes, through weir (bare and with its protection on) and through HAProxy,
//! nginx and Envoy, in interleaved rounds of one run; per-cell proxy CPU-seconds and peak
//! RSS from `/proc`; Markdown tables and SVG plots in `bench/results/`.
//!
//! - `procs`: child processes and what `/proc` says about them;
//! - `peers`: the targets and their configuration templates (`bench/peers/`);
//! - `stats`: medians and min–max spreads;
//! - `svg`: the plots;
//! - `report`: the result pages;
//! - `noisy`: the noisy-neighbour scenario's records (two tenants, per-key node counts);
//! - `seaweed`: the real-cluster scenario's SeaweedFS cluster (one `weed server`, three
//!   `weed s3` gateways that verify SigV4);
//! - `tls`: the TLS scenario (curl over HTTPS through weir's rustls and kTLS paths and
//!   HAProxy), self-contained from its proxies to its page;
//! - `identity`: the identity scenario (weir bare vs SigV4 verification vs verification +
//!   re-signing, header-signed and streaming-signed), self-contained like `tls`;
//! - `attack`: the attack scenario (innocent clients beside slowloris, slow bodies, idle
//!   connections, header bombs and a connection flood; what each proxy holds), likewise;
//! - `cli`: the command line;
//! - `harness`: what a run holds on to (nodes, targets, records, notes) and what the
//!   scenarios share: starting them, the correctness pass, the interleaved rounds;
//! - `scenario`: the `Scenario` trait (name, what it needs started, cells, run, page);
//! - `scenarios`: one implementation per scenario, and the registry `weir-bench-run` runs
//!   them from.
//!
//! The binary (`src/bin/weir-bench-run.rs`) checks the command line, runs the chosen
//! scenarios of the registry and writes their pages and the index.

pub mod attack;
pub mod cli;
pub mod harness;
pub mod identity;
pub mod noisy;
pub mod peers;
pub mod procs;
pub mod report;
pub mod scenario;
pub mod scenarios;
pub mod seaweed;
pub mod stats;
pub mod svg;
pub mod tls;

use crate::load::{ErrorCounts, Summary};
use peers::Kind;

/// One measured cell: a scenario's workload variant, against one target, in one round.
#[derive(Clone)]
pub struct Measurement {
    /// The scenario's name.
    pub scenario: &'static str,
    /// Cell label within the scenario (e.g. "16 streams").
    pub cell: String,
    /// Target.
    pub kind: Kind,
    /// Round number (0-based).
    pub round: usize,
    /// Position of this target within the round (0 = ran first).
    pub position: usize,
    /// What the load generator saw.
    pub summary: Summary,
    /// CPU-seconds of the proxy's processes during the cell (none for direct).
    pub proxy_cpu_s: Option<f64>,
    /// Peak RSS of the proxy's processes during the cell, summed, in bytes.
    pub proxy_peak_rss_bytes: Option<u64>,
    /// CPU-seconds of the simulator nodes during the cell.
    pub sims_cpu_s: f64,
    /// CPU-seconds of the load generator (this process) during the cell.
    pub client_cpu_s: f64,
    /// 1-minute load average when the cell started.
    pub load_average: f64,
}

impl Measurement {
    /// Proxy CPU-seconds per GB (10^9 bytes) moved.
    pub fn cpu_s_per_gb(&self) -> Option<f64> {
        let gb = self.summary.bytes as f64 / 1e9;
        self.proxy_cpu_s.filter(|_| gb > 0.0).map(|cpu| cpu / gb)
    }

    /// Simulator CPU-seconds per GB.
    pub fn sims_cpu_s_per_gb(&self) -> Option<f64> {
        let gb = self.summary.bytes as f64 / 1e9;
        (gb > 0.0).then(|| self.sims_cpu_s / gb)
    }

    /// Proxy CPU-microseconds per request.
    pub fn cpu_us_per_request(&self) -> Option<f64> {
        let requests = self.summary.requests as f64;
        self.proxy_cpu_s
            .filter(|_| requests > 0.0)
            .map(|cpu| cpu * 1e6 / requests)
    }

    /// Requests per second per proxy core: requests / proxy CPU-seconds.
    pub fn req_per_core_s(&self) -> Option<f64> {
        self.proxy_cpu_s
            .filter(|cpu| *cpu > 0.0)
            .map(|cpu| self.summary.requests as f64 / cpu)
    }

    /// One JSON object (the raw record in `bench/results/raw/`).
    pub fn to_json(&self) -> String {
        let opt = |v: Option<f64>| v.map_or_else(|| "null".to_string(), |v| format!("{v:.4}"));
        format!(
            "{{\"scenario\":\"{}\",\"cell\":\"{}\",\"target\":\"{}\",\"round\":{},\"position\":{},\"proxy_cpu_s\":{},\"proxy_peak_rss_bytes\":{},\"sims_cpu_s\":{:.3},\"client_cpu_s\":{:.3},\"load_average\":{:.2},\"load\":{}}}",
            self.scenario,
            self.cell,
            self.kind.name(),
            self.round,
            self.position,
            opt(self.proxy_cpu_s),
            self.proxy_peak_rss_bytes
                .map_or_else(|| "null".to_string(), |v| v.to_string()),
            self.sims_cpu_s,
            self.client_cpu_s,
            self.load_average,
            self.summary.to_json()
        )
    }
}

/// Throughput bins of one failover run.
#[derive(Clone)]
pub struct FailoverRun {
    /// Target.
    pub kind: Kind,
    /// `(end of bin in seconds since start, GB/s in the bin)`.
    pub bins: Vec<(f64, f64)>,
    /// When the node was killed, seconds since start.
    pub kill_at_s: f64,
    /// What the load generator saw over the whole run.
    pub summary: Summary,
    /// weir's retry/resume/failure counters after the run (weir-protected only).
    pub weir_metrics: Vec<String>,
}

/// Bin width of the failover time series, in seconds.
pub const FAILOVER_BIN_S: f64 = 0.1;

impl FailoverRun {
    /// Time-weighted mean GB/s of the bins ending in `(from, to]` (bins may be wider
    /// than [`FAILOVER_BIN_S`] when the runner was descheduled).
    fn mean_gbps(&self, from: f64, to: f64) -> f64 {
        let mut weighted = 0.0;
        let mut width = 0.0;
        let mut previous_end = 0.0;
        for &(end, gbps) in &self.bins {
            let w = end - previous_end;
            previous_end = end;
            if end > from && end <= to {
                weighted += gbps * w;
                width += w;
            }
        }
        if width > 0.0 {
            weighted / width
        } else {
            f64::NAN
        }
    }

    /// Mean GB/s from 1 s after start until the kill.
    pub fn before_gbps(&self) -> f64 {
        self.mean_gbps(1.0, self.kill_at_s)
    }

    /// 500 ms averages ending at each bin after the kill (once 500 ms have passed):
    /// `(end time, GB/s)`.
    fn smoothed_after(&self) -> Vec<(f64, f64)> {
        self.bins
            .iter()
            .filter(|(t, _)| *t >= self.kill_at_s + 0.5 - 1e-9)
            .map(|&(t, _)| (t, self.mean_gbps(t - 0.5, t)))
            .collect()
    }

    /// Lowest 500 ms average after the kill, as a fraction of the mean before it.
    pub fn dip_ratio(&self) -> Option<f64> {
        let before = self.before_gbps();
        let low = self
            .smoothed_after()
            .iter()
            .map(|(_, g)| *g)
            .fold(f64::INFINITY, f64::min);
        (before > 0.0 && low.is_finite()).then(|| low / before)
    }

    /// Seconds from the kill until a 500 ms average first reaches 90% of the mean
    /// before the kill (at least 0.5: the first window starts at the kill).
    pub fn recovery_s(&self) -> Option<f64> {
        let before = self.before_gbps();
        self.smoothed_after()
            .iter()
            .find(|(_, g)| *g >= 0.9 * before)
            .map(|(t, _)| t - self.kill_at_s)
    }

    /// Mean GB/s from 1 s after the kill to the end, as a fraction of before.
    pub fn after_ratio(&self) -> Option<f64> {
        let before = self.before_gbps();
        let end = self.bins.last().map_or(0.0, |(t, _)| *t);
        let after = self.mean_gbps(self.kill_at_s + 1.0, end);
        (before > 0.0 && after.is_finite()).then(|| after / before)
    }

    /// The raw record.
    pub fn to_json(&self) -> String {
        let bins: Vec<String> = self
            .bins
            .iter()
            .map(|(t, g)| format!("[{t:.2},{g:.4}]"))
            .collect();
        format!(
            "{{\"scenario\":\"failover\",\"target\":\"{}\",\"kill_at_s\":{:.2},\"bins\":[{}],\"load\":{}}}",
            self.kind.name(),
            self.kill_at_s,
            bins.join(","),
            self.summary.to_json()
        )
    }
}

/// Errors as `0` or `5 (io 3, timeout 2)`.
pub fn show_errors(errors: &ErrorCounts) -> String {
    let total = errors.total();
    if total == 0 {
        return "0".to_string();
    }
    let kinds = [
        ("connect", errors.connect),
        ("timeout", errors.timeout),
        ("io", errors.io),
        ("status", errors.status),
        ("mismatch", errors.mismatch),
    ];
    let parts: Vec<String> = kinds
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| match *name {
            "status" if errors.status_503 > 0 => {
                format!("status {n}, of which 503 {}", errors.status_503)
            }
            _ => format!("{name} {n}"),
        })
        .collect();
    format!("{total} ({})", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hist::Histogram;
    use std::time::Duration;

    fn summary() -> Summary {
        Summary {
            elapsed: Duration::from_secs(1),
            bytes: 0,
            requests: 0,
            errors: ErrorCounts::default(),
            latency_us: Histogram::new(),
            ttfb_us: Histogram::new(),
        }
    }

    #[test]
    fn failover_recovery_is_read_from_the_bins() {
        // 2 GB/s until the kill at 5 s, 0.5 GB/s for 0.3 s, then 1.9 GB/s.
        let bins = (1..=100)
            .map(|i| {
                let t = i as f64 * FAILOVER_BIN_S;
                let g = if t <= 5.0 {
                    2.0
                } else if t <= 5.3 + 1e-9 {
                    0.5
                } else {
                    1.9
                };
                (t, g)
            })
            .collect();
        let run = FailoverRun {
            kind: Kind::Weir,
            bins,
            kill_at_s: 5.0,
            summary: summary(),
            weir_metrics: vec![],
        };
        assert!((run.before_gbps() - 2.0).abs() < 1e-9);
        // Windows of 5 bins: the first one ending at >= 5.8 s averages 1.9 only.
        let recovery = run.recovery_s().unwrap();
        assert!((recovery - 0.8).abs() < 1e-6, "{recovery}");
        assert!((run.dip_ratio().unwrap() - 0.53).abs() < 1e-9);
        assert!((run.after_ratio().unwrap() - 0.95).abs() < 1e-9);
    }

    #[test]
    fn errors_are_spelled_out() {
        let mut e = ErrorCounts::default();
        assert_eq!(show_errors(&e), "0");
        e.io = 3;
        e.timeout = 2;
        assert_eq!(show_errors(&e), "5 (timeout 2, io 3)");
        e.status = 4;
        e.status_503 = 3;
        assert_eq!(
            show_errors(&e),
            "9 (timeout 2, io 3, status 4, of which 503 3)"
        );
    }
}
