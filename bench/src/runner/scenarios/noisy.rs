//! The noisy-neighbour scenario on the shared fleet: per round every target once (order
//! rotated), each run a training tenant alone and then beside a flood tenant. Its records
//! and page are `runner::noisy` and `report::noisy_page`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::load::{self, LoadConfig};
use crate::runner::harness::{Harness, LARGE_KEYS, SETTLE, SMALL_KEYS};
use crate::runner::noisy::{self, NoisyRun, Phase, TenantCounters};
use crate::runner::peers::Kind;
use crate::runner::procs::{self, CpuSnapshot};
use crate::runner::report::{self, RunMeta};
use crate::runner::scenario::{Needs, Rounds, Scenario};
use crate::units::parse_duration;
use crate::{http, Synthetic};

/// 16 streams of 64 MiB GETs (one tenant) alone and beside a flood of 4 KiB GETs on 256
/// connections (another tenant).
#[derive(Default)]
pub struct NoisyNeighbour {
    runs: Vec<NoisyRun>,
}

impl Scenario for NoisyNeighbour {
    fn name(&self) -> &'static str {
        "noisy-neighbour"
    }

    fn title(&self) -> &'static str {
        "Noisy neighbour: 64 MiB GET streams beside a 4 KiB GET flood"
    }

    fn needs(&self) -> Needs {
        Needs::Fleet
    }

    fn run(&mut self, bench: &mut Harness, meta: &mut RunMeta) -> Result<()> {
        let noisy_duration = parse_duration(&bench.cli.noisy_duration)?;
        meta.noisy_load_before = procs::load_average();
        let n = bench.targets.len();
        let total = n * bench.cli.rounds;
        let mut done = 0;
        for round in 0..bench.cli.rounds {
            for position in 0..n {
                let index = (position + round) % n;
                done += 1;
                match noisy_run(bench, index, round, position, noisy_duration) {
                    Ok(run) => {
                        println!(
                            "[{done:>3}/{total}] round {} noisy-neighbour {:<14} {}",
                            round + 1,
                            run.kind.name(),
                            noisy_line(&run)
                        );
                        writeln!(bench.records, "{}", run.to_json())?;
                        self.runs.push(run);
                    }
                    Err(err) => {
                        let note = format!(
                            "noisy-neighbour {} round {}: not measured: {err:#}",
                            bench.targets[index].kind.name(),
                            round + 1
                        );
                        println!("[{done:>3}/{total}] {note}");
                        bench.note(note);
                    }
                }
                std::thread::sleep(SETTLE);
            }
        }
        Ok(())
    }

    fn page(&self, meta: &RunMeta, _rounds: &Rounds) -> Option<(String, String)> {
        Some(report::noisy_page(meta, self.title(), &self.runs))
    }
}

fn noisy_line(run: &NoisyRun) -> String {
    let b = &run.beside;
    let mut line = format!(
        "training {:>5.2} GB/s alone, {:>5.2} beside the flood ({:.0}%); flood {:>6.0} req/s answered, {:>6.0}/s at the nodes, 503s {}",
        run.alone.training_gbps(),
        b.training_gbps(),
        run.kept().unwrap_or(f64::NAN) * 100.0,
        b.flood_client_per_s().unwrap_or(f64::NAN),
        b.flood_at_nodes_per_s().unwrap_or(f64::NAN),
        b.flood.as_ref().map_or(0, |f| f.errors.status_503),
    );
    if let (Some(a), Some(c)) = (run.alone.proxy_cpu_s, b.proxy_cpu_s) {
        line.push_str(&format!("; proxy {a:.1} / {c:.1} CPU-s"));
    }
    line
}

/// One noisy-neighbour run: training alone, then training beside the flood, for
/// `duration` each.
fn noisy_run(
    bench: &mut Harness,
    target: usize,
    round: usize,
    position: usize,
    duration: Duration,
) -> Result<NoisyRun> {
    bench.alive(target)?;
    let addrs = bench.targets[target].addrs.clone();
    let mut training = LoadConfig::new(addrs.clone(), vec![Synthetic::parse(LARGE_KEYS)?]);
    training.connections = noisy::TRAINING_STREAMS;
    training.duration = duration;
    training.verify = bench.cli.verify_large;
    training.timeout_base = Duration::from_secs(10);
    training.access_key = Some(noisy::TRAINING_ACCESS_KEY.into());
    let mut flood = LoadConfig::new(addrs, vec![Synthetic::parse(SMALL_KEYS)?]);
    flood.connections = noisy::FLOOD_CONNECTIONS;
    flood.duration = duration;
    flood.verify = true;
    flood.timeout_base = Duration::from_secs(10);
    flood.access_key = Some(noisy::FLOOD_ACCESS_KEY.into());
    flood.quiet_503 = true;
    let alone = noisy_phase(bench, target, &training, None)?;
    std::thread::sleep(SETTLE);
    let beside = noisy_phase(bench, target, &training, Some(&flood))?;
    bench.alive(target)?;
    Ok(NoisyRun {
        kind: bench.targets[target].kind,
        round,
        position,
        alone,
        beside,
    })
}

