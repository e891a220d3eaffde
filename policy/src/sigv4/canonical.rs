//! The canonical request and string to sign, built the way S3 builds them.
//!
//! S3 differs from other AWS services in one place: the path is *not* normalised
//! (`//`, `.` and `..` stay) and is URI-encoded once, not twice. The path and query
//! arrive percent-encoded from the wire; each is decoded and re-encoded with SigV4's
//! `UriEncode` (every byte but `A-Z a-z 0-9 - _ . ~` as `%XX`, upper-case; `/` kept in
//! the path), so a client that encoded `$` or not, or wrote `%7e` for `~`, still
//! matches. A literal `+` in the query is a plus (RFC 3986), not a space: SDKs send
//! spaces as `%20`.

use std::borrow::Cow;

use super::crypto::{hex32, sha256};
use super::error::SigV4Error;
use super::key::Scope;
use super::time::Timestamp;

/// The algorithm line of a request's string to sign.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Query parameters that carry a presigned URL's authentication.
pub(crate) const PRESIGN_PARAMS: [&str; 7] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
];

pub(crate) use crate::percent::decode as percent_decode;

/// SigV4 `UriEncode`: appends `bytes` to `out`, escaping all but unreserved characters
/// (and `/` when `keep_slash`).
pub(crate) fn uri_encode(out: &mut Vec<u8>, bytes: &[u8], keep_slash: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0x0f)]]);
        }
    }
}

/// Appends the canonical URI of the raw (wire) path: `/` for an empty path, else the
/// decoded path re-encoded with `/` kept.
pub(crate) fn canonical_path(out: &mut Vec<u8>, raw_path: &str) -> Result<(), SigV4Error> {
    if raw_path.is_empty() {
        out.push(b'/');
        return Ok(());
    }
    if !raw_path.starts_with('/') {
        return Err(SigV4Error::InvalidUri);
    }
    let decoded = percent_decode(raw_path.as_bytes()).ok_or(SigV4Error::InvalidUri)?;
    uri_encode(out, &decoded, true);
    Ok(())
}

/// One raw `key[=value]` query parameter, decoded.
pub(crate) struct QueryParam<'q> {
    /// The decoded key.
    pub key: Cow<'q, [u8]>,
    /// The decoded value (empty when the parameter has no `=`).
    pub value: Cow<'q, [u8]>,
}

/// The decoded parameters of a raw query string, in order; empty segments (`a&&b`) are
/// skipped.
pub(crate) fn query_params(
    raw_query: &str,
) -> impl Iterator<Item = Result<QueryParam<'_>, SigV4Error>> {
    raw_query
        .split('&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            let (key, value) = segment.split_once('=').unwrap_or((segment, ""));
            let key = percent_decode(key.as_bytes()).ok_or(SigV4Error::InvalidUri)?;
            let value = percent_decode(value.as_bytes()).ok_or(SigV4Error::InvalidUri)?;
            Ok(QueryParam { key, value })
        })
}

/// Appends the canonical query string: every parameter (but `X-Amz-Signature` when
/// `presigned`) re-encoded as `key=value`, sorted by encoded key then value, joined by
/// `&`.
pub(crate) fn canonical_query(
    out: &mut Vec<u8>,
    raw_query: &str,
    presigned: bool,
) -> Result<(), SigV4Error> {
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for param in query_params(raw_query) {
        let param = param?;
        if presigned && param.key.as_ref() == b"X-Amz-Signature" {
            continue;
        }
        let mut key = Vec::with_capacity(param.key.len());
        uri_encode(&mut key, &param.key, false);
        let mut value = Vec::with_capacity(param.value.len());
        uri_encode(&mut value, &param.value, false);
        pairs.push((key, value));
    }
    pairs.sort_unstable();
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        out.extend_from_slice(key);
        out.push(b'=');
        out.extend_from_slice(value);
    }
    Ok(())
}

/// Appends a header value as SigV4 canonicalises it: leading and trailing whitespace
/// removed, every run of spaces and tabs inside collapsed to one space.
pub(crate) fn push_header_value(out: &mut Vec<u8>, value: &[u8]) {
    let mut pending_space = false;
    let mut started = false;
    for &b in value {
        if b == b' ' || b == b'\t' {
            pending_space = started;
            continue;
        }
        if pending_space {
            out.push(b' ');
            pending_space = false;
        }
        out.push(b);
        started = true;
    }
}

