//! Hardening at weir's edges, end to end: start-up (a listen address another process
//! holds), shutdown (SIGTERM closes every listener while requests in flight finish),
//! config loading (bounded regular files; every error names file, line and key), the
//! logs (presigned signatures never written down) and presigned-URL lifetimes.
//!
//! Storage is the bench simulator (synthetic objects, exact request counters); presigned
//! URLs are made by botocore, the "other process" on a taken address is Python's socket
//! module, the config errors are `weir check-config`'s and `weir run`'s own output.
//! One scenario at a time (a lock): 2 shared cores.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use weir_bench::SimNode;
use weir_tests::clients;
use weir_tests::data::Scratch;
use weir_tests::process::run_with_timeout;
use weir_tests::sim;
use weir_tests::transfer::{synthetic_sha256, wait_for};
use weir_tests::weir::{http_request, PoolConfig, Weir, WeirConfig};
use weir_tests::{ACCESS_KEY, SECRET_KEY};

const MIB: u64 = 1 << 20;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// weir over simulator nodes, probed through the control API.
fn sim_config(nodes: &[SocketAddr]) -> WeirConfig {
    WeirConfig::new(&[]).pool(sim::control_probe(
        PoolConfig::new("main", nodes).health("interval = \"300ms\""),
    ))
}

/// `weir <args>` to completion (at most `timeout`: a weir that keeps running is a
/// failure of the test, with its output); (exit code, stderr).
fn weir_exits(args: &[&std::ffi::OsStr], timeout: Duration) -> (Option<i32>, String) {
    let mut cmd = Command::new(weir_tests::tools::weir_bin());
    cmd.args(args)
        .stdin(Stdio::null())
        .env_remove("WEIR_ACCESS_LOG");
    let out = run_with_timeout(&mut cmd, timeout).unwrap_or_else(|e| {
        panic!("weir should have refused to start and exited; it did not: {e}")
    });
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `weir check-config path`: (exit code, stderr). Bounded: a load that does not end is a
/// failure of the test.
fn check_config(path: &Path) -> (Option<i32>, String) {
    weir_exits(
        &["check-config".as_ref(), path.as_os_str()],
        Duration::from_secs(10),
    )
}

/// Asserts weir refused with exit status 1 and a message that starts with `prefix`.
#[track_caller]
fn assert_refused(outcome: (Option<i32>, String), prefix: &str) {
    let (code, stderr) = outcome;
    let line = stderr
        .lines()
        .find(|l| l.starts_with("weir: "))
        .unwrap_or_else(|| panic!("no `weir: ` error line in:\n{stderr}"));
    assert!(
        line.starts_with(prefix),
        "expected the error to start with\n  {prefix}\nbut it is\n  {line}"
    );
    assert_eq!(code, Some(1), "exit status; stderr:\n{stderr}");
}

/// Listening TCP sockets on exactly `addr` in this network namespace (`/proc/net/tcp`).
fn listening_sockets(addr: SocketAddr) -> usize {
    let text = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only: {addr}")
    };
    let want = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(v4.ip().octets()),
        v4.port()
    );
    text.lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&want.as_str()) && f.get(3) == Some(&"0A")
        })
        .count()
}

/// GETs `/<full_key>` through `addr` and checks every byte against the synthetic object.
#[track_caller]
fn assert_serves(addr: SocketAddr, full_key: &str, size: u64) {
    let url = format!("http://{addr}/{full_key}");
    let mut cmd = Command::new(weir_tests::tools::curl());
    cmd.args(["-sS", "--fail", "--max-time", "30", "-o", "/dev/stdout"])
        .arg(&url)
        .env("NO_PROXY", "127.0.0.1,localhost");
    let out = clients::output(&mut cmd, Duration::from_secs(40));
    assert!(
        out.status.success(),
        "GET {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        (
            weir_tests::data::sha256_hex(&out.stdout),
            out.stdout.len() as u64
        ),
        (synthetic_sha256(full_key, size), size),
        "GET {url}"
    );
}

