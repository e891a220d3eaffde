//! Strict `Transfer-Encoding: chunked` framing (RFC 9112 §7.1) for a relay that moves the
//! payload itself (splice) and only hands the framing bytes to this decoder.
//!
//! Driving loop: call [`ChunkedDecoder::parse`] on the unconsumed bytes. `Data(n)` means
//! "the `consumed` framing bytes are done, the next `n` bytes are payload": move them, then
//! call `parse` again on what follows (it starts with the CRLF ending that chunk). `Done`
//! means the last chunk, trailers and final CRLF were consumed. `Ok(None)`: read more and
//! call again with the same start; nothing is consumed until a whole item is there.
//!
//! chunk-size lines differ between parsers in every way a lenient one can be lenient
//! (httparse accepts bare LF, whitespace, overlong sizes), so anything outside the grammar
//! is an error here.

use super::fields::{is_disguised_framing_name, is_hop_by_hop};
use super::syntax::{is_ows, is_tchar, parse_field_line};
use super::{HeadError, Peer};

/// Bounds on chunked framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedLimits {
    /// Longest chunk-size line (extensions included, CRLF excluded).
    pub line_bytes_max: usize,
    /// Largest trailer section, CRLFs and the final empty line included.
    pub trailer_bytes_max: usize,
    /// Most trailer field lines.
    pub trailers_count_max: usize,
    /// Largest total payload; a client body announcing more is refused (`EntityTooLarge`)
    /// as soon as the chunk-size line that crosses it is read.
    pub payload_bytes_max: u64,
}

impl Default for ChunkedLimits {
    fn default() -> Self {
        Self {
            line_bytes_max: 4 * 1024,
            trailer_bytes_max: 16 * 1024,
            trailers_count_max: 64,
            payload_bytes_max: u64::MAX,
        }
    }
}

/// One framing step found by [`ChunkedDecoder::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkItem {
    /// The next `n` (> 0) bytes after the consumed framing are payload.
    Data(u64),
    /// Last chunk, trailer section and final CRLF consumed; the message is complete.
    Done,
}

/// Where the decoder stands between calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first chunk-size line.
    Start,
    /// After a `Data` item: the payload must be followed by CRLF, then a chunk-size line.
    AfterData,
    /// The message is complete.
    Done,
}

/// Incremental validator of chunked framing; one per message body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    limits: ChunkedLimits,
    peer: Peer,
    state: State,
    payload_bytes: u64,
}

/// Trailer fields that could alter framing, routing or the connection if a later hop
/// merged trailers into the head (RFC 9110 §6.5.1).
const FORBIDDEN_TRAILERS: [&str; 3] = ["content-length", "transfer-encoding", "host"];

impl ChunkedDecoder {
    /// A decoder for a body sent by `peer` (client errors are 400/431, upstream ones 502).
    pub fn new(limits: ChunkedLimits, peer: Peer) -> Self {
        Self {
            limits,
            peer,
            state: State::Start,
            payload_bytes: 0,
        }
    }

    /// Total payload announced so far by `Data` items.
    pub fn payload_bytes(&self) -> u64 {
        self.payload_bytes
    }

