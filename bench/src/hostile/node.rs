//! The hostile storage node: a scripted HTTP/1.1 server (one blocking thread per
//! connection) that answers each request as its target says ([`Script`]) and records what
//! it received — request heads, body bytes, on which connection — so a test asserts on
//! what reached storage, not on what a proxy says it sent.
//!
//! Control API (not recorded): `GET /_hostile/received` (the records, JSON),
//! `GET /_hostile/connections`, `POST /_hostile/clear`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use md5::{Digest, Md5};

use super::script::{self, EarlyClose, Script};
use crate::http::{has_token, ChunkedDecoder};

/// Largest request head read, in bytes.
const HEAD_BYTES_MAX: usize = 1 << 20;
/// Header fields a request head may have (more: the node closes without answering).
const HEADER_SLOTS: usize = 1024;
/// Read buffer of a connection.
const READ_BUF_BYTES: usize = 64 * 1024;
/// Body bytes generated per write.
const SEND_STEP_BYTES: usize = 64 * 1024;
/// Chunk size of chunked answers.
const CHUNK_BYTES: usize = 16 * 1024;
/// An idle keep-alive connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// A peer that does not drain an answer for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an endless interim flood may last.
const FLOOD_MAX: Duration = Duration::from_secs(600);
/// How long the node waits for its last bytes to be acknowledged before it resets.
const SENT_WAIT: Duration = Duration::from_secs(2);
/// How long `early_answer` with `close=drain` reads the rest of an upload.
const DRAIN_MAX: Duration = Duration::from_secs(10);
/// Records kept; later requests are counted in `dropped` only.
const RECORDS_MAX: usize = 100_000;
/// Bytes of stored PUT bodies kept in memory; beyond it PUTs are answered 507.
const STORED_BYTES_MAX: u64 = 512 << 20;
/// Stack of a connection thread (its buffers are on the heap).
const CONN_STACK_BYTES: usize = 256 * 1024;

/// Options of a node beyond its scripts.
#[derive(Clone, Debug, Default)]
pub struct HostileOptions {
    /// Close without answering any request with more header fields than this (what
    /// weir-sim does above 64), whatever its target says.
    pub close_over_headers: Option<usize>,
}

/// One request as the node received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The connection it came on (numbered from 0 in accept order).
    pub conn: u64,
    /// Its position on that connection (0 = first).
    pub seq: u64,
    /// Milliseconds since the node started, when its head was complete.
    pub at_ms: u64,
    /// Method.
    pub method: String,
    /// Request target as sent.
    pub target: String,
    /// HTTP minor version (1 for HTTP/1.1).
    pub minor_version: u8,
    /// Header fields in order (values lossily as text).
    pub headers: Vec<(String, String)>,
    /// Number of header fields (more than `headers` holds when the head had more than
    /// the node parses).
    pub header_count: usize,
    /// Request body bytes read.
    pub body_bytes: u64,
    /// Whether the whole body (by its framing) was read.
    pub body_complete: bool,
    /// The script's name (`plain`, `interim`, …; `error` for a target the node refused).
    pub mode: String,
    /// Status of the final answer, once the node starts sending it.
    pub answered: Option<u16>,
}

impl Received {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The record as a JSON object.
    pub fn to_json(&self) -> String {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(n, v)| format!("[{},{}]", json_string(n), json_string(v)))
            .collect();
        format!(
            "{{\"conn\":{},\"seq\":{},\"at_ms\":{},\"method\":{},\"target\":{},\"minor_version\":{},\"header_count\":{},\"headers\":[{}],\"body_bytes\":{},\"body_complete\":{},\"mode\":{},\"answered\":{}}}",
            self.conn,
            self.seq,
            self.at_ms,
            json_string(&self.method),
            json_string(&self.target),
            self.minor_version,
            self.header_count,
            headers.join(","),
            self.body_bytes,
            self.body_complete,
            json_string(&self.mode),
            self.answered.map_or("null".to_string(), |s| s.to_string())
        )
    }
}

/// One accepted connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// Its number (accept order, from 0).
    pub id: u64,
    /// The peer's address.
    pub peer: SocketAddr,
    /// Milliseconds since the node started, at accept.
    pub opened_ms: u64,
    /// Milliseconds since the node started, when the node let go of it.
    pub closed_ms: Option<u64>,
    /// Requests read on it.
    pub requests: u64,
    /// Unsolicited bytes written on it while idle (`idle_bytes`).
    pub unsolicited_bytes: u64,
}

