//! Picking a node across a route's failover chain of pools (priority groups): the walk
//! every pool's algorithm shares.
//!
//! Called by the appliance once per upstream attempt with its shard's local view of
//! every node of the route's pools, best priority first (as [`crate::config::Config::route`]
//! orders them). The rules, in order:
//!
//! 1. A node is eligible when it is routable (up, or degraded — see 4), below its
//!    concurrency limit (`inflight < limit`, the AIMD limit) and not excluded (nodes this
//!    request already tried).
//! 2. A pool *qualifies* when at least `min_active` of its nodes are up. The first
//!    qualifying pool with an eligible up node serves: this is the on-prem → cloud
//!    failover, and the way back once the preferred pool recovers.
//! 3. If none does, the first pool (in priority order) with any eligible up node serves,
//!    so a weakened site is still preferred to nothing.
//! 4. Degraded nodes serve only when no eligible up node exists anywhere in the chain.
//! 5. Within the chosen pool, the pool's [`Algorithm`] picks among the eligible nodes
//!    (by default power of two choices on `(inflight + 1) × latency_ewma / weight`).

use std::time::Duration;

use super::{Affinity, Algorithm, PoolState, Within};
use crate::health::{NodeState, SLOW_START_WEIGHT_MIN};

/// A node of a route's pools: `pools[pool].nodes[node]` in config terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Candidate {
    /// Index into `Config::pools`.
    pub pool: usize,
    /// Index into that pool's `nodes`.
    pub node: usize,
}

/// What the balancer knows of one node's health and load, from the shard's local copy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeLoad {
    /// Health state.
    pub state: NodeState,
    /// Requests this shard has in flight to the node.
    pub inflight: u32,
    /// The node's current concurrency limit (AIMD) for this shard.
    pub limit: u32,
    /// Smoothed response-head latency, if known.
    pub latency_ewma: Option<Duration>,
    /// Slow-start weight, 0.1..=1.0.
    pub weight: f64,
    /// The node's identity for placement by key ([`super::node_id`] of its address), so
    /// a node keeps its objects when others are added or removed.
    pub id: u64,
}

impl NodeLoad {
    /// The slow-start weight as the algorithms use it: never below the ramp's start
    /// (a zero weight would divide by zero), 1.0 if not a number.
    pub(super) fn balancing_weight(&self) -> f64 {
        if self.weight.is_nan() {
            1.0
        } else {
            self.weight.max(SLOW_START_WEIGHT_MIN)
        }
    }
}

/// One pool of a route's chain, as the balancer sees it.
#[derive(Debug, Clone, Copy)]
pub struct PoolView<'a> {
    /// Index into `Config::pools`; reported back in [`Candidate::pool`].
    pub pool: usize,
    /// Up nodes needed for this pool to qualify (the pool's `min_active`).
    pub min_active: usize,
    /// The pool's nodes, in config order.
    pub nodes: &'a [NodeLoad],
    /// How the pool picks among its eligible nodes (the pool's `balance`).
    pub algorithm: Algorithm,
    /// This core's balancing state for the pool.
    pub state: &'a PoolState,
}

/// Picks a node for one attempt; see the module docs for the rules. `pools` is the
/// route's chain, best priority first; `exclude` is called with candidates and must be
/// cheap; `rand` is a fresh random value; `affinity` places the request for pools that
/// balance by key (without one they place at random). `None` when no node is eligible
/// (the caller answers `503 SlowDown` if limits were the reason, `502`/`503` otherwise).
pub fn pick(
    pools: &[PoolView<'_>],
    exclude: impl Fn(Candidate) -> bool,
    rand: u64,
    affinity: Option<Affinity>,
) -> Option<Candidate> {
    let qualifies = |p: &PoolView<'_>| {
        let up = p.nodes.iter().filter(|n| n.state == NodeState::Up).count();
        up >= p.min_active.max(1)
    };
    let pick_in = |p: &PoolView<'_>, state| pick_in(p, state, &exclude, rand, affinity);
    let first_pass = pools
        .iter()
        .filter(|p| qualifies(p))
        .find_map(|p| pick_in(p, NodeState::Up));
    first_pass
        .or_else(|| {
            pools
                .iter()
                .filter(|p| !qualifies(p))
                .find_map(|p| pick_in(p, NodeState::Up))
        })
        .or_else(|| pools.iter().find_map(|p| pick_in(p, NodeState::Degraded)))
}

/// The pool's algorithm among the eligible nodes of `pool` in `state`.
fn pick_in(
    pool: &PoolView<'_>,
    state: NodeState,
    exclude: &impl Fn(Candidate) -> bool,
    rand: u64,
    affinity: Option<Affinity>,
) -> Option<Candidate> {
    let eligible = |i: usize| {
        pool.nodes.get(i).is_some_and(|n| {
            n.state == state
                && n.inflight < n.limit
                && !exclude(Candidate {
                    pool: pool.pool,
                    node: i,
                })
        })
    };
    let within = Within {
        nodes: pool.nodes,
        eligible: &eligible,
        rand,
        affinity,
        state: pool.state,
    };
    let node = pool.algorithm.choose(&within)?;
    // An algorithm returning an ineligible node is a bug in it: never route there.
    debug_assert!(
        eligible(node),
        "{:?} chose ineligible node {node}",
        pool.algorithm
    );
    eligible(node).then_some(Candidate {
        pool: pool.pool,
        node,
    })
}

