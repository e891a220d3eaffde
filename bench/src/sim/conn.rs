//! One simulator connection: a blocking keep-alive loop of read head → (read body) →
//! answer, on its own thread.
//!
//! Request flow: 1. read and parse the head (bounded); 2. `/_sim/*` control calls are
//! answered even when the node is down; 3. `down` → RST; 4. the SigV4 check, for keys the
//! node holds secrets for (403 `SignatureDoesNotMatch`); 5. `SlowDown` roll; 6. S3
//! dispatch by method and path (a streaming-signed PUT's chunks are checked as they
//! arrive); 7. faults that cut bodies act between 1 MiB send steps, so flipping `down`
//! also cuts transfers already in flight.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::sigcheck::{self, ChunkCheck, HeadCheck};
use super::store::{Object, ObjectBuilder};
use super::{BodyMode, Node};
use crate::auth::percent_decode;
use crate::http::{has_token, ChunkEvent, ChunkedDecoder, HEADERS_MAX};
use crate::range::RangeOutcome;

/// Read buffer for heads and chunked bodies, in bytes.
const READ_BUF_BYTES: usize = 64 * 1024;
/// Largest request head accepted, in bytes (S3 allows 8 KiB of user metadata).
const HEAD_BYTES_MAX: usize = 32 * 1024;
/// Buffer for Content-Length bodies and copy-mode sends, in bytes.
const BODY_BUF_BYTES: usize = 1 << 20;
/// Largest step of one `sendfile` call, so faults act within a MiB.
const SEND_STEP_BYTES: u64 = 1 << 20;
/// An idle keep-alive connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// A client that does not drain a response for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// A stalled body keeps its socket open at most this long.
const STALL_MAX: Duration = Duration::from_secs(600);
/// Fixed Last-Modified of every object (clients parse it; its value does not matter).
const LAST_MODIFIED: &str = "Wed, 01 Jan 2025 00:00:00 GMT";

/// An owned, parsed request head.
struct Head {
    method: String,
    target: String,
    minor_version: u8,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How the request body is framed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
}

/// What to do with the connection after a request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
}

struct Conn {
    node: Arc<Node>,
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    body_buf: Vec<u8>,
    /// The PROXY header this connection started with (see [`super::Seen`]).
    proxy: Option<String>,
    /// The connection's number on this node.
    id: u64,
    /// S3 requests that came on this connection so far.
    requests: u64,
}

/// Serves one accepted connection until it closes.
pub(super) fn serve(node: Arc<Node>, stream: TcpStream) {
    let conn_id = node.next_conn_id.fetch_add(1, Relaxed);
    node.stats.connections_active.fetch_add(1, Relaxed);
    node.conns
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(conn_id, stream.as_raw_fd());
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let mut conn = Conn {
        node: node.clone(),
        stream,
        buf: vec![0; READ_BUF_BYTES],
        start: 0,
        end: 0,
        body_buf: Vec::new(),
        proxy: None,
        id: conn_id,
        requests: 0,
    };
    if conn.read_proxy_header().is_err() {
        conn.node
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&conn_id);
        node.stats.connections_active.fetch_sub(1, Relaxed);
        return;
    }
    while !node.stop.load(Relaxed) {
        match conn.one_request() {
            Ok(Next::KeepAlive) => {}
            Ok(Next::Close) | Err(_) => break,
        }
    }
    // Leave the shutdown map before the fd closes (when `conn` drops), so shutdown never
    // touches a reused descriptor.
    node.conns
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .remove(&conn_id);
    node.stats.connections_active.fetch_sub(1, Relaxed);
    drop(conn);
}

// === impl Conn: reading ===

