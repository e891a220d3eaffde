//! `rendezvous`: highest random weight (Thaler and Ravishankar 1996) of the request's
//! bucket and key over the pool's eligible nodes.
//!
//! Every node gets a pseudo-random score from (object, node identity); the highest
//! eligible score wins. Every core and every weir computes the same order, with no shared
//! state, so one object keeps going to one node — whose cache then holds it. When a node
//! goes down, is excluded (a retry) or is at its concurrency limit, only its objects move,
//! each to its own second-ranked node, and they come back when it does; adding or removing
//! a node moves only the objects it wins or held. Identities are hashes of the node
//! addresses ([`node_id`]), not positions, so a reload that reorders `nodes` moves nothing.
//!
//! Scores are weighted by slow start (`w / −ln u`, the logarithmic method): a node coming
//! back wins a share `w` of what it would win at full weight, so its objects return
//! gradually. At equal weights this is plain highest-random-weight.
//!
//! Load is not looked at: a hot object's node takes all of it until its concurrency limit,
//! then the object spills to its next node. A client that chooses its keys chooses its
//! node; the limits hold either way. A request without a key (ListBuckets, a bucket
//! listing) is placed at random.

use super::Within;
use crate::percent;
use crate::rand::mix64;

/// A request's placement key for `rendezvous` pools: a hash of its bucket and object key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Affinity(u64);

impl Affinity {
    /// The placement key of object `key` in `bucket`. `key` is as it appears in the
    /// request target (percent-encoded): it is decoded first, so two spellings of one
    /// object land on one node; a key that does not decode is hashed as written.
    pub fn of(bucket: &str, key: &str) -> Affinity {
        let mut h = Fnv::new();
        h.write(bucket.as_bytes());
        // A bucket name holds no '/': the pair is unambiguous.
        h.write(b"/");
        match percent::decode(key.as_bytes()) {
            Some(decoded) => h.write(&decoded),
            None => h.write(key.as_bytes()),
        }
        Affinity(mix64(h.0))
    }

    /// A placement key from a hash the caller made (tests, simulations).
    pub const fn from_hash(hash: u64) -> Affinity {
        Affinity(hash)
    }
}

/// A node's identity for [`super::NodeLoad::id`]: a hash of its address as configured.
pub fn node_id(host: &str, port: u16) -> u64 {
    let mut h = Fnv::new();
    h.write(host.as_bytes());
    h.write(b":");
    h.write(&port.to_be_bytes());
    mix64(h.0)
}

/// The eligible node with the highest weighted score for the request's key (a random key
/// when it has none).
pub(super) fn choose(w: &Within<'_>) -> Option<usize> {
    let key = w.affinity.map_or(w.rand, |a| a.0);
    let ramping = w
        .eligible_nodes()
        .any(|i| w.nodes[i].balancing_weight() < 1.0);
    let mut best: Option<(f64, usize)> = None;
    for i in w.eligible_nodes() {
        let n = &w.nodes[i];
        let u = unit(mix64(key ^ n.id));
        // At equal weights the order is that of `u` (the score is increasing in it): no
        // logarithm per node in the common case.
        let s = if ramping {
            n.balancing_weight() / -u.ln()
        } else {
            u
        };
        // Strictly greater: an exact tie keeps the first node, the same on every core.
        if best.is_none_or(|(b, _)| s > b) {
            best = Some((s, i));
        }
    }
    best.map(|(_, i)| i)
}

