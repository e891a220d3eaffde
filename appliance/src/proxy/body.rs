//! The request body before any node hears of the request: how it will travel
//! ([`ReqBody`]), a small one read whole (so it can be replayed on another node), and a
//! streamed one seen flowing before the request takes a node slot.

use weir_io::conn::Conn;
use weir_io::http::{BodyFraming, ChunkItem, ChunkedDecoder, HeadError, Peer};
use weir_io::relay::Mover;
use weir_io::{Error, Kind, Side};
use weir_policy::retry::BodyState;

use super::client_chunk_limits;
use crate::post_form;

/// How the request body travels.
pub(super) enum ReqBody {
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

/// The request body's state, as the attempt machine reads it.
pub(super) fn body_state(body: &ReqBody, body_unsent: bool) -> BodyState {
    match body {
        ReqBody::Empty => BodyState::Empty,
        ReqBody::Buffered(_) => BodyState::Buffered,
        ReqBody::Form(form) if form.is_complete() => BodyState::Buffered,
        ReqBody::Streamed | ReqBody::Form(_) if body_unsent => BodyState::NotYetSent,
        ReqBody::Streamed | ReqBody::Form(_) => BodyState::Streaming,
    }
}

/// Why a request body did not arrive before any node heard of the request.
pub(super) enum BodyStall {
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
pub(super) async fn read_small_body(
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
pub(super) async fn body_started(
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
