//! What the fuzz targets in `fuzz_targets/` share: the harness line that carries the
//! fuzzer's choices, an independent reading of which header fields a proxy forwards, and
//! ([`reference`]) an independent decoder of chunked bodies.
//!
//! Every input is a harness line, then the message:
//!
//! ```text
//! 37 256 8
//! GET /bucket/key HTTP/1.1
//! Host: s3.local
//! ```
//!
//! The harness line runs up to the first LF. It holds decimal numbers separated by spaces
//! (what each number means is up to the target; a missing or unreadable one takes the
//! target's default). Everything after that LF is the message, byte for byte, CRLFs
//! included. Keeping the fuzzer's choices (where to split the input, which limits) in
//! readable text keeps the seeds and a crash report readable, and libFuzzer mutates ASCII
//! numbers well (it has a mutator for exactly that).
//!
//! The checks here are written again rather than borrowed from weir-io, so a round trip
//! does not test the codec against itself.

pub mod reference;

use weir_io::http::Header;

/// Most numbers read from a harness line.
const NUMBERS_MAX: usize = 8;

/// A fuzz input split into the harness's choices and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input<'a> {
    numbers: Vec<Option<u64>>,
    /// The message bytes after the harness line.
    pub message: &'a [u8],
}

impl<'a> Input<'a> {
    /// Splits `data` at its first LF; an input without one is all harness line.
    pub fn parse(data: &'a [u8]) -> Self {
        let (line, message) = match data.iter().position(|&b| b == b'\n') {
            Some(at) => (&data[..at], &data[at + 1..]),
            None => (data, &data[data.len()..]),
        };
        let numbers = line
            .split(|&b| b == b' ')
            .filter(|word| !word.is_empty())
            .take(NUMBERS_MAX)
            .map(|word| std::str::from_utf8(word).ok()?.parse().ok())
            .collect();
        Input { numbers, message }
    }

    /// The `i`-th number of the harness line, if it is there and readable.
    pub fn number(&self, i: usize) -> Option<u64> {
        self.numbers.get(i).copied().flatten()
    }

    /// The `i`-th number as a usize, capped at `max`.
    pub fn capped(&self, i: usize, max: usize) -> Option<usize> {
        self.number(i)
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX).min(max))
    }

    /// A point in the message chosen by the `i`-th number (the middle by default).
    pub fn split_point(&self, i: usize) -> usize {
        let len = self.message.len();
        match self.number(i) {
            Some(n) => usize::try_from(n % (len as u64 + 1)).unwrap_or(len),
            None => len / 2,
        }
    }
}

/// The fields a proxy must never forward (RFC 9110 §7.6.1, the legacy ones, and the
/// credentials of a proxy in front of weir, RFC 9110 §11.7), in lower case.
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Fields no `Connection` option may remove (a parse error if one tries).
pub const NOT_NOMINATABLE: [&str; 3] = ["content-length", "transfer-encoding", "host"];

/// `tchar` of RFC 9110 §5.6.2, spelled out as the RFC lists it.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A non-empty run of `tchar`.
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().copied().all(is_tchar)
}

/// HTAB, SP, VCHAR or obs-text: what a field value (or reason phrase) may hold.
pub fn is_value_byte(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff)
}

/// The elements of a comma-separated list, SP/HTAB trimmed, empty ones kept.
pub fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

/// The fields named `name` (ASCII case aside).
pub fn named<'h>(headers: &'h [Header], name: &'h str) -> impl Iterator<Item = &'h Header> {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
}

/// Every option of every `Connection` field, lower-cased.
pub fn connection_options(headers: &[Header]) -> Vec<Vec<u8>> {
    named(headers, "connection")
        .flat_map(|h| list(&h.value))
        .map(|o| o.to_ascii_lowercase())
        .collect()
}

/// Whether a proxy drops `name` given the head's `Connection` options.
pub fn is_dropped(name: &str, options: &[Vec<u8>]) -> bool {
    let lower = name.to_ascii_lowercase();
    HOP_BY_HOP.contains(&lower.as_str())
        || (!NOT_NOMINATABLE.contains(&lower.as_str())
            && options.iter().any(|o| o == lower.as_bytes()))
}

/// The agreed `Content-Length` of a parsed head (all values equal by then).
pub fn content_length(headers: &[Header]) -> Option<u64> {
    let first = named(headers, "content-length").next()?;
    let element = list(&first.value).next()?;
    std::str::from_utf8(element).ok()?.parse().ok()
}

