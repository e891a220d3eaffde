//! The weir binary under test: its config, start-up (optionally under strace), metrics and
//! CPU accounting.

use crate::process::Proc;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How weir moves bodies: `splice(2)` through a pipe, or a forced user-space copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyPath {
    Splice,
    Copy,
}

impl BodyPath {
    fn as_str(self) -> &'static str {
        match self {
            BodyPath::Splice => "splice",
            BodyPath::Copy => "copy",
        }
    }
}

/// One `[[pool]]` beyond the default one: its name, nodes, and any other keys as TOML
/// lines (`priority = 1`, `min_active = 2`, `slow_start = "2s"`), plus `[pool.health]`
/// lines (`interval = "200ms"`).
#[derive(Clone, Debug)]
pub struct PoolConfig {
    pub name: String,
    pub nodes: Vec<SocketAddr>,
    pub keys: Vec<String>,
    pub health: Vec<String>,
}

impl PoolConfig {
    /// A pool with weir's defaults for everything but its nodes.
    pub fn new(name: &str, nodes: &[SocketAddr]) -> PoolConfig {
        PoolConfig {
            name: name.to_string(),
            nodes: nodes.to_vec(),
            keys: Vec::new(),
            health: Vec::new(),
        }
    }

    /// Adds a pool key line (`priority = 1`).
    pub fn key(mut self, line: &str) -> PoolConfig {
        self.keys.push(line.to_string());
        self
    }

    /// Adds a `[pool.health]` line (`interval = "200ms"`).
    pub fn health(mut self, line: &str) -> PoolConfig {
        self.health.push(line.to_string());
        self
    }

