//! Protecting the storage (`docs/limits.md`) with real parts: a flood tenant beside a
//! training tenant, both real clients (curl signing SigV4 with their own identities)
//! against a real node (SeaweedFS, which knows both identities), and a bandwidth cap on
//! spliced 256 MiB GETs (s3s-fs).
//!
//! What the storage sees is counted at the storage: a TCP relay in front of the node
//! records every request line that reaches it. Bounds are generous where timing is involved
//! (docs/design.md, "How we know it works"): offered load far above the limit, node counts
//! within rate × time + burst + 5%.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use weir_bench::Faults;
use weir_tests::clients::{curl_sigv4, output, run_py};
use weir_tests::data::{self, Scratch};
use weir_tests::nodes::{self, S3sFs, Seaweed};
use weir_tests::sim;
use weir_tests::tcp::Relay;
use weir_tests::transfer::Transfer;
use weir_tests::weir::{PoolConfig, Weir, WeirConfig};
use weir_tests::{ACCESS_KEY, FLOOD_ACCESS_KEY, FLOOD_SECRET_KEY};

const MIB: u64 = 1 << 20;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The flood tenant's configured rate.
const FLOOD_RATE: f64 = 20.0;

/// Tenancy: the flood tenant is limited to `FLOOD_RATE` requests/s with a short queue;
/// the training tenant is unlimited in a heavier class.
fn tenancy() -> String {
    format!(
        r#"
[defaults]
tenant = "anonymous"
class = "bulk"

[[class]]
name = "bulk"
weight = 1
queue_max = 256
queue_timeout = "200ms"

[[class]]
name = "training"
weight = 8

[[tenant]]
name = "flood"
access_keys = ["{FLOOD_ACCESS_KEY}"]
class = "bulk"
requests_per_sec = {FLOOD_RATE}

[[tenant]]
name = "training"
access_keys = ["{ACCESS_KEY}"]
class = "training"

[[tenant]]
name = "anonymous"
requests_per_sec = 10
"#
    )
}

/// Streams GETs of `url` back to back on `streams` curl clients for `secs`, each body's
/// status and length checked (hashing every body would make the test's own CPU the
/// bottleneck on 2 cores; one body is hashed separately); returns the bytes moved and
/// the wall time.
fn stream_gets(url: &str, len: u64, streams: usize, secs: f64) -> (u64, f64) {
    let started = Instant::now();
    let handles: Vec<_> = (0..streams)
        .map(|_| {
            let url = url.to_string();
            std::thread::spawn(move || {
                let mut bytes = 0;
                while started.elapsed().as_secs_f64() < secs {
                    let mut cmd = curl_sigv4();
                    cmd.args(["-o", "/dev/null", "-w", "%{http_code} %{size_download}"])
                        .arg(&url);
                    let out = output(&mut cmd, Duration::from_secs(120));
                    let text = String::from_utf8_lossy(&out.stdout).to_string();
                    assert_eq!(text, format!("200 {len}"), "training GET");
                    bytes += len;
                }
                bytes
            })
        })
        .collect();
    let bytes = handles
        .into_iter()
        .map(|h| h.join().expect("stream thread"))
        .sum();
    (bytes, started.elapsed().as_secs_f64())
}

/// What the flood clients saw (tests/py/flood.py).
struct FloodOutcome {
    ok: usize,
    slow_down: usize,
    slow_down_with_retry_after: usize,
    other: Vec<String>,
    errors: usize,
    secs: f64,
    /// One 503 body.
    slow_down_body: String,
}

/// The flood: `connections` keep-alive connections sending GETs of a presigned URL of
/// `bucket/key` (signed as the flood tenant) at `rate` requests/s in all, for `secs`.
fn flood(
    endpoint: &str,
    bucket: &str,
    key: &str,
    connections: usize,
    rate: usize,
    secs: usize,
    scratch: &Path,
) -> FloodOutcome {
    let (connections, rate, secs) = (connections.to_string(), rate.to_string(), secs.to_string());
    let report = run_py(
        "flood.py",
        [
            "--endpoint",
            endpoint,
            "--bucket",
            bucket,
            "--key",
            key,
            "--access-key",
            FLOOD_ACCESS_KEY,
            "--secret-key",
            FLOOD_SECRET_KEY,
            "--connections",
            &connections,
            "--rate",
            &rate,
            "--seconds",
            &secs,
        ],
        scratch,
        Duration::from_secs(300),
    );
    let count = |status: &str| report["by_status"][status].as_u64().unwrap_or(0) as usize;
    let other = report["by_status"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "200" | "503"))
                .map(|(k, v)| format!("{k}: {v}"))
                .collect()
        })
        .unwrap_or_default();
    FloodOutcome {
        ok: count("200"),
        slow_down: count("503"),
        slow_down_with_retry_after: report["slow_down_with_retry_after"].as_u64().unwrap_or(0)
            as usize,
        other,
        errors: report["errors"].as_u64().unwrap_or(u64::MAX) as usize,
        secs: report["seconds"].as_f64().unwrap_or(0.0),
        slow_down_body: report["slow_down_body"].as_str().unwrap_or("").to_string(),
    }
}

