//! Whole-object transfers by real clients that a test starts, watches and then checks: a
//! curl GET hashed as it streams (optionally rate-limited, so a fault can be injected in
//! the middle of it), a curl PUT from a file, and the SHA-256 of the simulator's synthetic
//! objects (so a body from `weir-sim` is checked without a copy on disk).
//!
//! curl never retries unless told to, so what these see is weir's behaviour
//! (docs/design.md, "How we know it works").

use crate::clients::curl_sigv4;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a finished transfer looked like from the client.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// curl exited 0 (with `--fail`: a 2xx answer, body complete).
    pub ok: bool,
    /// The HTTP status curl saw (0 if none).
    pub status: u16,
    /// SHA-256 (hex) of the body bytes received (GET), empty for a PUT.
    pub sha256: String,
    /// Body bytes received (GET) or sent (PUT, as curl reports it).
    pub bytes: u64,
    /// Wall time.
    pub secs: f64,
    /// curl's stderr (its error message when `ok` is false).
    pub stderr: String,
}

/// A curl transfer running in the background.
pub struct Transfer {
    what: String,
    pid: u32,
    started: Instant,
    waiter: Option<JoinHandle<Outcome>>,
}

impl Transfer {
    /// Starts `GET url` signed with the test keys, its body hashed as it arrives; with
    /// `rate_bytes_per_sec`, curl reads no faster than that (`--limit-rate`), which keeps a
    /// large transfer in flight long enough to break something under it.
    pub fn get(url: &str, rate_bytes_per_sec: Option<u64>) -> Transfer {
        Self::get_with(url, rate_bytes_per_sec, &[])
    }

    /// [`Transfer::get`] with extra curl arguments (e.g. `--cacert` for an https URL).
    pub fn get_with(url: &str, rate_bytes_per_sec: Option<u64>, extra: &[&str]) -> Transfer {
        let mut cmd = curl_sigv4();
        cmd.args(extra);
        cmd.args(["--fail", "-w", "\n%{http_code}", "-o", "/dev/stdout"]);
        // A stalled transfer fails instead of hanging the test (< 100 kB/s for 60 s).
        cmd.args(["--speed-limit", "100000", "--speed-time", "60"]);
        if let Some(rate) = rate_bytes_per_sec {
            cmd.arg("--limit-rate").arg(rate.to_string());
        }
        cmd.arg(url);
        Self::spawn(format!("GET {url}"), cmd, true)
    }

