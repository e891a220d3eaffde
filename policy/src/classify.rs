//! Who is asking, for what, and what follows from it: a request head → tenant (from the
//! access key), bucket, operation class, rule, QoS class and pool chain.
//!
//! Driven by the appliance once per request, after the head is parsed and before
//! admission. Classification does not authenticate: the access key is read from the
//! SigV4/SigV2 credential without checking the signature (that is `[auth] mode = "verify"`,
//! done before this), so without verification anyone who knows a key id can be counted as
//! that tenant (docs/limits.md). Keys that are unknown, absent or malformed fall into the
//! default tenant.
//!
//! The bucket is the one the storage node will act on, canonical, and the same one the
//! rules, routes, limits, access policy and metrics see; a target that nodes could read as
//! another bucket is refused ([`Denied::Target`], answered 400 before admission), never
//! taken as "no bucket" (docs/identity.md, "Request targets"). The bucket of a copy
//! source (`x-amz-copy-source`), which the node also reads, is held to the same rules and
//! to the tenant's `buckets`.

use std::net::IpAddr;

use crate::config::Config;
use crate::route::{copy_source_bucket, is_access_key, op_class, s3_target, RoutingKey};

pub use crate::route::TargetError;

pub use crate::config::{Class, ClassId, TenantId};
pub use crate::route::OpClass;

/// The parts of a request head classification looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method, case-sensitive (`GET`).
    pub method: &'a str,
    /// The `Host` header, if any.
    pub host: Option<&'a str>,
    /// The origin-form request target; anything from `?` on is ignored (see `query`).
    pub path: &'a str,
    /// The raw query string without `?`.
    pub query: Option<&'a str>,
    /// The access key that names the tenant: the key whose signature `[auth]` verified,
    /// or, with verification off, the key the request claims ([`access_key`]). Taken
    /// from the caller, never re-read here: a second reading of the credentials could
    /// find another key than the one that was verified.
    pub access_key: Option<&'a str>,
    /// The client's address (the TCP peer).
    pub client_ip: IpAddr,
    /// The DNS name of the client's verified TLS certificate, if it presented one.
    pub client_name: Option<&'a str>,
    /// Every `x-amz-copy-source` value (CopyObject, UploadPartCopy; normally none or
    /// one): a second bucket the node reads.
    pub copy_sources: &'a [&'a [u8]],
}

/// What the appliance needs to admit, queue, route and account a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// The tenant (an index into `Config::tenants`; the default tenant for unknown keys).
    pub tenant: TenantId,
    /// The bucket addressed, canonical (`route::s3_target`); `None` for the service root
    /// (ListBuckets) and for a refused target.
    pub bucket: Option<String>,
    /// The kind of S3 operation.
    pub op: OpClass,
    /// The QoS class: the rule's, else the tenant's, else the default class.
    pub class: ClassId,
    /// The pool chain, best priority first (feed it to `balance::pick`); never empty.
    pub pools: Vec<usize>,
    /// The index of the `[[rule]]` that decided, if any.
    pub rule: Option<usize>,
    /// The index of the `[[route]]` that gave the pool chain (`None`: a rule's `pools`
    /// did, or no route matched).
    pub route: Option<usize>,
    /// The upstream timeouts of the request: the deciding rule's where it sets them, else
    /// the route's (when the route table gave the chain), else `[upstream]`'s.
    pub timeouts: crate::config::Timeouts,
    /// The client's address in canonical form (IPv4-mapped IPv6 as IPv4), the key of
    /// per-client-IP limits.
    pub client_ip: IpAddr,
    /// Set when the request is refused at classification: an ambiguous or invalid target
    /// (answered 400), or the tenant's access policy (its `buckets` or `pools`, answered
    /// `AccessDenied`). Either way no node sees it and no limit is charged.
    pub denied: Option<Denied>,
}

/// Why a request is refused at classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The target is ambiguous or names an invalid bucket (400, before access policy).
    Target(TargetError),
    /// The bucket matches none of the tenant's `buckets`.
    Bucket,
    /// The copy source's bucket matches none of the tenant's `buckets`.
    CopySourceBucket,
    /// No pool of the request's chain is among the tenant's `pools`.
    Pool,
}

impl Denied {
    /// The `reason` label (of `weir_auth_failures_total`).
    pub fn label(self) -> &'static str {
        match self {
            Denied::Target(e) => e.metric_reason(),
            Denied::Bucket | Denied::CopySourceBucket => "bucket_denied",
            Denied::Pool => "pool_denied",
        }
    }
}

