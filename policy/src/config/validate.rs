//! TOML-shaped → typed: defaults, bounds, duplicates and references, each failure tied to
//! the key at fault. Bounds live here as named constants so the limits are in one place.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use super::error::{Invalid, KeyPath};
use super::raw::{RawAppliance, RawConfig, RawHttp, RawPool, RawRoute, RawUpstream};
use super::units::{format_duration, format_size, ConfigDuration, ConfigSize};
use super::{Appliance, Config, Http, NodeAddr, Pool, Route, Upstream};
use crate::dns;
use crate::route::BucketGlob;
use toml::de::{DeTable, DeValue};

/// Most shards: beyond this a typo is likelier than a machine.
const CORES_MAX: usize = 1024;
/// Most listen addresses.
const LISTEN_MAX: usize = 64;
/// Most virtual-host suffixes (each is compared per request).
const VIRTUAL_HOST_SUFFIXES_MAX: usize = 64;
/// Relay pipe size: from one page to 64MiB. Above `/proc/sys/fs/pipe-max-size` (1MiB by
/// default) `F_SETPIPE_SZ` needs `CAP_SYS_RESOURCE` or a raised limit.
const PIPE_BYTES: RangeInclusive<u64> = (4 << 10)..=(64 << 20);
/// Request head size: S3 heads with SigV4 and metadata exceed 1KiB rarely, never 1MiB.
const HEADER_BYTES: RangeInclusive<u64> = (1 << 10)..=(1 << 20);
/// Header field count: at least `Host`.
const HEADERS_COUNT: RangeInclusive<usize> = 1..=1024;
/// User-space body buffer per request; 0 disables buffering. Bounded because it is
/// multiplied by concurrent requests.
const BUFFERED_BODY_BYTES: RangeInclusive<u64> = 0..=(16 << 20);
/// Client connections across all cores.
const CONNECTIONS: RangeInclusive<usize> = 1..=1_000_000;
/// Idle pooled connections per node and core; 0 disables pooling.
const IDLE_CONNECTIONS_PER_NODE: RangeInclusive<usize> = 0..=4096;
/// Shortest timeout: zero would fire immediately, which is never what was meant.
const TIMEOUT_MIN: Duration = Duration::from_millis(1);
/// Most pools, nodes per pool and routes: every table has a bound.
const POOLS_MAX: usize = 256;
/// Most nodes in one pool.
const NODES_PER_POOL_MAX: usize = 1024;
/// Most routes (tried in order per request).
const ROUTES_MAX: usize = 1024;
/// Longest pool name (it is a metric label value).
const POOL_NAME_LEN_MAX: usize = 64;

/// Checks that sections are tables (and `[[pool]]`/`[[route]]` arrays of tables) before
/// serde sees them: serde's derived structs also accept sequences (fields by position),
/// which would turn `[[appliance]]` into a baffling "expected usize" error.
pub(crate) fn shape(root: &DeTable<'_>) -> Result<(), Invalid> {
    let path = KeyPath::root();
    for name in ["appliance", "http", "upstream"] {
        if let Some(value) = root.get(name) {
            expect_table(&path.key(name), value.get_ref(), "a table")?;
        }
    }
    for name in ["pool", "route"] {
        let Some(value) = root.get(name) else {
            continue;
        };
        let DeValue::Array(items) = value.get_ref() else {
            return Err(Invalid::new(
                &path.key(name),
                format!(
                    "expected an array of tables ([[{name}]]), found {}",
                    with_article(value.get_ref())
                ),
            ));
        };
        for (i, item) in items.iter().enumerate() {
            expect_table(&path.key(name).index(i), item.get_ref(), "a table")?;
        }
    }
    Ok(())
}

/// Rejects a non-table where a table belongs.
fn expect_table(path: &KeyPath, value: &DeValue<'_>, what: &str) -> Result<(), Invalid> {
    match value {
        DeValue::Table(_) => Ok(()),
        other => Err(Invalid::new(
            path,
            format!("expected {what}, found {}", with_article(other)),
        )),
    }
}

