//! Node names resolved by a real DNS server (docs/operations.md, "DNS"): dnsmasq on
//! loopback answers from a hosts file the test rewrites (SIGHUP re-reads it, TTL 1 s), and
//! `weir-sim` nodes listen on 127.0.0.2, .3 and .4 on one port, so one name stands for
//! several nodes. Clients are curl with SigV4; every body is checked by SHA-256, and the
//! simulator's counters say which address served.
//!
//! - weir starts while the name does not resolve: requests get the S3 503 XML answer;
//!   once the name resolves, its addresses become nodes and serve (no reload).
//! - both addresses of the name get traffic and have their own health: one is killed,
//!   the other serves with 0 client errors, and `/nodes` shows one down, one up.
//! - the name moves to a new address: traffic follows within the TTL bounds, without a
//!   reload and without a 503.
//! - `weir check-config` with a name no server answers exits 0 with a warning at its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use weir_bench::{SimNode, SimOptions};
use weir_tests::clients::{curl_sigv4, curl_status_body};
use weir_tests::data::Scratch;
use weir_tests::process::Proc;
use weir_tests::transfer::{synthetic_sha256, wait_for};
use weir_tests::weir::{Weir, WeirConfig};

const NAME: &str = "store.weir.test";
const OBJECT_BYTES: u64 = 16 * 1024;
const SPEC: &str = "bench/obj-:16KiB:4";

/// dnsmasq serving `NAME` from a hosts file the test owns.
struct Dnsmasq {
    proc: Proc,
    addr: SocketAddr,
    hosts: PathBuf,
}

impl Dnsmasq {
    fn start(dir: &Path) -> Dnsmasq {
        let hosts = dir.join("dns-hosts");
        std::fs::write(&hosts, "").expect("write hosts file");
        let addr = weir_tests::ports::free_addr();
        let bin = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("dnsmasq is not installed: run scripts/test-deps.sh");
        let mut cmd = Command::new(bin);
        cmd.args(["--no-daemon", "--conf-file=/dev/null", "--user=root"])
            .arg(format!("--port={}", addr.port()))
            .args([
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--local-ttl=1",
                "--neg-ttl=1",
                "--local=/weir.test/",
                "--pid-file=",
                "--log-queries",
                "--log-facility=-",
            ])
            .arg(format!("--addn-hosts={}", hosts.display()));
        let proc = Proc::spawn("dnsmasq", &mut cmd, &dir.join("dnsmasq.log"));
        // dnsmasq listens on UDP and TCP; TCP tells that it is up.
        let mut dns = Dnsmasq { proc, addr, hosts };
        dns.proc.wait_port(addr, Duration::from_secs(10));
        dns
    }

    /// `NAME` now has exactly `ips`.
    fn set(&self, ips: &[&str]) {
        let text: String = ips.iter().map(|ip| format!("{ip} {NAME}\n")).collect();
        let tmp = self.hosts.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write hosts");
        std::fs::rename(&tmp, &self.hosts).expect("rename hosts");
        // SAFETY: plain kill of our own child's pid.
        unsafe {
            libc::kill(self.proc.pid() as i32, libc::SIGHUP);
        }
    }
}

/// One pool `main` whose one node is `NAME`, probed through the simulator's control API
/// every 200 ms; `[dns]` asks `dns` only, TTLs held within 1..2 s.
fn config(dns: SocketAddr, port: u16) -> WeirConfig {
    WeirConfig::new(&[])
        .upstream("connect_timeout = \"1s\"")
        .upstream("first_byte_timeout = \"5s\"")
        .extra(&format!(
            "\n[[pool]]\nname = \"main\"\nnodes = [\"{NAME}:{port}\"]\nslow_start = \"0s\"\n\
             \n[pool.health]\nmethod = \"GET\"\npath = \"/_sim/stats\"\nexpect_status = 200\n\
             interval = \"200ms\"\ntimeout = \"150ms\"\n\
             \n[dns]\nnameservers = [\"{dns}\"]\nttl_min = \"1s\"\nttl_max = \"2s\"\n"
        ))
}

