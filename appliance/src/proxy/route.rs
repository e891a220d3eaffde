//! One request's routing state across its attempts ([`Routing`]): its pool chain and
//! bucket, the attempt machine (`weir_policy::attempt`), node choice across the chain's
//! priority groups, and what each attempt holds on its node while it runs ([`InFlight`]).

use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

use weir_io::http::RequestHead;
use weir_io::{Error, Kind};
use weir_policy::attempt::{Attempts, Decision, Env, Failed, Limit, Outcome, Step};
use weir_policy::balance::{pick, Affinity, Candidate, NodeLoad, PoolView};
use weir_policy::config::{Config, Timeouts};
use weir_policy::sigv4::SigV4Error;

use crate::buckets::{Bucket, BucketSlot};
use crate::bus::NodeId;
use crate::protect::Protect;
use crate::shard::{Epoch, Shard};

/// Counts a request against a node's in-flight total (and its `node_inflight_max` cap),
/// and against its pool+bucket limit, for as long as it holds it.
pub(super) struct InFlight<'a> {
    count: Rc<Cell<u32>>,
    protect: &'a Protect,
    node: NodeId,
    _bucket: Option<BucketSlot>,
}

impl<'a> InFlight<'a> {
    /// Counts a request on `node` (and in its pool+bucket limit) until dropped.
    pub(super) fn enter(ep: &'a Epoch, node: NodeId, bucket: Option<Rc<Bucket>>) -> Self {
        let count = ep.inflight[node.pool][node.node].clone();
        count.set(count.get() + 1);
        ep.protect.start_node(node.pool, node.node);
        InFlight {
            count,
            protect: &ep.protect,
            node,
            _bucket: bucket.map(|b| b.enter()),
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        debug_assert!(
            self.count.get() > 0,
            "node in-flight count below zero: an InFlight dropped twice"
        );
        self.count.set(self.count.get().saturating_sub(1));
        self.protect.end_node(self.node.pool, self.node.node);
    }
}

/// One request's routing state: its pool chain and bucket, and its attempts
/// (`weir_policy::attempt`: the nodes it tried, whose its failures are, what comes next).
pub(super) struct Routing<'a> {
    /// The core it runs on.
    pub(super) shard: &'a Shard,
    /// Its config epoch.
    pub(super) ep: &'a Epoch,
    /// Its pools, best priority first.
    pub(super) chain: &'a [usize],
    /// The request's tenant (whose identity re-signs it, per pool).
    pub(super) tenant: usize,
    /// The request's bucket (its pool+bucket limits).
    pub(super) bucket: Option<&'a str>,
    /// Its placement key, when a pool of its chain balances by key ([`affinity`]).
    pub(super) affinity: Option<Affinity>,
    /// Its attempts so far.
    pub(super) attempts: Attempts<NodeId>,
    /// Its upstream timeouts: its route's or rule's, else `[upstream]`'s (decided by
    /// classification, docs/config.md "Per-route settings").
    pub(super) timeouts: Timeouts,
}

impl Drop for Routing<'_> {
    fn drop(&mut self) {
        // The request is over: a failure nobody confirmed counts only beside others.
        if let Some((node, obs)) = self.attempts.finish() {
            self.ep
                .health
                .observe_unconfirmed(node, obs, Instant::now());
        }
    }
}

