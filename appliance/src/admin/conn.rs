//! One control connection: requests read within their deadline, the token checked first,
//! the route found and allowed, then the body (bounded), the answer, and keep-alive or
//! close. Shape and reasons are in the module header (`super`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;
use weir_io::conn::Conn;
use weir_io::http::{parse_request, BodyFraming, HeadError, HeadLimits, Method, RequestHead};

use super::routes::{self, Answer, Request};
use super::{until_evicted, Listener, Slot};

/// Largest request head: Prometheus, curl and probes send a few hundred bytes; browsers
/// with cookies rarely reach 4 KiB. It is also the connection's whole read buffer.
pub(super) const HEAD_BYTES_MAX: usize = 8 << 10;
/// Most header fields in one request head.
pub(super) const HEADERS_MAX: usize = 32;
/// How long a close waits for the client to stop sending what weir did not read (a
/// refused body): closing with unread bytes would reset the connection, and a reset can
/// destroy the answer before the client read it.
const LINGER: Duration = Duration::from_secs(1);
/// Most unread bytes drained while lingering.
const LINGER_BYTES_MAX: u64 = 64 << 10;

const LIMITS: HeadLimits = HeadLimits {
    header_bytes_max: HEAD_BYTES_MAX,
    headers_count_max: HEADERS_MAX,
};

/// How a connection ends once its last answer is written (or none could be).
enum End {
    /// Nothing of the client's is left unread: close now.
    Close,
    /// The client may still be sending (a refused body, a broken head): linger.
    Linger,
}

/// Serves one connection until it ends, its deadline passes or it is evicted.
pub(super) async fn serve(listener: &Listener, slot: &Slot, stream: TcpStream, peer: SocketAddr) {
    let Ok(mut conn) = Conn::new(stream, HEAD_BYTES_MAX) else {
        return;
    };
    let deadline = Instant::now() + listener.plane.limits.connection_timeout;
    let session = session(listener, slot, &mut conn, peer, deadline);
    let timed = monoio::time::timeout_at(monoio::time::Instant::from_std(deadline), session);
    match until_evicted(slot, timed).await {
        None => {} // counted when it was chosen
        Some(Err(_)) => listener.dropped("connection_timeout"),
        Some(Ok(End::Close)) => {}
        Some(Ok(End::Linger)) => {
            slot.wait();
            until_evicted(slot, conn.linger_close(LINGER, LINGER_BYTES_MAX)).await;
        }
    }
}

/// Requests on one connection, one after the other.
async fn session(
    listener: &Listener,
    slot: &Slot,
    conn: &mut Conn,
    peer: SocketAddr,
    deadline: Instant,
) -> End {
    let loopback = peer.ip().to_canonical().is_loopback();
    let head_timeout = listener.plane.limits.head_timeout;
    let mut served = 0u64;
    loop {
        slot.wait();
        let request_deadline = (Instant::now() + head_timeout).min(deadline);
        let (head, head_len) = match read_head(conn, request_deadline).await {
            ReadHead::Parsed(head, len) => (head, len),
            ReadHead::Closed => return End::Close,
            ReadHead::Timeout { started } => {
                if !started && served > 0 {
                    return End::Close; // an idle keep-alive connection: normal
                }
                listener.dropped("head_timeout");
                if !started {
                    return End::Close;
                }
                let answer = Answer::text(408, "the request did not arrive in time");
                let _ = respond(listener, conn, &answer, false, false).await;
                return End::Linger;
            }
            ReadHead::Invalid(e) => {
                let answer = Answer::text(e.status, &e.message);
                let _ = respond(listener, conn, &answer, false, false).await;
                return End::Linger;
            }
        };
        conn.consume(head_len);
        let head_only = head.method == Method::Head;
        let announces_body = !matches!(head.framing, BodyFraming::None | BodyFraming::Length(0));

        // The token before anything else: nothing is read or computed for a stranger.
        if let Some(token) = listener.role.token() {
            if !authorized(&head, token) {
                let mut answer = Answer::text(
                    401,
                    "admin endpoints need Authorization: Bearer <admin_token> \
                     (a browser: any user name, the token as password)",
                )
                .header("WWW-Authenticate", "Bearer".into());
                if reads_only(&head) {
                    answer = answer.header(
                        "WWW-Authenticate",
                        "Basic realm=\"weir admin\", charset=\"UTF-8\"".into(),
                    );
                }
                let _ = respond(listener, conn, &answer, head_only, false).await;
                return if announces_body {
                    End::Linger
                } else {
                    End::Close
                };
            }
        }

        let mut request = Request {
            head,
            loopback,
            peer: peer.ip(),
            body: Vec::new(),
        };
        let route = match routes::find(&listener.role, &request) {
            Ok(route) => route,
            Err(answer) => {
                // Refused before its body: keep the connection only if there is none.
                let keep = request.head.keep_alive && !announces_body;
                if respond(listener, conn, &answer, head_only, keep)
                    .await
                    .is_err()
                    || !keep
                {
                    return if announces_body {
                        End::Linger
                    } else {
                        End::Close
                    };
                }
                served += 1;
                continue;
            }
        };
        match read_body(conn, &request.head, route.body_max, request_deadline).await {
            ReadBody::Read(body) => request.body = body,
            ReadBody::Closed => return End::Close,
            ReadBody::Timeout => {
                listener.dropped("head_timeout");
                let answer = Answer::text(408, "the request body did not arrive in time");
                let _ = respond(listener, conn, &answer, head_only, false).await;
                return End::Linger;
            }
            ReadBody::Refused(answer) => {
                let _ = respond(listener, conn, &answer, head_only, false).await;
                return End::Linger;
            }
        }

        let answer = routes::handle(listener, slot, route, &request).await;
        slot.wait();
        let keep = request.head.keep_alive;
        if respond(listener, conn, &answer, head_only, keep)
            .await
            .is_err()
            || !keep
        {
            return End::Close;
        }
        served += 1;
    }
}

