//! TLS at the edge (`docs/tls.md`) with real clients and real TLS peers: boto3, the AWS CLI
//! and curl over HTTPS to weir (certificates from a per-test CA, chosen by SNI, client
//! certificates when asked), weir encrypting to nodes behind HAProxy's TLS (OpenSSL: an
//! independent implementation on the other end), and bad input on the TLS port — plain
//! HTTP, silence, unknown names, bad client certificates — closed, counted, and never
//! reaching storage.
//!
//! The machine's kernel has no `tls` module, so the records here are encrypted by rustls
//! in user space (`weir_tls_connections_total{path="userspace"}`); the tests assert which
//! path ran from the metric, so on a kernel with kTLS they check that path instead.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use weir_bench::Faults;
use weir_tests::certs::{Ca, Issued};
use weir_tests::clients::{self, boto3_suite, curl_sigv4, CA_BUNDLE_FILE};
use weir_tests::data::{self, Scratch};
use weir_tests::nodes::{self, S3sFs};
use weir_tests::ports::free_addr;
use weir_tests::process::Proc;
use weir_tests::sim;
use weir_tests::tcp::Relay;
use weir_tests::transfer::{synthetic_sha256, wait_for, Transfer};
use weir_tests::weir::{PoolConfig, Weir, WeirConfig};

const MIB: u64 = 1 << 20;

/// `[tls]` for one listener at `addr` with `certs` (and extra lines).
fn tls_section(addr: SocketAddr, certs: &[&Issued], extra: &str) -> String {
    let mut toml = format!("[tls]\nlisten = [\"{addr}\"]\n{extra}\n");
    for c in certs {
        toml.push_str(&format!(
            "[[tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n",
            c.cert.display(),
            c.key.display()
        ));
    }
    toml
}

/// The TLS metric families summed over the labels that match `filter`.
fn tls_metric(weir: &Weir, name: &str, side: &str, label: &str) -> f64 {
    weir.metric_sum(name, |l| {
        l.contains(&format!("side=\"{side}\"")) && l.contains(label)
    })
}

/// curl signing with the test keys, verifying the server against `ca`.
fn curl_https(ca: &Path) -> Command {
    let mut cmd = curl_sigv4();
    cmd.arg("--cacert").arg(ca);
    cmd
}

/// Runs curl for `url`; returns (exit ok, HTTP status, body).
fn curl_get(mut cmd: Command, url: &str) -> (bool, u16, Vec<u8>) {
    cmd.args(["-o", "-", "-w", "\n%{http_code}"]).arg(url);
    let out = clients::output(&mut cmd, Duration::from_secs(60));
    let mut body = out.stdout;
    let nl = body.iter().rposition(|b| *b == b'\n').unwrap_or(0);
    let status = String::from_utf8_lossy(&body[nl..])
        .trim()
        .parse()
        .unwrap_or(0);
    body.truncate(nl);
    (out.status.success(), status, body)
}

/// HAProxy terminating TLS (OpenSSL) in front of a plain node: the "node with TLS" that
/// weir's pools encrypt to. TCP mode, so HTTP passes untouched.
struct TlsFront {
    proc: Proc,
    addr: SocketAddr,
}

impl TlsFront {
    fn start(dir: &Path, name: &str, cert: &Issued, backend: SocketAddr) -> TlsFront {
        let addr = free_addr();
        let pem = dir.join(format!("{name}-haproxy.pem"));
        let chain = std::fs::read_to_string(&cert.cert).expect("read cert");
        let key = std::fs::read_to_string(&cert.key).expect("read key");
        std::fs::write(&pem, format!("{chain}{key}")).expect("write haproxy pem");
        let cfg = dir.join(format!("{name}-haproxy.cfg"));
        std::fs::write(
            &cfg,
            format!(
                "global\n  maxconn 2000\n\
                 defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n\
                 frontend tls\n  bind {addr} ssl crt {}\n  default_backend node\n\
                 backend node\n  server n {backend}\n",
                pem.display()
            ),
        )
        .expect("write haproxy cfg");
        let mut cmd = Command::new("haproxy");
        cmd.arg("-db").arg("-f").arg(&cfg);
        let mut proc = Proc::spawn(name, &mut cmd, &dir.join(format!("{name}-haproxy.log")));
        proc.wait_port(addr, Duration::from_secs(10));
        TlsFront { proc, addr }
    }
}

