//! Who the client is (docs/client-address.md), with real parts: PROXY v1/v2 headers from
//! trusted and untrusted peers, spoofed and believed `X-Forwarded-For`, what the storage
//! node is told (weir-sim remembers each request's forwarding fields and its connection's
//! PROXY header), and signatures that still verify at a real node (s3s-fs checks SigV4) and
//! at weir's edge (`auth.mode = "verify"`) with real clients (awscli, boto3, curl).
//!
//! Untrusted peers are real: the test binds its client sockets to other loopback
//! addresses (127.0.0.2, 127.0.0.3), which the listener's `trusted_proxies` leave out.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use weir_bench::SimNode;
use weir_tests::clients::{self, curl_sigv4};
use weir_tests::data::Scratch;
use weir_tests::nodes::S3sFs;
use weir_tests::raw::{read_reply, RawReply, ReadUntil};
use weir_tests::sim;
use weir_tests::weir::{PoolConfig, Weir, WeirConfig};
use weir_tests::{ACCESS_KEY, SECRET_KEY};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

const WAIT: Duration = Duration::from_secs(5);

/// A TCP connection to `to` from loopback address `from`.
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let local: SocketAddr = format!("{from}:0").parse().expect("address");
    socket.bind(&local.into()).expect("bind a loopback source");
    socket
        .connect_timeout(&to.into(), WAIT)
        .unwrap_or_else(|e| panic!("connect {to} from {from}: {e}"));
    let stream: TcpStream = socket.into();
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Sends `bytes` on a connection from `from` and reads one response (or the close).
fn send_from(from: &str, to: SocketAddr, bytes: &[u8]) -> RawReply {
    let mut conn = connect_from(from, to);
    let _ = conn.write_all(bytes);
    read_reply(&mut conn, WAIT, ReadUntil::Response)
}

fn get(target: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: weir\r\n{extra}\r\n").into_bytes()
}

fn proxy_v1(client: &str, port: u16) -> Vec<u8> {
    format!("PROXY TCP4 {client} 10.0.0.1 {port} 9000\r\n").into_bytes()
}

/// A PROXY v2 header naming `source`, built by hand (the test does not trust weir's own
/// encoder to check weir's parser).
fn proxy_v2(source: SocketAddr) -> Vec<u8> {
    let IpAddr::V4(ip) = source.ip() else {
        panic!("IPv4 only here")
    };
    let mut out = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    out.extend_from_slice(&ip.octets());
    out.extend_from_slice(&[10, 0, 0, 1]);
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&9000u16.to_be_bytes());
    out
}

/// Requests a node served (not counting probes through the control API).
fn served(node: &SimNode) -> u64 {
    node.stats().requests
}

/// weir over two simulator pools: `main`, and `partner`, which a rule sends clients of
/// 192.0.2.0/24 to. `client_address` is the listener's `[[client_address]]` body.
fn two_pools(nodes: &[SimNode], client_address: &str, send: &str) -> WeirConfig {
    let pool = |name: &str, node: &SimNode| {
        sim::control_probe(
            PoolConfig::new(name, &[node.addr()])
                .key(&format!("send_client_address = \"{send}\""))
                .health("interval = \"300ms\""),
        )
    };
    let mut cfg = WeirConfig::new(&[])
        .pool(pool("main", &nodes[0]))
        .pool(pool("partner", &nodes[1]))
        .extra("[[rule]]\nclient_cidr = \"192.0.2.0/24\"\npool = \"partner\"\n");
    cfg.cores = 1;
    if !client_address.is_empty() {
        cfg = cfg.extra(&format!(
            "[[client_address]]\nlisten = [\"${{listen}}\"]\n{client_address}"
        ));
    }
    cfg
}

