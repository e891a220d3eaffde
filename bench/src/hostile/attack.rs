//! The attack client: what a hostile or broken client fleet does to a proxy's client
//! side, in one process and on few threads, with configurable counts and source
//! addresses (connections bind to `127.0.0.x` in turn, so per-IP caps can be studied).
//!
//! - **slowloris**: request heads sent one byte every interval, never finished;
//! - **slow bodies**: PUT heads sent at once, then one body byte every interval;
//! - **idle**: connections opened and never written to;
//! - **header bombs**: complete GETs with many header fields, or a few huge ones up to a
//!   head size, back to back on fresh connections;
//! - **connection flood**: connect and close at once, as fast as allowed.
//!
//! The first three are "held" connections, driven by one thread with `poll(2)`: the report
//! says how many the server closed (EOF or RST), after how long, what it answered first,
//! and how many were still open at the end. Bombs and the flood run on worker threads.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::hist::Histogram;

/// Answer bytes kept per held connection (enough for a status line).
const ANSWER_KEEP_BYTES: usize = 256;
/// How long a header bomb waits for its answer.
const BOMB_ANSWER_WAIT: Duration = Duration::from_secs(5);
/// Longest `poll(2)` wait of the held-connection loop (so the deadline is kept).
const POLL_MAX: Duration = Duration::from_millis(100);

/// One run's parameters. Counts of 0 leave an attack out.
#[derive(Clone, Debug)]
pub struct AttackConfig {
    /// The proxy under attack.
    pub target: SocketAddr,
    /// Source addresses, used in turn by new connections (empty: the kernel's choice).
    pub sources: Vec<IpAddr>,
    /// How long the attack lasts.
    pub duration: Duration,
    /// Target of slowloris heads and header bombs (`/bucket/key`).
    pub path: String,
    /// Slow-body PUTs go to this prefix followed by the connection's number.
    pub put_prefix: String,
    /// Slowloris connections.
    pub slowloris: usize,
    /// A slowloris connection sends one head byte this often.
    pub slowloris_every: Duration,
    /// Slow-body PUT connections.
    pub slow_bodies: usize,
    /// A slow body sends one byte this often.
    pub slow_body_every: Duration,
    /// Declared `Content-Length`s of the slow bodies, used in turn.
    pub slow_body_bytes: Vec<u64>,
    /// Idle connections (never written to).
    pub idle: usize,
    /// Header-bomb worker threads.
    pub header_bombs: usize,
    /// Fields of a "many fields" bomb.
    pub bomb_fields: usize,
    /// Field bytes of a "huge fields" bomb (split into fields of at most 8000 bytes).
    pub bomb_field_bytes: usize,
    /// Connection-flood worker threads.
    pub flood: usize,
    /// Flood connections per second over all flood threads; 0 = as fast as possible.
    pub flood_rate: u64,
    /// Connect timeout of every connection.
    pub connect_timeout: Duration,
    /// End as soon as every held connection is closed (only when there are no bomb or
    /// flood workers, which run for the whole duration).
    pub stop_when_all_closed: bool,
}

impl AttackConfig {
    /// Every attack off, against `target` for `duration`.
    pub fn new(target: SocketAddr, duration: Duration) -> Self {
        Self {
            target,
            sources: Vec::new(),
            duration,
            path: "/bench/small-0".into(),
            put_prefix: "/bench/attack-slow-".into(),
            slowloris: 0,
            slowloris_every: Duration::from_secs(1),
            slow_bodies: 0,
            slow_body_every: Duration::from_secs(1),
            slow_body_bytes: vec![1 << 20],
            idle: 0,
            header_bombs: 0,
            bomb_fields: 1000,
            bomb_field_bytes: 15 * 1024,
            flood: 0,
            flood_rate: 0,
            connect_timeout: Duration::from_secs(2),
            stop_when_all_closed: false,
        }
    }

