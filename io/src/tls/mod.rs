//! TLS on both sides of the relay, in a way that keeps the relay itself unchanged: the
//! relay reads, writes and splices plaintext on a descriptor, so after the handshake a
//! TLS connection becomes a plaintext descriptor one of two ways.
//!
//! - **kTLS**: rustls does the handshake, then hands the session keys to the kernel
//!   (`TCP_ULP "tls"`, `TLS_TX`/`TLS_RX`); the TCP socket itself then carries plaintext
//!   for weir and `splice` keeps working, with record encryption in the kernel.
//! - **User space**: where the kernel has no `tls` module, the cipher is not offloadable,
//!   or kTLS is switched off, a task on the same core runs the rustls session and moves
//!   plaintext through a Unix socket pair; weir's end of the pair is what the relay sees.
//!   Bodies then cross user space once more — the cost the benchmark publishes.
//!
//! The handshake reads the socket one TLS record at a time, so when the kernel takes over
//! no byte of a later record is stranded in rustls's buffer.

mod bridge;
mod client;
mod ktls;
mod server;

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;

use monoio::net::{TcpStream, UnixStream};
use rustls::pki_types::CertificateDer;
use rustls::{Connection, RootCertStore};

use crate::conn::Socket;
use crate::sys;

/// Largest TLS record on the wire: 2^14 plaintext plus the most expansion RFC 8446 allows.
const RECORD_BYTES_MAX: usize = (1 << 14) + 2048;

/// Why a TLS handshake failed, as a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The handshake did not finish within the timeout.
    Timeout,
    /// The first bytes were not a TLS record (e.g. plain HTTP on the TLS port).
    NotTls,
    /// The client asked for a name no certificate is valid for.
    UnknownSni,
    /// The peer's certificate was missing or did not verify.
    BadCertificate,
    /// Any other TLS protocol failure (versions, ciphers, malformed messages).
    Protocol,
    /// The socket failed or the peer closed during the handshake.
    Io,
    /// kTLS was chosen but the kernel refused the keys.
    Ktls,
}

impl Failure {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::NotTls => "not_tls",
            Failure::UnknownSni => "unknown_sni",
            Failure::BadCertificate => "bad_certificate",
            Failure::Protocol => "protocol",
            Failure::Io => "io",
            Failure::Ktls => "ktls",
        }
    }

    fn from_rustls(e: &rustls::Error) -> Failure {
        match e {
            rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate)
            | rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA)
            | rustls::Error::AlertReceived(rustls::AlertDescription::CertificateUnknown) => {
                Failure::BadCertificate
            }
            _ => Failure::Protocol,
        }
    }
}

/// A failed handshake: the label and what happened.
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake failed ({}): {detail}", .failure.label())]
pub struct HandshakeError {
    /// The metric label.
    pub failure: Failure,
    /// For logs.
    pub detail: String,
}

fn fail(failure: Failure, detail: impl Into<String>) -> HandshakeError {
    HandshakeError {
        failure,
        detail: detail.into(),
    }
}

/// How a connection's records are encrypted after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPath {
    /// By the kernel: bodies splice.
    Ktls,
    /// By rustls in a task of weir's, through a socket pair.
    UserSpace,
}

impl TlsPath {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            TlsPath::Ktls => "ktls",
            TlsPath::UserSpace => "userspace",
        }
    }
}

/// Loading certificates and keys failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A PEM file held nothing usable.
    #[error("{what}: {why}")]
    Pem {
        /// Which file or item.
        what: String,
        /// What is wrong.
        why: String,
    },
    /// rustls refused the material.
    #[error("{what}: {source}")]
    Rustls {
        /// Which item.
        what: String,
        /// rustls's reason.
        source: rustls::Error,
    },
}

/// A certificate chain and key as PEM text, with a name for messages (the file names).
pub struct PemIdentity<'a> {
    /// For messages: where the PEM came from.
    pub origin: String,
    /// The chain, leaf first.
    pub cert_pem: &'a [u8],
    /// The private key.
    pub key_pem: &'a [u8],
}

