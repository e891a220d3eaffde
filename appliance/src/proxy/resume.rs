//! A GET whose node died mid-body, fetched on from another node: the request is planned
//! (`weir_policy::resume`: a rewritten `Range`, or the whole again with the delivered
//! bytes skipped, `If-Match` pinned to the first ETag where the signature allows), sent,
//! and its answer checked before a byte of it reaches the client.

use std::time::{Duration, Instant, SystemTime};

use weir_io::conn::Conn;
use weir_io::http::{write_request_head, BodyFraming, Header, Method, RequestHead, ResponseHead};
use weir_policy::attempt::{Decision, Failed, ResumeOutcome};
use weir_policy::resume::{
    check_resumed, may_add_if_match, plan_resume, signed_headers, ResumePlan,
};

use super::route::{failed_of, Routing};
use super::send::{read_final_head, Interim};
use super::write_timed;
use crate::bus::NodeId;
use crate::client_address::{self, Established, Origin};
use crate::identity;

/// What a GET's first response pins for a resume.
pub(super) struct Resumable {
    /// The object's strong ETag: a resumed answer must carry the same.
    pub etag: String,
    /// The first answer's status (200 or 206).
    pub status: u16,
    /// Its `Content-Range`, for a 206.
    pub content_range: Option<String>,
    /// Its body's length.
    pub length: u64,
}

/// What `resp` pins for resuming `head`'s body; `None` when it cannot be resumed (not a
/// GET's 200 or 206, no length, or no strong ETag).
pub(super) fn resumable(head: &RequestHead, resp: &ResponseHead) -> Option<Resumable> {
    if head.method != Method::Get || !matches!(resp.status, 200 | 206) {
        return None;
    }
    let BodyFraming::Length(length) = resp.framing else {
        return None;
    };
    let text = |name: &str| {
        resp.header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_string)
    };
    let etag = text("etag")?;
    if etag.starts_with("W/") {
        return None;
    }
    Some(Resumable {
        etag,
        status: resp.status,
        content_range: text("content-range"),
        length,
    })
}