enum ReadHead {
    Parsed(RequestHead, usize),
    /// The client closed (or the socket failed) before a complete head.
    Closed,
    /// The deadline passed; `started` when some of a head had arrived.
    Timeout {
        started: bool,
    },
    Invalid(HeadError),
}

/// Reads until a whole head is buffered, the buffer is full, or `deadline`.
async fn read_head(conn: &mut Conn, deadline: Instant) -> ReadHead {
    loop {
        if !conn.buffered().is_empty() {
            match parse_request(conn.buffered(), &LIMITS) {
                Ok(Some((head, len))) => return ReadHead::Parsed(head, len),
                Ok(None) if conn.buffered().len() >= HEAD_BYTES_MAX => {
                    return ReadHead::Invalid(HeadError::too_large(format!(
                        "request head exceeds {HEAD_BYTES_MAX} bytes"
                    )))
                }
                Ok(None) => {}
                Err(e) => return ReadHead::Invalid(e),
            }
        }
        let at = monoio::time::Instant::from_std(deadline);
        match monoio::time::timeout_at(at, conn.read_more()).await {
            Err(_) => {
                return ReadHead::Timeout {
                    started: !conn.buffered().is_empty(),
                }
            }
            Ok(Ok(0)) | Ok(Err(_)) => return ReadHead::Closed,
            Ok(Ok(_)) => {}
        }
    }
}

enum ReadBody {
    Read(Vec<u8>),
    Closed,
    Timeout,
    /// Not read at all: this answer says why.
    Refused(Answer),
}

/// Reads the request's body if its route takes one of that size, by `deadline`.
async fn read_body(
    conn: &mut Conn,
    head: &RequestHead,
    body_max: usize,
    deadline: Instant,
) -> ReadBody {
    let len = match head.framing {
        BodyFraming::None | BodyFraming::UntilClose => return ReadBody::Read(Vec::new()),
        BodyFraming::Chunked => {
            return ReadBody::Refused(Answer::text(
                411,
                "send the request body with Content-Length",
            ))
        }
        BodyFraming::Length(len) => len,
    };
    if len > body_max as u64 {
        return ReadBody::Refused(Answer::text(
            413,
            &format!("{} takes a body of at most {body_max} bytes", head.path()),
        ));
    }
    let len = len as usize;
    if len > 0
        && head.expect_continue
        && conn
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .is_err()
    {
        return ReadBody::Closed;
    }
    let mut body = Vec::with_capacity(len);
    while body.len() < len {
        if conn.buffered().is_empty() {
            let at = monoio::time::Instant::from_std(deadline);
            match monoio::time::timeout_at(at, conn.read_more()).await {
                Err(_) => return ReadBody::Timeout,
                Ok(Ok(0)) | Ok(Err(_)) => return ReadBody::Closed,
                Ok(Ok(_)) => {}
            }
        }
        let take = conn.buffered().len().min(len - body.len());
        body.extend_from_slice(&conn.buffered()[..take]);
        conn.consume(take);
    }
    ReadBody::Read(body)
}

/// Whether the request only reads (GET, HEAD): the methods Basic credentials may open.
fn reads_only(head: &RequestHead) -> bool {
    matches!(head.method, Method::Get | Method::Head)
}

