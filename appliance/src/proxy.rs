//! The request pipeline of one client connection (DESIGN.md §3):
//!
//! 1. read the head under its deadline and size cap, parse it strictly (`weir_io::http`);
//!    a rejected request is answered with an S3 XML error and never reaches a node;
//! 2. route: bucket → pool (`weir_policy`), pick a node (power of two choices on in-flight);
//! 3. take a pooled keep-alive connection to the node (or open one) and forward the head
//!    byte for byte (SigV4 signs Host and most headers, so nothing signed is rewritten);
//! 4. relay the request body (small ones buffered so they can be replayed, large ones
//!    spliced; `Expect: 100-continue` waits for the node's 100 before pulling the body);
//! 5. relay the response head and body (spliced), then return both connections for reuse
//!    only if both messages completed exactly.
//!
//! Failures before the response starts move the request to another node when it can be
//! sent again (nothing of its body consumed, or the body buffered; never a POST that
//! reached a node). A response that cannot be completed closes the client connection.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;
use weir_io::conn::{head_end, Conn};
use weir_io::http::{
    parse_request, parse_response, s3_error_response, write_request_head, write_response_head,
    BodyFraming, ChunkedDecoder, ChunkedLimits, HeadError, HeadLimits, Method, Peer, RequestHead,
    ResponseHead,
};
use weir_io::relay::{BodyMode, End, Moved, Mover};
use weir_io::{Error, Kind, Side};
use weir_policy::config::BodyPath;

use crate::metrics::Direction;
use crate::shard::Shard;
use crate::signals;

/// Bodies shorter than this are copied rather than spliced: a pipe round trip costs two
/// syscalls plus a pipe, which only pays off for larger transfers.
const SPLICE_BYTES_MIN: u64 = 16 * 1024;

/// Serves one client connection until it closes, errs, or asks to close.
pub async fn serve_client(shard: &Shard, stream: TcpStream, peer: SocketAddr) {
    let http = &shard.settings.config.http;
    let mut client = match Conn::new(stream, http.header_bytes_max + 1) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "cannot set up client connection");
            return;
        }
    };
    let mode = match shard.settings.config.appliance.body_path {
        BodyPath::Splice => BodyMode::Splice,
        BodyPath::Copy => BodyMode::Copy,
    };
    let mut mover = Mover::new(
        mode,
        shard.pipes.clone(),
        shard.settings.config.upstream.io_timeout,
        SPLICE_BYTES_MIN,
    );
    loop {
        match read_request(shard, &mut client).await {
            Incoming::Closed => return,
            Incoming::Reject(err) => {
                reject(shard, &client, &err, "").await;
                return;
            }
            Incoming::Head(head) => {
                shard.metrics().request_started();
                let keep_alive = handle(shard, &mut client, &mut mover, head).await;
                shard.metrics().request_finished();
                // A draining weir closes connections between requests.
                if !keep_alive || signals::draining() {
                    return;
                }
            }
        }
    }
}

enum Incoming {
    Head(Box<RequestHead>),
    Reject(HeadError),
    Closed,
}

/// Reads the next request head. An idle keep-alive connection closes silently
/// (CORRECTIONS 4); 408 only when part of a head arrived and the rest did not in time.
async fn read_request(shard: &Shard, client: &mut Conn) -> Incoming {
    let http = &shard.settings.config.http;
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
            None => http.client_idle_timeout,
            Some(d) => d.saturating_duration_since(Instant::now()),
        };
        match monoio::time::timeout(wait, client.read_head_bytes(head_end)).await {
            Err(_) if deadline.is_some() => {
                return Incoming::Reject(head_error(
                    408,
                    "RequestTimeout",
                    "the request head did not arrive in time",
                ))
            }
            Err(_) | Ok(Ok(0)) => return Incoming::Closed,
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Incoming::Reject(head_error(
                    431,
                    "RequestHeaderSectionTooLarge",
                    "the request head is larger than header_bytes_max",
                ))
            }
            Ok(Err(_)) => return Incoming::Closed,
        }
    }
}

fn head_error(status: u16, code: &'static str, message: &str) -> HeadError {
    HeadError {
        status,
        code,
        message: message.to_string(),
    }
}

