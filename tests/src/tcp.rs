//! Plain TCP stand-ins that count what reaches them.
//!
//! - [`Canary`]: a "storage node" that accepts and reads but never answers. Put it behind
//!   weir to prove a rejected request never reached storage (its counters stay at zero).
//! - [`Relay`]: a transparent TCP relay in front of a real node, counting upstream
//!   connections and bytes each way (keep-alive reuse, which node got the bytes).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Bytes kept per connection for [`Counters::first_lines`] and [`Counters::captured`].
const CAPTURE_BYTES_MAX: usize = 64 * 1024;

/// Counters shared by a listener and its connection threads, plus the first bytes each
/// connection sent (to tell weir's health probes from forwarded requests).
#[derive(Default)]
pub struct Counters {
    connections: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    captured: Mutex<Vec<Vec<u8>>>,
    /// Every request line seen on any connection, in arrival order (for streams of
    /// body-less requests, where each head starts with one).
    request_lines: Mutex<Vec<String>>,
}

impl Counters {
    /// Registers a new connection; returns its index for [`Counters::capture`].
    fn open(&self) -> usize {
        self.connections.fetch_add(1, Ordering::SeqCst);
        let mut captured = self.captured.lock().expect("captured lock");
        captured.push(Vec::new());
        captured.len() - 1
    }

    /// Keeps the first [`CAPTURE_BYTES_MAX`] bytes connection `id` sent.
    fn capture(&self, id: usize, bytes: &[u8]) {
        let mut captured = self.captured.lock().expect("captured lock");
        let kept = &mut captured[id];
        let room = CAPTURE_BYTES_MAX.saturating_sub(kept.len());
        kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Collects the request lines of a connection's inbound bytes; `line` carries a
    /// partial line between reads (bounded: long lines are not request lines).
    fn scan_lines(&self, line: &mut Vec<u8>, bytes: &[u8]) {
        for &b in bytes {
            if b != b'\n' {
                if line.len() < 16 * 1024 {
                    line.push(b);
                }
                continue;
            }
            let text = String::from_utf8_lossy(line);
            let text = text.trim_end_matches('\r');
            if is_request_line(text) {
                self.request_lines
                    .lock()
                    .expect("request lines lock")
                    .push(text.to_string());
            }
            line.clear();
        }
    }

    /// The first bytes (up to 64 KiB) each connection sent, in accept order.
    pub fn captured(&self) -> Vec<Vec<u8>> {
        self.captured.lock().expect("captured lock").clone()
    }

    /// The first line each connection sent (its first request line), in accept order.
    pub fn first_lines(&self) -> Vec<String> {
        self.captured()
            .iter()
            .map(|bytes| {
                let end = bytes
                    .iter()
                    .position(|&b| b == b'\n')
                    .unwrap_or(bytes.len());
                String::from_utf8_lossy(&bytes[..end])
                    .trim_end()
                    .to_string()
            })
            .collect()
    }

    /// First lines of the connections that were not weir health probes.
    pub fn non_probe_first_lines(&self) -> Vec<String> {
        self.first_lines()
            .into_iter()
            .filter(|l| !is_health_probe(l))
            .collect()
    }

    /// Every line in the captured bytes of any connection that looks like a request line
    /// (`METHOD target HTTP/x`) and is not a health probe: what a canary must never see.
    pub fn non_probe_request_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for bytes in self.captured() {
            for line in String::from_utf8_lossy(&bytes).split('\n') {
                let line = line.trim_end_matches('\r');
                if is_request_line(line) && !is_health_probe(line) {
                    lines.push(line.to_string());
                }
            }
        }
        lines
    }

    /// Request lines (`METHOD target HTTP/x`, not health probes) seen over the whole of
    /// every connection so far whose target contains `needle`. Exact for body-less
    /// requests (GET, HEAD); a body could contain a line that looks like one.
    pub fn requests_matching(&self, needle: &str) -> usize {
        self.request_lines
            .lock()
            .expect("request lines lock")
            .iter()
            .filter(|l| !is_health_probe(l) && l.contains(needle))
            .count()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
    /// Bytes received from the connecting side (requests).
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::SeqCst)
    }
    /// Bytes sent back to the connecting side (responses).
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::SeqCst)
    }
}

/// Whether a line looks like an HTTP request line (`METHOD target HTTP/x`).
fn is_request_line(line: &str) -> bool {
    let words: Vec<&str> = line.split(' ').collect();
    words.len() == 3
        && !words[0].is_empty()
        && words[0].bytes().all(|b| b.is_ascii_uppercase())
        && words[2].starts_with("HTTP/")
}

/// Whether a request line is one of weir's active health probes (the default "generic"
/// probe is `HEAD /`; the presets probe `GET /healthz`, `GET /minio/health/live`,
/// `GET /?ping`). No test request targets these paths.
pub fn is_health_probe(request_line: &str) -> bool {
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    matches!(method, "HEAD" | "GET")
        && matches!(target, "/" | "/healthz" | "/minio/health/live" | "/?ping")
}

struct Listening {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    accept_thread: Option<JoinHandle<()>>,
}

