//! Picking a node across a route's failover chain of pools (priority groups).
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
//! 5. Within the chosen pool, power of two choices on
//!    `cost = (inflight + 1) × latency_ewma / weight`: load, speed and slow-start weight
//!    in one number. A node without a latency sample yet is costed at the mean of its
//!    peers', so it is neither shunned nor stampeded.

use std::cmp::Ordering;
use std::time::Duration;

use super::pick_p2c_by;
use crate::health::{NodeState, SLOW_START_WEIGHT_MIN};

/// A node of a route's pools: `pools[pool].nodes[node]` in config terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Candidate {
    /// Index into `Config::pools`.
    pub pool: usize,
    /// Index into that pool's `nodes`.
    pub node: usize,
}

/// What the balancer needs to know of one node, from the shard's local copy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeView {
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
}

/// One pool of a route's chain, as the balancer sees it.
#[derive(Debug, Clone, Copy)]
pub struct PoolView<'a> {
    /// Index into `Config::pools`; reported back in [`Candidate::pool`].
    pub pool: usize,
    /// Up nodes needed for this pool to qualify (the pool's `min_active`).
    pub min_active: usize,
    /// The pool's nodes, in config order.
    pub nodes: &'a [NodeView],
}

/// Latency assumed when no node of a pool has a sample yet; any constant works, since
/// then it scales every candidate's cost alike.
const LATENCY_UNKNOWN: Duration = Duration::from_millis(1);

/// Picks a node for one attempt; see the module docs for the rules. `pools` is the
/// route's chain, best priority first; `exclude` is called with candidates and must be
/// cheap; `rand` is a fresh random value. `None` when no node is eligible (the caller
/// answers `503 SlowDown` if limits were the reason, `502`/`503` otherwise).
pub fn pick(
    pools: &[PoolView<'_>],
    exclude: impl Fn(Candidate) -> bool,
    rand: u64,
) -> Option<Candidate> {
    let qualifies = |p: &PoolView<'_>| {
        let up = p.nodes.iter().filter(|n| n.state == NodeState::Up).count();
        up >= p.min_active.max(1)
    };
    let first_pass = pools
        .iter()
        .filter(|p| qualifies(p))
        .find_map(|p| pick_in(p, NodeState::Up, &exclude, rand));
    first_pass
        .or_else(|| {
            pools
                .iter()
                .filter(|p| !qualifies(p))
                .find_map(|p| pick_in(p, NodeState::Up, &exclude, rand))
        })
        .or_else(|| {
            pools
                .iter()
                .find_map(|p| pick_in(p, NodeState::Degraded, &exclude, rand))
        })
}

/// Power of two choices among the eligible nodes of `pool` in `state`.
fn pick_in(
    pool: &PoolView<'_>,
    state: NodeState,
    exclude: &impl Fn(Candidate) -> bool,
    rand: u64,
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
    let (sum, known) = pool
        .nodes
        .iter()
        .enumerate()
        .filter(|&(i, _)| eligible(i))
        .filter_map(|(_, n)| n.latency_ewma)
        .fold((0.0, 0u32), |(sum, count), l| {
            (sum + l.as_secs_f64(), count + 1)
        });
    let latency_default = if known > 0 {
        sum / f64::from(known)
    } else {
        LATENCY_UNKNOWN.as_secs_f64()
    };
    let cost = |i: usize| {
        let Some(n) = pool.nodes.get(i) else {
            return Cost(f64::INFINITY);
        };
        let latency = n.latency_ewma.map_or(latency_default, |l| l.as_secs_f64());
        let weight = if n.weight.is_nan() {
            1.0
        } else {
            n.weight.max(SLOW_START_WEIGHT_MIN)
        };
        Cost((f64::from(n.inflight) + 1.0) * latency / weight)
    };
    pick_p2c_by(pool.nodes.len(), eligible, cost, rand).map(|node| Candidate {
        pool: pool.pool,
        node,
    })
}

/// An `f64` cost with a total order (NaN sorts last, never wins).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cost(f64);

impl Eq for Cost {}

impl PartialOrd for Cost {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Cost {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::SplitMix64;
    use proptest::prelude::*;

