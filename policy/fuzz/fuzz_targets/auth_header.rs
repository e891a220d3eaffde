//! `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`: the
//! value a client controls before anything is verified, and its parts.
//!
//! The input is one header value. Checked:
//! - [`AuthHeader::parse`] never panics, and what it accepts round-trips: rendered with
//!   `to_header_value` (as weir writes a re-signed request) it parses back equal;
//! - [`Credential::parse`] and [`SignedHeaders::parse`] are strict: what they accept is
//!   exactly what they render back, a signed-header list is lower case, sorted, unique
//!   and bounded;
//! - [`PayloadHash::parse`] (`x-amz-content-sha256`, the other header the signature
//!   rests on) accepts one spelling per value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_policy::sigv4::parse::SIGNED_HEADERS_MAX;
use weir_policy::sigv4::{AuthHeader, Credential, PayloadHash, SignedHeaders};

fuzz_target!(|data: &[u8]| {
    if let Ok(auth) = AuthHeader::parse(data) {
        let value = auth.to_header_value();
        assert_eq!(
            AuthHeader::parse(value.as_bytes()).as_ref(),
            Ok(&auth),
            "{value}"
        );
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(credential) = Credential::parse(text) {
            assert_eq!(credential.to_string(), text);
        }
        if let Ok(signed) = SignedHeaders::parse(text) {
            assert_eq!(signed.as_str(), text);
            let names: Vec<&str> = signed.iter().collect();
            assert!(names.len() <= SIGNED_HEADERS_MAX);
            assert!(names.windows(2).all(|w| w[0] < w[1]), "{text}");
            assert!(names
                .iter()
                .all(|n| !n.is_empty() && *n == n.to_ascii_lowercase()));
            assert!(names.iter().all(|n| signed.contains(n)));
        }
    }
    if let Ok(payload) = PayloadHash::parse(data) {
        assert_eq!(payload.to_header_value().as_bytes(), data);
    }
});
