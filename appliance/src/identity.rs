//! Identity at the edge (`docs/identity.md`): verifying clients' SigV4
//! signatures against the tenants' secrets, and re-signing what goes to a pool that has
//! `credentials` of its own. The rules live in `weir_policy::sigv4`; this module owns the
//! secrets (from [`Settings`]), the clock, and the per-core cache of derived keys.
//!
//! Driven by the request pipeline's edge stage (`proxy/admit.rs`) once per request (verify, before admission: a forged
//! request costs weir a head and an HMAC, never a node's time) and once per attempt or
//! resume (re-sign for the pool of the node picked, so failover to a site with other
//! credentials works).

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::SystemTime;

use weir_io::http::{write_request_head, Header, RequestHead};
use weir_policy::classify::Denied;
use weir_policy::config::AuthMode;
use weir_policy::route::s3_target;
use weir_policy::s3code::S3Code;
use weir_policy::sigv4::{
    self, strip_presigned_params, ChunkSigner, ChunkStream, ChunkVerifier, Identity, KeyLookup,
    PayloadHash, RequestParts, Scope, SigV4Error, SigningKey,
};

use crate::settings::{PoolIdentity, Settings};

/// Derived keys kept per core before the cache starts over (a key is one day's, for
/// one access key and region: a handful per tenant).
const CACHED_KEYS_MAX: usize = 4096;

/// Headers a client's signature brings that the re-signed request replaces.
const REPLACED: [&str; 5] = [
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "host",
    "x-amz-content-sha256",
];

/// Client-signed headers worth keeping covered by the new signature (beyond `host` and
/// every `x-amz-*`, which are always signed).
const EXTRA_SIGNED: [&str; 1] = ["content-md5"];

/// A request refused at the edge: what the client is answered and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// S3 error code.
    pub code: S3Code,
    /// Human-readable message.
    pub message: String,
    /// `reason` label of `weir_auth_failures_total`.
    pub reason: &'static str,
}

impl From<SigV4Error> for Refusal {
    fn from(e: SigV4Error) -> Self {
        let (status, code) = e.s3_status();
        Refusal {
            status,
            code,
            message: e.to_string(),
            reason: e.metric_reason(),
        }
    }
}

/// One core's derived signing keys, for tenants and for pools (kept apart: a tenant and
/// a pool may use the same access key id with different secrets). Lives in the epoch,
/// so a reload that changes a secret starts with an empty cache.
#[derive(Default)]
pub struct KeyCache {
    tenants: RefCell<HashMap<(String, Scope), SigningKey>>,
    pools: RefCell<HashMap<PoolKeyId, SigningKey>>,
}

/// A pool signing key's cache id: (pool, the tenant whose own identity it is — `None`
/// for the pool's — and the scope).
type PoolKeyId = (usize, Option<usize>, Scope);

/// [`KeyLookup`] over the tenants' secrets, through the cache.
struct TenantKeys<'a> {
    settings: &'a Settings,
    cache: &'a KeyCache,
}

impl KeyLookup for TenantKeys<'_> {
    fn signing_key(&mut self, access_key: &str, scope: &Scope) -> Option<SigningKey> {
        let mut cache = self.cache.tenants.borrow_mut();
        let id = (access_key.to_owned(), scope.clone());
        if let Some(key) = cache.get(&id) {
            return Some(key.clone());
        }
        let secret = self.settings.tenant_secrets.get(access_key)?;
        let key = SigningKey::derive(secret.expose(), scope.clone());
        if cache.len() >= CACHED_KEYS_MAX {
            cache.clear();
        }
        cache.insert(id, key.clone());
        Some(key)
    }
}

/// The tenants' signing keys (the secrets file), through `cache`: what a client's
/// signature is verified with.
pub fn tenant_keys<'a>(settings: &'a Settings, cache: &'a KeyCache) -> impl KeyLookup + 'a {
    TenantKeys { settings, cache }
}

/// The refusal of a request carrying a session token (`X-Amz-Security-Token`): weir holds
/// long-term keys only, so it cannot check the credentials a token names.
pub fn security_token_refusal() -> Refusal {
    Refusal {
        status: 403,
        code: S3Code::InvalidToken,
        message: "temporary credentials (x-amz-security-token) are not accepted here".into(),
        reason: "security_token",
    }
}

