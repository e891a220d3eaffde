//! `round_robin`: each core takes a pool's eligible nodes in turn.
//!
//! The position lives in the caller's [`PoolState`] (one per pool per core: no core
//! waits on another, and together the cores spread as evenly as each does). Ineligible
//! nodes are skipped without losing the order. A node in slow start (weight `w < 1`)
//! takes its turn in a share `w` of the rounds, spread evenly over them, which needs no
//! state per node: the round number (position ÷ pool size) decides. When every eligible
//! node passes its turn in one sweep, the first of them takes it anyway, so a pool whose
//! nodes are all ramping still serves.
//!
//! Round robin ignores latency and load (the AIMD limit still caps each node): it suits
//! nodes of equal capacity and a caller who wants an even split it can predict.

use super::{PoolState, Within};

/// The next eligible node at or after this core's position, which moves past it.
pub(super) fn choose(w: &Within<'_>) -> Option<usize> {
    let len = w.nodes.len() as u64;
    let start = w.state.next.get();
    let mut passed = None;
    for step in 0..len {
        let position = start.wrapping_add(step);
        // `position % len < len`, a usize.
        let node = (position % len) as usize;
        if !(w.eligible)(node) {
            continue;
        }
        if takes_turn(w.nodes[node].balancing_weight(), position / len) {
            return Some(advance(w.state, position, node));
        }
        passed.get_or_insert((position, node));
    }
    let (position, node) = passed?;
    Some(advance(w.state, position, node))
}

/// Moves `state` past `position` and returns `node`.
fn advance(state: &PoolState, position: u64, node: usize) -> usize {
    state.next.set(position.wrapping_add(1));
    node
}

/// Whether a node of slow-start `weight` takes its turn in `round`: it takes
/// `⌊(r + 1)·w⌋ − ⌊r·w⌋` turns in round `r` (0 or 1), that is `w` of the rounds, evenly
/// spread. The weight is counted in thousandths, so the pattern repeats every 1000 rounds.
fn takes_turn(weight: f64, round: u64) -> bool {
    // `weight` is in 0.1..=1.0 after `balancing_weight`, a few more or less: clamp.
    let per_mille = (weight.clamp(0.0, 1.0) * 1000.0).round() as u64;
    let r = round % 1000;
    (r + 1) * per_mille / 1000 > r * per_mille / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::{choose, ups};
    use crate::balance::Algorithm;

    fn rr(
        nodes: &[crate::balance::NodeLoad],
        eligible: impl Fn(usize) -> bool,
        state: &PoolState,
    ) -> Option<usize> {
        choose(Algorithm::RoundRobin, nodes, eligible, 0, None, state)
    }

    #[test]
    fn takes_nodes_in_turn_exactly_evenly() {
        let nodes = ups(4);
        let state = PoolState::default();
        let order: Vec<usize> = (0..8)
            .filter_map(|_| rr(&nodes, |_| true, &state))
            .collect();
        assert_eq!(order, [0, 1, 2, 3, 0, 1, 2, 3]);
        let mut counts = [0u32; 4];
        for _ in 0..4000 {
            counts[rr(&nodes, |_| true, &state).unwrap()] += 1;
        }
        assert_eq!(counts, [1000; 4]);
    }

    #[test]
    fn starts_where_told_and_skips_ineligible_nodes_in_order() {
        let nodes = ups(5);
        let state = PoolState::starting_at(3);
        let order: Vec<usize> = (0..6)
            .filter_map(|_| rr(&nodes, |i| i != 4 && i != 1, &state))
            .collect();
        assert_eq!(order, [3, 0, 2, 3, 0, 2]);
        let mut counts = [0u32; 5];
        for _ in 0..3000 {
            counts[rr(&nodes, |i| i != 4 && i != 1, &state).unwrap()] += 1;
        }
        assert_eq!(counts, [1000, 0, 1000, 1000, 0]);
    }

    #[test]
    fn nothing_eligible_leaves_the_position() {
        let nodes = ups(3);
        let state = PoolState::starting_at(7);
        assert_eq!(rr(&nodes, |_| false, &state), None);
        assert_eq!(rr(&[], |_| true, &state), None);
        assert_eq!(state.next.get(), 7);
    }

    #[test]
    fn slow_start_weight_is_a_share_of_turns() {
        let mut nodes = ups(3);
        nodes[1].weight = 0.25;
        let state = PoolState::default();
        let mut counts = [0u32; 3];
        for _ in 0..9000 {
            counts[rr(&nodes, |_| true, &state).unwrap()] += 1;
        }
        // Per round the full nodes take 1 turn each, the ramping one 1/4.
        let rounds = f64::from(counts[0]);
        assert_eq!(counts[0], counts[2]);
        let share = f64::from(counts[1]) / rounds;
        assert!((share - 0.25).abs() < 0.01, "{counts:?}");
    }

    #[test]
    fn all_ramping_still_serves() {
        let mut nodes = ups(2);
        for n in &mut nodes {
            n.weight = 0.1;
        }
        let state = PoolState::default();
        let mut counts = [0u32; 2];
        for _ in 0..1000 {
            counts[rr(&nodes, |_| true, &state).unwrap()] += 1;
        }
        assert_eq!(counts[0] + counts[1], 1000);
        assert!(counts[0].abs_diff(counts[1]) <= 100, "{counts:?}");
    }

    #[test]
    fn turns_are_spread_over_rounds() {
        for per_mille in [100u64, 250, 333, 500, 900, 1000] {
            let w = per_mille as f64 / 1000.0;
            let taken = (0..1000).filter(|&r| takes_turn(w, r)).count() as u64;
            assert_eq!(taken, per_mille, "{w}");
            // Never two rounds in a row skipped when w >= 0.5.
            if per_mille >= 500 {
                assert!((0..999).all(|r| takes_turn(w, r) || takes_turn(w, r + 1)));
            }
        }
        assert!((0..1000).all(|r| !takes_turn(0.0, r)));
    }
}
