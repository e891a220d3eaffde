//! The status page on the admin port (docs/operations.md, "Status page") in a real browser:
//! headless Chromium (Debian's `chromium`, driven over the DevTools protocol by
//! tests/py/status_page.py) logs in through the page's Basic challenge with the admin
//! token, while weir serves a GET load over three weir-sim nodes. One node is killed: the
//! page's row for it says `down` within 3 s; it comes back: the row says `up` again. The
//! DOM is checked for the node rows, the pool's counts and a request rate above zero, and
//! a screenshot is taken (kept in the test's scratch folder).
//!
//! What the browser cannot see is checked on the wire: the challenge, the Basic
//! credentials opening reads but never a change, and the page's security headers.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use weir_bench::load::LoadConfig;
use weir_bench::SimOptions;
use weir_tests::data::Scratch;
use weir_tests::ports;
use weir_tests::raw::{exchange, RawReply, ReadUntil};
use weir_tests::sim;
use weir_tests::tools;
use weir_tests::transfer::BenchLoad;
use weir_tests::weir::{Weir, WeirConfig};

/// The admin token.
const TOKEN: &str = "weir-status-page-test-token-0123";
/// `operator:` + [`TOKEN`] in base64: what a browser sends after its login prompt.
const BASIC: &str = "b3BlcmF0b3I6d2Vpci1zdGF0dXMtcGFnZS10ZXN0LXRva2VuLTAxMjM=";
/// What the issue asks of the page: a dead node shows as down within this.
const SHOWN_DOWN_MAX: Duration = Duration::from_secs(3);
/// Probes every 200 ms, down after 2 failures, up after 2 successes.
const HEALTH: [&str; 7] = [
    "method = \"GET\"",
    "path = \"/_sim/stats\"",
    "expect_status = 200",
    "interval = \"200ms\"",
    "timeout = \"150ms\"",
    "rise = 2",
    "fall = 2",
];
/// Debian's Chromium, as scripts/test-deps.sh installs it.
const CHROMIUM: &str = "/usr/bin/chromium";

/// The tests here run one at a time: the linters' CPU must not slow the page under test.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The browser driver: one JSON command per line in, one JSON answer per line out.
struct Browser {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Browser {
    fn open(url: &str, dir: &Path) -> (Browser, serde_json::Value) {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: run scripts/test-deps.sh"
        );
        let profile = dir.join("chromium-profile");
        std::fs::create_dir_all(&profile).expect("profile dir");
        let mut child = Command::new(tools::python())
            .arg(tools::repo_root().join("tests/py/status_page.py"))
            .args(["--chromium", CHROMIUM, "--url", url, "--password", TOKEN])
            .arg("--profile")
            .arg(&profile)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the browser driver");
        let stdin = child.stdin.take().expect("driver stdin");
        let stdout = child.stdout.take().expect("driver stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut browser = Browser {
            child,
            stdin,
            lines,
        };
        let ready = browser.read(Duration::from_secs(30));
        assert_eq!(ready["event"], "ready", "the page never drew: {ready}");
        (browser, ready)
    }

