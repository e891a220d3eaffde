//! weir-load: verifying S3 load generator (synthetic keys, every body byte checked).
//!
//! Example:
//!   weir-load --target 127.0.0.1:9001 --keys bench/obj-:64MiB:4 --connections 8 --duration 10s
//! Exits 2 when any body byte mismatched.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context, Result};
use clap::Parser;
use weir_bench::load::{self, LoadConfig, Op};
use weir_bench::units::{parse_duration, parse_size_bytes};
use weir_bench::Synthetic;

/// Verifying S3 load generator for weir and its simulator.
#[derive(Parser, Debug)]
#[command(name = "weir-load", version)]
struct Cli {
    /// host:port to load (repeatable or comma-separated; connections spread round-robin).
    #[arg(long, required = true, value_delimiter = ',')]
    target: Vec<String>,
    /// Concurrent keep-alive connections (one thread each).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Run length (e.g. 10s, 500ms, 2m).
    #[arg(long, default_value = "10s")]
    duration: String,
    /// Key family BUCKET/PREFIX:SIZE:COUNT, as the simulator's --synthetic (repeatable;
    /// connection i uses family i mod count).
    #[arg(long, required = true)]
    keys: Vec<String>,
    /// get, put, or mix:R with R the fraction of GETs (e.g. mix:0.9).
    #[arg(long, default_value = "get")]
    op: String,
    /// Ranged GETs of this size at random offsets (e.g. 1MiB) instead of whole objects.
    #[arg(long)]
    range: Option<String>,
    /// Do not check body bytes (bodies are discarded in the kernel with MSG_TRUNC).
    #[arg(long)]
    no_verify: bool,
    /// Send PUTs with Expect: 100-continue.
    #[arg(long)]
    expect_continue: bool,
    /// Host header to send (default: the target address).
    #[arg(long)]
    host: Option<String>,
    /// Send every request as SigV4-signed by this access key id (an Authorization header
    /// with a dummy signature and a fixed date: enough for weir to pick the key's tenant;
    /// nothing is signed, so only a target that does not verify signatures accepts it),
    /// or, with --secret-key, signed for real.
    #[arg(long)]
    access_key: Option<String>,
    /// With --access-key: sign every request for real with this secret (SigV4 header
    /// signing, UNSIGNED-PAYLOAD, the current time and the Host header as sent), for a
    /// target that verifies signatures (SeaweedFS, MinIO, AWS).
    #[arg(long, requires = "access_key")]
    secret_key: Option<String>,
    /// Region of the signature's credential scope (with --secret-key).
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// With --secret-key: upload PUT bodies streaming-signed (Content-Encoding:
    /// aws-chunked, x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD), every
    /// chunk signed, as the AWS SDKs' chunked uploads.
    #[arg(long, requires = "secret_key")]
    streaming_signed: bool,
    /// Data bytes per chunk of a streaming-signed upload (the last chunk may be shorter).
    #[arg(long, default_value = "64KiB", requires = "streaming_signed")]
    chunk_size: String,
    /// Fixed part of the per-request timeout; a further size / 20 MB/s is added.
    #[arg(long, default_value = "10s")]
    timeout: String,
    /// Receive buffer per connection (e.g. 256KiB).
    #[arg(long, default_value = "256KiB")]
    buf: String,
    /// Print the summary as JSON on stdout (live lines go to stderr either way).
    #[arg(long)]
    json: bool,
}

fn resolve(target: &str) -> Result<SocketAddr> {
    target
        .to_socket_addrs()
        .with_context(|| format!("resolve {target:?}"))?
        .next()
        .with_context(|| format!("{target:?} resolves to nothing"))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let targets = cli
        .target
        .iter()
        .map(|t| resolve(t))
        .collect::<Result<Vec<_>>>()?;
    let keys = cli
        .keys
        .iter()
        .map(|k| Synthetic::parse(k))
        .collect::<Result<Vec<_>>>()?;
    if cli.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let mut config = LoadConfig::new(targets, keys);
    config.connections = cli.connections;
    config.duration = parse_duration(&cli.duration)?;
    config.op = Op::parse(&cli.op)?;
    config.range_bytes = cli.range.as_deref().map(parse_size_bytes).transpose()?;
    config.verify = !cli.no_verify;
    config.expect_continue = cli.expect_continue;
    config.host = cli.host.clone();
    if let Some(key) = &cli.access_key {
        if key.is_empty()
            || key
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "/,=:".contains(c))
        {
            bail!("--access-key {key:?}: an access key id has no spaces, / , = or :");
        }
    }
    config.access_key = cli.access_key.clone();
    if let (Some(access_key), Some(secret_key)) = (&cli.access_key, &cli.secret_key) {
        config.credentials = Some(weir_bench::sigv4::Credentials {
            access_key: access_key.clone(),
            secret_key: secret_key.clone(),
            region: cli.region.clone(),
        });
    }
    if cli.streaming_signed {
        let chunk_bytes = parse_size_bytes(&cli.chunk_size)?;
        if chunk_bytes == 0 {
            bail!("--chunk-size must be at least 1 byte");
        }
        config.streaming_chunk_bytes = Some(chunk_bytes);
    }
    config.timeout_base = parse_duration(&cli.timeout)?;
    config.io_buf_bytes = usize::try_from(parse_size_bytes(&cli.buf)?).context("--buf")?;

    eprintln!(
        "weir-load: {} connection(s) to {} for {:.1}s, op {}, verify {}{}",
        config.connections,
        cli.target.join(","),
        config.duration.as_secs_f64(),
        cli.op,
        config.verify,
        config
            .access_key
            .as_deref()
            .map(|k| format!(
                ", access key {k}{}",
                match (&config.credentials, config.streaming_chunk_bytes) {
                    (Some(_), Some(chunk)) => format!(
                        " (SigV4-signed; PUTs streaming-signed in {} chunks)",
                        weir_bench::units::format_bytes(chunk)
                    ),
                    (Some(_), None) => " (SigV4-signed)".to_string(),
                    (None, _) => " (dummy signature)".to_string(),
                }
            ))
            .unwrap_or_default()
    );
    let summary = load::run(&config, |tick| eprintln!("{}", tick.line()))?;
    if cli.json {
        println!("{}", summary.to_json());
    } else {
        println!("{}", summary.human());
    }
    if summary.errors.mismatch > 0 {
        eprintln!(
            "weir-load: {} response(s) did not match the pattern",
            summary.errors.mismatch
        );
        std::process::exit(2);
    }
    Ok(())
}
