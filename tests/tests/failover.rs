//! Failover, end to end (docs/design.md, "Failure is a normal state"): a node dying,
//! freezing, resetting, stalling or throttling under a real transfer, and a whole priority
//! group going away, with the client seeing every byte right (SHA-256) and no error.
//! Clients never retry, so what they see is weir's failover.
//!
//! Each scenario prints one `FAILOVER` line: the time from the fault to traffic being fully
//! on the other nodes, and the client-visible error count.
//! Timings are printed, not asserted, except "marked down within fall × interval + slack".
//!
//! Storage: SeaweedFS with several S3 gateways over one filer for real-process deaths
//! (docs/design.md, "How we know it works"), and the bench simulator (`weir_bench`) for
//! injected faults. The scenarios run one at a time (a lock): they share 2 cores with
//! everything else.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use weir_bench::load::LoadConfig;
use weir_bench::{Faults, SimNode, SimOptions};
use weir_tests::clients::assert_checks;
use weir_tests::data::{self, Scratch};
use weir_tests::netns::NetNs;
use weir_tests::nodes::{self, Seaweed};
use weir_tests::raw::{exchange, ReadUntil};
use weir_tests::sim;
use weir_tests::transfer::{synthetic_sha256, unix_now, wait_for, BenchLoad, PyLoad, Transfer};
use weir_tests::weir::{log_served_by, log_tried, log_ts, PoolConfig, Weir, WeirConfig};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Health settings of the failover tests: probes every 300 ms, down after 3 failures,
/// up after 2 successes.
const PROBE_INTERVAL: Duration = Duration::from_millis(300);
const FALL: u32 = 3;
const RISE: u32 = 2;
const SLOW_START: Duration = Duration::from_secs(2);

fn health_lines(preset: &str) -> Vec<String> {
    vec![
        format!("preset = \"{preset}\""),
        format!("interval = \"{}ms\"", PROBE_INTERVAL.as_millis()),
        "timeout = \"250ms\"".into(),
        format!("rise = {RISE}"),
        format!("fall = {FALL}"),
    ]
}

/// "Within fall × interval + slack": the probe owner needs `fall` failed probes; the
/// slack covers the probe timeout, scheduling on a loaded 2-core machine (probes share the
/// cores with the data path and the load generator) and our polling.
const SLACK: Duration = Duration::from_secs(5);

fn down_bound() -> Duration {
    PROBE_INTERVAL * FALL + SLACK
}

fn up_bound() -> Duration {
    PROBE_INTERVAL * RISE + SLACK
}

/// A pool with the failover tests' health settings and `slow_start`.
fn pool(name: &str, nodes: &[SocketAddr], preset: &str) -> PoolConfig {
    let mut pool =
        PoolConfig::new(name, nodes).key(&format!("slow_start = \"{}ms\"", SLOW_START.as_millis()));
    pool.health = health_lines(preset);
    pool
}

/// weir over SeaweedFS gateways: the seaweedfs probe preset; 2 s upstream timeouts, so a
/// frozen gateway costs a request at most 2 s before it moves on.
fn seaweed_config(sw: &Seaweed) -> WeirConfig {
    WeirConfig::new(&[])
        .upstream("connect_timeout = \"1s\"")
        .upstream("first_byte_timeout = \"2s\"")
        .upstream("io_timeout = \"2s\"")
        .pool(pool("main", &sw.gateway_addrs(), "seaweedfs"))
}

fn resumes(weir: &Weir, outcome: &str) -> f64 {
    weir.metric_sum("weir_resumes_total", |l| {
        l.contains(&format!("outcome=\"{outcome}\""))
    })
}

/// The live flow whose target ends with `suffix`, if any.
fn flow_for(weir: &Weir, suffix: &str) -> Option<serde_json::Value> {
    weir.flows()
        .into_iter()
        .find(|f| f["target"].as_str().is_some_and(|t| t.ends_with(suffix)))
}

