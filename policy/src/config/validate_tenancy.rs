//! Validation of `[limits]`, `[[class]]`, `[[tenant]]`, `[defaults]` and `[[rule]]`:
//! bounds, duplicates and references, each failure tied to the key at fault.
//!
//! Order matters and follows the references: limits (the default burst) → classes →
//! tenants (name classes) → the default tenant → rules (name tenants, pools, classes).

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use super::auth;
use super::check::{
    bounded, bucket_glob, count, is_label_name, limit_len, pool_chain, window, LABEL_LEN_MAX,
};
use super::error::{Invalid, KeyPath};
use super::raw::{OneOrMany, RawClass, RawDefaults, RawLimits, RawRate, RawRule, RawTenant};
use super::tenancy::{
    Class, ClassId, Limits, RateLimit, Rule, Tenant, TenantId, CLASS_QUEUE_MAX_DEFAULT,
    CLASS_QUEUE_TIMEOUT_DEFAULT, CLASS_WEIGHT_DEFAULT, DEFAULT_TENANT_NAME,
};
use super::units::{format_size, ConfigSize};
use super::Pool;
use crate::route::{is_access_key, BucketNames, Cidr, OpClass};

/// Requests per second of any limit: 10^8 is beyond any one appliance.
const REQUESTS_PER_SEC: RangeInclusive<u64> = 1..=100_000_000;
/// Bytes per second of any limit: below 1KiB a body would trickle; 1TiB/s is beyond any
/// NIC.
const BYTES_PER_SEC: RangeInclusive<u64> = (1 << 10)..=(1 << 40);
/// Burst of any limit: at least a millisecond; a minute of saved-up allowance is a flood.
const BURST: RangeInclusive<Duration> = Duration::from_millis(1)..=Duration::from_secs(60);
/// Class weights: 1000:1 is plenty of contrast.
const CLASS_WEIGHT: RangeInclusive<u32> = 1..=1000;
/// Waiting requests per class and core; 0 = never wait.
const QUEUE_MAX: RangeInclusive<usize> = 0..=1_000_000;
/// Longest wait in a class queue: beyond a minute the client's own timeout fires first.
const QUEUE_TIMEOUT: RangeInclusive<Duration> = Duration::from_millis(1)..=Duration::from_secs(60);
/// In-flight and connection caps.
const CAP: RangeInclusive<u32> = 1..=1_000_000;
/// Client connections across all cores (same bound as `http.connections_max`).
const CONNECTIONS: RangeInclusive<usize> = 1..=1_000_000;
/// Rebalance interval: faster than 1ms is message overhead, slower than 1s lets a
/// skewed core starve for a noticeable time.
const REBALANCE_INTERVAL: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(1);
/// Entries per keyed table and core.
const TABLE_ENTRIES: RangeInclusive<usize> = 16..=(1 << 24);
/// Byte quantum: one page up to the largest relay pipe.
const QUANTUM_BYTES: RangeInclusive<u64> = (4 << 10)..=(64 << 20);
/// Most classes (each is a queue on every core).
const CLASSES_MAX: usize = 64;
/// Most tenants.
const TENANTS_MAX: usize = 4096;
/// Most access keys of one tenant.
const ACCESS_KEYS_PER_TENANT_MAX: usize = 4096;
/// Most rules (tried in order per request).
const RULES_MAX: usize = 1024;
/// Most CIDR blocks or ops in one rule condition.
const CONDITION_ITEMS_MAX: usize = 256;

/// Everything validated here, ready to go into [`super::Config`].
pub(crate) struct Tenancy {
    pub(crate) limits: Limits,
    pub(crate) classes: Vec<Class>,
    pub(crate) default_class: ClassId,
    pub(crate) tenants: Vec<Tenant>,
    pub(crate) default_tenant: TenantId,
    pub(crate) access_keys: HashMap<String, TenantId>,
    pub(crate) rules: Vec<Rule>,
}