impl Connection {
    /// The record as a JSON object.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"id\":{},\"peer\":\"{}\",\"opened_ms\":{},\"closed_ms\":{},\"requests\":{},\"unsolicited_bytes\":{}}}",
            self.id,
            self.peer,
            self.opened_ms,
            self.closed_ms.map_or("null".to_string(), |v| v.to_string()),
            self.requests,
            self.unsolicited_bytes
        )
    }
}

/// A JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// State shared by a node's threads.
struct Shared {
    options: HostileOptions,
    started: Instant,
    stop: AtomicBool,
    next_conn: AtomicU64,
    records: Mutex<Vec<Received>>,
    dropped: AtomicU64,
    connections: Mutex<Vec<Connection>>,
    /// Open connections by id, so shutdown can wake their blocking reads.
    fds: Mutex<HashMap<u64, RawFd>>,
    /// PUT bodies stored, by full key (`bucket/key`).
    stored: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    stored_bytes: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Adds a record; its index for updates (`None` once the log is full).
    fn record(&self, received: Received) -> Option<usize> {
        let mut records = lock(&self.records);
        if records.len() >= RECORDS_MAX {
            self.dropped.fetch_add(1, Relaxed);
            return None;
        }
        records.push(received);
        Some(records.len() - 1)
    }

    fn update(&self, index: Option<usize>, f: impl FnOnce(&mut Received)) {
        if let Some(i) = index {
            if let Some(r) = lock(&self.records).get_mut(i) {
                f(r);
            }
        }
    }

    fn update_conn(&self, id: u64, f: impl FnOnce(&mut Connection)) {
        if let Some(c) = lock(&self.connections).iter_mut().find(|c| c.id == id) {
            f(c);
        }
    }
}

/// A running hostile node; dropping it stops the node.
pub struct HostileNode {
    addr: SocketAddr,
    shared: Arc<Shared>,
    listener_fd: RawFd,
    accept_thread: Option<JoinHandle<()>>,
}

