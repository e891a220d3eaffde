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
mod dns;
mod flows;
mod health;
mod identity;
mod metric_table;
mod metrics;
mod post_form;
mod probe;
mod process;
mod protect;
mod proxy;
mod rebalance;
mod reload;
mod settings;
mod shard;
mod signals;
mod signed_body;
mod stats;
mod upgrade;
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
#[command(
    name = "weir",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("WEIR_GIT_COMMIT"), ")"),
    about = "weir: the S3 storage-edge appliance"
)]
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
        /// Take the listening sockets of the running weir whose `appliance.upgrade_socket`
        /// is this path, then tell it to drain (docs/operations.md, "Upgrade without
        /// downtime").
        #[arg(long, value_name = "SOCKET")]
        upgrade_from: Option<PathBuf>,
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
        Command::Run {
            config,
            upgrade_from,
        } => run(&config, upgrade_from.as_deref()),
        Command::CheckConfig { file } => check(&file),
    };
    if let Err(e) = result {
        eprintln!("weir: {e:#}");
        std::process::exit(1);
    }
}

/// Validates the file; a node name that does not resolve (no DNS here, or not yet) is a
/// warning naming its key, not an error: `run` starts with it and adds its nodes once it
/// resolves.
fn check(path: &std::path::Path) -> anyhow::Result<()> {
    let dns = dns::Dns::new(Default::default())?;
    let settings = Settings::load(path, &dns)?;
    let book = |host: &str| dns.addresses(host);
    for (key, node) in Settings::unresolved(&settings.config, &book) {
        let why = dns.error(&node.host).unwrap_or_else(|| "no answer".into());
        eprintln!(
            "{}",
            settings.source.error(
                &key,
                format!(
                    "warning: {node} does not resolve ({why}); weir starts without its nodes and adds them once it resolves"
                )
            )
        );
    }
    println!(
        "{}: ok ({} pools, {} nodes, {} routes)",
        path.display(),
        settings.config.pools.len(),
        settings.nodes.iter().map(Vec::len).sum::<usize>(),
        settings.config.routes.len()
    );
    Ok(())
}

