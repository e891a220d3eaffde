//! The storage-node simulator: enough S3 over HTTP/1.1 keep-alive (path-style GET, HEAD,
//! PUT, DELETE, ranges, If-Match, 100-continue, chunked uploads) for weir to proxy, with
//! fault knobs that tests flip at run time.
//!
//! Threading: one accept thread per node and one blocking thread per connection. Bodies
//! leave with `sendfile(2)` from a memfd per object, so a connection costs one syscall per
//! MiB and the only copy is the client's `recv`; the simulator is not the bottleneck.
//!
//! Control API (not counted in `requests`, answered even while `down`):
//! `GET /_sim/stats`, `GET /_sim/faults`, `POST /_sim/faults?latency_ms=5&down=1&clear=1…`,
//! `GET /_sim/sigv4`, `POST /_sim/sigv4?access_key=K&secret=S` and `POST /_sim/sigv4?clear`
//! (which access keys' signatures the node checks, see `sigcheck`).

mod conn;
pub mod sigcheck;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::pattern::Synthetic;
use store::Object;

/// Stack of a connection thread: the handler keeps its buffers on the heap.
const CONN_STACK_BYTES: usize = 256 * 1024;
/// Listen backlog of a node.
const LISTEN_BACKLOG: i32 = 1024;
/// Distinct access keys counted per node; requests of further keys (and of keys with
/// characters other than `A-Z a-z 0-9 . _ -`) count under [`OTHER_ACCESS_KEYS`].
const ACCESS_KEYS_COUNTED_MAX: usize = 64;
/// Where requests of keys beyond [`ACCESS_KEYS_COUNTED_MAX`] or with odd characters count.
pub const OTHER_ACCESS_KEYS: &str = "(other)";

/// Fault knobs of one node; the default is a healthy node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Delay before every response head (not before `100 Continue`).
    pub latency_ms: u64,
    /// Stop sending a GET body after this many bytes, keeping the socket open.
    pub stall_after_bytes: Option<u64>,
    /// Reset the connection (RST) after this many GET body bytes.
    pub reset_after_bytes: Option<u64>,
    /// Fraction (0..=1) of requests answered with 503 `SlowDown`.
    pub slowdown_ratio: f64,
    /// Fraction (0..=1) of requests answered with the S3 error `error_code` and the
    /// status `error_status` (any code on any status: how weir reads nodes' codes).
    pub error_ratio: f64,
    /// The status of an injected error (`error_ratio`).
    pub error_status: u16,
    /// The S3 `<Code>` of an injected error (`error_ratio`); empty sends a body without one.
    pub error_code: String,
    /// Refuse: every request, and every body in flight, ends in an RST.
    pub down: bool,
    /// Close a kept-alive connection, without an answer, when a second request comes on
    /// it: a node closing an idle connection just as its client reuses it.
    pub drop_reused: bool,
}

impl Faults {
    /// Applies a query string such as `latency_ms=5&stall_after_bytes=off&down=1`; `clear`
    /// (or `reset`) first restores the defaults. Unknown keys are an error.
    pub fn apply_query(&mut self, query: &str) -> Result<()> {
        let pairs: Vec<(&str, &str)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .collect();
        if pairs.iter().any(|(k, _)| *k == "clear" || *k == "reset") {
            *self = Faults::default();
        }
        for (key, value) in pairs {
            match key {
                "clear" | "reset" => {}
                "latency_ms" => self.latency_ms = parse_u64(key, value)?,
                "stall_after_bytes" => self.stall_after_bytes = parse_optional(key, value)?,
                "reset_after_bytes" => self.reset_after_bytes = parse_optional(key, value)?,
                "slowdown_ratio" => self.slowdown_ratio = parse_ratio(key, value)?,
                "error_ratio" => self.error_ratio = parse_ratio(key, value)?,
                "error_status" => {
                    let status: u16 = value
                        .parse()
                        .with_context(|| format!("{key}={value:?} is not a status"))?;
                    if !(400..=599).contains(&status) {
                        bail!("{key}={value} is not an error status (400..=599)");
                    }
                    self.error_status = status;
                }
                "error_code" => {
                    if !value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.')
                    {
                        bail!("{key}={value:?} is not an S3 error code");
                    }
                    self.error_code = value.to_string();
                }
                "down" => self.down = parse_bool(key, value)?,
                "drop_reused" => self.drop_reused = parse_bool(key, value)?,
                other => bail!("unknown fault {other:?}"),
            }
        }
        Ok(())
    }