/// SIGKILL the SeaweedFS gateway serving a 1 GiB GET (curl) while about a quarter of the
/// body has reached the client: the client still gets every byte (SHA-256 equal) in one
/// response, and weir counts a resume. The serving gateway is the one `/flows` names. Then
/// the same with a boto3 ranged GET (`Range` is signed: weir must resend the identical
/// request and skip what the client has, or SeaweedFS rejects the signature;
/// docs/design.md, "Failure is a normal state"), killing its serving gateway too: the last
/// gateway finishes it.
#[test]
fn sigkill_serving_gateway_mid_1gib_get() {
    let _serial = serial();
    let scratch = Scratch::new("failover-sigkill");
    let mut sw = Seaweed::start(scratch.path(), 3);
    sw.create_bucket("big");
    let src = scratch.path().join("one-gib.bin");
    let sha = data::write_pattern_file(&src, 7, GIB);
    let put = Transfer::put_file(&format!("{}/big/one-gib", sw.endpoint(0)), &src, None)
        .wait(Duration::from_secs(300));
    assert!(put.ok, "seed PUT of 1 GiB: {put:?}");
    std::fs::remove_file(&src).expect("remove source");

    let mut weir = Weir::start_logged(&seaweed_config(&sw), scratch.path());
    // 100 MB/s: about 10 s for the whole object, so the kill lands in the middle.
    let get = Transfer::get(
        &format!("{}/big/one-gib", weir.endpoint()),
        Some(100_000_000),
    );
    let (serving, _) = wait_for(
        "the GET to be a quarter through",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || {
            let f = flow_for(&weir, "/big/one-gib")?;
            (f["bytes_down"].as_u64()? > 256 * MIB)
                .then(|| f["node"].as_str().map(str::to_string))
                .flatten()
        },
    );
    let victim = sw
        .gateway_index(serving.parse().expect("flow node is an address"))
        .unwrap_or_else(|| panic!("/flows names {serving}, not a gateway"));
    let killed_at = Instant::now();
    sw.signal_gateway(victim, libc::SIGKILL);

    // Traffic on another node: the live flow names another gateway (it was resumed).
    let (resumed_on, to_other) = wait_for(
        "the GET to continue on another gateway",
        Duration::from_secs(30),
        Duration::from_millis(10),
        || {
            let f = flow_for(&weir, "/big/one-gib")?;
            let node = f["node"].as_str()?.to_string();
            (node != serving).then_some(node)
        },
    );
    let (marked_down, _) = wait_for(
        "the killed gateway to be marked down",
        down_bound() + Duration::from_secs(10),
        Duration::from_millis(50),
        || (weir.node_state(serving.parse().ok()?)? == "down").then(|| killed_at.elapsed()),
    );
    let out = get.wait(Duration::from_secs(180));
    weir.assert_running();
    let errors = u32::from(!out.ok);
    println!(
        "FAILOVER sigkill-mid-get: serving gateway {serving} killed at {} MiB; body continued \
         on {resumed_on} after {:.3}s; marked down after {:.3}s; client errors {errors}",
        256,
        to_other.as_secs_f64(),
        marked_down.as_secs_f64()
    );
    assert!(out.ok, "client GET failed: {out:?}");
    assert_eq!(
        (out.sha256.as_str(), out.bytes),
        (sha.as_str(), GIB),
        "the client's body"
    );
    assert!(
        marked_down <= down_bound() + Duration::from_secs(1),
        "marked down after {marked_down:?} (bound {:?})",
        down_bound()
    );
    let (resumed, failed) = (resumes(&weir, "resumed"), resumes(&weir, "failed"));
    assert!(
        resumed >= 1.0 && failed == 0.0,
        "weir_resumes_total: resumed {resumed}, failed {failed}"
    );
    let log = weir.access_log();
    let line = log
        .iter()
        .find(|l| l["target"].as_str() == Some("/big/one-gib"))
        .unwrap_or_else(|| panic!("no access-log line for the GET: {log:?}"));
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["bytes_down"].as_u64(), Some(GIB), "{line}");
    assert!(line["resumes"].as_u64() >= Some(1), "{line}");

    // A signed ranged GET: the last 768 MiB, read by boto3 at 100 MB/s.
    let from = 256 * MIB;
    let range_sha = data::pattern_range_sha256(7, from, GIB - from);
    let args: Vec<String> = [
        "--endpoint",
        &weir.endpoint(),
        "--bucket",
        "big",
        "--key",
        "one-gib",
        "--range",
        &format!("bytes={from}-"),
        "--rate",
        "100000000",
        "--expect-sha256",
        &range_sha,
        "--expect-length",
        &(GIB - from).to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let dir = scratch.path().to_path_buf();
    let ranged = std::thread::spawn(move || {
        weir_tests::clients::run_py("get.py", &args, &dir, Duration::from_secs(300))
    });
    let (serving, _) = wait_for(
        "the ranged GET to be under way",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || {
            let f = flow_for(&weir, "/big/one-gib")?;
            (f["bytes_down"].as_u64()? > 128 * MIB)
                .then(|| f["node"].as_str().map(str::to_string))
                .flatten()
        },
    );
    let second = sw
        .gateway_index(serving.parse().expect("flow node is an address"))
        .expect("a gateway");
    assert_ne!(
        second, victim,
        "weir sent the ranged GET to the dead gateway"
    );
    sw.signal_gateway(second, libc::SIGKILL);
    let (resumed_on, to_other) = wait_for(
        "the ranged GET to continue on the last gateway",
        Duration::from_secs(30),
        Duration::from_millis(10),
        || {
            let f = flow_for(&weir, "/big/one-gib")?;
            let node = f["node"].as_str()?.to_string();
            (node != serving).then_some(node)
        },
    );
    let report = ranged
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    println!(
        "FAILOVER sigkill-mid-ranged-get (signed Range): gateway {serving} killed at >128 MiB; \
         body continued on {resumed_on} after {:.3}s; client errors {}",
        to_other.as_secs_f64(),
        report["checks"].as_array().map_or(0, |c| c
            .iter()
            .filter(|c| c["expected"] != c["got"])
            .count())
    );
    assert_checks(
        "ranged GET through two gateway deaths",
        &report,
        &["get_status", "get_sha256", "get_length"],
    );
    let (resumed, failed) = (resumes(&weir, "resumed"), resumes(&weir, "failed"));
    assert!(
        resumed >= 2.0 && failed == 0.0,
        "weir_resumes_total after two resumes: resumed {resumed}, failed {failed}"
    );
    weir.assert_running();
}