impl HostileNode {
    /// Starts a node on `addr` (port 0 = ephemeral).
    pub fn spawn(addr: SocketAddr, options: HostileOptions) -> Result<Self> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        socket.set_reuse_address(true)?;
        socket
            .bind(&addr.into())
            .with_context(|| format!("bind {addr}"))?;
        socket.listen(1024)?;
        let listener: TcpListener = socket.into();
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            options,
            started: Instant::now(),
            stop: AtomicBool::new(false),
            next_conn: AtomicU64::new(0),
            records: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            connections: Mutex::new(Vec::new()),
            fds: Mutex::new(HashMap::new()),
            stored: Mutex::new(HashMap::new()),
            stored_bytes: AtomicU64::new(0),
        });
        let listener_fd = listener.as_raw_fd();
        let accept_shared = shared.clone();
        let accept_thread = std::thread::Builder::new()
            .name(format!("hostile-accept-{}", addr.port()))
            .spawn(move || accept_loop(accept_shared, listener))
            .context("spawn accept thread")?;
        Ok(Self {
            addr,
            shared,
            listener_fd,
            accept_thread: Some(accept_thread),
        })
    }

    /// The address the node listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far (control calls excluded), in arrival order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.records).clone()
    }

    /// The requests whose target starts with `prefix`.
    pub fn received_for(&self, prefix: &str) -> Vec<Received> {
        lock(&self.shared.records)
            .iter()
            .filter(|r| r.target.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Every connection accepted so far.
    pub fn connections(&self) -> Vec<Connection> {
        lock(&self.shared.connections).clone()
    }

    /// The body stored under `key` (`bucket/key`) by a complete PUT, if any.
    pub fn stored(&self, key: &str) -> Option<Vec<u8>> {
        lock(&self.shared.stored)
            .get(key.trim_start_matches('/'))
            .map(|b| b.as_ref().clone())
    }

    /// Forgets the records (requests and connections), not the stored objects.
    pub fn clear_records(&self) {
        lock(&self.shared.records).clear();
        lock(&self.shared.connections).retain(|c| c.closed_ms.is_none());
    }

    /// Stops accepting, closes every connection and waits for the accept thread.
    pub fn shutdown(&mut self) {
        if self.shared.stop.swap(true, Relaxed) {
            return;
        }
        // SAFETY: the listener fd stays open until the accept thread (joined below) drops
        // it; shutdown(2) only wakes the blocked accept(2).
        unsafe { libc::shutdown(self.listener_fd, libc::SHUT_RDWR) };
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
        for &fd in lock(&self.shared.fds).values() {
            // SAFETY: a connection removes its fd from this map (under this lock) before
            // closing it, so every fd here is still open and still that connection's.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
    }
}

impl Drop for HostileNode {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts `n` hostile nodes on ephemeral loopback ports.
pub fn spawn_hostile_nodes(n: usize, options: &HostileOptions) -> Result<Vec<HostileNode>> {
    (0..n)
        .map(|_| HostileNode::spawn(SocketAddr::from(([127, 0, 0, 1], 0)), options.clone()))
        .collect()
}

fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                if shared.stop.load(Relaxed) {
                    return;
                }
                let id = shared.next_conn.fetch_add(1, Relaxed);
                lock(&shared.connections).push(Connection {
                    id,
                    peer,
                    opened_ms: shared.ms(),
                    closed_ms: None,
                    requests: 0,
                    unsolicited_bytes: 0,
                });
                let conn_shared = shared.clone();
                let spawned = std::thread::Builder::new()
                    .name("hostile-conn".into())
                    .stack_size(CONN_STACK_BYTES)
                    .spawn(move || serve(conn_shared, stream, id));
                if spawned.is_err() {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            Err(_) if shared.stop.load(Relaxed) => return,
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// What to do with the connection after a request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Next {
    KeepAlive,
    /// Close normally (FIN).
    Close,
    /// Close with an RST once what was written has been acknowledged.
    Reset,
}

/// A parsed request head.
struct Head {
    method: String,
    target: String,
    minor_version: u8,
    headers: Vec<(String, String)>,
    header_count: usize,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn keep_alive(&self) -> bool {
        self.minor_version >= 1 && !has_token(self.header("connection"), "close")
    }
}

/// How the request body is framed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Framing {
    None,
    Length(u64),
    Chunked,
}

struct Conn {
    shared: Arc<Shared>,
    id: u64,
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    requests: u64,
}

fn serve(shared: Arc<Shared>, stream: TcpStream, id: u64) {
    lock(&shared.fds).insert(id, stream.as_raw_fd());
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let mut conn = Conn {
        shared: shared.clone(),
        id,
        stream,
        buf: vec![0; READ_BUF_BYTES],
        start: 0,
        end: 0,
        requests: 0,
    };
    let next = loop {
        if shared.stop.load(Relaxed) {
            break Next::Close;
        }
        match conn.one_request() {
            Ok(Next::KeepAlive) => {}
            Ok(next) => break next,
            Err(_) => break Next::Close,
        }
    };
    if next == Next::Reset {
        reset(&conn.stream);
    }
    // Leave the shutdown map before the fd closes, so shutdown never touches a reused
    // descriptor.
    lock(&shared.fds).remove(&id);
    shared.update_conn(id, |c| c.closed_ms = Some(shared.ms()));
    drop(conn);
}

/// Waits (bounded) until everything written on `stream` has been acknowledged, so an RST
/// that follows cannot discard it.
fn wait_sent(stream: &TcpStream) {
    let deadline = Instant::now() + SENT_WAIT;
    loop {
        let mut unacked: libc::c_int = 0;
        // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int through the valid pointer.
        let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut unacked) };
        if rc != 0 || unacked == 0 || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Arms an RST for the close of `stream` (SO_LINGER 0) once what was written is
/// acknowledged; the caller then drops it.
fn reset(stream: &TcpStream) {
    wait_sent(stream);
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

impl Conn {
    /// Reads more bytes into `buf[end..]`, compacting first; 0 at EOF.
    fn fill(&mut self) -> Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = self.stream.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Reads and parses the next head; `None` on a clean close between requests, or when
    /// it has more fields than the node parses (then it is recorded with its count).
    fn read_head(&mut self) -> Result<Option<Head>> {
        loop {
            if self.end > self.start {
                let mut slots = vec![httparse::EMPTY_HEADER; HEADER_SLOTS];
                let mut req = httparse::Request::new(&mut slots);
                match req.parse(&self.buf[self.start..self.end]) {
                    Ok(httparse::Status::Complete(len)) => {
                        let head = Head {
                            method: req.method.unwrap_or("").to_string(),
                            target: req.path.unwrap_or("").to_string(),
                            minor_version: req.version.unwrap_or(1),
                            header_count: req.headers.len(),
                            headers: req
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
                    Ok(httparse::Status::Partial) => {
                        if self.end - self.start > HEAD_BYTES_MAX {
                            bail!("request head larger than {HEAD_BYTES_MAX} bytes");
                        }
                    }
                    Err(httparse::Error::TooManyHeaders) => {
                        // More fields than the node parses: recorded by its request line
                        // (once the head is complete), never answered.
                        let bytes = &self.buf[self.start..self.end];
                        let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
                            if bytes.len() > HEAD_BYTES_MAX {
                                bail!("request head larger than {HEAD_BYTES_MAX} bytes");
                            }
                            if self.fill()? == 0 {
                                bail!("closed inside a request head");
                            }
                            continue;
                        };
                        let line = String::from_utf8_lossy(
                            bytes.split(|&b| b == b'\n').next().unwrap_or_default(),
                        )
                        .trim_end()
                        .to_string();
                        let mut words = line.split(' ');
                        let head = Head {
                            method: words.next().unwrap_or("").to_string(),
                            target: words.next().unwrap_or("").to_string(),
                            minor_version: 1,
                            headers: Vec::new(),
                            header_count: bytes[..end]
                                .split(|&b| b == b'\n')
                                .count()
                                .saturating_sub(1),
                        };
                        self.start += end + 4;
                        return Ok(Some(head));
                    }
                    Err(e) => bail!("bad request head: {e}"),
                }
            }
            if self.fill()? == 0 {
                if self.end == self.start {
                    return Ok(None);
                }
                bail!("closed inside a request head");
            }
        }
    }

    /// Reads up to `limit` body bytes (by `framing`), feeding them to `sink`; returns
    /// (bytes read, complete).
    fn read_body(
        &mut self,
        framing: Framing,
        limit: u64,
        record: Option<usize>,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(u64, bool)> {
        let mut read: u64 = 0;
        let shared = self.shared.clone();
        let note = |read: u64, complete: bool| {
            shared.update(record, |r| {
                r.body_bytes = read;
                r.body_complete = complete;
            })
        };
        match framing {
            Framing::None => {
                note(0, true);
                Ok((0, true))
            }
            Framing::Length(total) => {
                let want = total.min(limit);
                while read < want {
                    if self.start == self.end && self.fill()? == 0 {
                        note(read, false);
                        bail!("closed after {read} of {total} body bytes");
                    }
                    let take = ((want - read) as usize).min(self.end - self.start);
                    sink(&self.buf[self.start..self.start + take]);
                    self.start += take;
                    read += take as u64;
                    note(read, read == total);
                }
                note(read, read == total);
                Ok((read, read == total))
            }
            Framing::Chunked => {
                let mut decoder = ChunkedDecoder::new();
                loop {
                    if self.start == self.end && self.fill()? == 0 {
                        note(read, false);
                        bail!("closed inside a chunked body");
                    }
                    let mut payload = 0u64;
                    let used = decoder.feed(&self.buf[self.start..self.end], &mut |p| {
                        sink(p);
                        payload += p.len() as u64;
                        Ok(())
                    })?;
                    self.start += used;
                    read += payload;
                    note(read, decoder.is_done());
                    if decoder.is_done() {
                        return Ok((read, true));
                    }
                    if read >= limit {
                        return Ok((read, false));
                    }
                }
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).context("write")
    }

    /// Writes the pattern of `target` from `offset` for `len` bytes.
    fn write_pattern(&mut self, target: &str, offset: u64, len: u64) -> Result<()> {
        let seed = crate::pattern::key_seed(script::pattern_key(target));
        let mut buf = vec![0u8; SEND_STEP_BYTES];
        let mut sent = 0u64;
        while sent < len {
            let n = ((len - sent) as usize).min(buf.len());
            crate::pattern::fill(seed, offset + sent, &mut buf[..n]);
            self.write(&buf[..n])?;
            sent += n as u64;
        }
        Ok(())
    }

    fn one_request(&mut self) -> Result<Next> {
        let Some(head) = self.read_head()? else {
            return Ok(Next::Close);
        };
        let seq = self.requests;
        self.requests += 1;
        let id = self.id;
        self.shared.update_conn(id, |c| c.requests += 1);
        if head.target.starts_with("/_hostile/") {
            return self.control(&head);
        }
        let framing = if has_token(head.header("transfer-encoding"), "chunked") {
            Framing::Chunked
        } else {
            match head.header("content-length") {
                Some(v) => Framing::Length(v.parse().context("bad Content-Length")?),
                None => Framing::None,
            }
        };
        let script = Script::from_target(&head.target);
        let record = self.shared.record(Received {
            conn: id,
            seq,
            at_ms: self.shared.ms(),
            method: head.method.clone(),
            target: head.target.clone(),
            minor_version: head.minor_version,
            headers: head.headers.clone(),
            header_count: head.header_count,
            body_bytes: 0,
            body_complete: framing == Framing::None,
            mode: script
                .as_ref()
                .map_or("error".to_string(), |s| s.name().to_string()),
            answered: None,
        });
        let over = match (&script, self.shared.options.close_over_headers) {
            (Ok(Script::HeaderClose { over, .. }), _) => Some(*over),
            (_, over) => over,
        };
        if over.is_some_and(|over| head.header_count > over) || head.header_count > HEADER_SLOTS {
            // The query of death: the node goes away without a word.
            return Ok(Next::Close);
        }
        let script = match script {
            Ok(s) => s,
            Err(e) => {
                self.read_body(framing, u64::MAX, record, &mut |_| {})?;
                let body = s3_error("InvalidArgument", &format!("{e:#}"));
                self.answer_plain(&head, 400, "Bad Request", &body, record)?;
                return Ok(keep(&head));
            }
        };
        if let Script::EarlyAnswer { after, close } = script {
            return self.early_answer(framing, after, close, record);
        }
        // Every other script reads the whole request body first.
        if framing != Framing::None
            && head
                .header("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let mut body = Vec::new();
        let keep_body = head.method == "PUT";
        let (_, complete) = self.read_body(framing, u64::MAX, record, &mut |bytes| {
            if keep_body {
                body.extend_from_slice(bytes);
            }
        })?;
        if !complete {
            return Ok(Next::Close);
        }
        self.run(&head, script, body, record)
    }

    /// Answers a control call.
    fn control(&mut self, head: &Head) -> Result<Next> {
        let (path, _) = script::split_target(&head.target);
        let (status, body) = match (head.method.as_str(), path) {
            ("GET", "/_hostile/received") => {
                let records = lock(&self.shared.records);
                let items: Vec<String> = records.iter().map(Received::to_json).collect();
                (200, format!("[{}]", items.join(",\n")))
            }
            ("GET", "/_hostile/connections") => {
                let conns = lock(&self.shared.connections);
                let items: Vec<String> = conns.iter().map(Connection::to_json).collect();
                (200, format!("[{}]", items.join(",\n")))
            }
            ("POST", "/_hostile/clear") => {
                lock(&self.shared.records).clear();
                lock(&self.shared.connections).retain(|c| c.closed_ms.is_none());
                (200, "{}".to_string())
            }
            _ => (404, "{\"error\":\"no such control call\"}".to_string()),
        };
        // Control calls carry no body the node needs.
        if let Some(len) = head.header("content-length") {
            let len: u64 = len.parse().unwrap_or(0);
            self.read_body(Framing::Length(len), u64::MAX, None, &mut |_| {})?;
        }
        let reply = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n{body}",
            if status == 200 { "OK" } else { "Not Found" },
            body.len(),
            if head.keep_alive() {
                ""
            } else {
                "Connection: close\r\n"
            }
        );
        self.write(reply.as_bytes())?;
        Ok(keep(head))
    }

    /// A complete answer with a small in-memory body.
    fn answer_plain(
        &mut self,
        head: &Head,
        status: u16,
        reason: &str,
        body: &[u8],
        record: Option<usize>,
    ) -> Result<()> {
        let mut out = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if head.keep_alive() {
                ""
            } else {
                "Connection: close\r\n"
            }
        )
        .into_bytes();
        out.extend_from_slice(body);
        self.shared.update(record, |r| r.answered = Some(status));
        self.write(&out)?;
        Ok(())
    }

    /// The well-behaved answer (see [`Script::Plain`]).
    fn plain(
        &mut self,
        head: &Head,
        size: u64,
        put_body: Vec<u8>,
        record: Option<usize>,
    ) -> Result<Next> {
        let keep = keep(head);
        let connection = if keep == Next::KeepAlive {
            ""
        } else {
            "Connection: close\r\n"
        };
        let key = script::pattern_key(&head.target).to_string();
        match head.method.as_str() {
            "PUT" => {
                let len = put_body.len() as u64;
                let etag = hex::encode(Md5::digest(&put_body));
                let room =
                    self.shared.stored_bytes.fetch_add(len, Relaxed) + len <= STORED_BYTES_MAX;
                if !room {
                    self.shared.stored_bytes.fetch_sub(len, Relaxed);
                    let body = s3_error("InsufficientStorage", "the hostile node is full");
                    self.answer_plain(head, 507, "Insufficient Storage", &body, record)?;
                    return Ok(keep);
                }
                if let Some(old) = lock(&self.shared.stored).insert(key, Arc::new(put_body)) {
                    self.shared
                        .stored_bytes
                        .fetch_sub(old.len() as u64, Relaxed);
                }
                let out = format!(
                    "HTTP/1.1 200 OK\r\nETag: \"{etag}\"\r\nContent-Length: 0\r\n{connection}\r\n"
                );
                self.shared.update(record, |r| r.answered = Some(200));
                self.write(out.as_bytes())?;
                Ok(keep)
            }
            "DELETE" => {
                if let Some(old) = lock(&self.shared.stored).remove(&key) {
                    self.shared
                        .stored_bytes
                        .fetch_sub(old.len() as u64, Relaxed);
                }
                self.shared.update(record, |r| r.answered = Some(204));
                self.write(format!("HTTP/1.1 204 No Content\r\n{connection}\r\n").as_bytes())?;
                Ok(keep)
            }
            "GET" | "HEAD" => {
                let stored = lock(&self.shared.stored).get(&key).cloned();
                let (len, etag) = match &stored {
                    Some(body) => (body.len() as u64, hex::encode(Md5::digest(body.as_ref()))),
                    None if key.is_empty() => (0, "root".to_string()),
                    None => (
                        size,
                        format!("{:016x}-{size}", crate::pattern::key_seed(&key)),
                    ),
                };
                let out = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nETag: \"{etag}\"\r\nContent-Length: {len}\r\n{connection}\r\n"
                );
                self.shared.update(record, |r| r.answered = Some(200));
                self.write(out.as_bytes())?;
                if head.method == "GET" {
                    match stored {
                        Some(body) => self.write(&body)?,
                        None => self.write_pattern(&head.target, 0, len)?,
                    }
                }
                Ok(keep)
            }
            _ => {
                let body = s3_error(
                    "NotImplemented",
                    "the hostile node knows GET, HEAD, PUT, DELETE",
                );
                self.answer_plain(head, 501, "Not Implemented", &body, record)?;
                Ok(keep)
            }
        }
    }

    /// Runs `script` once the request body has been read.
    fn run(
        &mut self,
        head: &Head,
        script: Script,
        put_body: Vec<u8>,
        record: Option<usize>,
    ) -> Result<Next> {
        let target = head.target.clone();
        let answered =
            |shared: &Shared, status: u16| shared.update(record, |r| r.answered = Some(status));
        match script {
            Script::Plain { size } | Script::HeaderClose { size, .. } => {
                self.plain(head, size, put_body, record)
            }
            Script::Interim { codes, gap, size } => {
                for code in codes {
                    std::thread::sleep(gap);
                    self.write(&interim(code))?;
                }
                std::thread::sleep(gap);
                self.plain(head, size, put_body, record)
            }
            Script::InterimFlood { every, count, size } => {
                let started = Instant::now();
                let mut sent: u64 = 0;
                let codes = [102, 103, 100];
                // A burst is written in batches, so thousands of answers cost few syscalls.
                let mut batch = Vec::new();
                loop {
                    if count.is_some_and(|c| sent >= c)
                        || started.elapsed() > FLOOD_MAX
                        || self.shared.stop.load(Relaxed)
                    {
                        break;
                    }
                    batch.extend_from_slice(&interim(codes[(sent % 3) as usize]));
                    sent += 1;
                    if !every.is_zero() || batch.len() >= SEND_STEP_BYTES {
                        if self.write(&batch).is_err() {
                            // The peer gave up: the flood is over.
                            return Ok(Next::Close);
                        }
                        batch.clear();
                        std::thread::sleep(every);
                    }
                }
                self.write(&batch)?;
                if count.is_none() {
                    return Ok(Next::Close);
                }
                self.plain(head, size, put_body, record)
            }
            Script::CloseDelimitedReset { bytes } => {
                answered(&self.shared, 200);
                self.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                )?;
                self.write_pattern(&target, 0, bytes)?;
                Ok(Next::Reset)
            }
            Script::ChunkedReset { bytes } => {
                answered(&self.shared, 200);
                self.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
                )?;
                let body = script::pattern_bytes(&target, bytes);
                for chunk in body.chunks(CHUNK_BYTES) {
                    let mut out = format!("{:x}\r\n", chunk.len()).into_bytes();
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                    self.write(&out)?;
                }
                Ok(Next::Reset)
            }
            Script::LengthReset { size, bytes, etag } => {
                let etag = if etag {
                    format!(
                        "ETag: \"{:016x}-{size}\"\r\n",
                        crate::pattern::key_seed(script::pattern_key(&target))
                    )
                } else {
                    String::new()
                };
                answered(&self.shared, 200);
                self.write(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n{etag}Content-Length: {size}\r\n\r\n"
                    )
                    .as_bytes(),
                )?;
                self.write_pattern(&target, 0, bytes.min(size))?;
                Ok(Next::Reset)
            }
            Script::OversizedHead { head_bytes, size } => {
                let mut out =
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n".to_vec();
                let mut i = 0;
                while (out.len() as u64) < head_bytes {
                    out.extend_from_slice(
                        format!("X-Filler-{i:05}: {}\r\n", "f".repeat(1000)).as_bytes(),
                    );
                    i += 1;
                }
                out.extend_from_slice(format!("Content-Length: {size}\r\n\r\n").as_bytes());
                answered(&self.shared, 200);
                self.write(&out)?;
                self.write_pattern(&target, 0, size)?;
                Ok(keep(head))
            }
            Script::MalformedHead { kind, size } => {
                let body = script::pattern_bytes(&target, size);
                let status = if kind == script::Malformed::Switching {
                    101
                } else {
                    200
                };
                answered(&self.shared, status);
                self.write(&kind.response(&body))?;
                wait_sent(&self.stream);
                Ok(Next::Close)
            }
            Script::WrongLengthShort { size, sent } => {
                answered(&self.shared, 200);
                self.write(
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n").as_bytes(),
                )?;
                self.write_pattern(&target, 0, sent)?;
                wait_sent(&self.stream);
                let _ = self.stream.shutdown(Shutdown::Both);
                Ok(Next::Close)
            }
            Script::WrongLengthLong { size } => {
                let mut out = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
                )
                .into_bytes();
                out.extend_from_slice(&script::pattern_bytes(&target, size));
                out.extend_from_slice(&script::smuggled_response());
                answered(&self.shared, 200);
                self.write(&out)?;
                Ok(keep(head))
            }
            Script::IdleBytes { size, delay } => {
                let next = self.plain(head, size, put_body, record)?;
                let stream = self.stream.try_clone().context("clone the stream")?;
                let shared = self.shared.clone();
                let id = self.id;
                std::thread::Builder::new()
                    .name("hostile-idle-bytes".into())
                    .spawn(move || {
                        std::thread::sleep(delay);
                        let bytes = script::smuggled_response();
                        if (&stream).write_all(&bytes).is_ok() {
                            shared.update_conn(id, |c| c.unsolicited_bytes += bytes.len() as u64);
                        }
                    })
                    .context("spawn the idle-bytes writer")?;
                Ok(next)
            }
            Script::EarlyAnswer { .. } => unreachable!("answered before the body is read"),
        }
    }

    /// `early_answer`: a final 400 after `after` body bytes, then the close.
    fn early_answer(
        &mut self,
        framing: Framing,
        after: u64,
        close: EarlyClose,
        record: Option<usize>,
    ) -> Result<Next> {
        let (_, complete) = self.read_body(framing, after, record, &mut |_| {})?;
        let body = early_answer_body();
        let mut out = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        self.shared.update(record, |r| r.answered = Some(400));
        self.write(&out)?;
        if complete {
            return Ok(Next::Close);
        }
        match close {
            EarlyClose::Reset => Ok(Next::Reset),
            EarlyClose::Drain => {
                let _ = self.stream.shutdown(Shutdown::Write);
                let deadline = Instant::now() + DRAIN_MAX;
                let _ = self
                    .stream
                    .set_read_timeout(Some(Duration::from_millis(200)));
                let mut scratch = vec![0u8; 64 * 1024];
                while Instant::now() < deadline {
                    match self.stream.read(&mut scratch) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => break,
                    }
                }
                Ok(Next::Close)
            }
        }
    }
}

