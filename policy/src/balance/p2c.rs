//! `p2c`, the default: power of two choices (Mitzenmacher 2001).
//!
//! Two distinct eligible nodes are drawn at random and the less loaded one wins. That gets
//! most of the benefit of "least loaded" without every core herding onto the same node
//! from a stale view, and it needs no shared state. Within a pool the cost is
//! `(inflight + 1) × latency_ewma / weight`: load, speed and slow-start weight in one
//! number. A node without a latency sample yet is costed at the mean of its peers', so it
//! is neither shunned nor stampeded.
//!
//! The draw is generic in its cost ([`pick_p2c_by`]); [`pick_p2c`] uses in-flight counts.

use std::cmp::Ordering;
use std::time::Duration;

use super::Within;
use crate::rand::{mix64, reduce};

/// Picks a node among `inflight.len()` nodes by power of two choices on in-flight
/// requests. `eligible(i)` says whether node `i` may be used; `rand` is a fresh random
/// value. One eligible node is returned as is; none gives `None`. Ties go to the first of
/// the two candidates, which keeps equal-load picks uniform.
pub fn pick_p2c(inflight: &[u32], eligible: impl Fn(usize) -> bool, rand: u64) -> Option<usize> {
    pick_p2c_by(
        inflight.len(),
        eligible,
        |i| inflight.get(i).copied().unwrap_or(u32::MAX),
        rand,
    )
}

/// Power of two choices over nodes `0..len` by any cost: the candidate with the lower
/// `cost` wins (ties: the first candidate). Candidates are uniform over the eligible nodes
/// and always distinct; `eligible` and `cost` are called O(len) times and must be cheap
/// and consistent within one call.
pub fn pick_p2c_by<C: Ord>(
    len: usize,
    eligible: impl Fn(usize) -> bool,
    cost: impl Fn(usize) -> C,
    rand: u64,
) -> Option<usize> {
    let count = (0..len).filter(|&i| eligible(i)).count();
    match count {
        0 => None,
        1 => (0..len).find(|&i| eligible(i)),
        _ => {
            let (first_rank, second_rank) = candidate_ranks(count, rand);
            let mut first = None;
            let mut second = None;
            for (rank, node) in (0..len).filter(|&i| eligible(i)).enumerate() {
                if rank == first_rank {
                    first = Some(node);
                }
                if rank == second_rank {
                    second = Some(node);
                }
            }
            match (first, second) {
                (Some(a), Some(b)) if cost(b) < cost(a) => Some(b),
                (Some(a), _) => Some(a),
                // Unreachable while `eligible` is consistent; degrade to any eligible node.
                (None, other) => other,
            }
        }
    }
}

/// Two distinct ranks in `0..count` (`count >= 2`), each uniform, from one random value:
/// the first from `rand`'s high bits, the second from a remixed copy over the other
/// `count - 1` ranks.
fn candidate_ranks(count: usize, rand: u64) -> (usize, usize) {
    let n = count as u64;
    let first = reduce(rand, n);
    let other = reduce(mix64(rand ^ 0x5851_F42D_4C95_7F2D), n - 1);
    let second = if other >= first { other + 1 } else { other };
    // Both are < count, which is a usize, so the casts cannot truncate.
    (first as usize, second as usize)
}

/// Latency assumed when no eligible node of a pool has a sample yet; any constant works,
/// since then it scales every candidate's cost alike.
const LATENCY_UNKNOWN: Duration = Duration::from_millis(1);