impl Routing<'_> {
    /// The attempt on `node` came to `outcome`: the machine's decision, with its reports
    /// and limit feedback applied. Also returns what the limits learnt.
    pub(super) fn decide(&mut self, node: NodeId, outcome: Outcome) -> (Decision, Option<Limit>) {
        let now = Instant::now();
        let rand = self.shard.rng.borrow_mut().next_u64();
        let step = {
            let mut budget = self.ep.retry_budget.borrow_mut();
            let env = Env {
                now,
                rand,
                budget: &mut budget,
            };
            self.attempts.on_outcome(node, outcome, env)
        };
        let limit = step.limit;
        (self.apply(node, step), limit)
    }

    /// Reports what a step releases to node health (whose per-node AIMD limit learns
    /// from it there) and feeds the pool+bucket limit; returns the decision.
    pub(super) fn apply(&self, node: NodeId, step: Step<NodeId>) -> Decision {
        let now = Instant::now();
        for (node, obs) in step.reports {
            self.ep.health.observe(node, obs, now);
        }
        if let (Some(limit), Some(bucket)) = (step.limit, self.bucket_of(node.pool)) {
            bucket.learn(limit, now);
        }
        step.decision
    }

    /// The response completed: a failure held from before a resume was its node's.
    pub(super) fn complete(&mut self) {
        if let Some((node, obs)) = self.attempts.complete() {
            self.ep.health.observe(node, obs, Instant::now());
        }
    }

    /// The request's pool+bucket limit in `pool`.
    pub(super) fn bucket_of(&self, pool: usize) -> Option<Rc<Bucket>> {
        self.ep.buckets.get(pool, self.bucket)
    }

    /// The next node to try, across the chain's priority groups.
    pub(super) fn pick(&self) -> Option<NodeId> {
        let (shard, ep) = (self.shard, self.ep);
        let cfg = &ep.settings.config;
        let now = Instant::now();
        let views: Vec<Vec<NodeLoad>> = self
            .chain
            .iter()
            .map(|&p| {
                let slow_start = cfg.pools[p].health.slow_start;
                ep.health
                    .pool(p)
                    .iter()
                    .enumerate()
                    .map(|(n, v)| {
                        // Runtime node control: the override hides or weighs the node.
                        let (state, weight) =
                            ep.health
                                .routing(NodeId { pool: p, node: n }, slow_start, now);
                        NodeLoad {
                            state,
                            inflight: ep.inflight[p][n].get(),
                            limit: v.limit(),
                            latency_ewma: v.latency_for_balancing(now),
                            weight,
                            id: ep.node_ids[p][n],
                        }
                    })
                    .collect()
            })
            .collect();
        let pools: Vec<PoolView> = self
            .chain
            .iter()
            .zip(&views)
            .map(|(&p, nodes)| PoolView {
                pool: p,
                min_active: cfg.pools[p].min_active,
                nodes,
                algorithm: cfg.pools[p].balance,
                state: &ep.balance[p],
            })
            .collect();
        // A pool whose limit for this bucket is full takes no more of its requests.
        let bucket_full: Vec<usize> = self
            .chain
            .iter()
            .copied()
            .filter(|&p| self.bucket_of(p).is_some_and(|b| !b.has_room()))
            .collect();
        let rand = shard.rng.borrow_mut().next_u64();
        let tried = self.attempts.tried();
        let excluded = |c: Candidate| {
            let node = NodeId {
                pool: c.pool,
                node: c.node,
            };
            tried.contains(&node)
                || bucket_full.contains(&c.pool)
                || !ep.protect.node_has_room(c.pool, c.node)
        };
        pick(&pools, excluded, rand, self.affinity).map(|c| NodeId {
            pool: c.pool,
            node: c.node,
        })
    }

    /// Whether some node of the chain is routable: when none can be picked, they are all
    /// at their concurrency limits, which is a reason to wait, not to fail.
    pub(super) fn any_routable(&self) -> bool {
        self.chain
            .iter()
            .any(|&p| self.ep.health.pool(p).iter().any(|v| v.routable()))
    }
}

/// Why an attempt ended before the response could be relayed.
pub(super) struct AttemptError {
    pub(super) err: Error,
    /// What the attempt machine reads of it.
    pub(super) failed: Failed,
    /// Body bytes were pulled from the client and are gone.
    pub(super) body_consumed: bool,
    /// The streaming-signed body was refused (the client is answered with this).
    pub(super) refused: Option<SigV4Error>,
}

/// The one reading of a node-side failure for the attempt machine. A failure while
/// connecting (refused, timed out, TLS: `Kind::Connect`) never reached the node with
/// this request.
pub(super) fn failed_of(err: &Error) -> Failed {
    match err.kind {
        Kind::Connect => Failed::Connect,
        Kind::Timeout => Failed::Timeout,
        Kind::Protocol => Failed::BadResponse,
        Kind::Closed | Kind::Io => Failed::Reset,
    }
}

/// The request's placement key (its bucket and object key) when a pool of its `chain`
/// balances by key (docs/config.md, "Balancing within a pool"); `None` otherwise, and for
/// requests that name no object, which such pools place at random.
pub(super) fn affinity(cfg: &Config, chain: &[usize], head: &RequestHead) -> Option<Affinity> {
    if !chain
        .iter()
        .any(|&p| cfg.pools.get(p).is_some_and(|p| p.balance.uses_affinity()))
    {
        return None;
    }
    let target = weir_policy::route::s3_target(
        head.host(),
        head.path(),
        &cfg.appliance.virtual_host_suffixes,
        cfg.appliance.bucket_names,
    )
    .ok()??;
    target
        .has_key()
        .then(|| Affinity::of(&target.bucket, target.key))
}
