//! Moving message bodies between two connections. Bodies with a known length go
//! socket → pipe → socket with nonblocking `splice(2)` after a readiness wait, so the bytes
//! never enter user space (docs/design.md: this is 2–3× cheaper per GB than copying). Small
//! bodies, bytes already read with a head, and the forced-copy mode go through a user-space
//! buffer. Every byte count is bounded by the message's framing: the relay never reads past
//! the current message's end.
//!
//! Every wait has a deadline, so no peer can hold a transfer (and the node slot behind it)
//! for nothing: a peer that does not move for `idle_timeout` fails the transfer, and with a
//! [`RateFloor`] so does one that trickles — each window of the body must move at least the
//! floor's bytes, as nginx's `client_body_timeout`/`send_timeout` and HAProxy's timeouts cut
//! slow peers. Time weir itself holds a body back (a byte limit's pacing) does not count
//! against the peer. The side that is waited on when a deadline passes is the side blamed.

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::conn::Conn;
use crate::error::{Error, Kind, Side};
use crate::http::{ChunkItem, ChunkedDecoder};
use crate::pipe::{Pipe, PipePool};
use crate::sys;

/// Size of a connection's user-space copy buffer.
const COPY_BUF_BYTES: usize = 128 * 1024;

/// How bodies move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    /// Zero-copy through a kernel pipe.
    Splice,
    /// Through a user-space buffer (for small bodies, or forced to measure zero-copy).
    Copy,
}

/// Bytes moved, by mechanism: updated as the bytes move, so a live-transfer view (the
/// admin `/flows`) can read progress while the relay runs.
#[derive(Debug, Default)]
pub struct Moved {
    spliced: Cell<u64>,
    copied: Cell<u64>,
}

/// A snapshot of [`Moved`], for metrics deltas.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MovedCounts {
    /// Bytes moved with `splice`.
    pub spliced: u64,
    /// Bytes copied through user space.
    pub copied: u64,
}

impl MovedCounts {
    /// All bytes.
    pub fn total(&self) -> u64 {
        self.spliced + self.copied
    }

    /// What was moved since `earlier`.
    pub fn since(&self, earlier: MovedCounts) -> MovedCounts {
        MovedCounts {
            spliced: self.spliced - earlier.spliced,
            copied: self.copied - earlier.copied,
        }
    }
}

impl Moved {
    /// The counts now.
    pub fn counts(&self) -> MovedCounts {
        MovedCounts {
            spliced: self.spliced.get(),
            copied: self.copied.get(),
        }
    }

    /// All bytes that reached the destination.
    pub fn total(&self) -> u64 {
        self.spliced.get() + self.copied.get()
    }

    fn add_spliced(&self, n: u64) {
        self.spliced.set(self.spliced.get() + n);
    }

    /// Counts `n` bytes the caller moved itself through user space (e.g. a small body
    /// sent together with its head).
    pub fn record_copied(&self, n: u64) {
        self.add_copied(n);
    }

    fn add_copied(&self, n: u64) {
        self.copied.set(self.copied.get() + n);
    }
}

/// Permission to move a shaped body's bytes: the byte budget of a rate-limited transfer.
/// The relay asks before each quantum and hands back what it could not move, so a capped
/// transfer moves at the granted rate — spliced bodies too.
pub trait Pacer {
    /// How many of `want` bytes may move now (`Go(n)`, `n <= want`), or how long to wait
    /// before asking again.
    fn grant(&self, want: u64) -> Pace;
    /// Bytes granted but not moved.
    fn unused(&self, bytes: u64);
}

/// A [`Pacer`]'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Move up to this many bytes now.
    Go(u64),
    /// Move nothing; ask again after this long.
    Wait(Duration),
}

/// The slowest a body may move before its transfer is cut: averaged over each `window`,
/// at least `bytes_per_sec`. A trickling peer (one byte a second keeps an idle timeout
/// from ever firing) would otherwise hold a connection and a node slot indefinitely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateFloor {
    /// Bytes per second the body must average over each window.
    pub bytes_per_sec: u64,
    /// How long each average is taken over; the first window starts with the body.
    pub window: Duration,
}

