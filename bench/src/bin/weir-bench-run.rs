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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use weir_bench::load::{self, ErrorCounts, LoadConfig, Op};
use weir_bench::runner::attack::{self, AttackRun};
use weir_bench::runner::identity::{self, IdentityRun};
use weir_bench::runner::noisy::{self, NoisyRun, Phase, TenantCounters};
use weir_bench::runner::peers::{self, Binaries, Kind, Target};
use weir_bench::runner::procs::{self, CpuSnapshot, Managed};
use weir_bench::runner::report::{self, RunMeta};
use weir_bench::runner::seaweed::{self, Cluster, ClusterInfo};
use weir_bench::runner::tls::{self, TlsRun};
use weir_bench::runner::{FailoverRun, Measurement, Scenario, FAILOVER_BIN_S};
use weir_bench::sigv4::{Credentials, Signer};
use weir_bench::units::parse_duration;
use weir_bench::{http, SimStats, Synthetic};

/// Simulator nodes behind every proxy.
const NODES: usize = 3;
/// The node the failover scenario kills (0-based).
const FAILOVER_NODE: usize = 1;
/// Large objects: 64 MiB, four keys.
const LARGE_KEYS: &str = "bench/obj-:64MiB:4";
/// Small objects: 4 KiB, 64 keys.
const SMALL_KEYS: &str = "bench/small-:4KiB:64";
/// PUT targets: 64 MiB, four keys (declared on the nodes, so a correct PUT of the pattern
/// shares the node's one copy instead of growing its memory).
const PUT_KEYS: &str = "bench/put-:64MiB:4";
/// Connections of the small-GET scenario.
const SMALL_CONNECTIONS: usize = 64;
/// Streams of the large-PUT and failover scenarios.
const PUT_STREAMS: usize = 16;
/// Pause between cells, so one cell's closing connections do not overlap the next.
const SETTLE: Duration = Duration::from_millis(300);

/// Benchmark runner: the same workload direct, through weir and through HAProxy, nginx
/// and Envoy, in interleaved rounds; writes Markdown tables and SVG plots.
#[derive(Parser, Debug)]
#[command(name = "weir-bench-run", version)]
struct Cli {
    /// The weir binary.
    #[arg(long, default_value = "target/ci/weir")]
    weir: PathBuf,
    /// What to call this weir on the result pages (e.g. its commit and build profile).
    #[arg(long)]
    weir_label: Option<String>,
    /// The weir-sim binary (default: next to this executable).
    #[arg(long)]
    sim: Option<PathBuf>,
    /// HAProxy binary.
    #[arg(long, default_value = "/usr/sbin/haproxy")]
    haproxy: PathBuf,
    /// nginx binary.
    #[arg(long, default_value = "/usr/sbin/nginx")]
    nginx: PathBuf,
    /// Envoy binary (scripts/bench-deps.sh installs it here).
    #[arg(long, default_value = ".cache/bench-venv/bin/envoy")]
    envoy: PathBuf,
    /// Ports used: base+1..=base+3 nodes, base+10.. targets (every port below base+100).
    #[arg(long, default_value_t = 27000)]
    base_port: u16,
    /// Rounds per cell (targets interleaved within a round, order rotated per round).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Load duration of one cell.
    #[arg(long, default_value = "5s")]
    duration: String,
    /// Scenarios to run (comma-separated): large-get, small-get, large-put,
    /// noisy-neighbour, failover, tls-get, identity, attack, seaweed. bench/results/README.md (the
    /// index) is rewritten only by a run of all of them; a partial run leaves its index in the raw
    /// folder.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "large-get,small-get,large-put,noisy-neighbour,failover,tls-get,identity,attack,seaweed"
    )]
    scenarios: Vec<String>,
    /// SeaweedFS' weed binary for the seaweed scenario (default: .cache/bench-venv/bin/weed,
    /// then .cache/venv/bin/weed, then PATH).
    #[arg(long)]
    weed: Option<PathBuf>,
    /// Targets (comma-separated): direct, weir, weir-protected, haproxy, nginx, envoy.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "direct,weir,weir-protected,haproxy,nginx,envoy"
    )]
    targets: Vec<String>,
    /// Stream counts of the large-GET scenario.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    streams: Vec<usize>,
    /// Connections of every timed cell of the identity scenario.
    #[arg(long, default_value_t = 8)]
    identity_streams: usize,
    /// Stream counts of the tls-get scenario (parallel curl processes).
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    tls_streams: Vec<usize>,
    /// Check every body byte in the timed large-GET cells too (costs the client
    /// ~0.3 CPU-s/GB on the same cores).
    #[arg(long)]
    verify_large: bool,
    /// Length of the attack scenario's attacked phase (its calm phase lasts --duration).
    #[arg(long, default_value = "15s")]
    attack_duration: String,
    /// Length of each noisy-neighbour phase (training alone, then beside the flood).
    #[arg(long, default_value = "8s")]
    noisy_duration: String,
    /// Failover run length and kill time.
    #[arg(long, default_value = "12s")]
    failover_duration: String,
    /// When the failover scenario SIGKILLs node 2.
    #[arg(long, default_value = "5s")]
    failover_kill_at: String,
    /// Wait after restarting the killed node, so every target's health checks see it
    /// up again before the next target's run.
    #[arg(long, default_value = "8s")]
    failover_recover: String,
    /// Where result pages go (raw records, configs and logs under OUT/raw/).
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// A quick run that keeps the harness from rotting: 1 round of 1 s cells, 1 and 16
    /// streams, 2 s noisy-neighbour phases, a short failover; pages go to
    /// bench/results/raw/smoke unless --out is set.
    #[arg(long)]
    smoke: bool,
}

/// A workload variant of a scenario.
#[derive(Clone, Debug)]
struct Cell {
    scenario: Scenario,
    label: String,
    connections: usize,
    keys: Synthetic,
    op: Op,
    verify: bool,
}

