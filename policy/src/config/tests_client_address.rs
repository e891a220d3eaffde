//! `[[client_address]]` and `send_client_address`: acceptance, and one rejection per rule
//! with the file, line and key an operator is pointed at.

use super::*;
use crate::forwarded::{ProxyProtocol, SendClientAddress, TrustedHeader};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "t.toml")
}

const HEAD: &str = "[appliance]\nlisten = [\"0.0.0.0:9000\", \"[::]:9001\"]\n";
const POOL: &str = "\n[[pool]]\nname = \"p\"\nnodes = [\"127.0.0.1:9101\"]\n";

#[track_caller]
fn rejects(fragment: &str, line: usize, key: &str, needle: &str) {
    let text = format!("{HEAD}{fragment}{POOL}");
    let e = match parse(&text) {
        Ok(c) => panic!("accepted {text:?} as {:?}", c.client_address),
        Err(e) => e,
    };
    assert_eq!(e.origin, "t.toml");
    assert_eq!((e.line, e.key.as_str()), (Some(line), key), "{e}");
    assert!(
        e.message.contains(needle),
        "{e:?} should mention {needle:?}"
    );
}

#[test]
fn accepts_blocks_and_pool_modes() {
    let text = format!(
        "{HEAD}[[client_address]]\nlisten = [\"0.0.0.0:9000\"]\n\
         trusted_proxies = [\"10.0.0.0/8\", \"fd00::/8\", \"192.0.2.1\"]\n\
         proxy_protocol = \"required\"\nheader = \"x-forwarded-for\"\n\
         [[client_address]]\nlisten = [\"[::]:9001\"]\ntrusted_proxies = [\"10.1.0.0/16\"]\n\
         header = \"forwarded\"\n\
         [[pool]]\nname = \"a\"\nnodes = [\"127.0.0.1:1\"]\nsend_client_address = \"proxy-v2\"\n\
         [[pool]]\nname = \"b\"\nnodes = [\"127.0.0.1:2\"]\nsend_client_address = \"x-forwarded-for-append\"\n\
         [[pool]]\nname = \"c\"\nnodes = [\"127.0.0.1:3\"]\n"
    );
    let c = parse(&text).unwrap();
    let t = c.client_trust("0.0.0.0:9000".parse().unwrap()).unwrap();
    assert_eq!(t.proxy_protocol, ProxyProtocol::Required);
    assert_eq!(t.header, TrustedHeader::XForwardedFor);
    assert_eq!(t.trusted_proxies.len(), 3);
    assert!(t.trusts("::ffff:10.2.3.4".parse().unwrap()));
    assert!(!t.trusts("192.0.2.2".parse().unwrap()));
    let t = c.client_trust("[::]:9001".parse().unwrap()).unwrap();
    assert_eq!(
        (t.proxy_protocol, t.header),
        (ProxyProtocol::Off, TrustedHeader::Forwarded)
    );
    assert_eq!(c.client_trust("127.0.0.1:9000".parse().unwrap()), None);
    let modes: Vec<_> = c.pools.iter().map(|p| p.send_client_address).collect();
    assert_eq!(
        modes,
        [
            SendClientAddress::ProxyV2,
            SendClientAddress::XffAppend,
            SendClientAddress::None
        ]
    );
    // Nothing configured: nothing believed, nothing sent.
    let c = parse(&format!("{HEAD}{POOL}")).unwrap();
    assert!(c.client_address.is_empty());
    assert_eq!(c.pools[0].send_client_address, SendClientAddress::None);
}

#[test]
fn tls_listeners_may_have_a_block() {
    let dir = std::env::temp_dir();
    let pem = dir.join("weir-client-address-test.pem");
    let text = format!(
        "{HEAD}[tls]\nlisten = [\"0.0.0.0:9443\"]\n[[tls.certificate]]\ncert = \"{p}\"\nkey = \"{p}\"\n\
         [[client_address]]\nlisten = [\"0.0.0.0:9443\"]\ntrusted_proxies = [\"10.0.0.0/8\"]\n\
         proxy_protocol = \"optional\"\n{POOL}",
        p = pem.display()
    );
    let c = parse(&text).unwrap();
    let t = c.client_trust("0.0.0.0:9443".parse().unwrap()).unwrap();
    assert_eq!(t.proxy_protocol, ProxyProtocol::Optional);
}

