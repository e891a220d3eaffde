//! What a fleet reads of each weir (docs/metrics.md, docs/operations.md "Fleet metrics"),
//! with real clients over real storage:
//! - the standard `process_*` figures are this weir process's own, and move with it (CPU
//!   between two reads of `/proc/PID/stat` by the test, open fds up and down with client
//!   connections, the start time inside the test's window);
//! - `weir_build_info` names the commit the binary was built from, as `weir --version` does;
//! - the per-pool, per-operation histograms count exactly the PUTs and GETs curl made;
//! - a health probe whose TLS handshake fails (a node speaking plain HTTP, a node whose
//!   certificate another CA signed) counts in `weir_tls_handshake_failures_total
//!   {side="upstream"}` without any client request.

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weir_tests::certs::Ca;
use weir_tests::clients::{curl_sigv4, output};
use weir_tests::data::{self, Scratch};
use weir_tests::nodes::{self, S3sFs};
use weir_tests::ports::free_addr;
use weir_tests::process::Proc;
use weir_tests::sim;
use weir_tests::transfer::wait_for;
use weir_tests::weir::{metric_sum, PoolConfig, Weir, WeirConfig};

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// The value of the label-less series `name` in a scrape (`None` when absent).
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The value of label `label` on the first series of `name`.
fn label(text: &str, name: &str, label: &str) -> Option<String> {
    let line = text
        .lines()
        .find(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with('{')))?;
    let (_, rest) = line.split_once(&format!("{label}=\""))?;
    Some(rest.split_once('"')?.0.to_string())
}

/// A field of `/proc/PID/<file>` by its `Key:` prefix (the first number after it).
fn proc_field(pid: u32, file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// The commit the tree under test is at (`None` outside a git checkout).
fn git_head() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether `commit` is an ancestor of `head` with the same sources of the weir binary.
fn same_code(commit: &str, head: &str) -> bool {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .is_ok_and(|s| s.success())
    };
    git(&["merge-base", "--is-ancestor", commit, head])
        && git(&[
            "diff",
            "--quiet",
            commit,
            head,
            "--",
            "../appliance",
            "../io",
            "../policy",
            "../Cargo.toml",
            "../Cargo.lock",
        ])
}

/// Status and body of one signed curl call (`extra` before the URL).
fn curl(extra: &[&str], url: &str) -> (String, Vec<u8>) {
    let mut cmd = curl_sigv4();
    cmd.args(extra).args(["-w", "\n%{http_code}"]).arg(url);
    let out = output(&mut cmd, Duration::from_secs(30));
    let mut body = out.stdout;
    let nl = body.iter().rposition(|b| *b == b'\n').unwrap_or(0);
    let status = String::from_utf8_lossy(&body[nl..]).trim().to_string();
    body.truncate(nl);
    (status, body)
}