/// The training load (and the flood beside it, if given) with the proxy's and the
/// simulators' CPU, the nodes' per-key request counts and weir's tenant counters
/// around it.
fn noisy_phase(
    bench: &Harness,
    target: usize,
    training: &LoadConfig,
    flood: Option<&LoadConfig>,
) -> Result<Phase> {
    let kind = bench.targets[target].kind;
    let has_process = bench.targets[target].process.is_some();
    let pids = bench.targets[target].pids();
    let sim_pids = bench.sim_pids();
    // Only weir-protected has a metrics listener (and the tenants).
    let weir_metrics = (kind == Kind::WeirProtected).then(|| {
        SocketAddr::new(
            bench.targets[target].addrs[0].ip(),
            bench.targets[target].addrs[0].port() + 1,
        )
    });
    let nodes_before = bench.node_stats()?;
    let weir_before = weir_metrics.map(scrape_flood).transpose()?;
    let load_average = procs::load_average();
    let proxy_before = CpuSnapshot::take(&pids);
    let sims_before = CpuSnapshot::take(&sim_pids);
    let client_before = procs::self_cpu_seconds();
    let started = Instant::now();
    let (training_summary, flood_summary) = std::thread::scope(|scope| {
        let flood_thread = flood.map(|config| {
            std::thread::Builder::new()
                .name("flood".into())
                .spawn_scoped(scope, move || load::run(config, |_| {}))
        });
        let training_summary = load::run(training, |_| {});
        let flood_summary = match flood_thread {
            None => Ok(None),
            Some(Err(err)) => Err(anyhow::Error::from(err).context("spawn the flood")),
            Some(Ok(handle)) => match handle.join() {
                Ok(result) => result.map(Some),
                Err(_) => Err(anyhow::anyhow!("the flood load panicked")),
            },
        };
        (training_summary, flood_summary)
    });
    let wall_s = started.elapsed().as_secs_f64();
    let client_cpu_s = procs::self_cpu_seconds() - client_before;
    let proxy_cpu_s = CpuSnapshot::take(&pids).seconds_since(&proxy_before);
    let sims_cpu_s = CpuSnapshot::take(&sim_pids).seconds_since(&sims_before);
    let training_summary = training_summary.context("training load")?;
    let flood_summary = flood_summary.context("flood load")?;
    let nodes_after = bench.node_stats()?;
    let weir_flood = match (weir_metrics, weir_before) {
        (Some(addr), Some(before)) if flood.is_some() => Some(scrape_flood(addr)?.since(&before)),
        _ => None,
    };
    let delta = |key: &str| -> u64 {
        nodes_after
            .iter()
            .zip(&nodes_before)
            .map(|(after, before)| {
                after
                    .requests_of(key)
                    .saturating_sub(before.requests_of(key))
            })
            .sum()
    };
    Ok(Phase {
        training: training_summary,
        flood: flood_summary,
        proxy_cpu_s: has_process.then_some(proxy_cpu_s),
        sims_cpu_s,
        client_cpu_s,
        load_average,
        wall_s,
        training_at_nodes: delta(noisy::TRAINING_ACCESS_KEY),
        flood_at_nodes: delta(noisy::FLOOD_ACCESS_KEY),
        weir_flood,
    })
}

/// weir's counters for the flood tenant, from its `/metrics`.
fn scrape_flood(metrics: SocketAddr) -> Result<TenantCounters> {
    let response = http::request(metrics, "GET", "/metrics", &[], b"", Duration::from_secs(5))
        .with_context(|| format!("scrape {metrics}"))?;
    if response.status != 200 {
        bail!("scrape {metrics}: status {}", response.status);
    }
    Ok(TenantCounters::scrape(
        &response.text(),
        noisy::FLOOD_TENANT,
    ))
}
