//! Binary upgrade without downtime (docs/operations.md, "Upgrade without downtime"), end
//! to end: a second weir started with `--upgrade-from` takes the running weir's listening
//! sockets over its `appliance.upgrade_socket`, serves on them, and the old weir drains
//! and exits 0, all while boto3 (keep-alive connections, GETs and PUTs) and curl (a new
//! connection per request) load it; every body is checked. A new process that fails
//! (bad config, or a start that fails after it took the sockets) leaves the old one
//! serving.
//!
//! Storage: s3s-fs under load; the bench simulator for the failed upgrades.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_bench::SimNode;
use weir_tests::clients::{assert_checks, curl_sigv4, curl_status_body};
use weir_tests::data::{self, sha256_hex, Scratch, SeedObject};
use weir_tests::nodes::{self, S3sFs};
use weir_tests::process::Proc;
use weir_tests::sim;
use weir_tests::transfer::{synthetic_sha256, wait_for, PyLoad};
use weir_tests::weir::{http_request, PoolConfig, Weir, WeirConfig};

const KIB: u64 = 1 << 10;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A weir started by the test itself on the old weir's ports (`--upgrade-from` when
/// `from` is given), its access log in `access_log`.
fn start_new(
    old: &Weir,
    cfg: &WeirConfig,
    dir: &Path,
    name: &str,
    from: Option<&Path>,
    access_log: &Path,
) -> Proc {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, old.render(cfg)).expect("write new config");
    let mut cmd = Command::new(weir_tests::tools::weir_bin());
    cmd.arg("run").arg("--config").arg(&config);
    if let Some(socket) = from {
        cmd.arg("--upgrade-from").arg(socket);
    }
    cmd.env("WEIR_ACCESS_LOG", access_log);
    Proc::spawn(name, &mut cmd, &dir.join(format!("{name}.log")))
}

/// `text` without terminal colour codes (`ESC [ … m`), for matching `key=value`.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Lines of an access log (0 when it does not exist yet).
fn log_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
        .unwrap_or(0)
}

/// curl GETs over a new connection each, in `threads` threads, until `stop`: every
/// answer must be a 200 with the object's SHA-256. Returns (requests, failures).
struct CurlLoad {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl CurlLoad {
    fn start(
        endpoint: &str,
        bucket: &str,
        objects: &[SeedObject],
        threads: usize,
        scratch: &Path,
    ) -> CurlLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let handles = (0..threads)
            .map(|t| {
                let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
                let objects = objects.to_vec();
                let base = format!("{endpoint}/{bucket}");
                let scratch = scratch.to_path_buf();
                std::thread::spawn(move || {
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) {
                        let o = &objects[i % objects.len()];
                        i += 1;
                        let url = format!("{base}/{}", o.key);
                        let (status, body) =
                            curl_status_body(curl_sigv4(), &url, &scratch, Duration::from_secs(20));
                        if status == 200 && sha256_hex(&body) == o.sha256 {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failures.lock().expect("failures").push(format!(
                                "{url}: status {status}, {} bytes, at {:?}",
                                body.len(),
                                std::time::SystemTime::now()
                            ));
                        }
                    }
                })
            })
            .collect();
        CurlLoad {
            stop,
            ok,
            failures,
            handles,
        }
    }

    fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles {
            let _ = h.join();
        }
        let failures = self.failures.lock().expect("failures").clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

/// s3s-fs with 8 seeded objects, weir (2 cores) in front with an upgrade socket.
struct Site {
    scratch: Scratch,
    _node: S3sFs,
    objects: Vec<SeedObject>,
    manifest: PathBuf,
    socket: PathBuf,
    cfg: WeirConfig,
}