/// The fields a correct proxy forwards for `headers`: every end-to-end field byte for
/// byte, in order; several `Content-Length` fields or a list (`5, 5`) become one field,
/// where the first was, holding the length (RFC 9110 §8.6).
pub fn forwarded(headers: &[Header]) -> Vec<Header> {
    let options = connection_options(headers);
    let lengths: Vec<&Header> = named(headers, "content-length").collect();
    let collapse = lengths.len() > 1 || lengths.iter().any(|h| h.value.contains(&b','));
    let mut out = Vec::new();
    let mut length_written = false;
    for h in headers {
        if is_dropped(&h.name, &options) {
            continue;
        }
        if collapse && h.name.eq_ignore_ascii_case("content-length") {
            if !length_written {
                length_written = true;
                let value = content_length(headers).expect("a parsed head has a valid length");
                out.push(Header::new(h.name.clone(), value.to_string()));
            }
            continue;
        }
        out.push(h.clone());
    }
    out
}

/// Checks what every parsed field must be: a token name, a value of allowed bytes
/// without surrounding whitespace, and not a disguised framing field.
pub fn check_fields(headers: &[Header]) {
    for h in headers {
        assert!(is_token(h.name.as_bytes()), "field name {:?}", h.name);
        assert!(
            h.value.iter().copied().all(is_value_byte),
            "control byte in {:?}",
            h
        );
        let trimmed = trim_ows(&h.value);
        assert_eq!(trimmed.len(), h.value.len(), "untrimmed value in {h:?}");
        let normalised = h.name.to_ascii_lowercase().replace('_', "-");
        if normalised == "content-length" || normalised == "transfer-encoding" {
            assert!(
                !h.name.contains('_'),
                "disguised framing field {:?}",
                h.name
            );
        }
    }
}

/// `s` without leading and trailing SP/HTAB (and nothing else).
pub fn trim_ows(s: &[u8]) -> &[u8] {
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !ows(b)).map_or(start, |i| i + 1);
    &s[start..end]
}

/// The field lines of a written head (start line and final empty line left out), split
/// at the first colon, as a next hop would read them.
pub fn written_fields(head: &[u8]) -> Vec<(&[u8], &[u8])> {
    let text = head
        .strip_suffix(b"\r\n")
        .filter(|text| text.ends_with(b"\r\n"))
        .expect("a written head ends with CRLF CRLF");
    text.split_inclusive(|&b| b == b'\n')
        .skip(1)
        .map(|line| {
            let line = line
                .strip_suffix(b"\r\n")
                .expect("every written line ends with CRLF");
            let colon = line
                .iter()
                .position(|&b| b == b':')
                .expect("every written field line has a colon");
            (&line[..colon], trim_ows(&line[colon + 1..]))
        })
        .collect()
}

