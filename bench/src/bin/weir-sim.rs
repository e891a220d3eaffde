//! weir-sim: S3 storage-node simulator (one or several nodes in one process).
//!
//! Examples:
//!   weir-sim --listen 127.0.0.1:9001 --synthetic bench/obj-:64MiB:4
//!   weir-sim --nodes 3 --base-port 19001 --synthetic bench/obj-:64MiB:4 --synthetic bench/small-:4KiB:64
//! Faults at run time: `curl -XPOST 'http://127.0.0.1:9001/_sim/faults?down=1'`.

use std::net::{IpAddr, SocketAddr};

use anyhow::{bail, Context, Result};
use clap::Parser;
use weir_bench::units::parse_size_bytes;
use weir_bench::{spawn_nodes_at, BodyMode, Faults, SimOptions, Synthetic};

/// S3 storage-node simulator for benchmarking and testing weir.
#[derive(Parser, Debug)]
#[command(name = "weir-sim", version)]
struct Cli {
    /// Address of a single node (ignored when --nodes is given).
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Run this many nodes on consecutive ports from --base-port.
    #[arg(long)]
    nodes: Option<usize>,
    /// First port when running several nodes.
    #[arg(long, default_value_t = 9001)]
    base_port: u16,
    /// Address the nodes bind when running several.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Synthetic objects PREFIX:SIZE:COUNT, e.g. bench/obj-:64MiB:4 (repeatable).
    #[arg(long)]
    synthetic: Vec<String>,
    /// Send bodies with pread+write instead of sendfile (to measure the difference).
    #[arg(long)]
    copy: bool,
    /// Delay before every response head, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Stall GET bodies after this many bytes (e.g. 1MiB), keeping the socket open.
    #[arg(long)]
    stall_after_bytes: Option<String>,
    /// Reset (RST) GET bodies after this many bytes.
    #[arg(long)]
    reset_after_bytes: Option<String>,
    /// Fraction of requests answered with 503 SlowDown.
    #[arg(long, default_value_t = 0.0)]
    slowdown_ratio: f64,
    /// Start refusing (every request ends in an RST).
    #[arg(long)]
    down: bool,
    /// KEY=SECRET: check the SigV4 signatures (header and streaming chunks) of requests
    /// signed by KEY, answering 403 SignatureDoesNotMatch when they do not hold
    /// (repeatable; also at run time: POST /_sim/sigv4?access_key=KEY&secret=SECRET).
    #[arg(long)]
    check_sigv4: Vec<String>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let synthetic = cli
        .synthetic
        .iter()
        .map(|s| Synthetic::parse(s))
        .collect::<Result<Vec<_>>>()?;
    if !(0.0..=1.0).contains(&cli.slowdown_ratio) {
        bail!("--slowdown-ratio must be within 0..=1");
    }
    let faults = Faults {
        latency_ms: cli.latency_ms,
        stall_after_bytes: cli
            .stall_after_bytes
            .as_deref()
            .map(parse_size_bytes)
            .transpose()?,
        reset_after_bytes: cli
            .reset_after_bytes
            .as_deref()
            .map(parse_size_bytes)
            .transpose()?,
        slowdown_ratio: cli.slowdown_ratio,
        down: cli.down,
        ..Faults::default()
    };
    let options = SimOptions {
        body_mode: if cli.copy {
            BodyMode::Copy
        } else {
            BodyMode::Sendfile
        },
        faults,
        sigv4_secrets: cli
            .check_sigv4
            .iter()
            .map(|pair| {
                pair.split_once('=')
                    .filter(|(k, s)| !k.is_empty() && !s.is_empty())
                    .map(|(k, s)| (k.to_string(), s.to_string()))
                    .with_context(|| format!("--check-sigv4 {pair:?} is not KEY=SECRET"))
            })
            .collect::<Result<_>>()?,
    };
    let addrs: Vec<SocketAddr> = match cli.nodes {
        Some(0) => bail!("--nodes must be at least 1"),
        Some(n) => (0..n)
            .map(|i| {
                let port = u16::try_from(usize::from(cli.base_port) + i)
                    .context("--base-port + --nodes exceeds 65535")?;
                Ok(SocketAddr::new(cli.host, port))
            })
            .collect::<Result<_>>()?,
        None => vec![cli.listen],
    };
    let objects: u64 = synthetic.iter().map(|s| s.count).sum();
    let nodes = spawn_nodes_at(&addrs, &synthetic, &options)?;
    for (i, node) in nodes.iter().enumerate() {
        println!(
            "weir-sim node {i} listening on {} ({objects} synthetic objects)",
            node.addr()
        );
    }
    // The nodes run on their own threads until the process is killed.
    loop {
        std::thread::park();
    }
}
