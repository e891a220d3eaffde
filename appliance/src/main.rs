//! `weir`: the storage-edge appliance binary. `weir run --config FILE` starts one shard per
//! core; `weir check-config FILE` validates a config without starting anything.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod access_log;
mod admin;
mod buckets;
mod bus;
mod client_address;
mod flows;
mod health;
mod identity;
mod metric_table;
mod metrics;
mod post_form;
mod probe;
mod protect;
mod proxy;
mod rebalance;
mod reload;
mod settings;
mod shard;
mod signals;
mod signed_body;
mod stats;
mod worker;

use settings::Settings;
use weir_io::runtime::{self, Driver};
use weir_policy::config::KeyPath;

/// io_uring submission entries of each core's ring (the completion queue gets twice as
/// many): the operations one executor turn can queue before monoio must enter the kernel.
/// 4096 lets a core with a few thousand busy connections submit a turn's work in one
/// `io_uring_enter`, for about 384 KiB of ring memory per core.
const RING_ENTRIES: u32 = 4096;
/// Connections the kernel queues on each core's listening socket before that core accepts
/// them: 1024 absorbs a burst of connects (a training job's workers starting together)
/// while a core is busy; the kernel caps it at `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: i32 = 1024;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Command line.
#[derive(Parser)]
#[command(name = "weir", version, about = "weir: the S3 storage-edge appliance")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the appliance with the given config.
    Run {
        /// Path of the TOML config.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file and exit (status 0 when valid).
    CheckConfig {
        /// Path of the TOML config.
        file: PathBuf,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal: journald, files and collectors
        // get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(&config),
        Command::CheckConfig { file } => check(&file),
    };
    if let Err(e) = result {
        eprintln!("weir: {e:#}");
        std::process::exit(1);
    }
}

fn check(path: &std::path::Path) -> anyhow::Result<()> {
    let settings = Settings::load(path)?;
    println!(
        "{}: ok ({} pools, {} nodes, {} routes)",
        path.display(),
        settings.config.pools.len(),
        settings.nodes.iter().map(Vec::len).sum::<usize>(),
        settings.config.routes.len()
    );
    Ok(())
}

