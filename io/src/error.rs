//! The one error type at weir-io's boundary. Every failure says which side caused it and
//! how, so failover reads fields instead of matching strings (docs/design.md, "How the
//! code should read").

use std::fmt;

/// Which party a failure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The downstream client (its socket failed, closed early or sent garbage).
    Client,
    /// The storage node (refused, reset, timed out, closed early, answered garbage).
    Upstream,
    /// weir itself (resource exhaustion such as no file descriptors).
    Internal,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
            Side::Internal => "internal",
        })
    }
}

/// What went wrong, coarse enough to drive metrics and health decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Could not establish a connection.
    Connect,
    /// A deadline passed (connect, first byte, idle read/write).
    Timeout,
    /// The peer closed before the message was complete.
    Closed,
    /// A socket error (reset, broken pipe, ...).
    Io,
    /// The peer sent bytes that violate HTTP/1.1 framing.
    Protocol,
}

/// A relay/connection failure with its side and kind (whether the request may go again
/// is the policy's call, from the kind and what was sent: `appliance/src/proxy/route.rs`, `failed_of`).
#[derive(Debug, thiserror::Error)]
#[error("{side} {kind:?}: {detail}")]
pub struct Error {
    /// Who failed.
    pub side: Side,
    /// How it failed.
    pub kind: Kind,
    /// Human-readable detail for logs.
    pub detail: String,
    /// Set when a TLS handshake is what failed (for the handshake-failure metric).
    pub tls_failure: Option<crate::tls::Failure>,
    /// For a client's malformed or oversized body framing: the S3 error the client is
    /// answered with (status and code, e.g. 400 `EntityTooLarge`).
    pub answer: Option<crate::http::HeadError>,
}

impl Error {
    /// A failure of `side`.
    pub fn new(side: Side, kind: Kind, detail: impl Into<String>) -> Self {
        Error {
            side,
            kind,
            detail: detail.into(),
            tls_failure: None,
            answer: None,
        }
    }

    /// A framing error the codec found in `side`'s message, carrying its answer.
    pub fn framing(side: Side, err: crate::http::HeadError) -> Self {
        let mut e = Error::new(side, Kind::Protocol, err.message.clone());
        e.answer = Some(err);
        e
    }

    /// Wraps a socket error, classifying timeouts and early closes.
    pub fn from_io(side: Side, err: &std::io::Error) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::TimedOut => Kind::Timeout,
            std::io::ErrorKind::UnexpectedEof => Kind::Closed,
            _ => Kind::Io,
        };
        Error::new(side, kind, err.to_string())
    }
}