    /// Whether `Done` has been returned.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Parses the framing at the start of `buf` (the CRLF that ends the previous chunk's
    /// data, then a chunk-size line, or the last chunk and trailer section).
    ///
    /// `Ok(None)`: need more bytes. `Ok(Some((item, consumed)))`: `consumed` framing bytes
    /// belong to `item`. After `Done`, further calls return `Done` with 0 consumed.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Option<(ChunkItem, usize)>, HeadError> {
        let mut pos = 0;
        match self.state {
            State::Done => return Ok(Some((ChunkItem::Done, 0))),
            State::Start => {}
            State::AfterData => match buf {
                [b'\r', b'\n', ..] => pos = 2,
                [] | [b'\r'] => return Ok(None),
                _ => return Err(self.malformed("chunk data not followed by CRLF")),
            },
        }
        let Some(len) = self.size_line(&buf[pos..], self.limits.line_bytes_max)? else {
            return Ok(None);
        };
        let size = self.chunk_size(&buf[pos..pos + len])?;
        pos += len + 2;
        if size > 0 {
            self.payload_bytes = self
                .payload_bytes
                .checked_add(size)
                .ok_or_else(|| self.malformed("chunked body larger than 2^64 bytes"))?;
            if self.payload_bytes > self.limits.payload_bytes_max {
                return Err(match self.peer {
                    Peer::Client => HeadError::entity_too_large(self.limits.payload_bytes_max),
                    Peer::Upstream => self.malformed("chunked body larger than allowed"),
                });
            }
            self.state = State::AfterData;
            return Ok(Some((ChunkItem::Data(size), pos)));
        }
        let Some(trailer_len) = self.trailer_section(&buf[pos..])? else {
            return Ok(None);
        };
        self.state = State::Done;
        Ok(Some((ChunkItem::Done, pos + trailer_len)))
    }

    fn malformed(&self, message: &str) -> HeadError {
        HeadError::malformed(self.peer, message)
    }

    /// Length of the line at the start of `buf` (CRLF excluded) once its CRLF is there.
    fn size_line(&self, buf: &[u8], max: usize) -> Result<Option<usize>, HeadError> {
        find_line(buf, max).map_err(|e| self.malformed(e.message()))
    }

    /// `chunk-size [chunk-ext]`: 1–16 hex digits, then only well-formed extensions.
    fn chunk_size(&self, line: &[u8]) -> Result<u64, HeadError> {
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 {
            return Err(self.malformed("chunk size missing"));
        }
        if digits > 16 {
            return Err(self.malformed("chunk size longer than 16 hex digits"));
        }
        // At most 16 hex digits always fit in a u64.
        let size = line[..digits].iter().fold(0u64, |acc, &b| {
            let d = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                _ => b - b'A' + 10,
            };
            (acc << 4) | u64::from(d)
        });
        if !valid_extensions(&line[digits..]) {
            return Err(self.malformed("invalid chunk size line"));
        }
        Ok(size)
    }

    /// Length of the trailer section at the start of `buf`, final CRLF included.
    fn trailer_section(&self, buf: &[u8]) -> Result<Option<usize>, HeadError> {
        let max = self.limits.trailer_bytes_max;
        let mut pos = 0;
        let mut count = 0usize;
        loop {
            // Each line and its CRLF must fit in what is left of the section budget (even
            // the final empty line: a budget under 2 bytes fits no section at all).
            let Some(left) = max.checked_sub(pos + 2) else {
                return Err(HeadError::oversized(self.peer, "trailer section too large"));
            };
            let Some(len) = find_line(&buf[pos..], left).map_err(|e| match e {
                LineError::TooLong => HeadError::oversized(self.peer, "trailer section too large"),
                e => self.malformed(e.message()),
            })?
            else {
                return Ok(None);
            };
            let line = &buf[pos..pos + len];
            pos += len + 2;
            if line.is_empty() {
                return Ok(Some(pos));
            }
            if pos + 2 > max {
                // No room left for the final empty line.
                return Err(HeadError::oversized(self.peer, "trailer section too large"));
            }
            count += 1;
            if count > self.limits.trailers_count_max {
                return Err(HeadError::oversized(self.peer, "too many trailer fields"));
            }
            let (name, _) = parse_field_line(line, self.peer)?;
            let name = String::from_utf8_lossy(name);
            if is_hop_by_hop(&name)
                || is_disguised_framing_name(name.as_bytes())
                || FORBIDDEN_TRAILERS
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(&name))
            {
                return Err(HeadError::malformed(
                    self.peer,
                    format!("{name} not allowed in trailers"),
                ));
            }
        }
    }
}

/// Why a framing line could not be delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineError {
    /// No line end within the allowed length.
    TooLong,
    /// LF without the CR before it.
    BareLf,
    /// CR followed by something other than LF.
    BareCr,
}