/// Freeze the busiest SeaweedFS gateway with SIGSTOP (no RST: a blackhole) while 4 boto3 threads GET
/// 2 MiB objects through weir: no client error, the gateway is marked down within
/// fall × interval + slack, weir stops sending it requests; after SIGCONT it is up again
/// within rise × interval + slack and serves requests again (after slow start).
#[test]
fn sigstop_gateway_under_load_then_sigcont() {
    let _serial = serial();
    let scratch = Scratch::new("failover-sigstop");
    let mut sw = Seaweed::start(scratch.path(), 3);
    sw.create_bucket("load");
    let objects = data::seed_objects(&scratch.sub("objects"), &[2 * MIB; 6]);
    let manifest = nodes::seed(&[sw.endpoint(0)], "load", &objects, scratch.path());
    let mut weir = Weir::start_logged(&seaweed_config(&sw), scratch.path());
    let load = PyLoad::start(
        &[
            "--endpoint".into(),
            weir.endpoint(),
            "--bucket".into(),
            "load".into(),
            "--manifest".into(),
            manifest.to_string_lossy().into_owned(),
            "--threads".into(),
            "4".into(),
        ],
        scratch.path(),
    );
    std::thread::sleep(Duration::from_secs(3));
    // Freeze the gateway that carries the most traffic (the balancer prefers fast nodes,
    // so a gateway that answered its first requests slowly may be carrying little).
    let warm = weir.access_log();
    let victim = (0..3)
        .max_by_key(|&i| {
            let name = sw.gateway_addrs()[i].to_string();
            warm.iter()
                .filter(|l| log_served_by(l) == Some(name.as_str()))
                .count()
        })
        .expect("three gateways");
    let victim_addr = sw.gateway_addrs()[victim];
    let victim_name = victim_addr.to_string();
    let stopped_wall = unix_now();
    let stopped_at = Instant::now();
    sw.signal_gateway(victim, libc::SIGSTOP);
    let (down_after, _) = wait_for(
        "the frozen gateway to be marked down",
        down_bound() + Duration::from_secs(10),
        Duration::from_millis(50),
        || (weir.node_state(victim_addr)? == "down").then(|| stopped_at.elapsed()),
    );
    // Stay frozen a while under load: no request may go to it now.
    std::thread::sleep(Duration::from_secs(4));
    let cont_wall = unix_now();
    let cont_at = Instant::now();
    sw.signal_gateway(victim, libc::SIGCONT);
    let (up_after, _) = wait_for(
        "the thawed gateway to be up again",
        up_bound() + Duration::from_secs(10),
        Duration::from_millis(50),
        || (weir.node_state(victim_addr)? == "up").then(|| cont_at.elapsed()),
    );
    let up_wall = unix_now();
    std::thread::sleep(SLOW_START + Duration::from_secs(2));
    let report = load.stop();
    weir.assert_running();
    let log = weir.access_log();
    let started_in = |from: f64, to: f64| {
        log.iter()
            .filter(move |l| (from..to).contains(&log_ts(l)))
            .collect::<Vec<_>>()
    };
    let served_before = started_in(0.0, stopped_wall)
        .iter()
        .filter(|l| log_served_by(l) == Some(victim_name.as_str()))
        .count();
    let while_frozen = started_in(stopped_wall, cont_wall);
    let last_try = while_frozen
        .iter()
        .filter(|l| log_tried(l, &victim_name))
        .map(|l| log_ts(l))
        .fold(stopped_wall, f64::max);
    // Requests caught on the frozen gateway: sent there, answered by another node (retried
    // after the first-byte timeout, or resumed after the idle timeout).
    let caught: Vec<&serde_json::Value> = log
        .iter()
        .filter(|l| {
            log_tried(l, &victim_name)
                && log_served_by(l) != Some(victim_name.as_str())
                && log_ts(l) < cont_wall
        })
        .collect();
    let caught_longest = caught
        .iter()
        .filter_map(|l| l["duration_seconds"].as_f64())
        .fold(0.0, f64::max);
    let tries_after_down = while_frozen
        .iter()
        .filter(|l| {
            log_tried(l, &victim_name) && log_ts(l) > stopped_wall + down_after.as_secs_f64() + 0.5
        })
        .count();
    let served_after = started_in(up_wall, f64::MAX)
        .iter()
        .filter(|l| log_served_by(l) == Some(victim_name.as_str()))
        .count();
    let errors = report["info"]["get_errors"].as_u64().unwrap_or(u64::MAX)
        + report["info"]["get_bad_bodies"]
            .as_u64()
            .unwrap_or(u64::MAX);
    println!(
        "FAILOVER sigstop: gateway {victim_name} frozen; last request sent to it {:.3}s after the \
         freeze; marked down after {:.3}s; up {:.3}s after SIGCONT; requests served by it \
         before/after: {served_before}/{served_after}; {} requests caught on it moved to \
         another gateway (longest took {caught_longest:.2}s); {} GETs, client errors {errors}",
        last_try - stopped_wall,
        down_after.as_secs_f64(),
        up_after.as_secs_f64(),
        caught.len(),
        report["info"]["get_requests"],
    );
    assert_checks(
        "load through a frozen gateway",
        &report,
        &["get_errors", "get_bad_bodies"],
    );
    assert!(
        down_after <= down_bound(),
        "marked down after {down_after:?} (bound {:?})",
        down_bound()
    );
    assert!(
        up_after <= up_bound(),
        "up again after {up_after:?} (bound {:?})",
        up_bound()
    );
    assert!(
        served_before > 0,
        "the gateway served nothing before the freeze"
    );
    assert_eq!(
        tries_after_down, 0,
        "requests sent to the gateway after it was marked down"
    );
    assert!(
        served_after > 0,
        "the gateway took no traffic after it came back"
    );
    let bad: Vec<_> = log.iter().filter(|l| l["status"] != 200).collect();
    assert!(bad.is_empty(), "access log has non-200 answers: {bad:?}");
}