/// Answers a request weir rejects itself, and counts it.
async fn reject(shard: &Shard, client: &Conn, err: &HeadError, resource: &str) {
    shard.metrics().rejected(err.status);
    shard.metrics().request(err.status);
    let rid = shard.request_id();
    let bytes = s3_error_response(err.status, err.code, &err.message, resource, &rid, true);
    let _ = monoio::time::timeout(Duration::from_secs(5), client.write_all(&bytes)).await;
}

/// How the request body travels.
enum ReqBody {
    /// No body.
    Empty,
    /// Read completely before forwarding: small enough, and replayable on another node.
    Buffered(Vec<u8>),
    /// Relayed as it arrives (spliced); cannot be replayed once started.
    Streamed,
}

/// Decrements a node's in-flight count when the request is done with it.
struct InFlight<'a> {
    counts: &'a RefCell<Vec<u32>>,
    node: usize,
}

impl<'a> InFlight<'a> {
    fn enter(counts: &'a RefCell<Vec<u32>>, node: usize) -> Self {
        counts.borrow_mut()[node] += 1;
        InFlight { counts, node }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut c = self.counts.borrow_mut();
        c[self.node] = c[self.node].saturating_sub(1);
    }
}

/// Handles one request; returns whether the client connection may carry another.
async fn handle(
    shard: &Shard,
    client: &mut Conn,
    mover: &mut Mover,
    head: Box<RequestHead>,
) -> bool {
    let cfg = &shard.settings.config;
    let bucket = weir_policy::route::bucket_of(
        head.host(),
        head.path(),
        &cfg.appliance.virtual_host_suffixes,
    );
    let pool = cfg.route(bucket.as_deref());

    let body = match head.framing {
        BodyFraming::Length(n)
            if n > 0 && n <= cfg.http.buffered_body_bytes_max as u64 && !head.expect_continue =>
        {
            match read_small_body(shard, client, n as usize).await {
                Some(b) => ReqBody::Buffered(b),
                None => return false, // the client left before sending its body: nothing was sent on
            }
        }
        BodyFraming::Length(n) if n > 0 => ReqBody::Streamed,
        BodyFraming::Chunked => ReqBody::Streamed,
        _ => ReqBody::Empty,
    };
    let mut head_bytes = Vec::with_capacity(1024);
    write_request_head(&head, &mut head_bytes);
    if let ReqBody::Buffered(b) = &body {
        head_bytes.extend_from_slice(b);
    }
    // CORRECTIONS 14: a POST that reached a node is never sent again.
    let replayable = !matches!(body, ReqBody::Streamed) && head.method != Method::Post;

    let nodes = &shard.settings.nodes[pool];
    let mut tried: Vec<usize> = Vec::new();
    let mut last_error: Option<Error> = None;
    let attempts_max = nodes.len() + 1;
    for _attempt in 0..attempts_max {
        let node = {
            let counts = shard.inflight[pool].borrow();
            let rand = shard.rng.borrow_mut().next_u64();
            weir_policy::balance::pick_p2c(&counts, |i| !tried.contains(&i), rand)
        };
        let Some(node) = node else { break };
        let addr = nodes[node];
        let _inflight = InFlight::enter(&shard.inflight[pool], node);
        if last_error.is_some() {
            shard.metrics().upstream_retry();
        }
        match exchange(shard, client, mover, &head, &head_bytes, &body, addr).await {
            Exchange::Done { client_keep_alive } => return client_keep_alive,
            Exchange::Failed(e) => {
                shard.metrics().upstream_error();
                tracing::debug!(node = %addr, error = %e, "upstream attempt failed");
                let retry = e.retryable && (replayable || e.kind == Kind::Connect);
                if !retry {
                    if e.side == Side::Client {
                        return false;
                    }
                    break_with(shard, client, &e, head.path()).await;
                    return false;
                }
                tried.push(node);
                last_error = Some(e);
            }
        }
    }
    let e = last_error
        .unwrap_or_else(|| Error::new(Side::Upstream, Kind::Connect, "pool has no usable node"));
    break_with(shard, client, &e, head.path()).await;
    // The client may still send a body we never read: do not parse it as a request.
    head.keep_alive && !matches!(body, ReqBody::Streamed)
}

