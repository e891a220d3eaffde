//! One core's rate limiter: every token bucket that applies to a request, and the
//! usage/grant exchange that keeps each one's per-core share in balance.
//!
//! Driven by the appliance's shard: [`Limiter::admit`] once per request after
//! classification, [`Limiter::bytes`] before each body quantum of a shaped transfer, and
//! every `rebalance_interval` [`Limiter::usage`] → (coordinating core) [`rebalance_keys`]
//! → [`Limiter::apply`].
//!
//! A request passes the request buckets of its tenant, class, rule, client IP and bucket
//! (those that have a limit) together: it is admitted only if every one of them admits,
//! and it spends a token in each. When one is dry the request waits — its tokens are
//! reserved at once, so it keeps its place — unless the wait would exceed its class's
//! `queue_timeout`; then it is refused (S3 `SlowDown` with `Retry-After`) and spends
//! nothing.
//!
//! Own and shared limits differ in one way. The tenant's and the client IP's limits are
//! the request's *own*: it reserves there first, and learns when it may go. The class,
//! rule and bucket limits are *shared* between tenants: the request is charged there for
//! the time it will actually go, so a burst waiting for its own tenant's tokens does not
//! book a shared limit ahead of tenants that are within theirs. A tenant over its own
//! limit thus queues behind the others at every shared limit. Likewise, only the buckets
//! that refused count a refusal as demand, so a flood held back by its own tenant limit
//! does not pull shared limits towards its core.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::share::{rebalance, CoreShare, Grant, Usage};
use super::table::Table;
use super::{Dir, RejectReason, Scope};
use crate::classify::Classified;
use crate::config::{ClassId, Config, RateLimit, TenantId};

/// A body quantum is about this much time at the core's share of the tightest byte
/// limit: small enough that a capped transfer moves smoothly, not in bursts and stalls.
const QUANTUM_TIME: Duration = Duration::from_millis(10);
/// Longest wait a body quantum is told: a waiting transfer asks again at least this
/// often, so its core keeps showing demand and gets its share within a few rebalances
/// (a transfer silent until the floor share's long wait ended would not).
const BYTE_WAIT_MAX: Duration = QUANTUM_TIME;
/// Smallest body quantum (one page): smaller splices cost more than they smooth.
const QUANTUM_BYTES_MIN: u64 = 4 << 10;
/// Shortest `Retry-After`: the header has whole seconds, and 0 invites an instant retry.
const RETRY_AFTER_MIN: Duration = Duration::from_secs(1);

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Measure {
    /// Requests admitted.
    Requests,
    /// Request body bytes, client → storage.
    UploadBytes,
    /// Response body bytes, storage → client.
    DownloadBytes,
}

impl Measure {
    /// All measures, in the order buckets are stored.
    const ALL: [Measure; 3] = [
        Measure::Requests,
        Measure::UploadBytes,
        Measure::DownloadBytes,
    ];

    /// Slot in a [`KeyBuckets`].
    fn slot(self) -> usize {
        match self {
            Measure::Requests => 0,
            Measure::UploadBytes => 1,
            Measure::DownloadBytes => 2,
        }
    }
}

impl Dir {
    /// The byte measure of this direction.
    pub fn measure(self) -> Measure {
        match self {
            Dir::Up => Measure::UploadBytes,
            Dir::Down => Measure::DownloadBytes,
        }
    }
}

/// Whose limit: the key of a bucket within its scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LimitKey {
    /// A tenant's own limit.
    Tenant(TenantId),
    /// A class's limit (all its requests together).
    Class(ClassId),
    /// A rule's limit (all requests it decides together), by rule index.
    Rule(usize),
    /// One client IP's limit (canonical form).
    ClientIp(IpAddr),
    /// One bucket's limit.
    Bucket(String),
}

impl LimitKey {
    /// The scope this key belongs to (a metric label).
    pub fn scope(&self) -> Scope {
        match self {
            LimitKey::Tenant(_) => Scope::Tenant,
            LimitKey::Class(_) => Scope::Class,
            LimitKey::Rule(_) => Scope::Rule,
            LimitKey::ClientIp(_) => Scope::ClientIp,
            LimitKey::Bucket(_) => Scope::Bucket,
        }
    }
}

/// One bucket of one key: the unit the cores' shares are balanced by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LimitId {
    /// Whose limit.
    pub key: LimitKey,
    /// What it counts.
    pub measure: Measure,
}

/// One core's report on one limit, for the coordinator.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyUsage {
    /// Which limit.
    pub id: LimitId,
    /// The limit across all cores (as this core's config epoch has it).
    pub global_rate_per_sec: f64,
    /// This core's demand and balance.
    pub usage: Usage,
}