/// Client-certificate names share the tenant index with access keys under this prefix,
/// which no access key id can contain (`:` is not allowed in one).
pub(crate) const CLIENT_NAME_PREFIX: &str = "tls:";

/// The raw sections this module validates.
pub(crate) struct RawTenancy {
    pub(crate) limits: RawLimits,
    pub(crate) defaults: RawDefaults,
    pub(crate) classes: Vec<RawClass>,
    pub(crate) tenants: Vec<RawTenant>,
    pub(crate) rules: Vec<RawRule>,
}

/// Validates the tenancy sections. `http_connections_max` is `[http] connections_max`
/// as written (the older spelling of `[limits] connections_max`).
pub(crate) fn tenancy(
    raw: RawTenancy,
    http_connections_max: Option<usize>,
    pools: &[Pool],
    names: BucketNames,
) -> Result<Tenancy, Invalid> {
    let root = KeyPath::root();
    let limits = limits(&root.key("limits"), raw.limits, http_connections_max)?;
    let defaults_path = root.key("defaults");
    let (classes, default_class) = classes(
        &root.key("class"),
        raw.classes,
        &defaults_path,
        raw.defaults.class,
        limits.burst,
    )?;
    let refs = Refs {
        classes: &classes,
        pools,
        burst: limits.burst,
        names,
    };
    let (tenants, default_tenant, access_keys) = tenants(
        &root.key("tenant"),
        raw.tenants,
        &defaults_path,
        raw.defaults.tenant,
        &refs,
    )?;
    let rules = rules(&root.key("rule"), raw.rules, &tenants, &refs)?;
    Ok(Tenancy {
        limits,
        classes,
        default_class,
        tenants,
        default_tenant,
        access_keys,
        rules,
    })
}

fn limits(
    path: &KeyPath,
    raw: RawLimits,
    http_connections_max: Option<usize>,
) -> Result<Limits, Invalid> {
    let d = Limits::default();
    let connections_max = match (raw.connections_max, http_connections_max) {
        (Some(_), Some(_)) => {
            return Err(Invalid::new(
                &path.key("connections_max"),
                "also set as http.connections_max (the older spelling); set it once, here",
            ))
        }
        (Some(n), None) => count(&path.key("connections_max"), Some(n), 0, CONNECTIONS)?,
        // `[http]` has checked its own spelling already.
        (None, Some(n)) => n,
        (None, None) => d.connections_max,
    };
    let burst = window(&path.key("burst"), raw.burst, d.burst, BURST)?;
    let client_ip_rate = RateLimit {
        requests_per_sec: requests(
            &path.key("client_ip_requests_per_sec"),
            raw.client_ip_requests_per_sec,
        )?,
        upload_bytes_per_sec: bytes(
            &path.key("client_ip_bytes_per_sec"),
            raw.client_ip_bytes_per_sec,
        )?,
        download_bytes_per_sec: bytes(
            &path.key("client_ip_bytes_per_sec"),
            raw.client_ip_bytes_per_sec,
        )?,
        burst,
    };
    let bucket_rate = RateLimit {
        requests_per_sec: requests(
            &path.key("bucket_requests_per_sec"),
            raw.bucket_requests_per_sec,
        )?,
        upload_bytes_per_sec: bytes(&path.key("bucket_bytes_per_sec"), raw.bucket_bytes_per_sec)?,
        download_bytes_per_sec: bytes(&path.key("bucket_bytes_per_sec"), raw.bucket_bytes_per_sec)?,
        burst,
    };
    Ok(Limits {
        connections_max,
        client_ip_connections_max: cap(
            &path.key("client_ip_connections_max"),
            raw.client_ip_connections_max,
        )?,
        client_ip_rate,
        bucket_rate,
        node_inflight_max: cap(&path.key("node_inflight_max"), raw.node_inflight_max)?,
        rebalance_interval: window(
            &path.key("rebalance_interval"),
            raw.rebalance_interval,
            d.rebalance_interval,
            REBALANCE_INTERVAL,
        )?,
        table_entries_max: count(
            &path.key("table_entries_max"),
            raw.table_entries_max,
            d.table_entries_max,
            TABLE_ENTRIES,
        )?,
        burst,
        quantum_bytes_max: size_within(
            &path.key("quantum_bytes_max"),
            raw.quantum_bytes_max,
            d.quantum_bytes_max,
            QUANTUM_BYTES,
        )?,
    })
}

