//! S3 error codes decide, end to end (docs/design.md, "Failure is a normal state", the S3
//! error code table): weir reads the `<Code>` of a node's small error answer and treats a
//! throttle code as backpressure on any status (the node stays up, weir counts a throttle
//! and tries another node), `InternalError` and codes of a node that is not ready as the
//! node's failure (another node serves; the failing node goes down), and relays the node's
//! own answer, byte for byte, when no other node does better.
//!
//! Storage: bench simulator nodes (`weir_bench`), one of which answers every request with
//! an injected S3 error (`Faults::error_*`). Clients never retry: what they get is weir's.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};
use weir_bench::{Faults, SimNode};
use weir_tests::data::Scratch;
use weir_tests::raw::{exchange, RawReply, ReadUntil};
use weir_tests::sim;
use weir_tests::transfer::synthetic_sha256;
use weir_tests::weir::{PoolConfig, Weir, WeirConfig};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

const OBJECTS: &str = "bench/code-:64KiB:8";
const SIZE: u64 = 64 * 1024;
/// Requests per scenario: with three nodes, the faulty one is picked many times.
const REQUESTS: usize = 24;
/// Failed requests in a row that take a node down.
const PASSIVE_FALL: u32 = 3;

/// weir over three simulator nodes. Probes are slow (every 30 s), so only requests move a
/// node's state while a scenario runs; retries are generous and the throttle backoff is
/// short, so every decision shows in the counts.
fn start(scratch: &Scratch) -> (Vec<SimNode>, Vec<SocketAddr>, Weir) {
    let nodes = sim::start(3, &[OBJECTS]);
    let addrs = sim::addrs(&nodes);
    let pool = sim::control_probe(PoolConfig::new("main", &addrs))
        .health("interval = \"30s\"")
        .health("timeout = \"1s\"")
        .health(&format!("passive_fall = {PASSIVE_FALL}"));
    let cfg = WeirConfig::new(&[])
        .upstream("attempts_max = 3")
        .upstream("retry_ratio = 1.0")
        .upstream("retry_floor_per_sec = 10000")
        .upstream("throttle_backoff_base = \"10ms\"")
        .upstream("throttle_backoff_max = \"200ms\"")
        .upstream("first_byte_timeout = \"5s\"")
        .upstream("io_timeout = \"2s\"")
        .pool(pool);
    let weir = Weir::start(&cfg, scratch.path());
    (nodes, addrs, weir)
}

fn inject(node: &SimNode, status: u16, code: &str) {
    node.set_faults(Faults {
        error_ratio: 1.0,
        error_status: status,
        error_code: code.to_string(),
        ..Faults::default()
    });
}

fn get(weir: &Weir, key: &str) -> RawReply {
    let request = format!(
        "GET /{key} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        weir.addr()
    );
    exchange(
        weir.addr(),
        &[request.as_bytes()],
        Duration::ZERO,
        Duration::from_secs(20),
        ReadUntil::Close,
    )
}

/// GETs every object in turn, `REQUESTS` times in all, and checks each body's SHA-256.
fn get_all_ok(weir: &Weir) {
    for i in 0..REQUESTS {
        let key = format!("bench/code-{}", i % 8);
        let reply = get(weir, &key);
        assert_eq!(
            reply.status(),
            Some(200),
            "GET {key}: {}\nweir log:\n{}",
            reply.head(),
            weir.log_tail()
        );
        let sha = hex::encode(Sha256::digest(reply.body()));
        assert_eq!(sha, synthetic_sha256(&key, SIZE), "GET {key}: body");
    }
}

fn count(weir: &Weir, name: &str) -> f64 {
    weir.metric_sum(name, |_| true)
}

/// A throttle code, on its usual status or another: backpressure. The client never sees
/// it, every throttle answer is counted as one, the node stays up.
fn throttle_is_backpressure(status: u16, code: &str) {
    let _serial = serial();
    let scratch = Scratch::new(&format!("s3codes-throttle-{status}-{code}"));
    let (nodes, addrs, weir) = start(&scratch);
    inject(&nodes[0], status, code);
    get_all_ok(&weir);
    let answered = nodes[0].stats().requests;
    let throttled = count(&weir, "weir_upstream_throttled_total");
    let retries = count(&weir, "weir_upstream_retries_total");
    println!(
        "S3CODES {status} {code}: node 0 answered {answered}, throttled {throttled}, retries {retries}"
    );
    assert!(answered > 0, "the throttling node was never picked");
    assert_eq!(throttled, answered as f64, "one throttle per {code} answer");
    assert_eq!(
        retries, answered as f64,
        "each throttled request went elsewhere"
    );
    assert_eq!(weir.node_state(addrs[0]).as_deref(), Some("up"));
    assert_eq!(
        nodes[1].stats().requests + nodes[2].stats().requests,
        REQUESTS as u64,
        "the other nodes served every request"
    );
}

