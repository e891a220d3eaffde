//! Concurrency caps: client connections (global and per client IP), in-flight requests per
//! tenant (not connections: a connection has no tenant until a request arrives;
//! docs/design.md, "Protecting the storage") and per storage node — counters with
//! acquire/release that say allowed or not.
//!
//! Like rates, a global cap of C is split into per-core shares that add up to at most C,
//! so no core touches another's counter. Every `rebalance_interval` each core's
//! [`Caps::usage`] goes to the coordinator, whose [`rebalance_cap_keys`] aims to leave
//! each core what it holds and divide the rest: half evenly (so any core can take a
//! newcomer), half towards the cores that turned someone away.
//!
//! Reports and grants cross in flight (a core may acquire between reporting and hearing
//! back), so moving room is two-phase: a core told to shrink keeps at least what it holds
//! by then, and room is granted to another core only once it shows up as unallocated in
//! a later report. A cap is therefore exact — never more than C held at once — but a core
//! may refuse while another still has room, for a rebalance or two; set caps with a
//! little headroom.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::{CapScope, RejectReason};
use crate::config::{Config, TenantId};

/// What one core tells the coordinator about one cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapUsage {
    /// Held now on this core.
    pub in_use: u64,
    /// Refused on this core since the last grant.
    pub refused: u64,
    /// This core's share now (at least `in_use`).
    pub share: u64,
}

/// One core's share of a global cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapShare {
    global_max: u64,
    /// This core's even share, which a fresh entry starts with.
    even: u64,
    share: u64,
    in_use: u64,
    refused: u64,
}

impl CapShare {
    /// Core `core`'s even share of `global_max` among `cores` (the remainder goes to the
    /// lowest cores, so the shares add up exactly).
    pub fn new(global_max: u64, cores: usize, core: usize) -> Self {
        let even = even_share(global_max, cores, core);
        CapShare {
            global_max,
            even,
            share: even,
            in_use: 0,
            refused: 0,
        }
    }

    /// Takes one unit if this core's share has room; counts a refusal otherwise.
    pub fn try_acquire(&mut self) -> bool {
        if self.in_use < self.share {
            self.in_use += 1;
            true
        } else {
            self.refused = self.refused.saturating_add(1);
            false
        }
    }

    /// Gives one unit back (never below zero).
    pub fn release(&mut self) {
        self.in_use = self.in_use.saturating_sub(1);
    }

    /// Units held on this core.
    pub fn in_use(&self) -> u64 {
        self.in_use
    }

    /// This core's current share.
    pub fn share(&self) -> u64 {
        self.share
    }

    /// The cap across all cores.
    pub fn global_max(&self) -> u64 {
        self.global_max
    }

    /// This core's usage for the coordinator.
    pub fn report(&self) -> CapUsage {
        CapUsage {
            in_use: self.in_use,
            refused: self.refused,
            share: self.share.max(self.in_use),
        }
    }

    /// Takes the coordinator's share and starts counting refusals afresh. The share
    /// never drops below what this core holds: the coordinator counts a core's reported
    /// share as taken, so holdings above it would be counted twice.
    pub fn apply(&mut self, share: u64) {
        self.share = share.max(self.in_use);
        self.refused = 0;
    }

    /// Whether this share equals a fresh one (nothing held, nothing refused, even share).
    pub fn is_idle(&self) -> bool {
        self.in_use == 0 && self.refused == 0 && self.share == self.even
    }
}

/// Core `core`'s even share of `global` among `cores`.
fn even_share(global: u64, cores: usize, core: usize) -> u64 {
    let n = cores.max(1) as u64;
    global / n + u64::from((core as u64) < global % n)
}

