//! Upstream response heads (RFC 9112 §4, §6.3). Same grammar as requests; every error is
//! a 502 `BadGateway` because the fault lies with the storage node, not the client.

use super::fields::{self, connection_options, content_length, transfer_encoding};
use super::request::parse_version;
use super::syntax::{find_head, head_lines, is_field_value_byte};
use super::{BodyFraming, HeadError, HeadLimits, Header, Method, Peer};

/// A parsed, validated response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Status code, 100..=599 (never 101: weir forwards no `Upgrade`).
    pub status: u16,
    /// Reason phrase as received (lossy UTF-8 for obs-text), possibly empty.
    pub reason: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Every header field line in order, names in original case.
    pub headers: Vec<Header>,
    /// How the response body is delimited.
    pub framing: BodyFraming,
    /// Whether the upstream connection may be reused after this response.
    pub keep_alive: bool,
}

impl ResponseHead {
    /// The first value of `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.is(name))
            .map(|h| h.value.as_slice())
    }

    /// Whether this is an interim (1xx) response; the final one follows on the connection.
    pub fn is_informational(&self) -> bool {
        (100..200).contains(&self.status)
    }
}

/// Parses an upstream response head at the start of `buf`.
///
/// `request_method` decides bodiless responses: to HEAD, and 1xx/204/304, the framing is
/// [`BodyFraming::None`]. Without `Content-Length` or chunked the body runs until close
/// ([`BodyFraming::UntilClose`], `keep_alive = false`). Every error is a 502.
pub fn parse_response(
    buf: &[u8],
    limits: &HeadLimits,
    request_method: Method,
) -> Result<Option<(ResponseHead, usize)>, HeadError> {
    let peer = Peer::Upstream;
    let Some((start, end)) = find_head(buf, limits.header_bytes_max, peer, false)? else {
        return Ok(None);
    };
    let mut lines = head_lines(&buf[start..end]);
    let status_line = lines.next().unwrap_or_default();
    let (minor_version, status, reason) = parse_status_line(status_line)?;
    let headers = fields::parse_fields(lines, limits.headers_count_max, peer)?;

    // Framing fields are validated even where they are ignored: a node that sends garbage
    // there is not one to trust with the next response on the connection.
    let length = content_length(&headers, peer)?;
    let chunked = transfer_encoding(&headers, peer, minor_version)?;
    if chunked && length.is_some() {
        return Err(HeadError::bad_gateway(
            "upstream sent both Content-Length and Transfer-Encoding",
        ));
    }
    let bodiless = request_method == Method::Head
        || (100..200).contains(&status)
        || status == 204
        || status == 304;
    let framing = match (bodiless, chunked, length) {
        (true, _, _) => BodyFraming::None,
        (false, true, _) => BodyFraming::Chunked,
        (false, false, Some(cl)) => BodyFraming::Length(cl.value),
        (false, false, None) => BodyFraming::UntilClose,
    };
    let opts = connection_options(&headers, peer)?;
    let keep_alive = fields::keep_alive(minor_version, opts) && framing != BodyFraming::UntilClose;

    let head = ResponseHead {
        status,
        reason,
        minor_version,
        headers,
        framing,
        keep_alive,
    };
    Ok(Some((head, end)))
}