/// The coordinator's answer to one core on one limit.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyGrant {
    /// Which limit.
    pub id: LimitId,
    /// The core's new share.
    pub grant: Grant,
}

/// The admission decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Forward now.
    Go,
    /// Tokens are reserved: hold the request (in `class`'s queue) and forward it at
    /// `until` without asking again. `until` is within the class's `queue_timeout`. If
    /// the request is dropped before then, [`Limiter::refund_request`] returns its tokens.
    Wait {
        /// When the request may go.
        until: Instant,
        /// The class whose queue it waits in.
        class: ClassId,
    },
    /// Refuse: answer S3 `SlowDown` (503) with `Retry-After`. Nothing was spent.
    Reject {
        /// Which limit refused.
        reason: RejectReason,
        /// When a retry could be admitted, at least 1s; round up to whole seconds for
        /// the header.
        retry_after: Duration,
    },
}

/// How much of a body may move now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteGrant {
    /// Move up to this many bytes now (at most the bytes wanted; 0 only if 0 were
    /// wanted). Bytes granted but not moved go back with [`Limiter::return_bytes`].
    Go(u64),
    /// Move nothing; ask again after this long (at most 10ms: a waiting transfer keeps
    /// asking, which is how its core shows it needs a bigger share).
    Wait(Duration),
}

/// The requests, upload and download buckets of one key; `None` where not limited.
#[derive(Debug, Clone, PartialEq)]
struct KeyBuckets([Option<CoreShare>; 3]);

impl KeyBuckets {
    /// This core's shares of `rate`'s limits.
    fn new(rate: &RateLimit, cores: usize, now: Instant) -> Self {
        KeyBuckets(Measure::ALL.map(|m| {
            rate_of(rate, m).map(|global| {
                let share = CoreShare::new(global as f64, rate.burst, cores, now);
                // A core must be able to hold one whole request, or a low rate split
                // across many cores would make every request wait.
                if m == Measure::Requests {
                    share.with_burst_tokens_min(1.0, now)
                } else {
                    share
                }
            })
        }))
    }

    fn get(&self, m: Measure) -> Option<&CoreShare> {
        self.0.get(m.slot()).and_then(Option::as_ref)
    }

    fn get_mut(&mut self, m: Measure) -> Option<&mut CoreShare> {
        self.0.get_mut(m.slot()).and_then(Option::as_mut)
    }

    fn is_idle(&self, now: Instant) -> bool {
        self.0.iter().flatten().all(|s| s.is_idle(now))
    }

    /// Appends a report for every non-idle bucket.
    fn report(&self, key: &LimitKey, now: Instant, out: &mut Vec<KeyUsage>) {
        for m in Measure::ALL {
            if let Some(share) = self.get(m).filter(|s| !s.is_idle(now)) {
                out.push(KeyUsage {
                    id: LimitId {
                        key: key.clone(),
                        measure: m,
                    },
                    global_rate_per_sec: share.global_rate_per_sec(),
                    usage: share.report(now),
                });
            }
        }
    }
}

/// The configured global rate of `rate` for a measure.
fn rate_of(rate: &RateLimit, m: Measure) -> Option<u64> {
    match m {
        Measure::Requests => rate.requests_per_sec,
        Measure::UploadBytes => rate.upload_bytes_per_sec,
        Measure::DownloadBytes => rate.download_bytes_per_sec,
    }
}

/// The buckets one request passes, each with the scope it belongs to.
type Picked<'a> = [Option<(Scope, &'a mut CoreShare)>; 5];

/// One core's token buckets for every limit of a config epoch.
#[derive(Debug, Clone)]
pub struct Limiter {
    cores: usize,
    /// Per class.
    queue_timeouts: Vec<Duration>,
    quantum_bytes_max: u64,
    tenants: Vec<KeyBuckets>,
    classes: Vec<KeyBuckets>,
    rules: Vec<KeyBuckets>,
    client_ip_rate: RateLimit,
    bucket_rate: RateLimit,
    client_ips: Table<IpAddr, KeyBuckets>,
    buckets: Table<String, KeyBuckets>,
}