/// Power of two choices among the eligible nodes on `(inflight + 1) × latency / weight`.
pub(super) fn choose(w: &Within<'_>) -> Option<usize> {
    let (sum, known) = w
        .eligible_nodes()
        .filter_map(|i| w.nodes.get(i).and_then(|n| n.latency_ewma))
        .fold((0.0, 0u32), |(sum, count), l| {
            (sum + l.as_secs_f64(), count + 1)
        });
    let latency_default = if known > 0 {
        sum / f64::from(known)
    } else {
        LATENCY_UNKNOWN.as_secs_f64()
    };
    let cost = |i: usize| {
        let Some(n) = w.nodes.get(i) else {
            return Cost(f64::INFINITY);
        };
        let latency = n.latency_ewma.map_or(latency_default, |l| l.as_secs_f64());
        Cost((f64::from(n.inflight) + 1.0) * latency / n.balancing_weight())
    };
    pick_p2c_by(w.nodes.len(), w.eligible, cost, w.rand)
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
    use crate::balance::testing::{self, ups};
    use crate::balance::{Algorithm, NodeLoad, PoolState};
    use crate::rand::SplitMix64;
    use proptest::prelude::*;

    /// 200 picks by p2c over `nodes`, all eligible.
    fn picks(nodes: &[NodeLoad]) -> Vec<usize> {
        let mut rng = SplitMix64::new(7);
        let state = PoolState::default();
        (0..200)
            .filter_map(|_| {
                testing::choose(
                    Algorithm::P2c,
                    nodes,
                    |_| true,
                    rng.next_u64(),
                    None,
                    &state,
                )
            })
            .collect()
    }

    #[test]
    fn cost_prefers_fast_idle_full_weight() {
        let mut a = ups(2);
        a[0].latency_ewma = Some(Duration::from_millis(100));
        assert!(picks(&a).iter().all(|&n| n == 1), "slow node avoided");

        let mut a = ups(2);
        a[1].inflight = 5;
        assert!(picks(&a).iter().all(|&n| n == 0), "loaded node avoided");

        let mut a = ups(2);
        a[0].weight = 0.1;
        a[1].inflight = 3; // cost 4 vs 10 for the ramping node
        assert!(picks(&a).iter().all(|&n| n == 1), "ramping node avoided");
    }

    #[test]
    fn unknown_latency_costs_the_peer_mean() {
        let mut a = ups(3);
        a[0].latency_ewma = None;
        a[1].latency_ewma = Some(Duration::from_millis(10));
        a[2].latency_ewma = Some(Duration::from_millis(30));
        let got = picks(&a);
        let count = |n| got.iter().filter(|&&c| c == n).count();
        // Mean 20ms: node 0 beats node 2 and loses to node 1.
        assert!(
            count(0) > 0 && count(1) > count(2) && count(2) == 0,
            "{:?}",
            [count(0), count(1), count(2)]
        );
    }

    #[test]
    fn none_and_single() {
        assert_eq!(pick_p2c(&[], |_| true, 1), None);
        assert_eq!(pick_p2c(&[0, 0, 0], |_| false, 1), None);
        for r in 0..100 {
            assert_eq!(pick_p2c(&[5, 0, 9], |i| i == 2, r), Some(2));
        }
    }

    #[test]
    fn two_nodes_always_lower_wins() {
        let mut rng = SplitMix64::new(3);
        for _ in 0..1000 {
            assert_eq!(pick_p2c(&[4, 1], |_| true, rng.next_u64()), Some(1));
        }
    }

    #[test]
    fn candidates_are_distinct_and_in_range() {
        let mut rng = SplitMix64::new(11);
        for count in 2..50 {
            for _ in 0..200 {
                let (a, b) = candidate_ranks(count, rng.next_u64());
                assert!(a < count && b < count && a != b);
            }
        }
        assert_eq!(candidate_ranks(2, 0).0, 0);
        assert_eq!(candidate_ranks(2, u64::MAX).0, 1);
    }

    #[test]
    fn equal_load_is_uniform_within_5_percent() {
        for (nodes, seed) in [(2usize, 1u64), (5, 2), (10, 3), (16, 4)] {
            let inflight = vec![7u32; nodes];
            let mut rng = SplitMix64::new(seed);
            let mut picks = vec![0u32; nodes];
            let total = 100_000u32;
            for _ in 0..total {
                let i = pick_p2c(&inflight, |_| true, rng.next_u64()).unwrap();
                picks[i] += 1;
            }
            let expected = f64::from(total) / nodes as f64;
            for (i, &n) in picks.iter().enumerate() {
                let deviation = (f64::from(n) - expected).abs() / expected;
                assert!(
                    deviation < 0.05,
                    "{nodes} nodes: node {i} got {n}, expected {expected}"
                );
            }
        }
    }

    #[test]
    fn equal_load_uniform_over_eligible_subset() {
        let inflight = [0u32; 8];
        let eligible = |i: usize| !i.is_multiple_of(3); // nodes 1, 2, 4, 5, 7
        let mut rng = SplitMix64::new(99);
        let mut picks = [0u32; 8];
        for _ in 0..100_000 {
            picks[pick_p2c(&inflight, eligible, rng.next_u64()).unwrap()] += 1;
        }
        for (i, &n) in picks.iter().enumerate() {
            if eligible(i) {
                assert!((n as i64 - 20_000).abs() < 1_000, "node {i}: {n}");
            } else {
                assert_eq!(n, 0);
            }
        }
    }

    #[test]
    fn heavily_loaded_node_is_avoided() {
        // With distinct candidates the single most loaded node can never win; a node that
        // is merely "high" (not the maximum) wins only against an even higher one.
        let mut inflight = vec![2u32; 10];
        inflight[3] = 500;
        let mut rng = SplitMix64::new(5);
        let picks_of_3 = (0..100_000)
            .filter(|_| pick_p2c(&inflight, |_| true, rng.next_u64()) == Some(3))
            .count();
        assert_eq!(picks_of_3, 0);

        inflight[8] = 900;
        let picks_of_3 = (0..100_000)
            .filter(|_| pick_p2c(&inflight, |_| true, rng.next_u64()) == Some(3))
            .count();
        // Node 3 wins only when paired with node 8: 2 / (10 × 9) of picks ≈ 2.2%.
        assert!(picks_of_3 < 3_000, "{picks_of_3}");
    }

    #[test]
    fn generic_cost_key() {
        // Lower latency-weighted cost wins, e.g. (inflight + 1) × ewma_us.
        let ewma_us = [900u64, 100];
        let inflight = [0u64, 3];
        let pick = pick_p2c_by(2, |_| true, |i| (inflight[i] + 1) * ewma_us[i], 42);
        assert_eq!(pick, Some(1));
    }

    proptest! {
        #[test]
        fn never_picks_an_ineligible_node(
            inflight in proptest::collection::vec(0u32..100, 0..40),
            mask in proptest::collection::vec(any::<bool>(), 40),
            rand in any::<u64>(),
        ) {
            let eligible = |i: usize| mask[i];
            let any_eligible = (0..inflight.len()).any(eligible);
            match pick_p2c(&inflight, eligible, rand) {
                Some(i) => prop_assert!(i < inflight.len() && eligible(i)),
                None => prop_assert!(!any_eligible),
            }
        }

        #[test]
        fn winner_is_never_the_unique_maximum(
            inflight in proptest::collection::vec(0u32..100, 2..40),
            rand in any::<u64>(),
        ) {
            let max = inflight.iter().copied().max().unwrap_or(0);
            let at_max = inflight.iter().filter(|&&v| v == max).count();
            let pick = pick_p2c(&inflight, |_| true, rand).unwrap();
            if at_max == 1 {
                prop_assert!(inflight[pick] < max);
            }
        }
    }
}