/// The objects of one backend: what the correctness pass GETs and PUTs.
#[derive(Clone, Debug)]
struct KeySet {
    large: &'static str,
    small: &'static str,
    put: &'static str,
}

impl KeySet {
    fn simulators() -> Self {
        Self {
            large: LARGE_KEYS,
            small: SMALL_KEYS,
            put: PUT_KEYS,
        }
    }

    fn seaweed() -> Self {
        Self {
            large: seaweed::LARGE_KEYS,
            small: seaweed::SMALL_KEYS,
            put: seaweed::PUT_KEYS,
        }
    }
}

/// Everything a run holds on to.
struct Bench {
    cli: Cli,
    duration: Duration,
    run_dir: PathBuf,
    binaries: Binaries,
    sim_binary: PathBuf,
    node_addrs: Vec<SocketAddr>,
    sims: Vec<Managed>,
    /// The SeaweedFS cluster, during the seaweed scenario (then `node_addrs` are its
    /// gateways).
    cluster: Option<Cluster>,
    /// The objects of the current backend (simulators or cluster).
    keys: KeySet,
    /// Real SigV4 credentials for every request (the cluster verifies signatures).
    credentials: Option<Credentials>,
    /// Added to every target's port (the cluster's targets listen beside the simulators').
    port_shift: u16,
    /// weir-protected's health-check preset for the current backend.
    health_preset: &'static str,
    targets: Vec<Target>,
    records: std::fs::File,
    notes: Vec<String>,
    /// Whether weir-protected runs with bench/peers/weir-limits.toml.
    limits_on: bool,
}

