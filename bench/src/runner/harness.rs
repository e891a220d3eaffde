//! What a run of `weir-bench-run` holds on to while its scenarios run: the simulator nodes,
//! the targets in front of them (or in front of the SeaweedFS cluster), the raw records
//! file and the notes for the pages; and the machinery the scenarios share — starting nodes
//! and targets, the correctness pass, the timed rounds of interleaved cells.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::cli::Cli;
use super::noisy;
use super::peers::{self, Binaries, Kind, Target};
use super::procs::{self, CpuSnapshot, Managed};
use super::report::RunMeta;
use super::seaweed::{self, Cluster};
use super::Measurement;
use crate::load::{self, ErrorCounts, LoadConfig, Op};
use crate::sigv4::{Credentials, Signer};
use crate::{http, SimStats, Synthetic};

/// Simulator nodes behind every proxy.
pub const NODES: usize = 3;
/// Large objects: 64 MiB, four keys.
pub const LARGE_KEYS: &str = "bench/obj-:64MiB:4";
/// Small objects: 4 KiB, 64 keys.
pub const SMALL_KEYS: &str = "bench/small-:4KiB:64";
/// PUT targets: 64 MiB, four keys (declared on the nodes, so a correct PUT of the pattern
/// shares the node's one copy instead of growing its memory).
pub const PUT_KEYS: &str = "bench/put-:64MiB:4";
/// Connections of the small-GET scenario.
pub const SMALL_CONNECTIONS: usize = 64;
/// Streams of the large-PUT and failover scenarios.
pub const PUT_STREAMS: usize = 16;
/// Pause between cells, so one cell's closing connections do not overlap the next.
pub const SETTLE: Duration = Duration::from_millis(300);

/// A workload variant of a scenario: one timed cell of the shared rounds.
#[derive(Clone, Debug)]
pub struct Cell {
    /// The scenario's name (its page gets the cell).
    pub scenario: &'static str,
    /// Cell label within the scenario (e.g. "16 streams").
    pub label: String,
    /// Client connections.
    pub connections: usize,
    /// The objects.
    pub keys: Synthetic,
    /// GET or PUT.
    pub op: Op,
    /// Check every body byte (GET) or ETag (PUT).
    pub verify: bool,
}

/// The objects of one backend: what the correctness pass GETs and PUTs.
#[derive(Clone, Debug)]
pub struct KeySet {
    large: &'static str,
    small: &'static str,
    put: &'static str,
}

impl KeySet {
    /// The simulators' objects.
    pub fn simulators() -> Self {
        Self {
            large: LARGE_KEYS,
            small: SMALL_KEYS,
            put: PUT_KEYS,
        }
    }

    /// The SeaweedFS cluster's objects.
    pub fn seaweed() -> Self {
        Self {
            large: seaweed::LARGE_KEYS,
            small: seaweed::SMALL_KEYS,
            put: seaweed::PUT_KEYS,
        }
    }
}

/// Everything a run holds on to.
pub struct Harness {
    /// The command line (after `--smoke`).
    pub cli: Cli,
    /// Load duration of one cell.
    pub duration: Duration,
    /// The run's raw folder: records, configurations, logs.
    pub run_dir: PathBuf,
    /// The proxies' binaries.
    pub binaries: Binaries,
    /// The weir-sim binary.
    pub sim_binary: PathBuf,
    /// The targets chosen with `--targets`, sorted.
    pub kinds: Vec<Kind>,
    /// The storage nodes the targets front: the simulators, or the cluster's gateways.
    pub node_addrs: Vec<SocketAddr>,
    /// The simulator nodes, while they run.
    pub sims: Vec<Managed>,
    /// The SeaweedFS cluster, during the seaweed scenario (then `node_addrs` are its
    /// gateways).
    pub cluster: Option<Cluster>,
    /// The objects of the current backend (simulators or cluster).
    pub keys: KeySet,
    /// Real SigV4 credentials for every request (the cluster verifies signatures).
    pub credentials: Option<Credentials>,
    /// Added to every target's port (the cluster's targets listen beside the simulators').
    pub port_shift: u16,
    /// weir-protected's health-check preset for the current backend.
    pub health_preset: &'static str,
    /// The running targets.
    pub targets: Vec<Target>,
    /// `records.jsonl`: one JSON line per measured cell or run.
    pub records: std::fs::File,
    notes: Vec<String>,
    /// Whether weir-protected runs with bench/peers/weir-limits.toml.
    pub limits_on: bool,
}