    /// The knobs as a JSON object.
    pub fn to_json(&self) -> String {
        let optional = |v: Option<u64>| v.map_or("null".to_string(), |v| v.to_string());
        format!(
            "{{\"latency_ms\":{},\"stall_after_bytes\":{},\"reset_after_bytes\":{},\"slowdown_ratio\":{},\"error_ratio\":{},\"error_status\":{},\"error_code\":\"{}\",\"down\":{},\"drop_reused\":{}}}",
            self.latency_ms,
            optional(self.stall_after_bytes),
            optional(self.reset_after_bytes),
            self.slowdown_ratio,
            self.error_ratio,
            self.error_status,
            self.error_code,
            self.down,
            self.drop_reused
        )
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value {
        "" | "1" | "true" | "on" | "yes" => Ok(true),
        "0" | "false" | "off" | "no" => Ok(false),
        other => bail!("{key}={other:?} is not a boolean"),
    }
}

fn parse_ratio(key: &str, value: &str) -> Result<f64> {
    let ratio: f64 = value
        .parse()
        .with_context(|| format!("{key}={value:?} is not a number"))?;
    if !(0.0..=1.0).contains(&ratio) {
        bail!("{key}={value} is outside 0..=1");
    }
    Ok(ratio)
}

fn parse_u64(key: &str, value: &str) -> Result<u64> {
    value
        .parse()
        .with_context(|| format!("{key}={value:?} is not a whole number"))
}

fn parse_optional(key: &str, value: &str) -> Result<Option<u64>> {
    match value {
        "" | "off" | "none" | "null" => Ok(None),
        _ => parse_u64(key, value).map(Some),
    }
}

/// The fault knobs as atomics, read by connection threads without a lock.
#[derive(Default)]
struct FaultCells {
    latency_ms: AtomicU64,
    /// `u64::MAX` = off.
    stall_after_bytes: AtomicU64,
    /// `u64::MAX` = off.
    reset_after_bytes: AtomicU64,
    /// Parts per million.
    slowdown_ppm: AtomicU64,
    /// Parts per million.
    error_ppm: AtomicU64,
    error_status: AtomicU64,
    /// Read only when `error_ppm` is not 0 (a lock on that path only).
    error_code: RwLock<String>,
    down: AtomicBool,
    drop_reused: AtomicBool,
}

impl FaultCells {
    fn load(&self) -> Faults {
        let optional = |v: u64| (v != u64::MAX).then_some(v);
        Faults {
            latency_ms: self.latency_ms.load(Relaxed),
            stall_after_bytes: optional(self.stall_after_bytes.load(Relaxed)),
            reset_after_bytes: optional(self.reset_after_bytes.load(Relaxed)),
            slowdown_ratio: self.slowdown_ppm.load(Relaxed) as f64 / 1e6,
            error_ratio: self.error_ppm.load(Relaxed) as f64 / 1e6,
            error_status: u16::try_from(self.error_status.load(Relaxed)).unwrap_or(500),
            error_code: if self.error_ppm.load(Relaxed) == 0 {
                String::new()
            } else {
                self.error_code
                    .read()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .clone()
            },
            down: self.down.load(Relaxed),
            drop_reused: self.drop_reused.load(Relaxed),
        }
    }

