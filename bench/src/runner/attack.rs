//! The `attack` scenario: what a proxy holds, per core, while its client side is attacked,
//! and what that costs the innocent clients beside the attack.
//!
//! weir (bare, and with its protection when that target is chosen) and HAProxy, each with
//! the configuration of the other scenarios (`bench/peers/`), in front of the same
//! simulator nodes. Per proxy and round, two phases:
//!
//! 1. **calm**: innocent clients alone — weir-load, 4 KiB GETs on a few keep-alive
//!    connections from 127.0.0.1, every body byte checked;
//! 2. **attacked**: the same innocent load beside the attack mix of
//!    [`crate::hostile::attack`] — slowloris heads, slow PUT bodies, idle connections,
//!    header bombs and a connection flood, from 127.0.0.2–127.0.0.9.
//!
//! Measured per phase: the innocents' throughput, p50/p99 latency and errors; the client
//! connections the proxy held (its own sockets on the listen port that are not the
//! listener, from `/proc/PID/fd` and `/proc/net/tcp`, sampled every 200 ms: peak and end);
//! the proxy's peak RSS (`VmHWM`, reset at the phase start) and CPU-seconds; and, for the
//! attack, what the proxy did with each kind (closed after how long, answered what).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::peers::{self, Binaries, Kind};
use super::procs::{self, CpuSnapshot, Managed};
use super::report::{self, RunMeta};
use super::show_errors;
use super::stats::{show, Spread};
use super::svg::{self, BarPanel, Panel, Series};
use crate::hostile::attack::{self, AttackConfig, AttackReport, Held};
use crate::load::{self, ErrorCounts, LoadConfig, Summary};
use crate::Synthetic;

/// Listen ports of this scenario's proxies, as offsets from the runner's base port: weir,
/// weir-protected (its metrics on the next port), HAProxy — above every other scenario's
/// ports (the SeaweedFS cluster ends at base + 91) and below base + 100.
const PORT_OFFSETS: [(Kind, u16); 3] = [
    (Kind::Weir, 92),
    (Kind::WeirProtected, 94),
    (Kind::Haproxy, 96),
];
/// Cores (threads) every proxy of the bench runs on.
pub const PROXY_CORES: u32 = 2;
/// Sources of the attack (the innocents connect from 127.0.0.1).
pub const ATTACK_SOURCES: &str = "127.0.0.2-127.0.0.9";
/// How often the proxy's held connections and RSS are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// Pause after an attacked phase, so the proxy lets go of the attack before the next.
const SETTLE: Duration = Duration::from_secs(1);

/// The attack of one phase.
#[derive(Clone, Debug, PartialEq)]
pub struct Mix {
    /// Slowloris connections (a head byte a second).
    pub slowloris: usize,
    /// Slow PUT bodies (a body byte a second, 1 MiB declared).
    pub slow_bodies: usize,
    /// Idle connections.
    pub idle: usize,
    /// Header-bomb threads (1000 fields, or 15 KiB of fields, in turn).
    pub header_bombs: usize,
    /// Connection-flood threads.
    pub flood: usize,
    /// Flood connections per second (0 = as fast as possible).
    pub flood_rate: u64,
}

impl Mix {
    /// The mix of a full run.
    pub fn full() -> Self {
        Self {
            slowloris: 500,
            slow_bodies: 64,
            idle: 2000,
            header_bombs: 2,
            flood: 1,
            flood_rate: 2000,
        }
    }

    /// The mix of a smoke run (the harness must work; the numbers do not matter).
    pub fn smoke() -> Self {
        Self {
            slowloris: 50,
            slow_bodies: 8,
            idle: 200,
            header_bombs: 1,
            flood: 1,
            flood_rate: 500,
        }
    }

    /// The attack client's configuration against `target` (running until stopped).
    fn config(&self, target: SocketAddr, duration: Duration) -> Result<AttackConfig> {
        let mut c = AttackConfig::new(target, duration);
        c.sources = attack::parse_sources(ATTACK_SOURCES)?;
        c.path = "/bench/small-0".into();
        c.put_prefix = "/bench/attack-slow-".into();
        c.slowloris = self.slowloris;
        c.slow_bodies = self.slow_bodies;
        c.slow_body_bytes = vec![1 << 20];
        c.idle = self.idle;
        c.header_bombs = self.header_bombs;
        c.flood = self.flood;
        c.flood_rate = self.flood_rate;
        Ok(c)
    }
}

