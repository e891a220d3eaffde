//! `[dns]`: how the appliance resolves the storage nodes given by name (docs/config.md,
//! "DNS"): which servers it asks, and the floor and ceiling put on the answers' TTLs.
//! Literal IP nodes never touch DNS.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use serde::Deserialize;

use super::check::limit_len;
use super::error::{Invalid, KeyPath};
use super::units::{format_duration, ConfigDuration};

/// Most name servers (asked in turn; beyond a handful they only slow a failing lookup).
const NAMESERVERS_MAX: usize = 8;
/// TTL floor and ceiling bounds: under a second is a query storm against the servers,
/// over a day pins a moved node for a day.
const TTL: RangeInclusive<Duration> = Duration::from_secs(1)..=Duration::from_secs(86_400);
/// Per-query deadline: a server slower than 30 s is down.
const TIMEOUT: RangeInclusive<Duration> = Duration::from_millis(100)..=Duration::from_secs(30);

/// `[dns]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDns {
    pub(crate) nameservers: Option<Vec<String>>,
    pub(crate) ttl_min: Option<ConfigDuration>,
    pub(crate) ttl_max: Option<ConfigDuration>,
    pub(crate) timeout: Option<ConfigDuration>,
}

/// `[dns]`: resolution of node names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    /// Servers asked, in order; empty = those of the system's `/etc/resolv.conf`.
    pub nameservers: Vec<SocketAddr>,
    /// An answer is kept at least this long, whatever its TTL (and a name is not asked
    /// again sooner).
    pub ttl_min: Duration,
    /// An answer is kept at most this long, whatever its TTL.
    pub ttl_max: Duration,
    /// Deadline of one query to one server.
    pub timeout: Duration,
}

impl Default for Dns {
    fn default() -> Self {
        Dns {
            nameservers: Vec::new(),
            ttl_min: Duration::from_secs(5),
            ttl_max: Duration::from_secs(300),
            timeout: Duration::from_secs(2),
        }
    }
}

impl Dns {
    /// How long an answer with `ttl` is kept: the TTL within `[ttl_min, ttl_max]`.
    pub fn clamp_ttl(&self, ttl: Duration) -> Duration {
        ttl.clamp(self.ttl_min, self.ttl_max)
    }
}

/// Validates `[dns]` at `path`.
pub(crate) fn dns(path: &KeyPath, raw: RawDns) -> Result<Dns, Invalid> {
    let default = Dns::default();
    let within = |key: &str,
                  raw: Option<ConfigDuration>,
                  default: Duration,
                  bounds: &RangeInclusive<Duration>| {
        let value = raw.map_or(default, |ConfigDuration(d)| d);
        if bounds.contains(&value) {
            Ok(value)
        } else {
            Err(Invalid::new(
                &path.key(key),
                format!(
                    "{} is not within {}..={}",
                    format_duration(value),
                    format_duration(*bounds.start()),
                    format_duration(*bounds.end())
                ),
            ))
        }
    };
    let ttl_min = within("ttl_min", raw.ttl_min, default.ttl_min, &TTL)?;
    let ttl_max = within("ttl_max", raw.ttl_max, default.ttl_max.max(ttl_min), &TTL)?;
    if ttl_max < ttl_min {
        return Err(Invalid::new(
            &path.key("ttl_max"),
            format!(
                "{} is below ttl_min ({})",
                format_duration(ttl_max),
                format_duration(ttl_min)
            ),
        ));
    }
    let timeout = within("timeout", raw.timeout, default.timeout, &TIMEOUT)?;
    let texts = raw.nameservers.unwrap_or_default();
    let list = path.key("nameservers");
    limit_len(&list, texts.len(), NAMESERVERS_MAX)?;
    let mut nameservers: Vec<SocketAddr> = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        let item = list.index(i);
        let addr = nameserver(text).ok_or_else(|| {
            Invalid::new(
                &item,
                format!("{text:?} is not ip or ip:port (e.g. \"10.0.0.2\" or \"[::1]:5353\")"),
            )
        })?;
        if let Some(first) = nameservers.iter().position(|a| *a == addr) {
            return Err(Invalid::new(
                &item,
                format!("duplicate name server {addr} (also nameservers[{first}])"),
            ));
        }
        nameservers.push(addr);
    }
    Ok(Dns {
        nameservers,
        ttl_min,
        ttl_max,
        timeout,
    })
}

/// `ip`, `ip:port` or `[ipv6]:port`; port 53 when none is given, never 0.
fn nameserver(text: &str) -> Option<SocketAddr> {
    let addr = match text.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, 53),
        Err(_) => text.parse::<SocketAddr>().ok()?,
    };
    (addr.port() != 0).then_some(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The failure as the file's error would read it: `key: message`.
    fn said(e: Invalid) -> String {
        format!("{}: {}", e.path, e.message)
    }

    fn raw(nameservers: &[&str]) -> RawDns {
        RawDns {
            nameservers: Some(nameservers.iter().map(|s| s.to_string()).collect()),
            ..RawDns::default()
        }
    }

    #[test]
    fn defaults_and_nameservers() {
        let path = KeyPath::root().key("dns");
        let d = dns(&path, RawDns::default()).unwrap();
        assert_eq!(d, Dns::default());
        let d = dns(&path, raw(&["10.0.0.2", "127.0.0.1:5353", "[::1]:53"])).unwrap();
        assert_eq!(
            d.nameservers,
            vec![
                "10.0.0.2:53".parse().unwrap(),
                "127.0.0.1:5353".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        for bad in ["ns1.example.com", "10.0.0.2:0", "10.0.0.2:x"] {
            let e = dns(&path, raw(&[bad])).map_err(said).unwrap_err();
            assert!(e.contains("nameservers[0]"), "{bad}: {e}");
        }
        let e = dns(&path, raw(&["10.0.0.2", "10.0.0.2:53"]))
            .map_err(said)
            .unwrap_err();
        assert!(e.contains("duplicate"), "{e}");
    }

    #[test]
    fn ttl_bounds() {
        let path = KeyPath::root().key("dns");
        let with = |min: u64, max: u64| RawDns {
            ttl_min: Some(ConfigDuration(Duration::from_secs(min))),
            ttl_max: Some(ConfigDuration(Duration::from_secs(max))),
            ..RawDns::default()
        };
        let d = dns(&path, with(2, 60)).unwrap();
        assert_eq!(d.clamp_ttl(Duration::ZERO), Duration::from_secs(2));
        assert_eq!(
            d.clamp_ttl(Duration::from_secs(30)),
            Duration::from_secs(30)
        );
        assert_eq!(
            d.clamp_ttl(Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
        assert!(dns(&path, with(0, 60))
            .map_err(said)
            .unwrap_err()
            .contains("ttl_min"));
        assert!(dns(&path, with(10, 5))
            .map_err(said)
            .unwrap_err()
            .contains("ttl_max"));
        // A floor above the default ceiling raises the ceiling with it.
        let only_min = RawDns {
            ttl_min: Some(ConfigDuration(Duration::from_secs(600))),
            ..RawDns::default()
        };
        assert_eq!(
            dns(&path, only_min).unwrap().ttl_max,
            Duration::from_secs(600)
        );
    }
}
