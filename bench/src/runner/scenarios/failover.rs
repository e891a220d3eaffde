//! The failover scenario on the shared fleet: per proxy, 16 verifying 64 MiB GET streams
//! while one of the three simulator nodes is SIGKILLed; throughput in 100 ms bins. Its
//! records are `runner::FailoverRun`, its page `report::failover_page`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::http;
use crate::load::{self, Op};
use crate::runner::harness::{Cell, Harness, LARGE_KEYS, PUT_STREAMS};
use crate::runner::peers::Kind;
use crate::runner::report::{self, RunMeta};
use crate::runner::scenario::{Needs, Rounds, Scenario};
use crate::runner::{show_errors, FailoverRun, FAILOVER_BIN_S};
use crate::units::parse_duration;
use crate::Synthetic;

/// The node the scenario kills (0-based).
const FAILOVER_NODE: usize = 1;

/// 64 MiB GETs on 16 streams while one of three nodes is SIGKILLed.
#[derive(Default)]
pub struct Failover {
    runs: Vec<FailoverRun>,
}

impl Scenario for Failover {
    fn name(&self) -> &'static str {
        "failover"
    }

    fn title(&self) -> &'static str {
        "Failover under load: 16 x 64 MiB GET streams, one of 3 nodes SIGKILLed"
    }

    fn needs(&self) -> Needs {
        Needs::Fleet
    }

    fn run(&mut self, bench: &mut Harness, _meta: &mut RunMeta) -> Result<()> {
        for i in 0..bench.targets.len() {
            if bench.targets[i].kind == Kind::Direct {
                continue;
            }
            match failover(bench, i) {
                Ok(run) => {
                    writeln!(bench.records, "{}", run.to_json())?;
                    self.runs.push(run);
                }
                Err(err) => {
                    let note = format!(
                        "failover {}: not measured: {err:#}",
                        bench.targets[i].kind.name()
                    );
                    println!("{note}");
                    bench.note(note);
                }
            }
        }
        Ok(())
    }

    fn page(&self, meta: &RunMeta, _rounds: &Rounds) -> Option<(String, String)> {
        Some(report::failover_page(meta, self.title(), &self.runs))
    }
}

/// One failover run: 16 verifying 64 MiB GET streams, node 2 SIGKILLed midway; the node
/// is restarted afterwards and every target gets time to see it up again.
fn failover(bench: &mut Harness, target: usize) -> Result<FailoverRun> {
    bench.alive(target)?;
    let kind = bench.targets[target].kind;
    let duration = parse_duration(&bench.cli.failover_duration)?;
    let kill_at = parse_duration(&bench.cli.failover_kill_at)?;
    if kill_at >= duration {
        bail!("--failover-kill-at must be before the end of --failover-duration");
    }
    let cell = Cell {
        scenario: "failover",
        label: format!("{PUT_STREAMS} streams"),
        connections: PUT_STREAMS,
        keys: Synthetic::parse(LARGE_KEYS)?,
        op: Op::Get,
        verify: true,
    };
    let mut config = bench.load_config(target, &cell, duration);
    config.tick_interval = Duration::from_secs_f64(FAILOVER_BIN_S);
    let mut bins = Vec::new();
    let mut killed_at = None;
    let node = &mut bench.sims[FAILOVER_NODE];
    let summary = load::run(&config, |tick| {
        bins.push((tick.elapsed.as_secs_f64(), tick.gbps()));
        if killed_at.is_none() && tick.elapsed >= kill_at {
            node.kill9();
            killed_at = Some(tick.elapsed.as_secs_f64());
        }
    })?;
    let weir_metrics = if kind == Kind::WeirProtected {
        weir_failover_metrics(bench, target)
    } else {
        Vec::new()
    };
    println!(
        "failover {:<14} {:.2} GB/s over the run, errors {}",
        kind.name(),
        summary.gbps(),
        show_errors(&summary.errors)
    );
    // Bring the node back and let every target's health checks see it.
    bench.sims[FAILOVER_NODE].stop();
    let restarted = bench.start_sim(FAILOVER_NODE)?;
    bench.sims[FAILOVER_NODE] = restarted;
    std::thread::sleep(parse_duration(&bench.cli.failover_recover)?);
    Ok(FailoverRun {
        kind,
        bins,
        kill_at_s: killed_at.context("the run ended before the kill")?,
        summary,
        weir_metrics,
    })
}

/// weir's retry, resume, upstream-error and node-state lines (non-zero only).
fn weir_failover_metrics(bench: &Harness, target: usize) -> Vec<String> {
    let Some(listen) = bench.targets[target].addrs.first() else {
        return Vec::new();
    };
    let metrics = SocketAddr::new(listen.ip(), listen.port() + 1);
    match http::request(metrics, "GET", "/metrics", &[], b"", Duration::from_secs(5)) {
        Ok(response) if response.status == 200 => response
            .text()
            .lines()
            .filter(|l| {
                [
                    "weir_upstream_retries_total",
                    "weir_resumes_total",
                    "weir_upstream_errors_total",
                    "weir_node_state",
                ]
                .iter()
                .any(|name| l.starts_with(name))
            })
            .filter(|l| !l.ends_with(" 0"))
            .map(str::to_string)
            .collect(),
        Ok(response) => vec![format!("/metrics answered {}", response.status)],
        Err(err) => vec![format!("could not scrape /metrics: {err:#}")],
    }
}