#[test]
fn slowdown_503_is_backpressure() {
    throttle_is_backpressure(503, "SlowDown");
}

#[test]
fn slowdown_on_a_400_is_backpressure() {
    throttle_is_backpressure(400, "SlowDown");
}

#[test]
fn request_limit_exceeded_on_a_403_is_backpressure() {
    throttle_is_backpressure(403, "RequestLimitExceeded");
}

/// A failure code (or a 503 with a code that is not throttling): the node failed. The
/// request goes to another node, nothing is counted as throttling, and `passive_fall`
/// such answers in a row take the node down.
fn failure_code_is_the_nodes_failure(status: u16, code: &str) {
    let _serial = serial();
    let scratch = Scratch::new(&format!("s3codes-failure-{status}-{code}"));
    let (nodes, addrs, weir) = start(&scratch);
    inject(&nodes[0], status, code);
    get_all_ok(&weir);
    let answered = nodes[0].stats().requests;
    let throttled = count(&weir, "weir_upstream_throttled_total");
    let retries = count(&weir, "weir_upstream_retries_total");
    println!(
        "S3CODES {status} {code}: node 0 answered {answered}, throttled {throttled}, retries {retries}"
    );
    assert_eq!(throttled, 0.0, "{code} is not throttling");
    assert_eq!(
        retries, answered as f64,
        "each failed request went elsewhere"
    );
    assert_eq!(
        answered,
        u64::from(PASSIVE_FALL),
        "the node is down after {PASSIVE_FALL} failures and gets no more"
    );
    assert_eq!(weir.node_state(addrs[0]).as_deref(), Some("down"));
}

#[test]
fn internal_error_is_a_node_failure() {
    failure_code_is_the_nodes_failure(500, "InternalError");
}

#[test]
fn a_503_that_is_not_throttling_is_a_node_failure() {
    failure_code_is_the_nodes_failure(503, "XMinioServerNotInitialized");
}

/// Every node fails the request with `InternalError`: the client gets a node's own answer,
/// unchanged (the simulator's message and request id, not weir's), after `attempts_max`
/// attempts.
#[test]
fn the_nodes_own_failure_answer_is_relayed_when_every_node_fails() {
    let _serial = serial();
    let scratch = Scratch::new("s3codes-all-fail");
    let (nodes, _addrs, weir) = start(&scratch);
    for node in &nodes {
        inject(node, 500, "InternalError");
    }
    let reply = get(&weir, "bench/code-0");
    let text = reply.text();
    println!("S3CODES all fail: {}", reply.head().replace("\r\n", " | "));
    assert_eq!(reply.status(), Some(500), "{text}");
    let body = String::from_utf8_lossy(&reply.body()).into_owned();
    assert!(body.contains("<Code>InternalError</Code>"), "{body}");
    assert!(
        body.contains("injected fault") && body.contains("<RequestId>weir-sim</RequestId>"),
        "the node's own body: {body}"
    );
    let sent: u64 = nodes.iter().map(|n| n.stats().requests).sum();
    assert_eq!(sent, 3, "attempts_max attempts");
    assert_eq!(count(&weir, "weir_upstream_throttled_total"), 0.0);
}

/// A 4xx with a code outside the table is the request's answer: relayed as it came, not
/// retried, and not held against the node.
#[test]
fn a_client_error_code_is_relayed_and_not_retried() {
    let _serial = serial();
    let scratch = Scratch::new("s3codes-client-error");
    let (nodes, addrs, weir) = start(&scratch);
    for node in &nodes {
        inject(node, 403, "AccessDenied");
    }
    for i in 0..6 {
        let reply = get(&weir, &format!("bench/code-{i}"));
        assert_eq!(reply.status(), Some(403), "{}", reply.text());
        assert!(reply.text().contains("<Code>AccessDenied</Code>"));
        assert!(reply.text().contains("<RequestId>weir-sim</RequestId>"));
    }
    let sent: u64 = nodes.iter().map(|n| n.stats().requests).sum();
    assert_eq!(sent, 6, "one attempt per request");
    assert_eq!(count(&weir, "weir_upstream_retries_total"), 0.0);
    for addr in addrs {
        assert_eq!(weir.node_state(addr).as_deref(), Some("up"));
    }
}
