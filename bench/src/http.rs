//! The small pieces of HTTP/1.1 the bench tools share: a strict streaming chunked decoder,
//! header look-up, and a one-shot blocking client for control calls (`/_sim/*`, `/metrics`).
//!
//! Heads are parsed with httparse; the chunked decoder is our own because httparse's chunk
//! parser accepts bare LF, which weir refuses (docs/design.md, "A request's way"), and a
//! simulator must not be laxer than S3.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Longest chunk-size or trailer line accepted, in bytes.
const CHUNK_LINE_BYTES_MAX: usize = 4096;
/// Largest response head the one-shot client accepts, in bytes.
const RESPONSE_HEAD_BYTES_MAX: usize = 64 * 1024;
/// Headers the parsers make room for.
pub const HEADERS_MAX: usize = 64;

/// Where a chunked decoder is within the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    SizeLine,
    Data,
    DataEnd,
    TrailerLine,
    Done,
}

/// What [`ChunkedDecoder::feed_events`] hands on, in body order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkEvent<'a> {
    /// A chunk's size line without its CRLF, extensions included (aws-chunked puts
    /// `;chunk-signature=` there); the last chunk's too (size 0).
    SizeLine(&'a [u8]),
    /// Payload bytes of the current chunk.
    Data(&'a [u8]),
}

/// Streaming decoder of a `Transfer-Encoding: chunked` body (and of aws-chunked, which has
/// the same framing with `;chunk-signature=` extensions).
pub struct ChunkedDecoder {
    state: ChunkState,
    line: Vec<u8>,
    remaining_bytes: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        Self {
            state: ChunkState::SizeLine,
            line: Vec::new(),
            remaining_bytes: 0,
        }
    }

    /// True once the last chunk and the trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes `input`, handing payload bytes to `sink`; returns how many input bytes were
    /// consumed (fewer than `input.len()` only when the message ended inside `input`).
    pub fn feed(
        &mut self,
        input: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<usize> {
        self.feed_events(input, &mut |event| match event {
            ChunkEvent::Data(data) => sink(data),
            ChunkEvent::SizeLine(_) => Ok(()),
        })
    }

    /// [`ChunkedDecoder::feed`], handing on each chunk's size line too.
    pub fn feed_events(
        &mut self,
        input: &[u8],
        on: &mut dyn FnMut(ChunkEvent) -> Result<()>,
    ) -> Result<usize> {
        let mut pos = 0;
        while pos < input.len() && self.state != ChunkState::Done {
            match self.state {
                ChunkState::Data => {
                    let take = (input.len() - pos).min(self.remaining_bytes as usize);
                    on(ChunkEvent::Data(&input[pos..pos + take]))?;
                    pos += take;
                    self.remaining_bytes -= take as u64;
                    if self.remaining_bytes == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                }
                ChunkState::DataEnd => {
                    self.line.push(input[pos]);
                    pos += 1;
                    if self.line.len() == 2 {
                        if self.line != b"\r\n" {
                            bail!("chunk data not followed by CRLF");
                        }
                        self.line.clear();
                        self.state = ChunkState::SizeLine;
                    }
                }
                ChunkState::SizeLine | ChunkState::TrailerLine => {
                    let Some(lf) = input[pos..].iter().position(|&b| b == b'\n') else {
                        self.line.extend_from_slice(&input[pos..]);
                        pos = input.len();
                        if self.line.len() > CHUNK_LINE_BYTES_MAX {
                            bail!("chunk line longer than {CHUNK_LINE_BYTES_MAX} bytes");
                        }
                        break;
                    };
                    self.line.extend_from_slice(&input[pos..pos + lf + 1]);
                    pos += lf + 1;
                    if self.line.len() > CHUNK_LINE_BYTES_MAX {
                        bail!("chunk line longer than {CHUNK_LINE_BYTES_MAX} bytes");
                    }
                    self.end_line(on)?;
                }
                ChunkState::Done => unreachable!("loop condition excludes Done"),
            }
        }
        Ok(pos)
    }

    /// Acts on a complete line (ending in LF) held in `self.line`.
    fn end_line(&mut self, on: &mut dyn FnMut(ChunkEvent) -> Result<()>) -> Result<()> {
        let Some(line) = self.line.strip_suffix(b"\r\n") else {
            bail!("chunk line ends in a bare LF");
        };
        match self.state {
            ChunkState::SizeLine => {
                let size_text = line.split(|&b| b == b';').next().unwrap_or(line);
                if size_text.is_empty()
                    || size_text.len() > 16
                    || !size_text.iter().all(u8::is_ascii_hexdigit)
                {
                    bail!("bad chunk size line {:?}", String::from_utf8_lossy(line));
                }
                let size_text = std::str::from_utf8(size_text).context("chunk size")?;
                let size = u64::from_str_radix(size_text, 16).context("chunk size")?;
                on(ChunkEvent::SizeLine(line))?;
                self.remaining_bytes = size;
                self.state = if size == 0 {
                    ChunkState::TrailerLine
                } else {
                    ChunkState::Data
                };
            }
            ChunkState::TrailerLine => {
                if line.is_empty() {
                    self.state = ChunkState::Done;
                }
            }
            _ => unreachable!("end_line is only called for line states"),
        }
        self.line.clear();
        Ok(())
    }
}

/// The value of header `name` (case-insensitive), if present and valid UTF-8.
pub fn header<'a>(headers: &'a [httparse::Header<'_>], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(str::trim)
}

/// True when a comma-separated header value lists `token` (case-insensitive).
pub fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// A complete response read by [`request`].
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names and values in order.
    pub headers: Vec<(String, String)>,
    /// Decoded body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection (`Connection: close`), for control and scrape calls.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<Response> {
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connect to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "PUT" || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    read_response(&mut stream, method == "HEAD")
}

