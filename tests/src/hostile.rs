//! The bench's hostile storage node (`weir_bench::hostile`) as in-process nodes, and a raw
//! HTTP/1.1 client that reports everything a proxy sent back: the interim (1xx) answers,
//! the final answer, its body, and exactly how the connection ended — a framed end, a
//! clean close (FIN), a reset (RST), or silence. A body cut short must never look like a
//! clean end, so the tests need to tell FIN from RST.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use weir_bench::hostile::{HostileNode, HostileOptions};
use weir_bench::http::ChunkedDecoder;

/// `n` hostile nodes on ephemeral loopback ports.
pub fn start(n: usize) -> Vec<HostileNode> {
    start_with(n, &HostileOptions::default())
}

/// `n` hostile nodes with `options`.
pub fn start_with(n: usize, options: &HostileOptions) -> Vec<HostileNode> {
    weir_bench::hostile::spawn_hostile_nodes(n, options).expect("start hostile nodes")
}

/// The nodes' addresses.
pub fn addrs(nodes: &[HostileNode]) -> Vec<SocketAddr> {
    nodes.iter().map(HostileNode::addr).collect()
}

/// The whole body a hostile node sends for a GET of `target` (panics for a target whose
/// script never completes an answer).
pub fn expected(target: &str) -> Vec<u8> {
    weir_bench::hostile::expected_body(target)
        .unwrap_or_else(|e| panic!("target {target}: {e:#}"))
        .unwrap_or_else(|| panic!("target {target} never gets a whole body"))
}

/// Whether `got` is a prefix of the body the node sends for `target` (every byte a cut
/// body carried is the node's own, in place).
pub fn is_pattern_prefix(target: &str, got: &[u8]) -> bool {
    let key = weir_bench::hostile::script::pattern_key(target);
    weir_bench::pattern::verify(weir_bench::pattern::key_seed(key), 0, got).is_none()
}

/// A plain request head: `METHOD target HTTP/1.minor`, `Host`, then `extra` lines.
pub fn request(method: &str, target: &str, minor: u8, extra: &[String]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.{minor}\r\nHost: hostile.test\r\n");
    for line in extra {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// How a connection ended, seen from the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The final answer's body ended by its own framing (Content-Length, last chunk, or
    /// a bodiless answer).
    Framed,
    /// The peer closed cleanly (FIN) — for a close-delimited body this *is* its end.
    Eof,
    /// The peer reset the connection (RST): the client knows the answer is broken.
    Reset,
    /// Nothing more arrived before the wait ran out.
    Timeout,
}

/// One answer head.
#[derive(Clone, Debug)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// The status line and fields, as text.
    pub text: String,
    /// Fields (name, value).
    pub fields: Vec<(String, String)>,
}