fn main() -> Result<()> {
    let mut cli = Cli::parse();
    let command_line = command_line();
    if cli.smoke {
        cli.rounds = 1;
        cli.duration = "1s".into();
        cli.streams = vec![1, 16];
        cli.noisy_duration = "2s".into();
        cli.failover_duration = "5s".into();
        cli.failover_kill_at = "2s".into();
        cli.failover_recover = "5s".into();
        cli.attack_duration = "2s".into();
        if cli.out == Path::new("bench/results") {
            cli.out = PathBuf::from("bench/results/raw/smoke");
        }
    }
    if cli.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    if cli.base_port > 65535 - 100 {
        bail!("--base-port must leave room for 100 ports");
    }
    let mut scenarios = cli
        .scenarios
        .iter()
        .map(|s| Scenario::parse(s))
        .collect::<Result<Vec<_>>>()?;
    scenarios.dedup();
    // The simulator scenarios share one set of nodes and targets; the SeaweedFS scenario
    // runs afterwards with its own cluster and its own set of targets.
    let sim_scenarios: Vec<Scenario> = scenarios
        .iter()
        .copied()
        .filter(|s| {
            !matches!(
                s,
                Scenario::Seaweed | Scenario::TlsGet | Scenario::Identity | Scenario::Attack
            )
        })
        .collect();
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

    let binaries = Binaries {
        weir: cli.weir.clone(),
        haproxy: cli.haproxy.clone(),
        nginx: cli.nginx.clone(),
        envoy: cli.envoy.clone(),
    };
    for &kind in &kinds {
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
    let tls_get = scenarios.contains(&Scenario::TlsGet);
    let identity_scenario = scenarios.contains(&Scenario::Identity);
    let attack_scenario = scenarios.contains(&Scenario::Attack);
    if (!sim_scenarios.is_empty() || tls_get || identity_scenario || attack_scenario)
        && !sim_binary.exists()
    {
        bail!("weir-sim not found at {} (use --sim)", sim_binary.display());
    }
    let weed = if scenarios.contains(&Scenario::Seaweed) {
        Some(seaweed::find_weed(cli.weed.as_deref())?)
    } else {
        None
    };

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

    let node_addrs: Vec<SocketAddr> = (1..=NODES as u16)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], cli.base_port + i)))
        .collect();
    let mut bench = Bench {
        duration,
        run_dir,
        binaries,
        sim_binary,
        node_addrs,
        sims: Vec::new(),
        cluster: None,
        keys: KeySet::simulators(),
        credentials: None,
        port_shift: 0,
        health_preset: peers::HEALTH_PRESET_SIMULATORS,
        targets: Vec::new(),
        records,
        notes: Vec::new(),
        limits_on: false,
        cli,
    };
    let mut meta = RunMeta {
        command: command_line,
        started_utc,
        machine: machine(),
        versions: kinds
            .iter()
            .filter(|k| **k != Kind::WeirProtected)
            .map(|&k| (k, peers::version(k, &bench.binaries)))
            .collect(),
        weir_label: bench
            .cli
            .weir_label
            .clone()
            .unwrap_or_else(|| bench.cli.weir.display().to_string()),
        rounds: bench.cli.rounds,
        duration_s: duration.as_secs_f64(),
        verify_large: bench.cli.verify_large,
        noisy_duration_s: noisy_duration.as_secs_f64(),
        kinds: kinds.clone(),
        ..RunMeta::default()
    };

    let cells = cells(&bench.cli, &sim_scenarios)?;
    let mut measurements: Vec<Measurement> = Vec::new();
    let mut noisy_runs: Vec<NoisyRun> = Vec::new();
    let mut failover_runs = Vec::new();
    if !sim_scenarios.is_empty() {
        for i in 0..NODES {
            let sim = bench.start_sim(i)?;
            bench.sims.push(sim);
        }
        println!("{NODES} simulator nodes up on {:?}", bench.node_addrs);
        for &kind in &kinds {
            let target = bench.start_target(kind)?;
            bench.targets.push(target);
        }

        // Correctness first: a short verifying GET and PUT load through every target.
        for i in 0..bench.targets.len() {
            let (errors, requests) = bench.correctness(i)?;
            meta.correctness
                .push((bench.targets[i].kind, errors, requests));
        }
        if bench.limits_on {
            bench.note_whether_limits_apply();
        }
        meta.limits_on = bench.limits_on;

        // The timed rounds.
        measurements = bench.rounds(&cells)?;

        // Noisy neighbour: per round, every target once (order rotated), each run two phases.
        if sim_scenarios.contains(&Scenario::NoisyNeighbour) {
            meta.noisy_load_before = procs::load_average();
            let n = bench.targets.len();
            let total = n * bench.cli.rounds;
            let mut done = 0;
            for round in 0..bench.cli.rounds {
                for position in 0..n {
                    let index = (position + round) % n;
                    done += 1;
                    match bench.noisy(index, round, position, noisy_duration) {
                        Ok(run) => {
                            println!(
                                "[{done:>3}/{total}] round {} noisy-neighbour {:<14} {}",
                                round + 1,
                                run.kind.name(),
                                noisy_line(&run)
                            );
                            use std::io::Write as _;
                            writeln!(bench.records, "{}", run.to_json())?;
                            noisy_runs.push(run);
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
        }

        if sim_scenarios.contains(&Scenario::Failover) {
            for i in 0..bench.targets.len() {
                if bench.targets[i].kind == Kind::Direct {
                    continue;
                }
                match bench.failover(i) {
                    Ok(run) => {
                        use std::io::Write as _;
                        writeln!(bench.records, "{}", run.to_json())?;
                        failover_runs.push(run);
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
        }

        bench.note_exited_targets();
        // Free the ports and the CPU for the cluster scenario.
        bench.targets.clear();
        bench.sims.clear();
    }

    let mut tls_run = None;
    let mut tls_error = None;
    if tls_get {
        match bench.tls_get() {
            Ok(run) => tls_run = Some(run),
            Err(err) => {
                let note = format!("tls-get: not measured: {err:#}");
                println!("{note}");
                bench.note(note);
                tls_error = Some(err);
            }
        }
        bench.sims.clear();
    }

    let mut identity_run = None;
    let mut identity_error = None;
    if identity_scenario {
        match bench.identity() {
            Ok(run) => identity_run = Some(run),
            Err(err) => {
                let note = format!("identity: not measured: {err:#}");
                println!("{note}");
                bench.note(note);
                identity_error = Some(err);
            }
        }
        bench.sims.clear();
    }

    let mut attack_run = None;
    let mut attack_error = None;
    if attack_scenario {
        match bench.attack(&kinds) {
            Ok(run) => attack_run = Some(run),
            Err(err) => {
                let note = format!("attack: not measured: {err:#}");
                println!("{note}");
                bench.note(note);
                attack_error = Some(err);
            }
        }
        bench.sims.clear();
    }

    let seaweed_cells = seaweed_cells(&bench.cli)?;
    let mut cluster_info = None;
    let mut seaweed_error = None;
    if let Some(weed) = &weed {
        match bench.seaweed(weed, &seaweed_cells, &kinds) {
            Ok((info, ms)) => {
                measurements.extend(ms);
                cluster_info = Some(info);
            }
            Err(err) => {
                let note = format!("seaweed: not measured: {err:#}");
                println!("{note}");
                bench.note(note);
                seaweed_error = Some(err);
            }
        }
        bench.targets.clear();
        bench.cluster = None;
        meta.limits_on = bench.limits_on;
    }

    meta.finished_utc = utc_now();
    meta.notes = bench.notes.clone();
    let all_cells: Vec<Cell> = cells.iter().chain(&seaweed_cells).cloned().collect();
    write_pages(
        &bench,
        &meta,
        &scenarios,
        &all_cells,
        &measurements,
        &noisy_runs,
        &failover_runs,
        cluster_info.as_ref(),
        tls_run.as_ref(),
        identity_run.as_ref(),
        attack_run.as_ref(),
    )?;
    println!(
        "weir-bench-run: done in {:.0} s; pages in {}",
        started.elapsed().as_secs_f64(),
        bench.cli.out.display()
    );
    if let Some(err) = attack_error {
        return Err(err.context("the attack scenario failed (its page was not written)"));
    }
    match (seaweed_error, tls_error, identity_error) {
        (Some(err), _, _) => {
            Err(err.context("the seaweed scenario failed (its page was not written)"))
        }
        (None, Some(err), _) => {
            Err(err.context("the tls-get scenario failed (its page was not written)"))
        }
        (None, None, Some(err)) => {
            Err(err.context("the identity scenario failed (its page was not written)"))
        }
        (None, None, None) => Ok(()),
    }
}

fn progress_line(m: &Measurement) -> String {
    let mut line = format!(
        "{:>6.2} GB/s {:>8.0} req/s p99 {:>6} µs",
        m.summary.gbps(),
        m.summary.req_per_s(),
        m.summary.latency_us.quantile(0.99)
    );
    if let Some(cpu) = m.proxy_cpu_s {
        line.push_str(&format!("  proxy {cpu:>5.2} CPU-s"));
        if let Some(per_gb) = m.cpu_s_per_gb() {
            line.push_str(&format!(" ({per_gb:.3}/GB)"));
        }
    }
    line.push_str(&format!("  errors {}", m.summary.errors.total()));
    line
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

/// The cells of the chosen scenarios, in run order.
fn cells(cli: &Cli, scenarios: &[Scenario]) -> Result<Vec<Cell>> {
    let large = Synthetic::parse(LARGE_KEYS)?;
    let small = Synthetic::parse(SMALL_KEYS)?;
    let put = Synthetic::parse(PUT_KEYS)?;
    let mut out = Vec::new();
    for &scenario in scenarios {
        match scenario {
            Scenario::LargeGet => {
                for &streams in &cli.streams {
                    if streams == 0 {
                        bail!("--streams must be at least 1");
                    }
                    out.push(Cell {
                        scenario,
                        label: format!("{streams} stream{}", if streams == 1 { "" } else { "s" }),
                        connections: streams,
                        keys: large.clone(),
                        op: Op::Get,
                        verify: cli.verify_large,
                    });
                }
            }
            Scenario::SmallGet => {
                for connections in [SMALL_CONNECTIONS, 1] {
                    out.push(Cell {
                        scenario,
                        label: format!(
                            "{connections} connection{}",
                            if connections == 1 { "" } else { "s" }
                        ),
                        connections,
                        keys: small.clone(),
                        op: Op::Get,
                        verify: true,
                    });
                }
            }
            Scenario::LargePut => out.push(Cell {
                scenario,
                label: format!("{PUT_STREAMS} streams"),
                connections: PUT_STREAMS,
                keys: put.clone(),
                op: Op::Put,
                verify: true,
            }),
            Scenario::NoisyNeighbour
            | Scenario::Failover
            | Scenario::Seaweed
            | Scenario::TlsGet
            | Scenario::Identity
            | Scenario::Attack => {}
        }
    }
    Ok(out)
}

/// The seaweed scenario's cells: 64 MiB GETs on 16 streams, 4 KiB GETs on 64 connections.
fn seaweed_cells(cli: &Cli) -> Result<Vec<Cell>> {
    Ok(vec![
        Cell {
            scenario: Scenario::Seaweed,
            label: format!("large GET, {} streams", seaweed::LARGE_STREAMS),
            connections: seaweed::LARGE_STREAMS,
            keys: Synthetic::parse(seaweed::LARGE_KEYS)?,
            op: Op::Get,
            verify: cli.verify_large,
        },
        Cell {
            scenario: Scenario::Seaweed,
            label: format!("small GET, {} connections", seaweed::SMALL_CONNECTIONS),
            connections: seaweed::SMALL_CONNECTIONS,
            keys: Synthetic::parse(seaweed::SMALL_KEYS)?,
            op: Op::Get,
            verify: true,
        },
    ])
}

impl Bench {
    fn start_sim(&self, index: usize) -> Result<Managed> {
        let addr = self.node_addrs[index];
        let mut command = Command::new(&self.sim_binary);
        command.arg("--listen").arg(addr.to_string()).args([
            "--synthetic",
            LARGE_KEYS,
            "--synthetic",
            SMALL_KEYS,
            "--synthetic",
            PUT_KEYS,
        ]);
        let log = self.run_dir.join(format!("sim-{}.log", index + 1));
        let mut sim = Managed::spawn(&format!("weir-sim {}", index + 1), command, &log)?;
        sim.wait_accepting(addr, Duration::from_secs(90))?;
        Ok(sim)
    }

    fn start_target(&mut self, kind: Kind) -> Result<Target> {
        if kind == Kind::Direct {
            return Ok(Target {
                kind,
                addrs: self.node_addrs.clone(),
                process: None,
                config_path: None,
            });
        }
        let listen = SocketAddr::from((
            [127, 0, 0, 1],
            self.cli.base_port + kind.port_offset() + self.port_shift,
        ));
        let mut with_limits = false;
        if kind == Kind::WeirProtected {
            with_limits = self.weir_accepts_limits(listen)?;
            self.limits_on = with_limits;
        }
        let (text, file) = peers::config(
            kind,
            listen,
            &self.node_addrs,
            &self.run_dir,
            with_limits,
            self.health_preset,
        )?
        .context("a proxy has a configuration")?;
        // The cluster's targets get configuration files and logs of their own.
        let prefix = if self.cluster.is_some() {
            "seaweed-"
        } else {
            ""
        };
        let config_path = self.run_dir.join(format!("{prefix}{file}"));
        std::fs::write(&config_path, text)?;
        let command = peers::command(kind, &self.binaries, &config_path, &self.run_dir)?;
        let log = self.run_dir.join(format!("{prefix}{}.log", kind.name()));
        let mut process = Managed::spawn(kind.name(), command, &log)?;
        process.wait_accepting(listen, Duration::from_secs(30))?;
        // Accepting is not serving: wait for a small GET to come back through it.
        let started = Instant::now();
        let mut signer = self.credentials.clone().map(Signer::new);
        loop {
            let outcome = match signer.as_mut() {
                Some(signer) => {
                    seaweed::signed_request(signer, listen, "GET", "/bench/small-0", b"")
                }
                None => http::request(
                    listen,
                    "GET",
                    "/bench/small-0",
                    &[],
                    b"",
                    Duration::from_secs(2),
                ),
            };
            match outcome {
                Ok(response) if response.status == 200 => break,
                outcome if started.elapsed() > Duration::from_secs(20) => bail!(
                    "{} does not serve a GET after 20 s ({outcome:?}); its log:\n{}",
                    kind.name(),
                    process.log_tail(30)
                ),
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
        println!(
            "{:<14} up on {listen} (pid {}, config {})",
            kind.name(),
            process.pid(),
            config_path.display()
        );
        Ok(Target {
            kind,
            addrs: vec![listen],
            process: Some(process),
            config_path: Some(config_path),
        })
    }

    /// Whether this weir accepts `bench/peers/weir-limits.toml`; notes what was left out.
    fn weir_accepts_limits(&mut self, listen: SocketAddr) -> Result<bool> {
        let probe_dir = self.run_dir.join("check-config");
        std::fs::create_dir_all(&probe_dir)?;
        let check = |with_limits: bool| -> Result<(bool, String)> {
            let (text, _) = peers::config(
                Kind::WeirProtected,
                listen,
                &self.node_addrs,
                &probe_dir,
                with_limits,
                self.health_preset,
            )?
            .context("weir has a configuration")?;
            let path = probe_dir.join(format!("weir-protected-limits-{with_limits}.toml"));
            std::fs::write(&path, text)?;
            let out = Command::new(&self.binaries.weir)
                .arg("check-config")
                .arg(&path)
                .output()
                .context("run weir check-config")?;
            let message = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            Ok((out.status.success(), message.trim().to_string()))
        };
        let (ok, message) = check(true)?;
        if ok {
            self.note(format!(
                "weir-protected ran with the tenant and class limits of \
                 bench/peers/weir-limits.toml: far above the load of every scenario (which \
                 sends no access key) except noisy-neighbour, whose flood tenant is held to \
                 {:.0} requests/s.",
                noisy::FLOOD_LIMIT_PER_S
            ));
            return Ok(true);
        }
        let (bare_ok, bare_message) = check(false)?;
        if !bare_ok {
            bail!("weir rejects bench/peers/weir-protected.toml: {bare_message}");
        }
        let first = message.lines().next().unwrap_or("").to_string();
        self.note(format!(
            "weir-protected ran WITHOUT tenant/class limits: this weir rejects \
             bench/peers/weir-limits.toml (`weir check-config`: {first}). Its protection here \
             is probes every 1 s with passive failure detection, retries and resume, \
             connection caps, the metrics listener and the access log (WEIR_ACCESS_LOG)."
        ));
        Ok(false)
    }

    /// weir may accept the limit keys before its request path applies them: after the
    /// correctness pass (whose requests all belong to tenant "bench"), look for a
    /// tenant-labelled series in weir-protected's /metrics and say what was found.
    fn note_whether_limits_apply(&mut self) {
        let Some(target) = self.targets.iter().find(|t| t.kind == Kind::WeirProtected) else {
            return;
        };
        let listen = target.addrs[0];
        let metrics = SocketAddr::new(listen.ip(), listen.port() + 1);
        let text = match http::request(metrics, "GET", "/metrics", &[], b"", Duration::from_secs(5))
        {
            Ok(response) if response.status == 200 => response.text(),
            _ => String::new(),
        };
        let tenant_lines = text
            .lines()
            .filter(|l| l.starts_with("weir_") && l.contains("tenant=\"bench\""))
            .count();
        self.note(if tenant_lines > 0 {
            format!(
                "weir-protected's /metrics shows tenant \"bench\" ({tenant_lines} series) after \
                 the correctness pass: the limits are on the request path."
            )
        } else {
            "weir-protected's /metrics has no series labelled with tenant \"bench\" after the \
             correctness pass: this weir validates the limit keys, but nothing shows that \
             it applies them to requests yet, so the protection cost measured here may not \
             include the limiter."
                .to_string()
        });
    }

    /// The storage processes: the simulators, or the SeaweedFS cluster.
    fn sim_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.sims.iter().flat_map(Managed::tree).collect();
        if let Some(cluster) = &self.cluster {
            pids.extend(cluster.pids());
        }
        pids
    }

    /// Adds a note for the result pages (once: the two phases may find the same thing).
    fn note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    /// Notes every target whose process has exited.
    fn note_exited_targets(&mut self) {
        let mut exited = Vec::new();
        for target in &mut self.targets {
            if let Some(process) = target.process.as_mut() {
                if let Some(status) = process.exited() {
                    exited.push(format!(
                        "{} exited during the run ({status}); see its log in the raw folder",
                        target.kind.name()
                    ));
                }
            }
        }
        for note in exited {
            self.note(note);
        }
    }

    /// The timed rounds: for each round and cell every target once, the order rotated.
    fn rounds(&mut self, cells: &[Cell]) -> Result<Vec<Measurement>> {
        let mut measurements = Vec::new();
        let total_cells = cells.len() * self.targets.len() * self.cli.rounds;
        let mut done = 0;
        for round in 0..self.cli.rounds {
            for cell in cells {
                let n = self.targets.len();
                for position in 0..n {
                    let index = (position + round) % n;
                    done += 1;
                    match self.measure(cell, index, round, position) {
                        Ok(m) => {
                            println!(
                                "[{done:>3}/{total_cells}] round {} {:<9} {:<11} {:<14} {}",
                                round + 1,
                                cell.scenario.name(),
                                cell.label,
                                m.kind.name(),
                                progress_line(&m)
                            );
                            use std::io::Write as _;
                            writeln!(self.records, "{}", m.to_json())?;
                            measurements.push(m);
                        }
                        Err(err) => {
                            let note = format!(
                                "{} {} round {}: not measured: {err:#}",
                                cell.scenario.name(),
                                cell.label,
                                round + 1
                            );
                            println!("[{done:>3}/{total_cells}] {note}");
                            self.note(note);
                        }
                    }
                    std::thread::sleep(SETTLE);
                }
            }
        }
        Ok(measurements)
    }

    /// The seaweed scenario: start the cluster, seed it, start every target in front of
    /// its gateways, a correctness pass, the timed rounds; everything is stopped again by
    /// the caller.
    fn seaweed(
        &mut self,
        weed: &Path,
        cells: &[Cell],
        kinds: &[Kind],
    ) -> Result<(ClusterInfo, Vec<Measurement>)> {
        let (version, version_line) = seaweed::version(weed);
        let mut info = ClusterInfo {
            version,
            version_line,
            ..ClusterInfo::default()
        };
        let started = Instant::now();
        let root = self.run_dir.join("seaweed");
        println!(
            "seaweed: starting {} (1 weed server, {} weed s3 gateways) in {}",
            info.version,
            seaweed::GATEWAYS,
            root.display()
        );
        let mut cluster = Cluster::start(weed, &root, self.cli.base_port)?;
        info.start_s = started.elapsed().as_secs_f64();
        info.gateways = cluster.addrs();
        cluster.create_bucket("bench")?;
        let families = [
            Synthetic::parse(seaweed::LARGE_KEYS)?,
            Synthetic::parse(seaweed::SMALL_KEYS)?,
        ];
        info.seeded = cluster.seed(&families)?;
        println!(
            "seaweed: gateways {:?} up in {:.1} s; seeded {} objects ({:.0} MiB) through the first in {:.1} s",
            info.gateways,
            info.start_s,
            info.seeded.objects,
            info.seeded.bytes as f64 / (1 << 20) as f64,
            info.seeded.seconds
        );
        info.refused = cluster.refusals("/bench/small-0")?;
        let accepted: Vec<String> = info
            .refused
            .iter()
            .filter(|(_, signed, unsigned)| *signed == 200 || *unsigned == 200)
            .map(|(addr, signed, unsigned)| format!("{addr} ({signed} / {unsigned})"))
            .collect();
        if !accepted.is_empty() {
            info.notes.push(format!(
                "Gateways {} answered 200 to a GET signed with a wrong secret or not signed \
                 at all: they do not verify, so this run does not show that the proxies keep \
                 signed headers intact.",
                accepted.join(", ")
            ));
        }
        if !info.seeded.etag_differs.is_empty() {
            info.notes.push(format!(
                "{} upload(s) were answered with an ETag other than the MD5 of the bytes,                  e.g. {} (the bytes are checked by the correctness pass either way).",
                info.seeded.etag_differs.len(),
                info.seeded.etag_differs[0]
            ));
        }
        self.node_addrs = cluster.addrs();
        self.cluster = Some(cluster);
        self.keys = KeySet::seaweed();
        self.credentials = Some(seaweed::credentials());
        self.port_shift = seaweed::TARGET_PORT_SHIFT;
        self.health_preset = peers::HEALTH_PRESET_SEAWEED;
        for &kind in kinds {
            let target = self.start_target(kind)?;
            self.targets.push(target);
        }
        for i in 0..self.targets.len() {
            let (errors, requests) = self.correctness(i)?;
            info.correctness
                .push((self.targets[i].kind, errors, requests));
        }
        if self.limits_on {
            self.note_whether_limits_apply();
        }
        info.load_before = procs::load_average();
        let measurements = self.rounds(cells)?;
        self.note_exited_targets();
        if let Some(exited) = self.cluster.as_mut().and_then(Cluster::exited) {
            info.notes.push(format!(
                "{exited} during the run; its log is in the raw folder (seaweed/)."
            ));
        }
        Ok((info, measurements))
    }

    /// The tls-get scenario over the simulators (started again if an earlier scenario
    /// stopped them); its proxies are its own.
    fn tls_get(&mut self) -> Result<TlsRun> {
        if self.cli.tls_streams.is_empty() || self.cli.tls_streams.contains(&0) {
            bail!("--tls-streams must be at least 1");
        }
        if self.sims.is_empty() {
            for i in 0..NODES {
                let sim = self.start_sim(i)?;
                self.sims.push(sim);
            }
        }
        let setup = tls::Setup {
            binaries: &self.binaries,
            nodes: &self.node_addrs,
            run_dir: &self.run_dir,
            base_port: self.cli.base_port,
            rounds: self.cli.rounds,
            duration: self.duration,
            streams: &self.cli.tls_streams,
            keys: Synthetic::parse(LARGE_KEYS)?,
        };
        tls::run(&setup, &mut self.records)
    }

    /// The identity scenario over the simulators (started again if an earlier scenario
    /// stopped them); its weirs are its own.
    fn identity(&mut self) -> Result<IdentityRun> {
        if self.sims.is_empty() {
            for i in 0..NODES {
                let sim = self.start_sim(i)?;
                self.sims.push(sim);
            }
        }
        let setup = identity::Setup {
            binaries: &self.binaries,
            nodes: &self.node_addrs,
            sim_pids: self.sim_pids(),
            run_dir: &self.run_dir,
            base_port: self.cli.base_port,
            rounds: self.cli.rounds,
            duration: self.duration,
            correctness_duration: if self.cli.smoke {
                Duration::from_millis(500)
            } else {
                Duration::from_secs(2)
            },
            streams: self.cli.identity_streams,
            get_keys: Synthetic::parse(LARGE_KEYS)?,
            put_keys: Synthetic::parse(PUT_KEYS)?,
            verify_get: self.cli.verify_large,
        };
        identity::run(&setup, &mut self.records)
    }

    /// The attack scenario over the simulators (started again if an earlier scenario
    /// stopped them); its proxies (weir, weir-protected, HAProxy, as chosen) are its own.
    fn attack(&mut self, kinds: &[Kind]) -> Result<AttackRun> {
        if self.sims.is_empty() {
            for i in 0..NODES {
                let sim = self.start_sim(i)?;
                self.sims.push(sim);
            }
        }
        let setup = attack::Setup {
            binaries: &self.binaries,
            nodes: &self.node_addrs,
            run_dir: &self.run_dir,
            base_port: self.cli.base_port,
            rounds: self.cli.rounds,
            calm: self.duration,
            attacked: parse_duration(&self.cli.attack_duration)?,
            kinds: kinds.to_vec(),
            mix: if self.cli.smoke {
                attack::Mix::smoke()
            } else {
                attack::Mix::full()
            },
            keys: Synthetic::parse(SMALL_KEYS)?,
            innocent_connections: if self.cli.smoke { 4 } else { 16 },
        };
        attack::run(&setup, &mut self.records)
    }

    fn load_config(&self, target: usize, cell: &Cell, duration: Duration) -> LoadConfig {
        let mut config =
            LoadConfig::new(self.targets[target].addrs.clone(), vec![cell.keys.clone()]);
        config.connections = cell.connections;
        config.duration = duration;
        config.op = cell.op;
        config.verify = cell.verify;
        config.check_put_etag = cell.op != Op::Get;
        config.credentials = self.credentials.clone();
        // A 64 MiB body shared by 64 streams on 2 cores can take seconds; 10 s plus
        // size / 20 MB/s (13 s for 64 MiB) keeps slow-but-alive requests from counting
        // as errors while a stalled one still fails.
        config.timeout_base = Duration::from_secs(10);
        config
    }

    fn alive(&mut self, target: usize) -> Result<()> {
        if let Some(process) = self.targets[target].process.as_mut() {
            if let Some(status) = process.exited() {
                bail!("{} has exited ({status})", process.name());
            }
        }
        Ok(())
    }

    fn measure(
        &mut self,
        cell: &Cell,
        target: usize,
        round: usize,
        position: usize,
    ) -> Result<Measurement> {
        self.alive(target)?;
        let config = self.load_config(target, cell, self.duration);
        let has_process = self.targets[target].process.is_some();
        let pids = self.targets[target].pids();
        let sim_pids = self.sim_pids();
        procs::reset_peak_rss(&pids);
        let load_average = procs::load_average();
        let proxy_before = CpuSnapshot::take(&pids);
        let sims_before = CpuSnapshot::take(&sim_pids);
        let client_before = procs::self_cpu_seconds();
        let summary = load::run(&config, |_| {})?;
        let client_cpu_s = procs::self_cpu_seconds() - client_before;
        let proxy_cpu_s = CpuSnapshot::take(&pids).seconds_since(&proxy_before);
        let sims_cpu_s = CpuSnapshot::take(&sim_pids).seconds_since(&sims_before);
        let peak = procs::peak_rss_bytes(&pids);
        self.alive(target)?;
        Ok(Measurement {
            scenario: cell.scenario,
            cell: cell.label.clone(),
            kind: self.targets[target].kind,
            round,
            position,
            summary,
            proxy_cpu_s: has_process.then_some(proxy_cpu_s),
            proxy_peak_rss_bytes: has_process.then_some(peak),
            sims_cpu_s,
            client_cpu_s,
            load_average,
        })
    }

    /// One noisy-neighbour run: training alone, then training beside the flood, for
    /// `duration` each.
    fn noisy(
        &mut self,
        target: usize,
        round: usize,
        position: usize,
        duration: Duration,
    ) -> Result<NoisyRun> {
        self.alive(target)?;
        let addrs = self.targets[target].addrs.clone();
        let mut training = LoadConfig::new(addrs.clone(), vec![Synthetic::parse(LARGE_KEYS)?]);
        training.connections = noisy::TRAINING_STREAMS;
        training.duration = duration;
        training.verify = self.cli.verify_large;
        training.timeout_base = Duration::from_secs(10);
        training.access_key = Some(noisy::TRAINING_ACCESS_KEY.into());
        let mut flood = LoadConfig::new(addrs, vec![Synthetic::parse(SMALL_KEYS)?]);
        flood.connections = noisy::FLOOD_CONNECTIONS;
        flood.duration = duration;
        flood.verify = true;
        flood.timeout_base = Duration::from_secs(10);
        flood.access_key = Some(noisy::FLOOD_ACCESS_KEY.into());
        flood.quiet_503 = true;
        let alone = self.noisy_phase(target, &training, None)?;
        std::thread::sleep(SETTLE);
        let beside = self.noisy_phase(target, &training, Some(&flood))?;
        self.alive(target)?;
        Ok(NoisyRun {
            kind: self.targets[target].kind,
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
        &mut self,
        target: usize,
        training: &LoadConfig,
        flood: Option<&LoadConfig>,
    ) -> Result<Phase> {
        let kind = self.targets[target].kind;
        let has_process = self.targets[target].process.is_some();
        let pids = self.targets[target].pids();
        let sim_pids = self.sim_pids();
        // Only weir-protected has a metrics listener (and the tenants).
        let weir_metrics = (kind == Kind::WeirProtected).then(|| {
            SocketAddr::new(
                self.targets[target].addrs[0].ip(),
                self.targets[target].addrs[0].port() + 1,
            )
        });
        let nodes_before = self.node_stats()?;
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
        let nodes_after = self.node_stats()?;
        let weir_flood = match (weir_metrics, weir_before) {
            (Some(addr), Some(before)) if flood.is_some() => {
                Some(scrape_flood(addr)?.since(&before))
            }
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

    /// Every simulator node's counters (`GET /_sim/stats`; not counted as a request).
    fn node_stats(&self) -> Result<Vec<SimStats>> {
        self.node_addrs
            .iter()
            .map(|&addr| {
                let response =
                    http::request(addr, "GET", "/_sim/stats", &[], b"", Duration::from_secs(5))
                        .with_context(|| format!("stats of node {addr}"))?;
                if response.status != 200 {
                    bail!("stats of node {addr}: status {}", response.status);
                }
                SimStats::from_json(&response.text())
                    .with_context(|| format!("stats of node {addr}"))
            })
            .collect()
    }

    /// A short verifying load: GETs of both sizes with every byte checked, then PUTs
    /// with every ETag checked.
    fn correctness(&mut self, target: usize) -> Result<(ErrorCounts, u64)> {
        let duration = if self.cli.smoke {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(2)
        };
        let mut get = LoadConfig::new(
            self.targets[target].addrs.clone(),
            vec![
                Synthetic::parse(self.keys.large)?,
                Synthetic::parse(self.keys.small)?,
            ],
        );
        get.connections = 4;
        get.duration = duration;
        get.verify = true;
        get.credentials = self.credentials.clone();
        let get_summary = load::run(&get, |_| {})?;
        let mut put = LoadConfig::new(
            self.targets[target].addrs.clone(),
            vec![Synthetic::parse(self.keys.put)?],
        );
        put.credentials = self.credentials.clone();
        put.connections = 2;
        put.duration = duration;
        put.op = Op::Put;
        put.check_put_etag = true;
        let put_summary = load::run(&put, |_| {})?;
        let mut errors = get_summary.errors.clone();
        for (sum, add) in [
            (&mut errors.connect, put_summary.errors.connect),
            (&mut errors.timeout, put_summary.errors.timeout),
            (&mut errors.io, put_summary.errors.io),
            (&mut errors.status, put_summary.errors.status),
            (&mut errors.status_503, put_summary.errors.status_503),
            (&mut errors.mismatch, put_summary.errors.mismatch),
        ] {
            *sum += add;
        }
        let requests = get_summary.requests + put_summary.requests;
        println!(
            "correctness {:<14} {requests} requests (GET {:.2} GB/s, PUT {:.2} GB/s), errors {}",
            self.targets[target].kind.name(),
            get_summary.gbps(),
            put_summary.gbps(),
            errors.total()
        );
        Ok((errors, requests))
    }

    /// One failover run: 16 verifying 64 MiB GET streams, node 2 SIGKILLed midway; the node
    /// is restarted afterwards and every target gets time to see it up again.
    fn failover(&mut self, target: usize) -> Result<FailoverRun> {
        self.alive(target)?;
        let kind = self.targets[target].kind;
        let duration = parse_duration(&self.cli.failover_duration)?;
        let kill_at = parse_duration(&self.cli.failover_kill_at)?;
        if kill_at >= duration {
            bail!("--failover-kill-at must be before the end of --failover-duration");
        }
        let cell = Cell {
            scenario: Scenario::Failover,
            label: format!("{PUT_STREAMS} streams"),
            connections: PUT_STREAMS,
            keys: Synthetic::parse(LARGE_KEYS)?,
            op: Op::Get,
            verify: true,
        };
        let mut config = self.load_config(target, &cell, duration);
        config.tick_interval = Duration::from_secs_f64(FAILOVER_BIN_S);
        let mut bins = Vec::new();
        let mut killed_at = None;
        let node = &mut self.sims[FAILOVER_NODE];
        let summary = load::run(&config, |tick| {
            bins.push((tick.elapsed.as_secs_f64(), tick.gbps()));
            if killed_at.is_none() && tick.elapsed >= kill_at {
                node.kill9();
                killed_at = Some(tick.elapsed.as_secs_f64());
            }
        })?;
        let weir_metrics = if kind == Kind::WeirProtected {
            self.weir_failover_metrics(target)
        } else {
            Vec::new()
        };
        println!(
            "failover {:<14} {:.2} GB/s over the run, errors {}",
            kind.name(),
            summary.gbps(),
            weir_bench::runner::show_errors(&summary.errors)
        );
        // Bring the node back and let every target's health checks see it.
        self.sims[FAILOVER_NODE].stop();
        let restarted = self.start_sim(FAILOVER_NODE)?;
        self.sims[FAILOVER_NODE] = restarted;
        std::thread::sleep(parse_duration(&self.cli.failover_recover)?);
        Ok(FailoverRun {
            kind,
            bins,
            kill_at_s: killed_at.context("the run ended before the kill")?,
            summary,
            weir_metrics,
        })
    }

    /// weir's retry, resume, upstream-error and node-state lines (non-zero only).
    fn weir_failover_metrics(&self, target: usize) -> Vec<String> {
        let Some(listen) = self.targets[target].addrs.first() else {
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

// One argument per kind of result; bundling them would only move the list.
#[allow(clippy::too_many_arguments)]
fn write_pages(
    bench: &Bench,
    meta: &RunMeta,
    scenarios: &[Scenario],
    cells: &[Cell],
    measurements: &[Measurement],
    noisy_runs: &[NoisyRun],
    failover_runs: &[FailoverRun],
    cluster: Option<&ClusterInfo>,
    tls_run: Option<&TlsRun>,
    identity_run: Option<&IdentityRun>,
    attack_run: Option<&AttackRun>,
) -> Result<()> {
    let out = &bench.cli.out;
    std::fs::create_dir_all(out)?;
    let mut pages = Vec::new();
    for &scenario in scenarios {
        let labels: Vec<String> = cells
            .iter()
            .filter(|c| c.scenario == scenario)
            .map(|c| c.label.clone())
            .collect();
        let mine: Vec<Measurement> = measurements
            .iter()
            .filter(|m| m.scenario == scenario)
            .cloned()
            .collect();
        let (md, svg) = match scenario {
            Scenario::LargeGet | Scenario::LargePut => {
                report::throughput_page(meta, scenario, &labels, &mine)
            }
            Scenario::SmallGet => report::small_get_page(meta, &labels, &mine),
            Scenario::NoisyNeighbour => report::noisy_page(meta, noisy_runs),
            Scenario::Failover => report::failover_page(meta, failover_runs),
            Scenario::Seaweed => match cluster {
                Some(info) => report::seaweed_page(meta, info, &labels, &mine),
                // Not measured (the error is printed and returned): no page.
                None => continue,
            },
            Scenario::TlsGet => match tls_run {
                Some(run) => tls::page(meta, run),
                None => continue,
            },
            Scenario::Identity => match identity_run {
                Some(run) => identity::page(meta, run),
                None => continue,
            },
            Scenario::Attack => match attack_run {
                Some(run) => attack::page(meta, run),
                None => continue,
            },
        };
        std::fs::write(out.join(format!("{}.md", scenario.name())), md)?;
        std::fs::write(out.join(format!("{}.svg", scenario.name())), svg)?;
        pages.push((scenario, scenario.name().to_string()));
    }
    let left_out: Vec<String> = LEFT_OUT.iter().map(|s| s.to_string()).collect();
    let index = report::index_page(meta, &pages, &left_out);
    // The index describes one run of everything; a run of some scenarios must not replace
    // it with a page that lists only those (their pages above are self-contained).
    if Scenario::ALL.iter().all(|s| scenarios.contains(s)) {
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
