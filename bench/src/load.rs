//! The load generator: N blocking keep-alive connections, each on its own thread, issuing
//! GETs and/or PUTs of synthetic objects and checking every body byte against the pattern.
//!
//! Frugal on purpose (it shares 2 cores with the proxy and the simulator): one reusable
//! receive buffer per connection, verification is an xor-accumulate over the buffer that
//! was just written by `recv` (still in cache), counters are per-connection atomics on
//! their own cache line, and latency histograms are per connection, merged at the end.
//! With verification off, bodies are discarded in the kernel (`recv(MSG_TRUNC)`).

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use md5::{Digest, Md5};

use crate::hist::Histogram;
use crate::http::{has_token, HEADERS_MAX};
use crate::pattern::{self, Synthetic};

/// Default receive (and PUT generation) buffer per connection, in bytes: large enough for
/// few syscalls, small enough to stay in L2 for the verification pass.
pub const IO_BUF_BYTES_DEFAULT: usize = 256 * 1024;
/// Largest response head accepted, in bytes.
const RESPONSE_HEAD_BYTES_MAX: usize = 64 * 1024;
/// Body bytes of an error response that are read and dropped to keep a connection.
const ERROR_BODY_BYTES_MAX: u64 = 1 << 20;
/// Pause after a failure that cost the connection, so a down target is not hammered.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// How long workers may take to finish their last request after the run ends.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Which requests to issue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    /// GET only.
    Get,
    /// PUT only (uploads the synthetic bytes).
    Put,
    /// GET with probability `get_ratio`, else PUT.
    Mix {
        /// Fraction of requests that are GETs (0..=1).
        get_ratio: f64,
    },
}

impl Op {
    /// Parses `get`, `put` or `mix:R` (R = fraction of GETs, e.g. `mix:0.9`).
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "get" => Ok(Op::Get),
            "put" => Ok(Op::Put),
            _ => {
                let Some(ratio) = text.strip_prefix("mix:") else {
                    bail!("op {text:?} is not get, put or mix:R");
                };
                let get_ratio: f64 = ratio
                    .parse()
                    .with_context(|| format!("bad mix ratio {ratio:?}"))?;
                if !(0.0..=1.0).contains(&get_ratio) {
                    bail!("mix ratio {get_ratio} is outside 0..=1");
                }
                Ok(Op::Mix { get_ratio })
            }
        }
    }
}

/// A load run's parameters.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Targets; connection i goes to `targets[i % len]`.
    pub targets: Vec<SocketAddr>,
    /// Concurrent connections (one thread each).
    pub connections: usize,
    /// Run length.
    pub duration: Duration,
    /// Key families; connection i uses `keys[i % len]`, a random key of it per request.
    pub keys: Vec<Synthetic>,
    /// Request mix.
    pub op: Op,
    /// Check every body byte against the pattern.
    pub verify: bool,
    /// Ranged GETs of this many bytes at random offsets instead of whole objects.
    pub range_bytes: Option<u64>,
    /// Send `Expect: 100-continue` with PUTs and wait for the 100.
    pub expect_continue: bool,
    /// Host header (default: the target address).
    pub host: Option<String>,
    /// Fixed part of the per-request timeout.
    pub timeout_base: Duration,
    /// The size-scaled part: a request may take `bytes / this` seconds on top of the base.
    pub timeout_bytes_per_sec_min: u64,
    /// Receive buffer per connection (at least twice the largest head).
    pub io_buf_bytes: usize,
    /// How often `run` calls its tick callback (1 s by default; the benchmark runner's
    /// failover time series uses 100 ms).
    pub tick_interval: Duration,
    /// Check the ETag of every PUT answer against the MD5 of the pattern that was sent
    /// (computed once per key at start: ~0.1 s per 64 MiB key), so a body changed on the
    /// way counts as a mismatch.
    pub check_put_etag: bool,
    /// Send every request as if SigV4-signed by this access key id: an `Authorization`
    /// header with a dummy signature (see [`crate::auth`]), which is enough for weir to
    /// put the request in that key's tenant. Nothing is actually signed.
    pub access_key: Option<String>,
    /// Sign every request for real (SigV4, `UNSIGNED-PAYLOAD`, the current time, the Host
    /// header as sent), for a target that verifies signatures. Takes precedence over
    /// `access_key`.
    pub credentials: Option<crate::sigv4::Credentials>,
    /// 503s are expected (a flood beyond a limit): still counted (`status`, `status_503`),
    /// but not printed as a connection's first failure.
    pub quiet_503: bool,
    /// Upload PUT bodies streaming-signed in chunks of this many bytes (`Content-Encoding:
    /// aws-chunked`, `x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD`, every
    /// chunk's signature chained from the head's), as the AWS SDKs' chunked uploads do.
    /// Needs `credentials`. The SHA-256 of every chunk of every key is computed once per
    /// process (~1 s per 256 MiB) and reused, so the client signs a chunk with one HMAC.
    pub streaming_chunk_bytes: Option<u64>,
}

impl LoadConfig {
    /// A config with the defaults for everything but targets and keys.
    pub fn new(targets: Vec<SocketAddr>, keys: Vec<Synthetic>) -> Self {
        Self {
            targets,
            connections: 8,
            duration: Duration::from_secs(10),
            keys,
            op: Op::Get,
            verify: true,
            range_bytes: None,
            expect_continue: false,
            host: None,
            timeout_base: Duration::from_secs(10),
            timeout_bytes_per_sec_min: 20_000_000,
            io_buf_bytes: IO_BUF_BYTES_DEFAULT,
            tick_interval: Duration::from_secs(1),
            check_put_etag: false,
            access_key: None,
            credentials: None,
            quiet_503: false,
            streaming_chunk_bytes: None,
        }
    }

    fn timeout_for(&self, bytes: u64) -> Duration {
        self.timeout_base
            + Duration::from_secs_f64(bytes as f64 / self.timeout_bytes_per_sec_min.max(1) as f64)
    }
}

/// Failed requests by cause.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    /// Connect refused or timed out.
    pub connect: u64,
    /// The per-request timeout passed.
    pub timeout: u64,
    /// Reset, EOF before the body ended, or a malformed response.
    pub io: u64,
    /// An unexpected status (5xx, 4xx, 200 for a range…); 503s included.
    pub status: u64,
    /// Of `status`: answers 503 (S3 `SlowDown`, or a proxy's own 503). Not added to
    /// [`ErrorCounts::total`] a second time.
    pub status_503: u64,
    /// A body byte differed from the pattern (or a wrong length / Content-Range).
    pub mismatch: u64,
}

