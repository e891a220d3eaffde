//! The process's own resource use for the standard `process_*` metrics (docs/metrics.md):
//! read from `/proc/self` when `/metrics` is scraped, on the metrics thread, so the data
//! path never pays for it. A value `/proc` cannot give is left out of the scrape, not
//! reported as 0.

use std::fs;

/// What `/proc/self` says about this process at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU seconds, all threads.
    pub cpu_seconds: Option<f64>,
    /// Resident set size in bytes.
    pub resident_bytes: Option<u64>,
    /// Virtual memory size in bytes.
    pub virtual_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft `RLIMIT_NOFILE` (`None` when unlimited or unreadable).
    pub max_fds: Option<u64>,
    /// Start time, seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

/// Reads the process's current figures.
pub fn read() -> ProcessStats {
    let ticks = clock_ticks();
    let stat = fs::read_to_string("/proc/self/stat").ok();
    let stat = stat.as_deref().and_then(parse_stat);
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let boot = fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| boot_time(&s));
    ProcessStats {
        cpu_seconds: stat.zip(ticks).map(|(s, t)| (s.utime + s.stime) as f64 / t),
        resident_bytes: status_kib(&status, "VmRSS:").map(|k| k * 1024),
        virtual_bytes: stat.map(|s| s.vsize),
        open_fds: open_fds(),
        max_fds: fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| max_open_files(&l)),
        start_time_seconds: stat
            .zip(ticks)
            .zip(boot)
            .map(|((s, t), b)| b as f64 + s.starttime as f64 / t),
    }
}

/// The fields of `/proc/self/stat` the metrics use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    utime: u64,
    stime: u64,
    starttime: u64,
    vsize: u64,
}

/// Parses `/proc/PID/stat` (proc(5)): the command name may hold spaces and parentheses,
/// so the fields are counted from after its last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    // rest starts at field 3 (state); field n is at index n - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
        vsize: field(23)?,
    })
}

/// A `Key:   123 kB` line of `/proc/self/status`, in KiB.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// `btime` of `/proc/stat`: boot time, seconds since the Unix epoch.
fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Entries of `/proc/self/fd`, less the one the listing itself holds open.
fn open_fds() -> Option<u64> {
    let n = fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some(n.saturating_sub(1))
}

/// Clock ticks per second, the unit of `/proc/self/stat`'s times.
fn clock_ticks() -> Option<f64> {
    // SAFETY: sysconf only reads a system constant; no pointers are involved.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (t > 0).then_some(t as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with spaces and a `)` must not shift the fields.
        let line = "4242 (we ir) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 75 0 0 20 0 9 0 123456 987654321 2000 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                utime: 250,
                stime: 75,
                starttime: 123456,
                vsize: 987654321,
            })
        );
        assert_eq!(parse_stat("4242 (weir"), None);
        assert_eq!(parse_stat("4242 (weir) S 1 2"), None);
    }

    #[test]
    fn status_limits_and_boot_time_are_read() {
        let status = "Name:\tweir\nVmSize:\t  10240 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(2048));
        assert_eq!(status_kib(status, "VmSwap:"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(max_open_files(unlimited), None);
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn this_process_reads_plausibly() {
        let p = read();
        assert!(p.cpu_seconds.is_some_and(|c| c >= 0.0), "{p:?}");
        assert!(p.resident_bytes.is_some_and(|r| r > 0), "{p:?}");
        assert!(
            p.virtual_bytes
                .zip(p.resident_bytes)
                .is_some_and(|(v, r)| v >= r),
            "{p:?}"
        );
        // stdin, stdout and stderr at least.
        assert!(p.open_fds.is_some_and(|n| n >= 3), "{p:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        assert!(
            p.start_time_seconds
                .is_some_and(|s| s <= now + 1.0 && s > now - 3600.0),
            "{p:?}"
        );
    }
}
