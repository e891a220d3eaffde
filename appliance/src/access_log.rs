//! The access log's writer (docs/operations.md, "Access log"). The data path never
//! blocks on it: each core writes its lines straight into a bounded buffer of its own
//! (no line is built anywhere else first), which a writer thread collects every 50 ms; a
//! line that does not fit is dropped and counted (`weir_access_log_dropped_total`). The
//! writer puts the lines to standard output, a file, or a syslog daemon (RFC 5424, one
//! datagram per line); a line it could not put down (a full disk, a syslog socket that
//! refuses) is counted in `weir_access_log_lines_lost_total`, never retried.
//!
//! A file is reopened by path after rotation: at once on SIGUSR1 (`mv` then `kill -USR1`),
//! and within a second without a signal when the path no longer names the open file (the
//! inode changed, or the file is gone).

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weir_policy::config::AccessLogTarget;

/// How often the writer collects the cores' lines: the data path never wakes it, so a
/// line reaches its target within about this long.
const LOG_FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// How often a file target's path is checked for rotation without a signal.
const ROTATION_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Average line size assumed when turning `access_log_lines_max` into a per-core byte
/// bound.
const LOG_LINE_BYTES: usize = 768;
/// RFC 5424 PRI of every frame: facility local0 (16), severity informational (6).
const SYSLOG_PRI: u32 = 16 * 8 + 6;

/// Lines the writer could not put down (write or send errors), all targets.
pub static LINES_LOST: AtomicU64 = AtomicU64::new(0);
/// Set by SIGUSR1: the writer reopens a file target by its path before its next write.
pub static REOPEN: AtomicBool = AtomicBool::new(false);

/// One core's pending lines (only that core appends; the writer takes them).
type CoreBuf = Arc<Mutex<String>>;

/// Where access-log lines go. Each core appends its lines to a buffer of its own (an
/// uncontended lock, taken by the writer only every 50 ms) instead of handing every line
/// to the writer thread: waking a thread per request cost more than the rest of the
/// logging (10% of weir's CPU at 16k small GETs/s).
#[derive(Clone)]
pub struct AccessLog {
    cores: Arc<Mutex<Vec<CoreBuf>>>,
    bytes_max: usize,
}

thread_local! {
    /// This thread's buffer, once it logged a line.
    static CORE_BUF: std::cell::RefCell<Option<CoreBuf>> = const { std::cell::RefCell::new(None) };
}

impl AccessLog {
    /// Starts the writer thread for `target` (an `appliance.access_log` value); each core
    /// holds at most about `lines_max` lines between two collections.
    pub fn start(target: &str, lines_max: usize) -> std::io::Result<AccessLog> {
        let target = AccessLogTarget::parse(target)
            .map_err(|why| std::io::Error::new(std::io::ErrorKind::InvalidInput, why))?;
        let mut sink = Sink::open(target)?;
        let cores: Arc<Mutex<Vec<CoreBuf>>> = Arc::default();
        let collect = cores.clone();
        std::thread::Builder::new()
            .name("weir-access-log".into())
            .spawn(move || loop {
                std::thread::sleep(LOG_FLUSH_INTERVAL);
                sink.maybe_reopen();
                let bufs: Vec<CoreBuf> = match collect.lock() {
                    Ok(list) => list.clone(),
                    Err(_) => return,
                };
                for buf in bufs {
                    let text = match buf.lock() {
                        Ok(mut b) if !b.is_empty() => std::mem::take(&mut *b),
                        _ => continue,
                    };
                    // A full disk must not stop the data path; lines are lost, not queued.
                    let lost = sink.write(&text);
                    if lost > 0 {
                        LINES_LOST.fetch_add(lost, Ordering::Relaxed);
                    }
                }
                sink.flush();
            })?;
        Ok(AccessLog {
            cores,
            bytes_max: lines_max.max(1).saturating_mul(LOG_LINE_BYTES),
        })
    }

    /// Queues one line from this core, written by `line` straight into the core's buffer
    /// (no copy); false when the buffer is full (the line is dropped: the writer is
    /// behind). `line` must not write a newline.
    pub fn log_with(&self, line: impl FnOnce(&mut String)) -> bool {
        CORE_BUF.with(|slot| {
            let mut slot = slot.borrow_mut();
            let buf = slot.get_or_insert_with(|| {
                let buf = CoreBuf::default();
                if let Ok(mut list) = self.cores.lock() {
                    list.push(buf.clone());
                }
                buf
            });
            let Ok(mut b) = buf.lock() else {
                return false;
            };
            let start = b.len();
            if start >= self.bytes_max {
                return false;
            }
            line(&mut b);
            if b.len() >= self.bytes_max {
                b.truncate(start);
                return false;
            }
            b.push('\n');
            true
        })
    }
}

/// The writer's target.
enum Sink {
    Stdout(std::io::Stdout),
    File(FileSink),
    Syslog(SyslogSink),
}

/// A file, appended to, and what is needed to notice it was rotated away.
struct FileSink {
    path: String,
    file: std::fs::File,
    /// Device and inode of the open file.
    id: (u64, u64),
    checked: Instant,
    /// Whether the last reopen failed (warned once, not every second).
    failing: bool,
}

/// A syslog daemon's socket and the fixed part of every frame.
struct SyslogSink {
    socket: SyslogSocket,
    /// `1 ` + … up to the timestamp is per frame; this is what follows it:
    /// ` HOSTNAME weir PROCID access - `.
    header_tail: String,
}

enum SyslogSocket {
    Udp(UdpSocket, SocketAddr),
    Unix(UnixDatagram, String),
}