    fn source(&self, n: usize) -> Option<IpAddr> {
        (!self.sources.is_empty()).then(|| self.sources[n % self.sources.len()])
    }
}

/// Parses `127.0.0.2,127.0.0.3` or a last-octet range `127.0.0.2-127.0.0.9`.
pub fn parse_sources(text: &str) -> Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            None => out.push(part.trim().parse()?),
            Some((a, b)) => {
                let (a, b): (std::net::Ipv4Addr, std::net::Ipv4Addr) =
                    (a.trim().parse()?, b.trim().parse()?);
                let (a, b) = (u32::from(a), u32::from(b));
                if b < a || b - a > 1 << 16 {
                    bail!("source range {part:?} is empty or too long");
                }
                out.extend((a..=b).map(|x| IpAddr::V4(x.into())));
            }
        }
    }
    Ok(out)
}

/// The kinds of held connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Held {
    /// A head sent a byte at a time.
    Slowloris,
    /// A PUT body sent a byte at a time.
    SlowBody,
    /// Nothing sent.
    Idle,
}

impl Held {
    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Held::Slowloris => "slowloris",
            Held::SlowBody => "slow-body",
            Held::Idle => "idle",
        }
    }
}

/// What happened to the held connections of one kind.
#[derive(Clone, Debug, PartialEq)]
pub struct HeldReport {
    /// The kind.
    pub kind: Held,
    /// Connections tried.
    pub attempted: u64,
    /// Connects that failed or timed out.
    pub connect_failed: u64,
    /// Connections the server closed (EOF or RST) before the end.
    pub closed_by_server: u64,
    /// Of those, with an RST.
    pub reset_by_server: u64,
    /// Seconds from connect to the server's close, one per closed connection.
    pub closed_after_s: Vec<f64>,
    /// Connections still open when the attack ended.
    pub open_at_end: u64,
    /// Most connections of this kind open at once.
    pub open_peak: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Status of the first answer the server sent, counted (0 = bytes that are not a
    /// status line).
    pub answers: BTreeMap<u16, u64>,
}

impl HeldReport {
    fn new(kind: Held) -> Self {
        Self {
            kind,
            attempted: 0,
            connect_failed: 0,
            closed_by_server: 0,
            reset_by_server: 0,
            closed_after_s: Vec::new(),
            open_at_end: 0,
            open_peak: 0,
            bytes_sent: 0,
            answers: BTreeMap::new(),
        }
    }

    /// The median and the largest time to the server's close, seconds.
    pub fn closed_after(&self) -> Option<(f64, f64)> {
        let mut v = self.closed_after_s.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some((v[v.len() / 2], v[v.len() - 1]))
    }
}

/// What happened to the header bombs.
#[derive(Clone, Default)]
pub struct BombReport {
    /// Bombs sent.
    pub sent: u64,
    /// Connects that failed.
    pub connect_failed: u64,
    /// Answers by status.
    pub answers: BTreeMap<u16, u64>,
    /// Connections closed (or reset, or timed out) without an answer.
    pub unanswered: u64,
    /// Time from connect to the answer's status line, µs.
    pub answer_us: Histogram,
}

impl std::fmt::Debug for BombReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BombReport")
            .field("sent", &self.sent)
            .field("connect_failed", &self.connect_failed)
            .field("answers", &self.answers)
            .field("unanswered", &self.unanswered)
            .field("answer_p50_us", &self.answer_us.quantile(0.5))
            .finish()
    }
}

/// What happened to the connection flood.
#[derive(Clone, Debug, Default)]
pub struct FloodReport {
    /// Connections opened (and closed at once).
    pub connections: u64,
    /// Connects that failed.
    pub connect_failed: u64,
}

/// Everything one run saw.
#[derive(Clone, Debug)]
pub struct AttackReport {
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Per held kind that ran.
    pub held: Vec<HeldReport>,
    /// The header bombs, if any ran.
    pub bombs: Option<BombReport>,
    /// The flood, if it ran.
    pub flood: Option<FloodReport>,
}