#[cfg(test)]
mod tests {
    //! The walk's rules hold whatever the pools' algorithm: every test runs for each.

    use super::*;
    use crate::balance::testing::{node, ups};
    use crate::rand::SplitMix64;
    use proptest::prelude::*;

    fn with_state(state: NodeState) -> NodeLoad {
        NodeLoad { state, ..node(0) }
    }

    /// The chain `(pool index, min_active, nodes)`, every pool balanced by `algorithm`.
    fn chain<'a>(
        algorithm: Algorithm,
        groups: &[(usize, usize, &'a [NodeLoad])],
        state: &'a PoolState,
    ) -> Vec<PoolView<'a>> {
        groups
            .iter()
            .map(|&(pool, min_active, nodes)| PoolView {
                pool,
                min_active,
                nodes,
                algorithm,
                state,
            })
            .collect()
    }

    /// 200 picks for each algorithm over `groups` (random keys for `rendezvous`).
    fn picks_each(
        groups: &[(usize, usize, &[NodeLoad])],
        exclude: impl Fn(Candidate) -> bool,
    ) -> Vec<(&'static str, Vec<Candidate>)> {
        Algorithm::ALL
            .iter()
            .map(|&(name, algorithm)| {
                let state = PoolState::default();
                let pools = chain(algorithm, groups, &state);
                let mut rng = SplitMix64::new(7);
                let got = (0..200)
                    .filter_map(|_| {
                        let key = Affinity::from_hash(rng.next_u64());
                        pick(&pools, &exclude, rng.next_u64(), Some(key))
                    })
                    .collect();
                (name, got)
            })
            .collect()
    }

    #[test]
    fn best_qualifying_group_serves() {
        let (a, b) = (ups(3), ups(3));
        for (name, got) in picks_each(&[(4, 2, &a), (9, 1, &b)], |_| false) {
            assert!(
                got.len() == 200 && got.iter().all(|c| c.pool == 4),
                "{name}"
            );
        }
    }

    #[test]
    fn group_below_min_active_fails_over_and_back() {
        let mut a = ups(3);
        a[0].state = NodeState::Down;
        a[1].state = NodeState::Down;
        let b = ups(2);
        for (name, got) in picks_each(&[(0, 2, &a), (1, 1, &b)], |_| false) {
            assert!(
                got.len() == 200 && got.iter().all(|c| c.pool == 1),
                "{name}"
            );
        }
        // Back when the preferred pool has enough up nodes again.
        a[1].state = NodeState::Up;
        for (name, got) in picks_each(&[(0, 2, &a), (1, 1, &b)], |_| false) {
            assert!(
                got.len() == 200 && got.iter().all(|c| c.pool == 0),
                "{name}"
            );
        }
    }

    #[test]
    fn no_group_qualifies_best_with_any_up_node() {
        let mut a = ups(3);
        a[0].state = NodeState::Down;
        a[1].state = NodeState::Down;
        let mut b = ups(3);
        b[0].state = NodeState::Down;
        b[1].state = NodeState::Down;
        for (name, got) in picks_each(&[(0, 2, &a), (1, 2, &b)], |_| false) {
            assert!(
                got.len() == 200 && got.iter().all(|c| *c == Candidate { pool: 0, node: 2 }),
                "{name}: {got:?}"
            );
        }
    }

    #[test]
    fn qualifying_group_exhausted_by_exclusion_or_limits_spills() {
        let (a, b) = (ups(2), ups(2));
        for (name, got) in picks_each(&[(0, 1, &a), (1, 1, &b)], |c| c.pool == 0) {
            assert!(
                got.len() == 200 && got.iter().all(|c| c.pool == 1),
                "{name}"
            );
        }
        let mut full = ups(2);
        for n in &mut full {
            n.inflight = n.limit;
        }
        for (name, got) in picks_each(&[(0, 1, &full), (1, 1, &b)], |_| false) {
            assert!(
                got.len() == 200 && got.iter().all(|c| c.pool == 1),
                "{name}"
            );
        }
        // One node at its limit: the other takes everything.
        let mut half = ups(2);
        half[0].inflight = half[0].limit;
        for (name, got) in picks_each(&[(0, 1, &half)], |_| false) {
            assert!(
                got.len() == 200 && got.iter().all(|c| *c == Candidate { pool: 0, node: 1 }),
                "{name}"
            );
        }
    }