    fn store(&self, faults: &Faults) {
        self.latency_ms.store(faults.latency_ms, Relaxed);
        self.stall_after_bytes
            .store(faults.stall_after_bytes.unwrap_or(u64::MAX), Relaxed);
        self.reset_after_bytes
            .store(faults.reset_after_bytes.unwrap_or(u64::MAX), Relaxed);
        self.slowdown_ppm
            .store((faults.slowdown_ratio * 1e6).round() as u64, Relaxed);
        *self
            .error_code
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = faults.error_code.clone();
        self.error_status
            .store(u64::from(faults.error_status), Relaxed);
        self.error_ppm
            .store((faults.error_ratio * 1e6).round() as u64, Relaxed);
        self.down.store(faults.down, Relaxed);
        self.drop_reused.store(faults.drop_reused, Relaxed);
    }
}

/// Counters of one node (a snapshot).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// S3 requests received (control requests and refused ones excluded).
    pub requests: u64,
    /// Request bytes read (heads and bodies).
    pub bytes_in: u64,
    /// Response bytes written (heads and bodies).
    pub bytes_out: u64,
    /// Connections accepted since start.
    pub connections: u64,
    /// Connections open now.
    pub connections_active: u64,
    /// Requests refused because the node was `down`.
    pub refused: u64,
    /// Responses with a 2xx status.
    pub responses_2xx: u64,
    /// Responses with a 4xx status.
    pub responses_4xx: u64,
    /// Responses with a 5xx status (SlowDown included).
    pub responses_5xx: u64,
    /// Bodies cut by a stall or reset fault (or by `down` mid-body).
    pub bodies_cut: u64,
    /// Requests whose SigV4 header signature was checked (signed by a key the node holds a
    /// secret for; see `sigcheck`), valid or not.
    pub sigv4_checked: u64,
    /// Chunk signatures of streaming-signed uploads checked and found valid.
    pub sigv4_chunks_checked: u64,
    /// Requests answered 403 `SignatureDoesNotMatch` (a bad header or chunk signature).
    pub sigv4_failures: u64,
    /// Of `requests`: those that carried an access key id (SigV4/SigV2 `Authorization` or
    /// a presigned query), by key. Requests without a key are not in here.
    pub requests_by_access_key: BTreeMap<String, u64>,
}

impl SimStats {
    /// The counters as a JSON object.
    pub fn to_json(&self) -> String {
        // Counted keys are of A-Z a-z 0-9 . _ - (or the "(other)" bucket): no escaping.
        let by_key: Vec<String> = self
            .requests_by_access_key
            .iter()
            .map(|(key, n)| format!("\"{key}\":{n}"))
            .collect();
        format!(
            "{{\"requests\":{},\"bytes_in\":{},\"bytes_out\":{},\"connections\":{},\"connections_active\":{},\"refused\":{},\"responses_2xx\":{},\"responses_4xx\":{},\"responses_5xx\":{},\"bodies_cut\":{},\"sigv4_checked\":{},\"sigv4_chunks_checked\":{},\"sigv4_failures\":{},\"requests_by_access_key\":{{{}}}}}",
            self.requests,
            self.bytes_in,
            self.bytes_out,
            self.connections,
            self.connections_active,
            self.refused,
            self.responses_2xx,
            self.responses_4xx,
            self.responses_5xx,
            self.bodies_cut,
            self.sigv4_checked,
            self.sigv4_chunks_checked,
            self.sigv4_failures,
            by_key.join(",")
        )
    }