/// Divides a global cap among cores (see the module docs): one share per usage, in order.
/// Each core's target is what it holds plus part of the cap nobody holds (half evenly,
/// half by refusals); a core above its target shrinks to it now, a core below grows only
/// out of the part of the cap that no reported share covers. With nothing held, nothing
/// refused and the even split in place, the even split comes back. Pure.
pub fn rebalance_caps(global_max: u64, usages: &[CapUsage]) -> Vec<u64> {
    let n = usages.len();
    if n == 0 {
        return Vec::new();
    }
    let held: u64 = usages.iter().fold(0, |a, u| a.saturating_add(u.in_use));
    let spare = global_max.saturating_sub(held);
    let refused: u64 = usages.iter().fold(0, |a, u| a.saturating_add(u.refused));
    let cores = n as f64;
    let weights: Vec<f64> = usages
        .iter()
        .map(|u| {
            if refused == 0 {
                1.0 / cores
            } else {
                0.5 / cores + 0.5 * u.refused as f64 / refused as f64
            }
        })
        .collect();
    let targets: Vec<u64> = usages
        .iter()
        .zip(largest_remainder(spare, &weights))
        .map(|(u, part)| u.in_use.saturating_add(part))
        .collect();
    // Growth comes only out of room no reported share covers.
    let allocated: u64 = usages
        .iter()
        .fold(0, |a, u| a.saturating_add(u.share.max(u.in_use)));
    let unallocated = global_max.saturating_sub(allocated);
    let wants: Vec<u64> = usages
        .iter()
        .zip(&targets)
        .map(|(u, &t)| t.saturating_sub(u.share.max(u.in_use)))
        .collect();
    let wanted: u64 = wants.iter().sum();
    let grows = if wanted <= unallocated {
        wants
    } else {
        let weights: Vec<f64> = wants.iter().map(|&w| w as f64 / wanted as f64).collect();
        largest_remainder(unallocated, &weights)
            .into_iter()
            .zip(&wants)
            .map(|(g, &w)| g.min(w))
            .collect()
    };
    usages
        .iter()
        .zip(targets)
        .zip(grows)
        .map(|((u, target), grow)| {
            let current = u.share.max(u.in_use);
            if target <= current {
                target
            } else {
                current + grow
            }
        })
        .collect()
}

/// Splits `total` into whole parts by `weights` (which sum to 1): floors first, then one
/// more each to the largest remainders, ties to the lower index — so the parts add up to
/// `total` and an even split comes out as [`even_share`].
fn largest_remainder(total: u64, weights: &[f64]) -> Vec<u64> {
    let ideal: Vec<f64> = weights.iter().map(|w| total as f64 * w).collect();
    let mut parts: Vec<u64> = ideal.iter().map(|x| x.floor() as u64).collect();
    let given: u64 = parts.iter().sum();
    let mut order: Vec<usize> = (0..ideal.len()).collect();
    order.sort_by(|&a, &b| {
        let fa = ideal.get(a).map_or(0.0, |x| x - x.floor());
        let fb = ideal.get(b).map_or(0.0, |x| x - x.floor());
        fb.total_cmp(&fa).then(a.cmp(&b))
    });
    let missing = usize::try_from(total.saturating_sub(given)).unwrap_or(usize::MAX);
    for &i in order.iter().cycle().take(missing) {
        if let Some(p) = parts.get_mut(i) {
            *p += 1;
        }
    }
    parts
}

/// Which cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CapKey {
    /// All client connections.
    Connections,
    /// Connections from one client IP (canonical form).
    ClientIp(IpAddr),
    /// One tenant's requests in flight.
    Tenant(TenantId),
    /// Requests in flight to one node.
    Node {
        /// Index into `Config::pools`.
        pool: usize,
        /// Index into that pool's `nodes`.
        node: usize,
    },
}

/// One core's report on one cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapReport {
    /// Which cap.
    pub key: CapKey,
    /// The cap across all cores.
    pub global_max: u64,
    /// This core's usage.
    pub usage: CapUsage,
}

/// The coordinator's answer to one core on one cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapGrant {
    /// Which cap.
    pub key: CapKey,
    /// The core's new share.
    pub share: u64,
}

/// One core's caps for a config epoch.
#[derive(Debug, Clone)]
pub struct Caps {
    cores: usize,
    core: usize,
    connections: CapShare,
    client_ip_max: Option<u64>,
    /// Only client IPs with a connection or a non-even share; bounded.
    client_ips: BTreeMap<IpAddr, CapShare>,
    client_ips_max: usize,
    tenants: Vec<Option<CapShare>>,
    nodes: Vec<Vec<Option<CapShare>>>,
}

impl Caps {
    /// Core `core`'s caps (of `cores` shards) for `config`, at even shares.
    pub fn new(config: &Config, cores: usize, core: usize) -> Self {
        let cores = cores.max(1);
        let limits = &config.limits;
        let node_max = limits.node_inflight_max.map(u64::from);
        Caps {
            cores,
            core,
            connections: CapShare::new(limits.connections_max as u64, cores, core),
            client_ip_max: limits.client_ip_connections_max.map(u64::from),
            client_ips: BTreeMap::new(),
            client_ips_max: limits.table_entries_max,
            tenants: config
                .tenants
                .iter()
                .map(|t| {
                    t.inflight_max
                        .map(|m| CapShare::new(u64::from(m), cores, core))
                })
                .collect(),
            nodes: config
                .pools
                .iter()
                .map(|p| {
                    p.nodes
                        .iter()
                        .map(|_| node_max.map(|m| CapShare::new(m, cores, core)))
                        .collect()
                })
                .collect(),
        }
    }