/// The full boto3 suite (every body hash-checked, multipart, presigned, aws-chunked,
/// 100-continue, keep-alive) and the AWS CLI over HTTPS to weir, which speaks plain HTTP
/// to one s3s-fs node; curl checks a big GET's bytes. Every handshake took one counted
/// path, none failed.
#[test]
fn s3_clients_over_https_through_weir() {
    let scratch = Scratch::new("tls-suite");
    let dir = scratch.path();
    let node = S3sFs::start(dir, "s3s-0");
    nodes::seed(&[node.endpoint()], "suite", &[], dir);
    let ca = Ca::new(dir, "edge");
    std::fs::copy(&ca.pem_path, dir.join(CA_BUNDLE_FILE)).expect("ca bundle");
    let cert = ca.server(dir, "edge", &["localhost", "127.0.0.1"]);
    let tls_addr = free_addr();
    let cfg = WeirConfig::new(&[node.addr()]).extra(&tls_section(tls_addr, &[&cert], ""));
    let weir = Weir::start(&cfg, dir);
    let https = format!("https://localhost:{}", tls_addr.port());

    boto3_suite("tls-suite", &https, "suite", "full", None, dir);

    // The AWS CLI: upload a 20 MiB file (multipart), download it, compare.
    let src = dir.join("cli-src.bin");
    let sha = data::write_pattern_file(&src, 7, 20 * MIB);
    let dst = dir.join("cli-dst.bin");
    clients::aws(
        &https,
        &["s3", "cp", &src.to_string_lossy(), "s3://suite/cli/obj"],
        dir,
    );
    clients::aws(
        &https,
        &["s3", "cp", "s3://suite/cli/obj", &dst.to_string_lossy()],
        dir,
    );
    assert_eq!(
        data::sha256_file(&dst),
        (sha.clone(), 20 * MIB),
        "AWS CLI round trip"
    );

    // curl: the same object, hashed.
    let (ok, status, body) = curl_get(curl_https(&ca.pem_path), &format!("{https}/suite/cli/obj"));
    assert!(ok && status == 200, "curl over https: {status}");
    assert_eq!(data::sha256_hex(&body), sha, "curl body");

    let done = tls_metric(&weir, "weir_tls_connections_total", "client", "");
    let failed = tls_metric(&weir, "weir_tls_handshake_failures_total", "client", "");
    println!("TLS suite: {done} client handshakes, {failed} failed");
    assert!(done >= 5.0, "handshakes counted: {done}");
    assert_eq!(failed, 0.0, "no handshake failed");
    // Every connection took the path this kernel allows, none the other.
    let (expected, other) = kernel_paths();
    let on = |path: &str| {
        tls_metric(
            &weir,
            "weir_tls_connections_total",
            "client",
            &format!("path=\"{path}\""),
        )
    };
    assert_eq!(on(expected), done, "every handshake on the {expected} path");
    assert_eq!(on(other), 0.0, "no handshake on the {other} path");
    // One connection at a time: each adds one handshake, on that path.
    let url = format!("{https}/suite/cli/obj");
    for _ in 0..3 {
        let path = one_connection_path(&weir, || {
            let (ok, status, body) = curl_get(curl_https(&ca.pem_path), &url);
            assert!(ok && status == 200, "curl over https: {status}");
            assert_eq!(data::sha256_hex(&body), sha, "curl body");
        });
        assert_eq!(path, expected, "the connection's path");
    }

    // With `ktls = false` the kernel is never asked, whatever it supports.
    let user_addr = free_addr();
    let cfg =
        WeirConfig::new(&[node.addr()]).extra(&tls_section(user_addr, &[&cert], "ktls = false"));
    let user_dir = dir.join("ktls-off");
    std::fs::create_dir_all(&user_dir).expect("scratch dir");
    let weir_user = Weir::start(&cfg, &user_dir);
    let url = format!("https://localhost:{}/suite/cli/obj", user_addr.port());
    let path = one_connection_path(&weir_user, || {
        let (ok, status, body) = curl_get(curl_https(&ca.pem_path), &url);
        assert!(
            ok && status == 200,
            "curl over https, ktls = false: {status}"
        );
        assert_eq!(data::sha256_hex(&body), sha, "curl body, ktls = false");
    });
    assert_eq!(path, "userspace", "the connection's path with ktls = false");
}