#[test]
fn a_trusted_peers_proxy_header_names_the_client_for_rules_limits_and_logs() {
    let _serial = serial();
    let scratch = Scratch::new("client-address-proxy");
    let nodes = sim::start(2, &["cid/obj-:4KiB:1"]);
    let cfg = two_pools(
        &nodes,
        "trusted_proxies = [\"127.0.0.1\"]\nproxy_protocol = \"optional\"\n",
        "none",
    )
    .extra("[limits]\nclient_ip_connections_max = 1\n");
    let weir = Weir::start_logged(&cfg, scratch.path());
    let addr = weir.addr();

    // v1 from the trusted peer: the client is 192.0.2.7, which the rule sends to partner.
    let r = send_from(
        "127.0.0.1",
        addr,
        &[proxy_v1("192.0.2.7", 40000), get("/cid/obj-0", "")].concat(),
    );
    assert_eq!(r.status(), Some(200), "{}", r.head());
    assert_eq!(r.body().len(), 4096);
    assert_eq!((served(&nodes[0]), served(&nodes[1])), (0, 1));
    // v2 naming a client outside the rule's block: main serves it.
    let v2 = proxy_v2("198.51.100.9:40001".parse().unwrap());
    let r = send_from("127.0.0.1", addr, &[v2, get("/cid/obj-0", "")].concat());
    assert_eq!(r.status(), Some(200), "{}", r.head());
    assert_eq!((served(&nodes[0]), served(&nodes[1])), (1, 1));
    // Optional: the trusted peer without a header is itself the client.
    let r = send_from("127.0.0.1", addr, &get("/cid/obj-0", ""));
    assert_eq!(r.status(), Some(200), "{}", r.head());
    assert_eq!((served(&nodes[0]), served(&nodes[1])), (2, 1));

    // The per-IP connection cap counts the client the header names, not the balancer:
    // one connection of 192.0.2.7 held open, a second one of it refused, another
    // client's admitted although it came from the same balancer.
    let mut held = connect_from("127.0.0.1", addr);
    held.write_all(&proxy_v1("192.0.2.7", 40002))
        .expect("write");
    std::thread::sleep(Duration::from_millis(300));
    let r = send_from(
        "127.0.0.1",
        addr,
        &[proxy_v1("192.0.2.7", 40003), get("/cid/obj-0", "")].concat(),
    );
    assert_eq!(
        r.status(),
        None,
        "a second connection of 192.0.2.7: {}",
        r.head()
    );
    let r = send_from(
        "127.0.0.1",
        addr,
        &[proxy_v1("192.0.2.8", 40004), get("/cid/obj-0", "")].concat(),
    );
    assert_eq!(r.status(), Some(200), "{}", r.head());
    drop(held);

    // The access log names the clients the headers named.
    let clients: Vec<String> = weir
        .access_log()
        .iter()
        .filter_map(|l| l["client"].as_str().map(str::to_owned))
        .collect();
    for want in ["192.0.2.7:40000", "198.51.100.9:40001", "192.0.2.8:40004"] {
        assert!(
            clients.iter().any(|c| c == want),
            "{want} not in {clients:?}"
        );
    }
    assert!(
        clients.iter().any(|c| c.starts_with("127.0.0.1:")),
        "{clients:?}"
    );
}