fn classes(
    path: &KeyPath,
    raw: Vec<RawClass>,
    defaults_path: &KeyPath,
    default_name: Option<String>,
    burst: Duration,
) -> Result<(Vec<Class>, ClassId), Invalid> {
    limit_len(path, raw.len(), CLASSES_MAX)?;
    let mut classes: Vec<Class> = Vec::with_capacity(raw.len().max(1));
    for (i, rc) in raw.into_iter().enumerate() {
        let class_path = path.index(i);
        let name = unique_name(&class_path.key("name"), rc.name, "class", &classes, |c| {
            &c.name
        })?;
        let flat = RawRate {
            requests_per_sec: rc.requests_per_sec,
            bytes_per_sec: rc.bytes_per_sec,
            upload_bytes_per_sec: rc.upload_bytes_per_sec,
            download_bytes_per_sec: rc.download_bytes_per_sec,
            burst: rc.burst,
        };
        classes.push(Class {
            name,
            weight: bounded(
                &class_path.key("weight"),
                rc.weight,
                CLASS_WEIGHT_DEFAULT,
                CLASS_WEIGHT,
            )?,
            latency_sensitive: rc.latency_sensitive.unwrap_or(false),
            queue_max: count(
                &class_path.key("queue_max"),
                rc.queue_max,
                CLASS_QUEUE_MAX_DEFAULT,
                QUEUE_MAX,
            )?,
            queue_timeout: window(
                &class_path.key("queue_timeout"),
                rc.queue_timeout,
                CLASS_QUEUE_TIMEOUT_DEFAULT,
                QUEUE_TIMEOUT,
            )?,
            rate: rate(&class_path, flat, rc.rate, burst)?,
        });
    }
    if classes.is_empty() {
        classes.push(Class::implicit_default());
    }
    let default_class = match default_name {
        None => ClassId(0),
        Some(name) => class_index(&defaults_path.key("class"), &name, &classes)?,
    };
    Ok((classes, default_class))
}

/// The tenants, the default tenant and the access key index.
type Tenants = (Vec<Tenant>, TenantId, HashMap<String, TenantId>);

/// What tenants and rules refer to, validated before them.
#[derive(Clone, Copy)]
struct Refs<'a> {
    classes: &'a [Class],
    pools: &'a [Pool],
    /// `[limits] burst`, the default of every rate's.
    burst: Duration,
    /// The bucket names bucket globs must be able to match.
    names: BucketNames,
}