/// The client-side path weir takes with `ktls = true` on this machine, and the other one:
/// the kernel's when it has the `tls` ULP (weir's probe loads the module where it can, so
/// this is read after weir's first handshake), else user space.
fn kernel_paths() -> (&'static str, &'static str) {
    let ulps = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp").unwrap_or_default();
    if ulps.split_whitespace().any(|ulp| ulp == "tls") {
        ("ktls", "userspace")
    } else {
        ("userspace", "ktls")
    }
}

/// Runs `connect`, which makes exactly one client connection to `weir`, and returns the
/// path that connection's records took: the one `weir_tls_connections_total` counter that
/// moved, by exactly one.
fn one_connection_path(weir: &Weir, connect: impl FnOnce()) -> &'static str {
    let paths = ["ktls", "userspace"];
    let count = |path: &str| {
        tls_metric(
            weir,
            "weir_tls_connections_total",
            "client",
            &format!("path=\"{path}\""),
        )
    };
    let before: Vec<f64> = paths.iter().map(|p| count(p)).collect();
    connect();
    let moved: Vec<f64> = paths
        .iter()
        .zip(&before)
        .map(|(p, b)| count(p) - b)
        .collect();
    match moved.as_slice() {
        [k, u] if *k == 1.0 && *u == 0.0 => "ktls",
        [k, u] if *k == 0.0 && *u == 1.0 => "userspace",
        _ => panic!(
            "one connection must add one handshake on one path: ktls +{}, userspace +{}",
            moved[0], moved[1]
        ),
    }
}

/// Two certificates from two CAs: SNI picks the one valid for the name (proved by which
/// CA verifies it); a name neither covers is refused in the handshake, counted, and
/// never reaches the node. A reload swaps a certificate for new connections.
#[test]
fn sni_picks_the_certificate_and_unknown_names_never_reach_storage() {
    let scratch = Scratch::new("tls-sni");
    let dir = scratch.path();
    let node = S3sFs::start(dir, "s3s-0");
    let objects = data::seed_objects(&scratch.sub("seed"), &[100_000]);
    nodes::seed(&[node.endpoint()], "seeded", &objects, dir);
    let relay = Relay::start(node.addr());
    let (ca_a, ca_b) = (Ca::new(dir, "a"), Ca::new(dir, "b"));
    let cert_a = ca_a.server(dir, "a", &["a.test"]);
    let cert_b = ca_b.server(dir, "b", &["*.b.test"]);
    let tls_addr = free_addr();
    let cfg =
        WeirConfig::new(&[relay.addr()]).extra(&tls_section(tls_addr, &[&cert_a, &cert_b], ""));
    let weir = Weir::start(&cfg, dir);
    let port = tls_addr.port();
    let key = &objects[0].key;
    let get = |name: &str, ca: &Ca| {
        let mut cmd = curl_https(&ca.pem_path);
        cmd.arg("--resolve").arg(format!("{name}:{port}:127.0.0.1"));
        curl_get(cmd, &format!("https://{name}:{port}/seeded/{key}"))
    };
    let requests = || relay.counters().requests_matching("/seeded/");

    let (ok, status, body) = get("a.test", &ca_a);
    assert!(ok && status == 200, "a.test with CA a: {status}");
    assert_eq!(data::sha256_hex(&body), objects[0].sha256);
    let (ok, status, _) = get("x.b.test", &ca_b);
    assert!(
        ok && status == 200,
        "x.b.test (wildcard) with CA b: {status}"
    );
    let (ok, _, _) = get("x.b.test", &ca_a);
    assert!(
        !ok,
        "x.b.test is served with b's certificate, which CA a does not verify"
    );
    assert_eq!(requests(), 2, "the node saw the two verified GETs");

    let (ok, _, _) = get("unknown.test", &ca_a);
    assert!(!ok, "an unknown name is refused");
    assert_eq!(
        tls_metric(
            &weir,
            "weir_tls_handshake_failures_total",
            "client",
            "reason=\"unknown_sni\""
        ),
        1.0
    );
    assert_eq!(
        requests(),
        2,
        "nothing of the refused connection reached the node"
    );

    // Reload with a.test's certificate re-issued by CA b: new connections get it.
    let cert_a2 = ca_b.server(dir, "a2", &["a.test"]);
    weir.write_config(&WeirConfig::new(&[relay.addr()]).extra(&tls_section(
        tls_addr,
        &[&cert_a2, &cert_b],
        "",
    )));
    let (code, reply) = weir.reload();
    assert_eq!(code, 200, "reload: {reply}");
    let (ok, status, _) = get("a.test", &ca_b);
    assert!(
        ok && status == 200,
        "after the reload a.test verifies with CA b: {status}"
    );
    let (ok, _, _) = get("a.test", &ca_a);
    assert!(!ok, "and no longer with CA a");
}

