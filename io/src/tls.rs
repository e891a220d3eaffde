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

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::{TcpStream, UnixStream};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{Acceptor, WebPkiClientVerifier};
use rustls::{ClientConfig, Connection, RootCertStore, ServerConfig};

use crate::conn::Socket;
use crate::sys;

/// Largest TLS record on the wire: 2^14 plaintext plus the most expansion RFC 8446 allows.
const RECORD_BYTES_MAX: usize = (1 << 14) + 2048;
/// Plaintext moved per step of the user-space path.
const BRIDGE_CHUNK_BYTES: usize = 64 * 1024;

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

/// The listener side: one rustls config per certificate, chosen by the client's SNI.
pub struct ServerTls {
    configs: Vec<Arc<ServerConfig>>,
    /// Exact DNS names (lowercase) → config index.
    names: HashMap<String, usize>,
    /// `*.example.com` certificates, by the suffix after `*.` → config index.
    wildcards: HashMap<String, usize>,
    handshake_timeout: Duration,
    ktls: bool,
}

/// Client-certificate policy for [`ServerTls::new`].
pub struct ClientCerts<'a> {
    /// PEM CA bundle client certificates must chain to.
    pub ca_pem: &'a [u8],
    /// For messages.
    pub origin: String,
    /// Refuse clients that present none.
    pub required: bool,
}

impl ServerTls {
    /// Builds the listener side from PEM identities (the first also serves clients that
    /// send no SNI) and an optional client-certificate policy.
    pub fn new(
        identities: &[PemIdentity<'_>],
        clients: Option<ClientCerts<'_>>,
        handshake_timeout: Duration,
        ktls: bool,
    ) -> Result<ServerTls, LoadError> {
        let verifier = match &clients {
            None => WebPkiClientVerifier::no_client_auth(),
            Some(c) => {
                let roots = Arc::new(roots_from_pem(&c.origin, c.ca_pem)?);
                let builder = WebPkiClientVerifier::builder_with_provider(roots, provider());
                let builder = if c.required {
                    builder
                } else {
                    builder.allow_unauthenticated()
                };
                builder.build().map_err(|e| LoadError::Pem {
                    what: c.origin.clone(),
                    why: e.to_string(),
                })?
            }
        };
        let mut configs = Vec::with_capacity(identities.len());
        let mut names = HashMap::new();
        let mut wildcards = HashMap::new();
        for (i, id) in identities.iter().enumerate() {
            use rustls::pki_types::pem::PemObject;
            let chain = certs_from_pem(&id.origin, id.cert_pem)?;
            let key = PrivateKeyDer::from_pem_slice(id.key_pem).map_err(|e| LoadError::Pem {
                what: id.origin.clone(),
                why: format!("no usable private key: {e:?}"),
            })?;
            let leaf = webpki::EndEntityCert::try_from(&chain[0]).map_err(|e| LoadError::Pem {
                what: id.origin.clone(),
                why: format!("the first certificate does not parse: {e}"),
            })?;
            for name in leaf.valid_dns_names() {
                let name = name.to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(suffix) => wildcards.entry(suffix.to_owned()).or_insert(i),
                    None => names.entry(name).or_insert(i),
                };
            }
            let mut config = ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|source| LoadError::Rustls {
                    what: id.origin.clone(),
                    source,
                })?
                .with_client_cert_verifier(verifier.clone())
                .with_single_cert(chain, key)
                .map_err(|source| LoadError::Rustls {
                    what: id.origin.clone(),
                    source,
                })?;
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            // The kernel path needs the traffic secrets; nothing else reads them.
            config.enable_secret_extraction = ktls;
            // Tickets are post-handshake records: with kTLS the kernel would have to
            // send them. Stateful resumption (a session cache) needs none.
            config.send_tls13_tickets = 0;
            configs.push(Arc::new(config));
        }
        if configs.is_empty() {
            return Err(LoadError::Pem {
                what: "[tls]".into(),
                why: "no certificate".into(),
            });
        }
        Ok(ServerTls {
            configs,
            names,
            wildcards,
            handshake_timeout,
            ktls,
        })
    }

    /// The config for `sni`: the exact name, else a wildcard one label up; no SNI gets
    /// the first certificate; an unknown name gets none.
    fn pick(&self, sni: Option<&str>) -> Option<&Arc<ServerConfig>> {
        let Some(name) = sni else {
            return self.configs.first();
        };
        let name = name.to_ascii_lowercase();
        let index = self.names.get(&name).or_else(|| {
            name.split_once('.')
                .and_then(|(_, parent)| self.wildcards.get(parent))
        })?;
        self.configs.get(*index)
    }
}