#[test]
fn process_build_and_per_pool_op_metrics_follow_real_traffic() {
    let scratch = Scratch::new("fleet-metrics");
    let dir = scratch.path();
    let node = S3sFs::start(dir, "s3s-0");
    nodes::seed(&[node.endpoint()], "fleet", &[], dir);
    let before_start = unix_now();
    let weir = Weir::start(&WeirConfig::new(&[node.addr()]), dir);
    let after_start = unix_now();
    let pid = weir.pid();

    // The process: this weir's own figures, read on the metrics thread at scrape time.
    let cpu_before = weir.cpu_seconds();
    let first = weir.metrics_text();
    let cpu_after = weir.cpu_seconds();
    let cpu = gauge(&first, "process_cpu_seconds_total").expect("process_cpu_seconds_total");
    // One clock tick of slack each way: the test reads /proc/PID/stat as weir does.
    assert!(
        cpu_before - 0.011 <= cpu && cpu <= cpu_after + 0.011,
        "process_cpu_seconds_total {cpu} outside the test's reads {cpu_before}..{cpu_after}"
    );
    let start = gauge(&first, "process_start_time_seconds").expect("start time");
    assert!(
        start >= before_start - 2.0 && start <= after_start + 1.0,
        "process_start_time_seconds {start}: weir started in {before_start}..{after_start}"
    );
    let rss = gauge(&first, "process_resident_memory_bytes").expect("rss");
    let vsz = gauge(&first, "process_virtual_memory_bytes").expect("vsz");
    assert!(rss > 1e6 && vsz >= rss, "resident {rss} B, virtual {vsz} B");
    let max_fds = gauge(&first, "process_max_fds").expect("max fds");
    let limit = proc_field(pid, "limits", "Max open files").expect("weir's fd limit");
    assert_eq!(
        max_fds, limit as f64,
        "process_max_fds is weir's soft limit"
    );

    // Build: the commit of the tree the binary was built from, also in `weir --version`.
    let commit = label(&first, "weir_build_info", "commit").expect("weir_build_info");
    let version = label(&first, "weir_build_info", "version").expect("version");
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    let printed = Command::new(weir_tests::tools::weir_bin())
        .arg("--version")
        .output()
        .expect("weir --version");
    let printed = String::from_utf8_lossy(&printed.stdout).to_string();
    assert!(
        printed.contains(&commit) && printed.contains(&version),
        "weir --version {printed:?} vs weir_build_info commit {commit}"
    );
    if std::env::var_os("WEIR_BIN").is_none() {
        match git_head() {
            None => assert_eq!(commit, "unknown", "built outside git"),
            Some(head) if head == commit => {}
            // A commit after the build that changed no code (docs, tests, a merge commit
            // of the same tree) leaves the binary right; anything else is a stale or
            // wrong commit.
            Some(head) => assert!(
                same_code(&commit, &head),
                "weir_build_info's commit {commit} is not the tree's HEAD {head}, nor an \
                 ancestor with the same code: rebuild target's weir \
                 (cargo build --profile ci -p weir --bin weir)"
            ),
        }
    }

    // Traffic: 3 PutObject, 5 GetObject, every body checked.
    let base = format!("{}/fleet", weir.endpoint());
    let mut shas = Vec::new();
    for i in 0..3u64 {
        let file = dir.join(format!("object-{i}"));
        let sha = data::write_pattern_file(&file, i, 64 * 1024 + i);
        let path = file.to_string_lossy().into_owned();
        let (status, _) = curl(&["-T", &path], &format!("{base}/object-{i}"));
        assert_eq!(status, "200", "PUT object-{i}");
        shas.push(sha);
    }
    for i in 0..5usize {
        let (status, body) = curl(&[], &format!("{base}/object-{}", i % 3));
        assert_eq!(status, "200", "GET {i}");
        assert_eq!(data::sha256_hex(&body), shas[i % 3], "GET {i} body");
    }
    let text = weir.metrics_text();
    let count = |family: &str, op: &str| {
        metric_sum(&text, &format!("{family}_count"), |l| {
            l.contains("pool=\"main\"") && l.contains(&format!("op=\"{op}\""))
        })
    };
    let duration = "weir_pool_request_duration_seconds";
    let first_byte = "weir_pool_upstream_first_byte_seconds";
    println!(
        "per pool/op: write {} read {} (first byte: write {} read {})",
        count(duration, "write"),
        count(duration, "read"),
        count(first_byte, "write"),
        count(first_byte, "read")
    );
    for family in [duration, first_byte] {
        assert_eq!(count(family, "write"), 3.0, "{family}: PutObject x3");
        assert_eq!(count(family, "read"), 5.0, "{family}: GetObject x5");
        for op in ["list", "delete", "multipart", "other"] {
            assert_eq!(count(family, op), 0.0, "{family}: no {op} was sent");
        }
    }
    // Every GET took more than 0 s and less than the test's whole run.
    let read_sum = metric_sum(&text, &format!("{duration}_sum"), |l| {
        l.contains("op=\"read\"")
    });
    assert!(
        read_sum > 0.0 && read_sum < 30.0,
        "read duration sum {read_sum}"
    );
    let cpu_later = gauge(&text, "process_cpu_seconds_total").expect("cpu");
    assert!(
        cpu_later > 0.0 && cpu_later >= cpu,
        "CPU seconds {cpu} then {cpu_later} after serving 8 requests"
    );

    // Open fds follow client connections: 24 idle connections up, then down again.
    let fds = |t: &str| gauge(t, "process_open_fds").expect("process_open_fds");
    let active = |t: &str| gauge(t, "weir_connections_active").unwrap_or(-1.0);
    let idle = fds(&weir.metrics_text());
    let held: Vec<TcpStream> = (0..24)
        .map(|_| TcpStream::connect(weir.addr()).expect("connect to weir"))
        .collect();
    let (busy, _) = wait_for(
        "weir to accept 24 connections",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || {
            let t = weir.metrics_text();
            (active(&t) >= 24.0).then(|| fds(&t))
        },
    );
    drop(held);
    let (after, _) = wait_for(
        "weir to close the 24 connections",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || {
            let t = weir.metrics_text();
            (active(&t) == 0.0).then(|| fds(&t))
        },
    );
    println!(
        "process: cpu {cpu_later:.3} s, rss {rss} B, start {start:.2} (test {before_start:.2}), \
         max fds {max_fds}; open fds {idle} idle, {busy} with 24 client connections, {after} after; \
         commit {commit}"
    );
    assert!(
        busy >= idle + 24.0,
        "open fds {idle} -> {busy} with 24 more client connections"
    );
    assert!(
        after <= busy - 24.0,
        "open fds {busy} -> {after} after the 24 closed"
    );
    assert!(busy < max_fds, "{busy} open fds, limit {max_fds}");
}