impl AttackReport {
    /// The report of `kind`, if it ran.
    pub fn held(&self, kind: Held) -> Option<&HeldReport> {
        self.held.iter().find(|h| h.kind == kind)
    }

    /// One JSON object.
    pub fn to_json(&self) -> String {
        let answers = |m: &BTreeMap<u16, u64>| {
            let items: Vec<String> = m.iter().map(|(s, n)| format!("\"{s}\":{n}")).collect();
            format!("{{{}}}", items.join(","))
        };
        let held: Vec<String> = self
            .held
            .iter()
            .map(|h| {
                let closed = h
                    .closed_after()
                    .map_or("null".to_string(), |(m, x)| format!("[{m:.3},{x:.3}]"));
                format!(
                    "{{\"kind\":\"{}\",\"attempted\":{},\"connect_failed\":{},\"closed_by_server\":{},\"reset_by_server\":{},\"closed_after_median_max_s\":{closed},\"open_at_end\":{},\"open_peak\":{},\"bytes_sent\":{},\"answers\":{}}}",
                    h.kind.name(),
                    h.attempted,
                    h.connect_failed,
                    h.closed_by_server,
                    h.reset_by_server,
                    h.open_at_end,
                    h.open_peak,
                    h.bytes_sent,
                    answers(&h.answers)
                )
            })
            .collect();
        let bombs = self.bombs.as_ref().map_or("null".to_string(), |b| {
            format!(
                "{{\"sent\":{},\"connect_failed\":{},\"unanswered\":{},\"answers\":{},\"answer_p50_us\":{},\"answer_p99_us\":{}}}",
                b.sent,
                b.connect_failed,
                b.unanswered,
                answers(&b.answers),
                b.answer_us.quantile(0.5),
                b.answer_us.quantile(0.99)
            )
        });
        let flood = self.flood.as_ref().map_or("null".to_string(), |f| {
            format!(
                "{{\"connections\":{},\"connect_failed\":{},\"per_s\":{:.1}}}",
                f.connections,
                f.connect_failed,
                f.connections as f64 / self.elapsed.as_secs_f64().max(1e-9)
            )
        });
        format!(
            "{{\"elapsed_s\":{:.3},\"held\":[{}],\"bombs\":{bombs},\"flood\":{flood}}}",
            self.elapsed.as_secs_f64(),
            held.join(",")
        )
    }

    /// A few lines for people.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "attack ran {:.1} s", self.elapsed.as_secs_f64());
        for h in &self.held {
            let closed = h.closed_after().map_or(String::new(), |(m, x)| {
                format!(" after {m:.1} s median, {x:.1} s max")
            });
            let _ = writeln!(
                out,
                "  {:<10} {} opened ({} failed to connect), {} closed by the server ({} with RST){closed}, {} open at the end (peak {}), first answers {:?}",
                h.kind.name(),
                h.attempted - h.connect_failed,
                h.connect_failed,
                h.closed_by_server,
                h.reset_by_server,
                h.open_at_end,
                h.open_peak,
                h.answers
            );
        }
        if let Some(b) = &self.bombs {
            let _ = writeln!(
                out,
                "  bombs      {} sent ({} failed to connect), answers {:?}, {} unanswered, answer p50 {} µs p99 {} µs",
                b.sent,
                b.connect_failed,
                b.answers,
                b.unanswered,
                b.answer_us.quantile(0.5),
                b.answer_us.quantile(0.99)
            );
        }
        if let Some(f) = &self.flood {
            let _ = writeln!(
                out,
                "  flood      {} connections ({:.0}/s), {} failed",
                f.connections,
                f.connections as f64 / self.elapsed.as_secs_f64().max(1e-9),
                f.connect_failed
            );
        }
        out
    }
}

