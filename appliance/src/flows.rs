//! Live transfers and the access log. Every request gets a `Flow` for its lifetime: the
//! request path updates it in place (node, bytes as they move, retries, resumes), the
//! admin `/flows` endpoint reads each core's live flows through a message, and when the
//! request ends its flow becomes one JSON line of the access log (`crate::access_log`,
//! docs/operations.md "Access log"), written straight into the core's log buffer.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weir_io::http::RequestHead;
use weir_io::relay::Moved;

use crate::settings::Settings;

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
    /// The client's head as weir forwards it (the log reads its user agent, key and
    /// operation from it when the request ends, not on the way).
    pub head: Rc<RequestHead>,
    /// The access key the request is signed with (never a secret or signature).
    pub access_key: RefCell<Option<Box<str>>>,
    /// The S3 error code answered: weir's own, or the node's when it was read.
    pub error_code: RefCell<Option<std::borrow::Cow<'static, str>>>,
    /// The serving node's `x-amz-request-id`.
    pub node_request_id: RefCell<Option<Box<str>>>,
    /// How the request ended, when not as a complete answer (set where it broke off).
    pub end: Cell<Option<(Outcome, EndedBy)>>,
    /// Whether weir answered the request itself (no node's answer relayed).
    pub own_answer: Cell<bool>,
    /// The response body's announced length, when it had one.
    pub bytes_expected: Cell<Option<u64>>,
    /// Time from the request's start until its first attempt went to a node (identity,
    /// admission, the class queue).
    pub queued: Cell<Option<Duration>>,
    /// How long the serving attempt took to get its node connection (0 for a reused one).
    pub connect: Cell<Option<Duration>>,
    /// Set once its line is logged (a drain logs flows it cuts before they end).
    pub logged: Cell<bool>,
}

/// How a request ended, for the access log's `outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The whole answer (a node's or weir's own, whatever its status) reached the client.
    Complete,
    /// The client went away or stalled before the whole answer was sent.
    ClientAborted,
    /// The node failed mid-answer and no other node could take over (after any resumes).
    NodeFailed,
    /// weir could not complete the answer (out of a resource, an internal error).
    WeirFailed,
    /// The drain timeout cut the request at shutdown.
    DrainCut,
}

impl Outcome {
    /// The log's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::ClientAborted => "client_aborted",
            Outcome::NodeFailed => "node_failed",
            Outcome::WeirFailed => "internal_error",
            Outcome::DrainCut => "drain_cut",
        }
    }
}

/// Who ended a transfer, for the access log's `ended_by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy {
    /// The client (it went away, or its request or body broke off).
    Client,
    /// The node (its answer ended, whole or cut).
    Node,
    /// weir (its own answer, or it gave up).
    Weir,
    /// The drain timeout at shutdown.
    Drain,
}