#[test]
fn rejects_bad_blocks() {
    let block = |body: &str| format!("[[client_address]]\n{body}");
    rejects(
        &block("listen = [\"0.0.0.0:9002\"]\ntrusted_proxies = [\"10.0.0.0/8\"]\nheader = \"forwarded\"\n"),
        4,
        "client_address[0].listen[0]",
        "0.0.0.0:9002 is not in appliance.listen or tls.listen",
    );
    rejects(
        &block("listen = []\ntrusted_proxies = [\"10.0.0.0/8\"]\nheader = \"forwarded\"\n"),
        4,
        "client_address[0].listen",
        "at least one listen address",
    );
    rejects(
        &block("listen = [\"0.0.0.0:9000\"]\ntrusted_proxies = []\nheader = \"forwarded\"\n"),
        5,
        "client_address[0].trusted_proxies",
        "at least one block",
    );
    rejects(
        &block("listen = [\"0.0.0.0:9000\"]\ntrusted_proxies = [\"10.0.0.1/8\"]\nheader = \"forwarded\"\n"),
        5,
        "client_address[0].trusted_proxies[0]",
        "did you mean 10.0.0.0/8",
    );
    rejects(
        &block("listen = [\"0.0.0.0:9000\"]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/8\"]\nheader = \"forwarded\"\n"),
        5,
        "client_address[0].trusted_proxies[1]",
        "duplicate block 10.0.0.0/8",
    );
    rejects(
        &block("listen = [\"0.0.0.0:9000\"]\ntrusted_proxies = [\"10.0.0.0/8\"]\nproxy_protocol = \"yes\"\n"),
        6,
        "client_address[0].proxy_protocol",
        "\"yes\" is none of \"off\", \"optional\", \"required\"",
    );
    rejects(
        &block("listen = [\"0.0.0.0:9000\"]\ntrusted_proxies = [\"10.0.0.0/8\"]\nheader = \"x-real-ip\"\n"),
        6,
        "client_address[0].header",
        "\"x-real-ip\" is none of",
    );
    rejects(
        &block("listen = [\"0.0.0.0:9000\"]\ntrusted_proxies = [\"10.0.0.0/8\"]\nproxy_protocol = \"off\"\n"),
        3,
        "client_address[0]",
        "believes nothing",
    );
    rejects(
        &block("listen = [\"0.0.0.0:9000\"]\ntrusted_proxies = [\"10.0.0.0/8\"]\nheaders = \"forwarded\"\n"),
        6,
        "client_address[0].headers",
        "unknown key `headers`",
    );
    let two = block(
        "listen = [\"0.0.0.0:9000\"]\ntrusted_proxies = [\"10.0.0.0/8\"]\nheader = \"forwarded\"\n",
    );
    rejects(
        &format!("{two}{two}"),
        8,
        "client_address[1].listen[0]",
        "0.0.0.0:9000 is already in client_address[0]",
    );
    rejects(
        "[client_address]\nlisten = [\"0.0.0.0:9000\"]\n",
        3,
        "client_address",
        "expected an array of tables",
    );
}

#[test]
fn rejects_bad_pool_modes() {
    let e = parse(&format!(
        "{HEAD}[[pool]]\nname = \"p\"\nnodes = [\"h:1\"]\nsend_client_address = \"xff\"\n"
    ))
    .unwrap_err();
    assert_eq!(
        (e.line, e.key.as_str()),
        (Some(6), "pool[0].send_client_address"),
        "{e}"
    );
    assert!(e.message.contains("\"xff\" is none of"), "{e}");
    let e = parse(&format!(
        "{HEAD}[[pool]]\nname = \"a\"\nnodes = [\"h:1\"]\nsend_client_address = \"proxy-v2\"\n\
         [[pool]]\nname = \"b\"\nnodes = [\"h:1\"]\nsend_client_address = \"forwarded\"\n"
    ))
    .unwrap_err();
    assert_eq!(
        (e.line, e.key.as_str()),
        (Some(10), "pool[1].send_client_address"),
        "{e}"
    );
    assert!(
        e.message
            .contains("node h:1 is also in pool \"a\", which sends PROXY headers"),
        "{e}"
    );
}
