//! Regression tests for holes an attacker found around weir's strict codec: answers weir
//! gives itself, what it forwards of a client's head, body limits, and deadlines on every
//! body read and write (docs/operations.md, "Security model"). Each test drives the real
//! binary over raw TCP, against weir-sim nodes or small scripted nodes written here, and
//! asserts on exact bytes, statuses and counts.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_tests::data::Scratch;
use weir_tests::raw::{exchange, RawReply, ReadUntil};
use weir_tests::sim;
use weir_tests::tcp::{Canary, Relay};
use weir_tests::weir::{Weir, WeirConfig};

/// How long to wait for an answer weir gives at once.
const REPLY_WAIT: Duration = Duration::from_secs(5);

fn send(weir: &Weir, request: &[u8], until: ReadUntil) -> RawReply {
    exchange(weir.addr(), &[request], Duration::ZERO, REPLY_WAIT, until)
}

/// The bytes after the first head.
fn after_head(reply: &RawReply) -> &[u8] {
    let end = reply
        .bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(reply.bytes.len(), |p| p + 4);
    &reply.bytes[end..]
}

/// The S3 error code in an XML error body.
fn error_code(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let (_, rest) = text.split_once("<Code>")?;
    let (code, _) = rest.split_once("</Code>")?;
    Some(code.to_string())
}

/// Polls `cond` every 100 ms until it holds or `within` passes; true if it held.
fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An address where nothing listens (connects are refused).
fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

#[test]
fn weirs_own_answers_to_head_carry_no_body() {
    let scratch = Scratch::new("own-head");
    let weir = Weir::start(&WeirConfig::new(&[dead_addr()]), scratch.path());

    // Every node refuses connections: weir answers 503 itself.
    let head = send(
        &weir,
        b"HEAD /bench/obj-0 HTTP/1.1\r\nHost: s3.local\r\n\r\n",
        ReadUntil::Close,
    );
    assert_eq!(head.status(), Some(503), "{}", head.text());
    let length: usize = head
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .expect("a HEAD answer says how long the GET answer would be");
    assert!(length > 0);
    assert!(
        after_head(&head).is_empty(),
        "a HEAD answer with {} body byte(s) after the head:\n{}",
        after_head(&head).len(),
        head.text()
    );
    // The same request as GET gets the XML body the HEAD announced.
    let get = send(
        &weir,
        b"GET /bench/obj-0 HTTP/1.1\r\nHost: s3.local\r\n\r\n",
        ReadUntil::Close,
    );
    assert_eq!(get.status(), Some(503));
    assert_eq!(after_head(&get).len(), length, "{}", get.text());
    assert_eq!(
        error_code(&get.body()).as_deref(),
        Some("ServiceUnavailable")
    );

    // A HEAD refused before any node (its announced body, 6 TiB, is above the default
    // limit): no body either.
    let big = send(
        &weir,
        b"HEAD /bench/obj-0 HTTP/1.1\r\nHost: s3.local\r\nContent-Length: 6597069766656\r\n\r\n",
        ReadUntil::Close,
    );
    assert_eq!(big.status(), Some(400), "{}", big.text());
    assert!(after_head(&big).is_empty(), "{}", big.text());

    // A HEAD whose head is refused after its request line (too many fields, a broken
    // field): the answer is still a HEAD's, without a body.
    let fields: String = (0..200).map(|i| format!("x-f{i}: v\r\n")).collect();
    for request in [
        format!("HEAD /bench/obj-0 HTTP/1.1\r\nHost: s3.local\r\n{fields}\r\n"),
        "HEAD /bench/obj-0 HTTP/1.1\r\nHost: s3.local\r\nbad field\r\n\r\n".to_string(),
    ] {
        let refused = send(&weir, request.as_bytes(), ReadUntil::Close);
        assert!(
            matches!(refused.status(), Some(400 | 431)),
            "{}",
            refused.text()
        );
        assert!(after_head(&refused).is_empty(), "{}", refused.text());
    }
}

