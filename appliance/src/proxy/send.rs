//! One attempt on a node: the request out (head, then its body by the way it travels,
//! `Expect: 100-continue` honoured end to end) and the node's final response head in,
//! interim answers relayed on the way; a small error answer's body is read whole so its
//! S3 code can decide.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use weir_io::conn::Conn;
use weir_io::http::{
    parse_response, write_response_head, BodyFraming, ChunkedDecoder, HeadLimits, Method, Peer,
    RequestHead, ResponseHead,
};
use weir_io::relay::End;
use weir_io::tls::TlsPath;
use weir_io::upstream::TlsTarget;
use weir_io::{Error, Kind, Side};
use weir_policy::attempt::Failed;
use weir_policy::config::Timeouts;
use weir_policy::limits::Dir;
use weir_policy::s3code::ERROR_BODY_BYTES_MAX;
use weir_policy::sigv4::ChunkStream;

use super::body::ReqBody;
use super::route::{failed_of, AttemptError};
use super::{client_chunk_limits, write_timed, Exchange};
use crate::shard::Epoch;
use crate::signed_body;

/// What one attempt sends: the head to send (a form upload's relay head, else the
/// client's), its bytes as they go to this node (re-signed or not, a buffered body
/// included), the body's way, the chunk stream of a streaming-signed upload, and the node.
pub(super) struct Outgoing<'a> {
    /// The head the node receives.
    pub head: &'a RequestHead,
    /// Its serialised bytes (and a buffered body).
    pub bytes: &'a [u8],
    /// How the body travels.
    pub body: &'a ReqBody,
    /// Verifies or re-signs a streaming-signed body chunk by chunk.
    pub chunks: Option<ChunkStream>,
    /// The node.
    pub addr: SocketAddr,
    /// TLS to the node, when its pool uses it.
    pub tls: Option<TlsTarget<'a>>,
    /// For a pool that sends PROXY v2 headers: the client and the address it reached.
    pub proxied: Option<(SocketAddr, SocketAddr)>,
    /// Open a new connection, even if an idle one waits (a reused one failed this
    /// request already).
    pub fresh: bool,
    /// The request's upstream timeouts (its route's or rule's, else `[upstream]`'s).
    pub timeouts: Timeouts,
}