/// Fetches the rest of a GET body from another node: plans the request
/// (`weir_policy::resume`), sends it, checks the answer's ETag and range, and skips bytes
/// the client already has. Returns the node and a connection positioned at the first
/// byte the client still needs.
pub(super) async fn resume_from_another(
    route: &mut Routing<'_>,
    head: &RequestHead,
    (origin, established): (&Origin, &Established),
    first: &Resumable,
    delivered: u64,
    request_id: &str,
) -> Option<(NodeId, Conn)> {
    let (shard, ep) = (route.shard, route.ep);
    let text = |name: &str| head.header(name).and_then(|v| std::str::from_utf8(v).ok());
    let client_signed = signed_headers(text("authorization"), head.query());
    // Each try ends in an outcome for the attempt machine, which says whether another
    // node is tried for this resume.
    let mut outcome: Option<(NodeId, ResumeOutcome)> = None;
    loop {
        if let Some((node, last)) = outcome.take() {
            let step = route.attempts.on_resume(node, last);
            if route.apply(node, step)
                != (Decision::Retry {
                    wait: Duration::ZERO,
                })
            {
                return None;
            }
        }
        let node = route.pick()?;
        if !route.attempts.start_resume(node) {
            return None;
        }
        let rejected = Some((node, ResumeOutcome::Rejected));
        // A pool that re-signs signs whatever is sent: the client's signed headers do
        // not bind the resumed request, so `Range` can be rewritten (docs/identity.md).
        let signed: &[String] = if identity::resigns(&ep.settings, route.tenant, node.pool) {
            &[]
        } else {
            &client_signed
        };
        let plan = plan_resume(
            text("range"),
            signed,
            first.status,
            first.content_range.as_deref(),
            first.length,
            delivered,
        );
        if let ResumePlan::Impossible(why) = &plan {
            let node = ep.settings.nodes[node.pool][node.node];
            tracing::info!(why, %node, request_id, "GET cannot be resumed on this node");
            outcome = rejected;
            continue;
        }
        let Some((start, end)) =
            plan.expected_window(first.status, first.content_range.as_deref(), first.length)
        else {
            outcome = rejected;
            continue;
        };
        // Told about the client as any request to this node's pool (docs/client-address.md).
        let told = client_address::head_for_pool(
            &ep.settings,
            origin,
            established,
            node.pool,
            route.tenant,
            head,
        );
        let mut resumed = match told {
            Ok(told) => told.unwrap_or_else(|| head.clone()),
            Err(_) => {
                outcome = rejected;
                continue;
            }
        };
        if let ResumePlan::Rewrite { range } = &plan {
            resumed.headers.retain(|h| !h.is("range"));
            resumed
                .headers
                .push(Header::new("Range", range.as_bytes().to_vec()));
        }
        if may_add_if_match(signed) && resumed.header("if-match").is_none() {
            resumed
                .headers
                .push(Header::new("If-Match", first.etag.as_bytes().to_vec()));
        }
        let bytes = match identity::resigned_bytes(
            &ep.settings,
            &ep.keys,
            route.tenant,
            node.pool,
            node.node,
            &resumed,
            SystemTime::now(),
        ) {
            Ok(Some(resigned)) => resigned.head,
            Ok(None) => {
                let mut b = Vec::with_capacity(1024);
                write_request_head(&resumed, &mut b);
                b
            }
            Err(e) => {
                let pool = &ep.settings.config.pools[node.pool].name;
                tracing::error!(pool, request_id, error = %e, "cannot re-sign the resume");
                outcome = rejected;
                continue;
            }
        };
        let addr = ep.settings.nodes[node.pool][node.node];
        let tls = ep.settings.tls_target(node.pool, node.node);
        let checkout = match client_address::proxied(&ep.settings, origin, established, node.pool) {
            None => {
                shard
                    .upstream
                    .checkout(addr, tls, Instant::now(), true)
                    .await
            }
            Some((source, destination)) => {
                let now = Instant::now();
                let up = &shard.upstream;
                up.checkout_proxied(addr, tls, now, true, source, destination)
                    .await
            }
        };
        let Ok(checkout) = checkout else {
            outcome = Some((node, ResumeOutcome::Failed(Failed::Connect)));
            continue;
        };
        let mut conn = checkout.conn;
        if write_timed(&conn, &bytes, route.timeouts.io).await.is_err() {
            outcome = rejected;
            continue;
        }
        let sent_at = Instant::now();
        let deadline = sent_at + route.timeouts.first_byte;
        let mut interim = Interim {
            forward: false,
            count: 0,
            io_timeout: route.timeouts.io,
        };
        let resp = match read_final_head(
            ep,
            &mut conn,
            None,
            Method::Get,
            deadline,
            &mut interim,
            false,
        )
        .await
        {
            Ok(resp) => resp,
            Err(e) => {
                outcome = Some((node, ResumeOutcome::Failed(failed_of(&e))));
                continue;
            }
        };
        let text = |name: &str| resp.header(name).and_then(|v| std::str::from_utf8(v).ok());
        if let Err(why) = check_resumed(
            &plan,
            &first.etag,
            text("etag"),
            resp.status,
            text("content-range"),
            start,
            end,
        ) {
            tracing::warn!(node = %addr, why, request_id, "resumed response rejected");
            outcome = rejected;
            continue;
        }
        let latency = sent_at.elapsed();
        // The connection must now hold exactly the bytes the client still needs.
        let expected = first.length - delivered;
        let skip = match plan {
            ResumePlan::ResendSkip { skip } => skip,
            _ => 0,
        };
        let BodyFraming::Length(len) = resp.framing else {
            outcome = rejected;
            continue;
        };
        if len != expected + skip {
            tracing::warn!(node = %addr, len, expected, request_id, "resumed response has the wrong length");
            outcome = rejected;
            continue;
        }
        if skip > 0 {
            match monoio::time::timeout(route.timeouts.io, conn.discard(skip)).await {
                Ok(Ok(true)) => {}
                _ => {
                    outcome = rejected;
                    continue;
                }
            }
        }
        // The head's latency is the node's; whether the earlier node's failure was its
        // own is settled when this body completes (`Route::complete`), not by a head.
        let step = route
            .attempts
            .on_resume(node, ResumeOutcome::Resumed { latency });
        route.apply(node, step);
        return Some((node, conn));
    }
}