impl Limiter {
    /// This core's limiter for `config`, with every share at `global / cores` and every
    /// bucket full. `cores` is the number of shards (0 counts as 1).
    pub fn new(config: &Config, cores: usize, now: Instant) -> Self {
        let cores = cores.max(1);
        let table_max = config.limits.table_entries_max;
        Limiter {
            cores,
            queue_timeouts: config.classes.iter().map(|c| c.queue_timeout).collect(),
            quantum_bytes_max: config.limits.quantum_bytes_max.max(QUANTUM_BYTES_MIN),
            tenants: config
                .tenants
                .iter()
                .map(|t| KeyBuckets::new(&t.rate, cores, now))
                .collect(),
            classes: config
                .classes
                .iter()
                .map(|c| KeyBuckets::new(&c.rate, cores, now))
                .collect(),
            rules: config
                .rules
                .iter()
                .map(|r| KeyBuckets::new(&r.rate, cores, now))
                .collect(),
            client_ip_rate: config.limits.client_ip_rate,
            bucket_rate: config.limits.bucket_rate,
            client_ips: Table::new(table_max),
            buckets: Table::new(table_max),
        }
    }

    /// Admits, queues or refuses a request (see [`Admit`]). `client_ip` is normally
    /// `c.client_ip`.
    pub fn admit(&mut self, c: &Classified, client_ip: IpAddr, now: Instant) -> Admit {
        let timeout = self
            .queue_timeouts
            .get(c.class.0)
            .copied()
            .unwrap_or(Duration::ZERO);
        let mut picked = self.pick(c, client_ip.to_canonical(), Measure::Requests, now);
        if picked.iter().all(Option::is_none) {
            return Admit::Go;
        }
        // Own limits first: when the request may go as far as they are concerned.
        let mut own_wait = Duration::ZERO;
        let mut worst = (Scope::Tenant, Duration::ZERO);
        for (scope, share) in picked.iter().flatten().filter(|(s, _)| is_own(*s)) {
            let wait = share.reserve_wait(1.0, now);
            if wait > own_wait {
                own_wait = wait;
                worst = (*scope, wait);
            }
        }
        // Then the shared limits, for that time.
        let go = now + own_wait;
        let shared_waits = picked.each_ref().map(|p| match p {
            Some((scope, share)) if !is_own(*scope) => share.reserve_wait_at(1.0, go, now),
            _ => Duration::ZERO,
        });
        for (p, &extra) in picked.iter().zip(&shared_waits) {
            if let Some((scope, _)) = p {
                if own_wait + extra > worst.1 {
                    worst = (*scope, own_wait + extra);
                }
            }
        }
        let (scope, wait) = worst;
        if wait > timeout {
            for (p, &extra) in picked.iter_mut().zip(&shared_waits) {
                if let Some((s, share)) = p {
                    // A shared limit hears of a refusal only from requests within
                    // their own limits: a tenant over its own limit is represented there
                    // by what it is admitted, not by its flood.
                    let refused = if is_own(*s) {
                        share.reserve_wait(1.0, now) > timeout
                    } else {
                        own_wait.is_zero() && extra > timeout
                    };
                    if refused {
                        share.note_refused(1.0, now);
                    }
                }
            }
            return Admit::Reject {
                reason: RejectReason::Rate(scope),
                retry_after: retry_after(wait.saturating_sub(timeout)),
            };
        }
        let until = now + wait;
        for (s, share) in picked.iter_mut().flatten() {
            if is_own(*s) {
                share.charge(1.0, now);
            } else {
                // At `go`, the time its own limits let it go, not at `until`: a charge
                // kept for `until` would be invisible to the next request asking at `go`,
                // and every request waiting on a shared limit alone would get the same
                // slot.
                share.charge_at(1.0, go, now);
            }
        }
        if wait.is_zero() {
            Admit::Go
        } else {
            Admit::Wait {
                until,
                class: c.class,
            }
        }
    }

    /// Returns the tokens of a request admitted with [`Admit::Wait`] that will not be
    /// forwarded after all (client gone, queue full).
    pub fn refund_request(&mut self, c: &Classified, client_ip: IpAddr, now: Instant) {
        let mut picked = self.pick(c, client_ip.to_canonical(), Measure::Requests, now);
        for (_, share) in picked.iter_mut().flatten() {
            share.refund(1.0, now);
        }
    }

    /// Whether any byte limit applies to this request's body in `dir`; when not, the
    /// appliance may relay without asking [`Limiter::bytes`].
    pub fn shapes_bytes(&self, c: &Classified, dir: Dir) -> bool {
        let m = dir.measure();
        let has = |b: Option<&KeyBuckets>| b.and_then(|b| b.get(m)).is_some();
        has(self.tenants.get(c.tenant.0))
            || has(self.classes.get(c.class.0))
            || has(c.rule.and_then(|r| self.rules.get(r)))
            || rate_of(&self.client_ip_rate, m).is_some()
            || (c.bucket.is_some() && rate_of(&self.bucket_rate, m).is_some())
    }