// === the bench simulator: injected faults ===

fn sims(n: usize, specs: &[&str]) -> Vec<SimNode> {
    sim::start(n, specs)
}

fn sim_addrs(nodes: &[SimNode]) -> Vec<SocketAddr> {
    sim::addrs(nodes)
}

/// A pool of simulator nodes, probed through the simulator's control API.
fn sim_pool(name: &str, nodes: &[SocketAddr]) -> PoolConfig {
    sim::control_probe(pool(name, nodes, "generic"))
}

/// weir over simulator nodes; `io_timeout` 1 s so a stalled body is given up quickly.
fn sim_config(nodes: &[SocketAddr]) -> WeirConfig {
    WeirConfig::new(&[])
        .upstream("connect_timeout = \"1s\"")
        .upstream("first_byte_timeout = \"5s\"")
        .upstream("io_timeout = \"1s\"")
        .pool(sim_pool("main", nodes))
}

/// GETs `/<full_key>` through weir with curl (one stream, no retries) and checks the body
/// against the synthetic object's SHA-256.
fn get_synthetic(weir: &Weir, full_key: &str, size: u64, sha: &str) -> f64 {
    let out = Transfer::get(&format!("{}/{full_key}", weir.endpoint()), None)
        .wait(Duration::from_secs(120));
    assert!(
        out.ok,
        "GET {full_key}: {out:?}\nweir log:\n{}",
        weir.log_tail()
    );
    assert_eq!(
        (out.sha256.as_str(), out.bytes),
        (sha, size),
        "GET {full_key}: the body"
    );
    out.secs
}

/// Repeats single-stream GETs of a 64 MiB object until the faulty node has cut at least
/// one body (and at least `min_gets` GETs ran): every body must be whole, and every cut body
/// must have been resumed. Returns (GETs, cuts, longest GET in seconds).
fn gets_until_cut(weir: &Weir, faulty: &SimNode, min_gets: u32) -> (u32, u64, f64) {
    let key = "bench/obj-0";
    let sha = synthetic_sha256(key, 64 * MIB);
    let mut gets = 0;
    let mut longest: f64 = 0.0;
    while gets < 20 && (gets < min_gets || faulty.stats().bodies_cut == 0) {
        longest = longest.max(get_synthetic(weir, key, 64 * MIB, &sha));
        gets += 1;
    }
    (gets, faulty.stats().bodies_cut, longest)
}

/// The only node of a pool closes each kept-alive connection just as weir reuses it (an
/// idle-timeout race, or a node that restarted): every GET is sent again on a new
/// connection and the client gets the whole body; the node stays up. Before, the one
/// node counted as tried and the client got a 503.
#[test]
fn a_request_on_a_connection_the_node_just_closed_is_sent_again_on_a_new_one() {
    let scratch = Scratch::new("failover-stale");
    let key = "bench/obj-0";
    let nodes = sims(1, &["bench/obj-:1MiB:1"]);
    let addrs = sim_addrs(&nodes);
    let weir = Weir::start(&sim_config(&addrs), scratch.path());
    let sha = synthetic_sha256(key, MIB);
    get_synthetic(&weir, key, MIB, &sha); // leaves an idle connection in weir's pool
    nodes[0].set_faults(Faults {
        drop_reused: true,
        ..Faults::default()
    });
    let before = nodes[0].stats();
    for _ in 0..4 {
        get_synthetic(&weir, key, MIB, &sha);
    }
    let after = nodes[0].stats();
    println!(
        "FAILOVER stale: 4 GETs each met a closed kept-alive connection; node connections \
         {} -> {}, requests {} -> {}",
        before.connections, after.connections, before.requests, after.requests
    );
    assert!(
        after.connections - before.connections >= 4,
        "each GET needed a new connection: {before:?} -> {after:?}"
    );
    assert_eq!(
        weir.node_state(addrs[0]).as_deref(),
        Some("up"),
        "a closed idle connection is no node failure"
    );
}

/// A node that resets its connection (RST) 8 MiB into every GET body: each cut GET is
/// resumed on another node and the client gets all 64 MiB right, in one response.
#[test]
fn sim_reset_mid_body_is_resumed() {
    let _serial = serial();
    let scratch = Scratch::new("failover-reset");
    let nodes = sims(3, &["bench/obj-:64MiB:1"]);
    let weir = Weir::start(&sim_config(&sim_addrs(&nodes)), scratch.path());
    nodes[0].set_faults(Faults {
        reset_after_bytes: Some(8 * MIB),
        ..Faults::default()
    });
    let (gets, cuts, _) = gets_until_cut(&weir, &nodes[0], 4);
    let (resumed, failed) = (resumes(&weir, "resumed"), resumes(&weir, "failed"));
    println!(
        "FAILOVER sim-reset: {gets} GETs of 64 MiB, {cuts} bodies reset at 8 MiB, {resumed} \
         resumed; client errors 0"
    );
    assert!(cuts >= 1, "the faulty node cut no body in {gets} GETs");
    assert_eq!(
        (resumed, failed),
        (cuts as f64, 0.0),
        "weir_resumes_total (resumed, failed) vs bodies the node cut"
    );
}