impl LineError {
    fn message(self) -> &'static str {
        match self {
            LineError::TooLong => "chunked framing line too long",
            LineError::BareLf => "bare LF in chunked framing",
            LineError::BareCr => "bare CR in chunked framing",
        }
    }
}

/// Length of the line at the start of `buf` (CRLF excluded) once its CRLF is there; a
/// line longer than `max` bytes fails even before its end arrives.
fn find_line(buf: &[u8], max: usize) -> Result<Option<usize>, LineError> {
    // Only look as far as a legal line can reach: `buf` may hold a lot of payload after it.
    let window = &buf[..buf.len().min(max.saturating_add(1))];
    match window.iter().position(|&b| b == b'\r' || b == b'\n') {
        Some(i) if buf[i] == b'\n' => Err(LineError::BareLf),
        Some(i) => match buf.get(i + 1) {
            Some(b'\n') => Ok(Some(i)),
            Some(_) => Err(LineError::BareCr),
            None => Ok(None),
        },
        None if buf.len() > max => Err(LineError::TooLong),
        None => Ok(None),
    }
}

/// `*( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )` and nothing more: no trailing
/// whitespace, no empty names, quoted strings well formed.
fn valid_extensions(s: &[u8]) -> bool {
    let mut i = 0;
    let skip_ows = |mut i: usize| {
        while s.get(i).is_some_and(|&b| is_ows(b)) {
            i += 1;
        }
        i
    };
    let skip_token = |mut i: usize| {
        while s.get(i).is_some_and(|&b| is_tchar(b)) {
            i += 1;
        }
        i
    };
    while i < s.len() {
        i = skip_ows(i);
        if s.get(i) != Some(&b';') {
            return false;
        }
        i = skip_ows(i + 1);
        let name_end = skip_token(i);
        if name_end == i {
            return false;
        }
        i = name_end;
        let eq = skip_ows(i);
        if s.get(eq) == Some(&b'=') {
            i = skip_ows(eq + 1);
            if s.get(i) == Some(&b'"') {
                match quoted_string_end(s, i) {
                    Some(end) => i = end,
                    None => return false,
                }
            } else {
                let value_end = skip_token(i);
                if value_end == i {
                    return false;
                }
                i = value_end;
            }
        }
    }
    true
}

