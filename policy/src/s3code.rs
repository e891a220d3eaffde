//! The S3 error codes weir reads from storage nodes and writes in its own answers, and
//! what each means for a node's answer (docs/design.md, "Failure is a normal state", the
//! S3 error code table). This is the one place a code is added: its spelling, and the
//! class that decides backpressure against failure.

use std::fmt;

/// What a node's error answer carrying a code says about the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    /// "Reduce your request rate", at any error status: backpressure, never a failure.
    Throttle,
    /// The node failed the request itself, at any error status.
    Failure,
    /// The status decides (4xx: the request's answer; 5xx: a failure; `503` and `429`
    /// without a code: throttling).
    ByStatus,
}

macro_rules! s3_codes {
    ($( $(#[$doc:meta])* $name:ident => $meaning:ident, )*) => {
        /// An S3 error code weir knows by name; codes it does not know are [`S3Code::Other`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum S3Code {
            $( $(#[$doc])* $name, )*
            /// A code weir does not know: its status decides.
            Other,
        }

        impl S3Code {
            /// Every named code, in table order (for docs and tests).
            pub const ALL: &'static [S3Code] = &[$(S3Code::$name,)*];

            /// The code as S3 spells it (`Other` spells nothing a client should see).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( S3Code::$name => stringify!($name), )*
                    S3Code::Other => "Other",
                }
            }

            /// What a node's answer with this code says about the node.
            pub const fn meaning(self) -> Meaning {
                match self {
                    $( S3Code::$name => Meaning::$meaning, )*
                    S3Code::Other => Meaning::ByStatus,
                }
            }

            /// The code spelled `text`; an unknown spelling is [`S3Code::Other`].
            pub fn parse(text: &str) -> S3Code {
                match text {
                    $( stringify!($name) => S3Code::$name, )*
                    _ => S3Code::Other,
                }
            }
        }
    };
}

s3_codes! {
    // --- read from nodes: throttling in S3 and S3-compatible dialects ---
    /// S3's "reduce your request rate" (503); also weir's own answer when it will not wait.
    SlowDown => Throttle,
    /// S3's 503 "reduce your request rate"; also weir's answer when no node can take a request.
    ServiceUnavailable => Throttle,
    /// Too many requests (AWS APIs, some S3-compatible servers).
    RequestLimitExceeded => Throttle,
    /// Too many requests (S3-compatible servers, on 429 or 503).
    TooManyRequests => Throttle,
    /// SDK-style throttle code.
    Throttling => Throttle,
    /// SDK-style throttle code.
    ThrottlingException => Throttle,
    /// SDK-style throttle code.
    ThrottledException => Throttle,
    /// SDK-style throttle code.
    RequestThrottled => Throttle,
    /// SDK-style throttle code.
    RequestThrottledException => Throttle,
    /// SDK-style throttle code.
    TooManyRequestsException => Throttle,
    /// Bandwidth, not request, throttling.
    BandwidthLimitExceeded => Throttle,
    /// DynamoDB-style throttle code some gateways pass on.
    ProvisionedThroughputExceededException => Throttle,
    // --- read from nodes: the node failed ---
    /// The node failed internally; also weir's answer when it cannot sign for a pool.
    InternalError => Failure,
    /// MinIO's "server not initialized" (503 while starting): not ready, not throttling.
    XMinioServerNotInitialized => Failure,
    // --- written by weir (a node's answer with them is judged by its status) ---
    /// weir's answer when nodes timed out.
    GatewayTimeout => ByStatus,
    /// weir's answer when nodes answered garbage or closed on the request.
    BadGateway => ByStatus,
    /// Access policy or an expired or unsigned request.
    AccessDenied => ByStatus,
    /// A bad header or chunk signature.
    SignatureDoesNotMatch => ByStatus,
    /// An access key no tenant holds.
    InvalidAccessKeyId => ByStatus,
    /// A signature dated too far from weir's clock.
    RequestTimeTooSkewed => ByStatus,
    /// A malformed request, or one weir cannot take as sent.
    InvalidRequest => ByStatus,
    /// A request head or body that did not arrive in time.
    RequestTimeout => ByStatus,
    /// A body over the size weir accepts.
    EntityTooLarge => ByStatus,
    /// A form upload under its policy's minimum size.
    EntityTooSmall => ByStatus,
    /// A request head over `header_bytes_max` or `headers_count_max`.
    RequestHeaderSectionTooLarge => ByStatus,
    /// A method or framing weir does not implement.
    NotImplemented => ByStatus,
    /// An HTTP version other than 1.0 and 1.1.
    HttpVersionNotSupported => ByStatus,
    /// An `Authorization` header that does not parse.
    AuthorizationHeaderMalformed => ByStatus,
    /// Presigned-URL parameters that do not parse.
    AuthorizationQueryParametersError => ByStatus,
    /// A streaming-signed body whose framing or length is wrong.
    IncompleteBody => ByStatus,
    /// A header or form field with a value weir refuses.
    InvalidArgument => ByStatus,
    /// A request target that names no single bucket and key.
    InvalidURI => ByStatus,
    /// A bucket name S3 does not allow.
    InvalidBucketName => ByStatus,
    /// A browser-form upload that does not parse.
    MalformedPOSTRequest => ByStatus,
    /// A form upload's fields before its file are too long.
    MaxPostPreDataLengthExceeded => ByStatus,
    /// A form upload without exactly one file.
    IncorrectNumberOfFilesInPostRequest => ByStatus,
    /// A form upload's policy document that does not parse.
    InvalidPolicyDocument => ByStatus,
    /// A session token weir cannot honour.
    InvalidToken => ByStatus,
    /// A form upload without a `Content-Length`.
    MissingContentLength => ByStatus,
}

impl fmt::Display for S3Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest error body weir reads to find its `<Code>`: real S3 error documents are a few
/// hundred bytes, and a longer body is relayed (or drained) unread.
pub const ERROR_BODY_BYTES_MAX: u64 = 4096;

/// Longest S3 error code read from a body; real codes are under 40 characters.
const ERROR_CODE_LEN_MAX: usize = 64;

/// The `<Code>` of an S3 XML error body (from its first bytes), if it has a plausible one.
pub fn s3_error_code(body: &[u8]) -> Option<&str> {
    const OPEN: &[u8] = b"<Code>";
    const CLOSE: &[u8] = b"</Code>";
    let start = body.windows(OPEN.len()).position(|w| w == OPEN)? + OPEN.len();
    let rest = body.get(start..)?;
    let len = rest.windows(CLOSE.len()).position(|w| w == CLOSE)?;
    let code = std::str::from_utf8(rest.get(..len)?).ok()?.trim();
    let plausible = !code.is_empty()
        && code.len() <= ERROR_CODE_LEN_MAX
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.');
    plausible.then_some(code)
}

/// The code of an error body as weir classifies it: `None` when the body has none.
pub fn code_of(body: &[u8]) -> Option<S3Code> {
    s3_error_code(body).map(S3Code::parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for &code in S3Code::ALL {
            assert_eq!(S3Code::parse(code.as_str()), code);
            assert_eq!(code.to_string(), code.as_str());
        }
        assert_eq!(S3Code::parse("NoSuchKey"), S3Code::Other);
        assert_eq!(
            S3Code::parse("slowdown"),
            S3Code::Other,
            "codes are case-sensitive"
        );
    }

    #[test]
    fn the_table() {
        for code in [
            "SlowDown",
            "ServiceUnavailable",
            "RequestLimitExceeded",
            "TooManyRequests",
        ] {
            assert_eq!(S3Code::parse(code).meaning(), Meaning::Throttle, "{code}");
        }
        assert_eq!(S3Code::InternalError.meaning(), Meaning::Failure);
        assert_eq!(
            S3Code::XMinioServerNotInitialized.meaning(),
            Meaning::Failure
        );
        assert_eq!(S3Code::AccessDenied.meaning(), Meaning::ByStatus);
        assert_eq!(S3Code::Other.meaning(), Meaning::ByStatus);
    }

    #[test]
    fn codes_from_bodies() {
        let body =
            b"<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>x</Message></Error>";
        assert_eq!(code_of(body), Some(S3Code::SlowDown));
        assert_eq!(code_of(b"<Code>NoSuchKey</Code>"), Some(S3Code::Other));
        assert_eq!(code_of(b"no code here"), None);
    }

    /// The table in docs/design.md says what each code means; it must name exactly the
    /// codes this table reads as throttling and as failure.
    #[test]
    fn the_design_doc_lists_every_code_that_decides() {
        let doc = include_str!("../../docs/design.md");
        let row = |meaning: &str| -> Vec<&str> {
            let line = doc
                .lines()
                .find(|l| {
                    l.starts_with("| `") && l.contains("on any status") && {
                        let cells: Vec<&str> = l.split('|').collect();
                        cells.get(2).is_some_and(|c| c.trim().starts_with(meaning))
                    }
                })
                .unwrap_or_else(|| panic!("no '{meaning}' row in docs/design.md"));
            let codes = line.split('|').nth(1).unwrap_or_default();
            codes.split('`').skip(1).step_by(2).collect()
        };
        for (meaning, class) in [
            ("throttling", Meaning::Throttle),
            ("the node failed", Meaning::Failure),
        ] {
            let mut documented = row(meaning);
            documented.sort_unstable();
            let mut coded: Vec<&str> = S3Code::ALL
                .iter()
                .filter(|c| c.meaning() == class)
                .map(|c| c.as_str())
                .collect();
            coded.sort_unstable();
            assert_eq!(documented, coded, "docs/design.md's '{meaning}' row");
        }
    }
}
