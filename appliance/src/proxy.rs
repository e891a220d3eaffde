//! The request pipeline of one client connection (docs/design.md, "A request's way"):
//!
//! 1. read the head under its deadline and size cap, parse it strictly (`weir_io::http`);
//!    a rejected request is answered with an S3 XML error and never reaches a node;
//!    with `auth.mode = "verify"` its SigV4 signature is checked next (`identity`), and a
//!    forged, unknown-key or skewed request is answered here too;
//! 2. route: bucket → the route's chain of pools (`weir_policy`), pick a node across the
//!    chain (health, priority groups, AIMD limits, in-flight × latency, slow start);
//! 3. take a pooled keep-alive connection to the node (or open one) and forward the head
//!    byte for byte (SigV4 signs Host and most headers, so nothing signed is rewritten) —
//!    or, when the node's pool has `credentials`, re-signed for that pool and node
//!    (`identity::resign`, per attempt and per resume);
//! 4. relay the request body (small ones buffered so they can be replayed, large ones
//!    spliced; `Expect: 100-continue` waits for the node's 100 before pulling the body);
//! 5. relay the response head and body (spliced), then return both connections for reuse
//!    only if both messages completed exactly. Interim answers (1xx) are relayed to
//!    HTTP/1.1 clients and never taken for the final one.
//!
//! Failure handling (docs/design.md, "Failure is a normal state") is decided by one pure
//! machine per request, `weir_policy::attempt::Attempts`, which the seeded simulation
//! drives too; this file does the I/O it asks for. Each attempt's outcome goes in — a
//! node's answer (its status and, for a small error answer read whole, its S3 error
//! code), or how it failed (`failed_of`, the one reading of an io error) — and out comes
//! relay, retry after a wait, resume, or weir's own S3 error. Throttling (by code or
//! status) is backpressure: the node's and the pool+bucket's AIMD limits shrink and the
//! request backs off and goes elsewhere, or the client gets `SlowDown`. A failure after
//! the request reached a node is held until the request shows whose it was
//! (`weir_policy::health::Blame`). After the response started, a GET whose node dies
//! mid-body is resumed from another node (`weir_policy::resume`) into the same client
//! response, counted in flight on that node. A response that cannot be completed resets
//! the client connection: never short, and never a clean end the client could take for
//! the whole.
//!
//! Every read and write has a deadline; bodies also have a rate floor
//! (`http.body_rate_min`), and a streamed upload takes a node slot only once its body is
//! flowing, so trickling clients cannot pin the nodes' concurrency.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use weir_io::conn::{head_end, Conn, Socket};
use weir_io::http::{
    parse_request, parse_response, s3_error_response, s3_error_response_head_only,
    write_request_head, write_response_head, BodyFraming, ChunkItem, ChunkedDecoder, ChunkedLimits,
    HeadError, HeadLimits, Header, Method, Peer, RequestHead, ResponseHead,
};
use weir_io::relay::{BodyMode, End, Mover, Pacer, RateFloor};
use weir_io::tls::TlsPath;
use weir_io::upstream::TlsTarget;
use weir_io::{Error, Kind, Side};
use weir_policy::attempt::{
    Answer, Attempts, Decision, Env, Failed, Limit, Outcome, Params, Refusal, ResumeOutcome, Step,
};
use weir_policy::balance::{pick, Candidate, NodeView, PoolView};
use weir_policy::classify::Request;
use weir_policy::config::BodyPath;
use weir_policy::health::parse_retry_after;
use weir_policy::limits::Dir;
use weir_policy::resume::{
    check_resumed, may_add_if_match, plan_resume, signed_headers, ResumePlan,
};
use weir_policy::retry::BodyState;
use weir_policy::s3code::{code_of, S3Code, ERROR_BODY_BYTES_MAX};
use weir_policy::sigv4::{ChunkStream, SigV4Error};

use crate::buckets::{Bucket, BucketSlot};
use crate::bus::NodeId;
use crate::flows::{Flow, Waited};
use crate::identity;
use crate::metrics::Direction;
use crate::post_form;
use crate::protect::{Protect, Shed, Slot};
use crate::shard::{BytePacer, Epoch, Shard};
use crate::signals;
use crate::signed_body;

/// Bodies shorter than this are copied rather than spliced: a pipe round trip costs two
/// syscalls plus a pipe, which only pays off for larger transfers.
const SPLICE_BYTES_MIN: u64 = 16 * 1024;

/// How long, and for how many bytes, a closing client connection is drained of what the
/// client still sends (a refused upload's body) so that weir's answer is not lost to a
/// reset (HAProxy and nginx linger alike).
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES_MAX: u64 = 64 << 20;

/// Serves one client connection until it closes, errs, or asks to close.
/// `prefix` is plaintext a TLS handshake already received (empty for plain HTTP);
/// `client_name` the DNS name of a verified client certificate (the tenant's identity
/// when a tenant lists it in `client_names`).
pub async fn serve_client(
    shard: &Shard,
    socket: Socket,
    prefix: &[u8],
    peer: SocketAddr,
    client_name: Option<&str>,
) {
    let ep = shard.epoch();
    let http = &ep.settings.config.http;
    let mut client = match Conn::with_prefix(socket, http.header_bytes_max + 1, prefix) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "cannot set up client connection");
            return;
        }
    };
    let mode = match ep.settings.config.appliance.body_path {
        BodyPath::Splice => BodyMode::Splice,
        BodyPath::Copy => BodyMode::Copy,
    };
    let mut mover = Mover::new(
        mode,
        shard.pipes.clone(),
        ep.settings.config.upstream.io_timeout,
        SPLICE_BYTES_MIN,
    );
    drop(ep);
    let mut first = true;
    loop {
        // Each request runs on the epoch current when it starts, to its end.
        let ep = shard.epoch();
        match read_request(&ep, &mut client, std::mem::take(&mut first)).await {
            Incoming::Closed => return,
            Incoming::Reject(err) => {
                // A head refused after its request line still answers a HEAD without a
                // body: the client reads the answer as a HEAD's.
                let method = client
                    .buffered()
                    .starts_with(b"HEAD ")
                    .then_some(Method::Head);
                reject(shard, &client, &err, "", method).await;
                client.linger_close(LINGER, LINGER_BYTES_MAX).await;
                return;
            }
            Incoming::Head(head) => {
                shard.metrics().request_started();
                let guard = shard.flows.start(Flow::new(
                    shard.request_id(),
                    peer,
                    head.method.as_str(),
                    &head.target,
                    ep.id,
                ));
                mover.set_rate_floor(rate_floor(&ep.settings.config.http));
                let after = handle(
                    shard,
                    &ep,
                    &guard.flow,
                    &mut client,
                    &mut mover,
                    &head,
                    client_name,
                )
                .await;
                mover.set_pacer(None);
                shard.metrics().request_finished();
                record_stats(shard, &ep, &guard.flow);
                if let Some(log) = &shard.access_log {
                    if !log.log(guard.flow.log_line()) {
                        shard.metrics().access_log_dropped();
                    }
                }
                drop(guard);
                match after {
                    // A draining weir closes connections between requests.
                    After::KeepAlive if !signals::draining() => {}
                    After::KeepAlive | After::Close => {
                        client.linger_close(LINGER, LINGER_BYTES_MAX).await;
                        return;
                    }
                    After::Reset => {
                        // The answer is incomplete: a reset, so that no client takes what
                        // it got for the whole (a close-delimited body would look complete).
                        client.abort_on_close();
                        return;
                    }
                }
            }
        }
    }
}

/// What becomes of the client connection after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// It may carry the next request.
    KeepAlive,
    /// The answer is complete; close gracefully (draining what the client still sends).
    Close,
    /// The answer could not be completed: reset the connection.
    Reset,
}

/// The body rate floor `[http]` asks for (`None` when `body_rate_min` is 0).
fn rate_floor(http: &weir_policy::config::Http) -> Option<RateFloor> {
    (http.body_rate_min > 0).then_some(RateFloor {
        bytes_per_sec: http.body_rate_min,
        window: http.body_rate_window,
    })
}