/// Connects to `target` from `source` (if given), within `timeout`.
fn connect(
    target: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(target),
        socket2::Type::STREAM,
        None,
    )?;
    if let Some(source) = source {
        // Let connect pick the port for the 4-tuple: a flood from one source address
        // would otherwise run out of ports at bind time.
        let one: libc::c_int = 1;
        // SAFETY: setsockopt with a valid int option value on our own socket.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        socket.bind(&SocketAddr::new(source, 0).into())?;
    }
    socket.connect_timeout(&target.into(), timeout)?;
    socket.set_tcp_nodelay(true)?;
    Ok(socket.into())
}

/// The status code at the start of `bytes` (`HTTP/1.x NNN`), or 0.
fn status_of(bytes: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(16)]);
    if !text.starts_with("HTTP/1.") {
        return 0;
    }
    text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// One held connection.
struct Conn {
    kind: Held,
    stream: TcpStream,
    opened: Instant,
    next_write: Instant,
    every: Duration,
    /// What it sends, a byte per interval, from `sent`.
    script: std::sync::Arc<Vec<u8>>,
    sent: usize,
    answer: Vec<u8>,
}

/// Runs the attack until its duration has passed (or `stop` is set); returns what it saw.
pub fn run(config: &AttackConfig, stop: &AtomicBool) -> Result<AttackReport> {
    let started = Instant::now();
    let deadline = started + config.duration;
    let workers_stop = AtomicBool::new(false);
    let (held, bombs, flood) = std::thread::scope(|scope| {
        let bombs: Vec<_> = (0..config.header_bombs)
            .map(|t| {
                let workers_stop = &workers_stop;
                scope.spawn(move || bomb_worker(config, t, deadline, stop, workers_stop))
            })
            .collect();
        let floods: Vec<_> = (0..config.flood)
            .map(|t| {
                let workers_stop = &workers_stop;
                scope.spawn(move || flood_worker(config, t, deadline, stop, workers_stop))
            })
            .collect();
        let held = held_loop(config, deadline, stop);
        if held.is_err() {
            workers_stop.store(true, Relaxed);
        }
        let bombs = (!bombs.is_empty()).then(|| {
            let mut total = BombReport::default();
            for handle in bombs {
                if let Ok(r) = handle.join() {
                    total.sent += r.sent;
                    total.connect_failed += r.connect_failed;
                    total.unanswered += r.unanswered;
                    for (s, n) in r.answers {
                        *total.answers.entry(s).or_insert(0) += n;
                    }
                    total.answer_us.merge(&r.answer_us);
                }
            }
            total
        });
        let flood = (!floods.is_empty()).then(|| {
            let mut total = FloodReport::default();
            for handle in floods {
                if let Ok(r) = handle.join() {
                    total.connections += r.connections;
                    total.connect_failed += r.connect_failed;
                }
            }
            total
        });
        (held, bombs, flood)
    });
    Ok(AttackReport {
        elapsed: started.elapsed(),
        held: held?,
        bombs,
        flood,
    })
}

/// The bytes a slowloris connection drips: a request line, then header fields forever
/// (this much is more than a day at a byte a second).
fn slowloris_script(path: &str) -> Vec<u8> {
    let mut out = format!("GET {path} HTTP/1.1\r\nHost: attack\r\n").into_bytes();
    let mut i = 0u64;
    while out.len() < 1 << 17 {
        out.extend_from_slice(format!("X-Slow-{i}: {i}\r\n").as_bytes());
        i += 1;
    }
    out
}

