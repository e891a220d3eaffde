//! The user-space TLS path: a rustls session between the TCP socket and a Unix socket
//! pair whose other end the relay uses.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::rc::Rc;

use monoio::net::{TcpStream, UnixStream};
use rustls::Connection;

use crate::sys;

use super::{flush_tls, recv_ready, RECORD_BYTES_MAX};

/// Plaintext moved per step of the user-space path.
const BRIDGE_CHUNK_BYTES: usize = 64 * 1024;

/// The user-space path: one rustls session between a TCP socket and a Unix socket whose
/// other end the relay uses. Two tasks, one per direction, so a blocked direction never
/// stalls the other.
pub(super) struct Bridge {
    pub(super) tcp: TcpStream,
    pub(super) plain: UnixStream,
    pub(super) conn: RefCell<Connection>,
}

impl Bridge {
    /// Network → plaintext: read records, decrypt, write plaintext to the pair. rustls
    /// takes ciphertext only while its decrypted-but-unread buffer has room, so each
    /// step feeds it what it takes, then drains the plaintext before feeding more.
    pub(super) async fn inbound(self: Rc<Self>) {
        let mut buf = vec![0u8; RECORD_BYTES_MAX];
        let (mut start, mut end) = (0usize, 0usize);
        // One record's plaintext at most is decrypted per step.
        let mut plain = vec![0u8; 1 << 14];
        loop {
            // Deliver what rustls has decrypted.
            loop {
                let n = match self.conn.borrow_mut().reader().read(&mut plain) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // A clean close_notify reads as 0; a truncation without one is an
                    // error: either way the plaintext side ends.
                    Err(_) => 0,
                };
                if n == 0 {
                    self.end_plaintext();
                    return;
                }
                if write_all_unix(&self.plain, &plain[..n]).await.is_err() {
                    self.abort();
                    return;
                }
            }
            if start == end {
                let read = recv_ready(self.tcp.as_raw_fd(), &mut buf, || self.tcp.readable(false));
                let Ok(n) = read.await else {
                    self.abort();
                    return;
                };
                if n == 0 {
                    // TCP closed without close_notify: the plaintext side ends too (a
                    // body cut short shows as short against its framing).
                    self.end_plaintext();
                    return;
                }
                (start, end) = (0, n);
            }
            let processed = {
                let mut c = self.conn.borrow_mut();
                let mut rd = &buf[start..end];
                let taken = c.read_tls(&mut rd);
                start = end - rd.len();
                // Taking nothing with the plaintext drained would spin: treat as broken.
                matches!(taken, Ok(n) if n > 0) && c.process_new_packets().is_ok()
            };
            let flushed = flush_tls(&self.tcp, &self.conn).await.is_ok();
            if !processed || !flushed {
                self.abort();
                return;
            }
        }
    }

    /// Plaintext → network: read from the pair, encrypt, send.
    pub(super) async fn outbound(self: Rc<Self>) {
        let mut buf = vec![0u8; BRIDGE_CHUNK_BYTES];
        loop {
            let read = recv_ready(self.plain.as_raw_fd(), &mut buf, || {
                self.plain.readable(false)
            });
            let Ok(n) = read.await else {
                self.abort();
                return;
            };
            if n == 0 {
                // weir closed its end: close the TLS session cleanly, and stop reading
                // too (weir reads nothing more), which also ends the inbound task even if
                // the peer never closes.
                self.conn.borrow_mut().send_close_notify();
                let _ = flush_tls(&self.tcp, &self.conn).await;
                sys::shutdown(self.tcp.as_raw_fd(), libc::SHUT_RDWR);
                return;
            }
            let written = self.conn.borrow_mut().writer().write_all(&buf[..n]);
            if written.is_err() || flush_tls(&self.tcp, &self.conn).await.is_err() {
                self.abort();
                return;
            }
        }
    }

    /// The network side ended: weir reads end-of-stream on its end.
    fn end_plaintext(&self) {
        sys::shutdown(self.plain.as_raw_fd(), libc::SHUT_WR);
    }

    /// Something failed: both sides end now.
    fn abort(&self) {
        sys::shutdown(self.plain.as_raw_fd(), libc::SHUT_RDWR);
        sys::shutdown(self.tcp.as_raw_fd(), libc::SHUT_RDWR);
    }
}

async fn write_all_unix(stream: &UnixStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match sys::send(stream.as_raw_fd(), data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable(false).await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
