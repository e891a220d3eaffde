//! Relaying a streaming-signed upload (`aws-chunked` with chunk signatures) through a
//! [`ChunkStream`]: the client's bytes are read into user space, each chunk is checked
//! (and re-signed for the pool) by `weir_policy::sigv4`, and only released chunks are
//! written to the node. The body's outer framing is the client's: a `Content-Length`
//! body keeps its length (re-signing changes signature digits only), a
//! `Transfer-Encoding: chunked` one is re-framed chunk by released chunk.
//!
//! On a refused chunk the caller resets the node's request: the node has seen a short
//! body, so it commits nothing (the final chunk is never released early).

use std::time::Duration;

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

/// The two connections and how long either may stall.
pub struct Ends<'a> {
    /// The client, whose buffered bytes come first.
    pub client: &'a mut Conn,
    /// The node.
    pub upstream: &'a Conn,
    /// Longest wait for a read or a write.
    pub io_timeout: Duration,
}

/// Relays the body framed by `framing` from the client to the node through `stream`.
/// `moved` counts the bytes written to the node; `mover` paces them (byte limits).
pub async fn relay(
    mut ends: Ends<'_>,
    framing: BodyFraming,
    stream: &mut ChunkStream,
    mover: &Mover,
    moved: &Moved,
) -> Result<(), Stopped> {
    match framing {
        BodyFraming::Length(n) => {
            feed(&mut ends, n, stream, mover, moved, false).await?;
        }
        BodyFraming::Chunked => {
            let mut decoder = ChunkedDecoder::new(ChunkedLimits::default(), Peer::Client);
            loop {
                let parsed = decoder
                    .parse(ends.client.buffered())
                    .map_err(|e| Error::new(Side::Client, Kind::Protocol, e.to_string()))?;
                match parsed {
                    None => read_more(&mut ends).await?,
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
        write(&ends, b"0\r\n\r\n").await?;
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
            read_more(ends).await?;
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
                write(ends, format!("{:x}\r\n", ready.len()).as_bytes()).await?;
            }
            write(ends, ready).await?;
            if reframe {
                write(ends, b"\r\n").await?;
            }
            moved.record_copied(ready.len() as u64);
            stream.sent();
        }
    }
    Ok(())
}

/// Reads more of the client's body within the timeout; a close is an error (the body is
/// incomplete).
async fn read_more(ends: &mut Ends<'_>) -> Result<(), Error> {
    match monoio::time::timeout(ends.io_timeout, ends.client.read_more()).await {
        Ok(Ok(0)) => Err(Error::new(
            Side::Client,
            Kind::Closed,
            "closed inside the aws-chunked body",
        )),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Error::from_io(Side::Client, &e)),
        Err(_) => Err(Error::new(Side::Client, Kind::Timeout, "idle timeout")),
    }
}

/// Writes to the node within the timeout.
async fn write(ends: &Ends<'_>, bytes: &[u8]) -> Result<(), Error> {
    match monoio::time::timeout(ends.io_timeout, ends.upstream.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::from_io(Side::Upstream, &e)),
        Err(_) => Err(Error::new(Side::Upstream, Kind::Timeout, "idle timeout")),
    }
}
