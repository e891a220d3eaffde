//! Stopping so that balancers see it (docs/operations.md, "Stopping"), end to end: on
//! SIGTERM `/readyz` fails first while the data port still serves new connections for
//! `appliance.drain_grace`; then the listeners close, the transfer in flight finishes byte
//! for byte, and weir exits 0. A second SIGTERM exits at once; `drain_timeout` is the
//! running epoch's (a reload changes it).
//!
//! Storage is the bench simulator (synthetic objects with known hashes), the clients curl
//! (rate-limited, so a transfer spans the stop) and plain sockets. One scenario at a time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use weir_bench::SimNode;
use weir_tests::data::{sha256_hex, Scratch};
use weir_tests::sim;
use weir_tests::transfer::{synthetic_sha256, wait_for, Transfer};
use weir_tests::weir::{http_request, PoolConfig, Weir, WeirConfig};

const MIB: u64 = 1 << 20;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// weir over simulator nodes with these `[appliance]` lines.
fn config(nodes: &[SocketAddr], appliance: &[&str]) -> WeirConfig {
    let mut cfg = WeirConfig::new(&[]).pool(sim::control_probe(
        PoolConfig::new("main", nodes).health("interval = \"300ms\""),
    ));
    for line in appliance {
        cfg = cfg.appliance(line);
    }
    cfg
}

/// A slow GET of `key` (a synthetic object) at `rate` bytes/s, once weir shows it moving.
fn slow_get(weir: &Weir, key: &str, rate: u64) -> Transfer {
    let big = Transfer::get(&format!("{}/{key}", weir.endpoint()), Some(rate));
    wait_for(
        "the GET to be under way",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || {
            weir.flows()
                .iter()
                .any(|f| f["bytes_down"].as_u64().unwrap_or(0) > MIB)
                .then_some(())
        },
    );
    big
}

/// GET `key` over a new connection: (status, body's sha256, length).
fn get_fresh(addr: SocketAddr, key: &str) -> Result<(u16, String, usize), String> {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        conn,
        "GET /{key} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut bytes = Vec::new();
    conn.read_to_end(&mut bytes)
        .map_err(|e| format!("read: {e}"))?;
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no head")?;
    let head = String::from_utf8_lossy(&bytes[..split]);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    let body = &bytes[split + 4..];
    Ok((status, sha256_hex(body), body.len()))
}

/// SIGTERM with a 3 s grace during a slow 64 MiB GET: `/readyz` says 503 at once while a
/// new connection is still served (right bytes); then connects are refused, the transfer
/// in flight finishes byte for byte, and weir exits 0.
#[test]
fn readiness_fails_first_new_connections_are_served_during_the_grace() {
    let _serial = serial();
    let scratch = Scratch::new("drain-grace");
    let nodes: Vec<SimNode> = sim::start(1, &["drain/big-:64MiB:1", "drain/small-:1MiB:1"]);
    let cfg = config(&sim::addrs(&nodes), &["drain_grace = \"3s\""]);
    let mut weir = Weir::start(&cfg, scratch.path());
    wait_for(
        "/readyz to say ready",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || (http_request(weir.metrics_addr(), "GET", "/readyz").ok()?.0 == 200).then_some(()),
    );
    let big = slow_get(&weir, "drain/big-0", 10_000_000);
    weir.signal(libc::SIGTERM);
    let (ready, _) = wait_for(
        "/readyz to fail",
        Duration::from_secs(2),
        Duration::from_millis(10),
        || {
            let (status, body) = http_request(weir.metrics_addr(), "GET", "/readyz").ok()?;
            (status == 503).then_some(body)
        },
    );
    assert_eq!(ready.trim(), "stopping");
    // Readiness already fails; the data port still takes and serves new connections.
    let served = get_fresh(weir.addr(), "drain/small-0");
    assert_eq!(
        served,
        Ok((200, synthetic_sha256("drain/small-0", MIB), MIB as usize)),
        "a new connection during the grace"
    );
    let (_, refused_after) = wait_for(
        "new connections to be refused",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            TcpStream::connect_timeout(&weir.addr(), Duration::from_millis(200))
                .is_err()
                .then_some(())
        },
    );
    assert!(
        weir.wait_exit(Duration::ZERO).is_none(),
        "weir exited with a transfer in flight"
    );
    let out = big.wait(Duration::from_secs(60));
    assert!(out.ok, "the transfer in flight: {out:?}");
    assert_eq!(
        (out.sha256, out.bytes),
        (synthetic_sha256("drain/big-0", 64 * MIB), 64 * MIB)
    );
    let status = weir
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("weir did not exit:\n{}", weir.log_tail()));
    assert_eq!(status.code(), Some(0), "log:\n{}", weir.log_tail());
    let log = weir.log_text();
    let (stopping, draining) = (log.find("stopping: /readyz fails"), log.find("draining:"));
    assert!(
        matches!((stopping, draining), (Some(s), Some(d)) if s < d),
        "the log says readiness failed before the listeners closed:\n{log}"
    );
    println!(
        "DRAIN grace 3s: readiness failed, a new connection was served, connects refused \
         {:.2}s after the first check",
        refused_after.as_secs_f64()
    );
}

