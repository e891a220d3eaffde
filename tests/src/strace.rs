//! Reading `strace -f -y -e trace=splice` output: how many bytes weir moved with splice(2),
//! by direction. This is the measured (not self-reported) half of the zero-copy proof.

use std::collections::HashMap;
use std::path::Path;

/// Bytes moved by successful splice(2) calls, by direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpliceTotals {
    /// socket → pipe (the read half of a relay).
    pub socket_to_pipe: u64,
    /// pipe → socket (the write half).
    pub pipe_to_socket: u64,
    /// Anything else (file ↔ pipe, pipe ↔ pipe).
    pub other: u64,
    /// Calls that moved at least one byte.
    pub calls: u64,
    /// Calls that failed (EAGAIN and friends).
    pub failed_calls: u64,
}

impl SpliceTotals {
    /// All bytes moved by splice.
    pub fn total(&self) -> u64 {
        self.socket_to_pipe + self.pipe_to_socket + self.other
    }
}

#[derive(Clone, Copy)]
enum Dir {
    SocketToPipe,
    PipeToSocket,
    Other,
}

/// Direction from the `-y`-decorated fds of a splice call's arguments.
fn direction(args: &str) -> Dir {
    // splice(fd_in<...>, off_in, fd_out<...>, off_out, len, flags)
    let mut fds = Vec::new();
    let mut depth = 0usize;
    let mut start = None;
    for (i, ch) in args.char_indices() {
        match ch {
            '<' => {
                if depth == 0 {
                    start = Some(i + 1);
                }
                depth += 1;
            }
            '>' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    if let Some(s) = start.take() {
                        fds.push(&args[s..i]);
                    }
                }
            }
            _ => {}
        }
    }
    let is_pipe = |d: &str| d.starts_with("pipe:");
    let is_socket =
        |d: &str| d.starts_with("socket:") || d.starts_with("TCP") || d.starts_with("UNIX");
    match (fds.first(), fds.get(1)) {
        (Some(a), Some(b)) if is_socket(a) && is_pipe(b) => Dir::SocketToPipe,
        (Some(a), Some(b)) if is_pipe(a) && is_socket(b) => Dir::PipeToSocket,
        _ => Dir::Other,
    }
}

/// Parses strace's output text (with `-f`: lines start with a pid; calls interrupted by
/// another thread's output are continued in a `<... splice resumed>` line).
pub fn parse_splice_trace(text: &str) -> SpliceTotals {
    let mut totals = SpliceTotals::default();
    let mut pending: HashMap<String, Dir> = HashMap::new();
    for line in text.lines() {
        let (pid, rest) = match line.split_once(' ') {
            Some((p, r)) if p.chars().all(|c| c.is_ascii_digit()) => {
                (p.to_string(), r.trim_start())
            }
            _ => (String::new(), line),
        };
        let (dir, result) = if let Some(args) = rest.strip_prefix("splice(") {
            if args.ends_with("<unfinished ...>") {
                pending.insert(pid, direction(args));
                continue;
            }
            let Some((args, result)) = args.rsplit_once(") = ") else {
                continue;
            };
            (direction(args), result)
        } else if let Some(resumed) = rest.strip_prefix("<... splice resumed>") {
            let Some(dir) = pending.remove(&pid) else {
                continue;
            };
            let Some((_, result)) = resumed.rsplit_once(") = ") else {
                continue;
            };
            (dir, result)
        } else {
            continue;
        };
        match result
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<i64>().ok())
        {
            Some(n) if n > 0 => {
                totals.calls += 1;
                let n = n as u64;
                match dir {
                    Dir::SocketToPipe => totals.socket_to_pipe += n,
                    Dir::PipeToSocket => totals.pipe_to_socket += n,
                    Dir::Other => totals.other += n,
                }
            }
            Some(0) => {}
            _ => totals.failed_calls += 1,
        }
    }
    totals
}

/// Parses an strace output file.
pub fn parse_splice_trace_file(path: &Path) -> SpliceTotals {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    parse_splice_trace(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_by_direction_and_handles_resumed_calls() {
        let text = "\
101 splice(7<TCP:[127.0.0.1:1->127.0.0.1:2]>, NULL, 9<pipe:[55]>, NULL, 1048576, SPLICE_F_MOVE|SPLICE_F_NONBLOCK) = 65536
101 splice(10<pipe:[55]>, NULL, 8<TCP:[127.0.0.1:3->127.0.0.1:4]>, NULL, 65536, SPLICE_F_MOVE|SPLICE_F_NONBLOCK) = 65536
102 splice(7<socket:[77]>, NULL, 9<pipe:[56]>, NULL, 1048576, SPLICE_F_MOVE|SPLICE_F_NONBLOCK <unfinished ...>
101 splice(7<TCP:[127.0.0.1:1->127.0.0.1:2]>, NULL, 9<pipe:[55]>, NULL, 1048576, SPLICE_F_MOVE|SPLICE_F_NONBLOCK) = -1 EAGAIN (Resource temporarily unavailable)
102 <... splice resumed>) = 4096
101 +++ exited with 0 +++
";
        let t = parse_splice_trace(text);
        assert_eq!(t.socket_to_pipe, 65536 + 4096);
        assert_eq!(t.pipe_to_socket, 65536);
        assert_eq!(t.other, 0);
        assert_eq!(t.calls, 3);
        assert_eq!(t.failed_calls, 1);
        assert_eq!(t.total(), 65536 * 2 + 4096);
    }
}