impl ErrorCounts {
    /// All failed requests.
    pub fn total(&self) -> u64 {
        self.connect + self.timeout + self.io + self.status + self.mismatch
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &ErrorCounts) {
        self.connect += other.connect;
        self.timeout += other.timeout;
        self.io += other.io;
        self.status += other.status;
        self.status_503 += other.status_503;
        self.mismatch += other.mismatch;
    }

    fn count(&mut self, kind: ErrorKind) {
        match kind {
            ErrorKind::Connect => self.connect += 1,
            ErrorKind::Timeout => self.timeout += 1,
            ErrorKind::Io => self.io += 1,
            ErrorKind::Status => self.status += 1,
            ErrorKind::Status503 => {
                self.status += 1;
                self.status_503 += 1;
            }
            ErrorKind::Mismatch => self.mismatch += 1,
        }
    }
}

/// Cumulative counters since the run started, read once per second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Body bytes received (GET) or sent (PUT).
    pub bytes: u64,
    /// Completed requests (successful or not).
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// Requests whose body did not match the pattern.
    pub mismatches: u64,
}

/// What the per-second callback gets.
#[derive(Clone, Copy, Debug)]
pub struct Tick {
    /// Time since the run started.
    pub elapsed: Duration,
    /// Length of the interval since the previous tick.
    pub interval: Duration,
    /// Counters now.
    pub totals: Totals,
    /// Counters at the previous tick.
    pub previous: Totals,
}

impl Tick {
    /// Throughput of the interval in GB/s (10^9 bytes per second).
    pub fn gbps(&self) -> f64 {
        (self.totals.bytes - self.previous.bytes) as f64 / self.interval.as_secs_f64() / 1e9
    }

    /// Requests per second over the interval.
    pub fn req_per_s(&self) -> f64 {
        (self.totals.requests - self.previous.requests) as f64 / self.interval.as_secs_f64()
    }

    /// Errors during the interval.
    pub fn errors(&self) -> u64 {
        self.totals.errors - self.previous.errors
    }

    /// The standard live line.
    pub fn line(&self) -> String {
        format!(
            "{:>5.1}s  {:>6.2} GB/s  {:>8.0} req/s  errors {:>3} (total {}, mismatches {})",
            self.elapsed.as_secs_f64(),
            self.gbps(),
            self.req_per_s(),
            self.errors(),
            self.totals.errors,
            self.totals.mismatches
        )
    }
}

/// The result of a run.
#[derive(Clone)]
pub struct Summary {
    /// From start until the last connection finished.
    pub elapsed: Duration,
    /// Body bytes moved.
    pub bytes: u64,
    /// Requests completed (successful or not).
    pub requests: u64,
    /// Failed requests by cause.
    pub errors: ErrorCounts,
    /// Whole-request latency of successful requests, in microseconds.
    pub latency_us: Histogram,
    /// Time to the response head of successful requests, in microseconds.
    pub ttfb_us: Histogram,
}

impl Summary {
    /// Throughput in GB/s (10^9 bytes per second).
    pub fn gbps(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e9
    }

