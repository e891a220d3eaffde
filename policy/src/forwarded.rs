//! Who the client is, and what weir tells storage nodes about it (docs/client-address.md).
//!
//! A request reaches weir over a chain of hops: the client, perhaps proxies that appended
//! to `X-Forwarded-For` or `Forwarded`, perhaps an L4 balancer that sent a PROXY header,
//! and finally the TCP peer. Anyone can write anything into those headers, so only hops
//! from trusted addresses are believed: walking from the right (the hop nearest weir),
//! every trusted address hands the question on to the hop before it, and the first
//! untrusted one is the client — nginx's `real_ip_recursive`. Pure: the appliance passes
//! in the peer, the PROXY header's source and the header values.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::route::Cidr;

/// Most hops read from the forwarding headers of one request: beyond this the walk stops
/// (at a hop that is then taken as the client). Real chains have a handful of hops.
pub const HOPS_MAX: usize = 64;

/// The header fields that carry client addresses between proxies. When weir speaks for the
/// client (any [`SendClientAddress`] but `None`) it removes every one of them that the
/// client sent, and writes its own: a node reads whichever it knows (MinIO reads
/// `X-Forwarded-For`, then `X-Real-IP`, then `Forwarded`), so leaving one would let a
/// client pick its own `aws:SourceIp`.
pub const FORWARDING_HEADERS: [&str; 3] = ["x-forwarded-for", "x-real-ip", "forwarded"];

/// Whether a listener reads a PROXY header before the first request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyProtocol {
    /// No PROXY header: a connection starting with one is a malformed request.
    #[default]
    Off,
    /// A header is read when the connection starts with one (from trusted peers only).
    Optional,
    /// Every connection must start with one, and come from a trusted peer.
    Required,
}

/// Which request header a listener believes, from trusted hops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrustedHeader {
    /// None: the peer (or the PROXY header's source) is the client.
    #[default]
    None,
    /// `X-Forwarded-For`: comma-separated addresses, the newest hop last.
    XForwardedFor,
    /// `Forwarded` (RFC 7239): the `for=` parameter of each element.
    Forwarded,
}

/// How a client listener learns the client's address: one `[[client_address]]` block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientTrust {
    /// Upstream proxies and balancers whose word about the client is believed.
    pub trusted_proxies: Vec<Cidr>,
    /// Whether connections start with a PROXY header.
    pub proxy_protocol: ProxyProtocol,
    /// Which forwarding header is believed.
    pub header: TrustedHeader,
}

/// What weir tells a pool's nodes about the client (the pool's `send_client_address`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendClientAddress {
    /// Nothing: the head goes to the node as the client sent it (forwarding headers
    /// included, unchecked).
    #[default]
    None,
    /// `X-Forwarded-For: <client>` alone.
    XffReplace,
    /// `X-Forwarded-For: <client>, <trusted hops>…, <peer>`: the hops weir believed.
    XffAppend,
    /// `Forwarded: for=<client>, for=<hop>…;proto=<http|https>` (RFC 7239).
    Forwarded,
    /// A PROXY v2 header at the start of each node connection; no header field is added.
    ProxyV2,
}

impl SendClientAddress {
    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            SendClientAddress::None => "none",
            SendClientAddress::XffReplace => "x-forwarded-for",
            SendClientAddress::XffAppend => "x-forwarded-for-append",
            SendClientAddress::Forwarded => "forwarded",
            SendClientAddress::ProxyV2 => "proxy-v2",
        }
    }

    /// Parses the config spelling.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            SendClientAddress::None,
            SendClientAddress::XffReplace,
            SendClientAddress::XffAppend,
            SendClientAddress::Forwarded,
            SendClientAddress::ProxyV2,
        ]
        .into_iter()
        .find(|m| m.name() == name)
    }

    /// Whether the request head is changed: forwarding headers removed, one written.
    pub fn rewrites_head(self) -> bool {
        self != SendClientAddress::None
    }
}

impl ClientTrust {
    /// Whether `ip` is a trusted proxy (in any form: `::ffff:10.0.0.1` is `10.0.0.1`).
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(ip))
    }
}

/// The client as weir established it, with the hops it believed on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddress {
    /// The client: the rightmost untrusted hop, or the leftmost when all are trusted.
    pub ip: IpAddr,
    /// From the client to the hop nearest weir, the client first; one entry when no hop
    /// was believed. What `x-forwarded-for-append` and `forwarded` tell the node.
    pub chain: Vec<IpAddr>,
}