/// A node that stops sending 8 MiB into every GET body but keeps the socket open: weir
/// gives up after `io_timeout` (1 s) and resumes on another node; the client gets every
/// byte, a little late.
#[test]
fn sim_stall_mid_body_times_out_and_resumes() {
    let _serial = serial();
    let scratch = Scratch::new("failover-stall");
    let nodes = sims(3, &["bench/obj-:64MiB:1"]);
    let weir = Weir::start(&sim_config(&sim_addrs(&nodes)), scratch.path());
    nodes[0].set_faults(Faults {
        stall_after_bytes: Some(8 * MIB),
        ..Faults::default()
    });
    let (gets, cuts, longest) = gets_until_cut(&weir, &nodes[0], 2);
    let (resumed, failed) = (resumes(&weir, "resumed"), resumes(&weir, "failed"));
    println!(
        "FAILOVER sim-stall: {gets} GETs of 64 MiB, {cuts} bodies stalled at 8 MiB, {resumed} \
         resumed; longest GET {longest:.2}s (io_timeout 1s); client errors 0"
    );
    assert!(cuts >= 1, "the faulty node stalled no body in {gets} GETs");
    assert_eq!(
        (resumed, failed),
        (cuts as f64, 0.0),
        "weir_resumes_total (resumed, failed) vs bodies the node stalled"
    );
    assert!(
        longest >= 0.9,
        "no GET waited for the idle timeout (longest {longest:.2}s): was the stall seen?"
    );
}

/// A resumed GET is in flight on its new node: while the rest of a cut body comes from
/// the second node, `/nodes` counts the request there (its in-flight cap and balancing
/// see it) and no longer on the node that cut it; afterwards both are back to zero and
/// the client has every byte.
#[test]
fn a_resumed_get_counts_in_flight_on_its_new_node() {
    let _serial = serial();
    let scratch = Scratch::new("failover-resume-inflight");
    let nodes = sims(2, &["bench/obj-:64MiB:1"]);
    let addrs = sim_addrs(&nodes);
    let weir = Weir::start(&sim_config(&addrs), scratch.path());
    nodes[0].set_faults(Faults {
        reset_after_bytes: Some(8 * MIB),
        ..Faults::default()
    });
    let (faulty, other) = (addrs[0].to_string(), addrs[1].to_string());
    let inflight = |node: &str| -> Option<u64> {
        weir.nodes()
            .iter()
            .find(|n| n["node"].as_str() == Some(node))
            .and_then(|n| n["inflight"].as_u64())
    };
    let key = "bench/obj-0";
    let sha = synthetic_sha256(key, 64 * MIB);
    let mut seen_resumed = false;
    for _ in 0..8 {
        let cuts_before = nodes[0].stats().bodies_cut;
        // 16 MB/s: about 4 s for the body, so the resumed part is in flight for seconds.
        let get = Transfer::get(&format!("{}/{key}", weir.endpoint()), Some(16_000_000));
        let cut = wait_for(
            "the faulty node to cut the body, or the GET to end",
            Duration::from_secs(30),
            Duration::from_millis(20),
            || {
                if nodes[0].stats().bodies_cut > cuts_before {
                    Some(true)
                } else if get.is_finished() {
                    Some(false)
                } else {
                    None
                }
            },
        );
        if cut.0 {
            // Resumed on the other node: counted there, not on the cutting node.
            let counted = wait_for(
                "the resumed GET to count on its new node",
                Duration::from_secs(3),
                Duration::from_millis(20),
                || {
                    let now = (inflight(&faulty), inflight(&other));
                    (now == (Some(0), Some(1))).then_some(now)
                },
            );
            assert_eq!(counted.0, (Some(0), Some(1)));
            assert!(
                !get.is_finished(),
                "the GET ended before it was seen resumed"
            );
            seen_resumed = true;
        }
        let out = get.wait(Duration::from_secs(120));
        assert!(out.ok, "GET {key}: {out:?}\nweir log:\n{}", weir.log_tail());
        assert_eq!((out.sha256.as_str(), out.bytes), (sha.as_str(), 64 * MIB));
        if seen_resumed {
            break;
        }
    }
    assert!(seen_resumed, "no GET in 8 went to the faulty node first");
    let idle = wait_for(
        "both nodes idle",
        Duration::from_secs(3),
        Duration::from_millis(20),
        || {
            let now = (inflight(&faulty), inflight(&other));
            (now == (Some(0), Some(0))).then_some(now)
        },
    );
    assert_eq!(idle.0, (Some(0), Some(0)));
    assert_eq!(resumes(&weir, "resumed"), 1.0, "weir_resumes_total");
}

