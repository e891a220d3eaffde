//! weir-demo: the README quick start. Starts 3 simulator nodes in-process, runs `weir`
//! in front of them, drives verifying load through it, takes one node down midway, and
//! prints where weir's status page is and, at the end, a summary of weir's counters.
//! `--direct` loads the nodes without weir.
//!
//! Exits 2 when any body byte mismatched (errors while a node is down are expected and
//! only reported).

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use weir_bench::load::{self, LoadConfig, Op};
use weir_bench::units::parse_duration;
use weir_bench::{http, spawn_nodes_at, Faults, SimNode, SimOptions, SimStats, Synthetic};

/// Simulator nodes behind weir.
const NODES: usize = 3;
/// How long weir gets to start accepting.
const WEIR_START_TIMEOUT: Duration = Duration::from_secs(15);

/// weir quick-start demo: 3 simulated S3 nodes, weir in front, verifying load, a node outage.
#[derive(Parser, Debug)]
#[command(name = "weir-demo", version)]
struct Cli {
    /// The weir binary (default: `weir` next to this executable).
    #[arg(long)]
    weir: Option<PathBuf>,
    /// Load duration.
    #[arg(long, default_value = "20s")]
    duration: String,
    /// Skip weir and load the nodes directly (round-robin), for comparison.
    #[arg(long)]
    direct: bool,
    /// weir listens on this port; nodes on the next three; metrics on this + 100.
    #[arg(long, default_value_t = 19000)]
    base_port: u16,
    /// Connections fetching 64 MiB objects.
    #[arg(long, default_value_t = 6)]
    large_connections: usize,
    /// Connections fetching 4 KiB objects.
    #[arg(long, default_value_t = 2)]
    small_connections: usize,
    /// Do not take a node down midway.
    #[arg(long)]
    no_outage: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let duration = parse_duration(&cli.duration)?;
    let port = |offset: u16| -> Result<u16> {
        cli.base_port
            .checked_add(offset)
            .context("--base-port too high")
    };
    let listen = SocketAddr::from(([127, 0, 0, 1], cli.base_port));
    let metrics = SocketAddr::from(([127, 0, 0, 1], port(100)?));
    let node_addrs = (1..=NODES as u16)
        .map(|i| Ok(SocketAddr::from(([127, 0, 0, 1], port(i)?))))
        .collect::<Result<Vec<_>>>()?;

    let large = Synthetic::parse("bench/obj-:64MiB:4")?;
    let small = Synthetic::parse("bench/small-:4KiB:64")?;
    println!("starting {NODES} simulator nodes with 4 x 64 MiB and 64 x 4 KiB synthetic objects");
    let nodes = spawn_nodes_at(
        &node_addrs,
        &[large.clone(), small.clone()],
        &SimOptions::default(),
    )?;
    for (i, node) in nodes.iter().enumerate() {
        println!("  node {} on {}", i + 1, node.addr());
    }

    let mut weir = None;
    let targets = if cli.direct {
        println!("--direct: loading the nodes without weir");
        node_addrs.clone()
    } else {
        let binary = match &cli.weir {
            Some(path) => path.clone(),
            None => std::env::current_exe()?.with_file_name("weir"),
        };
        weir = Some(start_weir(&binary, listen, metrics, &node_addrs)?);
        vec![listen]
    };

    let mut keys = vec![large; cli.large_connections];
    keys.extend(std::iter::repeat_n(small, cli.small_connections));
    let mut config = LoadConfig::new(targets, keys);
    config.connections = cli.large_connections + cli.small_connections;
    config.duration = duration;
    config.op = Op::Get;
    let outage_node = 1;
    let outage = (!cli.no_outage).then(|| (duration.mul_f64(0.4), duration.mul_f64(0.65)));
    let mut outage_state = 0; // 0 before, 1 during, 2 after
    let mut previous_stats: Vec<SimStats> = nodes.iter().map(SimNode::stats).collect();
    println!(
        "load: {} x 64 MiB + {} x 4 KiB GET connections for {:.0}s, every byte verified",
        cli.large_connections,
        cli.small_connections,
        duration.as_secs_f64()
    );
    let summary = load::run(&config, |tick| {
        let stats: Vec<SimStats> = nodes.iter().map(SimNode::stats).collect();
        let per_node: Vec<String> = stats
            .iter()
            .zip(&previous_stats)
            .zip(&nodes)
            .map(|((now, before), node)| {
                let down = if node.faults().down { "(down)" } else { "" };
                format!("{}{down}", now.requests - before.requests)
            })
            .collect();
        println!("{}  node req/s {}", tick.line(), per_node.join(" / "));
        previous_stats = stats;
        if let Some((down_at, up_at)) = outage {
            if outage_state == 0 && tick.elapsed >= down_at {
                nodes[outage_node].set_faults(Faults {
                    down: true,
                    ..Faults::default()
                });
                println!(
                    "*** node {} ({}) is DOWN: it resets every request and every body in flight",
                    outage_node + 1,
                    nodes[outage_node].addr()
                );
                outage_state = 1;
            } else if outage_state == 1 && tick.elapsed >= up_at {
                nodes[outage_node].set_faults(Faults::default());
                println!("*** node {} is back UP", outage_node + 1);
                outage_state = 2;
            }
        }
    })?;

    println!("\n== summary ==\n{}", summary.human());
    for (i, node) in nodes.iter().enumerate() {
        let s = node.stats();
        println!(
            "node {}: {} requests, {} bytes out, {} connections, {} refused while down, {} bodies cut",
            i + 1,
            s.requests,
            s.bytes_out,
            s.connections,
            s.refused,
            s.bodies_cut
        );
    }
    if summary.errors.total() > 0 {
        println!(
            "{} request(s) failed; while a node is down a GET in flight on it can fail until weir resumes bodies on another node",
            summary.errors.total()
        );
    }