/// Whether the connection stays open after a complete answer to `head`.
fn keep(head: &Head) -> Next {
    if head.keep_alive() {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

/// An interim answer: `100 Continue`, `102 Processing`, `103 Early Hints` (with `Link`
/// headers), or another 1xx.
fn interim(code: u16) -> Vec<u8> {
    match code {
        100 => b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
        102 => b"HTTP/1.1 102 Processing\r\n\r\n".to_vec(),
        103 => b"HTTP/1.1 103 Early Hints\r\nLink: </hostile/style.css>; rel=preload; as=style\r\nLink: </hostile/app.js>; rel=preload; as=script\r\n\r\n".to_vec(),
        other => format!("HTTP/1.1 {other} Interim\r\n\r\n").into_bytes(),
    }
}

/// The body of `early_answer`'s final 400 (an S3 XML error).
pub fn early_answer_body() -> Vec<u8> {
    s3_error(
        "InvalidArgument",
        "the hostile node answers before the upload is over",
    )
}

/// An S3 XML error body.
pub fn s3_error(code: &str, message: &str) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message><RequestId>hostile</RequestId></Error>",
        message
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostile::script::{expected_body, SMUGGLED_BODY};

    fn node() -> HostileNode {
        HostileNode::spawn("127.0.0.1:0".parse().unwrap(), HostileOptions::default()).unwrap()
    }

    fn exchange(addr: SocketAddr, request: &[u8]) -> (Vec<u8>, bool) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        let reset = loop {
            match s.read(&mut buf) {
                Ok(0) => break false,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(e) => panic!("read: {e}"),
            }
        };
        (out, reset)
    }

    fn body_after_head(bytes: &[u8]) -> &[u8] {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        &bytes[end + 4..]
    }

    #[test]
    fn plain_answers_carry_the_pattern_and_puts_are_stored() {
        let n = node();
        let (out, reset) = exchange(
            n.addr(),
            b"GET /data/k1?size=100 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(!reset);
        assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert_eq!(
            body_after_head(&out),
            expected_body("/data/k1?size=100").unwrap().unwrap()
        );
        let (out, _) = exchange(
            n.addr(),
            b"PUT /data/p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        );
        assert!(
            out.starts_with(b"HTTP/1.1 200 OK\r\n"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(n.stored("data/p").as_deref(), Some(&b"hello"[..]));
        let (out, _) = exchange(
            n.addr(),
            b"GET /data/p HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(body_after_head(&out), b"hello");
        let got = n.received_for("/data/");
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].method, "PUT");
        assert_eq!((got[1].body_bytes, got[1].body_complete), (5, true));
        assert_eq!(got[2].answered, Some(200));
        assert!(n.connections().len() >= 3);
    }

    #[test]
    fn interim_then_final_on_one_connection() {
        let n = node();
        let (out, _) = exchange(
            n.addr(),
            b"GET /hostile/interim/a?size=10&gap_ms=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("HTTP/1.1 103 Early Hints\r\nLink: "),
            "{text}"
        );
        assert!(
            text.contains("\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\n"),
            "{text}"
        );
    }

    #[test]
    fn cut_bodies_end_in_a_reset() {
        let n = node();
        for target in [
            "/hostile/close_delimited_reset/a?bytes=1000",
            "/hostile/length_reset/a?bytes=1000",
            "/hostile/chunked_reset/a?bytes=1000",
        ] {
            let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
            let (out, reset) = exchange(n.addr(), req.as_bytes());
            assert!(reset, "{target}: no reset");
            assert!(out.len() > 1000, "{target}: {} bytes", out.len());
        }
        let (out, reset) = exchange(
            n.addr(),
            b"GET /hostile/wrong_length_short/a?size=1000&sent=10 HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        assert!(!reset);
        assert_eq!(body_after_head(&out).len(), 10);
    }

    #[test]
    fn smuggling_modes_leave_a_fake_response() {
        let n = node();
        let (out, _) = exchange(
            n.addr(),
            b"GET /hostile/wrong_length_long/a?size=10 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(out.ends_with(SMUGGLED_BODY));
        let mut s = TcpStream::connect(n.addr()).unwrap();
        s.write_all(b"GET /hostile/idle_bytes/a?size=10&delay_ms=50 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if got.ends_with(SMUGGLED_BODY) {
                break;
            }
        }
        assert!(
            got.ends_with(SMUGGLED_BODY),
            "{}",
            String::from_utf8_lossy(&got)
        );
    }

    #[test]
    fn header_close_and_bad_targets() {
        let n = node();
        let mut req = "GET /hostile/header_close/a HTTP/1.1\r\nHost: x\r\n".to_string();
        for i in 0..70 {
            req.push_str(&format!("X-F{i}: v\r\n"));
        }
        req.push_str("\r\n");
        let (out, _) = exchange(n.addr(), req.as_bytes());
        assert!(out.is_empty());
        let rec = n.received_for("/hostile/header_close/");
        assert_eq!(
            (rec.len(), rec[0].header_count, rec[0].answered),
            (1, 71, None)
        );
        let (out, _) = exchange(
            n.addr(),
            b"GET /hostile/bogus/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(out.starts_with(b"HTTP/1.1 400 "));
        assert!(String::from_utf8_lossy(&out).contains("unknown hostile mode"));
    }

    #[test]
    fn early_answers_stop_reading() {
        let n = node();
        let mut s = TcpStream::connect(n.addr()).unwrap();
        s.write_all(
            b"PUT /hostile/early_answer/a?after=1000&close=drain HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
        )
        .unwrap();
        s.write_all(&[7u8; 2000]).unwrap();
        let mut buf = [0u8; 4096];
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let k = s.read(&mut buf).unwrap();
        assert!(buf[..k].starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
        let rec = n.received_for("/hostile/early_answer/");
        assert_eq!(rec[0].answered, Some(400));
        assert!(rec[0].body_bytes >= 1000 && !rec[0].body_complete);
    }
}
