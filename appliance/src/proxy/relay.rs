//! The response to the client: a node's head and body relayed (spliced), a GET whose
//! node dies mid-body resumed from another node into the same response (`resume.rs`), and
//! what is reusable afterwards; or a node's failure answer held whole, relayed when no
//! other node did better.

use std::time::{Duration, Instant};

use weir_io::conn::{head_end, Conn};
use weir_io::http::{
    write_response_head, BodyFraming, ChunkedDecoder, ChunkedLimits, Header, Peer, ResponseHead,
};
use weir_io::relay::End;
use weir_io::Side;
use weir_policy::attempt::Decision;
use weir_policy::limits::Dir;

use super::resume::{resumable, resume_from_another};
use super::route::{failed_of, InFlight, Routing};
use super::{write_timed, After, Exchange};
use crate::bus::NodeId;
use crate::flows::{EndedBy, Flow, Outcome, REQUEST_ID_HEADER};

/// Relays the response head and body to the client, resuming a broken GET body from
/// another node, and decides what is reusable. Returns what becomes of the client
/// connection: a response that could not be completed resets it.
pub(super) async fn relay_response<'e>(
    x: &mut Exchange<'e>,
    route: &mut Routing<'_>,
    (mut node, mut inflight): (NodeId, InFlight<'e>),
    mut upstream: Conn,
    mut resp: ResponseHead,
    request_complete: bool,
) -> After {
    let (shard, ep, flow, head) = (x.shard, x.ep, x.flow, x.head);
    note_answer(flow, &mut resp);
    let (client, mover) = (&mut *x.client, &mut *x.mover);
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
                Dir::Down,
                weir_io::relay::MovedCounts {
                    spliced: 0,
                    copied: n as u64,
                },
            );
        }
    }
    shard.metrics().request(resp.status);
    flow.status.set(resp.status);
    if write_timed(client, &out, route.timeouts.io).await.is_err() {
        flow.ended(Outcome::ClientAborted, EndedBy::Client);
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
        shard.metrics().body(Dir::Down, moved);
        delivered += moved.total();
        let Err(e) = result else { break Ok(()) };
        if e.side != Side::Upstream {
            let by = if e.side == Side::Client {
                (Outcome::ClientAborted, EndedBy::Client)
            } else {
                (Outcome::WeirFailed, EndedBy::Weir)
            };
            flow.ended(by.0, by.1);
            break Err(e);
        }
        shard.metrics().upstream_error();
        let cut = route
            .attempts
            .on_body_cut(node, failed_of(&e), delivered, resume.is_some());
        let (Decision::Resume { from }, Some(first)) = (route.apply(node, cut), resume.as_ref())
        else {
            flow.ended(Outcome::NodeFailed, EndedBy::Node);
            break Err(e);
        };
        upstream.abort_on_close();
        let told = (x.origin, x.established);
        match resume_from_another(route, head, told, first, from, &flow.request_id).await {
            Some((next_node, next_conn)) => {
                flow.resumes.set(route.attempts.resumes());
                flow.nodes
                    .borrow_mut()
                    .push(ep.settings.nodes[next_node.pool][next_node.node]);
                flow.served_by.set(Some((next_node.pool, next_node.node)));
                shard.metrics().resume(true);
                let name = |n: NodeId| ep.settings.nodes[n.pool][n.node];
                let (from, to) = (name(node), name(next_node));
                let request_id = &flow.request_id;
                tracing::info!(%from, %to, delivered, request_id, "resumed GET on another node");
                // The resumed request counts against its new node (and drops the old).
                inflight = InFlight::enter(ep, next_node, route.bucket_of(next_node.pool));
                node = next_node;
                upstream = next_conn;
            }
            None => {
                shard.metrics().resume(false);
                flow.ended(Outcome::NodeFailed, EndedBy::Node);
                break Err(e);
            }
        }
    };
    if let Err(e) = result {
        // Never complete a response short, nor end it in a way a client could take for
        // the whole: a close-delimited or de-chunked body would look complete at a FIN.
        let request_id = &flow.request_id;
        tracing::debug!(error = %e, delivered, request_id, "response body failed");
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

/// Relays a node's failure answer held whole (`Connection: close` already in its head)
/// when no other node did better, and closes.
pub(super) async fn relay_held(x: &Exchange<'_>, bytes: &[u8], io_timeout: Duration) -> After {
    let (shard, flow) = (x.shard, x.flow);
    let status = parse_status(bytes).unwrap_or(502);
    shard.metrics().request(status);
    flow.status.set(status);
    let mut bytes = bytes.to_vec();
    add_header(&mut bytes, "X-Request-Id", &flow.request_id);
    let written = write_timed(x.client, &bytes, io_timeout).await;
    if written.is_err() {
        flow.ended(Outcome::ClientAborted, EndedBy::Client);
    }
    After::Close
}

/// What the access log keeps of a node's answer about to be relayed (its body length and
/// `x-amz-request-id`), and the request id added for the client: the node's own
/// `X-Request-Id`, if it sent one, gives way to weir's (docs/operations.md, "Request ids").
fn note_answer(flow: &Flow, resp: &mut ResponseHead) {
    if let BodyFraming::Length(n) = resp.framing {
        flow.bytes_expected.set(Some(n));
    }
    let node_id = resp
        .header("x-amz-request-id")
        .filter(|v| v.len() <= 128)
        .and_then(|v| std::str::from_utf8(v).ok());
    *flow.node_request_id.borrow_mut() = node_id.map(Box::from);
    resp.headers.retain(|h| !h.is(REQUEST_ID_HEADER));
    resp.headers.push(Header::new(
        "X-Request-Id",
        flow.request_id.as_bytes().to_vec(),
    ));
}

/// Adds a header to a serialised response head (before its blank line).
pub(super) fn add_header(response: &mut Vec<u8>, name: &str, value: &str) {
    if let Some(pos) = head_end(response) {
        let line = format!("{name}: {value}\r\n");
        response.splice(pos - 2..pos - 2, line.into_bytes());
    }
}

/// The status of a serialised response head.
fn parse_status(bytes: &[u8]) -> Option<u16> {
    let line = bytes.split(|&b| b == b'\r').next()?;
    let code = line.split(|&b| b == b' ').nth(1)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}
