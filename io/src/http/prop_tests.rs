//! Property tests: the parsers never panic, are insensitive to how bytes arrive, and
//! `write_request_head` re-parses to the same head minus hop-by-hop fields.

use super::fields::hop_by_hop_filter;
use super::*;
use proptest::prelude::*;

/// A request generated from parts, with the head it must parse to.
#[derive(Debug, Clone)]
struct Generated {
    raw: Vec<u8>,
    head_len: usize,
    method: Method,
    target: String,
    minor_version: u8,
    framing: BodyFraming,
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Get),
        Just(Method::Head),
        Just(Method::Put),
        Just(Method::Post),
        Just(Method::Delete),
        Just(Method::Options),
    ]
}

fn target() -> impl Strategy<Value = String> {
    (
        "/[A-Za-z0-9._~%/!$&'()*+,;=:@-]{0,24}",
        proptest::option::of("[A-Za-z0-9=&%?/-]{0,12}"),
    )
        .prop_map(|(p, q)| match q {
            Some(q) => format!("{p}?{q}"),
            None => p,
        })
}

fn ows() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just(""), Just(" "), Just("\t"), Just(" \t ")]
}

/// End-to-end and hop-by-hop fields; names never collide with the framing fields.
fn field() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        4 => ("[Xx]-[A-Za-z0-9-]{1,10}", "[!-~]([ -~\u{e9}]{0,20}[!-~])?")
            .prop_map(|(n, v)| (n, v)),
        1 => prop_oneof![
            Just(("Connection".to_string(), "keep-alive".to_string())),
            Just(("connection".to_string(), "close".to_string())),
            Just(("Connection".to_string(), "x-a, X-Hop".to_string())),
            Just(("Keep-Alive".to_string(), "timeout=5".to_string())),
            Just(("TE".to_string(), "trailers".to_string())),
            Just(("Trailer".to_string(), "x-amz-checksum-crc32".to_string())),
            Just(("Upgrade".to_string(), "h2c".to_string())),
            Just(("Proxy-Connection".to_string(), "keep-alive".to_string())),
            Just(("X-Hop".to_string(), "dropped when nominated".to_string())),
            Just(("x-amz-date".to_string(), "20260101T000000Z".to_string())),
        ],
    ]
}