fn tenants(
    path: &KeyPath,
    raw: Vec<RawTenant>,
    defaults_path: &KeyPath,
    default_name: Option<String>,
    refs: &Refs<'_>,
) -> Result<Tenants, Invalid> {
    let Refs {
        classes,
        pools,
        burst,
        names,
    } = *refs;
    limit_len(path, raw.len(), TENANTS_MAX)?;
    let mut tenants: Vec<Tenant> = Vec::with_capacity(raw.len() + 1);
    let mut keys: HashMap<String, TenantId> = HashMap::new();
    // (index, path of its `default` key) of the tenant marked `default = true`.
    let mut marked: Option<(usize, KeyPath)> = None;
    for (i, rt) in raw.into_iter().enumerate() {
        let tenant_path = path.index(i);
        if rt.connections_max.is_some() {
            return Err(Invalid::new(
                &tenant_path.key("connections_max"),
                "tenants have no connection cap: a connection has no tenant until a request \
                 arrives, and access keys are not secrets; use inflight_max (requests in \
                 flight) instead",
            ));
        }
        let name = unique_name(&tenant_path.key("name"), rt.name, "tenant", &tenants, |t| {
            &t.name
        })?;
        if rt.default == Some(true) {
            let key = tenant_path.key("default");
            if let Some((first, _)) = &marked {
                return Err(Invalid::new(
                    &key,
                    format!("only one tenant may be the default (also tenant[{first}])"),
                ));
            }
            marked = Some((i, key));
        }
        let access_keys = rt.access_keys.unwrap_or_default();
        let keys_path = tenant_path.key("access_keys");
        limit_len(&keys_path, access_keys.len(), ACCESS_KEYS_PER_TENANT_MAX)?;
        for (j, key) in access_keys.iter().enumerate() {
            let item = keys_path.index(j);
            if !is_access_key(key) {
                return Err(Invalid::new(
                    &item,
                    format!(
                        "{key:?} is not an access key id (1..=128 printable ASCII characters \
                         without / , = % : or spaces)"
                    ),
                ));
            }
            if let Some(&TenantId(other)) = keys.get(key.as_str()) {
                let whose = if other == i {
                    "this tenant".to_owned()
                } else {
                    format!("tenant[{other}]")
                };
                return Err(Invalid::new(
                    &item,
                    format!("duplicate access key {key:?} (also in {whose})"),
                ));
            }
            keys.insert(key.clone(), TenantId(i));
        }
        let client_names = rt.client_names.unwrap_or_default();
        let names_path = tenant_path.key("client_names");
        limit_len(&names_path, client_names.len(), ACCESS_KEYS_PER_TENANT_MAX)?;
        for (j, n) in client_names.iter().enumerate() {
            let item = names_path.index(j);
            let ok = (1..=253).contains(&n.len())
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            if !ok {
                return Err(Invalid::new(
                    &item,
                    format!("{n:?} is not a certificate DNS name"),
                ));
            }
            let name_key = format!("{CLIENT_NAME_PREFIX}{}", n.to_ascii_lowercase());
            if let Some(&TenantId(other)) = keys.get(&name_key) {
                return Err(Invalid::new(
                    &item,
                    format!("duplicate client name {n:?} (also in tenant[{other}])"),
                ));
            }
            keys.insert(name_key, TenantId(i));
        }
        let buckets = match rt.buckets {
            None => None,
            Some(texts) => {
                let list_path = tenant_path.key("buckets");
                if texts.is_empty() {
                    return Err(Invalid::new(
                        &list_path,
                        "an empty list would deny every bucket; remove the key to allow all",
                    ));
                }
                limit_len(&list_path, texts.len(), CONDITION_ITEMS_MAX)?;
                let mut globs = Vec::with_capacity(texts.len());
                for (j, text) in texts.iter().enumerate() {
                    globs.push(bucket_glob(&list_path.index(j), text, names)?);
                }
                Some(globs)
            }
        };
        let allowed_pools = rt
            .pools
            .map(|names| pool_chain(&tenant_path, None, Some(names), pools))
            .transpose()?;
        let class = rt
            .class
            .map(|c| class_index(&tenant_path.key("class"), &c, classes))
            .transpose()?;
        let mut pool_credentials = Vec::new();
        let creds_path = tenant_path.key("pool_credentials");
        for (pool_name, raw_creds) in rt.pool_credentials.unwrap_or_default() {
            let item = creds_path.key(&pool_name);
            let Some(pool) = pools.iter().position(|p| p.name == pool_name) else {
                return Err(Invalid::new(&item, format!("no pool named {pool_name:?}")));
            };
            if allowed_pools.as_ref().is_some_and(|a| !a.contains(&pool)) {
                return Err(Invalid::new(
                    &item,
                    format!("the tenant may not use pool {pool_name:?} (see its pools)"),
                ));
            }
            pool_credentials.push((pool, auth::credentials(&item, raw_creds)?));
        }
        let flat = RawRate {
            requests_per_sec: rt.requests_per_sec,
            bytes_per_sec: rt.bytes_per_sec,
            upload_bytes_per_sec: rt.upload_bytes_per_sec,
            download_bytes_per_sec: rt.download_bytes_per_sec,
            burst: rt.burst,
        };
        tenants.push(Tenant {
            name,
            access_keys,
            client_names,
            buckets,
            pools: allowed_pools,
            class,
            rate: rate(&tenant_path, flat, rt.rate, burst)?,
            inflight_max: cap(&tenant_path.key("inflight_max"), rt.inflight_max)?,
            pool_credentials,
        });
    }
    let default_tenant = match (default_name, marked) {
        (Some(_), Some((i, _))) => {
            return Err(Invalid::new(
                &defaults_path.key("tenant"),
                format!("tenant[{i}] is marked default = true; set the default in one place only"),
            ))
        }
        (Some(name), None) => {
            let key = defaults_path.key("tenant");
            match tenants.iter().position(|t| t.name == name) {
                Some(i) => TenantId(i),
                None => return Err(unknown(&key, "tenant", &name, &tenants, |t| &t.name)),
            }
        }
        (None, Some((i, _))) => TenantId(i),
        // A tenant called "default" is the default unless another one is marked.
        (None, None) => match tenants.iter().position(|t| t.name == DEFAULT_TENANT_NAME) {
            Some(i) => TenantId(i),
            None => {
                tenants.push(Tenant::implicit_default(burst));
                TenantId(tenants.len() - 1)
            }
        },
    };
    Ok((tenants, default_tenant, keys))
}