fn site(name: &str) -> Site {
    let scratch = Scratch::new(name);
    let node = S3sFs::start(scratch.path(), "s3s-0");
    let objects = data::seed_objects(
        &scratch.sub("objects"),
        &[64 * KIB, 256 * KIB, 1024 * KIB, 3 * KIB],
    );
    let manifest = nodes::seed(&[node.endpoint()], "upgrade", &objects, scratch.path());
    let socket = scratch.path().join("weir-upgrade.sock");
    let cfg = WeirConfig::new(&[node.addr()])
        .appliance(&format!("upgrade_socket = \"{}\"", socket.display()))
        .appliance("drain_timeout = \"10s\"")
        .appliance("drain_grace = \"0s\"");
    Site {
        scratch,
        _node: node,
        objects,
        manifest,
        socket,
        cfg,
    }
}

fn py_load(site: &Site, endpoint: &str) -> PyLoad {
    PyLoad::start(
        &[
            "--endpoint".into(),
            endpoint.into(),
            "--bucket".into(),
            "upgrade".into(),
            "--manifest".into(),
            site.manifest.to_string_lossy().into_owned(),
            "--threads".into(),
            "4".into(),
            "--put-threads".into(),
            "2".into(),
            "--put-size".into(),
            (512 * KIB).to_string(),
            "--put-prefix".into(),
            "upgrade-put/".into(),
            "--max-seconds".into(),
            "60".into(),
        ],
        site.scratch.path(),
    )
}

/// How the test replaces the running weir.
#[derive(PartialEq)]
enum Replace {
    /// `--upgrade-from`: the sockets move, the old weir drains.
    Upgrade,
    /// The control: SIGTERM, wait for the exit, start the new weir on the same ports.
    StopStart,
}

/// Replaces a loaded weir; returns (client requests that succeeded, client failures,
/// the report of the boto3 load).
fn replace_under_load(site: &Site, how: Replace) -> (u64, Vec<String>, serde_json::Value) {
    let dir = site.scratch.path();
    let mut old = Weir::start_logged(&site.cfg, dir);
    let old_log = old.access_log_path().expect("access log").to_path_buf();
    let new_log = dir.join("access-new.log");
    let boto = py_load(site, &old.endpoint());
    let curl = CurlLoad::start(&old.endpoint(), "upgrade", &site.objects, 3, dir);
    std::thread::sleep(Duration::from_secs(2));
    let before = log_lines(&old_log);
    assert!(
        before > 20,
        "the load runs on the old weir: {before} requests"
    );
    // The new weir runs one more core than the old: its third socket joins the group.
    let new_cfg = WeirConfig {
        cores: 3,
        ..site.cfg.clone()
    };
    let mut new = match how {
        Replace::Upgrade => start_new(
            &old,
            &new_cfg,
            dir,
            "weir-new",
            Some(&site.socket),
            &new_log,
        ),
        Replace::StopStart => {
            old.signal(libc::SIGTERM);
            let _ = old.wait_exit(Duration::from_secs(15));
            start_new(&old, &new_cfg, dir, "weir-new", None, &new_log)
        }
    };
    let status = old
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("the old weir did not exit:\n{}", old.log_tail()));
    assert_eq!(status.code(), Some(0), "old weir log:\n{}", old.log_tail());
    let at_old_exit = log_lines(&new_log);
    // Requests after the old weir is gone: the new one serves them.
    std::thread::sleep(Duration::from_secs(2));
    let report = boto.stop();
    let (ok, failures) = curl.stop();
    if let Some(status) = new.exited() {
        panic!("the new weir exited ({status}):\n{}", new.log_tail());
    }
    let after = log_lines(&new_log);
    println!(
        "UPGRADE ({}): old weir {} served {} requests; new weir {} served {at_old_exit} by the old one's exit, {after} in all; curl ok {ok}, failures {}",
        if how == Replace::Upgrade { "fd passing" } else { "stop and start" },
        old.pid(),
        log_lines(&old_log),
        new.pid(),
        failures.len()
    );
    if how == Replace::Upgrade {
        assert!(
            after > at_old_exit + 10,
            "the new weir serves after the old one exited: {at_old_exit} → {after}"
        );
        let old_text = plain(&old.log_tail());
        assert!(
            old_text.contains(&format!("new_pid={}", new.pid())),
            "the old weir names the new one's pid:\n{old_text}"
        );
        let new_text = plain(&new.log_tail());
        assert!(
            new_text.contains(&format!("old_pid={}", old.pid())),
            "the new weir names the old one's pid:\n{new_text}"
        );
        // The metrics port moved too.
        let (status, body) = http_request(old.metrics_addr(), "GET", "/readyz").expect("readyz");
        assert_eq!((status, body.trim()), (200, "ready"));
    }
    let _ = new.stop(Duration::from_secs(5));
    (ok, failures, report)
}

