//! S3 operations through weir with real clients and real S3 servers, every body SHA-256
//! checked (tests/py/s3_suite.py does the boto3 part; the AWS CLI, s5cmd and curl run here).
//!
//! Backends: s3s-fs (one node per folder; two nodes share only seeded objects, so writes use
//! a single-node pool) and SeaweedFS (three S3 gateways over one filer: writes through any
//! gateway are visible through all, so parts of one multipart upload can land on different
//! nodes). Each weir-facing test has a `control_*` twin that runs the same client suite
//! directly against the storage: if the control fails, the harness or the tool is broken,
//! not weir.

use std::time::Duration;
use weir_tests::clients::{self, boto3_suite};
use weir_tests::data::{self, Scratch};
use weir_tests::nodes::{self, S3sFs, Seaweed};
use weir_tests::tcp::Relay;
use weir_tests::weir::{Weir, WeirConfig};

const MIB: u64 = 1 << 20;

fn create_bucket(endpoint: &str, bucket: &str, scratch: &std::path::Path) {
    nodes::seed(&[endpoint.to_string()], bucket, &[], scratch);
}

#[test]
fn control_boto3_suite_direct_to_s3s_fs() {
    let scratch = Scratch::new("control-s3s");
    let node = S3sFs::start(scratch.path(), "s3s-0");
    create_bucket(&node.endpoint(), "suite", scratch.path());
    boto3_suite(
        "control-s3s",
        &node.endpoint(),
        "suite",
        "full",
        None,
        scratch.path(),
    );
}

#[test]
fn control_boto3_suite_direct_to_seaweedfs() {
    let scratch = Scratch::new("control-seaweed");
    let mut sw = Seaweed::start(scratch.path(), 1);
    sw.create_bucket("suite");
    boto3_suite(
        "control-seaweed",
        &sw.endpoint(0),
        "suite",
        "full",
        None,
        scratch.path(),
    );
}

/// The whole boto3 suite through weir to one s3s-fs node (which verifies every SigV4
/// signature, so any header weir altered fails the request).
#[test]
fn boto3_suite_through_weir_over_s3s_fs() {
    let scratch = Scratch::new("weir-s3s");
    let node = S3sFs::start(scratch.path(), "s3s-0");
    create_bucket(&node.endpoint(), "suite", scratch.path());
    let relay = Relay::start(node.addr());
    let mut weir = Weir::start(&WeirConfig::new(&[relay.addr()]), scratch.path());
    boto3_suite(
        "weir-s3s",
        &weir.endpoint(),
        "suite",
        "full",
        None,
        scratch.path(),
    );
    weir.assert_running();
    // Everything went through weir to the node: the suite uploads ~59 MiB of bodies.
    assert!(
        relay.counters().bytes_in() > 55 * MIB,
        "node saw only {} bytes",
        relay.counters().bytes_in()
    );
}

/// Read-only suite through weir over two s3s-fs nodes holding the same seeded objects:
/// every GET/HEAD/LIST is answered correctly whichever node serves it, and both serve.
#[test]
fn boto3_read_suite_through_weir_over_two_seeded_s3s_fs_nodes() {
    let scratch = Scratch::new("weir-s3s-read");
    let nodes = S3sFs::start_many(scratch.path(), 2);
    let objects = data::seed_objects(
        &scratch.sub("seed"),
        &[0, 1, 4096, 1 << 20, 5 * MIB + 17, 16 * MIB],
    );
    let endpoints: Vec<String> = nodes.iter().map(S3sFs::endpoint).collect();
    let manifest = nodes::seed(&endpoints, "seeded", &objects, scratch.path());
    let relays: Vec<Relay> = nodes.iter().map(|n| Relay::start(n.addr())).collect();
    let addrs: Vec<_> = relays.iter().map(Relay::addr).collect();
    let mut weir = Weir::start(&WeirConfig::new(&addrs), scratch.path());
    boto3_suite(
        "weir-read",
        &weir.endpoint(),
        "seeded",
        "read",
        Some(&manifest),
        scratch.path(),
    );
    weir.assert_running();
    for (i, r) in relays.iter().enumerate() {
        println!(
            "node {i}: {} connections, {} bytes out",
            r.counters().connections(),
            r.counters().bytes_out()
        );
        assert!(
            r.counters().bytes_out() > 0,
            "node {i} served nothing: weir did not balance over the pool"
        );
    }
}

