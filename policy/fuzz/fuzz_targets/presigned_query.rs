//! Presigned-URL authentication: the raw query of a request target, `X-Amz-*` parameters
//! among the client's own.
//!
//! The input is a raw query (after `?`). Checked:
//! - [`Presigned::parse`] never panics, and what it accepts round-trips: its fields,
//!   encoded again as an SDK would (every reserved byte escaped), parse back equal;
//! - [`Presigned::is_presigned`] agrees with it;
//! - [`strip_presigned_params`] (the query weir forwards when it re-signs) leaves no
//!   presigned parameter behind, is idempotent, and keeps the other parameters byte for
//!   byte and in order.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_policy::sigv4::{strip_presigned_params, Presigned, ALGORITHM};
use weir_policy_fuzz::uri_encode;

fuzz_target!(|data: &[u8]| {
    // The appliance hands the verifier the target as `&str`.
    let query = String::from_utf8_lossy(data);
    let presigned = Presigned::is_presigned(&query);
    if let Ok(p) = Presigned::parse(&query) {
        assert!(presigned, "{query}");
        let mut again = format!(
            "X-Amz-Algorithm={ALGORITHM}&X-Amz-Credential={}&X-Amz-Date={}&X-Amz-Expires={}\
             &X-Amz-SignedHeaders={}&X-Amz-Signature={}",
            uri_encode(p.credential.to_string().as_bytes()),
            p.time,
            p.expires.as_secs(),
            uri_encode(p.signed_headers.as_str().as_bytes()),
            p.signature,
        );
        if let Some(token) = &p.security_token {
            again.push_str("&X-Amz-Security-Token=");
            again.push_str(&uri_encode(token.as_bytes()));
        }
        assert_eq!(Presigned::parse(&again).as_ref(), Ok(&p), "{again}");
    }

    let stripped = strip_presigned_params(&query);
    assert!(!Presigned::is_presigned(&stripped), "{query} -> {stripped}");
    assert_eq!(strip_presigned_params(&stripped), stripped);
    // What is kept is a subsequence of the input's non-empty `&` segments.
    let mut input = query.split('&').filter(|s| !s.is_empty());
    for kept in stripped.split('&').filter(|s| !s.is_empty()) {
        assert!(input.any(|s| s == kept), "{query} -> {stripped}");
    }
});