/// A flood tenant (200 connections, offered 10× its rate) beside a training tenant
/// streaming 128 MiB GETs from the same node: the node sees no more than the flood's
/// rate, the flood gets `SlowDown` XML with `Retry-After`, and training keeps its pace.
#[test]
fn flood_tenant_is_held_to_its_rate_beside_training() {
    let _serial = serial();
    let scratch = Scratch::new("protect-flood");
    let mut sw = Seaweed::start(scratch.path(), 1);
    sw.create_bucket("train");
    sw.create_bucket("flood");
    let big = scratch.path().join("big.bin");
    let big_sha = data::write_pattern_file(&big, 21, 128 * MIB);
    let seeded = Transfer::put_file(&format!("{}/train/big", sw.endpoint(0)), &big, None)
        .wait(Duration::from_secs(120));
    assert!(seeded.ok, "seed: {seeded:?}");
    let small = scratch.path().join("small.bin");
    data::write_pattern_file(&small, 22, 1024);
    let seeded = Transfer::put_file(&format!("{}/flood/small", sw.endpoint(0)), &small, None)
        .wait(Duration::from_secs(60));
    assert!(seeded.ok, "seed: {seeded:?}");

    // One node; the flood bucket's requests reach it through a relay that counts them
    // (training bypasses it, so its bytes are not copied through the test process).
    let gateway = sw.gateway_addrs()[0];
    let relay = Relay::start(gateway);
    let cfg = WeirConfig::new(&[gateway])
        .pool(PoolConfig::new("counted", &[relay.addr()]))
        .route(&["bucket = \"flood\"", "pool = \"counted\""])
        .extra(&tenancy());
    let mut weir = Weir::start(&cfg, scratch.path());
    let train_url = format!("{}/train/big", weir.endpoint());

    // Training alone.
    let secs = 8.0;
    const CONNECTIONS: usize = 200;
    const RATE: usize = 200;
    let cpu0 = weir.cpu_seconds();
    let (alone_bytes, alone_secs) = stream_gets(&train_url, 128 * MIB, 2, secs);
    let cpu1 = weir.cpu_seconds();

    // Training beside the flood.
    let before = relay.counters().requests_matching("/flood/");
    let (endpoint, dir) = (weir.endpoint(), scratch.path().to_path_buf());
    let flooding =
        std::thread::spawn(move || flood(&endpoint, "flood", "small", CONNECTIONS, RATE, 10, &dir));
    let (with_bytes, with_secs) = stream_gets(&train_url, 128 * MIB, 2, secs);
    let beside = with_bytes as f64 / with_secs;
    let cpu2 = weir.cpu_seconds();
    let f = flooding.join().expect("flood thread");
    let at_node = relay.counters().requests_matching("/flood/") - before;
    // Training alone again: the node's own pace drifts, so "alone" is the mean of the
    // runs before and after.
    let (again_bytes, again_secs) = stream_gets(&train_url, 128 * MIB, 2, secs);
    let alone = (alone_bytes + again_bytes) as f64 / (alone_secs + again_secs);
    println!(
        "weir CPU: {:.2}s training alone ({alone_secs:.1}s), {:.2}s beside the flood ({with_secs:.1}s)",
        cpu1 - cpu0,
        cpu2 - cpu1
    );

    println!(
        "training alone {:.0} MB/s, beside the flood {:.0} MB/s ({:.1}%)",
        alone / 1e6,
        beside / 1e6,
        100.0 * beside / alone
    );
    println!(
        "flood: {} requests in {:.1}s ({:.0}/s offered over {CONNECTIONS} connections): {} × 200, {} × SlowDown ({} with Retry-After); node saw {at_node} ({:.1}/s, limit {FLOOD_RATE}/s)",
        f.ok + f.slow_down + f.other.len(),
        f.secs,
        (f.ok + f.slow_down) as f64 / f.secs,
        f.ok,
        f.slow_down,
        f.slow_down_with_retry_after,
        at_node as f64 / f.secs,
    );
    assert!(
        f.other.is_empty(),
        "unexpected flood answers: {:?}",
        &f.other[..f.other.len().min(10)]
    );
    assert_eq!(f.errors, 0, "flood connections failed");
    assert_eq!(
        f.ok + f.slow_down,
        RATE * 10,
        "every flood request answered"
    );
    assert_eq!(
        f.ok, at_node,
        "every admitted flood request reached the node, no other did"
    );
    // Rate × time + burst (100 ms) + one request per core, + 5%.
    let bound = (FLOOD_RATE * f.secs + FLOOD_RATE * 0.1 + 2.0) * 1.05;
    assert!(
        (at_node as f64) <= bound,
        "node saw {at_node} flood requests in {:.1}s; the limit allows {bound:.0}",
        f.secs
    );
    assert!(
        (at_node as f64) >= FLOOD_RATE * f.secs * 0.8,
        "the flood tenant still gets its rate: {at_node} in {:.1}s",
        f.secs
    );
    assert_eq!(
        f.slow_down, f.slow_down_with_retry_after,
        "every SlowDown has Retry-After"
    );
    assert!(
        f.slow_down_body.contains("<Error><Code>SlowDown</Code>"),
        "a SlowDown body: {}",
        f.slow_down_body
    );
    let shed = weir.metric_sum("weir_shed_requests_total", |l| {
        l.contains("tenant=\"flood\"")
    });
    assert_eq!(
        shed as usize, f.slow_down,
        "weir_shed_requests_total{{tenant=\"flood\"}}"
    );
    let admitted_2xx = weir.metric_sum("weir_tenant_requests_total", |l| {
        l.contains("tenant=\"flood\"") && l.contains("status=\"2xx\"")
    });
    assert_eq!(admitted_2xx as usize, f.ok);
    // The goal is at most 10% lost (98.4% measured on a quiet machine, docs/limits.md),
    // but the node's own pace moves ±15% between runs on 2 shared cores, so the 10% figure
    // is the bench's (bench/results/noisy-neighbour.md, side by side with the peers). Here a
    // bound that still fails when the flood reaches the node or takes the CPU.
    assert!(
        beside >= 0.6 * alone,
        "training dropped to {:.1}% beside the flood",
        100.0 * beside / alone
    );
    let hashed = Transfer::get(&train_url, None).wait(Duration::from_secs(120));
    assert!(hashed.ok, "{hashed:?}");
    assert_eq!(
        (hashed.sha256.as_str(), hashed.bytes),
        (big_sha.as_str(), 128 * MIB)
    );
    weir.assert_running();
}

