//! [`verify`] on arbitrary requests: method, target, headers, clock and skew all from the
//! input (a text request head, see `weir_policy_fuzz::Head`), the key of AWS's examples
//! the only one known.
//!
//! Checked: verification never panics, whatever the head (header-signed, presigned,
//! both, neither, streaming); every error maps to an S3 answer; and what does verify
//! keeps the promises the appliance relies on: the known key, service `s3`, the scope's
//! date the request's, `host` signed, every `x-amz-*` header present signed (but
//! `x-amz-content-sha256`), the time within the skew (header-signed) or the presigned
//! window, a chunk verifier exactly for signed streaming payloads.

#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use weir_policy::sigv4::{header_pairs, verify, RequestParts, Timestamp, Verified};
use weir_policy_fuzz::{Head, AKID, SECRET};

fuzz_target!(|data: &[u8]| {
    let Some(head) = Head::parse(data) else {
        return;
    };
    let parts = RequestParts::new(head.method, head.target, head.header_iter());
    let mut keys = |k: &str| (k == AKID).then_some(SECRET);
    match verify(&parts, &mut keys, head.now, head.skew) {
        Ok(verified) => check_verified(&head, &verified),
        Err(e) => {
            let (status, code) = e.s3_status();
            assert!(
                (400..600).contains(&status) && code != weir_policy::s3code::S3Code::Other,
                "{e:?}"
            );
            assert!(!e.to_string().is_empty());
        }
    }
    // The same request without its headers: never verifies (host must be signed).
    let none: [(&str, &str); 0] = [];
    let bare = RequestParts::new(head.method, head.target, header_pairs(&none));
    assert!(verify(&bare, &mut keys, head.now, head.skew).is_err());
});

fn check_verified(head: &Head<'_>, v: &Verified) {
    assert_eq!(v.access_key, AKID);
    assert_eq!(v.scope.service, "s3");
    assert_eq!(v.scope.date, v.time.date());
    assert!(v.signed_headers.contains("host"));
    for (name, _) in &head.headers {
        let is_amz = name.len() >= 6 && name[..6].eq_ignore_ascii_case(b"x-amz-");
        if is_amz && !name.eq_ignore_ascii_case(b"x-amz-content-sha256") {
            assert!(
                v.signed_headers
                    .iter()
                    .any(|s| s.as_bytes().eq_ignore_ascii_case(name)),
                "unsigned {:?} accepted",
                String::from_utf8_lossy(name)
            );
        }
    }
    let now = Timestamp::from_system_time(head.now).expect("the harness clock is in range");
    let skew = head.skew.as_secs();
    match v.presigned_expires {
        None => assert!(now.abs_diff_secs(v.time) <= skew),
        Some(expires) => {
            assert!(expires <= Duration::from_secs(604_800));
            assert!(v.time <= now || v.time.abs_diff_secs(now) <= skew);
            assert!(now <= v.time || now.abs_diff_secs(v.time) <= expires.as_secs());
        }
    }
    assert_eq!(
        v.chunk_verifier().is_some(),
        v.payload.has_chunk_signatures()
    );
    let _: SystemTime = v.time.to_system_time();
}
