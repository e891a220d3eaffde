//! One request from admission to its answer: the attempt loop. Each turn picks a node
//! (or queues for one, by class weight, when every node is at its limit), sends the
//! request (`send.rs`), and hands what came of it to the request's attempt machine
//! (`weir_policy::attempt`), which says relay, retry after a wait, or give up with weir's
//! own answer. This file does what it says.

use crate::client_address;
use std::rc::Rc;
use std::time::{Instant, SystemTime};

use weir_io::http::{write_request_head, write_response_head, HeadError, RequestHead};
use weir_io::{Kind, Side};
use weir_policy::attempt::{Answer, Attempts, Decision, Limit, Outcome, Params, Refusal};
use weir_policy::health::parse_retry_after;
use weir_policy::retry::BodyState;
use weir_policy::s3code::{code_of, s3_error_code, S3Code};

use super::admit::{admit, Admitted};
use super::answer::OwnAnswer;
use super::body::{body_state, ReqBody};
use super::relay::{relay_held, relay_response};
use super::route::{affinity, InFlight, Routing};
use super::send::{read_error_body, send_request, Outgoing, Sent};
use super::{After, Exchange};
use crate::flows::{self, EndedBy};
use crate::identity;
use crate::protect::Slot;
use crate::shard::Epoch;