    fn to_toml(&self, out: &mut String) {
        let nodes: Vec<String> = self.nodes.iter().map(|n| format!("\"{n}\"")).collect();
        out.push_str(&format!(
            "\n[[pool]]\nname = \"{}\"\nnodes = [{}]\n",
            self.name,
            nodes.join(", ")
        ));
        for line in &self.keys {
            out.push_str(line);
            out.push('\n');
        }
        if !self.health.is_empty() {
            out.push_str("\n[pool.health]\n");
            for line in &self.health {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
}

/// The parts of weir's config the tests vary.
#[derive(Clone, Debug)]
pub struct WeirConfig {
    pub cores: u32,
    pub body_path: BodyPath,
    pub header_bytes_max: String,
    pub head_timeout: String,
    /// `[http] client_idle_timeout` (weir's default when `None`).
    pub client_idle_timeout: Option<String>,
    /// Nodes of the pool `main`; no such pool when empty (then `pools` must name some).
    pub nodes: Vec<SocketAddr>,
    /// `[pool.health]` lines of pool `main`.
    pub main_health: Vec<String>,
    /// `[upstream]` lines (`io_timeout = "2s"`); the section is left out when empty.
    pub upstream: Vec<String>,
    /// Pools after `main`.
    pub pools: Vec<PoolConfig>,
    /// `[[route]]` tables, each as its TOML lines (`bucket = "*"`, `pools = ["a", "b"]`).
    pub routes: Vec<Vec<String>>,
    /// TOML appended as is (`[limits]`, `[[tenant]]`, `[[class]]`, `[defaults]`, …), with
    /// `${listen}` replaced by the data listener's address.
    pub extra: String,
    /// Extra `[appliance]` lines.
    pub appliance: Vec<String>,
    /// Extra `[http]` lines (`body_rate_min = 0`).
    pub http: Vec<String>,
}

impl WeirConfig {
    /// Two cores, splice, 16 KiB heads, 2 s head deadline, one pool `main` of `nodes`.
    pub fn new(nodes: &[SocketAddr]) -> WeirConfig {
        WeirConfig {
            cores: 2,
            body_path: BodyPath::Splice,
            header_bytes_max: "16KiB".into(),
            head_timeout: "2s".into(),
            client_idle_timeout: None,
            nodes: nodes.to_vec(),
            main_health: Vec::new(),
            upstream: Vec::new(),
            pools: Vec::new(),
            routes: Vec::new(),
            extra: String::new(),
            appliance: Vec::new(),
            http: Vec::new(),
        }
    }

    /// Adds an `[http]` line (`body_bytes_max = "1MiB"`).
    pub fn http(mut self, line: &str) -> WeirConfig {
        self.http.push(line.to_string());
        self
    }

    /// Adds an `[appliance]` line (`virtual_host_suffixes = ["s3.test"]`).
    pub fn appliance(mut self, line: &str) -> WeirConfig {
        self.appliance.push(line.to_string());
        self
    }

    /// Appends raw TOML (tables after the pools and routes).
    pub fn extra(mut self, toml: &str) -> WeirConfig {
        self.extra.push('\n');
        self.extra.push_str(toml);
        self
    }

    /// Adds an `[upstream]` line.
    pub fn upstream(mut self, line: &str) -> WeirConfig {
        self.upstream.push(line.to_string());
        self
    }

    /// Adds a `[pool.health]` line to pool `main`.
    pub fn main_health(mut self, line: &str) -> WeirConfig {
        self.main_health.push(line.to_string());
        self
    }

    /// Adds a pool after `main`.
    pub fn pool(mut self, pool: PoolConfig) -> WeirConfig {
        self.pools.push(pool);
        self
    }

    /// Adds a `[[route]]` of these lines.
    pub fn route(mut self, lines: &[&str]) -> WeirConfig {
        self.routes
            .push(lines.iter().map(|l| l.to_string()).collect());
        self
    }

    /// Same config with another body path.
    pub fn body_path(mut self, body_path: BodyPath) -> WeirConfig {
        self.body_path = body_path;
        self
    }

    /// The TOML weir reads.
    pub fn to_toml(&self, listen: SocketAddr, metrics: SocketAddr) -> String {
        let mut toml = format!(
            "[appliance]\n\
             cores = {cores}\n\
             listen = [\"{listen}\"]\n\
             metrics = \"{metrics}\"\n\
             body_path = \"{body_path}\"\n\
             {appliance}\
             \n\
             [http]\n\
             header_bytes_max = \"{hbm}\"\n\
             head_timeout = \"{ht}\"\n",
            cores = self.cores,
            body_path = self.body_path.as_str(),
            appliance = self
                .appliance
                .iter()
                .map(|l| format!("{l}\n"))
                .collect::<String>(),
            hbm = self.header_bytes_max,
            ht = self.head_timeout,
        );
        if let Some(idle) = &self.client_idle_timeout {
            toml.push_str(&format!("client_idle_timeout = \"{idle}\"\n"));
        }
        for line in &self.http {
            toml.push_str(line);
            toml.push('\n');
        }
        if !self.upstream.is_empty() {
            toml.push_str("\n[upstream]\n");
            for line in &self.upstream {
                toml.push_str(line);
                toml.push('\n');
            }
        }
        if !self.nodes.is_empty() {
            let main = PoolConfig {
                name: "main".into(),
                nodes: self.nodes.clone(),
                keys: Vec::new(),
                health: self.main_health.clone(),
            };
            main.to_toml(&mut toml);
        }
        for pool in &self.pools {
            pool.to_toml(&mut toml);
        }
        for route in &self.routes {
            toml.push_str("\n[[route]]\n");
            for line in route {
                toml.push_str(line);
                toml.push('\n');
            }
        }
        // `${listen}` in extra tables names the data listener, chosen only at start.
        toml.push_str(&self.extra.replace("${listen}", &listen.to_string()));
        toml
    }
}

/// A running weir; killed on drop.
pub struct Weir {
    proc: Proc,
    /// weir's own pid (differs from the spawned process's when it runs under strace).
    pid: u32,
    addr: SocketAddr,
    metrics: SocketAddr,
    config_path: PathBuf,
    strace_out: Option<PathBuf>,
    access_log: Option<PathBuf>,
}

impl Weir {
    /// Starts weir with `cfg`, its files (config, log) in `dir`; waits for both ports.
    pub fn start(cfg: &WeirConfig, dir: &Path) -> Weir {
        Self::start_inner(cfg, dir, None, None)
    }

    /// Starts weir under `strace -f -y -e trace=splice -o <dir>/weir.strace`.
    pub fn start_traced(cfg: &WeirConfig, dir: &Path) -> Weir {
        Self::start_inner(cfg, dir, Some(dir.join("weir.strace")), None)
    }

    /// Starts weir with its access log (`WEIR_ACCESS_LOG`) in `dir/access.log`.
    pub fn start_logged(cfg: &WeirConfig, dir: &Path) -> Weir {
        Self::start_inner(cfg, dir, None, Some(dir.join("access.log")))
    }

    fn start_inner(
        cfg: &WeirConfig,
        dir: &Path,
        strace_out: Option<PathBuf>,
        access_log: Option<PathBuf>,
    ) -> Weir {
        let bin = crate::tools::weir_bin();
        let addr = crate::ports::free_addr();
        let metrics = crate::ports::free_addr();
        let config_path = dir.join("weir.toml");
        std::fs::write(&config_path, cfg.to_toml(addr, metrics)).expect("write weir.toml");
        let mut cmd = match &strace_out {
            Some(out) => {
                let mut c = Command::new(crate::tools::strace());
                // -f: every shard thread; -y: fds decorated (socket vs pipe), to tell directions.
                c.args(["-f", "-y", "-qq", "-e", "trace=splice", "-o"])
                    .arg(out)
                    .arg("--")
                    .arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        cmd.arg("run").arg("--config").arg(&config_path);
        cmd.env(
            "RUST_LOG",
            std::env::var("WEIR_TEST_LOG").unwrap_or_else(|_| "info".into()),
        );
        match &access_log {
            Some(path) => cmd.env("WEIR_ACCESS_LOG", path),
            None => cmd.env_remove("WEIR_ACCESS_LOG"),
        };
        let mut proc = Proc::spawn("weir", &mut cmd, &dir.join("weir.log"));
        proc.wait_port(addr, Duration::from_secs(20));
        proc.wait_port(metrics, Duration::from_secs(20));
        let pid = if strace_out.is_some() {
            traced_child(&proc)
        } else {
            proc.pid()
        };
        Weir {
            proc,
            pid,
            addr,
            metrics,
            config_path,
            strace_out,
            access_log,
        }
    }

    /// The metrics and admin address.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
    }

    /// The access log's path, when started with [`Weir::start_logged`].
    pub fn access_log_path(&self) -> Option<&Path> {
        self.access_log.as_deref()
    }

    /// The access log's lines so far, parsed (panics on a line that is not JSON). weir's
    /// writer collects the cores' lines every 50 ms, so this first waits a little longer
    /// than that: a request that just finished is in the file.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        let path = self
            .access_log
            .as_ref()
            .expect("weir started without access log");
        std::thread::sleep(Duration::from_millis(150));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("access log line is not JSON ({e}): {l}"))
            })
            .collect()
    }