impl EndedBy {
    /// The log's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EndedBy::Client => "client",
            EndedBy::Node => "node",
            EndedBy::Weir => "weir",
            EndedBy::Drain => "drain",
        }
    }
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
    pub fn new(request_id: String, client: SocketAddr, head: Rc<RequestHead>, epoch: u64) -> Flow {
        let method = head.method.as_str();
        let target = redact_target(&head.target);
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
            head,
            access_key: RefCell::new(None),
            error_code: RefCell::new(None),
            node_request_id: RefCell::new(None),
            end: Cell::new(None),
            own_answer: Cell::new(false),
            bytes_expected: Cell::new(None),
            queued: Cell::new(None),
            connect: Cell::new(None),
            logged: Cell::new(false),
        }
    }

    /// Records the S3 error code answered (`None`: no code, or not read). A code weir
    /// knows costs nothing; any other (a node's own) is kept, cut at 64 bytes.
    pub fn set_error_code(&self, code: Option<&str>) {
        let code = code.map(|c| match weir_policy::s3code::S3Code::parse(c) {
            weir_policy::s3code::S3Code::Other => truncated(c, 64).to_string().into(),
            known => known.as_str().into(),
        });
        *self.error_code.borrow_mut() = code;
    }

    /// Records how the request broke off (the first account wins: what follows a
    /// client's abort is its consequence).
    pub fn ended(&self, outcome: Outcome, by: EndedBy) {
        if self.end.get().is_none() {
            self.end.set(Some((outcome, by)));
        }
    }

    /// How the request ended: as recorded where it broke off, else complete — ended by
    /// weir when weir answered, by the node otherwise.
    pub fn outcome(&self) -> (Outcome, EndedBy) {
        self.end.get().unwrap_or(if self.own_answer.get() {
            (Outcome::Complete, EndedBy::Weir)
        } else {
            (Outcome::Complete, EndedBy::Node)
        })
    }

    /// Writes this flow's access-log line (docs/operations.md, "Access log"), ended now,
    /// into `w` (the core's log buffer: nothing is allocated for the line itself).
    pub fn write_line(&self, w: &mut String, settings: &Settings) {
        let ts = self
            .started_wall
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let head = &*self.head;
        let text = |name: &str| head.header(name).and_then(|v| std::str::from_utf8(v).ok());
        let cfg = &settings.config.appliance;
        let target = weir_policy::route::s3_target(
            head.host(),
            head.path(),
            &cfg.virtual_host_suffixes,
            cfg.bucket_names,
        );
        let (has_bucket, key) = match &target {
            Ok(Some(t)) => (true, Some(t.key).filter(|k| !k.is_empty())),
            _ => (false, None),
        };
        let operation = weir_policy::s3op::operation(
            self.method,
            has_bucket,
            key.is_some(),
            head.query(),
            head.header("x-amz-copy-source").is_some(),
        );
        let (outcome, ended_by) = self.outcome();
        let _ = write!(w, "{{\"ts\":{ts:.6},\"request_id\":");
        json_into(w, &self.request_id);
        let _ = write!(
            w,
            ",\"client\":\"{}\",\"method\":\"{}\",\"target\":",
            self.client, self.method
        );
        json_into(w, &self.target);
        w.push_str(",\"bucket\":");
        json_opt(w, self.bucket.borrow().as_deref());
        w.push_str(",\"key\":");
        json_opt(w, key.map(|k| truncated(k, TARGET_BYTES_MAX)));
        let _ = write!(w, ",\"operation\":\"{operation}\",\"access_key\":");
        json_opt(
            w,
            self.access_key
                .borrow()
                .as_deref()
                .map(|k| truncated(k, ACCESS_KEY_BYTES_MAX)),
        );
        w.push_str(",\"user_agent\":");
        json_opt(
            w,
            text("user-agent").map(|ua| truncated(ua, USER_AGENT_BYTES_MAX)),
        );
        let _ = write!(
            w,
            ",\"status\":{},\"outcome\":\"{}\",\"ended_by\":\"{}\",\"error_code\":",
            self.status.get(),
            outcome.as_str(),
            ended_by.as_str()
        );
        json_opt(w, self.error_code.borrow().as_deref());
        let _ = write!(
            w,
            ",\"bytes_up\":{},\"bytes_down\":{},\"bytes_expected\":",
            self.up.total(),
            self.down.total()
        );
        match self.bytes_expected.get() {
            Some(n) => {
                let _ = write!(w, "{n}");
            }
            None => w.push_str("null"),
        }
        let _ = write!(
            w,
            ",\"duration_seconds\":{:.6},\"queue_seconds\":",
            self.started.elapsed().as_secs_f64()
        );
        seconds_opt(w, self.queued.get());
        w.push_str(",\"connect_seconds\":");
        seconds_opt(w, self.connect.get());
        w.push_str(",\"first_byte_seconds\":");
        seconds_opt(w, self.first_byte.get());
        let served = self.served_by.get().and_then(|(pool, node)| {
            // By address: a DNS name stands for several nodes (docs/operations.md, "DNS").
            let p = settings.config.pools.get(pool)?;
            Some((p.name.as_str(), settings.nodes.get(pool)?.get(node)?))
        });
        w.push_str(",\"pool\":");
        json_opt(w, served.map(|(pool, _)| pool));
        w.push_str(",\"node\":");
        match served {
            Some((_, node)) => {
                let _ = write!(w, "\"{node}\"");
            }
            None => w.push_str("null"),
        }
        w.push_str(",\"node_request_id\":");
        json_opt(w, self.node_request_id.borrow().as_deref());
        w.push_str(",\"nodes\":[");
        for (i, n) in self.nodes.borrow().iter().enumerate() {
            let _ = write!(w, "{}\"{n}\"", if i > 0 { "," } else { "" });
        }
        let _ = write!(
            w,
            "],\"retries\":{},\"resumes\":{},\"epoch\":{},\"tenant\":",
            self.retries.get(),
            self.resumes.get(),
            self.epoch
        );
        match &*self.tenancy.borrow() {
            Some((t, c)) => {
                json_into(w, t);
                w.push_str(",\"class\":");
                json_into(w, c);
            }
            None => w.push_str("null,\"class\":null"),
        }
        w.push_str(",\"shed\":");
        json_opt(w, self.shed.get());
        let waited = self.waited.get();
        let _ = write!(
            w,
            ",\"waited_tokens\":{},\"waited_slot\":{}}}",
            waited.for_tokens, waited.for_slot,
        );
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

    /// Logs every live flow not logged yet as cut by the drain (`ended_by: drain`): the
    /// process exits next, and their requests would otherwise leave no line. Returns how
    /// many were logged.
    pub fn log_cut_by_drain(
        &self,
        log: &crate::access_log::AccessLog,
        settings: &Settings,
    ) -> usize {
        let mut n = 0;
        for flow in self.live.borrow().values() {
            if flow.logged.replace(true) {
                continue;
            }
            flow.ended(Outcome::DrainCut, EndedBy::Drain);
            if log.log_with(|w| flow.write_line(w, settings)) {
                n += 1;
            }
        }
        n
    }

    /// Reports of all live flows on this core.
    pub fn report(&self) -> Vec<FlowReport> {
        let now = Instant::now();
        self.live.borrow().values().map(|f| f.report(now)).collect()
    }
}