/// "an integer", "a string": the value's TOML type for messages.
fn with_article(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Validates the whole file.
pub(crate) fn config(raw: RawConfig) -> Result<Config, Invalid> {
    let root = KeyPath::root();
    let appliance = appliance(&root.key("appliance"), raw.appliance)?;
    let http = http(&root.key("http"), raw.http)?;
    let upstream = upstream(&root.key("upstream"), raw.upstream)?;
    let pools = pools(&root.key("pool"), raw.pool)?;
    let routes = routes(&root.key("route"), raw.route, &pools)?;
    Ok(Config {
        appliance,
        http,
        upstream,
        pools,
        routes,
    })
}

fn appliance(path: &KeyPath, raw: RawAppliance) -> Result<Appliance, Invalid> {
    let d = Appliance::default();
    let cores = raw.cores.unwrap_or(d.cores);
    if cores > CORES_MAX {
        return Err(Invalid::new(
            &path.key("cores"),
            format!("{cores} is above the maximum of {CORES_MAX} (0 = all online CPUs)"),
        ));
    }

    let listen = match raw.listen {
        None => d.listen,
        Some(texts) => {
            let list_path = path.key("listen");
            if texts.is_empty() {
                return Err(Invalid::new(&list_path, "at least one address is required"));
            }
            limit_len(&list_path, texts.len(), LISTEN_MAX)?;
            let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
            let mut listen = Vec::with_capacity(texts.len());
            for (i, text) in texts.iter().enumerate() {
                let item = list_path.index(i);
                let addr = socket_addr(&item, text)?;
                if let Some(first) = seen.insert(addr, i) {
                    return Err(Invalid::new(
                        &item,
                        format!("duplicate listen address {addr} (also listen[{first}])"),
                    ));
                }
                listen.push(addr);
            }
            listen
        }
    };

    let metrics = match raw.metrics {
        None => None,
        Some(text) => {
            let item = path.key("metrics");
            let addr = socket_addr(&item, &text)?;
            if listen.contains(&addr) {
                return Err(Invalid::new(
                    &item,
                    format!("{addr} is also a listen address"),
                ));
            }
            Some(addr)
        }
    };

    let pipe_bytes = size(
        &path.key("pipe_bytes"),
        raw.pipe_bytes,
        d.pipe_bytes,
        PIPE_BYTES,
    )?;

    let virtual_host_suffixes = match raw.virtual_host_suffixes {
        None => d.virtual_host_suffixes,
        Some(texts) => {
            let list_path = path.key("virtual_host_suffixes");
            limit_len(&list_path, texts.len(), VIRTUAL_HOST_SUFFIXES_MAX)?;
            let mut suffixes: Vec<String> = Vec::with_capacity(texts.len());
            for (i, text) in texts.iter().enumerate() {
                let item = list_path.index(i);
                // A leading dot is a common way to write a suffix; it means the same.
                let suffix = text.strip_prefix('.').unwrap_or(text).to_ascii_lowercase();
                if !dns::is_host_name(&suffix) {
                    return Err(Invalid::new(&item, format!("{text:?} is not a DNS name")));
                }
                if let Some(first) = suffixes.iter().position(|s| *s == suffix) {
                    return Err(Invalid::new(
                        &item,
                        format!("duplicate suffix {text:?} (also virtual_host_suffixes[{first}])"),
                    ));
                }
                suffixes.push(suffix);
            }
            suffixes
        }
    };

    Ok(Appliance {
        cores,
        listen,
        metrics,
        body_path: raw.body_path.unwrap_or(d.body_path),
        pipe_bytes,
        virtual_host_suffixes,
    })
}

fn http(path: &KeyPath, raw: RawHttp) -> Result<Http, Invalid> {
    let d = Http::default();
    Ok(Http {
        header_bytes_max: size(
            &path.key("header_bytes_max"),
            raw.header_bytes_max,
            d.header_bytes_max,
            HEADER_BYTES,
        )?,
        headers_count_max: count(
            &path.key("headers_count_max"),
            raw.headers_count_max,
            d.headers_count_max,
            HEADERS_COUNT,
        )?,
        head_timeout: timeout(&path.key("head_timeout"), raw.head_timeout, d.head_timeout)?,
        client_idle_timeout: timeout(
            &path.key("client_idle_timeout"),
            raw.client_idle_timeout,
            d.client_idle_timeout,
        )?,
        buffered_body_bytes_max: size(
            &path.key("buffered_body_bytes_max"),
            raw.buffered_body_bytes_max,
            d.buffered_body_bytes_max,
            BUFFERED_BODY_BYTES,
        )?,
        connections_max: count(
            &path.key("connections_max"),
            raw.connections_max,
            d.connections_max,
            CONNECTIONS,
        )?,
    })
}

fn upstream(path: &KeyPath, raw: RawUpstream) -> Result<Upstream, Invalid> {
    let d = Upstream::default();
    Ok(Upstream {
        connect_timeout: timeout(
            &path.key("connect_timeout"),
            raw.connect_timeout,
            d.connect_timeout,
        )?,
        first_byte_timeout: timeout(
            &path.key("first_byte_timeout"),
            raw.first_byte_timeout,
            d.first_byte_timeout,
        )?,
        io_timeout: timeout(&path.key("io_timeout"), raw.io_timeout, d.io_timeout)?,
        idle_connections_per_node_max: count(
            &path.key("idle_connections_per_node_max"),
            raw.idle_connections_per_node_max,
            d.idle_connections_per_node_max,
            IDLE_CONNECTIONS_PER_NODE,
        )?,
        pool_idle_timeout: timeout(
            &path.key("pool_idle_timeout"),
            raw.pool_idle_timeout,
            d.pool_idle_timeout,
        )?,
    })
}

fn pools(path: &KeyPath, raw: Vec<RawPool>) -> Result<Vec<Pool>, Invalid> {
    if raw.is_empty() {
        return Err(Invalid::new(path, "at least one [[pool]] is required"));
    }
    limit_len(path, raw.len(), POOLS_MAX)?;
    let mut pools: Vec<Pool> = Vec::with_capacity(raw.len());
    for (i, raw_pool) in raw.into_iter().enumerate() {
        let pool_path = path.index(i);
        let name_path = pool_path.key("name");
        let name = raw_pool.name;
        if !is_pool_name(&name) {
            return Err(Invalid::new(
                &name_path,
                format!(
                    "{name:?} is not a pool name (1..={POOL_NAME_LEN_MAX} of A-Z a-z 0-9 _ . -)"
                ),
            ));
        }
        if let Some(first) = pools.iter().position(|p| p.name == name) {
            return Err(Invalid::new(
                &name_path,
                format!("duplicate pool name {name:?} (also pool[{first}])"),
            ));
        }
        let nodes = nodes(&pool_path.key("nodes"), &raw_pool.nodes)?;
        pools.push(Pool { name, nodes });
    }
    Ok(pools)
}

fn nodes(path: &KeyPath, texts: &[String]) -> Result<Vec<NodeAddr>, Invalid> {
    if texts.is_empty() {
        return Err(Invalid::new(path, "a pool needs at least one node"));
    }
    limit_len(path, texts.len(), NODES_PER_POOL_MAX)?;
    let mut nodes: Vec<NodeAddr> = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        let item = path.index(i);
        let node: NodeAddr = text
            .parse()
            .map_err(|e| Invalid::new(&item, format!("{text:?} is not host:port: {e}")))?;
        if let Some(first) = nodes.iter().position(|n| *n == node) {
            return Err(Invalid::new(
                &item,
                format!("duplicate node {node} (also nodes[{first}])"),
            ));
        }
        nodes.push(node);
    }
    Ok(nodes)
}

