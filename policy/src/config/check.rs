//! Checks of single values shared by the validators of every section: counts and sizes
//! within bounds, list lengths, listen addresses, label names, bucket globs and pool
//! chains. Each failure names the key at fault; the bounds are the callers' named constants.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use super::error::{Invalid, KeyPath};
use super::units::{format_duration, format_size, ConfigDuration, ConfigSize};
use super::Pool;
use crate::route::{BucketGlob, BucketNames};

/// Shortest timeout: zero would fire immediately, which is never what was meant.
const TIMEOUT_MIN: Duration = Duration::from_millis(1);
/// Most pools, nodes per pool and routes: every table has a bound.
pub(super) const POOLS_MAX: usize = 256;
/// Longest pool, tenant or class name (each is a metric label value).
pub(super) const LABEL_LEN_MAX: usize = 64;

/// A `[[route]]`, `[[rule]]` or `[[tenant]]` bucket glob, which must be able to match a
/// bucket name under `names` (the canonical buckets requests are classified by).
pub(super) fn bucket_glob(
    path: &KeyPath,
    text: &str,
    names: BucketNames,
) -> Result<BucketGlob, Invalid> {
    BucketGlob::for_names(text, names)
        .map_err(|e| Invalid::new(path, format!("bad bucket glob {text:?}: {e}")))
}

/// A route's or rule's `pool` (one) or `pools` (a failover chain, ordered by the pools'
/// priority, ties as written), exactly one of the two.
pub(super) fn pool_chain(
    owner: &KeyPath,
    pool: Option<String>,
    pool_list: Option<Vec<String>>,
    pools: &[Pool],
) -> Result<Vec<usize>, Invalid> {
    match (pool, pool_list) {
        (Some(name), None) => Ok(vec![pool_index(&owner.key("pool"), &name, pools)?]),
        (None, Some(names)) => {
            let list_path = owner.key("pools");
            if names.is_empty() {
                return Err(Invalid::new(&list_path, "at least one pool is required"));
            }
            limit_len(&list_path, names.len(), POOLS_MAX)?;
            let mut chain: Vec<usize> = Vec::with_capacity(names.len());
            for (j, name) in names.iter().enumerate() {
                let item = list_path.index(j);
                let index = pool_index(&item, name, pools)?;
                if let Some(first) = chain.iter().position(|&p| p == index) {
                    return Err(Invalid::new(
                        &item,
                        format!("duplicate pool {name:?} (also pools[{first}])"),
                    ));
                }
                chain.push(index);
            }
            // Stable: equal priorities keep the order written.
            chain.sort_by_key(|&p| pools.get(p).map_or(u32::MAX, |pool| pool.priority));
            Ok(chain)
        }
        (Some(_), Some(_)) => Err(Invalid::new(
            &owner.key("pools"),
            "set either pool (one) or pools (a failover chain), not both",
        )),
        (None, None) => Err(Invalid::new(
            owner,
            "missing key `pool` (or `pools` for a failover chain)",
        )),
    }
}

/// Resolves a pool name used by a route.
fn pool_index(path: &KeyPath, name: &str, pools: &[Pool]) -> Result<usize, Invalid> {
    pools.iter().position(|p| p.name == name).ok_or_else(|| {
        let known: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
        Invalid::new(path, format!("unknown pool {name:?} (pools: {known:?})"))
    })
}

/// A listen-style `ip:port`; port 0 is refused because every core binds the same address
/// with `SO_REUSEPORT`, and an ephemeral port would differ per core.
pub(super) fn socket_addr(path: &KeyPath, text: &str) -> Result<SocketAddr, Invalid> {
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
pub(super) fn size(
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

/// A count with its default and bounds (`usize` or `u32`, as the key is stored).
pub(super) fn count<T: Copy + PartialOrd + std::fmt::Display>(
    path: &KeyPath,
    raw: Option<T>,
    default: T,
    bounds: RangeInclusive<T>,
) -> Result<T, Invalid> {
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

/// A `u32` count with its default and bounds.
pub(super) fn bounded(
    path: &KeyPath,
    raw: Option<u32>,
    default: u32,
    bounds: RangeInclusive<u32>,
) -> Result<u32, Invalid> {
    count(path, raw, default, bounds)
}

/// A ratio in `0.0..=1.0` (NaN and infinities, which TOML allows, are refused).
pub(super) fn ratio(path: &KeyPath, raw: Option<f64>, default: f64) -> Result<f64, Invalid> {
    let value = raw.unwrap_or(default);
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(Invalid::new(
            path,
            format!("{value} is outside 0.0..=1.0 (e.g. 0.2 = retries add at most 20%)"),
        ))
    }
}

/// A timeout with its default; the upper bound is enforced when parsing.
pub(super) fn timeout(
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

/// A duration with its default and bounds.
pub(super) fn window(
    path: &KeyPath,
    raw: Option<ConfigDuration>,
    default: Duration,
    bounds: RangeInclusive<Duration>,
) -> Result<Duration, Invalid> {
    let value = raw.map_or(default, |ConfigDuration(d)| d);
    if bounds.contains(&value) {
        return Ok(value);
    }
    Err(Invalid::new(
        path,
        format!(
            "{} is outside {}..={}",
            format_duration(value),
            format_duration(*bounds.start()),
            format_duration(*bounds.end())
        ),
    ))
}

/// Rejects lists longer than their bound.
pub(super) fn limit_len(path: &KeyPath, len: usize, max: usize) -> Result<(), Invalid> {
    if len > max {
        return Err(Invalid::new(
            path,
            format!("{len} entries; at most {max} are allowed"),
        ));
    }
    Ok(())
}

/// Pool, tenant and class names appear in metric labels and log lines, so they stay
/// short and plain.
pub(super) fn is_label_name(name: &str) -> bool {
    (1..=LABEL_LEN_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}
