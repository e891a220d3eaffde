//! The PROXY protocol (HAProxy's, versions 1 and 2): an L4 balancer in front of weir
//! prepends one header naming the client's address, and weir may prepend one to the
//! connections it opens to storage nodes (docs/client-address.md).
//!
//! The parser is strict and bounded: a v1 line is at most [`V1_BYTES_MAX`] bytes, a v2
//! header at most [`V2_BYTES_MAX`]; TLVs are walked (an entry running past the header is
//! an error) but their contents are ignored. [`read_header`] reads the header off a raw TCP
//! socket before TLS or HTTP see it, and never consumes a byte past it: it peeks, and only
//! takes bytes it knows belong to the header.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use crate::error::{Error, Kind, Side};
use crate::sys;

/// Longest v1 line, `PROXY` to CRLF included (the protocol's own bound).
pub const V1_BYTES_MAX: usize = 107;
/// The 12 bytes every v2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v2 address block with its TLVs that weir accepts. Balancers add a few dozen
/// bytes of TLVs (a VPC endpoint id, a CRC); a client certificate in TLVs would not fit,
/// and a header that large from a balancer is more likely an attack than a feature.
pub const V2_PAYLOAD_BYTES_MAX: usize = 2048;
/// Longest v2 header: the fixed 16 bytes and the largest payload.
pub const V2_BYTES_MAX: usize = 16 + V2_PAYLOAD_BYTES_MAX;

/// The v1 prefix; a v1 line is known to be one once these six bytes are seen.
const V1_PREFIX: &[u8] = b"PROXY ";
/// How long [`read_header`] waits before looking again at a start too short to tell a
/// header from a request (fewer bytes than a signature); rare, so a short sleep beats
/// waking on every readiness event for bytes already seen.
const AMBIGUOUS_RETRY: Duration = Duration::from_millis(2);

/// What a PROXY header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// 1 or 2.
    pub version: u8,
    /// The client's address and the address it connected to; `None` for v1 `UNKNOWN`,
    /// v2 `LOCAL` (a balancer's own health check) and v2 families weir does not route
    /// (UDP, Unix sockets, unspecified): the connection's own peer address applies.
    pub addresses: Option<ProxyAddresses>,
}

/// The addresses a PROXY header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyAddresses {
    /// The client (the connection's original source).
    pub source: SocketAddr,
    /// The address the client connected to (the balancer's front end).
    pub destination: SocketAddr,
}

/// The outcome of looking at the first bytes of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// The bytes so far are a prefix of a header (or too few to tell): read more.
    Incomplete,
    /// The connection does not start with a PROXY header.
    NotProxy,
    /// A header, and how many bytes it took.
    Header(ProxyHeader, usize),
}

/// Why a PROXY header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// A v1 line with no CRLF within its bound.
    #[error("PROXY v1 line longer than {V1_BYTES_MAX} bytes")]
    V1TooLong,
    /// A v1 line that does not follow the grammar.
    #[error("malformed PROXY v1 line: {0}")]
    V1Malformed(&'static str),
    /// A v2 version nibble other than 2.
    #[error("PROXY v2 header with version {0}")]
    V2Version(u8),
    /// A v2 command other than LOCAL or PROXY.
    #[error("PROXY v2 header with command {0}")]
    V2Command(u8),
    /// A v2 family or transport byte outside the protocol.
    #[error("PROXY v2 header with family/protocol byte {0:#04x}")]
    V2Family(u8),
    /// A v2 length beyond [`V2_PAYLOAD_BYTES_MAX`].
    #[error("PROXY v2 header of {0} bytes (at most {V2_PAYLOAD_BYTES_MAX})")]
    V2TooLong(usize),
    /// A v2 length too short for its address family.
    #[error("PROXY v2 header too short for its addresses")]
    V2Short,
    /// A TLV running past the end of the header.
    #[error("PROXY v2 TLV runs past the header")]
    V2Tlv,
}

/// Looks at the start of a connection: a whole header, a prefix of one, or not one at all.
/// Never reads past the header: `Header(_, n)` with `n <= bytes.len()`.
pub fn parse(bytes: &[u8]) -> Result<Parsed, ProxyError> {
    if is_prefix_of(bytes, V1_PREFIX) || bytes.starts_with(V1_PREFIX) {
        if bytes.len() < V1_PREFIX.len() {
            return Ok(Parsed::Incomplete);
        }
        return parse_v1(bytes);
    }
    if is_prefix_of(bytes, &V2_SIGNATURE) || bytes.starts_with(&V2_SIGNATURE) {
        if bytes.len() < 16 {
            return Ok(Parsed::Incomplete);
        }
        return parse_v2(bytes);
    }
    Ok(Parsed::NotProxy)
}

