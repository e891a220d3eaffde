//! Per-route settings end to end (docs/config.md, "Per-route settings"): key-prefix
//! routing within a bucket over two real s3s-fs nodes, one per pool — objects under the
//! prefix must land on the "nvme" node's disk and every other object on the "hdd" node's,
//! whichever client wrote them and however the key was spelled — and per-route upstream
//! timeouts over weir-sim nodes that answer late or stall mid-body.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use weir_bench::{Faults, SimNode};
use weir_tests::clients::s3_code;
use weir_tests::clients::{self, aws, curl_sigv4};
use weir_tests::data::{self, Scratch};
use weir_tests::nodes::S3sFs;
use weir_tests::sim;
use weir_tests::transfer::{synthetic_sha256, wait_for, Transfer};
use weir_tests::weir::{PoolConfig, Weir, WeirConfig};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// How long a curl call may take at most.
const CURL_MAX: Duration = Duration::from_secs(30);

/// PUTs `file` at `path` (as written: `--path-as-is`) through weir with curl; the status.
fn curl_put(weir: &Weir, path: &str, file: &Path, scratch: &Path) -> (u16, Vec<u8>) {
    let mut cmd = curl_sigv4();
    cmd.arg("--path-as-is").arg("-T").arg(file);
    clients::curl_status_body(
        cmd,
        &format!("{}{path}", weir.endpoint()),
        scratch,
        CURL_MAX,
    )
}

/// GETs `path` (as written) through weir with curl: the status and the body.
fn curl_get(weir: &Weir, path: &str, scratch: &Path) -> (u16, Vec<u8>) {
    let mut cmd: Command = curl_sigv4();
    cmd.arg("--path-as-is");
    clients::curl_status_body(
        cmd,
        &format!("{}{path}", weir.endpoint()),
        scratch,
        CURL_MAX,
    )
}