/// The header that carries a request's id to the node and back to the client
/// (docs/operations.md, "Request ids").
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest request id taken from a client.
const REQUEST_ID_BYTES_MAX: usize = 128;

/// The id of a request, and the head the nodes get with it (docs/operations.md, "Request
/// ids"). A client the listener's `[[client_address]]` trusts (its peer is in
/// `trusted_proxies`) may bring its own id in `X-Request-Id` (1 to 128 of
/// `A-Z a-z 0-9 - _ . : / + = @`); anyone else's is replaced by `fresh`. The head then
/// carries exactly the id weir logs — except when an untrusted client signed its own
/// `X-Request-Id`: rewriting it would break the signature, so the node gets the client's
/// value and weir logs its own.
pub fn take_request_id(
    trusted: bool,
    head: &mut RequestHead,
    fresh: impl FnOnce() -> String,
) -> String {
    let theirs = head
        .header(REQUEST_ID_HEADER)
        .filter(|v| {
            (1..=REQUEST_ID_BYTES_MAX).contains(&v.len())
                && v.iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b))
        })
        .and_then(|v| std::str::from_utf8(v).ok());
    if let (true, Some(id)) = (trusted, theirs) {
        let id = id.to_string();
        // One value on the way out, even if the client sent several.
        let mut seen = false;
        head.headers
            .retain(|h| !h.is(REQUEST_ID_HEADER) || !std::mem::replace(&mut seen, true));
        keep_from_connection(head);
        return id;
    }
    let id = fresh();
    if head.header(REQUEST_ID_HEADER).is_some() {
        let text = |name: &str| head.header(name).and_then(|v| std::str::from_utf8(v).ok());
        let signed = weir_policy::resume::signed_headers(text("authorization"), head.query());
        if signed
            .iter()
            .any(|h| h.eq_ignore_ascii_case(REQUEST_ID_HEADER))
        {
            return id;
        }
        head.headers.retain(|h| !h.is(REQUEST_ID_HEADER));
    }
    head.headers.push(weir_io::http::Header::new(
        "X-Request-Id",
        id.as_bytes().to_vec(),
    ));
    keep_from_connection(head);
    id
}

/// Removes `X-Request-Id` from the client's `Connection` nominations: a client that
/// names it there would have the id dropped as hop-by-hop on the way to the node.
fn keep_from_connection(head: &mut RequestHead) {
    let names_it = |h: &weir_io::http::Header| {
        h.is("connection")
            && h.value
                .windows(REQUEST_ID_HEADER.len())
                .any(|w| w.eq_ignore_ascii_case(REQUEST_ID_HEADER.as_bytes()))
    };
    if !head.headers.iter().any(names_it) {
        return;
    }
    for h in head.headers.iter_mut().filter(|h| h.is("connection")) {
        let kept: Vec<&[u8]> = h
            .value
            .split(|&b| b == b',')
            .map(|t| t.trim_ascii())
            .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case(REQUEST_ID_HEADER.as_bytes()))
            .collect();
        h.value = kept.join(&b", "[..]);
    }
    head.headers
        .retain(|h| !(h.is("connection") && h.value.is_empty()));
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

/// Longest access key id kept for the log (real ones are 16 to 128 characters).
const ACCESS_KEY_BYTES_MAX: usize = 128;
/// Longest user agent kept for the log.
const USER_AGENT_BYTES_MAX: usize = 256;

/// `s` cut to at most `max` bytes, at a character boundary.
fn truncated(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Appends a JSON string, or `null`.
fn json_opt(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => json_into(out, s),
        None => out.push_str("null"),
    }
}

/// Appends seconds with microsecond precision, or `null`.
fn seconds_opt(out: &mut String, d: Option<Duration>) {
    match d {
        Some(d) => {
            let _ = write!(out, "{:.6}", d.as_secs_f64());
        }
        None => out.push_str("null"),
    }
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    json_into(&mut out, s);
    out
}

/// Appends `s` as a JSON string literal.
pub fn json_into(out: &mut String, s: &str) {
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
        let head = weir_io::http::parse_request(
            format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
            &weir_io::http::HeadLimits {
                header_bytes_max: 8192,
                headers_count_max: 16,
            },
        );
        let Ok(Some((head, _))) = head else {
            panic!("the head parses: {head:?}")
        };
        let flow = Flow::new(
            "00".into(),
            "127.0.0.1:1".parse().unwrap_or_else(|_| unreachable!()),
            Rc::new(head),
            0,
        );
        let shown = "/b/k?X-Amz-Signature=REDACTED&X-Amz-Security-Token=REDACTED";
        assert_eq!(flow.target, shown);
        // (The access-log line prints `flow.target` too; tests/tests/access_log.rs reads it.)
        let text = flow.report(Instant::now()).to_json();
        assert!(text.contains(shown), "{text}");
        assert!(
            !text.contains(SIG) && !text.contains("FwoGZXIvYXdzEJr"),
            "{text}"
        );
    }
}