impl Conn {
    /// Reads more bytes into `buf[end..]`, compacting first; returns 0 at EOF.
    fn fill(&mut self) -> Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.stream.read(&mut self.buf[self.end..])?;
        self.end += n;
        self.node.stats.bytes_in.fetch_add(n as u64, Relaxed);
        Ok(n)
    }

    /// Takes a PROXY header (v1 or v2) off the start of the connection, when there is one,
    /// like a node with the PROXY protocol enabled: only what a test needs to see, which
    /// weir sent (weir's own parser is the strict one).
    fn read_proxy_header(&mut self) -> Result<()> {
        const V2: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
        while self.end < 16 {
            let got = &self.buf[..self.end];
            let could_be = |sig: &[u8]| sig.starts_with(&got[..got.len().min(sig.len())]);
            if !could_be(b"PROXY ") && !could_be(V2) {
                return Ok(());
            }
            if self.fill()? == 0 {
                bail!("closed before a request");
            }
        }
        if self.buf.starts_with(b"PROXY ") {
            let line_end = loop {
                if let Some(at) = self.buf[..self.end].windows(2).position(|w| w == b"\r\n") {
                    break at;
                }
                if self.end >= 107 || self.fill()? == 0 {
                    bail!("bad PROXY v1 line");
                }
            };
            self.proxy = Some(String::from_utf8_lossy(&self.buf[..line_end]).into_owned());
            self.start = line_end + 2;
        } else if self.buf.starts_with(V2) {
            let len = 16 + usize::from(u16::from_be_bytes([self.buf[14], self.buf[15]]));
            while self.end < len {
                if self.fill()? == 0 {
                    bail!("closed inside a PROXY v2 header");
                }
            }
            let b = &self.buf[16..len];
            let port = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
            self.proxy = Some(match (self.buf[12] & 0x0f, self.buf[13]) {
                (0, _) => "v2 local".to_string(),
                (1, 0x11) if b.len() >= 12 => {
                    let ip =
                        |at: usize| std::net::Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]);
                    format!("v2 {}:{} {}:{}", ip(0), port(8), ip(4), port(10))
                }
                (1, 0x21) if b.len() >= 36 => {
                    let ip = |at: usize| {
                        let mut o = [0u8; 16];
                        o.copy_from_slice(&b[at..at + 16]);
                        std::net::Ipv6Addr::from(o)
                    };
                    format!("v2 [{}]:{} [{}]:{}", ip(0), port(32), ip(16), port(34))
                }
                (c, f) => format!("v2 command {c} family {f:#04x}"),
            });
            self.start = len;
        }
        Ok(())
    }

    /// Remembers what a request said about its client (see [`super::Seen`]).
    fn remember(&self, head: &Head) {
        let forwarding = head
            .headers
            .iter()
            .filter(|(n, _)| {
                // `X_Forwarded_For` too: CGI-style servers read it as the real field.
                let n = n.replace('_', "-");
                ["x-forwarded-for", "x-real-ip", "forwarded"]
                    .iter()
                    .any(|f| n.eq_ignore_ascii_case(f))
            })
            .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
            .collect();
        let mut seen = self.node.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= super::SEEN_MAX {
            seen.pop_front();
        }
        seen.push_back(super::Seen {
            target: head.target.clone(),
            forwarding,
            proxy: self.proxy.clone(),
            connection: self.id,
        });
    }

    /// Reads and parses the next request head; `None` on a clean close between requests.
    fn read_head(&mut self) -> Result<Option<Head>> {
        loop {
            if self.end > self.start {
                let mut slots = [httparse::EMPTY_HEADER; HEADERS_MAX];
                let mut request = httparse::Request::new(&mut slots);
                if let httparse::Status::Complete(len) =
                    request.parse(&self.buf[self.start..self.end])?
                {
                    let head = Head {
                        method: request.method.unwrap_or("").to_string(),
                        target: request.path.unwrap_or("").to_string(),
                        minor_version: request.version.unwrap_or(1),
                        headers: request
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_string(),
                                    String::from_utf8_lossy(h.value).trim().to_string(),
                                )
                            })
                            .collect(),
                    };
                    self.start += len;
                    return Ok(Some(head));
                }
                if self.end - self.start > HEAD_BYTES_MAX {
                    bail!("request head larger than {HEAD_BYTES_MAX} bytes");
                }
            }
            if self.fill()? == 0 {
                if self.start == self.end {
                    return Ok(None);
                }
                bail!("connection closed inside a request head");
            }
        }
    }

    /// Reads the whole body, handing decoded bytes to `sink`.
    fn read_body(
        &mut self,
        framing: Framing,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        match framing {
            Framing::Length(mut remaining) => {
                let buffered = ((self.end - self.start) as u64).min(remaining) as usize;
                if buffered > 0 {
                    sink(&self.buf[self.start..self.start + buffered])?;
                    self.start += buffered;
                    remaining -= buffered as u64;
                }
                if remaining > 0 && self.body_buf.is_empty() {
                    self.body_buf = vec![0; BODY_BUF_BYTES];
                }
                while remaining > 0 {
                    let want = remaining.min(self.body_buf.len() as u64) as usize;
                    let n = self.stream.read(&mut self.body_buf[..want])?;
                    if n == 0 {
                        bail!("connection closed with {remaining} body bytes to go");
                    }
                    self.node.stats.bytes_in.fetch_add(n as u64, Relaxed);
                    sink(&self.body_buf[..n])?;
                    remaining -= n as u64;
                }
                Ok(())
            }
            Framing::Chunked => {
                let mut decoder = ChunkedDecoder::new();
                loop {
                    let consumed = decoder.feed(&self.buf[self.start..self.end], sink)?;
                    self.start += consumed;
                    if decoder.is_done() {
                        return Ok(());
                    }
                    if self.fill()? == 0 {
                        bail!("connection closed inside a chunked body");
                    }
                }
            }
        }
    }

    fn drain_body(&mut self, framing: Framing) -> Result<()> {
        self.read_body(framing, &mut |_| Ok(()))
    }
}