#[test]
fn proxy_headers_from_untrusted_peers_are_refused() {
    let _serial = serial();
    let scratch = Scratch::new("client-address-untrusted");
    let nodes = sim::start(2, &["cid/obj-:4KiB:1"]);
    let required = two_pools(
        &nodes,
        "trusted_proxies = [\"127.0.0.1\"]\nproxy_protocol = \"required\"\n",
        "none",
    );
    let weir = Weir::start(&required, scratch.path());
    let addr = weir.addr();
    // Refusals from here on (the harness's port check at start is one too).
    let refused = |reason: &str| {
        let label = format!("reason=\"{reason}\"");
        weir.metric_sum("weir_connections_refused_total", |l| l.contains(&label))
    };
    let before = (refused("proxy_untrusted"), refused("proxy_header"));
    let with_header = [proxy_v1("192.0.2.7", 40000), get("/cid/obj-0", "")].concat();
    // Required: an untrusted peer is closed on before a byte is read, header or not.
    for bytes in [&with_header[..], &get("/cid/obj-0", "")[..]] {
        let r = send_from("127.0.0.2", addr, bytes);
        assert_eq!((r.status(), r.bytes.len()), (None, 0), "{}", r.head());
    }
    // Required: a trusted peer without a header, or with a malformed one, too.
    for bytes in [
        get("/cid/obj-0", ""),
        [
            b"PROXY TCP4 192.0.2.7 x 1 2\r\n".to_vec(),
            get("/cid/obj-0", ""),
        ]
        .concat(),
    ] {
        let r = send_from("127.0.0.1", addr, &bytes);
        assert_eq!((r.status(), r.bytes.len()), (None, 0), "{}", r.head());
    }
    let r = send_from("127.0.0.1", addr, &with_header);
    assert_eq!(r.status(), Some(200), "{}", r.head());
    assert_eq!((served(&nodes[0]), served(&nodes[1])), (0, 1));
    // Each refusal is counted, by why (docs/metrics.md).
    assert_eq!(
        (
            refused("proxy_untrusted") - before.0,
            refused("proxy_header") - before.1
        ),
        (2.0, 2.0),
        "{}",
        weir.metrics_text()
    );
    drop(weir);

    // Optional: an untrusted peer's header is not read; it is a malformed request.
    let optional = two_pools(
        &nodes,
        "trusted_proxies = [\"127.0.0.1\"]\nproxy_protocol = \"optional\"\n",
        "none",
    );
    let weir = Weir::start(&optional, scratch.path());
    let r = send_from("127.0.0.3", weir.addr(), &with_header);
    assert_eq!(r.status(), Some(400), "{}", r.head());
    let r = send_from("127.0.0.3", weir.addr(), &get("/cid/obj-0", ""));
    assert_eq!(r.status(), Some(200), "{}", r.head());
    // Neither reached partner: 192.0.2.7 was never believed.
    assert_eq!((served(&nodes[0]), served(&nodes[1])), (1, 1));
}

/// The forwarding fields node `node` saw on its last request.
fn last_seen(node: &SimNode) -> weir_bench::Seen {
    node.seen().pop().expect("the node saw a request")
}

fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

const SPOOF: &str = "X-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n";