    /// Reads back what [`SimStats::to_json`] wrote (`GET /_sim/stats` of a simulator in
    /// another process). Unknown numeric fields are ignored; a missing field reads as 0.
    pub fn from_json(text: &str) -> Result<SimStats> {
        let mut stats = SimStats::default();
        let mut p = JsonCursor::new(text);
        p.expect(b'{')?;
        if p.eat(b'}') {
            return Ok(stats);
        }
        loop {
            let name = p.string()?;
            p.expect(b':')?;
            if name == "requests_by_access_key" {
                p.expect(b'{')?;
                if !p.eat(b'}') {
                    loop {
                        let key = p.string()?;
                        p.expect(b':')?;
                        let n = p.number()?;
                        stats.requests_by_access_key.insert(key, n);
                        if p.eat(b'}') {
                            break;
                        }
                        p.expect(b',')?;
                    }
                }
            } else {
                let n = p.number()?;
                let mut ignored = 0;
                let field = match name.as_str() {
                    "requests" => &mut stats.requests,
                    "bytes_in" => &mut stats.bytes_in,
                    "bytes_out" => &mut stats.bytes_out,
                    "connections" => &mut stats.connections,
                    "connections_active" => &mut stats.connections_active,
                    "refused" => &mut stats.refused,
                    "responses_2xx" => &mut stats.responses_2xx,
                    "responses_4xx" => &mut stats.responses_4xx,
                    "responses_5xx" => &mut stats.responses_5xx,
                    "bodies_cut" => &mut stats.bodies_cut,
                    "sigv4_checked" => &mut stats.sigv4_checked,
                    "sigv4_chunks_checked" => &mut stats.sigv4_chunks_checked,
                    "sigv4_failures" => &mut stats.sigv4_failures,
                    _ => &mut ignored,
                };
                *field = n;
            }
            if p.eat(b'}') {
                return Ok(stats);
            }
            p.expect(b',')?;
        }
    }

    /// Requests of `key` (0 when none came).
    pub fn requests_of(&self, key: &str) -> u64 {
        self.requests_by_access_key.get(key).copied().unwrap_or(0)
    }
}

/// Just enough of a JSON reader for the simulator's flat stats object: strings without
/// escapes, unsigned integers, `{ } : ,` and whitespace.
struct JsonCursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> JsonCursor<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            bytes: text.as_bytes(),
            at: 0,
        }
    }

    fn skip_space(&mut self) {
        while self.at < self.bytes.len() && self.bytes[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.skip_space();
        if self.bytes.get(self.at) == Some(&byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, byte: u8) -> Result<()> {
        if !self.eat(byte) {
            bail!(
                "stats JSON: expected {:?} at byte {}",
                byte as char,
                self.at
            );
        }
        Ok(())
    }

    fn string(&mut self) -> Result<String> {
        self.expect(b'"')?;
        let start = self.at;
        while self.at < self.bytes.len() && self.bytes[self.at] != b'"' {
            if self.bytes[self.at] == b'\\' {
                bail!("stats JSON: escapes are not expected (byte {})", self.at);
            }
            self.at += 1;
        }
        if self.at == self.bytes.len() {
            bail!("stats JSON: unterminated string");
        }
        let text = std::str::from_utf8(&self.bytes[start..self.at])?.to_string();
        self.at += 1;
        Ok(text)
    }

    fn number(&mut self) -> Result<u64> {
        self.skip_space();
        let start = self.at;
        while self.at < self.bytes.len() && self.bytes[self.at].is_ascii_digit() {
            self.at += 1;
        }
        std::str::from_utf8(&self.bytes[start..self.at])?
            .parse()
            .with_context(|| format!("stats JSON: expected a number at byte {start}"))
    }
}

#[derive(Default)]
struct StatCells {
    requests: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    connections: AtomicU64,
    connections_active: AtomicU64,
    refused: AtomicU64,
    responses_2xx: AtomicU64,
    responses_4xx: AtomicU64,
    responses_5xx: AtomicU64,
    bodies_cut: AtomicU64,
    sigv4_checked: AtomicU64,
    sigv4_chunks_checked: AtomicU64,
    sigv4_failures: AtomicU64,
    /// Requests by access key id (bounded: see [`ACCESS_KEYS_COUNTED_MAX`]).
    by_access_key: Mutex<HashMap<String, u64>>,
}

impl StatCells {
    fn snapshot(&self) -> SimStats {
        SimStats {
            requests: self.requests.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            connections: self.connections.load(Relaxed),
            connections_active: self.connections_active.load(Relaxed),
            refused: self.refused.load(Relaxed),
            responses_2xx: self.responses_2xx.load(Relaxed),
            responses_4xx: self.responses_4xx.load(Relaxed),
            responses_5xx: self.responses_5xx.load(Relaxed),
            bodies_cut: self.bodies_cut.load(Relaxed),
            sigv4_checked: self.sigv4_checked.load(Relaxed),
            sigv4_chunks_checked: self.sigv4_chunks_checked.load(Relaxed),
            sigv4_failures: self.sigv4_failures.load(Relaxed),
            requests_by_access_key: self
                .by_access_key
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .iter()
                .map(|(k, n)| (k.clone(), *n))
                .collect(),
        }
    }

    /// Counts one request of `key`.
    fn count_access_key(&self, key: &str) {
        let plain = !key.is_empty()
            && key.len() <= 128
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        let mut map = self
            .by_access_key
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if plain {
            if let Some(n) = map.get_mut(key) {
                *n += 1;
                return;
            }
            if map.len() < ACCESS_KEYS_COUNTED_MAX {
                map.insert(key.to_string(), 1);
                return;
            }
        }
        *map.entry(OTHER_ACCESS_KEYS.to_string()).or_insert(0) += 1;
    }
}

/// How a node moves response bodies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BodyMode {
    /// `sendfile(2)` from the object's memfd (zero-copy on the send side).
    #[default]
    Sendfile,
    /// `pread` into a buffer and `write` (for measuring what sendfile saves).
    Copy,
}