fn certs_from_pem(origin: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    use rustls::pki_types::pem::PemObject;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    let certs = certs.map_err(|e| LoadError::Pem {
        what: origin.to_owned(),
        why: format!("not a PEM certificate list: {e:?}"),
    })?;
    if certs.is_empty() {
        return Err(LoadError::Pem {
            what: origin.to_owned(),
            why: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

fn roots_from_pem(origin: &str, pem: &[u8]) -> Result<RootCertStore, LoadError> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(origin, pem)? {
        roots.add(cert).map_err(|source| LoadError::Rustls {
            what: origin.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and writes a nonblocking descriptor for rustls (which wants `Read`/`Write`).
struct Fd(RawFd);

impl Read for Fd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::recv(self.0, buf)
    }
}

impl Write for Fd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sys::send(self.0, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads exactly `buf.len()` bytes, waiting for readiness.
async fn read_exact(stream: &TcpStream, buf: &mut [u8]) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match recv_ready(stream.as_raw_fd(), &mut buf[got..], || {
            stream.readable(false)
        })
        .await?
        {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => got += n,
        }
    }
    Ok(())
}

/// Reads one whole TLS record (header and body) into `record`.
async fn read_record(stream: &TcpStream, record: &mut Vec<u8>) -> Result<(), HandshakeError> {
    record.resize(5, 0);
    read_exact(stream, &mut record[..5])
        .await
        .map_err(|e| fail(Failure::Io, e.to_string()))?;
    // Content types 20..=24 and a 3.x legacy version: anything else is not TLS (a plain
    // HTTP request starts with a method's letters).
    if !(20..=24).contains(&record[0]) || record[1] != 3 {
        return Err(fail(
            Failure::NotTls,
            format!("first bytes {:?} are not a TLS record", &record[..5]),
        ));
    }
    let len = usize::from(u16::from_be_bytes([record[3], record[4]]));
    if len > RECORD_BYTES_MAX {
        return Err(fail(Failure::Protocol, format!("a {len}-byte record")));
    }
    record.resize(5 + len, 0);
    read_exact(stream, &mut record[5..])
        .await
        .map_err(|e| fail(Failure::Io, e.to_string()))
}

/// Writes everything rustls has queued, waiting for writability.
async fn flush_tls(stream: &TcpStream, conn: &RefCell<Connection>) -> io::Result<()> {
    loop {
        let result = {
            let mut c = conn.borrow_mut();
            if !c.wants_write() {
                return Ok(());
            }
            c.write_tls(&mut Fd(stream.as_raw_fd()))
        };
        match result {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable(false).await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Feeds one record to rustls and processes it; on a protocol error, sends the alert.
async fn feed(
    stream: &TcpStream,
    conn: &RefCell<Connection>,
    record: &[u8],
) -> Result<(), HandshakeError> {
    let processed = {
        let mut c = conn.borrow_mut();
        let mut rd = record;
        while !rd.is_empty() {
            let n = c
                .read_tls(&mut rd)
                .map_err(|e| fail(Failure::Protocol, e.to_string()))?;
            if n == 0 {
                return Err(fail(
                    Failure::Protocol,
                    "a handshake record rustls would not take",
                ));
            }
        }
        c.process_new_packets().map(|_| ())
    };
    if let Err(e) = processed {
        let _ = flush_tls(stream, conn).await; // the alert
        return Err(fail(Failure::from_rustls(&e), e.to_string()));
    }
    Ok(())
}

/// Drives a started handshake to its end, a record at a time.
async fn handshake(stream: &TcpStream, conn: &RefCell<Connection>) -> Result<(), HandshakeError> {
    let mut record = Vec::with_capacity(RECORD_BYTES_MAX + 5);
    loop {
        flush_tls(stream, conn)
            .await
            .map_err(|e| fail(Failure::Io, e.to_string()))?;
        if !conn.borrow().is_handshaking() {
            return Ok(());
        }
        read_record(stream, &mut record).await?;
        feed(stream, conn, &record).await?;
    }
}

/// Reads what is there from a nonblocking descriptor, waiting with `readable` when nothing
/// is; `Ok(0)` is end of stream.
async fn recv_ready<F, R>(fd: RawFd, buf: &mut [u8], readable: F) -> io::Result<usize>
where
    F: Fn() -> R,
    R: std::future::Future<Output = io::Result<()>>,
{
    loop {
        match sys::recv(fd, buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => readable().await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// After the handshake: the kernel path when allowed and possible, else the user-space
/// bridge. Returns the socket, plaintext already decrypted, and the path taken.
fn finish(
    stream: TcpStream,
    mut conn: Connection,
    ktls: bool,
) -> Result<(Socket, Vec<u8>, TlsPath), HandshakeError> {
    let mut prefix = Vec::new();
    let _ = conn.reader().read_to_end(&mut prefix);
    let kernel = if ktls {
        *KERNEL.get_or_init(ktls::probe)
    } else {
        ktls::Support::default()
    };
    if ktls::offloadable(&conn, kernel) && ktls::ulp_attach(stream.as_raw_fd()).is_ok() {
        let version = conn.protocol_version();
        let secrets = match conn {
            Connection::Server(s) => s.dangerous_extract_secrets(),
            Connection::Client(c) => c.dangerous_extract_secrets(),
        }
        .map_err(|e| fail(Failure::Ktls, e.to_string()))?;
        ktls::install(stream.as_raw_fd(), version, &secrets)
            .map_err(|e| fail(Failure::Ktls, format!("setting the keys: {e}")))?;
        return Ok((Socket::Tcp(stream), prefix, TlsPath::Ktls));
    }
    // The bridge bounds what it buffers itself (one chunk, flushed before the next), and
    // rustls's own 64 KiB cap would refuse part of a chunk mid-write.
    conn.set_buffer_limit(None);
    let (ours, theirs) = UnixStream::pair().map_err(|e| fail(Failure::Io, e.to_string()))?;
    sys::set_nonblocking(ours.as_raw_fd()).map_err(|e| fail(Failure::Io, e.to_string()))?;
    sys::set_nonblocking(theirs.as_raw_fd()).map_err(|e| fail(Failure::Io, e.to_string()))?;
    // The pair's buffers bound the plaintext in flight between the bridge and the relay.
    let _ = sys::set_buffers(ours.as_raw_fd(), 1 << 20);
    let _ = sys::set_buffers(theirs.as_raw_fd(), 1 << 20);
    let bridge = Rc::new(bridge::Bridge {
        tcp: stream,
        plain: theirs,
        conn: RefCell::new(conn),
    });
    monoio::spawn(bridge.clone().inbound());
    monoio::spawn(bridge.outbound());
    Ok((Socket::Unix(ours), prefix, TlsPath::UserSpace))
}

/// What this kernel can offload, probed once per process (see [`ktls::probe`]).
static KERNEL: std::sync::OnceLock<ktls::Support> = std::sync::OnceLock::new();

pub use client::ClientTls;
pub use server::{accept, Accepted, ClientCerts, ServerTls};
