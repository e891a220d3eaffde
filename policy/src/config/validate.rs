//! TOML-shaped → typed: defaults, bounds, duplicates and references, each failure tied to
//! the key at fault. Bounds live here as named constants so the limits are in one place.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use super::auth;
use super::check::{
    bounded, bucket_glob, count, is_label_name, limit_len, pool_chain, ratio, size, socket_addr,
    timeout, window, LABEL_LEN_MAX, POOLS_MAX,
};
use super::client_address;
use super::error::{Invalid, KeyPath};
use super::raw::{
    RawAppliance, RawConfig, RawExpectStatus, RawHealth, RawHttp, RawPool, RawRoute, RawUpstream,
};
use super::tls;
use super::units::{format_duration, ConfigDuration};
use super::validate_tenancy::{tenancy, RawTenancy, Tenancy};
use super::{Appliance, Config, Control, Http, NodeAddr, Pool, Route, Upstream};
use crate::balance::{Algorithm, UnknownAlgorithm};
use crate::dns;
use crate::health::{ExpectStatus, HealthParams, ProbeMethod, PROBE_BODY_BYTES_MAX};
use crate::route::BucketNames;
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
/// Shortest admin token: long enough that it cannot be guessed online.
const ADMIN_TOKEN_BYTES_MIN: usize = 16;
/// Access-log buffer, in lines.
const ACCESS_LOG_LINES: RangeInclusive<usize> = 1..=1_000_000;
/// Longest drain on SIGTERM.
const DRAIN_TIMEOUT_MAX: Duration = Duration::from_secs(3600);
/// Connections of one control listener: each costs a few KiB and a task; beyond a few
/// thousand the port is a data path, which it is not meant to be.
const CONTROL_CONNECTIONS: RangeInclusive<usize> = 1..=4096;
/// Control request deadline: shorter than a loaded network's round trips is a typo,
/// longer than a minute lets a slow client sit on a slot for nothing.
const CONTROL_HEAD_TIMEOUT: RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(60);
/// Control connection deadline: a reload may take several seconds (every core stages the
/// new config), and its answer must get out; an hour is plenty for any answer.
const CONTROL_CONNECTION_TIMEOUT: RangeInclusive<Duration> =
    Duration::from_secs(10)..=Duration::from_secs(3600);
/// Request head size: S3 heads with SigV4 and metadata exceed 1KiB rarely, never 1MiB.
const HEADER_BYTES: RangeInclusive<u64> = (1 << 10)..=(1 << 20);
/// Header field count: at least `Host`.
const HEADERS_COUNT: RangeInclusive<usize> = 1..=1024;
/// User-space body buffer per request; 0 disables buffering. Bounded because it is
/// multiplied by concurrent requests.
const BUFFERED_BODY_BYTES: RangeInclusive<u64> = 0..=(16 << 20);
/// Request body size: from one byte (0 would refuse every upload) to far beyond any
/// object store's largest object.
const BODY_BYTES: RangeInclusive<u64> = 1..=(1 << 50);
/// Body rate floor, bytes per second; 0 disables it. Above 1 GiB/s a floor would cut
/// healthy transfers on ordinary links.
const BODY_RATE: RangeInclusive<u64> = 0..=(1 << 30);
/// The floor's averaging window: shorter than a second punishes ordinary jitter; longer
/// than ten minutes lets a trickle hold a slot for that long.
const BODY_RATE_WINDOW: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(600);
/// Client connections across all cores.
const CONNECTIONS: RangeInclusive<usize> = 1..=1_000_000;
/// Idle pooled connections per node and core; 0 disables pooling.
const IDLE_CONNECTIONS_PER_NODE: RangeInclusive<usize> = 0..=4096;
/// Most nodes in one pool.
const NODES_PER_POOL_MAX: usize = 1024;
/// Most routes (tried in order per request).
const ROUTES_MAX: usize = 1024;
/// Pool priorities: plenty of room for tiers, small enough to catch typos.
const PRIORITY: RangeInclusive<u32> = 0..=1000;
/// Retries per second regardless of the ratio.
const RETRY_FLOOR_PER_SEC: RangeInclusive<u32> = 0..=100_000;
/// Attempts per request: beyond 10 a retry chain is a storm, not resilience.
const ATTEMPTS: RangeInclusive<u32> = 1..=10;
/// Resumes per GET.
const RESUMES: RangeInclusive<u32> = 0..=100;
/// Per-node concurrency limit bounds (AIMD); at least one request must be possible.
const NODE_CONCURRENCY: RangeInclusive<u32> = 1..=65_536;
/// Probe interval: more often than 10 per second per node is load, not health.
const PROBE_INTERVAL_MIN: Duration = Duration::from_millis(100);
/// Consecutive probe counts for rise and fall.
const PROBE_STREAK: RangeInclusive<u32> = 1..=100;
/// Consecutive failed requests for passive_fall; 0 disables.
const PASSIVE_FALL: RangeInclusive<u32> = 0..=10_000;
/// Longest probe target (request line), a sane bound for a path and query.
const PROBE_PATH_LEN_MAX: usize = 1024;

