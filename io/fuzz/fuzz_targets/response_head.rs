//! [`parse_response`] on the bytes a storage node sends, for each request method, with
//! several [`HeadLimits`], and [`write_response_head`] on every head it accepts.
//!
//! The input is a harness line, then the node's bytes (`weir_io_fuzz::Input`). The harness
//! line is `split [header_bytes_max [headers_count_max]]`, as for `request_head`.
//!
//! Checked, beyond "never panics":
//! - feeding the bytes in two pieces gives the same answer as feeding them whole
//!   (`Ok(None)` for a prefix of an accepted head), also cut just before CRLF CRLF;
//! - an accepted head's `consumed` is within the input and `header_bytes_max`, it ends
//!   with CRLF CRLF, and it holds what the node sent (status line byte for byte, every
//!   field line in order);
//! - the status is 100..=599 and never 101; answers to HEAD, 1xx, 204 and 304 are
//!   bodiless; otherwise chunked when `Transfer-Encoding` ends in the one `chunked`, a
//!   length when every `Content-Length` element is that number, else until close; never
//!   both framing fields; a body framed by close never keeps the connection;
//! - what `write_response_head` makes for the client, with and without `close`: CRLF
//!   lines, no hop-by-hop field (only weir's own `Connection: close`), at most one
//!   `Content-Length`, never with `Transfer-Encoding`; parsed again for the same method it
//!   gives the same status, reason and framing, HTTP/1.1, exactly the end-to-end fields,
//!   and keeps the connection exactly when not told to close and not framed by close;
//! - every error is a 502 `BadGateway` (the node's fault, never the client's).

#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_io::http::{
    parse_response, write_response_head, BodyFraming, HeadError, HeadLimits, Header, Method,
    ResponseHead,
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

const METHODS: [Method; 6] = [
    Method::Get,
    Method::Head,
    Method::Put,
    Method::Post,
    Method::Delete,
    Method::Options,
];

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    let split = input.split_point(0);
    let chosen = input.capped(1, 1 << 16).map(|header_bytes_max| HeadLimits {
        header_bytes_max,
        headers_count_max: input.capped(2, 1024).unwrap_or(128),
    });
    for limits in LIMITS.iter().chain(chosen.iter()) {
        for method in METHODS {
            check(input.message, limits, method, split);
        }
    }
});

type Parsed = Result<Option<(ResponseHead, usize)>, HeadError>;

fn check(bytes: &[u8], limits: &HeadLimits, method: Method, split: usize) {
    let whole = parse_response(bytes, limits, method);
    in_two_pieces(bytes, limits, method, split, &whole);
    match &whole {
        Ok(Some((head, consumed))) => {
            let n = *consumed;
            for cut in [n - 4, n - 3, n - 2, n - 1, n] {
                in_two_pieces(bytes, limits, method, cut, &whole);
            }
            accepted(bytes, limits, method, head, n);
        }
        Ok(None) => assert!(bytes.len() <= limits.header_bytes_max),
        Err(e) => {
            assert_eq!((e.status, e.code), (502, "BadGateway"), "{e:?}");
            assert!(e.is_upstream() && !e.message.is_empty());
        }
    }
}

fn in_two_pieces(bytes: &[u8], limits: &HeadLimits, method: Method, cut: usize, whole: &Parsed) {
    let part = parse_response(&bytes[..cut], limits, method);
    match whole {
        Ok(Some((_, n))) if cut < *n => assert_eq!(part, Ok(None), "cut at {cut} of {n}"),
        Ok(Some(_)) | Ok(None) => assert_eq!(&part, whole, "cut at {cut}"),
        Err(_) => assert!(part == Ok(None) || &part == whole, "cut at {cut}: {part:?}"),
    }
}

