//! weir-bench-run: the comparison runner. Starts three simulator nodes, weir (bare and with
//! its protection on), HAProxy, nginx and Envoy in front of them, drives the same workloads
//! at each (and straight at the nodes) in interleaved rounds, records every proxy's
//! CPU-seconds and peak RSS, measures a streaming tenant beside a flooding one (noisy
//! neighbour), runs a node-kill failover per target, and writes
//! `bench/results/<scenario>.md` + `.svg` and (after a run of every scenario)
//! `bench/results/README.md`. The `seaweed` scenario then does the same with a SeaweedFS
//! cluster (one `weed server`, three `weed s3` gateways that verify SigV4) behind each
//! proxy instead of the simulators, with every request signed for real.
//!
//! Run from the repository root after `scripts/bench-deps.sh` and
//! `cargo build --profile ci -p weir -p weir-bench`:
//!
//!   target/ci/weir-bench-run --weir target/ci/weir
//!   target/ci/weir-bench-run --smoke            # ~3 minutes, results under bench/results/raw/smoke
//!   target/ci/weir-bench-run --scenarios noisy-neighbour
//!   target/ci/weir-bench-run --scenarios tls-get   # HTTPS through weir (rustls, kTLS) and HAProxy
//!   target/ci/weir-bench-run --scenarios identity  # SigV4 verification + re-signing in weir
//!   target/ci/weir-bench-run --scenarios attack    # innocent clients beside an attack, weir vs HAProxy

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use weir_bench::runner::cli::Cli;
use weir_bench::runner::harness::Harness;
use weir_bench::runner::peers::{self, Binaries, Kind};
use weir_bench::runner::report::{self, RunMeta};
use weir_bench::runner::scenario::{Needs, Rounds, Scenario};
use weir_bench::runner::scenarios::{self, Selection};
use weir_bench::units::parse_duration;

