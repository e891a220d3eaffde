//! Moving message bodies between two connections. Bodies with a known length go
//! socket → pipe → socket with nonblocking `splice(2)` after a readiness wait, so the bytes
//! never enter user space (DESIGN.md §2: this is 2–3× cheaper per GB than copying). Small
//! bodies, bytes already read with a head, and the forced-copy mode go through a user-space
//! buffer. Every byte count is bounded by the message's framing: the relay never reads past
//! the current message's end.

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
        }
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
                Pace::Wait(d) => monoio::time::sleep(d).await,
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
        self.relay(src, dst, Some(len), moved).await
    }

    /// Moves body bytes from `src` to `dst` until `src` closes (responses framed by close).
    pub async fn until_close(
        &mut self,
        src: End<'_>,
        dst: End<'_>,
        moved: &Moved,
    ) -> Result<(), Error> {
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
        loop {
            let parsed = decoder
                .parse(src.buffered())
                .map_err(|e| Error::new(src_side, Kind::Protocol, e.to_string()))?;
            match parsed {
                None => {
                    let n = self.timed(src_side, src.read_more()).await?;
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
                        self.timed(dst_side, dst.write_all(&src.buffered()[..consumed]))
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

    async fn timed<T>(
        &self,
        side: Side,
        fut: impl std::future::Future<Output = io::Result<T>>,
    ) -> Result<T, Error> {
        match monoio::time::timeout(self.idle_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Error::from_io(side, &e)),
            Err(_) => Err(Error::new(side, Kind::Timeout, "idle timeout")),
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
            dst.write_all(&src.buffered()[..take])
                .await
                .map_err(|e| Error::from_io(dst_side, &e))?;
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
                        self.timed(src_side, src.stream().readable(false)).await?
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
            let data = &self.copy_buf[..n];
            let write = dst.write_all(data);
            match monoio::time::timeout(self.idle_timeout, write).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(Error::from_io(dst_side, &e)),
                Err(_) => return Err(Error::new(dst_side, Kind::Timeout, "idle timeout")),
            }
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
                self.timed(dst_side, dst.stream().writable(false)).await?;
            } else if let Some(until) = paused_until {
                monoio::time::sleep(until.saturating_duration_since(Instant::now())).await;
            } else if src_blocked {
                self.timed(src_side, src.stream().readable(false)).await?;
            }
        }
    }
}
