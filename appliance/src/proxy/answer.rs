//! weir's own answers: the one path by which weir, rather than a node, answers a request
//! (a malformed or oversized request, an identity or policy refusal, a limit's `SlowDown`,
//! or weir's S3 error when the attempts ended without a node's answer to relay). Each is
//! an [`OwnAnswer`] built from what refused the request, sent by [`send`], which counts it
//! and says what becomes of the connection.

use std::time::Duration;

use weir_io::conn::{head_end, Conn};
use weir_io::http::{s3_error_response, s3_error_response_head_only, HeadError, Method};
use weir_io::http::{BodyFraming, RequestHead};
use weir_policy::attempt::Refusal;
use weir_policy::s3code::S3Code;

use super::{write_timed, After};
use crate::flows::{EndedBy, Flow, Outcome};
use crate::identity;
use crate::protect::Shed;
use crate::shard::Shard;
use crate::signals;

/// Longest time one of weir's own answers may take to write: a client that does not read
/// its error must not hold the connection task.
const OWN_ANSWER_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why weir answers a request itself: what the answer counts as, and whether the
/// connection may carry another request afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cause {
    /// The request is malformed, too large, or its body broke off before any node heard
    /// of it: its body was not read, so the connection closes.
    Rejected,
    /// Refused at the edge by identity or access policy (the `reason` label of
    /// `weir_auth_failures_total`); nothing of its body was read.
    Refused(&'static str),
    /// Refused by a limit with `SlowDown` (the shed reason's label).
    Shed(&'static str),
    /// The attempts ended without a node's answer to relay: the client may still be
    /// sending a body weir never read, so the connection closes.
    GaveUp,
}

/// One of weir's own S3 error answers.
#[derive(Debug, Clone)]
pub(super) struct OwnAnswer<'m> {
    /// HTTP status.
    pub status: u16,
    /// S3 error code.
    pub code: &'m str,
    /// Human-readable message.
    pub message: &'m str,
    /// `Retry-After`, when the client should wait (always given for `SlowDown`).
    pub retry_after: Option<Duration>,
    /// What refused the request.
    pub cause: Cause,
}

impl OwnAnswer<'_> {
    /// A request refused by the HTTP layer (its head or its body's framing).
    pub fn rejected(err: &HeadError) -> OwnAnswer<'_> {
        OwnAnswer {
            status: err.status,
            code: err.code,
            message: &err.message,
            retry_after: None,
            cause: Cause::Rejected,
        }
    }

    /// A request refused by identity or access policy.
    pub fn refused(refusal: &identity::Refusal) -> OwnAnswer<'_> {
        OwnAnswer {
            status: refusal.status,
            code: refusal.code.as_str(),
            message: &refusal.message,
            retry_after: None,
            cause: Cause::Refused(refusal.reason),
        }
    }

    /// A request a limit refused: S3 `SlowDown` (503), which SDKs retry after the pause.
    pub fn shed(shed: &Shed) -> OwnAnswer<'static> {
        OwnAnswer {
            status: 503,
            code: S3Code::SlowDown.as_str(),
            message: "Please reduce your request rate.",
            retry_after: Some(shed.retry_after),
            cause: Cause::Shed(shed.reason.label()),
        }
    }

    /// The attempt machine's answer when no node's answer is relayed.
    pub fn gave_up(refusal: Refusal) -> OwnAnswer<'static> {
        OwnAnswer {
            status: refusal.status,
            code: refusal.code.as_str(),
            message: refusal.message,
            retry_after: refusal.retry_after,
            cause: Cause::GaveUp,
        }
    }
}

/// What weir's answer answers: a request whose head parsed (its flow records the
/// outcome), or bytes that never became one.
#[derive(Clone, Copy)]
pub(super) enum Asker<'a> {
    /// A parsed request.
    Request(&'a Flow, &'a RequestHead),
    /// A head refused while it was read; `method` when its request line said HEAD (the
    /// client then reads the answer as a HEAD's).
    Unparsed(Option<Method>),
}

