//! The TOML-shaped config: what the file may contain, before any meaning is checked.
//!
//! Every table denies unknown keys, so a typo (`conect_timeout`) is an error instead of a
//! silently ignored setting. Optional keys are `Option` here and get their defaults in
//! `validate`, in one place next to their bounds.

use serde::Deserialize;

use super::units::{ConfigDuration, ConfigSize};
use super::BodyPath;

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
}

/// One `[[pool]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPool {
    pub(crate) name: String,
    pub(crate) nodes: Vec<String>,
}

/// One `[[route]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub(crate) bucket: String,
    pub(crate) pool: String,
}