/// GET `bench/obj-<i>` with curl (SigV4): status and body.
fn get(weir: &Weir, i: usize, scratch: &Path) -> (u16, Vec<u8>) {
    let url = format!("{}/bench/obj-{i}", weir.endpoint());
    curl_status_body(curl_sigv4(), &url, scratch, Duration::from_secs(20))
}

/// GETs `bench/obj-<i>`, asserts a 200 with the right body, and returns which of `nodes`
/// served it (the one whose request counter moved).
fn get_ok(weir: &Weir, nodes: &[&SimNode], i: usize, scratch: &Path) -> usize {
    let before: Vec<u64> = nodes.iter().map(|n| n.stats().requests).collect();
    let (status, body) = get(weir, i % 4, scratch);
    assert_eq!(
        status,
        200,
        "GET obj-{i}: {}\n{}",
        String::from_utf8_lossy(&body),
        weir.log_tail()
    );
    let key = format!("bench/obj-{}", i % 4);
    assert_eq!(body.len() as u64, OBJECT_BYTES, "GET {key}: length");
    assert_eq!(
        sha256_hex(&body),
        synthetic_sha256(&key, OBJECT_BYTES),
        "GET {key}: the body"
    );
    let after: Vec<u64> = nodes.iter().map(|n| n.stats().requests).collect();
    let moved: Vec<usize> = (0..nodes.len()).filter(|&n| after[n] > before[n]).collect();
    assert!(
        !moved.is_empty(),
        "GET {key}: no node counted it: {before:?} -> {after:?}"
    );
    // A retry may have touched a dying node first; the last counter to move served.
    *moved.last().expect("one")
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// `/nodes` rows of `NAME`: (address, state), sorted.
fn named_nodes(weir: &Weir) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = weir
        .nodes()
        .iter()
        .filter(|n| n["name"].as_str() == Some(NAME))
        .map(|n| {
            (
                n["node"].as_str().unwrap_or("").to_string(),
                n["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn a_name_is_a_group_of_nodes_that_follows_dns() {
    let scratch = Scratch::new("dns");
    let dns = Dnsmasq::start(scratch.path());
    let port = weir_tests::ports::free_port();
    let at = |last: u8| SocketAddr::from(([127, 0, 0, last], port));
    let specs = weir_tests::sim::specs(&[SPEC]);
    let mut nodes =
        weir_bench::spawn_nodes_at(&[at(2), at(3), at(4)], &specs, &SimOptions::default())
            .expect("sim nodes on 127.0.0.2-4");
    let weir = Weir::start(&config(dns.addr, port), scratch.path());

    // (c) The name does not resolve yet: weir runs, answers 503 in S3's XML, lists no node.
    let (status, body) = get(&weir, 0, scratch.path());
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 503, "before the name resolves: {text}");
    assert!(
        text.contains("<Code>ServiceUnavailable</Code>") || text.contains("<Code>SlowDown</Code>"),
        "503 body: {text}"
    );
    assert!(named_nodes(&weir).is_empty(), "{:?}", weir.nodes());
    assert_eq!(weir.metric_sum("weir_dns_names_unresolved", |_| true), 1.0);

    // It resolves to two addresses: both become nodes, named, and serve.
    let resolved_at = Instant::now();
    dns.set(&["127.0.0.2", "127.0.0.3"]);
    let (_, took) = wait_for(
        "the name's two addresses to be nodes",
        Duration::from_secs(15),
        Duration::from_millis(50),
        || (named_nodes(&weir).len() == 2).then_some(()),
    );
    println!("DNS: name resolved; nodes listed {took:?} after the DNS change");
    assert_eq!(
        named_nodes(&weir),
        vec![
            (at(2).to_string(), "up".to_string()),
            (at(3).to_string(), "up".to_string())
        ]
    );
    let all: Vec<&SimNode> = nodes.iter().collect();
    let mut served = [0u32; 3];
    for i in 0..30 {
        served[get_ok(&weir, &all, i, scratch.path())] += 1;
    }
    println!("DNS: 30 GETs over the name's two addresses: {served:?} (.2, .3, .4)");
    assert!(
        served[0] > 0 && served[1] > 0,
        "both addresses serve: {served:?}"
    );
    assert_eq!(served[2], 0, "127.0.0.4 is not the name's: {served:?}");
    let _ = resolved_at;

    // (a) Each address has its own health: kill .2; .3 serves everything, no client error.
    nodes[0].shutdown();
    let mut served = [0u32; 3];
    for i in 0..20 {
        let all: Vec<&SimNode> = nodes.iter().collect();
        served[get_ok(&weir, &all, i, scratch.path())] += 1;
    }
    wait_for(
        "the killed address to be down, the other up",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            (named_nodes(&weir)
                == vec![
                    (at(2).to_string(), "down".to_string()),
                    (at(3).to_string(), "up".to_string()),
                ])
            .then_some(())
        },
    );
    println!("DNS: .2 killed: 20 GETs all 200, served {served:?}");
    assert_eq!(
        served[1], 20,
        "the live address served every GET: {served:?}"
    );

    // (b) The name moves to .4 (.3 stays alive but is no longer the name's): traffic
    // follows within the TTL bounds, with no reload and no failed request on the way.
    let moved_at = Instant::now();
    dns.set(&["127.0.0.4"]);
    let mut during = 0;
    let followed = loop {
        let all: Vec<&SimNode> = nodes.iter().collect();
        let by = get_ok(&weir, &all, during, scratch.path());
        during += 1;
        if by == 2 {
            break moved_at.elapsed();
        }
        assert!(
            moved_at.elapsed() < Duration::from_secs(10),
            "traffic did not follow the name to .4 within 10 s"
        );
    };
    println!("DNS: name moved to .4: traffic followed after {followed:?}, {during} GETs on the way, all 200");
    let before = nodes[1].stats().requests;
    let mut served = [0u32; 3];
    for i in 0..10 {
        let all: Vec<&SimNode> = nodes.iter().collect();
        served[get_ok(&weir, &all, i, scratch.path())] += 1;
    }
    assert_eq!(served[2], 10, "after the move .4 serves: {served:?}");
    assert_eq!(
        nodes[1].stats().requests,
        before,
        ".3 got requests after the move"
    );
    assert_eq!(
        named_nodes(&weir),
        vec![(at(4).to_string(), "up".to_string())]
    );
    // No reload did it; the resolver saw the changes.
    assert_eq!(weir.metric_sum("weir_config_reloads_total", |_| true), 0.0);
    let changed = weir.metric_sum("weir_dns_resolutions_total", |l| l.contains("changed"));
    assert!(
        changed >= 2.0,
        "weir_dns_resolutions_total{{outcome=\"changed\"}} = {changed}"
    );
    assert_eq!(weir.metric_sum("weir_dns_names_unresolved", |_| true), 0.0);
    let text = weir.metrics_text();
    let info = format!(
        "weir_node_name{{pool=\"main\",node=\"{}\",name=\"{NAME}\"}} 1",
        at(4)
    );
    assert!(text.contains(&info), "no {info} in\n{text}");
    assert!(
        weir.log_tail().contains("dns: node addresses changed"),
        "{}",
        weir.log_tail()
    );
}

#[test]
fn check_config_warns_about_a_name_that_does_not_resolve() {
    let scratch = Scratch::new("dns-check");
    // A name server nobody answers on: no live DNS at all.
    let silent = weir_tests::ports::free_addr();
    let text = format!(
        "[appliance]\nlisten = [\"127.0.0.1:1\"]\n\n[[pool]]\nname = \"main\"\n\
         nodes = [\"127.0.0.1:9000\", \"nowhere.weir.test:9000\"]\n\n\
         [dns]\nnameservers = [\"{silent}\"]\ntimeout = \"500ms\"\n"
    );
    let path = scratch.path().join("weir.toml");
    std::fs::write(&path, text).expect("write config");
    let started = Instant::now();
    let out = Command::new(weir_tests::tools::weir_bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("run weir check-config");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("DNS check-config took {:?}: {stderr}", started.elapsed());
    assert!(
        out.status.success(),
        "exit {:?}: {stdout}{stderr}",
        out.status
    );
    assert!(
        stderr.contains("pool[0].nodes[1]") && stderr.contains("nowhere.weir.test:9000"),
        "the warning names the key and the node: {stderr}"
    );
    assert!(stderr.contains("warning"), "{stderr}");
    assert!(stdout.contains("ok (1 pools, 1 nodes"), "{stdout}");
}