prop_compose! {
    fn request()(
        leading_crlf in 0usize..3,
        method in method(),
        target in target(),
        minor_version in 0u8..2,
        host in "[a-z0-9.-]{1,12}(:[0-9]{1,5})?",
        host_ows in (ows(), ows()),
        fields in proptest::collection::vec((field(), ows(), ows()), 0..8),
        body_kind in 0u8..3,
        body in proptest::collection::vec(any::<u8>(), 0..16),
        expect in any::<bool>(),
    ) -> Generated {
        let mut raw = "\r\n".repeat(leading_crlf);
        raw.push_str(&format!("{} {} HTTP/1.{}\r\n", method.as_str(), target, minor_version));
        raw.push_str(&format!("Host:{}{}{}\r\n", host_ows.0, host, host_ows.1));
        for ((name, value), ows_before, ows_after) in &fields {
            raw.push_str(&format!("{name}:{ows_before}{value}{ows_after}\r\n"));
        }
        // Chunked needs HTTP/1.1; fall back to Content-Length on 1.0.
        let framing = match body_kind {
            0 => BodyFraming::None,
            2 if minor_version == 1 => BodyFraming::Chunked,
            _ => BodyFraming::Length(body.len() as u64),
        };
        match framing {
            BodyFraming::Length(n) => raw.push_str(&format!("Content-Length: {n}\r\n")),
            BodyFraming::Chunked => raw.push_str("Transfer-Encoding: chunked\r\n"),
            _ => {}
        }
        if expect {
            raw.push_str("Expect: 100-continue\r\n");
        }
        raw.push_str("\r\n");
        let head_len = raw.len();
        let mut raw = raw.into_bytes();
        match framing {
            BodyFraming::Length(_) => raw.extend_from_slice(&body),
            BodyFraming::Chunked => raw.extend_from_slice(b"0\r\n\r\n"),
            _ => {}
        }
        Generated { raw, head_len, method, target, minor_version, framing }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let limits = HeadLimits { header_bytes_max: 256, headers_count_max: 8 };
        let _ = parse_request(&bytes, &limits);
        let _ = parse_request(&bytes, &HeadLimits::default());
        let _ = parse_response(&bytes, &limits, Method::Get);
        let mut d = ChunkedDecoder::new(ChunkedLimits { line_bytes_max: 64, trailer_bytes_max: 128, trailers_count_max: 4, payload_bytes_max: u64::MAX }, Peer::Client);
        let mut rest = &bytes[..];
        while let Ok(Some((item, used))) = d.parse(rest) {
            let skip = match item {
                ChunkItem::Data(n) => used.saturating_add(usize::try_from(n).unwrap_or(usize::MAX)),
                ChunkItem::Done => break,
            };
            rest = rest.get(skip..).unwrap_or_default();
        }
    }

    #[test]
    fn structured_garbage_never_panics(
        start in prop_oneof![Just("GET / HTTP/1.1\r\n"), Just("HTTP/1.1 200 OK\r\n"), Just("")],
        // Half the bytes land on the grammar's delimiters so the parsers get deep.
        tail in proptest::collection::vec(any::<u8>(), 0..300).prop_map(|v| {
            const SPECIAL: &[u8] = b"\r\n: \t,;0a\"\\=";
            v.into_iter()
                .map(|b| if b < 128 { SPECIAL[usize::from(b) % SPECIAL.len()] } else { b })
                .collect::<Vec<u8>>()
        }),
    ) {
        let mut bytes = start.as_bytes().to_vec();
        bytes.extend_from_slice(&tail);
        let _ = parse_request(&bytes, &HeadLimits::default());
        let _ = parse_response(&bytes, &HeadLimits::default(), Method::Head);
        let _ = ChunkedDecoder::new(ChunkedLimits::default(), Peer::Upstream).parse(&tail);
    }

    #[test]
    fn generated_requests_parse(g in request()) {
        let (head, used) = parse_request(&g.raw, &HeadLimits::default()).unwrap().unwrap();
        prop_assert_eq!(used, g.head_len);
        prop_assert_eq!(head.method, g.method);
        prop_assert_eq!(&head.target, &g.target);
        prop_assert_eq!(head.minor_version, g.minor_version);
        prop_assert_eq!(head.framing, g.framing);
    }

    #[test]
    fn any_split_gives_none_then_the_same_head(g in request()) {
        let limits = HeadLimits::default();
        let whole = parse_request(&g.raw, &limits).unwrap().unwrap();
        for k in 0..g.head_len {
            prop_assert_eq!(parse_request(&g.raw[..k], &limits), Ok(None), "prefix {}", k);
        }
        for k in g.head_len..=g.raw.len() {
            prop_assert_eq!(parse_request(&g.raw[..k], &limits), Ok(Some(whole.clone())));
        }
    }

    #[test]
    fn write_then_parse_round_trips(g in request()) {
        let limits = HeadLimits::default();
        let (head, _) = parse_request(&g.raw, &limits).unwrap().unwrap();
        let mut out = Vec::new();
        write_request_head(&head, &mut out);
        let (again, used) = parse_request(&out, &limits).unwrap().unwrap();
        prop_assert_eq!(used, out.len());
        let drop = hop_by_hop_filter(&head.headers);
        let end_to_end: Vec<Header> =
            head.headers.iter().filter(|h| !drop(h)).cloned().collect();
        prop_assert_eq!(&again.headers, &end_to_end);
        prop_assert_eq!(again.method, head.method);
        prop_assert_eq!(&again.target, &head.target);
        prop_assert_eq!(again.minor_version, 1);
        prop_assert_eq!(again.framing, head.framing);
        prop_assert!(again.keep_alive);
        if head.minor_version == 1 {
            prop_assert_eq!(again.expect_continue, head.expect_continue);
        }
        // Writing is a fixed point once hop-by-hop fields are gone.
        let mut twice = Vec::new();
        write_request_head(&again, &mut twice);
        prop_assert_eq!(twice, out);
    }

    #[test]
    fn chunked_any_split_is_consistent(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..20), 0..5),
        ext in proptest::option::of("[a-z]{1,5}(=[a-z0-9]{1,5})?"),
        trailer in any::<bool>(),
        split in any::<prop::sample::Index>(),
    ) {
        let mut body = Vec::new();
        for c in &chunks {
            body.extend_from_slice(format!("{:x}", c.len()).as_bytes());
            if let Some(e) = &ext {
                body.extend_from_slice(format!(";{e}").as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            body.extend_from_slice(c);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n");
        if trailer {
            body.extend_from_slice(b"x-amz-checksum-crc32: AAAAAA==\r\n");
        }
        body.extend_from_slice(b"\r\n");

        // Feed framing in two reads at an arbitrary point; payload is skipped like a splice.
        let cut = split.index(body.len() + 1);
        let mut d = ChunkedDecoder::new(ChunkedLimits::default(), Peer::Client);
        let mut pos = 0;
        let mut payload = Vec::new();
        loop {
            let avail = if pos < cut { &body[pos..cut] } else { &body[pos..] };
            match d.parse(avail).unwrap() {
                None => {
                    prop_assert!(pos < cut, "stalled with all bytes available");
                    match d.parse(&body[pos..]).unwrap() {
                        None => prop_assert!(false, "complete body reported incomplete"),
                        Some(item) => {
                            pos = step(item, pos, &body, &mut payload);
                        }
                    }
                }
                Some(item) => pos = step(item, pos, &body, &mut payload),
            }
            if d.is_done() {
                break;
            }
        }
        prop_assert_eq!(pos, body.len());
        prop_assert_eq!(payload, chunks.concat());
    }
}

/// Applies one decoder item to the walk over `body`; returns the new position.
fn step(item: (ChunkItem, usize), pos: usize, body: &[u8], payload: &mut Vec<u8>) -> usize {
    match item {
        (ChunkItem::Data(n), used) => {
            let start = pos + used;
            let end = start + usize::try_from(n).unwrap();
            payload.extend_from_slice(&body[start..end]);
            end
        }
        (ChunkItem::Done, used) => pos + used,
    }
}