/// A handshake that finished: the plaintext socket and what it learned.
pub struct Accepted {
    /// What the relay uses.
    pub socket: Socket,
    /// Plaintext received with the handshake (pass to `Conn::with_prefix`).
    pub prefix: Vec<u8>,
    /// Which path encrypts from now on.
    pub path: TlsPath,
    /// The first subjectAltName DNS name of a verified client certificate (the subject's
    /// common name is not used) — the client's identity for tenancy.
    pub client_name: Option<String>,
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

/// Completes the server side of a handshake on `stream` and returns the plaintext socket.
pub async fn accept(stream: TcpStream, tls: &ServerTls) -> Result<Accepted, HandshakeError> {
    let timeout = tls.handshake_timeout;
    match monoio::time::timeout(timeout, accept_inner(stream, tls)).await {
        Ok(result) => result,
        Err(_) => Err(fail(
            Failure::Timeout,
            format!("no handshake within {timeout:?}"),
        )),
    }
}

async fn accept_inner(stream: TcpStream, tls: &ServerTls) -> Result<Accepted, HandshakeError> {
    sys::set_nonblocking(stream.as_raw_fd()).map_err(|e| fail(Failure::Io, e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let mut acceptor = Acceptor::default();
    let mut record = Vec::with_capacity(RECORD_BYTES_MAX + 5);
    let accepted = loop {
        read_record(&stream, &mut record).await?;
        let mut rd = &record[..];
        while !rd.is_empty() {
            let n = acceptor
                .read_tls(&mut rd)
                .map_err(|e| fail(Failure::Protocol, e.to_string()))?;
            if n == 0 {
                return Err(fail(
                    Failure::Protocol,
                    "a ClientHello rustls would not take",
                ));
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => break accepted,
            Ok(None) => continue,
            Err((e, mut alert)) => {
                let _ = alert.write(&mut Fd(stream.as_raw_fd()));
                return Err(fail(Failure::from_rustls(&e), e.to_string()));
            }
        }
    };
    let sni = accepted.client_hello().server_name().map(str::to_owned);
    let Some(config) = tls.pick(sni.as_deref()) else {
        // An unrecognized_name alert would be kinder, but rustls only sends alerts from
        // a connection, and a connection needs a certificate: close.
        return Err(fail(
            Failure::UnknownSni,
            format!("no certificate for {:?}", sni.unwrap_or_default()),
        ));
    };
    let conn = match accepted.into_connection(config.clone()) {
        Ok(c) => c,
        Err((e, mut alert)) => {
            let _ = alert.write(&mut Fd(stream.as_raw_fd()));
            return Err(fail(Failure::from_rustls(&e), e.to_string()));
        }
    };
    let conn = RefCell::new(Connection::Server(conn));
    handshake(&stream, &conn).await?;
    let client_name = match &*conn.borrow() {
        Connection::Server(s) => s.peer_certificates().and_then(client_identity),
        Connection::Client(_) => None,
    };
    let (socket, prefix, path) = finish(stream, conn.into_inner(), tls.ktls)?;
    Ok(Accepted {
        socket,
        prefix,
        path,
        client_name,
    })
}

/// The identity a verified client certificate carries: its first DNS name.
fn client_identity(chain: &[CertificateDer<'static>]) -> Option<String> {
    let leaf = webpki::EndEntityCert::try_from(chain.first()?).ok()?;
    let name = leaf.valid_dns_names().next().map(str::to_owned);
    name
}

/// The storage side: verify the node's certificate against a CA bundle (or not at all,
/// when a pool says `verify = false`).
pub struct ClientTls {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
    handshake_timeout: Duration,
}

impl ClientTls {
    /// Builds the storage side: nodes verified against `ca_pem` (`None` = no
    /// verification), presenting `server_name` (`None` = the node's host per connect).
    pub fn new(
        ca_pem: Option<(&str, &[u8])>,
        server_name: Option<&str>,
        handshake_timeout: Duration,
    ) -> Result<ClientTls, LoadError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|source| LoadError::Rustls {
                what: "pool tls".into(),
                source,
            })?;
        let mut config = match ca_pem {
            Some((origin, pem)) => builder
                .with_root_certificates(roots_from_pem(origin, pem)?)
                .with_no_client_auth(),
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
                .with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let server_name = server_name
            .map(|n| {
                ServerName::try_from(n.to_owned()).map_err(|e| LoadError::Pem {
                    what: "pool tls.server_name".into(),
                    why: e.to_string(),
                })
            })
            .transpose()?;
        Ok(ClientTls {
            config: Arc::new(config),
            server_name,
            handshake_timeout,
        })
    }

    /// Completes the client side of a handshake with a node reached as `host` and
    /// returns the plaintext socket (always the user-space path: a TLS 1.3 server sends
    /// session tickets after the handshake, which kernel receive offload cannot take
    /// without control-message handling).
    pub async fn connect(&self, stream: TcpStream, host: &str) -> Result<Socket, HandshakeError> {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => ServerName::try_from(host.to_owned())
                .map_err(|e| fail(Failure::Protocol, format!("server name {host:?}: {e}")))?,
        };
        let timeout = self.handshake_timeout;
        let work = async {
            sys::set_nonblocking(stream.as_raw_fd())
                .map_err(|e| fail(Failure::Io, e.to_string()))?;
            let _ = stream.set_nodelay(true);
            let conn = rustls::ClientConnection::new(self.config.clone(), name)
                .map_err(|e| fail(Failure::Protocol, e.to_string()))?;
            let conn = RefCell::new(Connection::Client(conn));
            handshake(&stream, &conn).await?;
            let (socket, prefix, _) = finish(stream, conn.into_inner(), false)?;
            debug_assert!(prefix.is_empty());
            Ok(socket)
        };
        match monoio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(fail(
                Failure::Timeout,
                format!("no handshake within {timeout:?}"),
            )),
        }
    }
}

/// `verify = false`: accepts any certificate, still checks handshake signatures.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
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
    let bridge = Rc::new(Bridge {
        tcp: stream,
        plain: theirs,
        conn: RefCell::new(conn),
    });
    monoio::spawn(bridge.clone().inbound());
    monoio::spawn(bridge.outbound());
    Ok((Socket::Unix(ours), prefix, TlsPath::UserSpace))
}

/// The user-space path: one rustls session between a TCP socket and a Unix socket whose
/// other end the relay uses. Two tasks, one per direction, so a blocked direction never
/// stalls the other.
struct Bridge {
    tcp: TcpStream,
    plain: UnixStream,
    conn: RefCell<Connection>,
}

impl Bridge {
    /// Network → plaintext: read records, decrypt, write plaintext to the pair. rustls
    /// takes ciphertext only while its decrypted-but-unread buffer has room, so each
    /// step feeds it what it takes, then drains the plaintext before feeding more.
    async fn inbound(self: Rc<Self>) {
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
    async fn outbound(self: Rc<Self>) {
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

/// What this kernel can offload, probed once per process (see [`ktls::probe`]).
static KERNEL: std::sync::OnceLock<ktls::Support> = std::sync::OnceLock::new();

mod ktls {
    //! The kernel TLS interface (Documentation/networking/tls.rst): attach the `tls`
    //! upper-layer protocol, then set each direction's cipher, key, IV/salt and record
    //! sequence number.
    //!
    //! Which ciphers work is probed once on a loopback socket pair, before any session's
    //! secrets are handed over: the `tls` module may be missing, and the kernel's AEAD
    //! implementations (`gcm`, `chacha20poly1305`) may be modules that are not there. A
    //! cipher that failed the probe is never tried, so a session never loses its keys to
    //! a refusal — it takes the user-space path instead.

    use rustls::{CipherSuite, ConnectionTrafficSecrets, ExtractedSecrets, ProtocolVersion};
    use std::io;
    use std::os::fd::{AsRawFd, RawFd};

    /// Ciphers the kernel accepted in the probe.
    #[derive(Debug, Clone, Copy, Default)]
    pub(super) struct Support {
        aes128gcm: bool,
        aes256gcm: bool,
        chacha20: bool,
    }

    impl Support {
        pub(super) fn any(self) -> bool {
            self.aes128gcm || self.aes256gcm || self.chacha20
        }
    }

    /// Tries each cipher's transmit and receive keys on a fresh loopback connection.
    pub(super) fn probe() -> Support {
        let zero = |cipher: Cipher, key_len: usize| -> io::Result<()> {
            let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
            let client = std::net::TcpStream::connect(listener.local_addr()?)?;
            let _server = listener.accept()?;
            let fd = client.as_raw_fd();
            ulp_attach(fd)?;
            let key = [0u8; 32];
            let iv = [0u8; 12];
            let version = libc::TLS_1_3_VERSION;
            set_raw(fd, libc::TLS_TX, version, 0, cipher, &key[..key_len], &iv)?;
            set_raw(fd, libc::TLS_RX, version, 0, cipher, &key[..key_len], &iv)
        };
        let aes128 = zero(Cipher::Aes128Gcm, 16);
        let support = Support {
            aes128gcm: aes128.is_ok(),
            aes256gcm: zero(Cipher::Aes256Gcm, 32).is_ok(),
            chacha20: zero(Cipher::Chacha20Poly1305, 32).is_ok(),
        };
        match (&aes128, support.any()) {
            (_, true) => tracing::info!(?support, "kernel TLS available"),
            (Err(e), false) => tracing::info!(
                error = %e,
                "kernel TLS unavailable (no tls module, or no AEAD the kernel can load): \
                 TLS records are encrypted in user space"
            ),
            (Ok(()), false) => {}
        }
        support
    }

    /// Whether the kernel takes the negotiated version and cipher.
    pub(super) fn offloadable(conn: &rustls::Connection, support: Support) -> bool {
        let version = conn.protocol_version();
        let suite = conn.negotiated_cipher_suite().map(|s| s.suite());
        if !matches!(
            version,
            Some(ProtocolVersion::TLSv1_2) | Some(ProtocolVersion::TLSv1_3)
        ) {
            return false;
        }
        match suite {
            Some(
                CipherSuite::TLS13_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            ) => support.aes128gcm,
            Some(
                CipherSuite::TLS13_AES_256_GCM_SHA384
                | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
                | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            ) => support.aes256gcm,
            Some(
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
                | CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
                | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            ) => support.chacha20,
            _ => false,
        }
    }

    /// Attaches the `tls` ULP (harmless alone: without keys the socket passes bytes
    /// through).
    pub(super) fn ulp_attach(fd: RawFd) -> io::Result<()> {
        let name = b"tls";
        // SAFETY: setsockopt reads `name` for the duration of the call.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_TCP,
                libc::TCP_ULP,
                name.as_ptr().cast(),
                name.len() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Sets both directions' keys.
    pub(super) fn install(
        fd: RawFd,
        version: Option<ProtocolVersion>,
        secrets: &ExtractedSecrets,
    ) -> io::Result<()> {
        let version = match version {
            Some(ProtocolVersion::TLSv1_3) => libc::TLS_1_3_VERSION,
            Some(ProtocolVersion::TLSv1_2) => libc::TLS_1_2_VERSION,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "protocol version not offloadable",
                ))
            }
        };
        set(fd, libc::TLS_TX, version, secrets.tx.0, &secrets.tx.1)?;
        set(fd, libc::TLS_RX, version, secrets.rx.0, &secrets.rx.1)
    }

    /// The ciphers the kernel implements for TLS.
    #[derive(Debug, Clone, Copy)]
    pub(super) enum Cipher {
        Aes128Gcm,
        Aes256Gcm,
        Chacha20Poly1305,
    }

    fn set(
        fd: RawFd,
        direction: libc::c_int,
        version: u16,
        seq: u64,
        secrets: &ConnectionTrafficSecrets,
    ) -> io::Result<()> {
        let (cipher, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (Cipher::Aes128Gcm, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (Cipher::Aes256Gcm, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (Cipher::Chacha20Poly1305, key, iv)
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "cipher not offloadable",
                ))
            }
        };
        set_raw(
            fd,
            direction,
            version,
            seq,
            cipher,
            key.as_ref(),
            iv.as_ref(),
        )
    }

