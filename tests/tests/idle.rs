//! The connection target: 10,000 concurrent idle client connections held by weir on 2 cores
//! with at most 64 KiB of user memory each, while weir keeps serving. Memory is weir's
//! resident set (VmRSS from /proc) before and with the connections open; every connection
//! is accepted (`weir_connections_active` counts them) and all of them close again.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use weir_tests::data::Scratch;
use weir_tests::sim;
use weir_tests::transfer::wait_for;
use weir_tests::weir::{Weir, WeirConfig};

const CONNECTIONS: usize = 10_000;
const KIB: u64 = 1024;

/// weir's resident memory, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * KIB)
}

/// Raises this process's open-file limit to its hard limit (weir, started from here,
/// inherits it; weir also raises its own).
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

/// One GET through weir on a fresh connection; the status code.
fn get_status(weir: &Weir, path: &str) -> u16 {
    let mut s = TcpStream::connect(weir.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        weir.addr()
    )
    .expect("send");
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn ten_thousand_idle_connections_fit_in_64_kib_each() {
    let limit = raise_nofile();
    assert!(
        limit as usize > CONNECTIONS + 1000,
        "open-file limit {limit} is too low for the test"
    );
    let scratch = Scratch::new("idle-10k");
    let nodes = sim::start(1, &["bench/small-:4KiB:1"]);
    let mut cfg = WeirConfig::new(&sim::addrs(&nodes)).extra("[limits]\nconnections_max = 12000\n");
    cfg.client_idle_timeout = Some("120s".into());
    // The connections stay fresh (no request sent): weir holds those for head_timeout.
    cfg.head_timeout = "120s".into();
    let weir = Weir::start(&cfg, scratch.path());
    assert_eq!(get_status(&weir, "/bench/small-0"), 200);
    let before = rss(weir.pid());

    let mut conns = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        match TcpStream::connect(weir.addr()) {
            Ok(c) => conns.push(c),
            Err(e) => panic!("connection {i}: {e}"),
        }
    }
    let active = |w: &Weir| w.metric_sum("weir_connections_active", |_| true) as usize;
    wait_for(
        "weir to hold every idle connection",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || (active(&weir) >= CONNECTIONS).then_some(()),
    );
    // Still serving while holding them.
    assert_eq!(get_status(&weir, "/bench/small-0"), 200);
    let with = rss(weir.pid());
    let per_conn = with.saturating_sub(before) / CONNECTIONS as u64;
    println!(
        "IDLE: {CONNECTIONS} idle connections held; weir RSS {} MiB → {} MiB: {:.1} KiB per connection (bound 64 KiB)",
        before / (KIB * KIB),
        with / (KIB * KIB),
        with.saturating_sub(before) as f64 / CONNECTIONS as f64 / KIB as f64
    );
    assert!(
        per_conn <= 64 * KIB,
        "{per_conn} bytes of weir memory per idle connection"
    );
    assert_eq!(
        weir.metric_sum("weir_connections_refused_total", |_| true),
        0.0,
        "no connection was refused"
    );

    drop(conns);
    wait_for(
        "weir to see every idle connection close",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || (active(&weir) == 0).then_some(()),
    );
}
