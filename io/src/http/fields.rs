//! Field semantics shared by requests and responses: parsing the header block, message
//! framing (`Content-Length`, `Transfer-Encoding`) and connection options. Framing is where
//! request smuggling lives, so every ambiguity is an error rather than a guess.

use super::syntax::{is_token, list_elements, parse_field_line};
use super::{HeadError, Header, Peer};

/// Hop-by-hop fields never forwarded (RFC 9110 §7.6.1 plus the legacy ones proxies drop).
/// The proxy credentials belong to a proxy in front of weir (RFC 9110 §11.7): a storage
/// node has no use for them, and forwarding them would hand them to it.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Fields a `Connection` option may not name: dropping them would change the framing or
/// routing the upstream sees relative to what weir parsed.
const NOT_NOMINATABLE: [&str; 3] = ["content-length", "transfer-encoding", "host"];

/// Whether `name` is one of the fixed hop-by-hop fields.
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Parses the field lines of a head into headers, enforcing the count limit.
pub(crate) fn parse_fields<'a>(
    lines: impl Iterator<Item = &'a [u8]>,
    headers_count_max: usize,
    peer: Peer,
) -> Result<Vec<Header>, HeadError> {
    let mut headers = Vec::new();
    for line in lines {
        if headers.len() >= headers_count_max {
            return Err(HeadError::oversized(
                peer,
                format!("more than {headers_count_max} header fields"),
            ));
        }
        let (name, value) = parse_field_line(line, peer)?;
        if is_disguised_framing_name(name) {
            return Err(HeadError::malformed(
                peer,
                format!(
                    "field name {} imitates a framing field",
                    String::from_utf8_lossy(name)
                ),
            ));
        }
        headers.push(Header {
            // A token is ASCII, so this never replaces anything.
            name: String::from_utf8_lossy(name).into_owned(),
            value: value.to_vec(),
        });
    }
    Ok(headers)
}

/// `Content_Length` and friends: some servers map `_` to `-`, which would let a message
/// carry framing that weir does not see. No legitimate client sends these.
pub(crate) fn is_disguised_framing_name(name: &[u8]) -> bool {
    if !name.contains(&b'_') {
        return false;
    }
    ["content-length", "transfer-encoding"].iter().any(|f| {
        f.len() == name.len()
            && f.bytes().zip(name).all(|(f, &n)| {
                f == if n == b'_' {
                    b'-'
                } else {
                    n.to_ascii_lowercase()
                }
            })
    })
}

/// What the `Content-Length` fields of a head say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ContentLength {
    /// The agreed length.
    pub value: u64,
    /// False when there were several fields or a list (`5, 5`): RFC 9110 §8.6 then requires
    /// forwarding one normalised field.
    pub single: bool,
}

/// Validates every `Content-Length` field: pure digits, no overflow, all values equal.
pub(crate) fn content_length(
    headers: &[Header],
    peer: Peer,
) -> Result<Option<ContentLength>, HeadError> {
    let mut found: Option<ContentLength> = None;
    for h in headers.iter().filter(|h| h.is("content-length")) {
        for element in list_elements(&h.value) {
            let value = parse_decimal(element).ok_or_else(|| {
                HeadError::malformed(
                    peer,
                    format!(
                        "invalid Content-Length {:?}",
                        String::from_utf8_lossy(&h.value)
                    ),
                )
            })?;
            match found {
                None => {
                    found = Some(ContentLength {
                        value,
                        single: true,
                    })
                }
                Some(prev) if prev.value == value => {
                    found = Some(ContentLength {
                        value,
                        single: false,
                    })
                }
                Some(_) => {
                    return Err(HeadError::malformed(
                        peer,
                        "conflicting Content-Length values",
                    ))
                }
            }
        }
    }
    Ok(found)
}

/// A non-empty run of ASCII digits as u64; `None` on anything else or overflow.
pub(crate) fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Validates `Transfer-Encoding`; `Ok(true)` when present (and then chunked is final).
///
/// Requests must say exactly `chunked`: a proxy for S3 has no use for other codings and
/// each extra one is a parser-differential risk. Responses may list codings before a
/// single final `chunked` (the body is relayed unchanged).
pub(crate) fn transfer_encoding(
    headers: &[Header],
    peer: Peer,
    minor_version: u8,
) -> Result<bool, HeadError> {
    let mut codings = 0usize;
    let mut last_is_chunked = false;
    let mut chunked_seen = 0usize;
    for h in headers.iter().filter(|h| h.is("transfer-encoding")) {
        for coding in list_elements(&h.value) {
            if !is_token(coding) {
                return Err(HeadError::malformed(
                    peer,
                    format!(
                        "invalid Transfer-Encoding {:?}",
                        String::from_utf8_lossy(&h.value)
                    ),
                ));
            }
            codings += 1;
            last_is_chunked = coding.eq_ignore_ascii_case(b"chunked");
            chunked_seen += usize::from(last_is_chunked);
        }
    }
    // Every field yields at least one element (a token or an error above), so zero codings
    // means no Transfer-Encoding field at all.
    if codings == 0 {
        return Ok(false);
    }
    if minor_version == 0 {
        // RFC 9112 §6.1: HTTP/1.0 with Transfer-Encoding has faulty framing.
        return Err(HeadError::malformed(
            peer,
            "Transfer-Encoding in an HTTP/1.0 message",
        ));
    }
    let ok = match peer {
        Peer::Client => codings == 1 && last_is_chunked,
        Peer::Upstream => last_is_chunked && chunked_seen == 1,
    };
    if !ok {
        return Err(HeadError::malformed(
            peer,
            "Transfer-Encoding must be exactly chunked",
        ));
    }
    Ok(true)
}

