//! Re-serialising heads for the other side. weir never forwards the bytes it parsed: it
//! writes a fresh CRLF head so whatever leniency the peer had cannot reach the next hop.
//!
//! End-to-end fields go out byte for byte, in order and case (SigV4 signs them); the only
//! rewrite is RFC 9110 §8.6's duplicate `Content-Length` collapse.

use super::fields::{content_length, hop_by_hop_filter};
use super::syntax::is_field_value_byte;
use super::{Header, Peer, RequestHead, ResponseHead};

/// Writes `head` for the upstream: `METHOD target HTTP/1.1`, then every end-to-end field.
///
/// Hop-by-hop fields (Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade and any
/// field a `Connection` option names) are dropped; `Content-Length`/`Transfer-Encoding` are
/// kept because they frame the relayed body. Nothing is added.
pub fn write_request_head(head: &RequestHead, out: &mut Vec<u8>) {
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    push_sanitised(out, head.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_fields(&head.headers, out);
    out.extend_from_slice(b"\r\n");
}

/// Writes `head` for the client: `HTTP/1.1 status reason`, then every end-to-end field.
///
/// `close = true` appends `Connection: close` (required whenever the framing is
/// [`super::BodyFraming::UntilClose`] or weir will close after this response).
pub fn write_response_head(head: &ResponseHead, close: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(head.status.to_string().as_bytes());
    out.push(b' ');
    push_sanitised(out, head.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    write_fields(&head.headers, out);
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn write_fields(headers: &[Header], out: &mut Vec<u8>) {
    let is_hop_by_hop = hop_by_hop_filter(headers);
    // Several Content-Length fields or a list (`5, 5`) must be forwarded as one field
    // (RFC 9110 §8.6). A single plain field stays byte for byte, since it may be signed.
    // Heads built by hand with an invalid value are written as they are.
    let collapsed = match content_length(headers, Peer::Client) {
        Ok(Some(cl)) if !cl.single => Some(cl.value),
        _ => None,
    };
    let mut length_written = false;
    for h in headers.iter().filter(|h| !is_hop_by_hop(h)) {
        if let (Some(value), true) = (collapsed, h.is("content-length")) {
            if !length_written {
                length_written = true;
                push_field(out, &h.name, value.to_string().as_bytes());
            }
            continue;
        }
        push_field(out, &h.name, &h.value);
    }
}

fn push_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    push_sanitised(out, name.as_bytes());
    out.extend_from_slice(b": ");
    push_sanitised(out, value);
    out.extend_from_slice(b"\r\n");
}

/// Copies `bytes`, turning any CR, LF or other CTL into SP. Parsed heads never contain
/// them; this guards heads the relay builds itself against header injection.
fn push_sanitised(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.iter().all(|&b| is_field_value_byte(b)) {
        out.extend_from_slice(bytes);
    } else {
        out.extend(
            bytes
                .iter()
                .map(|&b| if is_field_value_byte(b) { b } else { b' ' }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_request, parse_response, HeadLimits, Method};
    use super::*;

    fn req(s: &str) -> RequestHead {
        parse_request(s.as_bytes(), &HeadLimits::default())
            .unwrap()
            .unwrap()
            .0
    }

    fn written(h: &RequestHead) -> String {
        let mut out = Vec::new();
        write_request_head(h, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn request_round_trip_drops_hop_by_hop() {
        let h = req(concat!(
            "PUT /b/k?x=1 HTTP/1.0\r\n",
            "HOST: h:1\r\n",
            "Connection: keep-alive, X-Trace\r\n",
            "Keep-Alive: timeout=5\r\n",
            "x-trace: 1\r\n",
            "TE: trailers\r\n",
            "Trailer: x-amz-checksum-crc32\r\n",
            "Upgrade: h2c\r\n",
            "Proxy-Connection: keep-alive\r\n",
            "x-amz-content-sha256:\tUNSIGNED-PAYLOAD  \r\n",
            "Content-Length: 007\r\n",
            "\r\n"
        ));
        assert_eq!(
            written(&h),
            concat!(
                "PUT /b/k?x=1 HTTP/1.1\r\n",
                "HOST: h:1\r\n",
                "x-amz-content-sha256: UNSIGNED-PAYLOAD\r\n",
                "Content-Length: 007\r\n",
                "\r\n"
            )
        );
    }

    #[test]
    fn duplicate_content_length_is_collapsed() {
        let h = req("PUT / HTTP/1.1\r\nHost: h\r\ncontent-length: 5, 5\r\nX: 1\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(
            written(&h),
            "PUT / HTTP/1.1\r\nHost: h\r\ncontent-length: 5\r\nX: 1\r\n\r\n"
        );
    }

    #[test]
    fn chunked_is_forwarded() {
        let h = req("PUT / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\tchunked\r\n\r\n");
        assert_eq!(
            written(&h),
            "PUT / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn response_close_adds_connection_close() {
        let (h, _) = parse_response(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=1\r\nContent-Length: 0\r\n\r\n",
            &HeadLimits::default(),
            Method::Get,
        )
        .unwrap()
        .unwrap();
        let mut out = Vec::new();
        write_response_head(&h, true, &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        out.clear();
        write_response_head(&h, false, &mut out);
        assert_eq!(out, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    }

    #[test]
    fn hand_built_values_cannot_inject_lines() {
        let h = ResponseHead {
            status: 200,
            reason: "OK\r\nX: y".into(),
            minor_version: 1,
            headers: vec![Header::new("x-amz-request-id", "a\r\nSet-Cookie: b")],
            framing: super::super::BodyFraming::None,
            keep_alive: true,
        };
        let mut out = Vec::new();
        write_response_head(&h, false, &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK  X: y\r\nx-amz-request-id: a  Set-Cookie: b\r\n\r\n"
        );
    }
}