/// Answers the client for an upstream failure before the response started.
async fn break_with(shard: &Shard, client: &Conn, e: &Error, resource: &str) {
    let (status, code, message) = match e.kind {
        Kind::Timeout => (
            504,
            "GatewayTimeout",
            "the storage node did not answer in time",
        ),
        Kind::Protocol => (
            502,
            "BadGateway",
            "the storage node sent a malformed response",
        ),
        _ => (
            503,
            "ServiceUnavailable",
            "no storage node could take the request",
        ),
    };
    shard.metrics().request(status);
    let rid = shard.request_id();
    let bytes = s3_error_response(status, code, message, resource, &rid, true);
    let _ = monoio::time::timeout(Duration::from_secs(5), client.write_all(&bytes)).await;
}

/// Reads a small request body completely (bounded by `buffered_body_bytes_max`).
async fn read_small_body(shard: &Shard, client: &mut Conn, len: usize) -> Option<Vec<u8>> {
    let mut body = Vec::with_capacity(len);
    let timeout = shard.settings.config.upstream.io_timeout;
    loop {
        let take = client.buffered().len().min(len - body.len());
        body.extend_from_slice(&client.buffered()[..take]);
        client.consume(take);
        if body.len() == len {
            return Some(body);
        }
        match monoio::time::timeout(timeout, client.read_more()).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return None,
        }
    }
}

enum Exchange {
    Done { client_keep_alive: bool },
    Failed(Error),
}

/// One attempt at one node: send the request, relay the response.
async fn exchange(
    shard: &Shard,
    client: &mut Conn,
    mover: &mut Mover,
    head: &RequestHead,
    head_bytes: &[u8],
    body: &ReqBody,
    addr: SocketAddr,
) -> Exchange {
    let cfg = &shard.settings.config;
    let checkout = match shard.upstream.checkout(addr, Instant::now()).await {
        Ok(c) => c,
        Err(e) => return Exchange::Failed(e),
    };
    shard.metrics().upstream_checkout(checkout.reused);
    let reused = checkout.reused;
    let mut upstream = checkout.conn;
    // A reused connection the node closed meanwhile fails on first use: that is not the
    // node's fault and the request is still intact, so it may go again.
    let early = |e: &std::io::Error| Error::from_io(Side::Upstream, e).retryable(true);
    if let Err(e) = write_timed(&upstream, head_bytes, cfg.upstream.io_timeout).await {
        return Exchange::Failed(early(&e));
    }
    let limits = HeadLimits {
        header_bytes_max: cfg.http.header_bytes_max,
        headers_count_max: cfg.http.headers_count_max,
    };
    let mut body_sent = !matches!(body, ReqBody::Streamed);
    let mut up_moved = Moved::default();

    if matches!(body, ReqBody::Streamed) && head.expect_continue {
        // 100-continue end to end: the client's body is not pulled before the node agrees.
        let resp =
            match read_response_head(shard, &mut upstream, &limits, head.method, reused).await {
                Ok(r) => r,
                Err(e) => return Exchange::Failed(e),
            };
        if resp.status == 100 {
            if client
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n") // 25 bytes: fits any socket buffer
                .await
                .is_err()
            {
                upstream.abort_on_close();
                return Exchange::Failed(Error::new(Side::Client, Kind::Io, "client gone"));
            }
        } else {
            // A final answer instead of 100: the body stays unread, so the client
            // connection cannot carry another request, nor the upstream one.
            return finish_response(
                shard, client, mover, head, upstream, addr, resp, false, true,
            )
            .await;
        }
    }
    if !body_sent {
        let result = match head.framing {
            BodyFraming::Length(n) => {
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
                        &mut up_moved,
                    )
                    .await
            }
            _ => {
                let mut decoder = ChunkedDecoder::new(ChunkedLimits::default(), Peer::Client);
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
                        &mut up_moved,
                    )
                    .await
            }
        };
        shard.metrics().body(Direction::Upload, up_moved);
        if let Err(e) = result {
            // The client left mid-upload: reset the upstream request so no partial
            // object is committed. The node failing mid-upload: nothing to retry with.
            upstream.abort_on_close();
            return Exchange::Failed(e.retryable(false));
        }
        body_sent = true;
    }
    let resp = loop {
        match read_response_head(shard, &mut upstream, &limits, head.method, reused).await {
            Ok(r) if r.status == 100 => continue, // a 100 nobody asked for is dropped
            Ok(r) => break r,
            Err(e) => return Exchange::Failed(e),
        }
    };
    finish_response(
        shard, client, mover, head, upstream, addr, resp, body_sent, false,
    )
    .await
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