/// What the scenario needs from the runner.
pub struct Setup<'a> {
    /// weir and HAProxy.
    pub binaries: &'a Binaries,
    /// The simulator nodes (running, serving `keys`).
    pub nodes: &'a [SocketAddr],
    /// The run's scratch folder.
    pub run_dir: &'a Path,
    /// The runner's base port.
    pub base_port: u16,
    /// Rounds (every proxy once per round, the order rotated).
    pub rounds: usize,
    /// Length of the calm phase.
    pub calm: Duration,
    /// Length of the attacked phase.
    pub attacked: Duration,
    /// The proxies, of weir, weir-protected and HAProxy.
    pub kinds: Vec<Kind>,
    /// The attack.
    pub mix: Mix,
    /// The innocents' objects.
    pub keys: Synthetic,
    /// The innocents' connections.
    pub innocent_connections: usize,
}

/// One phase of one proxy.
#[derive(Clone)]
pub struct Phase {
    /// What the innocent clients saw.
    pub innocent: Summary,
    /// Proxy CPU-seconds during the phase.
    pub proxy_cpu_s: f64,
    /// Proxy peak RSS during the phase, bytes.
    pub peak_rss_bytes: u64,
    /// Most client connections the proxy held at one sample.
    pub held_peak: u64,
    /// Client connections the proxy held at the last sample before the attack let go.
    pub held_end: u64,
    /// Wall time of the phase, seconds.
    pub wall_s: f64,
    /// 1-minute load average at the start.
    pub load_average: f64,
}

impl Phase {
    fn to_json(&self) -> String {
        format!(
            "{{\"proxy_cpu_s\":{:.3},\"peak_rss_bytes\":{},\"held_peak\":{},\"held_end\":{},\"wall_s\":{:.3},\"load_average\":{:.2},\"innocent\":{}}}",
            self.proxy_cpu_s,
            self.peak_rss_bytes,
            self.held_peak,
            self.held_end,
            self.wall_s,
            self.load_average,
            self.innocent.to_json()
        )
    }
}

/// Both phases of one proxy in one round.
#[derive(Clone)]
pub struct AttackMeasurement {
    /// The proxy.
    pub kind: Kind,
    /// Round (0-based).
    pub round: usize,
    /// Position in the round (0 = ran first).
    pub position: usize,
    /// Innocents alone.
    pub calm: Phase,
    /// Innocents beside the attack.
    pub attacked: Phase,
    /// What the attack client saw.
    pub attack: AttackReport,
}

impl AttackMeasurement {
    /// The raw record.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"scenario\":\"attack\",\"target\":\"{}\",\"round\":{},\"position\":{},\"calm\":{},\"attacked\":{},\"attack\":{}}}",
            self.kind.name(),
            self.round,
            self.position,
            self.calm.to_json(),
            self.attacked.to_json(),
            self.attack.to_json()
        )
    }
}

/// Everything the page shows.
#[derive(Clone, Default)]
pub struct AttackRun {
    /// Every proxy, every round.
    pub measurements: Vec<AttackMeasurement>,
    /// The proxies, in table order.
    pub kinds: Vec<Kind>,
    /// The attack.
    pub mix: Option<Mix>,
    /// Phase lengths, seconds (calm, attacked).
    pub calm_s: f64,
    /// See `calm_s`.
    pub attacked_s: f64,
    /// Innocent connections.
    pub innocent_connections: usize,
    /// Innocent object size, bytes.
    pub object_bytes: u64,
    /// Things to know.
    pub notes: Vec<String>,
}

/// A running proxy of this scenario.
struct Proxy {
    kind: Kind,
    process: Managed,
    listen: SocketAddr,
}

/// The page's title.
pub const TITLE: &str = "Under attack: innocent 4 KiB GETs beside slowloris, slow bodies, idle \
     connections, header bombs and a connection flood";