/// Keep-alive on both sides: 60 sequential requests on one client connection reuse that
/// connection (checked by the client) and one pooled upstream connection (counted here).
#[test]
fn keep_alive_reuses_client_and_upstream_connections() {
    let scratch = Scratch::new("weir-keepalive");
    let node = S3sFs::start(scratch.path(), "s3s-0");
    let objects = data::seed_objects(&scratch.sub("seed"), &[10, 1000, 100_000]);
    let manifest = nodes::seed(&[node.endpoint()], "keepalive", &objects, scratch.path());
    let relay = Relay::start(node.addr());
    let weir = Weir::start(&WeirConfig::new(&[relay.addr()]), scratch.path());
    let report = boto3_suite(
        "weir-keepalive",
        &weir.endpoint(),
        "keepalive",
        "keepalive",
        Some(&manifest),
        scratch.path(),
    );
    let requests = report["info"]["keepalive_requests"]
        .as_u64()
        .expect("request count");
    // weir's health probes (`HEAD /`) open their own connections; count the others.
    let first_lines = relay.counters().first_lines();
    let upstream = relay.counters().non_probe_first_lines().len();
    println!(
        "keep-alive: {requests} requests over {upstream} upstream connection(s) \
         ({} with probes)",
        first_lines.len()
    );
    // One client connection lives on one core, whose pool needs one connection; allow one
    // spare for a pool that replaced a connection it found closed.
    assert!(
        (1..=2).contains(&upstream),
        "{requests} sequential requests used {upstream} upstream connections: {first_lines:?}"
    );
}

/// The whole boto3 suite through weir over three SeaweedFS gateways; the multipart upload's
/// parts (4 in flight) land on more than one gateway.
#[test]
fn boto3_suite_through_weir_over_seaweedfs() {
    let scratch = Scratch::new("weir-seaweed");
    let mut sw = Seaweed::start(scratch.path(), 3);
    sw.create_bucket("suite");
    let relays: Vec<Relay> = sw.gateway_addrs().into_iter().map(Relay::start).collect();
    let addrs: Vec<_> = relays.iter().map(Relay::addr).collect();
    let mut weir = Weir::start(&WeirConfig::new(&addrs), scratch.path());
    boto3_suite(
        "weir-seaweed",
        &weir.endpoint(),
        "suite",
        "full",
        None,
        scratch.path(),
    );
    weir.assert_running();
    let uploads: Vec<u64> = relays.iter().map(|r| r.counters().bytes_in()).collect();
    println!("bytes uploaded per gateway: {uploads:?}");
    // The suite uploads ~28 MiB of multipart parts plus ~20 MiB else: more than one gateway
    // must have taken at least a 5 MiB part's worth.
    let busy = uploads.iter().filter(|&&b| b >= 5 * MIB).count();
    assert!(
        busy >= 2,
        "uploads were not spread over the gateways: {uploads:?}"
    );
}

/// AWS CLI (multipart `s3 cp` both ways, `s3api`), s5cmd (cp both ways, ls) and curl
/// `--aws-sigv4` (PUT from stdin with Transfer-Encoding: chunked, GET) through weir over
/// SeaweedFS.
#[test]
fn cli_clients_through_weir_over_seaweedfs() {
    let scratch = Scratch::new("weir-cli");
    let mut sw = Seaweed::start(scratch.path(), 3);
    sw.create_bucket("cli");
    let weir = Weir::start(&WeirConfig::new(&sw.gateway_addrs()), scratch.path());
    cli_clients(&weir.endpoint(), "cli", &scratch);
}

#[test]
fn control_cli_clients_direct_to_seaweedfs() {
    let scratch = Scratch::new("control-cli");
    let mut sw = Seaweed::start(scratch.path(), 1);
    sw.create_bucket("cli");
    cli_clients(&sw.endpoint(0), "cli", &scratch);
}