/// True when `bytes` is a proper prefix of `of` (the empty input included).
fn is_prefix_of(bytes: &[u8], of: &[u8]) -> bool {
    bytes.len() < of.len() && of.starts_with(bytes)
}

fn parse_v1(bytes: &[u8]) -> Result<Parsed, ProxyError> {
    let window = &bytes[..bytes.len().min(V1_BYTES_MAX)];
    let Some(cr) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        return if bytes.len() >= V1_BYTES_MAX {
            Err(ProxyError::V1TooLong)
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    if window[cr] != b'\r' {
        return Err(ProxyError::V1Malformed("bare LF"));
    }
    match window.get(cr + 1) {
        None if bytes.len() < V1_BYTES_MAX => return Ok(Parsed::Incomplete),
        None => return Err(ProxyError::V1TooLong),
        Some(b'\n') => {}
        Some(_) => return Err(ProxyError::V1Malformed("CR without LF")),
    }
    let line = std::str::from_utf8(&window[V1_PREFIX.len()..cr])
        .map_err(|_| ProxyError::V1Malformed("not ASCII"))?;
    let consumed = cr + 2;
    if let Some(rest) = line.strip_prefix("UNKNOWN") {
        // The protocol lets UNKNOWN carry anything up to CRLF; its addresses mean nothing.
        if !rest.is_empty() && !rest.starts_with(' ') {
            return Err(ProxyError::V1Malformed("unknown protocol"));
        }
        return Ok(Parsed::Header(
            ProxyHeader {
                version: 1,
                addresses: None,
            },
            consumed,
        ));
    }
    let mut fields = line.split(' ');
    let (Some(proto), Some(src), Some(dst), Some(sport), Some(dport), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(ProxyError::V1Malformed("wrong number of fields"));
    };
    let (source, destination): (IpAddr, IpAddr) = match proto {
        "TCP4" => (IpAddr::V4(v1_addr(src)?), IpAddr::V4(v1_addr(dst)?)),
        "TCP6" => (IpAddr::V6(v1_addr(src)?), IpAddr::V6(v1_addr(dst)?)),
        _ => return Err(ProxyError::V1Malformed("unknown protocol")),
    };
    Ok(Parsed::Header(
        ProxyHeader {
            version: 1,
            addresses: Some(ProxyAddresses {
                source: SocketAddr::new(source, v1_port(sport)?),
                destination: SocketAddr::new(destination, v1_port(dport)?),
            }),
        },
        consumed,
    ))
}

/// An address of the family its protocol names (Rust's parsers refuse leading zeros and
/// anything but the canonical textual forms' grammar).
fn v1_addr<A: std::str::FromStr>(text: &str) -> Result<A, ProxyError> {
    text.parse()
        .map_err(|_| ProxyError::V1Malformed("bad address"))
}

/// A port: decimal digits, no sign, no leading zero, at most 65535.
fn v1_port(text: &str) -> Result<u16, ProxyError> {
    let bad = ProxyError::V1Malformed("bad port");
    if text.is_empty()
        || text.len() > 5
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return Err(bad);
    }
    text.parse().map_err(|_| bad)
}