/// Runs the scenario: the proxies, then per round every proxy's calm and attacked phase.
/// `records` gets one JSON line per proxy and round.
pub fn run(setup: &Setup, records: &mut dyn std::io::Write) -> Result<AttackRun> {
    let dir = setup.run_dir.join("attack");
    std::fs::create_dir_all(&dir)?;
    let mut proxies = Vec::new();
    for &(kind, offset) in &PORT_OFFSETS {
        if setup.kinds.contains(&kind) {
            let listen = SocketAddr::from(([127, 0, 0, 1], setup.base_port + offset));
            proxies.push(start(setup, &dir, kind, listen)?);
        }
    }
    if proxies.is_empty() {
        bail!("the attack scenario needs weir, weir-protected or haproxy among the targets");
    }
    let mut run = AttackRun {
        kinds: proxies.iter().map(|p| p.kind).collect(),
        mix: Some(setup.mix.clone()),
        calm_s: setup.calm.as_secs_f64(),
        attacked_s: setup.attacked.as_secs_f64(),
        innocent_connections: setup.innocent_connections,
        object_bytes: setup.keys.size_bytes,
        ..AttackRun::default()
    };
    let total = setup.rounds * proxies.len();
    let mut done = 0;
    for round in 0..setup.rounds {
        let n = proxies.len();
        for position in 0..n {
            let proxy = &mut proxies[(position + round) % n];
            done += 1;
            if let Some(status) = proxy.process.exited() {
                let note = format!(
                    "{} exited ({status}) before round {}; see its log in the raw folder",
                    proxy.kind.name(),
                    round + 1
                );
                println!("[{done:>3}/{total}] attack {note}");
                if !run.notes.contains(&note) {
                    run.notes.push(note);
                }
                continue;
            }
            let m = measure(setup, proxy, round, position)?;
            println!(
                "[{done:>3}/{total}] round {} attack {:<14} {}",
                round + 1,
                m.kind.name(),
                line(&m)
            );
            writeln!(records, "{}", m.to_json())?;
            run.measurements.push(m);
            std::thread::sleep(SETTLE);
        }
    }
    for proxy in &mut proxies {
        if proxy.process.exited().is_some() {
            run.notes.push(format!(
                "{} exited during the run; see its log in the raw folder",
                proxy.kind.name()
            ));
        }
    }
    Ok(run)
}

/// The progress line of one measurement.
fn line(m: &AttackMeasurement) -> String {
    let ms = |s: &Summary, q: f64| s.latency_us.quantile(q) as f64 / 1000.0;
    format!(
        "innocents {:>6.0} → {:>6.0} req/s, p99 {:.1} → {:.1} ms, errors {} → {}; held {} (end {}), RSS {:.0} MiB, CPU {:.1} s",
        m.calm.innocent.req_per_s(),
        m.attacked.innocent.req_per_s(),
        ms(&m.calm.innocent, 0.99),
        ms(&m.attacked.innocent, 0.99),
        m.calm.innocent.errors.total(),
        m.attacked.innocent.errors.total(),
        m.attacked.held_peak,
        m.attacked.held_end,
        m.attacked.peak_rss_bytes as f64 / (1 << 20) as f64,
        m.attacked.proxy_cpu_s
    )
}