// === a taken listen address ===

/// Another process (same user) listening on weir's address with `SO_REUSEPORT`: the
/// kernel would let weir join it and split the connections between the two. weir must
/// refuse to start, naming the file, line, key and address; with the address free it
/// starts on the same file.
#[test]
fn a_listen_address_held_by_another_process_fails_the_start() {
    let _serial = serial();
    let scratch = Scratch::new("edges-taken-by-stranger");
    let nodes: Vec<SimNode> = sim::start(1, &["edges/obj-:1MiB:1"]);
    let listen = weir_tests::ports::free_addr();
    let metrics = weir_tests::ports::free_addr();
    let config = scratch.path().join("weir.toml");
    std::fs::write(
        &config,
        sim_config(&sim::addrs(&nodes)).to_toml(listen, metrics),
    )
    .expect("write config");

    const STRANGER: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("listening", flush=True)
time.sleep(120)
"#;
    let mut stranger: Child = Command::new(weir_tests::tools::python())
        .args([
            "-c",
            STRANGER,
            &listen.ip().to_string(),
            &listen.port().to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the stranger");
    let mut ready = [0u8; 9];
    stranger
        .stdout
        .as_mut()
        .expect("stranger stdout")
        .read_exact(&mut ready)
        .expect("the stranger listens");
    assert_eq!(listening_sockets(listen), 1);

    let outcome = weir_exits(
        &["run".as_ref(), "--config".as_ref(), config.as_os_str()],
        Duration::from_secs(15),
    );
    assert_refused(
        outcome,
        &format!(
            "weir: {}:3: appliance.listen[0]: {listen} is already in use",
            config.display()
        ),
    );
    assert_eq!(
        listening_sockets(listen),
        1,
        "weir left a socket on the address"
    );
    let _ = stranger.kill();
    let _ = stranger.wait();

    // The same file starts once the address is free, and serves.
    let weir = weir_tests::process::Proc::spawn(
        "weir",
        Command::new(weir_tests::tools::weir_bin())
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env_remove("WEIR_ACCESS_LOG"),
        &scratch.path().join("weir.log"),
    );
    let mut weir = weir;
    weir.wait_port(listen, Duration::from_secs(20));
    assert_eq!(listening_sockets(listen), 2, "one socket per core");
    assert_serves(listen, "edges/obj-0", MIB);
    weir.stop(Duration::from_secs(5));
}

/// A second weir started on the first one's listen address (its own metrics port) exits
/// 1 naming `appliance.listen[0]`; one started on the first one's metrics address exits
/// naming `appliance.metrics`. The first keeps its sockets (one per core, no more) and
/// serves every byte right.
#[test]
fn a_second_weir_cannot_share_the_first_ones_addresses() {
    let _serial = serial();
    let scratch = Scratch::new("edges-second-weir");
    let nodes: Vec<SimNode> = sim::start(1, &["edges/obj-:1MiB:1"]);
    let cfg = sim_config(&sim::addrs(&nodes));
    let mut first = Weir::start(&cfg, scratch.path());
    assert_eq!(listening_sockets(first.addr()), 2);

    let second = scratch.path().join("second.toml");
    std::fs::write(
        &second,
        cfg.to_toml(first.addr(), weir_tests::ports::free_addr()),
    )
    .expect("write config");
    assert_refused(
        weir_exits(
            &["run".as_ref(), "--config".as_ref(), second.as_os_str()],
            Duration::from_secs(15),
        ),
        &format!(
            "weir: {}:3: appliance.listen[0]: {} is already in use",
            second.display(),
            first.addr()
        ),
    );
    let third = scratch.path().join("third.toml");
    let free = weir_tests::ports::free_addr();
    std::fs::write(&third, cfg.to_toml(free, first.metrics_addr())).expect("write config");
    assert_refused(
        weir_exits(
            &["run".as_ref(), "--config".as_ref(), third.as_os_str()],
            Duration::from_secs(15),
        ),
        &format!(
            "weir: {}:4: appliance.metrics: {} is already in use",
            third.display(),
            first.metrics_addr()
        ),
    );
    assert_eq!(
        listening_sockets(free),
        0,
        "the refused weir left a listener"
    );

    first.assert_running();
    assert_eq!(
        listening_sockets(first.addr()),
        2,
        "the first weir's address is its own"
    );
    for _ in 0..10 {
        assert_serves(first.addr(), "edges/obj-0", MIB);
    }
    let forwarded = nodes[0].stats().requests;
    assert_eq!(
        forwarded, 10,
        "every GET reached the node through the first weir"
    );
    first.stop();
}

// === SIGTERM ===

/// SIGTERM during a slow 64 MiB GET: every core closes its own listeners (the kernel's
/// table shows none left on the address and connects are refused) while the transfer
/// finishes byte for byte; then weir exits 0.
#[test]
fn sigterm_closes_every_listener_and_the_transfer_in_flight_finishes() {
    let _serial = serial();
    let scratch = Scratch::new("edges-sigterm");
    let nodes: Vec<SimNode> = sim::start(1, &["edges/big-:64MiB:1"]);
    // No grace: the listeners close at once (the grace is tests/tests/drain.rs's).
    let cfg = sim_config(&sim::addrs(&nodes)).appliance("drain_grace = \"0s\"");
    let mut weir = Weir::start(&cfg, scratch.path());
    let addr = weir.addr();
    assert_eq!(listening_sockets(addr), 2);
    let big = weir_tests::transfer::Transfer::get(
        &format!("{}/edges/big-0", weir.endpoint()),
        Some(16_000_000),
    );
    wait_for(
        "the GET to be under way",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || {
            weir.flows()
                .iter()
                .any(|f| f["bytes_down"].as_u64().unwrap_or(0) > 4 * MIB)
                .then_some(())
        },
    );
    weir.signal(libc::SIGTERM);
    wait_for(
        "every listener to close",
        Duration::from_secs(5),
        Duration::from_millis(10),
        || (listening_sockets(addr) == 0).then_some(()),
    );
    let refused = TcpStream::connect_timeout(&addr, Duration::from_millis(500));
    assert!(
        refused.is_err(),
        "a connect after the drain started: {refused:?}"
    );
    assert!(
        weir.wait_exit(Duration::ZERO).is_none(),
        "weir exited with a transfer in flight"
    );
    let out = big.wait(Duration::from_secs(60));
    assert!(out.ok, "the transfer in flight: {out:?}");
    assert_eq!(
        (out.sha256, out.bytes),
        (synthetic_sha256("edges/big-0", 64 * MIB), 64 * MIB)
    );
    let status = weir
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("weir did not exit:\n{}", weir.log_tail()));
    assert_eq!(status.code(), Some(0), "log:\n{}", weir.log_tail());
}

// === config loading ===

/// A valid config around `pool_extra` (lines of the pool table) and `tail` (tables after
/// it); line 5 is the pool's first extra line.
fn config_text(node: &str, pool_extra: &str, tail: &str) -> String {
    format!(
        "[appliance]\n\
         listen = [\"127.0.0.1:1\"]\n\
         [[pool]]\n\
         name = \"main\"\n\
         nodes = [\"{node}\"]\n\
         {pool_extra}\n\
         {tail}"
    )
}

/// Every bad file `weir check-config` is given: refused at once, with `file:line: key: `
/// (the file alone when the file itself is unreadable), exit status 1.
#[test]
fn check_config_names_file_line_and_key_for_every_bad_file() {
    let _serial = serial();
    let scratch = Scratch::new("edges-check-config");
    let dir = scratch.path();
    let write = |name: &str, text: &[u8]| -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write config");
        path
    };
    let shown = |p: &Path| p.display().to_string();

    // The file itself: endless, blocking, a folder, too big, not text.
    let zero = dir.join("zero.toml");
    std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
    let started = Instant::now();
    assert_refused(
        check_config(&zero),
        &format!(
            "weir: {}: not a regular file (a character device)",
            shown(&zero)
        ),
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let fifo = dir.join("fifo.toml");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: mkfifo reads a NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    assert_refused(
        check_config(&fifo),
        &format!("weir: {}: not a regular file (a FIFO)", shown(&fifo)),
    );
    assert_refused(
        check_config(dir),
        &format!("weir: {}: not a regular file (a directory)", shown(dir)),
    );
    let mut big = config_text("127.0.0.1:9001", "", "").into_bytes();
    big.extend(std::iter::repeat_n(b"# padding\n".as_slice(), 450_000).flatten());
    let big = write("big.toml", &big);
    assert_refused(
        check_config(&big),
        &format!("weir: {}: larger than 4194304 bytes", shown(&big)),
    );
    let latin1 = write("latin1.toml", b"[appliance]\n# caf\xe9\n");
    assert_refused(
        check_config(&latin1),
        &format!("weir: {}:2: not UTF-8 text", shown(&latin1)),
    );

    // Inside it: a key written twice, a node that does not resolve, the files it names.
    let cases: [(&str, String, usize, &str, String); 8] = [
        (
            "duplicate.toml",
            config_text("127.0.0.1:9001", "name = \"again\"", ""),
            6,
            "pool[0].name",
            "duplicate key".into(),
        ),
        (
            "pool-secret.toml",
            config_text(
                "127.0.0.1:9001",
                "credentials = { access_key = \"K\", secret_file = \"missing.secret\" }",
                "",
            ),
            6,
            "pool[0].credentials.secret_file",
            format!("{}: No such file or directory", dir.join("missing.secret").display()),
        ),
        (
            "pool-secret-dir.toml",
            config_text(
                "127.0.0.1:9001",
                "credentials = { access_key = \"K\", secret_file = \"/dev/zero\" }",
                "",
            ),
            6,
            "pool[0].credentials.secret_file",
            "/dev/zero: not a regular file (a character device)".into(),
        ),
        (
            "tenant-secret.toml",
            config_text(
                "127.0.0.1:9001",
                "",
                "[[tenant]]\nname = \"t\"\naccess_keys = [\"TK\"]\n\
                 pool_credentials = { main = { access_key = \"K\", secret_file = \"gone.secret\" } }\n",
            ),
            10,
            "tenant[0].pool_credentials.main.secret_file",
            format!("{}: No such file or directory", dir.join("gone.secret").display()),
        ),
        (
            "auth-secrets.toml",
            config_text(
                "127.0.0.1:9001",
                "",
                "[auth]\nmode = \"verify\"\nsecrets_file = \"tenants.secrets\"\n",
            ),
            9,
            "auth.secrets_file",
            format!("{}: No such file or directory", dir.join("tenants.secrets").display()),
        ),
        (
            "tls-cert.toml",
            config_text(
                "127.0.0.1:9001",
                "",
                "[tls]\nlisten = [\"127.0.0.1:2\"]\n[[tls.certificate]]\n\
                 cert = \"server.pem\"\nkey = \"server.key\"\n",
            ),
            10,
            "tls.certificate[0].cert",
            format!("{}: No such file or directory", dir.join("server.pem").display()),
        ),
        (
            "pool-ca.toml",
            config_text("127.0.0.1:9001", "tls = { ca = \"nodes-ca.pem\" }", ""),
            6,
            "pool[0].tls.ca",
            format!("{}: No such file or directory", dir.join("nodes-ca.pem").display()),
        ),
        (
            "pool-ca-fifo.toml",
            config_text("127.0.0.1:9001", "tls = { ca = \"fifo.toml\" }", ""),
            6,
            "pool[0].tls.ca",
            format!("{}: not a regular file (a FIFO)", shown(&fifo)),
        ),
    ];
    for (name, text, line, key, message) in cases {
        let path = write(name, text.as_bytes());
        assert_refused(
            check_config(&path),
            &format!("weir: {}:{line}: {key}: {message}", shown(&path)),
        );
    }
    // The same file with the names fixed is fine.
    std::fs::write(dir.join("missing.secret"), "a-secret-of-some-length\n").expect("write");
    let fixed = dir.join("pool-secret.toml");
    let (code, stderr) = check_config(&fixed);
    assert_eq!(code, Some(0), "{stderr}");
}

/// What only `weir run` and a reload find: an access log that cannot be opened, and a
/// reload that changes what needs a restart or names a missing file. Each names the
/// file, line and key; the running weir keeps serving.
#[test]
fn run_and_reload_errors_name_file_line_and_key() {
    let _serial = serial();
    let scratch = Scratch::new("edges-run-errors");
    let nodes: Vec<SimNode> = sim::start(1, &["edges/obj-:1MiB:1"]);
    let cfg = sim_config(&sim::addrs(&nodes));

    let no_log = scratch.path().join("no-log.toml");
    let bad_log = cfg
        .clone()
        .appliance("access_log = \"/nonexistent-weir-dir/access.log\"");
    std::fs::write(
        &no_log,
        bad_log.to_toml(
            weir_tests::ports::free_addr(),
            weir_tests::ports::free_addr(),
        ),
    )
    .expect("write config");
    assert_refused(
        weir_exits(
            &["run".as_ref(), "--config".as_ref(), no_log.as_os_str()],
            Duration::from_secs(15),
        ),
        &format!(
            "weir: {}:6: appliance.access_log: cannot open /nonexistent-weir-dir/access.log: No such file or directory",
            no_log.display()
        ),
    );

    let mut weir = Weir::start(&cfg, scratch.path());
    let file = weir.config_path().display().to_string();
    let rendered = weir.render(&cfg);
    weir.write_config_text(&rendered.replace("cores = 2", "cores = 1"));
    let (status, body) = weir.reload();
    assert_ne!(status, 200, "{body}");
    assert!(
        body.contains(&format!(
            "{file}:2: appliance.cores: the number of cores changed: needs a restart"
        )),
        "{body}"
    );
    let secret = rendered.replace(
        "name = \"main\"",
        "name = \"main\"\ncredentials = { access_key = \"K\", secret_file = \"rotated.secret\" }",
    );
    weir.write_config_text(&secret);
    let (status, body) = weir.reload();
    assert_ne!(status, 200, "{body}");
    let line = secret
        .lines()
        .position(|l| l.starts_with("credentials"))
        .expect("credentials line")
        + 1;
    assert!(
        body.contains(&format!(
            "{file}:{line}: pool[0].credentials.secret_file: {}: No such file or directory",
            scratch.path().join("rotated.secret").display()
        )),
        "{body}"
    );
    weir.assert_running();
    assert_serves(weir.addr(), "edges/obj-0", MIB);
    weir.stop();
}

// === presigned URLs ===

/// A presigned GET URL for `http://addr/bucket/key`, made by botocore with the test keys:
/// SigV4 (`s3v4`) or SigV2 (`s3`) query authentication, valid for `expires` seconds,
/// signed `offset` seconds from now.
fn presign(addr: SocketAddr, full_key: &str, version: &str, expires: i64, offset: i64) -> String {
    const SCRIPT: &str = r#"
import datetime, sys
import boto3, botocore.auth, botocore.config
endpoint, bucket, key, version, expires, offset, ak, sk = sys.argv[1:9]
real = botocore.auth.get_current_datetime
shift = datetime.timedelta(seconds=int(offset))
botocore.auth.get_current_datetime = lambda: real() + shift
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id=ak, aws_secret_access_key=sk,
                  config=botocore.config.Config(signature_version=version,
                                                s3={"addressing_style": "path"}))
print(s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                ExpiresIn=int(expires)))
"#;
    let (bucket, key) = full_key.split_once('/').expect("bucket/key");
    let mut cmd = Command::new(weir_tests::tools::python());
    cmd.args([
        "-c",
        SCRIPT,
        &format!("http://{addr}"),
        bucket,
        key,
        version,
    ])
    .arg(expires.to_string())
    .arg(offset.to_string())
    .args([ACCESS_KEY, SECRET_KEY])
    .env("NO_PROXY", "127.0.0.1,localhost")
    .env_remove("AWS_CA_BUNDLE");
    let out = clients::output(&mut cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "botocore presigner: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The value of query parameter `name` in `url`, as written.
fn query_value<'a>(url: &'a str, name: &str) -> &'a str {
    url.split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .find_map(|p| p.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}