impl Config {
    /// Classifies a request: tenant from the access key, bucket and op from the head, then
    /// the first `[[rule]]` whose conditions all hold; its `pools` (else the `[[route]]`
    /// table, else pool 0) and `class` (else the tenant's, else the default class).
    pub fn classify(&self, req: &Request<'_>) -> Classified {
        let appliance = &self.appliance;
        let (target, mut refused) = match s3_target(
            req.host,
            req.path,
            &appliance.virtual_host_suffixes,
            appliance.bucket_names,
        ) {
            Ok(target) => (target, None),
            Err(e) => (None, Some(Denied::Target(e))),
        };
        let copy_source = match req.copy_sources {
            [] => Ok(None),
            [value] => std::str::from_utf8(value)
                .map_err(|_| TargetError::MalformedCopySource)
                .and_then(|v| copy_source_bucket(v, appliance.bucket_names))
                .map(Some),
            _ => Err(TargetError::MalformedCopySource),
        };
        let copy_source = copy_source.unwrap_or_else(|e| {
            refused = refused.or(Some(Denied::Target(e)));
            None
        });
        let bucket = target.as_ref().map(|t| t.bucket.as_ref());
        let op = op_class(
            req.method,
            target.as_ref().is_some_and(|t| t.has_key()),
            req.query,
        );
        // A verified certificate is an identity; an access key is only a claim until
        // `[auth]` verifies it, so the certificate decides when it names a tenant.
        let tenant = req
            .client_name
            .and_then(|name| self.tenant_of_client_name(name))
            .or_else(|| req.access_key.and_then(|key| self.tenant_of_key(key)))
            .unwrap_or(self.default_tenant);
        let client_ip = req.client_ip.to_canonical();
        let rule = self
            .rules
            .iter()
            .position(|r| r.matches(tenant, bucket, op, client_ip));
        let decided = rule.and_then(|i| self.rules.get(i));
        // With `key_prefix` routes, the key (or a listing's prefix) takes part: compared
        // canonically, so no spelling of a key escapes its route (`route::RoutingKey`).
        let key = match &target {
            Some(t) if self.routes_by_key() => {
                if t.has_key() {
                    RoutingKey::of_path_key(t.key)
                } else {
                    RoutingKey::of_listing(req.method, req.query)
                }
            }
            _ => None,
        };
        let (route, mut pools) = match decided.and_then(|r| r.pools.as_ref()) {
            Some(chain) => (None, chain.clone()),
            None => {
                // A form upload (PostObject) names its key in the body: were the bucket
                // routed by key prefix, the object could land apart from its reads.
                if let Some(t) = &target {
                    let form =
                        req.method == "POST" && !t.has_key() && req.query.is_none_or(str::is_empty);
                    if form && self.routes_by_key_for(&t.bucket) {
                        refused = refused.or(Some(Denied::Target(TargetError::KeyInBody)));
                    }
                }
                let route = self.route_index(bucket, key.as_ref());
                let chain = route
                    .and_then(|i| self.routes.get(i))
                    .map_or_else(|| self.route(None).to_vec(), |r| r.pools.clone());
                (route, chain)
            }
        };
        let route_timeouts = route
            .and_then(|i| self.routes.get(i))
            .map_or_else(Default::default, |r| r.timeouts);
        let timeouts = decided
            .map_or_else(Default::default, |r| r.timeouts)
            .over(route_timeouts.over(self.upstream.timeouts()));
        let denied = refused.or_else(|| {
            let t = self.tenants.get(tenant.0)?;
            if let Some(globs) = &t.buckets {
                let allowed = |b: &str| globs.iter().any(|g| g.matches(b));
                if bucket.is_some_and(|b| !allowed(b)) {
                    return Some(Denied::Bucket);
                }
                if copy_source.is_some_and(|b| !allowed(b)) {
                    return Some(Denied::CopySourceBucket);
                }
            }
            let allowed = t.pools.as_ref()?;
            // The chain keeps its order, cut to the pools the tenant may use: failover
            // goes only where the tenant is allowed.
            if !pools.iter().any(|p| allowed.contains(p)) {
                return Some(Denied::Pool);
            }
            pools.retain(|p| allowed.contains(p));
            None
        });
        let class = decided
            .and_then(|r| r.class)
            .or_else(|| self.tenants.get(tenant.0).and_then(|t| t.class))
            .unwrap_or(self.default_class);
        Classified {
            tenant,
            bucket: bucket.map(str::to_owned),
            op,
            class,
            pools,
            rule,
            route,
            timeouts,
            client_ip,
            denied,
        }
    }
}

/// The access key id a request is signed with, if any:
///
/// - SigV4 (and SigV4a) `Authorization: AWS4-… Credential=AKID/date/region/s3/aws4_request, …`;
/// - SigV2 `Authorization: AWS AKID:signature`;
/// - presigned SigV4 `X-Amz-Credential=AKID%2Fdate%2F…` (or with a literal `/`), and
///   presigned SigV2 `AWSAccessKeyId=AKID` in the query.
///
/// The header wins over the query; the query is read only when the header carries no
/// credential. Keys that would need percent-decoding, or that are not plausible key ids
/// ([`is_access_key`]), give `None` (the default tenant), which also keeps the result a
/// borrow of the input.
///
/// This is a claim, for `[auth] mode = "off"`, where nothing is verified: with
/// verification on, the tenant is the verified key's ([`Request::access_key`]). Spaces
/// and tabs separate the header's parts as the SigV4 verifier reads them.
pub fn access_key<'a>(authorization: Option<&'a str>, query: Option<&'a str>) -> Option<&'a str> {
    authorization
        .and_then(|header| header_access_key(header.trim_matches([' ', '\t'])))
        .filter(|k| is_access_key(k))
        .or_else(|| {
            query
                .and_then(query_access_key)
                .filter(|k| is_access_key(k))
        })
}