/// Bounds on a client's chunked body: the defaults, with the body size limit.
fn client_chunk_limits(http: &weir_policy::config::Http) -> ChunkedLimits {
    ChunkedLimits {
        payload_bytes_max: http.body_bytes_max,
        ..ChunkedLimits::default()
    }
}

enum Incoming {
    Head(Box<RequestHead>),
    Reject(HeadError),
    Closed,
}

/// Adds a finished request to the core's per-tenant and per-node statistics.
fn record_stats(shard: &Shard, ep: &Epoch, flow: &Flow) {
    if let Some((tenant, class)) = flow.tenancy.borrow().clone() {
        shard.stats.record_tenant(
            &crate::stats::TenantKey { tenant, class },
            &crate::stats::TenantSample {
                status: flow.status.get(),
                shed: flow.shed.get(),
                waited: flow.waited.get(),
                bytes_up: flow.up.total(),
                bytes_down: flow.down.total(),
            },
        );
    }
    let Some((pool, node)) = flow.served_by.get() else {
        return;
    };
    let sample = crate::stats::Sample {
        op: flow.op.get(),
        status: flow.status.get(),
        duration: flow.started.elapsed(),
        first_byte: flow.first_byte.get(),
        bytes_up: flow.up.total(),
        bytes_down: flow.down.total(),
    };
    shard
        .stats
        .record(ep.node_keys[pool][node].clone(), &sample);
}

/// Reads the next request head. An idle keep-alive connection closes silently; 408 only
/// when part of a head arrived and the rest did not in time. A new connection (`first`)
/// must start its first request within `head_timeout`, not `client_idle_timeout`: a
/// client that connects and says nothing is idling on weir's connection budget, not
/// between requests (HAProxy's `timeout http-request` and nginx's `client_header_timeout`
/// hold the first request alike).
async fn read_request(ep: &Epoch, client: &mut Conn, first: bool) -> Incoming {
    let http = &ep.settings.config.http;
    let limits = HeadLimits {
        header_bytes_max: http.header_bytes_max,
        headers_count_max: http.headers_count_max,
    };
    let mut deadline: Option<Instant> = None;
    loop {
        if !client.buffered().is_empty() {
            match parse_request(client.buffered(), &limits) {
                Ok(Some((head, used))) => {
                    client.consume(used);
                    return Incoming::Head(Box::new(head));
                }
                Ok(None) => {}
                Err(e) => return Incoming::Reject(e),
            }
            deadline.get_or_insert_with(|| Instant::now() + http.head_timeout);
        }
        let wait = match deadline {
            None if first => http.head_timeout,
            None => http.client_idle_timeout,
            Some(d) => d.saturating_duration_since(Instant::now()),
        };
        match monoio::time::timeout(wait, client.read_head()).await {
            Err(_) if deadline.is_some() => return Incoming::Reject(HeadError::request_timeout()),
            Err(_) | Ok(Ok(0)) => return Incoming::Closed,
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Incoming::Reject(HeadError::too_large(
                    "the request head is larger than header_bytes_max",
                ))
            }
            Ok(Err(_)) => return Incoming::Closed,
        }
    }
}

/// Answers a request weir rejects itself, and counts it. `method` is the request's when
/// its head parsed (a HEAD gets no body).
async fn reject(
    shard: &Shard,
    client: &Conn,
    err: &HeadError,
    resource: &str,
    method: Option<Method>,
) {
    shard.metrics().rejected(err.status);
    shard.metrics().request(err.status);
    let bytes = own_answer(
        shard,
        method,
        err.status,
        err.code,
        &err.message,
        resource,
        true,
        None,
    );
    let _ = write_timed(client, &bytes, OWN_ANSWER_WRITE_TIMEOUT).await;
}

/// Longest time one of weir's own answers may take to write: a client that does not read
/// its error must not hold the connection task.
const OWN_ANSWER_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// One of weir's own S3 error answers, rendered for the request it answers: no body for
/// HEAD (RFC 9110 §9.3.2: the head says what a GET would carry, and a body would be read
/// as the start of the next response), `Connection: close` when weir closes, and
/// `Retry-After` when given (always for `SlowDown`, which SDKs back off on).
#[allow(clippy::too_many_arguments)]
fn own_answer(
    shard: &Shard,
    method: Option<Method>,
    status: u16,
    code: &str,
    message: &str,
    resource: &str,
    close: bool,
    retry_after: Option<Duration>,
) -> Vec<u8> {
    let rid = shard.request_id();
    let render = if method == Some(Method::Head) {
        s3_error_response_head_only
    } else {
        s3_error_response
    };
    let mut bytes = render(status, code, message, resource, &rid, close);
    let slow_down = code == S3Code::SlowDown.as_str();
    if let Some(after) = retry_after.or(slow_down.then_some(Duration::from_secs(1))) {
        add_retry_after(&mut bytes, after);
    }
    bytes
}

/// How the request body travels.
enum ReqBody {
    /// No body.
    Empty,
    /// Read completely before forwarding: small enough, and replayable on another node.
    Buffered(Vec<u8>),
    /// Relayed as it arrives (spliced); cannot be replayed once started.
    Streamed,
    /// A browser-form upload: its first fields, read to verify it, go with the head
    /// (re-signed per pool); the rest is relayed like `Streamed`.
    Form(Box<post_form::Form>),
}

/// Counts a request against a node's in-flight total (and its `node_inflight_max` cap),
/// and against its pool+bucket limit, for as long as it holds it.
struct InFlight<'a> {
    count: Rc<Cell<u32>>,
    protect: &'a Protect,
    node: NodeId,
    _bucket: Option<BucketSlot>,
}

impl<'a> InFlight<'a> {
    fn enter(ep: &'a Epoch, node: NodeId, bucket: Option<Rc<Bucket>>) -> Self {
        let count = ep.inflight[node.pool][node.node].clone();
        count.set(count.get() + 1);
        ep.protect.start_node(node.pool, node.node);
        InFlight {
            count,
            protect: &ep.protect,
            node,
            _bucket: bucket.map(|b| b.enter()),
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        debug_assert!(
            self.count.get() > 0,
            "node in-flight count below zero: an InFlight dropped twice"
        );
        self.count.set(self.count.get().saturating_sub(1));
        self.protect.end_node(self.node.pool, self.node.node);
    }
}

/// One request's routing state: its pool chain and bucket, and its attempts
/// (`weir_policy::attempt`: the nodes it tried, whose its failures are, what comes next).
struct Route<'a> {
    shard: &'a Shard,
    ep: &'a Epoch,
    chain: &'a [usize],
    /// The request's tenant (whose identity re-signs it, per pool).
    tenant: usize,
    /// The request's bucket (its pool+bucket limits).
    bucket: Option<&'a str>,
    attempts: Attempts<NodeId>,
}

impl Drop for Route<'_> {
    fn drop(&mut self) {
        // The request is over: a failure nobody confirmed counts only beside others.
        if let Some((node, obs)) = self.attempts.finish() {
            self.ep
                .health
                .observe_unconfirmed(node, obs, Instant::now());
        }
    }
}

