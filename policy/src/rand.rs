//! A tiny deterministic PRNG for decisions that need randomness (balancer candidates,
//! jitter).
//!
//! Callers own and seed it (one per shard, seeded from the core id or a test seed), so a
//! failing simulation replays exactly from its seed. Not cryptographic.

/// SplitMix64 (Steele, Lea, Flood 2014): one `u64` of state, passes BigCrush, and any seed
/// (including 0) is fine — which is why it is preferred over xorshift here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

/// The golden-ratio increment of SplitMix64.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl SplitMix64 {
    /// A generator whose whole output sequence is determined by `seed`.
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next pseudo-random 64-bit value.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix64(self.state)
    }

    /// A pseudo-random value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        reduce(self.next_u64(), n)
    }
}

/// SplitMix64's finaliser: a bijection on `u64` that spreads every input bit over the
/// output. Used to derive a second independent-looking value from one random input.
pub(crate) const fn mix64(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Maps `x` onto `0..n` by multiply-high (Lemire), which uses the high bits and avoids the
/// division of `x % n`; the bias is at most `n / 2^64`.
pub(crate) const fn reduce(x: u64, n: u64) -> u64 {
    ((x as u128 * n as u128) >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn known_vector_seed_zero() {
        // Reference values of SplitMix64 seeded with 0 (from the original C implementation).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = SplitMix64::new(7);
        for n in 1..200 {
            assert!(r.below(n) < n);
        }
        assert_eq!(r.below(0), 0);
    }
}