fn parse_v2(bytes: &[u8]) -> Result<Parsed, ProxyError> {
    let ver_cmd = bytes[12];
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::V2Version(ver_cmd >> 4));
    }
    let command = ver_cmd & 0x0f;
    if command > 1 {
        return Err(ProxyError::V2Command(command));
    }
    let family = bytes[13];
    let (af, transport) = (family >> 4, family & 0x0f);
    if af > 3 || transport > 2 {
        return Err(ProxyError::V2Family(family));
    }
    let len = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    if len > V2_PAYLOAD_BYTES_MAX {
        return Err(ProxyError::V2TooLong(len));
    }
    let need = match (af, transport) {
        (1, _) if transport != 0 => 12,
        (2, _) if transport != 0 => 36,
        (3, _) if transport != 0 => 216,
        _ => 0,
    };
    if len < need {
        return Err(ProxyError::V2Short);
    }
    if bytes.len() < 16 + len {
        return Ok(Parsed::Incomplete);
    }
    let payload = &bytes[16..16 + len];
    // TLVs follow the addresses: type, 16-bit length, value. Their meaning is ignored,
    // their framing is not (a header that lies about its own structure is refused).
    let mut tlvs = &payload[need..];
    while !tlvs.is_empty() {
        if tlvs.len() < 3 {
            return Err(ProxyError::V2Tlv);
        }
        let tlv_len = usize::from(u16::from_be_bytes([tlvs[1], tlvs[2]]));
        tlvs = tlvs.get(3 + tlv_len..).ok_or(ProxyError::V2Tlv)?;
    }
    let addresses = match (command, af, transport) {
        (1, 1, 1) => {
            let ip = |at: usize| {
                Ipv4Addr::new(
                    payload[at],
                    payload[at + 1],
                    payload[at + 2],
                    payload[at + 3],
                )
            };
            Some(ProxyAddresses {
                source: SocketAddr::new(IpAddr::V4(ip(0)), port_at(payload, 8)),
                destination: SocketAddr::new(IpAddr::V4(ip(4)), port_at(payload, 10)),
            })
        }
        (1, 2, 1) => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&payload[at..at + 16]);
                Ipv6Addr::from(octets)
            };
            Some(ProxyAddresses {
                source: SocketAddr::new(IpAddr::V6(ip(0)), port_at(payload, 32)),
                destination: SocketAddr::new(IpAddr::V6(ip(16)), port_at(payload, 34)),
            })
        }
        // LOCAL, UNSPEC, UDP and Unix sockets: the connection's own endpoints apply.
        _ => None,
    };
    Ok(Parsed::Header(
        ProxyHeader {
            version: 2,
            addresses,
        },
        16 + len,
    ))
}

fn port_at(payload: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([payload[at], payload[at + 1]])
}

/// A v2 PROXY header for a connection weir opens on behalf of `source` (the client) to a
/// node, `destination` being the address the client reached weir at. Mixed families are
/// sent as IPv6 (an IPv4 address as `::ffff:a.b.c.d`).
pub fn encode_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21); // version 2, PROXY
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11); // INET, STREAM
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            out.push(0x21); // INET6, STREAM
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&as_v6(s).octets());
            out.extend_from_slice(&as_v6(d).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

/// A v2 `LOCAL` header: for connections weir opens on its own behalf (health probes),
/// which a node that requires PROXY headers still expects to start with one.
pub fn encode_v2_local() -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&V2_SIGNATURE);
    out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    out
}

fn as_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// Reads a PROXY header from a freshly accepted socket, before TLS or HTTP, within
/// `deadline`. `Ok(None)`: the connection does not start with one and `required` is false
/// (its bytes are all still in the socket). Only the header's bytes are consumed, so the
/// socket can be handed on as if the header had never been there.
pub async fn read_header(
    stream: &TcpStream,
    deadline: Instant,
    required: bool,
) -> Result<Option<ProxyHeader>, Error> {
    let left = deadline.saturating_duration_since(Instant::now());
    match monoio::time::timeout(left, read_header_inner(stream, required)).await {
        Ok(result) => result,
        Err(_) => Err(Error::new(
            Side::Client,
            Kind::Timeout,
            "no complete PROXY header before the head deadline",
        )),
    }
}

async fn read_header_inner(
    stream: &TcpStream,
    required: bool,
) -> Result<Option<ProxyHeader>, Error> {
    let fd = stream.as_raw_fd();
    let mut buf = vec![0u8; V2_BYTES_MAX];
    // buf[..taken] was consumed from the socket: bytes known to be the header's.
    let mut taken = 0usize;
    loop {
        let n = match sys::peek(fd, &mut buf[taken..]) {
            Ok(0) => {
                return Err(Error::new(
                    Side::Client,
                    Kind::Closed,
                    "closed before a complete PROXY header",
                ))
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                stream
                    .readable(false)
                    .await
                    .map_err(|e| Error::from_io(Side::Client, &e))?;
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::from_io(Side::Client, &e)),
        };
        let seen = taken + n;
        let protocol = |e: ProxyError| Error::new(Side::Client, Kind::Protocol, e.to_string());
        match parse(&buf[..seen]).map_err(protocol)? {
            Parsed::Header(header, consumed) => {
                take(fd, stream, &mut buf[taken..consumed]).await?;
                return Ok(Some(header));
            }
            Parsed::NotProxy if required => {
                return Err(Error::new(
                    Side::Client,
                    Kind::Protocol,
                    "connection does not start with a PROXY header",
                ))
            }
            // Nothing was taken: a signature's full prefix is needed before any byte is.
            Parsed::NotProxy => return Ok(None),
            Parsed::Incomplete => {
                let signed =
                    buf[..seen].starts_with(V1_PREFIX) || buf[..seen].starts_with(&V2_SIGNATURE);
                if signed {
                    // Every byte of an incomplete header belongs to it: take them, so
                    // readiness means new bytes.
                    take(fd, stream, &mut buf[taken..seen]).await?;
                    taken = seen;
                } else {
                    monoio::time::sleep(AMBIGUOUS_RETRY).await;
                }
            }
        }
    }
}

