//! Byte-level grammar shared by heads, trailers and chunk lines: character classes, the
//! scan that finds where a head ends (rejecting bare CR/LF on the way), field-line parsing
//! and comma lists. Everything here is RFC 9110 §5 / RFC 9112 §2–5 read strictly.

use super::{HeadError, Peer};

/// `tchar` of RFC 9110 §5.6.2: the characters of methods, field names and codings.
pub(crate) fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_'
        | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// A non-empty run of `tchar`.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// A byte allowed inside a field value: HTAB, SP, VCHAR and obs-text; never NUL/CR/LF/CTL.
pub(crate) fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

/// Optional whitespace (RFC 9110 §5.6.3): SP or HTAB only.
pub(crate) fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `s` without leading and trailing OWS.
pub(crate) fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_ows(b)).map_or(start, |i| i + 1);
    &s[start..end]
}

/// Elements of a comma-separated list value, OWS-trimmed; empty elements are kept so each
/// caller decides whether they are tolerable.
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

/// Locates a complete head in `buf`: `Ok(Some((start, end)))` where `start` skips leading
/// empty lines (requests only, RFC 9112 §2.2) and `end` is one past the empty line.
///
/// Line ends are checked while scanning so a bare LF or CR fails at once instead of leaving
/// the connection waiting for a `CRLFCRLF` that a lenient client will never send.
pub(crate) fn find_head(
    buf: &[u8],
    header_bytes_max: usize,
    peer: Peer,
    skip_leading_crlf: bool,
) -> Result<Option<(usize, usize)>, HeadError> {
    let mut start = 0;
    if skip_leading_crlf {
        while buf[start..].starts_with(b"\r\n") {
            start += 2;
        }
    }
    let mut line_start = start;
    for (i, &b) in buf.iter().enumerate().skip(start) {
        if i >= header_bytes_max {
            return Err(head_too_large(peer, header_bytes_max));
        }
        match b {
            b'\n' => {
                // `i > line_start` guarantees `i - 1` is inside the current line.
                if i == line_start || buf[i - 1] != b'\r' {
                    return Err(HeadError::malformed(peer, "bare LF in message head"));
                }
                if i - 1 == line_start {
                    if line_start == start {
                        return Err(HeadError::malformed(peer, "empty start line"));
                    }
                    return Ok(Some((start, i + 1)));
                }
                line_start = i + 1;
            }
            b'\r' => {
                if let Some(&next) = buf.get(i + 1) {
                    if next != b'\n' {
                        return Err(HeadError::malformed(peer, "bare CR in message head"));
                    }
                }
            }
            _ => {}
        }
    }
    if buf.len() > header_bytes_max {
        return Err(head_too_large(peer, header_bytes_max));
    }
    Ok(None)
}

fn head_too_large(peer: Peer, header_bytes_max: usize) -> HeadError {
    HeadError::oversized(
        peer,
        format!("message head exceeds {header_bytes_max} bytes"),
    )
}

/// The lines of a head found by [`find_head`] (`head` = `buf[start..end]`), without their
/// CRLF and without the final empty line.
pub(crate) fn head_lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    // find_head proved every LF follows a CR and the head ends in CRLF CRLF.
    let body = head.strip_suffix(b"\r\n").unwrap_or(head);
    body.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// Splits one field line (`name ":" OWS value OWS`) into its name and trimmed value.
pub(crate) fn parse_field_line(line: &[u8], peer: Peer) -> Result<(&[u8], &[u8]), HeadError> {
    if line.first().is_some_and(|&b| is_ows(b)) {
        // obs-fold, or whitespace before the first field: both rejected (RFC 9112 §5.2, §2.2).
        return Err(HeadError::malformed(
            peer,
            "field line starts with whitespace (obs-fold)",
        ));
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Err(HeadError::malformed(peer, "field line without a colon"));
    };
    let name = &line[..colon];
    if name.last().is_some_and(|&b| is_ows(b)) {
        return Err(HeadError::malformed(
            peer,
            "whitespace between field name and colon",
        ));
    }
    if !is_token(name) {
        return Err(HeadError::malformed(peer, "invalid field name"));
    }
    let value = trim_ows(&line[colon + 1..]);
    if let Some(&bad) = value.iter().find(|&&b| !is_field_value_byte(b)) {
        return Err(HeadError::malformed(
            peer,
            format!(
                "control character 0x{bad:02x} in value of field {}",
                String::from_utf8_lossy(name)
            ),
        ));
    }
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_ows_strips_only_sp_and_htab() {
        assert_eq!(trim_ows(b" \tab c\t "), b"ab c");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b"\x0bx"), b"\x0bx");
    }

    #[test]
    fn find_head_skips_leading_crlf_for_requests_only() {
        let buf = b"\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(
            find_head(buf, 100, Peer::Client, true),
            Ok(Some((2, buf.len())))
        );
        assert_eq!(
            find_head(buf, 100, Peer::Upstream, false).map_err(|e| e.status),
            Err(502)
        );
    }

    #[test]
    fn find_head_waits_on_trailing_cr() {
        assert_eq!(
            find_head(b"GET / HTTP/1.1\r", 100, Peer::Client, true),
            Ok(None)
        );
        assert_eq!(
            find_head(b"GET / HTTP/1.1\r\n\r", 100, Peer::Client, true),
            Ok(None)
        );
    }

    #[test]
    fn find_head_rejects_bare_cr() {
        let err = find_head(b"GET / HTTP/1.1\rX", 100, Peer::Client, true).unwrap_err();
        assert_eq!(err.status, 400);
    }

    #[test]
    fn find_head_limit_is_inclusive() {
        let buf = b"A\r\n\r\n";
        assert!(matches!(find_head(buf, 5, Peer::Client, true), Ok(Some(_))));
        assert_eq!(
            find_head(buf, 4, Peer::Client, true).map_err(|e| e.status),
            Err(431)
        );
    }

    #[test]
    fn head_lines_drop_crlf() {
        let lines: Vec<&[u8]> = head_lines(b"A\r\nB: c\r\n\r\n").collect();
        assert_eq!(lines, vec![&b"A"[..], &b"B: c"[..]]);
    }

    #[test]
    fn field_line_value_is_trimmed() {
        assert_eq!(
            parse_field_line(b"Name:\t v a \t", Peer::Client),
            Ok((&b"Name"[..], &b"v a"[..]))
        );
        assert_eq!(
            parse_field_line(b"Name:", Peer::Client),
            Ok((&b"Name"[..], &b""[..]))
        );
    }
}
