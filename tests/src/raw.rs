//! Raw HTTP/1.1 over TCP: send exact bytes, read what comes back until the peer closes or
//! goes quiet. For the malformed-request corpus, where no client library would send the
//! request at all.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// What came back for a raw request.
#[derive(Debug)]
pub struct RawReply {
    /// Every byte received.
    pub bytes: Vec<u8>,
    /// The peer closed the connection (EOF or reset) before `wait` ran out.
    pub closed: bool,
    /// Time from the last byte sent to the first byte received, if any arrived.
    pub first_byte_after: Option<Duration>,
}

impl RawReply {
    /// The status code of the first response, if the bytes start with a status line.
    pub fn status(&self) -> Option<u16> {
        let text = std::str::from_utf8(&self.bytes[..self.bytes.len().min(64)]).ok()?;
        let mut parts = text.split(' ');
        let version = parts.next()?;
        if !version.starts_with("HTTP/1.") {
            return None;
        }
        parts.next()?.parse().ok()
    }

    /// The head (status line and headers) of the first response.
    pub fn head(&self) -> String {
        let end = find(&self.bytes, b"\r\n\r\n").unwrap_or(self.bytes.len());
        String::from_utf8_lossy(&self.bytes[..end]).into_owned()
    }

    /// A header of the first response (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head().lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    /// The body of the first response (by Content-Length, else everything after the head).
    pub fn body(&self) -> Vec<u8> {
        let Some(end) = find(&self.bytes, b"\r\n\r\n") else {
            return Vec::new();
        };
        let rest = &self.bytes[end + 4..];
        match self
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            Some(n) => rest[..n.min(rest.len())].to_vec(),
            None => rest.to_vec(),
        }
    }

    /// Everything received, lossily as text (for failure messages).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// When [`exchange`] stops reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadUntil {
    /// Until the peer closes (or the wait runs out).
    Close,
    /// Until one whole response (head + Content-Length body) has arrived, or the peer
    /// closes, or the wait runs out.
    Response,
}

/// Sends `parts` in order (sleeping `gap` between them), then reads until `until` or until
/// `wait` has passed after the last write.
pub fn exchange(
    addr: SocketAddr,
    parts: &[&[u8]],
    gap: Duration,
    wait: Duration,
    until: ReadUntil,
) -> RawReply {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    conn.set_nodelay(true).expect("nodelay");
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(gap);
        }
        // The peer may reject and close mid-send; what it answered is still readable.
        if conn.write_all(part).is_err() {
            break;
        }
    }
    read_reply(&mut conn, wait, until)
}

/// Whether `bytes` hold one complete response (head, and a body of its Content-Length).
fn complete_response(bytes: &[u8]) -> bool {
    let Some(end) = find(bytes, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    bytes.len() >= end + 4 + length
}

/// Reads until `until`, EOF/reset, or `wait` passes.
pub fn read_reply(conn: &mut TcpStream, wait: Duration, until: ReadUntil) -> RawReply {
    let sent_at = Instant::now();
    let deadline = sent_at + wait;
    let mut bytes = Vec::new();
    let mut first_byte_after = None;
    let mut buf = [0u8; 16 * 1024];
    let closed = loop {
        let now = Instant::now();
        if now >= deadline {
            break false;
        }
        conn.set_read_timeout(Some(deadline - now))
            .expect("set timeout");
        match conn.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => {
                first_byte_after.get_or_insert_with(|| sent_at.elapsed());
                bytes.extend_from_slice(&buf[..n]);
                if until == ReadUntil::Response && complete_response(&bytes) {
                    break false;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break false
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break true,
        }
    };
    RawReply {
        bytes,
        closed,
        first_byte_after,
    }
}
