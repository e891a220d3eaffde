//! The listener side of TLS: one rustls config per certificate, chosen by the client's
//! SNI, client certificates verified when asked, and the server handshake.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpStream;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{Acceptor, WebPkiClientVerifier};
use rustls::{Connection, ServerConfig};

use crate::conn::Socket;
use crate::sys;

use super::{
    certs_from_pem, fail, finish, handshake, provider, read_record, roots_from_pem, Failure, Fd,
    HandshakeError, LoadError, PemIdentity, TlsPath, RECORD_BYTES_MAX,
};

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
