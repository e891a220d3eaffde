//! A child process owned by a test: killed (with its whole process group) on drop, its
//! stdout and stderr kept in a log file that failure messages quote.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How much of a log a failure message quotes.
const LOG_TAIL_BYTES: usize = 4096;

/// A running child process; dropping it kills its process group.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `cmd` with stdin closed and stdout + stderr appended to `log`. The child leads
    /// its own process group (so helpers it forks die with it) and gets SIGKILL if the thread
    /// that spawned it dies, so a crashed test leaves no server behind.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Proc {
        let out = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log fd");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        // SAFETY: only async-signal-safe calls (setpgid, prctl) between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::setpgid(0, 0);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            exited: None,
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file's path.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last few KiB of the log, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// The exit status, if the child has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Panics (quoting the log) unless `addr` accepts TCP connections within `timeout`.
    pub fn wait_port(&mut self, addr: SocketAddr, timeout: Duration) {
        self.wait_until(&format!("{addr} to accept connections"), timeout, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
    }

    /// Polls `ready` every 50 ms; panics (quoting the log) if the child exits first or
    /// `timeout` passes.
    pub fn wait_until(&mut self, what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                panic!(
                    "{} exited ({status}) while waiting for {what}; log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if ready() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} not ready after {timeout:?} waiting for {what}; log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` to the child's process group.
    pub fn signal_group(&self, signal: i32) {
        // SAFETY: plain syscall on a process group we created; errors (already gone) are fine.
        unsafe {
            libc::kill(-(self.child.id() as i32), signal);
        }
    }

    /// Kills the process group and reaps the child.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.exited() {
            self.signal_group(libc::SIGKILL);
            return status;
        }
        self.signal_group(libc::SIGKILL);
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait for killed child");
        self.exited = Some(status);
        status
    }

    /// Sends SIGTERM to the group, waits up to `grace` for the child to exit, then kills.
    pub fn stop(&mut self, grace: Duration) -> ExitStatus {
        if self.exited().is_none() {
            self.signal_group(libc::SIGTERM);
            let deadline = Instant::now() + grace;
            while self.exited().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last few KiB of a log file.
pub fn log_tail(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(LOG_TAIL_BYTES);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("(no log at {}: {e})", path.display()),
    }
}

/// Runs `cmd` to completion with a deadline; panics with its output if it fails or hangs.
/// Returns stdout.
pub fn run_checked(what: &str, cmd: &mut Command, timeout: Duration) -> Vec<u8> {
    let out = run_with_timeout(cmd, timeout).unwrap_or_else(|e| panic!("{what}: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}): {cmd:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            out.status,
            tail_str(&out.stdout),
            tail_str(&out.stderr)
        );
    }
    out.stdout
}

fn tail_str(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(LOG_TAIL_BYTES);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// Runs `cmd` (stdin closed unless set) and collects its output, killing it after `timeout`.
pub fn run_with_timeout(
    cmd: &mut Command,
    timeout: Duration,
) -> Result<std::process::Output, String> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: async-signal-safe prctl only, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let out = child.wait_with_output();
        let _ = tx.send(());
        out
    });
    if rx.recv_timeout(timeout).is_err() {
        // SAFETY: plain kill of our own child, which has not been reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        let out = waiter.join().expect("waiter thread");
        return Err(format!(
            "{cmd:?} did not finish within {timeout:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            out.as_ref()
                .map(|o| tail_str(&o.stdout))
                .unwrap_or_default(),
            out.as_ref()
                .map(|o| tail_str(&o.stderr))
                .unwrap_or_default()
        ));
    }
    waiter
        .join()
        .expect("waiter thread")
        .map_err(|e| format!("wait {cmd:?}: {e}"))
}