    /// `GET /nodes`: one JSON object per node.
    pub fn nodes(&self) -> Vec<serde_json::Value> {
        json_array(&http_get_text(self.metrics, "/nodes"), "/nodes")
    }

    /// The state `/nodes` shows for `node` (`up`, `degraded`, `down`, `draining`), if listed.
    pub fn node_state(&self, node: SocketAddr) -> Option<String> {
        let want = node.to_string();
        self.nodes()
            .iter()
            .find(|n| n["node"].as_str() == Some(want.as_str()))
            .and_then(|n| n["state"].as_str().map(str::to_string))
    }

    /// `GET /flows`: the live transfers.
    pub fn flows(&self) -> Vec<serde_json::Value> {
        json_array(&http_get_text(self.metrics, "/flows"), "/flows")
    }

    /// `POST /reload`: (status, body).
    pub fn reload(&self) -> (u16, String) {
        http_request(self.metrics, "POST", "/reload")
            .unwrap_or_else(|e| panic!("POST /reload: {e}"))
    }

    /// Rewrites the config file from `cfg` (same listen and metrics addresses); weir reads
    /// it on the next reload.
    pub fn write_config(&self, cfg: &WeirConfig) {
        self.write_config_text(&cfg.to_toml(self.addr, self.metrics));
    }

    /// Rewrites the config file with `text` as is (atomically: a reload never reads half).
    pub fn write_config_text(&self, text: &str) {
        let tmp = self.config_path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, &self.config_path).expect("rename config");
    }

    /// The config TOML `cfg` renders to with this weir's addresses.
    pub fn render(&self, cfg: &WeirConfig) -> String {
        cfg.to_toml(self.addr, self.metrics)
    }

    /// Sends `signal` to weir.
    pub fn signal(&self, signal: i32) {
        // SAFETY: plain kill of weir's own pid.
        unsafe {
            libc::kill(self.pid as i32, signal);
        }
    }

    /// Waits up to `timeout` for weir to exit; its status if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.proc.exited() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The client-facing address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// weir's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The config file weir was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// weir's log so far (stdout + stderr), last few KiB.
    pub fn log_tail(&self) -> String {
        self.proc.log_tail()
    }

    /// weir's whole log so far (stdout + stderr), for checks on one line that later lines
    /// could push out of [`Weir::log_tail`].
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.proc.log_path()).unwrap_or_default())
            .into_owned()
    }

    /// Panics with the log if weir has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.proc.exited() {
            panic!("weir exited ({status}); log:\n{}", self.proc.log_tail());
        }
    }

    /// User + system CPU seconds weir has used so far (all threads), from /proc/PID/stat.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid)
    }

    /// The metrics page (`GET /metrics`).
    pub fn metrics_text(&self) -> String {
        http_get_text(self.metrics, "/metrics")
    }

    /// Sum of metric `name` over all series whose labels satisfy `filter`.
    pub fn metric_sum(&self, name: &str, filter: impl Fn(&str) -> bool) -> f64 {
        metric_sum(&self.metrics_text(), name, filter)
    }

    /// Stops weir (SIGTERM, then SIGKILL after 5 s) and, if traced, returns strace's output
    /// path (complete once strace has exited).
    pub fn stop(mut self) -> Option<PathBuf> {
        // SAFETY: plain kill of weir's own pid (a child of ours or of our strace).
        unsafe {
            libc::kill(self.pid as i32, libc::SIGTERM);
        }
        std::thread::sleep(Duration::from_millis(100));
        self.proc.stop(Duration::from_secs(5));
        self.strace_out.clone()
    }
}

