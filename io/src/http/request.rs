//! Request heads: the request line, `Host`, `Expect` and request framing (RFC 9112 §3, §6).
//!
//! The relay calls [`parse_request`] on the bytes read so far; `Ok(None)` means read more.

use super::fields::{self, connection_options, content_length, transfer_encoding};
use super::syntax::{find_head, head_lines, is_token};
use super::{BodyFraming, HeadError, HeadLimits, Header, Method, Peer};

/// A parsed, validated request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The request method (only S3's methods parse).
    pub method: Method,
    /// The raw origin-form request-target (`/path?query`), visible ASCII only.
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Every header field line in order, names in original case.
    pub headers: Vec<Header>,
    /// How the request body is delimited.
    pub framing: BodyFraming,
    /// Whether the client connection may carry another request after this one.
    pub keep_alive: bool,
    /// The client sent `Expect: 100-continue` on HTTP/1.1 and waits before the body.
    pub expect_continue: bool,
}

impl RequestHead {
    /// The first value of `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.is(name))
            .map(|h| h.value.as_slice())
    }

    /// Every value of `name` in order (ASCII case-insensitive).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.is(name))
            .map(|h| h.value.as_slice())
    }

    /// The `Host` value (validated `host[:port]` characters), if any.
    pub fn host(&self) -> Option<&str> {
        self.header("host")
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The target up to the first `?`.
    pub fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target.as_str(), |(p, _)| p)
    }

    /// The target after the first `?` (`Some("")` for a bare `?`).
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }
}

/// Parses a request head at the start of `buf`.
///
/// `Ok(None)`: the head is incomplete, read more. `Ok(Some((head, n)))`: the first `n` bytes
/// were the head (leading empty lines included); the body, if any, starts at `buf[n]`.
/// Errors carry the status for the client (400, 431, 501, 505).
pub fn parse_request(
    buf: &[u8],
    limits: &HeadLimits,
) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let peer = Peer::Client;
    let Some((start, end)) = find_head(buf, limits.header_bytes_max, peer, true)? else {
        return Ok(None);
    };
    let mut lines = head_lines(&buf[start..end]);
    let request_line = lines.next().unwrap_or_default();
    let (method, target, minor_version) = parse_request_line(request_line)?;
    let headers = fields::parse_fields(lines, limits.headers_count_max, peer)?;

    check_host(&headers)?;
    let length = content_length(&headers, peer)?;
    let chunked = transfer_encoding(&headers, peer, minor_version)?;
    let framing = match (chunked, length) {
        (true, Some(_)) => {
            return Err(HeadError::bad_request(
                "both Content-Length and Transfer-Encoding",
            ))
        }
        (true, None) => BodyFraming::Chunked,
        (false, Some(cl)) => BodyFraming::Length(cl.value),
        (false, None) => BodyFraming::None,
    };
    let keep_alive = fields::keep_alive(minor_version, connection_options(&headers, peer)?);
    let expect_continue = expects_continue(&headers) && minor_version == 1;

    let head = RequestHead {
        method,
        target,
        minor_version,
        headers,
        framing,
        keep_alive,
        expect_continue,
    };
    Ok(Some((head, end)))
}

/// `method SP request-target SP HTTP-version`, single spaces, nothing else.
fn parse_request_line(line: &[u8]) -> Result<(Method, String, u8), HeadError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::bad_request(
            "request line must be `method SP target SP version`",
        ));
    };
    if !is_token(method) {
        return Err(HeadError::bad_request("invalid method token"));
    }
    let minor_version = parse_version(version, Peer::Client)?;
    let Some(method) = Method::from_token(method) else {
        return Err(HeadError::not_implemented(format!(
            "method {} is not implemented",
            String::from_utf8_lossy(method)
        )));
    };
    let target = parse_target(target)?;
    Ok((method, target, minor_version))
}