/// Checks a head as written for the next hop: CRLF lines only, no hop-by-hop field (none
/// of the fixed ones, none a `Connection` option of the parsed head named), never both
/// `Content-Length` and `Transfer-Encoding`, at most one `Content-Length`.
/// `connection_close` allows the one `Connection: close` weir itself adds to a response.
pub fn check_written(out: &[u8], options: &[Vec<u8>], connection_close: bool) {
    for (i, &b) in out.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && out[i - 1] == b'\r', "bare LF written at {i}");
        }
        if b == b'\r' {
            assert_eq!(out.get(i + 1), Some(&b'\n'), "bare CR written at {i}");
        }
    }
    let fields = written_fields(out);
    let mut lengths = 0;
    let mut chunked = false;
    let mut connection = 0;
    for (name, value) in &fields {
        let name = std::str::from_utf8(name).expect("written names are tokens");
        if connection_close && name == "Connection" && *value == b"close" {
            connection += 1;
            continue;
        }
        assert!(!is_dropped(name, options), "hop-by-hop {name:?} written");
        lengths += usize::from(name.eq_ignore_ascii_case("content-length"));
        chunked |= name.eq_ignore_ascii_case("transfer-encoding");
    }
    assert!(lengths <= 1, "{lengths} Content-Length fields written");
    assert!(
        !(chunked && lengths > 0),
        "Content-Length and Transfer-Encoding both written"
    );
    assert_eq!(connection, usize::from(connection_close));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harness_line_then_message() {
        let input = Input::parse(b"3 x 18446744073709551616 7\nGET / HTTP/1.1\r\n");
        assert_eq!(input.message, b"GET / HTTP/1.1\r\n");
        assert_eq!(
            (input.number(0), input.number(1), input.number(2)),
            (Some(3), None, None)
        );
        assert_eq!(input.number(3), Some(7));
        assert_eq!(input.number(4), None);
        assert_eq!(input.split_point(0), 3);
        assert_eq!(input.split_point(3), 7);
        assert_eq!(input.split_point(9), input.message.len() / 2);

        let input = Input::parse(b"12");
        assert_eq!((input.number(0), input.message), (Some(12), &b""[..]));
        assert_eq!(input.split_point(0), 0);
        let input = Input::parse(b"\nabc");
        assert_eq!((input.number(0), input.message), (None, &b"abc"[..]));
        assert_eq!(Input::parse(b"  5  \n").number(0), Some(5));
    }

    #[test]
    fn forwarded_drops_hop_by_hop_and_collapses_lengths() {
        let h = |n: &str, v: &str| Header::new(n, v);
        let headers = [
            h("Host", "h"),
            h("Connection", "X-A , keep-alive"),
            h("x-a", "1"),
            h("Content-Length", "5, 5"),
            h("Proxy-Authorization", "Basic x"),
            h("x-b", "2"),
            h("content-length", "5"),
        ];
        assert_eq!(
            forwarded(&headers),
            [h("Host", "h"), h("Content-Length", "5"), h("x-b", "2")]
        );
        let single = [h("Content-Length", "007")];
        assert_eq!(forwarded(&single), single);
    }

    #[test]
    fn written_heads_are_checked() {
        let out = b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n";
        check_written(out, &[], false);
        assert_eq!(
            written_fields(out),
            [(&b"Host"[..], &b"h"[..]), (b"Content-Length", b"3")]
        );
        let both = b"PUT / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(std::panic::catch_unwind(|| check_written(both, &[], false)).is_err());
        let hop = b"PUT / HTTP/1.1\r\nProxy-Authorization: x\r\n\r\n";
        assert!(std::panic::catch_unwind(|| check_written(hop, &[], false)).is_err());
        let nominated = b"PUT / HTTP/1.1\r\nX-A: x\r\n\r\n";
        assert!(
            std::panic::catch_unwind(|| check_written(nominated, &[b"x-a".to_vec()], false))
                .is_err()
        );
    }

    /// Every seed of `target`, as (file name, input).
    fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("seeds")
            .join(target);
        let mut seeds: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&path).unwrap())
            })
            .collect();
        seeds.sort();
        seeds
    }

    /// The heads captured from real clients and servers are accepted, so the fuzzer
    /// starts from heads that pass every check, not from the first refusal.
    #[test]
    fn captured_heads_parse() {
        use weir_io::http::{parse_request, parse_response, HeadLimits, Method};
        let limits = HeadLimits::default();
        let mut seen = 0;
        for (name, data) in seeds("request_head") {
            if ["awscli_", "boto3_", "curl_"]
                .iter()
                .any(|p| name.starts_with(p))
            {
                let input = Input::parse(&data);
                let parsed = parse_request(input.message, &limits);
                assert!(matches!(parsed, Ok(Some(_))), "{name}: {parsed:?}");
                seen += 1;
            }
        }
        assert!(seen >= 15, "{seen} client heads");
        for (name, data) in seeds("response_head") {
            if name.starts_with("s3s_fs_") || name.starts_with("aws_s3_") {
                let input = Input::parse(&data);
                let parsed = parse_response(input.message, &limits, Method::Get);
                assert!(matches!(parsed, Ok(Some(_))), "{name}: {parsed:?}");
            }
        }
    }

    /// The chunked bodies captured from curl and s3s-fs, and the aws-chunked ones, are
    /// complete, well-formed bodies to the reference reading.
    #[test]
    fn captured_chunked_bodies_are_whole() {
        for (name, data) in seeds("chunked") {
            if ["curl_", "s3s_fs_", "aws_chunked_"]
                .iter()
                .any(|p| name.starts_with(p))
            {
                let body = Input::parse(&data).message;
                let reading = reference::read(body);
                assert_eq!(
                    reading.outcome,
                    reference::Outcome::Done(body.len()),
                    "{name}"
                );
            }
        }
    }
}
