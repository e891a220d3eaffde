//! The validated shape of who may use how much: `[[tenant]]`, `[[class]]`, `[[rule]]`,
//! `[defaults]` and `[limits]`.
//!
//! These are plain data. `crate::classify` turns a request into a tenant, class, rule and
//! pool chain with them; `crate::limits` and `crate::qos` build per-core runtime state
//! (token buckets, caps, class queues) from them. Every rate here is *global* — across
//! all cores — and the per-core split is the limiter's business.

use std::net::IpAddr;
use std::time::Duration;

use super::auth::PoolCredentials;
use crate::route::{BucketGlob, Cidr, OpClass};

/// Index of a tenant in [`super::Config::tenants`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(pub usize);

/// Index of a QoS class in [`super::Config::classes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClassId(pub usize);

/// Token-bucket limits on one scope (a tenant, a class, a rule, each client IP, each
/// bucket). `None` = not limited. Rates are across all cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests admitted per second.
    pub requests_per_sec: Option<u64>,
    /// Request body bytes (client → storage) per second.
    pub upload_bytes_per_sec: Option<u64>,
    /// Response body bytes (storage → client) per second.
    pub download_bytes_per_sec: Option<u64>,
    /// How much unused allowance a bucket may save up, as time at the full rate: the
    /// bucket holds `rate × burst` tokens.
    pub burst: Duration,
}

impl RateLimit {
    /// No limit at all, with `burst` for any limit added later.
    pub const fn unlimited(burst: Duration) -> Self {
        RateLimit {
            requests_per_sec: None,
            upload_bytes_per_sec: None,
            download_bytes_per_sec: None,
            burst,
        }
    }

    /// Whether no rate is set.
    pub fn is_unlimited(&self) -> bool {
        self.requests_per_sec.is_none()
            && self.upload_bytes_per_sec.is_none()
            && self.download_bytes_per_sec.is_none()
    }
}

/// `[[tenant]]`: a set of access keys that share limits and a class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Unique name (a metric label).
    pub name: String,
    /// SigV4/SigV2 access key ids that identify this tenant; unique across tenants.
    pub access_keys: Vec<String>,
    /// Names (a DNS name of a verified TLS client certificate, `[tls] client_ca`) that
    /// identify this tenant; unique across tenants. A verified certificate outranks the
    /// request's access key, which anyone can write.
    pub client_names: Vec<String>,
    /// Buckets the tenant may address (globs); `None` = any. Others are refused at the
    /// edge with `AccessDenied`.
    pub buckets: Option<Vec<BucketGlob>>,
    /// Pools the tenant's requests may be served by (indices into `Config::pools`);
    /// `None` = any. A route's chain is cut to these; nothing left = `AccessDenied`.
    pub pools: Option<Vec<usize>>,
    /// The tenant's QoS class, unless a rule says otherwise; `None` = the default class.
    pub class: Option<ClassId>,
    /// The tenant's rates (all its requests together, across cores).
    pub rate: RateLimit,
    /// Most of the tenant's requests in flight at once, across cores: in-flight requests,
    /// not connections, since a connection has no tenant until a request arrives and keys
    /// are not secrets (docs/design.md, "Protecting the storage").
    pub inflight_max: Option<u32>,
    /// (pool index, identity): the tenant's own credentials for those pools, used to
    /// re-sign its requests there instead of the pool's `credentials`.
    pub pool_credentials: Vec<(usize, PoolCredentials)>,
}

/// `[[class]]`: a QoS class — a share of upstream concurrency and bandwidth when they are
/// contended (admission weights, not CPU shares: what the storage runs short of is
/// concurrency and bandwidth; docs/design.md, "Protecting the storage") and a waiting room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    /// Unique name (a metric label).
    pub name: String,
    /// Share under contention: classes are served in proportion to their weights.
    pub weight: u32,
    /// Waiting requests of this class go ahead of other classes' while the class has not
    /// used more than its weighted share.
    pub latency_sensitive: bool,
    /// Most requests of this class waiting per core; beyond it, S3 `SlowDown`.
    pub queue_max: usize,
    /// Longest a request of this class may wait (for tokens or a slot) before S3
    /// `SlowDown`.
    pub queue_timeout: Duration,
    /// The class's rates (all its requests together, across cores).
    pub rate: RateLimit,
}

