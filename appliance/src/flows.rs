//! Live transfers and the access log. Every request gets a `Flow` for its lifetime: the
//! request path updates it in place (node, bytes as they move, retries, resumes), the
//! admin `/flows` endpoint reads each core's live flows through a message, and when the
//! request ends its flow becomes one JSON line of the access log.
//!
//! The access log never blocks the data path: each core appends lines to a bounded
//! buffer of its own, which a writer thread collects every 50 ms; a line that does not fit
//! is dropped and counted (`weir_access_log_dropped_total`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weir_io::relay::Moved;

/// Longest request target kept for `/flows` and the log.
const TARGET_BYTES_MAX: usize = 512;

/// Query parameters whose values let whoever reads them replay or forge a request: the
/// signature of a presigned URL (SigV4 `X-Amz-Signature`, SigV2 `Signature`) and a
/// session token. Compared without regard to case, after percent-decoding the name.
/// `X-Amz-Credential` and `AWSAccessKeyId` stay: a key id is no secret, and operators
/// need it to tell tenants apart.
const SECRET_QUERY_PARAMS: [&str; 3] = ["x-amz-signature", "signature", "x-amz-security-token"];
/// What a secret parameter's value is shown as (the name stays, so a presigned request
/// still reads as one).
const REDACTED: &str = "REDACTED";

/// One request in flight.
pub struct Flow {
    /// Request id (also in error bodies as `RequestId`).
    pub request_id: String,
    /// Client address.
    pub client: SocketAddr,
    /// Method.
    pub method: &'static str,
    /// Request target (truncated).
    pub target: String,
    /// Bucket, when the request names one.
    pub bucket: RefCell<Option<String>>,
    /// Config epoch it runs on.
    pub epoch: u64,
    /// When it started.
    pub started: Instant,
    started_wall: SystemTime,
    /// Nodes tried, in order (the last one serves).
    pub nodes: RefCell<Vec<SocketAddr>>,
    /// Request body bytes moved to nodes.
    pub up: Moved,
    /// Response body bytes moved to the client.
    pub down: Moved,
    /// Attempts sent again to another node.
    pub retries: Cell<u32>,
    /// Mid-body resumes.
    pub resumes: Cell<u32>,
    /// Status answered (0 until known).
    pub status: Cell<u16>,
    /// Time to the response head.
    pub first_byte: Cell<Option<Duration>>,
    /// The node serving it (pool, node index in the flow's epoch).
    pub served_by: Cell<Option<(usize, usize)>>,
    /// S3 operation class (`read`, `write`, `list`, …).
    pub op: Cell<&'static str>,
    /// Tenant and QoS class names, once classified.
    pub tenancy: RefCell<Option<(Arc<str>, Arc<str>)>>,
    /// Why weir answered `SlowDown` itself (a limit's label), if it did.
    pub shed: Cell<Option<&'static str>>,
    /// How the request waited at admission.
    pub waited: Cell<Waited>,
}

/// How a request got past admission, for metrics and the access log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Waited {
    /// It waited for tokens of a rate limit.
    pub for_tokens: bool,
    /// It waited in its class queue for a slot (tenant in-flight cap, or a node).
    pub for_slot: bool,
}

impl Flow {
    /// A flow for a request just parsed.
    pub fn new(
        request_id: String,
        client: SocketAddr,
        method: &'static str,
        target: &str,
        epoch: u64,
    ) -> Flow {
        let target = redact_target(target);
        let mut end = target.len().min(TARGET_BYTES_MAX);
        while !target.is_char_boundary(end) {
            end -= 1;
        }
        Flow {
            request_id,
            client,
            method,
            target: target[..end].to_string(),
            bucket: RefCell::new(None),
            epoch,
            started: Instant::now(),
            started_wall: SystemTime::now(),
            nodes: RefCell::new(Vec::new()),
            up: Moved::default(),
            down: Moved::default(),
            retries: Cell::new(0),
            resumes: Cell::new(0),
            status: Cell::new(0),
            first_byte: Cell::new(None),
            served_by: Cell::new(None),
            op: Cell::new("other"),
            tenancy: RefCell::new(None),
            shed: Cell::new(None),
            waited: Cell::new(Waited::default()),
        }
    }