/// `client_ca` set: a client with a certificate from that CA is served (its name puts it
/// in the tenant that lists it); one without a certificate, or with one from another CA, is refused in the
/// handshake — counted as `bad_certificate`, and the node sees only the good request.
#[test]
fn client_certificates_are_required_and_verified() {
    let scratch = Scratch::new("tls-mtls");
    let dir = scratch.path();
    let node = S3sFs::start(dir, "s3s-0");
    let objects = data::seed_objects(&scratch.sub("seed"), &[4096]);
    nodes::seed(&[node.endpoint()], "seeded", &objects, dir);
    let relay = Relay::start(node.addr());
    let ca = Ca::new(dir, "edge");
    let cert = ca.server(dir, "edge", &["127.0.0.1"]);
    let clients_ca = Ca::new(dir, "clients");
    let rogue_ca = Ca::new(dir, "rogue");
    let good = clients_ca.client(dir, "job-a", "job-a.clients.test");
    let rogue = rogue_ca.client(dir, "job-x", "job-x.clients.test");
    let tls_addr = free_addr();
    let extra = format!("client_ca = \"{}\"\n", clients_ca.pem_path.display());
    // The certificate's name is the tenant's identity (the request is signed with the
    // test key, which no tenant lists).
    let cfg = WeirConfig::new(&[relay.addr()])
        .extra(&tls_section(tls_addr, &[&cert], &extra))
        .extra("[[tenant]]\nname = \"job-a\"\nclient_names = [\"job-a.clients.test\"]\n");
    let weir = Weir::start(&cfg, dir);
    let url = format!(
        "https://127.0.0.1:{}/seeded/{}",
        tls_addr.port(),
        objects[0].key
    );
    let with_cert = |c: Option<&Issued>| {
        let mut cmd = curl_https(&ca.pem_path);
        if let Some(c) = c {
            cmd.arg("--cert").arg(&c.cert).arg("--key").arg(&c.key);
        }
        curl_get(cmd, &url)
    };

    let (ok, status, body) = with_cert(Some(&good));
    assert!(
        ok && status == 200,
        "a client certificate from client_ca: {status}"
    );
    assert_eq!(data::sha256_hex(&body), objects[0].sha256);
    let (ok, status, _) = with_cert(None);
    assert!(
        !ok || status == 0,
        "no client certificate: refused (status {status})"
    );
    let (ok, status, _) = with_cert(Some(&rogue));
    assert!(
        !ok || status == 0,
        "a certificate from another CA: refused (status {status})"
    );

    let bad = tls_metric(
        &weir,
        "weir_tls_handshake_failures_total",
        "client",
        "reason=\"bad_certificate\"",
    );
    assert_eq!(bad, 2.0, "both refusals counted as bad_certificate");
    let job_a = weir.metric_sum("weir_tenant_requests_total", |l| {
        l.contains("tenant=\"job-a\"")
    });
    assert_eq!(
        job_a, 1.0,
        "the certificate put the request in tenant job-a"
    );
    assert_eq!(
        relay.counters().requests_matching("/seeded/"),
        1,
        "only the verified client's request reached the node"
    );
}