/// Handles one request; returns what becomes of the client connection.
pub(super) async fn handle(mut x: Exchange<'_>) -> After {
    let Admitted {
        at: admitted_at,
        classified,
        streaming,
        mut waited,
        down_pacer,
        body,
        _ticket,
    } = match admit(&mut x).await {
        Ok(admitted) => admitted,
        Err(after) => return after,
    };
    let (shard, ep, flow, head): (_, &Rc<Epoch>, _, _) = (x.shard, x.ep, x.flow, x.head);
    let cfg = &ep.settings.config;
    let mut route = Routing {
        shard,
        ep,
        chain: &classified.pools,
        tenant: classified.tenant.0,
        bucket: classified.bucket.as_deref(),
        affinity: affinity(cfg, &classified.pools, head),
        attempts: Attempts::new(head.method.as_str(), Params::from_upstream(&cfg.upstream)),
        timeouts: classified.timeouts,
    };

    let mut head_bytes = Vec::with_capacity(1024);
    write_request_head(head, &mut head_bytes);
    if let ReqBody::Buffered(b) = &body {
        head_bytes.extend_from_slice(b);
    }

    // A node's failure answer (head and body, as it came), held in case no other node
    // does better: then the client gets it unchanged.
    let mut held_answer: Option<Vec<u8>> = None;
    loop {
        // While others wait for a node, a newcomer queues behind them (by class weight).
        let first = route.attempts.attempts() == 0;
        let contended = first && ep.protect.nodes_contended();
        // After a stale kept-alive connection: the same node, on a new connection.
        let again = route.attempts.take_again();
        let node = match if again.is_some() {
            again
        } else if contended {
            None
        } else {
            route.pick()
        } {
            Some(node) => node,
            // Every routable node is at its concurrency limit: wait in the class queue
            // for a slot (weighted by class), up to the class's queue timeout.
            None if first && route.any_routable() => {
                let deadline = admitted_at + ep.protect.queue_timeout(classified.class);
                let turn = ep
                    .protect
                    .wait_turn(Slot::Node, classified.class, deadline, || route.pick())
                    .await;
                waited.for_slot = true;
                flow.waited.set(waited);
                match turn {
                    Ok(node) => node,
                    Err(shed) => return x.answer(OwnAnswer::shed(&shed)).await,
                }
            }
            None => {
                let refusal = match (route.attempts.on_no_node(), held_answer.take()) {
                    (Decision::Relay, Some(bytes)) => {
                        return relay_held(&x, &bytes, route.timeouts.io).await
                    }
                    (Decision::GiveUp(r), _) => r,
                    _ => Refusal {
                        status: 503,
                        code: S3Code::ServiceUnavailable,
                        message: "no storage node could take the request",
                        retry_after: None,
                    },
                };
                return x.answer(OwnAnswer::gave_up(refusal)).await;
            }
        };
        if flow.queued.get().is_none() {
            flow.queued.set(Some(flow.started.elapsed()));
        }
        if route.attempts.start(node) {
            shard.metrics().upstream_retry();
            flow.retries.set(flow.retries.get() + 1);
        }
        let inflight = InFlight::enter(ep, node, route.bucket_of(node.pool));
        let addr = ep.settings.nodes[node.pool][node.node];
        flow.nodes.borrow_mut().push(addr);
        flow.served_by.set(Some((node.pool, node.node)));
        // What this pool's nodes are told about the client (docs/client-address.md).
        let told = match &body {
            ReqBody::Form(_) => Ok(None),
            _ => client_address::head_for_pool(
                &ep.settings,
                x.origin,
                x.established,
                node.pool,
                classified.tenant.0,
                head,
            ),
        };
        let told = match told {
            Ok(told) => told,
            Err(refusal) => return x.answer(OwnAnswer::refused(&refusal)).await,
        };
        let told_bytes: Vec<u8>;
        let (head, head_bytes) = match &told {
            None => (head, &head_bytes),
            Some(h) => {
                let mut b = Vec::with_capacity(1024);
                write_request_head(h, &mut b);
                if let ReqBody::Buffered(body) = &body {
                    b.extend_from_slice(body);
                }
                told_bytes = b;
                (h, &told_bytes)
            }
        };
        // Re-signed per attempt: failover to another pool signs as that pool.
        let resigned: Vec<u8>;
        let mut chunk_signer = None;
        let (tenant, now) = (classified.tenant.0, SystemTime::now());
        let resigned_bytes = match &body {
            ReqBody::Form(form) => {
                let tell = |h: &mut RequestHead| {
                    client_address::tell(&ep.settings, x.origin, x.established, node.pool, h)
                };
                form.request_bytes(
                    &ep.settings,
                    &ep.keys,
                    tenant,
                    node.pool,
                    node.node,
                    now,
                    &tell,
                )
            }
            _ => identity::resigned_bytes(
                &ep.settings,
                &ep.keys,
                tenant,
                node.pool,
                node.node,
                head,
                now,
            ),
        };
        let bytes: &[u8] = match resigned_bytes {
            Ok(None) => head_bytes,
            Ok(Some(identity::Resigned {
                head: mut b,
                chunks,
            })) => {
                if let ReqBody::Buffered(body) = &body {
                    b.extend_from_slice(body);
                }
                resigned = b;
                chunk_signer = chunks;
                &resigned
            }
            // The client's to fix (a form that cannot be re-signed): answer it as such.
            Err(e) if e.s3_status().0 < 500 => {
                return x.answer(OwnAnswer::refused(&e.into())).await;
            }
            Err(e) => {
                let (pool, request_id) = (&cfg.pools[node.pool].name, &flow.request_id);
                tracing::error!(pool, request_id, error = %e, "cannot re-sign the request");
                let refusal = Refusal {
                    status: 500,
                    code: S3Code::InternalError,
                    message: "weir could not sign the request for its storage",
                    retry_after: None,
                };
                return x.answer(OwnAnswer::gave_up(refusal)).await;
            }
        };
        let sent_at = Instant::now();
        let tls = ep.settings.tls_target(node.pool, node.node);
        let chunks = streaming.as_ref().map(|s| s.stream(chunk_signer));
        let send_head = match &body {
            ReqBody::Form(form) => form.relay_head(),
            _ => head,
        };
        let out = Outgoing {
            head: send_head,
            bytes,
            body: &body,
            chunks,
            addr,
            tls,
            proxied: client_address::proxied(&ep.settings, x.origin, x.established, node.pool),
            fresh: route.attempts.fresh_only(),
            timeouts: route.timeouts,
        };
        match send_request(&mut x, out).await {
            Ok(Sent {
                resp,
                mut upstream,
                body_unsent,
                request_complete,
            }) => {
                let latency = sent_at.elapsed();
                flow.first_byte.set(Some(flow.started.elapsed()));
                // A small error answer is read whole (it stays buffered): its S3 code
                // decides, and its bytes are relayed unchanged or dropped for a retry.
                let body_len = read_error_body(&mut upstream, &resp, route.timeouts.io).await;
                let code = body_len.and_then(|n| code_of(&upstream.buffered()[..n]));
                flow.set_error_code(
                    body_len.and_then(|n| s3_error_code(&upstream.buffered()[..n])),
                );
                let retry_after = resp
                    .header("retry-after")
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(parse_retry_after);
                let answer = Answer {
                    status: resp.status,
                    code,
                    retry_after,
                    latency,
                    held: body_len.is_some(),
                    request_complete,
                    body: body_state(&body, body_unsent),
                };
                let (decision, limit) = route.decide(node, Outcome::Answered(answer));
                if limit == Some(Limit::Throttle) {
                    shard.metrics().throttled();
                }
                if decision == Decision::Relay {
                    x.mover.set_pacer(down_pacer.clone());
                    return relay_response(
                        &mut x,
                        &mut route,
                        (node, inflight),
                        upstream,
                        resp,
                        request_complete,
                    )
                    .await;
                }
                // The node's answer is dropped (for a retry, or weir's own answer): keep
                // it for the client should no other node do better, and reuse its
                // connection if it is still in step.
                let n = body_len.unwrap_or(0);
                let mut kept = Vec::with_capacity(512 + n);
                write_response_head(&resp, true, &mut kept);
                kept.extend_from_slice(&upstream.buffered()[..n]);
                upstream.consume(n);
                held_answer = Some(kept);
                drop(inflight);
                if resp.keep_alive && request_complete {
                    shard.upstream.checkin(addr, upstream, Instant::now());
                }
                match decision {
                    Decision::Retry { wait } => {
                        if !wait.is_zero() {
                            monoio::time::sleep(wait).await;
                        }
                    }
                    Decision::GiveUp(refusal) => {
                        return x.answer(OwnAnswer::gave_up(refusal)).await
                    }
                    // Not decided for an answer before its body: relay what is held.
                    _ => {
                        let held = held_answer.unwrap_or_default();
                        return relay_held(&x, &held, route.timeouts.io).await;
                    }
                }
            }
            Err(e) => {
                drop(inflight);
                if let Some(refused) = e.refused {
                    // A chunk signature (or the aws-chunked framing) failed: the node's
                    // request was reset before its final chunk, so nothing was stored.
                    return x.answer(OwnAnswer::refused(&refused.into())).await;
                }
                let request_id = &flow.request_id;
                tracing::debug!(node = %addr, request_id, error = %e.err, "upstream attempt failed");
                if e.err.side == Side::Client {
                    // The client's body broke off, stalled or was malformed mid-way: the
                    // node's request was reset (so no partial object), and the client
                    // learns why if it still listens.
                    let err = match e.err.kind {
                        Kind::Protocol => Some(
                            e.err
                                .answer
                                .clone()
                                .unwrap_or_else(|| HeadError::bad_request(e.err.detail.clone())),
                        ),
                        Kind::Timeout => Some(HeadError::request_timeout()),
                        _ => None,
                    };
                    flow.ended(flows::Outcome::ClientAborted, EndedBy::Client);
                    return match err {
                        Some(err) => x.answer(OwnAnswer::rejected(&err)).await,
                        None => After::Close,
                    };
                }
                shard.metrics().upstream_error();
                if e.err.side == Side::Internal {
                    // weir itself is out of a resource (descriptors): no node is to blame,
                    // and another attempt now would fail alike.
                    let refusal = Refusal {
                        status: 503,
                        code: S3Code::ServiceUnavailable,
                        message: "no storage node could take the request",
                        retry_after: None,
                    };
                    return x.answer(OwnAnswer::gave_up(refusal)).await;
                }
                let body = if e.body_consumed {
                    BodyState::Streaming
                } else {
                    body_state(&body, true)
                };
                held_answer = None;
                let outcome = Outcome::Failed {
                    how: e.failed,
                    body,
                };
                match route.decide(node, outcome).0 {
                    Decision::Retry { .. } => {}
                    Decision::GiveUp(refusal) => {
                        return x.answer(OwnAnswer::gave_up(refusal)).await
                    }
                    other => {
                        debug_assert!(false, "{other:?} after a failed attempt");
                        return After::Close;
                    }
                }
            }
        }
    }
}