#[test]
fn nodes_hear_the_client_weir_established_and_never_a_spoof() {
    let _serial = serial();
    let scratch = Scratch::new("client-address-xff");
    let nodes = sim::start(2, &["cid/obj-:4KiB:1"]);

    // No trust: whatever the client claims, the node hears the TCP peer.
    let weir = Weir::start(&two_pools(&nodes, "", "x-forwarded-for"), scratch.path());
    let r = send_from("127.0.0.2", weir.addr(), &get("/cid/obj-0", SPOOF));
    assert_eq!(r.status(), Some(200), "{}", r.head());
    assert_eq!(
        last_seen(&nodes[0]).forwarding,
        fields(&[("x-forwarded-for", "127.0.0.2")])
    );
    drop(weir);

    // `none` (the default) forwards the head as it came, spoof included.
    let weir = Weir::start(&two_pools(&nodes, "", "none"), scratch.path());
    let r = send_from("127.0.0.2", weir.addr(), &get("/cid/obj-0", SPOOF));
    assert_eq!(r.status(), Some(200), "{}", r.head());
    assert_eq!(
        last_seen(&nodes[0]).forwarding,
        fields(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6")
        ])
    );
    drop(weir);

    // A trusted proxy's X-Forwarded-For is believed up to its first untrusted hop, which
    // the rule then sends to partner; the append form tells the node the hops weir
    // believed; an untrusted peer's is still ignored.
    let cfg = two_pools(
        &nodes,
        "trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\nheader = \"x-forwarded-for\"\n",
        "x-forwarded-for-append",
    );
    let weir = Weir::start_logged(&cfg, scratch.path());
    let xff = "X-Forwarded-For: 6.6.6.6, 192.0.2.7, 10.1.1.1\r\n";
    let r = send_from("127.0.0.1", weir.addr(), &get("/cid/obj-0", xff));
    assert_eq!(r.status(), Some(200), "{}", r.head());
    assert_eq!(
        last_seen(&nodes[1]).forwarding,
        fields(&[("x-forwarded-for", "192.0.2.7, 10.1.1.1, 127.0.0.1")])
    );
    let before = served(&nodes[1]);
    let r = send_from("127.0.0.2", weir.addr(), &get("/cid/obj-0", xff));
    assert_eq!(r.status(), Some(200), "{}", r.head());
    assert_eq!(
        served(&nodes[1]),
        before,
        "an untrusted peer's XFF must not pick the pool"
    );
    assert_eq!(
        last_seen(&nodes[0]).forwarding,
        fields(&[("x-forwarded-for", "127.0.0.2")])
    );
    let clients: Vec<String> = weir
        .access_log()
        .iter()
        .filter_map(|l| l["client"].as_str().map(str::to_owned))
        .collect();
    assert!(
        clients.iter().any(|c| c.starts_with("192.0.2.7:")),
        "{clients:?}"
    );
    drop(weir);

    // Forwarded (RFC 7239), from a Forwarded-speaking trusted proxy.
    let cfg = two_pools(
        &nodes,
        "trusted_proxies = [\"127.0.0.1\"]\nheader = \"forwarded\"\n",
        "forwarded",
    );
    let weir = Weir::start(&cfg, scratch.path());
    let fwd = "Forwarded: for=6.6.6.6, for=\"[2001:db8::7]:4711\";proto=https\r\nX-Forwarded-For: 6.6.6.6\r\n";
    let r = send_from("127.0.0.1", weir.addr(), &get("/cid/obj-0", fwd));
    assert_eq!(r.status(), Some(200), "{}", r.head());
    assert_eq!(
        last_seen(&nodes[0]).forwarding,
        fields(&[(
            "forwarded",
            "for=\"[2001:db8::7]\", for=127.0.0.1;proto=http"
        )])
    );
}

/// A client cannot unsay weir's account of it: naming the forwarding fields in
/// `Connection` (weir's own field would then be dropped as hop-by-hop on the way out) or
/// spelling them with `_` (which CGI-style servers such as RGW read as `-`) changes
/// nothing the node hears.
#[test]
fn a_client_cannot_nominate_or_respell_the_forwarding_fields_away() {
    let _serial = serial();
    let scratch = Scratch::new("client-address-nominate");
    let nodes = sim::start(2, &["cid/obj-:4KiB:1"]);
    let sneaky = "Connection: keep-alive, X-Forwarded-For, Forwarded, X-Real-IP\r\n\
                  X_Forwarded_For: 6.6.6.6\r\nX_Real_IP: 6.6.6.6\r\n";
    for (send, heard) in [
        ("x-forwarded-for", ("x-forwarded-for", "127.0.0.2")),
        ("forwarded", ("forwarded", "for=127.0.0.2;proto=http")),
    ] {
        let weir = Weir::start(&two_pools(&nodes, "", send), scratch.path());
        let r = send_from("127.0.0.2", weir.addr(), &get("/cid/obj-0", sneaky));
        assert_eq!(r.status(), Some(200), "{}", r.head());
        assert_eq!(
            last_seen(&nodes[0]).forwarding,
            fields(&[heard]),
            "send_client_address = {send}"
        );
    }
}