fn parts(head: &RequestHead) -> RequestParts<'_, impl sigv4::HeaderIter<'_>> {
    RequestParts::new(
        head.method.as_str(),
        &head.target,
        head.headers
            .iter()
            .map(|h| (h.name.as_bytes(), h.value.as_slice())),
    )
}

/// The refusal of a request classification refused: a target that is ambiguous or names
/// an invalid bucket (400, docs/identity.md "Request targets"), or one the tenant's access
/// policy (`buckets`, `pools`) does not allow (403).
pub fn denied(denied: Denied, bucket: Option<&str>) -> Refusal {
    let (status, code, message) = match denied {
        Denied::Target(e) => (400, e.s3_code(), e.to_string()),
        Denied::Bucket => (
            403,
            S3Code::AccessDenied,
            format!(
                "Access Denied: the tenant may not use bucket {:?}",
                bucket.unwrap_or_default()
            ),
        ),
        Denied::CopySourceBucket => (
            403,
            S3Code::AccessDenied,
            "Access Denied: the tenant may not read the copy source's bucket".into(),
        ),
        Denied::Pool => (
            403,
            S3Code::AccessDenied,
            "Access Denied: the tenant may not use the pools serving this bucket".into(),
        ),
    };
    Refusal {
        status,
        code,
        message,
        reason: denied.label(),
    }
}

/// Verifies the request's signature when `auth.mode = "verify"`; `Ok` when auth is off.
/// A streaming-signed upload's chunks are verified as they pass: its verifier is returned.
pub fn verify(
    settings: &Settings,
    cache: &KeyCache,
    head: &RequestHead,
    now: SystemTime,
) -> Result<Option<sigv4::Verified>, Refusal> {
    let auth = &settings.config.auth;
    if auth.mode == AuthMode::Off {
        return Ok(None);
    }
    let mut keys = TenantKeys { settings, cache };
    let verified = sigv4::verify(&parts(head), &mut keys, now, auth.skew_max)?;
    if verified.security_token.is_some() {
        return Err(security_token_refusal());
    }
    Ok(Some(verified))
}

/// The identity `tenant`'s requests are re-signed with for `pool`: the tenant's own
/// (`pool_credentials`), else the pool's (`credentials`), else none. The second value
/// says whose: `Some(tenant)` for the tenant's own.
fn identity_for(
    settings: &Settings,
    tenant: usize,
    pool: usize,
) -> Option<(&PoolIdentity, Option<usize>)> {
    if let Some(own) = settings.tenant_pool_identities.get(&(tenant, pool)) {
        return Some((own, Some(tenant)));
    }
    settings
        .pool_identities
        .get(pool)
        .and_then(Option::as_ref)
        .map(|id| (id, None))
}

/// Whether `tenant`'s requests to `pool` are re-signed.
pub fn resigns(settings: &Settings, tenant: usize, pool: usize) -> bool {
    identity_for(settings, tenant, pool).is_some()
}

/// A streaming-signed upload (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`) whose chunk
/// signatures weir checks (auth verifies) or rewrites (a pool of its chain re-signs):
/// made once per request, it gives each attempt its [`ChunkStream`].
pub struct Streaming {
    trailer: bool,
    decoded_length: Option<u64>,
    verifier: Option<ChunkVerifier>,
    chunk_bytes_max: u64,
}

impl Streaming {
    /// The body's checker for one attempt; `signer` when that attempt's pool re-signs.
    pub fn stream(&self, signer: Option<ChunkSigner>) -> ChunkStream {
        ChunkStream::new(
            self.trailer,
            self.verifier.clone(),
            signer,
            self.decoded_length,
            self.chunk_bytes_max,
        )
    }
}

