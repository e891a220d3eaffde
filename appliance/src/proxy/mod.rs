//! The request pipeline of one client connection (docs/design.md, "A request's way"):
//!
//! 1. read the head under its deadline and size cap, parse it strictly (`weir_io::http`)
//!    (this file);
//!    a rejected request is answered with an S3 XML error and never reaches a node;
//!    with `auth.mode = "verify"` its SigV4 signature is checked next (`identity`), and a
//!    forged, unknown-key or skewed request is answered here too;
//! 2. route: bucket → the route's chain of pools (`weir_policy`), pick a node across the
//!    chain (health, priority groups, AIMD limits, in-flight × latency, slow start);
//! 3. take a pooled keep-alive connection to the node (or open one) and forward the head
//!    byte for byte (SigV4 signs Host and most headers, so nothing signed is rewritten) —
//!    or, when the node's pool has `credentials`, re-signed for that pool and node
//!    (`identity::resign`, per attempt and per resume); a pool's `send_client_address`
//!    replaces the forwarding fields, or opens the connection with a PROXY v2 header
//!    (`crate::client_address`, docs/client-address.md);
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
//!
//! One file per stage: `admit.rs` (identity, classification, admission, the request
//! body's way), `dispatch.rs` (the attempt loop over nodes), `route.rs` (the request's
//! routing state and node choice), `send.rs` (one attempt: the request out, the final
//! head in), `relay.rs` (the response to the client), `resume.rs` (a broken GET body
//! fetched from another node), `body.rs` (the request body before any node hears of it)
//! and `answer.rs` (weir's own answers, by one path). A request's stages share one
//! [`Exchange`].

mod admit;
mod answer;
mod body;
mod dispatch;
mod relay;
mod resume;
mod route;
mod send;

use std::rc::Rc;
use std::time::{Duration, Instant};

use weir_io::conn::{Conn, Socket};
use weir_io::http::{parse_request, ChunkedLimits, HeadError, HeadLimits, Method, RequestHead};
use weir_io::relay::{BodyMode, Mover, RateFloor};
use weir_policy::config::BodyPath;

use crate::client_address::{self, Established, Origin};
use crate::flows::{self, EndedBy, Flow, Outcome};
use crate::shard::{Epoch, Shard};
use crate::signals;

use answer::{Asker, OwnAnswer};

/// One request on a client connection, as every stage sees it: the core, the config epoch
/// it runs on, its flow record, its head, and the two things it drives — the client
/// connection and the body mover.
pub(crate) struct Exchange<'a> {
    /// The core serving the request.
    pub shard: &'a Shard,
    /// The config epoch current when the request started, to its end.
    pub ep: &'a Rc<Epoch>,
    /// What /flows, the access log and the statistics learn of the request.
    pub flow: &'a Flow,
    /// The client's request head, as parsed.
    pub head: &'a RequestHead,
    /// The client connection.
    pub client: &'a mut Conn,
    /// Moves bodies between the client and nodes (splice or copy, paced).
    pub mover: &'a mut Mover,
    /// The DNS name of a verified client certificate.
    pub client_name: Option<&'a str>,
    /// Where the client connection came from (docs/client-address.md).
    pub origin: &'a Origin,
    /// The client of this request, as weir established it.
    pub established: &'a Established,
}

impl Exchange<'_> {
    /// Sends weir's own answer to this request (`answer.rs`).
    async fn answer(&self, answer: OwnAnswer<'_>) -> After {
        answer::send(
            self.shard,
            self.client,
            Asker::Request(self.flow, self.head),
            answer,
        )
        .await
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
    origin: Origin,
    client_name: Option<&str>,
) {
    let peer = origin.peer;
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
                let asker = Asker::Unparsed(method);
                answer::send(shard, &client, asker, OwnAnswer::rejected(&err)).await;
                client.linger_close(LINGER, LINGER_BYTES_MAX).await;
                return;
            }
            Incoming::Head(mut head) => {
                shard.metrics().request_started();
                let established = client_address::establish(&ep.settings.config, &origin, &head);
                // One id follows the request: to the node, back to the client, in every
                // log line about it (docs/operations.md, "Request ids").
                let trusted = (ep.settings.config.client_trust(origin.bound))
                    .is_some_and(|t| t.trusts(origin.peer.ip()));
                let id = flows::take_request_id(trusted, &mut head, || shard.request_id());
                let head: Rc<RequestHead> = Rc::from(head);
                let guard = shard
                    .flows
                    .start(Flow::new(id, established.addr, head.clone(), ep.id));
                mover.set_rate_floor(rate_floor(&ep.settings.config.http));
                // Until classified, the request has `[upstream]`'s (then its route's).
                mover.set_idle_timeout(ep.settings.config.upstream.io_timeout);
                let after = dispatch::handle(Exchange {
                    shard,
                    ep: &ep,
                    flow: &guard.flow,
                    head: &head,
                    client: &mut client,
                    mover: &mut mover,
                    client_name,
                    origin: &origin,
                    established: &established,
                })
                .await;
                mover.set_pacer(None);
                shard.metrics().request_finished();
                record_stats(shard, &ep, &guard.flow);
                if after == After::Reset {
                    // Cut without a recorded cause: weir's own doing.
                    guard.flow.ended(Outcome::WeirFailed, EndedBy::Weir);
                }
                if let Some(log) = &shard.access_log {
                    if !guard.flow.logged.replace(true)
                        && !log.log_with(|w| guard.flow.write_line(w, &ep.settings))
                    {
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