/// Plain HTTP on the TLS port, a client that never starts a handshake, and a truncated
/// ClientHello: each is closed without an answer weir would have to invent, counted by
/// reason, and nothing reaches the node.
#[test]
fn plain_http_and_silent_clients_on_the_tls_port_are_closed() {
    let scratch = Scratch::new("tls-bad-input");
    let dir = scratch.path();
    let relay_target = S3sFs::start(dir, "s3s-0");
    let relay = Relay::start(relay_target.addr());
    let ca = Ca::new(dir, "edge");
    let cert = ca.server(dir, "edge", &["127.0.0.1"]);
    let tls_addr = free_addr();
    let cfg = WeirConfig::new(&[relay.addr()]).extra(&tls_section(
        tls_addr,
        &[&cert],
        "handshake_timeout = \"300ms\"\n",
    ));
    let weir = Weir::start(&cfg, dir);
    // Weir::start waits for the plain and metrics ports; the TLS group is bound just
    // after the plain one, so wait until it takes connections too (a connection that
    // closes without a byte is neither of the reasons counted below).
    wait_for(
        "the TLS port",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || TcpStream::connect(tls_addr).ok().map(drop),
    );

    let closed_after = |send: &[u8]| -> (Vec<u8>, Duration) {
        let mut s = TcpStream::connect(tls_addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let started = Instant::now();
        s.write_all(send).expect("send");
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        (got, started.elapsed())
    };
    let (got, took) = closed_after(b"GET /seeded/x HTTP/1.1\r\nHost: weir\r\n\r\n");
    assert!(got.is_empty(), "plain HTTP gets no bytes back: {got:?}");
    assert!(
        took < Duration::from_secs(2),
        "closed at once, took {took:?}"
    );
    let (got, took) = closed_after(b"");
    assert!(got.is_empty(), "a silent client gets nothing");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "closed at the 300 ms handshake timeout, took {took:?}"
    );
    // A record header announcing a ClientHello that never comes whole.
    let (got, _) = closed_after(&[22, 3, 1, 0x02, 0x00, 1, 0, 0]);
    assert!(got.is_empty(), "a truncated ClientHello gets nothing back");

    let reason = |r: &str| {
        tls_metric(
            &weir,
            "weir_tls_handshake_failures_total",
            "client",
            &format!("reason=\"{r}\""),
        )
    };
    assert_eq!(reason("not_tls"), 1.0, "plain HTTP counted");
    assert_eq!(
        reason("timeout"),
        2.0,
        "silence and the truncated hello timed out"
    );
    assert_eq!(
        relay.counters().requests_matching(""),
        0,
        "nothing reached the node"
    );
    let mut weir = weir;
    weir.assert_running();
}

/// weir encrypts to nodes behind HAProxy's TLS: requests and health probes verify the
/// nodes' certificate against the pool's CA and name. Reloaded with a CA that did not
/// sign it, probes mark the nodes down, requests are answered by weir (503), and the
/// refusals count as `bad_certificate` on the upstream side.
#[test]
fn pools_encrypt_to_nodes_and_verify_them() {
    let scratch = Scratch::new("tls-upstream");
    let dir = scratch.path();
    let node = S3sFs::start(dir, "s3s-0");
    nodes::seed(&[node.endpoint()], "suite", &[], dir);
    let ca = Ca::new(dir, "nodes");
    let other_ca = Ca::new(dir, "other");
    let cert = ca.server(dir, "node", &["node.storage.test"]);
    let front = TlsFront::start(dir, "front", &cert, node.addr());
    let pool = |ca: &Ca| {
        PoolConfig::new("secure", &[front.addr])
            .key(&format!(
                "tls = {{ ca = \"{}\", server_name = \"node.storage.test\" }}",
                ca.pem_path.display()
            ))
            .health("interval = \"200ms\"")
            .health("fall = 2")
    };
    let cfg = |ca: &Ca| WeirConfig::new(&[]).pool(pool(ca));
    let mut weir = Weir::start(&cfg(&ca), dir);

    boto3_suite("tls-upstream", &weir.endpoint(), "suite", "full", None, dir);
    let up = tls_metric(&weir, "weir_tls_connections_total", "upstream", "");
    assert!(up >= 1.0, "connections to the node were encrypted: {up}");
    assert_eq!(
        tls_metric(&weir, "weir_tls_handshake_failures_total", "upstream", ""),
        0.0
    );
    assert_eq!(weir.node_state(front.addr).as_deref(), Some("up"));

    weir.write_config(&cfg(&other_ca));
    let (code, reply) = weir.reload();
    assert_eq!(code, 200, "reload: {reply}");
    wait_for(
        "probes to mark the node down",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || (weir.node_state(front.addr).as_deref() == Some("down")).then_some(()),
    );
    // The probes say why, where operators look: the node's last transition.
    let node = weir
        .nodes()
        .into_iter()
        .find(|n| n["node"].as_str() == Some(front.addr.to_string().as_str()))
        .expect("the node in /nodes");
    let reason = node["reason"].as_str().unwrap_or("").to_string();
    println!("upstream TLS: {up} handshakes; after the CA swap the node is down: {reason}");
    assert!(
        reason.contains("bad_certificate"),
        "/nodes names the certificate failure: {reason}"
    );
    let (_, status, _) = curl_get(curl_sigv4(), &format!("{}/suite/any", weir.endpoint()));
    assert_eq!(status, 503, "no node to serve: weir answers 503");
    weir.assert_running();
    drop(front.proc);
}

