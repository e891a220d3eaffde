//! [`parse_request`] on the bytes a client sends, with several [`HeadLimits`], and
//! [`write_request_head`] on every head it accepts.
//!
//! The input is a harness line, then the client's bytes (`weir_io_fuzz::Input`). The
//! harness line is `split [header_bytes_max [headers_count_max]]`: where the bytes are cut
//! in two pieces, and limits to try besides the fixed ones (the defaults, 256 bytes and 8
//! fields, 64 bytes and 2 fields).
//!
//! Checked, beyond "never panics":
//! - feeding the bytes in two pieces (parse the first, then parse all of them, as the
//!   relay does after `Ok(None)`) gives the same answer as feeding them whole: `Ok(None)`
//!   for a prefix of an accepted head, the same head or the same error otherwise; so do
//!   the cuts just before the final CRLF CRLF;
//! - an accepted head's `consumed` is within the input and within `header_bytes_max`, and
//!   the head ends with CRLF CRLF; at most `headers_count_max` fields;
//! - the head holds what the client sent: the request line byte for byte, every field
//!   line in order (name as sent, value without surrounding whitespace), a target in
//!   origin form, token names, values without control bytes, exactly one valid `Host`;
//! - framing: never both `Content-Length` and `Transfer-Encoding`; chunked only as the one
//!   coding `chunked` on HTTP/1.1; a length only when every `Content-Length` element is
//!   that number; keep-alive and `Expect: 100-continue` as RFC 9112 §9.3 and RFC 9110
//!   §10.1.1 say;
//! - what `write_request_head` makes for the node: CRLF lines, no hop-by-hop field (the
//!   fixed ones, `Proxy-Authorization` included, and any field a `Connection` option
//!   names), at most one `Content-Length`, never with `Transfer-Encoding`; parsed again it
//!   gives the same method, target, framing and `Expect`, HTTP/1.1, keep-alive, and
//!   exactly the end-to-end fields (duplicate lengths collapsed); writing that again gives
//!   the same bytes;
//! - every error is one of the codec's statuses with its S3 code.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_io::http::{
    parse_request, write_request_head, BodyFraming, HeadError, HeadLimits, RequestHead,
};
use weir_io_fuzz::{
    check_fields, check_written, connection_options, forwarded, list, named, written_fields, Input,
};

const LIMITS: [HeadLimits; 3] = [
    HeadLimits {
        header_bytes_max: 16 * 1024,
        headers_count_max: 128,
    },
    HeadLimits {
        header_bytes_max: 256,
        headers_count_max: 8,
    },
    HeadLimits {
        header_bytes_max: 64,
        headers_count_max: 2,
    },
];

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    let split = input.split_point(0);
    let chosen = input.capped(1, 1 << 16).map(|header_bytes_max| HeadLimits {
        header_bytes_max,
        headers_count_max: input.capped(2, 1024).unwrap_or(128),
    });
    for limits in LIMITS.iter().chain(chosen.iter()) {
        check(input.message, limits, split);
    }
});

type Parsed = Result<Option<(RequestHead, usize)>, HeadError>;

fn check(bytes: &[u8], limits: &HeadLimits, split: usize) {
    let whole = parse_request(bytes, limits);
    in_two_pieces(bytes, limits, split, &whole);
    match &whole {
        Ok(Some((head, consumed))) => {
            let n = *consumed;
            for cut in [n - 4, n - 3, n - 2, n - 1, n] {
                in_two_pieces(bytes, limits, cut, &whole);
            }
            accepted(bytes, limits, head, n);
        }
        Ok(None) => assert!(bytes.len() <= limits.header_bytes_max),
        Err(e) => {
            let code = match e.status {
                400 => "InvalidRequest",
                431 => "RequestHeaderSectionTooLarge",
                501 => "NotImplemented",
                505 => "HttpVersionNotSupported",
                other => panic!("status {other} for a client head: {e:?}"),
            };
            assert_eq!(e.code, code);
            assert!(!e.message.is_empty());
        }
    }
}

/// The first `cut` bytes alone, as the relay parses them before the rest arrives.
fn in_two_pieces(bytes: &[u8], limits: &HeadLimits, cut: usize, whole: &Parsed) {
    let part = parse_request(&bytes[..cut], limits);
    match whole {
        Ok(Some((_, n))) if cut < *n => assert_eq!(part, Ok(None), "cut at {cut} of {n}"),
        Ok(Some(_)) | Ok(None) => assert_eq!(&part, whole, "cut at {cut}"),
        Err(_) => assert!(part == Ok(None) || &part == whole, "cut at {cut}: {part:?}"),
    }
}

