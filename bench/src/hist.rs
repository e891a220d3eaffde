//! A small log-linear latency histogram (HDR-style): each power of two is split into
//! `2^SUB_BUCKET_BITS` linear sub-buckets, so any recorded value is reported within
//! 1/64 (≈1.6 %) of itself, with a fixed 4-thousand-slot table and no allocation per record.

/// Linear sub-buckets per power of two, as a bit count.
const SUB_BUCKET_BITS: u32 = 6;
/// Linear sub-buckets per power of two.
const SUB_BUCKETS: u64 = 1 << SUB_BUCKET_BITS;
/// Slots needed for every u64 value.
const SLOTS: usize = ((64 - SUB_BUCKET_BITS as usize) + 1) * SUB_BUCKETS as usize;

/// Log-linear histogram of u64 values (the load generator records microseconds).
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            counts: vec![0; SLOTS],
            total: 0,
            max: 0,
            sum: 0,
        }
    }

    /// Slot of a value: exact below `SUB_BUCKETS`, then `SUB_BUCKETS` slots per octave.
    fn slot(value: u64) -> usize {
        if value < SUB_BUCKETS {
            return value as usize;
        }
        let octave = 63 - value.leading_zeros(); // >= SUB_BUCKET_BITS
        let shift = octave - SUB_BUCKET_BITS;
        let sub = (value >> shift) & (SUB_BUCKETS - 1);
        ((shift as u64 + 1) * SUB_BUCKETS + sub) as usize
    }

    /// Highest value that lands in `slot` (what percentiles report: never under-states).
    fn slot_high(slot: usize) -> u64 {
        let slot = slot as u64;
        if slot < SUB_BUCKETS {
            return slot;
        }
        let shift = slot / SUB_BUCKETS - 1;
        let sub = slot % SUB_BUCKETS;
        let low = (SUB_BUCKETS + sub) << shift;
        low.saturating_add((1u64 << shift) - 1)
    }

    /// Records one value.
    pub fn record(&mut self, value: u64) {
        self.counts[Self::slot(value)] += 1;
        self.total += 1;
        self.max = self.max.max(value);
        self.sum += u128::from(value);
    }

    /// Adds every count of `other` into `self`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Largest recorded value (exact).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Mean of recorded values (exact), 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The value at quantile `q` (0..=1), capped at the exact max; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (slot, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::slot_high(slot).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_monotonic_and_tight() {
        let mut last = 0;
        for value in (0..200_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let slot = Histogram::slot(value);
            assert!(slot >= last);
            assert!(slot < SLOTS);
            last = slot;
            let high = Histogram::slot_high(slot);
            assert!(high >= value);
            assert!(
                high - value <= value / SUB_BUCKETS,
                "value {value} high {high}"
            );
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v);
        }
        let p50 = h.quantile(0.5);
        assert!((500..=510).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99);
        assert!((990..=1000).contains(&p99), "{p99}");
        assert_eq!(h.quantile(1.0), 1000);
        let mut other = Histogram::new();
        other.record(1_000_000);
        h.merge(&other);
        assert_eq!(h.count(), 1001);
        assert_eq!(h.max(), 1_000_000);
    }
}
