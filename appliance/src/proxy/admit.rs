//! A request at the edge, before any node hears of it: its size checked, its identity
//! verified (`identity`, or a browser form's policy, `post_form`), classified (tenant,
//! class, bucket, op, the route's chain of pools), held to access policy, admitted by the
//! limits (`protect`) — a flood costs weir a head, not a body — and its body's way
//! decided: a small one read whole so it can be replayed, a streamed one seen flowing.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use weir_io::http::{BodyFraming, HeadError};
use weir_io::relay::Pacer;
use weir_policy::classify::{Classified, Request};
use weir_policy::limits::Dir;

use super::answer::OwnAnswer;
use super::body::{body_started, read_small_body, BodyStall, ReqBody};
use super::{After, Exchange};
use crate::flows::Waited;
use crate::identity::{self, Streaming};
use crate::post_form;
use crate::protect::Ticket;
use crate::shard::BytePacer;

/// A request admitted to be sent to a node.
pub(super) struct Admitted<'e> {
    /// When admission began (a queued request's deadline counts from here).
    pub at: Instant,
    /// Its tenant, class, bucket, op and pool chain.
    pub classified: Rc<Classified>,
    /// A streaming-signed upload weir verifies or re-signs chunk by chunk.
    pub streaming: Option<Streaming>,
    /// How long it waited, and for what.
    pub waited: Waited,
    /// Paces the response body when the request's limits shape bytes.
    pub down_pacer: Option<Rc<dyn Pacer>>,
    /// How its body travels.
    pub body: ReqBody,
    /// Its admission, held to its end.
    pub _ticket: Ticket<'e>,
}

