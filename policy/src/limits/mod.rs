//! Protecting the storage from its clients: token buckets for requests and bytes per
//! tenant, class, rule, client IP and bucket; caps on connections and in-flight requests;
//! and the rebalancing that keeps per-core shares of global limits where the demand is.
//!
//! Shared-nothing (docs/design.md, "Thread-per-core, shared-nothing"): each shard owns one
//! [`Limiter`] and one [`Caps`] and decides alone, with no lock and no shared atomic per
//! request or byte. Every `[limits] rebalance_interval` the cores send their usage to one
//! coordinating core, which runs the pure [`rebalance_keys`] / [`rebalance_cap_keys`] and
//! sends each core its new shares. Shares add up to the global limit, so the global rate
//! holds however `SO_REUSEPORT` places connections (`policy/tests/limits_sim.rs` shows
//! ±5%).
//!
//! A request's way through, as the appliance drives it:
//!
//! 1. accept: [`Caps::connect`] — refused connections are closed at once (cheap, early);
//! 2. classify (`Config::classify`), then [`Caps::start_request`] (tenant in-flight cap);
//! 3. [`Limiter::admit`]: `Go`, `Wait { until }` (tokens reserved; hold the request in its
//!    class queue until then) or `Reject` (S3 `SlowDown` 503 + `Retry-After`);
//! 4. when upstream concurrency is contended, the class queues of `crate::qos` decide who
//!    goes next; past its deadline a request gets `SlowDown`;
//! 5. [`Caps::start_node`] for the picked node; bodies move in quanta from
//!    [`Limiter::bytes`] when [`Limiter::shapes_bytes`];
//! 6. on completion: `end_node`, `end_request`, and at close `disconnect`.
//!
//! Rebalance rounds: the coordinator asks, every core answers with its usage, the
//! coordinator answers every core with its grants, every core applies them — and reports
//! for the next round only after applying, so a round never counts room twice.

mod bucket;
mod caps;
mod limiter;
mod share;
mod table;

#[cfg(test)]
mod tests;

pub use bucket::TokenBucket;
pub use caps::{
    rebalance_cap_keys, rebalance_caps, CapGrant, CapKey, CapReport, CapShare, CapUsage, Caps,
};
pub use limiter::{
    rebalance_keys, Admit, ByteGrant, KeyGrant, KeyUsage, LimitId, LimitKey, Limiter, Measure,
};
pub use share::{rebalance, CoreShare, Grant, Usage};

/// Direction of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Client → storage (a request body: PUT, UploadPart, POST).
    Up,
    /// Storage → client (a response body: GET).
    Down,
}

/// The scope a rate limit belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// A tenant's own limit.
    Tenant,
    /// A class's shared limit.
    Class,
    /// A rule's shared limit.
    Rule,
    /// Each client IP's limit.
    ClientIp,
    /// Each bucket's limit.
    Bucket,
}

/// The scope a concurrency cap belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CapScope {
    /// All client connections.
    Connections,
    /// Connections from one client IP.
    ClientIpConnections,
    /// A tenant's requests in flight.
    TenantInflight,
    /// Requests in flight to one storage node.
    NodeInflight,
}

/// Why weir refused or shed a request or connection; `label()` is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// A rate limit: its tokens would come later than the class's `queue_timeout`.
    Rate(Scope),
    /// A concurrency cap is full.
    Cap(CapScope),
    /// The class queue is full (`queue_max`).
    QueueFull,
    /// The request waited past its deadline (`queue_timeout`).
    QueueTimeout,
}

impl RejectReason {
    /// A short, bounded label: `tenant_rate`, `client_ip_connections`, `queue_full`, ….
    pub fn label(&self) -> &'static str {
        match self {
            RejectReason::Rate(Scope::Tenant) => "tenant_rate",
            RejectReason::Rate(Scope::Class) => "class_rate",
            RejectReason::Rate(Scope::Rule) => "rule_rate",
            RejectReason::Rate(Scope::ClientIp) => "client_ip_rate",
            RejectReason::Rate(Scope::Bucket) => "bucket_rate",
            RejectReason::Cap(CapScope::Connections) => "connections",
            RejectReason::Cap(CapScope::ClientIpConnections) => "client_ip_connections",
            RejectReason::Cap(CapScope::TenantInflight) => "tenant_inflight",
            RejectReason::Cap(CapScope::NodeInflight) => "node_inflight",
            RejectReason::QueueFull => "queue_full",
            RejectReason::QueueTimeout => "queue_timeout",
        }
    }
}
