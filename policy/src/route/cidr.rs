//! Client address blocks for `[[rule]] client_cidr`: `10.0.0.0/8`, `fd00::/8`, or a bare
//! address (a block of one).
//!
//! Client addresses are compared in canonical form, so an IPv4 client reaching a
//! dual-stack listener as `::ffff:10.1.2.3` still matches `10.0.0.0/8`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A validated address block: the address has no bits set beyond the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix_len: u8,
}

/// Why a CIDR block was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The part before `/` is not an IPv4 or IPv6 address.
    #[error("{0:?} is not an IP address")]
    BadAddress(String),
    /// The prefix length is not a number within the address family's width (96..=128
    /// for an IPv4-mapped IPv6 block, which is an IPv4 block in disguise).
    #[error("prefix length {0:?} is not in {1}..={2}")]
    BadPrefix(String, u8, u8),
    /// Bits are set after the prefix: almost always a typo (`10.0.0.1/8`).
    #[error("address has bits set beyond /{prefix_len}; did you mean {network}/{prefix_len}?")]
    HostBits {
        /// The block's network address, which was probably meant.
        network: IpAddr,
        /// The prefix length as written.
        prefix_len: u8,
    },
}

impl Cidr {
    /// Whether `ip` (in any form, see the module docs) lies in this block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask_v4(u32::from(ip), self.prefix_len) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask_v6(u128::from(ip), self.prefix_len) == u128::from(net)
            }
            _ => false,
        }
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }
}

/// Keeps the first `len` bits of an IPv4 address.
fn mask_v4(bits: u32, len: u8) -> u32 {
    match len {
        0 => 0,
        1..=31 => bits & (u32::MAX << (32 - len)),
        _ => bits,
    }
}

/// Keeps the first `len` bits of an IPv6 address.
fn mask_v6(bits: u128, len: u8) -> u128 {
    match len {
        0 => 0,
        1..=127 => bits & (u128::MAX << (128 - len)),
        _ => bits,
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let parsed: IpAddr = addr_text
            .parse()
            .map_err(|_| CidrError::BadAddress(addr_text.to_owned()))?;
        // An IPv4-mapped block is an IPv4 block: clients are compared canonically. Its
        // prefix counts the 96 mapping bits, which the IPv4 block does not have.
        let (addr, offset) = match parsed {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), 96),
                None => (parsed, 0),
            },
            IpAddr::V4(_) => (parsed, 0),
        };
        let width: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix_text {
            None => width,
            Some(p) => {
                let bad = || CidrError::BadPrefix(p.to_owned(), offset, width + offset);
                // Digits only: `u8::from_str` would accept `+8`.
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                let len: u8 = p.parse().map_err(|_| bad())?;
                if !(offset..=width + offset).contains(&len) {
                    return Err(bad());
                }
                len - offset
            }
        };
        let network = match addr {
            IpAddr::V4(v4) => IpAddr::from(mask_v4(u32::from(v4), prefix_len).to_be_bytes()),
            IpAddr::V6(v6) => IpAddr::from(mask_v6(u128::from(v6), prefix_len).to_be_bytes()),
        };
        if network != addr {
            return Err(CidrError::HostBits {
                network,
                prefix_len,
            });
        }
        Ok(Cidr { addr, prefix_len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn matching() {
        let cases = [
            ("10.0.0.0/8", "10.255.1.2", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            ("0.0.0.0/0", "192.0.2.1", true),
            ("0.0.0.0/0", "::1", false),
            ("192.0.2.7", "192.0.2.7", true),
            ("192.0.2.7", "192.0.2.8", false),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            ("::/0", "::1", true),
            ("::ffff:10.0.0.0/104", "10.9.9.9", true),
        ];
        for (block, addr, want) in cases {
            assert_eq!(cidr(block).contains(ip(addr)), want, "{block} vs {addr}");
        }
    }

    #[test]
    fn rejections() {
        assert_eq!(
            "10.0.0/8".parse::<Cidr>(),
            Err(CidrError::BadAddress("10.0.0".into()))
        );
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::BadPrefix("33".into(), 0, 32))
        );
        assert_eq!(
            "10.0.0.0/+8".parse::<Cidr>(),
            Err(CidrError::BadPrefix("+8".into(), 0, 32))
        );
        assert_eq!(
            "10.0.0.0/".parse::<Cidr>(),
            Err(CidrError::BadPrefix(String::new(), 0, 32))
        );
        assert_eq!(
            "::/129".parse::<Cidr>(),
            Err(CidrError::BadPrefix("129".into(), 0, 128))
        );
        assert_eq!(
            "::ffff:0.0.0.0/64".parse::<Cidr>(),
            Err(CidrError::BadPrefix("64".into(), 96, 128))
        );
        let e = "10.0.0.1/8".parse::<Cidr>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "address has bits set beyond /8; did you mean 10.0.0.0/8?"
        );
    }

    #[test]
    fn displays_canonically() {
        assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("fd00:0::/8").to_string(), "fd00::/8");
        assert_eq!(cidr("::ffff:10.0.0.1").to_string(), "10.0.0.1/32");
    }

    proptest! {
        #[test]
        fn a_block_contains_exactly_its_prefix(a in any::<u32>(), b in any::<u32>(), len in 0u8..=32) {
            let net = IpAddr::from(mask_v4(a, len).to_be_bytes());
            let block: Cidr = format!("{net}/{len}").parse().unwrap();
            let same = mask_v4(a, len) == mask_v4(b, len);
            prop_assert_eq!(block.contains(IpAddr::from(b.to_be_bytes())), same);
        }

        #[test]
        fn parsing_never_panics(text in "\\PC{0,40}") {
            let _ = text.parse::<Cidr>();
        }
    }
}
