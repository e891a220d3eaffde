//! The simulator over raw TCP: statuses, headers and every byte of GET, HEAD, ranges,
//! If-Match, PUT (plain, chunked, 100-continue), DELETE, faults, and a short verifying
//! load run against it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use md5::{Digest, Md5};
use weir_bench::http::{read_response, request, Response};
use weir_bench::load::{self, LoadConfig, Op};
use weir_bench::pattern::{fill, key_seed};
use weir_bench::{spawn_nodes, Faults, SimNode, Synthetic};

const TIMEOUT: Duration = Duration::from_secs(10);
const OBJ_BYTES: u64 = 1 << 20;

fn nodes() -> Vec<SimNode> {
    let specs = [
        Synthetic::parse("t/obj-:1MiB:2").unwrap(),
        Synthetic::parse("t/small-:4KiB:1").unwrap(),
    ];
    spawn_nodes(2, &specs).unwrap()
}

fn pattern_bytes(key: &str, offset: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    fill(key_seed(key), offset, &mut out);
    out
}

fn quoted_md5(bytes: &[u8]) -> String {
    format!("\"{}\"", hex::encode(Md5::digest(bytes)))
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// Sends raw request bytes on `stream` and reads one response.
fn exchange(stream: &mut TcpStream, raw: &[u8], head_only: bool) -> Response {
    stream.write_all(raw).unwrap();
    read_response(stream, head_only).unwrap()
}

#[test]
fn get_head_and_ranges_serve_the_pattern_with_real_etags() {
    let nodes = nodes();
    let addr = nodes[0].addr();
    let full = pattern_bytes("t/obj-0", 0, OBJ_BYTES as usize);
    let etag = quoted_md5(&full);
    let mut conn = connect(addr);

    let r = exchange(
        &mut conn,
        b"GET /t/obj-0 HTTP/1.1\r\nHost: x\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIA/x\r\n\r\n",
        false,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1048576"));
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert!(r.body == full, "GET body differs from the pattern");

    // Same keep-alive connection: HEAD has the headers and no body.
    let r = exchange(
        &mut conn,
        b"HEAD /t/obj-0 HTTP/1.1\r\nHost: x\r\n\r\n",
        true,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1048576"));
    assert_eq!(r.header("etag"), Some(etag.as_str()));

    // Every node serves the same bytes under the same ETag.
    let other = request(nodes[1].addr(), "HEAD", "/t/obj-0", &[], b"", TIMEOUT).unwrap();
    assert_eq!(other.header("etag"), Some(etag.as_str()));

    let ranges: [(&str, u64, u64); 4] = [
        ("bytes=100-199", 100, 199),
        ("bytes=-10", OBJ_BYTES - 10, OBJ_BYTES - 1),
        ("bytes=1048570-", OBJ_BYTES - 6, OBJ_BYTES - 1),
        ("bytes=5-99999999", 5, OBJ_BYTES - 1),
    ];
    for (range, first, last) in ranges {
        let raw = format!("GET /t/obj-0 HTTP/1.1\r\nHost: x\r\nRange: {range}\r\n\r\n");
        let r = exchange(&mut conn, raw.as_bytes(), false);
        assert_eq!(r.status, 206, "{range}");
        let expected_range = format!("bytes {first}-{last}/{OBJ_BYTES}");
        assert_eq!(r.header("content-range"), Some(expected_range.as_str()));
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        assert!(r.body == full[first as usize..=last as usize], "{range}");
    }
    let r = exchange(
        &mut conn,
        b"GET /t/obj-0 HTTP/1.1\r\nHost: x\r\nRange: bytes=1048576-\r\n\r\n",
        false,
    );
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */1048576"));
    assert!(r.text().contains("<Code>InvalidRange</Code>"));

    let r = exchange(&mut conn, b"GET /t/nope HTTP/1.1\r\nHost: x\r\n\r\n", false);
    assert_eq!(r.status, 404);
    assert!(r.text().contains("<Code>NoSuchKey</Code>"));
}

#[test]
fn if_match_guards_reads_and_writes() {
    let nodes = nodes();
    let addr = nodes[0].addr();
    let etag = quoted_md5(&pattern_bytes("t/small-0", 0, 4096));
    let r = request(
        addr,
        "GET",
        "/t/small-0",
        &[("If-Match", &etag)],
        b"",
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 4096);
    let r = request(
        addr,
        "GET",
        "/t/small-0",
        &[("If-Match", "\"0123\"")],
        b"",
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(r.status, 412);
    assert!(r.text().contains("PreconditionFailed"));
    // A ranged resume with the right ETag (what weir sends to another node).
    let r = request(
        nodes[1].addr(),
        "GET",
        "/t/small-0",
        &[("If-Match", &etag), ("Range", "bytes=4000-")],
        b"",
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(r.status, 206);
    assert!(r.body == pattern_bytes("t/small-0", 4000, 96));
    // Conditional PUT against a stale ETag.
    let r = request(
        addr,
        "PUT",
        "/t/small-0",
        &[("If-Match", "\"0123\"")],
        b"x",
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(r.status, 412);
}

#[test]
fn puts_plain_chunked_and_100_continue_round_trip() {
    let nodes = nodes();
    let addr = nodes[0].addr();
    let body: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let etag = quoted_md5(&body);

    // Plain Content-Length PUT.
    let r = request(addr, "PUT", "/b/plain", &[], &body, TIMEOUT).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = request(addr, "GET", "/b/plain", &[], b"", TIMEOUT).unwrap();
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert!(r.body == body);
    // Objects are per node.
    let r = request(nodes[1].addr(), "GET", "/b/plain", &[], b"", TIMEOUT).unwrap();
    assert_eq!(r.status, 404);

    // Chunked PUT (chunk extensions and a trailer included), then a GET on the same
    // connection proves the framing was consumed exactly.
    let mut conn = connect(addr);
    let mut raw =
        b"PUT /b/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for (i, piece) in body.chunks(70_001).enumerate() {
        raw.extend_from_slice(format!("{:x};n={i}\r\n", piece.len()).as_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\nx-amz-checksum-crc32: AAAAAA==\r\n\r\n");
    let r = exchange(&mut conn, &raw, false);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = exchange(
        &mut conn,
        b"GET /b/chunked HTTP/1.1\r\nHost: x\r\n\r\n",
        false,
    );
    assert!(r.body == body);

    // Expect: 100-continue — nothing of the body is sent before the 100.
    let head = format!(
        "PUT /b/continued HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    let r = exchange(&mut conn, head.as_bytes(), false);
    assert_eq!(r.status, 100);
    let r = exchange(&mut conn, &body, false);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some(etag.as_str()));

    // A PUT of a key's own pattern gets the pattern's ETag (shared synthetic object).
    let same = pattern_bytes("t/obj-1", 0, OBJ_BYTES as usize);
    let r = request(addr, "PUT", "/t/obj-1", &[], &same, TIMEOUT).unwrap();
    assert_eq!(r.header("etag"), Some(quoted_md5(&same).as_str()));

    // DELETE, then the key is gone.
    let r = exchange(
        &mut conn,
        b"DELETE /b/chunked HTTP/1.1\r\nHost: x\r\n\r\n",
        false,
    );
    assert_eq!(r.status, 204);
    let r = exchange(
        &mut conn,
        b"GET /b/chunked HTTP/1.1\r\nHost: x\r\n\r\n",
        false,
    );
    assert_eq!(r.status, 404);

    // aws-chunked (SigV4 streaming) inside a Content-Length body is decoded.
    let mut aws = Vec::new();
    for piece in body.chunks(65536) {
        aws.extend_from_slice(
            format!("{:x};chunk-signature={}\r\n", piece.len(), "0".repeat(64)).as_bytes(),
        );
        aws.extend_from_slice(piece);
        aws.extend_from_slice(b"\r\n");
    }
    aws.extend_from_slice(format!("0;chunk-signature={}\r\n\r\n", "0".repeat(64)).as_bytes());
    let decoded_len = body.len().to_string();
    let r = request(
        addr,
        "PUT",
        "/b/aws",
        &[
            ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
            ("Content-Encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", &decoded_len),
        ],
        &aws,
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("etag"), Some(etag.as_str()));

    // The bucket lists what was stored.
    let r = request(addr, "GET", "/b?list-type=2&prefix=p", &[], b"", TIMEOUT).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().contains("<Key>plain</Key>"), "{}", r.text());
    assert!(!r.text().contains("<Key>aws</Key>"), "{}", r.text());

    // Sloppy chunk framing is refused.
    let mut conn = connect(addr);
    let r = exchange(
        &mut conn,
        b"PUT /b/bad HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        false,
    );
    assert_ne!(r.status, 200);
}

#[test]
fn faults_slowdown_down_stall_and_reset() {
    let nodes = nodes();
    let addr = nodes[0].addr();

    nodes[0].set_faults(Faults {
        slowdown_ratio: 1.0,
        ..Faults::default()
    });
    let r = request(addr, "GET", "/t/small-0", &[], b"", TIMEOUT).unwrap();
    assert_eq!(r.status, 503);
    assert!(r.text().contains("<Code>SlowDown</Code>"));

    // Flip faults over HTTP, as an out-of-process test would.
    let r = request(addr, "POST", "/_sim/faults?clear&down=1", &[], b"", TIMEOUT).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(nodes[0].faults().down);
    assert!(request(addr, "GET", "/t/small-0", &[], b"", TIMEOUT).is_err());
    let r = request(addr, "POST", "/_sim/faults?down=0", &[], b"", TIMEOUT).unwrap();
    assert_eq!(r.status, 200);
    let r = request(addr, "GET", "/t/small-0", &[], b"", TIMEOUT).unwrap();
    assert_eq!(r.status, 200);

    // Stall: exactly N body bytes arrive, then nothing, and the socket stays open.
    nodes[0].set_faults(Faults {
        stall_after_bytes: Some(1000),
        ..Faults::default()
    });
    let mut conn = connect(addr);
    conn.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    conn.write_all(b"GET /t/obj-0 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    let timed_out = loop {
        match conn.read(&mut buf) {
            Ok(0) => break false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => break true,
        }
    };
    assert!(timed_out, "a stalled body must keep the socket open");
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(got.len() - head_end, 1000);
    drop(conn);

    // Reset: the body ends early with an error or EOF, never completes.
    nodes[0].set_faults(Faults {
        reset_after_bytes: Some(4096),
        ..Faults::default()
    });
    let r = request(addr, "GET", "/t/obj-0", &[], b"", TIMEOUT);
    assert!(r.is_err(), "a reset body must not complete");

    nodes[0].set_faults(Faults::default());
    let stats = request(addr, "GET", "/_sim/stats", &[], b"", TIMEOUT).unwrap();
    let json = stats.text();
    assert!(json.contains("\"requests\":"), "{json}");
    let s = nodes[0].stats();
    assert!(
        s.refused >= 1 && s.bodies_cut >= 2 && s.responses_5xx >= 1,
        "{s:?}"
    );
}

#[test]
fn load_generator_verifies_gets_and_puts() {
    let nodes = nodes();
    let mut config = LoadConfig::new(
        vec![nodes[0].addr(), nodes[1].addr()],
        vec![
            Synthetic::parse("t/obj-:1MiB:2").unwrap(),
            Synthetic::parse("t/small-:4KiB:1").unwrap(),
        ],
    );
    config.connections = 4;
    config.duration = Duration::from_millis(1500);
    config.op = Op::Mix { get_ratio: 0.7 };
    config.expect_continue = true;
    let summary = load::run(&config, |_| {}).unwrap();
    assert_eq!(summary.errors.total(), 0, "{}", summary.human());
    assert!(summary.requests > 10 && summary.bytes > 0);

    config.op = Op::Get;
    config.range_bytes = Some(1000);
    config.expect_continue = false;
    let summary = load::run(&config, |_| {}).unwrap();
    assert_eq!(summary.errors.total(), 0, "{}", summary.human());

    // A node serving different bytes under a synthetic key is caught.
    let wrong = vec![0u8; 4096];
    let r = request(nodes[0].addr(), "PUT", "/t/small-0", &[], &wrong, TIMEOUT).unwrap();
    assert_eq!(r.status, 200);
    let mut config = LoadConfig::new(
        vec![nodes[0].addr()],
        vec![Synthetic::parse("t/small-:4KiB:1").unwrap()],
    );
    config.connections = 1;
    config.duration = Duration::from_millis(300);
    let summary = load::run(&config, |_| {}).unwrap();
    assert!(summary.errors.mismatch > 0, "{}", summary.human());
}

#[test]
fn requests_are_counted_by_access_key() {
    let nodes = nodes();
    let mut config = LoadConfig::new(
        vec![nodes[0].addr()],
        vec![Synthetic::parse("t/small-:4KiB:1").unwrap()],
    );
    config.connections = 2;
    config.duration = Duration::from_millis(300);
    config.access_key = Some("FLOODKEY0000EXAMPLE1".into());
    let summary = load::run(&config, |_| {}).unwrap();
    assert_eq!(summary.errors.total(), 0, "{}", summary.human());
    // Unsigned requests and a presigned one count in `requests` only where they carry a key.
    let r = request(nodes[0].addr(), "GET", "/t/small-0", &[], b"", TIMEOUT).unwrap();
    assert_eq!(r.status, 200);
    let r = request(
        nodes[0].addr(),
        "GET",
        "/t/small-0?X-Amz-Credential=PRESIGNED%2F20260101%2Fus-east-1%2Fs3%2Faws4_request",
        &[],
        b"",
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let stats = nodes[0].stats();
    assert_eq!(stats.requests_of("FLOODKEY0000EXAMPLE1"), summary.requests);
    assert_eq!(stats.requests_of("PRESIGNED"), 1);
    assert_eq!(stats.requests, summary.requests + 2);
    // The control API says the same.
    let json = request(nodes[0].addr(), "GET", "/_sim/stats", &[], b"", TIMEOUT)
        .unwrap()
        .text();
    let parsed = weir_bench::SimStats::from_json(&json).unwrap();
    assert_eq!(parsed.requests_of("FLOODKEY0000EXAMPLE1"), summary.requests);
}