#[test]
fn proxy_v2_to_nodes_speaks_for_one_client_per_connection() {
    let _serial = serial();
    let scratch = Scratch::new("client-address-proxy-v2");
    let nodes = sim::start(2, &["cid/obj-:4KiB:1"]);
    let cfg = two_pools(
        &nodes,
        "trusted_proxies = [\"127.0.0.1\"]\nproxy_protocol = \"optional\"\n",
        "proxy-v2",
    )
    .upstream("idle_connections_per_node_max = 4");
    let weir = Weir::start(&cfg, scratch.path());
    let addr = weir.addr();
    // Two clients, each twice on a keep-alive connection: every request reaches the node
    // on a connection whose PROXY header names its own client; a client's second request
    // reuses its node connection, and never another client's.
    let mut used: Vec<Vec<u64>> = Vec::new();
    for (client, port) in [("198.51.100.9", 40000u16), ("198.51.100.10", 40001)] {
        used.push(Vec::new());
        let mut conn = connect_from("127.0.0.1", addr);
        conn.write_all(&proxy_v1(client, port)).expect("write");
        for _ in 0..2 {
            conn.write_all(&get("/cid/obj-0", SPOOF)).expect("write");
            let r = read_reply(&mut conn, WAIT, ReadUntil::Response);
            assert_eq!(r.status(), Some(200), "{}", r.head());
            let seen = last_seen(&nodes[0]);
            // The address the client reached is the one its PROXY header names (a
            // balancer's VIP), not weir's own.
            assert_eq!(
                seen.proxy,
                Some(format!("v2 {client}:{port} 10.0.0.1:9000"))
            );
            // No forwarding field reaches the node: the PROXY header says it all.
            assert_eq!(seen.forwarding, fields(&[]));
            used.last_mut()
                .expect("one per client")
                .push(seen.connection);
        }
    }
    assert_eq!(
        used[0][0], used[0][1],
        "a client's requests share its node connection"
    );
    assert_eq!(
        used[1][0], used[1][1],
        "a client's requests share its node connection"
    );
    assert_ne!(
        used[0][0], used[1][0],
        "clients never share a node connection"
    );
    // A client without a header: the node hears the peer.
    let r = send_from("127.0.0.2", addr, &get("/cid/obj-0", ""));
    assert_eq!(r.status(), Some(200), "{}", r.head());
    let seen = last_seen(&nodes[0]);
    assert!(
        seen.proxy
            .as_deref()
            .is_some_and(|p| p.starts_with("v2 127.0.0.2:")),
        "{seen:?}"
    );
    // Clients that come once and leave do not leave a node socket each behind: their
    // idle connections count together against the node's idle cap (4 here).
    for port in 41000u16..41012 {
        let mut conn = connect_from("127.0.0.1", addr);
        conn.write_all(&proxy_v1("198.51.100.20", port))
            .expect("write");
        conn.write_all(&get("/cid/obj-0", "")).expect("write");
        let r = read_reply(&mut conn, WAIT, ReadUntil::Response);
        assert_eq!(r.status(), Some(200), "{}", r.head());
    }
    let (held, _) = weir_tests::transfer::wait_for(
        "the node's open connections from weir to fall to the idle cap",
        Duration::from_secs(3),
        Duration::from_millis(50),
        || {
            let active = nodes[0].stats().connections_active;
            (active <= 4 + 1).then_some(active)
        },
    );
    assert!(held <= 5, "{held} connections held open to the node");
}

/// curl with `--aws-sigv4` and `extra` arguments: (status, body).
fn curl(mut cmd: Command, url: &str, scratch: &Path, extra: &[&str]) -> (u16, Vec<u8>) {
    cmd.args(extra);
    clients::curl_status_body(cmd, url, scratch, Duration::from_secs(30))
}

