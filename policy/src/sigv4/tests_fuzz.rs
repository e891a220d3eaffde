//! Property tests standing in for `cargo fuzz` targets (no nightly toolchain needed):
//! every parser meets arbitrary bytes and near-valid fragments without panicking,
//! well-formed credentials round-trip, and sign → verify holds on random requests,
//! presigned URLs and chunk streams. Failing inputs are kept by proptest under
//! `policy/proptest-regressions/sigv4/` and replay first on the next run.

use std::time::Duration;

use proptest::prelude::*;

use super::tests_aws::{client_authorization, presign, AKID, SECRET};
use super::*;

/// Pieces of SigV4 syntax, so random strings reach the parsers' deeper branches.
fn fragments() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("AWS4-HMAC-SHA256".to_string()),
        Just(" ".to_string()),
        Just(",".to_string()),
        Just(", ".to_string()),
        Just("=".to_string()),
        Just("/".to_string()),
        Just(";".to_string()),
        Just("&".to_string()),
        Just("%2F".to_string()),
        Just("%".to_string()),
        Just("Credential=".to_string()),
        Just("SignedHeaders=".to_string()),
        Just("Signature=".to_string()),
        Just("X-Amz-Algorithm=".to_string()),
        Just("X-Amz-Credential=".to_string()),
        Just("X-Amz-Date=".to_string()),
        Just("X-Amz-Expires=".to_string()),
        Just("X-Amz-SignedHeaders=".to_string()),
        Just("X-Amz-Signature=".to_string()),
        Just("AKIAIOSFODNN7EXAMPLE".to_string()),
        Just("20130524".to_string()),
        Just("20130524T000000Z".to_string()),
        Just("us-east-1".to_string()),
        Just("s3".to_string()),
        Just("aws4_request".to_string()),
        Just("host;x-amz-date".to_string()),
        "[0-9a-f]{64}",
        "[0-9]{1,8}",
        "\\PC{0,8}",
    ];
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

/// A well-formed credential: key id, date, region, service.
fn credential() -> impl Strategy<Value = (String, Date, String, String)> {
    (
        "[A-Za-z0-9+._~-]{1,128}",
        (1970u16..=9999, 1u8..=12, 1u8..=28),
        "[a-z0-9][a-z0-9_-]{0,63}",
        "[a-z0-9-]{1,32}",
    )
        .prop_map(|(key, (y, m, d), region, service)| {
            (key, Date::new(y, m, d).unwrap(), region, service)
        })
}

