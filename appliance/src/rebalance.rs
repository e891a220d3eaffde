//! The cross-core rebalance of the limits' shares (docs/limits.md): each core holds a share
//! of every rate limit and cap (`crate::protect`); every `rebalance_interval` core 0 asks
//! every core for its usage, computes new shares (pure, `weir_policy::limits`) and sends
//! each core its grants. This module is the coordinator and each core's side of a round;
//! the messages travel on the bus.

use std::rc::Rc;
use std::time::Duration;

use weir_policy::limits::{rebalance_cap_keys, rebalance_keys, CapGrant, KeyGrant};

use crate::bus::{self, Bus, LimitsUsage, Msg};
use crate::shard::Shard;

/// How long the coordinator waits for every core's report before skipping a round.
const ROUND_TIMEOUT: Duration = Duration::from_millis(200);

/// Answers the coordinator's round on `shard` (from its inbox task).
pub fn on_report(shard: &Shard, reply: &flume::Sender<LimitsUsage>) {
    let ep = shard.epoch();
    let (keys, caps) = ep.protect.report();
    let _ = reply.try_send(LimitsUsage {
        core: shard.id,
        epoch: ep.id,
        keys,
        caps,
    });
}

/// Applies the coordinator's grants for `epoch` on `shard`, unless it has moved on.
pub fn on_grant(shard: &Shard, epoch: u64, keys: &[KeyGrant], caps: &[CapGrant]) {
    let ep = shard.epoch();
    if ep.id == epoch {
        ep.protect.apply(keys, caps);
    }
}

/// The coordinator (runs on core 0): every `rebalance_interval` it asks every core for
/// its usage, computes the new shares and sends each core its grants. A core reports for
/// the next round only after applying this round's grants (its inbox is FIFO and the next
/// question comes after the grants), so a round never counts room twice. A round where
/// some core does not answer in time, or the cores are on different config epochs (a
/// reload in progress), changes nothing.
pub async fn coordinate(shard: Rc<Shard>, bus: Bus) {
    let cores = bus.cores();
    loop {
        let interval = shard.epoch().settings.config.limits.rebalance_interval;
        monoio::time::sleep(interval).await;
        // Fresh channels each round: answers of a skipped round cannot count in this one.
        let replies = bus.ask(Msg::LimitsReport);
        let reports = bus::gather(replies, ROUND_TIMEOUT).await;
        if reports.len() != cores {
            continue;
        }
        debug_assert!(
            reports.iter().enumerate().all(|(i, r)| r.core == i),
            "reports gathered out of core order"
        );
        let epoch = reports[0].epoch;
        if reports.iter().any(|r| r.epoch != epoch) {
            continue;
        }
        let (keys, caps): (Vec<_>, Vec<_>) = reports.into_iter().map(|r| (r.keys, r.caps)).unzip();
        let key_grants = rebalance_keys(&keys);
        let cap_grants = rebalance_cap_keys(&caps);
        for (core, (keys, caps)) in key_grants.into_iter().zip(cap_grants).enumerate() {
            if keys.is_empty() && caps.is_empty() {
                continue;
            }
            bus.send(core, Msg::LimitsGrant { epoch, keys, caps });
        }
    }
}