fn routes(path: &KeyPath, raw: Vec<RawRoute>, pools: &[Pool]) -> Result<Vec<Route>, Invalid> {
    limit_len(path, raw.len(), ROUTES_MAX)?;
    raw.into_iter()
        .enumerate()
        .map(|(i, raw_route)| {
            let route_path = path.index(i);
            let bucket = BucketGlob::new(&raw_route.bucket).map_err(|e| {
                Invalid::new(
                    &route_path.key("bucket"),
                    format!("bad bucket glob {:?}: {e}", raw_route.bucket),
                )
            })?;
            let pool = pools
                .iter()
                .position(|p| p.name == raw_route.pool)
                .ok_or_else(|| {
                    let known: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
                    Invalid::new(
                        &route_path.key("pool"),
                        format!("unknown pool {:?} (pools: {known:?})", raw_route.pool),
                    )
                })?;
            Ok(Route { bucket, pool })
        })
        .collect()
}

// === value helpers ===

/// A listen-style `ip:port`; port 0 is refused because every core binds the same address
/// with `SO_REUSEPORT`, and an ephemeral port would differ per core.
fn socket_addr(path: &KeyPath, text: &str) -> Result<SocketAddr, Invalid> {
    let addr: SocketAddr = text.parse().map_err(|_| {
        Invalid::new(
            path,
            format!("{text:?} is not ip:port (e.g. \"0.0.0.0:9000\" or \"[::]:9000\")"),
        )
    })?;
    if addr.port() == 0 {
        return Err(Invalid::new(
            path,
            format!("{text:?}: port 0 is not allowed (each core would get its own port)"),
        ));
    }
    Ok(addr)
}

