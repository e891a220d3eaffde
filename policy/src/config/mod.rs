//! The configuration: TOML text → TOML-shaped structs (`raw`) → validated, typed [`Config`].
//!
//! Config flows one way (docs/design.md, "Configuration"). The appliance calls
//! [`Config::from_toml_str`] at start-up, on `weir check-config` and on every reload; a
//! rejected file leaves the running config untouched. Every rejection names the file, the
//! line and the dotted key. The commented reference file is `appliance/examples/weir.toml`.

mod access_log;
mod addr;
mod auth;
mod check;
mod client_address;
mod dns;
mod error;
mod raw;
mod restart;
mod routes;
mod tenancy;
mod tls;
mod validate;
mod validate_tenancy;

pub mod units;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_client_address;
#[cfg(test)]
mod tests_reload;
#[cfg(test)]
mod tests_routes;
#[cfg(test)]
mod tests_targets;
#[cfg(test)]
mod tests_tenancy;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use toml::de::DeTable;

use crate::balance::Algorithm;
pub use crate::health::HealthParams;
use crate::retry::RetryParams;
pub use crate::route::{BucketGlob, BucketNames};
pub use access_log::AccessLogTarget;
pub use addr::{NodeAddr, NodeAddrError};
pub use auth::{
    parse_secrets, Auth, AuthMode, PoolCredentials, Secret, SecretSource, Secrets,
    SECRETS_FILE_BYTES_MAX,
};
pub use client_address::ListenerTrust;
pub use dns::Dns;
pub use error::{ConfigError, KeyPath};
pub use restart::{reload_class, restart_needed, Reload, RELOAD_KEYS};
pub use routes::{RouteTimeouts, Timeouts};
pub use tenancy::{
    Class, ClassId, Limits, RateLimit, Rule, Tenant, TenantId, DEFAULT_CLASS_NAME,
    DEFAULT_TENANT_NAME,
};
pub use tls::{ClientAuth, Tls, TlsCertificate, UpstreamTls};

use error::SpanIndex;
use raw::RawConfig;

/// A validated configuration: every value within its bounds, every reference resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[appliance]`: process-wide settings.
    pub appliance: Appliance,
    /// `[http]`: limits on client connections and requests.
    pub http: Http,
    /// `[upstream]`: timeouts and pooling towards storage nodes.
    pub upstream: Upstream,
    /// `[[pool]]`: at least one; index 0 is the default pool.
    pub pools: Vec<Pool>,
    /// `[[route]]`: tried in order; unmatched requests go to pool 0.
    pub routes: Vec<Route>,
    /// `[[tenant]]` in the order written, then — when none is the default — an implicit,
    /// unlimited tenant named `default`.
    pub tenants: Vec<Tenant>,
    /// The tenant of requests whose access key is unknown or absent (`[defaults] tenant`,
    /// the tenant marked `default = true`, one named `default`, or the implicit one).
    pub default_tenant: TenantId,
    /// `[[class]]` in the order written, or one implicit class named `default`; never
    /// empty.
    pub classes: Vec<Class>,
    /// The class of requests that neither a rule nor their tenant puts in one
    /// (`[defaults] class`, else the first class).
    pub default_class: ClassId,
    /// `[[rule]]`: tried in order before `[[route]]`; the first match decides.
    pub rules: Vec<Rule>,
    /// `[limits]`: caps, per-client-IP and per-bucket rates, rebalancing.
    pub limits: Limits,
    /// `[auth]`: signature verification at the edge.
    pub auth: Auth,
    /// `[tls]`: HTTPS listeners; `None` = plain HTTP only.
    pub tls: Option<Tls>,
    /// `[[client_address]]`: which listeners believe which proxies about the client
    /// (docs/client-address.md); a listener in none believes only its TCP peer.
    pub client_address: Vec<ListenerTrust>,
    /// `[dns]`: how node names are resolved (docs/config.md, "DNS").
    pub dns: Dns,
    /// Access key id → tenant, for classification (built from the tenants' keys).
    access_keys: HashMap<String, TenantId>,
}

/// The chain of requests no route matches: pool 0 alone.
const DEFAULT_CHAIN: &[usize] = &[0];