    /// Sets one direction's crypto state. `iv` is the 12-byte nonce base; for AES-GCM the
    /// kernel wants it as a 4-byte salt and an 8-byte IV (the 1.3 nonce base, or the 1.2
    /// implicit salt and first explicit nonce, split alike).
    pub(super) fn set_raw(
        fd: RawFd,
        direction: libc::c_int,
        version: u16,
        seq: u64,
        cipher: Cipher,
        key: &[u8],
        iv: &[u8],
    ) -> io::Result<()> {
        let rec_seq = seq.to_be_bytes();
        let bad = || io::Error::new(io::ErrorKind::InvalidInput, "key or IV length");
        if iv.len() != 12 {
            return Err(bad());
        }
        // The AES-GCM structs differ only in key size: one body for both.
        macro_rules! aes_gcm {
            ($info:ty, $cipher_type:expr) => {{
                // SAFETY: a plain C struct of integers and byte arrays.
                let mut info: $info = unsafe { std::mem::zeroed() };
                if key.len() != info.key.len() {
                    return Err(bad());
                }
                info.info.version = version;
                info.info.cipher_type = $cipher_type;
                info.key.copy_from_slice(key);
                info.salt.copy_from_slice(&iv[..4]);
                info.iv.copy_from_slice(&iv[4..]);
                info.rec_seq = rec_seq;
                setsockopt(fd, direction, &info)
            }};
        }
        match cipher {
            Cipher::Aes128Gcm => aes_gcm!(
                libc::tls12_crypto_info_aes_gcm_128,
                libc::TLS_CIPHER_AES_GCM_128
            ),
            Cipher::Aes256Gcm => aes_gcm!(
                libc::tls12_crypto_info_aes_gcm_256,
                libc::TLS_CIPHER_AES_GCM_256
            ),
            Cipher::Chacha20Poly1305 => {
                let mut info: libc::tls12_crypto_info_chacha20_poly1305 =
                    // SAFETY: as above.
                    unsafe { std::mem::zeroed() };
                if key.len() != info.key.len() {
                    return Err(bad());
                }
                info.info.version = version;
                info.info.cipher_type = libc::TLS_CIPHER_CHACHA20_POLY1305;
                info.key.copy_from_slice(key);
                info.iv.copy_from_slice(iv);
                info.rec_seq = rec_seq;
                setsockopt(fd, direction, &info)
            }
        }
    }

    fn setsockopt<T>(fd: RawFd, direction: libc::c_int, info: &T) -> io::Result<()> {
        // SAFETY: the kernel reads size_of::<T>() bytes from `info` during the call.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_TLS,
                direction,
                (info as *const T).cast(),
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}