/// Connection options of a head that matter to weir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ConnectionOptions {
    /// A `close` option was present.
    pub close: bool,
    /// A `keep-alive` option was present.
    pub keep_alive: bool,
}

/// Validates the `Connection` options (tokens; none naming a framing/routing field).
pub(crate) fn connection_options(
    headers: &[Header],
    peer: Peer,
) -> Result<ConnectionOptions, HeadError> {
    let mut opts = ConnectionOptions::default();
    for token in connection_tokens(headers) {
        // Empty list elements are legal and ignored (RFC 9110 §5.6.1).
        if token.is_empty() {
            continue;
        }
        if !is_token(token) {
            return Err(HeadError::malformed(peer, "invalid Connection option"));
        }
        if NOT_NOMINATABLE
            .iter()
            .any(|f| f.as_bytes().eq_ignore_ascii_case(token))
        {
            return Err(HeadError::malformed(
                peer,
                format!("Connection option names {}", String::from_utf8_lossy(token)),
            ));
        }
        opts.close |= token.eq_ignore_ascii_case(b"close");
        opts.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
    }
    Ok(opts)
}

/// Every element of every `Connection` field (possibly empty or invalid).
fn connection_tokens(headers: &[Header]) -> impl Iterator<Item = &[u8]> {
    headers
        .iter()
        .filter(|h| h.is("connection"))
        .flat_map(|h| list_elements(&h.value))
}

/// Persistence per RFC 9112 §9.3: `close` wins; 1.1 defaults to keep-alive, 1.0 to close.
pub(crate) fn keep_alive(minor_version: u8, opts: ConnectionOptions) -> bool {
    !opts.close && (minor_version >= 1 || opts.keep_alive)
}

/// Whether a header must not be forwarded: fixed hop-by-hop, or named by a `Connection`
/// option (except the framing/routing fields no option may remove).
pub(crate) fn hop_by_hop_filter(headers: &[Header]) -> impl Fn(&Header) -> bool + '_ {
    move |h: &Header| {
        if is_hop_by_hop(&h.name) {
            return true;
        }
        if NOT_NOMINATABLE.iter().any(|f| h.is(f)) {
            return false;
        }
        connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(h.name.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs(pairs: &[(&str, &str)]) -> Vec<Header> {
        pairs.iter().map(|(n, v)| Header::new(*n, *v)).collect()
    }

    #[test]
    fn decimal_rejects_signs_spaces_and_overflow() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        assert_eq!(parse_decimal(b"+1"), None);
        assert_eq!(parse_decimal(b"1 2"), None);
        assert_eq!(parse_decimal(b""), None);
    }

    #[test]
    fn content_length_list_of_equal_values_is_not_single() {
        let h = hs(&[("Content-Length", "5, 5")]);
        assert_eq!(
            content_length(&h, Peer::Client),
            Ok(Some(ContentLength {
                value: 5,
                single: false
            }))
        );
    }

    #[test]
    fn disguised_names() {
        assert!(is_disguised_framing_name(b"Content_Length"));
        assert!(is_disguised_framing_name(b"transfer_encoding"));
        assert!(!is_disguised_framing_name(b"Content-Length"));
        assert!(!is_disguised_framing_name(b"x_amz_meta"));
    }

    #[test]
    fn keep_alive_rules() {
        let none = ConnectionOptions::default();
        let close = ConnectionOptions {
            close: true,
            keep_alive: true,
        };
        let ka = ConnectionOptions {
            close: false,
            keep_alive: true,
        };
        assert!(keep_alive(1, none));
        assert!(!keep_alive(0, none));
        assert!(keep_alive(0, ka));
        assert!(!keep_alive(1, close));
    }

    #[test]
    fn filter_drops_nominated_but_not_framing_fields() {
        let h = hs(&[
            ("Connection", "X-Foo, content-length"),
            ("x-foo", "1"),
            ("Content-Length", "3"),
            ("Keep-Alive", "timeout=5"),
            ("x-bar", "2"),
        ]);
        let drop = hop_by_hop_filter(&h);
        let kept: Vec<&str> = h
            .iter()
            .filter(|x| !drop(x))
            .map(|x| x.name.as_str())
            .collect();
        assert_eq!(kept, vec!["Content-Length", "x-bar"]);
    }
}
