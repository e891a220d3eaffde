//! TLS at the edge (`docs/tls.md`): the `[tls]` table (HTTPS listeners, their certificates,
//! client-certificate verification) and each pool's `tls` table (encrypting to storage
//! nodes).
//!
//! Config stays pure: this module names PEM files, it does not read them. The appliance
//! reads them at start-up and on every reload (`appliance/src/tls.rs`), so a renewed
//! certificate takes effect with the next reload, without dropping connections.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::error::{Invalid, KeyPath};
use super::units::{format_duration, ConfigDuration};

/// Most certificates on the TLS listeners (each is looked up by SNI per handshake).
const CERTIFICATES_MAX: usize = 256;
/// Most TLS listen addresses.
const LISTEN_MAX: usize = 64;
/// Handshake timeout bounds: below 100 ms a slow client on a lossy path cannot finish;
/// above a minute a handshake flood holds sockets too long.
const HANDSHAKE_TIMEOUT_MIN: Duration = Duration::from_millis(100);
const HANDSHAKE_TIMEOUT_MAX: Duration = Duration::from_secs(60);
/// Longest `server_name` (a DNS name).
const SERVER_NAME_LEN_MAX: usize = 253;

/// `[tls]`: HTTPS listeners and what they present and demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// Addresses that speak HTTPS (beside `appliance.listen`, which stays plain HTTP).
    /// Like `appliance.listen`, fixed at start: a reload that changes it is rejected.
    pub listen: Vec<SocketAddr>,
    /// Certificate chains with their keys; the client's SNI picks one by the names the
    /// certificate is valid for. A handshake without SNI gets the first.
    pub certificates: Vec<TlsCertificate>,
    /// CA bundle client certificates must chain to; `None` = no client certificates.
    pub client_ca: Option<PathBuf>,
    /// Whether a client certificate is required once `client_ca` is set.
    pub client_auth: ClientAuth,
    /// How long a client has from connect to a finished handshake.
    pub handshake_timeout: Duration,
    /// Hand the session keys to the kernel after the handshake (kTLS) so bodies still
    /// move with `splice`; falls back to user-space encryption where the kernel or the
    /// cipher does not allow it.
    pub ktls: bool,
}

/// One `[[tls.certificate]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsCertificate {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `tls.client_auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// Every client must present a certificate chaining to `client_ca` (mTLS).
    #[default]
    Required,
    /// A certificate, if presented, must verify; clients without one are served too.
    Optional,
}

/// A pool's `tls` table: weir encrypts to this pool's nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// CA bundle the nodes' certificates must chain to; `None` = the system's roots
    /// (`/etc/ssl/certs/ca-certificates.crt`).
    pub ca: Option<PathBuf>,
    /// Name to send as SNI and verify the certificate against; `None` = the node's
    /// host as written in `nodes` (a name or an IP address).
    pub server_name: Option<String>,
    /// Verify the nodes' certificates (default). `false` is for lab clusters with
    /// self-signed certificates only, and logs a warning at every load.
    pub verify: bool,
}

// === raw ===

/// `[tls]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub(crate) listen: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) certificate: Vec<RawCertificate>,
    pub(crate) client_ca: Option<String>,
    pub(crate) client_auth: Option<ClientAuth>,
    pub(crate) handshake_timeout: Option<ConfigDuration>,
    pub(crate) ktls: Option<bool>,
}

/// `[[tls.certificate]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCertificate {
    pub(crate) cert: String,
    pub(crate) key: String,
}

/// A pool's `tls` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamTls {
    pub(crate) ca: Option<String>,
    pub(crate) server_name: Option<String>,
    pub(crate) verify: Option<bool>,
}

// === validation ===

fn file(path: &KeyPath, text: String, what: &str) -> Result<PathBuf, Invalid> {
    if text.trim().is_empty() {
        return Err(Invalid::new(path, format!("an empty path; name {what}")));
    }
    Ok(PathBuf::from(text))
}

