//! The storage side of TLS: nodes verified against a CA bundle (or not at all), and the
//! client handshake.

use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpStream;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, Connection};

use crate::conn::Socket;
use crate::sys;

use super::{
    fail, finish, handshake, provider, roots_from_pem, Failure, HandshakeError, LoadError,
};

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