/// Takes a request through the edge. `Err` carries what becomes of the connection when
/// the request was answered here (or the client left).
pub(super) async fn admit<'e>(x: &mut Exchange<'e>) -> Result<Admitted<'e>, After> {
    let (ep, flow, head) = (x.ep, x.flow, x.head);
    let cfg = &ep.settings.config;
    let at = Instant::now();
    // A body larger than weir accepts costs nothing more than its head.
    if let BodyFraming::Length(n) = head.framing {
        if n > cfg.http.body_bytes_max {
            let err = HeadError::entity_too_large(cfg.http.body_bytes_max);
            return Err(x.answer(OwnAnswer::rejected(&err)).await);
        }
    }
    // Identity first (auth.mode = verify): a request that is not signed by a tenant's
    // key is answered here and costs no admission slot, no body read, no node. A
    // browser-form upload is verified by the policy in its first fields (post_form.rs).
    let form = match post_form::accept(ep, x.client, head).await {
        Ok(form) => form,
        Err(Some(refusal)) => return Err(x.answer(OwnAnswer::refused(&refusal)).await),
        Err(None) => return Err(After::Close),
    };
    let verified = match form {
        Some(_) => Ok(None),
        None => identity::verify(&ep.settings, &ep.keys, head, SystemTime::now()),
    };
    let verified = match verified {
        Ok(v) => v,
        Err(refusal) => return Err(x.answer(OwnAnswer::refused(&refusal)).await),
    };
    let chunk_verifier = verified.as_ref().and_then(|v| v.chunk_verifier());
    // The tenant is the key whose signature was verified (a form's policy signer); only
    // with verification off is it the key the request claims. Reading the credentials a
    // second time could find another key than the verified one.
    let access_key = match (&form, &verified) {
        (Some(form), _) => Some(form.access_key()),
        (None, Some(v)) => Some(v.access_key.as_str()),
        (None, None) => weir_policy::classify::access_key(
            head.header("authorization")
                .and_then(|v| std::str::from_utf8(v).ok()),
            head.query(),
        ),
    };
    *flow.access_key.borrow_mut() = access_key.map(Box::from);
    let classified = Rc::new(cfg.classify(&Request {
        method: head.method.as_str(),
        host: head.host(),
        path: head.path(),
        query: head.query(),
        access_key,
        client_ip: flow.client.ip(),
        client_name: x.client_name,
        copy_sources: &head.headers_named("x-amz-copy-source").collect::<Vec<_>>(),
    }));
    x.mover.set_idle_timeout(classified.timeouts.io);
    *flow.bucket.borrow_mut() = classified.bucket.clone();
    flow.op.set(classified.op.as_str());
    let name =
        |names: &[Arc<str>], i: usize| names.get(i).cloned().unwrap_or_else(|| Arc::from("other"));
    *flow.tenancy.borrow_mut() = Some((
        name(&ep.tenant_names, classified.tenant.0),
        name(&ep.class_names, classified.class.0),
    ));

    // Access policy: a tenant outside its buckets or pools is refused at the edge.
    if let Some(denied) = classified.denied {
        let refusal = identity::denied(denied, classified.bucket.as_deref());
        return Err(x.answer(OwnAnswer::refused(&refusal)).await);
    }

    // A streaming-signed upload weir verifies or re-signs passes chunk by chunk through
    // user space (signed_body.rs); every other body moves as it came.
    let streaming = match identity::streaming(
        &ep.settings,
        classified.tenant.0,
        &classified.pools,
        head,
        chunk_verifier,
    ) {
        Ok(s) => s,
        Err(refusal) => return Err(x.answer(OwnAnswer::refused(&refusal)).await),
    };

    // Admission comes before the body is read: a flood costs weir a head, not a body.
    let mut waited = Waited::default();
    let admitted = ep.protect.admit(&classified, &mut waited).await;
    flow.waited.set(waited);
    let ticket = match admitted {
        Ok(ticket) => ticket,
        Err(shed) => return Err(x.answer(OwnAnswer::shed(&shed)).await),
    };
    let pacer = |dir: Dir| -> Option<Rc<dyn Pacer>> {
        ep.protect.shapes_bytes(&classified, dir).then(|| {
            Rc::new(BytePacer {
                ep: ep.clone(),
                classified: classified.clone(),
                dir,
            }) as Rc<dyn Pacer>
        })
    };
    let (up_pacer, down_pacer) = (pacer(Dir::Up), pacer(Dir::Down));
    x.mover.set_pacer(up_pacer);
    ep.retry_budget.borrow_mut().on_request(Instant::now());

    let body = match head.framing {
        // A form upload: its first fields are held, the rest is relayed as it comes.
        _ if form.is_some() => form.map_or(ReqBody::Empty, ReqBody::Form),
        BodyFraming::Length(n)
            if n > 0
                && n <= cfg.http.buffered_body_bytes_max as u64
                && !head.expect_continue
                && streaming.is_none() =>
        {
            match read_small_body(x.mover, x.client, n as usize).await {
                Ok(b) => {
                    // A buffered body skips the relay, so it is charged here.
                    x.mover.pace(n).await;
                    ReqBody::Buffered(b)
                }
                // Nothing was sent on: the node never heard of the request.
                Err(BodyStall::Left) => return Err(After::Close),
                Err(BodyStall::Refused(err)) => {
                    return Err(x.answer(OwnAnswer::rejected(&err)).await)
                }
            }
        }
        BodyFraming::Length(0) | BodyFraming::None | BodyFraming::UntilClose => ReqBody::Empty,
        BodyFraming::Length(_) | BodyFraming::Chunked => {
            // With 100-continue the client waits for the node; otherwise the body must be
            // flowing before the request takes a node slot (and a chunked one must start
            // with a valid chunk-size line before any node hears of the request).
            if !head.expect_continue {
                match body_started(cfg, x.mover, x.client, head.framing).await {
                    Ok(()) => {}
                    Err(BodyStall::Left) => return Err(After::Close),
                    Err(BodyStall::Refused(err)) => {
                        return Err(x.answer(OwnAnswer::rejected(&err)).await)
                    }
                }
            }
            ReqBody::Streamed
        }
    };
    Ok(Admitted {
        at,
        classified,
        streaming,
        waited,
        down_pacer,
        body,
        _ticket: ticket,
    })
}
