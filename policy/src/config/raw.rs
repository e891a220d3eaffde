//! The TOML-shaped config: what the file may contain, before any meaning is checked.
//!
//! Every table denies unknown keys, so a typo (`conect_timeout`) is an error instead of a
//! silently ignored setting. Optional keys are `Option` here and get their defaults in
//! `validate`, in one place next to their bounds.

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::auth::{RawAuth, RawCredentials};
use super::client_address::RawClientAddress;
use super::dns::RawDns;
use super::tls::{RawTls, RawUpstreamTls};
use super::units::{ConfigDuration, ConfigSize};
use super::BodyPath;
use crate::health::{HealthPreset, ProbeMethod};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) appliance: RawAppliance,
    #[serde(default)]
    pub(crate) http: RawHttp,
    #[serde(default)]
    pub(crate) upstream: RawUpstream,
    /// `[[pool]]`: required, but "none" is reported by validation so the message is ours.
    #[serde(default)]
    pub(crate) pool: Vec<RawPool>,
    #[serde(default)]
    pub(crate) route: Vec<RawRoute>,
    #[serde(default)]
    pub(crate) defaults: RawDefaults,
    #[serde(default)]
    pub(crate) limits: RawLimits,
    #[serde(default)]
    pub(crate) tenant: Vec<RawTenant>,
    #[serde(default)]
    pub(crate) class: Vec<RawClass>,
    #[serde(default)]
    pub(crate) rule: Vec<RawRule>,
    #[serde(default)]
    pub(crate) auth: RawAuth,
    /// `[tls]`: absent = no HTTPS listener.
    pub(crate) tls: Option<RawTls>,
    /// `[[client_address]]`: trusted upstream proxies per listener.
    #[serde(default)]
    pub(crate) client_address: Vec<RawClientAddress>,
    /// `[dns]`: resolution of node names.
    #[serde(default)]
    pub(crate) dns: RawDns,
}

/// `[appliance]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAppliance {
    pub(crate) cores: Option<usize>,
    pub(crate) listen: Option<Vec<String>>,
    pub(crate) metrics: Option<String>,
    pub(crate) body_path: Option<BodyPath>,
    pub(crate) pipe_bytes: Option<ConfigSize>,
    pub(crate) virtual_host_suffixes: Option<Vec<String>>,
    pub(crate) bucket_names: Option<String>,
    pub(crate) admin: Option<String>,
    pub(crate) admin_token: Option<String>,
    pub(crate) access_log: Option<String>,
    pub(crate) access_log_lines_max: Option<usize>,
    pub(crate) drain_timeout: Option<ConfigDuration>,
    pub(crate) drain_grace: Option<ConfigDuration>,
    pub(crate) control_connections_max: Option<usize>,
    pub(crate) control_client_ip_connections_max: Option<usize>,
    pub(crate) control_head_timeout: Option<ConfigDuration>,
    pub(crate) control_connection_timeout: Option<ConfigDuration>,
    pub(crate) upgrade_socket: Option<String>,
}

/// `[http]`: limits on what clients may send.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    pub(crate) header_bytes_max: Option<ConfigSize>,
    pub(crate) headers_count_max: Option<usize>,
    pub(crate) head_timeout: Option<ConfigDuration>,
    pub(crate) client_idle_timeout: Option<ConfigDuration>,
    pub(crate) buffered_body_bytes_max: Option<ConfigSize>,
    pub(crate) body_bytes_max: Option<ConfigSize>,
    pub(crate) body_rate_min: Option<ConfigSize>,
    pub(crate) body_rate_window: Option<ConfigDuration>,
    pub(crate) connections_max: Option<usize>,
}