/// `[appliance]`: process-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appliance {
    /// Number of shards (one pinned executor each); 0 = all online CPUs.
    pub cores: usize,
    /// Client listen addresses, at least one, no duplicates; every core binds each one
    /// with `SO_REUSEPORT`.
    pub listen: Vec<SocketAddr>,
    /// Prometheus metrics listener, if any.
    pub metrics: Option<SocketAddr>,
    /// How bodies are relayed.
    pub body_path: BodyPath,
    /// Size of each relay pipe (`F_SETPIPE_SZ`); bigger pipes mean fewer `splice` calls.
    pub pipe_bytes: usize,
    /// Host suffixes for virtual-host style addressing (`bucket.<suffix>`), lower-case,
    /// without a leading dot; empty = path-style only.
    pub virtual_host_suffixes: Vec<String>,
    /// Which bucket names path-style requests may use; a request naming any other is
    /// refused (docs/identity.md, "Request targets").
    pub bucket_names: BucketNames,
    /// Admin listener (`/healthz`, `/readyz`, `/nodes`, `/flows`, `POST /reload`), if any;
    /// a non-loopback address requires `admin_token`.
    pub admin: Option<SocketAddr>,
    /// Bearer token the admin endpoints require (`Authorization: Bearer <token>`).
    pub admin_token: Option<String>,
    /// Access log target ([`AccessLogTarget`]): `"stdout"`, an absolute file path
    /// (appended), or `syslog:udp://IP:PORT` / `syslog:unix:/PATH`; `None` = off.
    pub access_log: Option<String>,
    /// Access-log lines buffered before new ones are dropped (and counted).
    pub access_log_lines_max: usize,
    /// How long SIGTERM waits for requests in flight before exiting anyway.
    pub drain_timeout: Duration,
    /// How long SIGTERM keeps serving with `/readyz` failing before it stops accepting,
    /// so that balancers see the drain first (docs/operations.md, "Stopping").
    pub drain_grace: Duration,
    /// Caps and deadlines of the control listeners (`metrics`, `admin`).
    pub control: Control,
    /// Unix socket (absolute path) on which this process hands its listening sockets to a
    /// new weir started with `--upgrade-from` (docs/operations.md, "Upgrade without
    /// downtime"); `None` = no upgrade socket.
    pub upgrade_socket: Option<String>,
}

/// The `control_*` keys of `[appliance]`: what one control listener (the metrics or the
/// admin port) lets its clients hold, each listener counted on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Control {
    /// Most connections open at once on the listener.
    pub connections_max: usize,
    /// Most connections open at once from one client address (at most `connections_max`).
    pub client_ip_connections_max: usize,
    /// Time allowed for a request (head and body) from the moment the connection waits
    /// for it: after accept, or after the previous answer on a keep-alive connection.
    pub head_timeout: Duration,
    /// Time allowed for a whole connection, answers included (at least `head_timeout`).
    pub connection_timeout: Duration,
}

impl Default for Control {
    fn default() -> Self {
        Self {
            connections_max: 64,
            client_ip_connections_max: 8,
            head_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(30),
        }
    }
}

/// How bodies move between client and storage node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyPath {
    /// socket → pipe → socket with `splice(2)`: bytes never enter user space.
    #[default]
    Splice,
    /// Forced copy through user-space buffers, to measure what zero-copy saves.
    Copy,
}

/// `[http]`: limits on what clients may send and how long they may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http {
    /// Largest request head (request line + headers) accepted; larger gets 431.
    pub header_bytes_max: usize,
    /// Most header fields in one request head.
    pub headers_count_max: usize,
    /// Time allowed to receive a whole request head once its first byte arrived.
    pub head_timeout: Duration,
    /// How long an idle keep-alive client connection is kept.
    pub client_idle_timeout: Duration,
    /// Bodies up to this size may be buffered in user space (cheaper than splice for small
    /// bodies, and replayable on retry); 0 = never buffer.
    pub buffered_body_bytes_max: usize,
    /// Largest request body accepted (`Content-Length`, or the sum of a chunked body's
    /// chunks); larger gets 400 `EntityTooLarge` before any node sees it.
    pub body_bytes_max: u64,
    /// Slowest a body may move, in either direction, averaged over each
    /// `body_rate_window` (bytes per second; 0 = no floor, only the idle timeout). A peer
    /// that trickles would otherwise hold its connection and a node slot indefinitely.
    pub body_rate_min: u64,
    /// The window `body_rate_min` is averaged over.
    pub body_rate_window: Duration,
    /// Most concurrent client connections, across all cores (the older spelling of
    /// [`Limits::connections_max`]; both always hold the same value).
    pub connections_max: usize,
}