/// A raw wire path for `bytes`: each byte literal where the wire allows it, else a
/// percent-escape in either case, chosen by `flags`.
fn wire_path(bytes: &[u8], flags: &[u8]) -> String {
    let mut out = String::from("/");
    for (i, &b) in bytes.iter().enumerate() {
        let flag = flags.get(i).copied().unwrap_or(0);
        let literal_ok = b.is_ascii_graphic() && !matches!(b, b'?' | b'#' | b'%');
        if literal_ok && flag & 1 == 0 {
            out.push(char::from(b));
        } else if flag & 2 == 0 {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

/// A raw query of random parameters (keys never `X-Amz-*`), each encoded per
/// [`wire_path`] with `/` and `=` and `&` and `+` escaped.
fn wire_query(params: &[(Vec<u8>, Vec<u8>)]) -> String {
    let encode = |bytes: &[u8]| {
        let mut out = Vec::new();
        canonical::uri_encode(&mut out, bytes, false);
        String::from_utf8(out).unwrap()
    };
    params
        .iter()
        .map(|(k, v)| {
            if v.is_empty() {
                format!("p{}", encode(k))
            } else {
                format!("p{}={}", encode(k), encode(v))
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn pool_key(time: Timestamp) -> SigningKey {
    SigningKey::derive(
        b"pool-secret",
        Scope::new(time.date(), "eu-central-1", "s3"),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = AuthHeader::parse(&bytes);
        let _ = PayloadHash::parse(&bytes);
        let _ = ChunkHeader::parse(&bytes);
        let _ = TrailerLine::parse(&bytes);
        let _ = Signature::from_hex(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = Presigned::parse(&text);
        let _ = Presigned::is_presigned(&text);
        let _ = strip_presigned_params(&text);
        let _ = Credential::parse(&text);
        let _ = SignedHeaders::parse(&text);
        let _ = Timestamp::parse_amz(&text);
        let _ = Timestamp::parse_http_date(&text);
        let _ = Date::parse(&text);
    }

    #[test]
    fn parsers_never_panic_on_fragments(text in fragments()) {
        let _ = AuthHeader::parse(text.as_bytes());
        let _ = Presigned::parse(&text);
        let _ = Credential::parse(&text);
        let _ = SignedHeaders::parse(&text);
        let _ = Presigned::parse(&text.replace(' ', "&"));
    }

    #[test]
    fn verify_never_panics(
        method in "[A-Z]{1,7}",
        target in fragments(),
        auth in fragments(),
        date in prop_oneof![Just("20130524T000000Z".to_string()), "\\PC{0,20}"],
        sha in prop_oneof![Just("UNSIGNED-PAYLOAD".to_string()), "\\PC{0,70}"],
        now in 0i64..2_000_000_000,
    ) {
        let target = format!("/{target}");
        let headers = [
            ("Host", "h"),
            ("Authorization", auth.as_str()),
            ("x-amz-date", date.as_str()),
            ("x-amz-content-sha256", sha.as_str()),
        ];
        let parts = RequestParts::new(&method, &target, header_pairs(&headers));
        let now = Timestamp::from_unix_secs(now).unwrap().to_system_time();
        let mut keys = |k: &str| (k == AKID).then_some(SECRET);
        let _ = verify(&parts, &mut keys, now, Duration::from_secs(900));
        let parts = RequestParts::new(&method, &target, header_pairs(&headers[..1]));
        let _ = verify(&parts, &mut keys, now, Duration::from_secs(900));
    }

    #[test]
    fn well_formed_credentials_round_trip(
        (key, date, region, service) in credential(),
        names in prop::collection::btree_set("[a-z0-9-]{1,20}", 1..20),
        sig in any::<[u8; 32]>(),
    ) {
        let text = format!("{key}/{date}/{region}/{service}/aws4_request");
        let parsed = Credential::parse(&text).unwrap();
        prop_assert_eq!(&parsed.access_key, &key);
        prop_assert_eq!(parsed.scope.date, date);
        prop_assert_eq!(parsed.to_string(), text);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let joined = names.join(";");
        let auth = AuthHeader {
            credential: parsed,
            signed_headers: SignedHeaders::parse(&joined).unwrap(),
            signature: Signature(sig),
        };
        prop_assert_eq!(
            AuthHeader::parse(auth.to_header_value().as_bytes()).unwrap(),
            auth.clone()
        );
        prop_assert_eq!(auth.signed_headers.iter().collect::<Vec<_>>(), names);
    }

    #[test]
    fn timestamps_round_trip(secs in 0i64..=253_402_300_799) {
        let t = Timestamp::from_unix_secs(secs).unwrap();
        prop_assert_eq!(Timestamp::parse_amz(&t.to_string()), Some(t));
        prop_assert_eq!(Date::parse(&t.date().to_string()), Some(t.date()));
    }

    #[test]
    fn canonical_paths_are_idempotent(
        bytes in prop::collection::vec(any::<u8>(), 0..40),
        flags in prop::collection::vec(any::<u8>(), 40),
    ) {
        let raw = wire_path(&bytes, &flags);
        let mut once = Vec::new();
        canonical::canonical_path(&mut once, &raw).unwrap();
        let once = String::from_utf8(once).unwrap();
        let mut twice = Vec::new();
        canonical::canonical_path(&mut twice, &once).unwrap();
        prop_assert_eq!(String::from_utf8(twice).unwrap(), once);
    }

    /// What weir re-signs, a pool verifies: random keys (any bytes, any legal wire
    /// encoding), query parameters, metadata headers, hosts and times.
    #[test]
    fn re_signed_requests_verify(
        bytes in prop::collection::vec(any::<u8>(), 0..40),
        flags in prop::collection::vec(any::<u8>(), 40),
        params in prop::collection::vec(
            (prop::collection::vec(any::<u8>(), 0..8), prop::collection::vec(any::<u8>(), 0..8)),
            0..5,
        ),
        meta in prop::collection::vec(("[a-z0-9-]{1,12}", "[ -~]{0,20}"), 0..4),
        host in "[a-z0-9.-]{1,30}(:[0-9]{1,5})?",
        secs in 0i64..4_000_000_000,
        payload in prop_oneof![
            Just("UNSIGNED-PAYLOAD".to_string()),
            Just(EMPTY_SHA256_HEX.to_string()),
            Just("STREAMING-AWS4-HMAC-SHA256-PAYLOAD".to_string()),
        ],
    ) {
        let time = Timestamp::from_unix_secs(secs).unwrap();
        let target = format!("{}?{}", wire_path(&bytes, &flags), wire_query(&params));
        let meta: Vec<(String, String)> = meta
            .into_iter()
            .map(|(n, v)| (format!("x-amz-meta-{n}"), v))
            .collect();
        let mut client: Vec<(&str, &str)> = vec![
            ("Host", "client.example"),
            ("x-amz-content-sha256", &payload),
            ("Content-Type", "text/plain"),
        ];
        client.extend(meta.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let key = pool_key(time);
        let identity = Identity { access_key: "POOL", key: &key };
        let parts = RequestParts::new("PUT", &target, header_pairs(&client));
        let signed = sign(&parts, &identity, &host, &["content-type"], time.to_system_time()).unwrap();
        let mut forwarded: Vec<(&str, &str)> = client
            .iter()
            .copied()
            .filter(|(n, _)| !signed.headers().iter().any(|(s, _)| s.eq_ignore_ascii_case(n)))
            .collect();
        forwarded.extend(signed.headers());
        let parts = RequestParts::new("PUT", &target, header_pairs(&forwarded));
        let mut pool = |k: &str| (k == "POOL").then_some("pool-secret");
        let verified = verify(&parts, &mut pool, time.to_system_time(), Duration::ZERO);
        prop_assert!(verified.is_ok(), "{:?} for {}", verified, target);
        // A different method never verifies.
        let parts = RequestParts::new("POST", &target, header_pairs(&forwarded));
        prop_assert_eq!(
            verify(&parts, &mut pool, time.to_system_time(), Duration::ZERO).unwrap_err(),
            SigV4Error::SignatureDoesNotMatch
        );
    }

    /// Presigned URLs verify within their window and are refused after it.
    #[test]
    fn presigned_urls_verify_until_they_expire(
        bytes in prop::collection::vec(any::<u8>(), 0..24),
        flags in prop::collection::vec(any::<u8>(), 24),
        params in prop::collection::vec(
            (prop::collection::vec(any::<u8>(), 0..8), prop::collection::vec(any::<u8>(), 0..8)),
            0..3,
        ),
        secs in 0i64..4_000_000_000,
        expires in 1u64..=604_800,
        used_after in 0u64..=700_000,
    ) {
        let time = Timestamp::from_unix_secs(secs).unwrap();
        let target = presign(
            "GET",
            &wire_path(&bytes, &flags),
            &wire_query(&params),
            "bucket.example",
            time,
            expires,
        );
        let headers = [("Host", "bucket.example")];
        let parts = RequestParts::new("GET", &target, header_pairs(&headers));
        let now = Timestamp::from_unix_secs(secs + i64::try_from(used_after).unwrap())
            .unwrap()
            .to_system_time();
        let mut keys = |k: &str| (k == AKID).then_some(SECRET);
        let result = verify(&parts, &mut keys, now, Duration::from_secs(900));
        if used_after <= expires {
            prop_assert!(result.is_ok(), "{:?} for {}", result, target);
        } else {
            prop_assert_eq!(result.unwrap_err(), SigV4Error::Expired);
        }
    }

    /// Chunk streams signed in random pieces verify; one flipped byte does not.
    #[test]
    fn chunk_chains_verify_and_detect_flips(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..6),
        piece in 1usize..64,
        flip in any::<prop::sample::Index>(),
        secs in 0i64..4_000_000_000,
    ) {
        let time = Timestamp::from_unix_secs(secs).unwrap();
        let key = pool_key(time);
        let seed = Signature([7; 32]);
        let mut signer = ChunkSigner::new(key.clone(), time, seed);
        let signatures: Vec<Signature> = chunks
            .iter()
            .map(|data| {
                for part in data.chunks(piece) {
                    signer.update(part);
                }
                signer.finish_chunk()
            })
            .collect();
        let mut verifier = ChunkVerifier::new(key.clone(), time, seed);
        for (data, sig) in chunks.iter().zip(&signatures) {
            verifier.update(data);
            prop_assert!(verifier.finish_chunk(sig).is_ok());
        }
        let total: usize = chunks.iter().map(Vec::len).sum();
        if total > 0 {
            let mut flipped = chunks.clone();
            let mut at = flip.index(total);
            for data in &mut flipped {
                if at < data.len() {
                    data[at] ^= 1;
                    break;
                }
                at -= data.len();
            }
            let mut verifier = ChunkVerifier::new(key, time, seed);
            let all_ok = flipped
                .iter()
                .zip(&signatures)
                .all(|(data, sig)| {
                    verifier.update(data);
                    verifier.finish_chunk(sig).is_ok()
                });
            prop_assert!(!all_ok);
        }
    }

    /// Header-signed requests from a client verify at any time within the skew.
    #[test]
    fn client_signed_requests_verify(
        bytes in prop::collection::vec(any::<u8>(), 0..24),
        flags in prop::collection::vec(any::<u8>(), 24),
        secs in 0i64..4_000_000_000,
        offset in -900i64..=900,
    ) {
        let time = Timestamp::from_unix_secs(secs).unwrap();
        let amz = time.to_string();
        let target = wire_path(&bytes, &flags);
        let mut headers = vec![
            ("Host", "bucket.example"),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
            ("x-amz-date", amz.as_str()),
        ];
        let auth = client_authorization(
            "GET",
            &target,
            &headers,
            "host;x-amz-content-sha256;x-amz-date",
            "UNSIGNED-PAYLOAD",
            time,
        );
        headers.push(("Authorization", &auth));
        let parts = RequestParts::new("GET", &target, header_pairs(&headers));
        let now = Timestamp::from_unix_secs((secs + offset).max(0)).unwrap().to_system_time();
        let mut keys = |k: &str| (k == AKID).then_some(SECRET);
        let result = verify(&parts, &mut keys, now, Duration::from_secs(900));
        prop_assert!(result.is_ok(), "{:?} for {}", result, target);
    }
}