/// Throttling is backpressure: 2 of 3 nodes answer every request with `503 SlowDown`
/// while 4 verifying connections GET through weir. No client error (the third node takes
/// everything), weir counts the throttle answers, the throttling nodes stay up (throttling
/// is not a failure), and their concurrency limits shrink.
#[test]
fn sim_slowdown_storm_on_two_of_three_is_backpressure() {
    let _serial = serial();
    let scratch = Scratch::new("failover-slowdown");
    let nodes = sims(3, &["bench/small-:64KiB:16"]);
    let addrs = sim_addrs(&nodes);
    let cfg = sim_config(&addrs)
        .upstream("attempts_max = 3")
        .upstream("retry_ratio = 1.0")
        .upstream("retry_floor_per_sec = 10000")
        .upstream("throttle_backoff_base = \"10ms\"")
        .upstream("throttle_backoff_max = \"200ms\"")
        .upstream("node_concurrency_max = 64")
        .upstream("node_concurrency_min = 1");
    let weir = Weir::start(&cfg, scratch.path());
    let limit_of = |node: SocketAddr| {
        weir.metric_sum("weir_node_concurrency_limit", |l| {
            l.contains(&format!("node=\"{node}\""))
        })
    };
    let limits_before: Vec<f64> = addrs.iter().map(|a| limit_of(*a)).collect();
    for node in &nodes[..2] {
        node.set_faults(Faults {
            slowdown_ratio: 1.0,
            ..Faults::default()
        });
    }
    let load = BenchLoad::start(LoadConfig {
        connections: 4,
        duration: Duration::from_secs(5),
        ..LoadConfig::new(vec![weir.addr()], sim::specs(&["bench/small-:64KiB:16"]))
    });
    let (summary, _) = load.finish();
    let throttled = weir.metric_sum("weir_upstream_throttled_total", |_| true);
    let limits_after: Vec<f64> = addrs.iter().map(|a| limit_of(*a)).collect();
    let states: Vec<Option<String>> = addrs.iter().map(|a| weir.node_state(*a)).collect();
    let stats: Vec<_> = nodes.iter().map(SimNode::stats).collect();
    println!(
        "FAILOVER sim-slowdown-2-of-3: {} requests, client errors {} ({:?}); throttled {throttled}; \
         limits {limits_before:?} -> {limits_after:?}; states {states:?}; node requests/5xx {:?}",
        summary.requests,
        summary.errors.total(),
        summary.errors,
        stats
            .iter()
            .map(|s| (s.requests, s.responses_5xx))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        summary.errors.total(),
        0,
        "client errors: {:?}",
        summary.errors
    );
    assert!(summary.requests > 20, "only {} requests", summary.requests);
    assert!(
        throttled > 0.0,
        "weir_upstream_throttled_total is {throttled}"
    );
    // (Probes go to the control API: `requests` counts only what weir forwarded.)
    assert_eq!(
        throttled,
        (stats[0].requests + stats[1].requests) as f64,
        "throttle answers counted vs requests the throttling nodes got (all SlowDown)"
    );
    for i in 0..2 {
        assert_eq!(
            states[i].as_deref(),
            Some("up"),
            "throttling node {i} state"
        );
        assert!(
            limits_after[i] < limits_before[i],
            "throttling node {i}: limit {} -> {}",
            limits_before[i],
            limits_after[i]
        );
    }
    assert_eq!(states[2].as_deref(), Some("up"), "healthy node state");
    assert_eq!(
        stats[2].requests, summary.requests,
        "the healthy node answered every request"
    );
}

/// When every node throttles, the client gets S3 `SlowDown` (503) with `Retry-After`.
#[test]
fn sim_slowdown_everywhere_answers_slowdown_with_retry_after() {
    let _serial = serial();
    let scratch = Scratch::new("failover-slowdown-all");
    let nodes = sims(3, &["bench/small-:64KiB:1"]);
    let weir = Weir::start(&sim_config(&sim_addrs(&nodes)), scratch.path());
    for node in &nodes {
        node.set_faults(Faults {
            slowdown_ratio: 1.0,
            ..Faults::default()
        });
    }
    let request = format!(
        "GET /bench/small-0 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        weir.addr()
    );
    let reply = exchange(
        weir.addr(),
        &[request.as_bytes()],
        Duration::ZERO,
        Duration::from_secs(20),
        ReadUntil::Close,
    );
    let text = reply.text();
    println!(
        "FAILOVER sim-slowdown-all: {}",
        reply.head().replace("\r\n", " | ")
    );
    assert_eq!(reply.status(), Some(503), "{text}");
    let retry_after = reply.header("retry-after");
    assert!(
        retry_after
            .as_deref()
            .is_some_and(|v| v.trim().parse::<u64>().is_ok_and(|s| s >= 1)),
        "Retry-After: {retry_after:?}\n{text}"
    );
    assert!(text.contains("<Code>SlowDown</Code>"), "{text}");
    let sent: u64 = nodes.iter().map(|n| n.stats().responses_5xx).sum();
    assert!(
        (1..=3).contains(&sent),
        "the nodes answered {sent} SlowDowns to one request (attempts_max is 3)"
    );
}

/// A node that answered slowly for a while (100 ms before every response head) and is fast
/// again must get its share of traffic back: a passing slowness must not remove a node's
/// capacity for good. (The balancer's cost is in-flight × latency EWMA, and the EWMA only
/// learns from requests the node is given.)
#[test]
fn a_node_that_was_slow_gets_traffic_back() {
    let _serial = serial();
    let scratch = Scratch::new("failover-slow-recovers");
    let spec = "bench/small-:64KiB:16";
    let nodes = sims(3, &[spec]);
    let weir = Weir::start(&sim_config(&sim_addrs(&nodes)), scratch.path());
    let phase = |secs: u64| {
        let before: Vec<u64> = nodes.iter().map(|n| n.stats().requests).collect();
        let (summary, _) = BenchLoad::start(LoadConfig {
            connections: 4,
            duration: Duration::from_secs(secs),
            ..LoadConfig::new(vec![weir.addr()], sim::specs(&[spec]))
        })
        .finish();
        let per_node: Vec<u64> = nodes
            .iter()
            .zip(&before)
            .map(|(n, b)| n.stats().requests - b)
            .collect();
        let share = per_node[2] as f64 / per_node.iter().sum::<u64>().max(1) as f64;
        (summary, per_node, share)
    };
    nodes[2].set_faults(Faults {
        latency_ms: 100,
        ..Faults::default()
    });
    let (slow, slow_nodes, slow_share) = phase(2);
    nodes[2].set_faults(Faults::default());
    let (fast, fast_nodes, fast_share) = phase(6);
    let ewma = weir
        .nodes()
        .iter()
        .map(|n| n["latency_ewma_seconds"].clone())
        .collect::<Vec<_>>();
    println!(
        "FAILOVER slow-then-fast: node 2 slow (100 ms): requests {slow_nodes:?} (its share \
         {:.1}%); fast again for 6 s: {fast_nodes:?} (its share {:.1}%); latency EWMAs now \
         {ewma:?}; client errors {} + {}",
        slow_share * 100.0,
        fast_share * 100.0,
        slow.errors.total(),
        fast.errors.total()
    );
    assert_eq!(slow.errors.total() + fast.errors.total(), 0);
    assert!(
        fast_share > 0.05,
        "node 2 has been fast again for 6 s but got {:.2}% of {} requests (1/3 would be even)",
        fast_share * 100.0,
        fast.requests
    );
}