fn accepted(bytes: &[u8], limits: &HeadLimits, head: &RequestHead, n: usize) {
    assert!(n <= bytes.len() && n <= limits.header_bytes_max);
    assert!(bytes[..n].ends_with(b"\r\n\r\n"));
    assert!(head.headers.len() <= limits.headers_count_max);

    // What was sent: leading empty lines, then the request line and the field lines.
    let mut lead = 0;
    while bytes[lead..].starts_with(b"\r\n") {
        lead += 2;
    }
    let request_line = format!(
        "{} {} HTTP/1.{}\r\n",
        head.method.as_str(),
        head.target,
        head.minor_version
    );
    assert!(bytes[lead..].starts_with(request_line.as_bytes()));
    assert!(head.minor_version <= 1);
    let target = head.target.as_bytes();
    assert!(target.starts_with(b"/"));
    assert!(target
        .iter()
        .all(|&b| (0x21..=0x7e).contains(&b) && b != b'#'));
    let sent = written_fields(&bytes[lead..n]);
    assert_eq!(sent.len(), head.headers.len());
    for ((name, value), h) in sent.iter().zip(&head.headers) {
        assert_eq!((*name, *value), (h.name.as_bytes(), h.value.as_slice()));
    }
    check_fields(&head.headers);
    let hosts: Vec<_> = named(&head.headers, "host").collect();
    assert_eq!(hosts.len(), 1);
    assert!(!hosts[0].value.is_empty());

    check_framing(head);
    let options = connection_options(&head.headers);
    for forbidden in ["content-length", "transfer-encoding", "host"] {
        assert!(!options.iter().any(|o| o == forbidden.as_bytes()));
    }
    let has = |o: &str| options.iter().any(|x| x == o.as_bytes());
    let keep_alive = !has("close") && (head.minor_version == 1 || has("keep-alive"));
    assert_eq!(head.keep_alive, keep_alive);
    let expects = named(&head.headers, "expect")
        .flat_map(|h| list(&h.value))
        .any(|e| e.eq_ignore_ascii_case(b"100-continue"));
    assert_eq!(head.expect_continue, expects && head.minor_version == 1);

    round_trip(head, &options);
}

/// The framing against the framing fields, read here on their own.
fn check_framing(head: &RequestHead) {
    let lengths: Vec<&[u8]> = named(&head.headers, "content-length")
        .flat_map(|h| list(&h.value))
        .collect();
    let codings: Vec<&[u8]> = named(&head.headers, "transfer-encoding")
        .flat_map(|h| list(&h.value))
        .collect();
    assert!(
        lengths.is_empty() || codings.is_empty(),
        "accepted both Content-Length and Transfer-Encoding"
    );
    match head.framing {
        BodyFraming::None => assert!(lengths.is_empty() && codings.is_empty()),
        BodyFraming::Chunked => {
            assert_eq!(head.minor_version, 1);
            assert_eq!(codings.len(), 1);
            assert!(codings[0].eq_ignore_ascii_case(b"chunked"));
        }
        BodyFraming::Length(n) => {
            assert!(!lengths.is_empty());
            for l in lengths {
                assert!(!l.is_empty() && l.iter().all(u8::is_ascii_digit));
                assert_eq!(std::str::from_utf8(l).unwrap().parse::<u64>(), Ok(n));
            }
        }
        BodyFraming::UntilClose => panic!("a request framed by close"),
    }
}

/// What the node gets: written, checked on its own, then parsed again.
fn round_trip(head: &RequestHead, options: &[Vec<u8>]) {
    let mut out = Vec::new();
    write_request_head(head, &mut out);
    check_written(&out, options, false);
    let limits = HeadLimits {
        header_bytes_max: out.len(),
        headers_count_max: head.headers.len(),
    };
    let (again, used) = match parse_request(&out, &limits) {
        Ok(Some(parsed)) => parsed,
        other => panic!(
            "weir refuses the head it wrote: {other:?}\n{}",
            String::from_utf8_lossy(&out)
        ),
    };
    assert_eq!(used, out.len());
    assert_eq!(again.method, head.method);
    assert_eq!(again.target, head.target);
    assert_eq!(again.minor_version, 1);
    assert_eq!(again.framing, head.framing);
    assert_eq!(again.headers, forwarded(&head.headers));
    assert!(again.keep_alive);
    if head.minor_version == 1 {
        assert_eq!(again.expect_continue, head.expect_continue);
    }
    let mut twice = Vec::new();
    write_request_head(&again, &mut twice);
    assert_eq!(twice, out, "writing is not a fixed point");
}