impl Route<'_> {
    /// The attempt on `node` came to `outcome`: the machine's decision, with its reports
    /// and limit feedback applied. Also returns what the limits learnt.
    fn decide(&mut self, node: NodeId, outcome: Outcome) -> (Decision, Option<Limit>) {
        let now = Instant::now();
        let rand = self.shard.rng.borrow_mut().next_u64();
        let step = {
            let mut budget = self.ep.retry_budget.borrow_mut();
            let env = Env {
                now,
                rand,
                budget: &mut budget,
            };
            self.attempts.on_outcome(node, outcome, env)
        };
        let limit = step.limit;
        (self.apply(node, step), limit)
    }

    /// Reports what a step releases to node health (whose per-node AIMD limit learns
    /// from it there) and feeds the pool+bucket limit; returns the decision.
    fn apply(&self, node: NodeId, step: Step<NodeId>) -> Decision {
        let now = Instant::now();
        for (node, obs) in step.reports {
            self.ep.health.observe(node, obs, now);
        }
        if let (Some(limit), Some(bucket)) = (step.limit, self.bucket_of(node.pool)) {
            bucket.learn(limit, now);
        }
        step.decision
    }

    /// The response completed: a failure held from before a resume was its node's.
    fn complete(&mut self) {
        if let Some((node, obs)) = self.attempts.complete() {
            self.ep.health.observe(node, obs, Instant::now());
        }
    }

    /// The request's pool+bucket limit in `pool`.
    fn bucket_of(&self, pool: usize) -> Option<Rc<Bucket>> {
        self.ep.buckets.get(pool, self.bucket)
    }

    /// The next node to try, across the chain's priority groups.
    fn pick(&self) -> Option<NodeId> {
        let (shard, ep) = (self.shard, self.ep);
        let cfg = &ep.settings.config;
        let now = Instant::now();
        let views: Vec<Vec<NodeView>> = self
            .chain
            .iter()
            .map(|&p| {
                let slow_start = cfg.pools[p].health.slow_start;
                ep.health
                    .pool(p)
                    .iter()
                    .enumerate()
                    .map(|(n, v)| NodeView {
                        state: v.state(),
                        inflight: ep.inflight[p][n].get(),
                        limit: v.limit(),
                        latency_ewma: v.latency_for_balancing(now),
                        weight: ep
                            .health
                            .weight(NodeId { pool: p, node: n }, slow_start, now),
                    })
                    .collect()
            })
            .collect();
        let pools: Vec<PoolView> = self
            .chain
            .iter()
            .zip(&views)
            .map(|(&p, nodes)| PoolView {
                pool: p,
                min_active: cfg.pools[p].min_active,
                nodes,
            })
            .collect();
        // A pool whose limit for this bucket is full takes no more of its requests.
        let bucket_full: Vec<usize> = self
            .chain
            .iter()
            .copied()
            .filter(|&p| self.bucket_of(p).is_some_and(|b| !b.has_room()))
            .collect();
        let rand = shard.rng.borrow_mut().next_u64();
        let tried = self.attempts.tried();
        let excluded = |c: Candidate| {
            let node = NodeId {
                pool: c.pool,
                node: c.node,
            };
            tried.contains(&node)
                || bucket_full.contains(&c.pool)
                || !ep.protect.node_has_room(c.pool, c.node)
        };
        pick(&pools, excluded, rand).map(|c| NodeId {
            pool: c.pool,
            node: c.node,
        })
    }

    /// Whether some node of the chain is routable: when none can be picked, they are all
    /// at their concurrency limits, which is a reason to wait, not to fail.
    fn any_routable(&self) -> bool {
        self.chain.iter().any(|&p| {
            self.ep
                .health
                .pool(p)
                .iter()
                .any(|v| v.state().is_routable())
        })
    }
}

/// Why an attempt ended before the response could be relayed.
struct AttemptError {
    err: Error,
    /// What the attempt machine reads of it.
    failed: Failed,
    /// Body bytes were pulled from the client and are gone.
    body_consumed: bool,
    /// The streaming-signed body was refused (the client is answered with this).
    refused: Option<SigV4Error>,
}

/// The one reading of a node-side failure for the attempt machine. A failure while
/// connecting (refused, timed out, TLS: `Kind::Connect`) never reached the node with
/// this request.
fn failed_of(err: &Error) -> Failed {
    match err.kind {
        Kind::Connect => Failed::Connect,
        Kind::Timeout => Failed::Timeout,
        Kind::Protocol => Failed::BadResponse,
        Kind::Closed | Kind::Io => Failed::Reset,
    }
}