/// Opens the held connections, then drips their bytes and watches for the server's
/// closes until the deadline.
fn held_loop(
    config: &AttackConfig,
    deadline: Instant,
    stop: &AtomicBool,
) -> Result<Vec<HeldReport>> {
    let mut reports: Vec<HeldReport> = Vec::new();
    let mut conns: Vec<Conn> = Vec::new();
    let loris = std::sync::Arc::new(slowloris_script(&config.path));
    let mut n_source = 0usize;
    let kinds = [
        (Held::Slowloris, config.slowloris),
        (Held::SlowBody, config.slow_bodies),
        (Held::Idle, config.idle),
    ];
    for (kind, count) in kinds {
        if count == 0 {
            continue;
        }
        let mut report = HeldReport::new(kind);
        for i in 0..count {
            if Instant::now() >= deadline || stop.load(Relaxed) {
                break;
            }
            report.attempted += 1;
            let source = config.source(n_source);
            n_source += 1;
            let mut stream = match connect(config.target, source, config.connect_timeout) {
                Ok(s) => s,
                Err(_) => {
                    report.connect_failed += 1;
                    continue;
                }
            };
            let opened = Instant::now();
            let (script, every) = match kind {
                Held::Slowloris => (loris.clone(), config.slowloris_every),
                Held::SlowBody => {
                    let sizes = &config.slow_body_bytes;
                    let len = if sizes.is_empty() {
                        1 << 20
                    } else {
                        sizes[i % sizes.len()]
                    };
                    let head = format!(
                        "PUT {}{i} HTTP/1.1\r\nHost: attack\r\nContent-Length: {len}\r\n\r\n",
                        config.put_prefix
                    );
                    // The head goes at once; a refused one is seen by the loop.
                    if stream.write_all(head.as_bytes()).is_ok() {
                        report.bytes_sent += head.len() as u64;
                    }
                    let body = vec![b'a'; usize::try_from(len).unwrap_or(usize::MAX).min(1 << 20)];
                    (std::sync::Arc::new(body), config.slow_body_every)
                }
                Held::Idle => (std::sync::Arc::new(Vec::new()), Duration::from_secs(3600)),
            };
            stream.set_nonblocking(true)?;
            conns.push(Conn {
                kind,
                stream,
                opened,
                next_write: opened,
                every,
                script,
                sent: 0,
                answer: Vec::new(),
            });
        }
        reports.push(report);
    }
    let report_of = |reports: &mut Vec<HeldReport>, kind: Held| -> usize {
        reports.iter().position(|r| r.kind == kind).unwrap_or(0)
    };
    let mut scratch = vec![0u8; 16 * 1024];
    let mut pfds: Vec<libc::pollfd> = Vec::new();
    let mut peak: BTreeMap<Held, u64> = BTreeMap::new();
    loop {
        for kind in [Held::Slowloris, Held::SlowBody, Held::Idle] {
            let open = conns.iter().filter(|c| c.kind == kind).count() as u64;
            let p = peak.entry(kind).or_insert(0);
            *p = (*p).max(open);
        }
        let now = Instant::now();
        if now >= deadline || stop.load(Relaxed) {
            break;
        }
        if config.stop_when_all_closed
            && conns.is_empty()
            && config.header_bombs == 0
            && config.flood == 0
        {
            break;
        }
        // Drip what is due.
        let mut closed: Vec<(usize, bool)> = Vec::new();
        for (i, c) in conns.iter_mut().enumerate() {
            if c.next_write > now || c.sent >= c.script.len() {
                continue;
            }
            c.next_write = now + c.every;
            match (&c.stream).write(&c.script[c.sent..c.sent + 1]) {
                Ok(n) => {
                    c.sent += n;
                    let r = report_of(&mut reports, c.kind);
                    reports[r].bytes_sent += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => closed.push((i, e.kind() == ErrorKind::ConnectionReset)),
            }
        }
        // Wait for the server to say or do something.
        let next_write = conns
            .iter()
            .filter(|c| c.sent < c.script.len())
            .map(|c| c.next_write)
            .min()
            .unwrap_or(deadline);
        let wait = next_write
            .min(deadline)
            .saturating_duration_since(Instant::now())
            .min(POLL_MAX);
        pfds.clear();
        pfds.extend(conns.iter().map(|c| libc::pollfd {
            fd: c.stream.as_raw_fd(),
            events: libc::POLLIN | libc::POLLRDHUP,
            revents: 0,
        }));
        // SAFETY: `pfds` is a valid array of `pfds.len()` pollfds.
        let ready = unsafe {
            libc::poll(
                pfds.as_mut_ptr(),
                pfds.len() as libc::nfds_t,
                wait.as_millis() as libc::c_int,
            )
        };
        if ready < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() != ErrorKind::Interrupted {
                bail!("poll: {err}");
            }
        }
        for (i, pfd) in pfds.iter().enumerate() {
            if pfd.revents == 0 || closed.iter().any(|(j, _)| *j == i) {
                continue;
            }
            let c = &mut conns[i];
            loop {
                match (&c.stream).read(&mut scratch) {
                    Ok(0) => {
                        closed.push((i, false));
                        break;
                    }
                    Ok(n) => {
                        let room = ANSWER_KEEP_BYTES.saturating_sub(c.answer.len());
                        c.answer.extend_from_slice(&scratch[..n.min(room)]);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        closed.push((i, e.kind() == ErrorKind::ConnectionReset));
                        break;
                    }
                }
            }
        }
        closed.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
        closed.dedup_by_key(|(i, _)| *i);
        for (i, reset) in closed {
            let c = conns.swap_remove(i);
            let r = report_of(&mut reports, c.kind);
            let report = &mut reports[r];
            report.closed_by_server += 1;
            report.reset_by_server += u64::from(reset);
            report.closed_after_s.push(c.opened.elapsed().as_secs_f64());
            if !c.answer.is_empty() {
                *report.answers.entry(status_of(&c.answer)).or_insert(0) += 1;
            }
        }
    }
    for c in conns {
        let r = report_of(&mut reports, c.kind);
        reports[r].open_at_end += 1;
        if !c.answer.is_empty() {
            *reports[r].answers.entry(status_of(&c.answer)).or_insert(0) += 1;
        }
    }
    for r in &mut reports {
        r.open_peak = peak.get(&r.kind).copied().unwrap_or(0);
    }
    Ok(reports)
}