/// The key id of a SigV4 or SigV2 `Authorization` header.
fn header_access_key(header: &str) -> Option<&str> {
    let (scheme, params) = header.split_once([' ', '\t'])?;
    if scheme.starts_with("AWS4-") {
        let credential = params
            .split(',')
            .find_map(|part| part.trim_matches([' ', '\t']).strip_prefix("Credential="))?;
        return credential.split_once('/').map(|(key, _)| key);
    }
    if scheme == "AWS" {
        return params
            .trim_matches([' ', '\t'])
            .split_once(':')
            .map(|(key, _)| key);
    }
    None
}

/// The key id of a presigned URL's query.
fn query_access_key(query: &str) -> Option<&str> {
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if name.eq_ignore_ascii_case("X-Amz-Credential") {
            let end = value
                .find('/')
                .into_iter()
                .chain(find_ignore_case(value, "%2F"))
                .min()?;
            value.get(..end)
        } else if name == "AWSAccessKeyId" {
            Some(value)
        } else {
            None
        }
    })
}

/// Byte offset of the first case-insensitive occurrence of an ASCII `needle`.
fn find_ignore_case(haystack: &str, needle: &str) -> Option<usize> {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    (0..=h.len().checked_sub(n.len())?).find(|&i| {
        h.get(i..i + n.len())
            .is_some_and(|window| window.eq_ignore_ascii_case(n))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const V4: &str = "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20240101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";

    #[test]
    fn access_keys() {
        let cases: &[(Option<&str>, Option<&str>, Option<&str>)] = &[
            (Some(V4), None, Some("AKIAEXAMPLE")),
            (
                Some("AWS4-HMAC-SHA256 Credential=K1/d/r/s3/aws4_request,SignedHeaders=host,Signature=x"),
                None,
                Some("K1"),
            ),
            (
                Some("AWS4-ECDSA-P256-SHA256 Credential=K2/d/s3/aws4_request, SignedHeaders=host, Signature=x"),
                None,
                Some("K2"),
            ),
            (Some("AWS K3:c2lnbmF0dXJl"), None, Some("K3")),
            (Some("  AWS K3:sig  "), None, Some("K3")),
            // A tab separates the scheme as the verifier reads it.
            (
                Some("AWS4-HMAC-SHA256\tCredential=K8/d/r/s3/aws4_request,SignedHeaders=host,Signature=x"),
                None,
                Some("K8"),
            ),
            (Some("AWS\tK9:sig"), None, Some("K9")),
            (
                None,
                Some("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=K4%2F20240101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=x"),
                Some("K4"),
            ),
            (None, Some("x-amz-credential=K5%2fd%2Fr"), Some("K5")),
            (None, Some("X-Amz-Credential=K6/d/r/s3/aws4_request"), Some("K6")),
            (None, Some("AWSAccessKeyId=K7&Expires=1&Signature=x"), Some("K7")),
            // The header wins over the query.
            (Some(V4), Some("AWSAccessKeyId=K7"), Some("AKIAEXAMPLE")),
            // Unsigned, malformed or implausible.
            (None, None, None),
            (None, Some("list-type=2"), None),
            (Some("Bearer token"), None, None),
            (Some("AWS4-HMAC-SHA256 SignedHeaders=host"), None, None),
            (Some("AWS4-HMAC-SHA256 Credential=NOSLASH"), None, None),
            (Some("AWS4-HMAC-SHA256 Credential=/d/r/s3/aws4_request"), None, None),
            (Some("AWS nocolon"), None, None),
            (None, Some("X-Amz-Credential=K%41%2Fd"), None),
            (None, Some("X-Amz-Credential=K8"), None),
            // A header without a credential leaves the query to decide.
            (Some(""), Some("AWSAccessKeyId=K7"), Some("K7")),
        ];
        for &(authorization, query, want) in cases {
            assert_eq!(
                access_key(authorization, query),
                want,
                "{authorization:?} {query:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_input_gives_a_plausible_key_or_none(
            authorization in proptest::option::of("\\PC{0,80}"),
            query in proptest::option::of("\\PC{0,80}"),
        ) {
            if let Some(key) = access_key(authorization.as_deref(), query.as_deref()) {
                prop_assert!(is_access_key(key));
            }
        }

        #[test]
        fn a_sigv4_key_round_trips(key in "[A-Za-z0-9._~+-]{1,128}") {
            let header = format!("AWS4-HMAC-SHA256 Credential={key}/20240101/r/s3/aws4_request, SignedHeaders=host, Signature=x");
            prop_assert_eq!(access_key(Some(&header), None), Some(key.as_str()));
            let query = format!("X-Amz-Credential={key}%2F20240101%2Fr%2Fs3%2Faws4_request");
            prop_assert_eq!(access_key(None, Some(&query)), Some(key.as_str()));
        }
    }
}