    /// Starts `PUT url` of the file at `path` (`-T`: Content-Length known, curl sends
    /// `Expect: 100-continue`), optionally rate-limited.
    pub fn put_file(url: &str, path: &Path, rate_bytes_per_sec: Option<u64>) -> Transfer {
        let mut cmd = curl_sigv4();
        cmd.args([
            "--fail",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_upload}",
        ]);
        cmd.args(["--speed-limit", "100000", "--speed-time", "60"]);
        if let Some(rate) = rate_bytes_per_sec {
            cmd.arg("--limit-rate").arg(rate.to_string());
        }
        cmd.arg("-T").arg(path).arg(url);
        Self::spawn(format!("PUT {url}"), cmd, false)
    }

    fn spawn(what: String, mut cmd: std::process::Command, hash_body: bool) -> Transfer {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child: Child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn curl for {what}: {e}"));
        let pid = child.id();
        let waiter = std::thread::spawn(move || {
            let stdout = child.stdout.take().expect("curl stdout");
            let mut stderr = child.stderr.take().expect("curl stderr");
            let err_reader = std::thread::spawn(move || {
                let mut text = String::new();
                let _ = stderr.read_to_string(&mut text);
                text
            });
            let (sha256, bytes, trailer) = if hash_body {
                hash_with_trailer(stdout)
            } else {
                let mut text = String::new();
                let mut stdout = stdout;
                let _ = stdout.read_to_string(&mut text);
                (String::new(), 0, text)
            };
            let status = child.wait().expect("wait for curl");
            let stderr = err_reader.join().unwrap_or_default();
            let mut words = trailer.split_whitespace();
            let code = words.next().and_then(|c| c.parse().ok()).unwrap_or(0);
            let bytes = if hash_body {
                bytes
            } else {
                words
                    .next()
                    .and_then(|b| b.parse::<f64>().ok())
                    .unwrap_or(0.0) as u64
            };
            Outcome {
                ok: status.success(),
                status: code,
                sha256,
                bytes,
                secs: started.elapsed().as_secs_f64(),
                stderr,
            }
        });
        Transfer {
            what,
            pid,
            started,
            waiter: Some(waiter),
        }
    }

    /// What this transfer is (`GET <url>`).
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Whether curl has exited.
    pub fn is_finished(&self) -> bool {
        self.waiter.as_ref().is_none_or(|w| w.is_finished())
    }

    /// Time since the transfer started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits for curl (at most `timeout`, then kills it and panics).
    pub fn wait(mut self, timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        let waiter = self.waiter.take().expect("waited once");
        while !waiter.is_finished() {
            if Instant::now() > deadline {
                // SAFETY: plain kill of our own curl child (reaped by the waiter thread).
                unsafe {
                    libc::kill(self.pid as i32, libc::SIGKILL);
                }
                let out = waiter.join().ok();
                panic!("{} did not finish within {timeout:?}: {out:?}", self.what);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        waiter.join().expect("curl waiter thread")
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        if let Some(waiter) = self.waiter.take() {
            if !waiter.is_finished() {
                // SAFETY: plain kill of our own curl child (reaped by the waiter thread).
                unsafe {
                    libc::kill(self.pid as i32, libc::SIGKILL);
                }
            }
            let _ = waiter.join();
        }
    }
}

/// Hashes everything `reader` yields except the trailing `\n<status>` curl's `-w` adds,
/// which is returned separately (at most 8 bytes are held back at any time).
fn hash_with_trailer(mut reader: impl Read) -> (String, u64, String) {
    use sha2::{Digest, Sha256};
    const HOLD: usize = 8;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut held: Vec<u8> = Vec::with_capacity(HOLD * 2);
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if n >= HOLD {
            hasher.update(&held);
            total += held.len() as u64;
            hasher.update(&buf[..n - HOLD]);
            total += (n - HOLD) as u64;
            held.clear();
            held.extend_from_slice(&buf[n - HOLD..n]);
        } else {
            held.extend_from_slice(&buf[..n]);
            if held.len() > HOLD {
                let flush = held.len() - HOLD;
                hasher.update(&held[..flush]);
                total += flush as u64;
                held.drain(..flush);
            }
        }
    }
    // `held` ends with "\n<code>" (the code has 3 digits; 000 when there was no answer).
    let split = held.iter().rposition(|&b| b == b'\n').unwrap_or(0);
    let (body_tail, trailer) = held.split_at(split);
    hasher.update(body_tail);
    total += body_tail.len() as u64;
    (
        hex::encode(hasher.finalize()),
        total,
        String::from_utf8_lossy(trailer).trim().to_string(),
    )
}

/// `tests/py/load.py` (concurrent boto3 GETs/PUTs, every body checked) running in the
/// background until [`PyLoad::stop`].
pub struct PyLoad {
    stop_file: std::path::PathBuf,
    handle: Option<JoinHandle<serde_json::Value>>,
}