#[test]
fn expectations_other_than_100_continue_reach_the_node() {
    let scratch = Scratch::new("expect");
    let nodes = sim::start(1, &["bench/small-:4KiB:1"]);
    let weir = Weir::start(&WeirConfig::new(&sim::addrs(&nodes)), scratch.path());
    for (i, expect) in ["Expect: 200\r\n", "Expect:\r\n", "Expect: 200-ok\r\n"]
        .iter()
        .enumerate()
    {
        let body = format!("object number {i}");
        let put = format!(
            "PUT /bench/exp-{i} HTTP/1.1\r\nHost: s3.local\r\n{expect}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let reply = send(&weir, put.as_bytes(), ReadUntil::Response);
        assert_eq!(reply.status(), Some(200), "{expect:?}: {}", reply.text());
        let get = format!("GET /bench/exp-{i} HTTP/1.1\r\nHost: s3.local\r\n\r\n");
        let reply = send(&weir, get.as_bytes(), ReadUntil::Response);
        assert_eq!(reply.status(), Some(200), "{}", reply.text());
        assert_eq!(reply.body(), body.as_bytes(), "{expect:?}");
    }
}

#[test]
fn proxy_credentials_never_reach_a_node() {
    let scratch = Scratch::new("proxy-auth");
    let nodes = sim::start(1, &["bench/small-:4KiB:1"]);
    let relay = Relay::start(nodes[0].addr());
    let weir = Weir::start(&WeirConfig::new(&[relay.addr()]), scratch.path());
    let reply = send(
        &weir,
        b"GET /bench/small-0 HTTP/1.1\r\nHost: s3.local\r\nProxy-Authorization: Basic c2VjcmV0OnNlY3JldA==\r\nX-Kept: yes\r\n\r\n",
        ReadUntil::Response,
    );
    assert_eq!(reply.status(), Some(200), "{}", reply.text());
    assert_eq!(reply.body().len(), 4096);
    // The relay records what it forwarded just after forwarding it: wait for the record.
    let forwarded = || {
        let bytes: Vec<u8> = relay.counters().captured().concat();
        String::from_utf8_lossy(&bytes).to_ascii_lowercase()
    };
    eventually(Duration::from_secs(2), || {
        forwarded().contains("get /bench/small-0")
    });
    let text = forwarded();
    assert!(text.contains("get /bench/small-0"), "{text}");
    assert!(
        text.contains("x-kept: yes"),
        "end-to-end fields pass: {text}"
    );
    assert!(
        !text.contains("proxy-authorization") && !text.contains("c2vjcmv0"),
        "the proxy credentials reached the node: {text}"
    );
}

#[test]
fn an_http10_request_without_host_is_refused() {
    let scratch = Scratch::new("http10-host");
    let canary = Canary::start();
    let weir = Weir::start(&WeirConfig::new(&[canary.addr()]), scratch.path());
    let reply = send(
        &weir,
        b"GET /bench/small-0 HTTP/1.0\r\n\r\n",
        ReadUntil::Close,
    );
    assert_eq!(reply.status(), Some(400), "{}", reply.text());
    assert_eq!(error_code(&reply.body()).as_deref(), Some("InvalidRequest"));
    std::thread::sleep(Duration::from_millis(200));
    let forwarded = canary.counters().non_probe_request_lines();
    assert!(forwarded.is_empty(), "forwarded: {forwarded:?}");
}

#[test]
fn a_body_announced_above_the_limit_is_refused_from_its_head() {
    let scratch = Scratch::new("body-max-head");
    let nodes = sim::start(1, &["bench/small-:4KiB:1"]);
    // The default limit (5 TiB): no config needed to refuse a 6 TiB upload.
    let weir = Weir::start(&WeirConfig::new(&sim::addrs(&nodes)), scratch.path());
    let reply = send(
        &weir,
        b"PUT /bench/big-0 HTTP/1.1\r\nHost: s3.local\r\nContent-Length: 6597069766656\r\n\r\n",
        ReadUntil::Close,
    );
    assert_eq!(reply.status(), Some(400), "{}", reply.text());
    assert_eq!(error_code(&reply.body()).as_deref(), Some("EntityTooLarge"));
    std::thread::sleep(Duration::from_millis(200));
    // Health probes reach the node meanwhile: count only the refused request's target.
    let seen: Vec<String> = nodes[0]
        .seen()
        .into_iter()
        .map(|s| s.target)
        .filter(|t| t.contains("big-0"))
        .collect();
    assert!(seen.is_empty(), "the node saw the request: {seen:?}");
}

#[test]
fn a_chunked_body_growing_past_the_limit_is_cut() {
    let scratch = Scratch::new("body-max-chunked");
    let nodes = sim::start(1, &["bench/small-:4KiB:1"]);
    let cfg = WeirConfig::new(&sim::addrs(&nodes)).http("body_bytes_max = \"1MiB\"");
    let weir = Weir::start(&cfg, scratch.path());

    // A chunked body that grows past the limit: cut when it crosses it, nothing stored.
    let mut conn = TcpStream::connect(weir.addr()).expect("connect");
    conn.write_all(
        b"PUT /bench/big-1 HTTP/1.1\r\nHost: s3.local\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .expect("head");
    let chunk = vec![b'x'; 64 << 10];
    let mut refused = false;
    for _ in 0..32 {
        let mut piece = format!("{:x}\r\n", chunk.len()).into_bytes();
        piece.extend_from_slice(&chunk);
        piece.extend_from_slice(b"\r\n");
        if conn.write_all(&piece).is_err() {
            refused = true;
            break;
        }
    }
    let _ = conn.write_all(b"0\r\n\r\n");
    let reply = weir_tests::raw::read_reply(&mut conn, REPLY_WAIT, ReadUntil::Response);
    assert!(
        refused || reply.status() == Some(400),
        "a 2 MiB chunked body passed a 1 MiB limit: {}",
        reply.text()
    );
    if reply.status().is_some() {
        assert_eq!(error_code(&reply.body()).as_deref(), Some("EntityTooLarge"));
    }
    let get = send(
        &weir,
        b"GET /bench/big-1 HTTP/1.1\r\nHost: s3.local\r\n\r\n",
        ReadUntil::Response,
    );
    assert_eq!(get.status(), Some(404), "stored: {}", get.head());
}

/// A node that answers every request with a chunked body it never ends, 64 KiB a chunk,
/// for as long as its peer takes them; counts the bytes it got rid of.
fn endless_chunked_node(sent: Arc<AtomicU64>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let sent = sent.clone();
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                if head.starts_with(b"HEAD") || head.starts_with(b"GET /_") {
                    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                    return;
                }
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
                let mut chunk = b"10000\r\n".to_vec();
                chunk.extend_from_slice(&[b'c'; 0x10000]);
                chunk.extend_from_slice(b"\r\n");
                while conn.write_all(&chunk).is_ok() {
                    sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                }
            });
        }
    });
    addr
}