    #[test]
    fn degraded_only_when_no_up_node_anywhere() {
        let a = vec![
            with_state(NodeState::Degraded),
            with_state(NodeState::Degraded),
        ];
        let mut b = vec![with_state(NodeState::Down), with_state(NodeState::Up)];
        for (name, got) in picks_each(&[(0, 1, &a), (1, 2, &b)], |_| false) {
            assert!(
                got.len() == 200 && got.iter().all(|c| *c == Candidate { pool: 1, node: 1 }),
                "{name}"
            );
        }
        b[1].state = NodeState::Draining;
        for (name, got) in picks_each(&[(0, 1, &a), (1, 2, &b)], |_| false) {
            assert!(
                got.len() == 200 && got.iter().all(|c| c.pool == 0),
                "{name}"
            );
        }
    }

    #[test]
    fn nothing_eligible() {
        let a = vec![with_state(NodeState::Down), with_state(NodeState::Draining)];
        let b = ups(2);
        for (name, algorithm) in Algorithm::ALL {
            let state = PoolState::default();
            let down = chain(algorithm, &[(0, 1, &a)], &state);
            assert_eq!(pick(&down, |_| false, 1, None), None, "{name}");
            assert_eq!(pick(&[], |_| false, 1, None), None, "{name}");
            let up = chain(algorithm, &[(0, 1, &b)], &state);
            assert_eq!(pick(&up, |_| true, 1, None), None, "{name}");
        }
    }

    #[test]
    fn each_pool_uses_its_own_algorithm() {
        // Pool 0 is full and round robin; pool 1 takes over with rendezvous: one key
        // always lands on one node of pool 1, and pool 0's round robin did not move.
        let mut a = ups(3);
        for n in &mut a {
            n.inflight = n.limit;
        }
        let b = ups(5);
        let (sa, sb) = (PoolState::default(), PoolState::default());
        let pools = [
            PoolView {
                pool: 0,
                min_active: 1,
                nodes: &a,
                algorithm: Algorithm::RoundRobin,
                state: &sa,
            },
            PoolView {
                pool: 1,
                min_active: 1,
                nodes: &b,
                algorithm: Algorithm::Rendezvous,
                state: &sb,
            },
        ];
        let key = Some(Affinity::of("bucket", "some/key"));
        let mut rng = SplitMix64::new(3);
        let first = pick(&pools, |_| false, rng.next_u64(), key);
        assert!(first.is_some_and(|c| c.pool == 1));
        for _ in 0..100 {
            assert_eq!(pick(&pools, |_| false, rng.next_u64(), key), first);
        }
        assert_eq!((sa.next.get(), sb.next.get()), (0, 0));
    }

    fn arb_node() -> impl Strategy<Value = NodeLoad> {
        (
            0u8..4,
            0u32..20,
            0u32..20,
            proptest::option::of(1u64..1000),
            0.0f64..2.0,
        )
            .prop_map(|(s, inflight, limit, lat, weight)| NodeLoad {
                state: [
                    NodeState::Up,
                    NodeState::Degraded,
                    NodeState::Down,
                    NodeState::Draining,
                ][s as usize],
                inflight,
                limit,
                latency_ewma: lat.map(Duration::from_millis),
                weight,
                id: u64::from(inflight) << 32 | u64::from(limit),
            })
    }

    proptest! {
        #[test]
        fn never_picks_down_draining_full_or_excluded(
            groups in proptest::collection::vec(
                (proptest::collection::vec(arb_node(), 0..12), 0usize..4, 0usize..4),
                0..4,
            ),
            excluded in proptest::collection::vec(any::<bool>(), 64),
            rand in any::<u64>(),
            affinity in proptest::option::of(any::<u64>()),
            position in any::<u64>(),
        ) {
            let states: Vec<PoolState> =
                groups.iter().map(|_| PoolState::starting_at(position)).collect();
            let views: Vec<PoolView<'_>> = groups
                .iter()
                .zip(&states)
                .enumerate()
                .map(|(i, ((nodes, min_active, algorithm), state))| PoolView {
                    pool: i,
                    min_active: *min_active,
                    nodes,
                    algorithm: Algorithm::ALL[*algorithm].1,
                    state,
                })
                .collect();
            let exclude = |c: Candidate| excluded[(c.pool * 16 + c.node) % 64];
            let eligible = |c: Candidate, state: NodeState| {
                let n = &groups[c.pool].0[c.node];
                n.state == state && n.inflight < n.limit && !exclude(c)
            };
            let all: Vec<Candidate> = groups
                .iter()
                .enumerate()
                .flat_map(|(p, (nodes, _, _))| {
                    (0..nodes.len()).map(move |n| Candidate { pool: p, node: n })
                })
                .collect();
            let any_up = all.iter().any(|&c| eligible(c, NodeState::Up));
            let any_degraded = all.iter().any(|&c| eligible(c, NodeState::Degraded));
            match pick(&views, exclude, rand, affinity.map(Affinity::from_hash)) {
                Some(c) => {
                    let n = &groups[c.pool].0[c.node];
                    prop_assert!(n.state.is_routable());
                    prop_assert!(n.inflight < n.limit, "never exceeds the limit");
                    prop_assert!(!exclude(c));
                    if any_up {
                        prop_assert_eq!(n.state, NodeState::Up, "degraded only without eligible up nodes");
                    }
                }
                None => prop_assert!(!any_up && !any_degraded),
            }
        }
    }
}