/// `[upstream]`: timeouts, pooling, retries and throttling towards storage nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// Time allowed for a TCP connect to a node.
    pub connect_timeout: Duration,
    /// Time from the request being sent to the first response byte.
    pub first_byte_timeout: Duration,
    /// Longest silence while relaying a body in either direction.
    pub io_timeout: Duration,
    /// Idle keep-alive connections kept per node and core; 0 = no pooling.
    pub idle_connections_per_node_max: usize,
    /// How long an idle pooled connection is kept before it is closed.
    pub pool_idle_timeout: Duration,
    /// Retries may add at most this fraction of recent requests (0.0..=1.0).
    pub retry_ratio: f64,
    /// Retries allowed per second regardless of the ratio, across all cores.
    pub retry_floor_per_sec: u32,
    /// Most attempts of one request, the first included (1 = never retry).
    pub attempts_max: u32,
    /// Most mid-body resumes of one GET (0 = never resume).
    pub resume_max: u32,
    /// First backoff step after a throttled answer (doubles per attempt, jittered).
    pub throttle_backoff_base: Duration,
    /// Largest backoff step after a throttled answer (`Retry-After` may ask for more).
    pub throttle_backoff_max: Duration,
    /// Highest per-node concurrency limit (AIMD maximum and starting point).
    pub node_concurrency_max: u32,
    /// Lowest per-node concurrency limit, however much a node throttles.
    pub node_concurrency_min: u32,
}

/// `[[pool]]`: a named set of storage nodes that serve the same data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Unique name, used by routes and as a metric label.
    pub name: String,
    /// At least one node, no duplicates.
    pub nodes: Vec<NodeAddr>,
    /// Failover order within a route's chain: lower is preferred.
    pub priority: u32,
    /// Up nodes this pool needs to take traffic before a later pool of the chain does
    /// (1..=nodes).
    pub min_active: usize,
    /// Probe shape, hysteresis and slow start (the pool's `slow_start` key lives here).
    pub health: HealthParams,
    /// How a node is picked among the pool's eligible nodes (`balance`).
    pub balance: Algorithm,
    /// The identity requests are re-signed with for this pool's nodes (their Host too);
    /// `None` = forwarded as the client signed them.
    pub credentials: Option<PoolCredentials>,
    /// Encryption to this pool's nodes; `None` = plain HTTP.
    pub tls: Option<UpstreamTls>,
    /// What this pool's nodes are told about the client (docs/client-address.md).
    pub send_client_address: crate::forwarded::SendClientAddress,
}

/// `[[route]]`: buckets matching a glob (and, with `key_prefix`, only their keys under
/// it) go to a chain of pools, with their own upstream timeouts if set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Which buckets this route takes.
    pub bucket: BucketGlob,
    /// Only keys under this prefix (docs/config.md, "Per-route settings"); `None` = the
    /// whole bucket, bucket-level requests included.
    pub key_prefix: Option<crate::route::KeyPrefix>,
    /// Timeouts that override `[upstream]` for this route's requests.
    pub timeouts: RouteTimeouts,
    /// Indices into [`Config::pools`], at least one, no duplicates, ordered by the
    /// pools' `priority` (ties keep the order written).
    pub pools: Vec<usize>,
}

impl Default for Appliance {
    fn default() -> Self {
        Self {
            cores: 0,
            listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 9000))],
            metrics: None,
            body_path: BodyPath::Splice,
            pipe_bytes: 1 << 20,
            virtual_host_suffixes: Vec::new(),
            bucket_names: BucketNames::Strict,
            admin: None,
            admin_token: None,
            access_log: None,
            access_log_lines_max: 65536,
            drain_timeout: Duration::from_secs(30),
            drain_grace: Duration::from_secs(5),
            control: Control::default(),
            upgrade_socket: None,
        }
    }
}