/// Validates `[tls]`; `plain` are `appliance.listen` and the metrics/admin addresses,
/// which a TLS listener must not share.
pub(crate) fn tls(path: &KeyPath, raw: RawTls, plain: &[SocketAddr]) -> Result<Tls, Invalid> {
    let list_path = path.key("listen");
    let texts = raw.listen.unwrap_or_default();
    if texts.is_empty() {
        return Err(Invalid::new(
            &list_path,
            "[tls] needs at least one listen address (e.g. [\"0.0.0.0:9443\"])",
        ));
    }
    super::check::limit_len(&list_path, texts.len(), LISTEN_MAX)?;
    let mut listen: Vec<SocketAddr> = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        let item = list_path.index(i);
        let addr = super::check::socket_addr(&item, text)?;
        if let Some(first) = listen.iter().position(|a| *a == addr) {
            return Err(Invalid::new(
                &item,
                format!("duplicate listen address {addr} (also listen[{first}])"),
            ));
        }
        if plain.contains(&addr) {
            return Err(Invalid::new(
                &item,
                format!("{addr} is also a plain-HTTP, metrics or admin address"),
            ));
        }
        listen.push(addr);
    }

    let cert_path = path.key("certificate");
    if raw.certificate.is_empty() {
        return Err(Invalid::new(
            &cert_path,
            "[tls] needs at least one [[tls.certificate]] with cert and key",
        ));
    }
    super::check::limit_len(&cert_path, raw.certificate.len(), CERTIFICATES_MAX)?;
    let mut certificates = Vec::with_capacity(raw.certificate.len());
    for (i, c) in raw.certificate.into_iter().enumerate() {
        let item = cert_path.index(i);
        certificates.push(TlsCertificate {
            cert: file(&item.key("cert"), c.cert, "the PEM certificate chain")?,
            key: file(&item.key("key"), c.key, "the PEM private key")?,
        });
    }

    let client_ca = raw
        .client_ca
        .map(|t| file(&path.key("client_ca"), t, "the clients' CA bundle"))
        .transpose()?;
    if client_ca.is_none() && raw.client_auth.is_some() {
        return Err(Invalid::new(
            &path.key("client_auth"),
            "client_auth needs tls.client_ca (the CA client certificates must chain to)",
        ));
    }

    let handshake_timeout = raw
        .handshake_timeout
        .map_or(Duration::from_secs(10), |ConfigDuration(d)| d);
    if !(HANDSHAKE_TIMEOUT_MIN..=HANDSHAKE_TIMEOUT_MAX).contains(&handshake_timeout) {
        return Err(Invalid::new(
            &path.key("handshake_timeout"),
            format!(
                "{} is outside {}..={}",
                format_duration(handshake_timeout),
                format_duration(HANDSHAKE_TIMEOUT_MIN),
                format_duration(HANDSHAKE_TIMEOUT_MAX)
            ),
        ));
    }
    Ok(Tls {
        listen,
        certificates,
        client_ca,
        client_auth: raw.client_auth.unwrap_or_default(),
        handshake_timeout,
        ktls: raw.ktls.unwrap_or(true),
    })
}

/// Validates a pool's `tls` table.
pub(crate) fn upstream_tls(path: &KeyPath, raw: RawUpstreamTls) -> Result<UpstreamTls, Invalid> {
    let ca = raw
        .ca
        .map(|t| {
            file(
                &path.key("ca"),
                t,
                "the CA bundle of the nodes' certificates",
            )
        })
        .transpose()?;
    let server_name = match raw.server_name {
        None => None,
        Some(name) => {
            let ok = (1..=SERVER_NAME_LEN_MAX).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':'));
            if !ok {
                return Err(Invalid::new(
                    &path.key("server_name"),
                    format!("{name:?} is not a DNS name or IP address"),
                ));
            }
            Some(name)
        }
    };
    let verify = raw.verify.unwrap_or(true);
    if !verify && ca.is_some() {
        return Err(Invalid::new(
            &path.key("verify"),
            "verify = false ignores ca; remove one of them",
        ));
    }
    Ok(UpstreamTls {
        ca,
        server_name,
        verify,
    })
}
