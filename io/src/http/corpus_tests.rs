//! Request-smuggling corpus: classic desync payloads (CL.TE, TE.CL, TE obfuscation, header
//! injection, oversized heads) with the exact status weir must answer. 200 means "parsed";
//! then the framing is checked too, because accepting with the wrong framing is the bug.

use super::*;

/// Expected outcome of one corpus entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Parsed with this framing.
    Ok(BodyFraming),
    /// Rejected with this status.
    Status(u16),
}

fn outcome(raw: &[u8]) -> Option<Want> {
    match parse_request(raw, &HeadLimits::default()) {
        Ok(Some((head, _))) => Some(Want::Ok(head.framing)),
        Ok(None) => None,
        Err(e) => Some(Want::Status(e.status)),
    }
}

const H: &str = "POST /b/k HTTP/1.1\r\nHost: s3.local\r\n";

fn corpus() -> Vec<(&'static str, Vec<u8>, Want)> {
    use BodyFraming::{Chunked, Length};
    use Want::{Ok, Status};
    let req = |fields: &str| format!("{H}{fields}\r\n\r\n").into_bytes();
    vec![
        (
            "CL.TE",
            req("Content-Length: 13\r\nTransfer-Encoding: chunked"),
            Status(400),
        ),
        (
            "TE.CL",
            req("Transfer-Encoding: chunked\r\nContent-Length: 3"),
            Status(400),
        ),
        (
            "TE leading tab (valid OWS)",
            req("Transfer-Encoding:\tchunked"),
            Ok(Chunked),
        ),
        (
            "TE leading tab + CL",
            req("Transfer-Encoding:\tchunked\r\nContent-Length: 3"),
            Status(400),
        ),
        (
            "TE vertical tab before",
            req("Transfer-Encoding:\x0bchunked"),
            Status(400),
        ),
        (
            "TE vertical tab after",
            req("Transfer-Encoding: chunked\x0b"),
            Status(400),
        ),
        (
            "TE form feed",
            req("Transfer-Encoding: \x0cchunked"),
            Status(400),
        ),
        (
            "TE trailing space (OWS)",
            req("Transfer-Encoding: chunked  "),
            Ok(Chunked),
        ),
        (
            "TE space before colon",
            req("Transfer-Encoding : chunked"),
            Status(400),
        ),
        (
            "TE tab before colon",
            req("Transfer-Encoding\t: chunked"),
            Status(400),
        ),
        (
            "TE obs-fold value",
            req("Transfer-Encoding:\r\n chunked"),
            Status(400),
        ),
        (
            "TE as folded line",
            req("X-A: b\r\n Transfer-Encoding: chunked"),
            Status(400),
        ),
        (
            "TE double header",
            req("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked"),
            Status(400),
        ),
        (
            "TE chunked + identity",
            req("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity"),
            Status(400),
        ),
        (
            "TE identity + chunked",
            req("Transfer-Encoding: identity\r\nTransfer-Encoding: chunked"),
            Status(400),
        ),
        (
            "TE list chunked, identity",
            req("Transfer-Encoding: chunked, identity"),
            Status(400),
        ),
        (
            "TE gzip, chunked",
            req("Transfer-Encoding: gzip, chunked"),
            Status(400),
        ),
        (
            "TE xchunked",
            req("Transfer-Encoding: xchunked"),
            Status(400),
        ),
        ("TE chunk", req("Transfer-Encoding: chunk"), Status(400)),
        (
            "TE quoted",
            req("Transfer-Encoding: \"chunked\""),
            Status(400),
        ),
        (
            "TE with parameter",
            req("Transfer-Encoding: chunked;x=1"),
            Status(400),
        ),
        (
            "TE upper case (case-insensitive)",
            req("TRANSFER-ENCODING: CHUNKED"),
            Ok(Chunked),
        ),
        (
            "TE underscore name",
            req("Transfer_Encoding: chunked"),
            Status(400),
        ),
        (
            "TE name with space",
            req("Transfer Encoding: chunked"),
            Status(400),
        ),
        (
            "TE NUL in name",
            req("Transfer-Encoding\0: chunked"),
            Status(400),
        ),
        ("TE empty", req("Transfer-Encoding:"), Status(400)),
        ("CL underscore name", req("Content_Length: 5"), Status(400)),
        (
            "CL differing duplicates",
            req("Content-Length: 5\r\nContent-Length: 6"),
            Status(400),
        ),
        (
            "CL identical duplicates",
            req("Content-Length: 5\r\nContent-Length: 5"),
            Ok(Length(5)),
        ),
        (
            "CL differing list",
            req("Content-Length: 5, 6"),
            Status(400),
        ),
        (
            "CL identical list",
            req("Content-Length: 5,5"),
            Ok(Length(5)),
        ),
        (
            "CL empty list element",
            req("Content-Length: 5,"),
            Status(400),
        ),
        ("CL plus sign", req("Content-Length: +5"), Status(400)),
        ("CL negative", req("Content-Length: -1"), Status(400)),
        ("CL hex", req("Content-Length: 0x5"), Status(400)),
        ("CL inner space", req("Content-Length: 1 0"), Status(400)),
        ("CL NUL", req("Content-Length: 5\0"), Status(400)),
        (
            "CL overflow",
            req("Content-Length: 99999999999999999999"),
            Status(400),
        ),
        ("CL OWS", req("Content-Length:\t 5 "), Ok(Length(5))),
        (
            "Connection drops CL",
            req("Content-Length: 5\r\nConnection: Content-Length"),
            Status(400),
        ),
        (
            "Connection drops TE",
            req("Transfer-Encoding: chunked\r\nConnection: transfer-encoding"),
            Status(400),
        ),
        (
            "Connection drops Host",
            req("Connection: host"),
            Status(400),
        ),
        ("NUL in value", req("X-A: a\0b"), Status(400)),
        ("CR in value", req("X-A: a\rb"), Status(400)),
        ("DEL in value", req("X-A: a\x7fb"), Status(400)),
        ("header name with space", req("X A: b"), Status(400)),
        ("empty header name", req(": b"), Status(400)),
        ("double Host", req("Host: evil"), Status(400)),
        (
            "Host with userinfo",
            b"POST / HTTP/1.1\r\nHost: a@b\r\n\r\n".to_vec(),
            Status(400),
        ),
        (
            "bare LF head",
            b"POST / HTTP/1.1\nHost: h\nContent-Length: 0\n\n".to_vec(),
            Status(400),
        ),
        ("bare LF terminator", req("X-A: b\n"), Status(400)),
        (
            "bare CR line end",
            b"POST / HTTP/1.1\rHost: h\r\n\r\n".to_vec(),
            Status(400),
        ),
        (
            "HTTP/1.0 + TE",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            Status(400),
        ),
        (
            "absolute-form target",
            b"GET http://evil/ HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            Status(400),
        ),
        (
            "fragment in target",
            b"GET /a#/../b HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            Status(400),
        ),
        (
            "double space request line",
            b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            Status(400),
        ),
        (
            "h2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            Status(505),
        ),
        (
            "unknown method",
            b"PATCH / HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            Status(501),
        ),
        (
            "CONNECT",
            b"CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            Status(501),
        ),
        (
            "bad method",
            b"G<T / HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            Status(400),
        ),
        // Expectations other than 100-continue are the node's to judge.
        (
            "odd Expect",
            req("Expect: 101-switch"),
            Ok(BodyFraming::None),
        ),
        (
            "65 KiB header",
            req(&format!("X-Big: {}", "a".repeat(65 * 1024))),
            Status(431),
        ),
        (
            "too many headers",
            req("X-A: b\r\n".repeat(128).trim_end()),
            Status(431),
        ),
        (
            "obs-text value",
            req("X-A: caf\u{e9}"),
            Ok(BodyFraming::None),
        ),
        (
            "GET with chunked body",
            b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            Ok(Chunked),
        ),
    ]
}