/// Starts `kind` with the configuration the other scenarios give it, on `listen`.
fn start(setup: &Setup, dir: &Path, kind: Kind, listen: SocketAddr) -> Result<Proxy> {
    let (text, file) = peers::config(
        kind,
        listen,
        setup.nodes,
        dir,
        false,
        peers::HEALTH_PRESET_SIMULATORS,
    )?
    .context("a proxy has a configuration")?;
    let path = dir.join(file);
    std::fs::write(&path, text)?;
    let command = peers::command(kind, setup.binaries, &path, dir)?;
    let mut process = Managed::spawn(
        &format!("{} (attack)", kind.name()),
        command,
        &dir.join(format!("{}.log", kind.name())),
    )?;
    process.wait_accepting(listen, Duration::from_secs(30))?;
    let started = Instant::now();
    loop {
        let outcome = crate::http::request(
            listen,
            "GET",
            &setup.keys.path(0),
            &[],
            b"",
            Duration::from_secs(2),
        );
        match outcome {
            Ok(r) if r.status == 200 => break,
            outcome if started.elapsed() > Duration::from_secs(20) => bail!(
                "{} does not serve a GET after 20 s ({outcome:?}); its log:\n{}",
                kind.name(),
                process.log_tail(30)
            ),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    println!(
        "{:<14} up on {listen} for the attack scenario (pid {})",
        kind.name(),
        process.pid()
    );
    Ok(Proxy {
        kind,
        process,
        listen,
    })
}

/// One proxy's two phases.
fn measure(
    setup: &Setup,
    proxy: &Proxy,
    round: usize,
    position: usize,
) -> Result<AttackMeasurement> {
    let mut innocent = LoadConfig::new(vec![proxy.listen], vec![setup.keys.clone()]);
    innocent.connections = setup.innocent_connections;
    innocent.verify = true;
    innocent.timeout_base = Duration::from_secs(10);
    innocent.duration = setup.calm;
    let calm = phase(proxy, &innocent, None)?;
    innocent.duration = setup.attacked;
    let config = setup
        .mix
        .config(proxy.listen, setup.attacked + Duration::from_secs(60))?;
    let (attacked, report) = {
        let mut report = None;
        let attacked = phase(proxy, &innocent, Some((&config, &mut report)))?;
        (attacked, report.context("the attack ran")??)
    };
    Ok(AttackMeasurement {
        kind: proxy.kind,
        round,
        position,
        calm,
        attacked,
        attack: report,
    })
}

/// One phase: the innocent load (and the attack beside it, if given), with the proxy
/// sampled throughout.
fn phase(
    proxy: &Proxy,
    innocent: &LoadConfig,
    attack: Option<(&AttackConfig, &mut Option<Result<AttackReport>>)>,
) -> Result<Phase> {
    let pids = proxy.process.tree();
    let port = proxy.listen.port();
    procs::reset_peak_rss(&pids);
    let load_average = procs::load_average();
    let before = CpuSnapshot::take(&pids);
    let started = Instant::now();
    let stop_attack = AtomicBool::new(false);
    let stop_sampler = AtomicBool::new(false);
    let (summary, samples, report) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut samples = Vec::new();
            while !stop_sampler.load(Relaxed) {
                samples.push(held_connections(&pids, port));
                std::thread::sleep(SAMPLE_EVERY);
            }
            samples.push(held_connections(&pids, port));
            samples
        });
        let attack_thread = attack.as_ref().map(|(config, _)| {
            let stop = &stop_attack;
            let config = *config;
            scope.spawn(move || attack::run(config, stop))
        });
        let summary = load::run(innocent, |_| {});
        // The last sample is taken while the attack still holds what it holds.
        stop_sampler.store(true, Relaxed);
        let samples = sampler.join().unwrap_or_default();
        stop_attack.store(true, Relaxed);
        let report = attack_thread.map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the attack thread panicked")))
        });
        (summary, samples, report)
    });
    let wall_s = started.elapsed().as_secs_f64();
    let proxy_cpu_s = CpuSnapshot::take(&pids).seconds_since(&before);
    let peak_rss_bytes = procs::peak_rss_bytes(&pids);
    if let (Some((_, out)), Some(report)) = (attack, report) {
        *out = Some(report);
    }
    Ok(Phase {
        innocent: summary.context("innocent load")?,
        proxy_cpu_s,
        peak_rss_bytes,
        held_peak: samples.iter().copied().max().unwrap_or(0),
        held_end: samples.last().copied().unwrap_or(0),
        wall_s,
        load_average,
    })
}

/// Client connections `pids` hold on local `port`: their sockets (from `/proc/PID/fd`)
/// whose `/proc/net/tcp{,6}` entry has that local port and is not a listener.
pub fn held_connections(pids: &[u32], port: u16) -> u64 {
    let mut inodes = HashSet::new();
    for pid in pids {
        let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(target) = std::fs::read_link(entry.path()) {
                if let Some(inode) = target
                    .to_str()
                    .and_then(|t| t.strip_prefix("socket:["))
                    .and_then(|t| t.strip_suffix(']'))
                    .and_then(|t| t.parse::<u64>().ok())
                {
                    inodes.insert(inode);
                }
            }
        }
    }
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|text| count_tcp_entries(&text, port, &inodes))
        .sum()
}

/// Entries of a `/proc/net/tcp` table with local `port`, a state other than LISTEN, and
/// an inode in `inodes`.
fn count_tcp_entries(text: &str, port: u16, inodes: &HashSet<u64>) -> u64 {
    let port_hex = format!(":{port:04X}");
    text.lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 9
                && fields[1].ends_with(&port_hex)
                && fields[3] != "0A"
                && fields[9].parse::<u64>().is_ok_and(|i| inodes.contains(&i))
        })
        .count() as u64
}