/// A tenant capped at 32 MiB/s downloads a 256 MiB object through weir (spliced): the
/// transfer never beats the cap by more than the 100 ms burst and 5%, does not fall more
/// than 10% under it, and the body is intact. The cap sits far below what the node serves
/// alone (s3s-fs reads at ~120 MiB/s on a 2-core machine), so the node's own speed cannot
/// decide the outcome.
#[test]
fn bandwidth_cap_paces_spliced_gets() {
    let _serial = serial();
    let scratch = Scratch::new("protect-bandwidth");
    let node = S3sFs::start(scratch.path(), "s3s-0");
    nodes::seed(&[node.endpoint()], "bandwidth", &[], scratch.path());
    let size = 256 * MIB;
    let src = scratch.path().join("object.bin");
    let sha = data::write_pattern_file(&src, 31, size);
    let seeded = Transfer::put_file(&format!("{}/bandwidth/object", node.endpoint()), &src, None)
        .wait(Duration::from_secs(300));
    assert!(seeded.ok, "seed: {seeded:?}");
    std::fs::remove_file(&src).expect("remove source");

    let rate = 32 * MIB;
    let cfg = WeirConfig::new(&[node.addr()]).extra(&format!(
        r#"
[[tenant]]
name = "capped"
access_keys = ["{ACCESS_KEY}"]
download_bytes_per_sec = {rate}
"#
    ));
    let mut weir = Weir::start(&cfg, scratch.path());
    let url = format!("{}/bandwidth/object", weir.endpoint());
    let spliced_before = weir.metric_sum("weir_body_bytes_total", |l| {
        l.contains("direction=\"download\"") && l.contains("path=\"splice\"")
    });
    let out = Transfer::get(&url, None).wait(Duration::from_secs(120));
    assert!(out.ok, "{out:?}");
    assert_eq!((out.sha256.as_str(), out.bytes), (sha.as_str(), size));
    let measured = size as f64 / out.secs;
    println!(
        "{} MiB at a {} MiB/s cap: {:.2}s, {:.1} MiB/s ({:+.2}%)",
        size / MIB,
        rate / MIB,
        out.secs,
        measured / MIB as f64,
        100.0 * (measured / rate as f64 - 1.0)
    );
    let ratio = measured / rate as f64;
    assert!(
        (0.90..=1.05).contains(&ratio),
        "measured {:.1} MiB/s against a {} MiB/s cap",
        measured / MIB as f64,
        rate / MIB
    );
    let spliced = weir.metric_sum("weir_body_bytes_total", |l| {
        l.contains("direction=\"download\"") && l.contains("path=\"splice\"")
    }) - spliced_before;
    assert!(
        spliced >= (size - MIB) as f64,
        "the capped body was spliced: {spliced} bytes"
    );
    weir.assert_running();
}