    /// A new client connection: admitted by the global cap and its IP's cap, or refused
    /// (close it at once — this is the cheap, early refusal). A full client-IP table
    /// admits untracked rather than refusing everyone new.
    pub fn connect(&mut self, client_ip: IpAddr) -> Result<(), RejectReason> {
        if !self.connections.try_acquire() {
            return Err(RejectReason::Cap(CapScope::Connections));
        }
        let Some(max) = self.client_ip_max else {
            return Ok(());
        };
        let ip = client_ip.to_canonical();
        if !self.client_ips.contains_key(&ip) && self.client_ips.len() >= self.client_ips_max {
            return Ok(());
        }
        let (cores, core) = (self.cores, self.core);
        let entry = self
            .client_ips
            .entry(ip)
            .or_insert_with(|| CapShare::new(max, cores, core));
        if entry.try_acquire() {
            Ok(())
        } else {
            self.connections.release();
            Err(RejectReason::Cap(CapScope::ClientIpConnections))
        }
    }

    /// A client connection closed (one admitted by [`Caps::connect`]).
    pub fn disconnect(&mut self, client_ip: IpAddr) {
        self.connections.release();
        let ip = client_ip.to_canonical();
        if let Some(entry) = self.client_ips.get_mut(&ip) {
            entry.release();
            if entry.is_idle() {
                self.client_ips.remove(&ip);
            }
        }
    }

    /// Takes over the client connections that `old` (this core's caps of the previous
    /// config epoch) holds: connections outlive a reload, so the new caps must count
    /// them — or a reload would let the caps be exceeded — and release them at close.
    pub fn carry_connections(&mut self, old: &Caps) {
        self.connections.in_use = old.connections.in_use;
        let Some(max) = self.client_ip_max else {
            return;
        };
        let (cores, core) = (self.cores, self.core);
        for (ip, held) in old.client_ips.iter().filter(|(_, c)| c.in_use > 0) {
            if self.client_ips.len() >= self.client_ips_max {
                break;
            }
            let entry = self
                .client_ips
                .entry(*ip)
                .or_insert_with(|| CapShare::new(max, cores, core));
            entry.in_use = held.in_use;
        }
    }

    /// A request of `tenant` starts: admitted by the tenant's in-flight cap, or refused
    /// (queue it or answer `SlowDown`).
    pub fn start_request(&mut self, tenant: TenantId) -> Result<(), RejectReason> {
        match self.tenants.get_mut(tenant.0).and_then(Option::as_mut) {
            Some(cap) => acquired(cap.try_acquire(), CapScope::TenantInflight),
            None => Ok(()),
        }
    }

    /// A request of `tenant` admitted by [`Caps::start_request`] ended.
    pub fn end_request(&mut self, tenant: TenantId) {
        if let Some(cap) = self.tenants.get_mut(tenant.0).and_then(Option::as_mut) {
            cap.release();
        }
    }

    /// A request to node `node` of pool `pool` is about to be sent: admitted by the
    /// node's in-flight cap, or refused (pick another node, or wait).
    pub fn start_node(&mut self, pool: usize, node: usize) -> Result<(), RejectReason> {
        match self.node_cap(pool, node) {
            Some(cap) => acquired(cap.try_acquire(), CapScope::NodeInflight),
            None => Ok(()),
        }
    }

    /// A request admitted by [`Caps::start_node`] finished with that node.
    pub fn end_node(&mut self, pool: usize, node: usize) {
        if let Some(cap) = self.node_cap(pool, node) {
            cap.release();
        }
    }

    /// Sizes the per-node caps for `counts[pool]` nodes per pool, each at an even share
    /// of `node_inflight_max`: a node name is as many nodes as it has addresses, which
    /// the config alone does not know.
    pub fn size_nodes(&mut self, counts: &[usize], node_inflight_max: Option<u32>) {
        let (cores, core) = (self.cores, self.core);
        let node_max = node_inflight_max.map(u64::from);
        self.nodes = counts
            .iter()
            .map(|&n| {
                (0..n)
                    .map(|_| node_max.map(|m| CapShare::new(m, cores, core)))
                    .collect()
            })
            .collect();
    }