fn run(path: &std::path::Path, upgrade_from: Option<&std::path::Path>) -> anyhow::Result<()> {
    weir_io::sys::ignore_sigpipe();
    match weir_io::sys::raise_nofile_limit() {
        Ok(n) => tracing::info!(open_files_max = n, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    signals::block();
    let dns_counters = Arc::new(dns::Counters::default());
    let dns = dns::Dns::new(dns_counters.clone()).context("DNS resolver runtime")?;
    let settings = Arc::new(Settings::load(path, &dns)?);
    let book = |host: &str| dns.addresses(host);
    for (key, node) in Settings::unresolved(&settings.config, &book) {
        let why = dns.error(&node.host).unwrap_or_else(|| "no answer".into());
        tracing::warn!(key = %key, node = %node, error = %why, "dns: node name does not resolve yet; its nodes stay out until it does");
    }
    // A bad config fails above, before the running weir is touched.
    let mut taken = take_listeners(upgrade_from)?;
    let driver = Driver::detect();
    let cores = settings.cores;
    tracing::info!(driver = driver.name(), cores, "starting weir");
    let registry = metrics::Registry::new(cores, driver.name()).with_dns(dns_counters);
    let (bus, inboxes) = bus::Bus::new(cores);
    let reloader = Arc::new(reload::Reloader::new(
        path.to_path_buf(),
        bus.clone(),
        registry.clone(),
        dns.clone(),
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
    let mut offered = Vec::new();
    let metrics_socket = match appliance.metrics {
        Some(addr) => Some(
            control_listener(addr, taken.as_mut(), upgrade::Kind::Metrics, &mut offered)
                .map_err(|e| bind_error(&settings, &at.key("metrics"), addr, &e))?,
        ),
        None => None,
    };
    let admin_socket = match appliance.admin {
        Some(addr) => Some(
            control_listener(addr, taken.as_mut(), upgrade::Kind::Admin, &mut offered)
                .map_err(|e| bind_error(&settings, &at.key("admin"), addr, &e))?,
        ),
        None => None,
    };
    let per_core = bind_listeners(&settings, taken.as_mut(), &mut offered)?;
    let upgrade_socket = prepare_upgrade_socket(&settings, taken.is_some())?;
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
    let (running, follower) = (reloader.clone(), reloader.clone());
    dns.spawn(
        move || {
            let (_, s) = running.current()?;
            Some((s.config.dns.clone(), settings::names(&s.config)))
        },
        move |dns| follower.follow_addresses(dns).map(|_| ()),
    )
    .context("DNS resolver thread")?;
    let drain_registry = registry.clone();
    let drain_bus = bus.clone();
    let drain_reloader = reloader.clone();
    signals::spawn_waiter(
        move || {
            let (registry, bus) = (drain_registry.clone(), drain_bus.clone());
            let reloader = drain_reloader.clone();
            std::thread::spawn(move || drain(&reloader, &registry, &bus));
        },
        reload::spawn_hup_thread(reloader.clone()).context("reload thread")?,
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
    let (started_tx, started) = std::sync::mpsc::channel::<()>();
    for ((id, listeners), inbox) in per_core.into_iter().enumerate().zip(inboxes) {
        let started_tx = started_tx.clone();
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
                    let _ = started_tx.send(());
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
    drop(started_tx);
    upgrade_handshake(
        &settings,
        &started,
        (taken, upgrade_socket),
        offered,
        (&registry, &bus, &reloader),
    )?;
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
    // No new process may take the listeners of a process that stops, and the copies kept
    // to offer them must not hold them open once the cores close theirs.
    upgrade::withdraw();
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
    finish_drain(registry, bus, drain_timeout, false);
}

/// The end of a stop or of a hand-over: the cores stop accepting, the requests in flight
/// (and, with `connections`, the client connections still open) get up to
/// `drain_timeout`, then the process exits 0.
fn finish_drain(
    registry: &metrics::Registry,
    bus: &bus::Bus,
    drain_timeout: std::time::Duration,
    connections: bool,
) {
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
    let busy =
        || registry.requests_in_flight() > 0 || (connections && registry.connections_active() > 0);
    while busy() && start.elapsed() < drain_timeout {
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
    tracing::info!(
        left,
        connections = registry.connections_active(),
        "drained; exiting"
    );
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
/// This is the one place data listeners come from: an upgrade (`taken`) adopts the
/// running weir's sockets here instead of binding new ones; a copy of each goes to
/// `offered`, for the next upgrade.
fn bind_listeners(
    settings: &Settings,
    mut taken: Option<&mut upgrade::Taken>,
    offered: &mut Vec<(upgrade::Kind, std::os::fd::OwnedFd)>,
) -> anyhow::Result<Vec<Vec<worker::Listener>>> {
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
        let group = match taken.as_deref_mut() {
            Some(taken) => adopted_group(taken, addr, settings.cores),
            None => runtime::exclusive_listener_group(addr, settings.cores, LISTEN_BACKLOG),
        }
        .map_err(|e| bind_error(settings, &key, addr, &e))?;
        let kind = if tls {
            upgrade::Kind::Https
        } else {
            upgrade::Kind::Http
        };
        // More sockets than cores (the old process ran more): the extra ones are served
        // too, round robin over the cores, since closing one would drop its queue.
        for (i, socket) in group.into_iter().enumerate() {
            offered.push((
                kind,
                offer_copy(&socket).map_err(|e| bind_error(settings, &key, addr, &e))?,
            ));
            per_core[i % settings.cores.max(1)].push(worker::Listener { socket, tls });
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

/// The listeners of the running weir at `upgrade_from`, if this start upgrades one
/// (docs/operations.md, "Upgrade without downtime").
fn take_listeners(
    upgrade_from: Option<&std::path::Path>,
) -> anyhow::Result<Option<upgrade::Taken>> {
    let Some(path) = upgrade_from else {
        return Ok(None);
    };
    upgrade::take(path).map(Some).with_context(|| {
        format!(
            "--upgrade-from {}: cannot take the running weir's listeners",
            path.display()
        )
    })
}

/// A metrics or admin listener: the old process's socket on `addr` when this start
/// upgrades one, else a new one; a copy of it goes to `offered`.
fn control_listener(
    addr: std::net::SocketAddr,
    taken: Option<&mut upgrade::Taken>,
    kind: upgrade::Kind,
    offered: &mut Vec<(upgrade::Kind, std::os::fd::OwnedFd)>,
) -> std::io::Result<std::net::TcpListener> {
    let mut adopted = taken.map(|t| t.claim(addr)).unwrap_or_default();
    let socket = match adopted.pop() {
        Some(socket) => socket,
        None => admin::bind(addr)?,
    };
    offered.push((kind, offer_copy(&socket)?));
    Ok(socket)
}

/// The old process's group on `addr`, completed to `cores` sockets with new ones that
/// join it (`SO_REUSEPORT`, same user); a group of our own when the old process had no
/// listener there.
fn adopted_group(
    taken: &mut upgrade::Taken,
    addr: std::net::SocketAddr,
    cores: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut group = taken.claim(addr);
    if group.is_empty() {
        return runtime::exclusive_listener_group(addr, cores, LISTEN_BACKLOG);
    }
    let adopted = group.len();
    while group.len() < cores {
        group.push(runtime::reuseport_listener(addr, LISTEN_BACKLOG)?);
    }
    tracing::info!(%addr, adopted, created = group.len() - adopted, "upgrade: listener group taken over");
    Ok(group)
}

/// A descriptor of `socket` kept to offer it to the next upgrade.
fn offer_copy(socket: &std::net::TcpListener) -> std::io::Result<std::os::fd::OwnedFd> {
    Ok(socket.try_clone()?.into())
}

/// `appliance.upgrade_socket`, bound but not yet in place (see [`upgrade_handshake`]);
/// what keeps it from being created fails the start, named at the key.
fn prepare_upgrade_socket(
    settings: &Settings,
    upgrading: bool,
) -> anyhow::Result<Option<upgrade::Prepared>> {
    let Some(path) = &settings.config.appliance.upgrade_socket else {
        return Ok(None);
    };
    let key = KeyPath::root().key("appliance").key("upgrade_socket");
    upgrade::prepare(std::path::Path::new(path), upgrading)
        .map(Some)
        .map_err(|e| {
            settings
                .source
                .error(&key, format!("cannot create {path}: {e}"))
        })
}

/// Once every core runs: offer our listeners on `appliance.upgrade_socket`, and when
/// this start took them from a running weir, tell it to drain. A core that does not
/// start fails the start before the old process is told anything, so it serves on.
/// From here on nothing fails the process: it serves.
fn upgrade_handshake(
    settings: &Settings,
    started: &std::sync::mpsc::Receiver<()>,
    (taken, upgrade_socket): (Option<upgrade::Taken>, Option<upgrade::Prepared>),
    offered: Vec<(upgrade::Kind, std::os::fd::OwnedFd)>,
    (registry, bus, reloader): (&metrics::Registry, &bus::Bus, &Arc<reload::Reloader>),
) -> anyhow::Result<()> {
    for _ in 0..settings.cores {
        started
            .recv_timeout(std::time::Duration::from_secs(30))
            .context("a core did not start")?;
    }
    let path = settings.config.appliance.upgrade_socket.as_deref();
    if let (Some(prepared), Some(path)) = (upgrade_socket, path) {
        let (registry, bus, reloader) = (registry.clone(), bus.clone(), reloader.clone());
        let on_handover = move |new_pid: u32| {
            std::thread::spawn(move || handed_over(new_pid, &reloader, &registry, &bus));
        };
        match prepared.publish(offered, on_handover) {
            Ok(()) => tracing::info!(socket = %path, "upgrade socket ready"),
            Err(e) => tracing::error!(
                socket = %path,
                error = %e,
                "cannot put the upgrade socket in place: no upgrade without downtime for this process"
            ),
        }
    }
    if let Some(taken) = taken {
        // We serve: failing now would cut what we accepted. An old process that did not
        // hear us (it gave up waiting) serves on beside us on the same sockets, which
        // loses nothing; the operator stops it.
        let old_pid = taken.old_pid();
        if let Err(e) = taken.serving() {
            tracing::warn!(
                old_pid,
                error = %e,
                "upgrade: the old process did not confirm that it drains; it serves on beside us: stop it with SIGTERM"
            );
        }
    }
    Ok(())
}

/// A new process serves on our listeners (docs/operations.md, "Upgrade without
/// downtime"): stop accepting (the sockets stay open in the new process, which takes
/// every connection from now on), let the requests in flight and the open client
/// connections finish within the drain timeout, exit 0. Readiness is not failed: the
/// ports are ready, served by the new process.
fn handed_over(
    new_pid: u32,
    reloader: &reload::Reloader,
    registry: &metrics::Registry,
    bus: &bus::Bus,
) {
    signals::DRAINING.store(true, std::sync::atomic::Ordering::Relaxed);
    let drain_timeout = current_settings(reloader).config.appliance.drain_timeout;
    tracing::info!(
        new_pid,
        drain_timeout_secs = drain_timeout.as_secs_f64(),
        "upgrade: the new process serves; draining: no new connections, waiting for requests in flight"
    );
    finish_drain(registry, bus, drain_timeout, true);
}