/// Reads one response (head and body) from `stream`; the body ends at Content-Length, at
/// the last chunk, or at EOF.
pub fn read_response(stream: &mut impl Read, head_only: bool) -> Result<Response> {
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).context("read response")?;
        if n == 0 {
            bail!("connection closed before a complete response head");
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut header_slots = [httparse::EMPTY_HEADER; HEADERS_MAX];
        let mut parsed = httparse::Response::new(&mut header_slots);
        match parsed.parse(&buf).context("parse response head")? {
            httparse::Status::Partial => {
                if buf.len() > RESPONSE_HEAD_BYTES_MAX {
                    bail!("response head larger than {RESPONSE_HEAD_BYTES_MAX} bytes");
                }
            }
            httparse::Status::Complete(head_len) => {
                let status = parsed.code.context("status code")?;
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).trim().to_string(),
                        )
                    })
                    .collect();
                let content_length = header(parsed.headers, "content-length")
                    .map(|v| v.parse::<u64>().context("bad Content-Length"))
                    .transpose()?;
                let chunked = has_token(header(parsed.headers, "transfer-encoding"), "chunked");
                let rest = buf[head_len..].to_vec();
                let no_body = head_only || status == 204 || status == 304 || status / 100 == 1;
                let body = if no_body {
                    Vec::new()
                } else {
                    read_body(stream, rest, content_length, chunked)?
                };
                return Ok(Response {
                    status,
                    headers,
                    body,
                });
            }
        }
    }
}

/// Reads a response body given what followed the head in the buffer.
fn read_body(
    stream: &mut impl Read,
    mut already: Vec<u8>,
    content_length: Option<u64>,
    chunked: bool,
) -> Result<Vec<u8>> {
    let mut chunk = [0u8; 65536];
    if chunked {
        let mut decoder = ChunkedDecoder::new();
        let mut body = Vec::new();
        let mut input = std::mem::take(&mut already);
        loop {
            decoder.feed(&input, &mut |payload| {
                body.extend_from_slice(payload);
                Ok(())
            })?;
            if decoder.is_done() {
                return Ok(body);
            }
            let n = stream.read(&mut chunk).context("read chunked body")?;
            if n == 0 {
                bail!("connection closed inside a chunked body");
            }
            input.clear();
            input.extend_from_slice(&chunk[..n]);
        }
    }
    match content_length {
        Some(length) => {
            let length = usize::try_from(length).context("body too large")?;
            already.truncate(length);
            while already.len() < length {
                let want = (length - already.len()).min(chunk.len());
                let n = stream.read(&mut chunk[..want]).context("read body")?;
                if n == 0 {
                    bail!(
                        "connection closed after {} of {length} body bytes",
                        already.len()
                    );
                }
                already.extend_from_slice(&chunk[..n]);
            }
            Ok(already)
        }
        None => {
            stream
                .read_to_end(&mut already)
                .context("read body to EOF")?;
            Ok(already)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(pieces: &[&[u8]]) -> Result<(Vec<u8>, usize, bool)> {
        let mut decoder = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut consumed = 0;
        for piece in pieces {
            consumed += decoder.feed(piece, &mut |p| {
                out.extend_from_slice(p);
                Ok(())
            })?;
        }
        Ok((out, consumed, decoder.is_done()))
    }

    #[test]
    fn chunked_whole_and_byte_by_byte() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: y\r\n\r\nNEXT";
        let (out, consumed, done) = decode_all(&[wire]).unwrap();
        assert_eq!(out, b"hello, world");
        assert!(done);
        assert_eq!(consumed, wire.len() - 4);
        let pieces: Vec<&[u8]> = wire[..wire.len() - 4].chunks(1).collect();
        let (out, _, done) = decode_all(&pieces).unwrap();
        assert_eq!(out, b"hello, world");
        assert!(done);
    }

    #[test]
    fn chunked_rejects_sloppy_framing() {
        assert!(decode_all(&[b"5\nhello\r\n0\r\n\r\n"]).is_err());
        assert!(decode_all(&[b"5\r\nhelloXX0\r\n\r\n"]).is_err());
        assert!(decode_all(&[b"zz\r\n"]).is_err());
        assert!(decode_all(&[b"\r\n"]).is_err());
        assert!(decode_all(&[b"11111111111111111\r\n"]).is_err());
        let long = vec![b'1'; CHUNK_LINE_BYTES_MAX + 10];
        assert!(decode_all(&[&long]).is_err());
    }

    #[test]
    fn tokens() {
        assert!(has_token(Some("gzip, chunked"), "chunked"));
        assert!(has_token(Some("Chunked"), "chunked"));
        assert!(!has_token(Some("chunkedx"), "chunked"));
        assert!(!has_token(None, "chunked"));
    }
}
