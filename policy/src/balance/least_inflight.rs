//! `least_inflight`: the eligible node with the fewest of this core's requests in flight,
//! ties at random.
//!
//! In flight is counted per slow-start weight, `(inflight + 1) / weight`, so a node that
//! just came back takes its share gradually; with every node at full weight this is
//! plainly "fewest in flight". Unlike `p2c` it ignores latency and looks at every node,
//! which herds more when a core's view is stale; it suits long transfers, where in-flight
//! count is the load.

use super::Within;
use crate::rand::reduce;

/// The least loaded eligible node; among equals the `rand`-th.
pub(super) fn choose(w: &Within<'_>) -> Option<usize> {
    let load = |i: usize| {
        let n = &w.nodes[i];
        (f64::from(n.inflight) + 1.0) / n.balancing_weight()
    };
    let least = w.eligible_nodes().map(load).min_by(|a, b| a.total_cmp(b))?;
    let ties = w.eligible_nodes().filter(|&i| load(i) == least).count();
    // `reduce` maps onto `0..ties`, a usize.
    let nth = reduce(w.rand, ties as u64) as usize;
    w.eligible_nodes().filter(|&i| load(i) == least).nth(nth)
}

#[cfg(test)]
mod tests {
    use crate::balance::testing::{choose, ups};
    use crate::balance::{Algorithm, NodeLoad, PoolState};
    use crate::rand::SplitMix64;

    fn least(nodes: &[NodeLoad], eligible: impl Fn(usize) -> bool, rand: u64) -> Option<usize> {
        choose(
            Algorithm::LeastInflight,
            nodes,
            eligible,
            rand,
            None,
            &PoolState::default(),
        )
    }

    #[test]
    fn fewest_in_flight_wins() {
        let mut nodes = ups(4);
        for (n, inflight) in nodes.iter_mut().zip([5, 2, 7, 3]) {
            n.inflight = inflight;
        }
        let mut rng = SplitMix64::new(1);
        for _ in 0..200 {
            assert_eq!(least(&nodes, |_| true, rng.next_u64()), Some(1));
            // Excluded, the next least takes over.
            assert_eq!(least(&nodes, |i| i != 1, rng.next_u64()), Some(3));
        }
    }

    #[test]
    fn ties_are_uniform() {
        let mut nodes = ups(5);
        nodes[2].inflight = 1;
        let mut rng = SplitMix64::new(2);
        let mut counts = [0u32; 5];
        for _ in 0..40_000 {
            counts[least(&nodes, |_| true, rng.next_u64()).unwrap()] += 1;
        }
        assert_eq!(counts[2], 0);
        for (i, &c) in counts.iter().enumerate().filter(|&(i, _)| i != 2) {
            assert!(c.abs_diff(10_000) < 500, "node {i}: {counts:?}");
        }
    }

    #[test]
    fn spreads_a_stream_evenly_when_in_flight_follows() {
        // Requests that stay in flight: the counts fill up level.
        let mut nodes = ups(3);
        let mut rng = SplitMix64::new(3);
        for _ in 0..30 {
            let i = least(&nodes, |_| true, rng.next_u64()).unwrap();
            nodes[i].inflight += 1;
        }
        assert!(nodes.iter().all(|n| n.inflight == 10), "{nodes:?}");
    }

    #[test]
    fn ramping_node_counts_heavier() {
        let mut nodes = ups(2);
        nodes[0].weight = 0.5; // idle but ramping: (0 + 1) / 0.5 = 2
        nodes[1].inflight = 2; // (2 + 1) / 1 = 3: the ramping node wins
        assert_eq!(least(&nodes, |_| true, 9), Some(0));
        nodes[0].inflight = 1; // 4 against 3
        assert_eq!(least(&nodes, |_| true, 9), Some(1));
    }
}