/// `[upstream]`: how weir talks to storage nodes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub(crate) connect_timeout: Option<ConfigDuration>,
    pub(crate) first_byte_timeout: Option<ConfigDuration>,
    pub(crate) io_timeout: Option<ConfigDuration>,
    pub(crate) idle_connections_per_node_max: Option<usize>,
    pub(crate) pool_idle_timeout: Option<ConfigDuration>,
    pub(crate) retry_ratio: Option<f64>,
    pub(crate) retry_floor_per_sec: Option<u32>,
    pub(crate) attempts_max: Option<u32>,
    pub(crate) resume_max: Option<u32>,
    pub(crate) throttle_backoff_base: Option<ConfigDuration>,
    pub(crate) throttle_backoff_max: Option<ConfigDuration>,
    pub(crate) node_concurrency_max: Option<u32>,
    pub(crate) node_concurrency_min: Option<u32>,
}

/// One `[[pool]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPool {
    pub(crate) name: String,
    pub(crate) nodes: Vec<String>,
    pub(crate) priority: Option<u32>,
    pub(crate) min_active: Option<usize>,
    pub(crate) slow_start: Option<ConfigDuration>,
    /// Node choice within the pool (`crate::balance::Algorithm`'s names).
    pub(crate) balance: Option<String>,
    #[serde(default)]
    pub(crate) health: RawHealth,
    /// The identity weir re-signs with for this pool (`docs/identity.md`).
    pub(crate) credentials: Option<RawCredentials>,
    /// Encryption to this pool's nodes (`docs/tls.md`).
    pub(crate) tls: Option<RawUpstreamTls>,
    /// What the nodes are told about the client (`docs/client-address.md`).
    pub(crate) send_client_address: Option<String>,
}

/// A pool's `health` table: probe shape (from a preset, keys override) and thresholds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealth {
    pub(crate) preset: Option<HealthPreset>,
    pub(crate) method: Option<ProbeMethod>,
    pub(crate) path: Option<String>,
    pub(crate) expect_status: Option<RawExpectStatus>,
    pub(crate) body_match: Option<String>,
    pub(crate) drain_match: Option<String>,
    pub(crate) interval: Option<ConfigDuration>,
    pub(crate) timeout: Option<ConfigDuration>,
    pub(crate) rise: Option<u32>,
    pub(crate) fall: Option<u32>,
    pub(crate) passive_fall: Option<u32>,
    pub(crate) degraded_latency: Option<ConfigDuration>,
}

/// `expect_status` as written: `200`, `"200"`, `"2xx"` or `"any"`; meaning is checked in
/// validation, which can name the key.
#[derive(Debug)]
pub(crate) enum RawExpectStatus {
    /// An integer.
    Code(i64),
    /// A string.
    Text(String),
}