/// The keys `aws s3api list-objects-v2` lists through weir, with `--prefix` if given.
fn list_keys(weir: &Weir, prefix: Option<&str>, scratch: &Path) -> Vec<String> {
    let mut args = vec!["s3api", "list-objects-v2", "--bucket", "datasets"];
    if let Some(p) = prefix {
        args.extend(["--prefix", p]);
    }
    let out = aws(&weir.endpoint(), &args, scratch);
    let json: serde_json::Value = if out.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&out).expect("list-objects-v2 JSON")
    };
    let mut keys: Vec<String> = json["Contents"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|o| o["Key"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    keys.sort();
    keys
}

/// Requests weir sent to `pool`'s nodes (`weir_node_requests_total`).
fn pool_requests(weir: &Weir, pool: &str) -> f64 {
    let label = format!("pool=\"{pool}\"");
    weir.metric_sum("weir_node_requests_total", |l| l.contains(&label))
}

/// The bytes of `key` on `node`'s disk (s3s-fs keeps an object as a file at
/// `<data>/<bucket>/<key>`), if it is there.
fn on_disk(node: &S3sFs, key: &str) -> Option<Vec<u8>> {
    std::fs::read(node.data_dir().join("datasets").join(key)).ok()
}

/// `datasets` split by key prefix: `checkpoints/` on the "nvme" node, the rest on the
/// "hdd" node. Every object is checked on both disks and read back through weir; listings
/// follow their prefix; no spelling of a key (percent-encoded slash, dot segments)
/// moves an object out of its pool.
#[test]
fn objects_under_the_prefix_land_on_its_pool_and_the_rest_on_the_buckets() {
    let scratch = Scratch::new("routes-prefix");
    let dir = scratch.path();
    let hdd = S3sFs::start(dir, "hdd");
    let nvme = S3sFs::start(dir, "nvme");
    for node in [&hdd, &nvme] {
        aws(
            &node.endpoint(),
            &["s3api", "create-bucket", "--bucket", "datasets"],
            dir,
        );
    }
    let cfg = WeirConfig::new(&[])
        .pool(PoolConfig::new("hdd", &[hdd.addr()]))
        .pool(PoolConfig::new("nvme", &[nvme.addr()]))
        .route(&[
            "bucket = \"datasets\"",
            "key_prefix = \"checkpoints/\"",
            "pool = \"nvme\"",
        ])
        .route(&["bucket = \"datasets\"", "pool = \"hdd\""]);
    let weir = Weir::start(&cfg, dir);
    let files = scratch.sub("files");
    let file = |name: &str, seed: u64, len: u64| {
        let path = files.join(name);
        data::write_pattern_file(&path, seed, len);
        (std::fs::read(&path).expect("read back"), path)
    };

    // curl (SigV4), path-style: one object under the prefix, one outside.
    let (a, a_path) = file("a.bin", 1, 300 * KIB);
    let (b, b_path) = file("b.bin", 2, 200 * KIB);
    for (path, local) in [
        ("/datasets/checkpoints/a.bin", &a_path),
        ("/datasets/train/b.bin", &b_path),
    ] {
        let (status, body) = curl_put(&weir, path, local, dir);
        assert_eq!(
            status,
            200,
            "PUT {path}: {}\n{}",
            String::from_utf8_lossy(&body),
            weir.log_tail()
        );
    }
    // awscli: a 20 MiB multipart upload under the prefix (8 MiB parts: Create, 3 ×
    // UploadPart, Complete, each naming the key in its path).
    let (big, big_path) = file("big.bin", 4, 20 * MIB);
    aws(
        &weir.endpoint(),
        &[
            "s3",
            "cp",
            &big_path.to_string_lossy(),
            "s3://datasets/checkpoints/big.bin",
        ],
        dir,
    );

    // On disk: each object on exactly one node, the one its route names.
    for (key, bytes) in [("checkpoints/a.bin", &a), ("checkpoints/big.bin", &big)] {
        assert!(
            on_disk(&nvme, key).as_ref() == Some(bytes),
            "{key} is not on the nvme node, byte for byte"
        );
        assert_eq!(on_disk(&hdd, key), None, "{key} landed on the hdd node");
    }
    assert!(
        on_disk(&hdd, "train/b.bin").as_ref() == Some(&b),
        "train/b.bin is not on the hdd node"
    );
    assert_eq!(on_disk(&nvme, "train/b.bin"), None, "train/b.bin on nvme");

    // Read back through weir.
    for (path, bytes) in [
        ("/datasets/checkpoints/a.bin", &a),
        ("/datasets/checkpoints/big.bin", &big),
        ("/datasets/train/b.bin", &b),
    ] {
        let (status, body) = curl_get(&weir, path, dir);
        assert_eq!(
            status,
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&body)
        );
        assert!(
            body == **bytes,
            "GET {path}: {} bytes, not the object written",
            body.len()
        );
    }

    let settled = |nvme: f64, hdd: f64| {
        wait_for(
            "the requests counted by pool",
            Duration::from_secs(5),
            Duration::from_millis(100),
            || {
                let counts = (pool_requests(&weir, "nvme"), pool_requests(&weir, "hdd"));
                (counts.0 >= nvme && counts.1 >= hdd).then_some(counts)
            },
        )
        .0
    };
    // nvme: 1 curl PUT, 5 multipart requests, 2 GETs; hdd: 1 PUT, 1 GET.
    assert_eq!(settled(8.0, 2.0), (8.0, 2.0), "requests by pool");

    // The key with its slash percent-encoded, which the node reads as the same key, goes
    // to the nvme pool. (curl signs an encoded slash otherwise than s3s-fs checks it, which
    // then answers 403 SignatureDoesNotMatch: the pool that answered is what counts here.)
    let (status, body) = curl_get(&weir, "/datasets/checkpoints%2Fa.bin", dir);
    assert!(
        (status == 200 && body == a) || status == 403,
        "GET checkpoints%2Fa.bin: {status} {}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(settled(9.0, 2.0), (9.0, 2.0), "the encoded key's pool");

    // Dot segments cannot climb out of (or into) the prefix: refused before any node.
    let before = pool_requests(&weir, "hdd") + pool_requests(&weir, "nvme");
    for path in [
        "/datasets/checkpoints/../train/b.bin",
        "/datasets/./checkpoints/a.bin",
        "/datasets/train/%2E%2E/checkpoints/a.bin",
    ] {
        let (status, body) = curl_get(&weir, path, dir);
        assert_eq!(
            (status, s3_code(&body).as_str()),
            (400, "InvalidURI"),
            "GET {path}"
        );
    }
    let after = pool_requests(&weir, "hdd") + pool_requests(&weir, "nvme");
    assert_eq!(after, before, "a refused target reached a node");

    // Listings (awscli ListObjectsV2) follow their prefix; without one, or with one wider
    // than the route's, the bucket's own route answers (documented: the nvme keys are not
    // in it).
    let nvme_keys = ["checkpoints/a.bin", "checkpoints/big.bin"];
    assert_eq!(list_keys(&weir, Some("checkpoints/"), dir), nvme_keys);
    assert_eq!(
        list_keys(&weir, Some("checkpoints/a"), dir),
        ["checkpoints/a.bin"]
    );
    assert_eq!(list_keys(&weir, Some("train/"), dir), ["train/b.bin"]);
    assert_eq!(list_keys(&weir, None, dir), ["train/b.bin"]);
    assert_eq!(list_keys(&weir, Some("check"), dir), Vec::<String>::new());

    // The operator's view: requests by pool (`weir_node_requests_total{pool}`), the two
    // listings of each pool added.
    let (to_nvme, to_hdd) = settled(11.0, 5.0);
    println!("ROUTES prefix: requests to nvme {to_nvme}, to hdd {to_hdd}");
    assert_eq!(to_nvme, 11.0, "nvme pool requests");
    assert_eq!(to_hdd, 5.0, "hdd pool requests: one it should not have had");
}

/// Three single-node pools of simulated nodes; `bench/tight/` has a 400 ms
/// first_byte_timeout, `bench/stall/` a 400 ms io_timeout, the rest of `bench` the global
/// 5 s of both.
fn timeout_rig(scratch: &Scratch) -> (Vec<SimNode>, Weir) {
    let nodes = sim::start(
        3,
        &[
            "bench/tight/o-:256KiB:1",
            "bench/o-:256KiB:1",
            "bench/stall/o-:4MiB:1",
        ],
    );
    let addrs = sim::addrs(&nodes);
    let cfg = WeirConfig::new(&[])
        .upstream("connect_timeout = \"1s\"")
        .upstream("first_byte_timeout = \"5s\"")
        .upstream("io_timeout = \"5s\"")
        .pool(sim::control_probe(PoolConfig::new("tight", &addrs[0..1])))
        .pool(sim::control_probe(PoolConfig::new("global", &addrs[1..2])))
        .pool(sim::control_probe(PoolConfig::new("stall", &addrs[2..3])))
        .route(&[
            "bucket = \"bench\"",
            "key_prefix = \"tight/\"",
            "pool = \"tight\"",
            "first_byte_timeout = \"400ms\"",
        ])
        .route(&[
            "bucket = \"bench\"",
            "key_prefix = \"stall/\"",
            "pool = \"stall\"",
            "io_timeout = \"400ms\"",
        ])
        .route(&["bucket = \"bench\"", "pool = \"global\""]);
    let weir = Weir::start(&cfg, scratch.path());
    (nodes, weir)
}

/// Both nodes answer 1.5 s late: the route with a 400 ms first_byte_timeout gives up
/// with 504 GatewayTimeout, the route with the global 5 s returns every byte.
#[test]
fn a_route_first_byte_timeout_trips_where_the_global_one_does_not() {
    let scratch = Scratch::new("routes-first-byte");
    let (nodes, weir) = timeout_rig(&scratch);
    for node in &nodes[0..2] {
        node.set_faults(Faults {
            latency_ms: 1500,
            ..Faults::default()
        });
    }
    let dir = scratch.path();

    let started = Instant::now();
    let (status, body) = curl_get(&weir, "/bench/tight/o-0", dir);
    let tight = started.elapsed();
    assert_eq!(
        (status, s3_code(&body).as_str()),
        (504, "GatewayTimeout"),
        "tight route: {}\n{}",
        String::from_utf8_lossy(&body),
        weir.log_tail()
    );
    assert!(
        nodes[0].stats().requests >= 1,
        "the tight route's node never saw the request"
    );

    let started = Instant::now();
    let out = Transfer::get(&format!("{}/bench/o-0", weir.endpoint()), None)
        .wait(Duration::from_secs(30));
    let global = started.elapsed();
    assert!(out.ok, "global route: {out:?}\n{}", weir.log_tail());
    assert_eq!(
        (out.status, out.sha256.as_str(), out.bytes),
        (
            200,
            synthetic_sha256("bench/o-0", 256 * KIB).as_str(),
            256 * KIB
        ),
        "global route: the body"
    );
    assert_eq!(
        nodes[2].stats().requests,
        0,
        "the stall pool took a request"
    );
    println!(
        "ROUTES first-byte: tight route 504 after {:.2}s, global route 200 after {:.2}s \
         (nodes 1.5s late)",
        tight.as_secs_f64(),
        global.as_secs_f64()
    );
    assert!(
        tight < Duration::from_millis(1500),
        "the tight route waited {tight:?}: its 400ms first_byte_timeout did not apply"
    );
}

/// A node that stops sending 1 MiB into a 4 MiB body: its route's 400 ms io_timeout cuts
/// the response (never completed short: the client sees a broken transfer) long before
/// the global 5 s would.
#[test]
fn a_route_io_timeout_cuts_a_stalled_body_before_the_global_one() {
    let scratch = Scratch::new("routes-io");
    let (nodes, weir) = timeout_rig(&scratch);
    nodes[2].set_faults(Faults {
        stall_after_bytes: Some(MIB),
        ..Faults::default()
    });
    let started = Instant::now();
    let out = Transfer::get(&format!("{}/bench/stall/o-0", weir.endpoint()), None)
        .wait(Duration::from_secs(30));
    let took = started.elapsed();
    println!(
        "ROUTES io: stalled body cut after {:.2}s, {} of {} bytes delivered",
        took.as_secs_f64(),
        out.bytes,
        4 * MIB
    );
    assert!(!out.ok, "a stalled body completed: {out:?}");
    assert!(
        out.bytes >= MIB && out.bytes < 4 * MIB,
        "delivered {} bytes",
        out.bytes
    );
    assert!(
        took < Duration::from_secs(4),
        "the stalled body held the client {took:?}: the route's 400ms io_timeout did not apply"
    );
}