/// Whether the request carries exactly one `Authorization` with `token`: as
/// `Bearer <token>`, or, on a request that only reads, as the password of `Basic`
/// (a browser's login prompt; see the module header for why not on changes).
fn authorized(head: &RequestHead, token: &str) -> bool {
    let mut values = head.headers_named("authorization");
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    // Schemes are case-insensitive (RFC 9110 §11.1); one or more spaces follow them.
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (scheme, rest) = value.split_at(space);
    let presented = rest.trim_ascii_start();
    if scheme.eq_ignore_ascii_case(b"bearer") {
        return constant_time_eq(presented, token.as_bytes());
    }
    if scheme.eq_ignore_ascii_case(b"basic") && reads_only(head) {
        let Some(decoded) = base64_decode(presented) else {
            return false;
        };
        // `user:password`; the user name is not checked (there is one secret).
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return false;
        };
        return constant_time_eq(&decoded[colon + 1..], token.as_bytes());
    }
    false
}

/// Standard base64 with padding (RFC 4648 §4), as `Basic` credentials use it; `None` for
/// anything else. Only the head's bytes are decoded, so the input is bounded.
fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    std::str::from_utf8(text.trim_ascii_end())
        .ok()
        .and_then(weir_policy::sigv4::post::base64_decode)
}

/// Compares in a time that depends only on the length of `secret`, never on where a
/// guess first differs.
fn constant_time_eq(guess: &[u8], secret: &[u8]) -> bool {
    let mut diff = guess.len() ^ secret.len();
    for (i, &s) in secret.iter().enumerate() {
        let g = guess.get(i).copied().unwrap_or(0);
        diff |= usize::from(g ^ s);
        diff = std::hint::black_box(diff);
    }
    diff == 0
}

/// Writes `answer` (its head only for HEAD) and counts it.
async fn respond(
    listener: &Listener,
    conn: &Conn,
    answer: &Answer,
    head_only: bool,
    keep_alive: bool,
) -> std::io::Result<()> {
    listener.answered(answer.status);
    conn.write_all(&answer.to_bytes(head_only, keep_alive))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> RequestHead {
        match parse_request(text.as_bytes(), &LIMITS) {
            Ok(Some((head, _))) => head,
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn bearer_token_must_match_exactly_once() {
        let token = "0123456789abcdef";
        let with = |auth: &str| head(&format!("GET / HTTP/1.1\r\nHost: a\r\n{auth}\r\n"));
        assert!(authorized(
            &with("Authorization: Bearer 0123456789abcdef\r\n"),
            token
        ));
        assert!(authorized(
            &with("authorization: bearer  0123456789abcdef\r\n"),
            token
        ));
        assert!(!authorized(
            &with("Authorization: Bearer 0123456789abcdeF\r\n"),
            token
        ));
        assert!(!authorized(
            &with("Authorization: Bearer 0123456789abcde\r\n"),
            token
        ));
        assert!(!authorized(
            &with("Authorization: Bearer 0123456789abcdef0\r\n"),
            token
        ));
        assert!(!authorized(
            &with("Authorization: Basic 0123456789abcdef\r\n"),
            token
        ));
        // Basic with the token as password: `any:0123456789abcdef`.
        assert!(authorized(
            &with("Authorization: Basic YW55OjAxMjM0NTY3ODlhYmNkZWY=\r\n"),
            token
        ));
        // ... but not for a change.
        let post = head(
            "POST /reload HTTP/1.1\r\nHost: a\r\nAuthorization: Basic YW55OjAxMjM0NTY3ODlhYmNkZWY=\r\n\r\n",
        );
        assert!(!authorized(&post, token));
        // Wrong password (`any:0123456789abcdeF`), no colon (`0123456789abcdef`).
        assert!(!authorized(
            &with("Authorization: Basic YW55OjAxMjM0NTY3ODlhYmNkZUY=\r\n"),
            token
        ));
        assert!(!authorized(
            &with("Authorization: Basic MDEyMzQ1Njc4OWFiY2RlZg==\r\n"),
            token
        ));
        assert!(!authorized(
            &with("Authorization: 0123456789abcdef\r\n"),
            token
        ));
        assert!(!authorized(&with("X-Other: 1\r\n"), token));
        assert!(!authorized(
            &with("Authorization: Bearer 0123456789abcdef\r\nAuthorization: Bearer x\r\n"),
            token
        ));
    }

    #[test]
    fn base64_decodes_only_the_standard_alphabet_with_padding() {
        assert_eq!(base64_decode(b"").as_deref(), Some(&b""[..]));
        assert_eq!(base64_decode(b"YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(base64_decode(b"YWI=").as_deref(), Some(&b"ab"[..]));
        assert_eq!(base64_decode(b"YWJj").as_deref(), Some(&b"abc"[..]));
        assert_eq!(base64_decode(b"YQ==YWJj"), None);
        assert_eq!(base64_decode(b"YQ"), None);
        assert_eq!(base64_decode(b"Y===",), None);
        assert_eq!(base64_decode(b"YW-j"), None);
    }

    #[test]
    fn constant_time_eq_compares_lengths_too() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc\0", b"abc"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
    }
}
