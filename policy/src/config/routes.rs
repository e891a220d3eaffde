//! Per-route settings (docs/config.md, "Per-route settings"): a route's `key_prefix`
//! within its buckets, and the upstream timeouts a route or rule overrides. The decision
//! carries the effective timeouts, so the request path looks nothing up again.

use std::time::Duration;

use super::check::timeout;
use super::error::{Invalid, KeyPath};
use super::units::ConfigDuration;
use super::{Config, Route, Upstream};
use crate::route::{BucketGlob, KeyPrefix, RoutingKey};

/// The upstream timeouts one request runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Time from the request being sent to the first response byte.
    pub first_byte: Duration,
    /// Longest silence while relaying a body in either direction.
    pub io: Duration,
}

/// The timeouts a `[[route]]` or `[[rule]]` sets; `None` = not set there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouteTimeouts {
    /// `first_byte_timeout`.
    pub first_byte: Option<Duration>,
    /// `io_timeout`.
    pub io: Option<Duration>,
}

impl RouteTimeouts {
    /// These timeouts where set, `base` elsewhere.
    pub fn over(self, base: Timeouts) -> Timeouts {
        Timeouts {
            first_byte: self.first_byte.unwrap_or(base.first_byte),
            io: self.io.unwrap_or(base.io),
        }
    }

    /// Whether neither is set.
    pub fn is_empty(&self) -> bool {
        self.first_byte.is_none() && self.io.is_none()
    }
}

impl Upstream {
    /// The global timeouts, which every request has unless its route or rule overrides.
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            first_byte: self.first_byte_timeout,
            io: self.io_timeout,
        }
    }
}

impl Config {
    /// The index of the `[[route]]` that takes a request for `bucket` with routing key
    /// `key` (its object key, or a listing's prefix: [`RoutingKey`]): the first, in file
    /// order, whose glob matches and whose `key_prefix`, if any, the key starts with.
    /// `None`: no route (pool 0 alone, the global timeouts).
    pub fn route_index(&self, bucket: Option<&str>, key: Option<&RoutingKey>) -> Option<usize> {
        let bucket = bucket?;
        self.routes.iter().position(|r| {
            r.bucket.matches(bucket)
                && r.key_prefix
                    .as_ref()
                    .is_none_or(|p| key.is_some_and(|k| p.contains(k)))
        })
    }

    /// Whether some route for `bucket` has a `key_prefix`.
    pub fn routes_by_key_for(&self, bucket: &str) -> bool {
        self.routes
            .iter()
            .any(|r| r.key_prefix.is_some() && r.bucket.matches(bucket))
    }

    /// Whether some route has a `key_prefix`, so that a request's routing key is needed.
    pub fn routes_by_key(&self) -> bool {
        self.routes.iter().any(|r| r.key_prefix.is_some())
    }
}

/// A route's or rule's `first_byte_timeout` and `io_timeout`, with the units and floor
/// of `[upstream]`'s.
pub(super) fn route_timeouts(
    owner: &KeyPath,
    first_byte: Option<ConfigDuration>,
    io: Option<ConfigDuration>,
) -> Result<RouteTimeouts, Invalid> {
    let one = |name: &str, raw: Option<ConfigDuration>| match raw {
        None => Ok(None),
        Some(d) => timeout(&owner.key(name), Some(d), d.0).map(Some),
    };
    Ok(RouteTimeouts {
        first_byte: one("first_byte_timeout", first_byte)?,
        io: one("io_timeout", io)?,
    })
}

/// A route's `key_prefix`.
pub(super) fn key_prefix(path: &KeyPath, text: Option<&str>) -> Result<Option<KeyPrefix>, Invalid> {
    text.map(|t| {
        KeyPrefix::new(t).map_err(|e| Invalid::new(path, format!("bad key prefix {t:?}: {e}")))
    })
    .transpose()
}

/// Refuses a route with `key_prefix` that can never match: an earlier route takes every
/// bucket its glob matches and every key under its prefix (the earlier one has no
/// `key_prefix`, or a shorter one). The error names the later route's `key_prefix`.
pub(super) fn check_shadowing(path: &KeyPath, routes: &[Route]) -> Result<(), Invalid> {
    for (i, later) in routes.iter().enumerate() {
        let Some(prefix) = &later.key_prefix else {
            continue;
        };
        let earlier = routes.iter().enumerate().take(i).find(|(_, r)| {
            covers(&r.bucket, &later.bucket)
                && r.key_prefix.as_ref().is_none_or(|p| p.covers(prefix))
        });
        if let Some((j, r)) = earlier {
            let by = match &r.key_prefix {
                None => format!(
                    "route[{j}] (bucket = {:?}) takes the whole bucket",
                    r.bucket.as_str()
                ),
                Some(p) => format!(
                    "route[{j}] (bucket = {:?}, key_prefix = {:?}) takes those keys",
                    r.bucket.as_str(),
                    p.as_str()
                ),
            };
            return Err(Invalid::new(
                &path.index(i).key("key_prefix"),
                format!(
                    "key prefix {:?} for bucket {:?} never matches: {by} first; \
                     put this route before it",
                    prefix.as_str(),
                    later.bucket.as_str()
                ),
            ));
        }
    }
    Ok(())
}

/// Whether glob `a` matches every bucket glob `b` matches, as far as can be told cheaply:
/// the same pattern, `a` all stars, or `b` a plain name that `a` matches. (A pair this
/// misses is not refused: the check finds the shadowing operators write, not all.)
fn covers(a: &BucketGlob, b: &BucketGlob) -> bool {
    let (pa, pb) = (a.as_str(), b.as_str());
    pa == pb || pa.bytes().all(|c| c == b'*') || (!pb.contains(['*', '?']) && a.matches(pb))
}