#[test]
fn signatures_still_verify_at_the_node_and_at_the_edge() {
    let _serial = serial();
    let scratch = Scratch::new("client-address-sigv4");
    let dir = scratch.path();
    let node = S3sFs::start(dir, "s3s");
    std::fs::write(
        dir.join("tenants.secrets"),
        format!("{ACCESS_KEY} = {SECRET_KEY}\n"),
    )
    .expect("write secrets");
    let cfg = WeirConfig::new(&[])
        .pool(
            PoolConfig::new("main", &[node.addr()])
                .key("send_client_address = \"x-forwarded-for-append\""),
        )
        .extra(
            "[auth]\nmode = \"verify\"\nsecrets_file = \"tenants.secrets\"\nskew_max = \"15m\"\n",
        );
    let weir = Weir::start(&cfg, dir);
    let endpoint = weir.endpoint();

    // awscli: make a bucket, put and get an object; s3s-fs checks every signature.
    let file = dir.join("object.bin");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &data).expect("write object");
    clients::aws(
        &endpoint,
        &["s3api", "create-bucket", "--bucket", "cid"],
        dir,
    );
    clients::aws(
        &endpoint,
        &[
            "s3api",
            "put-object",
            "--bucket",
            "cid",
            "--key",
            "a/b",
            "--body",
            &file.display().to_string(),
        ],
        dir,
    );
    let back = dir.join("back.bin");
    clients::aws(
        &endpoint,
        &[
            "s3api",
            "get-object",
            "--bucket",
            "cid",
            "--key",
            "a/b",
            &back.display().to_string(),
        ],
        dir,
    );
    assert_eq!(std::fs::read(&back).expect("read back"), data);

    // curl --aws-sigv4: weir adds X-Forwarded-For, and the signature holds at the node.
    let url = format!("{endpoint}/cid/a/b");
    let (status, body) = curl(curl_sigv4(), &url, dir, &[]);
    assert_eq!((status, body.len()), (200, data.len()));
    // curl signs every header it is given: a signed X-Forwarded-For cannot be replaced
    // without breaking the signature, so weir refuses the request (400 InvalidRequest).
    let (status, body) = curl(curl_sigv4(), &url, dir, &["-H", "X-Forwarded-For: 6.6.6.6"]);
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("<Code>InvalidRequest</Code>") && text.contains("x-forwarded-for"),
        "{text}"
    );
    let unsignable = weir.metric_sum("weir_auth_failures_total", |l| l.contains("\"unsignable\""));
    assert_eq!(unsignable, 1.0, "the refusal is counted");

    // boto3: the same object through weir, hashed as it streams.
    let want = weir_tests::data::sha256_hex(&data);
    let args: Vec<String> = [
        "--endpoint",
        &endpoint,
        "--bucket",
        "cid",
        "--key",
        "a/b",
        "--expect-sha256",
        &want,
        "--expect-length",
        &data.len().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let report = clients::run_py("get.py", &args, dir, Duration::from_secs(60));
    clients::assert_checks(
        "boto3 get",
        &report,
        &["get_status", "get_sha256", "get_length"],
    );
}

/// Probes to a pool that sends PROXY v2 begin with a PROXY v2 `LOCAL` header, as HAProxy's
/// `check-send-proxy` does: nodes that require the header on every connection (nginx
/// `proxy_protocol`, HAProxy `accept-proxy`) would otherwise fail every probe, and the
/// whole pool would go down the moment it is switched to `proxy-v2`.
#[test]
fn probes_to_a_proxy_v2_pool_carry_a_local_header() {
    let _serial = serial();
    let scratch = Scratch::new("client-address-probe");
    let nodes = sim::start(1, &["cid/obj-:4KiB:1"]);
    let pool = PoolConfig::new("main", &[nodes[0].addr()])
        .key("send_client_address = \"proxy-v2\"")
        .health("interval = \"200ms\"");
    let mut cfg = WeirConfig::new(&[]).pool(pool);
    cfg.cores = 1;
    let _weir = Weir::start(&cfg, scratch.path());
    let (probes, _) = weir_tests::transfer::wait_for(
        "two probes at the node",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || {
            let seen = nodes[0].seen();
            (seen.len() >= 2).then_some(seen)
        },
    );
    for seen in &probes {
        assert_eq!(seen.proxy.as_deref(), Some("v2 local"), "{seen:?}");
        assert_eq!(seen.forwarding, fields(&[]));
    }
}
