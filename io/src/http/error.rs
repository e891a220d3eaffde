//! The one error type of the codec: an HTTP status plus the S3 error code to answer with.
//!
//! Client-side errors carry the status the client should see; every error about an
//! upstream message is a 502 `BadGateway`, so the relay can tell the side from `status`
//! (502 = upstream fault, may fail over if no bytes reached the client).

use super::Peer;

/// A rejected message head or body framing, ready to become an S3 XML error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HeadError {
    /// HTTP status to answer with (400, 408, 431, 501, 502, 505).
    pub status: u16,
    /// S3 error code for the XML body, e.g. `InvalidRequest`.
    pub code: &'static str,
    /// Human-readable reason naming the offending rule.
    pub message: String,
}

impl HeadError {
    /// An error with an explicit status and code. Private so that every code io writes
    /// comes from a named constructor below, which the appliance checks against its one
    /// table of S3 codes.
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `InvalidRequest`: the request violates the message grammar.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidRequest", message)
    }

    /// 408 `RequestTimeout`: part of a head arrived, then the client went quiet.
    pub fn request_timeout() -> Self {
        Self::new(
            408,
            "RequestTimeout",
            "Your socket connection to the server was not read from or written to within the timeout period.",
        )
    }

    /// 400 `EntityTooLarge` (S3's code and status): a body larger than `max` bytes, the
    /// largest request body weir accepts.
    pub fn entity_too_large(max: u64) -> Self {
        Self::new(
            400,
            "EntityTooLarge",
            format!("Your proposed upload exceeds the maximum allowed size of {max} bytes."),
        )
    }

    /// 431 `RequestHeaderSectionTooLarge`: the head exceeds [`super::HeadLimits`].
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(431, "RequestHeaderSectionTooLarge", message)
    }

    /// 501 `NotImplemented`: a valid method token that S3 does not use.
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(501, "NotImplemented", message)
    }

    /// 505 `HttpVersionNotSupported`: a well-formed version other than 1.0 / 1.1.
    pub fn version_not_supported(message: impl Into<String>) -> Self {
        Self::new(505, "HttpVersionNotSupported", message)
    }

    /// 502 `BadGateway`: the upstream sent something we refuse to relay.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(502, "BadGateway", message)
    }

    /// Whether the fault lies with the upstream (502) rather than the client.
    pub fn is_upstream(&self) -> bool {
        self.status == 502
    }

    /// A grammar violation by `peer`: 400 from a client, 502 from an upstream.
    pub(crate) fn malformed(peer: Peer, message: impl Into<String>) -> Self {
        match peer {
            Peer::Client => Self::bad_request(message),
            Peer::Upstream => Self::bad_gateway(message),
        }
    }

    /// A size-limit violation by `peer`: 431 from a client, 502 from an upstream.
    pub(crate) fn oversized(peer: Peer, message: impl Into<String>) -> Self {
        match peer {
            Peer::Client => Self::too_large(message),
            Peer::Upstream => Self::bad_gateway(message),
        }
    }
}