// === impl Conn: writing ===

impl Conn {
    /// Writes a head (and a small body); `more` tells the kernel a body follows at once.
    fn write_response(&mut self, status: u16, head: &str, body: &[u8], more: bool) -> Result<()> {
        let stats = &self.node.stats;
        match status / 100 {
            2 => stats.responses_2xx.fetch_add(1, Relaxed),
            4 => stats.responses_4xx.fetch_add(1, Relaxed),
            5 => stats.responses_5xx.fetch_add(1, Relaxed),
            _ => 0,
        };
        let mut out = Vec::with_capacity(head.len() + body.len());
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(body);
        let flags = if more { libc::MSG_MORE } else { 0 } | libc::MSG_NOSIGNAL;
        let mut sent = 0;
        while sent < out.len() {
            // SAFETY: the pointer and length describe the live `out` buffer.
            let n = unsafe {
                libc::send(
                    self.stream.as_raw_fd(),
                    out[sent..].as_ptr().cast(),
                    out.len() - sent,
                    flags,
                )
            };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err).context("send response head");
            }
            sent += n as usize;
        }
        stats.bytes_out.fetch_add(out.len() as u64, Relaxed);
        Ok(())
    }

    /// A response with a small in-memory body.
    fn respond(
        &mut self,
        status: u16,
        extra_headers: &str,
        content_type: Option<&str>,
        body: &[u8],
        next: Next,
    ) -> Result<Next> {
        let request_id = self.node.request_seq.fetch_add(1, Relaxed);
        let mut head = format!(
            "HTTP/1.1 {status} {}\r\nServer: weir-sim\r\nx-amz-request-id: {request_id:016X}\r\nContent-Length: {}\r\n{extra_headers}",
            reason(status),
            body.len()
        );
        if let Some(content_type) = content_type {
            head.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        if next == Next::Close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        self.write_response(status, &head, body, false)?;
        Ok(next)
    }

    /// An S3 XML error.
    fn respond_error(
        &mut self,
        status: u16,
        code: &str,
        message: &str,
        resource: &str,
        extra_headers: &str,
        next: Next,
    ) -> Result<Next> {
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message><Resource>{}</Resource><RequestId>weir-sim</RequestId></Error>",
            xml_escape(message),
            xml_escape(resource)
        );
        self.respond(
            status,
            extra_headers,
            Some("application/xml"),
            xml.as_bytes(),
            next,
        )
    }

    /// Sends `len_bytes` of `object` from `start`, applying body faults; `Close` when the
    /// body was cut (the connection must not be reused).
    fn send_object(&mut self, object: &Object, start: u64, len_bytes: u64) -> Result<Next> {
        let faults = self.node.faults.load();
        let mut sent = 0u64;
        while sent < len_bytes {
            if self.node.faults.down.load(Relaxed) || self.node.stop.load(Relaxed) {
                self.node.stats.bodies_cut.fetch_add(1, Relaxed);
                self.reset();
                return Ok(Next::Close);
            }
            let mut step = (len_bytes - sent).min(SEND_STEP_BYTES);
            if let Some(stall_at) = faults.stall_after_bytes {
                if sent >= stall_at {
                    self.node.stats.bodies_cut.fetch_add(1, Relaxed);
                    self.stall();
                    return Ok(Next::Close);
                }
                step = step.min(stall_at - sent);
            }
            if let Some(reset_at) = faults.reset_after_bytes {
                if sent >= reset_at {
                    self.node.stats.bodies_cut.fetch_add(1, Relaxed);
                    self.reset();
                    return Ok(Next::Close);
                }
                step = step.min(reset_at - sent);
            }
            let n = match self.node.options.body_mode {
                BodyMode::Sendfile => self.sendfile(object, start + sent, step)?,
                BodyMode::Copy => self.copy_send(object, start + sent, step)?,
            };
            sent += n;
            self.node.stats.bytes_out.fetch_add(n, Relaxed);
        }
        Ok(Next::KeepAlive)
    }

    fn sendfile(&mut self, object: &Object, offset: u64, len_bytes: u64) -> Result<u64> {
        let mut file_offset = offset as libc::off_t;
        loop {
            // SAFETY: both fds are open for the duration of the call; `file_offset` is a
            // valid out-pointer.
            let n = unsafe {
                libc::sendfile(
                    self.stream.as_raw_fd(),
                    object.file.as_raw_fd(),
                    &mut file_offset,
                    len_bytes as usize,
                )
            };
            if n > 0 {
                return Ok(n as u64);
            }
            if n == 0 {
                bail!("sendfile made no progress (object shorter than its length?)");
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err).context("sendfile");
            }
        }
    }

    fn copy_send(&mut self, object: &Object, offset: u64, len_bytes: u64) -> Result<u64> {
        if self.body_buf.is_empty() {
            self.body_buf = vec![0; BODY_BUF_BYTES];
        }
        let n = len_bytes.min(self.body_buf.len() as u64) as usize;
        object
            .file
            .read_exact_at(&mut self.body_buf[..n], offset)
            .context("read object")?;
        self.stream
            .write_all(&self.body_buf[..n])
            .context("write body")?;
        Ok(n as u64)
    }

    /// Ends the connection with an RST (SO_LINGER 0); the caller then drops it.
    fn reset(&mut self) {
        let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
        let _ = self.stream.shutdown(std::net::Shutdown::Read);
    }

    /// Keeps the socket open without sending until the peer closes (or the node stops).
    fn stall(&mut self) {
        let deadline = Instant::now() + STALL_MAX;
        let fd = self.stream.as_raw_fd();
        let mut scratch = [0u8; 4096];
        while Instant::now() < deadline && !self.node.stop.load(Relaxed) {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN | libc::POLLRDHUP,
                revents: 0,
            };
            // SAFETY: `pfd` is one valid pollfd.
            let ready = unsafe { libc::poll(&mut pfd, 1, 200) };
            if ready <= 0 {
                continue;
            }
            if pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
                return;
            }
            // Data from the peer while stalled: discard it; EOF or error ends the stall.
            match self.stream.read(&mut scratch) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

