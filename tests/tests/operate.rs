//! Operating weir (`docs/operations.md`), end to end: live reload under real transfers
//! (twenty of them, then one that removes a node, then invalid ones), `/flows` and the
//! access log checked against what the test did, and SIGTERM draining a transfer. Every
//! body is SHA-256 checked; counts are compared for equality, not presence.
//!
//! Storage: SeaweedFS (three S3 gateways over one filer, so a PUT through any gateway reads
//! back through every other) for the reload storm, and the bench simulator (exact per-node
//! request counters) for the rest. One scenario at a time (a lock): 2 shared cores.

use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use weir_bench::load::LoadConfig;
use weir_bench::SimNode;
use weir_tests::clients::{assert_checks, curl_sigv4};
use weir_tests::data::{self, Scratch};
use weir_tests::nodes::{self, Seaweed};
use weir_tests::sim;
use weir_tests::transfer::{synthetic_sha256, wait_for, BenchLoad, PyLoad, Transfer};
use weir_tests::weir::{http_request, log_served_by, log_tried, PoolConfig, Weir, WeirConfig};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn reloads(weir: &Weir, outcome: &str) -> f64 {
    weir.metric_sum("weir_config_reloads_total", |l| {
        l.contains(&format!("outcome=\"{outcome}\""))
    })
}

/// The live flow whose target is `target`, if any.
fn flow_for(weir: &Weir, target: &str) -> Option<serde_json::Value> {
    weir.flows()
        .into_iter()
        .find(|f| f["target"].as_str() == Some(target))
}

/// Waits until the flow for `target` has moved more than `bytes` (either direction);
/// returns it.
fn flow_past(weir: &Weir, target: &str, bytes: u64) -> serde_json::Value {
    wait_for(
        &format!("{target} to move {bytes} bytes"),
        Duration::from_secs(60),
        Duration::from_millis(20),
        || {
            let f = flow_for(weir, target)?;
            let moved = f["bytes_down"].as_u64()? + f["bytes_up"].as_u64()?;
            (moved > bytes).then_some(f)
        },
    )
    .0
}

/// weir over simulator nodes (probed through the control API, so node request counters
/// are exact).
fn sim_config(nodes: &[SocketAddr]) -> WeirConfig {
    WeirConfig::new(&[])
        .upstream("io_timeout = \"5s\"")
        .pool(sim::control_probe(
            PoolConfig::new("main", nodes).health("interval = \"300ms\""),
        ))
}

/// GETs `/<full_key>` of a synthetic object through weir (curl, optionally rate-limited).
fn get_synthetic(weir: &Weir, full_key: &str, rate: Option<u64>) -> Transfer {
    Transfer::get(&format!("{}/{full_key}", weir.endpoint()), rate)
}