// === priority groups ===

/// Two pools on one route: `site-a` (priority 0, `min_active = 2`) and `cloud` (priority
/// 1), under 4 verifying GET connections. While site-a is whole, cloud gets nothing; kill
/// both site-a nodes (their listeners close, bodies in flight are cut) and traffic moves to
/// cloud; restart them on the same addresses and, once they are up again, traffic returns
/// to site-a.
#[test]
fn priority_groups_fail_over_to_cloud_and_back() {
    let _serial = serial();
    let scratch = Scratch::new("failover-priority");
    let spec = "bench/obj-:4MiB:8";
    let specs = sim::specs(&[spec]);
    let mut site_a = sims(2, &[spec]);
    let cloud = sims(2, &[spec]);
    let (a_addrs, c_addrs) = (sim_addrs(&site_a), sim_addrs(&cloud));
    let cfg = WeirConfig::new(&[])
        .upstream("connect_timeout = \"1s\"")
        .upstream("first_byte_timeout = \"5s\"")
        .upstream("io_timeout = \"2s\"")
        .pool(
            sim_pool("site-a", &a_addrs)
                .key("priority = 0")
                .key("min_active = 2"),
        )
        .pool(sim_pool("cloud", &c_addrs).key("priority = 1"))
        .route(&["bucket = \"*\"", "pools = [\"site-a\", \"cloud\"]"]);
    let weir = Weir::start_logged(&cfg, scratch.path());
    let load = BenchLoad::start(LoadConfig {
        connections: 4,
        duration: Duration::from_secs(16),
        ..LoadConfig::new(vec![weir.addr()], specs.to_vec())
    });
    std::thread::sleep(Duration::from_secs(3));

    let killed_wall = unix_now();
    let killed_at = Instant::now();
    for node in site_a.iter_mut() {
        node.shutdown();
    }
    drop(site_a);
    let (down_after, _) = wait_for(
        "both site-a nodes to be marked down",
        down_bound() + Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            a_addrs
                .iter()
                .all(|a| weir.node_state(*a).as_deref() == Some("down"))
                .then(|| killed_at.elapsed())
        },
    );
    std::thread::sleep(Duration::from_secs(4));

    let back_wall = unix_now();
    let back_at = Instant::now();
    let _site_a = weir_bench::spawn_nodes_at(&a_addrs, &specs, &SimOptions::default())
        .expect("restart site-a on its addresses");
    let (up_after, _) = wait_for(
        "both site-a nodes to be up again",
        up_bound() + Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            a_addrs
                .iter()
                .all(|a| weir.node_state(*a).as_deref() == Some("up"))
                .then(|| back_at.elapsed())
        },
    );
    let up_wall = back_wall + up_after.as_secs_f64();
    let (summary, _) = load.finish();
    let log = weir.access_log();

    let a_names: Vec<String> = a_addrs.iter().map(|a| a.to_string()).collect();
    let on_a =
        |l: &serde_json::Value| log_served_by(l).is_some_and(|n| a_names.iter().any(|a| a == n));
    let tried_a = |l: &serde_json::Value| a_names.iter().any(|a| log_tried(l, a));
    let phase = |from: f64, to: f64| {
        log.iter()
            .filter(move |l| (from..to).contains(&log_ts(l)) && l["status"] == 200)
            .collect::<Vec<_>>()
    };
    let ended = |l: &serde_json::Value| log_ts(l) + l["duration_seconds"].as_f64().unwrap_or(0.0);
    // Requests that ended before the kill, and those in flight across it (resumed).
    let before: Vec<_> = phase(0.0, killed_wall)
        .into_iter()
        .filter(|l| ended(l) < killed_wall)
        .collect();
    let across: Vec<_> = phase(0.0, killed_wall)
        .into_iter()
        .filter(|l| ended(l) >= killed_wall)
        .collect();
    let across_resumed = across
        .iter()
        .filter(|l| l["resumes"].as_u64() > Some(0))
        .count();
    let outage = phase(killed_wall, back_wall);
    let after = phase(up_wall + 0.5, f64::MAX);
    let last_try_a = outage
        .iter()
        .filter(|l| tried_a(l))
        .map(|l| log_ts(l))
        .fold(killed_wall, f64::max);
    let first_back = log
        .iter()
        .filter(|l| log_ts(l) >= back_wall && on_a(l))
        .map(log_ts)
        .fold(f64::MAX, f64::min);
    let count =
        |lines: &[&serde_json::Value], a: bool| lines.iter().filter(|l| on_a(l) == a).count();
    let non_200: Vec<_> = log.iter().filter(|l| l["status"] != 200).collect();
    println!(
        "FAILOVER priority-groups: site-a killed with {} GETs in flight ({} resumed on cloud); \
         last request sent to site-a {:.3}s later, \
         both marked down after {:.3}s; served by site-a/cloud before {}/{}, during the \
         outage {}/{}, after recovery {}/{}; site-a up {:.3}s after restart, first request \
         back on site-a {:.3}s after restart; {} requests, client errors {} ({:?})",
        across.len(),
        across_resumed,
        last_try_a - killed_wall,
        down_after.as_secs_f64(),
        count(&before, true),
        count(&before, false),
        count(&outage, true),
        count(&outage, false),
        count(&after, true),
        count(&after, false),
        up_after.as_secs_f64(),
        first_back - back_wall,
        summary.requests,
        summary.errors.total(),
        summary.errors,
    );
    assert!(
        count(&before, true) > 0,
        "site-a served nothing while healthy"
    );
    assert_eq!(
        count(&before, false),
        0,
        "cloud served requests while site-a was whole"
    );
    assert!(
        count(&outage, false) > 0,
        "cloud served nothing during the outage"
    );
    assert!(
        last_try_a - killed_wall <= down_bound().as_secs_f64(),
        "requests still sent to site-a {:.3}s after it died",
        last_try_a - killed_wall
    );
    assert!(down_after <= down_bound(), "down after {down_after:?}");
    assert!(up_after <= up_bound(), "up after {up_after:?}");
    assert!(count(&after, true) > 0, "traffic did not return to site-a");
    assert_eq!(
        count(&after, false),
        0,
        "cloud still served after site-a recovered"
    );
    // Bodies in flight on site-a when it died are resumed on cloud: no client error.
    assert!(non_200.is_empty(), "non-200 answers: {non_200:?}");
    assert_eq!(
        summary.errors.total(),
        0,
        "client errors: {:?}; weir's log:\n{}",
        summary.errors,
        weir.log_tail()
    );
}