impl Listening {
    fn start(
        name: &str,
        on_conn: impl Fn(TcpStream, &Arc<AtomicBool>) + Send + 'static,
    ) -> Listening {
        let addr = crate::ports::free_addr();
        let listener =
            TcpListener::bind(addr).unwrap_or_else(|e| panic!("{name} bind {addr}: {e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let (stop2, streams2) = (stop.clone(), streams.clone());
        let accept_thread = std::thread::Builder::new()
            .name(format!("{name}-accept"))
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    if let Ok(clone) = conn.try_clone() {
                        streams2.lock().expect("streams lock").push(clone);
                    }
                    on_conn(conn, &stop2);
                }
            })
            .expect("spawn accept thread");
        Listening {
            addr,
            stop,
            streams,
            accept_thread: Some(accept_thread),
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        for s in self.streams.lock().expect("streams lock").drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }
}

/// A listener that accepts and reads but never answers.
pub struct Canary {
    counters: Arc<Counters>,
    inner: Listening,
}

impl Canary {
    /// Starts a canary on a free loopback port.
    pub fn start() -> Canary {
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let inner = Listening::start("canary", move |mut conn, stop| {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let id = c.open();
            let (c, stop) = (c.clone(), stop.clone());
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
                let mut buf = [0u8; 16 * 1024];
                while !stop.load(Ordering::SeqCst) {
                    match conn.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            c.bytes_in.fetch_add(n as u64, Ordering::SeqCst);
                            c.capture(id, &buf[..n]);
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => break,
                    }
                }
            });
        });
        Canary { counters, inner }
    }

    /// The canary's address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// What reached it.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
}

/// A transparent TCP relay to `target` that counts connections and bytes.
pub struct Relay {
    target: SocketAddr,
    counters: Arc<Counters>,
    inner: Listening,
}

impl Relay {
    /// Starts a relay on a free loopback port, forwarding every connection to `target`.
    pub fn start(target: SocketAddr) -> Relay {
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let inner = Listening::start("relay", move |client, stop| {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let id = c.open();
            let Ok(upstream) = TcpStream::connect(target) else {
                let _ = client.shutdown(Shutdown::Both);
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            pipe(
                client.try_clone(),
                upstream.try_clone(),
                c.clone(),
                Some(id),
            );
            pipe(Ok(upstream), Ok(client), c.clone(), None);
        });
        Relay {
            target,
            counters,
            inner,
        }
    }

    /// The relay's own address (give this to weir as the node).
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The real node behind it.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// What passed through it.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
}

/// Copies `from` → `to` on a thread, counting bytes; half-closes `to` at EOF. `inbound`
/// (requests, towards the node) carries the connection's capture index.
fn pipe(
    from: std::io::Result<TcpStream>,
    to: std::io::Result<TcpStream>,
    c: Arc<Counters>,
    inbound: Option<usize>,
) {
    let (Ok(mut from), Ok(mut to)) = (from, to) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let mut line: Vec<u8> = Vec::new();
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
            match inbound {
                Some(id) => {
                    c.bytes_in.fetch_add(n as u64, Ordering::SeqCst);
                    c.capture(id, &buf[..n]);
                    c.scan_lines(&mut line, &buf[..n]);
                }
                None => {
                    c.bytes_out.fetch_add(n as u64, Ordering::SeqCst);
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
        let _ = from.shutdown(Shutdown::Read);
    });
}

/// A minimal HTTP/1.1 origin that answers `GET /<anything>/<n>` with `n` bytes of a fixed
/// pattern (a 1 MiB + 7 block repeated, so misplaced pipe-sized chunks change the hash),
/// from memory, with keep-alive. No S3, no auth: a source fast enough that a 1 GiB GET
/// measures weir's own CPU cost rather than the storage server's.
pub struct BlobServer {
    counters: Arc<Counters>,
    inner: Listening,
}

/// The block [`BlobServer`] repeats.
fn blob_block() -> &'static [u8] {
    static BLOCK: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BLOCK.get_or_init(|| crate::data::pattern(77, (1 << 20) + 7))
}

impl BlobServer {
    /// Starts the server on a free loopback port.
    pub fn start() -> BlobServer {
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let inner = Listening::start("blob", move |conn, stop| {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            c.open();
            let c = c.clone();
            std::thread::spawn(move || serve_blobs(conn, &c));
        });
        BlobServer { counters, inner }
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// SHA-256 (hex) of the first `len` bytes the server sends for any path.
    pub fn sha256(len: u64) -> String {
        use sha2::{Digest, Sha256};
        let block = blob_block();
        let mut hasher = Sha256::new();
        let mut left = len;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            hasher.update(&block[..n]);
            left -= n as u64;
        }
        hex::encode(hasher.finalize())
    }
}

fn serve_blobs(mut conn: TcpStream, c: &Counters) {
    let block = blob_block();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        // Read one head.
        let end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    c.bytes_in.fetch_add(n as u64, Ordering::SeqCst);
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let path = head.split_whitespace().nth(1).unwrap_or("/");
        let len: u64 = path
            .rsplit('/')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\n\r\n");
        if conn.write_all(reply.as_bytes()).is_err() {
            return;
        }
        let mut left = len;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            if conn.write_all(&block[..n]).is_err() {
                return;
            }
            c.bytes_out.fetch_add(n as u64, Ordering::SeqCst);
            left -= n as u64;
        }
    }
}