/// A hash as a uniform value in (0, 1): 53 bits offset by half a step, never 0 nor 1,
/// so `ln` of it is finite and negative (the score `weight / −ln u` is then positive).
fn unit(h: u64) -> f64 {
    ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// FNV-1a, 64 bits: byte-at-a-time, then finalised by `mix64` for avalanche.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xCBF2_9CE4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::{choose as run, ups};
    use crate::balance::{Algorithm, NodeLoad, PoolState};
    use crate::rand::SplitMix64;

    fn place(
        nodes: &[NodeLoad],
        eligible: impl Fn(usize) -> bool,
        key: Affinity,
        rand: u64,
    ) -> Option<usize> {
        run(
            Algorithm::Rendezvous,
            nodes,
            eligible,
            rand,
            Some(key),
            &PoolState::default(),
        )
    }

    /// Nodes whose identities are hashes of addresses, as the appliance builds them.
    fn addressed(n: u16) -> Vec<NodeLoad> {
        let mut nodes = ups(usize::from(n));
        for (i, node) in nodes.iter_mut().enumerate() {
            node.id = node_id("10.0.0.1", 9000 + i as u16);
        }
        nodes
    }

    fn keys(count: usize, seed: u64) -> Vec<Affinity> {
        let mut rng = SplitMix64::new(seed);
        (0..count)
            .map(|i| Affinity::of("bucket", &format!("obj/{i}-{}", rng.next_u64())))
            .collect()
    }

    #[test]
    fn one_key_one_node_whatever_the_random_value() {
        let nodes = addressed(5);
        let mut rng = SplitMix64::new(1);
        for key in keys(200, 1) {
            let first = place(&nodes, |_| true, key, rng.next_u64());
            assert!(first.is_some());
            for _ in 0..20 {
                assert_eq!(place(&nodes, |_| true, key, rng.next_u64()), first);
            }
        }
    }

    #[test]
    fn keys_spread_evenly() {
        let nodes = addressed(5);
        let mut counts = [0u32; 5];
        for key in keys(50_000, 2) {
            counts[place(&nodes, |_| true, key, 0).unwrap()] += 1;
        }
        for (i, &c) in counts.iter().enumerate() {
            assert!(c.abs_diff(10_000) < 500, "node {i}: {counts:?}");
        }
    }

    #[test]
    fn a_node_going_away_moves_only_its_keys_evenly() {
        let nodes = addressed(5);
        let keys = keys(20_000, 3);
        let before: Vec<usize> = keys
            .iter()
            .map(|&k| place(&nodes, |_| true, k, 0).unwrap())
            .collect();
        // Node 2 down (or excluded, or full): only its keys move, spread over the others.
        let mut moved_to = [0u32; 5];
        for (&k, &was) in keys.iter().zip(&before) {
            let now = place(&nodes, |i| i != 2, k, 0).unwrap();
            if was == 2 {
                moved_to[now] += 1;
            } else {
                assert_eq!(now, was, "a key of a healthy node moved");
            }
        }
        let moved: u32 = moved_to.iter().sum();
        assert_eq!(moved as usize, before.iter().filter(|&&n| n == 2).count());
        assert_eq!(moved_to[2], 0);
        for i in [0, 1, 3, 4] {
            let c = f64::from(moved_to[i]);
            assert!((c / f64::from(moved) - 0.25).abs() < 0.05, "{moved_to:?}");
        }
        // Back up: every key is where it was.
        for (&k, &was) in keys.iter().zip(&before) {
            assert_eq!(place(&nodes, |_| true, k, 0), Some(was));
        }
    }

    #[test]
    fn adding_a_node_takes_only_keys_it_wins() {
        let four = addressed(4);
        let five = addressed(5);
        let keys = keys(20_000, 4);
        let mut taken = 0;
        for &k in &keys {
            let old = place(&four, |_| true, k, 0).unwrap();
            let new = place(&five, |_| true, k, 0).unwrap();
            if new == 4 {
                taken += 1;
            } else {
                assert_eq!(new, old, "a key moved between old nodes");
            }
        }
        assert!((taken as f64 / 20_000.0 - 0.2).abs() < 0.02, "{taken}");
        // Reordering the nodes (a reload that writes them in another order) moves nothing.
        let mut reversed = five.clone();
        reversed.reverse();
        for &k in &keys {
            let a = five[place(&five, |_| true, k, 0).unwrap()].id;
            let b = reversed[place(&reversed, |_| true, k, 0).unwrap()].id;
            assert_eq!(a, b);
        }
    }

    #[test]
    fn equal_weights_below_one_place_as_full_weights() {
        // Every node ramping alike takes the weighted path; the order must not change.
        let full = addressed(5);
        let mut ramping = full.clone();
        for n in &mut ramping {
            n.weight = 0.5;
        }
        for key in keys(5_000, 7) {
            assert_eq!(
                place(&full, |_| true, key, 0),
                place(&ramping, |_| true, key, 0)
            );
        }
    }

    #[test]
    fn ramping_node_wins_its_weight_of_keys() {
        let mut nodes = addressed(4);
        nodes[1].weight = 0.25;
        let mut counts = [0u32; 4];
        for key in keys(40_000, 5) {
            counts[place(&nodes, |_| true, key, 0).unwrap()] += 1;
        }
        // Weighted HRW: shares are w_i / Σw = 0.25 / 3.25 for the ramping node.
        let share = f64::from(counts[1]) / 40_000.0;
        assert!((share - 0.25 / 3.25).abs() < 0.01, "{counts:?}");
    }

    #[test]
    fn no_key_places_at_random_and_none_without_nodes() {
        let nodes = addressed(4);
        let mut rng = SplitMix64::new(6);
        let state = PoolState::default();
        let mut counts = [0u32; 4];
        for _ in 0..4000 {
            let i = run(
                Algorithm::Rendezvous,
                &nodes,
                |_| true,
                rng.next_u64(),
                None,
                &state,
            );
            counts[i.unwrap()] += 1;
        }
        assert!(counts.iter().all(|&c| c.abs_diff(1000) < 150), "{counts:?}");
        assert_eq!(place(&nodes, |_| false, Affinity::from_hash(1), 0), None);
        assert_eq!(place(&[], |_| true, Affinity::from_hash(1), 0), None);
    }

    #[test]
    fn spellings_of_one_key_agree() {
        assert_eq!(Affinity::of("b", "a%20b"), Affinity::of("b", "a b"));
        assert_eq!(Affinity::of("b", "%41"), Affinity::of("b", "A"));
        assert_ne!(Affinity::of("b", "x"), Affinity::of("c", "x"));
        assert_ne!(Affinity::of("ab", "c"), Affinity::of("a", "bc"));
        // Not decodable: hashed as written, still stable.
        assert_eq!(Affinity::of("b", "%zz"), Affinity::of("b", "%zz"));
        assert_ne!(node_id("10.0.0.1", 9000), node_id("10.0.0.1", 9001));
    }
}
