//! Strict HTTP/1.1 head codec and chunked framing (RFC 9110 / RFC 9112).
//!
//! This module owns the bytes-level grammar of every message weir relays: it parses request
//! and response heads, decides body framing, re-serialises heads for the other side and
//! validates `Transfer-Encoding: chunked` framing while the relay splices the payload. It is
//! pure ("sans-io"): the relay reads into a buffer and calls [`parse_request`] /
//! [`parse_response`] / [`ChunkedDecoder::parse`] until they answer.
//!
//! Why hand-written rather than `httparse`: a proxy must agree with the upstream on where
//! every message ends, so anything two parsers could read differently (bare LF, obs-fold,
//! duplicate or malformed framing headers, odd chunk-size lines) is rejected here instead
//! of being forwarded. httparse accepts several of those and cannot say 505 vs 400 vs 501.
//!
//! Flow for one request:
//! 1. [`parse_request`] on the client bytes → [`RequestHead`] + head length, or a
//!    [`HeadError`] that [`s3_error_response`] turns into the answer to the client.
//! 2. [`write_request_head`] → the upstream head (CRLF, HTTP/1.1, hop-by-hop dropped).
//! 3. Body per [`BodyFraming`]: `Length(n)` is spliced as is; `Chunked` goes through a
//!    [`ChunkedDecoder`] that finds the payload spans.
//! 4. [`parse_response`] / [`write_response_head`] the same way back.

mod chunked;
mod error;
mod fields;
mod request;
mod response;
mod s3error;
mod syntax;
mod write;

#[cfg(test)]
mod corpus_tests;
#[cfg(test)]
mod prop_tests;

pub use chunked::{ChunkItem, ChunkedDecoder, ChunkedLimits};
pub use error::HeadError;
pub use request::{parse_request, RequestHead};
pub use response::{parse_response, ResponseHead};
pub use s3error::{reason_phrase, s3_error_response, s3_error_response_head_only};
pub use write::{write_request_head, write_response_head};

/// Bounds on one message head; exceeding either answers 431 (502 for upstream heads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Largest head accepted, start line and final empty line included.
    pub header_bytes_max: usize,
    /// Most header field lines accepted in one head.
    pub headers_count_max: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        Self {
            header_bytes_max: 16 * 1024,
            headers_count_max: 128,
        }
    }
}

/// Which side of the proxy sent the bytes being parsed; decides 4xx versus 502 errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A downstream client: malformed input is the client's fault (4xx/5xx per rule).
    Client,
    /// An upstream storage node: malformed input is a 502 Bad Gateway.
    Upstream,
}

/// The request methods S3 uses; any other syntactically valid method is a 501.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `PUT`
    Put,
    /// `POST`
    Post,
    /// `DELETE`
    Delete,
    /// `OPTIONS`
    Options,
}

impl Method {
    /// The method token as sent on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        }
    }

    /// The method for an exact (case-sensitive, per RFC 9110 §9.1) token, if S3 uses it.
    pub fn from_token(token: &[u8]) -> Option<Method> {
        Some(match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"PUT" => Method::Put,
            b"POST" => Method::Post,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            _ => return None,
        })
    }
}

/// One header field line as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Field name in its original case (always a valid token, so ASCII).
    pub name: String,
    /// Field value without the surrounding optional whitespace, otherwise raw bytes.
    pub value: Vec<u8>,
}

impl Header {
    /// Builds a header from a name and value (no validation: for heads weir itself makes).
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }

    /// Whether this header's name equals `name`, ignoring ASCII case.
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// How the body after a head is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body at all (no framing headers, or a bodiless response).
    None,
    /// Exactly this many bytes follow (`Content-Length`; may be 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`; walk it with a [`ChunkedDecoder`].
    Chunked,
    /// Responses only: the body runs until the upstream closes the connection.
    UntilClose,
}
