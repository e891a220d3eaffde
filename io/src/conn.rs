//! A connection as the relay sees it: a nonblocking socket plus a read-ahead buffer for
//! heads and framing. Readiness comes from monoio (an io_uring poll, or epoll on the legacy
//! driver); the data moves with plain nonblocking syscalls, which is what lets the same
//! socket be used with `splice`.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use monoio::net::{TcpStream, UnixStream};

use crate::sys;

/// The socket under a connection: TCP (plain, or kTLS where the kernel encrypts), or the
/// weir end of a socket pair whose other end a user-space TLS task serves. Either way the
/// relay reads, writes and splices plaintext on a descriptor.
pub enum Socket {
    /// A TCP socket.
    Tcp(TcpStream),
    /// One end of a Unix stream pair (the user-space TLS path).
    Unix(UnixStream),
}

impl Socket {
    /// The descriptor.
    pub fn fd(&self) -> RawFd {
        match self {
            Socket::Tcp(s) => s.as_raw_fd(),
            Socket::Unix(s) => s.as_raw_fd(),
        }
    }

    /// Waits until the socket is readable.
    pub async fn readable(&self, relaxed: bool) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.readable(relaxed).await,
            Socket::Unix(s) => s.readable(relaxed).await,
        }
    }

    /// Waits until the socket is writable.
    pub async fn writable(&self, relaxed: bool) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.writable(relaxed).await,
            Socket::Unix(s) => s.writable(relaxed).await,
        }
    }
}

impl From<TcpStream> for Socket {
    fn from(s: TcpStream) -> Socket {
        Socket::Tcp(s)
    }
}

/// A client or upstream connection with its read-ahead buffer.
pub struct Conn {
    stream: Socket,
    /// Allocated when the first bytes arrive: a connection that never sends anything (an
    /// idle or attacking client) costs its socket and task, not a buffer.
    buf: Vec<u8>,
    buf_bytes: usize,
    start: usize,
    end: usize,
    /// For an upstream connection that began with a PROXY header: the client it names,
    /// the only one it may carry requests for (docs/client-address.md).
    owner: Option<std::net::SocketAddr>,
}

impl Conn {
    /// Wraps `stream`, switching it to nonblocking mode; `buf_bytes` bounds the read-ahead
    /// buffer (and so the largest head that can be read).
    pub fn new(stream: impl Into<Socket>, buf_bytes: usize) -> io::Result<Conn> {
        let stream = stream.into();
        sys::set_nonblocking(stream.fd())?;
        if let Socket::Tcp(tcp) = &stream {
            let _ = tcp.set_nodelay(true);
        }
        Ok(Conn {
            stream,
            buf: Vec::new(),
            buf_bytes,
            start: 0,
            end: 0,
            owner: None,
        })
    }

    /// The client this connection speaks for (it began with a PROXY header naming it).
    pub fn owner(&self) -> Option<std::net::SocketAddr> {
        self.owner
    }

    /// Marks the connection as speaking for `client` only.
    pub fn set_owner(&mut self, client: std::net::SocketAddr) {
        self.owner = Some(client);
    }

    /// The read-ahead buffer, allocated on first use.
    fn buffer(&mut self) -> &mut [u8] {
        if self.buf.is_empty() {
            self.buf = vec![0; self.buf_bytes];
        }
        &mut self.buf
    }

