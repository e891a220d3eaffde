//! Runtime node control (docs/operations.md, "Runtime control"), end to end: an operator
//! drains, disables, enables and weighs simulator nodes through the admin port while curl
//! GETs run through weir. What reaches each node is counted by the simulator itself
//! (probes go to its control API, which it does not count), bodies are SHA-256 checked,
//! and the override must survive a `POST /reload` and show in `/nodes` and `/metrics`.
//! One scenario at a time (a lock): 2 shared cores.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

use weir_bench::load::LoadConfig;
use weir_bench::SimNode;
use weir_tests::data::Scratch;
use weir_tests::sim;
use weir_tests::transfer::{synthetic_sha256, wait_for, BenchLoad, Transfer};
use weir_tests::weir::{PoolConfig, Weir, WeirConfig};
use weir_tests::{ports, weir};

const MIB: u64 = 1 << 20;
const KIB: u64 = 1 << 10;
/// The admin token of every test here.
const TOKEN: &str = "weir-node-control-test-token-0123";
/// Small objects the sequential GETs read.
const SMALL: &str = "bench/small-:64KiB:8";

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// weir (two cores: every change crosses the bus) over simulator nodes, with an admin
/// port behind [`TOKEN`].
struct Rig {
    weir: Weir,
    admin: SocketAddr,
    nodes: Vec<SimNode>,
    _scratch: Scratch,
}

/// The pool `main` of `addrs`, balanced by `balance` (docs/config.md).
fn config(addrs: &[SocketAddr], admin: SocketAddr, balance: &str) -> WeirConfig {
    WeirConfig::new(&[])
        .upstream("io_timeout = \"5s\"")
        .appliance(&format!("admin = \"{admin}\""))
        .appliance(&format!("admin_token = \"{TOKEN}\""))
        .pool(sim::control_probe(
            PoolConfig::new("main", addrs)
                .key(&format!("balance = \"{balance}\""))
                .health("interval = \"300ms\""),
        ))
}

impl Rig {
    fn start(name: &str, nodes: usize, objects: &[&str], balance: &str) -> Rig {
        let scratch = Scratch::new(name);
        let nodes = sim::start(nodes, objects);
        let admin = ports::free_addr();
        let weir = Weir::start(&config(&sim::addrs(&nodes), admin, balance), scratch.path());
        Rig {
            weir,
            admin,
            nodes,
            _scratch: scratch,
        }
    }

    fn addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].addr()
    }

    /// `POST path` on the admin port, with the token when `token` says so.
    fn post(&self, path: &str, token: Option<&str>) -> (u16, String) {
        post(self.admin, path, token)
    }

    /// `POST /nodes/<action>?pool=main&node=<node i><extra>` with the token; the answer
    /// must be 200 and is returned as JSON.
    fn control(&self, action: &str, i: usize, extra: &str) -> serde_json::Value {
        let path = format!("/nodes/{action}?pool=main&node={}{extra}", self.addr(i));
        let (status, body) = self.post(&path, Some(TOKEN));
        assert_eq!(status, 200, "POST {path}: {body}");
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("POST {path}: not JSON ({e}): {body}"))
    }

    /// `/nodes`' entry for node `i` (through the admin port, with the token).
    fn listed(&self, i: usize) -> serde_json::Value {
        let (status, body) = get(self.admin, "/nodes", Some(TOKEN));
        assert_eq!(status, 200, "GET /nodes: {body}");
        let nodes: Vec<serde_json::Value> = serde_json::from_str(&body).expect("/nodes JSON");
        let want = self.addr(i).to_string();
        nodes
            .into_iter()
            .find(|n| n["node"].as_str() == Some(want.as_str()))
            .unwrap_or_else(|| panic!("/nodes does not list {want}: {body}"))
    }

    /// Every node's request counter (the simulator's own count of what weir forwarded).
    fn counts(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.stats().requests).collect()
    }

    /// `n` sequential curl GETs of the small objects, bodies checked; what each node got
    /// meanwhile.
    fn sequential_gets(&self, n: usize) -> Vec<u64> {
        let before = self.counts();
        for i in 0..n {
            let key = format!("bench/small-{}", i % 8);
            let out = Transfer::get(&format!("{}/{key}", self.weir.endpoint()), None)
                .wait(Duration::from_secs(30));
            assert!(out.ok && out.status == 200, "GET {key}: {out:?}");
            assert_eq!(
                (out.sha256.as_str(), out.bytes),
                (synthetic_sha256(&key, 64 * KIB).as_str(), 64 * KIB),
                "GET {key}: body"
            );
        }
        let after = self.counts();
        after.iter().zip(&before).map(|(a, b)| a - b).collect()
    }
}

fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut bytes = Vec::new();
    let _ = conn.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: no status line in {head:?}"));
    (status, body.to_string())
}

fn post(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    request(addr, "POST", path, token)
}

fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    request(addr, "GET", path, token)
}

/// The error code of a JSON error answer.
fn error_code(body: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not a JSON error ({e}): {body}"));
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    v["error"].as_str().unwrap_or_default().to_string()
}

/// Draining the node that serves a 256 MiB GET: that GET finishes with every byte, no new
/// request reaches the node while 2 connections keep GETting, `/nodes` shows health up
/// and the override drained (who, when), `/metrics` counts it; enabling it brings requests
/// back.
#[test]
fn drain_under_load_finishes_in_flight_and_takes_nothing_new() {
    let _serial = serial();
    let rig = Rig::start("control-drain", 2, &["bench/big-:256MiB:1", SMALL], "p2c");
    let big_sha = synthetic_sha256("bench/big-0", 256 * MIB);
    // 40 MB/s: about 6.5 s for 256 MiB.
    let big = Transfer::get(
        &format!("{}/bench/big-0", rig.weir.endpoint()),
        Some(40_000_000),
    );
    let (flow, _) = wait_for(
        "the big GET to move 16 MiB",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || {
            rig.weir.flows().into_iter().find(|f| {
                f["target"].as_str() == Some("/bench/big-0")
                    && f["bytes_down"].as_u64().is_some_and(|b| b > 16 * MIB)
            })
        },
    );
    let serving: SocketAddr = flow["node"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("flow names no node: {flow}"));
    let victim = (0..2)
        .find(|&i| rig.addr(i) == serving)
        .expect("a sim node");
    let other = 1 - victim;

    let answer = rig.control("drain", victim, "");
    assert_eq!(answer["node"], serving.to_string(), "{answer}");
    assert_eq!(answer["admin"]["state"], "drain", "{answer}");
    assert_eq!(answer["admin"]["set_by"], "127.0.0.1", "{answer}");
    assert_eq!(answer["admin"]["token"], true, "{answer}");
    assert!(
        answer["admin"]["set_at_unix_seconds"]
            .as_f64()
            .unwrap_or(0.0)
            > 1.6e9,
        "{answer}"
    );
    assert_eq!(
        answer["state"], "up",
        "a drain is not a health verdict: {answer}"
    );

    let before = rig.counts();
    let load = BenchLoad::start(LoadConfig {
        connections: 2,
        duration: Duration::from_secs(2),
        ..LoadConfig::new(vec![rig.weir.addr()], sim::specs(&[SMALL]))
    });
    let (summary, _) = load.finish();
    let still_in_flight = !big.is_finished();
    let out = big.wait(Duration::from_secs(120));
    let after = rig.counts();
    let listed = rig.listed(victim);
    let metrics = rig.weir.metrics_text();
    println!(
        "DRAIN: drained {serving} while it served a 256 MiB GET (in flight after the load: \
         {still_in_flight}); node requests {before:?} -> {after:?}; load {} requests, errors \
         {}; /nodes: {listed}",
        summary.requests,
        summary.errors.total()
    );
    assert!(
        out.ok && out.status == 200,
        "the drained node's GET: {out:?}"
    );
    assert_eq!(
        (out.sha256.as_str(), out.bytes),
        (big_sha.as_str(), 256 * MIB),
        "the drained node's GET: body"
    );
    assert!(
        still_in_flight,
        "the big GET ended before the load did: nothing drained"
    );
    assert_eq!(
        summary.errors.total(),
        0,
        "load errors: {:?}",
        summary.errors
    );
    assert!(summary.requests > 0, "no load requests");
    assert_eq!(
        after[victim], before[victim],
        "requests reached the drained node"
    );
    assert_eq!(
        after[other] - before[other],
        summary.requests,
        "the other node got every request"
    );
    assert_eq!(listed["state"], "up", "{listed}");
    assert_eq!(listed["admin"]["state"], "drain", "{listed}");
    let series = |state: &str| {
        weir::metric_sum(&metrics, "weir_node_admin_state", |l| {
            l.contains(&format!("node=\"{serving}\"")) && l.contains(&format!("state=\"{state}\""))
        })
    };
    assert_eq!(
        (series("drain"), series("enabled")),
        (1.0, 0.0),
        "weir_node_admin_state"
    );

    let answer = rig.control("enable", victim, "");
    assert_eq!(answer["admin"]["state"], "enabled", "{answer}");
    let got = rig.sequential_gets(40);
    assert!(
        got[victim] > 0,
        "the enabled node got none of 40 GETs: {got:?}"
    );
    assert_eq!(got.iter().sum::<u64>(), 40, "{got:?}");
}