    /// How many body bytes of this request may move now in `dir`, out of `want` still to
    /// move: a quantum (about 10ms at this core's share of the tightest byte limit, at
    /// most `quantum_bytes_max`) or a wait. Unlimited bodies get all of `want`.
    pub fn bytes(&mut self, c: &Classified, dir: Dir, want: u64, now: Instant) -> ByteGrant {
        if want == 0 {
            return ByteGrant::Go(0);
        }
        let quantum_max = self.quantum_bytes_max;
        let mut picked = self.pick(c, c.client_ip, dir.measure(), now);
        let mut limited = false;
        let mut rate_min = f64::INFINITY;
        let mut wait = Duration::ZERO;
        for (_, share) in picked.iter().flatten() {
            limited = true;
            rate_min = rate_min.min(share.rate_per_sec());
            wait = wait.max(share.reserve_wait(0.0, now));
        }
        if !limited {
            return ByteGrant::Go(want);
        }
        let quantum = quantum_bytes(rate_min, quantum_max).min(want);
        if wait.is_zero() {
            for (_, share) in picked.iter_mut().flatten() {
                share.spend(quantum as f64, now);
            }
            ByteGrant::Go(quantum)
        } else {
            // The refusal counts what the transfer wants, not the small quantum of a
            // small share: that is the demand the coordinator should see.
            let wanted = want.min(quantum_max) as f64;
            for (_, share) in picked.iter_mut().flatten() {
                if !share.reserve_wait(0.0, now).is_zero() {
                    share.note_refused(wanted, now);
                }
            }
            ByteGrant::Wait(wait.min(BYTE_WAIT_MAX))
        }
    }

    /// Gives back bytes granted by [`Limiter::bytes`] that did not move.
    pub fn return_bytes(&mut self, c: &Classified, dir: Dir, bytes: u64, now: Instant) {
        let mut picked = self.pick(c, c.client_ip, dir.measure(), now);
        for (_, share) in picked.iter_mut().flatten() {
            share.refund(bytes as f64, now);
        }
    }

    /// This core's report for the coordinator: every limit whose share is not simply
    /// idle. Also forgets client IPs and buckets whose state equals a fresh entry's.
    pub fn usage(&mut self, now: Instant) -> Vec<KeyUsage> {
        let mut out = Vec::new();
        for (i, b) in self.tenants.iter().enumerate() {
            b.report(&LimitKey::Tenant(TenantId(i)), now, &mut out);
        }
        for (i, b) in self.classes.iter().enumerate() {
            b.report(&LimitKey::Class(ClassId(i)), now, &mut out);
        }
        for (i, b) in self.rules.iter().enumerate() {
            b.report(&LimitKey::Rule(i), now, &mut out);
        }
        self.client_ips.retain(|_, b| !b.is_idle(now));
        for (ip, b) in self.client_ips.iter() {
            b.report(&LimitKey::ClientIp(*ip), now, &mut out);
        }
        self.buckets.retain(|_, b| !b.is_idle(now));
        for (name, b) in self.buckets.iter() {
            b.report(&LimitKey::Bucket(name.clone()), now, &mut out);
        }
        out
    }

    /// Takes the coordinator's grants for this core. Grants for client IPs or buckets
    /// this core has no entry for are dropped: a later entry starts at the even share.
    pub fn apply(&mut self, grants: &[KeyGrant], now: Instant) {
        for g in grants {
            let m = g.id.measure;
            let share = match &g.id.key {
                LimitKey::Tenant(t) => self.tenants.get_mut(t.0).and_then(|b| b.get_mut(m)),
                LimitKey::Class(c) => self.classes.get_mut(c.0).and_then(|b| b.get_mut(m)),
                LimitKey::Rule(r) => self.rules.get_mut(*r).and_then(|b| b.get_mut(m)),
                LimitKey::ClientIp(ip) => self.client_ips.get_mut(ip).and_then(|b| b.get_mut(m)),
                LimitKey::Bucket(name) => self
                    .buckets
                    .get_mut(name.as_str())
                    .and_then(|b| b.get_mut(m)),
            };
            if let Some(share) = share {
                share.apply(g.grant, now);
            }
        }
    }

    /// Entries in the client-IP and bucket tables (each bounded by `table_entries_max`).
    pub fn table_entries(&self) -> (usize, usize) {
        (self.client_ips.len(), self.buckets.len())
    }