impl Head {
    /// The first value of field `name` (case-insensitive).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of field `name`.
    pub fn fields_named(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// What came back for one request.
#[derive(Debug)]
pub struct Exchange {
    /// Interim (1xx) answers before the final one.
    pub interim: Vec<Head>,
    /// The final answer's head, if one arrived.
    pub response: Option<Head>,
    /// The final answer's body as received (de-chunked).
    pub body: Vec<u8>,
    /// How reading ended.
    pub end: End,
    /// Time from the request's last byte to the final head (if any).
    pub final_after: Option<Duration>,
    /// Everything received, for failure messages.
    pub raw: Vec<u8>,
}

impl Exchange {
    /// The final status, if any.
    pub fn status(&self) -> Option<u16> {
        self.response.as_ref().map(|h| h.status)
    }

    /// Interim statuses in order.
    pub fn interim_statuses(&self) -> Vec<u16> {
        self.interim.iter().map(|h| h.status).collect()
    }

    /// The first KiB received, as text (for failure messages).
    pub fn summary(&self) -> String {
        format!(
            "interim {:?}, final {:?}, {} body byte(s), end {:?}, first bytes: {:?}",
            self.interim_statuses(),
            self.status(),
            self.body.len(),
            self.end,
            String::from_utf8_lossy(&self.raw[..self.raw.len().min(1024)])
        )
    }

    /// The S3 error code of the body (`<Code>…</Code>`), if it is an S3 XML error.
    pub fn s3_code(&self) -> Option<String> {
        let text = String::from_utf8_lossy(&self.body);
        let (_, rest) = text.split_once("<Code>")?;
        let (code, _) = rest.split_once("</Code>")?;
        Some(code.to_string())
    }
}

/// Sends `request` on a new connection to `addr` and reads the answer (`head_only` for a
/// HEAD) for at most `wait`.
pub fn exchange(addr: SocketAddr, request: &[u8], head_only: bool, wait: Duration) -> Exchange {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    conn.set_nodelay(true).expect("nodelay");
    conn.set_write_timeout(Some(wait)).expect("write timeout");
    conn.write_all(request)
        .unwrap_or_else(|e| panic!("send request to {addr}: {e}"));
    read_exchange(&mut conn, head_only, wait)
}

/// Sends a request head and then `body` from another thread (a peer that answers early
/// may stop reading it: write errors are ignored), while reading the answer.
pub fn exchange_upload(addr: SocketAddr, head: &[u8], body: Vec<u8>, wait: Duration) -> Exchange {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    conn.set_nodelay(true).expect("nodelay");
    conn.set_write_timeout(Some(wait)).expect("write timeout");
    conn.write_all(head)
        .unwrap_or_else(|e| panic!("send head to {addr}: {e}"));
    let mut writer = conn.try_clone().expect("clone the connection");
    writer.set_write_timeout(Some(wait)).expect("write timeout");
    let sender = std::thread::spawn(move || {
        for chunk in body.chunks(64 * 1024) {
            if writer.write_all(chunk).is_err() {
                return;
            }
        }
    });
    let out = read_exchange(&mut conn, false, wait);
    // Unblock the writer if the answer came while it was still sending.
    let _ = conn.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    out
}

/// The framing of a final answer's body.
enum Framing {
    None,
    Length(usize),
    Chunked(ChunkedDecoder),
    UntilClose,
}

/// Reads interim answers, the final answer and its body from `conn`.
pub fn read_exchange(conn: &mut TcpStream, head_only: bool, wait: Duration) -> Exchange {
    let sent_at = Instant::now();
    let deadline = sent_at + wait;
    let mut ex = Exchange {
        interim: Vec::new(),
        response: None,
        body: Vec::new(),
        end: End::Timeout,
        final_after: None,
        raw: Vec::new(),
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut framing: Option<Framing> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Consume what is buffered: heads first, then body bytes.
        loop {
            match framing.as_mut() {
                None => {
                    let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                        break;
                    };
                    let head = parse_head(&pending[..end]);
                    pending.drain(..end + 4);
                    if (100..200).contains(&head.status) {
                        ex.interim.push(head);
                        continue;
                    }
                    let status = head.status;
                    let chunked = head
                        .field("transfer-encoding")
                        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
                    let length = head
                        .field("content-length")
                        .and_then(|v| v.parse::<usize>().ok());
                    framing = Some(if head_only || status == 204 || status == 304 {
                        Framing::None
                    } else if chunked {
                        Framing::Chunked(ChunkedDecoder::new())
                    } else if let Some(n) = length {
                        Framing::Length(n)
                    } else {
                        Framing::UntilClose
                    });
                    ex.final_after = Some(sent_at.elapsed());
                    ex.response = Some(head);
                }
                Some(Framing::None) => {
                    ex.end = End::Framed;
                    return ex;
                }
                Some(Framing::Length(n)) => {
                    let take = (*n - ex.body.len()).min(pending.len());
                    ex.body.extend_from_slice(&pending[..take]);
                    pending.drain(..take);
                    if ex.body.len() == *n {
                        ex.end = End::Framed;
                        return ex;
                    }
                    break;
                }
                Some(Framing::Chunked(decoder)) => {
                    let mut body = std::mem::take(&mut ex.body);
                    let used = decoder
                        .feed(&pending, &mut |p| {
                            body.extend_from_slice(p);
                            Ok(())
                        })
                        .unwrap_or_else(|e| panic!("bad chunked framing from the proxy: {e:#}"));
                    ex.body = body;
                    pending.drain(..used);
                    if decoder.is_done() {
                        ex.end = End::Framed;
                        return ex;
                    }
                    break;
                }
                Some(Framing::UntilClose) => {
                    ex.body.append(&mut pending);
                    break;
                }
            }
        }
        let now = Instant::now();
        if now >= deadline {
            ex.end = End::Timeout;
            return ex;
        }
        conn.set_read_timeout(Some(deadline - now))
            .expect("set timeout");
        match conn.read(&mut buf) {
            Ok(0) => {
                ex.end = End::Eof;
                return ex;
            }
            Ok(n) => {
                ex.raw.extend_from_slice(&buf[..n]);
                pending.extend_from_slice(&buf[..n]);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                ex.end = End::Timeout;
                return ex;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                ex.end = End::Reset;
                return ex;
            }
            Err(e) => panic!("read from the proxy: {e}"),
        }
    }
}

fn parse_head(bytes: &[u8]) -> Head {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a status line from the proxy: {status_line:?}"));
    let fields = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Head {
        status,
        text,
        fields,
    }
}

/// curl's exit code and the bytes it wrote for a GET of `url` (`--max-time` = `wait`).
pub fn curl_get(url: &str, wait: Duration) -> (i32, Vec<u8>) {
    let out = std::process::Command::new(crate::tools::curl())
        .args(["-sS", "--http1.1", "--max-time"])
        .arg(wait.as_secs().max(1).to_string())
        .arg(url)
        .output()
        .expect("run curl");
    (out.status.code().unwrap_or(-1), out.stdout)
}
