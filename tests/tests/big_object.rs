//! A 1 GiB object through weir, and the zero-copy proof (measured, not self-reported:
//! docs/design.md, "Zero-copy bodies"): strace counts the bytes weir moved with splice(2)
//! while it relays a 1 GiB GET, in `body_path = "splice"` (≥ 1 GiB each way through pipes,
//! less the few KiB that arrive with the response head and leave from user space) and in
//! the forced `"copy"` mode (≈ 0), with the body's SHA-256 right in both. CPU seconds per
//! GB of weir (from /proc/PID/stat) are printed for both modes next to the storage node's
//! own, not asserted: speed goals live in bench/.
//!
//! The tests here run one at a time (a lock), so the CPU figures do not disturb each other.

use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use weir_tests::clients::curl_sigv4;
use weir_tests::data::{self, Scratch};
use weir_tests::nodes::{self, S3sFs};
use weir_tests::strace::parse_splice_trace_file;
use weir_tests::weir::{cpu_seconds, BodyPath, Weir, WeirConfig};

const GIB: u64 = 1 << 30;
/// Body bytes that may arrive with a head and so leave from user space: one read buffer
/// (`header_bytes_max` + 1 KiB at most; the tests use 16 KiB heads).
const HEAD_READ_MAX: u64 = 32 * 1024;
const MIB: u64 = 1 << 20;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// PUTs a file with curl (`-T`: Content-Length known; curl sends `Expect: 100-continue`).
fn curl_put_file(url: &str, path: &Path) {
    let mut cmd = curl_sigv4();
    cmd.args([
        "--fail-with-body",
        "--speed-limit",
        "1000000",
        "--speed-time",
        "30",
        "-T",
    ])
    .arg(path)
    .arg(url);
    let out = weir_tests::clients::output(&mut cmd, Duration::from_secs(600));
    assert!(
        out.status.success(),
        "curl PUT {url}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// GETs `url` with curl, hashing the body as it streams; returns (sha256, length, seconds).
fn curl_get_sha(url: &str) -> (String, u64, f64) {
    let mut cmd = curl_sigv4();
    // A stalled transfer fails the test instead of hanging it (< 1 MB/s for 30 s).
    cmd.args([
        "--fail",
        "--speed-limit",
        "1000000",
        "--speed-time",
        "30",
        url,
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn curl");
    let stdout = child.stdout.take().expect("stdout");
    let (sha, len) = data::sha256_reader(stdout).expect("read curl output");
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .ok();
    let status = child.wait().expect("wait curl");
    assert!(status.success(), "curl GET {url}: {status} {err}");
    (sha, len, started.elapsed().as_secs_f64())
}

/// One 1 GiB GET measured: body hash, wall time, CPU of weir (if any) and of the node.
struct Measured {
    sha: String,
    len: u64,
    secs: f64,
    weir_cpu: f64,
    node_cpu: f64,
}

fn measured_get(url: &str, weir_pid: Option<u32>, node_pid: u32) -> Measured {
    let (w0, n0) = (
        weir_pid.map(cpu_seconds).unwrap_or(0.0),
        cpu_seconds(node_pid),
    );
    let (sha, len, secs) = curl_get_sha(url);
    let (w1, n1) = (
        weir_pid.map(cpu_seconds).unwrap_or(0.0),
        cpu_seconds(node_pid),
    );
    Measured {
        sha,
        len,
        secs,
        weir_cpu: w1 - w0,
        node_cpu: n1 - n0,
    }
}

fn per_gb(cpu: f64, bytes: u64) -> f64 {
    cpu / (bytes as f64 / 1e9)
}

fn print_row(label: &str, m: &Measured) {
    println!(
        "{label:<34} {:>6.2} GB/s   weir {:>5.2} CPU-s/GB   node {:>5.2} CPU-s/GB",
        m.len as f64 / 1e9 / m.secs,
        per_gb(m.weir_cpu, m.len),
        per_gb(m.node_cpu, m.len)
    );
}

/// A 1 GiB object PUT and GET through weir (splice mode), SHA-256 equal end to end and on
/// the node's disk.
#[test]
fn one_gib_put_and_get_through_weir() {
    let _serial = serial();
    let scratch = Scratch::new("big-put-get");
    let node = S3sFs::start(scratch.path(), "s3s-0");
    nodes::seed(&[node.endpoint()], "big", &[], scratch.path());
    let src = scratch.path().join("one-gib.bin");
    let sha = data::write_pattern_file(&src, 42, GIB);
    let mut weir = Weir::start(&WeirConfig::new(&[node.addr()]), scratch.path());
    let url = format!("{}/big/one-gib", weir.endpoint());

    let started = Instant::now();
    curl_put_file(&url, &src);
    println!(
        "PUT 1 GiB through weir: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    std::fs::remove_file(&src).expect("remove source");
    let stored = node.data_dir().join("big/one-gib");
    assert_eq!(
        data::sha256_file(&stored),
        (sha.clone(), GIB),
        "object on the node's disk"
    );

    let m = measured_get(&url, Some(weir.pid()), node.pid());
    assert_eq!(
        (m.sha.as_str(), m.len),
        (sha.as_str(), GIB),
        "GET 1 GiB through weir"
    );
    print_row("GET 1 GiB via weir (splice)", &m);
    weir.assert_running();
    let splice = weir.metric_sum("weir_body_bytes_total", |l| l.contains("path=\"splice\""));
    println!("weir_body_bytes_total{{path=\"splice\"}} = {splice}");
    // All but the body bytes that arrived with each head (they leave from user space,
    // at most one read buffer: 16 KiB here).
    assert!(
        splice >= (2 * (GIB - HEAD_READ_MAX)) as f64,
        "weir reports {splice} spliced bytes for a 1 GiB PUT + GET"
    );
}

/// The zero-copy proof: splice(2) bytes counted by strace for a 1 GiB GET, splice vs copy
/// mode; plus CPU-s/GB untraced for direct, splice and copy.
#[test]
fn one_gib_get_is_spliced_not_copied() {
    let _serial = serial();
    let scratch = Scratch::new("big-zero-copy");
    let node = S3sFs::start(scratch.path(), "s3s-0");
    nodes::seed(&[node.endpoint()], "big", &[], scratch.path());
    let src = scratch.path().join("one-gib.bin");
    let sha = data::write_pattern_file(&src, 43, GIB);
    curl_put_file(&format!("{}/big/one-gib", node.endpoint()), &src);
    std::fs::remove_file(&src).expect("remove source");

    // Direct to the node: the baseline.
    let direct = measured_get(
        &format!("{}/big/one-gib", node.endpoint()),
        None,
        node.pid(),
    );
    assert_eq!(
        (direct.sha.as_str(), direct.len),
        (sha.as_str(), GIB),
        "direct GET"
    );

    let mut rows = vec![("GET 1 GiB direct to node", direct)];
    for mode in [BodyPath::Splice, BodyPath::Copy] {
        let label = format!("{mode:?}").to_lowercase();
        let cfg = WeirConfig::new(&[node.addr()]).body_path(mode);

        // Traced: count splice(2) bytes.
        let dir = scratch.sub(&format!("traced-{label}"));
        let weir = Weir::start_traced(&cfg, &dir);
        let (got, len, _) = curl_get_sha(&format!("{}/big/one-gib", weir.endpoint()));
        assert_eq!(
            (got.as_str(), len),
            (sha.as_str(), GIB),
            "GET 1 GiB via weir ({label}, traced)"
        );
        let trace = weir.stop().expect("strace output");
        let t = parse_splice_trace_file(&trace);
        println!(
            "{label}: splice moved {} MiB socket→pipe, {} MiB pipe→socket, {} MiB other in {} calls ({} failed/EAGAIN)",
            t.socket_to_pipe / MIB,
            t.pipe_to_socket / MIB,
            t.other / MIB,
            t.calls,
            t.failed_calls
        );
        match mode {
            BodyPath::Splice => {
                assert!(
                    t.socket_to_pipe >= GIB - HEAD_READ_MAX,
                    "splice mode: only {} bytes socket→pipe by splice(2)",
                    t.socket_to_pipe
                );
                assert!(
                    t.pipe_to_socket >= GIB - HEAD_READ_MAX,
                    "splice mode: only {} bytes pipe→socket by splice(2)",
                    t.pipe_to_socket
                );
            }
            BodyPath::Copy => {
                assert!(
                    t.total() < MIB,
                    "copy mode still moved {} bytes by splice(2)",
                    t.total()
                );
            }
        }

        // Untraced: CPU per GB.
        let dir = scratch.sub(&format!("cpu-{label}"));
        let mut weir = Weir::start(&cfg, &dir);
        let m = measured_get(
            &format!("{}/big/one-gib", weir.endpoint()),
            Some(weir.pid()),
            node.pid(),
        );
        assert_eq!(
            (m.sha.as_str(), m.len),
            (sha.as_str(), GIB),
            "GET 1 GiB via weir ({label})"
        );
        weir.assert_running();
        let by_path = |p: &str| {
            weir.metric_sum("weir_body_bytes_total", |l| {
                l.contains(&format!("path=\"{p}\""))
            })
        };
        let (own, other) = match mode {
            BodyPath::Splice => (by_path("splice"), by_path("copy")),
            BodyPath::Copy => (by_path("copy"), by_path("splice")),
        };
        println!("{label}: weir_body_bytes_total on its own path {own}, on the other {other}");
        assert!(
            own >= (GIB - HEAD_READ_MAX) as f64 && other < MIB as f64,
            "{label}: weir's body-path counters {own} / {other}"
        );
        rows.push((
            if mode == BodyPath::Splice {
                "GET 1 GiB via weir (splice)"
            } else {
                "GET 1 GiB via weir (copy)"
            },
            m,
        ));
    }
    println!("--- CPU per GB (GB = 1e9 bytes; printed, not asserted)");
    for (label, m) in &rows {
        print_row(label, m);
    }
}

/// CPU per GB of weir itself, with a source that costs almost nothing (an in-memory HTTP
/// origin instead of s3s-fs, whose own cost dominates above): direct, splice, copy. Bodies
/// are SHA-256-checked; the figures are printed, not asserted.
#[test]
fn cpu_per_gb_with_an_in_memory_origin() {
    let _serial = serial();
    let scratch = Scratch::new("big-cpu");
    let origin = weir_tests::tcp::BlobServer::start();
    let path = format!("/blob/{GIB}");
    let want = weir_tests::tcp::BlobServer::sha256(GIB);
    let me = std::process::id();

    let direct = measured_get(&format!("http://{}{path}", origin.addr()), None, me);
    assert_eq!(
        (direct.sha.as_str(), direct.len),
        (want.as_str(), GIB),
        "direct GET"
    );
    let mut rows = vec![("in-memory origin, direct".to_string(), direct)];
    for mode in [BodyPath::Splice, BodyPath::Copy] {
        let label = format!("{mode:?}").to_lowercase();
        let cfg = WeirConfig::new(&[origin.addr()]).body_path(mode);
        let mut weir = Weir::start(&cfg, &scratch.sub(&label));
        let m = measured_get(&format!("{}{path}", weir.endpoint()), Some(weir.pid()), me);
        assert_eq!(
            (m.sha.as_str(), m.len),
            (want.as_str(), GIB),
            "GET 1 GiB via weir ({label})"
        );
        weir.assert_running();
        rows.push((format!("in-memory origin, weir {label}"), m));
    }
    println!("--- CPU per GB (GB = 1e9 bytes; 'node' = this test process: origin plus SHA-256 of the body)");
    for (label, m) in &rows {
        print_row(label, m);
    }
}