    /// Like [`Conn::new`], with `prefix` already read (plaintext a TLS handshake
    /// decrypted before the kernel took over the socket). A prefix longer than the buffer
    /// is an `InvalidData` error.
    pub fn with_prefix(
        stream: impl Into<Socket>,
        buf_bytes: usize,
        prefix: &[u8],
    ) -> io::Result<Conn> {
        let mut conn = Conn::new(stream, buf_bytes)?;
        if prefix.len() > buf_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "read buffer full",
            ));
        }
        if !prefix.is_empty() {
            conn.buffer()[..prefix.len()].copy_from_slice(prefix);
            conn.end = prefix.len();
        }
        Ok(conn)
    }

    /// The socket descriptor.
    pub fn fd(&self) -> RawFd {
        self.stream.fd()
    }

    /// The socket, for readiness waits.
    pub fn stream(&self) -> &Socket {
        &self.stream
    }

    /// Bytes read but not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks `n` buffered bytes as consumed.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.end - self.start);
        self.start += n.min(self.end - self.start);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// True when the read-ahead buffer cannot take another byte.
    pub fn is_full(&self) -> bool {
        self.start == 0 && self.end == self.buf_bytes
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Reads whatever is available (waiting for readiness) and appends it to the buffer.
    /// `Ok(0)` means end of stream; a full buffer is an `InvalidData` error. No deadline:
    /// callers wrap it in one (or use `relay::Mover::read_more`).
    pub async fn read_more(&mut self) -> io::Result<usize> {
        loop {
            match self.try_read_more() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stream.readable(false).await?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    /// Like [`Conn::read_more`] without waiting: `WouldBlock` when nothing is there.
    pub fn try_read_more(&mut self) -> io::Result<usize> {
        self.compact();
        if self.end == self.buf_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "read buffer full",
            ));
        }
        let (fd, end) = (self.fd(), self.end);
        let n = sys::recv(fd, &mut self.buffer()[end..])?;
        self.end += n;
        Ok(n)
    }

    /// Free room in the read-ahead buffer (after compaction).
    pub fn room(&self) -> usize {
        self.buf_bytes - (self.end - self.start)
    }

    /// Reads the start of the next message (a request on a keep-alive connection, or
    /// the response to a request just sent). Such a message is usually not there yet, so
    /// this waits for readiness first instead of paying a failed `recv` each time. What
    /// arrived is read whole: the head, and body bytes that came with it (at most the
    /// buffer, a few KiB), which then leave from user space — a small response moves in
    /// one `recv` and one `send`, and the rest of a large body stays in the socket for
    /// `splice`. Bytes already buffered (pipelined) are used first.
    pub async fn read_head(&mut self) -> io::Result<usize> {
        if self.start != self.end {
            return self.read_more().await;
        }
        self.start = 0;
        self.end = 0;
        loop {
            self.stream.readable(false).await?;
            let fd = self.fd();
            match sys::recv(fd, self.buffer()) {
                Ok(n) => {
                    self.end = n;
                    return Ok(n);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes all of `data`, waiting for writability as needed.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match sys::send(self.fd(), data) {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stream.writable(false).await?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads and drops exactly `len` bytes (buffered ones first): used when a resumed
    /// response repeats bytes the client already has. `Ok(false)` if the peer closed first.
    pub async fn discard(&mut self, mut len: u64) -> io::Result<bool> {
        let take = (self.buffered().len() as u64).min(len) as usize;
        self.consume(take);
        len -= take as u64;
        let mut scratch = [0u8; 16 * 1024];
        while len > 0 {
            let want = (scratch.len() as u64).min(len) as usize;
            match sys::recv(self.fd(), &mut scratch[..want]) {
                Ok(0) => return Ok(false),
                Ok(n) => len -= n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stream.readable(false).await?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// True when the peer has closed or sent unsolicited bytes: an idle pooled upstream
    /// connection in that state must not carry the next request.
    pub fn is_stale(&self) -> bool {
        if self.start != self.end {
            return true;
        }
        let mut probe = [0u8; 1];
        !matches!(sys::peek(self.fd(), &mut probe), Err(ref e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Closes after a final answer, gracefully: the write side is shut (the peer reads the
    /// answer, then EOF) and whatever the peer still sends — the rest of a request body
    /// weir refused without reading — is read and dropped until the peer closes, for at
    /// most `linger` and `bytes_max`. Closing with unread bytes would send RST instead,
    /// and a reset can destroy the answer before the peer has read it.
    pub async fn linger_close(self, linger: std::time::Duration, bytes_max: u64) {
        sys::shutdown(self.fd(), libc::SHUT_WR);
        let deadline = std::time::Instant::now() + linger;
        let mut read = 0u64;
        let mut scratch = [0u8; 16 * 1024];
        while read < bytes_max {
            match sys::recv(self.fd(), &mut scratch) {
                Ok(0) => return,
                Ok(n) => read += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return;
                    }
                    match monoio::time::timeout(left, self.stream.readable(false)).await {
                        Ok(Ok(())) => {}
                        _ => return,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Makes the eventual close send RST, so the peer discards a partial message.
    pub fn abort_on_close(&self) {
        sys::close_hard(self.fd());
    }
}

/// Where the blank line ending an HTTP head is, if present (`\r\n\r\n`; the strict parser
/// rejects bare-LF heads anyway).
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

#[cfg(test)]
mod tests {
    use super::head_end;

    #[test]
    fn head_end_finds_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
    }
}
