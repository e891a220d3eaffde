//! Node choice across a route's failover chain of pools, in two layers:
//!
//! - the chain walk ([`pick`], `pick.rs`), the same for every pool: health, priority
//!   groups and `min_active`, concurrency limits (AIMD), exclusions (nodes the request
//!   already tried, full pool+bucket limits), degraded nodes last;
//! - the choice within the pool the walk reached, by that pool's [`Algorithm`] (its
//!   `balance` key): one file per algorithm, each a `choose(&Within) -> Option<usize>`
//!   over the nodes the walk found eligible.
//!
//! Driven by the appliance once per upstream attempt with its shard's view of the nodes,
//! a value from its own seeded [`crate::rand::SplitMix64`], the request's [`Affinity`]
//! and its per-pool [`PoolState`]; the simulator (`policy/tests/sim.rs`) drives the same.
//!
//! Adding an algorithm (docs/design.md, "Balancing"): a file here with its `choose` and
//! unit tests, a variant of [`Algorithm`] with its name in [`Algorithm::ALL`] and its arm
//! in `Algorithm::choose`, and its row in docs/config.md. The config key, the appliance
//! and the simulator take any algorithm unchanged.

mod least_inflight;
mod p2c;
mod pick;
mod rendezvous;
mod round_robin;

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;

pub use p2c::{pick_p2c, pick_p2c_by};
pub use pick::{pick, Candidate, NodeLoad, PoolView};
pub use rendezvous::{node_id, Affinity};

/// How a pool picks among its eligible nodes: the pool's `balance` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// Power of two choices on `(in-flight + 1) × latency EWMA / weight` (the default).
    #[default]
    P2c,
    /// Each core takes the nodes in turn; a node in slow start takes a share of its turns.
    RoundRobin,
    /// Fewest in-flight requests (per slow-start weight); ties at random.
    LeastInflight,
    /// Highest random weight of the request's bucket and key: one object, one node.
    Rendezvous,
}

impl Algorithm {
    /// Every algorithm with its config name.
    pub const ALL: [(&'static str, Algorithm); 4] = [
        ("p2c", Algorithm::P2c),
        ("round_robin", Algorithm::RoundRobin),
        ("least_inflight", Algorithm::LeastInflight),
        ("rendezvous", Algorithm::Rendezvous),
    ];

    /// The config name (also for logs and the admin API).
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map_or("p2c", |(name, _)| name)
    }

    /// Whether the algorithm places by the request's [`Affinity`] (the caller may skip
    /// computing it otherwise).
    pub fn uses_affinity(self) -> bool {
        self == Algorithm::Rendezvous
    }

    /// The node of `within` this algorithm picks; `None` when no node is eligible.
    fn choose(self, within: &Within<'_>) -> Option<usize> {
        match self {
            Algorithm::P2c => p2c::choose(within),
            Algorithm::RoundRobin => round_robin::choose(within),
            Algorithm::LeastInflight => least_inflight::choose(within),
            Algorithm::Rendezvous => rendezvous::choose(within),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `balance` value that names no algorithm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown balance algorithm {name:?} (expected one of {})",
    AlgorithmNames
)]
pub struct UnknownAlgorithm {
    /// The value as written.
    pub name: String,
}

/// Renders the accepted names, `"p2c", "round_robin", …`.
struct AlgorithmNames;

impl fmt::Display for AlgorithmNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, _)) in Algorithm::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name:?}")?;
        }
        Ok(())
    }
}

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, a)| a)
            .ok_or_else(|| UnknownAlgorithm {
                name: name.to_owned(),
            })
    }
}

/// A core's balancing state for one pool, kept by the caller (one per pool per core, so
/// no core waits on another) and read and advanced by [`pick`]: the round-robin position.
/// Any algorithm that needs memory between picks keeps it here.
#[derive(Debug, Default)]
pub struct PoolState {
    /// Round robin's next position (a node index modulo the pool's size; the quotient
    /// is the round).
    next: Cell<u64>,
}

impl PoolState {
    /// A state whose round robin starts at `position` (e.g. the core number, so cores do
    /// not all start on the first node).
    pub fn starting_at(position: u64) -> Self {
        Self {
            next: Cell::new(position),
        }
    }
}

/// What an algorithm sees of the pool the chain walk reached.
struct Within<'a> {
    /// The pool's nodes, in config order.
    nodes: &'a [NodeLoad],
    /// Whether node `i` may be picked (state, limit and exclusions already applied).
    eligible: &'a dyn Fn(usize) -> bool,
    /// A fresh random value.
    rand: u64,
    /// The request's placement key, if it has one.
    affinity: Option<Affinity>,
    /// This core's state for the pool.
    state: &'a PoolState,
}

impl Within<'_> {
    /// The eligible nodes, in config order.
    fn eligible_nodes(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| (self.eligible)(i))
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Pools for the algorithms' tests.

    use std::time::Duration;

    use super::*;
    use crate::health::NodeState;

    /// An up, idle node with a 10ms latency, full weight, identity `id`.
    pub(crate) fn node(id: u64) -> NodeLoad {
        NodeLoad {
            state: NodeState::Up,
            inflight: 0,
            limit: 10,
            latency_ewma: Some(Duration::from_millis(10)),
            weight: 1.0,
            id,
        }
    }

    /// `n` such nodes, identities `0..n`.
    pub(crate) fn ups(n: usize) -> Vec<NodeLoad> {
        (0..n as u64).map(node).collect()
    }

    /// Runs `algorithm` once over `nodes` with every node for which `eligible` holds.
    pub(crate) fn choose(
        algorithm: Algorithm,
        nodes: &[NodeLoad],
        eligible: impl Fn(usize) -> bool,
        rand: u64,
        affinity: Option<Affinity>,
        state: &PoolState,
    ) -> Option<usize> {
        algorithm.choose(&Within {
            nodes,
            eligible: &eligible,
            rand,
            affinity,
            state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{choose, ups};
    use super::*;
    use crate::rand::SplitMix64;

    #[test]
    fn names_round_trip_and_default_is_p2c() {
        for (name, a) in Algorithm::ALL {
            assert_eq!(name.parse::<Algorithm>(), Ok(a));
            assert_eq!(a.name(), name);
            assert_eq!(a.to_string(), name);
        }
        assert_eq!(Algorithm::default(), Algorithm::P2c);
        let e = "roundrobin".parse::<Algorithm>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown balance algorithm \"roundrobin\" (expected one of \"p2c\", \
             \"round_robin\", \"least_inflight\", \"rendezvous\")"
        );
        assert!("P2C".parse::<Algorithm>().is_err(), "names are exact");
        assert!("".parse::<Algorithm>().is_err());
    }

    #[test]
    fn every_algorithm_respects_eligibility_and_none_without_nodes() {
        let nodes = ups(6);
        let mut rng = SplitMix64::new(17);
        for (name, a) in Algorithm::ALL {
            let state = PoolState::default();
            assert_eq!(choose(a, &[], |_| true, 1, None, &state), None, "{name}");
            assert_eq!(
                choose(a, &nodes, |_| false, 1, None, &state),
                None,
                "{name}"
            );
            for _ in 0..500 {
                let key = Some(Affinity::from_hash(rng.next_u64()));
                let got = choose(a, &nodes, |i| i % 2 == 1, rng.next_u64(), key, &state);
                assert!(matches!(got, Some(1 | 3 | 5)), "{name}: {got:?}");
                let only = choose(a, &nodes, |i| i == 4, rng.next_u64(), key, &state);
                assert_eq!(only, Some(4), "{name}");
            }
        }
    }
}