fn cli_clients(endpoint: &str, bucket: &str, scratch: &Scratch) {
    let dir = scratch.sub("cli");
    let s = scratch.path();

    // AWS CLI: 40 MiB → five 8 MiB parts up (concurrently), ranged parallel GETs down.
    let big = dir.join("big.bin");
    let big_sha = data::write_pattern_file(&big, 7, 40 * MIB + 3);
    let dest = format!("s3://{bucket}/aws/big.bin");
    clients::aws(endpoint, &["s3", "cp", big.to_str().unwrap(), &dest], s);
    let back = dir.join("big.back");
    clients::aws(endpoint, &["s3", "cp", &dest, back.to_str().unwrap()], s);
    assert_eq!(
        data::sha256_file(&back),
        (big_sha.clone(), 40 * MIB + 3),
        "aws s3 cp round trip"
    );
    let ls = String::from_utf8(clients::aws(
        endpoint,
        &["s3", "ls", &format!("s3://{bucket}/aws/")],
        s,
    ))
    .unwrap();
    assert!(ls_has(&ls, 40 * MIB + 3, "big.bin"), "aws s3 ls: {ls}");

    // AWS CLI s3api: put-object, head-object, get-object.
    let small = dir.join("small.bin");
    let small_sha = data::write_pattern_file(&small, 8, 300_001);
    clients::aws(
        endpoint,
        &[
            "s3api",
            "put-object",
            "--bucket",
            bucket,
            "--key",
            "api/small",
            "--body",
            small.to_str().unwrap(),
        ],
        s,
    );
    let head: serde_json::Value = serde_json::from_slice(&clients::aws(
        endpoint,
        &[
            "s3api",
            "head-object",
            "--bucket",
            bucket,
            "--key",
            "api/small",
        ],
        s,
    ))
    .expect("head-object JSON");
    assert_eq!(head["ContentLength"], 300_001, "s3api head-object: {head}");
    let got = dir.join("small.back");
    clients::aws(
        endpoint,
        &[
            "s3api",
            "get-object",
            "--bucket",
            bucket,
            "--key",
            "api/small",
            got.to_str().unwrap(),
        ],
        s,
    );
    assert_eq!(data::sha256_file(&got).0, small_sha, "s3api get-object");

    // s5cmd: cp up as a multipart upload (5 MiB parts, 3 at once), cp down, ls.
    let mid = dir.join("mid.bin");
    let mid_sha = data::write_pattern_file(&mid, 9, 12 * MIB + 5);
    let target = format!("s3://{bucket}/s5/mid.bin");
    clients::s5cmd(
        endpoint,
        ["cp", "-p", "5", "-c", "3", mid.to_str().unwrap(), &target],
        s,
    );
    let mid_back = dir.join("mid.back");
    clients::s5cmd(endpoint, ["cp", &target, mid_back.to_str().unwrap()], s);
    assert_eq!(
        data::sha256_file(&mid_back).0,
        mid_sha,
        "s5cmd cp round trip"
    );
    let ls = String::from_utf8(clients::s5cmd(
        endpoint,
        ["ls", &format!("s3://{bucket}/s5/")],
        s,
    ))
    .unwrap();
    assert!(ls_has(&ls, 12 * MIB + 5, "mid.bin"), "s5cmd ls: {ls}");

    // curl --aws-sigv4: PUT from stdin (no length known: Transfer-Encoding: chunked), GET.
    let body = data::pattern(10, 3 * MIB as usize + 11);
    let url = format!("{endpoint}/{bucket}/curl/stdin.bin");
    let mut put = clients::curl_sigv4();
    put.args(["--fail-with-body", "-T", "-", &url]);
    let out = pipe_stdin(&mut put, &body);
    assert!(
        out.status.success(),
        "curl PUT from stdin: {}",
        String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr)
    );
    let mut get = clients::curl_sigv4();
    get.args(["--fail-with-body", &url]);
    let out = clients::output(&mut get, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "curl GET: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        data::sha256_hex(&out.stdout),
        data::sha256_hex(&body),
        "curl stdin PUT → GET"
    );
}

/// Whether a listing (`aws s3 ls`, `s5cmd ls`) has a line ending in `<size> <name>`.
fn ls_has(listing: &str, size: u64, name: &str) -> bool {
    let size = size.to_string();
    listing.lines().any(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        words.len() >= 2 && words[words.len() - 2] == size && words[words.len() - 1] == name
    })
}

/// Runs `cmd` with `input` on stdin; returns its output.
fn pipe_stdin(cmd: &mut std::process::Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer");
    out
}