/// Consumes exactly `into.len()` bytes already seen with a peek.
async fn take(fd: i32, stream: &TcpStream, into: &mut [u8]) -> Result<(), Error> {
    let mut at = 0;
    while at < into.len() {
        match sys::recv(fd, &mut into[at..]) {
            Ok(0) => {
                return Err(Error::new(
                    Side::Client,
                    Kind::Closed,
                    "closed inside a PROXY header",
                ))
            }
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => stream
                .readable(false)
                .await
                .map_err(|e| Error::from_io(Side::Client, &e))?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::from_io(Side::Client, &e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(source: &str, destination: &str) -> Option<ProxyAddresses> {
        Some(ProxyAddresses {
            source: source.parse().unwrap(),
            destination: destination.parse().unwrap(),
        })
    }

    fn header(bytes: &[u8]) -> (ProxyHeader, usize) {
        match parse(bytes) {
            Ok(Parsed::Header(h, n)) => (h, n),
            other => panic!("{other:?} for {bytes:?}"),
        }
    }

    #[test]
    fn v1_tcp4_tcp6_unknown() {
        let line = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\nGET / HTTP/1.1\r\n";
        let (h, n) = header(line);
        assert_eq!(n, 41);
        assert_eq!(&line[n..n + 3], b"GET");
        assert_eq!(h.version, 1);
        assert_eq!(h.addresses, addrs("192.0.2.7:56324", "10.0.0.1:443"));

        let (h, n) = header(b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n");
        assert_eq!(n, 36);
        assert_eq!(h.addresses, addrs("[2001:db8::1]:65535", "[::1]:0"));

        for unknown in [
            &b"PROXY UNKNOWN\r\n"[..],
            b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n",
        ] {
            let (h, n) = header(unknown);
            assert_eq!((h.addresses, n), (None, unknown.len()));
        }
    }

    #[test]
    fn v1_longest_line_fits_and_one_more_does_not() {
        let src = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let line = format!("PROXY TCP6 {src} {src} 65535 65535\r\n");
        assert_eq!(header(line.as_bytes()).1, 104);
        // The protocol's bound is this line: UNKNOWN with the longest addresses.
        let line = format!("PROXY UNKNOWN {src} {src} 65535 65535\r\n");
        assert_eq!(line.len(), V1_BYTES_MAX);
        assert_eq!(header(line.as_bytes()).1, V1_BYTES_MAX);
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(V1_BYTES_MAX, b'x');
        assert_eq!(parse(&long), Err(ProxyError::V1TooLong));
        long.truncate(V1_BYTES_MAX - 1);
        long.extend_from_slice(b"\r\n");
        assert_eq!(parse(&long), Err(ProxyError::V1TooLong));
        // One byte short of the bound with no CRLF yet: still waiting.
        assert_eq!(parse(&long[..V1_BYTES_MAX - 1]), Ok(Parsed::Incomplete));
    }

    #[test]
    fn v1_malformed() {
        for bad in [
            &b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\n"[..],
            b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\rX",
            b"PROXY TCP4 192.0.2.7  10.0.0.1 56324 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 56324\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443 1\r\n",
            b"PROXY TCP4 ::1 10.0.0.1 1 2\r\n",
            b"PROXY TCP6 10.0.0.1 ::1 1 2\r\n",
            b"PROXY TCP4 192.0.2.007 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 +1 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 01 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1  2\r\n",
            b"PROXY UDP4 192.0.2.7 10.0.0.1 1 2\r\n",
            b"PROXY UNKNOWNX\r\n",
            b"PROXY tcp4 192.0.2.7 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2\xff\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(ProxyError::V1Malformed(_))),
                "{:?}: {:?}",
                String::from_utf8_lossy(bad),
                parse(bad)
            );
        }
    }

    #[test]
    fn not_proxy_and_prefixes() {
        assert_eq!(parse(b""), Ok(Parsed::Incomplete));
        assert_eq!(parse(b"PRO"), Ok(Parsed::Incomplete));
        assert_eq!(parse(b"\r\n\r\n\0"), Ok(Parsed::Incomplete));
        assert_eq!(parse(b"PROPFIND / HTTP/1.1\r\n"), Ok(Parsed::NotProxy));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Ok(Parsed::NotProxy));
        assert_eq!(parse(b"\x16\x03\x01\x02\x00"), Ok(Parsed::NotProxy));
        assert_eq!(parse(b"PROXY"), Ok(Parsed::Incomplete));
        assert_eq!(parse(b"PROXYX"), Ok(Parsed::NotProxy));
        // Every proper prefix of a header is incomplete, never an error.
        let v1 = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\n";
        let v2 = encode_v2(
            "192.0.2.7:1".parse().unwrap(),
            "10.0.0.1:2".parse().unwrap(),
        );
        for whole in [&v1[..], &v2[..]] {
            for cut in 0..whole.len() {
                assert_eq!(parse(&whole[..cut]), Ok(Parsed::Incomplete), "cut {cut}");
            }
        }
    }

    #[test]
    fn v2_round_trips_and_stops_at_its_end() {
        let cases = [
            (
                "192.0.2.7:56324",
                "10.0.0.1:443",
                "192.0.2.7:56324",
                "10.0.0.1:443",
            ),
            ("[2001:db8::1]:1", "[::1]:2", "[2001:db8::1]:1", "[::1]:2"),
            ("192.0.2.7:1", "[::1]:2", "[::ffff:192.0.2.7]:1", "[::1]:2"),
        ];
        for (s, d, want_s, want_d) in cases {
            let mut bytes = encode_v2(s.parse().unwrap(), d.parse().unwrap());
            let len = bytes.len();
            bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
            let (h, n) = header(&bytes);
            assert_eq!((h.version, n), (2, len));
            assert_eq!(h.addresses, addrs(want_s, want_d));
        }
        let (h, n) = header(&encode_v2_local());
        assert_eq!((h.addresses, n), (None, 16));
    }

    /// A v2 header with the given command/family bytes and payload.
    fn v2(ver_cmd: u8, family: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.extend_from_slice(&[ver_cmd, family]);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn v2_tlvs_are_skipped_and_checked() {
        let mut payload = vec![192, 0, 2, 7, 10, 0, 0, 1, 0, 80, 1, 187];
        payload.extend_from_slice(&[0x04, 0x00, 0x00]); // a NOOP TLV, empty
        payload.extend_from_slice(&[0xea, 0x00, 0x03, b'v', b'p', b'c']); // AWS VPC id
        let bytes = v2(0x21, 0x11, &payload);
        let (h, n) = header(&bytes);
        assert_eq!(n, bytes.len());
        assert_eq!(h.addresses, addrs("192.0.2.7:80", "10.0.0.1:443"));

        let mut overrun = payload.clone();
        overrun.extend_from_slice(&[0x04, 0x00, 0x09, 1]);
        assert_eq!(parse(&v2(0x21, 0x11, &overrun)), Err(ProxyError::V2Tlv));
        let mut stub = payload;
        stub.extend_from_slice(&[0x04, 0x00]);
        assert_eq!(parse(&v2(0x21, 0x11, &stub)), Err(ProxyError::V2Tlv));
    }

    #[test]
    fn v2_malformed_and_oversized() {
        let inet = [192, 0, 2, 7, 10, 0, 0, 1, 0, 80, 1, 187];
        assert_eq!(parse(&v2(0x11, 0x11, &inet)), Err(ProxyError::V2Version(1)));
        assert_eq!(parse(&v2(0x22, 0x11, &inet)), Err(ProxyError::V2Command(2)));
        assert_eq!(
            parse(&v2(0x21, 0x41, &inet)),
            Err(ProxyError::V2Family(0x41))
        );
        assert_eq!(
            parse(&v2(0x21, 0x13, &inet)),
            Err(ProxyError::V2Family(0x13))
        );
        assert_eq!(
            parse(&v2(0x21, 0x11, &inet[..11])),
            Err(ProxyError::V2Short)
        );
        assert_eq!(parse(&v2(0x21, 0x21, &inet)), Err(ProxyError::V2Short));
        let big = vec![0u8; V2_PAYLOAD_BYTES_MAX + 1];
        assert_eq!(
            parse(&v2(0x21, 0x00, &big)),
            Err(ProxyError::V2TooLong(V2_PAYLOAD_BYTES_MAX + 1))
        );
        // The length alone decides, before the payload arrives.
        assert_eq!(
            parse(&v2(0x21, 0x00, &big)[..16]),
            Err(ProxyError::V2TooLong(V2_PAYLOAD_BYTES_MAX + 1))
        );
        let most = vec![0u8; V2_PAYLOAD_BYTES_MAX];
        // UNSPEC with TLV bytes of zeros: type 0, length 0, repeated, which is well framed
        // only when the payload is a multiple of three.
        let framed = &most[..V2_PAYLOAD_BYTES_MAX - V2_PAYLOAD_BYTES_MAX % 3];
        assert_eq!(header(&v2(0x21, 0x00, framed)).1, 16 + framed.len());
        // UDP, Unix and LOCAL: addresses ignored.
        assert_eq!(header(&v2(0x21, 0x12, &inet)).0.addresses, None);
        assert_eq!(header(&v2(0x20, 0x11, &inet)).0.addresses, None);
        assert_eq!(header(&v2(0x21, 0x31, &[0; 216])).0.addresses, None);
    }

    #[test]
    fn read_header_takes_only_the_header() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // (bytes sent, required, addresses read or the error's kind)
        type Want = Result<Option<Option<ProxyAddresses>>, Kind>;
        let cases: Vec<(Vec<u8>, bool, Want)> = vec![
            (
                b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\nGET /".to_vec(),
                true,
                Ok(Some(addrs("192.0.2.7:56324", "10.0.0.1:443"))),
            ),
            (
                [
                    encode_v2("[::1]:5".parse().unwrap(), "[::2]:6".parse().unwrap()),
                    b"GET /".to_vec(),
                ]
                .concat(),
                true,
                Ok(Some(addrs("[::1]:5", "[::2]:6"))),
            ),
            (b"GET / HTTP/1.1\r\n".to_vec(), false, Ok(None)),
            (b"GET / HTTP/1.1\r\n".to_vec(), true, Err(Kind::Protocol)),
            (
                b"PROXY TCP4 x\r\nGET /".to_vec(),
                false,
                Err(Kind::Protocol),
            ),
            (b"PROXY TCP4 192.0.2.7".to_vec(), false, Err(Kind::Timeout)),
        ];
        for (sent, required, want) in cases {
            let mut client = std::net::TcpStream::connect(addr).unwrap();
            let (server, _) = listener.accept().unwrap();
            server.set_nonblocking(true).unwrap();
            // Sent in two writes with a pause, so the reader sees a partial header first.
            let half = sent.len() / 2;
            client.write_all(&sent[..half]).unwrap();
            let rest = sent[half..].to_vec();
            let writer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                client.write_all(&rest).unwrap();
                client
            });
            let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()
                .unwrap();
            let (got, rest) = rt.block_on(async move {
                let stream = TcpStream::from_std(server).unwrap();
                let deadline = Instant::now() + Duration::from_millis(300);
                let got = read_header(&stream, deadline, required).await;
                // What is left in the socket: read it all (the writer is done by then).
                monoio::time::sleep(Duration::from_millis(40)).await;
                let mut rest = vec![0u8; 256];
                let n = sys::recv(stream.as_raw_fd(), &mut rest).unwrap_or(0);
                rest.truncate(n);
                (got, rest)
            });
            let _client = writer.join().unwrap();
            match (&got, &want) {
                (Ok(h), Ok(w)) => assert_eq!(h.map(|h| h.addresses), *w),
                (Err(e), Err(k)) => assert_eq!(e.kind, *k, "{e}"),
                _ => panic!("{got:?} vs {want:?}"),
            }
            // A header is taken whole and nothing after it; no header, nothing taken.
            match want {
                Ok(Some(_)) => assert_eq!(rest, b"GET /"),
                Ok(None) => assert_eq!(rest, sent),
                Err(_) => {}
            }
        }
    }
}