/// Unsigned curl of `url` (the URL carries its own authentication): (status, body).
fn curl_get(url: &str) -> (u16, Vec<u8>) {
    let mut cmd = Command::new(weir_tests::tools::curl());
    cmd.args([
        "-sS",
        "--max-time",
        "30",
        "-o",
        "/dev/stdout",
        "-w",
        "\n%{http_code}",
    ])
    .arg(url)
    .env("NO_PROXY", "127.0.0.1,localhost");
    let out = clients::output(&mut cmd, Duration::from_secs(40));
    let text = out.stdout;
    let split = text.iter().rposition(|b| *b == b'\n').unwrap_or(0);
    let status = String::from_utf8_lossy(&text[split..])
        .trim()
        .parse()
        .unwrap_or(0);
    (status, text[..split].to_vec())
}

/// Presigned GETs (SigV4 and SigV2, made by botocore) through weir: the access log and
/// `/flows`, read while a slow one is in flight, show each URL with its signature
/// replaced by `REDACTED` and the key id kept; the signature's text appears in neither,
/// nor in weir's own log.
#[test]
fn presigned_signatures_never_reach_the_access_log_or_flows() {
    let _serial = serial();
    let scratch = Scratch::new("edges-presigned-logs");
    let nodes: Vec<SimNode> = sim::start(1, &["edges/big-:16MiB:1", "edges/small-:64KiB:1"]);
    let weir = Weir::start_logged(&sim_config(&sim::addrs(&nodes)), scratch.path());

    let v4 = presign(weir.addr(), "edges/big-0", "s3v4", 600, 0);
    let v2 = presign(weir.addr(), "edges/small-0", "s3", 600, 0);
    let v4_sig = query_value(&v4, "X-Amz-Signature").to_string();
    let v2_sig = query_value(&v2, "Signature").to_string();
    assert_eq!(v4_sig.len(), 64, "{v4}");
    assert!(v2_sig.len() >= 20, "{v2}");

    // The slow one stays in flight long enough to be seen in /flows.
    let body = scratch.path().join("big.body");
    let mut slow = Command::new(weir_tests::tools::curl())
        .args(["-sS", "--fail", "--limit-rate", "4000000", "-o"])
        .arg(&body)
        .arg(&v4)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn curl");
    let (flow, _) = wait_for(
        "the presigned GET in /flows",
        Duration::from_secs(20),
        Duration::from_millis(20),
        || {
            weir.flows().into_iter().find(|f| {
                f["target"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("/edges/big-0?"))
            })
        },
    );
    let flows_text = flow.to_string();
    let (v2_status, v2_body) = curl_get(&v2);
    assert_eq!(v2_status, 200, "{}", String::from_utf8_lossy(&v2_body));
    assert_eq!(
        weir_tests::data::sha256_hex(&v2_body),
        synthetic_sha256("edges/small-0", 64 << 10)
    );
    let status = slow.wait().expect("wait for curl");
    assert!(status.success(), "presigned GET through weir: {status}");
    let (sha, len) = weir_tests::data::sha256_file(&body);
    assert_eq!(
        (sha, len),
        (synthetic_sha256("edges/big-0", 16 * MIB), 16 * MIB)
    );

    let target = flow["target"].as_str().unwrap_or_default();
    assert!(
        target.contains("X-Amz-Signature=REDACTED")
            && target.contains(&format!("X-Amz-Credential={ACCESS_KEY}")),
        "/flows target: {target}"
    );
    let lines = weir.access_log();
    let logged = |key: &str| {
        lines
            .iter()
            .find(|l| l["target"].as_str().is_some_and(|t| t.starts_with(key)))
            .unwrap_or_else(|| panic!("no access-log line for {key}: {lines:?}"))
            .clone()
    };
    let v4_line = logged("/edges/big-0?");
    let v2_line = logged("/edges/small-0?");
    assert_eq!(v4_line["status"], 200);
    assert!(
        v4_line["target"]
            .as_str()
            .is_some_and(|t| t.contains("X-Amz-Signature=REDACTED")),
        "{v4_line}"
    );
    assert!(
        v2_line["target"]
            .as_str()
            .is_some_and(|t| t.contains("Signature=REDACTED")
                && t.contains(&format!("AWSAccessKeyId={ACCESS_KEY}"))),
        "{v2_line}"
    );
    let log_text = std::fs::read_to_string(weir.access_log_path().expect("access log"))
        .expect("read access log");
    let weir_log = weir.log_text();
    for (what, text) in [
        ("the access log", log_text.as_str()),
        ("/flows", flows_text.as_str()),
        ("weir's log", weir_log.as_str()),
    ] {
        for sig in [&v4_sig, &v2_sig] {
            assert!(
                !text.contains(sig.as_str()),
                "{what} holds a signature: {text}"
            );
        }
    }
    weir.stop();
}