/// A TLS server (OpenSSL's `s_server`) presenting `cert`: the node with a certificate
/// weir's pool does not trust.
fn tls_server(
    dir: &std::path::Path,
    name: &str,
    cert: &weir_tests::certs::Issued,
) -> (Proc, std::net::SocketAddr) {
    let addr = free_addr();
    let mut cmd = Command::new("openssl");
    cmd.args(["s_server", "-quiet", "-www", "-accept"])
        .arg(addr.to_string())
        .arg("-cert")
        .arg(&cert.cert)
        .arg("-key")
        .arg(&cert.key);
    let mut proc = Proc::spawn(name, &mut cmd, &dir.join(format!("{name}.log")));
    proc.wait_port(addr, Duration::from_secs(10));
    (proc, addr)
}

#[test]
fn failed_upstream_tls_probes_are_counted() {
    let scratch = Scratch::new("fleet-tls-probes");
    let dir = scratch.path();
    let plain = sim::start(1, &[]);
    let trusted = Ca::new(dir, "trusted");
    let other = Ca::new(dir, "other");
    let cert = other.server(dir, "node", &["node.storage.test"]);
    let (_server, bad_cert_addr) = tls_server(dir, "untrusted-node", &cert);
    let tls = format!(
        "tls = {{ ca = \"{}\", server_name = \"node.storage.test\" }}",
        trusted.pem_path.display()
    );
    let pool = |name: &str, addr| {
        PoolConfig::new(name, &[addr])
            .key(&tls)
            .health("interval = \"200ms\"")
            .health("fall = 2")
    };
    let cfg = WeirConfig::new(&[])
        .pool(pool("plain", plain[0].addr()))
        .pool(pool("untrusted", bad_cert_addr));
    let weir = Weir::start(&cfg, dir);

    // No client request at all: every handshake is a health probe's.
    let upstream = |t: &str, reason: &str| {
        metric_sum(t, "weir_tls_handshake_failures_total", |l| {
            l.contains("side=\"upstream\"") && l.contains(reason)
        })
    };
    let (text, _) = wait_for(
        "probes to fail their handshakes",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let t = weir.metrics_text();
            let bad = upstream(&t, "reason=\"bad_certificate\"");
            let all = upstream(&t, "");
            (bad >= 2.0 && all - bad >= 2.0).then_some(t)
        },
    );
    let reasons: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("weir_tls_handshake_failures_total{side=\"upstream\"")
                && !l.ends_with(" 0")
        })
        .collect();
    println!("upstream TLS probe failures: {reasons:?}");
    assert_eq!(
        metric_sum(&text, "weir_requests_total", |_| true),
        0.0,
        "no client request was made"
    );
    assert_eq!(
        metric_sum(&text, "weir_tls_connections_total", |l| l
            .contains("side=\"upstream\"")),
        0.0,
        "no upstream handshake succeeded"
    );
    for node in [plain[0].addr(), bad_cert_addr] {
        wait_for(
            "the probes to mark the node down",
            Duration::from_secs(5),
            Duration::from_millis(50),
            || (weir.node_state(node).as_deref() == Some("down")).then_some(()),
        );
    }
}
