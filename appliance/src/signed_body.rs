//! Relaying a streaming-signed upload (`aws-chunked` with chunk signatures) through a
//! [`ChunkStream`]: the client's bytes are read into user space, each chunk is checked
//! (and re-signed for the pool) by `weir_policy::sigv4`, and only released chunks are
//! written to the node. The body's outer framing is the client's: a `Content-Length`
//! body keeps its length (re-signing changes signature digits only), a
//! `Transfer-Encoding: chunked` one is re-framed chunk by released chunk.
//!
//! On a refused chunk the caller resets the node's request: the node has seen a short
//! body, so it commits nothing (the final chunk is never released early).

use weir_io::conn::Conn;
use weir_io::error::{Error, Kind, Side};
use weir_io::http::{BodyFraming, ChunkItem, ChunkedDecoder, ChunkedLimits, Peer};
use weir_io::relay::{Moved, Mover};
use weir_policy::sigv4::{ChunkStream, SigV4Error};

/// Why a checked body stopped.
pub enum Stopped {
    /// A connection failed (or the client's HTTP framing was malformed).
    Io(Error),
    /// The `aws-chunked` body was refused: the client is answered with this.
    Refused(SigV4Error),
}

impl From<Error> for Stopped {
    fn from(e: Error) -> Self {
        Stopped::Io(e)
    }
}

/// The two connections, and the bounds on the client's chunked framing.
pub struct Ends<'a> {
    /// The client, whose buffered bytes come first.
    pub client: &'a mut Conn,
    /// The node.
    pub upstream: &'a Conn,
    /// Bounds on a `Transfer-Encoding: chunked` body (its size among them).
    pub limits: ChunkedLimits,
}

/// Relays the body framed by `framing` from the client to the node through `stream`.
/// `moved` counts the bytes written to the node; `mover` paces them (byte limits) and
/// holds every read and write to its deadlines (idle timeout, rate floor).
pub async fn relay(
    mut ends: Ends<'_>,
    framing: BodyFraming,
    stream: &mut ChunkStream,
    mover: &Mover,
    moved: &Moved,
) -> Result<(), Stopped> {
    mover.begin_body();
    match framing {
        BodyFraming::Length(n) => {
            feed(&mut ends, n, stream, mover, moved, false).await?;
        }
        BodyFraming::Chunked => {
            let mut decoder = ChunkedDecoder::new(ends.limits, Peer::Client);
            loop {
                let parsed = decoder
                    .parse(ends.client.buffered())
                    .map_err(|e| Error::framing(Side::Client, e))?;
                match parsed {
                    None => read_more(&mut ends, mover).await?,
                    Some((item, consumed)) => {
                        ends.client.consume(consumed);
                        match item {
                            ChunkItem::Data(n) => {
                                feed(&mut ends, n, stream, mover, moved, true).await?
                            }
                            ChunkItem::Done => break,
                        }
                    }
                }
            }
        }
        BodyFraming::None | BodyFraming::UntilClose => {}
    }
    if !stream.is_done() {
        return Err(Stopped::Refused(SigV4Error::MalformedChunk(
            "the body ended inside its aws-chunked encoding",
        )));
    }
    if framing == BodyFraming::Chunked {
        write(&ends, mover, b"0\r\n\r\n", false).await?;
    }
    Ok(())
}

/// Feeds the next `len` body bytes of the client to `stream`, writing what it releases
/// (as one HTTP chunk each when `reframe`).
async fn feed(
    ends: &mut Ends<'_>,
    mut len: u64,
    stream: &mut ChunkStream,
    mover: &Mover,
    moved: &Moved,
    reframe: bool,
) -> Result<(), Stopped> {
    while len > 0 {
        if ends.client.buffered().is_empty() {
            read_more(ends, mover).await?;
            continue;
        }
        let buffered = ends.client.buffered();
        let take = buffered
            .len()
            .min(usize::try_from(len).unwrap_or(usize::MAX));
        let used = stream.feed(&buffered[..take]).map_err(Stopped::Refused)?;
        ends.client.consume(used);
        len -= used as u64;
        let ready = stream.ready();
        if !ready.is_empty() {
            mover.pace(ready.len() as u64).await;
            if reframe {
                write(
                    ends,
                    mover,
                    format!("{:x}\r\n", ready.len()).as_bytes(),
                    false,
                )
                .await?;
            }
            write(ends, mover, ready, true).await?;
            if reframe {
                write(ends, mover, b"\r\n", false).await?;
            }
            moved.record_copied(ready.len() as u64);
            stream.sent();
        }
    }
    Ok(())
}

/// Reads more of the client's body under the body deadlines; a close is an error (the
/// body is incomplete).
async fn read_more(ends: &mut Ends<'_>, mover: &Mover) -> Result<(), Error> {
    match mover.read_more(ends.client, Side::Client, false).await? {
        0 => Err(Error::new(
            Side::Client,
            Kind::Closed,
            "closed inside the aws-chunked body",
        )),
        _ => Ok(()),
    }
}

/// Writes to the node under the body deadlines (`payload`: counts towards the floor).
async fn write(ends: &Ends<'_>, mover: &Mover, bytes: &[u8], payload: bool) -> Result<(), Error> {
    mover
        .write_all(ends.upstream, Side::Upstream, bytes, payload)
        .await
}