/// Whether the body of `head` must pass through a [`ChunkStream`]: a streaming-signed
/// upload that weir verifies (`verifier`) or that a pool of `chain` re-signs. `None`: the
/// body moves as it came (by splice). Refuses a bad `x-amz-decoded-content-length`.
pub fn streaming(
    settings: &Settings,
    tenant: usize,
    chain: &[usize],
    head: &RequestHead,
    verifier: Option<ChunkVerifier>,
) -> Result<Option<Streaming>, Refusal> {
    let payload = head
        .header("x-amz-content-sha256")
        .and_then(|v| PayloadHash::parse(v).ok());
    let Some(payload) = payload.filter(PayloadHash::has_chunk_signatures) else {
        return Ok(None);
    };
    if verifier.is_none() && !chain.iter().any(|&p| resigns(settings, tenant, p)) {
        return Ok(None);
    }
    let decoded_length = match head.header("x-amz-decoded-content-length") {
        None => None,
        Some(v) => Some(
            std::str::from_utf8(v)
                .ok()
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| Refusal {
                    status: 400,
                    code: S3Code::InvalidArgument,
                    message: "x-amz-decoded-content-length is not a byte count".into(),
                    reason: "malformed_chunk",
                })?,
        ),
    };
    Ok(Some(Streaming {
        trailer: payload == PayloadHash::StreamingTrailer,
        decoded_length,
        verifier,
        chunk_bytes_max: settings.config.auth.chunk_bytes_max,
    }))
}

/// The head to send to node `node` of `pool`, re-signed for `tenant`'s identity there
/// ([`identity_for`]) and the node's Host; `None` when there is none (send the client's
/// head as is).
/// The client's `Authorization`, presigned query parameters and session token are
/// dropped; its declared `x-amz-content-sha256` is kept, so a header-signed body moves
/// unchanged. A streaming-signed upload also gets the signer of its new chunk chain.
pub fn resign(
    settings: &Settings,
    cache: &KeyCache,
    tenant: usize,
    pool: usize,
    node: usize,
    head: &RequestHead,
    now: SystemTime,
) -> Result<Option<(RequestHead, Option<ChunkSigner>)>, SigV4Error> {
    let Some((access_key, key)) = pool_signer(settings, cache, tenant, pool, now)? else {
        return Ok(None);
    };
    let host = settings
        .node_entry(pool, node)
        .map_or_else(String::new, ToString::to_string);
    let mut out = head.clone();
    out.target = node_target(settings, head)?;
    out.headers
        .retain(|h| !REPLACED[..4].iter().any(|name| h.is(name)));
    let signed = sigv4::sign(
        &parts(&out),
        &Identity {
            access_key: &access_key,
            key: &key,
        },
        &host,
        &EXTRA_SIGNED,
        now,
    )?;
    out.headers.retain(|h| !h.is(REPLACED[4]));
    for (i, (name, value)) in signed.headers().into_iter().enumerate() {
        let header = Header::new(name, value.as_bytes().to_vec());
        if i == 0 {
            out.headers.insert(0, header);
        } else {
            out.headers.push(header);
        }
    }
    let chunks = PayloadHash::parse(signed.content_sha256.as_bytes())
        .is_ok_and(|p| p.has_chunk_signatures())
        .then(|| signed.chunk_signer(&key));
    Ok(Some((out, chunks)))
}

/// The identity `tenant`'s requests to `pool` are re-signed with at `now` ([`identity_for`]):
/// its access key and today's signing key (cached per core); `None` when the pool does
/// not re-sign for the tenant.
pub fn pool_signer(
    settings: &Settings,
    cache: &KeyCache,
    tenant: usize,
    pool: usize,
    now: SystemTime,
) -> Result<Option<(String, SigningKey)>, SigV4Error> {
    let Some((identity, whose)) = identity_for(settings, tenant, pool) else {
        return Ok(None);
    };
    let time = sigv4::Timestamp::from_system_time(now)
        .ok_or(SigV4Error::Unsignable("time outside years 1970..=9999"))?;
    let scope = Scope::new(time.date(), identity.region.clone(), "s3");
    let mut keys = cache.pools.borrow_mut();
    let id = (pool, whose, scope.clone());
    let key = match keys.get(&id) {
        Some(k) => k.clone(),
        None => {
            let k = SigningKey::derive(identity.secret.expose(), scope);
            if keys.len() >= CACHED_KEYS_MAX {
                keys.clear();
            }
            keys.insert(id, k.clone());
            k
        }
    };
    Ok(Some((identity.access_key.clone(), key)))
}