impl PyLoad {
    /// Starts load.py with `args` (after `--stop-file`, which this sets); scratch files go
    /// to `scratch`.
    pub fn start(args: &[String], scratch: &Path) -> PyLoad {
        let stop_file = scratch.join(format!(
            "load-stop-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let mut all = vec![
            "--stop-file".to_string(),
            stop_file.to_string_lossy().into_owned(),
        ];
        all.extend_from_slice(args);
        let scratch = scratch.to_path_buf();
        let handle = std::thread::spawn(move || {
            crate::clients::run_py("load.py", &all, &scratch, Duration::from_secs(900))
        });
        PyLoad {
            stop_file,
            handle: Some(handle),
        }
    }

    /// Tells the load to stop and returns its report (panics if the script failed).
    pub fn stop(mut self) -> serde_json::Value {
        std::fs::write(&self.stop_file, b"stop").expect("write stop file");
        let handle = self.handle.take().expect("stopped once");
        match handle.join() {
            Ok(report) => report,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for PyLoad {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.stop_file, b"stop");
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// `weir_bench::load` (the verifying load generator: every body byte checked against the
/// synthetic pattern) running in a background thread for its configured duration.
pub struct BenchLoad {
    started: Instant,
    handle: Option<JoinHandle<anyhow::Result<weir_bench::load::Summary>>>,
    ticks: std::sync::Arc<std::sync::Mutex<Vec<weir_bench::load::Tick>>>,
}

impl BenchLoad {
    /// Starts the load described by `config`.
    pub fn start(config: weir_bench::load::LoadConfig) -> BenchLoad {
        let ticks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = ticks.clone();
        let handle = std::thread::spawn(move || {
            weir_bench::load::run(&config, |tick| {
                sink.lock().expect("ticks lock").push(*tick);
            })
        });
        BenchLoad {
            started: Instant::now(),
            handle: Some(handle),
            ticks,
        }
    }

    /// When the load started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Waits for the run to end; its summary and its ticks (cumulative totals about once a second).
    pub fn finish(mut self) -> (weir_bench::load::Summary, Vec<weir_bench::load::Tick>) {
        let handle = self.handle.take().expect("finished once");
        let summary = match handle.join() {
            Ok(result) => result.unwrap_or_else(|e| panic!("weir_bench load: {e:#}")),
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let ticks = std::mem::take(&mut *self.ticks.lock().expect("ticks lock"));
        (summary, ticks)
    }
}

impl Drop for BenchLoad {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// SHA-256 (hex) of the simulator's synthetic object `full_key` (`bucket/key`) of `size`
/// bytes: the bytes every `weir-sim` node serves for it.
pub fn synthetic_sha256(full_key: &str, size: u64) -> String {
    use sha2::{Digest, Sha256};
    let seed = weir_bench::pattern::key_seed(full_key);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < size {
        let n = (size - done).min(buf.len() as u64) as usize;
        weir_bench::pattern::fill(seed, done, &mut buf[..n]);
        hasher.update(&buf[..n]);
        done += n as u64;
    }
    hex::encode(hasher.finalize())
}

/// Polls `ready` every `every` until it returns `Some`, or panics naming `what` after
/// `timeout`. Returns the value and how long it took.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut ready: impl FnMut() -> Option<T>,
) -> (T, Duration) {
    let started = Instant::now();
    loop {
        if let Some(v) = ready() {
            return (v, started.elapsed());
        }
        if started.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(every);
    }
}

/// Seconds since the Unix epoch, as the access log writes `ts`.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_is_split_from_the_body_whatever_the_read_sizes() {
        struct Drip<'a>(&'a [u8], usize);
        impl Read for Drip<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                let n = self.1.min(self.0.len()).min(out.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let body: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let want = crate::data::sha256_hex(&body);
        let mut wire = body.clone();
        wire.extend_from_slice(b"\n200");
        for step in [1, 3, 7, 8, 9, 64, 4096, 1 << 20] {
            let (sha, len, trailer) = hash_with_trailer(Drip(&wire, step));
            assert_eq!(
                (sha.as_str(), len, trailer.as_str()),
                (want.as_str(), 5000, "200"),
                "step {step}"
            );
        }
        let (sha, len, trailer) = hash_with_trailer(Drip(b"\n000", 2));
        assert_eq!((len, trailer.as_str()), (0, "000"));
        assert_eq!(sha, crate::data::sha256_hex(b""));
    }
}