/// Checks that sections are tables (and `[[pool]]`/`[[route]]` arrays of tables) before
/// serde sees them: serde's derived structs also accept sequences (fields by position),
/// which would turn `[[appliance]]` into a baffling "expected usize" error.
pub(crate) fn shape(root: &DeTable<'_>) -> Result<(), Invalid> {
    let path = KeyPath::root();
    for name in [
        "appliance",
        "http",
        "upstream",
        "limits",
        "defaults",
        "auth",
        "tls",
        "dns",
    ] {
        if let Some(value) = root.get(name) {
            expect_table(&path.key(name), value.get_ref(), "a table")?;
        }
    }
    for name in ["pool", "route", "tenant", "class", "rule", "client_address"] {
        let Some(value) = root.get(name) else {
            continue;
        };
        // The table-valued key inside each item that serde would also take as a sequence.
        let inner: &[&str] = match name {
            "pool" => &["health", "credentials", "tls"],
            "tenant" => &["rate", "pool_credentials"],
            "class" | "rule" => &["rate"],
            _ => &[],
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
            let item_path = path.key(name).index(i);
            expect_table(&item_path, item.get_ref(), "a table")?;
            if let DeValue::Table(table) = item.get_ref() {
                for inner in inner {
                    if let Some(value) = table.get(*inner) {
                        expect_table(&item_path.key(inner), value.get_ref(), "a table")?;
                    }
                }
            }
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
    let http_connections_max = raw.http.connections_max;
    let mut http = http(&root.key("http"), raw.http)?;
    let upstream = upstream(&root.key("upstream"), raw.upstream)?;
    let pools = pools(&root.key("pool"), raw.pool)?;
    let routes = routes(
        &root.key("route"),
        raw.route,
        &pools,
        appliance.bucket_names,
    )?;
    let Tenancy {
        limits,
        classes,
        default_class,
        tenants,
        default_tenant,
        access_keys,
        rules,
    } = tenancy(
        RawTenancy {
            limits: raw.limits,
            defaults: raw.defaults,
            classes: raw.class,
            tenants: raw.tenant,
            rules: raw.rule,
        },
        http_connections_max,
        &pools,
        appliance.bucket_names,
    )?;
    // One value, two spellings: code reading either field sees the same cap.
    http.connections_max = limits.connections_max;
    let auth = auth::auth(&root.key("auth"), raw.auth)?;
    let plain: Vec<SocketAddr> = appliance
        .listen
        .iter()
        .copied()
        .chain(appliance.metrics)
        .chain(appliance.admin)
        .collect();
    let tls = raw
        .tls
        .map(|t| tls::tls(&root.key("tls"), t, &plain))
        .transpose()?;
    upstream_tls_agrees(&root.key("pool"), &pools)?;
    client_address::proxy_v2_agrees(&root.key("pool"), &pools)?;
    let listeners: Vec<SocketAddr> = appliance
        .listen
        .iter()
        .chain(tls.iter().flat_map(|t| &t.listen))
        .copied()
        .collect();
    let client_address = client_address::client_address(
        &root.key("client_address"),
        raw.client_address,
        &listeners,
    )?;
    let dns = super::dns::dns(&root.key("dns"), raw.dns)?;
    Ok(Config {
        appliance,
        http,
        upstream,
        pools,
        routes,
        tenants,
        default_tenant,
        classes,
        default_class,
        rules,
        limits,
        auth,
        tls,
        client_address,
        dns,
        access_keys,
    })
}

/// Idle upstream connections are pooled by node address, so one node must be spoken to
/// the same way (TLS or not, same name and CA) by every pool that lists it.
fn upstream_tls_agrees(path: &KeyPath, pools: &[Pool]) -> Result<(), Invalid> {
    for (i, pool) in pools.iter().enumerate() {
        for earlier in &pools[..i] {
            if earlier.tls == pool.tls {
                continue;
            }
            if let Some(node) = pool.nodes.iter().find(|n| earlier.nodes.contains(n)) {
                return Err(Invalid::new(
                    &path.index(i).key("tls"),
                    format!(
                        "node {node} is also in pool {:?} with other tls settings; a node is spoken to one way",
                        earlier.name
                    ),
                ));
            }
        }
    }
    Ok(())
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

    let bucket_names = match raw.bucket_names {
        None => d.bucket_names,
        Some(text) => BucketNames::from_name(&text).ok_or_else(|| {
            Invalid::new(
                &path.key("bucket_names"),
                format!("{text:?} is neither \"strict\" nor \"legacy\""),
            )
        })?,
    };

    let admin_token = match raw.admin_token {
        None => None,
        Some(token) => {
            let item = path.key("admin_token");
            if token.len() < ADMIN_TOKEN_BYTES_MIN || token.len() > 256 {
                return Err(Invalid::new(
                    &item,
                    format!(
                        "must be {ADMIN_TOKEN_BYTES_MIN} to 256 characters (it guards reloads)"
                    ),
                ));
            }
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(Invalid::new(
                    &item,
                    "must be printable ASCII without spaces",
                ));
            }
            Some(token)
        }
    };
    let admin = match raw.admin {
        None => None,
        Some(text) => {
            let item = path.key("admin");
            let addr = socket_addr(&item, &text)?;
            if listen.contains(&addr) || metrics == Some(addr) {
                return Err(Invalid::new(
                    &item,
                    format!("{addr} is also a listen or metrics address"),
                ));
            }
            if !addr.ip().is_loopback() && admin_token.is_none() {
                return Err(Invalid::new(
                    &item,
                    format!("{addr} is not loopback: set appliance.admin_token to expose the admin endpoints"),
                ));
            }
            Some(addr)
        }
    };
    let access_log = match raw.access_log {
        None => None,
        Some(text) => match super::AccessLogTarget::parse(&text) {
            Ok(_) => Some(text),
            Err(why) => return Err(Invalid::new(&path.key("access_log"), why)),
        },
    };
    let access_log_lines_max = raw.access_log_lines_max.unwrap_or(d.access_log_lines_max);
    if !ACCESS_LOG_LINES.contains(&access_log_lines_max) {
        return Err(Invalid::new(
            &path.key("access_log_lines_max"),
            format!(
                "{access_log_lines_max} is outside {}..={}",
                ACCESS_LOG_LINES.start(),
                ACCESS_LOG_LINES.end()
            ),
        ));
    }
    let drain_timeout = raw
        .drain_timeout
        .map_or(d.drain_timeout, |ConfigDuration(t)| t);
    if drain_timeout > DRAIN_TIMEOUT_MAX {
        return Err(Invalid::new(
            &path.key("drain_timeout"),
            format!(
                "{} is above the maximum of {}",
                format_duration(drain_timeout),
                format_duration(DRAIN_TIMEOUT_MAX)
            ),
        ));
    }
    let drain_grace = raw.drain_grace.map_or(d.drain_grace, |ConfigDuration(t)| t);
    if drain_grace > DRAIN_TIMEOUT_MAX {
        return Err(Invalid::new(
            &path.key("drain_grace"),
            format!(
                "{} is above the maximum of {}",
                format_duration(drain_grace),
                format_duration(DRAIN_TIMEOUT_MAX)
            ),
        ));
    }
    let upgrade_socket = upgrade_socket(path, raw.upgrade_socket)?;

    let control = control(
        path,
        [
            raw.control_connections_max,
            raw.control_client_ip_connections_max,
        ],
        [raw.control_head_timeout, raw.control_connection_timeout],
    )?;

    Ok(Appliance {
        cores,
        listen,
        metrics,
        body_path: raw.body_path.unwrap_or(d.body_path),
        pipe_bytes,
        virtual_host_suffixes,
        bucket_names,
        admin,
        admin_token,
        access_log,
        access_log_lines_max,
        drain_timeout,
        drain_grace,
        control,
        upgrade_socket,
    })
}

/// `appliance.upgrade_socket`: an absolute path that names a file (the socket is created
/// there), short enough for a `sockaddr_un` (107 bytes).
fn upgrade_socket(path: &KeyPath, raw: Option<String>) -> Result<Option<String>, Invalid> {
    let Some(text) = raw else {
        return Ok(None);
    };
    let key = path.key("upgrade_socket");
    if !text.starts_with('/') || text.ends_with('/') {
        return Err(Invalid::new(
            &key,
            format!("{text:?} is not an absolute file path"),
        ));
    }
    if text.len() > UPGRADE_SOCKET_PATH_MAX || text.contains('\0') {
        return Err(Invalid::new(
            &key,
            format!(
                "{text:?} is not a usable socket path (at most {UPGRADE_SOCKET_PATH_MAX} bytes, no NUL)"
            ),
        ));
    }
    Ok(Some(text))
}

/// Longest path a unix socket address holds (`sun_path` is 108 bytes with its NUL).
const UPGRADE_SOCKET_PATH_MAX: usize = 107;

/// The `control_*` keys: caps and deadlines of the metrics and admin listeners.
fn control(
    path: &KeyPath,
    [raw_connections, raw_client_ip]: [Option<usize>; 2],
    [raw_head, raw_connection]: [Option<ConfigDuration>; 2],
) -> Result<Control, Invalid> {
    let d = Control::default();
    let connections_max = count(
        &path.key("control_connections_max"),
        raw_connections,
        d.connections_max,
        CONTROL_CONNECTIONS,
    )?;
    let client_ip_connections_max = count(
        &path.key("control_client_ip_connections_max"),
        raw_client_ip,
        d.client_ip_connections_max.min(connections_max),
        1..=connections_max,
    )?;
    let bounded_duration = |key: &str,
                            raw: Option<ConfigDuration>,
                            default: Duration,
                            bounds: RangeInclusive<Duration>|
     -> Result<Duration, Invalid> {
        let value = raw.map_or(default, |ConfigDuration(t)| t);
        if bounds.contains(&value) {
            return Ok(value);
        }
        Err(Invalid::new(
            &path.key(key),
            format!(
                "{} is outside {}..={}",
                format_duration(value),
                format_duration(*bounds.start()),
                format_duration(*bounds.end())
            ),
        ))
    };
    let head_timeout = bounded_duration(
        "control_head_timeout",
        raw_head,
        d.head_timeout,
        CONTROL_HEAD_TIMEOUT,
    )?;
    let connection_timeout = bounded_duration(
        "control_connection_timeout",
        raw_connection,
        d.connection_timeout,
        CONTROL_CONNECTION_TIMEOUT,
    )?;
    if connection_timeout < head_timeout {
        return Err(Invalid::new(
            &path.key("control_connection_timeout"),
            format!(
                "{} is shorter than control_head_timeout ({})",
                format_duration(connection_timeout),
                format_duration(head_timeout)
            ),
        ));
    }
    Ok(Control {
        connections_max,
        client_ip_connections_max,
        head_timeout,
        connection_timeout,
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
        body_bytes_max: size(
            &path.key("body_bytes_max"),
            raw.body_bytes_max,
            d.body_bytes_max as usize,
            BODY_BYTES,
        )? as u64,
        body_rate_min: size(
            &path.key("body_rate_min"),
            raw.body_rate_min,
            d.body_rate_min as usize,
            BODY_RATE,
        )? as u64,
        body_rate_window: window(
            &path.key("body_rate_window"),
            raw.body_rate_window,
            d.body_rate_window,
            BODY_RATE_WINDOW,
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
    let throttle_backoff_base = timeout(
        &path.key("throttle_backoff_base"),
        raw.throttle_backoff_base,
        d.throttle_backoff_base,
    )?;
    let throttle_backoff_max = timeout(
        &path.key("throttle_backoff_max"),
        raw.throttle_backoff_max,
        d.throttle_backoff_max,
    )?;
    if throttle_backoff_max < throttle_backoff_base {
        return Err(Invalid::new(
            &path.key("throttle_backoff_max"),
            format!(
                "{} is below throttle_backoff_base ({})",
                format_duration(throttle_backoff_max),
                format_duration(throttle_backoff_base)
            ),
        ));
    }
    let node_concurrency_max = bounded(
        &path.key("node_concurrency_max"),
        raw.node_concurrency_max,
        d.node_concurrency_max,
        NODE_CONCURRENCY,
    )?;
    let node_concurrency_min = bounded(
        &path.key("node_concurrency_min"),
        raw.node_concurrency_min,
        d.node_concurrency_min.min(node_concurrency_max),
        NODE_CONCURRENCY,
    )?;
    if node_concurrency_min > node_concurrency_max {
        return Err(Invalid::new(
            &path.key("node_concurrency_min"),
            format!(
                "{node_concurrency_min} is above node_concurrency_max ({node_concurrency_max})"
            ),
        ));
    }
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
        retry_ratio: ratio(&path.key("retry_ratio"), raw.retry_ratio, d.retry_ratio)?,
        retry_floor_per_sec: bounded(
            &path.key("retry_floor_per_sec"),
            raw.retry_floor_per_sec,
            d.retry_floor_per_sec,
            RETRY_FLOOR_PER_SEC,
        )?,
        attempts_max: bounded(
            &path.key("attempts_max"),
            raw.attempts_max,
            d.attempts_max,
            ATTEMPTS,
        )?,
        resume_max: bounded(
            &path.key("resume_max"),
            raw.resume_max,
            d.resume_max,
            RESUMES,
        )?,
        throttle_backoff_base,
        throttle_backoff_max,
        node_concurrency_max,
        node_concurrency_min,
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
        if !is_label_name(&name) {
            return Err(Invalid::new(
                &name_path,
                format!("{name:?} is not a pool name (1..={LABEL_LEN_MAX} of A-Z a-z 0-9 _ . -)"),
            ));
        }
        if let Some(first) = pools.iter().position(|p| p.name == name) {
            return Err(Invalid::new(
                &name_path,
                format!("duplicate pool name {name:?} (also pool[{first}])"),
            ));
        }
        let nodes = nodes(&pool_path.key("nodes"), &raw_pool.nodes)?;
        let priority = bounded(&pool_path.key("priority"), raw_pool.priority, 0, PRIORITY)?;
        let min_active = count(
            &pool_path.key("min_active"),
            raw_pool.min_active,
            1,
            1..=nodes.len(),
        )?;
        let slow_start = raw_pool
            .slow_start
            .map_or(HealthParams::default().slow_start, |ConfigDuration(d)| d);
        let mut health = health(&pool_path.key("health"), raw_pool.health)?;
        health.slow_start = slow_start;
        let balance = match raw_pool.balance {
            Some(name) => name.parse().map_err(|e: UnknownAlgorithm| {
                Invalid::new(&pool_path.key("balance"), e.to_string())
            })?,
            None => Algorithm::default(),
        };
        let credentials = raw_pool
            .credentials
            .map(|c| auth::credentials(&pool_path.key("credentials"), c))
            .transpose()?;
        let tls = raw_pool
            .tls
            .map(|t| tls::upstream_tls(&pool_path.key("tls"), t))
            .transpose()?;
        let send_client_address = client_address::send_client_address(
            &pool_path.key("send_client_address"),
            raw_pool.send_client_address,
        )?;
        pools.push(Pool {
            name,
            nodes,
            priority,
            min_active,
            health,
            balance,
            credentials,
            tls,
            send_client_address,
        });
    }
    Ok(pools)
}

/// A pool's `health` table: the preset's probe, overridden key by key, then checked as a
/// whole (a body match needs a body, a probe must end before the next starts).
fn health(path: &KeyPath, raw: RawHealth) -> Result<HealthParams, Invalid> {
    let mut h = HealthParams::from_preset(raw.preset.unwrap_or_default());
    if let Some(method) = raw.method {
        h.method = method;
    }
    if let Some(target) = raw.path {
        let key = path.key("path");
        if !target.starts_with('/')
            || target.len() > PROBE_PATH_LEN_MAX
            || !target.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(Invalid::new(
                &key,
                format!(
                    "{target:?} is not a request target: it must start with '/', have no \
                     spaces or control characters, and be at most {PROBE_PATH_LEN_MAX} bytes"
                ),
            ));
        }
        h.path = target;
    }
    if let Some(expect) = raw.expect_status {
        h.expect_status = expect_status(&path.key("expect_status"), expect)?;
    }
    if let Some(text) = raw.body_match {
        h.body_match = body_text(&path.key("body_match"), text)?;
    }
    if let Some(text) = raw.drain_match {
        h.drain_match = body_text(&path.key("drain_match"), text)?;
    }
    if h.method == ProbeMethod::Head {
        for (key, set) in [
            ("body_match", h.body_match.is_some()),
            ("drain_match", h.drain_match.is_some()),
        ] {
            if set {
                return Err(Invalid::new(
                    &path.key("method"),
                    format!(
                        "HEAD cannot be used with {key} (set by the key or by preset \
                         {:?}): a HEAD answer has no body; use method = \"GET\"",
                        h.preset.as_str()
                    ),
                ));
            }
        }
    }
    h.interval = timeout(&path.key("interval"), raw.interval, h.interval)?;
    if h.interval < PROBE_INTERVAL_MIN {
        return Err(Invalid::new(
            &path.key("interval"),
            format!(
                "{} is below the minimum of {}",
                format_duration(h.interval),
                format_duration(PROBE_INTERVAL_MIN)
            ),
        ));
    }
    h.timeout = timeout(&path.key("timeout"), raw.timeout, h.timeout.min(h.interval))?;
    if h.timeout > h.interval {
        return Err(Invalid::new(
            &path.key("timeout"),
            format!(
                "{} is longer than interval ({}): a probe must end before the next starts",
                format_duration(h.timeout),
                format_duration(h.interval)
            ),
        ));
    }
    h.rise = bounded(&path.key("rise"), raw.rise, h.rise, PROBE_STREAK)?;
    h.fall = bounded(&path.key("fall"), raw.fall, h.fall, PROBE_STREAK)?;
    h.passive_fall = bounded(
        &path.key("passive_fall"),
        raw.passive_fall,
        h.passive_fall,
        PASSIVE_FALL,
    )?;
    if let Some(ConfigDuration(latency)) = raw.degraded_latency {
        // "0s" spells "off", like slow_start.
        h.degraded_latency = (!latency.is_zero()).then_some(latency);
    }
    Ok(h)
}

/// `expect_status`: a code in 100..=599, a class `"2xx"`, or `"any"`.
fn expect_status(path: &KeyPath, raw: RawExpectStatus) -> Result<ExpectStatus, Invalid> {
    let parsed = match &raw {
        RawExpectStatus::Code(code) => u16::try_from(*code)
            .ok()
            .filter(|c| (100..=599).contains(c))
            .map(ExpectStatus::Exact),
        RawExpectStatus::Text(text) => ExpectStatus::parse(text),
    };
    parsed.ok_or_else(|| {
        let written = match raw {
            RawExpectStatus::Code(code) => code.to_string(),
            RawExpectStatus::Text(text) => format!("{text:?}"),
        };
        Invalid::new(
            path,
            format!(
                "{written} is not a status: expected a code in 100..=599 (e.g. 200), a class \
                 such as \"2xx\", or \"any\""
            ),
        )
    })
}

/// `body_match` / `drain_match`: `""` turns a preset's match off; otherwise the text
/// must fit in the body prefix the prober reads.
fn body_text(path: &KeyPath, text: String) -> Result<Option<String>, Invalid> {
    if text.is_empty() {
        return Ok(None);
    }
    if text.len() > PROBE_BODY_BYTES_MAX {
        return Err(Invalid::new(
            path,
            format!(
                "{} bytes; at most {PROBE_BODY_BYTES_MAX} (the probe reads that much of \
                 the body)",
                text.len()
            ),
        ));
    }
    Ok(Some(text))
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

fn routes(
    path: &KeyPath,
    raw: Vec<RawRoute>,
    pools: &[Pool],
    names: BucketNames,
) -> Result<Vec<Route>, Invalid> {
    limit_len(path, raw.len(), ROUTES_MAX)?;
    raw.into_iter()
        .enumerate()
        .map(|(i, raw_route)| {
            let route_path = path.index(i);
            let bucket = bucket_glob(&route_path.key("bucket"), &raw_route.bucket, names)?;
            let chain = pool_chain(&route_path, raw_route.pool, raw_route.pools, pools)?;
            let key_prefix = super::routes::key_prefix(
                &route_path.key("key_prefix"),
                raw_route.key_prefix.as_deref(),
            )?;
            let timeouts = super::routes::route_timeouts(
                &route_path,
                raw_route.first_byte_timeout,
                raw_route.io_timeout,
            )?;
            Ok(Route {
                bucket,
                key_prefix,
                pools: chain,
                timeouts,
            })
        })
        .collect::<Result<Vec<Route>, Invalid>>()
        .and_then(|routes| {
            super::routes::check_shadowing(path, &routes)?;
            Ok(routes)
        })
}