/// The simulator nodes' addresses for a base port.
pub fn simulator_addrs(base_port: u16) -> Vec<SocketAddr> {
    (1..=NODES as u16)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], base_port + i)))
        .collect()
}

/// The progress line of one measured cell.
pub fn progress_line(m: &Measurement) -> String {
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

impl Harness {
    /// A harness with nothing started; `records` is the run's `records.jsonl`.
    pub fn new(
        cli: Cli,
        duration: Duration,
        run_dir: PathBuf,
        binaries: Binaries,
        sim_binary: PathBuf,
        kinds: Vec<Kind>,
        records: std::fs::File,
    ) -> Self {
        Self {
            duration,
            run_dir,
            binaries,
            sim_binary,
            kinds,
            node_addrs: simulator_addrs(cli.base_port),
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
        }
    }

    /// The notes for the pages, in the order they were made.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The shared fleet: the simulator nodes, every `--targets` proxy in front of them and
    /// a correctness pass through each (recorded in `meta`).
    pub fn start_fleet(&mut self, meta: &mut RunMeta) -> Result<()> {
        self.start_sims()?;
        println!("{NODES} simulator nodes up on {:?}", self.node_addrs);
        for kind in self.kinds.clone() {
            let target = self.start_target(kind)?;
            self.targets.push(target);
        }
        // Correctness first: a short verifying GET and PUT load through every target.
        for i in 0..self.targets.len() {
            let (errors, requests) = self.correctness(i)?;
            meta.correctness
                .push((self.targets[i].kind, errors, requests));
        }
        if self.limits_on {
            self.note_whether_limits_apply();
        }
        meta.limits_on = self.limits_on;
        Ok(())
    }

    /// Stops every process, which frees the ports and the CPU for the next scenario; the
    /// backend is the simulators' again.
    pub fn stop_all(&mut self) {
        self.targets.clear();
        self.sims.clear();
        self.cluster = None;
        self.node_addrs = simulator_addrs(self.cli.base_port);
        self.keys = KeySet::simulators();
        self.credentials = None;
        self.port_shift = 0;
        self.health_preset = peers::HEALTH_PRESET_SIMULATORS;
    }

    /// Starts the simulator nodes unless they run.
    pub fn start_sims(&mut self) -> Result<()> {
        if self.sims.is_empty() {
            for i in 0..NODES {
                let sim = self.start_sim(i)?;
                self.sims.push(sim);
            }
        }
        Ok(())
    }

    /// Starts simulator node `index` (0-based) at its address.
    pub fn start_sim(&self, index: usize) -> Result<Managed> {
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

    /// Starts one target in front of `node_addrs` and waits until a GET comes back through it.
    pub fn start_target(&mut self, kind: Kind) -> Result<Target> {
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
    pub fn note_whether_limits_apply(&mut self) {
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
    pub fn sim_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.sims.iter().flat_map(Managed::tree).collect();
        if let Some(cluster) = &self.cluster {
            pids.extend(cluster.pids());
        }
        pids
    }

    /// Adds a note for the result pages (once: the two phases may find the same thing).
    pub fn note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    /// Notes every target whose process has exited.
    pub fn note_exited_targets(&mut self) {
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
    pub fn rounds(&mut self, cells: &[Cell]) -> Result<Vec<Measurement>> {
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
                                cell.scenario,
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
                                cell.scenario,
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

    /// The load of one cell against one target.
    pub fn load_config(&self, target: usize, cell: &Cell, duration: Duration) -> LoadConfig {
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

    /// Fails when the target's process has exited.
    pub fn alive(&mut self, target: usize) -> Result<()> {
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

    /// Every simulator node's counters (`GET /_sim/stats`; not counted as a request).
    pub fn node_stats(&self) -> Result<Vec<SimStats>> {
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
    pub fn correctness(&mut self, target: usize) -> Result<(ErrorCounts, u64)> {
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
}
