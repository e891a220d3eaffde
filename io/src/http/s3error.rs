//! S3-style error responses that weir itself answers (malformed requests, timeouts,
//! upstream failures), shaped like S3's own so SDKs surface the code and message.

/// The standard reason phrase for `status` (a generic class phrase when unknown).
pub fn reason_phrase(status: u16) -> &'static str {
    let phrase = match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    };
    if !phrase.is_empty() {
        return phrase;
    }
    match status {
        100..=199 => "Informational",
        200..=299 => "Success",
        300..=399 => "Redirection",
        400..=499 => "Client Error",
        _ => "Server Error",
    }
}

/// Full HTTP/1.1 response bytes for an S3 XML error (head and body).
///
/// Headers: `Content-Type: application/xml`, `Content-Length`, `x-amz-request-id`, and
/// `Connection: close` when `close`. Every text is XML-escaped in the body.
pub fn s3_error_response(
    status: u16,
    code: &str,
    message: &str,
    resource: &str,
    request_id: &str,
    close: bool,
) -> Vec<u8> {
    let body = error_body(code, message, resource, request_id);
    let mut out = error_head(status, body.len(), request_id, close);
    out.extend_from_slice(body.as_bytes());
    out
}

/// The same response without its body, for a `HEAD` request (Content-Length still says
/// how long the body would have been, as RFC 9110 §9.3.2 allows).
pub fn s3_error_response_head_only(
    status: u16,
    code: &str,
    message: &str,
    resource: &str,
    request_id: &str,
    close: bool,
) -> Vec<u8> {
    let body = error_body(code, message, resource, request_id);
    error_head(status, body.len(), request_id, close)
}

fn error_head(status: u16, body_len: usize, request_id: &str, close: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + body_len);
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/xml\r\nContent-Length: {body_len}\r\nx-amz-request-id: ",
            reason_phrase(status)
        )
        .as_bytes(),
    );
    // The id is ours, but never let a stray CR/LF in it split the head.
    out.extend(
        request_id
            .bytes()
            .map(|b| if b.is_ascii_graphic() { b } else { b'_' }),
    );
    out.extend_from_slice(b"\r\n");
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn error_body(code: &str, message: &str, resource: &str, request_id: &str) -> String {
    let mut body =
        String::with_capacity(128 + code.len() + message.len() + resource.len() + request_id.len());
    body.push_str(r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>"#);
    push_xml_escaped(&mut body, code);
    body.push_str("</Code><Message>");
    push_xml_escaped(&mut body, message);
    body.push_str("</Message><Resource>");
    push_xml_escaped(&mut body, resource);
    body.push_str("</Resource><RequestId>");
    push_xml_escaped(&mut body, request_id);
    body.push_str("</RequestId></Error>");
    body
}

/// Escapes markup characters; characters XML 1.0 cannot carry at all (most C0 controls)
/// become U+FFFD so the document stays well formed.
fn push_xml_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_error_response() {
        let out = s3_error_response(
            400,
            "InvalidRequest",
            "bad <x> & 'y'",
            "/b/k?a=1&b",
            "r1",
            true,
        );
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(
            body,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidRequest</Code>\
             <Message>bad &lt;x&gt; &amp; &apos;y&apos;</Message><Resource>/b/k?a=1&amp;b</Resource>\
             <RequestId>r1</RequestId></Error>"
        );
        assert_eq!(
            head,
            format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
                 x-amz-request-id: r1\r\nConnection: close",
                body.len()
            )
        );
    }

    #[test]
    fn keep_alive_error_has_no_connection_header() {
        let out = s3_error_response(501, "NotImplemented", "m", "/", "r", false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 501 Not Implemented\r\n"));
        assert!(!text.contains("Connection"));
    }

    #[test]
    fn head_only_has_length_but_no_body() {
        let full = s3_error_response(404, "NoSuchKey", "m", "/", "r", false);
        let head = s3_error_response_head_only(404, "NoSuchKey", "m", "/", "r", false);
        assert!(full.starts_with(&head));
        assert!(head.ends_with(b"\r\n\r\n"));
    }

    #[test]
    fn control_characters_cannot_break_head_or_xml() {
        let out = s3_error_response(400, "X", "a\u{1}b", "/", "id\r\nX: y", false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("x-amz-request-id: id__X:_y\r\n"));
        assert!(text.contains("<Message>a\u{fffd}b</Message>"));
    }

    #[test]
    fn reason_phrases() {
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(499), "Client Error");
        assert_eq!(reason_phrase(599), "Server Error");
    }
}