impl RateFloor {
    /// The bytes a whole window must move.
    fn window_bytes(&self) -> u64 {
        let bytes = self.bytes_per_sec as f64 * self.window.as_secs_f64();
        bytes as u64
    }
}

/// How far the current body has come in its current rate window.
#[derive(Debug, Clone, Copy)]
struct Progress {
    window_start: Instant,
    window_bytes: u64,
}

/// One endpoint of a relay step: the connection and which side it is.
pub struct End<'a> {
    /// The connection.
    pub conn: &'a mut Conn,
    /// Whose connection it is, for error attribution.
    pub side: Side,
}

/// A core's body mover: owns the pipe pool handle and the copy buffer.
pub struct Mover {
    mode: BodyMode,
    pipes: Rc<PipePool>,
    copy_buf: Vec<u8>,
    idle_timeout: Duration,
    splice_bytes_min: u64,
    pacer: Option<Rc<dyn Pacer>>,
    floor: Option<RateFloor>,
    progress: Cell<Progress>,
}

impl Mover {
    /// A mover in `mode`; bodies shorter than `splice_bytes_min` are copied (a pipe round
    /// trip costs more than a small copy), and a peer idle for `idle_timeout` fails.
    pub fn new(
        mode: BodyMode,
        pipes: Rc<PipePool>,
        idle_timeout: Duration,
        splice_bytes_min: u64,
    ) -> Self {
        Mover {
            mode,
            pipes,
            copy_buf: Vec::new(),
            idle_timeout,
            splice_bytes_min,
            pacer: None,
            floor: None,
            progress: Cell::new(Progress {
                window_start: Instant::now(),
                window_bytes: 0,
            }),
        }
    }

    /// Cuts bodies that move slower than `floor` from now on (`None`: only the idle
    /// timeout applies).
    pub fn set_rate_floor(&mut self, floor: Option<RateFloor>) {
        self.floor = floor;
    }

    /// Fails a peer idle for `timeout` from now on (a request's own `io_timeout`).
    pub fn set_idle_timeout(&mut self, timeout: Duration) {
        self.idle_timeout = timeout;
    }

    /// Starts the rate windows of a new body: call before moving a body in pieces of
    /// one's own (the relay's own entry points call it themselves).
    pub fn begin_body(&self) {
        self.progress.set(Progress {
            window_start: Instant::now(),
            window_bytes: 0,
        });
    }

    /// Counts `n` body bytes that moved, towards the current rate window.
    fn advanced(&self, n: u64) {
        let mut p = self.progress.get();
        p.window_bytes = p.window_bytes.saturating_add(n);
        self.progress.set(p);
    }

    /// Excludes `d` that weir itself held the body back (pacing) from the rate window.
    fn paused(&self, d: Duration) {
        let mut p = self.progress.get();
        p.window_start += d;
        self.progress.set(p);
    }

    /// Fails the transfer on `side` when a whole rate window has passed below the floor;
    /// otherwise starts the next window once the current one is over.
    fn check_floor(&self, side: Side, now: Instant) -> Result<(), Error> {
        let Some(floor) = self.floor else {
            return Ok(());
        };
        let p = self.progress.get();
        if now < p.window_start + floor.window {
            return Ok(());
        }
        if p.window_bytes < floor.window_bytes() {
            return Err(Error::new(
                side,
                Kind::Timeout,
                format!(
                    "body moved {} bytes in {:?}, below the floor of {} bytes/s",
                    p.window_bytes, floor.window, floor.bytes_per_sec
                ),
            ));
        }
        self.progress.set(Progress {
            window_start: now,
            window_bytes: 0,
        });
        Ok(())
    }