/// `[[rule]]`: conditions on a request → where it goes, its class and extra limits. Rules
/// are tried in order; the first whose conditions all hold decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Only this tenant's requests; `None` = any tenant.
    pub tenant: Option<TenantId>,
    /// Only requests naming a bucket that matches; `None` = any request, with or without
    /// a bucket.
    pub bucket: Option<BucketGlob>,
    /// Only these operation classes; empty = any.
    pub ops: Vec<OpClass>,
    /// Only clients in one of these blocks; empty = any client.
    pub client_cidrs: Vec<Cidr>,
    /// The pool chain (indices into [`super::Config::pools`], by priority); `None` =
    /// the `[[route]]` table decides.
    pub pools: Option<Vec<usize>>,
    /// The class; `None` = the tenant's class.
    pub class: Option<ClassId>,
    /// Rates shared by every request this rule decides (across tenants and cores).
    pub rate: RateLimit,
    /// Timeouts that override the route's and `[upstream]`'s for the requests this
    /// rule decides.
    pub timeouts: super::RouteTimeouts,
}

impl Rule {
    /// Whether a request with these properties meets every condition of the rule.
    pub fn matches(
        &self,
        tenant: TenantId,
        bucket: Option<&str>,
        op: OpClass,
        client_ip: IpAddr,
    ) -> bool {
        self.tenant.is_none_or(|t| t == tenant)
            && self
                .bucket
                .as_ref()
                .is_none_or(|glob| bucket.is_some_and(|b| glob.matches(b)))
            && (self.ops.is_empty() || self.ops.contains(&op))
            && (self.client_cidrs.is_empty()
                || self.client_cidrs.iter().any(|c| c.contains(client_ip)))
    }
}

/// `[limits]`: caps and per-key limits that are not tied to a tenant, and how the
/// per-core shares of every limit are kept in balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most client connections, across cores (also `http.connections_max`, the older
    /// spelling; both fields always hold the same value).
    pub connections_max: usize,
    /// Most connections from one client IP, across cores.
    pub client_ip_connections_max: Option<u32>,
    /// Rates for each client IP separately.
    pub client_ip_rate: RateLimit,
    /// Rates for each bucket separately (whoever asks).
    pub bucket_rate: RateLimit,
    /// Most requests in flight to one storage node, across cores (a hard ceiling; the
    /// AIMD limit of `[upstream]` moves below it).
    pub node_inflight_max: Option<u32>,
    /// How often the cores' shares of every limit are rebalanced.
    pub rebalance_interval: Duration,
    /// Most entries per core in each keyed table (client IPs, buckets); the least
    /// recently used entry goes first.
    pub table_entries_max: usize,
    /// Burst of every limit that does not set its own.
    pub burst: Duration,
    /// Largest body quantum one byte-bucket grant lets move.
    pub quantum_bytes_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections_max: 10_000,
            client_ip_connections_max: None,
            client_ip_rate: RateLimit::unlimited(BURST_DEFAULT),
            bucket_rate: RateLimit::unlimited(BURST_DEFAULT),
            node_inflight_max: None,
            rebalance_interval: Duration::from_millis(5),
            table_entries_max: 65_536,
            burst: BURST_DEFAULT,
            quantum_bytes_max: 1 << 20,
        }
    }
}

/// Default burst: short, so a capped transfer measured over seconds sees its rate, not
/// its rate plus a saved-up second.
pub(crate) const BURST_DEFAULT: Duration = Duration::from_millis(100);
/// Default class weight.
pub(crate) const CLASS_WEIGHT_DEFAULT: u32 = 1;
/// Default waiting requests per class and core.
pub(crate) const CLASS_QUEUE_MAX_DEFAULT: usize = 1024;
/// Default longest wait: long enough to smooth bursts, short enough that an SDK's own
/// timeout (often 60s) never fires first.
pub(crate) const CLASS_QUEUE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(1);
/// Name of the tenant requests with unknown keys fall into, when none is configured.
pub const DEFAULT_TENANT_NAME: &str = "default";
/// Name of the class used when none is configured.
pub const DEFAULT_CLASS_NAME: &str = "default";

impl Class {
    /// The class every request is in when no `[[class]]` is configured.
    pub fn implicit_default() -> Self {
        Class {
            name: DEFAULT_CLASS_NAME.to_owned(),
            weight: CLASS_WEIGHT_DEFAULT,
            latency_sensitive: false,
            queue_max: CLASS_QUEUE_MAX_DEFAULT,
            queue_timeout: CLASS_QUEUE_TIMEOUT_DEFAULT,
            rate: RateLimit::unlimited(BURST_DEFAULT),
        }
    }
}

impl Tenant {
    /// The unlimited tenant unknown keys fall into when none is marked default.
    pub fn implicit_default(burst: Duration) -> Self {
        Tenant {
            name: DEFAULT_TENANT_NAME.to_owned(),
            access_keys: Vec::new(),
            client_names: Vec::new(),
            buckets: None,
            pools: None,
            class: None,
            rate: RateLimit::unlimited(burst),
            inflight_max: None,
            pool_credentials: Vec::new(),
        }
    }
}
