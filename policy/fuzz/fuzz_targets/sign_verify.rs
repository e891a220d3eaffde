//! Re-signing, checked by verifying: what weir signs for a pool, weir's verifier (which
//! follows S3's rules) must accept, for any request a client can send.
//!
//! The input is a text request head (see `weir_policy_fuzz::Head`). The harness does
//! what the appliance does before forwarding (`appliance/src/identity.rs`, `resign`):
//! strip the presigned parameters from the query, drop the client's `Authorization`,
//! `X-Amz-Date`, `X-Amz-Security-Token` and `Host`, [`sign`] as the pool (keeping
//! `content-md5` covered), replace `x-amz-content-sha256`, add the signed headers. When
//! [`sign`] accepts the request, [`verify`] with the pool's key at the same instant and
//! zero skew must accept the result with the same signature; [`sign`] refusing is fine
//! (its errors are weir's own: a header name it cannot sign, a broken path or query).

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use weir_policy::sigv4::{
    sign, strip_presigned_params, verify, Identity, Presigned, RequestParts, Scope, SigningKey,
    Timestamp,
};
use weir_policy_fuzz::Head;

const POOL_AKID: &str = "POOLKEY";
const POOL_SECRET: &str = "pool-secret";
const POOL_HOST: &str = "10.0.0.1:9000";
/// As the appliance: what a client's signature brings that the re-signed head replaces.
const REPLACED: [&str; 4] = [
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "host",
];
const EXTRA_SIGNED: [&str; 1] = ["content-md5"];

fuzz_target!(|data: &[u8]| {
    let Some(head) = Head::parse(data) else {
        return;
    };
    let Some(time) = Timestamp::from_system_time(head.now) else {
        return;
    };
    let key = SigningKey::derive(
        POOL_SECRET.as_bytes(),
        Scope::new(time.date(), "eu-central-1", "s3"),
    );
    let (path, query) = head.target.split_once('?').unwrap_or((head.target, ""));
    let query = strip_presigned_params(query);
    assert!(!Presigned::is_presigned(&query), "{query}");
    let target = if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    };
    let kept: Vec<(&[u8], &[u8])> = head
        .headers
        .iter()
        .copied()
        .filter(|(name, _)| {
            !REPLACED
                .iter()
                .any(|r| name.eq_ignore_ascii_case(r.as_bytes()))
        })
        .collect();
    let parts = RequestParts::new(head.method, &target, kept.iter().copied());
    let identity = Identity {
        access_key: POOL_AKID,
        key: &key,
    };
    let Ok(signed) = sign(&parts, &identity, POOL_HOST, &EXTRA_SIGNED, head.now) else {
        return;
    };

    let mut forwarded: Vec<(&[u8], &[u8])> = kept
        .into_iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case(b"x-amz-content-sha256"))
        .collect();
    let new_headers = signed.headers();
    forwarded.extend(
        new_headers
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes())),
    );
    let parts = RequestParts::new(head.method, &target, forwarded.iter().copied());
    let mut pool = |k: &str| (k == POOL_AKID).then_some(POOL_SECRET);
    match verify(&parts, &mut pool, head.now, Duration::ZERO) {
        Ok(v) => {
            assert_eq!(v.seed_signature, signed.signature);
            assert_eq!(v.payload.to_header_value(), signed.content_sha256);
            assert_eq!(v.signed_headers, signed.signed_headers);
        }
        Err(e) => panic!(
            "weir's own signature does not verify: {e:?}\nmethod {:?} target {target:?}\nheaders {:#?}",
            head.method,
            forwarded
                .iter()
                .map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v)))
                .collect::<Vec<_>>()
        ),
    }
});