/// HTTPS from the client, TLS to the nodes (HAProxy in front of three simulator nodes),
/// and one node resetting every GET body at 8 MiB: the GET is resumed on another node and
/// the client gets all 64 MiB right over its TLS connection.
#[test]
fn a_node_dying_mid_get_over_tls_is_resumed() {
    let scratch = Scratch::new("tls-resume");
    let dir = scratch.path();
    let nodes = sim::start(3, &["bench/obj-:64MiB:1"]);
    let ca = Ca::new(dir, "all");
    let node_cert = ca.server(dir, "node", &["node.storage.test"]);
    let fronts: Vec<TlsFront> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| TlsFront::start(dir, &format!("front{i}"), &node_cert, n.addr()))
        .collect();
    let front_addrs: Vec<SocketAddr> = fronts.iter().map(|f| f.addr).collect();
    let edge_cert = ca.server(dir, "edge", &["127.0.0.1"]);
    let tls_addr = free_addr();
    let pool = sim::control_probe(PoolConfig::new("main", &front_addrs).key(&format!(
        "tls = {{ ca = \"{}\", server_name = \"node.storage.test\" }}",
        ca.pem_path.display()
    )));
    let cfg = WeirConfig::new(&[])
        .upstream("io_timeout = \"1s\"")
        .pool(pool)
        .extra(&tls_section(tls_addr, &[&edge_cert], ""));
    let weir = Weir::start(&cfg, dir);
    let url = format!("https://127.0.0.1:{}/bench/obj-0", tls_addr.port());
    let sha = synthetic_sha256("bench/obj-0", 64 * MIB);
    let ca_arg = ca.pem_path.to_string_lossy().into_owned();

    nodes[0].set_faults(Faults {
        reset_after_bytes: Some(8 * MIB),
        ..Faults::default()
    });
    let mut gets = 0;
    while gets < 20 && (gets < 3 || nodes[0].stats().bodies_cut == 0) {
        let out =
            Transfer::get_with(&url, None, &["--cacert", &ca_arg]).wait(Duration::from_secs(120));
        assert!(
            out.ok,
            "GET over TLS: {out:?}\nweir log:\n{}",
            weir.log_tail()
        );
        assert_eq!((out.sha256.as_str(), out.bytes), (sha.as_str(), 64 * MIB));
        gets += 1;
    }
    let cuts = nodes[0].stats().bodies_cut;
    let resumed = weir.metric_sum("weir_resumes_total", |l| l.contains("outcome=\"resumed\""));
    println!("TLS resume: {gets} GETs of 64 MiB over TLS both ways, {cuts} cut, {resumed} resumed");
    assert!(cuts >= 1, "the faulty node cut no body in {gets} GETs");
    assert_eq!(resumed, cuts as f64, "every cut body was resumed");
}
