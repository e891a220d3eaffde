//! The malformed-request and smuggling corpus: raw bytes over TCP to weir in front of a
//! [`Canary`] node. Each case has its exact expected status; every error answer is an S3
//! XML error with a `<Code>`, framing errors close the connection, and the canary — which
//! would count any connection weir opened towards storage — sees nothing.

use std::time::Duration;
use weir_tests::data::Scratch;
use weir_tests::raw::{exchange, RawReply, ReadUntil};
use weir_tests::tcp::Canary;
use weir_tests::weir::{Weir, WeirConfig};

/// How long to wait for weir's answer (weir answers malformed requests at once).
const REPLY_WAIT: Duration = Duration::from_secs(5);

/// weir with `head_timeout = 2s` and a 16 KiB head cap in front of a canary.
struct Rig {
    canary: Canary,
    weir: Weir,
    _scratch: Scratch,
}

impl Rig {
    fn start(name: &str) -> Rig {
        Self::start_with(name, |_| {})
    }

    fn start_with(name: &str, tweak: impl FnOnce(&mut WeirConfig)) -> Rig {
        let scratch = Scratch::new(name);
        let canary = Canary::start();
        let mut cfg = WeirConfig::new(&[canary.addr()]);
        tweak(&mut cfg);
        let weir = Weir::start(&cfg, scratch.path());
        Rig {
            canary,
            weir,
            _scratch: scratch,
        }
    }

    fn send(&self, parts: &[&[u8]], gap: Duration, wait: Duration, until: ReadUntil) -> RawReply {
        exchange(self.weir.addr(), parts, gap, wait, until)
    }

    /// No request reached the storage node. weir's own health probes (`HEAD /`) may reach
    /// it; every request of the corpus targets `/bucket/key`, so any other request line the
    /// canary captured is a forwarded (smuggled) request.
    fn assert_canary_untouched(&self, case: &str) {
        // Give a wrongly forwarded request time to arrive before looking.
        std::thread::sleep(Duration::from_millis(200));
        let forwarded = self.canary.counters().non_probe_request_lines();
        assert!(
            forwarded.is_empty(),
            "{case}: the storage node received {forwarded:?} ({}); weir log:\n{}",
            self.canary_summary(),
            self.weir.log_tail()
        );
    }

    /// "N connection(s), M byte(s), first lines [...]" (probes included).
    fn canary_summary(&self) -> String {
        let c = self.canary.counters();
        format!(
            "{} connection(s), {} byte(s), first lines {:?}",
            c.connections(),
            c.bytes_in(),
            c.first_lines()
        )
    }
}

/// Asserts `reply` is an S3 XML error with `status`.
fn assert_s3_error(case: &str, reply: &RawReply, status: u16) {
    assert_eq!(
        reply.status(),
        Some(status),
        "{case}: expected {status}, got {} byte(s), connection {}:\n{}",
        reply.bytes.len(),
        if reply.closed { "closed" } else { "open" },
        reply.text()
    );
    let body = String::from_utf8_lossy(&reply.body()).into_owned();
    let code = body
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code.to_string());
    assert!(
        body.contains("<Error>") && code.as_deref().is_some_and(|c| !c.is_empty()),
        "{case}: body is not an S3 XML error with a <Code>:\n{}",
        reply.text()
    );
    let ctype = reply.header("content-type").unwrap_or_default();
    assert!(
        ctype.contains("xml"),
        "{case}: Content-Type {ctype:?}, want XML:\n{}",
        reply.head()
    );
}

/// One request in one write; weir must answer `status`, close (when `closes`), and forward
/// nothing. All three are checked before failing, so a failure names every symptom.
fn rejects(case: &str, request: &[u8], status: u16, closes: bool) {
    let rig = Rig::start(case);
    let until = if closes {
        ReadUntil::Close
    } else {
        ReadUntil::Response
    };
    let reply = rig.send(&[request], Duration::ZERO, REPLY_WAIT, until);
    std::thread::sleep(Duration::from_millis(200));
    let symptoms = format!(
        "{case}: got {:?} ({} byte(s), connection {}); storage node saw {}",
        reply.status(),
        reply.bytes.len(),
        if reply.closed { "closed" } else { "open" },
        rig.canary_summary(),
    );
    println!("{symptoms}");
    assert_eq!(
        reply.status(),
        Some(status),
        "{symptoms}; want {status}:\n{}",
        reply.text()
    );
    assert_s3_error(case, &reply, status);
    if closes {
        assert!(
            reply.closed,
            "{symptoms}; want the connection closed after the {status}"
        );
    }
    rig.assert_canary_untouched(case);
}

// --- request smuggling: framing ----------------------------------------------------------------

#[test]
fn content_length_and_transfer_encoding_is_400() {
    rejects(
        "cl-and-te",
        b"PUT /bucket/key HTTP/1.1\r\nHost: weir\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        true,
    );
}

#[test]
fn differing_content_lengths_is_400() {
    rejects(
        "two-cl",
        b"PUT /bucket/key HTTP/1.1\r\nHost: weir\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
        true,
    );
}

#[test]
fn differing_content_length_list_is_400() {
    rejects(
        "cl-list",
        b"PUT /bucket/key HTTP/1.1\r\nHost: weir\r\nContent-Length: 5, 6\r\n\r\nhello!",
        400,
        true,
    );
}

#[test]
fn transfer_encoding_not_final_chunked_is_400() {
    rejects(
        "te-chunked-gzip",
        b"PUT /bucket/key HTTP/1.1\r\nHost: weir\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        400,
        true,
    );
}

