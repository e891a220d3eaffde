//! Who the client is and what the nodes are told (docs/client-address.md): the request
//! pipeline's side of `weir_policy::forwarded`. A connection knows its nearest hop (the TCP
//! peer, or the client a trusted PROXY header named) and the listener it came in on; each
//! request adds what its trusted forwarding header says, and each attempt writes what the
//! node's pool tells nodes.

use std::net::SocketAddr;

use weir_io::http::{Header, RequestHead};
use weir_policy::config::Config;
use weir_policy::forwarded::{self, ClientAddress, SendClientAddress, TrustedHeader};
use weir_policy::s3code::S3Code;

use crate::identity::{self, Refusal};
use crate::settings::Settings;

/// Where a client connection came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    /// The nearest hop: the TCP peer, or the client a trusted PROXY header named.
    pub peer: SocketAddr,
    /// The address the client reached weir at (the PROXY v2 header's destination).
    pub local: SocketAddr,
    /// The listener, as configured (which `[[client_address]]` applies).
    pub bound: SocketAddr,
    /// Whether the connection is HTTPS (`Forwarded: proto=`).
    pub tls: bool,
}

/// The client of one request as weir established it.
#[derive(Debug, Clone)]
pub struct Established {
    /// What limits, rules, the access log and /flows use: the nearest hop, or the client
    /// a trusted forwarding header named (with port 0: no port there is believed).
    pub addr: SocketAddr,
    /// The hops believed, the client first.
    pub chain: ClientAddress,
}

/// The client of a request that arrived over `origin` with `head`.
pub fn establish(config: &Config, origin: &Origin, head: &RequestHead) -> Established {
    let single = |addr: SocketAddr| Established {
        addr,
        chain: ClientAddress {
            ip: addr.ip(),
            chain: vec![addr.ip()],
        },
    };
    let Some(trust) = config.client_trust(origin.bound) else {
        return single(origin.peer);
    };
    let name = match trust.header {
        TrustedHeader::None => return single(origin.peer),
        TrustedHeader::XForwardedFor => "x-forwarded-for",
        TrustedHeader::Forwarded => "forwarded",
    };
    let values: Vec<&[u8]> = head.headers_named(name).collect();
    let chain = forwarded::client_address(trust, origin.peer.ip(), None, &values);
    let addr = if chain.chain.len() == 1 {
        origin.peer
    } else {
        SocketAddr::new(chain.ip, 0)
    };
    Established { addr, chain }
}

/// The head to send to a node of `pool` for `tenant`: `None` to send the client's as it
/// came (`send_client_address = "none"`), else the client's without any forwarding field
/// and with the pool's own. A forwarding field the client signed is refused (400) unless
/// the pool re-signs: rewriting it would break the signature, keeping it would let the
/// client choose its address.
pub fn head_for_pool(
    settings: &Settings,
    origin: &Origin,
    client: &Established,
    pool: usize,
    tenant: usize,
    head: &RequestHead,
) -> Result<Option<RequestHead>, Refusal> {
    let mode = settings.config.pools[pool].send_client_address;
    if !mode.rewrites_head() {
        return Ok(None);
    }
    if !identity::resigns(settings, tenant, pool) {
        let signed = signed_headers(head);
        if let Some(name) = forwarded::signed_conflict(mode, signed.iter().map(String::as_str)) {
            return Err(Refusal {
                status: 400,
                code: S3Code::InvalidRequest,
                message: format!(
                    "the request signs {name}, which this endpoint replaces with the client address it established"
                ),
                reason: "unsignable",
            });
        }
    }
    let mut out = head.clone();
    tell(settings, origin, client, pool, &mut out);
    Ok(Some(out))
}

/// Puts the pool's account of the client in `head`: every forwarding field the client
/// sent goes (any spelling), and so does its nomination in `Connection` — a client that
/// names `X-Forwarded-For` there would have weir's own field dropped as hop-by-hop on
/// the way out — then the pool's own field is added (none for `proxy-v2` and `none`).
pub fn tell(
    settings: &Settings,
    origin: &Origin,
    client: &Established,
    pool: usize,
    head: &mut RequestHead,
) {
    let mode = settings.config.pools[pool].send_client_address;
    if !mode.rewrites_head() {
        return;
    }
    head.headers
        .retain(|h| !forwarded::is_forwarding_header(h.name.as_bytes()));
    for h in head.headers.iter_mut().filter(|h| h.is("connection")) {
        let kept: Vec<&[u8]> = h
            .value
            .split(|&b| b == b',')
            .map(|t| t.trim_ascii())
            .filter(|t| !t.is_empty() && !forwarded::is_forwarding_header(t))
            .collect();
        h.value = kept.join(&b", "[..]);
    }
    head.headers
        .retain(|h| !(h.is("connection") && h.value.is_empty()));
    if let Some((name, value)) = forwarded::header_to_send(mode, &client.chain, origin.tls) {
        head.headers.push(Header::new(name, value.into_bytes()));
    }
}

/// For a pool that sends PROXY v2 headers: the client and the address it reached weir at.
pub fn proxied(
    settings: &Settings,
    origin: &Origin,
    client: &Established,
    pool: usize,
) -> Option<(SocketAddr, SocketAddr)> {
    (settings.config.pools[pool].send_client_address == SendClientAddress::ProxyV2)
        .then_some((client.addr, origin.local))
}

/// The header names a SigV4 request signs (`SignedHeaders=` of its `Authorization`, or a
/// presigned URL's `X-Amz-SignedHeaders`); empty when unsigned.
fn signed_headers(head: &RequestHead) -> Vec<String> {
    let authorization = head
        .header("authorization")
        .and_then(|v| std::str::from_utf8(v).ok());
    weir_policy::resume::signed_headers(authorization, head.query())
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_io::http::{parse_request, HeadLimits};

    fn head(raw: &str) -> RequestHead {
        let limits = HeadLimits {
            header_bytes_max: 16 << 10,
            headers_count_max: 64,
        };
        parse_request(raw.as_bytes(), &limits).unwrap().unwrap().0
    }

    #[test]
    fn signed_header_names() {
        let h = head(
            "GET /b/k HTTP/1.1\r\nHost: a\r\nAuthorization: AWS4-HMAC-SHA256 \
             Credential=K/20240101/us-east-1/s3/aws4_request, \
             SignedHeaders=host;X-Forwarded-For;x-amz-date, Signature=00\r\n\r\n",
        );
        assert_eq!(
            signed_headers(&h),
            ["host", "x-forwarded-for", "x-amz-date"]
        );
        let h =
            head("GET /b/k?X-Amz-SignedHeaders=host%3Bforwarded&x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(signed_headers(&h), ["host", "forwarded"]);
        assert!(signed_headers(&head("GET / HTTP/1.1\r\nHost: a\r\n\r\n")).is_empty());
    }
}