fn spread_of(
    ms: &[&AttackMeasurement],
    f: impl Fn(&AttackMeasurement) -> Option<f64>,
) -> Option<Spread> {
    Spread::of(&ms.iter().filter_map(|m| f(m)).collect::<Vec<f64>>())
}

fn ms_of(s: &Summary, q: f64) -> f64 {
    s.latency_us.quantile(q) as f64 / 1000.0
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// `N (min–max)` of counts.
fn counts(ms: &[&AttackMeasurement], f: impl Fn(&AttackMeasurement) -> Option<f64>) -> String {
    show(spread_of(ms, f), 0)
}

/// The page (`attack.md`) and its plot.
pub fn page(meta: &RunMeta, run: &AttackRun) -> (String, String) {
    let title = TITLE;
    let mut out = String::new();
    let mut meta = meta.clone();
    meta.duration_s = run.attacked_s;
    report::header(&mut out, &meta, title);
    let mix = run.mix.clone().unwrap_or_else(Mix::full);
    let _ = writeln!(
        out,
        "Each proxy runs on {PROXY_CORES} cores/threads with the configuration of the other \
         scenarios (`bench/peers/`), in front of the same three simulator nodes. Per round, \
         every proxy (order rotated) gets a **calm** phase of {:.0} s — innocent clients \
         alone: weir-load, {} keep-alive connections of {} KiB GETs from 127.0.0.1, every \
         body byte checked — and then an **attacked** phase of {:.0} s: the same innocent \
         load beside the attack, from {ATTACK_SOURCES} (`weir-attack`'s library):\n",
        run.calm_s,
        run.innocent_connections,
        run.object_bytes >> 10,
        run.attacked_s
    );
    let _ = writeln!(
        out,
        "- {} slowloris connections (a request-head byte every second, never finished);\n\
         - {} slow PUTs (head at once, then a body byte every second of 1 MiB declared);\n\
         - {} idle connections (never a byte);\n\
         - {} header-bomb thread(s): complete GETs with 1000 header fields, or with 15 KiB of \
         fields, in turn, each on a new connection;\n\
         - {} connection-flood thread(s): connect and close at once, {}.\n",
        mix.slowloris,
        mix.slow_bodies,
        mix.idle,
        mix.header_bombs,
        mix.flood,
        if mix.flood_rate == 0 {
            "as fast as possible".to_string()
        } else {
            format!("{} connections/s", mix.flood_rate)
        }
    );
    let of = |kind: Kind| -> Vec<&AttackMeasurement> {
        run.measurements.iter().filter(|m| m.kind == kind).collect()
    };

    let _ = writeln!(out, "## Innocent clients\n");
    let _ = writeln!(
        out,
        "| proxy | req/s calm | req/s attacked | attacked ÷ calm | p50 ms calm | p50 ms attacked | p99 ms calm | p99 ms attacked | errors calm | errors attacked |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for &kind in &run.kinds {
        let ms = of(kind);
        if ms.is_empty() {
            continue;
        }
        let mut calm_errors = ErrorCounts::default();
        let mut attacked_errors = ErrorCounts::default();
        for m in &ms {
            calm_errors.add(&m.calm.innocent.errors);
            attacked_errors.add(&m.attacked.innocent.errors);
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            kind.name(),
            show(spread_of(&ms, |m| Some(m.calm.innocent.req_per_s())), 0),
            show(spread_of(&ms, |m| Some(m.attacked.innocent.req_per_s())), 0),
            show(
                spread_of(&ms, |m| {
                    let calm = m.calm.innocent.req_per_s();
                    (calm > 0.0).then(|| m.attacked.innocent.req_per_s() / calm)
                }),
                2
            ),
            show(spread_of(&ms, |m| Some(ms_of(&m.calm.innocent, 0.5))), 2),
            show(
                spread_of(&ms, |m| Some(ms_of(&m.attacked.innocent, 0.5))),
                2
            ),
            show(spread_of(&ms, |m| Some(ms_of(&m.calm.innocent, 0.99))), 2),
            show(
                spread_of(&ms, |m| Some(ms_of(&m.attacked.innocent, 0.99))),
                2
            ),
            show_errors(&calm_errors),
            show_errors(&attacked_errors),
        );
    }
    let _ = writeln!(
        out,
        "\n\"attacked ÷ calm\" is taken round by round. Errors are summed over the rounds; \
         every innocent body byte was checked, so a wrong byte is an error (`mismatch`).\n"
    );

    let _ = writeln!(out, "## What the proxy held\n");
    let _ = writeln!(
        out,
        "| proxy | client connections held, peak (per core) | held at the end | peak RSS MiB calm | peak RSS MiB attacked (per core) | RSS added per held connection, KiB | CPU-s attacked | cores busy attacked | CPU-s calm |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    let cores = f64::from(PROXY_CORES);
    for &kind in &run.kinds {
        let ms = of(kind);
        if ms.is_empty() {
            continue;
        }
        let held = spread_of(&ms, |m| Some(m.attacked.held_peak as f64));
        let rss = spread_of(&ms, |m| Some(mib(m.attacked.peak_rss_bytes)));
        let _ = writeln!(
            out,
            "| {} | {} ({}) | {} | {} | {} ({}) | {} | {} | {} | {} |",
            kind.name(),
            show(held, 0),
            held.map_or("—".to_string(), |s| format!("{:.0}", s.median / cores)),
            counts(&ms, |m| Some(m.attacked.held_end as f64)),
            show(spread_of(&ms, |m| Some(mib(m.calm.peak_rss_bytes))), 1),
            show(rss, 1),
            rss.map_or("—".to_string(), |s| format!("{:.1}", s.median / cores)),
            show(
                spread_of(&ms, |m| {
                    let added = m.attacked.peak_rss_bytes as f64 - m.calm.peak_rss_bytes as f64;
                    (m.attacked.held_peak > 0).then(|| added / 1024.0 / m.attacked.held_peak as f64)
                }),
                1
            ),
            show(spread_of(&ms, |m| Some(m.attacked.proxy_cpu_s)), 2),
            show(
                spread_of(&ms, |m| Some(
                    m.attacked.proxy_cpu_s / m.attacked.wall_s.max(1e-9)
                )),
                2
            ),
            show(spread_of(&ms, |m| Some(m.calm.proxy_cpu_s)), 2),
        );
    }
    let _ = writeln!(
        out,
        "\n\"Held\" counts the proxy's own sockets on its listen port other than the \
         listener (its accepted client connections, in any TCP state), from `/proc/PID/fd` \
         and `/proc/net/tcp`, sampled every {} ms during the attacked phase; \"at the end\" \
         is the last sample, taken after the innocent load finished and before the attack \
         let go. The attack offered {} held connections (slowloris + slow bodies + idle), \
         plus the short-lived ones of the bombs and the flood. Per-core figures divide by \
         the {PROXY_CORES} cores each proxy runs on. \"RSS added per held connection\" is \
         (peak RSS attacked − peak RSS calm) ÷ peak held connections.\n",
        SAMPLE_EVERY.as_millis(),
        mix.slowloris + mix.slow_bodies + mix.idle
    );

    let _ = writeln!(out, "## What the proxy did with the attack\n");
    let _ = writeln!(
        out,
        "| proxy | attack | opened | closed by the proxy | closed after, s (median / max) | open at the end | first answers |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for &kind in &run.kinds {
        let ms = of(kind);
        let Some(last) = ms.last() else {
            continue;
        };
        for held in [Held::Slowloris, Held::SlowBody, Held::Idle] {
            if last.attack.held(held).is_none() {
                continue;
            }
            let get = |m: &AttackMeasurement| m.attack.held(held).cloned();
            let closed = spread_of(&ms, |m| get(m).and_then(|h| h.closed_after().map(|c| c.0)));
            let closed_max = spread_of(&ms, |m| get(m).and_then(|h| h.closed_after().map(|c| c.1)));
            let mut answers: BTreeMap<u16, u64> = BTreeMap::new();
            for m in &ms {
                if let Some(h) = get(m) {
                    for (s, n) in h.answers {
                        *answers.entry(s).or_insert(0) += n;
                    }
                }
            }
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} / {} | {} | {} |",
                kind.name(),
                held.name(),
                counts(&ms, |m| get(m)
                    .map(|h| (h.attempted - h.connect_failed) as f64)),
                counts(&ms, |m| get(m).map(|h| h.closed_by_server as f64)),
                closed.map_or("—".to_string(), |s| format!("{:.1}", s.median)),
                closed_max.map_or("—".to_string(), |s| format!("{:.1}", s.median)),
                counts(&ms, |m| get(m).map(|h| h.open_at_end as f64)),
                show_answers(&answers),
            );
        }
        if last.attack.bombs.is_some() {
            let mut answers: BTreeMap<u16, u64> = BTreeMap::new();
            let mut unanswered = 0;
            for m in &ms {
                if let Some(b) = &m.attack.bombs {
                    unanswered += b.unanswered;
                    for (s, n) in &b.answers {
                        *answers.entry(*s).or_insert(0) += n;
                    }
                }
            }
            let _ = writeln!(
                out,
                "| {} | header bombs | {} sent | — | answer p50 {} ms | — | {}{} |",
                kind.name(),
                counts(&ms, |m| m.attack.bombs.as_ref().map(|b| b.sent as f64)),
                show(
                    spread_of(&ms, |m| m
                        .attack
                        .bombs
                        .as_ref()
                        .filter(|b| b.answer_us.count() > 0)
                        .map(|b| b.answer_us.quantile(0.5) as f64 / 1000.0)),
                    1
                ),
                show_answers(&answers),
                if unanswered > 0 {
                    format!(", {unanswered} unanswered")
                } else {
                    String::new()
                }
            );
        }
        if last.attack.flood.is_some() {
            let _ =
                writeln!(
                out,
                "| {} | connection flood | {} connections/s | — | — | — | {} failed to connect |",
                kind.name(),
                show(
                    spread_of(&ms, |m| m
                        .attack
                        .flood
                        .as_ref()
                        .map(|f| f.connections as f64 / m.attack.elapsed.as_secs_f64().max(1e-9))),
                    0
                ),
                counts(&ms, |m| m.attack.flood.as_ref().map(|f| f.connect_failed as f64)),
            );
        }
    }
    let _ = writeln!(
        out,
        "\nCounts are medians over the rounds (min–max); \"first answers\" sums the status of \
         the first answer on each connection over the rounds (`0` = bytes that are not a \
         status line). A connection \"closed by the proxy\" saw EOF or an RST; the attack \
         never closes one itself before the phase ends.\n"
    );

    meta.notes.extend(run.notes.iter().cloned());
    let loads: Vec<f64> = run
        .measurements
        .iter()
        .flat_map(|m| [m.calm.load_average, m.attacked.load_average])
        .collect();
    report::footer_with_loads(&mut out, &meta, &loads);

    let series: Vec<Series> = run
        .kinds
        .iter()
        .map(|k| Series {
            name: k.name().to_string(),
            colour: k.colour().to_string(),
        })
        .collect();
    let values = |f: &dyn Fn(&AttackMeasurement) -> Option<f64>| -> Vec<Option<Spread>> {
        run.kinds.iter().map(|&k| spread_of(&of(k), f)).collect()
    };
    let plot = svg::render(
        title,
        &meta.plot_subtitle(),
        &[
            Panel::Bars(BarPanel {
                title: "Innocent clients' p99 latency (lower is better)".into(),
                y_label: "ms".into(),
                groups: vec!["calm".into(), "attacked".into()],
                series: series.clone(),
                values: vec![
                    values(&|m| Some(ms_of(&m.calm.innocent, 0.99))),
                    values(&|m| Some(ms_of(&m.attacked.innocent, 0.99))),
                ],
            }),
            Panel::Bars(BarPanel {
                title: "Client connections held by the proxy while attacked".into(),
                y_label: "connections".into(),
                groups: vec!["peak".into(), "at the end".into()],
                series,
                values: vec![
                    values(&|m| Some(m.attacked.held_peak as f64)),
                    values(&|m| Some(m.attacked.held_end as f64)),
                ],
            }),
        ],
    );
    (out, plot)
}