/// `HTTP/1.0` → 0, `HTTP/1.1` → 1; another well-formed version is a 505 from a client.
pub(crate) fn parse_version(version: &[u8], peer: Peer) -> Result<u8, HeadError> {
    let [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] = *version else {
        return Err(HeadError::malformed(peer, "invalid HTTP version"));
    };
    if !major.is_ascii_digit() || !minor.is_ascii_digit() {
        return Err(HeadError::malformed(peer, "invalid HTTP version"));
    }
    match (major, minor) {
        (b'1', b'0') => Ok(0),
        (b'1', b'1') => Ok(1),
        _ => {
            let message = format!("HTTP/{}.{} is not supported", major as char, minor as char);
            Err(match peer {
                Peer::Client => HeadError::version_not_supported(message),
                Peer::Upstream => HeadError::bad_gateway(message),
            })
        }
    }
}

/// Origin-form only: `/` then visible ASCII without `#`. Absolute-, authority- and
/// asterisk-form are refused because S3 clients never send them to a gateway.
fn parse_target(target: &[u8]) -> Result<String, HeadError> {
    if target.first() != Some(&b'/') {
        return Err(HeadError::bad_request(
            "request target must be origin-form (start with /)",
        ));
    }
    // '#' never belongs in a request-target; two parsers could split it differently.
    if let Some(&bad) = target
        .iter()
        .find(|&&b| !(0x21..=0x7e).contains(&b) || b == b'#')
    {
        return Err(HeadError::bad_request(format!(
            "byte 0x{bad:02x} not allowed in request target"
        )));
    }
    // Visible ASCII is valid UTF-8.
    Ok(String::from_utf8_lossy(target).into_owned())
}

/// Exactly one `Host`, non-empty `host[:port]` characters. HTTP/1.0 does not require it,
/// but S3 does: the bucket may be in it and SigV4 signs it, so a request without one
/// would reach the node with a meaning weir did not decide on.
fn check_host(headers: &[Header]) -> Result<(), HeadError> {
    let mut hosts = headers.iter().filter(|h| h.is("host"));
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(HeadError::bad_request("more than one Host field"));
    }
    let Some(host) = first else {
        return Err(HeadError::bad_request("missing Host field"));
    };
    let valid = !host.value.is_empty()
        && host.value.iter().all(|&b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.'
                        | b'_'
                        | b'~'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'\''
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b';'
                        | b'='
                        | b':'
                        | b'['
                        | b']'
                        | b'%'
                )
        });
    if !valid {
        return Err(HeadError::bad_request("invalid Host field"));
    }
    Ok(())
}