/// Handles one request; returns what becomes of the client connection.
async fn handle(
    shard: &Shard,
    ep: &Rc<Epoch>,
    flow: &Flow,
    client: &mut Conn,
    mover: &mut Mover,
    head: &RequestHead,
    client_name: Option<&str>,
) -> After {
    let cfg = &ep.settings.config;
    let admitted_at = Instant::now();
    // A body larger than weir accepts costs nothing more than its head.
    if let BodyFraming::Length(n) = head.framing {
        if n > cfg.http.body_bytes_max {
            let err = HeadError::entity_too_large(cfg.http.body_bytes_max);
            return refuse_request(shard, flow, client, head, &err).await;
        }
    }
    // Identity first (auth.mode = verify): a request that is not signed by a tenant's
    // key is answered here and costs no admission slot, no body read, no node. A
    // browser-form upload is verified by the policy in its first fields (post_form.rs).
    let form = match post_form::accept(ep, client, head).await {
        Ok(form) => form,
        Err(Some(refusal)) => return refuse(shard, flow, client, head, &refusal).await,
        Err(None) => return After::Close,
    };
    let verified = match form {
        Some(_) => Ok(None),
        None => identity::verify(&ep.settings, &ep.keys, head, SystemTime::now()),
    };
    let verified = match verified {
        Ok(v) => v,
        Err(refusal) => return refuse(shard, flow, client, head, &refusal).await,
    };
    let chunk_verifier = verified.as_ref().and_then(|v| v.chunk_verifier());
    // The tenant is the key whose signature was verified (a form's policy signer); only
    // with verification off is it the key the request claims. Reading the credentials a
    // second time could find another key than the verified one.
    let access_key = match (&form, &verified) {
        (Some(form), _) => Some(form.access_key()),
        (None, Some(v)) => Some(v.access_key.as_str()),
        (None, None) => weir_policy::classify::access_key(
            head.header("authorization")
                .and_then(|v| std::str::from_utf8(v).ok()),
            head.query(),
        ),
    };
    let classified = Rc::new(cfg.classify(&Request {
        method: head.method.as_str(),
        host: head.host(),
        path: head.path(),
        query: head.query(),
        access_key,
        client_ip: flow.client.ip(),
        client_name,
        copy_sources: &head.headers_named("x-amz-copy-source").collect::<Vec<_>>(),
    }));
    *flow.bucket.borrow_mut() = classified.bucket.clone();
    flow.op.set(classified.op.as_str());
    let name = |names: &[std::sync::Arc<str>], i: usize| {
        names
            .get(i)
            .cloned()
            .unwrap_or_else(|| std::sync::Arc::from("other"))
    };
    *flow.tenancy.borrow_mut() = Some((
        name(&ep.tenant_names, classified.tenant.0),
        name(&ep.class_names, classified.class.0),
    ));

    // Access policy: a tenant outside its buckets or pools is refused at the edge.
    if let Some(denied) = classified.denied {
        let refusal = identity::denied(denied, classified.bucket.as_deref());
        return refuse(shard, flow, client, head, &refusal).await;
    }

    // A streaming-signed upload weir verifies or re-signs passes chunk by chunk through
    // user space (signed_body.rs); every other body moves as it came.
    let streaming = match identity::streaming(
        &ep.settings,
        classified.tenant.0,
        &classified.pools,
        head,
        chunk_verifier,
    ) {
        Ok(s) => s,
        Err(refusal) => return refuse(shard, flow, client, head, &refusal).await,
    };

    // Admission comes before the body is read: a flood costs weir a head, not a body.
    let mut waited = Waited::default();
    let admitted = ep.protect.admit(&classified, &mut waited).await;
    flow.waited.set(waited);
    let _ticket = match admitted {
        Ok(ticket) => ticket,
        Err(shed) => return shed_request(shard, flow, client, head, shed).await,
    };
    let pacer = |dir: Dir| -> Option<Rc<dyn Pacer>> {
        ep.protect.shapes_bytes(&classified, dir).then(|| {
            Rc::new(BytePacer {
                ep: ep.clone(),
                classified: classified.clone(),
                dir,
            }) as Rc<dyn Pacer>
        })
    };
    let (up_pacer, down_pacer) = (pacer(Dir::Up), pacer(Dir::Down));
    mover.set_pacer(up_pacer);

    let mut route = Route {
        shard,
        ep,
        chain: &classified.pools,
        tenant: classified.tenant.0,
        bucket: classified.bucket.as_deref(),
        attempts: Attempts::new(head.method.as_str(), Params::from_upstream(&cfg.upstream)),
    };
    ep.retry_budget.borrow_mut().on_request(Instant::now());

    let body = match head.framing {
        // A form upload: its first fields are held, the rest is relayed as it comes.
        _ if form.is_some() => form.map_or(ReqBody::Empty, ReqBody::Form),
        BodyFraming::Length(n)
            if n > 0
                && n <= cfg.http.buffered_body_bytes_max as u64
                && !head.expect_continue
                && streaming.is_none() =>
        {
            match read_small_body(mover, client, n as usize).await {
                Ok(b) => {
                    // A buffered body skips the relay, so it is charged here.
                    mover.pace(n).await;
                    ReqBody::Buffered(b)
                }
                // Nothing was sent on: the node never heard of the request.
                Err(BodyStall::Left) => return After::Close,
                Err(BodyStall::Refused(err)) => {
                    return refuse_request(shard, flow, client, head, &err).await
                }
            }
        }
        BodyFraming::Length(0) | BodyFraming::None | BodyFraming::UntilClose => ReqBody::Empty,
        BodyFraming::Length(_) | BodyFraming::Chunked => {
            // With 100-continue the client waits for the node; otherwise the body must be
            // flowing before the request takes a node slot (and a chunked one must start
            // with a valid chunk-size line before any node hears of the request).
            if !head.expect_continue {
                match body_started(cfg, mover, client, head.framing).await {
                    Ok(()) => {}
                    Err(BodyStall::Left) => return After::Close,
                    Err(BodyStall::Refused(err)) => {
                        return refuse_request(shard, flow, client, head, &err).await
                    }
                }
            }
            ReqBody::Streamed
        }
    };
    let mut head_bytes = Vec::with_capacity(1024);
    write_request_head(head, &mut head_bytes);
    if let ReqBody::Buffered(b) = &body {
        head_bytes.extend_from_slice(b);
    }

    // A node's failure answer (head and body, as it came), held in case no other node
    // does better: then the client gets it unchanged.
    let mut held_answer: Option<Vec<u8>> = None;
    loop {
        // While others wait for a node, a newcomer queues behind them (by class weight).
        let first = route.attempts.attempts() == 0;
        let contended = first && ep.protect.nodes_contended();
        let node = match if contended { None } else { route.pick() } {
            Some(node) => node,
            // Every routable node is at its concurrency limit: wait in the class queue
            // for a slot (weighted by class), up to the class's queue timeout.
            None if first && route.any_routable() => {
                let deadline = admitted_at + ep.protect.queue_timeout(classified.class);
                let turn = ep
                    .protect
                    .wait_turn(Slot::Node, classified.class, deadline, || route.pick())
                    .await;
                waited.for_slot = true;
                flow.waited.set(waited);
                match turn {
                    Ok(node) => node,
                    Err(shed) => return shed_request(shard, flow, client, head, shed).await,
                }
            }
            None => {
                let refusal = match (route.attempts.on_no_node(), held_answer.take()) {
                    (Decision::Relay, Some(bytes)) => {
                        return relay_held(shard, ep, flow, client, &bytes).await
                    }
                    (Decision::GiveUp(r), _) => r,
                    _ => Refusal {
                        status: 503,
                        code: S3Code::ServiceUnavailable,
                        message: "no storage node could take the request",
                        retry_after: None,
                    },
                };
                return give_up(shard, flow, client, head, refusal).await;
            }
        };
        if route.attempts.start(node) {
            shard.metrics().upstream_retry();
            flow.retries.set(flow.retries.get() + 1);
        }
        let inflight = InFlight::enter(ep, node, route.bucket_of(node.pool));
        let addr = ep.settings.nodes[node.pool][node.node];
        flow.nodes.borrow_mut().push(addr);
        flow.served_by.set(Some((node.pool, node.node)));
        // Re-signed per attempt: failover to another pool signs as that pool.
        let resigned: Vec<u8>;
        let mut chunk_signer = None;
        let (tenant, now) = (classified.tenant.0, SystemTime::now());
        let resigned_bytes = match &body {
            ReqBody::Form(form) => {
                form.request_bytes(&ep.settings, &ep.keys, tenant, node.pool, node.node, now)
            }
            _ => identity::resigned_bytes(
                &ep.settings,
                &ep.keys,
                tenant,
                node.pool,
                node.node,
                head,
                now,
            ),
        };
        let bytes: &[u8] = match resigned_bytes {
            Ok(None) => &head_bytes,
            Ok(Some(identity::Resigned {
                head: mut b,
                chunks,
            })) => {
                if let ReqBody::Buffered(body) = &body {
                    b.extend_from_slice(body);
                }
                resigned = b;
                chunk_signer = chunks;
                &resigned
            }
            // The client's to fix (a form that cannot be re-signed): answer it as such.
            Err(e) if e.s3_status().0 < 500 => {
                return refuse(shard, flow, client, head, &e.into()).await;
            }
            Err(e) => {
                tracing::error!(pool = node.pool, error = %e, "cannot re-sign the request");
                let refusal = Refusal {
                    status: 500,
                    code: S3Code::InternalError,
                    message: "weir could not sign the request for its storage",
                    retry_after: None,
                };
                return give_up(shard, flow, client, head, refusal).await;
            }
        };
        let sent_at = Instant::now();
        let tls = ep.settings.tls_target(node.pool, node.node);
        let chunks = streaming.as_ref().map(|s| s.stream(chunk_signer));
        let send_head = match &body {
            ReqBody::Form(form) => form.relay_head(),
            _ => head,
        };
        match send_request(
            shard, ep, flow, client, mover, send_head, bytes, &body, chunks, addr, tls,
        )
        .await
        {
            Ok(Sent {
                resp,
                mut upstream,
                body_unsent,
                request_complete,
            }) => {
                let latency = sent_at.elapsed();
                flow.first_byte.set(Some(flow.started.elapsed()));
                // A small error answer is read whole (it stays buffered): its S3 code
                // decides, and its bytes are relayed unchanged or dropped for a retry.
                let body_len = read_error_body(&mut upstream, &resp, &ep.settings).await;
                let code = body_len.and_then(|n| code_of(&upstream.buffered()[..n]));
                let retry_after = resp
                    .header("retry-after")
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(parse_retry_after);
                let answer = Answer {
                    status: resp.status,
                    code,
                    retry_after,
                    latency,
                    held: body_len.is_some(),
                    request_complete,
                    body: body_state(&body, body_unsent),
                };
                let (decision, limit) = route.decide(node, Outcome::Answered(answer));
                if limit == Some(Limit::Throttle) {
                    shard.metrics().throttled();
                }
                if decision == Decision::Relay {
                    mover.set_pacer(down_pacer.clone());
                    return relay_response(
                        shard,
                        ep,
                        flow,
                        client,
                        mover,
                        head,
                        &mut route,
                        (node, inflight),
                        upstream,
                        resp,
                        request_complete,
                    )
                    .await;
                }
                // The node's answer is dropped (for a retry, or weir's own answer): keep
                // it for the client should no other node do better, and reuse its
                // connection if it is still in step.
                let n = body_len.unwrap_or(0);
                let mut kept = Vec::with_capacity(512 + n);
                write_response_head(&resp, true, &mut kept);
                kept.extend_from_slice(&upstream.buffered()[..n]);
                upstream.consume(n);
                held_answer = Some(kept);
                drop(inflight);
                if resp.keep_alive && request_complete {
                    shard.upstream.checkin(addr, upstream, Instant::now());
                }
                match decision {
                    Decision::Retry { wait } => {
                        if !wait.is_zero() {
                            monoio::time::sleep(wait).await;
                        }
                    }
                    Decision::GiveUp(refusal) => {
                        return give_up(shard, flow, client, head, refusal).await
                    }
                    // Not decided for an answer before its body: relay what is held.
                    _ => {
                        return relay_held(
                            shard,
                            ep,
                            flow,
                            client,
                            &held_answer.unwrap_or_default(),
                        )
                        .await
                    }
                }
            }
            Err(e) => {
                drop(inflight);
                if let Some(refused) = e.refused {
                    // A chunk signature (or the aws-chunked framing) failed: the node's
                    // request was reset before its final chunk, so nothing was stored.
                    return refuse(shard, flow, client, head, &refused.into()).await;
                }
                tracing::debug!(node = %addr, error = %e.err, "upstream attempt failed");
                if e.err.side == Side::Client {
                    // The client's body broke off, stalled or was malformed mid-way: the
                    // node's request was reset (so no partial object), and the client
                    // learns why if it still listens.
                    let err = match e.err.kind {
                        Kind::Protocol => Some(
                            e.err
                                .answer
                                .clone()
                                .unwrap_or_else(|| HeadError::bad_request(e.err.detail.clone())),
                        ),
                        Kind::Timeout => Some(HeadError::request_timeout()),
                        _ => None,
                    };
                    return match err {
                        Some(err) => refuse_request(shard, flow, client, head, &err).await,
                        None => After::Close,
                    };
                }
                shard.metrics().upstream_error();
                if e.err.side == Side::Internal {
                    // weir itself is out of a resource (descriptors): no node is to blame,
                    // and another attempt now would fail alike.
                    let refusal = Refusal {
                        status: 503,
                        code: S3Code::ServiceUnavailable,
                        message: "no storage node could take the request",
                        retry_after: None,
                    };
                    return give_up(shard, flow, client, head, refusal).await;
                }
                let body = if e.body_consumed {
                    BodyState::Streaming
                } else {
                    body_state(&body, true)
                };
                held_answer = None;
                let outcome = Outcome::Failed {
                    how: e.failed,
                    body,
                };
                match route.decide(node, outcome).0 {
                    Decision::Retry { .. } => {}
                    Decision::GiveUp(refusal) => {
                        return give_up(shard, flow, client, head, refusal).await
                    }
                    other => {
                        debug_assert!(false, "{other:?} after a failed attempt");
                        return After::Close;
                    }
                }
            }
        }
    }
}