    /// Waits for `side` (the future `make` builds: readiness, typically) under both
    /// deadlines: the idle timeout from now, and the end of the current rate window,
    /// where the floor is checked and the wait goes on if it holds.
    async fn wait<F, Fut>(&self, side: Side, mut make: F) -> Result<(), Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = io::Result<()>>,
    {
        let idle_deadline = Instant::now() + self.idle_timeout;
        loop {
            let now = Instant::now();
            self.check_floor(side, now)?;
            if now >= idle_deadline {
                return Err(Error::new(side, Kind::Timeout, "idle timeout"));
            }
            let mut until = idle_deadline;
            if let Some(floor) = self.floor {
                until = until.min(self.progress.get().window_start + floor.window);
            }
            // A window that ends now still gets one short wait: the peer's bytes may be
            // in flight.
            let wait = until
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            match monoio::time::timeout(wait, make()).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => return Err(Error::from_io(side, &e)),
                Err(_) => {}
            }
        }
    }

    /// Reads more of `conn` into its buffer under the relay's deadlines (`Ok(0)`: the peer
    /// closed). For bodies a caller parses itself (framing, signed chunks) or buffers;
    /// what is read counts towards the rate floor when `payload` is set (a body that will
    /// be counted again when it is written out should not be).
    pub async fn read_more(
        &self,
        conn: &mut Conn,
        side: Side,
        payload: bool,
    ) -> Result<usize, Error> {
        loop {
            match conn.try_read_more() {
                Ok(n) => {
                    if payload {
                        self.advanced(n as u64);
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.wait(side, || conn.stream().readable(false)).await?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::from_io(side, &e)),
            }
        }
    }

    /// Writes all of `data` to `conn` under the relay's deadlines. Payload written this
    /// way counts towards the rate floor when `payload` is set (framing bytes do not).
    pub async fn write_all(
        &self,
        conn: &Conn,
        side: Side,
        mut data: &[u8],
        payload: bool,
    ) -> Result<(), Error> {
        while !data.is_empty() {
            match sys::send(conn.fd(), data) {
                Ok(n) => {
                    data = &data[n..];
                    if payload {
                        self.advanced(n as u64);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.wait(side, || conn.stream().writable(false)).await?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::from_io(side, &e)),
            }
        }
        Ok(())
    }

    /// Shapes the bodies moved from now on with `pacer` (`None`: move at full speed).
    pub fn set_pacer(&mut self, pacer: Option<Rc<dyn Pacer>>) {
        self.pacer = pacer;
    }

    /// Takes `bytes` of the pacer's budget at once if it grants them now (always true
    /// without a pacer): for a small body the caller moves itself. On `false` nothing is
    /// taken.
    pub fn try_pace(&self, bytes: u64) -> bool {
        let Some(pacer) = &self.pacer else {
            return true;
        };
        match pacer.grant(bytes) {
            Pace::Go(n) if n >= bytes => true,
            Pace::Go(n) => {
                pacer.unused(n);
                false
            }
            Pace::Wait(_) => false,
        }
    }

    /// Waits until the pacer grants some of `want` bytes; all of them without a pacer.
    async fn paced(&self, want: u64) -> u64 {
        let Some(pacer) = &self.pacer else {
            return want;
        };
        loop {
            match pacer.grant(want) {
                Pace::Go(n) => return n.min(want),
                Pace::Wait(d) => {
                    monoio::time::sleep(d).await;
                    self.paused(d);
                }
            }
        }
    }

    /// Waits until the pacer granted all of `bytes` (at once without a pacer): for a body
    /// the caller moves itself, e.g. one it rewrote in user space.
    pub async fn pace(&self, mut bytes: u64) {
        while bytes > 0 {
            // A zero grant still counts one byte, so a stingy pacer cannot spin us.
            bytes -= self.paced(bytes).await.clamp(1, bytes);
        }
    }

    /// Returns `granted - used` unused bytes to the pacer.
    fn unpaced(&self, granted: u64, used: u64) {
        if let Some(pacer) = &self.pacer {
            if granted > used {
                pacer.unused(granted - used);
            }
        }
    }

    /// Moves exactly `len` body bytes from `src` to `dst` (buffered bytes first).
    /// `moved` counts what reached `dst`, also on failure, so a caller can resume.
    pub async fn exact(
        &mut self,
        src: End<'_>,
        dst: End<'_>,
        len: u64,
        moved: &Moved,
    ) -> Result<(), Error> {
        self.begin_body();
        self.relay(src, dst, Some(len), moved).await
    }

    /// Moves body bytes from `src` to `dst` until `src` closes (responses framed by close).
    pub async fn until_close(
        &mut self,
        src: End<'_>,
        dst: End<'_>,
        moved: &Moved,
    ) -> Result<(), Error> {
        self.begin_body();
        self.relay(src, dst, None, moved).await
    }

    /// Relays a `Transfer-Encoding: chunked` body: the framing (validated strictly by the
    /// decoder) is forwarded verbatim from user space — or dropped when `keep_framing` is
    /// false (an HTTP/1.0 peer, which gets the payload framed by close) — and the chunk
    /// payloads are spliced.
    pub async fn chunked(
        &mut self,
        src: End<'_>,
        dst: End<'_>,
        decoder: &mut ChunkedDecoder,
        keep_framing: bool,
        moved: &Moved,
    ) -> Result<(), Error> {
        let (src_side, dst_side) = (src.side, dst.side);
        let (src, dst) = (src.conn, dst.conn);
        self.begin_body();
        loop {
            let parsed = decoder
                .parse(src.buffered())
                .map_err(|e| Error::framing(src_side, e))?;
            match parsed {
                None => {
                    let n = self.read_more(src, src_side, false).await?;
                    if n == 0 {
                        return Err(Error::new(
                            src_side,
                            Kind::Closed,
                            "closed inside chunked body",
                        ));
                    }
                }
                Some((item, consumed)) => {
                    if keep_framing {
                        self.write_all(dst, dst_side, &src.buffered()[..consumed], false)
                            .await?;
                    }
                    src.consume(consumed);
                    match item {
                        ChunkItem::Data(n) => {
                            self.relay(
                                End {
                                    conn: src,
                                    side: src_side,
                                },
                                End {
                                    conn: dst,
                                    side: dst_side,
                                },
                                Some(n),
                                moved,
                            )
                            .await?
                        }
                        ChunkItem::Done => return Ok(()),
                    }
                }
            }
        }
    }

    async fn relay(
        &mut self,
        src: End<'_>,
        dst: End<'_>,
        len: Option<u64>,
        moved: &Moved,
    ) -> Result<(), Error> {
        let (src_side, dst_side) = (src.side, dst.side);
        let (src, dst) = (src.conn, dst.conn);
        let mut remaining = len.unwrap_or(u64::MAX);

        // Bytes that arrived with the head (or earlier framing) leave from user space.
        while remaining > 0 && !src.buffered().is_empty() {
            let want = (src.buffered().len() as u64).min(remaining);
            let take = self.paced(want).await as usize;
            self.write_all(dst, dst_side, &src.buffered()[..take], true)
                .await?;
            src.consume(take);
            remaining -= take as u64;
            moved.add_copied(take as u64);
        }
        if remaining == 0 {
            return Ok(());
        }
        let pipe = if self.mode == BodyMode::Splice && remaining >= self.splice_bytes_min {
            self.pipes.get()
        } else {
            None
        };
        match pipe {
            Some(pipe) => {
                let result = self
                    .splice_loop(
                        &pipe,
                        (src, src_side),
                        (dst, dst_side),
                        remaining,
                        len.is_none(),
                        moved,
                    )
                    .await;
                if result.is_ok() {
                    // An Ok splice loop drained the pipe completely.
                    self.pipes.put_empty(pipe);
                }
                result
            }
            None => {
                self.copy_loop(
                    (src, src_side),
                    (dst, dst_side),
                    remaining,
                    len.is_none(),
                    moved,
                )
                .await
            }
        }
    }

    async fn copy_loop(
        &mut self,
        (src, src_side): (&mut Conn, Side),
        (dst, dst_side): (&mut Conn, Side),
        mut remaining: u64,
        until_eof: bool,
        moved: &Moved,
    ) -> Result<(), Error> {
        if self.copy_buf.is_empty() {
            // Allocated on first use: most connections splice and never need it.
            self.copy_buf = vec![0; COPY_BUF_BYTES];
        }
        while remaining > 0 {
            let want = (self.copy_buf.len() as u64).min(remaining);
            let granted = self.paced(want).await;
            let n = loop {
                match sys::recv(src.fd(), &mut self.copy_buf[..granted as usize]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if let Err(e) = self.wait(src_side, || src.stream().readable(false)).await {
                            self.unpaced(granted, 0);
                            return Err(e);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.unpaced(granted, 0);
                        return Err(Error::from_io(src_side, &e));
                    }
                }
            };
            self.unpaced(granted, n as u64);
            if n == 0 {
                if until_eof {
                    return Ok(());
                }
                return Err(Error::new(
                    src_side,
                    Kind::Closed,
                    format!("closed with {remaining} body bytes missing"),
                ));
            }
            let data = std::mem::take(&mut self.copy_buf);
            let written = self.write_all(dst, dst_side, &data[..n], true).await;
            self.copy_buf = data;
            written?;
            remaining -= n as u64;
            moved.add_copied(n as u64);
        }
        Ok(())
    }

    /// The zero-copy loop. Fill the pipe from `src` while it has room and `src` has data,
    /// drain it into `dst` while `dst` takes data, and wait only when neither can move:
    /// on `dst` when the pipe holds bytes (draining frees both sides), else on `src`.
    async fn splice_loop(
        &mut self,
        pipe: &Pipe,
        (src, src_side): (&mut Conn, Side),
        (dst, dst_side): (&mut Conn, Side),
        mut remaining: u64,
        until_eof: bool,
        moved: &Moved,
    ) -> Result<(), Error> {
        let capacity = pipe.capacity();
        let mut in_pipe: usize = 0;
        let mut src_eof = false;
        // A shaped transfer whose budget is spent fills the pipe again only from here on.
        let mut paused_until: Option<Instant> = None;
        loop {
            let mut progressed = false;
            let mut src_blocked = false;
            if paused_until.is_some_and(|t| Instant::now() >= t) {
                paused_until = None;
            }
            if remaining > 0 && !src_eof && in_pipe < capacity && paused_until.is_none() {
                let mut want = ((capacity - in_pipe) as u64).min(remaining) as usize;
                let mut granted = None;
                if let Some(pacer) = &self.pacer {
                    match pacer.grant(want as u64) {
                        Pace::Go(n) => {
                            want = want.min(n as usize);
                            granted = Some(want as u64);
                        }
                        Pace::Wait(d) => {
                            paused_until = Some(Instant::now() + d);
                            want = 0;
                        }
                    }
                }
                let spliced = if want == 0 {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    sys::splice(src.fd(), pipe.write_fd(), want)
                };
                if let Some(g) = granted {
                    self.unpaced(g, *spliced.as_ref().unwrap_or(&0) as u64);
                }
                match spliced {
                    Ok(0) => {
                        if !until_eof {
                            return Err(Error::new(
                                src_side,
                                Kind::Closed,
                                format!(
                                    "closed with {} body bytes missing",
                                    remaining + in_pipe as u64
                                ),
                            ));
                        }
                        src_eof = true;
                    }
                    Ok(n) => {
                        in_pipe += n;
                        remaining -= n as u64;
                        progressed = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        src_blocked = paused_until.is_none()
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => progressed = true,
                    Err(e) => return Err(Error::from_io(src_side, &e)),
                }
            }
            let mut dst_blocked = false;
            if in_pipe > 0 {
                match sys::splice(pipe.read_fd(), dst.fd(), in_pipe) {
                    Ok(n) => {
                        in_pipe -= n;
                        moved.add_spliced(n as u64);
                        self.advanced(n as u64);
                        progressed = progressed || n > 0;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst_blocked = true,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => progressed = true,
                    Err(e) => return Err(Error::from_io(dst_side, &e)),
                }
            }
            if in_pipe == 0 && (remaining == 0 || src_eof) {
                return Ok(());
            }
            if progressed {
                continue;
            }
            if in_pipe > 0 && dst_blocked {
                self.wait(dst_side, || dst.stream().writable(false)).await?;
            } else if let Some(until) = paused_until {
                let pause = until.saturating_duration_since(Instant::now());
                monoio::time::sleep(pause).await;
                self.paused(pause);
            } else if src_blocked {
                self.wait(src_side, || src.stream().readable(false)).await?;
            }
        }
    }
}