// === impl Conn: requests ===

impl Conn {
    fn one_request(&mut self) -> Result<Next> {
        let Some(head) = self.read_head()? else {
            return Ok(Next::Close);
        };
        let keep_alive = match head.minor_version {
            1 => !has_token(head.header("connection"), "close"),
            _ => has_token(head.header("connection"), "keep-alive"),
        };
        let next = if keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        };
        let framing = match framing(&head) {
            Ok(framing) => framing,
            Err(err) => {
                return self.respond_error(
                    400,
                    "InvalidRequest",
                    &err.to_string(),
                    &head.target,
                    "",
                    Next::Close,
                );
            }
        };
        let (path, query) = head
            .target
            .split_once('?')
            .unwrap_or((head.target.as_str(), ""));
        let (path, query) = (path.to_string(), query.to_string());
        if let Some(control) = path.strip_prefix("/_sim/") {
            self.drain_body(framing)?;
            return self.control(&head.method, control, &query, next);
        }
        self.remember(&head);
        self.requests += 1;
        if self.requests > 1 && self.node.faults.drop_reused.load(Relaxed) {
            return Ok(Next::Close);
        }
        if self.node.faults.down.load(Relaxed) {
            self.node.stats.refused.fetch_add(1, Relaxed);
            self.reset();
            return Ok(Next::Close);
        }
        self.node.stats.requests.fetch_add(1, Relaxed);
        if let Some(key) = crate::auth::access_key(head.header("authorization"), &query) {
            self.node.stats.count_access_key(&key);
        }
        let expect_continue = has_token(head.header("expect"), "100-continue");
        let chunk_check = match self.check_signature(&head, &path, &query) {
            Ok(check) => check,
            Err(why) => {
                return self.reject_early(framing, expect_continue, next, |conn, next| {
                    conn.respond_error(403, "SignatureDoesNotMatch", &why, &path, "", next)
                });
            }
        };
        let faults = self.node.faults.load();
        if faults.slowdown_ratio > 0.0 && self.roll() < faults.slowdown_ratio {
            return self.reject_early(framing, expect_continue, next, |conn, next| {
                conn.respond_error(
                    503,
                    "SlowDown",
                    "Please reduce your request rate.",
                    &path,
                    "",
                    next,
                )
            });
        }
        if faults.error_ratio > 0.0 && self.roll() < faults.error_ratio {
            let (status, code) = (faults.error_status, faults.error_code);
            return self.reject_early(framing, expect_continue, next, |conn, next| {
                if code.is_empty() {
                    conn.respond(status, "", None, b"", next)
                } else {
                    conn.respond_error(status, &code, "injected fault", &path, "", next)
                }
            });
        }
        let Some(key) = percent_decode(path.trim_start_matches('/')) else {
            self.drain_body(framing)?;
            return self.respond_error(400, "InvalidURI", "bad escape", &path, "", next);
        };
        let is_object = key.split_once('/').is_some_and(|(_, k)| !k.is_empty());
        match (head.method.as_str(), is_object) {
            ("GET" | "HEAD", true) => {
                self.drain_body(framing)?;
                self.get_object(&head, &key, faults.latency_ms, next)
            }
            ("PUT", true) => {
                self.put_object(&head, &key, framing, expect_continue, chunk_check, next)
            }
            ("DELETE", true) => {
                self.drain_body(framing)?;
                self.delay(faults.latency_ms);
                let removed = self
                    .node
                    .objects
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .remove(&key);
                drop(removed);
                self.respond(204, "", None, b"", next)
            }
            ("GET", false) => {
                self.drain_body(framing)?;
                self.delay(faults.latency_ms);
                let xml = self.list(&key, &query);
                self.respond(200, "", Some("application/xml"), xml.as_bytes(), next)
            }
            ("HEAD" | "PUT" | "DELETE", false) => {
                // Bucket calls: every bucket exists and can be created or deleted.
                self.drain_body(framing)?;
                self.delay(faults.latency_ms);
                let status = if head.method == "DELETE" { 204 } else { 200 };
                self.respond(status, "", None, b"", next)
            }
            _ => {
                self.drain_body(framing)?;
                self.respond_error(
                    405,
                    "MethodNotAllowed",
                    "The specified method is not allowed against this resource.",
                    &path,
                    "",
                    next,
                )
            }
        }
    }

    /// The SigV4 check of the head (when signed by a key this node holds a secret for):
    /// `Ok` with the chunk checker of a streaming-signed upload, `Err` with why it fails.
    fn check_signature(
        &self,
        head: &Head,
        path: &str,
        query: &str,
    ) -> Result<Option<ChunkCheck>, String> {
        let secrets = self
            .node
            .sigv4_secrets
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if secrets.is_empty() {
            return Ok(None);
        }
        let stats = &self.node.stats;
        match sigcheck::check_head(&secrets, &head.method, path, query, &head.headers) {
            HeadCheck::NotChecked => Ok(None),
            HeadCheck::Valid(chunks) => {
                stats.sigv4_checked.fetch_add(1, Relaxed);
                Ok(chunks)
            }
            HeadCheck::Invalid(why) => {
                stats.sigv4_checked.fetch_add(1, Relaxed);
                stats.sigv4_failures.fetch_add(1, Relaxed);
                Err(why)
            }
        }
    }

    /// Answers before the body: with `100-continue` the body is never read and the
    /// connection closes; otherwise the body is drained and the connection kept.
    fn reject_early(
        &mut self,
        framing: Framing,
        expect_continue: bool,
        next: Next,
        answer: impl FnOnce(&mut Self, Next) -> Result<Next>,
    ) -> Result<Next> {
        let has_body = framing != Framing::Length(0);
        if expect_continue && has_body {
            answer(self, Next::Close)
        } else {
            self.drain_body(framing)?;
            answer(self, next)
        }
    }

    /// A uniform pseudo-random number in 0..1 from the node's request sequence.
    fn roll(&self) -> f64 {
        let mut z = self
            .node
            .request_seq
            .fetch_add(1, Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as f64 / (u64::MAX as f64 + 1.0)
    }

    fn delay(&self, latency_ms: u64) {
        if latency_ms > 0 {
            std::thread::sleep(Duration::from_millis(latency_ms));
        }
    }

    fn lookup(&self, key: &str) -> Option<Arc<Object>> {
        self.node
            .objects
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(key)
            .cloned()
    }

    fn get_object(&mut self, head: &Head, key: &str, latency_ms: u64, next: Next) -> Result<Next> {
        let path = format!("/{key}");
        let Some(object) = self.lookup(key) else {
            self.delay(latency_ms);
            return self.respond_error(
                404,
                "NoSuchKey",
                "The specified key does not exist.",
                &path,
                "",
                next,
            );
        };
        let etag_header = format!("ETag: {}\r\n", object.etag);
        if let Some(wanted) = head.header("if-match") {
            if !etag_matches(wanted, &object.etag) {
                self.delay(latency_ms);
                return self.respond_error(
                    412,
                    "PreconditionFailed",
                    "At least one of the pre-conditions you specified did not hold",
                    &path,
                    "",
                    next,
                );
            }
        }
        if let Some(not_wanted) = head.header("if-none-match") {
            if etag_matches(not_wanted, &object.etag) {
                self.delay(latency_ms);
                return self.respond(304, &etag_header, None, b"", next);
            }
        }
        let size = object.len_bytes;
        let (status, start, len_bytes, content_range) =
            match RangeOutcome::resolve(head.header("range"), size) {
                RangeOutcome::Full => (200, 0, size, String::new()),
                RangeOutcome::Partial {
                    start,
                    end_inclusive,
                } => (
                    206,
                    start,
                    end_inclusive - start + 1,
                    format!("Content-Range: bytes {start}-{end_inclusive}/{size}\r\n"),
                ),
                RangeOutcome::Unsatisfiable => {
                    self.delay(latency_ms);
                    let extra = format!("Content-Range: bytes */{size}\r\n");
                    return self.respond_error(
                        416,
                        "InvalidRange",
                        "The requested range is not satisfiable",
                        &path,
                        &extra,
                        next,
                    );
                }
            };
        self.delay(latency_ms);
        let request_id = self.node.request_seq.fetch_add(1, Relaxed);
        let mut response = format!(
            "HTTP/1.1 {status} {}\r\nServer: weir-sim\r\nx-amz-request-id: {request_id:016X}\r\nContent-Length: {len_bytes}\r\n{etag_header}{content_range}Accept-Ranges: bytes\r\nLast-Modified: {LAST_MODIFIED}\r\nContent-Type: application/octet-stream\r\n",
            reason(status)
        );
        if next == Next::Close {
            response.push_str("Connection: close\r\n");
        }
        response.push_str("\r\n");
        let with_body = head.method == "GET" && len_bytes > 0;
        self.write_response(status, &response, b"", with_body)?;
        if !with_body {
            return Ok(next);
        }
        match self.send_object(&object, start, len_bytes)? {
            Next::KeepAlive => Ok(next),
            Next::Close => Ok(Next::Close),
        }
    }

    fn put_object(
        &mut self,
        head: &Head,
        key: &str,
        framing: Framing,
        expect_continue: bool,
        mut chunk_check: Option<ChunkCheck>,
        next: Next,
    ) -> Result<Next> {
        let path = format!("/{key}");
        let current = self.lookup(key);
        let precondition_ok = match (head.header("if-match"), head.header("if-none-match")) {
            (Some(wanted), _) => current
                .as_ref()
                .is_some_and(|o| etag_matches(wanted, &o.etag)),
            (None, Some(not_wanted)) => !current
                .as_ref()
                .is_some_and(|o| etag_matches(not_wanted, &o.etag)),
            (None, None) => true,
        };
        if !precondition_ok {
            let latency_ms = self.node.faults.latency_ms.load(Relaxed);
            return self.reject_early(framing, expect_continue, next, |conn, next| {
                conn.delay(latency_ms);
                conn.respond_error(
                    412,
                    "PreconditionFailed",
                    "At least one of the pre-conditions you specified did not hold",
                    &path,
                    "",
                    next,
                )
            });
        }
        if expect_continue {
            self.write_response(100, "HTTP/1.1 100 Continue\r\n\r\n", b"", false)?;
        }
        // aws-chunked (SigV4 streaming uploads) has chunked framing inside the body.
        let aws_chunked = head
            .header("x-amz-content-sha256")
            .is_some_and(|v| v.starts_with("STREAMING-"))
            || has_token(head.header("content-encoding"), "aws-chunked");
        let mut builder = ObjectBuilder::new(key);
        let mut inner = aws_chunked.then(ChunkedDecoder::new);
        let mut bad_chunk: Option<String> = None;
        let received = self.read_body(framing, &mut |data| match inner.as_mut() {
            Some(inner) if inner.is_done() => Ok(()),
            Some(inner) => inner
                .feed_events(data, &mut |event| match event {
                    ChunkEvent::SizeLine(line) => match chunk_check.as_mut() {
                        Some(check) => check.size_line(line).map_err(|why| {
                            let err = anyhow::anyhow!("{why}");
                            bad_chunk = Some(why);
                            err
                        }),
                        None => Ok(()),
                    },
                    ChunkEvent::Data(payload) => {
                        if let Some(check) = chunk_check.as_mut() {
                            check.data(payload);
                        }
                        builder.push(payload)
                    }
                })
                .map(drop),
            None => builder.push(data),
        });
        if let Some(why) = bad_chunk {
            // The rest of the body is not read: the connection cannot be reused.
            self.node.stats.sigv4_failures.fetch_add(1, Relaxed);
            return self.respond_error(403, "SignatureDoesNotMatch", &why, &path, "", Next::Close);
        }
        if let Err(err) = received {
            // Bad framing gets an answer; a vanished client does not read it anyway.
            let message = format!("{err:#}");
            return self.respond_error(400, "IncompleteBody", &message, &path, "", Next::Close);
        }
        if let Some(inner) = inner {
            if !inner.is_done() {
                return self.respond_error(
                    400,
                    "IncompleteBody",
                    "aws-chunked body ended early",
                    &path,
                    "",
                    Next::Close,
                );
            }
        }
        if let Some(check) = chunk_check {
            match check.finish() {
                Ok(chunks) => {
                    self.node
                        .stats
                        .sigv4_chunks_checked
                        .fetch_add(chunks, Relaxed);
                }
                Err(why) => {
                    self.node.stats.sigv4_failures.fetch_add(1, Relaxed);
                    return self.respond_error(403, "SignatureDoesNotMatch", &why, &path, "", next);
                }
            }
        }
        if let Some(expected) = head.header("x-amz-decoded-content-length") {
            if expected.parse::<u64>().ok() != Some(builder.len_bytes()) {
                return self.respond_error(
                    400,
                    "IncompleteBody",
                    "body length differs from x-amz-decoded-content-length",
                    &path,
                    "",
                    next,
                );
            }
        }
        let object = builder.finish()?;
        self.delay(self.node.faults.latency_ms.load(Relaxed));
        let etag_header = format!("ETag: {}\r\n", object.etag);
        self.node
            .objects
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key.to_string(), object);
        self.respond(200, &etag_header, None, b"", next)
    }

    /// A minimal ListObjects(V2) answer: up to 1000 keys of the bucket under `prefix=`.
    fn list(&self, bucket_path: &str, query: &str) -> String {
        let bucket = bucket_path.trim_end_matches('/');
        let prefix = query
            .split('&')
            .find_map(|p| p.strip_prefix("prefix="))
            .and_then(percent_decode)
            .unwrap_or_default();
        let full_prefix = format!("{bucket}/{prefix}");
        let objects = self
            .node
            .objects
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut keys: Vec<(&String, &Arc<Object>)> = objects
            .iter()
            .filter(|(k, _)| !bucket.is_empty() && k.starts_with(&full_prefix))
            .collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        keys.truncate(1000);
        let mut xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult><Name>{}</Name><Prefix>{}</Prefix><KeyCount>{}</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>",
            xml_escape(bucket),
            xml_escape(&prefix),
            keys.len()
        );
        for (key, object) in keys {
            let name = &key[bucket.len() + 1..];
            xml.push_str(&format!(
                "<Contents><Key>{}</Key><LastModified>2025-01-01T00:00:00.000Z</LastModified><ETag>{}</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
                xml_escape(name),
                xml_escape(&object.etag),
                object.len_bytes
            ));
        }
        xml.push_str("</ListBucketResult>");
        xml
    }

    fn control(&mut self, method: &str, what: &str, query: &str, next: Next) -> Result<Next> {
        const JSON: Option<&str> = Some("application/json");
        match (method, what) {
            ("GET", "stats") => {
                let json = self.node.stats.snapshot().to_json();
                self.respond(200, "", JSON, json.as_bytes(), next)
            }
            ("GET", "sigv4") => {
                let secrets = self
                    .node
                    .sigv4_secrets
                    .read()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let mut keys: Vec<String> = secrets.keys().map(|k| format!("\"{k}\"")).collect();
                keys.sort();
                let json = format!("{{\"access_keys\":[{}]}}", keys.join(","));
                drop(secrets);
                self.respond(200, "", JSON, json.as_bytes(), next)
            }
            ("POST" | "PUT", "sigv4") => match self.set_sigv4(query) {
                Ok(()) => self.respond(200, "", None, b"", next),
                Err(err) => {
                    let body = format!("{err:#}\n");
                    self.respond(400, "", Some("text/plain"), body.as_bytes(), next)
                }
            },
            ("GET", "faults") => {
                let json = self.node.faults.load().to_json();
                self.respond(200, "", JSON, json.as_bytes(), next)
            }
            ("POST" | "PUT", "faults") => {
                let mut faults = self.node.faults.load();
                match faults.apply_query(query) {
                    Ok(()) => {
                        self.node.faults.store(&faults);
                        let json = faults.to_json();
                        self.respond(200, "", JSON, json.as_bytes(), next)
                    }
                    Err(err) => {
                        let body = format!("{err:#}\n");
                        self.respond(400, "", Some("text/plain"), body.as_bytes(), next)
                    }
                }
            }
            _ => self.respond(404, "", Some("text/plain"), b"unknown control call\n", next),
        }
    }
}