/// Options of a node beyond its objects.
#[derive(Clone, Debug, Default)]
pub struct SimOptions {
    /// How bodies are sent.
    pub body_mode: BodyMode,
    /// Faults in force from the start.
    pub faults: Faults,
    /// Access key → secret: requests signed by these keys have their SigV4 signatures
    /// checked (see `sigcheck`); empty = nothing is checked.
    pub sigv4_secrets: Vec<(String, String)>,
}

/// State shared by a node's accept thread and its connection threads.
struct Node {
    objects: RwLock<HashMap<String, Arc<Object>>>,
    faults: FaultCells,
    stats: StatCells,
    options: SimOptions,
    /// Access key → secret of the signatures this node checks.
    sigv4_secrets: RwLock<HashMap<String, String>>,
    stop: AtomicBool,
    /// Open connections by id, so shutdown can wake their blocking reads.
    conns: Mutex<HashMap<u64, RawFd>>,
    next_conn_id: AtomicU64,
    request_seq: AtomicU64,
    /// What the last requests said about their client, oldest first (at most
    /// [`SEEN_MAX`]), for tests of what weir tells nodes.
    seen: Mutex<std::collections::VecDeque<Seen>>,
}

/// Requests remembered in [`SimNode::seen`].
pub const SEEN_MAX: usize = 256;

/// What one request told the node about its client: the forwarding header fields as they
/// arrived (each field line, in order) and the PROXY header of its connection, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The request target.
    pub target: String,
    /// `X-Forwarded-For`, `X-Real-IP` and `Forwarded` field lines as `(lower-case name,
    /// value)`.
    pub forwarding: Vec<(String, String)>,
    /// The PROXY header the connection started with: the v1 line without CRLF, or a v2
    /// header as `v2 <source> <destination>` (`v2 local` for LOCAL).
    pub proxy: Option<String>,
    /// Which of the node's connections carried the request (numbered from 0).
    pub connection: u64,
}

/// A running simulator node; dropping it stops the node.
pub struct SimNode {
    addr: SocketAddr,
    node: Arc<Node>,
    listener_fd: RawFd,
    accept_thread: Option<JoinHandle<()>>,
}