#[test]
fn smuggling_corpus_statuses() {
    let mut failures = Vec::new();
    for (name, raw, want) in corpus() {
        let got = outcome(&raw);
        if got != Some(want) {
            failures.push(format!("{name}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn pipelined_request_is_not_swallowed() {
    let raw = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /admin HTTP/1.1\r\nHost: h\r\n\r\n";
    let (head, n) = parse_request(raw, &HeadLimits::default()).unwrap().unwrap();
    assert_eq!(head.target, "/a");
    let (next, m) = parse_request(&raw[n..], &HeadLimits::default())
        .unwrap()
        .unwrap();
    assert_eq!(next.target, "/admin");
    assert_eq!(n + m, raw.len());
}

/// Walks a chunked body; `Ok(n)` = framing ended after `n` bytes, `Err(status)` otherwise.
fn walk_chunked(body: &[u8]) -> Result<usize, u16> {
    let mut d = ChunkedDecoder::new(ChunkedLimits::default(), Peer::Client);
    let mut pos = 0usize;
    loop {
        match d.parse(&body[pos..]) {
            Ok(Some((ChunkItem::Data(n), used))) => {
                pos += used + usize::try_from(n).map_err(|_| 0u16)?;
                if pos > body.len() {
                    return Err(0);
                }
            }
            Ok(Some((ChunkItem::Done, used))) => return Ok(pos + used),
            Ok(None) => return Err(0),
            Err(e) => return Err(e.status),
        }
    }
}

#[test]
fn chunked_body_corpus() {
    let cases: &[(&str, &[u8], Result<usize, u16>)] = &[
        ("plain", b"3\r\nabc\r\n0\r\n\r\n", Ok(13)),
        (
            "stops before next request",
            b"0\r\n\r\nGET / HTTP/1.1\r\n",
            Ok(5),
        ),
        ("size with LF only", b"3\nabc\r\n0\r\n\r\n", Err(400)),
        ("data ends with LF only", b"3\r\nabc\n0\r\n\r\n", Err(400)),
        ("ext with bare LF", b"3;a\nb\r\nabc\r\n0\r\n\r\n", Err(400)),
        ("size 0x", b"0x3\r\nabc\r\n0\r\n\r\n", Err(400)),
        ("size with space", b"3 \r\nabc\r\n0\r\n\r\n", Err(400)),
        ("size leading space", b" 3\r\nabc\r\n0\r\n\r\n", Err(400)),
        ("size overflow", b"fffffffffffffffff\r\n", Err(400)),
        ("size negative", b"-3\r\nabc\r\n0\r\n\r\n", Err(400)),
        (
            "missing CRLF after data",
            b"3\r\nabcd\r\n0\r\n\r\n",
            Err(400),
        ),
        (
            "TE in trailer",
            b"0\r\nTransfer-Encoding: chunked\r\n\r\n",
            Err(400),
        ),
        (
            "CL in trailer",
            b"0\r\nContent-Length: 10\r\n\r\n",
            Err(400),
        ),
        ("folded trailer", b"0\r\nX: a\r\n b\r\n\r\n", Err(400)),
        (
            "aws-chunked style ext",
            b"3;chunk-signature=ab12\r\nabc\r\n0;chunk-signature=cd34\r\n\r\n",
            Ok(55),
        ),
    ];
    for (name, body, want) in cases {
        assert_eq!(walk_chunked(body), *want, "{name}");
    }
}