impl<'de> Deserialize<'de> for RawExpectStatus {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ExpectVisitor;
        impl serde::de::Visitor<'_> for ExpectVisitor {
            type Value = RawExpectStatus;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a status code (200), a class (\"2xx\") or \"any\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawExpectStatus, E> {
                Ok(RawExpectStatus::Code(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawExpectStatus, E> {
                Ok(RawExpectStatus::Code(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawExpectStatus, E> {
                Ok(RawExpectStatus::Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(ExpectVisitor)
    }
}

/// One `[[route]]`: `pool` (one) or `pools` (a failover chain), not both.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub(crate) bucket: String,
    pub(crate) key_prefix: Option<String>,
    pub(crate) pool: Option<String>,
    pub(crate) pools: Option<Vec<String>>,
    pub(crate) first_byte_timeout: Option<ConfigDuration>,
    pub(crate) io_timeout: Option<ConfigDuration>,
}

/// `[defaults]`: where requests go that nothing else claims.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDefaults {
    pub(crate) tenant: Option<String>,
    pub(crate) class: Option<String>,
}

/// `[limits]`: caps and per-key limits, and the rebalancing of per-core shares.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub(crate) connections_max: Option<usize>,
    pub(crate) client_ip_connections_max: Option<u32>,
    pub(crate) client_ip_requests_per_sec: Option<u64>,
    pub(crate) client_ip_bytes_per_sec: Option<ConfigSize>,
    pub(crate) bucket_requests_per_sec: Option<u64>,
    pub(crate) bucket_bytes_per_sec: Option<ConfigSize>,
    pub(crate) node_inflight_max: Option<u32>,
    pub(crate) rebalance_interval: Option<ConfigDuration>,
    pub(crate) table_entries_max: Option<usize>,
    pub(crate) burst: Option<ConfigDuration>,
    pub(crate) quantum_bytes_max: Option<ConfigSize>,
}

/// The rate keys, either inline in a tenant, class or rule, or in its `rate` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRate {
    pub(crate) requests_per_sec: Option<u64>,
    pub(crate) bytes_per_sec: Option<ConfigSize>,
    pub(crate) upload_bytes_per_sec: Option<ConfigSize>,
    pub(crate) download_bytes_per_sec: Option<ConfigSize>,
    pub(crate) burst: Option<ConfigDuration>,
}

/// One `[[tenant]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTenant {
    pub(crate) name: String,
    pub(crate) access_keys: Option<Vec<String>>,
    pub(crate) client_names: Option<Vec<String>>,
    pub(crate) buckets: Option<Vec<String>>,
    pub(crate) pools: Option<Vec<String>>,
    pub(crate) default: Option<bool>,
    pub(crate) class: Option<String>,
    pub(crate) requests_per_sec: Option<u64>,
    pub(crate) bytes_per_sec: Option<ConfigSize>,
    pub(crate) upload_bytes_per_sec: Option<ConfigSize>,
    pub(crate) download_bytes_per_sec: Option<ConfigSize>,
    pub(crate) burst: Option<ConfigDuration>,
    pub(crate) rate: Option<RawRate>,
    pub(crate) inflight_max: Option<u32>,
    /// Pool name → the identity this tenant's requests are re-signed with for that pool.
    pub(crate) pool_credentials: Option<std::collections::BTreeMap<String, RawCredentials>>,
    /// Accepted only to be refused with a reason (tenants have no connection cap:
    /// docs/design.md, "Protecting the storage"), not as "unknown key".
    pub(crate) connections_max: Option<IgnoredAny>,
}

/// One `[[class]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClass {
    pub(crate) name: String,
    pub(crate) weight: Option<u32>,
    pub(crate) latency_sensitive: Option<bool>,
    pub(crate) queue_max: Option<usize>,
    pub(crate) queue_timeout: Option<ConfigDuration>,
    pub(crate) requests_per_sec: Option<u64>,
    pub(crate) bytes_per_sec: Option<ConfigSize>,
    pub(crate) upload_bytes_per_sec: Option<ConfigSize>,
    pub(crate) download_bytes_per_sec: Option<ConfigSize>,
    pub(crate) burst: Option<ConfigDuration>,
    pub(crate) rate: Option<RawRate>,
}

/// One `[[rule]]`: every condition optional, at least one effect.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub(crate) tenant: Option<String>,
    pub(crate) bucket: Option<String>,
    pub(crate) op: Option<OneOrMany>,
    pub(crate) client_cidr: Option<OneOrMany>,
    pub(crate) pool: Option<String>,
    pub(crate) pools: Option<Vec<String>>,
    pub(crate) class: Option<String>,
    pub(crate) first_byte_timeout: Option<ConfigDuration>,
    pub(crate) io_timeout: Option<ConfigDuration>,
    pub(crate) requests_per_sec: Option<u64>,
    pub(crate) bytes_per_sec: Option<ConfigSize>,
    pub(crate) upload_bytes_per_sec: Option<ConfigSize>,
    pub(crate) download_bytes_per_sec: Option<ConfigSize>,
    pub(crate) burst: Option<ConfigDuration>,
    pub(crate) rate: Option<RawRate>,
}

/// A key that takes one string or an array of strings (`op = "read"`,
/// `op = ["read", "list"]`).
#[derive(Debug)]
pub(crate) struct OneOrMany(pub(crate) Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor;
        impl<'de> serde::de::Visitor<'de> for OneOrManyVisitor {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_owned()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<OneOrMany, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                Ok(OneOrMany(items))
            }
        }
        deserializer.deserialize_any(OneOrManyVisitor)
    }
}