/// The two shapes of header bomb, in turn: many small fields, or huge fields up to
/// `bomb_field_bytes`.
fn bomb(config: &AttackConfig, n: u64) -> Vec<u8> {
    let mut out = format!(
        "GET {} HTTP/1.1\r\nHost: attack\r\nConnection: close\r\n",
        config.path
    );
    if n.is_multiple_of(2) {
        for i in 0..config.bomb_fields {
            let _ = write!(out, "X-Bomb-{i}: {i}\r\n");
        }
    } else {
        let mut left = config.bomb_field_bytes;
        let mut i = 0;
        while left > 0 {
            let len = left.min(8000);
            let _ = write!(out, "X-Huge-{i}: {}\r\n", "h".repeat(len));
            left -= len;
            i += 1;
        }
    }
    out.push_str("\r\n");
    out.into_bytes()
}

fn bomb_worker(
    config: &AttackConfig,
    thread: usize,
    deadline: Instant,
    stop: &AtomicBool,
    workers_stop: &AtomicBool,
) -> BombReport {
    let mut report = BombReport::default();
    let mut n = thread as u64;
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline && !stop.load(Relaxed) && !workers_stop.load(Relaxed) {
        let source = config.source(n as usize);
        let request = bomb(config, n);
        n += 1;
        let started = Instant::now();
        let mut stream = match connect(config.target, source, config.connect_timeout) {
            Ok(s) => s,
            Err(_) => {
                report.connect_failed += 1;
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        report.sent += 1;
        let _ = stream.set_write_timeout(Some(BOMB_ANSWER_WAIT));
        let _ = stream.set_read_timeout(Some(BOMB_ANSWER_WAIT));
        // The server may answer and close before the whole bomb is written.
        let _ = stream.write_all(&request);
        let mut got = Vec::new();
        let status = loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break None,
                Ok(k) => {
                    got.extend_from_slice(&buf[..k]);
                    if got.len() >= 12 {
                        break Some(status_of(&got));
                    }
                }
            }
        };
        match status {
            Some(s) => {
                report
                    .answer_us
                    .record(started.elapsed().as_micros() as u64);
                *report.answers.entry(s).or_insert(0) += 1;
            }
            None => report.unanswered += 1,
        }
    }
    report
}