/// The pid of strace's tracee (weir): the first child of strace's main thread.
fn traced_child(strace: &Proc) -> u32 {
    let path = format!("/proc/{}/task/{}/children", strace.pid(), strace.pid());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    text.split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("strace {} has no child (weir) in {path}", strace.pid()))
}

/// User + system CPU seconds of process `pid` (all its threads).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/stat: {e}"));
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = &stat[stat.rfind(')').expect("stat has (comm)") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields[11].parse().expect("utime");
    let stime: f64 = fields[12].parse().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (utime + stime) / ticks
}

/// Whether access-log line `line` tried `node` (its `nodes` lists every node tried).
pub fn log_tried(line: &serde_json::Value, node: &str) -> bool {
    line["nodes"]
        .as_array()
        .is_some_and(|nodes| nodes.iter().any(|n| n.as_str() == Some(node)))
}

/// The node that answered access-log line `line` (the last one tried).
pub fn log_served_by(line: &serde_json::Value) -> Option<&str> {
    line["nodes"].as_array()?.last()?.as_str()
}

/// The wall-clock start (`ts`, seconds since the epoch) of access-log line `line`.
pub fn log_ts(line: &serde_json::Value) -> f64 {
    line["ts"].as_f64().unwrap_or(0.0)
}

fn json_array(text: &str, what: &str) -> Vec<serde_json::Value> {
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Array(items)) => items,
        Ok(other) => panic!("{what} is not a JSON array: {other}"),
        Err(e) => panic!("{what} is not JSON ({e}): {text}"),
    }
}

/// `method path` with no body over a fresh connection: (status, body as text). The reply
/// must be framed by Content-Length or by close.
pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> Result<(u16, String), String> {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut bytes = Vec::new();
    conn.read_to_end(&mut bytes)
        .map_err(|e| format!("read {addr}{path}: {e}"))?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// `GET path` over a fresh connection; the body as text. Panics on failure.
pub fn http_get_text(addr: SocketAddr, path: &str) -> String {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut bytes = Vec::new();
    conn.read_to_end(&mut bytes)
        .unwrap_or_else(|e| panic!("read {addr}{path}: {e}"));
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "GET {addr}{path}: {head}"
    );
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size_line, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Sum of Prometheus metric `name` over every series whose label text (what is between the
/// braces, `""` for none) satisfies `filter`. 0 when there is no such series.
pub fn metric_sum(text: &str, name: &str, filter: impl Fn(&str) -> bool) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            // `name{labels} value [timestamp]` or `name value [timestamp]`.
            let (metric, labels, rest) = match line.split_once('{') {
                Some((m, rest)) => {
                    let (labels, rest) = rest.rsplit_once('}')?;
                    (m, labels, rest)
                }
                None => {
                    let (m, rest) = line.split_once(' ')?;
                    (m, "", rest)
                }
            };
            let value = rest.split_whitespace().next()?;
            (metric == name && filter(labels))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sum_adds_matching_series() {
        let text = "# HELP weir_body_bytes_total x\n\
                    weir_body_bytes_total{path=\"splice\",dir=\"in\"} 10\n\
                    weir_body_bytes_total{path=\"splice\",dir=\"out\"} 5\n\
                    weir_body_bytes_total{path=\"copy\"} 7\n\
                    weir_requests_total 3\n";
        assert_eq!(
            metric_sum(text, "weir_body_bytes_total", |l| l
                .contains("path=\"splice\"")),
            15.0
        );
        assert_eq!(metric_sum(text, "weir_body_bytes_total", |_| true), 22.0);
        assert_eq!(metric_sum(text, "weir_requests_total", |_| true), 3.0);
        assert_eq!(metric_sum(text, "weir_missing", |_| true), 0.0);
    }

    #[test]
    fn config_renders_the_agreed_schema() {
        let cfg = WeirConfig::new(&[
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        ])
        .body_path(BodyPath::Copy);
        let toml = cfg.to_toml(
            "127.0.0.1:3".parse().unwrap(),
            "127.0.0.1:4".parse().unwrap(),
        );
        assert!(toml.contains("listen = [\"127.0.0.1:3\"]"), "{toml}");
        assert!(toml.contains("body_path = \"copy\""), "{toml}");
        assert!(
            toml.contains("nodes = [\"127.0.0.1:1\", \"127.0.0.1:2\"]"),
            "{toml}"
        );
    }
}