impl Conn {
    /// `clear` forgets every key; `access_key=K&secret=S` checks K's signatures with S.
    fn set_sigv4(&self, query: &str) -> Result<()> {
        let mut access_key = None;
        let mut secret = None;
        let mut clear = false;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value).context("bad escape")?;
            match name {
                "clear" => clear = true,
                "access_key" => access_key = Some(value),
                "secret" => secret = Some(value),
                other => bail!("unknown parameter {other:?}"),
            }
        }
        let mut secrets = self
            .node
            .sigv4_secrets
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if clear {
            secrets.clear();
        }
        match (access_key, secret) {
            (Some(key), Some(secret))
                if !key.is_empty()
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
            {
                secrets.insert(key, secret);
            }
            (None, None) if clear => {}
            _ => bail!("give access_key (A-Z a-z 0-9 . _ -) and secret, or clear"),
        }
        Ok(())
    }
}

/// The body framing of a request: Transfer-Encoding chunked, else Content-Length, else none.
fn framing(head: &Head) -> Result<Framing> {
    if let Some(te) = head.header("transfer-encoding") {
        let last = te.rsplit(',').next().unwrap_or("").trim();
        if !last.eq_ignore_ascii_case("chunked") {
            bail!("unsupported Transfer-Encoding {te:?}");
        }
        if head.header("content-length").is_some() {
            bail!("both Transfer-Encoding and Content-Length");
        }
        return Ok(Framing::Chunked);
    }
    let mut lengths = head
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.as_str());
    let Some(first) = lengths.next() else {
        return Ok(Framing::Length(0));
    };
    if lengths.any(|other| other != first) {
        bail!("conflicting Content-Length headers");
    }
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        bail!("bad Content-Length {first:?}");
    }
    Ok(Framing::Length(first.parse().context("Content-Length")?))
}

/// True when an If-Match / If-None-Match value names `etag` (or is `*`); weak tags compare
/// by their opaque part, as S3 does.
fn etag_matches(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|candidate| {
        candidate == "*"
            || candidate.trim_start_matches("W/").trim_matches('"') == etag.trim_matches('"')
    })
}

/// Decodes `%XX` escapes (and leaves `+` alone, as S3 paths do); `None` on a bad escape or
/// non-UTF-8 result.
fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        412 => "Precondition Failed",
        416 => "Range Not Satisfiable",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_and_escapes() {
        assert!(etag_matches("\"abc\"", "\"abc\""));
        assert!(etag_matches("abc", "\"abc\""));
        assert!(etag_matches("\"x\", \"abc\"", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
        assert_eq!(percent_decode("b/a%20b%2Fc").as_deref(), Some("b/a b/c"));
        assert_eq!(percent_decode("b/%zz"), None);
        assert_eq!(percent_decode("b/%2"), None);
    }
}
