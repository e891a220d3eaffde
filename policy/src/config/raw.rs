//! The TOML-shaped config: what the file may contain, before any meaning is checked.
//!
//! Every table denies unknown keys, so a typo (`conect_timeout`) is an error instead of a
//! silently ignored setting. Optional keys are `Option` here and get their defaults in
//! `validate`, in one place next to their bounds.

use serde::Deserialize;

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
    #[serde(default)]
    pub(crate) health: RawHealth,
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
    pub(crate) pool: Option<String>,
    pub(crate) pools: Option<Vec<String>>,
}