/// Twenty reloads (alternating between two valid configs: all three SeaweedFS gateways, or
/// two of them with other upstream settings) while a 1 GiB GET, a 1 GiB PUT (curl, 80 MB/s
/// each, so both span every reload) and boto3 GET/PUT threads run through weir. Zero client
/// errors, every hash right, `weir_config_reloads_total{outcome="committed"}` = 20, the big
/// transfers finish on the config they started with and later requests run on the last.
#[test]
fn twenty_reloads_during_big_gets_and_puts() {
    let _serial = serial();
    let scratch = Scratch::new("operate-reloads");
    let mut sw = Seaweed::start(scratch.path(), 3);
    sw.create_bucket("ops");
    let get_src = scratch.path().join("get.bin");
    let get_sha = data::write_pattern_file(&get_src, 11, GIB);
    let seeded = Transfer::put_file(&format!("{}/ops/big-get", sw.endpoint(0)), &get_src, None)
        .wait(Duration::from_secs(300));
    assert!(seeded.ok, "seed 1 GiB: {seeded:?}");
    std::fs::remove_file(&get_src).expect("remove get source");
    let put_src = scratch.path().join("put.bin");
    let put_sha = data::write_pattern_file(&put_src, 12, GIB);
    let objects = data::seed_objects(&scratch.sub("objects"), &[MIB; 4]);
    let manifest = nodes::seed(&[sw.endpoint(0)], "ops", &objects, scratch.path());

    let gateways = sw.gateway_addrs();
    let pool = |nodes: &[SocketAddr]| {
        PoolConfig::new("main", nodes)
            .health("preset = \"seaweedfs\"")
            .health("interval = \"500ms\"")
    };
    let all_three = WeirConfig::new(&[])
        .upstream("io_timeout = \"10s\"")
        .pool(pool(&gateways));
    let two = WeirConfig::new(&[])
        .upstream("io_timeout = \"20s\"")
        .upstream("idle_connections_per_node_max = 8")
        .upstream("retry_ratio = 0.3")
        .pool(pool(&gateways[..2]).key("slow_start = \"1s\""));
    let mut weir = Weir::start_logged(&all_three, scratch.path());

    let load = PyLoad::start(
        &[
            "--endpoint".into(),
            weir.endpoint(),
            "--bucket".into(),
            "ops".into(),
            "--manifest".into(),
            manifest.to_string_lossy().into_owned(),
            "--threads".into(),
            "2".into(),
            "--put-threads".into(),
            "1".into(),
            "--put-size".into(),
            MIB.to_string(),
            "--put-prefix".into(),
            "reload-put/".into(),
        ],
        scratch.path(),
    );
    // The PUT first (SeaweedFS writes slower than it reads), then the GET; both are well
    // under way before the first reload and take longer than all twenty.
    let big_put = Transfer::put_file(
        &format!("{}/ops/big-put", weir.endpoint()),
        &put_src,
        Some(80_000_000),
    );
    flow_past(&weir, "/ops/big-put", 32 * MIB);
    let big_get = Transfer::get(
        &format!("{}/ops/big-get", weir.endpoint()),
        Some(50_000_000),
    );
    flow_past(&weir, "/ops/big-get", 32 * MIB);

    let started = Instant::now();
    let mut refused = Vec::new();
    for i in 0..20 {
        weir.write_config(if i % 2 == 0 { &two } else { &all_three });
        let (status, body) = weir.reload();
        if status != 200 {
            refused.push(format!("reload {i}: {status} {body}"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let reload_secs = started.elapsed().as_secs_f64();
    let in_flight_after = (!big_get.is_finished(), !big_put.is_finished());
    let got = big_get.wait(Duration::from_secs(180));
    let put = big_put.wait(Duration::from_secs(180));
    let report = load.stop();
    weir.assert_running();
    std::fs::remove_file(&put_src).expect("remove put source");
    let readback = Transfer::get(&format!("{}/ops/big-put", weir.endpoint()), None)
        .wait(Duration::from_secs(180));
    let (committed, rejected) = (reloads(&weir, "committed"), reloads(&weir, "rejected"));
    println!(
        "RELOAD storm: 20 reloads in {reload_secs:.1}s; big GET/PUT still in flight after the \
         last: {in_flight_after:?}; GET {:.1}s, PUT {:.1}s; boto3 {} GETs, {} PUTs; \
         committed {committed}, rejected {rejected}",
        got.secs, put.secs, report["info"]["get_requests"], report["info"]["put_requests"]
    );
    assert!(refused.is_empty(), "reloads refused: {refused:?}");
    assert_eq!(
        in_flight_after,
        (true, true),
        "the big GET and PUT should span all twenty reloads"
    );
    assert!(got.ok, "1 GiB GET: {got:?}");
    assert_eq!(
        (got.sha256.as_str(), got.bytes),
        (get_sha.as_str(), GIB),
        "1 GiB GET body"
    );
    assert!(put.ok && put.status == 200, "1 GiB PUT: {put:?}");
    assert!(readback.ok, "read back the 1 GiB PUT: {readback:?}");
    assert_eq!(
        (readback.sha256.as_str(), readback.bytes),
        (put_sha.as_str(), GIB),
        "the 1 GiB PUT as stored"
    );
    assert_checks(
        "boto3 during reloads",
        &report,
        &[
            "get_errors",
            "get_bad_bodies",
            "put_errors",
            "put_bad_bodies",
        ],
    );
    assert_eq!(
        (committed, rejected),
        (20.0, 0.0),
        "weir_config_reloads_total"
    );

    let log = weir.access_log();
    let line = |target: &str| {
        log.iter()
            .find(|l| l["target"].as_str() == Some(target))
            .unwrap_or_else(|| panic!("no access-log line for {target}"))
            .clone()
    };
    for target in ["/ops/big-get", "/ops/big-put"] {
        let l = line(target);
        assert_eq!(l["status"], 200, "{l}");
        assert_eq!(
            l["epoch"], 0,
            "a transfer started before the reloads runs on epoch 0: {l}"
        );
    }
    assert_eq!(line("/ops/big-get")["bytes_down"].as_u64(), Some(GIB));
    assert_eq!(line("/ops/big-put")["bytes_up"].as_u64(), Some(GIB));
    let last_epoch = log.iter().filter_map(|l| l["epoch"].as_u64()).max();
    assert_eq!(
        last_epoch,
        Some(20),
        "requests after the last reload run on epoch 20"
    );
    let bad: Vec<_> = log
        .iter()
        .filter(|l| !matches!(l["status"].as_u64(), Some(200 | 204)))
        .collect();
    assert!(bad.is_empty(), "non-2xx answers: {bad:?}");
}

/// A reload that removes the node serving a large GET: that transfer finishes (same
/// bytes, on the config it started with), and no new request goes to the removed node —
/// its request counter does not move while 2 verifying connections keep GETting.
#[test]
fn reload_removing_a_node_drains_it() {
    let _serial = serial();
    let scratch = Scratch::new("operate-drain");
    let nodes = sim::start(3, &["bench/big-:256MiB:1", "bench/small-:64KiB:8"]);
    let addrs = sim::addrs(&nodes);
    let weir = Weir::start_logged(&sim_config(&addrs), scratch.path());
    let big_sha = synthetic_sha256("bench/big-0", 256 * MIB);
    // 40 MB/s: about 6.5 s for 256 MiB.
    let big = get_synthetic(&weir, "bench/big-0", Some(40_000_000));
    let flow = flow_past(&weir, "/bench/big-0", 16 * MIB);
    let serving: SocketAddr = flow["node"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("flow names no node: {flow}"));
    let victim = addrs
        .iter()
        .position(|a| *a == serving)
        .expect("a sim node");
    let keep: Vec<SocketAddr> = addrs.iter().copied().filter(|a| *a != serving).collect();
    let before: Vec<u64> = nodes.iter().map(|n| n.stats().requests).collect();

    weir.write_config(&sim_config(&keep));
    let (status, body) = weir.reload();
    assert_eq!(status, 200, "reload without {serving}: {body}");
    let load = BenchLoad::start(LoadConfig {
        connections: 2,
        duration: Duration::from_secs(2),
        ..LoadConfig::new(vec![weir.addr()], sim::specs(&["bench/small-:64KiB:8"]))
    });
    let (summary, _) = load.finish();
    let still_in_flight = !big.is_finished();
    let out = big.wait(Duration::from_secs(120));
    let after: Vec<u64> = nodes.iter().map(|n| n.stats().requests).collect();
    let listed: Vec<String> = weir
        .nodes()
        .iter()
        .filter_map(|n| n["node"].as_str().map(str::to_string))
        .collect();
    println!(
        "RELOAD drain: removed {serving} while it served a 256 MiB GET (in flight after the \
         load: {still_in_flight}); node requests {before:?} -> {after:?}; load {} requests, \
         errors {}; /nodes lists {listed:?}",
        summary.requests,
        summary.errors.total()
    );
    assert!(out.ok, "the draining GET: {out:?}");
    assert_eq!(
        (out.sha256.as_str(), out.bytes),
        (big_sha.as_str(), 256 * MIB),
        "the draining GET's body"
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
        "requests reached the removed node after the reload"
    );
    let others: u64 = (0..3)
        .filter(|&i| i != victim)
        .map(|i| after[i] - before[i])
        .sum();
    assert_eq!(
        others, summary.requests,
        "the remaining nodes got every request"
    );
    let log = weir.access_log();
    let big_line = log
        .iter()
        .find(|l| l["target"].as_str() == Some("/bench/big-0"))
        .expect("access-log line of the big GET");
    assert_eq!(big_line["epoch"], 0, "{big_line}");
    assert_eq!(log_served_by(big_line), Some(serving.to_string().as_str()));
    let name = serving.to_string();
    let strays: Vec<_> = log
        .iter()
        .filter(|l| l["epoch"] == 1 && log_tried(l, &name))
        .collect();
    assert!(
        strays.is_empty(),
        "epoch-1 requests tried the removed node: {strays:?}"
    );
    // (What /nodes lists after a reload is checked by the tests below, with node sets
    // chosen so a stale list cannot pass by chance.)
}

/// A reload that adds nodes (three where weir started with one), then one that leaves a
/// single different node: every committed config is what `/nodes` and the `weir_node_*`
/// series show, the new nodes take requests, and scraping never takes weir down.
#[test]
fn reload_adding_nodes_shows_them_in_nodes_and_metrics() {
    let _serial = serial();
    let scratch = Scratch::new("operate-grow");
    let nodes = sim::start(3, &["bench/small-:64KiB:8"]);
    let addrs = sim::addrs(&nodes);
    let mut weir = Weir::start(&sim_config(&addrs[..1]), scratch.path());
    let listed = |weir: &Weir| -> Vec<String> {
        let mut v: Vec<String> = weir
            .nodes()
            .iter()
            .filter_map(|n| n["node"].as_str().map(str::to_string))
            .collect();
        v.sort();
        v
    };
    let up_series = |weir: &Weir| -> Vec<String> {
        let mut v: Vec<String> = weir
            .metrics_text()
            .lines()
            .filter(|l| l.starts_with("weir_node_state{") && l.contains("state=\"up\""))
            .filter_map(|l| {
                l.split("node=\"")
                    .nth(1)?
                    .split('"')
                    .next()
                    .map(str::to_string)
            })
            .collect();
        v.sort();
        v
    };
    let names = |a: &[SocketAddr]| {
        let mut v: Vec<String> = a.iter().map(|a| a.to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(listed(&weir), names(&addrs[..1]));

    weir.write_config(&sim_config(&addrs));
    let (status, body) = weir.reload();
    assert_eq!(status, 200, "{body}");
    let grown = http_request(weir.metrics_addr(), "GET", "/nodes");
    std::thread::sleep(Duration::from_millis(200));
    weir.assert_running();
    println!("RELOAD grow: /nodes -> {grown:?}");
    assert_eq!(
        listed(&weir),
        names(&addrs),
        "/nodes after growing to 3 nodes"
    );
    assert_eq!(
        up_series(&weir),
        names(&addrs),
        "weir_node_state after growing"
    );
    let before: Vec<u64> = nodes.iter().map(|n| n.stats().requests).collect();
    let (summary, _) = BenchLoad::start(LoadConfig {
        connections: 3,
        duration: Duration::from_secs(1),
        ..LoadConfig::new(vec![weir.addr()], sim::specs(&["bench/small-:64KiB:8"]))
    })
    .finish();
    let after: Vec<u64> = nodes.iter().map(|n| n.stats().requests).collect();
    assert_eq!(summary.errors.total(), 0, "{:?}", summary.errors);
    assert!(
        (0..3).all(|i| after[i] > before[i]),
        "every node of the new config serves: {before:?} -> {after:?}"
    );

    weir.write_config(&sim_config(&addrs[2..]));
    let (status, body) = weir.reload();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        listed(&weir),
        names(&addrs[2..]),
        "/nodes after shrinking to the third node"
    );
    assert_eq!(
        up_series(&weir),
        names(&addrs[2..]),
        "weir_node_state after shrinking"
    );
    weir.assert_running();
}

/// Invalid reloads are rejected with the file, line and key named — an unknown key and a
/// bad value through `POST /reload`, a bad duration through SIGHUP — the rejected counter
/// says so, and the old config keeps serving (weir runs on the first node only; every bad
/// file would move it to the second, which gets no request). The same change in a good
/// file then commits, and the second node serves.
#[test]
fn invalid_reload_is_rejected_and_the_old_config_keeps_serving() {
    let _serial = serial();
    let scratch = Scratch::new("operate-invalid");
    let nodes = sim::start(2, &["bench/small-:64KiB:8"]);
    let addrs = sim::addrs(&nodes);
    let good = sim_config(&addrs[..1]).upstream("retry_ratio = 0.2");
    let mut weir = Weir::start(&good, scratch.path());
    let only_second = sim_config(&addrs[1..]).upstream("retry_ratio = 0.2");
    let base = weir.render(&only_second);

    // Each bad file: the one-node config with one bad line, after `after`.
    let with_line = |after: &str, bad: &str| -> (String, usize) {
        let mut lines: Vec<&str> = base.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.trim() == after)
            .unwrap_or_else(|| panic!("no line {after:?} in\n{base}"))
            + 1;
        lines.insert(at, bad);
        (lines.join("\n") + "\n", at + 1)
    };
    let cases = [
        ("[upstream]", "retry_ratoi = 0.5", "upstream.retry_ratoi"),
        ("[upstream]", "attempts_max = 0", "upstream.attempts_max"),
    ];
    let mut rejected_expected = 0.0;
    for (after, bad, key) in cases {
        let (text, line) = with_line(after, bad);
        weir.write_config_text(&text);
        let (status, body) = weir.reload();
        rejected_expected += 1.0;
        println!("RELOAD invalid {bad:?}: {status} {}", body.trim());
        assert_eq!(status, 400, "reload of a file with {bad:?}: {body}");
        let want = format!("weir.toml:{line}: {key}");
        assert!(
            body.contains(&want),
            "reply to {bad:?} should name {want:?}: {body}"
        );
        assert_eq!(reloads(&weir, "rejected"), rejected_expected);
    }
    // SIGHUP with a bad duration: rejected too (the log says why).
    let (text, line) = with_line("[pool.health]", "timeout = \"5\"");
    weir.write_config_text(&text);
    weir.signal(libc::SIGHUP);
    rejected_expected += 1.0;
    wait_for(
        "the SIGHUP reload to be counted as rejected",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || (reloads(&weir, "rejected") == rejected_expected).then_some(()),
    );
    let want = format!("weir.toml:{line}: pool[0].health.timeout");
    assert!(
        weir.log_text().contains(&want),
        "weir's log should name {want:?}:\n{}",
        weir.log_tail()
    );
    assert_eq!(reloads(&weir, "committed"), 0.0);

    // The old config still serves: every request on the first node.
    let before: Vec<u64> = nodes.iter().map(|n| n.stats().requests).collect();
    let (summary, _) = BenchLoad::start(LoadConfig {
        connections: 2,
        duration: Duration::from_secs(2),
        ..LoadConfig::new(vec![weir.addr()], sim::specs(&["bench/small-:64KiB:8"]))
    })
    .finish();
    let after: Vec<u64> = nodes.iter().map(|n| n.stats().requests).collect();
    println!(
        "RELOAD invalid: old config served {} requests, node requests {before:?} -> {after:?}",
        summary.requests
    );
    assert_eq!(summary.errors.total(), 0, "{:?}", summary.errors);
    assert_eq!(
        (after[0] - before[0], after[1] - before[1]),
        (summary.requests, 0),
        "requests per node under the old config (first node only)"
    );
    // The same change, valid, commits.
    weir.write_config(&only_second);
    let (status, body) = weir.reload();
    assert_eq!(status, 200, "{body}");
    assert_eq!(reloads(&weir, "committed"), 1.0);
    assert_eq!(reloads(&weir, "rejected"), rejected_expected);
    let before: Vec<u64> = nodes.iter().map(|n| n.stats().requests).collect();
    let (summary, _) = BenchLoad::start(LoadConfig {
        connections: 2,
        duration: Duration::from_secs(1),
        ..LoadConfig::new(vec![weir.addr()], sim::specs(&["bench/small-:64KiB:8"]))
    })
    .finish();
    let after: Vec<u64> = nodes.iter().map(|n| n.stats().requests).collect();
    assert_eq!(summary.errors.total(), 0, "{:?}", summary.errors);
    assert_eq!(
        (after[0] - before[0], after[1] - before[1]),
        (0, summary.requests),
        "requests per node under the new config (second node only)"
    );
    // What the admin port shows follows the committed config: one node, the second.
    let listed: Vec<String> = weir
        .nodes()
        .iter()
        .filter_map(|n| n["node"].as_str().map(str::to_string))
        .collect();
    let state_series: Vec<String> = weir
        .metrics_text()
        .lines()
        .filter(|l| l.starts_with("weir_node_state{") && l.contains("state=\"up\""))
        .map(str::to_string)
        .collect();
    println!("RELOAD after the good reload: /nodes {listed:?}; {state_series:?}");
    assert_eq!(
        listed,
        vec![addrs[1].to_string()],
        "/nodes after the reload"
    );
    assert!(
        state_series.len() == 1 && state_series[0].contains(&format!("node=\"{}\"", addrs[1])),
        "weir_node_state after the reload: {state_series:?}"
    );
    weir.assert_running();
}

/// `/flows` shows a live 256 MiB GET with its byte count growing between two polls; then
/// the access log holds exactly one JSON line per request the test made, each with the
/// status the client saw, the bytes, and the node; `weir_requests_total` counts the same.
#[test]
fn flows_show_a_live_transfer_and_the_access_log_has_one_line_per_request() {
    let _serial = serial();
    let scratch = Scratch::new("operate-flows");
    let nodes = sim::start(2, &["bench/big-:256MiB:1", "bench/small-:64KiB:4"]);
    let addrs = sim::addrs(&nodes);
    let weir = Weir::start_logged(&sim_config(&addrs), scratch.path());
    let big = get_synthetic(&weir, "bench/big-0", Some(40_000_000));
    let first = flow_past(&weir, "/bench/big-0", MIB);
    std::thread::sleep(Duration::from_secs(1));
    let second = flow_for(&weir, "/bench/big-0").expect("the flow is still live");
    let out = big.wait(Duration::from_secs(120));
    println!("FLOWS first poll {first}\nFLOWS second poll {second}");
    assert!(out.ok, "{out:?}");
    assert_eq!(
        (out.sha256, out.bytes),
        (synthetic_sha256("bench/big-0", 256 * MIB), 256 * MIB)
    );
    assert_eq!(first["request_id"], second["request_id"], "the same flow");
    let (b1, b2) = (
        first["bytes_down"].as_u64().unwrap_or(0),
        second["bytes_down"].as_u64().unwrap_or(0),
    );
    assert!(
        b2 >= b1 + 10 * MIB,
        "bytes_down {b1} -> {b2} in 1 s at 40 MB/s"
    );
    assert!(second["age_seconds"].as_f64() > first["age_seconds"].as_f64());
    assert_eq!(second["method"], "GET");
    assert_eq!(second["bucket"], "bench");
    let node = second["node"].as_str().unwrap_or("");
    assert!(
        addrs.iter().any(|a| a.to_string() == node),
        "flow node {node}"
    );
    wait_for(
        "the big GET to leave /flows",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || flow_for(&weir, "/bench/big-0").is_none().then_some(()),
    );

    // Requests with known answers.
    struct Known<'a> {
        method: &'a str,
        target: &'a str,
        args: Vec<&'a str>,
        status: u64,
        /// Body bytes to the client (`None`: an error body of some length).
        down: Option<u64>,
        up: u64,
    }
    let put_body = scratch.path().join("put-body");
    std::fs::write(&put_body, vec![7u8; 1000]).expect("write put body");
    let put_arg = put_body.to_string_lossy().into_owned();
    let get = |target, status, down| Known {
        method: "GET",
        target,
        args: vec![],
        status,
        down,
        up: 0,
    };
    let requests = vec![
        get("/bench/small-0", 200, Some(64 * 1024)),
        get("/bench/small-1", 200, Some(64 * 1024)),
        get("/bench/small-2", 200, Some(64 * 1024)),
        Known {
            method: "HEAD",
            target: "/bench/small-3",
            args: vec!["-I"],
            status: 200,
            down: Some(0),
            up: 0,
        },
        get("/bench/missing", 404, None),
        Known {
            method: "PUT",
            target: "/bench/put-0",
            args: vec!["-T", &put_arg],
            status: 200,
            down: None,
            up: 1000,
        },
    ];
    for r in &requests {
        let mut cmd = curl_sigv4();
        cmd.args(["-o", "/dev/null", "-w", "%{http_code}"])
            .args(&r.args)
            .arg(format!("{}{}", weir.endpoint(), r.target));
        let got = weir_tests::clients::output(&mut cmd, Duration::from_secs(30));
        let code = String::from_utf8_lossy(&got.stdout).trim().to_string();
        assert_eq!(code, r.status.to_string(), "{} {}", r.method, r.target);
    }
    let total = requests.len() + 1;
    let (log, _) = wait_for(
        "the access log to hold every request",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let log = weir.access_log();
            (log.len() >= total).then_some(log)
        },
    );
    std::thread::sleep(Duration::from_millis(300));
    let log_again = weir.access_log();
    assert_eq!(log_again.len(), total, "one line per request: {log:#?}");
    let node_names: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let big_line = log
        .iter()
        .find(|l| l["target"] == "/bench/big-0")
        .expect("line of the big GET");
    assert_eq!(big_line["status"], 200);
    assert_eq!(big_line["bytes_down"].as_u64(), Some(256 * MIB));
    assert_eq!(big_line["request_id"], first["request_id"]);
    for r in &requests {
        let l = log
            .iter()
            .find(|l| l["target"].as_str() == Some(r.target) && l["method"] == r.method)
            .unwrap_or_else(|| panic!("no line for {} {}: {log:#?}", r.method, r.target));
        assert_eq!(l["status"].as_u64(), Some(r.status), "{l}");
        match r.down {
            Some(down) => assert_eq!(l["bytes_down"].as_u64(), Some(down), "{l}"),
            None if r.status >= 400 => {
                assert!(l["bytes_down"].as_u64() > Some(0), "error body bytes: {l}")
            }
            None => {}
        }
        assert_eq!(l["bytes_up"].as_u64(), Some(r.up), "{l}");
        let served = log_served_by(l).unwrap_or("");
        assert!(node_names.iter().any(|n| n == served), "node of {l}");
        assert!(l["duration_seconds"].as_f64().is_some(), "{l}");
    }
    let by_class = |class: &str| {
        weir.metric_sum("weir_requests_total", |l| {
            l.contains(&format!("status=\"{class}\""))
        })
    };
    assert_eq!(
        (by_class("2xx"), by_class("4xx"), by_class("5xx")),
        (total as f64 - 1.0, 1.0, 0.0),
        "weir_requests_total by status class"
    );
}

/// SIGTERM during a 256 MiB GET: weir stops accepting at once (new connections are
/// refused), the transfer completes with the right bytes, and weir exits 0.
#[test]
fn sigterm_drains_the_transfer_in_flight_and_exits_0() {
    let _serial = serial();
    let scratch = Scratch::new("operate-sigterm");
    let nodes: Vec<SimNode> = sim::start(2, &["bench/big-:256MiB:1"]);
    // No grace: refused at once (the grace is tests/tests/drain.rs's).
    let cfg = sim_config(&sim::addrs(&nodes)).appliance("drain_grace = \"0s\"");
    let mut weir = Weir::start(&cfg, scratch.path());
    let big = get_synthetic(&weir, "bench/big-0", Some(40_000_000));
    flow_past(&weir, "/bench/big-0", 32 * MIB);
    let term_at = Instant::now();
    weir.signal(libc::SIGTERM);
    let (_, refused_after) = wait_for(
        "new connections to be refused",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || {
            TcpStream::connect_timeout(&weir.addr(), Duration::from_millis(200))
                .is_err()
                .then_some(())
        },
    );
    assert!(
        weir.wait_exit(Duration::ZERO).is_none(),
        "weir exited with a transfer in flight"
    );
    let out = big.wait(Duration::from_secs(120));
    let done_at = Instant::now();
    let status = weir.wait_exit(Duration::from_secs(35)).unwrap_or_else(|| {
        panic!(
            "weir still running 35 s after the transfer ended:\n{}",
            weir.log_tail()
        )
    });
    println!(
        "SIGTERM: refused new connections after {:.3}s; transfer done {:.1}s after SIGTERM; \
         exit ({status}) {:.3}s after that",
        refused_after.as_secs_f64(),
        (done_at - term_at).as_secs_f64(),
        done_at.elapsed().as_secs_f64()
    );
    assert!(out.ok, "the transfer in flight: {out:?}");
    assert_eq!(
        (out.sha256, out.bytes),
        (synthetic_sha256("bench/big-0", 256 * MIB), 256 * MIB)
    );
    assert_eq!(
        status.code(),
        Some(0),
        "exit status; log:\n{}",
        weir.log_tail()
    );
}