/// The target to send a re-signed request to a node with: presigned query parameters
/// dropped, and a virtual-host request (`bucket.<suffix>` Host) made path-style — the
/// node's Host replaces the client's, so the bucket moves into the path: the same
/// canonical bucket classification decided on (lower-cased), never the Host's spelling.
pub fn node_target(settings: &Settings, head: &RequestHead) -> Result<String, SigV4Error> {
    let (path, query) = head.target.split_once('?').unwrap_or((&head.target, ""));
    let query = strip_presigned_params(query);
    let appliance = &settings.config.appliance;
    let target = s3_target(
        head.host(),
        path,
        &appliance.virtual_host_suffixes,
        appliance.bucket_names,
    )
    .map_err(|_| SigV4Error::Unsignable("a request target classification refuses"))?;
    let path = match target.filter(|t| t.virtual_host) {
        Some(t) if path == "/" => format!("/{}", t.bucket),
        Some(t) => format!("/{}{path}", t.bucket),
        None => path.to_owned(),
    };
    Ok(if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    })
}

/// A request re-signed for a pool: the head to write and, for a streaming-signed
/// upload, the signer of the body's new chunk chain.
pub struct Resigned {
    /// The serialised head.
    pub head: Vec<u8>,
    /// The new chunk chain's signer (streaming-signed uploads only).
    pub chunks: Option<ChunkSigner>,
}