fn rules(
    path: &KeyPath,
    raw: Vec<RawRule>,
    tenants: &[Tenant],
    refs: &Refs<'_>,
) -> Result<Vec<Rule>, Invalid> {
    let Refs {
        classes,
        pools,
        burst,
        names,
    } = *refs;
    limit_len(path, raw.len(), RULES_MAX)?;
    let mut rules = Vec::with_capacity(raw.len());
    for (i, rr) in raw.into_iter().enumerate() {
        let rule_path = path.index(i);
        let tenant = match rr.tenant {
            None => None,
            Some(name) => {
                let key = rule_path.key("tenant");
                match tenants.iter().position(|t| t.name == name) {
                    Some(t) => Some(TenantId(t)),
                    None => return Err(unknown(&key, "tenant", &name, tenants, |t| &t.name)),
                }
            }
        };
        let bucket = rr
            .bucket
            .map(|text| bucket_glob(&rule_path.key("bucket"), &text, names))
            .transpose()?;
        let ops = match rr.op {
            None => Vec::new(),
            Some(OneOrMany(names)) => ops(&rule_path.key("op"), &names)?,
        };
        let client_cidrs = match rr.client_cidr {
            None => Vec::new(),
            Some(OneOrMany(texts)) => cidrs(&rule_path.key("client_cidr"), &texts)?,
        };
        let pools = match (rr.pool, rr.pools) {
            (None, None) => None,
            (pool, pools_list) => Some(pool_chain(&rule_path, pool, pools_list, pools)?),
        };
        let class = rr
            .class
            .map(|c| class_index(&rule_path.key("class"), &c, classes))
            .transpose()?;
        let flat = RawRate {
            requests_per_sec: rr.requests_per_sec,
            bytes_per_sec: rr.bytes_per_sec,
            upload_bytes_per_sec: rr.upload_bytes_per_sec,
            download_bytes_per_sec: rr.download_bytes_per_sec,
            burst: rr.burst,
        };
        let rate = rate(&rule_path, flat, rr.rate, burst)?;
        let timeouts =
            super::routes::route_timeouts(&rule_path, rr.first_byte_timeout, rr.io_timeout)?;
        if pools.is_none() && class.is_none() && rate.is_unlimited() && timeouts.is_empty() {
            return Err(Invalid::new(
                &rule_path,
                "the rule sets nothing: give it pool/pools, class, a rate \
                 (requests_per_sec, bytes_per_sec, ...) or a timeout",
            ));
        }
        rules.push(Rule {
            tenant,
            bucket,
            ops,
            client_cidrs,
            pools,
            class,
            rate,
            timeouts,
        });
    }
    Ok(rules)
}

