//! `weir`: the storage-edge appliance binary. `weir run --config FILE` starts one shard per
//! core; `weir check-config FILE` validates a config without starting anything.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod metrics;
mod proxy;
mod settings;
mod shard;

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
    let settings = Arc::new(Settings::load(path)?);
    let driver = Driver::detect();
    let cores = settings.cores;
    tracing::info!(driver = driver.name(), cores, "starting weir");
    let registry = metrics::Registry::new(cores, driver.name());
    if let Some(addr) = settings.config.appliance.metrics {
        metrics::serve(addr, registry.clone())
            .with_context(|| format!("metrics listener {addr}"))?;
        tracing::info!(%addr, "metrics listening");
    }
    // Bind every core's listeners up front so a taken port fails the start, not a shard.
    let mut per_core = Vec::with_capacity(cores);
    for _ in 0..cores {
        let mut ls = Vec::new();
        for addr in &settings.config.appliance.listen {
            ls.push(
                runtime::reuseport_listener(*addr, 1024)
                    .with_context(|| format!("listen {addr}"))?,
            );
        }
        per_core.push(ls);
    }
    for addr in &settings.config.appliance.listen {
        tracing::info!(%addr, "listening");
    }
    let core_ids = core_affinity::get_core_ids().unwrap_or_default();
    let mut threads = Vec::with_capacity(cores);
    for (id, listeners) in per_core.into_iter().enumerate() {
        let settings = settings.clone();
        let registry = registry.clone();
        let pin = (!core_ids.is_empty()).then(|| core_ids[id % core_ids.len()]);
        let handle = std::thread::Builder::new()
            .name(format!("weir-core-{id}"))
            .spawn(move || {
                if let Some(core) = pin {
                    core_affinity::set_for_current(core);
                }
                let result = runtime::block_on(driver, 4096, || {
                    shard::run(id, settings, listeners, registry)
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