/// Works out the client from the TCP `peer`, the PROXY header's source (`proxied`, which
/// counts only when the peer is trusted: the appliance refuses the header otherwise) and
/// the values of the believed header, in the order the fields appeared.
pub fn client_address(
    trust: &ClientTrust,
    peer: IpAddr,
    proxied: Option<IpAddr>,
    header_values: &[&[u8]],
) -> ClientAddress {
    let peer = peer.to_canonical();
    let nearest = match proxied {
        Some(ip) if trust.trusts(peer) => ip.to_canonical(),
        _ => peer,
    };
    let mut chain = vec![nearest];
    if !trust.trusts(nearest) {
        return ClientAddress { ip: nearest, chain };
    }
    let hops = match trust.header {
        TrustedHeader::None => Vec::new(),
        TrustedHeader::XForwardedFor => xff_hops(header_values),
        TrustedHeader::Forwarded => forwarded_hops(header_values),
    };
    // Right to left: each trusted hop vouches for the one before it.
    for hop in hops.iter().rev().take(HOPS_MAX) {
        match hop {
            Some(ip) => {
                chain.push(ip.to_canonical());
                if !trust.trusts(*ip) {
                    break;
                }
            }
            // A trusted hop that wrote something that is not an address: it is the last
            // word weir can believe.
            None => break,
        }
    }
    chain.reverse();
    ClientAddress {
        ip: chain[0],
        chain,
    }
}

/// The addresses in `X-Forwarded-For` values, left to right; `None` for an entry that is
/// not an address (`unknown`, a name, garbage).
fn xff_hops(values: &[&[u8]]) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for value in values {
        for item in value.split(|&b| b == b',') {
            let item = item.trim_ascii();
            if item.is_empty() {
                continue;
            }
            hops.push(std::str::from_utf8(item).ok().and_then(node_ip));
        }
    }
    hops
}

/// The `for=` nodes of `Forwarded` values, left to right; `None` for an element without
/// one, or an obfuscated or `unknown` node.
fn forwarded_hops(values: &[&[u8]]) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for value in values {
        let Ok(text) = std::str::from_utf8(value) else {
            hops.push(None);
            continue;
        };
        for element in split_outside_quotes(text, ',') {
            if element.trim().is_empty() {
                continue;
            }
            let node = split_outside_quotes(element, ';')
                .into_iter()
                .find_map(|pair| {
                    let (name, value) = pair.split_once('=')?;
                    name.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| value.trim())
                });
            let node = node.map(|v| {
                v.strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v)
            });
            hops.push(node.and_then(node_ip));
        }
    }
    hops
}

/// Splits on `sep` outside double quotes (a quoted IPv6 node holds `:` and may hold `,`
/// in hostile input).
fn split_outside_quotes(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&text[start..i]);
            start = i + 1;
        }
    }
    parts.push(&text[start..]);
    parts
}

/// An address as proxies write it: `192.0.2.7`, `2001:db8::1`, `[2001:db8::1]`, with or
/// without `:port` (`192.0.2.7:4711`, `[2001:db8::1]:4711`).
fn node_ip(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        if !(after.is_empty() || port_ok(after.strip_prefix(':')?)) {
            return None;
        }
        return v6.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (v4, port) = text.split_once(':')?;
    if !port_ok(port) {
        return None;
    }
    v4.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn port_ok(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}

/// The header field weir writes for the node, as `(name, value)`; `None` for the modes
/// that write none. `tls` is whether the client reached weir over TLS (`proto=`).
pub fn header_to_send(
    mode: SendClientAddress,
    client: &ClientAddress,
    tls: bool,
) -> Option<(&'static str, String)> {
    match mode {
        SendClientAddress::None | SendClientAddress::ProxyV2 => None,
        SendClientAddress::XffReplace => Some(("X-Forwarded-For", client.ip.to_string())),
        SendClientAddress::XffAppend => {
            let mut value = String::new();
            for (i, ip) in client.chain.iter().enumerate() {
                if i > 0 {
                    value.push_str(", ");
                }
                let _ = write!(value, "{ip}");
            }
            Some(("X-Forwarded-For", value))
        }
        SendClientAddress::Forwarded => {
            let mut value = String::new();
            for (i, ip) in client.chain.iter().enumerate() {
                if i > 0 {
                    value.push_str(", ");
                }
                // RFC 7239 §6: an IPv6 node is bracketed, and so must be quoted.
                let _ = match ip {
                    IpAddr::V4(v4) => write!(value, "for={v4}"),
                    IpAddr::V6(v6) => write!(value, "for=\"[{v6}]\""),
                };
            }
            let _ = write!(value, ";proto={}", if tls { "https" } else { "http" });
            Some(("Forwarded", value))
        }
    }
}

/// The first forwarding header (lower case) a client listed in its SigV4 `SignedHeaders`,
/// when weir would have to change it: removing or rewriting a signed field breaks the
/// signature at the node. The appliance refuses such a request rather than forwarding a
/// field it was configured to replace (docs/client-address.md, "Signed requests").
pub fn signed_conflict<'a>(
    mode: SendClientAddress,
    signed_headers: impl IntoIterator<Item = &'a str>,
) -> Option<&'static str> {
    if !mode.rewrites_head() {
        return None;
    }
    signed_headers.into_iter().find_map(|name| {
        FORWARDING_HEADERS
            .iter()
            .find(|h| h.eq_ignore_ascii_case(name.trim()))
            .copied()
    })
}