/// Disable and enable; weight 0 and a 1:3 split; the override survives a reload (one that
/// adds a node); the status page's own calls are these endpoints.
#[test]
fn disable_enable_weight_and_reload() {
    let _serial = serial();
    // Round robin: a node's weight is its share of the turns, so a 1:3 split is exact per
    // core.
    let rig = Rig::start("control-weights", 3, &[SMALL], "round_robin");
    let (a, b) = (0, 1);
    // Start on two nodes; the reload below adds the third.
    rig.weir.write_config(&config(
        &[rig.addr(a), rig.addr(b)],
        rig.admin,
        "round_robin",
    ));
    let (status, body) = rig.post("/reload", Some(TOKEN));
    assert_eq!(status, 200, "reload to two nodes: {body}");

    let answer = rig.control("disable", a, "");
    assert_eq!(answer["admin"]["state"], "disabled", "{answer}");
    let got = rig.sequential_gets(20);
    assert_eq!((got[a], got[b]), (0, 20), "disabled: {got:?}");
    // Probes go on: a disabled node's health is still known (and still up).
    assert_eq!(rig.listed(a)["state"], "up");

    rig.control("enable", a, "");
    let got = rig.sequential_gets(40);
    assert!(got[a] >= 10 && got[a] + got[b] == 40, "enabled: {got:?}");

    let answer = rig.control("weight", a, "&weight=0");
    assert_eq!(answer["admin"]["weight"], 0, "{answer}");
    assert_eq!(answer["admin"]["state"], "enabled", "{answer}");
    let got = rig.sequential_gets(20);
    assert_eq!((got[a], got[b]), (0, 20), "weight 0: {got:?}");

    rig.control("weight", a, "&weight=1");
    let answer = rig.control("weight", b, "&weight=75%25");
    assert_eq!(answer["admin"]["weight"], 75, "{answer}");
    rig.control("weight", b, "&weight=3");
    let got = rig.sequential_gets(80);
    let share = got[b] as f64 / 80.0;
    println!("WEIGHT 1:3 over 80 sequential GETs: {got:?} (heavier share {share:.2})");
    assert_eq!(got[a] + got[b], 80, "{got:?}");
    // 60:20 when both cores take their turns in step; each core's own rounds are exact, so
    // their interleaving moves at most a few GETs (an even split, 40:40, fails this).
    assert!(
        (0.68..=0.82).contains(&share),
        "1:3 weights, heavier node got {share:.2}: {got:?}"
    );

    // A reload that adds node 2 keeps both overrides (matched by pool and address).
    rig.control("drain", a, "");
    let set_at = rig.listed(a)["admin"]["set_at_unix_seconds"].clone();
    rig.weir
        .write_config(&config(&sim::addrs(&rig.nodes), rig.admin, "round_robin"));
    let (status, body) = rig.post("/reload", Some(TOKEN));
    assert_eq!(status, 200, "reload adding a node: {body}");
    let listed = rig.listed(a);
    assert_eq!(
        listed["admin"]["state"], "drain",
        "after the reload: {listed}"
    );
    assert_eq!(listed["admin"]["weight"], 1, "after the reload: {listed}");
    assert_eq!(
        listed["admin"]["set_at_unix_seconds"], set_at,
        "who/when kept: {listed}"
    );
    assert_eq!(rig.listed(b)["admin"]["weight"], 3);
    assert_eq!(rig.listed(2)["admin"]["set_by"], serde_json::Value::Null);
    let got = rig.sequential_gets(30);
    assert_eq!(got[a], 0, "the drained node after the reload: {got:?}");
    assert_eq!(got.iter().sum::<u64>(), 30, "{got:?}");
    // status.json reports the override too (the status page's source).
    let (status, body) = get(rig.admin, "/status.json", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).expect("status.json");
    let want = rig.addr(a).to_string();
    let row = page["nodes"]["rows"]
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|r| r["node"].as_str() == Some(want.as_str()))
        })
        .unwrap_or_else(|| panic!("status.json lists no {want}: {body}"));
    assert_eq!(row["admin"]["state"], "drain", "{row}");
}