/// `op`: names of [`OpClass`], no duplicates, at least one.
fn ops(path: &KeyPath, names: &[String]) -> Result<Vec<OpClass>, Invalid> {
    if names.is_empty() {
        return Err(Invalid::new(
            path,
            "at least one op is required (or leave the key out: any op)",
        ));
    }
    limit_len(path, names.len(), CONDITION_ITEMS_MAX)?;
    let mut ops: Vec<OpClass> = Vec::with_capacity(names.len());
    for (j, name) in names.iter().enumerate() {
        let Some(op) = OpClass::from_name(name) else {
            let known: Vec<&str> = OpClass::ALL.iter().map(|o| o.as_str()).collect();
            return Err(Invalid::new(
                &path.index(j),
                format!("unknown op {name:?} (ops: {known:?})"),
            ));
        };
        if ops.contains(&op) {
            return Err(Invalid::new(
                &path.index(j),
                format!("duplicate op {name:?}"),
            ));
        }
        ops.push(op);
    }
    Ok(ops)
}

/// `client_cidr`: address blocks, no duplicates, at least one.
fn cidrs(path: &KeyPath, texts: &[String]) -> Result<Vec<Cidr>, Invalid> {
    if texts.is_empty() {
        return Err(Invalid::new(
            path,
            "at least one block is required (or leave the key out: any client)",
        ));
    }
    limit_len(path, texts.len(), CONDITION_ITEMS_MAX)?;
    let mut blocks: Vec<Cidr> = Vec::with_capacity(texts.len());
    for (j, text) in texts.iter().enumerate() {
        let item = path.index(j);
        let block: Cidr = text
            .parse()
            .map_err(|e| Invalid::new(&item, format!("bad CIDR block {text:?}: {e}")))?;
        if let Some(first) = blocks.iter().position(|b| *b == block) {
            return Err(Invalid::new(
                &item,
                format!("duplicate block {block} (also client_cidr[{first}])"),
            ));
        }
        blocks.push(block);
    }
    Ok(blocks)
}

/// A tenant's, class's or rule's rates: the inline keys and the `rate` table, each key
/// set in at most one of the two places. `bytes_per_sec` sets both directions;
/// `upload_bytes_per_sec` / `download_bytes_per_sec` override one.
fn rate(
    owner: &KeyPath,
    flat: RawRate,
    nested: Option<RawRate>,
    burst_default: Duration,
) -> Result<RateLimit, Invalid> {
    let nested_path = owner.key("rate");
    let nested = nested.unwrap_or_default();
    // Picks the one place a key is set, and names that place in errors.
    fn pick<T>(
        owner: &KeyPath,
        nested_path: &KeyPath,
        name: &str,
        flat: Option<T>,
        nested: Option<T>,
    ) -> Result<(KeyPath, Option<T>), Invalid> {
        match (flat, nested) {
            (Some(_), Some(_)) => Err(Invalid::new(
                &nested_path.key(name),
                format!("also set as {name} outside the rate table; set it once"),
            )),
            (Some(v), None) => Ok((owner.key(name), Some(v))),
            (None, v) => Ok((nested_path.key(name), v)),
        }
    }
    let (p, v) = pick(
        owner,
        &nested_path,
        "requests_per_sec",
        flat.requests_per_sec,
        nested.requests_per_sec,
    )?;
    let requests_per_sec = requests(&p, v)?;
    let (p, v) = pick(
        owner,
        &nested_path,
        "bytes_per_sec",
        flat.bytes_per_sec,
        nested.bytes_per_sec,
    )?;
    let both = bytes(&p, v)?;
    let (p, v) = pick(
        owner,
        &nested_path,
        "upload_bytes_per_sec",
        flat.upload_bytes_per_sec,
        nested.upload_bytes_per_sec,
    )?;
    let upload = bytes(&p, v)?.or(both);
    let (p, v) = pick(
        owner,
        &nested_path,
        "download_bytes_per_sec",
        flat.download_bytes_per_sec,
        nested.download_bytes_per_sec,
    )?;
    let download = bytes(&p, v)?.or(both);
    let (p, v) = pick(owner, &nested_path, "burst", flat.burst, nested.burst)?;
    let burst = window(&p, v, burst_default, BURST)?;
    Ok(RateLimit {
        requests_per_sec,
        upload_bytes_per_sec: upload,
        download_bytes_per_sec: download,
        burst,
    })
}