/// `200 × 12, 431 × 3`, or an em dash.
fn show_answers(answers: &BTreeMap<u16, u64>) -> String {
    if answers.is_empty() {
        return "—".to_string();
    }
    answers
        .iter()
        .map(|(s, n)| format!("{s} × {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hist::Histogram;
    use crate::hostile::attack::{FloodReport, HeldReport};

    fn summary(requests: u64, p99_us: u64) -> Summary {
        let mut latency = Histogram::new();
        for _ in 0..requests {
            latency.record(p99_us);
        }
        Summary {
            elapsed: Duration::from_secs(2),
            bytes: requests * 4096,
            requests,
            errors: ErrorCounts::default(),
            latency_us: latency,
            ttfb_us: Histogram::new(),
        }
    }

    fn phase(requests: u64, p99_us: u64, held: u64, rss: u64) -> Phase {
        Phase {
            innocent: summary(requests, p99_us),
            proxy_cpu_s: 1.0,
            peak_rss_bytes: rss,
            held_peak: held,
            held_end: held,
            wall_s: 2.0,
            load_average: 1.0,
        }
    }

    #[test]
    fn proc_net_tcp_entries_are_counted_by_port_state_and_inode() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:6978 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0 100 0 0 10 0\n\
   1: 0100007F:6978 0200007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 101 1 0 20 4 30 10 -1\n\
   2: 0100007F:6978 0300007F:D432 08 00000000:00000000 00:00000000 00000000     0        0 102 1 0 20 4 30 10 -1\n\
   3: 0100007F:6978 0300007F:D433 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0 20 4 30 10 -1\n\
   4: 0100007F:1F90 0300007F:D434 01 00000000:00000000 00:00000000 00000000     0        0 103 1 0 20 4 30 10 -1\n";
        let inodes: HashSet<u64> = [100, 101, 102, 103].into_iter().collect();
        // Port 0x6978 = 27000: the listener (0A) and a foreign inode (999) do not count.
        assert_eq!(count_tcp_entries(text, 27000, &inodes), 2);
        assert_eq!(count_tcp_entries(text, 8080, &inodes), 1);
    }

    #[test]
    fn held_connections_of_this_process_are_seen() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        // This process holds the listener (not counted), the accepted socket (counted)
        // and the client (its local port is another).
        assert_eq!(held_connections(&[std::process::id()], port), 1);
    }

    #[test]
    fn the_page_compares_calm_and_attacked() {
        let mut held = HeldReport {
            kind: Held::Slowloris,
            attempted: 10,
            connect_failed: 0,
            closed_by_server: 10,
            reset_by_server: 0,
            closed_after_s: vec![10.0; 10],
            open_at_end: 0,
            open_peak: 10,
            bytes_sent: 100,
            answers: BTreeMap::new(),
        };
        held.answers.insert(408, 10);
        let report = AttackReport {
            elapsed: Duration::from_secs(2),
            held: vec![held],
            bombs: None,
            flood: Some(FloodReport {
                connections: 1000,
                connect_failed: 0,
            }),
        };
        let m = |kind, calm_p99, attacked_p99, held| AttackMeasurement {
            kind,
            round: 0,
            position: 0,
            calm: phase(2000, calm_p99, 4, 10 << 20),
            attacked: phase(1000, attacked_p99, held, 30 << 20),
            attack: report.clone(),
        };
        let run = AttackRun {
            measurements: vec![
                m(Kind::Weir, 1000, 4000, 2000),
                m(Kind::Haproxy, 1000, 9000, 1000),
            ],
            kinds: vec![Kind::Weir, Kind::Haproxy],
            mix: Some(Mix::smoke()),
            calm_s: 2.0,
            attacked_s: 2.0,
            innocent_connections: 4,
            object_bytes: 4096,
            notes: vec![],
        };
        let (md, svg) = page(&RunMeta::default(), &run);
        assert!(
            md.contains("| weir | 1000 (1000–1000) | 500 (500–500) | 0.50 (0.50–0.50) |"),
            "{md}"
        );
        assert!(
            md.contains("| weir | 2000 (2000–2000) (1000) | 2000 (2000–2000) |"),
            "{md}"
        );
        // (30 - 10) MiB over 2000 connections: 10.2 KiB each.
        assert!(md.contains("| 10.2 (10.2–10.2) |"), "{md}");
        assert!(md.contains("| haproxy | slowloris | 10 (10–10) | 10 (10–10) | 10.0 / 10.0 | 0 (0–0) | 408 × 10 |"), "{md}");
        assert!(
            md.contains("| weir | connection flood | 500 (500–500) connections/s |"),
            "{md}"
        );
        assert!(svg.contains("p99 latency"));
    }
}