fn accepted(bytes: &[u8], limits: &HeadLimits, method: Method, head: &ResponseHead, n: usize) {
    assert!(n <= bytes.len() && n <= limits.header_bytes_max);
    assert!(bytes[..n].ends_with(b"\r\n\r\n"));
    assert!(head.headers.len() <= limits.headers_count_max);

    assert!((100..=599).contains(&head.status) && head.status != 101);
    assert!(head.minor_version <= 1);
    let status_line = format!("HTTP/1.{} {:03}", head.minor_version, head.status);
    assert!(bytes.starts_with(status_line.as_bytes()));
    let line_end = bytes.iter().position(|&b| b == b'\r').expect("a CRLF");
    let reason = match &bytes[status_line.len()..line_end] {
        [] => &[][..],
        [b' ', reason @ ..] => reason,
        other => panic!("status line goes on with {other:?}"),
    };
    assert_eq!(head.reason, String::from_utf8_lossy(reason));
    let sent = written_fields(&bytes[..n]);
    assert_eq!(sent.len(), head.headers.len());
    for ((name, value), h) in sent.iter().zip(&head.headers) {
        assert_eq!((*name, *value), (h.name.as_bytes(), h.value.as_slice()));
    }
    check_fields(&head.headers);

    check_framing(head, method);
    let options = connection_options(&head.headers);
    let has = |o: &str| options.iter().any(|x| x == o.as_bytes());
    let keep_alive = !has("close")
        && (head.minor_version == 1 || has("keep-alive"))
        && head.framing != BodyFraming::UntilClose;
    assert_eq!(head.keep_alive, keep_alive);
    assert_eq!(head.is_informational(), head.status < 200);

    for close in [false, true] {
        round_trip(head, method, &options, close);
    }
}

fn check_framing(head: &ResponseHead, method: Method) {
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
    let chunked = |c: &[u8]| c.eq_ignore_ascii_case(b"chunked");
    if !codings.is_empty() {
        assert_eq!(head.minor_version, 1);
        assert!(codings.last().is_some_and(|c| chunked(c)));
        assert_eq!(codings.iter().filter(|c| chunked(c)).count(), 1);
    }
    for l in &lengths {
        assert!(!l.is_empty() && l.iter().all(u8::is_ascii_digit));
    }
    let length = lengths
        .first()
        .map(|l| std::str::from_utf8(l).unwrap().parse::<u64>().unwrap());
    for l in &lengths {
        assert_eq!(std::str::from_utf8(l).unwrap().parse::<u64>().ok(), length);
    }
    let bodiless = method == Method::Head || head.status < 200 || [204, 304].contains(&head.status);
    let framing = match (bodiless, codings.is_empty(), length) {
        (true, _, _) => BodyFraming::None,
        (false, false, _) => BodyFraming::Chunked,
        (false, true, Some(n)) => BodyFraming::Length(n),
        (false, true, None) => BodyFraming::UntilClose,
    };
    assert_eq!(head.framing, framing);
}

fn round_trip(head: &ResponseHead, method: Method, options: &[Vec<u8>], close: bool) {
    let mut out = Vec::new();
    write_response_head(head, close, &mut out);
    check_written(&out, options, close);
    let limits = HeadLimits {
        header_bytes_max: out.len(),
        headers_count_max: head.headers.len() + 1,
    };
    let (again, used) = match parse_response(&out, &limits, method) {
        Ok(Some(parsed)) => parsed,
        other => panic!(
            "weir refuses the head it wrote: {other:?}\n{}",
            String::from_utf8_lossy(&out)
        ),
    };
    assert_eq!(used, out.len());
    assert_eq!(again.status, head.status);
    assert_eq!(again.reason, head.reason);
    assert_eq!(again.minor_version, 1);
    assert_eq!(again.framing, head.framing);
    let mut fields = forwarded(&head.headers);
    if close {
        fields.push(Header::new("Connection", "close"));
    }
    assert_eq!(again.headers, fields);
    assert_eq!(
        again.keep_alive,
        !close && head.framing != BodyFraming::UntilClose
    );
}
