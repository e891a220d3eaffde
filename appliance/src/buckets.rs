//! A core's pool+bucket concurrency limits (docs/design.md, "Failure is a normal state";
//! `weir_policy::aimd`): storage throttles per partition of a bucket, often on every node
//! at once, so beside each node's AIMD limit (`health.rs`) every (pool, bucket) this core
//! sends to has one, and a request needs room in both. The limit decreases only when
//! throttling is widespread (`Aimd::for_bucket`), so one node's pushback stays that node's.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use weir_policy::aimd::Aimd;
use weir_policy::attempt::Limit;
use weir_policy::config::Config;

/// Distinct buckets tracked per core and pool; requests for further buckets share one
/// limit per pool, so hostile bucket names cannot grow the map without bound.
const BUCKETS_TRACKED_MAX: usize = 4096;

/// One (pool, bucket)'s limit on this core, and the requests it has in flight.
pub struct Bucket {
    aimd: RefCell<Aimd>,
    inflight: Cell<u32>,
}

impl Bucket {
    /// Whether another request may go to this pool for this bucket now.
    pub fn has_room(&self) -> bool {
        self.inflight.get() < self.aimd.borrow().limit()
    }

    /// Counts a request in flight until the returned guard drops.
    pub fn enter(self: &Rc<Self>) -> BucketSlot {
        self.inflight.set(self.inflight.get() + 1);
        BucketSlot(self.clone())
    }

    /// What an answer from the pool for this bucket teaches the limit.
    pub fn learn(&self, limit: Limit, now: Instant) {
        let mut aimd = self.aimd.borrow_mut();
        match limit {
            Limit::Success => aimd.on_success(),
            Limit::Throttle => {
                aimd.on_throttle(now);
            }
        }
    }
}

/// A request counted in a [`Bucket`]'s in-flight total.
pub struct BucketSlot(Rc<Bucket>);

impl Drop for BucketSlot {
    fn drop(&mut self) {
        let n = self.0.inflight.get();
        debug_assert!(n > 0, "bucket in-flight count underflow");
        self.0.inflight.set(n.saturating_sub(1));
    }
}

/// This core's pool+bucket limits for one config epoch.
pub struct Buckets {
    /// Per pool: its limiter template (this core's share), the tracked buckets, and the
    /// limit shared by buckets beyond [`BUCKETS_TRACKED_MAX`].
    pools: Vec<PoolBuckets>,
}

struct PoolBuckets {
    template: Aimd,
    tracked: RefCell<HashMap<Arc<str>, Rc<Bucket>>>,
    overflow: Rc<Bucket>,
}

impl Buckets {
    /// Limits for `cfg`'s pools of `nodes[p]` nodes each (a DNS name counts one per
    /// address), each core holding `1/cores` of a pool's share.
    pub fn new(cfg: &Config, nodes: &[usize], cores: usize) -> Self {
        let cores = u32::try_from(cores.max(1)).unwrap_or(u32::MAX);
        let pools = cfg
            .pools
            .iter()
            .enumerate()
            .map(|(p, pool)| {
                let count = nodes.get(p).copied().unwrap_or(pool.nodes.len()).max(1);
                let whole = Aimd::for_bucket(&cfg.upstream, count);
                let (min, max) = whole.bounds();
                let share = (max / cores).max(min);
                let template = Aimd::new(share, min.min(share), share)
                    .with_decrease_ratio_min(weir_policy::aimd::BUCKET_DECREASE_RATIO_MIN);
                PoolBuckets {
                    overflow: Rc::new(Bucket {
                        aimd: RefCell::new(template.clone()),
                        inflight: Cell::new(0),
                    }),
                    template,
                    tracked: RefCell::new(HashMap::new()),
                }
            })
            .collect();
        Buckets { pools }
    }

    /// The limit of `pool` for `bucket` (requests without a bucket share one).
    pub fn get(&self, pool: usize, bucket: Option<&str>) -> Option<Rc<Bucket>> {
        let p = self.pools.get(pool)?;
        let name = bucket.unwrap_or("");
        let mut tracked = p.tracked.borrow_mut();
        if let Some(b) = tracked.get(name) {
            return Some(b.clone());
        }
        if tracked.len() >= BUCKETS_TRACKED_MAX {
            return Some(p.overflow.clone());
        }
        let b = Rc::new(Bucket {
            aimd: RefCell::new(p.template.clone()),
            inflight: Cell::new(0),
        });
        tracked.insert(Arc::from(name), b.clone());
        Some(b)
    }

    /// The limit of `pool` for `bucket` now (for `/nodes`-style reports and tests).
    #[cfg(test)]
    fn limit(&self, pool: usize, bucket: Option<&str>) -> Option<u32> {
        self.get(pool, bucket).map(|b| b.aimd.borrow().limit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_toml_str(
            r#"
[upstream]
node_concurrency_max = 8
node_concurrency_min = 1
[[pool]]
name = "a"
nodes = ["127.0.0.1:1", "127.0.0.1:2"]
"#,
            "t.toml",
        )
        .expect("config")
    }

    #[test]
    fn a_core_holds_its_share_and_counts_in_flight() {
        let b = Buckets::new(&config(), &[], 2);
        assert_eq!(b.limit(0, Some("x")), Some(8), "2 nodes x 8 / 2 cores");
        let x = b.get(0, Some("x")).expect("pool 0");
        let slots: Vec<_> = (0..8).map(|_| x.enter()).collect();
        assert!(!x.has_room());
        drop(slots);
        assert!(x.has_room());
        assert!(b.get(1, Some("x")).is_none(), "no pool 1");
    }

    #[test]
    fn widespread_throttling_shrinks_the_bucket() {
        let b = Buckets::new(&config(), &[], 1);
        let x = b.get(0, Some("x")).expect("pool 0");
        let t0 = Instant::now();
        for i in 0..50u32 {
            x.learn(
                Limit::Throttle,
                t0 + std::time::Duration::from_secs(u64::from(i)),
            );
        }
        assert_eq!(b.limit(0, Some("x")), Some(1));
        assert_eq!(
            b.limit(0, Some("y")),
            Some(16),
            "another bucket keeps its limit"
        );
    }
}