/// The upgrade under load: no client error, every body checked, both processes served,
/// the old one exited 0 after draining, the new one serves what comes after.
#[test]
fn upgrade_under_load_loses_nothing() {
    let _serial = serial();
    let site = site("upgrade-load");
    let (ok, failures, report) = replace_under_load(&site, Replace::Upgrade);
    assert!(failures.is_empty(), "curl failures: {failures:#?}");
    assert!(ok > 20, "curl requests: {ok}");
    assert_checks(
        "boto3 GETs and PUTs through the upgrade",
        &report,
        &[
            "get_errors",
            "get_bad_bodies",
            "put_errors",
            "put_bad_bodies",
        ],
    );
}

/// The control for the test above: the same load through a plain stop and start sees
/// client errors (connections refused while no process listens). Run by hand:
/// `cargo test --profile ci -p weir-tests --test upgrade -- --ignored`.
#[test]
#[ignore = "a control that shows the upgrade test can fail; run by hand"]
fn control_stop_and_start_under_load_loses_requests() {
    let _serial = serial();
    let site = site("upgrade-control");
    let (_, failures, report) = replace_under_load(&site, Replace::StopStart);
    let boto_errors: u64 = ["get_errors", "put_errors"]
        .iter()
        .filter_map(|name| {
            report["checks"]
                .as_array()?
                .iter()
                .find(|c| c["name"] == *name)?["got"]
                .as_u64()
        })
        .sum();
    println!(
        "control: curl failures {}, boto3 errors {boto_errors}",
        failures.len()
    );
    assert!(
        !failures.is_empty() || boto_errors > 0,
        "a stop and start under load lost nothing: the upgrade test could not fail"
    );
}

/// weir over a simulator node, with an upgrade socket.
fn sim_config(node: SocketAddr, socket: &Path) -> WeirConfig {
    WeirConfig::new(&[])
        .pool(sim::control_probe(
            PoolConfig::new("main", &[node]).health("interval = \"300ms\""),
        ))
        .appliance(&format!("upgrade_socket = \"{}\"", socket.display()))
        .appliance("drain_grace = \"0s\"")
}

/// A GET of a synthetic object over a new connection, checked.
fn assert_serves(weir: &Weir, key: &str, size: u64, scratch: &Path) {
    let (status, body) = curl_status_body(
        curl_sigv4(),
        &format!("{}/{key}", weir.endpoint()),
        scratch,
        Duration::from_secs(10),
    );
    assert_eq!(
        (status, sha256_hex(&body)),
        (200, synthetic_sha256(key, size)),
        "GET {key}; log:\n{}",
        weir.log_tail()
    );
}