/// Reads the node's response head under the first-byte deadline.
async fn read_response_head(
    shard: &Shard,
    upstream: &mut Conn,
    limits: &HeadLimits,
    method: Method,
    reused: bool,
) -> Result<ResponseHead, Error> {
    let deadline = Instant::now() + shard.settings.config.upstream.first_byte_timeout;
    let mut got_bytes = false;
    loop {
        if !upstream.buffered().is_empty() {
            got_bytes = true;
            match parse_response(upstream.buffered(), limits, method) {
                Ok(Some((head, used))) => {
                    upstream.consume(used);
                    return Ok(head);
                }
                Ok(None) => {}
                Err(e) => return Err(Error::new(Side::Upstream, Kind::Protocol, e.to_string())),
            }
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match monoio::time::timeout(wait, upstream.read_head_bytes(head_end)).await {
            Err(_) => {
                return Err(
                    Error::new(Side::Upstream, Kind::Timeout, "first byte timeout")
                        .retryable(!got_bytes),
                )
            }
            Ok(Ok(0)) => {
                // Closed before answering. On a reused connection this is the classic
                // keep-alive race, so the request is still safe to send again.
                return Err(
                    Error::new(Side::Upstream, Kind::Closed, "closed before the response")
                        .retryable(!got_bytes || reused),
                );
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(Error::new(
                    Side::Upstream,
                    Kind::Protocol,
                    "response head too large",
                ))
            }
            Ok(Err(e)) => return Err(Error::from_io(Side::Upstream, &e).retryable(!got_bytes)),
        }
    }
}

/// Relays the response head and body to the client and decides what is reusable.
#[allow(clippy::too_many_arguments)]
async fn finish_response(
    shard: &Shard,
    client: &mut Conn,
    mover: &mut Mover,
    head: &RequestHead,
    mut upstream: Conn,
    addr: SocketAddr,
    resp: ResponseHead,
    request_complete: bool,
    must_close_client: bool,
) -> Exchange {
    let close_client =
        must_close_client || !head.keep_alive || matches!(resp.framing, BodyFraming::UntilClose);
    let mut out = Vec::with_capacity(1024);
    write_response_head(&resp, close_client, &mut out);
    shard.metrics().request(resp.status);
    if let Err(e) = write_timed(client, &out, shard.settings.config.upstream.io_timeout).await {
        upstream.abort_on_close();
        return Exchange::Failed(Error::from_io(Side::Client, &e));
    }
    let mut moved = Moved::default();
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
        BodyFraming::Length(n) => mover.exact(up_end, client_end, n, &mut moved).await,
        BodyFraming::Chunked => {
            let mut decoder = ChunkedDecoder::new(ChunkedLimits::default(), Peer::Upstream);
            mover
                .chunked(up_end, client_end, &mut decoder, &mut moved)
                .await
        }
        BodyFraming::UntilClose => mover.until_close(up_end, client_end, &mut moved).await,
    };
    shard.metrics().body(Direction::Download, moved);
    if let Err(e) = result {
        // Never complete a response short: the client connection closes with it.
        tracing::debug!(node = %addr, error = %e, "response body failed");
        if e.side == Side::Upstream {
            shard.metrics().upstream_error();
        }
        upstream.abort_on_close();
        return Exchange::Done {
            client_keep_alive: false,
        };
    }
    if resp.keep_alive && request_complete && !matches!(resp.framing, BodyFraming::UntilClose) {
        shard.upstream.checkin(addr, upstream, Instant::now());
    }
    Exchange::Done {
        client_keep_alive: !close_client,
    }
}