    /// The access-log line for this flow, ended now.
    pub fn log_line(&self) -> String {
        let mut w = String::with_capacity(384);
        let ts = self
            .started_wall
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let _ = write!(
            w,
            "{{\"ts\":{ts:.6},\"request_id\":\"{}\",\"client\":\"{}\",\"method\":\"{}\",\"target\":{},\"bucket\":{},\"status\":{},\"bytes_up\":{},\"bytes_down\":{},\"duration_seconds\":{:.6},\"first_byte_seconds\":{},\"nodes\":[",
            self.request_id,
            self.client,
            self.method,
            json_str(&self.target),
            self.bucket.borrow().as_deref().map_or("null".to_string(), json_str),
            self.status.get(),
            self.up.total(),
            self.down.total(),
            self.started.elapsed().as_secs_f64(),
            self.first_byte.get().map_or("null".to_string(), |d| format!("{:.6}", d.as_secs_f64())),
        );
        for (i, n) in self.nodes.borrow().iter().enumerate() {
            let _ = write!(w, "{}\"{n}\"", if i > 0 { "," } else { "" });
        }
        let _ = write!(
            w,
            "],\"retries\":{},\"resumes\":{},\"epoch\":{}",
            self.retries.get(),
            self.resumes.get(),
            self.epoch
        );
        let (tenant, class) = self.tenancy_json();
        let waited = self.waited.get();
        let _ = write!(
            w,
            ",\"tenant\":{tenant},\"class\":{class},\"shed\":{},\"waited_tokens\":{},\"waited_slot\":{}}}",
            self.shed.get().map_or("null".to_string(), json_str),
            waited.for_tokens,
            waited.for_slot,
        );
        w
    }

    /// Tenant and class as JSON values (`null` before classification).
    fn tenancy_json(&self) -> (String, String) {
        match &*self.tenancy.borrow() {
            Some((t, c)) => (json_str(t), json_str(c)),
            None => ("null".to_string(), "null".to_string()),
        }
    }

    fn report(&self, now: Instant) -> FlowReport {
        let age = now.saturating_duration_since(self.started).as_secs_f64();
        let bytes = self.up.total() + self.down.total();
        FlowReport {
            request_id: self.request_id.clone(),
            client: self.client,
            method: self.method,
            target: self.target.clone(),
            bucket: self.bucket.borrow().clone(),
            tenancy: self.tenancy_json(),
            node: self.nodes.borrow().last().copied(),
            bytes_up: self.up.total(),
            bytes_down: self.down.total(),
            age_seconds: age,
            rate_bytes_per_sec: if age > 0.0 { bytes as f64 / age } else { 0.0 },
            retries: self.retries.get(),
            resumes: self.resumes.get(),
        }
    }
}

/// A live flow as `/flows` shows it (sendable to the admin thread).
#[derive(Debug, Clone)]
pub struct FlowReport {
    request_id: String,
    client: SocketAddr,
    method: &'static str,
    target: String,
    bucket: Option<String>,
    /// Tenant and class, as JSON values.
    tenancy: (String, String),
    node: Option<SocketAddr>,
    bytes_up: u64,
    bytes_down: u64,
    age_seconds: f64,
    rate_bytes_per_sec: f64,
    retries: u32,
    resumes: u32,
}

impl FlowReport {
    /// Average body rate since the request started (the status page shows the fastest).
    pub fn rate_bytes_per_sec(&self) -> f64 {
        self.rate_bytes_per_sec
    }

