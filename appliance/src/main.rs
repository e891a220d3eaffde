//! `weir`: the storage-edge appliance binary. `weir run --config FILE` starts one shard per
//! core; `weir check-config FILE` validates a config without starting anything.

use std::path::PathBuf;
use std::sync::Arc;

use std::os::fd::AsRawFd;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod bus;
mod flows;
mod health;
mod identity;
mod metrics;
mod post_form;
mod probe;
mod protect;
mod proxy;
mod reload;
mod settings;
mod shard;
mod signals;
mod signed_body;
mod stats;

use settings::Settings;
use weir_io::runtime::{self, Driver};

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
    let admin = metrics::Admin {
        bus: bus.clone(),
        reloader: reloader.clone(),
    };
    let appliance = &settings.config.appliance;
    if let Some(addr) = appliance.metrics {
        let role = metrics::Role::Metrics {
            reload: appliance.admin.is_none(),
        };
        metrics::serve(addr, role, registry.clone(), admin.clone())
            .with_context(|| format!("metrics listener {addr}"))?;
        tracing::info!(%addr, "metrics listening");
    }
    if let Some(addr) = appliance.admin {
        let role = metrics::Role::Admin {
            token: appliance.admin_token.clone(),
        };
        metrics::serve(addr, role, registry.clone(), admin)
            .with_context(|| format!("admin listener {addr}"))?;
        tracing::info!(%addr, "admin listening");
    }
    // Bind every core's listeners up front so a taken port fails the start, not a shard.
    // Plain-HTTP addresses, then HTTPS ones (`[tls] listen`).
    let listen: Vec<(std::net::SocketAddr, bool)> = settings
        .config
        .appliance
        .listen
        .iter()
        .map(|a| (*a, false))
        .chain(
            settings
                .config
                .tls
                .iter()
                .flat_map(|t| t.listen.iter().map(|a| (*a, true))),
        )
        .collect();
    let mut per_core = Vec::with_capacity(cores);
    for _ in 0..cores {
        let mut ls = Vec::new();
        for (addr, tls) in &listen {
            ls.push(shard::Listener {
                socket: runtime::reuseport_listener(*addr, 1024)
                    .with_context(|| format!("listen {addr}"))?,
                tls: *tls,
            });
        }
        per_core.push(ls);
    }
    for (addr, tls) in &listen {
        tracing::info!(%addr, tls, "listening");
    }
    let listen_fds: Vec<i32> = per_core
        .iter()
        .flatten()
        .map(|l| l.socket.as_raw_fd())
        .collect();
    let drain_registry = registry.clone();
    let drain_timeout = settings.config.appliance.drain_timeout;
    signals::spawn_waiter(
        move || {
            tracing::info!("draining: no new connections; waiting for requests in flight");
            for fd in &listen_fds {
                // SAFETY: shutting down a listening socket we own wakes its blocked
                // accept with an error; the socket itself stays valid until exit.
                unsafe {
                    libc::shutdown(*fd, libc::SHUT_RDWR);
                }
            }
            let registry = drain_registry.clone();
            std::thread::spawn(move || {
                let drain_timeout = drain_timeout;
                let start = std::time::Instant::now();
                while registry.requests_in_flight() > 0 && start.elapsed() < drain_timeout {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                tracing::info!(left = registry.requests_in_flight(), "drained; exiting");
                // Let the access-log writer put down the last requests' lines.
                std::thread::sleep(std::time::Duration::from_millis(200));
                std::process::exit(0);
            });
        },
        move || {
            let _ = reloader.reload();
        },
    )
    .context("signal thread")?;
    let core_ids = core_affinity::get_core_ids().unwrap_or_default();
    // `appliance.access_log`; the WEIR_ACCESS_LOG environment variable overrides it
    // (one-off debugging without editing the appliance's config).
    let target = std::env::var("WEIR_ACCESS_LOG")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| appliance.access_log.clone());
    let access_log = match target {
        Some(target) => Some(
            flows::AccessLog::start(&target, appliance.access_log_lines_max)
                .with_context(|| format!("access log {target}"))?,
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
                let result = runtime::block_on(driver, 4096, || {
                    shard::run(id, settings, listeners, registry, bus, inbox, access_log)
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