/// A node that reads a request head and then nothing more, holding the connection.
fn deaf_node() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                if buf.starts_with(b"HEAD") {
                    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                }
                std::thread::sleep(Duration::from_secs(120));
            });
        }
    });
    addr
}

#[test]
fn a_chunked_download_to_a_client_that_stops_reading_ends_at_the_io_timeout() {
    let scratch = Scratch::new("chunked-down-stall");
    let sent = Arc::new(AtomicU64::new(0));
    let node = endless_chunked_node(sent.clone());
    // The idle timeout (2 s) fires long before the default rate floor's first window
    // (10 s) ends, so it is what is tested.
    let cfg = WeirConfig::new(&[node]).upstream("io_timeout = \"2s\"");
    let weir = Weir::start(&cfg, scratch.path());
    let mut client = TcpStream::connect(weir.addr()).expect("connect");
    client
        .write_all(b"GET /bench/endless HTTP/1.1\r\nHost: s3.local\r\n\r\n")
        .expect("request");
    // The client reads nothing: buffers fill, weir's writes to it block.
    assert!(
        eventually(Duration::from_secs(5), || weir.flows().len() == 1),
        "the transfer never started: {:?}",
        weir.flows()
    );
    let started = Instant::now();
    let ended = eventually(Duration::from_secs(20), || weir.flows().is_empty());
    let took = started.elapsed();
    assert!(
        ended,
        "the relay outlived io_timeout (2s) by far: still {:?} after {took:?}",
        weir.flows()
    );
    // The client's connection was cut, not finished: reading now ends in an error or a
    // short read, never in the body's final chunk.
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut got = Vec::new();
    let _ = client.read_to_end(&mut got);
    assert!(
        !got.ends_with(b"0\r\n\r\n"),
        "a never-ending body ended cleanly"
    );
    drop(client);
}