#[test]
fn transfer_encoding_without_chunked_is_400() {
    rejects(
        "te-gzip",
        b"PUT /bucket/key HTTP/1.1\r\nHost: weir\r\nTransfer-Encoding: gzip\r\n\r\nhello",
        400,
        true,
    );
}

#[test]
fn bad_chunk_size_is_400() {
    rejects(
        "chunk-size-not-hex",
        b"PUT /bucket/key HTTP/1.1\r\nHost: weir\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        400,
        true,
    );
}

#[test]
fn overflowing_chunk_size_is_400() {
    rejects(
        "chunk-size-overflow",
        b"PUT /bucket/key HTTP/1.1\r\nHost: weir\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        400,
        true,
    );
}

// --- head syntax --------------------------------------------------------------------------------

#[test]
fn obs_fold_is_400() {
    rejects(
        "obs-fold",
        b"GET /bucket/key HTTP/1.1\r\nHost: weir\r\nX-Amz-Meta-A: one\r\n  two\r\n\r\n",
        400,
        true,
    );
}

#[test]
fn bare_lf_is_400() {
    rejects(
        "bare-lf",
        b"GET /bucket/key HTTP/1.1\nHost: weir\nX-A: b\n\n",
        400,
        true,
    );
}

#[test]
fn nul_in_header_value_is_400() {
    rejects(
        "nul-in-header",
        b"GET /bucket/key HTTP/1.1\r\nHost: weir\r\nX-A: a\0b\r\n\r\n",
        400,
        true,
    );
}

#[test]
fn space_before_colon_is_400() {
    rejects(
        "space-before-colon",
        b"GET /bucket/key HTTP/1.1\r\nHost: weir\r\nX-A : b\r\n\r\n",
        400,
        true,
    );
}

#[test]
fn missing_host_is_400() {
    rejects(
        "missing-host",
        b"GET /bucket/key HTTP/1.1\r\nX-A: b\r\n\r\n",
        400,
        true,
    );
}

#[test]
fn oversize_head_is_431() {
    let mut req = b"GET /bucket/key HTTP/1.1\r\nHost: weir\r\n".to_vec();
    for i in 0..40 {
        req.extend_from_slice(format!("X-Amz-Meta-Pad{i}: {}\r\n", "a".repeat(500)).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    assert!(req.len() > 16 * 1024 + 1024);
    rejects("oversize-head", &req, 431, true);
}

// --- methods and versions ---------------------------------------------------------------------

#[test]
fn patch_is_501() {
    rejects(
        "patch",
        b"PATCH /bucket/key HTTP/1.1\r\nHost: weir\r\nContent-Length: 0\r\n\r\n",
        501,
        false,
    );
}

#[test]
fn trace_is_501() {
    rejects(
        "trace",
        b"TRACE /bucket/key HTTP/1.1\r\nHost: weir\r\n\r\n",
        501,
        false,
    );
}

#[test]
fn connect_is_501() {
    rejects(
        "connect",
        b"CONNECT storage.internal:443 HTTP/1.1\r\nHost: storage.internal:443\r\n\r\n",
        501,
        false,
    );
}

#[test]
fn http2_request_line_is_505() {
    rejects(
        "http2-line",
        b"GET /bucket/key HTTP/2.0\r\nHost: weir\r\n\r\n",
        505,
        false,
    );
}

// --- timing ------------------------------------------------------------------------------------

/// Part of a head, then silence past `head_timeout` (2 s): 408, then close.
#[test]
fn partial_head_past_head_timeout_is_408() {
    let rig = Rig::start("partial-head");
    let reply = rig.send(
        &[b"GET /bucket/key HTTP/1.1\r\nHost: weir\r\n"],
        Duration::ZERO,
        Duration::from_secs(8),
        ReadUntil::Close,
    );
    assert_s3_error("partial-head", &reply, 408);
    let after = reply.first_byte_after.expect("an answer arrived");
    assert!(
        after >= Duration::from_millis(1500) && after <= Duration::from_millis(5000),
        "408 came {after:?} after the partial head; head_timeout is 2s"
    );
    assert!(reply.closed, "connection still open after the 408");
    rig.assert_canary_untouched("partial-head");
}

/// A connection that never sends a byte is closed silently (no 408) once idle.
#[test]
fn idle_connection_without_bytes_closes_silently() {
    let rig = Rig::start_with("idle", |cfg| cfg.client_idle_timeout = Some("2s".into()));
    let reply = rig.send(
        &[],
        Duration::ZERO,
        Duration::from_secs(8),
        ReadUntil::Close,
    );
    assert!(
        reply.closed,
        "idle connection still open 8 s after connect (client_idle_timeout 2s)"
    );
    assert!(
        reply.bytes.is_empty(),
        "idle connection got bytes before closing:\n{}",
        reply.text()
    );
    rig.assert_canary_untouched("idle");
}

// --- control ------------------------------------------------------------------------------------

/// The canary does see a well-formed request, so its zero counts above mean something.
#[test]
fn control_valid_request_reaches_the_canary() {
    let rig = Rig::start("control");
    let _ = rig.send(
        &[b"GET /bucket/key HTTP/1.1\r\nHost: weir\r\n\r\n"],
        Duration::ZERO,
        Duration::from_millis(1500),
        ReadUntil::Response,
    );
    let forwarded = rig.canary.counters().non_probe_request_lines();
    assert_eq!(
        forwarded,
        vec!["GET /bucket/key HTTP/1.1".to_string()],
        "a valid GET should reach the node once ({})",
        rig.canary_summary()
    );
}