impl Default for Http {
    fn default() -> Self {
        Self {
            header_bytes_max: 16 << 10,
            headers_count_max: 128,
            head_timeout: Duration::from_secs(10),
            client_idle_timeout: Duration::from_secs(60),
            buffered_body_bytes_max: 64 << 10,
            // S3's largest object (MinIO and RGW alike); AWS caps a single PUT at 5 GiB.
            body_bytes_max: 5 << 40,
            body_rate_min: 16 << 10,
            body_rate_window: Duration::from_secs(10),
            connections_max: 10_000,
        }
    }
}

impl From<&Upstream> for RetryParams {
    fn from(upstream: &Upstream) -> Self {
        RetryParams {
            ratio: upstream.retry_ratio,
            floor_per_sec: upstream.retry_floor_per_sec,
        }
    }
}

impl Default for Upstream {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            first_byte_timeout: Duration::from_secs(60),
            io_timeout: Duration::from_secs(60),
            idle_connections_per_node_max: 64,
            pool_idle_timeout: Duration::from_secs(30),
            retry_ratio: 0.2,
            retry_floor_per_sec: 10,
            attempts_max: 3,
            resume_max: 3,
            throttle_backoff_base: Duration::from_millis(50),
            throttle_backoff_max: Duration::from_secs(2),
            node_concurrency_max: 256,
            node_concurrency_min: 4,
        }
    }
}

// === impl Config ===

impl Config {
    /// Parses and validates a whole config file. `origin` is only used in messages
    /// (normally the file name); the first problem found is returned.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let root = match DeTable::parse(text) {
            Ok(root) => root,
            Err(error) => {
                // The partial tree still names the key around a syntax error, if any.
                let (partial, _) = DeTable::parse_recoverable(text);
                return Err(SpanIndex::new(text, origin, partial.get_ref()).toml_error(&error));
            }
        };
        let index = SpanIndex::new(text, origin, root.get_ref());
        validate::shape(root.get_ref()).map_err(|invalid| index.invalid(invalid))?;
        let raw = RawConfig::deserialize(toml::de::Deserializer::from(root.clone()))
            .map_err(|error| index.toml_error(&error))?;
        validate::config(raw).map_err(|invalid| index.invalid(invalid))
    }

    /// How the listener at `local` learns the client's address; `None` = it believes
    /// only the TCP peer.
    pub fn client_trust(&self, local: SocketAddr) -> Option<&crate::forwarded::ClientTrust> {
        self.client_address
            .iter()
            .find(|b| b.listen.contains(&local))
            .map(|b| &b.trust)
    }

    /// The tenant a verified client-certificate name belongs to, if it is configured.
    pub fn tenant_of_client_name(&self, name: &str) -> Option<TenantId> {
        let key = format!(
            "{}{}",
            validate_tenancy::CLIENT_NAME_PREFIX,
            name.to_ascii_lowercase()
        );
        self.access_keys.get(&key).copied()
    }

    /// The tenant an access key id belongs to, if it is configured.
    pub fn tenant_of_key(&self, access_key: &str) -> Option<TenantId> {
        // The index also holds certificate names under a prefix no key id can have; a
        // request claiming such a "key" must not borrow a certificate's tenant.
        if access_key.starts_with(validate_tenancy::CLIENT_NAME_PREFIX) {
            return None;
        }
        self.access_keys.get(access_key).copied()
    }

    /// The `[[route]]` table alone — see [`Config::classify`] for the whole decision with
    /// `[[rule]]`s. The pools serving `bucket`, best priority first (feed them to
    /// [`crate::balance::pick`] in this order): the chain of the first route whose glob
    /// matches, else pool 0 alone (also for requests that name no bucket). Never empty.
    pub fn route(&self, bucket: Option<&str>) -> &[usize] {
        self.route_index(bucket, None)
            .and_then(|i| self.routes.get(i))
            .map_or(DEFAULT_CHAIN, |r| r.pools.as_slice())
    }
}