#[test]
fn a_chunked_upload_to_a_node_that_stops_reading_ends_at_the_io_timeout() {
    let scratch = Scratch::new("chunked-up-stall");
    let node = deaf_node();
    let cfg = WeirConfig::new(&[node]).upstream("io_timeout = \"2s\"");
    let weir = Weir::start(&cfg, scratch.path());
    let mut client = TcpStream::connect(weir.addr()).expect("connect");
    client
        .set_write_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    client
        .write_all(
            b"PUT /bench/up HTTP/1.1\r\nHost: s3.local\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .expect("head");
    // Send small chunks until weir stops taking them (the node does not read): most of
    // the payload then reaches weir together with its chunk-size lines, in the read
    // buffer, and leaves from user space rather than by splice.
    let writer = std::thread::spawn(move || {
        let mut piece = b"1000\r\n".to_vec();
        piece.extend_from_slice(&[b'u'; 4096]);
        piece.extend_from_slice(b"\r\n");
        for _ in 0..65_536 {
            if client.write_all(&piece).is_err() {
                break;
            }
        }
        let _ = client.shutdown(Shutdown::Write);
        client
    });
    assert!(
        eventually(Duration::from_secs(5), || weir.flows().len() == 1),
        "the upload never started"
    );
    let started = Instant::now();
    let ended = eventually(Duration::from_secs(20), || weir.flows().is_empty());
    assert!(
        ended,
        "the upload relay outlived io_timeout (2s): still {:?} after {:?}",
        weir.flows(),
        started.elapsed()
    );
    // The client was answered or cut: its writes end.
    let client = writer.join().expect("writer");
    drop(client);
}

#[test]
fn a_trickling_download_is_cut_at_the_rate_floor() {
    let scratch = Scratch::new("rate-floor");
    let nodes = sim::start(1, &["bench/big-:64MiB:1"]);
    // A generous idle timeout: only the floor can cut a client that keeps reading a
    // little.
    let cfg = WeirConfig::new(&sim::addrs(&nodes))
        .upstream("io_timeout = \"60s\"")
        .http("body_rate_min = \"256KiB\"")
        .http("body_rate_window = \"2s\"");
    let weir = Weir::start(&cfg, scratch.path());
    let mut client = TcpStream::connect(weir.addr()).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    client
        .write_all(b"GET /bench/big-0 HTTP/1.1\r\nHost: s3.local\r\n\r\n")
        .expect("request");
    let started = Instant::now();
    let mut got = 0usize;
    let mut buf = [0u8; 1024];
    let cut = loop {
        if started.elapsed() > Duration::from_secs(30) {
            break false;
        }
        match client.read(&mut buf) {
            Ok(0) | Err(_) if got > 0 => break true,
            Ok(n) => got += n,
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(100)); // ~10 KiB/s
    };
    assert!(
        cut,
        "a client reading ~10 KiB/s held a 256 KiB/s floor for 30 s ({got} bytes)"
    );
    assert!(got < 64 << 20, "it got the whole object");
    assert!(
        eventually(Duration::from_secs(5), || weir.flows().is_empty()),
        "{:?}",
        weir.flows()
    );
}

#[test]
fn a_connection_that_never_sends_a_request_is_closed_at_the_head_timeout() {
    let scratch = Scratch::new("fresh-idle");
    let canary = Canary::start();
    // Keep-alive connections may idle for a minute between requests; a fresh one must
    // start its first request within head_timeout (2 s here).
    let mut cfg = WeirConfig::new(&[canary.addr()]);
    cfg.client_idle_timeout = Some("60s".into());
    let weir = Weir::start(&cfg, scratch.path());
    let started = Instant::now();
    let reply = exchange(
        weir.addr(),
        &[],
        Duration::ZERO,
        Duration::from_secs(20),
        ReadUntil::Close,
    );
    let took = started.elapsed();
    assert!(reply.closed, "a silent connection was held 20 s");
    assert!(reply.bytes.is_empty(), "{}", reply.text());
    assert!(
        took < Duration::from_secs(10),
        "closed after {took:?}, want about head_timeout (2 s), far below client_idle_timeout"
    );
}