    if let Some(mut weir) = weir {
        match weir.0.try_wait() {
            Ok(Some(status)) => println!("\nweir exited during the run ({status}); see its log"),
            _ => print_weir_summary(metrics),
        }
        drop(weir);
    }
    if summary.errors.mismatch > 0 {
        eprintln!("weir-demo: {} body mismatch(es)", summary.errors.mismatch);
        std::process::exit(2);
    }
    Ok(())
}

/// The running weir; dropping it stops weir, so an early error exit leaves no orphan.
struct Weir(Child);

impl Drop for Weir {
    fn drop(&mut self) {
        stop(&mut self.0);
    }
}

/// Writes the config, spawns `weir run --config FILE` and waits until it accepts.
fn start_weir(
    binary: &Path,
    listen: SocketAddr,
    metrics: SocketAddr,
    nodes: &[SocketAddr],
) -> Result<Weir> {
    if !binary.exists() {
        bail!(
            "weir binary {} not found (build it with `cargo build --release -p weir`, pass --weir PATH, or use --direct)",
            binary.display()
        );
    }
    let dir = std::env::temp_dir().join(format!("weir-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let config_path = dir.join("weir.toml");
    let node_list: Vec<String> = nodes.iter().map(|a| format!("\"{a}\"")).collect();
    let config = format!(
        "[appliance]\ncores = 0\nlisten = [\"{listen}\"]\nmetrics = \"{metrics}\"\n[[pool]]\nname = \"sim\"\nnodes = [{}]\n",
        node_list.join(", ")
    );
    std::fs::write(&config_path, &config)
        .with_context(|| format!("write {}", config_path.display()))?;
    let log_path = dir.join("weir.log");
    let log = std::fs::File::create(&log_path)?;
    println!(
        "starting {} run --config {} (log: {})",
        binary.display(),
        config_path.display(),
        log_path.display()
    );
    let mut command = Command::new(binary);
    command
        .arg("run")
        .arg("--config")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // If the demo dies without running its destructors (a panic aborts in release, e.g.
    // on a closed stdout), the kernel still stops weir: no orphan keeps the ports.
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .with_context(|| format!("spawn {}", binary.display()))?;
    let mut weir = Weir(child);
    let started = Instant::now();
    loop {
        if let Some(status) = weir.0.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("weir exited with {status} before accepting; its log:\n{log}");
        }
        if TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_ok() {
            println!(
                "weir accepts on {listen} after {:.2}s",
                started.elapsed().as_secs_f64()
            );
            println!(
                "status page: http://{metrics}/ (open it in a browser on this machine while the \
                 load runs; --duration 120s gives you time)"
            );
            return Ok(weir);
        }
        if started.elapsed() > WEIR_START_TIMEOUT {
            bail!("weir did not accept on {listen} within {WEIR_START_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A few lines from weir's `/metrics` instead of its two hundred: requests by status,
/// bytes, what weir did for the clients, and every node's state.
fn print_weir_summary(metrics: SocketAddr) {
    println!(
        "\n== weir (status page http://{metrics}/, every counter at http://{metrics}/metrics) =="
    );
    let text = match http::request(metrics, "GET", "/metrics", &[], b"", Duration::from_secs(5)) {
        Ok(response) if response.status == 200 => response.text(),
        Ok(response) => return println!("metrics answered {}", response.status),
        Err(err) => return println!("could not scrape metrics: {err:#}"),
    };
    // (name, labels, value) of every sample.
    let samples: Vec<(&str, &str, f64)> = text
        .lines()
        .filter(|l| l.starts_with("weir_"))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            Some((name, labels.trim_end_matches('}'), value.parse().ok()?))
        })
        .collect();
    let sum = |name: &str, label: &str| -> f64 {
        samples
            .iter()
            .filter(|(n, l, _)| *n == name && l.contains(label))
            .map(|(_, _, v)| v)
            .sum()
    };
    let classes: Vec<String> = ["2xx", "3xx", "4xx", "5xx"]
        .iter()
        .map(|c| {
            format!(
                "{c} {}",
                sum("weir_requests_total", &format!("status=\"{c}\""))
            )
        })
        .collect();
    println!("requests: {}", classes.join(", "));
    println!(
        "bytes: {:.2} GiB to clients, {:.2} GiB to nodes",
        sum("weir_body_bytes_total", "direction=\"download\"") / f64::from(1u32 << 30),
        sum("weir_body_bytes_total", "direction=\"upload\"") / f64::from(1u32 << 30),
    );
    println!(
        "for the clients: {} retries on another node, {} bodies resumed mid-way ({} failed), \
         {} throttle answers from nodes",
        sum("weir_upstream_retries_total", ""),
        sum("weir_resumes_total", "outcome=\"resumed\""),
        sum("weir_resumes_total", "outcome=\"failed\""),
        sum("weir_upstream_throttled_total", ""),
    );
    let nodes: Vec<String> = samples
        .iter()
        .filter(|(n, _, v)| *n == "weir_node_state" && *v == 1.0)
        .filter_map(|(_, labels, _)| {
            let label = |key: &str| {
                let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
                let end = labels[start..].find('"')? + start;
                Some(&labels[start..end])
            };
            Some(format!("{} {}", label("node")?, label("state")?))
        })
        .collect();
    println!("nodes now: {}", nodes.join(", "));
}

/// SIGTERM, then SIGKILL if weir has not exited within 3 s.
fn stop(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: signalling our own child by its pid; it has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