/// The pieces of a canonical request that differ between requests.
pub(crate) struct CanonicalInput<'r, 'v> {
    /// The HTTP method.
    pub method: &'r str,
    /// The raw path from the request line.
    pub raw_path: &'r str,
    /// The raw query (without `?`).
    pub raw_query: &'r str,
    /// Whether `X-Amz-Signature` is left out of the query.
    pub presigned: bool,
    /// The signed header names, sorted, lower case, each with the values to sign in
    /// order (joined by `,`).
    pub headers: &'v [(&'v str, Vec<&'v [u8]>)],
    /// The `;`-joined signed header names.
    pub signed_headers: &'v str,
    /// The hashed-payload line.
    pub payload: &'v str,
}

/// The canonical request:
/// `method\npath\nquery\nheaders…\n\nsigned_headers\npayload`.
pub(crate) fn canonical_request(input: &CanonicalInput<'_, '_>) -> Result<Vec<u8>, SigV4Error> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(input.method.as_bytes());
    out.push(b'\n');
    canonical_path(&mut out, input.raw_path)?;
    out.push(b'\n');
    canonical_query(&mut out, input.raw_query, input.presigned)?;
    out.push(b'\n');
    for (name, values) in input.headers {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_header_value(&mut out, value);
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(input.signed_headers.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(input.payload.as_bytes());
    Ok(out)
}

/// The string to sign of a request:
/// `AWS4-HMAC-SHA256\n<time>\n<scope>\n<hex sha256 of the canonical request>`.
pub(crate) fn string_to_sign(time: Timestamp, scope: &Scope, canonical_request: &[u8]) -> Vec<u8> {
    let mut out = format!("{ALGORITHM}\n{time}\n{scope}\n").into_bytes();
    out.extend_from_slice(&hex32(&sha256(canonical_request)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(raw: &str) -> Result<String, SigV4Error> {
        let mut out = Vec::new();
        canonical_path(&mut out, raw)?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn query(raw: &str, presigned: bool) -> String {
        let mut out = Vec::new();
        canonical_query(&mut out, raw, presigned).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn path_is_encoded_once_and_not_normalised() {
        assert_eq!(path("").unwrap(), "/");
        assert_eq!(path("/test$file.text").unwrap(), "/test%24file.text");
        assert_eq!(path("/test%24file.text").unwrap(), "/test%24file.text");
        assert_eq!(path("/a%2fb").unwrap(), "/a/b");
        assert_eq!(path("/%7e/a b").unwrap(), "/~/a%20b");
        assert_eq!(path("//a/./b/../c").unwrap(), "//a/./b/../c");
        assert_eq!(path("/%25").unwrap(), "/%25");
        assert_eq!(path("/a+b").unwrap(), "/a%2Bb");
        assert_eq!(path("/%E2%82%AC").unwrap(), "/%E2%82%AC");
        assert_eq!(path("/%zz"), Err(SigV4Error::InvalidUri));
        assert_eq!(path("/%4"), Err(SigV4Error::InvalidUri));
        assert_eq!(path("*"), Err(SigV4Error::InvalidUri));
    }

    #[test]
    fn query_is_sorted_by_encoded_key_then_value() {
        assert_eq!(query("", false), "");
        assert_eq!(query("lifecycle", false), "lifecycle=");
        assert_eq!(query("prefix=J&max-keys=2", false), "max-keys=2&prefix=J");
        assert_eq!(query("b=2&a=x+y&a=%2B&c=", false), "a=%2B&a=x%2By&b=2&c=");
        assert_eq!(query("a=%2f&&a=/", false), "a=%2F&a=%2F");
        assert_eq!(
            query("X-Amz-Signature=ff&X-Amz-Date=1", true),
            "X-Amz-Date=1"
        );
        assert_eq!(
            query("X-Amz-Signature=ff&X-Amz-Date=1", false),
            "X-Amz-Date=1&X-Amz-Signature=ff"
        );
    }

    #[test]
    fn header_values_are_trimmed_and_collapsed() {
        let mut out = Vec::new();
        push_header_value(&mut out, b"  a   b \t c  ");
        assert_eq!(out, b"a b c");
        out.clear();
        push_header_value(&mut out, b" \t ");
        assert_eq!(out, b"");
    }
}