    /// Whether node `node` of pool `pool` has room on this core (for the balancer's
    /// eligibility test, without taking it).
    pub fn node_has_room(&self, pool: usize, node: usize) -> bool {
        self.nodes
            .get(pool)
            .and_then(|p| p.get(node))
            .and_then(Option::as_ref)
            .is_none_or(|cap| cap.in_use() < cap.share())
    }

    /// Client connections held on this core.
    pub fn connections(&self) -> u64 {
        self.connections.in_use()
    }

    /// This core's report: every cap that is not simply idle.
    pub fn usage(&self) -> Vec<CapReport> {
        let mut out = Vec::new();
        let mut push = |key: CapKey, cap: &CapShare| {
            if !cap.is_idle() {
                out.push(CapReport {
                    key,
                    global_max: cap.global_max(),
                    usage: cap.report(),
                });
            }
        };
        push(CapKey::Connections, &self.connections);
        for (ip, cap) in &self.client_ips {
            push(CapKey::ClientIp(*ip), cap);
        }
        for (i, cap) in self.tenants.iter().enumerate() {
            if let Some(cap) = cap {
                push(CapKey::Tenant(TenantId(i)), cap);
            }
        }
        for (pool, nodes) in self.nodes.iter().enumerate() {
            for (node, cap) in nodes.iter().enumerate() {
                if let Some(cap) = cap {
                    push(CapKey::Node { pool, node }, cap);
                }
            }
        }
        out
    }

    /// Takes the coordinator's shares. A client IP this core has no entry for gets one
    /// (room permitting), so that the shares keep adding up to the cap.
    pub fn apply(&mut self, grants: &[CapGrant]) {
        for g in grants {
            match g.key {
                CapKey::Connections => self.connections.apply(g.share),
                CapKey::ClientIp(ip) => {
                    let Some(max) = self.client_ip_max else {
                        continue;
                    };
                    let (cores, core) = (self.cores, self.core);
                    if !self.client_ips.contains_key(&ip)
                        && self.client_ips.len() >= self.client_ips_max
                    {
                        continue;
                    }
                    let entry = self
                        .client_ips
                        .entry(ip)
                        .or_insert_with(|| CapShare::new(max, cores, core));
                    entry.apply(g.share);
                    if entry.is_idle() {
                        self.client_ips.remove(&ip);
                    }
                }
                CapKey::Tenant(t) => {
                    if let Some(cap) = self.tenants.get_mut(t.0).and_then(Option::as_mut) {
                        cap.apply(g.share);
                    }
                }
                CapKey::Node { pool, node } => {
                    if let Some(cap) = self.node_cap(pool, node) {
                        cap.apply(g.share);
                    }
                }
            }
        }
    }

    fn node_cap(&mut self, pool: usize, node: usize) -> Option<&mut CapShare> {
        self.nodes
            .get_mut(pool)
            .and_then(|p| p.get_mut(node))
            .and_then(Option::as_mut)
    }
}

/// `Ok` if acquired, else the refusal of `scope`.
fn acquired(ok: bool, scope: CapScope) -> Result<(), RejectReason> {
    if ok {
        Ok(())
    } else {
        Err(RejectReason::Cap(scope))
    }
}