    /// This flow as a JSON object.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"request_id\":\"{}\",\"client\":\"{}\",\"method\":\"{}\",\"target\":{},\"bucket\":{},\"tenant\":{},\"class\":{},\"node\":{},\"bytes_up\":{},\"bytes_down\":{},\"age_seconds\":{:.3},\"rate_bytes_per_second\":{:.0},\"retries\":{},\"resumes\":{}}}",
            self.request_id,
            self.client,
            self.method,
            json_str(&self.target),
            self.bucket.as_deref().map_or("null".to_string(), json_str),
            self.tenancy.0,
            self.tenancy.1,
            self.node.map_or("null".to_string(), |n| format!("\"{n}\"")),
            self.bytes_up,
            self.bytes_down,
            self.age_seconds,
            self.rate_bytes_per_sec,
            self.retries,
            self.resumes,
        )
    }
}

/// A core's live flows.
#[derive(Default)]
pub struct Flows {
    live: RefCell<HashMap<u64, Rc<Flow>>>,
    next: Cell<u64>,
}

/// Removes a flow from the live table when its request ends.
pub struct FlowGuard<'a> {
    flows: &'a Flows,
    key: u64,
    /// The flow.
    pub flow: Rc<Flow>,
}

impl Drop for FlowGuard<'_> {
    fn drop(&mut self) {
        self.flows.live.borrow_mut().remove(&self.key);
    }
}

impl Flows {
    /// Registers a flow for the duration of the returned guard.
    pub fn start(&self, flow: Flow) -> FlowGuard<'_> {
        let key = self.next.get();
        self.next.set(key + 1);
        let flow = Rc::new(flow);
        self.live.borrow_mut().insert(key, flow.clone());
        FlowGuard {
            flows: self,
            key,
            flow,
        }
    }

    /// Reports of all live flows on this core.
    pub fn report(&self) -> Vec<FlowReport> {
        let now = Instant::now();
        self.live.borrow().values().map(|f| f.report(now)).collect()
    }
}

/// How often the writer collects the cores' lines: the data path never wakes it, so a
/// line reaches the file within about this long.
const LOG_FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Average line size assumed when turning `access_log_lines_max` into a per-core byte
/// bound.
const LOG_LINE_BYTES: usize = 512;

/// One core's pending lines (only that core appends; the writer takes them).
type CoreBuf = Arc<std::sync::Mutex<String>>;

/// Where access-log lines go. Each core appends its lines to a buffer of its own (an
/// uncontended lock, taken by the writer only every 50 ms) instead of handing every line
/// to the writer thread: waking a thread per request cost more than the rest of the
/// logging (10% of weir's CPU at 16k small GETs/s).
#[derive(Clone)]
pub struct AccessLog {
    cores: Arc<std::sync::Mutex<Vec<CoreBuf>>>,
    bytes_max: usize,
}

thread_local! {
    /// This thread's buffer, once it logged a line.
    static CORE_BUF: std::cell::RefCell<Option<CoreBuf>> = const { std::cell::RefCell::new(None) };
}

impl AccessLog {
    /// Starts the writer thread for `target` (`"stdout"` or a file path, appended to);
    /// each core holds at most about `lines_max` lines between two collections.
    pub fn start(target: &str, lines_max: usize) -> std::io::Result<AccessLog> {
        let mut out: Box<dyn Write + Send> = if target == "stdout" {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(target)?,
            )
        };
        let cores: Arc<std::sync::Mutex<Vec<CoreBuf>>> = Arc::default();
        let collect = cores.clone();
        std::thread::Builder::new()
            .name("weir-access-log".into())
            .spawn(move || loop {
                std::thread::sleep(LOG_FLUSH_INTERVAL);
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
                    let _ = out.write_all(text.as_bytes());
                }
                let _ = out.flush();
            })?;
        Ok(AccessLog {
            cores,
            bytes_max: lines_max.max(1).saturating_mul(LOG_LINE_BYTES),
        })
    }

    /// Queues a line from this core; false when the core's buffer is full (the line is
    /// dropped: the writer is behind).
    pub fn log(&self, line: impl AsRef<str>) -> bool {
        let line = line.as_ref();
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
            if b.len() + line.len() >= self.bytes_max {
                return false;
            }
            b.push_str(line);
            b.push('\n');
            true
        })
    }
}

