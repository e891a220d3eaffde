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

/// Largest `Retry-After` honoured; longer values are clamped (a node asking for hours is
/// misconfigured, and the client gets `SlowDown` long before that anyway).
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

/// Longest S3 error code read from a body; real codes are under 40 characters.
const ERROR_CODE_LEN_MAX: usize = 64;

/// Error codes that mean "reduce your request rate" in S3 and S3-compatible servers.
const THROTTLE_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequests",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "ProvisionedThroughputExceededException",
];

/// Turns a node's response head into an observation. `s3_code` is the `<Code>` of an
/// error body if the caller read one ([`s3_error_code`]), `retry_after` the raw header.
/// 4xx answers are successes for health (the node worked; the request was refused).
pub fn classify_response(
    status: u16,
    s3_code: Option<&str>,
    retry_after: Option<&str>,
    latency: Duration,
) -> Observation {
    let throttled = Observation::Throttled {
        retry_after: retry_after.and_then(parse_retry_after),
    };
    if let Some(code) = s3_code {
        if status >= 400 && THROTTLE_CODES.contains(&code) {
            return throttled;
        }
    }
    match status {
        429 => throttled,
        503 => match s3_code {
            None | Some("ServiceUnavailable") => throttled,
            Some(_) => Observation::ServerError { status },
        },
        500..=599 => Observation::ServerError { status },
        _ => Observation::Success { latency },
    }
}

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