/// The coordinator's side for caps: every core's [`Caps::usage`] (indexed by core) →
/// every core's grants. A core that did not report a cap is taken as idle at its even
/// share (which is what an unreported entry is). Pure.
pub fn rebalance_cap_keys(reports: &[Vec<CapReport>]) -> Vec<Vec<CapGrant>> {
    let n = reports.len();
    let mut caps: BTreeMap<CapKey, (u64, Vec<CapUsage>)> = BTreeMap::new();
    for (core, report) in reports.iter().enumerate() {
        for r in report {
            let entry = caps.entry(r.key).or_insert_with(|| {
                let idle = (0..n)
                    .map(|c| CapUsage {
                        in_use: 0,
                        refused: 0,
                        share: even_share(r.global_max, n, c),
                    })
                    .collect();
                (r.global_max, idle)
            });
            if let Some(slot) = entry.1.get_mut(core) {
                *slot = r.usage;
            }
        }
    }
    let mut out: Vec<Vec<CapGrant>> = vec![Vec::new(); n];
    for (key, (global_max, usages)) in caps {
        for (grants, share) in out.iter_mut().zip(rebalance_caps(global_max, &usages)) {
            grants.push(CapGrant { key, share });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn u(in_use: u64, refused: u64, share: u64) -> CapUsage {
        CapUsage {
            in_use,
            refused,
            share,
        }
    }

    /// Every core reports, the coordinator answers, every core applies.
    fn round(global: u64, caps: &mut [CapShare]) -> Vec<u64> {
        let usages: Vec<CapUsage> = caps.iter().map(CapShare::report).collect();
        let shares = rebalance_caps(global, &usages);
        for (cap, &s) in caps.iter_mut().zip(&shares) {
            cap.apply(s);
        }
        shares
    }

    #[test]
    fn even_split_adds_up() {
        let shares: Vec<u64> = (0..4).map(|c| even_share(10, 4, c)).collect();
        assert_eq!(shares, [3, 3, 2, 2]);
        let idle: Vec<CapUsage> = shares.iter().map(|&s| u(0, 0, s)).collect();
        assert_eq!(rebalance_caps(10, &idle), shares);
        assert_eq!(even_share(5, 0, 0), 5);
    }

    #[test]
    fn room_moves_to_the_core_that_refused() {
        // Tenant cap 4 on 4 cores, all requests on core 0.
        let mut caps: Vec<CapShare> = (0..4).map(|c| CapShare::new(4, 4, c)).collect();
        let mut shares = Vec::new();
        for _ in 0..10 {
            for _ in 0..4 {
                let _ = caps[0].try_acquire();
            }
            shares = round(4, &mut caps);
        }
        assert_eq!(caps[0].in_use(), 4, "{shares:?}");
        assert_eq!(shares.iter().sum::<u64>(), 4);
    }

    #[test]
    fn over_the_cap_everyone_keeps_what_it_holds() {
        assert_eq!(rebalance_caps(4, &[u(3, 0, 3), u(3, 5, 3)]), [3, 3]);
    }

    #[test]
    fn room_moves_in_two_phases() {
        // Core 0 has all the room and uses none; core 1 refuses.
        let shares = rebalance_caps(8, &[u(0, 0, 8), u(0, 9, 0)]);
        // Targets: a quarter of the room each evenly, the other half to core 1.
        assert_eq!(
            shares,
            [2, 0],
            "shrink first; nothing unallocated to grow from yet"
        );
        let shares = rebalance_caps(8, &[u(0, 0, 2), u(0, 9, 0)]);
        assert_eq!(shares, [2, 6]);
    }

    proptest! {
        /// Shares never add up to more than the cap (unless cores already hold more),
        /// and never take away what a core holds.
        #[test]
        fn shares_stay_within_the_cap_and_cover_holdings(
            global in 0u64..10_000,
            usages in proptest::collection::vec((0u64..3_000, 0u64..100, 0u64..3_000), 1..32),
        ) {
            let usages: Vec<CapUsage> =
                usages.into_iter().map(|(a, b, s)| u(a, b, s.max(a))).collect();
            let shares = rebalance_caps(global, &usages);
            let before: u64 = usages.iter().map(|u| u.share).sum();
            prop_assert!(shares.iter().sum::<u64>() <= global.max(before));
            for (s, u) in shares.iter().zip(&usages) {
                prop_assert!(*s >= u.in_use);
            }
        }

        /// However units are acquired and released across cores, with reports and
        /// grants crossing in flight, no more than the cap is ever held in total; and
        /// once demand settles, a core that wants the whole cap gets it.
        #[test]
        fn never_more_than_the_cap_in_total(
            global in 1u64..64,
            ops in proptest::collection::vec((0usize..4, 0u8..4), 1..400),
        ) {
            let mut caps: Vec<CapShare> = (0..4).map(|c| CapShare::new(global, 4, c)).collect();
            let mut in_flight: Option<Vec<u64>> = None;
            for (core, op) in ops {
                match op {
                    0 => { let _ = caps[core].try_acquire(); }
                    1 => caps[core].release(),
                    // The coordinator answers a report taken now...
                    2 => {
                        let usages: Vec<CapUsage> = caps.iter().map(CapShare::report).collect();
                        in_flight = Some(rebalance_caps(global, &usages));
                    }
                    // ...and the answer lands later, after more acquires.
                    _ => if let Some(shares) = in_flight.take() {
                        for (cap, s) in caps.iter_mut().zip(shares) {
                            cap.apply(s);
                        }
                    },
                }
                let total: u64 = caps.iter().map(CapShare::in_use).sum();
                prop_assert!(total <= global, "{total} > {global}");
            }
            for cap in caps.iter_mut() {
                while cap.in_use() > 0 {
                    cap.release();
                }
            }
            for _ in 0..20 {
                while caps[3].try_acquire() {}
                round(global, &mut caps);
            }
            prop_assert_eq!(caps[3].in_use(), global);
        }
    }
}