/// Answers the client with weir's own S3 error after the attempts ended without an
/// answer to relay, counts it, and closes.
async fn give_up(
    shard: &Shard,
    flow: &Flow,
    client: &Conn,
    head: &RequestHead,
    r: Refusal,
) -> After {
    flow.status.set(r.status);
    break_with(
        shard,
        client,
        head,
        r.status,
        r.code.as_str(),
        r.message,
        r.retry_after,
    )
    .await
}

/// Relays a node's failure answer held whole (`Connection: close` already in its head)
/// when no other node did better, and closes.
async fn relay_held(shard: &Shard, ep: &Epoch, flow: &Flow, client: &Conn, bytes: &[u8]) -> After {
    let status = parse_status(bytes).unwrap_or(502);
    shard.metrics().request(status);
    flow.status.set(status);
    let _ = write_timed(client, bytes, ep.settings.config.upstream.io_timeout).await;
    After::Close
}

/// The status of a serialised response head.
fn parse_status(bytes: &[u8]) -> Option<u16> {
    let line = bytes.split(|&b| b == b'\r').next()?;
    let code = line.split(|&b| b == b' ').nth(1)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// Reads a small error answer's body (status 400 or more, `Content-Length` up to
/// [`ERROR_BODY_BYTES_MAX`]) into the connection's buffer, without consuming it, within
/// `upstream.io_timeout`. Returns its length when the whole answer is held (a bodiless
/// one too); `None` for a success, a larger or differently framed body, or a read that
/// failed (the relay then meets the failure itself).
async fn read_error_body(
    upstream: &mut Conn,
    resp: &ResponseHead,
    settings: &crate::settings::Settings,
) -> Option<usize> {
    if resp.status < 400 {
        return None;
    }
    let n = match resp.framing {
        BodyFraming::None | BodyFraming::Length(0) => return Some(0),
        BodyFraming::Length(n) if n <= ERROR_BODY_BYTES_MAX => usize::try_from(n).ok()?,
        _ => return None,
    };
    if n > upstream.buffered().len() + upstream.room() {
        return None;
    }
    let read = async {
        while upstream.buffered().len() < n {
            if upstream.read_more().await? == 0 {
                return Ok(false);
            }
        }
        Ok::<bool, std::io::Error>(true)
    };
    match monoio::time::timeout(settings.config.upstream.io_timeout, read).await {
        Ok(Ok(true)) => Some(n),
        _ => None,
    }
}

fn body_state(body: &ReqBody, body_unsent: bool) -> BodyState {
    match body {
        ReqBody::Empty => BodyState::Empty,
        ReqBody::Buffered(_) => BodyState::Buffered,
        ReqBody::Form(form) if form.is_complete() => BodyState::Buffered,
        ReqBody::Streamed | ReqBody::Form(_) if body_unsent => BodyState::NotYetSent,
        ReqBody::Streamed | ReqBody::Form(_) => BodyState::Streaming,
    }
}

/// Answers the client with an S3 error for a failure before the response started, and
/// closes: the client may still be sending a body weir never read.
async fn break_with(
    shard: &Shard,
    client: &Conn,
    head: &RequestHead,
    status: u16,
    code: &str,
    message: &str,
    retry_after: Option<Duration>,
) -> After {
    shard.metrics().request(status);
    let bytes = own_answer(
        shard,
        Some(head.method),
        status,
        code,
        message,
        head.path(),
        true,
        retry_after,
    );
    let _ = write_timed(client, &bytes, OWN_ANSWER_WRITE_TIMEOUT).await;
    After::Close
}

/// Adds `Retry-After` (whole seconds, rounded up, at least 1: a client told 0 would
/// retry at once) to a serialised error response's head.
fn add_retry_after(response: &mut Vec<u8>, after: Duration) {
    if let Some(pos) = head_end(response) {
        let secs = (after.as_secs_f64().ceil() as u64).max(1);
        let header = format!("Retry-After: {secs}\r\n");
        response.splice(pos - 2..pos - 2, header.into_bytes());
    }
}

/// An S3 error answer weir gives itself before any node is asked, written, and what
/// becomes of the connection: it carries another request only when the request had no
/// body to drain (so the next head is where it should be) and weir is not draining.
async fn edge_answer(
    shard: &Shard,
    client: &Conn,
    head: &RequestHead,
    status: u16,
    code: &str,
    message: &str,
    retry_after: Option<Duration>,
) -> After {
    let keep = head.keep_alive
        && head.minor_version > 0
        && matches!(head.framing, BodyFraming::None | BodyFraming::Length(0))
        && !signals::draining();
    let bytes = own_answer(
        shard,
        Some(head.method),
        status,
        code,
        message,
        head.path(),
        !keep,
        retry_after,
    );
    match write_timed(client, &bytes, OWN_ANSWER_WRITE_TIMEOUT).await {
        Ok(()) if keep => After::KeepAlive,
        _ => After::Close,
    }
}

/// Answers a request refused at the edge by identity (verification failed, a pool cannot
/// re-sign it, or access policy) and counts it; no node saw it.
async fn refuse(
    shard: &Shard,
    flow: &Flow,
    client: &Conn,
    head: &RequestHead,
    refusal: &identity::Refusal,
) -> After {
    tracing::debug!(
        reason = refusal.reason,
        code = refusal.code,
        target = %head.path(),
        "request refused at the edge"
    );
    shard.metrics().auth_failure(refusal.reason);
    shard.metrics().request(refusal.status);
    flow.status.set(refusal.status);
    edge_answer(
        shard,
        client,
        head,
        refusal.status,
        refusal.code,
        &refusal.message,
        None,
    )
    .await
}

/// Answers a request a limit refused with S3 `SlowDown` (503) and `Retry-After`. SDKs
/// retry on the kept connection after the pause.
async fn shed_request(
    shard: &Shard,
    flow: &Flow,
    client: &Conn,
    head: &RequestHead,
    shed: Shed,
) -> After {
    flow.shed.set(Some(shed.reason.label()));
    flow.status.set(503);
    shard.metrics().request(503);
    let message = "Please reduce your request rate.";
    edge_answer(
        shard,
        client,
        head,
        503,
        S3Code::SlowDown.as_str(),
        message,
        Some(shed.retry_after),
    )
    .await
}

/// Answers a request weir refuses itself after its head parsed (body too large, framing
/// that breaks before any node heard of it), counts it, and closes: the body was not read.
async fn refuse_request(
    shard: &Shard,
    flow: &Flow,
    client: &Conn,
    head: &RequestHead,
    err: &HeadError,
) -> After {
    flow.status.set(err.status);
    reject(shard, client, err, head.path(), Some(head.method)).await;
    After::Close
}

/// Why a request body did not arrive before any node heard of the request.
enum BodyStall {
    /// The client closed or its socket failed: nobody to answer.
    Left,
    /// Answer this (the body stalled, is malformed, or is too large).
    Refused(HeadError),
}

impl From<Error> for BodyStall {
    fn from(e: Error) -> Self {
        match e.kind {
            Kind::Timeout => BodyStall::Refused(HeadError::request_timeout()),
            _ => BodyStall::Left,
        }
    }
}

/// Reads a small request body completely (bounded by `buffered_body_bytes_max`) under the
/// body deadlines (idle timeout and rate floor).
async fn read_small_body(
    mover: &Mover,
    client: &mut Conn,
    len: usize,
) -> Result<Vec<u8>, BodyStall> {
    // Grown as bytes come, not reserved from the announced length: a client that
    // announces a body and sends little holds no more than it sent.
    let mut body = Vec::with_capacity(len.min(client.buffered().len()));
    mover.begin_body();
    loop {
        let take = client.buffered().len().min(len - body.len());
        body.extend_from_slice(&client.buffered()[..take]);
        client.consume(take);
        if body.len() == len {
            return Ok(body);
        }
        if mover.read_more(client, Side::Client, true).await? == 0 {
            return Err(BodyStall::Left);
        }
    }
}

/// Waits until a streamed request body is flowing, before the request takes a node slot:
/// its first bytes — as many as the read buffer holds, or the whole body if smaller — are
/// buffered (for a chunked body: its first chunk-size line, checked, and what follows).
/// A client that announces a body and trickles it then holds only its own connection,
/// and is cut by the body deadlines, never a node's concurrency.
async fn body_started(
    cfg: &weir_policy::config::Config,
    mover: &Mover,
    client: &mut Conn,
    framing: BodyFraming,
) -> Result<(), BodyStall> {
    mover.begin_body();
    let capacity = client.buffered().len() + client.room();
    loop {
        let buffered = client.buffered().len();
        let want = match framing {
            BodyFraming::Length(n) => Some(usize::try_from(n).unwrap_or(usize::MAX).min(capacity)),
            BodyFraming::Chunked => {
                let mut decoder = ChunkedDecoder::new(client_chunk_limits(&cfg.http), Peer::Client);
                match decoder.parse(client.buffered()) {
                    Ok(Some((ChunkItem::Data(n), used))) => {
                        let whole = used.saturating_add(usize::try_from(n).unwrap_or(usize::MAX));
                        Some(whole.min(capacity))
                    }
                    Ok(Some((ChunkItem::Done, _))) => Some(0),
                    Ok(None) if client.room() == 0 => {
                        return Err(BodyStall::Refused(HeadError::bad_request(
                            "chunk-size line too long",
                        )))
                    }
                    Ok(None) => None,
                    Err(e) => return Err(BodyStall::Refused(e)),
                }
            }
            BodyFraming::None | BodyFraming::UntilClose => Some(0),
        };
        if want.is_some_and(|w| buffered >= w) {
            return Ok(());
        }
        if mover.read_more(client, Side::Client, true).await? == 0 {
            return Err(BodyStall::Left);
        }
    }
}

/// A request sent and its final response head received.
struct Sent {
    resp: ResponseHead,
    upstream: Conn,
    /// `Expect: 100-continue` was answered with a final status: the body was never pulled.
    body_unsent: bool,
    /// The node received the whole request. False when it answered before taking all
    /// of the body (or before the client sent it): neither connection then carries
    /// another request.
    request_complete: bool,
}

/// Most interim (1xx) answers a node may send before its final one: enough for any
/// honest use (`100`, `102` while working, `103` hints), few enough that a node cannot
/// keep a request, or the client, busy with them.
const INTERIM_ANSWERS_MAX: u32 = 32;

/// How long weir looks for a node's answer after the node stopped taking the request
/// body: an answer that made it stop is already in the socket.
const EARLY_ANSWER_WAIT: Duration = Duration::from_secs(2);

/// Sends the request to `addr` and reads the final response head, relaying interim
/// answers to the client on the way.
#[allow(clippy::too_many_arguments)]
async fn send_request(
    shard: &Shard,
    ep: &Epoch,
    flow: &Flow,
    client: &mut Conn,
    mover: &mut Mover,
    head: &RequestHead,
    head_bytes: &[u8],
    body: &ReqBody,
    chunks: Option<ChunkStream>,
    addr: SocketAddr,
    tls: Option<TlsTarget<'_>>,
) -> Result<Sent, AttemptError> {
    let cfg = &ep.settings.config;
    let fail = |err: Error, failed: Failed, body_consumed: bool| AttemptError {
        err,
        failed,
        body_consumed,
        refused: None,
    };
    let checkout = shard
        .upstream
        .checkout(addr, tls, Instant::now())
        .await
        .map_err(|e| {
            if let Some(f) = e.tls_failure {
                shard.metrics().tls_failure(1, f.label());
            }
            fail(e, Failed::Connect, false)
        })?;
    shard.metrics().upstream_checkout(checkout.reused);
    if tls.is_some() && !checkout.reused {
        shard
            .metrics()
            .tls_connection(1, TlsPath::UserSpace.label());
    }
    let mut upstream = checkout.conn;
    if let Err(e) = write_timed(&upstream, head_bytes, cfg.upstream.io_timeout).await {
        let err = Error::from_io(Side::Upstream, &e);
        let failed = failed_of(&err);
        return Err(fail(err, failed, false));
    }
    let mut interim = Interim {
        forward: head.minor_version > 0,
        count: 0,
        io_timeout: cfg.upstream.io_timeout,
    };
    let streamed = matches!(body, ReqBody::Streamed | ReqBody::Form(_));
    if streamed && head.expect_continue {
        // 100-continue end to end: the client's body is not pulled before the node agrees.
        let deadline = Instant::now() + cfg.upstream.first_byte_timeout;
        let resp = read_final_head(
            ep,
            &mut upstream,
            Some(client),
            head.method,
            deadline,
            &mut interim,
            true,
        )
        .await
        .map_err(|e| failure_of(e, false))?;
        if resp.status != 100 {
            return Ok(Sent {
                resp,
                upstream,
                body_unsent: true,
                request_complete: false,
            });
        }
        if let Err(e) = write_timed(
            client,
            b"HTTP/1.1 100 Continue\r\n\r\n",
            cfg.upstream.io_timeout,
        )
        .await
        {
            upstream.abort_on_close();
            return Err(fail(Error::from_io(Side::Client, &e), Failed::Reset, false));
        }
    }
    if streamed {
        let before = flow.up.counts();
        let result = match (chunks, head.framing) {
            (Some(mut chunks), framing) => {
                let ends = signed_body::Ends {
                    client,
                    upstream: &upstream,
                    limits: client_chunk_limits(&cfg.http),
                };
                match signed_body::relay(ends, framing, &mut chunks, mover, &flow.up).await {
                    Ok(()) => Ok(()),
                    Err(signed_body::Stopped::Io(e)) => Err(e),
                    Err(signed_body::Stopped::Refused(refused)) => {
                        upstream.abort_on_close();
                        return Err(AttemptError {
                            err: Error::new(Side::Client, Kind::Protocol, refused.to_string()),
                            failed: Failed::Reset,
                            body_consumed: true,
                            refused: Some(refused),
                        });
                    }
                }
            }
            (None, BodyFraming::Length(n)) => {
                mover
                    .exact(
                        End {
                            conn: client,
                            side: Side::Client,
                        },
                        End {
                            conn: &mut upstream,
                            side: Side::Upstream,
                        },
                        n,
                        &flow.up,
                    )
                    .await
            }
            (None, _) => {
                let mut decoder = ChunkedDecoder::new(client_chunk_limits(&cfg.http), Peer::Client);
                mover
                    .chunked(
                        End {
                            conn: client,
                            side: Side::Client,
                        },
                        End {
                            conn: &mut upstream,
                            side: Side::Upstream,
                        },
                        &mut decoder,
                        true,
                        &flow.up,
                    )
                    .await
            }
        };
        shard
            .metrics()
            .body(Direction::Upload, flow.up.counts().since(before));
        if let Err(e) = result {
            if e.side == Side::Upstream {
                // A node that stopped taking the body may have said why first (a final
                // answer before the whole body, RFC 9110 §15): that answer is the
                // client's, not weir's 503, and it is no failure of the node.
                let deadline = Instant::now() + EARLY_ANSWER_WAIT;
                if let Ok(resp) = read_final_head(
                    ep,
                    &mut upstream,
                    None,
                    head.method,
                    deadline,
                    &mut interim,
                    false,
                )
                .await
                {
                    return Ok(Sent {
                        resp,
                        upstream,
                        body_unsent: false,
                        request_complete: false,
                    });
                }
            }
            // The client left mid-upload: reset the upstream request so no partial
            // object is committed. The node failing mid-upload: the body is gone.
            upstream.abort_on_close();
            let failed = failed_of(&e);
            return Err(fail(e, failed, true));
        }
    }
    let deadline = Instant::now() + cfg.upstream.first_byte_timeout;
    let resp = read_final_head(
        ep,
        &mut upstream,
        Some(client),
        head.method,
        deadline,
        &mut interim,
        false,
    )
    .await
    .map_err(|e| failure_of(e, streamed))?;
    Ok(Sent {
        resp,
        upstream,
        body_unsent: false,
        request_complete: true,
    })
}

fn failure_of(err: Error, body_consumed: bool) -> AttemptError {
    AttemptError {
        failed: failed_of(&err),
        err,
        body_consumed,
        refused: None,
    }
}

/// Writes a head (or a buffered body) within `timeout`: a peer that stops reading must
/// not hold the connection task forever.
async fn write_timed(conn: &Conn, bytes: &[u8], timeout: Duration) -> std::io::Result<()> {
    match monoio::time::timeout(timeout, conn.write_all(bytes)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "write timed out",
        )),
    }
}