    fn read(&mut self, timeout: Duration) -> serde_json::Value {
        let line = self
            .lines
            .recv_timeout(timeout)
            .unwrap_or_else(|e| panic!("browser driver: no answer in {timeout:?} ({e})"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("browser driver said {line:?}: {e}"))
    }

    fn ask(&mut self, cmd: serde_json::Value, timeout: Duration) -> serde_json::Value {
        writeln!(self.stdin, "{cmd}").expect("write to the browser driver");
        self.stdin.flush().expect("flush");
        let answer = self.read(timeout);
        assert_eq!(answer["ok"], true, "{cmd} -> {answer}");
        answer
    }

    fn eval(&mut self, expr: &str) -> serde_json::Value {
        let answer = self.ask(
            serde_json::json!({"cmd": "eval", "expr": expr}),
            Duration::from_secs(10),
        );
        answer["value"].clone()
    }

    /// Polls the DOM until `node`'s row says `state`; the answer's `ok` says whether it did
    /// within `timeout`.
    fn wait_state(
        &mut self,
        node: SocketAddr,
        state: &str,
        timeout: Duration,
    ) -> serde_json::Value {
        let cmd = serde_json::json!({
            "cmd": "wait_state",
            "node": node.to_string(),
            "state": state,
            "timeout": timeout.as_secs_f64(),
        });
        writeln!(self.stdin, "{cmd}").expect("write to the browser driver");
        self.stdin.flush().expect("flush");
        self.read(timeout + Duration::from_secs(10))
    }

    /// The page's node rows: (address, state).
    fn node_rows(&mut self) -> Vec<(String, String)> {
        let rows = self.eval(
            "[...document.querySelectorAll('#nodes tbody tr')].map(r => [r.dataset.node, r.dataset.state])",
        );
        rows.as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        (
                            r[0].as_str().unwrap_or_default().to_string(),
                            r[1].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn quit(mut self) -> serde_json::Value {
        let answer = self.ask(serde_json::json!({"cmd": "quit"}), Duration::from_secs(10));
        let _ = self.child.wait();
        answer
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One request on the admin port with an optional `Authorization` value.
fn admin_request(admin: SocketAddr, method: &str, path: &str, auth: Option<&str>) -> RawReply {
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {admin}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    exchange(
        admin,
        &[request.as_bytes()],
        Duration::ZERO,
        Duration::from_secs(5),
        ReadUntil::Close,
    )
}

/// A number as the page prints it (`10,234`), if it is one.
fn page_number(text: &serde_json::Value) -> Option<f64> {
    text.as_str()?.replace(',', "").parse().ok()
}

#[test]
fn status_page_shows_a_killed_node_down_and_back_up_under_load() {
    let _serial = serial();
    let scratch = Scratch::new("status-page");
    let spec = "bench/small-:4KiB:32";
    let specs = sim::specs(&[spec]);
    let mut nodes = sim::start(3, &[spec]);
    let addrs = sim::addrs(&nodes);
    let admin = ports::free_addr();
    let mut cfg = WeirConfig::new(&addrs)
        .upstream("connect_timeout = \"1s\"")
        .appliance(&format!("admin = \"{admin}\""))
        .appliance(&format!("admin_token = \"{TOKEN}\""));
    for line in HEALTH {
        cfg = cfg.main_health(line);
    }
    let weir = Weir::start(&cfg, scratch.path());

    // On the wire: the challenge offers Basic for reads; Basic opens reads, never a change.
    let stranger = admin_request(admin, "GET", "/", None);
    assert_eq!(stranger.status(), Some(401), "{}", stranger.head());
    assert!(
        stranger
            .head()
            .contains("WWW-Authenticate: Basic realm=\"weir admin\""),
        "{}",
        stranger.head()
    );
    let basic = format!("Basic {BASIC}");
    let page = admin_request(admin, "GET", "/", Some(&basic));
    assert_eq!(page.status(), Some(200), "{}", page.head());
    assert!(page
        .text()
        .contains("<script src=\"status.js\" defer></script>"));
    let csp = page.header("Content-Security-Policy").unwrap_or_default();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(page.header("X-Frame-Options").as_deref(), Some("DENY"));
    for asset in ["/status.js", "/status.css"] {
        let reply = admin_request(admin, "GET", asset, Some(&basic));
        assert_eq!(reply.status(), Some(200), "{asset}: {}", reply.head());
        assert!(
            reply.body().len() > 1000,
            "{asset} is {} bytes",
            reply.body().len()
        );
    }
    let change = admin_request(admin, "POST", "/reload", Some(&basic));
    assert_eq!(
        change.status(),
        Some(401),
        "Basic must not reload: {}",
        change.head()
    );
    assert!(!change.head().contains("Basic realm"), "{}", change.head());
    let wrong = admin_request(
        admin,
        "GET",
        "/status.json",
        Some("Basic b3BlcmF0b3I6bm9wZQ=="),
    );
    assert_eq!(wrong.status(), Some(401), "{}", wrong.head());
    let json = admin_request(
        admin,
        "GET",
        "/status.json?limit=2",
        Some(&format!("Bearer {TOKEN}")),
    );
    assert_eq!(json.status(), Some(200), "{}", json.head());
    let status: serde_json::Value =
        serde_json::from_slice(&json.body()).unwrap_or_else(|e| panic!("{e}: {}", json.text()));
    assert_eq!(status["nodes"]["total"], 3, "{status}");
    assert_eq!(
        status["nodes"]["rows"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );
    assert_eq!(status["pools"][0]["up"], 3, "{status}");

    let load = BenchLoad::start(LoadConfig {
        connections: 4,
        duration: Duration::from_secs(10),
        ..LoadConfig::new(vec![weir.addr()], specs.to_vec())
    });
    let (mut browser, ready) = Browser::open(&format!("http://{admin}/"), scratch.path());
    assert!(
        ready["auth_challenges"].as_u64() >= Some(1),
        "the browser logged in without a challenge: {ready}"
    );
    assert_eq!(ready["visibility"], "visible", "{ready}");

    // Every node has a row, all up; the request rate shows the load.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rps = loop {
        let rows = browser.node_rows();
        let rps = page_number(&browser.eval("document.getElementById('m-rps').textContent"));
        let mut want: Vec<(String, String)> = addrs
            .iter()
            .map(|a| (a.to_string(), "up".to_string()))
            .collect();
        want.sort();
        let mut have = rows.clone();
        have.sort();
        if have == want && rps.is_some_and(|r| r > 0.0) {
            break rps.unwrap_or_default();
        }
        assert!(
            Instant::now() < deadline,
            "the page shows rows {rows:?} and {rps:?} requests/s, want 3 up rows and traffic"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let pool_cells = browser
        .eval("[...document.querySelectorAll('#pools tbody tr td')].map(td => td.textContent)");
    assert_eq!(pool_cells[0], "main", "{pool_cells}");
    assert_eq!(pool_cells[1], "3", "{pool_cells}");

    // Kill a node: its row says down within 3 s.
    let victim = addrs[0];
    let killed = Instant::now();
    nodes[0].shutdown();
    let down = browser.wait_state(victim, "down", Duration::from_secs(10));
    let shown_down = killed.elapsed();
    assert_eq!(
        down["ok"], true,
        "the page never showed {victim} down: {down}"
    );
    assert!(
        shown_down <= SHOWN_DOWN_MAX,
        "the page showed {victim} down {shown_down:?} after it died (at most {SHOWN_DOWN_MAX:?})"
    );
    let first_row = browser.node_rows().first().cloned();
    assert_eq!(
        first_row,
        Some((victim.to_string(), "down".to_string())),
        "a down node is listed first"
    );
    let shot: PathBuf = scratch.path().join("status-page.png");
    let taken = browser.ask(
        serde_json::json!({"cmd": "screenshot", "path": shot.to_string_lossy()}),
        Duration::from_secs(20),
    );
    let png = std::fs::read(&shot).expect("screenshot file");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        png.len() > 20_000,
        "a {}-byte screenshot is blank",
        png.len()
    );
    assert_eq!(taken["bytes"].as_u64(), Some(png.len() as u64));
    let down_cell =
        browser.eval("document.querySelector('#pools tbody tr td:nth-child(4)').textContent");
    assert_eq!(down_cell, "1", "the pool's down count");

    // It comes back on the same address: the row says up again.
    let back = Instant::now();
    let _revived = weir_bench::spawn_nodes_at(&[victim], &specs, &SimOptions::default())
        .expect("restart the node on its address");
    let up = browser.wait_state(victim, "up", Duration::from_secs(10));
    assert_eq!(
        up["ok"], true,
        "the page never showed {victim} up again: {up}"
    );
    let shown_up = back.elapsed();

    // Node control from the page: type the token, click the node's drain button; weir's
    // /nodes and the page's override cell say drain; its enable button puts it back.
    let bearer = format!("Bearer {TOKEN}");
    browser.eval(&format!(
        "document.getElementById('token').value = {}",
        serde_json::json!(TOKEN)
    ));
    for (action, state) in [("drain", "drain"), ("enable", "enabled")] {
        browser.eval(&format!(
            "document.querySelector('#nodes tbody tr[data-node=\"{victim}\"] button[data-action=\"{action}\"]').click()"
        ));
        let deadline = Instant::now() + Duration::from_secs(5);
        let (mut listed, mut cell) = (String::new(), serde_json::Value::Null);
        while Instant::now() < deadline {
            let nodes = admin_request(admin, "GET", "/nodes", Some(&bearer));
            let nodes: serde_json::Value =
                serde_json::from_slice(&nodes.body()).unwrap_or_default();
            listed = nodes
                .as_array()
                .and_then(|ns| ns.iter().find(|n| n["node"] == victim.to_string()))
                .map(|n| n["admin"]["state"].to_string())
                .unwrap_or_default();
            cell = browser.eval(&format!(
                "document.querySelector('#nodes tbody tr[data-node=\"{victim}\"] td.admin').textContent"
            ));
            if listed == format!("\"{state}\"")
                && cell.as_str().is_some_and(|c| c.starts_with(state))
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            listed,
            format!("\"{state}\""),
            "/nodes after clicking {action}"
        );
        assert!(
            cell.as_str().is_some_and(|c| c.starts_with(state)),
            "the page's override cell after clicking {action}: {cell}"
        );
        let answered = browser.eval("document.getElementById('control-msg').dataset.status");
        assert_eq!(answered, "200", "the {action} click's answer");
    }

    // The page kept polling, and its other numbers are filled in.
    let polls = page_number(&browser.eval("document.body.dataset.polls")).unwrap_or_default();
    assert!(polls >= 3.0, "the page polled {polls} times");
    let age_ms = browser.eval("Date.now() - Number(document.body.dataset.updated)");
    assert!(
        age_ms
            .as_f64()
            .is_some_and(|ms| (0.0..2500.0).contains(&ms)),
        "the page last drew {age_ms} ms ago"
    );
    let p99 = browser.eval("document.getElementById('m-p99').textContent");
    assert!(
        p99.as_str()
            .is_some_and(|t| t.ends_with(" ms") || t.ends_with(" s")),
        "p99 reads {p99}"
    );
    let flows = browser.eval("document.getElementById('flows-count').textContent");
    assert!(
        flows.as_str().is_some_and(|t| t.starts_with('(')),
        "flows read {flows}"
    );
    let conn = browser.eval("document.getElementById('conn').textContent");
    assert_eq!(conn, "live", "the page lost weir");

    let done = browser.quit();
    let (summary, _) = load.finish();
    // The load ran through the kill: every body it got was the object's bytes.
    assert_eq!(summary.errors.mismatch, 0, "{:?}", summary.errors);
    assert!(summary.requests > 0, "the load made no request");
    println!(
        "STATUS_PAGE down shown after {:.2}s, up shown {:.2}s after restart, {rps} req/s on the page, \
         {polls} polls, {} requests in the load, {} auth challenges, {} browser requests, \
         screenshot {} ({} bytes)",
        shown_down.as_secs_f64(),
        shown_up.as_secs_f64(),
        summary.requests,
        done["auth_challenges"],
        done["requests"],
        shot.display(),
        png.len()
    );
    drop(weir);
}

/// The page's script passes ESLint (recommended rules, strict mode, no eval) and its HTML
/// html-validate, at the versions pinned in appliance/src/admin/page/lint/.
#[test]
fn status_page_passes_its_linters() {
    let _serial = serial();
    let out = Command::new("bash")
        .arg(tools::repo_root().join("scripts/lint-page.sh"))
        .output()
        .expect("run scripts/lint-page.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the page does not lint clean:\n{text}"
    );
    assert!(text.contains(": clean"), "{text}");
}