/// A second SIGTERM during the grace exits at once (status 1), cutting the transfer.
#[test]
fn a_second_sigterm_exits_at_once() {
    let _serial = serial();
    let scratch = Scratch::new("drain-second");
    let nodes: Vec<SimNode> = sim::start(1, &["drain/big-:64MiB:1"]);
    let cfg = config(&sim::addrs(&nodes), &["drain_grace = \"60s\""]);
    let mut weir = Weir::start(&cfg, scratch.path());
    let big = slow_get(&weir, "drain/big-0", 4_000_000);
    weir.signal(libc::SIGTERM);
    wait_for(
        "/readyz to fail",
        Duration::from_secs(2),
        Duration::from_millis(10),
        || (http_request(weir.metrics_addr(), "GET", "/readyz").ok()?.0 == 503).then_some(()),
    );
    assert!(
        weir.wait_exit(Duration::from_millis(500)).is_none(),
        "one SIGTERM with a 60 s grace exited"
    );
    let second = Instant::now();
    weir.signal(libc::SIGTERM);
    let status = weir
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("a second SIGTERM did not exit:\n{}", weir.log_tail()));
    println!(
        "DRAIN second SIGTERM: exited ({status}) {:.3}s after it",
        second.elapsed().as_secs_f64()
    );
    assert_eq!(status.code(), Some(1), "log:\n{}", weir.log_tail());
    let out = big.wait(Duration::from_secs(30));
    assert!(!out.ok && out.bytes < 64 * MIB, "the cut transfer: {out:?}");
}

/// `drain_timeout` is read when the drain starts, from the running epoch: lowered by a
/// reload to 1 s, a drain with a slow 64 MiB GET in flight exits 0 after about a second
/// without waiting for it (before, the start-up value of 60 s held).
#[test]
fn a_reloaded_drain_timeout_is_the_one_a_drain_waits() {
    let _serial = serial();
    let scratch = Scratch::new("drain-timeout");
    let nodes: Vec<SimNode> = sim::start(1, &["drain/big-:64MiB:1"]);
    let base = ["drain_grace = \"0s\""];
    let mut weir = Weir::start(
        &config(&sim::addrs(&nodes), &[base[0], "drain_timeout = \"60s\""]),
        scratch.path(),
    );
    weir.write_config(&config(
        &sim::addrs(&nodes),
        &[base[0], "drain_timeout = \"1s\""],
    ));
    let (status, body) = weir.reload();
    assert_eq!(status, 200, "reload: {body}");
    assert!(body.contains("committed"), "reload: {body}");
    let big = slow_get(&weir, "drain/big-0", 2_000_000);
    weir.signal(libc::SIGTERM);
    let status = weir
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("the 1 s drain timeout did not hold:\n{}", weir.log_tail()));
    assert_eq!(status.code(), Some(0), "log:\n{}", weir.log_tail());
    let out = big.wait(Duration::from_secs(10));
    assert!(
        !out.ok && out.bytes < 64 * MIB,
        "the GET was cut by the drain timeout: {out:?}"
    );
}