/// Interim answers of one request: how many came, and whether they go to the client
/// (an HTTP/1.1 one; an HTTP/1.0 client cannot read them, RFC 9110 §15.2).
struct Interim {
    forward: bool,
    count: u32,
    io_timeout: Duration,
}

/// Reads the node's answer up to its final head, by `deadline` — one deadline for the
/// whole wait, which interim answers do not extend. Interim answers are relayed to
/// `client` as they come (`None`: its response has started, or it cannot take them),
/// except `100 Continue`, which weir answers itself; with `until_continue` a `100` ends
/// the wait (the node agrees to take the body).
#[allow(clippy::too_many_arguments)]
async fn read_final_head(
    ep: &Epoch,
    upstream: &mut Conn,
    client: Option<&Conn>,
    method: Method,
    deadline: Instant,
    interim: &mut Interim,
    until_continue: bool,
) -> Result<ResponseHead, Error> {
    loop {
        let resp = read_response_head(ep, upstream, method, deadline).await?;
        if !resp.is_informational() {
            return Ok(resp);
        }
        interim.count += 1;
        if interim.count > INTERIM_ANSWERS_MAX {
            return Err(Error::new(
                Side::Upstream,
                Kind::Protocol,
                format!("more than {INTERIM_ANSWERS_MAX} interim answers"),
            ));
        }
        if resp.status == 100 {
            if until_continue {
                return Ok(resp);
            }
            continue; // a 100 nobody asked for, or a repeat: the client needs none
        }
        if let Some(client) = client.filter(|_| interim.forward) {
            let mut out = Vec::with_capacity(256);
            write_response_head(&resp, false, &mut out);
            if let Err(e) = write_timed(client, &out, interim.io_timeout).await {
                return Err(Error::from_io(Side::Client, &e));
            }
        }
    }
}