/// A request sent and its final response head received.
pub(super) struct Sent {
    /// The node's final response head.
    pub resp: ResponseHead,
    /// The connection to the node, positioned at the response body.
    pub upstream: Conn,
    /// `Expect: 100-continue` was answered with a final status: the body was never pulled.
    pub body_unsent: bool,
    /// The node received the whole request. False when it answered before taking all
    /// of the body (or before the client sent it): neither connection then carries
    /// another request.
    pub request_complete: bool,
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
pub(super) async fn send_request(
    x: &mut Exchange<'_>,
    out: Outgoing<'_>,
) -> Result<Sent, AttemptError> {
    let (shard, ep, flow) = (x.shard, x.ep, x.flow);
    let (client, mover) = (&mut *x.client, &mut *x.mover);
    let Outgoing {
        head,
        bytes: head_bytes,
        body,
        chunks,
        addr,
        tls,
        proxied,
        fresh,
        timeouts,
    } = out;
    let cfg = &ep.settings.config;
    let fail = |err: Error, failed: Failed, body_consumed: bool| AttemptError {
        err,
        failed,
        body_consumed,
        refused: None,
    };
    let connect_at = Instant::now();
    let checkout = match proxied {
        None => {
            shard
                .upstream
                .checkout(addr, tls, Instant::now(), !fresh)
                .await
        }
        Some((source, destination)) => {
            let now = Instant::now();
            let up = &shard.upstream;
            up.checkout_proxied(addr, tls, now, !fresh, source, destination)
                .await
        }
    };
    let checkout = checkout.map_err(|e| {
        if let Some(f) = e.tls_failure {
            shard.metrics().tls_failure(1, f.label());
        }
        fail(e, Failed::Connect, false)
    })?;
    shard.metrics().upstream_checkout(checkout.reused);
    flow.connect.set(Some(connect_at.elapsed()));
    if tls.is_some() && !checkout.reused {
        shard
            .metrics()
            .tls_connection(1, TlsPath::UserSpace.label());
    }
    let (mut upstream, reused) = (checkout.conn, checkout.reused);
    if let Err(e) = write_timed(&upstream, head_bytes, timeouts.io).await {
        let err = Error::from_io(Side::Upstream, &e);
        let failed = stale_or(failed_of(&err), reused, true);
        return Err(fail(err, failed, false));
    }
    let mut interim = Interim {
        forward: head.minor_version > 0,
        count: 0,
        io_timeout: timeouts.io,
    };
    let streamed = matches!(body, ReqBody::Streamed | ReqBody::Form(_));
    if streamed && head.expect_continue {
        // 100-continue end to end: the client's body is not pulled before the node agrees.
        let deadline = Instant::now() + timeouts.first_byte;
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
        .map_err(|e| {
            let nothing = interim.count == 0 && upstream.buffered().is_empty();
            let mut f = failure_of(e, false);
            f.failed = stale_or(f.failed, reused, nothing);
            f
        })?;
        if resp.status != 100 {
            return Ok(Sent {
                resp,
                upstream,
                body_unsent: true,
                request_complete: false,
            });
        }
        if let Err(e) = write_timed(client, b"HTTP/1.1 100 Continue\r\n\r\n", timeouts.io).await {
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
            .body(Dir::Up, flow.up.counts().since(before));
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
    let deadline = Instant::now() + timeouts.first_byte;
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
    .map_err(|e| {
        let nothing = !streamed && interim.count == 0 && upstream.buffered().is_empty();
        let mut f = failure_of(e, streamed);
        f.failed = stale_or(f.failed, reused, nothing);
        f
    })?;
    Ok(Sent {
        resp,
        upstream,
        body_unsent: false,
        request_complete: true,
    })
}

/// A connection from the idle pool that closed or reset before any byte of the answer
/// (`nothing` came, and no body was pulled from the client) failed stale: the attempt
/// machine sends the request again on a new connection.
fn stale_or(failed: Failed, reused: bool, nothing: bool) -> Failed {
    match failed {
        Failed::Reset if reused && nothing => Failed::Stale,
        other => other,
    }
}

fn failure_of(err: Error, body_consumed: bool) -> AttemptError {
    AttemptError {
        failed: failed_of(&err),
        err,
        body_consumed,
        refused: None,
    }
}

/// Interim answers of one request: how many came, and whether they go to the client
/// (an HTTP/1.1 one; an HTTP/1.0 client cannot read them, RFC 9110 §15.2).
pub(super) struct Interim {
    /// Interim answers go to the client.
    pub forward: bool,
    /// How many came so far.
    pub count: u32,
    /// Deadline of each write of one to the client.
    pub io_timeout: Duration,
}

/// Reads the node's answer up to its final head, by `deadline` — one deadline for the
/// whole wait, which interim answers do not extend. Interim answers are relayed to
/// `client` as they come (`None`: its response has started, or it cannot take them),
/// except `100 Continue`, which weir answers itself; with `until_continue` a `100` ends
/// the wait (the node agrees to take the body).
#[allow(clippy::too_many_arguments)]
pub(super) async fn read_final_head(
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

/// Reads a small error answer's body (status 400 or more, `Content-Length` up to
/// [`ERROR_BODY_BYTES_MAX`]) into the connection's buffer, without consuming it, within
/// `io_timeout` (the request's). Returns its length when the whole answer is held (a bodiless
/// one too); `None` for a success, a larger or differently framed body, or a read that
/// failed (the relay then meets the failure itself).
pub(super) async fn read_error_body(
    upstream: &mut Conn,
    resp: &ResponseHead,
    io_timeout: Duration,
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
    match monoio::time::timeout(io_timeout, read).await {
        Ok(Ok(true)) => Some(n),
        _ => None,
    }
}