/// QoS classes under contention: a slow node (50 ms per request) with
/// `node_inflight_max = 4` can serve about 80 requests/s; two tenants in classes of
/// weight 8 and 1 each keep 100 connections busy. While both wait, the node's slots go
/// to the classes about 8 : 1, and the node never sees more than 4 at once.
#[test]
fn classes_share_a_contended_node_by_weight() {
    let _serial = serial();
    let scratch = Scratch::new("protect-qos");
    let nodes = sim::start(1, &["bench/small-:4KiB:1"]);
    nodes[0].set_faults(Faults {
        latency_ms: 50,
        ..Faults::default()
    });
    // Probes on the simulator's control API, which it does not count as requests.
    let cfg = WeirConfig::new(&sim::addrs(&nodes))
        .main_health("method = \"GET\"")
        .main_health("path = \"/_sim/stats\"")
        .main_health("expect_status = 200")
        .extra(&format!(
            r#"
[limits]
node_inflight_max = 4

[defaults]
class = "bulk"

[[class]]
name = "inference"
weight = 8
queue_max = 512
queue_timeout = "5s"

[[class]]
name = "bulk"
weight = 1
queue_max = 512
queue_timeout = "5s"

[[tenant]]
name = "inference"
access_keys = ["{ACCESS_KEY}"]
class = "inference"

[[tenant]]
name = "bulk"
access_keys = ["{FLOOD_ACCESS_KEY}"]
class = "bulk"
"#
        ));
    let weir = Weir::start(&cfg, scratch.path());
    let run = |access_key: &'static str, secret_key: &'static str| {
        let (endpoint, dir) = (weir.endpoint(), scratch.path().to_path_buf());
        std::thread::spawn(move || {
            run_py(
                "flood.py",
                [
                    "--endpoint",
                    endpoint.as_str(),
                    "--bucket",
                    "bench",
                    "--key",
                    "small-0",
                    "--access-key",
                    access_key,
                    "--secret-key",
                    secret_key,
                    "--connections",
                    "100",
                    "--rate",
                    "300",
                    "--seconds",
                    "8",
                ],
                &dir,
                Duration::from_secs(300),
            )
        })
    };
    let inference = run(ACCESS_KEY, weir_tests::SECRET_KEY);
    let bulk = run(FLOOD_ACCESS_KEY, FLOOD_SECRET_KEY);
    let (inference, bulk) = (
        inference.join().expect("inference client"),
        bulk.join().expect("bulk client"),
    );
    let served = |r: &serde_json::Value| r["by_status"]["200"].as_u64().unwrap_or(0) as f64;
    let (si, sb) = (served(&inference), served(&bulk));
    // While both classes have requests waiting: from the first second to the last but
    // one of the offered load (after that the queues drain).
    let window = |r: &serde_json::Value| -> f64 {
        r["ok_per_second"]
            .as_array()
            .map(|a| a.iter().skip(1).take(6).filter_map(|v| v.as_f64()).sum())
            .unwrap_or(0.0)
    };
    let (wi, wb) = (window(&inference), window(&bulk));
    let stats = nodes[0].stats();
    println!(
        "QOS: seconds 1–7 of contention: inference (weight 8) {wi} served, bulk (weight 1) {wb}: {:.2} : 1 ({:.0} requests/s); whole run {si} : {sb}; node saw {} requests; inference {}, bulk {}",
        wi / wb.max(1.0),
        (wi + wb) / 6.0,
        stats.requests,
        inference["by_status"],
        bulk["by_status"]
    );
    assert_eq!(inference["errors"], 0);
    assert_eq!(bulk["errors"], 0);
    assert_eq!(
        stats.requests as f64,
        si + sb,
        "every request the node saw was served"
    );
    let ratio = wi / wb.max(1.0);
    assert!(
        (5.0..=12.0).contains(&ratio),
        "classes of weight 8 : 1 were served {ratio:.2} : 1"
    );
    assert!(
        (wi + wb) / 6.0 <= 4.0 * 20.0 * 1.1,
        "the node served {:.0} requests/s at 50 ms each: more than 4 at a time",
        (wi + wb) / 6.0
    );
}