/// [`resign`], serialised: the head bytes to write to the node, or `None` to send the
/// client's.
pub fn resigned_bytes(
    settings: &Settings,
    cache: &KeyCache,
    tenant: usize,
    pool: usize,
    node: usize,
    head: &RequestHead,
    now: SystemTime,
) -> Result<Option<Resigned>, SigV4Error> {
    Ok(
        resign(settings, cache, tenant, pool, node, head, now)?.map(|(h, chunks)| {
            let mut bytes = Vec::with_capacity(1024);
            write_request_head(&h, &mut bytes);
            Resigned {
                head: bytes,
                chunks,
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};
    use weir_io::http::{parse_request, HeadLimits};
    use weir_policy::config::{Config, Secret};

    const SKEW: Duration = Duration::from_secs(900);

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn settings(extra: &str) -> Settings {
        let text = format!(
            "{extra}\n[[pool]]\nname = \"a\"\nnodes = [\"127.0.0.1:9001\"]\n\
             credentials = {{ access_key = \"SITEA\", secret = \"site-a-secret\", region = \"eu-west-1\" }}\n\
             [[pool]]\nname = \"b\"\nnodes = [\"127.0.0.1:9002\"]\n"
        );
        let mut s = Settings::resolve(Config::from_toml_str(&text, "t").unwrap()).unwrap();
        s.pool_identities = vec![
            Some(PoolIdentity {
                access_key: "SITEA".into(),
                secret: Secret::new("site-a-secret").unwrap(),
                region: "eu-west-1".into(),
            }),
            None,
        ];
        s
    }

    fn head(raw: &str) -> RequestHead {
        let limits = HeadLimits {
            header_bytes_max: 16 << 10,
            headers_count_max: 64,
        };
        parse_request(raw.as_bytes(), &limits).unwrap().unwrap().0
    }

    #[test]
    fn resigned_head_verifies_with_the_pool_key_and_node_host() {
        let s = settings("");
        let cache = KeyCache::default();
        let client = head(
            "GET /bucket/key?versionId=3&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=T%2F20231114%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20231114T221320Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=00 HTTP/1.1\r\n\
             Host: weir.example\r\nRange: bytes=0-9\r\nx-amz-meta-a: 1\r\n\r\n",
        );
        let (out, chunks) = resign(&s, &cache, 0, 0, 0, &client, now())
            .unwrap()
            .unwrap();
        assert!(chunks.is_none());
        assert_eq!(out.target, "/bucket/key?versionId=3");
        assert_eq!(out.host(), Some("127.0.0.1:9001"));
        assert_eq!(out.header("range"), Some(&b"bytes=0-9"[..]));
        let mut keys = |k: &str| (k == "SITEA").then_some("site-a-secret");
        let verified = sigv4::verify(&parts(&out), &mut keys, now(), SKEW).unwrap();
        assert_eq!(verified.access_key, "SITEA");
        assert_eq!(verified.scope.region, "eu-west-1");
        assert_eq!(verified.payload, PayloadHash::Unsigned);
        assert!(verified.signed_headers.contains("x-amz-meta-a"));
        // The pool without credentials gets the client's head.
        assert!(resign(&s, &cache, 0, 1, 0, &client, now())
            .unwrap()
            .is_none());
        // Bytes: one Host, one Authorization, CRLF-terminated.
        let bytes = resigned_bytes(&s, &cache, 0, 0, 0, &client, now())
            .unwrap()
            .unwrap()
            .head;
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(text.matches("\r\nHost:").count(), 1, "{text}");
        assert_eq!(text.matches("\r\nAuthorization:").count(), 1, "{text}");
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn a_virtual_host_request_is_resigned_path_style() {
        let s = settings("[appliance]\nvirtual_host_suffixes = [\"s3.weir.example\"]\n");
        let cache = KeyCache::default();
        let resigned = |raw: &str| {
            let (out, _) = resign(&s, &cache, 0, 0, 0, &head(raw), now())
                .unwrap()
                .unwrap();
            let mut keys = |k: &str| (k == "SITEA").then_some("site-a-secret");
            sigv4::verify(&parts(&out), &mut keys, now(), SKEW).unwrap();
            (out.target.clone(), out.host().map(str::to_owned))
        };
        assert_eq!(
            resigned("GET /dir/key%20x?versionId=3 HTTP/1.1\r\nHost: photos.s3.weir.example:9000\r\n\r\n"),
            ("/photos/dir/key%20x?versionId=3".into(), Some("127.0.0.1:9001".into()))
        );
        assert_eq!(
            resigned("GET /?list-type=2 HTTP/1.1\r\nHost: photos.s3.weir.example\r\n\r\n"),
            ("/photos?list-type=2".into(), Some("127.0.0.1:9001".into()))
        );
        // Path-style requests to the suffix itself keep their path.
        assert_eq!(
            resigned("GET /photos/k HTTP/1.1\r\nHost: s3.weir.example\r\n\r\n").0,
            "/photos/k"
        );
        // The bucket moved into the path is the canonical one classification decided on:
        // lower-cased, whatever the Host's case, trailing dot or port; a bucket also named
        // in the path stays part of the key (the Host wins, as in S3).
        for host in [
            "Lab-X.s3.weir.example",
            "LAB-X.S3.WEIR.EXAMPLE.",
            "lab-x.s3.weir.example.:9000",
        ] {
            let raw = format!("GET /bench/small-0 HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert_eq!(resigned(&raw).0, "/lab-x/bench/small-0", "{host}");
        }
        // A target classification refuses is never re-signed (it never gets this far).
        for raw in [
            "GET /k HTTP/1.1\r\nHost: ab.s3.weir.example\r\n\r\n",
            "GET /%62ench/k HTTP/1.1\r\nHost: weir.example\r\n\r\n",
        ] {
            assert!(matches!(
                resign(&s, &cache, 0, 0, 0, &head(raw), now()),
                Err(SigV4Error::Unsignable(_))
            ));
        }
    }

    #[test]
    fn a_refused_target_is_answered_400_with_its_s3_code_and_reason() {
        use weir_policy::classify::TargetError;
        let r = denied(Denied::Target(TargetError::EncodedBucket), None);
        assert_eq!(
            (r.status, r.code, r.reason),
            (400, S3Code::InvalidURI, "ambiguous_target")
        );
        let r = denied(Denied::Target(TargetError::InvalidBucketName), None);
        assert_eq!(
            (r.status, r.code, r.reason),
            (400, S3Code::InvalidBucketName, "invalid_bucket_name")
        );
        let r = denied(Denied::Bucket, Some("bench"));
        assert_eq!(
            (r.status, r.code, r.reason),
            (403, S3Code::AccessDenied, "bucket_denied")
        );
        assert!(r.message.contains("\"bench\""), "{}", r.message);
    }

    /// A request signed for `/bench/small-0` and sent with another spelling is either not
    /// verified, or verified against a canonical form that names the same bucket and key
    /// the node decodes, and then refused by classification when the spelling is
    /// ambiguous: it never passes with policy decided on another bucket.
    #[test]
    fn a_respelled_signed_request_fails_verification_or_classification() {
        let mut s = settings("[auth]\nmode = \"verify\"\nsecrets_file = \"x\"\n");
        s.tenant_secrets
            .insert("TENANT".into(), Secret::new("tenant-secret").unwrap());
        let cache = KeyCache::default();
        let key = SigningKey::derive(
            b"tenant-secret",
            Scope::new(
                sigv4::Timestamp::from_system_time(now()).unwrap().date(),
                "us-east-1",
                "s3",
            ),
        );
        let signed_for = |target: &str| {
            let unsigned = head(&format!(
                "GET {target} HTTP/1.1\r\nHost: weir.example\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\n\r\n"
            ));
            let signed = sigv4::sign(
                &parts(&unsigned),
                &Identity {
                    access_key: "TENANT",
                    key: &key,
                },
                "weir.example",
                &[],
                now(),
            )
            .unwrap();
            let mut out = unsigned.clone();
            out.headers
                .retain(|h| !h.is("host") && !h.is("x-amz-content-sha256"));
            for (name, value) in signed.headers() {
                out.headers
                    .push(Header::new(name, value.as_bytes().to_vec()));
            }
            out
        };
        let classify = |h: &RequestHead| {
            s.config.classify(&weir_policy::classify::Request {
                method: h.method.as_str(),
                host: h.host(),
                path: h.path(),
                query: h.query(),
                access_key: weir_policy::classify::access_key(None, h.query()),
                client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
                client_name: None,
                copy_sources: &[],
            })
        };
        let original = signed_for("/bench/small-0");
        for sent in [
            "/%62ench/small-0",
            "//bench/small-0",
            "/./bench/small-0",
            "/lab-x/../bench/small-0",
            "/bench%2Fsmall-0",
        ] {
            let mut respelled = original.clone();
            respelled.target = sent.into();
            let verified = verify(&s, &cache, &respelled, now()).is_ok();
            let refused = matches!(classify(&respelled).denied, Some(Denied::Target(_)));
            assert!(!verified || refused, "{sent}: verified and not refused");
        }
        // Encoded bytes in the key verify (S3 canonicalises the same way) and name the
        // same bucket and key to every node: allowed.
        let mut key_encoded = original.clone();
        key_encoded.target = "/bench/small-%30".into();
        assert!(verify(&s, &cache, &key_encoded, now()).is_ok());
        let c = classify(&key_encoded);
        assert_eq!((c.denied, c.bucket.as_deref()), (None, Some("bench")));
    }

    #[test]
    fn verify_refuses_with_the_s3_code_and_metric_reason() {
        let mut s = settings("[auth]\nmode = \"verify\"\nsecrets_file = \"x\"\n");
        s.tenant_secrets
            .insert("TENANT".into(), Secret::new("tenant-secret").unwrap());
        let cache = KeyCache::default();
        // A request signed by the tenant, built with the same signer weir re-signs with.
        let key = SigningKey::derive(
            b"tenant-secret",
            Scope::new(
                sigv4::Timestamp::from_system_time(now()).unwrap().date(),
                "us-east-1",
                "s3",
            ),
        );
        let unsigned = head("GET /b/k HTTP/1.1\r\nHost: weir.example\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\n\r\n");
        let signed = sigv4::sign(
            &parts(&unsigned),
            &Identity {
                access_key: "TENANT",
                key: &key,
            },
            "weir.example",
            &[],
            now(),
        )
        .unwrap();
        let mut good = unsigned.clone();
        good.headers
            .retain(|h| !h.is("host") && !h.is("x-amz-content-sha256"));
        for (name, value) in signed.headers() {
            good.headers
                .push(Header::new(name, value.as_bytes().to_vec()));
        }
        // The verified signer comes back: it, not a second reading of the credentials,
        // names the tenant.
        let verified = verify(&s, &cache, &good, now()).ok().flatten();
        assert_eq!(verified.map(|v| v.access_key).as_deref(), Some("TENANT"));

        let reason = |h: &RequestHead, at: SystemTime| verify(&s, &cache, h, at).unwrap_err();
        let mut tampered = good.clone();
        tampered.target = "/b/other".into();
        let r = reason(&tampered, now());
        assert_eq!(
            (r.status, r.code, r.reason),
            (403, S3Code::SignatureDoesNotMatch, "bad_signature")
        );
        let r = reason(&good, now() + Duration::from_secs(3600));
        assert_eq!(
            (r.status, r.code, r.reason),
            (403, S3Code::RequestTimeTooSkewed, "skewed")
        );
        let r = reason(&unsigned, now());
        assert_eq!(
            (r.status, r.code, r.reason),
            (403, S3Code::AccessDenied, "unsigned")
        );
        s.tenant_secrets.clear();
        let cache = KeyCache::default();
        let r = verify(&s, &cache, &good, now()).unwrap_err();
        assert_eq!(
            (r.code, r.reason),
            (S3Code::InvalidAccessKeyId, "unknown_key")
        );
    }
}
