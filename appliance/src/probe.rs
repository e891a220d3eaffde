//! Active health probes. A probe is one HTTP/1.1 request on a fresh connection (so it
//! also tests that the node accepts connections) with its own deadline; what counts as
//! alive, dead or in maintenance is decided by the pool's probe settings, and what that
//! means for the node's state by `weir_policy::health`.

use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Duration;

use monoio::net::TcpStream;
use weir_io::conn::Conn;
use weir_io::http::{parse_response, BodyFraming, HeadLimits, Method};
use weir_io::tls::Failure;
use weir_io::upstream::TlsTarget;

/// How much of a probe response body is read to look for the configured text.
const PROBE_BODY_BYTES_MAX: usize = 4096;

/// What a probe saw.
#[derive(Debug)]
pub struct ProbeAnswer {
    /// Response status.
    pub status: u16,
    /// The first bytes of the body (up to 4 KiB).
    pub body: Vec<u8>,
}

/// Sends one probe request to `addr` and reads the answer within `timeout`. `preamble`
/// goes first on the connection, before TLS: a PROXY v2 `LOCAL` header for a pool whose
/// nodes take PROXY headers (docs/client-address.md), which may refuse a connection
/// without one. `tls_failed` is set when the TLS handshake failed (the probe's deadline
/// during the handshake is a `timeout`), so the caller can count it as an upstream
/// handshake failure (docs/metrics.md).
pub async fn probe(
    addr: SocketAddr,
    tls: Option<TlsTarget<'_>>,
    preamble: &[u8],
    method: &str,
    path: &str,
    timeout: Duration,
    tls_failed: &Cell<Option<Failure>>,
) -> Result<ProbeAnswer, String> {
    tls_failed.set(None);
    let work = probe_inner(addr, tls, preamble, method, path, tls_failed);
    match monoio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("probe timed out after {timeout:?}")),
    }
}

async fn probe_inner(
    addr: SocketAddr,
    tls: Option<TlsTarget<'_>>,
    preamble: &[u8],
    method: &str,
    path: &str,
    tls_failed: &Cell<Option<Failure>>,
) -> Result<ProbeAnswer, String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    if !preamble.is_empty() {
        use monoio::io::AsyncWriteRentExt;
        let (sent, _) = stream.write_all(preamble.to_vec()).await;
        sent.map_err(|e| format!("PROXY header: {e}"))?;
    }
    // The same TLS settings as requests: a node whose certificate fails is down.
    let socket = match tls {
        None => stream.into(),
        Some(t) => {
            // Until the handshake ends: if the probe's deadline cuts it, it timed out.
            tls_failed.set(Some(Failure::Timeout));
            let socket = t.tls.connect(stream, t.host).await.map_err(|e| {
                tls_failed.set(Some(e.failure));
                e.to_string()
            })?;
            tls_failed.set(None);
            socket
        }
    };
    let mut conn =
        Conn::new(socket, 16 * 1024 + PROBE_BODY_BYTES_MAX).map_err(|e| e.to_string())?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: weir-probe\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let request_method = if method.eq_ignore_ascii_case("HEAD") {
        Method::Head
    } else {
        Method::Get
    };
    let limits = HeadLimits::default();
    let head = loop {
        match parse_response(conn.buffered(), &limits, request_method) {
            Ok(Some((head, used))) if head.status >= 200 => {
                conn.consume(used);
                break head;
            }
            Ok(Some((_, used))) => conn.consume(used), // informational: the answer follows
            Ok(None) => match conn.read_head().await {
                Ok(0) => return Err("closed before answering".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("read: {e}")),
            },
            Err(e) => return Err(format!("malformed response: {e}")),
        }
    };
    let want = match head.framing {
        BodyFraming::None => 0,
        BodyFraming::Length(n) => (n as usize).min(PROBE_BODY_BYTES_MAX),
        BodyFraming::Chunked | BodyFraming::UntilClose => PROBE_BODY_BYTES_MAX,
    };
    // Best effort: the body only matters for text matching (maintenance markers).
    while conn.buffered().len() < want {
        match conn.read_more().await {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    let body = conn.buffered()[..conn.buffered().len().min(want)].to_vec();
    Ok(ProbeAnswer {
        status: head.status,
        body,
    })
}