/// A size with its default and bounds.
fn size(
    path: &KeyPath,
    raw: Option<ConfigSize>,
    default: usize,
    bounds: RangeInclusive<u64>,
) -> Result<usize, Invalid> {
    let Some(ConfigSize(bytes)) = raw else {
        return Ok(default);
    };
    if bytes < *bounds.start() {
        return Err(Invalid::new(
            path,
            format!(
                "{} is below the minimum of {}",
                format_size(bytes),
                format_size(*bounds.start())
            ),
        ));
    }
    if bytes > *bounds.end() {
        return Err(Invalid::new(
            path,
            format!(
                "{} is above the maximum of {}",
                format_size(bytes),
                format_size(*bounds.end())
            ),
        ));
    }
    usize::try_from(bytes).map_err(|_| Invalid::new(path, "does not fit this platform"))
}

/// A count with its default and bounds.
fn count(
    path: &KeyPath,
    raw: Option<usize>,
    default: usize,
    bounds: RangeInclusive<usize>,
) -> Result<usize, Invalid> {
    let value = raw.unwrap_or(default);
    if bounds.contains(&value) {
        Ok(value)
    } else {
        Err(Invalid::new(
            path,
            format!("{value} is outside {}..={}", bounds.start(), bounds.end()),
        ))
    }
}

/// A timeout with its default; the upper bound is enforced when parsing.
fn timeout(
    path: &KeyPath,
    raw: Option<ConfigDuration>,
    default: Duration,
) -> Result<Duration, Invalid> {
    let value = raw.map_or(default, |ConfigDuration(d)| d);
    if value < TIMEOUT_MIN {
        return Err(Invalid::new(
            path,
            format!(
                "{} is below the minimum of {}",
                format_duration(value),
                format_duration(TIMEOUT_MIN)
            ),
        ));
    }
    Ok(value)
}

/// Rejects lists longer than their bound.
fn limit_len(path: &KeyPath, len: usize, max: usize) -> Result<(), Invalid> {
    if len > max {
        return Err(Invalid::new(
            path,
            format!("{len} entries; at most {max} are allowed"),
        ));
    }
    Ok(())
}

/// Pool names appear in metric labels and log lines, so they stay short and plain.
fn is_pool_name(name: &str) -> bool {
    (1..=POOL_NAME_LEN_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}