    /// Requests per second.
    pub fn req_per_s(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A human-readable multi-line summary.
    pub fn human(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        format!(
            "total {} bytes ({}) in {:.2}s: {:.3} GB/s, {:.1} req/s, {} requests\n\
             errors {} (connect {}, timeout {}, io {}, status {} of which 503 {}, mismatch {})\n\
             latency ms: p50 {:.3}  p99 {:.3}  p999 {:.3}  max {:.3}  mean {:.3}\n\
             first byte ms: p50 {:.3}  p99 {:.3}  p999 {:.3}",
            self.bytes,
            crate::units::format_bytes(self.bytes),
            self.elapsed.as_secs_f64(),
            self.gbps(),
            self.req_per_s(),
            self.requests,
            self.errors.total(),
            self.errors.connect,
            self.errors.timeout,
            self.errors.io,
            self.errors.status,
            self.errors.status_503,
            self.errors.mismatch,
            ms(self.latency_us.quantile(0.5)),
            ms(self.latency_us.quantile(0.99)),
            ms(self.latency_us.quantile(0.999)),
            ms(self.latency_us.max()),
            self.latency_us.mean() / 1000.0,
            ms(self.ttfb_us.quantile(0.5)),
            ms(self.ttfb_us.quantile(0.99)),
            ms(self.ttfb_us.quantile(0.999)),
        )
    }

    /// The summary as one JSON object.
    pub fn to_json(&self) -> String {
        let hist = |h: &Histogram| {
            format!(
                "{{\"p50\":{},\"p99\":{},\"p999\":{},\"max\":{},\"mean\":{:.1}}}",
                h.quantile(0.5),
                h.quantile(0.99),
                h.quantile(0.999),
                h.max(),
                h.mean()
            )
        };
        format!(
            "{{\"elapsed_s\":{:.3},\"bytes\":{},\"gbps\":{:.4},\"requests\":{},\"req_per_s\":{:.1},\"errors\":{},\"errors_by_kind\":{{\"connect\":{},\"timeout\":{},\"io\":{},\"status\":{},\"status_503\":{},\"mismatch\":{}}},\"latency_us\":{},\"ttfb_us\":{}}}",
            self.elapsed.as_secs_f64(),
            self.bytes,
            self.gbps(),
            self.requests,
            self.req_per_s(),
            self.errors.total(),
            self.errors.connect,
            self.errors.timeout,
            self.errors.io,
            self.errors.status,
            self.errors.status_503,
            self.errors.mismatch,
            hist(&self.latency_us),
            hist(&self.ttfb_us)
        )
    }
}

/// Live counters of one connection, on their own cache line.
#[repr(align(128))]
#[derive(Default)]
struct Counters {
    bytes: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    mismatches: AtomicU64,
}

/// What a connection thread hands back.
struct WorkerResult {
    errors: ErrorCounts,
    latency_us: Histogram,
    ttfb_us: Histogram,
}

/// Runs the load; `on_tick` is called about once per second from the calling thread.
pub fn run(config: &LoadConfig, mut on_tick: impl FnMut(&Tick)) -> Result<Summary> {
    if config.targets.is_empty() || config.keys.is_empty() || config.connections == 0 {
        bail!("load needs at least one target, one key family and one connection");
    }
    if config.keys.iter().any(|k| k.count == 0) {
        bail!("every key family needs at least one key");
    }
    if let Some(range_bytes) = config.range_bytes {
        if range_bytes == 0 || config.keys.iter().any(|k| k.size_bytes < range_bytes) {
            bail!("range size must be non-zero and at most the smallest object");
        }
    }
    if config.tick_interval < Duration::from_millis(10) {
        bail!("tick interval must be at least 10ms");
    }
    if let Some(chunk_bytes) = config.streaming_chunk_bytes {
        if config.credentials.is_none() {
            bail!("streaming-signed uploads need credentials (a secret key) to sign chunks");
        }
        if chunk_bytes == 0 {
            bail!("the chunk size of streaming-signed uploads must be non-zero");
        }
    }
    let put_etags = Arc::new(if config.check_put_etag && config.op != Op::Get {
        put_etags(&config.keys)
    } else {
        HashMap::new()
    });
    let chunk_hashes = Arc::new(match config.streaming_chunk_bytes {
        Some(chunk_bytes) if config.op != Op::Get => chunk_hashes(&config.keys, chunk_bytes),
        _ => HashMap::new(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let counters: Vec<Arc<Counters>> = (0..config.connections)
        .map(|_| Arc::new(Counters::default()))
        .collect();
    // A clone of each live socket, so stragglers can be cut after the grace period.
    let sockets: Vec<Arc<Mutex<Option<TcpStream>>>> = (0..config.connections)
        .map(|_| Arc::new(Mutex::new(None)))
        .collect();
    let (done_tx, done_rx) = mpsc::channel::<WorkerResult>();
    let start = Instant::now();
    for id in 0..config.connections {
        let mut worker = Worker::new(
            id,
            config.clone(),
            counters[id].clone(),
            stop.clone(),
            sockets[id].clone(),
            put_etags.clone(),
            chunk_hashes.clone(),
        );
        let done_tx = done_tx.clone();
        std::thread::Builder::new()
            .name(format!("load-{id}"))
            .spawn(move || {
                let result = worker.run();
                let _ = done_tx.send(result);
            })
            .context("spawn load thread")?;
    }
    drop(done_tx);

    let totals = || {
        counters.iter().fold(Totals::default(), |acc, c| Totals {
            bytes: acc.bytes + c.bytes.load(Relaxed),
            requests: acc.requests + c.requests.load(Relaxed),
            errors: acc.errors + c.errors.load(Relaxed),
            mismatches: acc.mismatches + c.mismatches.load(Relaxed),
        })
    };
    let mut previous = Totals::default();
    let mut previous_at = start;
    let mut next_tick = start + config.tick_interval;
    let end = start + config.duration;
    while next_tick <= end {
        std::thread::sleep(next_tick.saturating_duration_since(Instant::now()));
        let now = Instant::now();
        let current = totals();
        on_tick(&Tick {
            elapsed: now - start,
            interval: now - previous_at,
            totals: current,
            previous,
        });
        previous = current;
        previous_at = now;
        next_tick += config.tick_interval;
        // After a slow callback (or a descheduled thread) skip the missed ticks rather
        // than firing a burst of near-empty intervals.
        let now = Instant::now();
        if next_tick < now {
            next_tick = now + config.tick_interval;
        }
    }
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    stop.store(true, Relaxed);

    let mut errors = ErrorCounts::default();
    let mut latency_us = Histogram::new();
    let mut ttfb_us = Histogram::new();
    let grace_end = Instant::now() + STOP_GRACE;
    let mut received = 0;
    let mut cut = false;
    while received < config.connections {
        let wait = grace_end.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(if cut { Duration::from_secs(60) } else { wait }) {
            Ok(result) => {
                errors.add(&result.errors);
                latency_us.merge(&result.latency_us);
                ttfb_us.merge(&result.ttfb_us);
                received += 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) if !cut => {
                // Stragglers (a stalled body): cut their sockets; their requests end as
                // errors, which is what they are.
                for slot in &sockets {
                    let slot = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    if let Some(stream) = slot.as_ref() {
                        let _ = stream.shutdown(std::net::Shutdown::Both);
                    }
                }
                cut = true;
            }
            Err(_) => bail!("load threads did not finish"),
        }
    }
    let elapsed = start.elapsed();
    let final_totals = totals();
    Ok(Summary {
        elapsed,
        bytes: final_totals.bytes,
        requests: final_totals.requests,
        errors,
        latency_us,
        ttfb_us,
    })
}

/// The quoted MD5 ETag of every key of the families (what a correct PUT of the key's
/// pattern gets back from S3), by full key; computed once per process per key and size
/// (the runner starts many PUT loads over the same keys: ~0.4 s per 256 MiB saved each).
fn put_etags(families: &[Synthetic]) -> HashMap<String, String> {
    static CACHE: std::sync::OnceLock<Mutex<HashMap<(String, u64), String>>> =
        std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut etags = HashMap::new();
    let mut buf = Vec::new();
    for family in families {
        for index in 0..family.count {
            let key = family.key(index);
            if etags.contains_key(&key) {
                continue;
            }
            let cached = cache
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .get(&(key.clone(), family.size_bytes))
                .cloned();
            if let Some(etag) = cached {
                etags.insert(key, etag);
                continue;
            }
            buf.resize(1 << 20, 0);
            let seed = pattern::key_seed(&key);
            let mut md5 = Md5::new();
            let mut offset = 0u64;
            while offset < family.size_bytes {
                let n = (family.size_bytes - offset).min(buf.len() as u64) as usize;
                pattern::fill(seed, offset, &mut buf[..n]);
                md5.update(&buf[..n]);
                offset += n as u64;
            }
            let etag = format!("\"{}\"", hex::encode(md5.finalize()));
            cache
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert((key.clone(), family.size_bytes), etag.clone());
            etags.insert(key, etag);
        }
    }
    etags
}

/// SHA-256 of each chunk of one key's pattern (chunk *i* covers bytes
/// `i * chunk .. min((i + 1) * chunk, size)`).
type ChunkHashes = Arc<Vec<[u8; 32]>>;

/// The chunk hashes of every key of the families for chunks of `chunk_bytes`, by full key;
/// computed once per process per key, size and chunk size (the runner starts many loads
/// over the same keys), keys hashed in parallel.
fn chunk_hashes(families: &[Synthetic], chunk_bytes: u64) -> HashMap<String, ChunkHashes> {
    type Cache = Mutex<HashMap<(String, u64, u64), ChunkHashes>>;
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut wanted: Vec<(String, u64)> = Vec::new();
    for family in families {
        for index in 0..family.count {
            let entry = (family.key(index), family.size_bytes);
            if !wanted.contains(&entry) {
                wanted.push(entry);
            }
        }
    }
    let missing: Vec<(String, u64)> = {
        let cache = cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        wanted
            .iter()
            .filter(|(key, size)| !cache.contains_key(&(key.clone(), *size, chunk_bytes)))
            .cloned()
            .collect()
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(missing.len().max(1));
    let computed: Vec<((String, u64), ChunkHashes)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<&(String, u64)> = missing.iter().skip(t).step_by(threads).collect();
                scope.spawn(move || {
                    let mut buf = vec![0u8; chunk_bytes.min(1 << 20) as usize];
                    mine.into_iter()
                        .map(|(key, size)| {
                            let seed = pattern::key_seed(key);
                            let mut hashes = Vec::new();
                            let mut start = 0u64;
                            while start < *size {
                                let end = (start + chunk_bytes).min(*size);
                                let mut hasher = crate::sigv4::Sha256::new();
                                let mut at = start;
                                while at < end {
                                    let n = (end - at).min(buf.len() as u64) as usize;
                                    pattern::fill(seed, at, &mut buf[..n]);
                                    hasher.update(&buf[..n]);
                                    at += n as u64;
                                }
                                hashes.push(hasher.finish());
                                start = end;
                            }
                            ((key.clone(), *size), Arc::new(hashes))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("chunk hashing thread"))
            .collect()
    });
    let mut cache = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for ((key, size), hashes) in computed {
        cache.insert((key, size, chunk_bytes), hashes);
    }
    wanted
        .into_iter()
        .filter_map(|(key, size)| {
            let hashes = cache.get(&(key.clone(), size, chunk_bytes))?.clone();
            Some((key, hashes))
        })
        .collect()
}

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ErrorKind {
    Connect,
    Timeout,
    Io,
    Status,
    /// A 503 (counted as `status` and `status_503`).
    Status503,
    Mismatch,
}

/// A failed request: its cause and whether the connection can be reused.
struct Failure {
    kind: ErrorKind,
    reusable: bool,
    detail: String,
}

impl Failure {
    fn fatal(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            reusable: false,
            detail: detail.into(),
        }
    }

    fn from_io(err: std::io::Error, what: &str) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Io,
        };
        Self::fatal(kind, format!("{what}: {err}"))
    }
}

/// A parsed response head.
struct ResponseHead {
    status: u16,
    content_length: Option<u64>,
    content_range: Option<String>,
    etag: Option<String>,
    close: bool,
}

struct Worker {
    id: usize,
    config: LoadConfig,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    socket_slot: Arc<Mutex<Option<TcpStream>>>,
    /// Expected PUT answer ETags by full key (empty: not checked).
    put_etags: Arc<HashMap<String, String>>,
    /// Chunk hashes by full key, for streaming-signed PUTs.
    chunk_hashes: Arc<HashMap<String, ChunkHashes>>,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    /// Bytes after a response head that belong to its body: `buf[start..end]`.
    start: usize,
    end: usize,
    rng: u64,
    errors: ErrorCounts,
    latency_us: Histogram,
    ttfb_us: Histogram,
    /// First failure detail, printed once per connection for diagnosis.
    first_failure: Option<String>,
    /// Header lines of the dummy SigV4 signature (empty without an access key).
    auth_lines: String,
    /// Real SigV4 signing, per request (with `LoadConfig::credentials`).
    signer: Option<crate::sigv4::Signer>,
}

impl Worker {
    fn new(
        id: usize,
        config: LoadConfig,
        counters: Arc<Counters>,
        stop: Arc<AtomicBool>,
        socket_slot: Arc<Mutex<Option<TcpStream>>>,
        put_etags: Arc<HashMap<String, String>>,
        chunk_hashes: Arc<HashMap<String, ChunkHashes>>,
    ) -> Self {
        let buf_bytes = config.io_buf_bytes.max(RESPONSE_HEAD_BYTES_MAX * 2);
        let auth_lines = config
            .access_key
            .as_deref()
            .map(crate::auth::sigv4_header_lines)
            .unwrap_or_default();
        let signer = config.credentials.clone().map(crate::sigv4::Signer::new);
        Self {
            id,
            config,
            counters,
            stop,
            socket_slot,
            put_etags,
            chunk_hashes,
            stream: None,
            buf: vec![0; buf_bytes],
            start: 0,
            end: 0,
            rng: 0x2545_F491_4F6C_DD1D ^ (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            errors: ErrorCounts::default(),
            latency_us: Histogram::new(),
            ttfb_us: Histogram::new(),
            first_failure: None,
            auth_lines,
            signer,
        }
    }

    /// xorshift64*: a cheap per-connection random stream.
    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn next_unit(&mut self) -> f64 {
        (self.next_random() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn run(&mut self) -> WorkerResult {
        let target = self.config.targets[self.id % self.config.targets.len()];
        let family = self.config.keys[self.id % self.config.keys.len()].clone();
        while !self.stop.load(Relaxed) {
            if self.stream.is_none() {
                if let Err(failure) = self.connect(target) {
                    self.fail(failure);
                    std::thread::sleep(RECONNECT_PAUSE);
                    continue;
                }
            }
            let index = self.next_random() % family.count;
            let is_get = match self.config.op {
                Op::Get => true,
                Op::Put => false,
                Op::Mix { get_ratio } => self.next_unit() < get_ratio,
            };
            let began = Instant::now();
            let outcome = if is_get {
                self.get(&family, index, target, began)
            } else {
                self.put(&family, index, target, began)
            };
            self.counters.requests.fetch_add(1, Relaxed);
            match outcome {
                Ok(close) => {
                    self.latency_us.record(began.elapsed().as_micros() as u64);
                    if close {
                        self.disconnect();
                    }
                }
                Err(failure) => {
                    let reusable = failure.reusable;
                    self.fail(failure);
                    if !reusable {
                        self.disconnect();
                        // A refusing target would otherwise be hammered in a tight loop.
                        std::thread::sleep(RECONNECT_PAUSE);
                    }
                }
            }
        }
        self.disconnect();
        if let Some(detail) = &self.first_failure {
            eprintln!("load connection {}: first failure: {detail}", self.id);
        }
        WorkerResult {
            errors: std::mem::take(&mut self.errors),
            latency_us: std::mem::take(&mut self.latency_us),
            ttfb_us: std::mem::take(&mut self.ttfb_us),
        }
    }

    fn fail(&mut self, failure: Failure) {
        // Requests cut by the end-of-run straggler shutdown are not the target's fault.
        if self.stop.load(Relaxed) && failure.kind != ErrorKind::Mismatch {
            return;
        }
        self.errors.count(failure.kind);
        self.counters.errors.fetch_add(1, Relaxed);
        if failure.kind == ErrorKind::Mismatch {
            self.counters.mismatches.fetch_add(1, Relaxed);
        }
        if self.first_failure.is_none()
            && !(self.config.quiet_503 && failure.kind == ErrorKind::Status503)
        {
            self.first_failure = Some(format!("{:?}: {}", failure.kind, failure.detail));
        }
    }

    fn connect(&mut self, target: SocketAddr) -> Result<(), Failure> {
        let stream = TcpStream::connect_timeout(&target, Duration::from_secs(2))
            .map_err(|e| Failure::fatal(ErrorKind::Connect, format!("connect {target}: {e}")))?;
        let _ = stream.set_nodelay(true);
        if let Ok(clone) = stream.try_clone() {
            *self
                .socket_slot
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(clone);
        }
        self.stream = Some(stream);
        self.start = 0;
        self.end = 0;
        Ok(())
    }

    fn disconnect(&mut self) {
        self.stream = None;
        *self
            .socket_slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        self.start = 0;
        self.end = 0;
    }

    fn stream(&mut self) -> Result<&mut TcpStream, Failure> {
        self.stream
            .as_mut()
            .ok_or_else(|| Failure::fatal(ErrorKind::Io, "not connected"))
    }

    fn host(&self, target: SocketAddr) -> String {
        self.config
            .host
            .clone()
            .unwrap_or_else(|| target.to_string())
    }

    /// The authentication header lines of one request: a real SigV4 signature made now
    /// (with credentials), the dummy one (with an access key only), or none.
    fn auth(&mut self, method: &str, path: &str, host: &str) -> std::borrow::Cow<'_, str> {
        match self.signer.as_mut() {
            Some(signer) => std::borrow::Cow::Owned(signer.header_lines(
                method,
                path,
                host,
                std::time::SystemTime::now(),
            )),
            None => std::borrow::Cow::Borrowed(self.auth_lines.as_str()),
        }
    }

    /// Sets the socket timeouts to what is left of the request's deadline.
    fn arm_deadline(&mut self, deadline: Instant) -> Result<(), Failure> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::fatal(
                ErrorKind::Timeout,
                "request deadline passed",
            ));
        }
        let stream = self.stream()?;
        stream
            .set_read_timeout(Some(left))
            .and_then(|()| stream.set_write_timeout(Some(left)))
            .map_err(|e| Failure::from_io(e, "set timeout"))
    }

    /// One GET (whole object or a random range); `Ok(close)` on success.
    fn get(
        &mut self,
        family: &Synthetic,
        index: u64,
        target: SocketAddr,
        began: Instant,
    ) -> Result<bool, Failure> {
        let size = family.size_bytes;
        let (offset, len_bytes, range_header) = match self.config.range_bytes {
            Some(range_bytes) => {
                let offset = self.next_random() % (size - range_bytes + 1);
                let last = offset + range_bytes - 1;
                (
                    offset,
                    range_bytes,
                    format!("Range: bytes={offset}-{last}\r\n"),
                )
            }
            None => (0, size, String::new()),
        };
        let deadline = began + self.config.timeout_for(len_bytes);
        self.arm_deadline(deadline)?;
        let path = family.path(index);
        let host = self.host(target);
        let request = {
            let auth = self.auth("GET", &path, &host);
            format!(
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: weir-load\r\n{auth}{range_header}\r\n"
            )
        };
        self.stream()?
            .write_all(request.as_bytes())
            .map_err(|e| Failure::from_io(e, "send GET"))?;
        let head = self.read_head(deadline)?;
        let expected_status = if range_header.is_empty() { 200 } else { 206 };
        if head.status != expected_status {
            return Err(self.unexpected_status(&head, deadline));
        }
        self.ttfb_us.record(began.elapsed().as_micros() as u64);
        if head.content_length != Some(len_bytes) {
            return Err(Failure::fatal(
                ErrorKind::Mismatch,
                format!(
                    "Content-Length {:?}, expected {len_bytes}",
                    head.content_length
                ),
            ));
        }
        if !range_header.is_empty() {
            let expected = format!("bytes {}-{}/{size}", offset, offset + len_bytes - 1);
            if head.content_range.as_deref() != Some(expected.as_str()) {
                return Err(Failure::fatal(
                    ErrorKind::Mismatch,
                    format!(
                        "Content-Range {:?}, expected {expected}",
                        head.content_range
                    ),
                ));
            }
        }
        let seed = pattern::key_seed(&family.key(index));
        self.read_body(seed, offset, len_bytes, deadline)?;
        Ok(head.close)
    }

    /// One PUT of the synthetic bytes; `Ok(close)` on success.
    fn put(
        &mut self,
        family: &Synthetic,
        index: u64,
        target: SocketAddr,
        began: Instant,
    ) -> Result<bool, Failure> {
        let size = family.size_bytes;
        let deadline = began + self.config.timeout_for(size);
        self.arm_deadline(deadline)?;
        let expect = if self.config.expect_continue {
            "Expect: 100-continue\r\n"
        } else {
            ""
        };
        let path = family.path(index);
        let host = self.host(target);
        let mut chain = None;
        let request = match self.config.streaming_chunk_bytes {
            Some(chunk_bytes) => {
                let Some(signer) = self.signer.as_mut() else {
                    return Err(Failure::fatal(ErrorKind::Io, "streaming needs credentials"));
                };
                let (lines, chunk_chain) = signer.streaming_header_lines(
                    "PUT",
                    &path,
                    &host,
                    size,
                    chunk_bytes,
                    std::time::SystemTime::now(),
                );
                chain = Some(chunk_chain);
                format!(
                    "PUT {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: weir-load\r\nContent-Type: application/octet-stream\r\n{lines}{expect}\r\n"
                )
            }
            None => {
                let auth = self.auth("PUT", &path, &host);
                format!(
                    "PUT {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: weir-load\r\nContent-Length: {size}\r\nContent-Type: application/octet-stream\r\n{auth}{expect}\r\n"
                )
            }
        };
        self.stream()?
            .write_all(request.as_bytes())
            .map_err(|e| Failure::from_io(e, "send PUT head"))?;
        if self.config.expect_continue {
            let interim = self.read_head(deadline)?;
            if interim.status != 100 {
                // A final answer instead of 100: the body was never sent, so the framing
                // of this connection is unknown to the server; do not reuse it.
                let mut failure = self.unexpected_status(&interim, deadline);
                failure.reusable = false;
                return Err(failure);
            }
        }
        let seed = pattern::key_seed(&family.key(index));
        if let Some(chain) = chain.as_mut() {
            let hashes = self
                .chunk_hashes
                .get(&family.key(index))
                .cloned()
                .ok_or_else(|| Failure::fatal(ErrorKind::Io, "no chunk hashes for the key"))?;
            let chunk_bytes = self.config.streaming_chunk_bytes.unwrap_or(size.max(1));
            let Some(stream) = self.stream.as_mut() else {
                return Err(Failure::fatal(ErrorKind::Io, "not connected"));
            };
            send_aws_chunked(
                stream,
                &mut self.buf,
                AwsChunked {
                    seed,
                    size,
                    chunk_bytes,
                    hashes: &hashes,
                },
                chain,
                &self.counters.bytes,
            )
            .map_err(|e| Failure::from_io(e, "send aws-chunked PUT body"))?;
        }
        let mut offset = if chain.is_some() { size } else { 0 };
        while offset < size {
            let n = (size - offset).min(self.buf.len() as u64) as usize;
            pattern::fill(seed, offset, &mut self.buf[..n]);
            let Some(stream) = self.stream.as_mut() else {
                return Err(Failure::fatal(ErrorKind::Io, "not connected"));
            };
            stream
                .write_all(&self.buf[..n])
                .map_err(|e| Failure::from_io(e, "send PUT body"))?;
            offset += n as u64;
            self.counters.bytes.fetch_add(n as u64, Relaxed);
        }
        let head = self.read_head(deadline)?;
        if head.status != 200 {
            return Err(self.unexpected_status(&head, deadline));
        }
        self.ttfb_us.record(began.elapsed().as_micros() as u64);
        self.skip_body(head.content_length.unwrap_or(0), deadline)?;
        if let Some(expected) = self.put_etags.get(&family.key(index)) {
            if head.etag.as_deref() != Some(expected.as_str()) {
                // The answer was read whole, so the connection stays usable.
                return Err(Failure {
                    kind: ErrorKind::Mismatch,
                    reusable: !head.close,
                    detail: format!("PUT answered ETag {:?}, expected {expected}", head.etag),
                });
            }
        }
        Ok(head.close)
    }

    /// Reads an error response's body (if small and framed) so the connection survives.
    fn unexpected_status(&mut self, head: &ResponseHead, deadline: Instant) -> Failure {
        let detail = format!("status {}", head.status);
        let kind = if head.status == 503 {
            ErrorKind::Status503
        } else {
            ErrorKind::Status
        };
        let reusable = !head.close
            && head
                .content_length
                .is_some_and(|len| len <= ERROR_BODY_BYTES_MAX)
            && self
                .skip_body(head.content_length.unwrap_or(0), deadline)
                .is_ok();
        Failure {
            kind,
            reusable,
            detail,
        }
    }

    /// Receives into `buf[end..]`; 0 = EOF.
    fn recv_more(&mut self) -> Result<usize, Failure> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let fd = self.stream()?.as_raw_fd();
        let n = recv(fd, &mut self.buf[self.end..], 0)?;
        self.end += n;
        Ok(n)
    }

    fn read_head(&mut self, deadline: Instant) -> Result<ResponseHead, Failure> {
        loop {
            if self.end > self.start {
                let mut slots = [httparse::EMPTY_HEADER; HEADERS_MAX];
                let mut response = httparse::Response::new(&mut slots);
                match response.parse(&self.buf[self.start..self.end]) {
                    Ok(httparse::Status::Complete(len)) => {
                        let header = |name: &str| crate::http::header(response.headers, name);
                        let content_length = match header("content-length") {
                            Some(v) => Some(v.parse::<u64>().map_err(|_| {
                                Failure::fatal(ErrorKind::Io, format!("bad Content-Length {v:?}"))
                            })?),
                            None => None,
                        };
                        if has_token(header("transfer-encoding"), "chunked") {
                            return Err(Failure::fatal(
                                ErrorKind::Io,
                                "chunked response (not produced by S3 for objects)",
                            ));
                        }
                        let status = response.code.unwrap_or(0);
                        let close = has_token(header("connection"), "close")
                            || response.version == Some(0)
                            || (content_length.is_none() && status >= 200 && status != 204);
                        let head = ResponseHead {
                            status,
                            content_length,
                            content_range: header("content-range").map(str::to_string),
                            etag: header("etag").map(str::to_string),
                            close,
                        };
                        self.start += len;
                        return Ok(head);
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.end - self.start > RESPONSE_HEAD_BYTES_MAX {
                            return Err(Failure::fatal(ErrorKind::Io, "response head too large"));
                        }
                    }
                    Err(e) => {
                        return Err(Failure::fatal(
                            ErrorKind::Io,
                            format!("bad response head: {e}"),
                        ))
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(Failure::fatal(ErrorKind::Timeout, "waiting for head"));
            }
            if self.recv_more()? == 0 {
                return Err(Failure::fatal(
                    ErrorKind::Io,
                    "connection closed before the response head",
                ));
            }
        }
    }

    /// Receives `len_bytes` of body, checking them against the pattern at `offset`.
    fn read_body(
        &mut self,
        seed: u64,
        offset: u64,
        len_bytes: u64,
        deadline: Instant,
    ) -> Result<(), Failure> {
        let mut got = 0u64;
        let buffered = ((self.end - self.start) as u64).min(len_bytes) as usize;
        if buffered > 0 {
            self.check(seed, offset, self.start, buffered)?;
            self.start += buffered;
            got += buffered as u64;
            self.counters.bytes.fetch_add(buffered as u64, Relaxed);
        }
        // The head arrived; from here on the buffer holds body bytes only.
        self.start = 0;
        self.end = 0;
        let fd = self.stream()?.as_raw_fd();
        let flags = if self.config.verify {
            0
        } else {
            libc::MSG_TRUNC
        };
        while got < len_bytes {
            if Instant::now() >= deadline {
                return Err(Failure::fatal(
                    ErrorKind::Timeout,
                    format!("body at {got} of {len_bytes}"),
                ));
            }
            let want = (len_bytes - got).min(self.buf.len() as u64) as usize;
            let n = recv(fd, &mut self.buf[..want], flags)?;
            if n == 0 {
                return Err(Failure::fatal(
                    ErrorKind::Io,
                    format!("connection closed at {got} of {len_bytes} body bytes"),
                ));
            }
            if self.config.verify {
                self.check(seed, offset + got, 0, n)?;
            }
            got += n as u64;
            self.counters.bytes.fetch_add(n as u64, Relaxed);
        }
        Ok(())
    }

    fn check(&mut self, seed: u64, offset: u64, at: usize, len: usize) -> Result<(), Failure> {
        if !self.config.verify {
            return Ok(());
        }
        if let Some(i) = pattern::verify(seed, offset, &self.buf[at..at + len]) {
            return Err(Failure::fatal(
                ErrorKind::Mismatch,
                format!("body byte at offset {} differs", offset + i as u64),
            ));
        }
        Ok(())
    }

    fn skip_body(&mut self, len_bytes: u64, deadline: Instant) -> Result<(), Failure> {
        let mut left = len_bytes;
        let buffered = ((self.end - self.start) as u64).min(left) as usize;
        self.start += buffered;
        left -= buffered as u64;
        while left > 0 {
            if Instant::now() >= deadline {
                return Err(Failure::fatal(ErrorKind::Timeout, "skipping a body"));
            }
            let n = self.recv_more()?;
            if n == 0 {
                return Err(Failure::fatal(ErrorKind::Io, "closed inside a body"));
            }
            let take = ((self.end - self.start) as u64).min(left) as usize;
            self.start += take;
            left -= take as u64;
        }
        Ok(())
    }
}

/// What an aws-chunked body carries: the pattern of `seed`, `size` bytes, in chunks of
/// `chunk_bytes` whose SHA-256s are `hashes`.
struct AwsChunked<'a> {
    seed: u64,
    size: u64,
    chunk_bytes: u64,
    hashes: &'a [[u8; 32]],
}

/// Sends a streaming-signed body: each chunk's size line with its signature (next in
/// `chain`), its data, CRLF; then the signed final chunk. Framing and data are staged in
/// `buf` and written when it is full, so the syscalls are those of a plain PUT. `sent`
/// counts the data bytes (not the framing).
fn send_aws_chunked(
    stream: &mut TcpStream,
    buf: &mut [u8],
    body: AwsChunked,
    chain: &mut crate::sigv4::ChunkChain,
    sent: &AtomicU64,
) -> std::io::Result<()> {
    let expected_chunks = body.size.div_ceil(body.chunk_bytes);
    if body.hashes.len() as u64 != expected_chunks {
        return Err(std::io::Error::other(format!(
            "{} chunk hashes for {expected_chunks} chunks",
            body.hashes.len()
        )));
    }
    /// Appends `bytes` (smaller than `buf`) to the staged bytes, writing them out first
    /// when they would not fit.
    fn stage(
        stream: &mut TcpStream,
        buf: &mut [u8],
        filled: &mut usize,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        if buf.len() - *filled < bytes.len() {
            stream.write_all(&buf[..*filled])?;
            *filled = 0;
        }
        buf[*filled..*filled + bytes.len()].copy_from_slice(bytes);
        *filled += bytes.len();
        Ok(())
    }
    let mut filled = 0usize;
    for (i, hash) in body.hashes.iter().enumerate() {
        let start = i as u64 * body.chunk_bytes;
        let len = (body.size - start).min(body.chunk_bytes);
        let header = crate::sigv4::chunk_header(len, chain.next(hash));
        stage(stream, buf, &mut filled, header.as_bytes())?;
        let mut at = 0u64;
        while at < len {
            if filled == buf.len() {
                stream.write_all(&buf[..filled])?;
                filled = 0;
            }
            let n = (buf.len() - filled).min((len - at) as usize);
            pattern::fill(body.seed, start + at, &mut buf[filled..filled + n]);
            filled += n;
            at += n as u64;
            sent.fetch_add(n as u64, Relaxed);
        }
        stage(stream, buf, &mut filled, b"\r\n")?;
    }
    let last = crate::sigv4::final_chunk(chain.next(&crate::sigv4::sha256(b"")));
    stage(stream, buf, &mut filled, last.as_bytes())?;
    stream.write_all(&buf[..filled])
}

/// `recv(2)` on a blocking socket with its receive timeout; retries EINTR.
fn recv(fd: i32, buf: &mut [u8], flags: i32) -> Result<usize, Failure> {
    loop {
        // SAFETY: `buf` is a live, writable buffer of `buf.len()` bytes.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(Failure::from_io(err, "recv"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops() {
        assert_eq!(Op::parse("get").unwrap(), Op::Get);
        assert_eq!(Op::parse("put").unwrap(), Op::Put);
        assert_eq!(Op::parse("mix:0.9").unwrap(), Op::Mix { get_ratio: 0.9 });
        assert!(Op::parse("mix:2").is_err());
        assert!(Op::parse("post").is_err());
    }

    #[test]
    fn timeouts_scale_with_size() {
        let config = LoadConfig::new(vec![], vec![]);
        assert_eq!(config.timeout_for(0), Duration::from_secs(10));
        assert_eq!(config.timeout_for(200_000_000), Duration::from_secs(20));
    }

    fn credentials() -> crate::sigv4::Credentials {
        crate::sigv4::Credentials {
            access_key: "STREAMKEY00000000001".into(),
            secret_key: "stream-secret".into(),
            region: "eu-west-3".into(),
        }
    }

    #[test]
    fn an_aws_chunked_body_verifies_chunk_by_chunk() {
        use crate::sigv4::{self, ChunkChain};
        use std::io::Read;
        // 300000 bytes in 65536-byte chunks: four full chunks and a short one, through a
        // staging buffer smaller than one chunk, so flushes fall inside chunks and frames.
        let family = Synthetic::parse("t/stream-:300000:1").unwrap();
        let chunk = 65536;
        let hashes = chunk_hashes(std::slice::from_ref(&family), chunk)["t/stream-0"].clone();
        assert_eq!(hashes.len(), 5);
        let mut signer = sigv4::Signer::new(credentials());
        let (lines, mut chain) = signer.streaming_header_lines(
            "PUT",
            "/t/stream-0",
            "127.0.0.1:1",
            300_000,
            chunk,
            std::time::SystemTime::now(),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let reader = std::thread::spawn(move || {
            let mut wire = Vec::new();
            server.read_to_end(&mut wire).unwrap();
            wire
        });
        let mut buf = vec![0u8; 70_001];
        let sent = AtomicU64::new(0);
        let seed_of_key = pattern::key_seed("t/stream-0");
        send_aws_chunked(
            &mut client,
            &mut buf,
            AwsChunked {
                seed: seed_of_key,
                size: 300_000,
                chunk_bytes: chunk,
                hashes: &hashes,
            },
            &mut chain,
            &sent,
        )
        .unwrap();
        drop(client);
        let wire = reader.join().unwrap();
        assert_eq!(sent.load(Relaxed), 300_000);
        assert_eq!(wire.len() as u64, sigv4::aws_chunked_len(300_000, chunk));
        assert!(lines.contains(&format!("Content-Length: {}\r\n", wire.len())));

        // Check every chunk's signature from the bytes on the wire, as S3 would.
        let header = |name: &str| -> String {
            lines
                .split("\r\n")
                .find_map(|l| l.strip_prefix(name))
                .unwrap()
                .to_string()
        };
        let amz_date = header("x-amz-date: ");
        let seed = header("Authorization: ")
            .rsplit("Signature=")
            .next()
            .unwrap()
            .to_string();
        let key = sigv4::signing_key("stream-secret", &amz_date[..8], "eu-west-3", "s3");
        let scope = format!("{}/eu-west-3/s3/aws4_request", &amz_date[..8]);
        let mut verifier = ChunkChain::new(key, &amz_date, &scope, &seed);
        let mut data = Vec::new();
        let mut pos = 0;
        loop {
            let eol = pos + wire[pos..].windows(2).position(|w| w == b"\r\n").unwrap();
            let line = std::str::from_utf8(&wire[pos..eol]).unwrap();
            let (size, signature) = line.split_once(";chunk-signature=").unwrap();
            let size = usize::from_str_radix(size, 16).unwrap();
            let chunk_data = &wire[eol + 2..eol + 2 + size];
            assert_eq!(
                signature,
                verifier.next(&sigv4::sha256(chunk_data)),
                "{line}"
            );
            data.extend_from_slice(chunk_data);
            assert_eq!(&wire[eol + 2 + size..eol + 4 + size], b"\r\n");
            pos = eol + 4 + size;
            if size == 0 {
                break;
            }
        }
        assert_eq!(pos, wire.len());
        let mut expected = vec![0u8; 300_000];
        pattern::fill(seed_of_key, 0, &mut expected);
        assert!(data == expected, "the chunks carry the key's pattern");
    }

    #[test]
    fn streaming_signed_puts_are_stored_whole_by_the_simulator() {
        let family = Synthetic::parse("t/stream-:1MiB:2").unwrap();
        let nodes = crate::sim::spawn_nodes(1, std::slice::from_ref(&family)).unwrap();
        let mut config = LoadConfig::new(vec![nodes[0].addr()], vec![family.clone()]);
        config.connections = 2;
        config.duration = Duration::from_millis(600);
        config.op = Op::Put;
        config.check_put_etag = true;
        config.expect_continue = true;
        config.credentials = Some(credentials());
        config.streaming_chunk_bytes = Some(100_000);
        let summary = run(&config, |_| {}).unwrap();
        assert_eq!(summary.errors.total(), 0, "{}", summary.human());
        assert!(summary.requests > 0);
        assert_eq!(summary.bytes, summary.requests * (1 << 20));
        let stats = nodes[0].stats();
        assert_eq!(stats.responses_2xx, summary.requests);
        assert_eq!(stats.requests_of("STREAMKEY00000000001"), summary.requests);
        let encoded = crate::sigv4::aws_chunked_len(1 << 20, 100_000);
        assert!(stats.bytes_in >= summary.requests * encoded, "{stats:?}");
        assert!(
            stats.bytes_in < summary.requests * (encoded + 2048),
            "{stats:?}"
        );
        // What was stored reads back as the pattern.
        let mut get = LoadConfig::new(vec![nodes[0].addr()], vec![family]);
        get.connections = 1;
        get.duration = Duration::from_millis(200);
        let summary = run(&get, |_| {}).unwrap();
        assert_eq!(summary.errors.total(), 0, "{}", summary.human());

        // Without credentials there is nothing to sign chunks with.
        config.credentials = None;
        assert!(run(&config, |_| {}).is_err());
    }

    #[test]
    fn a_checking_simulator_accepts_these_signatures_and_no_others() {
        let family = Synthetic::parse("t/signed-:300000:2").unwrap();
        let nodes = crate::sim::spawn_nodes(1, std::slice::from_ref(&family)).unwrap();
        nodes[0].check_sigv4("STREAMKEY00000000001", "stream-secret");
        let mut config = LoadConfig::new(vec![nodes[0].addr()], vec![family]);
        config.connections = 2;
        config.duration = Duration::from_millis(300);
        config.credentials = Some(credentials());
        // Header-signed GETs and PUTs, then streaming-signed PUTs: every signature holds.
        for (op, streaming) in [(Op::Get, None), (Op::Put, None), (Op::Put, Some(65_536))] {
            config.op = op;
            config.check_put_etag = op == Op::Put;
            config.streaming_chunk_bytes = streaming;
            let before = nodes[0].stats();
            let summary = run(&config, |_| {}).unwrap();
            assert_eq!(summary.errors.total(), 0, "{op:?}: {}", summary.human());
            let after = nodes[0].stats();
            assert_eq!(after.sigv4_checked - before.sigv4_checked, summary.requests);
            // 300000 bytes in 64 KiB chunks: 5 chunks and the final one.
            let chunks = if streaming.is_some() { 6 } else { 0 };
            assert_eq!(
                after.sigv4_chunks_checked - before.sigv4_chunks_checked,
                chunks * summary.requests
            );
            assert_eq!(after.sigv4_failures, 0);
        }
        // A wrong secret: every request is refused by the node, head or body.
        config.credentials = Some(crate::sigv4::Credentials {
            secret_key: "not-the-secret".into(),
            ..credentials()
        });
        for streaming in [None, Some(65_536)] {
            config.streaming_chunk_bytes = streaming;
            let summary = run(&config, |_| {}).unwrap();
            assert!(summary.requests > 0);
            // (A request failing after the end of the run is not counted as an error.)
            assert!(
                summary.errors.total() + 2 >= summary.requests && summary.errors.status > 0,
                "{}",
                summary.human()
            );
        }
        assert!(nodes[0].stats().sigv4_failures > 0);
        // Cleared: nothing is checked any more.
        nodes[0].clear_sigv4();
        let summary = run(&config, |_| {}).unwrap();
        assert_eq!(summary.errors.total(), 0, "{}", summary.human());
    }

    #[test]
    fn put_etags_are_what_the_simulator_answers() {
        let family = Synthetic::parse("t/etag-:10000:2").unwrap();
        let etags = put_etags(std::slice::from_ref(&family));
        assert_eq!(etags.len(), 2);
        for index in 0..2 {
            let key = family.key(index);
            let object = crate::sim::store::synthetic_object(&key, 10_000).unwrap();
            assert_eq!(etags[&key], object.etag);
        }
    }
}