/// Whether the client expects `100-continue` (one element of any `Expect` field, case
/// aside). weir acts on that expectation only: any other value (`Expect: 200`, an empty
/// field) is forwarded untouched for the node to judge, as S3 servers accept them.
fn expects_continue(headers: &[Header]) -> bool {
    headers
        .iter()
        .filter(|h| h.is("expect"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .any(|e| e.trim_ascii().eq_ignore_ascii_case(b"100-continue"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Option<(RequestHead, usize)>, HeadError> {
        parse_request(s.as_bytes(), &HeadLimits::default())
    }

    fn status(s: &str) -> u16 {
        match parse(s) {
            Err(e) => e.status,
            Ok(Some(_)) => 200,
            Ok(None) => 0,
        }
    }

    fn ok(s: &str) -> RequestHead {
        match parse(s) {
            Ok(Some((h, n))) => {
                assert_eq!(n, s.len(), "whole input is the head");
                h
            }
            other => panic!("expected a head, got {other:?}"),
        }
    }

    #[test]
    fn simple_get() {
        let h = ok(
            "GET /bucket/key?uploads&x=1 HTTP/1.1\r\nHost: s3.local:9000\r\nX-Amz-Date: 1\r\n\r\n",
        );
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.path(), "/bucket/key");
        assert_eq!(h.query(), Some("uploads&x=1"));
        assert_eq!(h.host(), Some("s3.local:9000"));
        assert_eq!(h.header("x-amz-date"), Some(&b"1"[..]));
        assert_eq!(h.headers[1].name, "X-Amz-Date");
        assert_eq!(h.framing, BodyFraming::None);
        assert!(h.keep_alive);
        assert!(!h.expect_continue);
    }

    #[test]
    fn consumed_excludes_body_and_includes_leading_crlf() {
        let s = "\r\nPUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
        let (h, n) = parse(s).unwrap().unwrap();
        assert_eq!(&s[n..], "abc");
        assert_eq!(h.framing, BodyFraming::Length(3));
    }

    #[test]
    fn incomplete_head_is_none() {
        assert_eq!(status("GET / HTTP/1.1\r\nHost: h\r\n"), 0);
        assert_eq!(status(""), 0);
    }

    #[test]
    fn bare_lf_is_400() {
        assert_eq!(status("GET / HTTP/1.1\nHost: h\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: h\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: h\r\n\n"), 400);
        // Detected before the head is complete, so the client gets an answer.
        assert_eq!(status("GET / HTTP/1.1\n"), 400);
    }

    #[test]
    fn cl_and_te_is_400() {
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
    }

    #[test]
    fn differing_content_lengths_are_400() {
        assert_eq!(
            status("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
            400
        );
        assert_eq!(
            status("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 4\r\n\r\n"),
            400
        );
    }

    #[test]
    fn identical_content_lengths_are_ok() {
        let h = ok("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Length(3));
        let h = ok("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 3 ,3\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Length(3));
    }

    #[test]
    fn content_length_not_digits_is_400() {
        for v in ["+3", "-1", "3a", "0x3", "", "3 3", "3,", "1e3"] {
            assert_eq!(
                status(&format!(
                    "PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: {v}\r\n\r\n"
                )),
                400,
                "{v:?}"
            );
        }
    }

    #[test]
    fn content_length_overflow_is_400() {
        assert_eq!(
            status("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551616\r\n\r\n"),
            400
        );
        let h = ok("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Length(u64::MAX));
    }

    #[test]
    fn transfer_encoding_other_than_chunked_is_400() {
        for v in [
            "gzip, chunked",
            "chunked, gzip",
            "xchunked",
            "chunked;x",
            "chunked, chunked",
            "identity",
            "",
            "chunked,",
        ] {
            assert_eq!(
                status(&format!(
                    "PUT / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {v}\r\n\r\n"
                )),
                400,
                "{v:?}"
            );
        }
    }

    #[test]
    fn transfer_encoding_chunked_with_ows_is_ok() {
        for v in ["chunked", "CHUNKED", "\tchunked", "chunked \t", "  Chunked"] {
            let h = ok(&format!(
                "PUT / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:{v}\r\n\r\n"
            ));
            assert_eq!(h.framing, BodyFraming::Chunked, "{v:?}");
        }
    }

    #[test]
    fn http10_with_transfer_encoding_is_400() {
        assert_eq!(
            status("PUT / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
    }

    #[test]
    fn obs_fold_is_400() {
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n"),
            400
        );
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tb\r\n\r\n"),
            400
        );
        // Whitespace before the first field line (RFC 9112 §2.2).
        assert_eq!(status("GET / HTTP/1.1\r\n Host: h\r\n\r\n"), 400);
    }

    #[test]
    fn invalid_header_name_is_400() {
        for name in ["X A", "X\"A", "X(A)", "", "X\x01A", "é"] {
            assert_eq!(
                status(&format!("GET / HTTP/1.1\r\nHost: h\r\n{name}: v\r\n\r\n")),
                400,
                "{name:?}"
            );
        }
        assert_eq!(status("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n"), 400);
    }

    #[test]
    fn ctl_in_header_value_is_400() {
        for v in ["a\0b", "a\x0bb", "a\x7fb", "a\x1bb"] {
            assert_eq!(
                status(&format!("GET / HTTP/1.1\r\nHost: h\r\nX-A: {v}\r\n\r\n")),
                400,
                "{v:?}"
            );
        }
        // HTAB and obs-text are fine.
        let h = ok("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\tb\u{e9}\r\n\r\n");
        assert_eq!(h.header("x-a"), Some("a\tb\u{e9}".as_bytes()));
    }

    #[test]
    fn cr_inside_header_value_is_400() {
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n"),
            400
        );
    }

    #[test]
    fn oversized_head_is_431() {
        let limits = HeadLimits {
            header_bytes_max: 64,
            headers_count_max: 128,
        };
        let big = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX-A: {}\r\n\r\n",
            "a".repeat(64)
        );
        let err = parse_request(big.as_bytes(), &limits).unwrap_err();
        assert_eq!(
            (err.status, err.code),
            (431, "RequestHeaderSectionTooLarge")
        );
        // Also while still incomplete, once more than the limit has arrived.
        let err = parse_request(&big.as_bytes()[..65], &limits).unwrap_err();
        assert_eq!(err.status, 431);
        assert_eq!(parse_request(&big.as_bytes()[..64], &limits), Ok(None));
    }

    #[test]
    fn too_many_headers_is_431() {
        let limits = HeadLimits {
            header_bytes_max: 16 * 1024,
            headers_count_max: 3,
        };
        let at = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
        assert!(parse_request(at.as_bytes(), &limits).unwrap().is_some());
        let over = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        let err = parse_request(over.as_bytes(), &limits).unwrap_err();
        assert_eq!(
            (err.status, err.code),
            (431, "RequestHeaderSectionTooLarge")
        );
    }

    #[test]
    fn unknown_valid_methods_are_501() {
        for m in ["PATCH", "TRACE", "CONNECT", "PROPFIND", "get", "X-CUSTOM"] {
            let err = parse(&format!("{m} / HTTP/1.1\r\nHost: h\r\n\r\n")).unwrap_err();
            assert_eq!((err.status, err.code), (501, "NotImplemented"), "{m}");
        }
    }

    #[test]
    fn bad_method_token_is_400() {
        for m in ["G(ET", "GE\"T", "G\x01T", "GÉT"] {
            assert_eq!(
                status(&format!("{m} / HTTP/1.1\r\nHost: h\r\n\r\n")),
                400,
                "{m:?}"
            );
        }
    }

    #[test]
    fn other_versions_are_505() {
        for v in ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.0"] {
            let err = parse(&format!("GET / {v}\r\nHost: h\r\n\r\n")).unwrap_err();
            assert_eq!(
                (err.status, err.code),
                (505, "HttpVersionNotSupported"),
                "{v}"
            );
        }
    }

    #[test]
    fn malformed_versions_are_400() {
        for v in [
            "http/1.1",
            "HTTP/1.10",
            "HTTP/1",
            "HTTP/a.b",
            "HTTP/1.1x",
            "HTTPS/1.1",
        ] {
            assert_eq!(status(&format!("GET / {v}\r\nHost: h\r\n\r\n")), 400, "{v}");
        }
        // HTTP/0.9 simple request line.
        assert_eq!(status("GET /\r\n\r\n"), 400);
    }

    #[test]
    fn whitespace_before_colon_is_400() {
        assert_eq!(status("GET / HTTP/1.1\r\nHost : h\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: h\r\nX-A\t: v\r\n\r\n"), 400);
    }

    #[test]
    fn missing_host_is_400_on_both_versions() {
        assert_eq!(status("GET / HTTP/1.1\r\nX-A: b\r\n\r\n"), 400);
        // S3 needs the Host even from HTTP/1.0 clients (virtual-host buckets, SigV4).
        assert_eq!(status("GET / HTTP/1.0\r\n\r\n"), 400);
        let h = ok("GET / HTTP/1.0\r\nHost: h\r\n\r\n");
        assert_eq!(h.host(), Some("h"));
        assert!(!h.keep_alive);
    }

    #[test]
    fn several_hosts_are_400() {
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"), 400);
    }

    #[test]
    fn invalid_host_values_are_400() {
        for v in ["", "a b", "a,b", "user@h", "h/x", "h\"", "h?x"] {
            assert_eq!(
                status(&format!("GET / HTTP/1.1\r\nHost: {v}\r\n\r\n")),
                400,
                "{v:?}"
            );
        }
        let h = ok("GET / HTTP/1.1\r\nHost: [::1]:9000\r\n\r\n");
        assert_eq!(h.host(), Some("[::1]:9000"));
    }

    #[test]
    fn target_must_be_origin_form() {
        for t in ["http://h/p", "h:80", "*", "p", "/a#f", "/a\x7f", "/\u{e9}"] {
            assert_eq!(
                status(&format!("GET {t} HTTP/1.1\r\nHost: h\r\n\r\n")),
                400,
                "{t:?}"
            );
        }
    }

    #[test]
    fn target_with_ctl_or_tab_is_400() {
        assert_eq!(status("GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status("GET /a\0b HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    }

    #[test]
    fn extra_spaces_in_request_line_are_400() {
        for l in [
            "GET  / HTTP/1.1",
            "GET /  HTTP/1.1",
            " GET / HTTP/1.1",
            "GET / HTTP/1.1 ",
            "GET / a HTTP/1.1",
            "GET\t/ HTTP/1.1",
            "GET / HTTP/1.1\t",
        ] {
            assert_eq!(status(&format!("{l}\r\nHost: h\r\n\r\n")), 400, "{l:?}");
        }
    }

    #[test]
    fn expect_100_continue() {
        let h =
            ok("PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n");
        assert!(h.expect_continue);
        // RFC 9110 §10.1.1: ignored on HTTP/1.0.
        let h =
            ok("PUT / HTTP/1.0\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
        assert!(!h.expect_continue);
        let h = ok("PUT / HTTP/1.1\r\nHost: h\r\nExpect: foo, 100-continue\r\n\r\n");
        assert!(h.expect_continue);
    }

    #[test]
    fn other_expectations_are_forwarded_untouched() {
        for v in ["200", "200-ok", ""] {
            let head = format!("PUT / HTTP/1.1\r\nHost: h\r\nExpect: {v}\r\n\r\n");
            let h = ok(&head);
            assert!(!h.expect_continue, "{v:?}");
            assert_eq!(h.header("expect"), Some(v.as_bytes()), "{v:?}");
        }
    }

    #[test]
    fn connection_tokens_decide_keep_alive() {
        assert!(!ok("GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, Close\r\n\r\n").keep_alive);
        assert!(ok("GET / HTTP/1.0\r\nHost: h\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(
            !ok("GET / HTTP/1.0\r\nHost: h\r\nConnection: keep-alive, close\r\n\r\n").keep_alive
        );
        assert!(ok("GET / HTTP/1.1\r\nHost: h\r\nConnection: ,\r\n\r\n").keep_alive);
    }

    #[test]
    fn connection_naming_framing_fields_is_400() {
        for t in ["content-length", "Transfer-Encoding", "host"] {
            assert_eq!(
                status(&format!(
                    "GET / HTTP/1.1\r\nHost: h\r\nConnection: {t}\r\n\r\n"
                )),
                400,
                "{t}"
            );
        }
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: h\r\nConnection: a b\r\n\r\n"),
            400
        );
    }

    #[test]
    fn path_and_query() {
        let h = ok("GET /b?x?y HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((h.path(), h.query()), ("/b", Some("x?y")));
        let h = ok("GET /b? HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((h.path(), h.query()), ("/b", Some("")));
        let h = ok("GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(h.query(), None);
    }
}