    /// The buckets of `measure` a request passes, creating client-IP and bucket entries
    /// where those scopes are limited.
    fn pick(&mut self, c: &Classified, ip: IpAddr, measure: Measure, now: Instant) -> Picked<'_> {
        let cores = self.cores;
        let Limiter {
            tenants,
            classes,
            rules,
            client_ip_rate,
            bucket_rate,
            client_ips,
            buckets,
            ..
        } = self;
        let tenant = tenants
            .get_mut(c.tenant.0)
            .and_then(|b| b.get_mut(measure))
            .map(|s| (Scope::Tenant, s));
        let class = classes
            .get_mut(c.class.0)
            .and_then(|b| b.get_mut(measure))
            .map(|s| (Scope::Class, s));
        let rule = match c.rule {
            Some(r) => rules
                .get_mut(r)
                .and_then(|b| b.get_mut(measure))
                .map(|s| (Scope::Rule, s)),
            None => None,
        };
        let ip_share = match rate_of(client_ip_rate, measure) {
            Some(_) => client_ips
                .touch_or_insert_with(&ip, || KeyBuckets::new(client_ip_rate, cores, now))
                .and_then(|b| b.get_mut(measure))
                .map(|s| (Scope::ClientIp, s)),
            None => None,
        };
        let bucket_share = match (c.bucket.as_deref(), rate_of(bucket_rate, measure)) {
            (Some(name), Some(_)) => buckets
                .touch_or_insert_with(name, || KeyBuckets::new(bucket_rate, cores, now))
                .and_then(|b| b.get_mut(measure))
                .map(|s| (Scope::Bucket, s)),
            _ => None,
        };
        [tenant, class, rule, ip_share, bucket_share]
    }
}

/// Whether a scope's limit belongs to the request's own party (tenant, client) rather
/// than being shared between tenants (see the module docs).
fn is_own(scope: Scope) -> bool {
    matches!(scope, Scope::Tenant | Scope::ClientIp)
}

/// The body quantum for a core whose tightest byte share is `rate_per_sec`.
fn quantum_bytes(rate_per_sec: f64, quantum_max: u64) -> u64 {
    let by_rate = rate_per_sec * QUANTUM_TIME.as_secs_f64();
    let by_rate = if by_rate.is_finite() && by_rate > 0.0 {
        by_rate as u64
    } else {
        0
    };
    by_rate.clamp(QUANTUM_BYTES_MIN, quantum_max.max(QUANTUM_BYTES_MIN))
}

/// `Retry-After` for a refusal whose tokens are `beyond` past the queue timeout.
fn retry_after(beyond: Duration) -> Duration {
    let secs = beyond.as_secs() + u64::from(beyond.subsec_nanos() > 0);
    Duration::from_secs(secs).max(RETRY_AFTER_MIN)
}

/// The coordinator's side: every core's [`Limiter::usage`] (indexed by core) → every
/// core's grants (same index), one [`rebalance`] per limit. A core that did not report a
/// limit is taken as idle. Pure; runs on one core every `rebalance_interval`.
pub fn rebalance_keys(reports: &[Vec<KeyUsage>]) -> Vec<Vec<KeyGrant>> {
    let n = reports.len();
    let mut limits: BTreeMap<&LimitId, (f64, Vec<Usage>)> = BTreeMap::new();
    for (core, report) in reports.iter().enumerate() {
        for ku in report {
            let entry = limits
                .entry(&ku.id)
                .or_insert_with(|| (ku.global_rate_per_sec, vec![Usage::IDLE; n]));
            if let Some(slot) = entry.1.get_mut(core) {
                *slot = ku.usage;
            }
        }
    }
    let mut out: Vec<Vec<KeyGrant>> = vec![Vec::new(); n];
    for (id, (global, usages)) in limits {
        for (grants, grant) in out.iter_mut().zip(rebalance(global, &usages)) {
            grants.push(KeyGrant {
                id: id.clone(),
                grant,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quanta_follow_the_rate_within_bounds() {
        assert_eq!(quantum_bytes(1e6, 1 << 20), 10_000);
        assert_eq!(quantum_bytes(1.0, 1 << 20), QUANTUM_BYTES_MIN);
        assert_eq!(quantum_bytes(1e12, 256 << 10), 256 << 10);
        assert_eq!(quantum_bytes(f64::NAN, 256 << 10), QUANTUM_BYTES_MIN);
    }

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        assert_eq!(retry_after(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(
            retry_after(Duration::from_millis(1500)),
            Duration::from_secs(2)
        );
        assert_eq!(retry_after(Duration::from_secs(3)), Duration::from_secs(3));
    }
}