/// `[auth] mode = "verify"`: a presigned URL correctly signed by botocore with
/// `X-Amz-Expires=0` is refused with S3's 403 `AccessDenied` — even used before its
/// signing time, within the clock skew, when the old window check let it through — as is
/// one valid for more than a week (400 `AuthorizationQueryParametersError`); the node
/// sees neither. A one-hour URL made the same way is served.
#[test]
fn presigned_urls_outside_s3s_lifetime_range_are_refused() {
    let _serial = serial();
    let scratch = Scratch::new("edges-presigned-expires");
    let nodes: Vec<SimNode> = sim::start(1, &["edges/obj-:1MiB:1"]);
    std::fs::write(
        scratch.path().join("tenants.secrets"),
        format!("{ACCESS_KEY} = {SECRET_KEY}\n"),
    )
    .expect("write secrets");
    let cfg = sim_config(&sim::addrs(&nodes)).extra(
        "[auth]\nmode = \"verify\"\nsecrets_file = \"tenants.secrets\"\nskew_max = \"15m\"\n",
    );
    let weir = Weir::start(&cfg, scratch.path());
    let before = nodes[0].stats().requests;

    let good = presign(weir.addr(), "edges/obj-0", "s3v4", 3600, 0);
    let (status, body) = curl_get(&good);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        weir_tests::data::sha256_hex(&body),
        synthetic_sha256("edges/obj-0", MIB)
    );
    assert_eq!(nodes[0].stats().requests, before + 1);

    for (expires, offset, want_status, want_code) in [
        (0, 60, 403, "AccessDenied"),
        (0, 0, 403, "AccessDenied"),
        (604_801, 0, 400, "AuthorizationQueryParametersError"),
    ] {
        let url = presign(weir.addr(), "edges/obj-0", "s3v4", expires, offset);
        assert_eq!(query_value(&url, "X-Amz-Expires"), expires.to_string());
        let (status, body) = curl_get(&url);
        let text = String::from_utf8_lossy(&body[..body.len().min(512)]);
        assert_eq!(
            (status, text.contains(&format!("<Code>{want_code}</Code>"))),
            (want_status, true),
            "X-Amz-Expires={expires} signed {offset}s ahead: {text}"
        );
    }
    assert_eq!(
        nodes[0].stats().requests,
        before + 1,
        "a refused URL reached the node"
    );
    let refused = weir.metric_sum("weir_auth_failures_total", |l| {
        l.contains("reason=\"expired\"")
    });
    assert_eq!(refused, 2.0);
    let (status, _) = http_request(weir.metrics_addr(), "GET", "/metrics").expect("metrics");
    assert_eq!(status, 200);
    weir.stop();
}
