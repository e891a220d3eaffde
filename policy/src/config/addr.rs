//! Storage node addresses: `host:port` where host is IPv4, `[IPv6]` or a DNS name.
//!
//! Only the syntax is checked here; resolving names is I/O and belongs to the appliance.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::dns;

/// A storage node's address as configured, normalised so that equal nodes compare equal:
/// DNS names are lower-cased and IPv6 addresses are in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeAddr {
    /// IPv4 literal, IPv6 literal *without* brackets (so `(host, port)` resolves as is), or
    /// a lower-case DNS name.
    pub host: String,
    /// TCP port, never 0.
    pub port: u16,
}

/// Why a node address was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeAddrError {
    /// No `:port` after the host.
    #[error("missing :port")]
    MissingPort,
    /// The port is not a number in 1..=65535.
    #[error("port {0:?} is not in 1..=65535")]
    BadPort(String),
    /// A bracketed host that is not an IPv6 address, or a missing `]`.
    #[error("bad [IPv6] address")]
    BadIpv6,
    /// An IPv6 address written without brackets, which makes the port ambiguous.
    #[error("IPv6 addresses need brackets, e.g. [::1]:9000")]
    UnbracketedIpv6,
    /// Looks like an IPv4 address but is not one, or not a valid DNS name either.
    #[error("{0:?} is neither an IPv4 address nor a DNS name")]
    BadHost(String),
}

impl NodeAddr {
    /// The host as an IP address, when it is a literal (no resolution needed).
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl FromStr for NodeAddr {
    type Err = NodeAddrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (v6, after) = rest.split_once(']').ok_or(NodeAddrError::BadIpv6)?;
            let ip: Ipv6Addr = v6.parse().map_err(|_| NodeAddrError::BadIpv6)?;
            let port = after.strip_prefix(':').ok_or(NodeAddrError::MissingPort)?;
            (ip.to_string(), port)
        } else {
            let (host, port) = text.rsplit_once(':').ok_or(NodeAddrError::MissingPort)?;
            if host.contains(':') {
                return Err(NodeAddrError::UnbracketedIpv6);
            }
            let host = if let Ok(ip) = host.parse::<Ipv4Addr>() {
                ip.to_string()
            } else if dns::is_host_name(host) {
                host.to_ascii_lowercase()
            } else {
                return Err(NodeAddrError::BadHost(host.to_owned()));
            };
            (host, port)
        };
        Ok(Self {
            host,
            port: parse_port(port)?,
        })
    }
}

/// Parses a decimal port in 1..=65535; digits only (no sign, no spaces), because
/// `u16::from_str` alone would accept `+80`.
fn parse_port(text: &str) -> Result<u16, NodeAddrError> {
    let bad = || NodeAddrError::BadPort(text.to_owned());
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(port) => Ok(port),
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> NodeAddr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_and_normalises() {
        assert_eq!(ok("10.0.0.1:9000").host, "10.0.0.1");
        assert_eq!(ok("10.0.0.1:9000").port, 9000);
        assert_eq!(ok("[::1]:9000").host, "::1");
        assert_eq!(ok("[0:0::0001]:9000"), ok("[::1]:9000"));
        assert_eq!(ok("Node-1.Example.COM:80").host, "node-1.example.com");
        assert_eq!(ok("localhost:65535").port, 65535);
    }

    #[test]
    fn displays_as_host_port() {
        for text in ["10.0.0.1:9000", "[::1]:9000", "s3.example.com:443"] {
            assert_eq!(ok(text).to_string(), text);
        }
        assert_eq!(ok("[::1]:1").ip(), Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(ok("a.b:1").ip(), None);
    }

    #[test]
    fn rejects() {
        let cases: [(&str, NodeAddrError); 10] = [
            ("10.0.0.1", NodeAddrError::MissingPort),
            ("10.0.0.1:", NodeAddrError::BadPort(String::new())),
            ("10.0.0.1:0", NodeAddrError::BadPort("0".into())),
            ("10.0.0.1:65536", NodeAddrError::BadPort("65536".into())),
            ("10.0.0.1:+80", NodeAddrError::BadPort("+80".into())),
            ("::1:9000", NodeAddrError::UnbracketedIpv6),
            ("[::1]9000", NodeAddrError::MissingPort),
            ("[::g]:9000", NodeAddrError::BadIpv6),
            ("10.0.0.256:80", NodeAddrError::BadHost("10.0.0.256".into())),
            ("bad_name:80", NodeAddrError::BadHost("bad_name".into())),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<NodeAddr>(), Err(want), "{text}");
        }
    }
}