    fn node(state: NodeState) -> NodeView {
        NodeView {
            state,
            inflight: 0,
            limit: 10,
            latency_ewma: Some(Duration::from_millis(10)),
            weight: 1.0,
        }
    }

    fn ups(n: usize) -> Vec<NodeView> {
        vec![node(NodeState::Up); n]
    }

    fn picks(pools: &[PoolView<'_>], exclude: impl Fn(Candidate) -> bool) -> Vec<Candidate> {
        let mut rng = SplitMix64::new(7);
        (0..200)
            .filter_map(|_| pick(pools, &exclude, rng.next_u64()))
            .collect()
    }

    #[test]
    fn best_qualifying_group_serves() {
        let a = ups(3);
        let b = ups(3);
        let pools = [
            PoolView {
                pool: 4,
                min_active: 2,
                nodes: &a,
            },
            PoolView {
                pool: 9,
                min_active: 1,
                nodes: &b,
            },
        ];
        assert!(picks(&pools, |_| false).iter().all(|c| c.pool == 4));
    }

    #[test]
    fn group_below_min_active_fails_over_and_back() {
        let mut a = ups(3);
        a[0].state = NodeState::Down;
        a[1].state = NodeState::Down;
        let b = ups(2);
        let pools = [
            PoolView {
                pool: 0,
                min_active: 2,
                nodes: &a,
            },
            PoolView {
                pool: 1,
                min_active: 1,
                nodes: &b,
            },
        ];
        assert!(picks(&pools, |_| false).iter().all(|c| c.pool == 1));
        // Back when the preferred pool has enough up nodes again.
        a[1].state = NodeState::Up;
        let pools = [
            PoolView {
                pool: 0,
                min_active: 2,
                nodes: &a,
            },
            PoolView {
                pool: 1,
                min_active: 1,
                nodes: &b,
            },
        ];
        assert!(picks(&pools, |_| false).iter().all(|c| c.pool == 0));
    }

    #[test]
    fn no_group_qualifies_best_with_any_up_node() {
        let mut a = ups(3);
        a[0].state = NodeState::Down;
        a[1].state = NodeState::Down;
        let mut b = ups(3);
        b[0].state = NodeState::Down;
        b[1].state = NodeState::Down;
        let pools = [
            PoolView {
                pool: 0,
                min_active: 2,
                nodes: &a,
            },
            PoolView {
                pool: 1,
                min_active: 2,
                nodes: &b,
            },
        ];
        let got = picks(&pools, |_| false);
        assert!(
            got.iter().all(|c| *c == Candidate { pool: 0, node: 2 }),
            "{got:?}"
        );
    }

    #[test]
    fn qualifying_group_exhausted_by_exclusion_or_limits_spills() {
        let a = ups(2);
        let b = ups(2);
        let pools = [
            PoolView {
                pool: 0,
                min_active: 1,
                nodes: &a,
            },
            PoolView {
                pool: 1,
                min_active: 1,
                nodes: &b,
            },
        ];
        let got = picks(&pools, |c| c.pool == 0);
        assert!(!got.is_empty() && got.iter().all(|c| c.pool == 1));
        let mut full = ups(2);
        for n in &mut full {
            n.inflight = n.limit;
        }
        let pools = [
            PoolView {
                pool: 0,
                min_active: 1,
                nodes: &full,
            },
            PoolView {
                pool: 1,
                min_active: 1,
                nodes: &b,
            },
        ];
        assert!(picks(&pools, |_| false).iter().all(|c| c.pool == 1));
    }

    #[test]
    fn degraded_only_when_no_up_node_anywhere() {
        let a = vec![node(NodeState::Degraded), node(NodeState::Degraded)];
        let mut b = vec![node(NodeState::Down), node(NodeState::Up)];
        let pools = [
            PoolView {
                pool: 0,
                min_active: 1,
                nodes: &a,
            },
            PoolView {
                pool: 1,
                min_active: 2,
                nodes: &b,
            },
        ];
        assert!(picks(&pools, |_| false)
            .iter()
            .all(|c| *c == Candidate { pool: 1, node: 1 }));
        b[1].state = NodeState::Draining;
        let pools = [
            PoolView {
                pool: 0,
                min_active: 1,
                nodes: &a,
            },
            PoolView {
                pool: 1,
                min_active: 2,
                nodes: &b,
            },
        ];
        let got = picks(&pools, |_| false);
        assert!(!got.is_empty() && got.iter().all(|c| c.pool == 0));
    }

    #[test]
    fn nothing_eligible() {
        let a = vec![node(NodeState::Down), node(NodeState::Draining)];
        let pools = [PoolView {
            pool: 0,
            min_active: 1,
            nodes: &a,
        }];
        assert_eq!(pick(&pools, |_| false, 1), None);
        assert_eq!(pick(&[], |_| false, 1), None);
        let b = ups(2);
        let pools = [PoolView {
            pool: 0,
            min_active: 1,
            nodes: &b,
        }];
        assert_eq!(pick(&pools, |_| true, 1), None);
    }

    #[test]
    fn cost_prefers_fast_idle_full_weight() {
        let mut a = ups(2);
        a[0].latency_ewma = Some(Duration::from_millis(100));
        let pools = [PoolView {
            pool: 0,
            min_active: 1,
            nodes: &a,
        }];
        assert!(
            picks(&pools, |_| false).iter().all(|c| c.node == 1),
            "slow node avoided"
        );

        let mut a = ups(2);
        a[1].inflight = 5;
        let pools = [PoolView {
            pool: 0,
            min_active: 1,
            nodes: &a,
        }];
        assert!(
            picks(&pools, |_| false).iter().all(|c| c.node == 0),
            "loaded node avoided"
        );

        let mut a = ups(2);
        a[0].weight = 0.1;
        a[1].inflight = 3; // cost 4 vs 10 for the ramping node
        let pools = [PoolView {
            pool: 0,
            min_active: 1,
            nodes: &a,
        }];
        assert!(
            picks(&pools, |_| false).iter().all(|c| c.node == 1),
            "ramping node avoided"
        );
    }

    #[test]
    fn unknown_latency_costs_the_peer_mean() {
        let mut a = ups(3);
        a[0].latency_ewma = None;
        a[1].latency_ewma = Some(Duration::from_millis(10));
        a[2].latency_ewma = Some(Duration::from_millis(30));
        let pools = [PoolView {
            pool: 0,
            min_active: 1,
            nodes: &a,
        }];
        let got = picks(&pools, |_| false);
        let count = |n| got.iter().filter(|c| c.node == n).count();
        // Mean 20ms: node 0 beats node 2 and loses to node 1.
        assert!(
            count(0) > 0 && count(1) > count(2) && count(2) == 0,
            "{:?}",
            [count(0), count(1), count(2)]
        );
    }

    fn arb_node() -> impl Strategy<Value = NodeView> {
        (
            0u8..4,
            0u32..20,
            0u32..20,
            proptest::option::of(1u64..1000),
            0.0f64..2.0,
        )
            .prop_map(|(s, inflight, limit, lat, weight)| NodeView {
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
            })
    }

    proptest! {
        #[test]
        fn never_picks_down_draining_full_or_excluded(
            groups in proptest::collection::vec((proptest::collection::vec(arb_node(), 0..12), 0usize..4), 0..4),
            excluded in proptest::collection::vec(any::<bool>(), 64),
            rand in any::<u64>(),
        ) {
            let views: Vec<PoolView<'_>> = groups
                .iter()
                .enumerate()
                .map(|(i, (nodes, min_active))| PoolView { pool: i, min_active: *min_active, nodes })
                .collect();
            let exclude = |c: Candidate| excluded[(c.pool * 16 + c.node) % 64];
            let eligible = |c: Candidate, state: NodeState| {
                let n = &groups[c.pool].0[c.node];
                n.state == state && n.inflight < n.limit && !exclude(c)
            };
            let all: Vec<Candidate> = groups
                .iter()
                .enumerate()
                .flat_map(|(p, (nodes, _))| (0..nodes.len()).map(move |n| Candidate { pool: p, node: n }))
                .collect();
            let any_up = all.iter().any(|&c| eligible(c, NodeState::Up));
            let any_degraded = all.iter().any(|&c| eligible(c, NodeState::Degraded));
            match pick(&views, exclude, rand) {
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