// === value helpers ===

/// An optional requests-per-second rate.
fn requests(path: &KeyPath, raw: Option<u64>) -> Result<Option<u64>, Invalid> {
    match raw {
        None => Ok(None),
        Some(n) if REQUESTS_PER_SEC.contains(&n) => Ok(Some(n)),
        Some(n) => Err(Invalid::new(
            path,
            format!(
                "{n} is outside {}..={} (leave the key out for no limit)",
                REQUESTS_PER_SEC.start(),
                REQUESTS_PER_SEC.end()
            ),
        )),
    }
}

/// An optional bytes-per-second rate, written as a size ("4GiB" = 4GiB per second).
fn bytes(path: &KeyPath, raw: Option<ConfigSize>) -> Result<Option<u64>, Invalid> {
    raw.map(|r| size_within(path, Some(r), 0, BYTES_PER_SEC))
        .transpose()
}

/// An optional in-flight or connection cap.
fn cap(path: &KeyPath, raw: Option<u32>) -> Result<Option<u32>, Invalid> {
    raw.map(|n| bounded(path, Some(n), 0, CAP)).transpose()
}

/// A size within bounds, as `u64` (rates may exceed 32-bit `usize`).
fn size_within(
    path: &KeyPath,
    raw: Option<ConfigSize>,
    default: u64,
    bounds: RangeInclusive<u64>,
) -> Result<u64, Invalid> {
    let Some(ConfigSize(value)) = raw else {
        return Ok(default);
    };
    if bounds.contains(&value) {
        return Ok(value);
    }
    Err(Invalid::new(
        path,
        format!(
            "{} is outside {}..={}",
            format_size(value),
            format_size(*bounds.start()),
            format_size(*bounds.end())
        ),
    ))
}

/// A label-safe name not yet used by an earlier item of the same kind.
fn unique_name<T>(
    path: &KeyPath,
    name: String,
    kind: &str,
    earlier: &[T],
    name_of: impl Fn(&T) -> &String,
) -> Result<String, Invalid> {
    if !is_label_name(&name) {
        return Err(Invalid::new(
            path,
            format!("{name:?} is not a {kind} name (1..={LABEL_LEN_MAX} of A-Z a-z 0-9 _ . -)"),
        ));
    }
    if let Some(first) = earlier.iter().position(|t| *name_of(t) == name) {
        return Err(Invalid::new(
            path,
            format!("duplicate {kind} name {name:?} (also {kind}[{first}])"),
        ));
    }
    Ok(name)
}

/// Resolves a class name.
fn class_index(path: &KeyPath, name: &str, classes: &[Class]) -> Result<ClassId, Invalid> {
    classes
        .iter()
        .position(|c| c.name == name)
        .map(ClassId)
        .ok_or_else(|| unknown(path, "class", name, classes, |c| &c.name))
}

/// `unknown tenant "x" (tenants: [...])`; `kind` is "tenant" or "class".
fn unknown<T>(
    path: &KeyPath,
    kind: &str,
    name: &str,
    known: &[T],
    name_of: impl Fn(&T) -> &String,
) -> Invalid {
    let names: Vec<&str> = known.iter().map(|t| name_of(t).as_str()).collect();
    let plural = if kind == "class" {
        "classes"
    } else {
        "tenants"
    };
    Invalid::new(
        path,
        format!("unknown {kind} {name:?} ({plural}: {names:?})"),
    )
}