fn flood_worker(
    config: &AttackConfig,
    thread: usize,
    deadline: Instant,
    stop: &AtomicBool,
    workers_stop: &AtomicBool,
) -> FloodReport {
    let mut report = FloodReport::default();
    let per_thread = config.flood_rate as f64 / config.flood.max(1) as f64;
    let started = Instant::now();
    let mut n = 0u64;
    while Instant::now() < deadline && !stop.load(Relaxed) && !workers_stop.load(Relaxed) {
        if per_thread > 0.0 {
            let due = started + Duration::from_secs_f64(n as f64 / per_thread);
            let now = Instant::now();
            if due > now {
                std::thread::sleep((due - now).min(deadline.saturating_duration_since(now)));
                continue;
            }
        }
        let source = config.source(thread + n as usize * config.flood.max(1));
        n += 1;
        match connect(config.target, source, config.connect_timeout) {
            Ok(stream) => {
                report.connections += 1;
                drop(stream);
            }
            Err(_) => report.connect_failed += 1,
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn sources_parse() {
        let v = parse_sources("127.0.0.2-127.0.0.4,127.0.0.9").unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[3], "127.0.0.9".parse::<IpAddr>().unwrap());
        assert!(parse_sources("127.0.0.4-127.0.0.2").is_err());
        assert!(parse_sources("x").is_err());
    }

    #[test]
    fn bombs_have_both_shapes() {
        let mut c = AttackConfig::new("127.0.0.1:1".parse().unwrap(), Duration::ZERO);
        c.bomb_fields = 300;
        c.bomb_field_bytes = 20_000;
        let many = String::from_utf8(bomb(&c, 0)).unwrap();
        assert_eq!(many.matches("X-Bomb-").count(), 300);
        let huge = String::from_utf8(bomb(&c, 1)).unwrap();
        assert_eq!(huge.matches("X-Huge-").count(), 3);
        assert!(huge.len() > 20_000 && huge.ends_with("\r\n\r\n"));
        assert_eq!(status_of(b"HTTP/1.1 431 Too Large\r\n"), 431);
        assert_eq!(status_of(b"garbage"), 0);
    }

    #[test]
    fn held_connections_see_the_servers_close() {
        // A server that reads one byte of every connection and closes the first two
        // connections after 100 ms, leaving the others open.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut kept = Vec::new();
            for i in 0..4 {
                let (mut s, _) = listener.accept().unwrap();
                if i < 2 {
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(100));
                        let _ = s.write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n");
                    });
                } else {
                    kept.push(s);
                }
            }
            std::thread::sleep(Duration::from_millis(1500));
            drop(kept);
        });
        let mut config = AttackConfig::new(addr, Duration::from_millis(800));
        config.slowloris = 2;
        config.slowloris_every = Duration::from_millis(50);
        config.idle = 2;
        config.sources = parse_sources("127.0.0.2-127.0.0.3").unwrap();
        let report = run(&config, &AtomicBool::new(false)).unwrap();
        let loris = report.held(Held::Slowloris).unwrap();
        assert_eq!(
            (loris.attempted, loris.closed_by_server),
            (2, 2),
            "{report:?}"
        );
        assert_eq!(loris.answers.get(&408), Some(&2));
        assert!(loris.bytes_sent >= 2);
        let idle = report.held(Held::Idle).unwrap();
        assert_eq!((idle.open_at_end, idle.open_peak), (2, 2), "{report:?}");
        server.join().unwrap();
    }
}