/// Reads one response head (interim or final) by `deadline`.
async fn read_response_head(
    ep: &Epoch,
    upstream: &mut Conn,
    method: Method,
    deadline: Instant,
) -> Result<ResponseHead, Error> {
    let http = &ep.settings.config.http;
    let limits = HeadLimits {
        header_bytes_max: http.header_bytes_max,
        headers_count_max: http.headers_count_max,
    };
    loop {
        if !upstream.buffered().is_empty() {
            match parse_response(upstream.buffered(), &limits, method) {
                Ok(Some((head, used))) => {
                    upstream.consume(used);
                    return Ok(head);
                }
                Ok(None) => {}
                Err(e) => return Err(Error::new(Side::Upstream, Kind::Protocol, e.to_string())),
            }
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match monoio::time::timeout(wait, upstream.read_head()).await {
            Err(_) => {
                return Err(Error::new(
                    Side::Upstream,
                    Kind::Timeout,
                    "first byte timeout",
                ))
            }
            Ok(Ok(0)) => {
                return Err(Error::new(
                    Side::Upstream,
                    Kind::Closed,
                    "closed before the response",
                ))
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(Error::new(
                    Side::Upstream,
                    Kind::Protocol,
                    "response head too large",
                ))
            }
            Ok(Err(e)) => return Err(Error::from_io(Side::Upstream, &e)),
        }
    }
}

/// What a GET's first response pins for a resume.
struct Resumable {
    etag: String,
    status: u16,
    content_range: Option<String>,
    length: u64,
}

fn resumable(head: &RequestHead, resp: &ResponseHead) -> Option<Resumable> {
    if head.method != Method::Get || !matches!(resp.status, 200 | 206) {
        return None;
    }
    let BodyFraming::Length(length) = resp.framing else {
        return None;
    };
    let text = |name: &str| {
        resp.header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_string)
    };
    let etag = text("etag")?;
    if etag.starts_with("W/") {
        return None;
    }
    Some(Resumable {
        etag,
        status: resp.status,
        content_range: text("content-range"),
        length,
    })
}