impl SimNode {
    /// Starts a node on `addr` (port 0 = ephemeral) serving `synthetic` objects.
    pub fn spawn(addr: SocketAddr, synthetic: &[Synthetic], options: SimOptions) -> Result<Self> {
        let objects: HashMap<String, Arc<Object>> =
            store::synthetic_objects(synthetic)?.into_iter().collect();
        let listener = listen(addr)?;
        let addr = listener.local_addr()?;
        let node = Arc::new(Node {
            objects: RwLock::new(objects),
            faults: FaultCells::default(),
            stats: StatCells::default(),
            sigv4_secrets: RwLock::new(options.sigv4_secrets.iter().cloned().collect()),
            options,
            stop: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            next_conn_id: AtomicU64::new(0),
            request_seq: AtomicU64::new(0),
            seen: Mutex::new(std::collections::VecDeque::new()),
        });
        node.faults.store(&node.options.faults);
        let listener_fd = listener.as_raw_fd();
        let accept_node = node.clone();
        let accept_thread = std::thread::Builder::new()
            .name(format!("sim-accept-{}", addr.port()))
            .spawn(move || accept_loop(accept_node, listener))
            .context("spawn accept thread")?;
        Ok(Self {
            addr,
            node,
            listener_fd,
            accept_thread: Some(accept_thread),
        })
    }

    /// What the last requests (at most [`SEEN_MAX`], oldest first) said about their
    /// client.
    pub fn seen(&self) -> Vec<Seen> {
        let seen = self.node.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.iter().cloned().collect()
    }

    /// The address the node listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A snapshot of the node's counters.
    pub fn stats(&self) -> SimStats {
        self.node.stats.snapshot()
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.node.faults.load()
    }

    /// Replaces the faults in force (takes effect on the next request or body chunk).
    pub fn set_faults(&self, faults: Faults) {
        self.node.faults.store(&faults);
    }

    /// Checks the SigV4 signatures of requests signed by `access_key` from now on (the
    /// secret replaces any earlier one for the key).
    pub fn check_sigv4(&self, access_key: &str, secret: &str) {
        self.node
            .sigv4_secrets
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(access_key.to_string(), secret.to_string());
    }

    /// Stops checking signatures (of every key).
    pub fn clear_sigv4(&self) {
        self.node
            .sigv4_secrets
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }

    /// Stops accepting, closes every connection and waits for the accept thread.
    pub fn shutdown(&mut self) {
        if self.node.stop.swap(true, Relaxed) {
            return;
        }
        // SAFETY: the listener fd stays open until the accept thread (joined below) drops
        // it; shutdown(2) only wakes the blocked accept(2).
        unsafe { libc::shutdown(self.listener_fd, libc::SHUT_RDWR) };
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
        let conns = self
            .node
            .conns
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for &fd in conns.values() {
            // SAFETY: a connection removes its fd from this map (under this lock) before
            // closing it, so every fd here is still open and still that connection's.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
    }
}

impl Drop for SimNode {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts `n` nodes on ephemeral loopback ports, all serving the same `synthetic` objects.
pub fn spawn_nodes(n: usize, synthetic: &[Synthetic]) -> Result<Vec<SimNode>> {
    let addrs: Vec<SocketAddr> = (0..n)
        .map(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
        .collect();
    spawn_nodes_at(&addrs, synthetic, &SimOptions::default())
}

/// Starts one node per address, all serving the same `synthetic` objects.
pub fn spawn_nodes_at(
    addrs: &[SocketAddr],
    synthetic: &[Synthetic],
    options: &SimOptions,
) -> Result<Vec<SimNode>> {
    // Build the shared objects once, in parallel, before any node starts listening.
    store::synthetic_objects(synthetic)?;
    addrs
        .iter()
        .map(|&addr| SimNode::spawn(addr, synthetic, options.clone()))
        .collect()
}

fn listen(addr: SocketAddr) -> Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("bind {addr}"))?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

fn accept_loop(node: Arc<Node>, listener: TcpListener) {
    loop {
        match listener.accept() {
            Ok((stream, _peer)) => {
                if node.stop.load(Relaxed) {
                    return;
                }
                node.stats.connections.fetch_add(1, Relaxed);
                let conn_node = node.clone();
                let spawned = std::thread::Builder::new()
                    .name("sim-conn".into())
                    .stack_size(CONN_STACK_BYTES)
                    .spawn(move || conn::serve(conn_node, stream));
                if spawned.is_err() {
                    // Out of threads: the stream was moved into the failed closure and is
                    // closed; back off so the accept loop does not spin.
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            Err(_) if node.stop.load(Relaxed) => return,
            // EMFILE and friends: wait for connections to close rather than spin.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_json_round_trips() {
        let cells = StatCells::default();
        cells.requests.store(7, Relaxed);
        cells.bytes_out.store(1 << 40, Relaxed);
        cells.responses_5xx.store(2, Relaxed);
        for _ in 0..3 {
            cells.count_access_key("TRAINKEY0000EXAMPLE1");
        }
        cells.count_access_key("FLOODKEY0000EXAMPLE1");
        cells.count_access_key("odd\"key");
        let stats = cells.snapshot();
        assert_eq!(stats.requests_of("TRAINKEY0000EXAMPLE1"), 3);
        assert_eq!(stats.requests_of("FLOODKEY0000EXAMPLE1"), 1);
        assert_eq!(stats.requests_of(OTHER_ACCESS_KEYS), 1);
        assert_eq!(stats.requests_of("nobody"), 0);
        let json = stats.to_json();
        assert_eq!(SimStats::from_json(&json).unwrap(), stats, "{json}");
        assert_eq!(
            SimStats::from_json(&SimStats::default().to_json()).unwrap(),
            SimStats::default()
        );
        // Fields of a newer simulator are skipped; whitespace is allowed.
        let newer = SimStats::from_json(
            "{ \"requests\": 5, \"future\": 9, \"requests_by_access_key\": { \"K\": 2 } }",
        )
        .unwrap();
        assert_eq!((newer.requests, newer.requests_of("K")), (5, 2));
        assert!(SimStats::from_json("{\"requests\":-1}").is_err());
        assert!(SimStats::from_json("{\"requests\":1").is_err());
    }

    #[test]
    fn access_key_counts_are_bounded() {
        let cells = StatCells::default();
        for i in 0..ACCESS_KEYS_COUNTED_MAX + 10 {
            cells.count_access_key(&format!("KEY{i}"));
        }
        let stats = cells.snapshot();
        assert_eq!(
            stats.requests_by_access_key.len(),
            ACCESS_KEYS_COUNTED_MAX + 1
        );
        assert_eq!(stats.requests_of(OTHER_ACCESS_KEYS), 10);
        assert_eq!(stats.requests_of("KEY0"), 1);
    }

    #[test]
    fn fault_queries() {
        let mut f = Faults::default();
        f.apply_query("latency_ms=5&stall_after_bytes=100&down=1")
            .unwrap();
        assert_eq!(f.latency_ms, 5);
        assert_eq!(f.stall_after_bytes, Some(100));
        assert!(f.down);
        f.apply_query("stall_after_bytes=off&slowdown_ratio=0.25&down=0")
            .unwrap();
        assert_eq!(f.stall_after_bytes, None);
        assert_eq!(f.slowdown_ratio, 0.25);
        assert!(!f.down);
        f.apply_query("reset_after_bytes=9&clear").unwrap();
        assert_eq!(
            f,
            Faults {
                reset_after_bytes: Some(9),
                ..Faults::default()
            }
        );
        assert!(f.apply_query("slowdown_ratio=2").is_err());
        f.apply_query("clear&error_ratio=1&error_status=400&error_code=SlowDown")
            .expect("error fault");
        assert_eq!(
            (f.error_ratio, f.error_status, f.error_code.as_str()),
            (1.0, 400, "SlowDown")
        );
        assert!(f.apply_query("error_status=200").is_err());
        assert!(f.apply_query("error_code=a<b").is_err());
        assert!(f.apply_query("bogus=1").is_err());
        assert!(f.apply_query("latency_ms=-1").is_err());
    }

    #[test]
    fn fault_cells_round_trip() {
        let cells = FaultCells::default();
        let f = Faults {
            latency_ms: 7,
            stall_after_bytes: Some(0),
            reset_after_bytes: None,
            slowdown_ratio: 0.5,
            error_ratio: 0.25,
            error_status: 503,
            error_code: "XMinioServerNotInitialized".into(),
            down: true,
            drop_reused: true,
        };
        cells.store(&f);
        assert_eq!(cells.load(), f);
    }
}
