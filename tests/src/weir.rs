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

/// The parts of weir's config the tests vary.
#[derive(Clone, Debug)]
pub struct WeirConfig {
    pub cores: u32,
    pub body_path: BodyPath,
    pub header_bytes_max: String,
    pub head_timeout: String,
    /// `[http] client_idle_timeout` (weir's default when `None`).
    pub client_idle_timeout: Option<String>,
    pub nodes: Vec<SocketAddr>,
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
        }
    }

    /// Same config with another body path.
    pub fn body_path(mut self, body_path: BodyPath) -> WeirConfig {
        self.body_path = body_path;
        self
    }

    /// The TOML weir reads.
    pub fn to_toml(&self, listen: SocketAddr, metrics: SocketAddr) -> String {
        let nodes: Vec<String> = self.nodes.iter().map(|n| format!("\"{n}\"")).collect();
        let mut toml = format!(
            "[appliance]\n\
             cores = {cores}\n\
             listen = [\"{listen}\"]\n\
             metrics = \"{metrics}\"\n\
             body_path = \"{body_path}\"\n\
             \n\
             [http]\n\
             header_bytes_max = \"{hbm}\"\n\
             head_timeout = \"{ht}\"\n",
            cores = self.cores,
            body_path = self.body_path.as_str(),
            hbm = self.header_bytes_max,
            ht = self.head_timeout,
        );
        if let Some(idle) = &self.client_idle_timeout {
            toml.push_str(&format!("client_idle_timeout = \"{idle}\"\n"));
        }
        toml.push_str(&format!(
            "\n[[pool]]\nname = \"main\"\nnodes = [{}]\n",
            nodes.join(", ")
        ));
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
}

impl Weir {
    /// Starts weir with `cfg`, its files (config, log) in `dir`; waits for both ports.
    pub fn start(cfg: &WeirConfig, dir: &Path) -> Weir {
        Self::start_inner(cfg, dir, None)
    }

    /// Starts weir under `strace -f -y -e trace=splice -o <dir>/weir.strace`.
    pub fn start_traced(cfg: &WeirConfig, dir: &Path) -> Weir {
        Self::start_inner(cfg, dir, Some(dir.join("weir.strace")))
    }

    fn start_inner(cfg: &WeirConfig, dir: &Path, strace_out: Option<PathBuf>) -> Weir {
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