/// Relays the response head and body to the client, resuming a broken GET body from
/// another node, and decides what is reusable. Returns what becomes of the client
/// connection: a response that could not be completed resets it.
#[allow(clippy::too_many_arguments)]
async fn relay_response<'e>(
    shard: &Shard,
    ep: &'e Epoch,
    flow: &Flow,
    client: &mut Conn,
    mover: &mut Mover,
    head: &RequestHead,
    route: &mut Route<'_>,
    (mut node, mut inflight): (NodeId, InFlight<'e>),
    mut upstream: Conn,
    resp: ResponseHead,
    request_complete: bool,
) -> After {
    // A request whose body was not (all) read leaves the client's stream out of step.
    let close_client = !request_complete
        || !head.keep_alive
        || head.minor_version == 0
        || matches!(resp.framing, BodyFraming::UntilClose);
    // An HTTP/1.0 client cannot read chunked framing: it gets the payload, framed by
    // the close of the connection.
    let keep_framing = head.minor_version > 0;
    let mut out = Vec::with_capacity(1024);
    if !keep_framing && resp.framing == BodyFraming::Chunked {
        let mut plain = resp.clone();
        plain.headers.retain(|h| !h.is("transfer-encoding"));
        write_response_head(&plain, true, &mut out);
    } else {
        write_response_head(&resp, close_client, &mut out);
    }
    // A small body that arrived with the head goes out with it, in one send.
    let mut delivered: u64 = 0;
    if let BodyFraming::Length(n) = resp.framing {
        // (A rate-limited body is charged first; when its budget does not cover it now,
        // the relay paces it.)
        if n > 0 && upstream.buffered().len() as u64 >= n && mover.try_pace(n) {
            let n = n as usize;
            out.extend_from_slice(&upstream.buffered()[..n]);
            upstream.consume(n);
            flow.down.record_copied(n as u64);
            delivered = n as u64;
            shard.metrics().body(
                Direction::Download,
                weir_io::relay::MovedCounts {
                    spliced: 0,
                    copied: n as u64,
                },
            );
        }
    }
    shard.metrics().request(resp.status);
    flow.status.set(resp.status);
    if write_timed(client, &out, ep.settings.config.upstream.io_timeout)
        .await
        .is_err()
    {
        upstream.abort_on_close();
        return After::Reset;
    }
    let resume = resumable(head, &resp);
    let result = loop {
        let before = flow.down.counts();
        let client_end = End {
            conn: client,
            side: Side::Client,
        };
        let up_end = End {
            conn: &mut upstream,
            side: Side::Upstream,
        };
        let result = match resp.framing {
            BodyFraming::None => Ok(()),
            BodyFraming::Length(n) => {
                mover
                    .exact(up_end, client_end, n - delivered, &flow.down)
                    .await
            }
            BodyFraming::Chunked => {
                let mut decoder = ChunkedDecoder::new(ChunkedLimits::default(), Peer::Upstream);
                mover
                    .chunked(up_end, client_end, &mut decoder, keep_framing, &flow.down)
                    .await
            }
            BodyFraming::UntilClose => mover.until_close(up_end, client_end, &flow.down).await,
        };
        let moved = flow.down.counts().since(before);
        shard.metrics().body(Direction::Download, moved);
        delivered += moved.total();
        let Err(e) = result else { break Ok(()) };
        if e.side != Side::Upstream {
            break Err(e);
        }
        shard.metrics().upstream_error();
        let cut = route
            .attempts
            .on_body_cut(node, failed_of(&e), delivered, resume.is_some());
        let (Decision::Resume { from }, Some(first)) = (route.apply(node, cut), resume.as_ref())
        else {
            break Err(e);
        };
        upstream.abort_on_close();
        match resume_from_another(shard, ep, head, route, first, from).await {
            Some((next_node, next_conn)) => {
                flow.resumes.set(route.attempts.resumes());
                flow.nodes
                    .borrow_mut()
                    .push(ep.settings.nodes[next_node.pool][next_node.node]);
                flow.served_by.set(Some((next_node.pool, next_node.node)));
                shard.metrics().resume(true);
                tracing::info!(from = ?node, to = ?next_node, delivered, "resumed GET on another node");
                // The resumed request counts against its new node (and drops the old).
                inflight = InFlight::enter(ep, next_node, route.bucket_of(next_node.pool));
                node = next_node;
                upstream = next_conn;
            }
            None => {
                shard.metrics().resume(false);
                break Err(e);
            }
        }
    };
    if let Err(e) = result {
        // Never complete a response short, nor end it in a way a client could take for
        // the whole: a close-delimited or de-chunked body would look complete at a FIN.
        tracing::debug!(error = %e, delivered, "response body failed");
        upstream.abort_on_close();
        return After::Reset;
    }
    route.complete();
    drop(inflight);
    if resp.keep_alive && request_complete && !matches!(resp.framing, BodyFraming::UntilClose) {
        let addr = ep.settings.nodes[node.pool][node.node];
        shard.upstream.checkin(addr, upstream, Instant::now());
    }
    if close_client {
        After::Close
    } else {
        After::KeepAlive
    }
}

/// Fetches the rest of a GET body from another node: plans the request
/// (`weir_policy::resume`), sends it, checks the answer's ETag and range, and skips bytes
/// the client already has. Returns the node and a connection positioned at the first
/// byte the client still needs.
async fn resume_from_another(
    shard: &Shard,
    ep: &Epoch,
    head: &RequestHead,
    route: &mut Route<'_>,
    first: &Resumable,
    delivered: u64,
) -> Option<(NodeId, Conn)> {
    let cfg = &ep.settings.config;
    let text = |name: &str| head.header(name).and_then(|v| std::str::from_utf8(v).ok());
    let client_signed = signed_headers(text("authorization"), head.query());
    // Each try ends in an outcome for the attempt machine, which says whether another
    // node is tried for this resume.
    let mut outcome: Option<(NodeId, ResumeOutcome)> = None;
    loop {
        if let Some((node, last)) = outcome.take() {
            let step = route.attempts.on_resume(node, last);
            if route.apply(node, step)
                != (Decision::Retry {
                    wait: Duration::ZERO,
                })
            {
                return None;
            }
        }
        let node = route.pick()?;
        if !route.attempts.start_resume(node) {
            return None;
        }
        let rejected = Some((node, ResumeOutcome::Rejected));
        // A pool that re-signs signs whatever is sent: the client's signed headers do
        // not bind the resumed request, so `Range` can be rewritten (docs/identity.md).
        let signed: &[String] = if identity::resigns(&ep.settings, route.tenant, node.pool) {
            &[]
        } else {
            &client_signed
        };
        let plan = plan_resume(
            text("range"),
            signed,
            first.status,
            first.content_range.as_deref(),
            first.length,
            delivered,
        );
        if let ResumePlan::Impossible(why) = &plan {
            tracing::info!(why, "GET cannot be resumed on this node");
            outcome = rejected;
            continue;
        }
        let Some((start, end)) =
            plan.expected_window(first.status, first.content_range.as_deref(), first.length)
        else {
            outcome = rejected;
            continue;
        };
        let mut resumed = head.clone();
        if let ResumePlan::Rewrite { range } = &plan {
            resumed.headers.retain(|h| !h.is("range"));
            resumed
                .headers
                .push(Header::new("Range", range.as_bytes().to_vec()));
        }
        if may_add_if_match(signed) && resumed.header("if-match").is_none() {
            resumed
                .headers
                .push(Header::new("If-Match", first.etag.as_bytes().to_vec()));
        }
        let bytes = match identity::resigned_bytes(
            &ep.settings,
            &ep.keys,
            route.tenant,
            node.pool,
            node.node,
            &resumed,
            SystemTime::now(),
        ) {
            Ok(Some(resigned)) => resigned.head,
            Ok(None) => {
                let mut b = Vec::with_capacity(1024);
                write_request_head(&resumed, &mut b);
                b
            }
            Err(e) => {
                tracing::error!(pool = node.pool, error = %e, "cannot re-sign the resume");
                outcome = rejected;
                continue;
            }
        };
        let addr = ep.settings.nodes[node.pool][node.node];
        let tls = ep.settings.tls_target(node.pool, node.node);
        let Ok(checkout) = shard.upstream.checkout(addr, tls, Instant::now()).await else {
            outcome = Some((node, ResumeOutcome::Failed(Failed::Connect)));
            continue;
        };
        let mut conn = checkout.conn;
        if write_timed(&conn, &bytes, cfg.upstream.io_timeout)
            .await
            .is_err()
        {
            outcome = rejected;
            continue;
        }
        let sent_at = Instant::now();
        let deadline = sent_at + cfg.upstream.first_byte_timeout;
        let mut interim = Interim {
            forward: false,
            count: 0,
            io_timeout: cfg.upstream.io_timeout,
        };
        let resp = match read_final_head(
            ep,
            &mut conn,
            None,
            Method::Get,
            deadline,
            &mut interim,
            false,
        )
        .await
        {
            Ok(resp) => resp,
            Err(e) => {
                outcome = Some((node, ResumeOutcome::Failed(failed_of(&e))));
                continue;
            }
        };
        let text = |name: &str| resp.header(name).and_then(|v| std::str::from_utf8(v).ok());
        if let Err(why) = check_resumed(
            &plan,
            &first.etag,
            text("etag"),
            resp.status,
            text("content-range"),
            start,
            end,
        ) {
            tracing::warn!(node = %addr, why, "resumed response rejected");
            outcome = rejected;
            continue;
        }
        let latency = sent_at.elapsed();
        // The connection must now hold exactly the bytes the client still needs.
        let expected = first.length - delivered;
        let skip = match plan {
            ResumePlan::ResendSkip { skip } => skip,
            _ => 0,
        };
        let BodyFraming::Length(len) = resp.framing else {
            outcome = rejected;
            continue;
        };
        if len != expected + skip {
            tracing::warn!(node = %addr, len, expected, "resumed response has the wrong length");
            outcome = rejected;
            continue;
        }
        if skip > 0 {
            match monoio::time::timeout(cfg.upstream.io_timeout, conn.discard(skip)).await {
                Ok(Ok(true)) => {}
                _ => {
                    outcome = rejected;
                    continue;
                }
            }
        }
        // The head's latency is the node's; whether the earlier node's failure was its
        // own is settled when this body completes (`Route::complete`), not by a head.
        let step = route
            .attempts
            .on_resume(node, ResumeOutcome::Resumed { latency });
        route.apply(node, step);
        return Some((node, conn));
    }
}