/// The scenarios that failed, by name, in run order.
type Failures = Vec<(&'static str, anyhow::Error)>;

fn main() -> Result<()> {
    let mut cli = Cli::parse();
    let command_line = command_line();
    cli.apply_smoke();
    if cli.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    if cli.base_port > 65535 - 100 {
        bail!("--base-port must leave room for 100 ports");
    }
    let Selection {
        mut scenarios,
        pages: page_order,
    } = scenarios::select(&cli.scenarios)?;
    let mut kinds = cli
        .targets
        .iter()
        .map(|t| Kind::parse(t))
        .collect::<Result<Vec<_>>>()?;
    kinds.sort();
    kinds.dedup();
    let duration = parse_duration(&cli.duration)?;
    let noisy_duration = parse_duration(&cli.noisy_duration)?;
    let started_utc = utc_now();
    let started = Instant::now();
    let (binaries, sim_binary) = tools(&cli, &kinds, &scenarios)?;
    for scenario in &mut scenarios {
        scenario.prepare(&cli)?;
    }

    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let run_dir = absolute(&cli.out.join("raw").join(format!("run-{stamp}")))?;
    std::fs::create_dir_all(&run_dir).with_context(|| format!("create {}", run_dir.display()))?;
    let records = std::fs::File::create(run_dir.join("records.jsonl"))?;
    println!(
        "weir-bench-run: raw records, configs and logs in {}",
        run_dir.display()
    );
    let mut meta = RunMeta {
        command: command_line,
        started_utc,
        machine: machine(),
        versions: kinds
            .iter()
            .filter(|k| **k != Kind::WeirProtected)
            .map(|&k| (k, peers::version(k, &binaries)))
            .collect(),
        weir_label: cli
            .weir_label
            .clone()
            .unwrap_or_else(|| cli.weir.display().to_string()),
        rounds: cli.rounds,
        duration_s: duration.as_secs_f64(),
        verify_large: cli.verify_large,
        noisy_duration_s: noisy_duration.as_secs_f64(),
        kinds: kinds.clone(),
        ..RunMeta::default()
    };
    let mut bench = Harness::new(cli, duration, run_dir, binaries, sim_binary, kinds, records);

    let (rounds, failures) = run_scenarios(&mut bench, &mut meta, &mut scenarios)?;

    meta.finished_utc = utc_now();
    meta.notes = bench.notes().to_vec();
    let ordered: Vec<&dyn Scenario> = page_order.iter().map(|&i| &*scenarios[i]).collect();
    write_pages(&bench, &meta, &ordered, &rounds, &failures)?;
    println!(
        "weir-bench-run: done in {:.0} s; pages in {}",
        started.elapsed().as_secs_f64(),
        bench.cli.out.display()
    );
    match failures.into_iter().next() {
        Some((name, err)) => Err(err.context(format!(
            "the {name} scenario failed (its page was not written)"
        ))),
        None => Ok(()),
    }
}

/// Runs the scenarios, in registry order: the fleet's first (started once, then their
/// cells in shared interleaved rounds, then each one's own run), then each of the others
/// with what it needs started afresh. A failed scenario is noted and returned with its
/// error; failing to start the fleet or to run its rounds ends the run.
fn run_scenarios(
    bench: &mut Harness,
    meta: &mut RunMeta,
    scenarios: &mut [Box<dyn Scenario>],
) -> Result<(Rounds, Failures)> {
    let mut rounds = Rounds::default();
    for scenario in scenarios.iter().filter(|s| s.needs() == Needs::Fleet) {
        rounds.cells.extend(scenario.cells(&bench.cli)?);
    }
    let mut failures = Vec::new();
    let mut fleet_up = false;
    for scenario in scenarios.iter_mut() {
        let needs = scenario.needs();
        if needs == Needs::Fleet && !fleet_up {
            bench.start_fleet(meta)?;
            rounds.measurements = bench.rounds(&rounds.cells)?;
            fleet_up = true;
        } else if needs != Needs::Fleet && fleet_up {
            bench.note_exited_targets();
            bench.stop_all();
            fleet_up = false;
        }
        let started = match needs {
            Needs::Simulators => bench.start_sims(),
            Needs::Fleet | Needs::Nothing => Ok(()),
        };
        if let Err(err) = started.and_then(|()| scenario.run(bench, meta)) {
            let note = format!("{}: not measured: {err:#}", scenario.name());
            println!("{note}");
            bench.note(note);
            failures.push((scenario.name(), err));
        }
        if needs != Needs::Fleet {
            bench.stop_all();
            // weir-protected may have been started again, with or without its limits.
            meta.limits_on = bench.limits_on;
        }
    }
    if fleet_up {
        bench.note_exited_targets();
        bench.stop_all();
    }
    Ok((rounds, failures))
}

/// The targets' binaries and weir-sim's; fails when one that is needed is missing.
fn tools(
    cli: &Cli,
    kinds: &[Kind],
    scenarios: &[Box<dyn Scenario>],
) -> Result<(Binaries, PathBuf)> {
    let binaries = Binaries {
        weir: cli.weir.clone(),
        haproxy: cli.haproxy.clone(),
        nginx: cli.nginx.clone(),
        envoy: cli.envoy.clone(),
    };
    for &kind in kinds {
        let path = match kind {
            Kind::Direct => continue,
            Kind::Weir | Kind::WeirProtected => &binaries.weir,
            Kind::Haproxy => &binaries.haproxy,
            Kind::Nginx => &binaries.nginx,
            Kind::Envoy => &binaries.envoy,
        };
        if !path.exists() {
            bail!(
                "{} not found for target {} (run scripts/bench-deps.sh, build weir with \
                 `cargo build --profile ci -p weir`, or leave the target out with --targets)",
                path.display(),
                kind.name()
            );
        }
    }
    let sim_binary = match &cli.sim {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("weir-sim"),
    };
    if scenarios.iter().any(|s| s.needs() != Needs::Nothing) && !sim_binary.exists() {
        bail!("weir-sim not found at {} (use --sim)", sim_binary.display());
    }
    Ok((binaries, sim_binary))
}

/// Every page of a scenario that did not fail, in the order given, and the index.
fn write_pages(
    bench: &Harness,
    meta: &RunMeta,
    chosen: &[&dyn Scenario],
    rounds: &Rounds,
    failures: &Failures,
) -> Result<()> {
    let out = &bench.cli.out;
    std::fs::create_dir_all(out)?;
    let mut pages = Vec::new();
    for scenario in chosen {
        let name = scenario.name();
        if failures.iter().any(|(failed, _)| *failed == name) {
            // Not measured (the error is printed and returned): no page.
            continue;
        }
        let Some((md, svg)) = scenario.page(meta, rounds) else {
            continue;
        };
        std::fs::write(out.join(format!("{name}.md")), md)?;
        std::fs::write(out.join(format!("{name}.svg")), svg)?;
        pages.push((scenario.title(), name));
    }
    let left_out: Vec<String> = LEFT_OUT.iter().map(|s| s.to_string()).collect();
    let index = report::index_page(meta, &pages, &left_out);
    // The index describes one run of everything; a run of some scenarios must not replace
    // it with a page that lists only those (their pages above are self-contained).
    if chosen.len() == scenarios::registry().len() {
        std::fs::write(out.join("README.md"), index)?;
    } else {
        let path = bench.run_dir.join("index.md");
        std::fs::write(&path, index)?;
        println!(
            "weir-bench-run: not every scenario ran, so {} is left as it was; this run's \
             index is {}",
            out.join("README.md").display(),
            path.display()
        );
    }
    Ok(())
}

/// Measurements this runner does not make yet (listed on the index page).
const LEFT_OUT: &[&str] = &[
    "10k concurrent idle client connections on 2 cores with ≤ 64 KiB user memory each.",
    "Profiles (perf, callgrind instruction counts) of the cells where weir falls short.",
    "Mixed object sizes and ranged GETs (weir-load supports both: --range, several --keys).",
];

/// The command line as typed, shell-quoted where needed.
fn command_line() -> String {
    std::env::args()
        .map(|arg| {
            if arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c))
            {
                arg
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn absolute(path: &Path) -> Result<PathBuf> {
    Ok(if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    })
}

fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "?".into())
}

/// "2 × Intel(R) Xeon(R) ..., Linux 6.1" from /proc.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} × {model}, Linux {}", kernel.trim())
}