/// Bad calls: an unknown node or pool is a 404 JSON error, a bad value or key a 400 JSON
/// error naming it; no token or a wrong one a 401, as every admin endpoint; the metrics
/// port does not take changes when an admin port exists; GET is a 405. None of them
/// changes anything.
#[test]
fn bad_calls_are_refused_and_change_nothing() {
    let _serial = serial();
    let rig = Rig::start("control-errors", 1, &[SMALL], "p2c");
    let node = rig.addr(0);
    let cases: Vec<(String, u16, &str)> = vec![
        (
            "/nodes/drain?pool=main&node=127.0.0.1:1".into(),
            404,
            "unknown_node",
        ),
        (
            format!("/nodes/drain?pool=other&node={node}"),
            404,
            "unknown_node",
        ),
        (
            format!("/nodes/weight?pool=main&node={node}&weight=257"),
            400,
            "bad_request",
        ),
        (
            format!("/nodes/weight?pool=main&node={node}&weight=-1"),
            400,
            "bad_request",
        ),
        (
            format!("/nodes/weight?pool=main&node={node}"),
            400,
            "bad_request",
        ),
        (
            format!("/nodes/drain?pool=main&node={node}&weight=3"),
            400,
            "bad_request",
        ),
        (
            format!("/nodes/drain?pool=main&node={node}&pool=main"),
            400,
            "bad_request",
        ),
        (
            "/nodes/drain?pool=main&node=localhost:9000".into(),
            400,
            "bad_request",
        ),
        ("/nodes/drain".into(), 400, "bad_request"),
    ];
    for (path, want, code) in &cases {
        let (status, body) = rig.post(path, Some(TOKEN));
        assert_eq!(status, *want, "POST {path}: {body}");
        assert_eq!(error_code(&body), *code, "POST {path}: {body}");
    }
    let path = format!("/nodes/drain?pool=main&node={node}");
    assert_eq!(rig.post(&path, None).0, 401, "no token");
    assert_eq!(
        rig.post(&path, Some("wrong-token-wrong-token-wrong-00")).0,
        401,
        "wrong token"
    );
    assert_eq!(
        post(rig.weir.metrics_addr(), &path, None).0,
        403,
        "metrics port"
    );
    assert_eq!(get(rig.admin, &path, Some(TOKEN)).0, 405, "GET");
    let listed = rig.listed(0);
    assert_eq!(listed["admin"]["state"], "enabled", "{listed}");
    assert_eq!(
        listed["admin"]["set_by"],
        serde_json::Value::Null,
        "{listed}"
    );
    let got = rig.sequential_gets(5);
    assert_eq!(got, vec![5], "the node still serves");
}