// === a slow path: tc in a network namespace ===

/// One of three nodes sits behind a veth pair in a network namespace whose link is then
/// narrowed to 40 Mbit/s each way (`tc tbf`; this kernel has no `netem`, so no added delay
/// or loss as such — a narrow link whose queue is the latency): under 4 verifying
/// connections, weir's balancer (in-flight × latency) moves load away from it — its share
/// of requests drops well below 1/3 — and nobody sees an error. Before the shaping the same
/// node takes part of the load.
#[test]
fn slow_path_in_a_netns_sheds_load() {
    let _serial = serial();
    let scratch = Scratch::new("failover-netem");
    let spec = "bench/small-:256KiB:16";
    let local = sims(2, &[spec]);
    let ns = NetNs::create();
    let ns_ip = ns.ns_ip();
    let slow: SimNode = ns
        .run_in(move || {
            SimNode::spawn(
                SocketAddr::from((ns_ip, 0)),
                &sim::specs(&[spec]),
                SimOptions::default(),
            )
        })
        .expect("start the namespaced node");
    let mut addrs = sim_addrs(&local);
    addrs.push(slow.addr());
    let weir = Weir::start(&sim_config(&addrs), scratch.path());
    let all = [&local[0], &local[1], &slow];
    let phase = |secs: u64| {
        let before: Vec<u64> = all.iter().map(|n| n.stats().requests).collect();
        let (summary, _) = BenchLoad::start(LoadConfig {
            connections: 4,
            duration: Duration::from_secs(secs),
            ..LoadConfig::new(vec![weir.addr()], sim::specs(&[spec]))
        })
        .finish();
        let after: Vec<u64> = all.iter().map(|n| n.stats().requests).collect();
        let per_node: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        let share = per_node[2] as f64 / per_node.iter().sum::<u64>().max(1) as f64;
        (summary, per_node, share)
    };
    let (base, base_nodes, base_share) = phase(3);
    let shaped_at = Instant::now();
    ns.shape("rate 40mbit burst 32kb latency 400ms");
    let (slowed, slowed_nodes, slowed_share) = phase(5);
    ns.clear_shape();
    let latency = weir
        .nodes()
        .iter()
        .find(|n| n["node"].as_str() == Some(slow.addr().to_string().as_str()))
        .map(|n| n["latency_ewma_seconds"].clone());
    println!(
        "FAILOVER slow-path: node {} behind a 40 Mbit/s link; requests per node before {base_nodes:?} \
         (its share {:.1}%), shaped {slowed_nodes:?} (its share {:.1}%, over {:.1}s); \
         its latency EWMA {latency:?}; client errors {} + {}",
        slow.addr(),
        base_share * 100.0,
        slowed_share * 100.0,
        shaped_at.elapsed().as_secs_f64(),
        base.errors.total(),
        slowed.errors.total()
    );
    assert_eq!(
        base.errors.total() + slowed.errors.total(),
        0,
        "{:?} {:?}",
        base.errors,
        slowed.errors
    );
    assert!(
        base_nodes[2] > 0,
        "the namespaced node took no load before the shaping"
    );
    assert!(
        slowed_share < 1.0 / 6.0,
        "the slow node still took {:.1}% of requests (1/3 would be even)",
        slowed_share * 100.0
    );
}