/// `HTTP-version SP 3DIGIT SP reason`; a missing `SP reason` is tolerated (common and
/// harmless: it cannot move a message boundary).
fn parse_status_line(line: &[u8]) -> Result<(u8, u16, String), HeadError> {
    let peer = Peer::Upstream;
    let bad = || HeadError::bad_gateway("malformed upstream status line");
    let (version, rest) = line.split_at_checked(8).ok_or_else(bad)?;
    let minor_version = parse_version(version, peer)?;
    let rest = rest.strip_prefix(b" ").ok_or_else(bad)?;
    let (code, rest) = rest.split_at_checked(3).ok_or_else(bad)?;
    let status = code
        .iter()
        .try_fold(0u16, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + u16::from(b - b'0'))
        })
        .ok_or_else(bad)?;
    if !(100..=599).contains(&status) {
        return Err(HeadError::bad_gateway(format!(
            "upstream status {status} out of range"
        )));
    }
    if status == 101 {
        // weir never forwards Upgrade, so a protocol switch cannot be legitimate.
        return Err(HeadError::bad_gateway("unexpected 101 Switching Protocols"));
    }
    let reason = match rest {
        [] => &[][..],
        [b' ', reason @ ..] => reason,
        _ => return Err(bad()),
    };
    if !reason.iter().all(|&b| is_field_value_byte(b)) {
        return Err(HeadError::bad_gateway("control character in reason phrase"));
    }
    Ok((
        minor_version,
        status,
        String::from_utf8_lossy(reason).into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str, m: Method) -> Result<Option<(ResponseHead, usize)>, HeadError> {
        parse_response(s.as_bytes(), &HeadLimits::default(), m)
    }

    fn ok(s: &str, m: Method) -> ResponseHead {
        match parse(s, m) {
            Ok(Some((h, n))) => {
                assert_eq!(n, s.len());
                h
            }
            other => panic!("expected a head, got {other:?}"),
        }
    }

    fn status(s: &str) -> u16 {
        match parse(s, Method::Get) {
            Err(e) => {
                assert_eq!(e.code, "BadGateway");
                e.status
            }
            Ok(Some(_)) => 200,
            Ok(None) => 0,
        }
    }

    #[test]
    fn length_and_chunked_and_until_close() {
        let h = ok(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"x\"\r\n\r\n",
            Method::Get,
        );
        assert_eq!((h.status, h.reason.as_str()), (200, "OK"));
        assert_eq!(h.framing, BodyFraming::Length(5));
        assert!(h.keep_alive);
        assert_eq!(h.header("etag"), Some(&b"\"x\""[..]));

        let h = ok(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::Get,
        );
        assert_eq!(h.framing, BodyFraming::Chunked);

        let h = ok("HTTP/1.1 200 OK\r\n\r\n", Method::Get);
        assert_eq!(h.framing, BodyFraming::UntilClose);
        assert!(!h.keep_alive);
    }

    #[test]
    fn bodiless_responses() {
        let h = ok("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Method::Head);
        assert_eq!(h.framing, BodyFraming::None);
        assert!(h.keep_alive);
        for s in [100, 204, 304] {
            let h = ok(
                &format!("HTTP/1.1 {s} X\r\nContent-Length: 5\r\n\r\n"),
                Method::Get,
            );
            assert_eq!(h.framing, BodyFraming::None, "{s}");
        }
        assert!(ok("HTTP/1.1 100 Continue\r\n\r\n", Method::Put).is_informational());
    }

    #[test]
    fn http10_response_keep_alive() {
        let h = ok("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", Method::Get);
        assert!(!h.keep_alive);
        let h = ok(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
            Method::Get,
        );
        assert!(h.keep_alive);
        let h = ok(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
            Method::Get,
        );
        assert!(!h.keep_alive);
    }

    #[test]
    fn reason_phrase_optional() {
        assert_eq!(
            ok("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", Method::Get).reason,
            ""
        );
        assert_eq!(
            ok("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", Method::Get).reason,
            ""
        );
        assert_eq!(
            ok(
                "HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\n\r\n",
                Method::Get
            )
            .reason,
            "Slow Down"
        );
    }

    #[test]
    fn malformed_status_lines_are_502() {
        for l in [
            "HTTP/1.1 20 OK",
            "HTTP/1.1 2000 OK",
            "HTTP/1.1  200 OK",
            "HTTP/1.1 abc OK",
            "HTTP/1.1 099 X",
            "HTTP/1.1 600 X",
            "HTTP/1.1 101 Switching Protocols",
            "HTTP/2.0 200 OK",
            "HTTP/1.1 200 O\x01K",
            "ICY 200 OK",
            "HTTP/1.1",
        ] {
            assert_eq!(
                status(&format!("{l}\r\nContent-Length: 0\r\n\r\n")),
                502,
                "{l:?}"
            );
        }
    }

    #[test]
    fn response_framing_rules_are_502() {
        for h in [
            "Content-Length: 1\r\nTransfer-Encoding: chunked",
            "Content-Length: 1\r\nContent-Length: 2",
            "Content-Length: -1",
            "Transfer-Encoding: chunked, gzip",
            "Transfer-Encoding: chunked, chunked",
            "Transfer-Encoding: chunked;q=1",
            "X-A: a\r\n b",
            "X-A : b",
            "X-A: a\0b",
        ] {
            assert_eq!(
                status(&format!("HTTP/1.1 200 OK\r\n{h}\r\n\r\n")),
                502,
                "{h:?}"
            );
        }
        assert_eq!(
            status("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            502
        );
        assert_eq!(status("HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"), 502);
    }

    #[test]
    fn codings_before_chunked_are_relayed() {
        let h = ok(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            Method::Get,
        );
        assert_eq!(h.framing, BodyFraming::Chunked);
    }

    #[test]
    fn oversized_response_head_is_502() {
        let limits = HeadLimits {
            header_bytes_max: 32,
            headers_count_max: 1,
        };
        let s = b"HTTP/1.1 200 OK\r\nX-A: aaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        assert_eq!(
            parse_response(s, &limits, Method::Get).unwrap_err().status,
            502
        );
        let s = b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n";
        let err = parse_response(
            s,
            &HeadLimits {
                header_bytes_max: 1024,
                ..limits
            },
            Method::Get,
        )
        .unwrap_err();
        assert_eq!(err.status, 502);
    }
}
