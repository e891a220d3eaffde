//! Client addresses behind proxies (docs/client-address.md): the `[[client_address]]`
//! blocks (which listeners believe which upstream proxies, by PROXY header or forwarding
//! header) and each pool's `send_client_address` (what weir tells the nodes).

use std::net::SocketAddr;

use serde::Deserialize;

use super::check::{limit_len, socket_addr};
use super::error::{Invalid, KeyPath};
use super::Pool;
use crate::forwarded::{ClientTrust, ProxyProtocol, SendClientAddress, TrustedHeader};
use crate::route::Cidr;

/// Most trusted blocks per `[[client_address]]` (each is compared per connection).
const TRUSTED_PROXIES_MAX: usize = 256;
/// Most `[[client_address]]` blocks (at most one per listener anyway).
const BLOCKS_MAX: usize = 128;

/// One `[[client_address]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClientAddress {
    pub(crate) listen: Vec<String>,
    pub(crate) trusted_proxies: Vec<String>,
    pub(crate) proxy_protocol: Option<String>,
    pub(crate) header: Option<String>,
}

/// One validated `[[client_address]]`: the listeners it covers and what they believe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTrust {
    /// Addresses of `appliance.listen` or `tls.listen` this block applies to.
    pub listen: Vec<SocketAddr>,
    /// Whom they believe, and how.
    pub trust: ClientTrust,
}

/// Validates the blocks; `listeners` are every client listen address (plain and TLS).
pub(crate) fn client_address(
    path: &KeyPath,
    raw: Vec<RawClientAddress>,
    listeners: &[SocketAddr],
) -> Result<Vec<ListenerTrust>, Invalid> {
    limit_len(path, raw.len(), BLOCKS_MAX)?;
    let mut blocks: Vec<ListenerTrust> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let block = path.index(i);
        let listen_path = block.key("listen");
        if r.listen.is_empty() {
            return Err(Invalid::new(
                &listen_path,
                "at least one listen address is required",
            ));
        }
        let mut listen: Vec<SocketAddr> = Vec::with_capacity(r.listen.len());
        for (j, text) in r.listen.iter().enumerate() {
            let item = listen_path.index(j);
            let addr = socket_addr(&item, text)?;
            if !listeners.contains(&addr) {
                return Err(Invalid::new(
                    &item,
                    format!("{addr} is not in appliance.listen or tls.listen"),
                ));
            }
            let earlier = blocks.iter().position(|b| b.listen.contains(&addr));
            if let Some(first) = earlier.or(listen.contains(&addr).then_some(i)) {
                return Err(Invalid::new(
                    &item,
                    format!("{addr} is already in client_address[{first}]; a listener has one"),
                ));
            }
            listen.push(addr);
        }
        let cidr_path = block.key("trusted_proxies");
        if r.trusted_proxies.is_empty() {
            return Err(Invalid::new(
                &cidr_path,
                "at least one block is required (whose PROXY or forwarding headers to believe)",
            ));
        }
        limit_len(&cidr_path, r.trusted_proxies.len(), TRUSTED_PROXIES_MAX)?;
        let mut trusted_proxies: Vec<Cidr> = Vec::with_capacity(r.trusted_proxies.len());
        for (j, text) in r.trusted_proxies.iter().enumerate() {
            let item = cidr_path.index(j);
            let cidr: Cidr = text
                .parse()
                .map_err(|e| Invalid::new(&item, format!("{text:?}: {e}")))?;
            if let Some(first) = trusted_proxies.iter().position(|c| *c == cidr) {
                return Err(Invalid::new(
                    &item,
                    format!("duplicate block {cidr} (also trusted_proxies[{first}])"),
                ));
            }
            trusted_proxies.push(cidr);
        }
        let proxy_protocol = match r.proxy_protocol.as_deref() {
            None | Some("off") => ProxyProtocol::Off,
            Some("optional") => ProxyProtocol::Optional,
            Some("required") => ProxyProtocol::Required,
            Some(other) => {
                return Err(Invalid::new(
                    &block.key("proxy_protocol"),
                    format!("{other:?} is none of \"off\", \"optional\", \"required\""),
                ))
            }
        };
        let header = match r.header.as_deref() {
            None | Some("none") => TrustedHeader::None,
            Some("x-forwarded-for") => TrustedHeader::XForwardedFor,
            Some("forwarded") => TrustedHeader::Forwarded,
            Some(other) => {
                return Err(Invalid::new(
                    &block.key("header"),
                    format!("{other:?} is none of \"none\", \"x-forwarded-for\", \"forwarded\""),
                ))
            }
        };
        if proxy_protocol == ProxyProtocol::Off && header == TrustedHeader::None {
            return Err(Invalid::new(
                &block,
                "believes nothing: set proxy_protocol or header (or remove the block)",
            ));
        }
        blocks.push(ListenerTrust {
            listen,
            trust: ClientTrust {
                trusted_proxies,
                proxy_protocol,
                header,
            },
        });
    }
    Ok(blocks)
}

/// A pool's `send_client_address`.
pub(crate) fn send_client_address(
    path: &KeyPath,
    raw: Option<String>,
) -> Result<SendClientAddress, Invalid> {
    match raw {
        None => Ok(SendClientAddress::None),
        Some(text) => SendClientAddress::from_name(&text).ok_or_else(|| {
            Invalid::new(
                path,
                format!(
                    "{text:?} is none of \"none\", \"x-forwarded-for\", \
                     \"x-forwarded-for-append\", \"forwarded\", \"proxy-v2\""
                ),
            )
        }),
    }
}

/// A node either expects a PROXY header on every connection or on none, so every pool
/// listing it must agree on `proxy-v2` (idle connections are pooled by node address).
pub(crate) fn proxy_v2_agrees(path: &KeyPath, pools: &[Pool]) -> Result<(), Invalid> {
    let v2 = |p: &Pool| p.send_client_address == SendClientAddress::ProxyV2;
    for (i, pool) in pools.iter().enumerate() {
        for earlier in &pools[..i] {
            if v2(earlier) == v2(pool) {
                continue;
            }
            if let Some(node) = pool.nodes.iter().find(|n| earlier.nodes.contains(n)) {
                return Err(Invalid::new(
                    &path.index(i).key("send_client_address"),
                    format!(
                        "node {node} is also in pool {:?}, which {} PROXY headers; a node gets them on every connection or on none",
                        earlier.name,
                        if v2(earlier) { "sends" } else { "does not send" }
                    ),
                ));
            }
        }
    }
    Ok(())
}
