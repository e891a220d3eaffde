//! Processes the runner starts (simulator nodes, weir, the peers) and what it reads about
//! them from `/proc`: CPU-seconds (user + system, summed over the process and all its
//! descendants, every thread included) and peak RSS (`VmHWM`, reset before each cell by
//! writing `5` to `/proc/PID/clear_refs`).
//!
//! Only processes started here are ever signalled, by their own pid: the machine is shared
//! with other people's weir and simulator processes.

use std::collections::HashMap;
use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long a stopped process gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// A child process that is stopped when dropped (and by the kernel if the runner dies).
pub struct Managed {
    name: String,
    child: Child,
    log: PathBuf,
    reaped: Option<ExitStatus>,
}

impl Managed {
    /// Spawns `command` with stdout and stderr going to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Self> {
        let out = File::create(log).with_context(|| format!("create {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        // If the runner dies without running destructors, the kernel stops the child, so
        // no orphan keeps a benchmark port.
        // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
        // async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("spawn {name}: {command:?}"))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            reaped: None,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The exit status if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.reaped.is_none() {
            self.reaped = self.child.try_wait().ok().flatten();
        }
        self.reaped
    }

    /// The process and all its live descendants.
    pub fn tree(&self) -> Vec<u32> {
        descendants(self.pid())
    }

    /// The last lines of the process's log (for error messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until `addr` accepts TCP connections, failing early if the process exits.
    pub fn wait_accepting(&mut self, addr: SocketAddr, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                bail!(
                    "{} exited with {status} before accepting on {addr}; its log:\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!(
                    "{} did not accept on {addr} within {timeout:?}; its log:\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL now (the failover scenario's node crash); returns at once; the process is
    /// reaped by `stop` (or drop).
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
    }

    /// SIGTERM, then SIGKILL after a grace period.
    pub fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.signal(libc::SIGKILL);
        self.reaped = self.child.wait().ok();
    }

    fn signal(&mut self, signal: i32) {
        if self.exited().is_some() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: signalling our own child by its pid; it has not been reaped yet, so
            // the pid cannot have been reused.
            unsafe { libc::kill(pid, signal) };
        }
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Parent pid and user + system clock ticks of one process, from `/proc/PID/stat`.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain spaces or parentheses.
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// `root` and every live descendant of it.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some((ppid, _)) = stat(pid) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        if let Some(kids) = children.get(&out[i]) {
            out.extend(kids);
        }
        i += 1;
    }
    out
}

/// CPU clock ticks per process at one moment.
#[derive(Clone, Debug, Default)]
pub struct CpuSnapshot(HashMap<u32, u64>);

impl CpuSnapshot {
    /// Reads the ticks of `pids` (processes that are gone are left out).
    pub fn take(pids: &[u32]) -> Self {
        Self(
            pids.iter()
                .filter_map(|&pid| stat(pid).map(|(_, ticks)| (pid, ticks)))
                .collect(),
        )
    }

    /// CPU-seconds spent between `earlier` and this snapshot (a process born in between
    /// counts from zero).
    pub fn seconds_since(&self, earlier: &CpuSnapshot) -> f64 {
        let ticks: u64 = self
            .0
            .iter()
            .map(|(pid, now)| now.saturating_sub(earlier.0.get(pid).copied().unwrap_or(0)))
            .sum();
        ticks as f64 / clock_ticks_per_sec()
    }
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// Resets the peak RSS (`VmHWM`) of `pids` to their current RSS.
pub fn reset_peak_rss(pids: &[u32]) {
    for pid in pids {
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    }
}

/// Sum of the peak RSS (`VmHWM`) of `pids`, in bytes.
pub fn peak_rss_bytes(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
        .sum()
}

/// The 1-minute load average (how busy the shared machine was).
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// CPU-seconds (user + system) of this process so far: the in-process load generator.
pub fn self_cpu_seconds() -> f64 {
    // SAFETY: `usage` is a valid, writable rusage struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid out pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return f64::NAN;
    }
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_found_with_cpu_time() {
        let me = std::process::id();
        let (ppid, _) = stat(me).unwrap();
        assert!(ppid > 0);
        // Burn a little CPU so the counter moves past one tick.
        let before = CpuSnapshot::take(&[me]);
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(60) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let spent = CpuSnapshot::take(&[me]).seconds_since(&before);
        assert!(spent > 0.0 && spent < 5.0, "{spent}");
        assert!(peak_rss_bytes(&[me]) > 0);
    }

    #[test]
    fn children_are_descendants() {
        let dir = std::env::temp_dir().join(format!("weir-procs-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut command = Command::new("sleep");
        command.arg("30");
        let mut child = Managed::spawn("sleep", command, &dir.join("sleep.log")).unwrap();
        assert!(descendants(std::process::id()).contains(&child.pid()));
        child.stop();
        assert!(child.exited().is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