/// A new process with a broken config fails before it touches the old one; one whose
/// start fails after it took the sockets (an address of its config is taken) abandons the
/// upgrade: the old weir serves on, through both, and a good upgrade still works after.
#[test]
fn a_failed_upgrade_leaves_the_old_weir_serving() {
    let _serial = serial();
    let scratch = Scratch::new("upgrade-failed");
    let dir = scratch.path();
    let nodes: Vec<SimNode> = sim::start(1, &["upgrade/obj-:1MiB:1"]);
    let socket = dir.join("weir-upgrade.sock");
    let cfg = sim_config(sim::addrs(&nodes)[0], &socket);
    let mut old = Weir::start(&cfg, dir);
    assert_serves(&old, "upgrade/obj-0", 1 << 20, dir);
    // The socket is the owner's alone.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&socket)
            .expect("upgrade socket")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "upgrade socket mode {mode:o}");

    // 0. A peer that does not speak the exchange gets nothing: no descriptor, and the
    //    old weir serves on.
    {
        use socket2::{Domain, SockAddr, Socket, Type};
        let peer = Socket::new(Domain::UNIX, Type::SEQPACKET, None).expect("unix socket");
        peer.connect(&SockAddr::unix(&socket).expect("socket path"))
            .expect("connect to the upgrade socket");
        peer.send(b"GET /sockets please").expect("send");
        peer.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 256];
        let got = peer
            .recv(&mut buf)
            .expect("the old weir closes the exchange");
        assert_eq!(got, 0, "the old weir answered a stranger");
        wait_for(
            "the old weir to log the refused peer",
            Duration::from_secs(5),
            Duration::from_millis(20),
            || old.log_tail().contains("upgrade abandoned").then_some(()),
        );
        assert_serves(&old, "upgrade/obj-0", 1 << 20, dir);
    }

    // 1. A config that does not parse.
    let log = dir.join("access-bad.log");
    let mut bad = start_new(
        &old,
        &cfg.clone().appliance("no_such_key = 1"),
        dir,
        "weir-bad-config",
        Some(&socket),
        &log,
    );
    let status = wait_for(
        "the broken weir to exit",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || bad.exited(),
    );
    assert_eq!(status.0.code(), Some(1), "{}", bad.log_tail());
    assert!(bad.log_tail().contains("no_such_key"), "{}", bad.log_tail());

    // 2. A start that fails after taking the sockets: its second listen address is held.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind holder");
    let held = holder.local_addr().expect("holder addr");
    let extra = format!("listen = [\"{}\", \"{held}\"]", old.addr());
    let text = old
        .render(&cfg)
        .replacen(&format!("listen = [\"{}\"]", old.addr()), &extra, 1);
    let config = dir.join("weir-held.toml");
    std::fs::write(&config, text).expect("write config");
    let mut cmd = Command::new(weir_tests::tools::weir_bin());
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--upgrade-from")
        .arg(&socket);
    let mut held_weir = Proc::spawn("weir-held", &mut cmd, &dir.join("weir-held.log"));
    let status = wait_for(
        "the failing weir to exit",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || held_weir.exited(),
    );
    assert_eq!(status.0.code(), Some(1), "{}", held_weir.log_tail());
    assert!(
        held_weir.log_tail().contains("took the listening sockets"),
        "it got as far as taking the sockets:\n{}",
        held_weir.log_tail()
    );
    wait_for(
        "the old weir to log the abandoned upgrade",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || (plain(&old.log_tail()).matches("upgrade abandoned").count() == 2).then_some(()),
    );
    drop(holder);
    old.assert_running();
    for _ in 0..5 {
        assert_serves(&old, "upgrade/obj-0", 1 << 20, dir);
    }
    assert!(!old.log_tail().contains("draining"), "{}", old.log_tail());

    // 3. A good upgrade after both.
    let log = dir.join("access-good.log");
    let mut good = start_new(&old, &cfg, dir, "weir-good", Some(&socket), &log);
    let status = old
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("the old weir did not exit:\n{}", old.log_tail()));
    assert_eq!(status.code(), Some(0), "{}", old.log_tail());
    // Only the new weir is left to serve this, and its access log shows it did.
    assert_serves(&old, "upgrade/obj-0", 1 << 20, dir);
    wait_for(
        "the new weir's access log",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || (log_lines(&log) >= 1).then_some(()),
    );
    if let Some(status) = good.exited() {
        panic!("the new weir exited ({status}):\n{}", good.log_tail());
    }
    let _ = good.stop(Duration::from_secs(5));
}