/// Whether a request header field is one weir removes when it speaks for the client.
pub fn is_forwarding_header(name: &[u8]) -> bool {
    // `X_Forwarded_For` too: servers that map field names to CGI-style variables read
    // `_` as `-`, so the spelling would reach them as the real field.
    let same = |h: &str| {
        h.len() == name.len()
            && h.bytes().zip(name).all(|(a, &b)| {
                let b = if b == b'_' { b'-' } else { b };
                a.eq_ignore_ascii_case(&b)
            })
    };
    FORWARDING_HEADERS.iter().any(|h| same(h))
}

/// The key an upstream keep-alive connection is pooled under: a connection that began with
/// a PROXY header speaks for that client and no other, so it is reused only for the same
/// client address (`None`: a plain connection, shared by all).
pub fn pool_owner(mode: SendClientAddress, client: SocketAddr) -> Option<IpAddr> {
    (mode == SendClientAddress::ProxyV2).then(|| client.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trust(cidrs: &[&str], header: TrustedHeader) -> ClientTrust {
        ClientTrust {
            trusted_proxies: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
            proxy_protocol: ProxyProtocol::Off,
            header,
        }
    }

    fn client(
        t: &ClientTrust,
        peer: &str,
        proxied: Option<&str>,
        values: &[&str],
    ) -> ClientAddress {
        let values: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        client_address(t, ip(peer), proxied.map(ip), &values)
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_says() {
        let t = trust(&["10.0.0.0/8"], TrustedHeader::XForwardedFor);
        let c = client(&t, "192.0.2.7", Some("198.51.100.1"), &["203.0.113.9"]);
        assert_eq!((c.ip, c.chain), (ip("192.0.2.7"), vec![ip("192.0.2.7")]));
    }

    #[test]
    fn rightmost_untrusted_hop_wins() {
        let t = trust(&["10.0.0.0/8", "fd00::/8"], TrustedHeader::XForwardedFor);
        // A client spoofs 1.1.1.1; the trusted proxy 10.0.0.2 appended the real one.
        let c = client(&t, "10.0.0.1", None, &["1.1.1.1, 192.0.2.7", "10.0.0.2"]);
        assert_eq!(c.ip, ip("192.0.2.7"));
        assert_eq!(
            c.chain,
            vec![ip("192.0.2.7"), ip("10.0.0.2"), ip("10.0.0.1")]
        );
        // All trusted: the leftmost.
        let c = client(&t, "10.0.0.1", None, &["10.9.9.9,fd00::5"]);
        assert_eq!(c.ip, ip("10.9.9.9"));
        // Ports and brackets as proxies write them; a mapped peer is canonical.
        let c = client(&t, "::ffff:10.0.0.1", None, &["[2001:db8::1]:4711"]);
        assert_eq!(c.ip, ip("2001:db8::1"));
        assert_eq!(c.chain, vec![ip("2001:db8::1"), ip("10.0.0.1")]);
        let c = client(&t, "10.0.0.1", None, &["192.0.2.7:80"]);
        assert_eq!(c.ip, ip("192.0.2.7"));
        // Garbage written by a trusted hop stops the walk at that hop.
        let c = client(&t, "10.0.0.1", None, &["192.0.2.7, unknown"]);
        assert_eq!(c.ip, ip("10.0.0.1"));
        // No header: the trusted peer itself.
        assert_eq!(client(&t, "10.0.0.1", None, &[]).ip, ip("10.0.0.1"));
    }

    #[test]
    fn proxy_header_counts_from_trusted_peers_only() {
        let t = trust(&["10.0.0.0/8"], TrustedHeader::None);
        let c = client(&t, "10.0.0.1", Some("192.0.2.7"), &["203.0.113.9"]);
        assert_eq!((c.ip, c.chain.len()), (ip("192.0.2.7"), 1));
        // An L7 proxy behind the L4 balancer: both trusted, its XFF believed.
        let t = trust(&["10.0.0.0/8"], TrustedHeader::XForwardedFor);
        let c = client(&t, "10.0.0.1", Some("10.0.0.3"), &["192.0.2.7"]);
        assert_eq!(c.chain, vec![ip("192.0.2.7"), ip("10.0.0.3")]);
        // The header is ignored unless the listener believes one.
        let t = trust(&["10.0.0.0/8"], TrustedHeader::None);
        assert_eq!(
            client(&t, "10.0.0.1", None, &["192.0.2.7"]).ip,
            ip("10.0.0.1")
        );
    }

    #[test]
    fn forwarded_for_nodes() {
        let t = trust(&["10.0.0.0/8"], TrustedHeader::Forwarded);
        let c = client(
            &t,
            "10.0.0.1",
            None,
            &[
                r#"for=1.1.1.1, For="[2001:db8:cafe::17]:4711";proto=https"#,
                "for=10.0.0.2;by=10.0.0.1",
            ],
        );
        assert_eq!(c.ip, ip("2001:db8:cafe::17"));
        assert_eq!(c.chain.len(), 3);
        // Obfuscated and unknown nodes, and elements without for=, stop the walk.
        for v in ["for=_hidden", "for=unknown", "proto=http", r#"for="[::1"#] {
            assert_eq!(client(&t, "10.0.0.1", None, &[v]).ip, ip("10.0.0.1"), "{v}");
        }
        // A quoted comma does not split an element.
        let c = client(&t, "10.0.0.1", None, &[r#"for="192.0.2.7,x";a=b"#]);
        assert_eq!(c.ip, ip("10.0.0.1"));
    }

    #[test]
    fn walk_is_bounded() {
        let t = trust(&["10.0.0.0/8"], TrustedHeader::XForwardedFor);
        let many = vec!["10.1.1.1"; HOPS_MAX * 2].join(",");
        let c = client(&t, "10.0.0.1", None, &[&many]);
        assert_eq!(c.chain.len(), HOPS_MAX + 1);
    }

    #[test]
    fn header_values() {
        let c = ClientAddress {
            ip: ip("192.0.2.7"),
            chain: vec![ip("192.0.2.7"), ip("2001:db8::1"), ip("10.0.0.1")],
        };
        let send = |m| header_to_send(m, &c, true);
        assert_eq!(send(SendClientAddress::None), None);
        assert_eq!(send(SendClientAddress::ProxyV2), None);
        assert_eq!(
            send(SendClientAddress::XffReplace),
            Some(("X-Forwarded-For", "192.0.2.7".into()))
        );
        assert_eq!(
            send(SendClientAddress::XffAppend),
            Some(("X-Forwarded-For", "192.0.2.7, 2001:db8::1, 10.0.0.1".into()))
        );
        assert_eq!(
            send(SendClientAddress::Forwarded),
            Some((
                "Forwarded",
                r#"for=192.0.2.7, for="[2001:db8::1]", for=10.0.0.1;proto=https"#.into()
            ))
        );
        // What weir writes, read back by a weir that trusts the hops, gives the client.
        let t = trust(&["10.0.0.0/8", "2001:db8::/32"], TrustedHeader::Forwarded);
        let (_, v) = send(SendClientAddress::Forwarded).unwrap();
        assert_eq!(client(&t, "10.0.0.5", None, &[&v]).ip, ip("192.0.2.7"));
    }

    #[test]
    fn modes_and_conflicts() {
        for m in [
            SendClientAddress::None,
            SendClientAddress::XffReplace,
            SendClientAddress::XffAppend,
            SendClientAddress::Forwarded,
            SendClientAddress::ProxyV2,
        ] {
            assert_eq!(SendClientAddress::from_name(m.name()), Some(m));
        }
        assert_eq!(SendClientAddress::from_name("xff"), None);
        let signed = ["host", "x-amz-date", "X-Forwarded-For"];
        assert_eq!(signed_conflict(SendClientAddress::None, signed), None);
        assert_eq!(
            signed_conflict(SendClientAddress::ProxyV2, signed),
            Some("x-forwarded-for")
        );
        assert_eq!(
            signed_conflict(SendClientAddress::XffReplace, ["host", "x-amz-date"]),
            None
        );
        assert!(is_forwarding_header(b"X-Real-IP"));
        assert!(!is_forwarding_header(b"x-forwarded-proto"));
        let a: SocketAddr = "[::ffff:192.0.2.7]:5".parse().unwrap();
        assert_eq!(
            pool_owner(SendClientAddress::ProxyV2, a),
            Some(ip("192.0.2.7"))
        );
        assert_eq!(pool_owner(SendClientAddress::XffAppend, a), None);
    }
}