impl Sink {
    fn open(target: AccessLogTarget) -> std::io::Result<Sink> {
        Ok(match target {
            AccessLogTarget::Stdout => Sink::Stdout(std::io::stdout()),
            AccessLogTarget::File(path) => {
                let file = open_append(&path)?;
                let meta = file.metadata()?;
                Sink::File(FileSink {
                    path,
                    id: (meta.dev(), meta.ino()),
                    file,
                    checked: Instant::now(),
                    failing: false,
                })
            }
            AccessLogTarget::SyslogUdp(addr) => {
                let local: SocketAddr = if addr.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let socket = UdpSocket::bind(local)?;
                Sink::Syslog(SyslogSink::new(SyslogSocket::Udp(socket, addr)))
            }
            AccessLogTarget::SyslogUnix(path) => {
                let socket = UnixDatagram::unbound()?;
                Sink::Syslog(SyslogSink::new(SyslogSocket::Unix(socket, path)))
            }
        })
    }

    /// Reopens a file target whose path was rotated away (or on SIGUSR1).
    fn maybe_reopen(&mut self) {
        let Sink::File(f) = self else {
            return;
        };
        let signalled = REOPEN.swap(false, Ordering::Relaxed);
        if !signalled && f.checked.elapsed() < ROTATION_CHECK_INTERVAL {
            return;
        }
        f.checked = Instant::now();
        let same = std::fs::metadata(&f.path).is_ok_and(|m| (m.dev(), m.ino()) == f.id);
        if same && !signalled {
            return;
        }
        match open_append(&f.path).and_then(|file| Ok((file.metadata()?, file))) {
            Ok((meta, file)) => {
                let _ = f.file.flush();
                f.file = file;
                f.id = (meta.dev(), meta.ino());
                f.failing = false;
                tracing::info!(path = %f.path, signalled, "access log reopened");
            }
            Err(e) => {
                if !f.failing {
                    tracing::warn!(path = %f.path, error = %e, "cannot reopen the access log; writing on to the open file");
                }
                f.failing = true;
            }
        }
    }

    /// Writes `text` (whole lines); returns how many lines were lost.
    fn write(&mut self, text: &str) -> u64 {
        match self {
            Sink::Stdout(out) => write_lines(&mut out.lock(), text),
            Sink::File(f) => write_lines(&mut f.file, text),
            Sink::Syslog(s) => s.send_lines(text),
        }
    }

    fn flush(&mut self) {
        if let Sink::Stdout(out) = self {
            let _ = out.flush();
        }
    }
}

fn open_append(path: &str) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Writes `text` to `out`; returns the lines not written whole (a line cut by the error
/// counts as lost).
fn write_lines(out: &mut impl Write, text: &str) -> u64 {
    let bytes = text.as_bytes();
    let mut done = 0;
    while done < bytes.len() {
        match out.write(&bytes[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    // Lines whose newline was not written are lost.
    bytes[done..].iter().filter(|&&b| b == b'\n').count() as u64
}

impl SyslogSink {
    fn new(socket: SyslogSocket) -> SyslogSink {
        SyslogSink {
            socket,
            header_tail: format!(" {} weir {} access - ", hostname(), std::process::id()),
        }
    }

    /// Sends each line as one RFC 5424 frame; returns how many could not be sent.
    fn send_lines(&mut self, text: &str) -> u64 {
        let mut lost = 0;
        let mut frame = String::with_capacity(1024);
        for line in text.split_terminator('\n') {
            frame.clear();
            frame.push_str(&format!("<{SYSLOG_PRI}>1 "));
            rfc3339(&mut frame, SystemTime::now());
            frame.push_str(&self.header_tail);
            frame.push_str(line);
            let sent = match &self.socket {
                SyslogSocket::Udp(s, addr) => s.send_to(frame.as_bytes(), addr).map(drop),
                SyslogSocket::Unix(s, path) => s.send_to(frame.as_bytes(), path).map(drop),
            };
            if sent.is_err() {
                lost += 1;
            }
        }
        lost
    }
}

/// This host's name for the syslog HOSTNAME field: printable ASCII without spaces, at
/// most 255 bytes, or `-` (the nil value) when it has none.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into a buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "-".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name: String = buf[..end.min(255)]
        .iter()
        .filter(|b| b.is_ascii_graphic())
        .map(|&b| b as char)
        .collect();
    if name.is_empty() {
        "-".into()
    } else {
        name
    }
}

/// Appends `t` as an RFC 3339 UTC timestamp with microseconds
/// (`2026-12-08T00:19:03.123456Z`), as RFC 5424's TIMESTAMP wants.
pub fn rfc3339(out: &mut String, t: SystemTime) {
    use std::fmt::Write as _;
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_micros()
    );
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let mut s = String::new();
        rfc3339(
            &mut s,
            UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
        );
        assert_eq!(s, "2023-11-14T22:13:20.123456Z");
        s.clear();
        rfc3339(&mut s, UNIX_EPOCH + Duration::from_secs(951_782_400)); // 2000-02-29
        assert_eq!(s, "2000-02-29T00:00:00.000000Z");
    }

    /// A writer that takes `room` bytes, then fails like a full disk.
    struct Full {
        room: usize,
    }
    impl Write for Full {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(std::io::Error::other("no space left on device"));
            }
            let n = b.len().min(self.room);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_cut_by_a_full_disk_are_counted() {
        let text = "aaaa\nbbbb\ncccc\n";
        assert_eq!(write_lines(&mut Full { room: 100 }, text), 0);
        assert_eq!(write_lines(&mut Full { room: 5 }, text), 2);
        assert_eq!(
            write_lines(&mut Full { room: 7 }, text),
            2,
            "a cut line is lost"
        );
        assert_eq!(write_lines(&mut Full { room: 0 }, text), 3);
    }
}
