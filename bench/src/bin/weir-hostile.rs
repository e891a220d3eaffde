//! weir-hostile: a storage node that misbehaves on request, for proving a proxy's
//! defences by hand or from another process (tests use `weir_bench::hostile` in-process).
//!
//! Examples:
//!   weir-hostile --listen 127.0.0.1:9001
//!   weir-hostile --nodes 3 --base-port 19001 --close-over-headers 64
//! Then, through the proxy in front of it:
//!   curl -v 'http://127.0.0.1:9000/hostile/interim/a?codes=103,102&size=1KiB'
//!   curl -v 'http://127.0.0.1:9000/hostile/close_delimited_reset/a?bytes=64KiB'
//!   curl 'http://127.0.0.1:9001/_hostile/received'      # what the node received

use std::net::{IpAddr, SocketAddr};

use anyhow::{bail, Context, Result};
use clap::Parser;
use weir_bench::hostile::{HostileNode, HostileOptions};

/// A scripted, misbehaving S3 storage node. Every request target picks its answer:
/// `/hostile/<mode>/<name>?param=…` a hostile one, anything else a well-behaved one
/// (GET/HEAD: the path's synthetic pattern of `size=` bytes, default 4 KiB; PUT stores).
///
/// Modes (parameters, defaults): ok (size); interim (codes=103,102 gap_ms=20 size);
/// interim_flood (every_ms=300 count=forever size); close_delimited_reset (bytes=64KiB);
/// chunked_reset (bytes=64KiB); length_reset (size=1MiB bytes=64KiB etag=0);
/// early_answer (after=1MiB close=rst|drain); oversized_head (head_bytes=64KiB size);
/// malformed_head (kind=bare_lf|bad_status|bad_version|obs_fold|cl_te|two_lengths|
/// bad_length|space_before_colon|nul|switching, size); wrong_length_short (size=64KiB
/// sent=size/2); wrong_length_long (size); idle_bytes (size delay_ms=200);
/// header_close (over=64 size).
///
/// Control: GET /_hostile/received, GET /_hostile/connections, POST /_hostile/clear.
#[derive(Parser, Debug)]
#[command(name = "weir-hostile", version, verbatim_doc_comment)]
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
    /// Close, without answering, every request with more header fields than this (what
    /// weir-sim does above 64), whatever its target.
    #[arg(long)]
    close_over_headers: Option<usize>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
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
    let options = HostileOptions {
        close_over_headers: cli.close_over_headers,
    };
    let nodes = addrs
        .iter()
        .map(|&addr| HostileNode::spawn(addr, options.clone()))
        .collect::<Result<Vec<_>>>()?;
    for (i, node) in nodes.iter().enumerate() {
        println!("weir-hostile node {i} listening on {}", node.addr());
    }
    // The nodes run on their own threads until the process is killed.
    loop {
        std::thread::park();
    }
}