fn run(path: &std::path::Path) -> anyhow::Result<()> {
    weir_io::sys::ignore_sigpipe();
    match weir_io::sys::raise_nofile_limit() {
        Ok(n) => tracing::info!(open_files_max = n, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    signals::block();
    let settings = Arc::new(Settings::load(path)?);
    let driver = Driver::detect();
    let cores = settings.cores;
    tracing::info!(driver = driver.name(), cores, "starting weir");
    let registry = metrics::Registry::new(cores, driver.name());
    let (bus, inboxes) = bus::Bus::new(cores);
    let reloader = Arc::new(reload::Reloader::new(
        path.to_path_buf(),
        bus.clone(),
        registry.clone(),
        settings.clone(),
    ));
    let appliance = &settings.config.appliance;
    let plane = admin::Plane {
        registry: registry.clone(),
        bus: bus.clone(),
        reloader: reloader.clone(),
        driver,
        limits: appliance.control,
    };
    // Every address is bound before any thread starts serving one (see `admin::bind`).
    let at = KeyPath::root().key("appliance");
    let metrics_socket = match appliance.metrics {
        Some(addr) => Some(
            admin::bind(addr).map_err(|e| bind_error(&settings, &at.key("metrics"), addr, &e))?,
        ),
        None => None,
    };
    let admin_socket = match appliance.admin {
        Some(addr) => {
            Some(admin::bind(addr).map_err(|e| bind_error(&settings, &at.key("admin"), addr, &e))?)
        }
        None => None,
    };
    let per_core = bind_listeners(&settings)?;
    if let (Some(socket), Some(addr)) = (metrics_socket, appliance.metrics) {
        let role = admin::Role::Metrics {
            reload: appliance.admin.is_none(),
        };
        admin::serve(socket, role, plane.clone()).context("metrics listener thread")?;
        tracing::info!(%addr, "metrics listening");
    }
    if let (Some(socket), Some(addr)) = (admin_socket, appliance.admin) {
        let role = admin::Role::Admin {
            token: appliance.admin_token.clone(),
        };
        admin::serve(socket, role, plane).context("admin listener thread")?;
        tracing::info!(%addr, "admin listening");
    }
    let drain_registry = registry.clone();
    let drain_bus = bus.clone();
    let drain_reloader = reloader.clone();
    signals::spawn_waiter(
        move || {
            let (registry, bus) = (drain_registry.clone(), drain_bus.clone());
            let reloader = drain_reloader.clone();
            std::thread::spawn(move || drain(&reloader, &registry, &bus));
        },
        reload::spawn_hup_thread(reloader).context("reload thread")?,
    )
    .context("signal thread")?;
    let core_ids = core_affinity::get_core_ids().unwrap_or_default();
    // `appliance.access_log`; the WEIR_ACCESS_LOG environment variable overrides it
    // (one-off debugging without editing the appliance's config).
    let target = std::env::var("WEIR_ACCESS_LOG")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| appliance.access_log.clone());
    let from_env = std::env::var("WEIR_ACCESS_LOG").is_ok_and(|t| !t.is_empty());
    let access_log = match target {
        Some(target) => Some(
            access_log::AccessLog::start(&target, appliance.access_log_lines_max).map_err(|e| {
                let why = format!("cannot open {target}: {e}");
                if from_env {
                    anyhow::anyhow!("WEIR_ACCESS_LOG: {why}")
                } else {
                    settings.source.error(&at.key("access_log"), why)
                }
            })?,
        ),
        None => None,
    };
    let mut threads = Vec::with_capacity(cores);
    for ((id, listeners), inbox) in per_core.into_iter().enumerate().zip(inboxes) {
        let settings = settings.clone();
        let bus = bus.clone();
        let access_log = access_log.clone();
        let registry = registry.clone();
        let pin = (!core_ids.is_empty()).then(|| core_ids[id % core_ids.len()]);
        let handle = std::thread::Builder::new()
            .name(format!("weir-core-{id}"))
            .spawn(move || {
                if let Some(core) = pin {
                    core_affinity::set_for_current(core);
                }
                let result = runtime::block_on(driver, RING_ENTRIES, || {
                    worker::run(id, settings, listeners, registry, bus, inbox, access_log)
                });
                if let Err(e) = result {
                    tracing::error!(core = id, error = %e, "cannot start executor");
                    std::process::exit(1);
                }
            })
            .context("spawning core thread")?;
        threads.push(handle);
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// The stop sequence (docs/operations.md, "Stopping"), on a thread of its own: readiness
/// already fails; serve on for the grace, close the listeners, wait for the requests in
/// flight up to the drain timeout, exit 0. Both durations are the running epoch's, read
/// when each step starts, so a reload changes them.
fn drain(reloader: &reload::Reloader, registry: &metrics::Registry, bus: &bus::Bus) {
    let appliance = || current_settings(reloader).config.appliance.clone();
    let grace = appliance().drain_grace;
    tracing::info!(
        grace_secs = grace.as_secs_f64(),
        "stopping: /readyz fails; serving on for the grace before closing the listeners"
    );
    std::thread::sleep(grace);
    signals::DRAINING.store(true, std::sync::atomic::Ordering::Relaxed);
    let drain_timeout = appliance().drain_timeout;
    tracing::info!(
        drain_timeout_secs = drain_timeout.as_secs_f64(),
        "draining: no new connections; waiting for requests in flight"
    );
    // The deadline runs here while another thread tells the cores: a core too busy to
    // read its inbox must not keep the process from exiting. Each core closes its own
    // listeners: only the owner of a socket may close it.
    let start = std::time::Instant::now();
    let cores = bus.clone();
    std::thread::spawn(move || {
        for core in 0..cores.cores() {
            cores.send_waiting(core, bus::Msg::Drain);
        }
    });
    while registry.requests_in_flight() > 0 && start.elapsed() < drain_timeout {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let left = registry.requests_in_flight();
    if left > 0 {
        // The requests the timeout cuts get their access-log lines too (ended_by drain);
        // a core that does not answer within the wait is not waited for.
        let replies: Vec<_> = (0..bus.cores())
            .filter_map(|core| {
                let (tx, rx) = flume::bounded(1);
                bus.send(core, bus::Msg::DrainCut(tx)).then_some(rx)
            })
            .collect();
        let until = std::time::Instant::now() + std::time::Duration::from_millis(500);
        let logged: usize = replies
            .iter()
            .filter_map(|rx| rx.recv_deadline(until).ok())
            .sum();
        tracing::warn!(
            left,
            logged,
            "drain timeout: cutting the requests in flight"
        );
    }
    tracing::info!(left, "drained; exiting");
    // Let the access-log writer put down the last requests' lines.
    std::thread::sleep(std::time::Duration::from_millis(200));
    std::process::exit(0);
}

/// The running config; a reload in progress holds it for at most seconds, so wait.
fn current_settings(reloader: &reload::Reloader) -> Arc<Settings> {
    loop {
        if let Some((_, settings)) = reloader.current() {
            return settings;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Every core's listeners, bound before any core starts: plain-HTTP addresses, then
/// HTTPS ones (`[tls] listen`), each address a `SO_REUSEPORT` group of one socket per
/// core that no other process shares. A taken address fails the start, named at its key.
/// This is the one place listeners come from: a hand-over from a running weir would hand
/// its sockets in here instead of binding new ones.
fn bind_listeners(settings: &Settings) -> anyhow::Result<Vec<Vec<worker::Listener>>> {
    let cfg = &settings.config;
    let plain = cfg.appliance.listen.iter().enumerate().map(|(i, a)| {
        (
            *a,
            false,
            KeyPath::root().key("appliance").key("listen").index(i),
        )
    });
    let tls = cfg.tls.iter().flat_map(|t| {
        t.listen
            .iter()
            .enumerate()
            .map(|(i, a)| (*a, true, KeyPath::root().key("tls").key("listen").index(i)))
    });
    let mut per_core: Vec<Vec<worker::Listener>> =
        (0..settings.cores).map(|_| Vec::new()).collect();
    for (addr, tls, key) in plain.chain(tls) {
        let group = runtime::exclusive_listener_group(addr, settings.cores, LISTEN_BACKLOG)
            .map_err(|e| bind_error(settings, &key, addr, &e))?;
        for (core, socket) in per_core.iter_mut().zip(group) {
            core.push(worker::Listener { socket, tls });
        }
        tracing::info!(%addr, tls, "listening");
    }
    Ok(per_core)
}

/// A listener that could not be bound, at its key: `weir.toml:3: appliance.listen[0]:
/// 127.0.0.1:9000 is already in use …`.
fn bind_error(
    settings: &Settings,
    key: &KeyPath,
    addr: std::net::SocketAddr,
    e: &std::io::Error,
) -> anyhow::Error {
    let why = if e.to_string().contains(&addr.to_string()) {
        e.to_string()
    } else if e.kind() == std::io::ErrorKind::AddrInUse {
        format!("{addr} is already in use ({e})")
    } else {
        format!("cannot listen on {addr}: {e}")
    };
    settings.source.error(key, why)
}