/// `target` with the values of [`SECRET_QUERY_PARAMS`] replaced by `REDACTED`: what the
/// access log, `/flows` and any other display of a request may show. Borrowed (no copy)
/// when there is nothing to hide, which is nearly always.
pub fn redact_target(target: &str) -> std::borrow::Cow<'_, str> {
    let Some((path, query)) = target.split_once('?') else {
        return target.into();
    };
    let secret = |segment: &str| {
        segment
            .split_once('=')
            .is_some_and(|(name, _)| is_secret_param(name))
    };
    if !query.split('&').any(secret) {
        return target.into();
    }
    let mut out = String::with_capacity(target.len());
    out.push_str(path);
    out.push('?');
    for (i, segment) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match segment.split_once('=') {
            Some((name, _)) if is_secret_param(name) => {
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(segment),
        }
    }
    out.into()
}

/// Whether a raw (possibly percent-encoded) query parameter name is one of
/// [`SECRET_QUERY_PARAMS`]; S3 decodes names before it reads them, so must we.
fn is_secret_param(raw: &str) -> bool {
    // Longest secret name, every byte escaped: anything longer cannot be one.
    const RAW_LEN_MAX: usize = 3 * 20;
    if raw.len() > RAW_LEN_MAX {
        return false;
    }
    let bytes = raw.as_bytes();
    let mut name = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let value = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                name.push(u8::try_from(value).unwrap_or(0));
                i += 3;
            }
            (b, _, _) => {
                name.push(b);
                i += 1;
            }
        }
    }
    SECRET_QUERY_PARAMS
        .iter()
        .any(|secret| secret.as_bytes().eq_ignore_ascii_case(&name))
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &str = "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

    #[test]
    fn presigned_signatures_and_tokens_are_redacted() {
        let v4 = format!(
            "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature={SIG}"
        );
        assert_eq!(
            redact_target(&v4),
            v4.replace(SIG, "REDACTED"),
            "the key id and the rest stay"
        );
        let v2 = format!("/b/k?AWSAccessKeyId=AKID&Expires=1700000000&Signature={SIG}%3D");
        assert_eq!(
            redact_target(&v2),
            "/b/k?AWSAccessKeyId=AKID&Expires=1700000000&Signature=REDACTED"
        );
        for spelling in [
            "x-amz-signature",
            "X-AMZ-SIGNATURE",
            "X%2DAmz%2DSignature",
            "%58-amz-%73ignature",
            "signature",
            "X-Amz-Security-Token",
            "x-amz-security-token",
        ] {
            let target = format!("/b/k?versionId=3&{spelling}={SIG}&partNumber=1");
            let shown = redact_target(&target);
            assert_eq!(
                shown,
                format!("/b/k?versionId=3&{spelling}=REDACTED&partNumber=1"),
                "{spelling}"
            );
        }
    }

    #[test]
    fn other_targets_are_kept_as_they_are() {
        for target in [
            "/b/k",
            "/b/k?",
            "/b/k?versionId=3&uploads",
            "/b/k?Signature",
            "/b/k?signatures=1&x-amz-signature-x=2&X-Amz-Credential=AKID",
            "/b/k?a=1?Signature=2",
            "/b/Signature=1",
        ] {
            assert!(
                matches!(redact_target(target), std::borrow::Cow::Borrowed(t) if t == target),
                "{target}"
            );
        }
    }

    #[test]
    fn flows_and_log_lines_show_the_redacted_target() {
        let target = format!("/b/k?X-Amz-Signature={SIG}&X-Amz-Security-Token=FwoGZXIvYXdzEJr");
        let flow = Flow::new(
            "00".into(),
            "127.0.0.1:1".parse().unwrap_or_else(|_| unreachable!()),
            "GET",
            &target,
            0,
        );
        let shown = "/b/k?X-Amz-Signature=REDACTED&X-Amz-Security-Token=REDACTED";
        assert_eq!(flow.target, shown);
        for text in [flow.log_line(), flow.report(Instant::now()).to_json()] {
            assert!(text.contains(shown), "{text}");
            assert!(
                !text.contains(SIG) && !text.contains("FwoGZXIvYXdzEJr"),
                "{text}"
            );
        }
    }
}
