//! Reading a storage node's answer as health evidence: is it a success, a failure, or
//! throttling (which is backpressure, not failure: docs/design.md,
//! "Failure is a normal state")?
//!
//! S3 says "slow down" in several dialects: `503 SlowDown`, `503 ServiceUnavailable`
//! ("reduce your request rate"), `429`, and SDK-style throttle codes from S3-compatible
//! servers. A 503 without an error code (every `HEAD`, which has no body) is read as
//! throttling, because that is what S3 means by 503; a node that is really broken is
//! caught by its probe and, meanwhile, its concurrency limit has shrunk to the minimum.

use std::time::Duration;

use super::Observation;
pub use crate::s3code::s3_error_code;
use crate::s3code::{Meaning, S3Code};

/// Largest `Retry-After` honoured; longer values are clamped (a node asking for hours is
/// misconfigured, and the client gets `SlowDown` long before that anyway).
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

/// Turns a node's response head into an observation. `s3_code` is the `<Code>` of an
/// error body if the caller read one ([`s3_error_code`]), `retry_after` the raw header.
/// 4xx answers are successes for health (the node worked; the request was refused).
pub fn classify_response(
    status: u16,
    s3_code: Option<&str>,
    retry_after: Option<&str>,
    latency: Duration,
) -> Observation {
    classify(
        status,
        s3_code.map(S3Code::parse),
        retry_after.and_then(parse_retry_after),
        latency,
    )
}

/// [`classify_response`] with the code and `Retry-After` already parsed: the code's
/// meaning (`crate::s3code`, one table) decides first, then the status.
pub fn classify(
    status: u16,
    code: Option<S3Code>,
    retry_after: Option<Duration>,
    latency: Duration,
) -> Observation {
    let throttled = Observation::Throttled { retry_after };
    if status >= 400 {
        match code.map(S3Code::meaning) {
            Some(Meaning::Throttle) => return throttled,
            Some(Meaning::Failure) => return Observation::ServerError { status },
            Some(Meaning::ByStatus) | None => {}
        }
    }
    match status {
        429 => throttled,
        // A 503 without a code (every HEAD) is S3's slow down; with a code the table does
        // not call throttling (maintenance, not initialized), the node is failing.
        503 if code.is_none() => throttled,
        500..=599 => Observation::ServerError { status },
        _ => Observation::Success { latency },
    }
}

/// Parses `Retry-After` as delta-seconds, clamped to [`RETRY_AFTER_MAX`]. The HTTP-date
/// form gives `None`: turning it into a delay needs the wall clock, which policy does not
/// read, and S3-compatible servers send seconds when they send anything.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // All digits: only overflow can fail, and that is "very long".
    let secs = value.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(RETRY_AFTER_MAX))
}
