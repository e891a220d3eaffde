//! weir-attack: holds and hammers a proxy's client side — slowloris heads, slow bodies,
//! idle connections, header bombs, connection floods — from chosen source addresses,
//! and reports what the proxy did with each (closed after how long, answered what).
//!
//! Examples:
//!   weir-attack --target 127.0.0.1:9000 --slowloris 500 --duration 30s
//!   weir-attack --target 127.0.0.1:9000 --slow-bodies 64 --idle 5000 --sources 127.0.0.2-127.0.0.9
//!   weir-attack --target 127.0.0.1:9000 --header-bombs 2 --flood 1 --flood-rate 2000 --json

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;

use anyhow::Result;
use clap::Parser;
use weir_bench::hostile::attack::{self, AttackConfig};
use weir_bench::units::{parse_duration, parse_size_bytes};

/// Attack a proxy's client side and report what it did. Every count defaults to 0 (off).
#[derive(Parser, Debug)]
#[command(name = "weir-attack", version)]
struct Cli {
    /// The proxy (ip:port).
    #[arg(long)]
    target: SocketAddr,
    /// How long the attack lasts.
    #[arg(long, default_value = "10s")]
    duration: String,
    /// Source addresses for new connections, in turn: `127.0.0.2,127.0.0.3` or a range
    /// `127.0.0.2-127.0.0.9` (default: the kernel's choice).
    #[arg(long)]
    sources: Option<String>,
    /// Target of slowloris heads and header bombs.
    #[arg(long, default_value = "/bench/small-0")]
    path: String,
    /// Slow-body PUTs go to this prefix plus the connection's number.
    #[arg(long, default_value = "/bench/attack-slow-")]
    put_prefix: String,
    /// Connections that send a request head one byte at a time, never finishing it.
    #[arg(long, default_value_t = 0)]
    slowloris: usize,
    /// Interval between a slowloris connection's bytes.
    #[arg(long, default_value = "1s")]
    slowloris_every: String,
    /// PUTs whose head goes at once and whose body goes one byte at a time.
    #[arg(long, default_value_t = 0)]
    slow_bodies: usize,
    /// Interval between a slow body's bytes.
    #[arg(long, default_value = "1s")]
    slow_body_every: String,
    /// Declared Content-Length of the slow bodies (comma-separated: used in turn).
    #[arg(long, value_delimiter = ',', default_value = "1MiB")]
    slow_body_bytes: Vec<String>,
    /// Connections opened and never written to.
    #[arg(long, default_value_t = 0)]
    idle: usize,
    /// Threads sending complete GETs with many header fields, or huge ones, in turn.
    #[arg(long, default_value_t = 0)]
    header_bombs: usize,
    /// Header fields of a "many fields" bomb.
    #[arg(long, default_value_t = 1000)]
    bomb_fields: usize,
    /// Field bytes of a "huge fields" bomb.
    #[arg(long, default_value = "15KiB")]
    bomb_field_bytes: String,
    /// Threads that connect and close at once.
    #[arg(long, default_value_t = 0)]
    flood: usize,
    /// Flood connections per second over all flood threads (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    flood_rate: u64,
    /// Connect timeout.
    #[arg(long, default_value = "2s")]
    connect_timeout: String,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    json: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut config = AttackConfig::new(cli.target, parse_duration(&cli.duration)?);
    if let Some(sources) = &cli.sources {
        config.sources = attack::parse_sources(sources)?;
    }
    config.path = cli.path;
    config.put_prefix = cli.put_prefix;
    config.slowloris = cli.slowloris;
    config.slowloris_every = parse_duration(&cli.slowloris_every)?;
    config.slow_bodies = cli.slow_bodies;
    config.slow_body_every = parse_duration(&cli.slow_body_every)?;
    config.slow_body_bytes = cli
        .slow_body_bytes
        .iter()
        .map(|s| parse_size_bytes(s))
        .collect::<Result<_>>()?;
    config.idle = cli.idle;
    config.header_bombs = cli.header_bombs;
    config.bomb_fields = cli.bomb_fields;
    config.bomb_field_bytes = usize::try_from(parse_size_bytes(&cli.bomb_field_bytes)?)?;
    config.flood = cli.flood;
    config.flood_rate = cli.flood_rate;
    config.connect_timeout = parse_duration(&cli.connect_timeout)?;
    let report = attack::run(&config, &AtomicBool::new(false))?;
    if cli.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.human());
    }
    Ok(())
}