/// Sends weir's own answer, counts it, and says what becomes of the connection.
pub(super) async fn send(
    shard: &Shard,
    client: &Conn,
    asker: Asker<'_>,
    answer: OwnAnswer<'_>,
) -> After {
    let metrics = shard.metrics();
    let (flow, head) = match asker {
        Asker::Request(flow, head) => (Some(flow), Some(head)),
        Asker::Unparsed(_) => (None, None),
    };
    match answer.cause {
        Cause::Rejected => metrics.rejected(answer.status),
        Cause::Refused(reason) => {
            tracing::debug!(
                reason,
                code = answer.code,
                target = %head.map_or("", |h| h.path()),
                "request refused at the edge"
            );
            metrics.auth_failure(reason);
        }
        Cause::Shed(label) => {
            if let Some(flow) = flow {
                flow.shed.set(Some(label));
            }
        }
        Cause::GaveUp => {}
    }
    metrics.request(answer.status);
    if let Some(flow) = flow {
        flow.status.set(answer.status);
        flow.own_answer.set(true);
        flow.set_error_code(Some(answer.code));
    }
    // Only an edge refusal may keep the connection, and only when the request had no body
    // to drain (so the next head is where it should be) and weir is not draining.
    let keep = matches!(answer.cause, Cause::Refused(_) | Cause::Shed(_))
        && head.is_some_and(|h| {
            h.keep_alive
                && h.minor_version > 0
                && matches!(h.framing, BodyFraming::None | BodyFraming::Length(0))
        })
        && !signals::draining();
    let method = match asker {
        Asker::Request(_, head) => Some(head.method),
        Asker::Unparsed(method) => method,
    };
    // The request's own id, in the error body and its header (docs/operations.md,
    // "Request ids"); a head that never parsed gets a fresh one.
    let rid = flow.map_or_else(|| shard.request_id(), |f| f.request_id.clone());
    let resource = head.map_or("", |h| h.path());
    let bytes = render(method, &answer, resource, &rid, !keep);
    match write_timed(client, &bytes, OWN_ANSWER_WRITE_TIMEOUT).await {
        Ok(()) if keep => After::KeepAlive,
        Ok(()) => After::Close,
        Err(_) => {
            if let Some(flow) = flow {
                flow.ended(Outcome::ClientAborted, EndedBy::Client);
            }
            After::Close
        }
    }
}

/// The answer rendered for the request it answers: no body for HEAD (RFC 9110 §9.3.2: the
/// head says what a GET would carry, and a body would be read as the start of the next
/// response), `Connection: close` when weir closes, and `Retry-After` when given (always
/// for `SlowDown`, which SDKs back off on).
fn render(
    method: Option<Method>,
    answer: &OwnAnswer<'_>,
    resource: &str,
    rid: &str,
    close: bool,
) -> Vec<u8> {
    let render = if method == Some(Method::Head) {
        s3_error_response_head_only
    } else {
        s3_error_response
    };
    let mut bytes = render(
        answer.status,
        answer.code,
        answer.message,
        resource,
        rid,
        close,
    );
    super::relay::add_header(&mut bytes, "X-Request-Id", rid);
    let slow_down = answer.code == S3Code::SlowDown.as_str();
    if let Some(after) = answer
        .retry_after
        .or(slow_down.then_some(Duration::from_secs(1)))
    {
        add_retry_after(&mut bytes, after);
    }
    bytes
}

/// Adds `Retry-After` (whole seconds, rounded up, at least 1: a client told 0 would
/// retry at once) to a serialised error response's head.
fn add_retry_after(response: &mut Vec<u8>, after: Duration) {
    if let Some(pos) = head_end(response) {
        let secs = (after.as_secs_f64().ceil() as u64).max(1);
        let header = format!("Retry-After: {secs}\r\n");
        response.splice(pos - 2..pos - 2, header.into_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code weir answers with is in the one table of S3 codes (`weir_policy::s3code`),
    /// io's HTTP-layer codes included: io cannot use that table, so it is checked here.
    #[test]
    fn every_code_io_answers_with_is_a_named_s3_code() {
        let io_errors = [
            HeadError::bad_request("m"),
            HeadError::request_timeout(),
            HeadError::entity_too_large(1),
            HeadError::too_large("m"),
            HeadError::not_implemented("m"),
            HeadError::version_not_supported("m"),
            HeadError::bad_gateway("m"),
        ];
        for err in io_errors {
            let answer = OwnAnswer::rejected(&err);
            assert_ne!(
                S3Code::parse(answer.code),
                S3Code::Other,
                "{} is not in weir_policy::s3code",
                answer.code
            );
            assert_eq!(S3Code::parse(answer.code).as_str(), err.code);
        }
    }
}