/// Index just past the quoted-string opening at `s[start]`, if it is well formed.
fn quoted_string_end(s: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        match *s.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => {
                let escaped = *s.get(i + 1)?;
                if !(escaped == b'\t' || escaped == b' ' || escaped >= 0x21 && escaped != 0x7f) {
                    return None;
                }
                i += 2;
            }
            b if b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80 => i += 1,
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec() -> ChunkedDecoder {
        ChunkedDecoder::new(ChunkedLimits::default(), Peer::Client)
    }

    /// Walks a whole body; returns the payload bytes or the error status.
    fn walk(mut body: &[u8]) -> Result<Vec<u8>, u16> {
        let mut d = dec();
        let mut payload = Vec::new();
        loop {
            match d.parse(body) {
                Ok(Some((ChunkItem::Data(n), used))) => {
                    let n = usize::try_from(n).unwrap();
                    let end = used + n;
                    if body.len() < end {
                        return Err(0);
                    }
                    payload.extend_from_slice(&body[used..end]);
                    body = &body[end..];
                }
                Ok(Some((ChunkItem::Done, used))) => {
                    assert_eq!(used, body.len(), "trailing bytes");
                    return Ok(payload);
                }
                Ok(None) => return Err(0),
                Err(e) => return Err(e.status),
            }
        }
    }

    #[test]
    fn simple_body() {
        assert_eq!(
            walk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            Ok(b"hello world".to_vec())
        );
        assert_eq!(walk(b"0\r\n\r\n"), Ok(vec![]));
        assert_eq!(
            walk(b"A\r\n0123456789\r\na\r\n0123456789\r\n000\r\n\r\n").map(|p| p.len()),
            Ok(20)
        );
    }

    #[test]
    fn consumed_counts() {
        let mut d = dec();
        assert_eq!(d.parse(b"5\r\nhello"), Ok(Some((ChunkItem::Data(5), 3))));
        assert_eq!(d.parse(b"\r\n0\r\n\r\n"), Ok(Some((ChunkItem::Done, 7))));
        assert!(d.is_done());
        assert_eq!(d.payload_bytes(), 5);
        assert_eq!(d.parse(b"junk"), Ok(Some((ChunkItem::Done, 0))));
    }

    #[test]
    fn incomplete_is_none_without_consuming() {
        let mut d = dec();
        assert_eq!(d.parse(b""), Ok(None));
        assert_eq!(d.parse(b"5"), Ok(None));
        assert_eq!(d.parse(b"5\r"), Ok(None));
        assert_eq!(d.parse(b"5;a=\"x"), Ok(None));
        assert_eq!(d.parse(b"5\r\n"), Ok(Some((ChunkItem::Data(5), 3))));
        assert_eq!(d.parse(b"\r"), Ok(None));
        assert_eq!(d.parse(b"\r\n0\r\nX: y\r\n"), Ok(None));
        assert_eq!(
            d.parse(b"\r\n0\r\nX: y\r\n\r\n"),
            Ok(Some((ChunkItem::Done, 13)))
        );
    }

    #[test]
    fn sixteen_hex_digits_max() {
        let mut d = dec();
        assert_eq!(
            d.parse(b"ffffffffffffffff\r\n"),
            Ok(Some((ChunkItem::Data(u64::MAX), 18)))
        );
        assert_eq!(walk(b"00000000000000001\r\nx\r\n0\r\n\r\n"), Err(400));
        assert_eq!(walk(b"10000000000000000\r\n"), Err(400));
    }

    #[test]
    fn total_payload_overflow_is_400() {
        let mut d = dec();
        assert!(d.parse(b"ffffffffffffffff\r\n").unwrap().is_some());
        assert_eq!(d.parse(b"\r\n1\r\n").unwrap_err().status, 400);
    }

    #[test]
    fn bad_size_lines_are_400() {
        for line in [
            "",
            " 5",
            "5 ",
            "0x5",
            "+5",
            "-5",
            "5\t",
            "g",
            "5;",
            "5; ",
            "5;a=",
            "5;a b",
            "5;a=\"x",
            "5;a=\"\x01\"",
            "5 a",
            "5;=x",
            "5;a=b c",
            "5;a;",
            "5,a",
        ] {
            assert_eq!(
                walk(format!("{line}\r\nhello\r\n0\r\n\r\n").as_bytes()),
                Err(400),
                "{line:?}"
            );
        }
    }

    #[test]
    fn extensions_are_accepted() {
        for line in [
            "5;a",
            "5;a=b",
            "5 ;a=b",
            "5\t; a = b",
            "5;a=\"x y\\\"z\"",
            "5;a=b;c;d=\"\"",
            "5;chunk-signature=0123abcd",
        ] {
            assert_eq!(
                walk(format!("{line}\r\nhello\r\n0\r\n\r\n").as_bytes()),
                Ok(b"hello".to_vec()),
                "{line:?}"
            );
        }
    }

    #[test]
    fn size_line_length_is_bounded() {
        let long = format!("5;a={}\r\nhello\r\n0\r\n\r\n", "b".repeat(5000));
        assert_eq!(walk(long.as_bytes()), Err(400));
        // Also while incomplete.
        let mut d = dec();
        let partial = format!("5;a={}", "b".repeat(5000));
        assert_eq!(d.parse(partial.as_bytes()).unwrap_err().status, 400);
    }

    #[test]
    fn bare_lf_is_400() {
        assert_eq!(walk(b"5\nhello\r\n0\r\n\r\n"), Err(400));
        assert_eq!(walk(b"5\r\nhello\n0\r\n\r\n"), Err(400));
        assert_eq!(walk(b"5\r\nhello\r\n0\n\r\n"), Err(400));
        assert_eq!(walk(b"5\r\nhello\r\n0\r\n\n"), Err(400));
        assert_eq!(walk(b"5\r\nhello\r\n0\r\nX: y\n\r\n"), Err(400));
        assert_eq!(walk(b"5\rhello\r\n0\r\n\r\n"), Err(400));
    }

    #[test]
    fn crlf_after_data_is_required() {
        assert_eq!(walk(b"5\r\nhelloX\r\n0\r\n\r\n"), Err(400));
        assert_eq!(walk(b"5\r\nhello0\r\n\r\n"), Err(400));
        assert_eq!(walk(b"5\r\nhello\rX0\r\n\r\n"), Err(400));
        assert_eq!(walk(b"3\r\nhello\r\n0\r\n\r\n"), Err(400));
    }

    #[test]
    fn trailers_are_validated() {
        assert_eq!(
            walk(b"0\r\nx-amz-checksum-crc32: AAAAAA==\r\nX-B:c\r\n\r\n"),
            Ok(vec![])
        );
        for t in [
            " X: y",
            "X : y",
            "X",
            "X: a\0b",
            "Content-Length: 5",
            "transfer-encoding: chunked",
            "Host: h",
            "Connection: close",
            "Content_Length: 5",
        ] {
            let body = format!("0\r\n{t}\r\n\r\n");
            assert_eq!(walk(body.as_bytes()), Err(400), "{t:?}");
        }
    }

    #[test]
    fn client_payload_is_bounded() {
        let limits = ChunkedLimits {
            payload_bytes_max: 10,
            ..ChunkedLimits::default()
        };
        let mut d = ChunkedDecoder::new(limits, Peer::Client);
        assert_eq!(d.parse(b"6\r\n").unwrap(), Some((ChunkItem::Data(6), 3)));
        assert_eq!(
            d.parse(b"\r\n4\r\n").unwrap(),
            Some((ChunkItem::Data(4), 5))
        );
        let err = d.parse(b"\r\n1\r\n").unwrap_err();
        assert_eq!((err.status, err.code), (400, "EntityTooLarge"));
    }

    #[test]
    fn trailer_section_is_bounded() {
        let limits = ChunkedLimits {
            line_bytes_max: 4096,
            trailer_bytes_max: 32,
            trailers_count_max: 2,
            ..ChunkedLimits::default()
        };
        let mut d = ChunkedDecoder::new(limits, Peer::Client);
        let big = format!("0\r\nX: {}\r\n\r\n", "a".repeat(40));
        assert_eq!(d.parse(big.as_bytes()).unwrap_err().status, 431);
        let mut d = ChunkedDecoder::new(limits, Peer::Client);
        let big = format!("0\r\nX: {}", "a".repeat(40));
        assert_eq!(d.parse(big.as_bytes()).unwrap_err().status, 431);
        let mut d = ChunkedDecoder::new(limits, Peer::Client);
        assert_eq!(
            d.parse(b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n")
                .unwrap_err()
                .status,
            431
        );
        // The empty section is 2 bytes too: a smaller budget refuses it.
        for trailer_bytes_max in [0, 1] {
            let tiny = ChunkedLimits {
                trailer_bytes_max,
                ..limits
            };
            let mut d = ChunkedDecoder::new(tiny, Peer::Client);
            assert_eq!(d.parse(b"0\r\n\r\n").unwrap_err().status, 431);
        }
        // Exactly at the budget: "X: " + 25 + CRLF = 30, final CRLF = 32.
        let mut d = ChunkedDecoder::new(limits, Peer::Client);
        let fits = format!("0\r\nX: {}\r\n\r\n", "a".repeat(25));
        assert!(d.parse(fits.as_bytes()).unwrap().is_some());
    }

    #[test]
    fn upstream_errors_are_502() {
        let mut d = ChunkedDecoder::new(ChunkedLimits::default(), Peer::Upstream);
        let err = d.parse(b"5 \r\n").unwrap_err();
        assert_eq!((err.status, err.code), (502, "BadGateway"));
    }
}
