//! Verification failures and re-signing across identities: tampered requests and
//! bodies, expired and skewed times, unknown keys, malformed and missing
//! authentication, and a request verified for a tenant then re-signed for a pool.

use std::time::Duration;

use super::tests_aws::*;
use super::*;
use crate::s3code::S3Code;

const EMPTY: &str = EMPTY_SHA256_HEX;
const GET_SIGNED: &str = "host;range;x-amz-content-sha256;x-amz-date";
const GET_SIG: &str = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";

/// The GET Object example's headers, as owned pairs to tamper with.
fn get_object() -> Vec<(String, String)> {
    [
        ("Host", "examplebucket.s3.amazonaws.com"),
        ("Authorization", &authorization(GET_SIGNED, GET_SIG)),
        ("Range", "bytes=0-9"),
        ("x-amz-content-sha256", EMPTY),
        ("x-amz-date", EXAMPLE_TIME),
    ]
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .to_vec()
}

fn set(headers: &mut Vec<(String, String)>, name: &str, value: &str) {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    headers.push((name.to_string(), value.to_string()));
}

fn verify_owned(
    method: &str,
    target: &str,
    headers: &[(String, String)],
    now_secs: i64,
) -> Result<Verified, SigV4Error> {
    let iter = headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()));
    verify(
        &RequestParts::new(method, target, iter),
        &mut lookup,
        at(now_secs),
        SKEW,
    )
}

fn get(headers: &[(String, String)]) -> Result<Verified, SigV4Error> {
    verify_owned("GET", "/test.txt", headers, 0)
}

#[test]
fn the_untampered_example_verifies() {
    get(&get_object()).unwrap();
    // Percent-encoding of unreserved characters does not change the canonical path.
    verify_owned("GET", "/test%2Etxt", &get_object(), 0).unwrap();
    // Headers nobody signed, other than x-amz-*, may be added by proxies.
    let mut h = get_object();
    set(&mut h, "User-Agent", "curl");
    get(&h).unwrap();
    // Header value whitespace is canonicalised.
    let mut h = get_object();
    set(&mut h, "Range", "  bytes=0-9 ");
    get(&h).unwrap();
}

#[test]
fn tampered_requests_fail() {
    let mismatch = Err(SigV4Error::SignatureDoesNotMatch);
    let mut h = get_object();
    set(&mut h, "Range", "bytes=0-10");
    assert_eq!(get(&h).map(|_| ()), mismatch, "signed header");
    let mut h = get_object();
    set(&mut h, "Host", "otherbucket.s3.amazonaws.com");
    assert_eq!(get(&h).map(|_| ()), mismatch, "host");
    let mut h = get_object();
    set(&mut h, "x-amz-content-sha256", &"0".repeat(64));
    assert_eq!(get(&h).map(|_| ()), mismatch, "body hash");
    let mut h = get_object();
    set(&mut h, "x-amz-content-sha256", "UNSIGNED-PAYLOAD");
    assert_eq!(get(&h).map(|_| ()), mismatch, "body hash to unsigned");
    let mut h = get_object();
    set(&mut h, "x-amz-date", "20130524T000001Z");
    assert_eq!(get(&h).map(|_| ()), mismatch, "date");
    let h = get_object();
    assert_eq!(
        verify_owned("GET", "/test.txu", &h, 0).map(|_| ()),
        mismatch,
        "path"
    );
    assert_eq!(
        verify_owned("GET", "/test.txt/", &h, 0).map(|_| ()),
        mismatch,
        "trailing slash (S3 does not normalise)"
    );
    assert_eq!(
        verify_owned("GET", "/test.txt?versionId=1", &h, 0).map(|_| ()),
        mismatch,
        "added query"
    );
    assert_eq!(
        verify_owned("HEAD", "/test.txt", &h, 0).map(|_| ()),
        mismatch,
        "method"
    );
    let mut h = get_object();
    set(
        &mut h,
        "Authorization",
        &authorization(GET_SIGNED, &GET_SIG.replace("f0e8", "f0e9")),
    );
    assert_eq!(get(&h).map(|_| ()), mismatch, "signature");
    // The right key id with the wrong secret.
    let h = get_object();
    let parts = RequestParts::new(
        "GET",
        "/test.txt",
        h.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
    );
    let mut wrong_secret = |_: &str| Some("not the secret");
    assert_eq!(
        verify(&parts, &mut wrong_secret, at(0), SKEW).map(|_| ()),
        mismatch,
        "secret"
    );
    // A list request with another prefix.
    let list_auth = authorization(
        "host;x-amz-content-sha256;x-amz-date",
        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
    );
    let list = [
        ("Host", "examplebucket.s3.amazonaws.com"),
        ("Authorization", list_auth.as_str()),
        ("x-amz-date", EXAMPLE_TIME),
        ("x-amz-content-sha256", EMPTY),
    ];
    check("GET", "/?max-keys=2&prefix=J", &list).unwrap();
    for tampered in [
        "/?max-keys=2&prefix=K",
        "/?max-keys=3&prefix=J",
        "/?max-keys=2&prefix=J&delimiter=%2F",
        "/?max-keys=2&prefix=J+",
    ] {
        assert_eq!(
            check("GET", tampered, &list).map(|_| ()),
            mismatch,
            "{tampered}"
        );
    }
}

#[test]
fn unsigned_amz_headers_are_refused() {
    let mut h = get_object();
    set(&mut h, "x-amz-copy-source", "/otherbucket/secret");
    assert_eq!(get(&h).unwrap_err(), SigV4Error::HeadersNotSigned);
    assert_eq!(
        SigV4Error::HeadersNotSigned.s3_status(),
        (403, S3Code::AccessDenied)
    );
    let mut h = get_object();
    set(&mut h, "X-Amz-Meta-Owner", "mallory");
    assert_eq!(get(&h).unwrap_err(), SigV4Error::HeadersNotSigned);
    // x-amzn-trace-id is not x-amz-*: load balancers add it unsigned.
    let mut h = get_object();
    set(
        &mut h,
        "X-Amzn-Trace-Id",
        "Root=1-5759e988-bd862e3fe1be46a994272793",
    );
    get(&h).unwrap();
}

#[test]
fn an_unsigned_content_sha256_is_still_covered() {
    // As S3 does, accept x-amz-content-sha256 outside SignedHeaders: it is the canonical
    // request's last line, so changing it still breaks the signature.
    let time = Timestamp::parse_amz(EXAMPLE_TIME).unwrap();
    let mut headers = vec![
        ("Host", "examplebucket.s3.amazonaws.com"),
        ("x-amz-content-sha256", EMPTY),
        ("x-amz-date", EXAMPLE_TIME),
    ];
    let auth = client_authorization("GET", "/test.txt", &headers, "host;x-amz-date", EMPTY, time);
    headers.push(("Authorization", &auth));
    check("GET", "/test.txt", &headers).unwrap();
    headers[1].1 = "UNSIGNED-PAYLOAD";
    assert_eq!(
        check("GET", "/test.txt", &headers).unwrap_err(),
        SigV4Error::SignatureDoesNotMatch
    );
}

#[test]
fn skewed_times_fail() {
    let h = get_object();
    verify_owned("GET", "/test.txt", &h, 900).unwrap();
    verify_owned("GET", "/test.txt", &h, -900).unwrap();
    for secs in [901, -901, 86_400 * 365] {
        let err = verify_owned("GET", "/test.txt", &h, secs).unwrap_err();
        assert_eq!(err, SigV4Error::RequestTimeTooSkewed, "{secs}");
        assert_eq!(err.s3_status(), (403, S3Code::RequestTimeTooSkewed));
    }
    // A zero bound accepts only the exact second.
    let parts = RequestParts::new(
        "GET",
        "/test.txt",
        h.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
    );
    verify(&parts, &mut lookup, at(0), Duration::ZERO).unwrap();
    assert_eq!(
        verify(&parts, &mut lookup, at(1), Duration::ZERO).unwrap_err(),
        SigV4Error::RequestTimeTooSkewed
    );
    // A clock before 1970 is as skewed as it gets.
    assert_eq!(
        verify(
            &parts,
            &mut lookup,
            std::time::UNIX_EPOCH - Duration::from_secs(1),
            SKEW
        )
        .unwrap_err(),
        SigV4Error::RequestTimeTooSkewed
    );
}

#[test]
fn dates_must_agree_and_exist() {
    let mut h = get_object();
    set(&mut h, "x-amz-date", "20130525T000000Z");
    assert!(matches!(
        verify_owned("GET", "/test.txt", &h, 86_400).unwrap_err(),
        SigV4Error::AuthorizationHeaderMalformed(_)
    ));
    let mut h = get_object();
    h.retain(|(n, _)| n != "x-amz-date");
    assert_eq!(get(&h).unwrap_err(), SigV4Error::MissingDate);
    set(&mut h, "Date", "Fri, 24 May 2013 00:00:00 GMT");
    // Date is the fallback, but x-amz-date is still in SignedHeaders: signature differs.
    assert_eq!(get(&h).unwrap_err(), SigV4Error::SignatureDoesNotMatch);
    set(&mut h, "Date", "yesterday");
    assert_eq!(get(&h).unwrap_err(), SigV4Error::MissingDate);
    let mut h = get_object();
    set(&mut h, "x-amz-date", "2013-05-24T00:00:00Z");
    assert_eq!(get(&h).unwrap_err(), SigV4Error::MissingDate);
}

#[test]
fn unknown_keys_and_malformed_auth_fail() {
    let mut h = get_object();
    let auth = authorization(GET_SIGNED, GET_SIG).replace(AKID, "AKIAUNKNOWNKEY000000");
    set(&mut h, "Authorization", &auth);
    let err = get(&h).unwrap_err();
    assert_eq!(err, SigV4Error::InvalidAccessKeyId);
    assert_eq!(err.s3_status(), (403, S3Code::InvalidAccessKeyId));

    for (auth, code) in [
        (
            authorization(GET_SIGNED, GET_SIG).replace("Signature=", "Sig="),
            "AuthorizationHeaderMalformed",
        ),
        (
            authorization(GET_SIGNED, GET_SIG).replace("/s3/", "/ec2/"),
            "AuthorizationHeaderMalformed",
        ),
        (
            authorization("range;x-amz-content-sha256;x-amz-date", GET_SIG),
            "AuthorizationHeaderMalformed",
        ),
        (
            "AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=".to_string(),
            "InvalidRequest",
        ),
    ] {
        let mut h = get_object();
        set(&mut h, "Authorization", &auth);
        assert_eq!(get(&h).unwrap_err().s3_status().1.as_str(), code, "{auth}");
    }

    let mut h = get_object();
    h.push(("authorization".into(), authorization(GET_SIGNED, GET_SIG)));
    assert!(matches!(
        get(&h).unwrap_err(),
        SigV4Error::AuthorizationHeaderMalformed(_)
    ));

    let mut h = get_object();
    h.retain(|(n, _)| n != "x-amz-content-sha256");
    assert_eq!(get(&h).unwrap_err(), SigV4Error::MissingContentSha256);
    set(&mut h, "x-amz-content-sha256", "whatever");
    assert_eq!(get(&h).unwrap_err(), SigV4Error::InvalidContentSha256);
}

#[test]
fn missing_or_double_authentication_fails() {
    let host = [("Host", "examplebucket.s3.amazonaws.com")];
    assert_eq!(
        check("GET", "/test.txt", &host).unwrap_err(),
        SigV4Error::MissingAuthentication
    );
    assert_eq!(
        check(
            "GET",
            "/test.txt?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1&Signature=x",
            &host
        )
        .unwrap_err(),
        SigV4Error::UnsupportedAlgorithm
    );
    let auth = authorization(GET_SIGNED, GET_SIG);
    let both = [
        ("Host", "examplebucket.s3.amazonaws.com"),
        ("Authorization", auth.as_str()),
    ];
    assert_eq!(
        check("GET", PRESIGNED_TARGET, &both).unwrap_err(),
        SigV4Error::MultipleAuthMechanisms
    );
    assert_eq!(
        check(
            "GET",
            "/%zz",
            &get_object()
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect::<Vec<_>>()
        )
        .unwrap_err(),
        SigV4Error::InvalidUri
    );
}

#[test]
fn tampered_presigned_urls_fail() {
    let host = [("Host", "examplebucket.s3.amazonaws.com")];
    check("GET", PRESIGNED_TARGET, &host).unwrap();
    let mismatch = SigV4Error::SignatureDoesNotMatch;
    for (from, to) in [
        ("/test.txt?", "/test.txu?"),
        ("X-Amz-Expires=86400", "X-Amz-Expires=86401"),
        (
            "X-Amz-Expires=86400",
            "X-Amz-Expires=86400&response-content-type=text%2Fhtml",
        ),
    ] {
        let target = PRESIGNED_TARGET.replace(from, to);
        assert_eq!(
            check("GET", &target, &host).unwrap_err(),
            mismatch,
            "{target}"
        );
    }
    assert_eq!(check("PUT", PRESIGNED_TARGET, &host).unwrap_err(), mismatch);
    assert_eq!(
        check("GET", PRESIGNED_TARGET, &[("Host", "evil.example")]).unwrap_err(),
        mismatch
    );
    // Parameter order on the wire does not matter.
    let (path, query) = PRESIGNED_TARGET.split_once('?').unwrap();
    let mut params: Vec<&str> = query.split('&').collect();
    params.reverse();
    check("GET", &format!("{path}?{}", params.join("&")), &host).unwrap();
    // Unsigned x-amz-* headers are refused on presigned requests too.
    let extra = [
        ("Host", "examplebucket.s3.amazonaws.com"),
        ("x-amz-server-side-encryption", "AES256"),
    ];
    assert_eq!(
        check("GET", PRESIGNED_TARGET, &extra).unwrap_err(),
        SigV4Error::HeadersNotSigned
    );
    let wrong_day = PRESIGNED_TARGET.replace("X-Amz-Date=20130524T", "X-Amz-Date=20130523T");
    assert!(matches!(
        check("GET", &wrong_day, &host).unwrap_err(),
        SigV4Error::AuthorizationQueryParametersError(_)
    ));
}

/// `X-Amz-Expires` must be 1..=604800 seconds, as S3 enforces: a URL correctly signed
/// for zero seconds is expired (403), even used the second it was signed or before; a
/// sign, a fraction or more than a week is malformed (400) with S3's wording.
#[test]
fn presigned_lifetimes_outside_s3s_range_are_refused() {
    let host = [("Host", "examplebucket.s3.amazonaws.com")];
    let time = Timestamp::parse_amz(EXAMPLE_TIME).unwrap();
    let verify_at = |target: &str, secs: i64| {
        let parts = RequestParts::new("GET", target, header_pairs(&host));
        verify(&parts, &mut lookup, at(secs), SKEW)
    };
    for used_at in [-60, 0] {
        let zero = presign("GET", "/test.txt", "", host[0].1, time, 0);
        let err = verify_at(&zero, used_at).unwrap_err();
        assert_eq!(err, SigV4Error::Expired, "{zero} at {used_at}");
        assert_eq!(err.s3_status(), (403, S3Code::AccessDenied));
    }
    let one = presign("GET", "/test.txt", "", host[0].1, time, 1);
    assert_eq!(
        verify_at(&one, 1).unwrap().presigned_expires,
        Some(Duration::from_secs(1))
    );
    assert_eq!(verify_at(&one, 2).unwrap_err(), SigV4Error::Expired);
    let week = presign("GET", "/test.txt", "", host[0].1, time, 604_800);
    verify_at(&week, 604_800).unwrap();
    // Leading zeros are the same number (the signature covers the text as sent).
    let padded = presign("GET", "/test.txt", "", host[0].1, time, 60)
        .replace("X-Amz-Expires=60", "X-Amz-Expires=00000060");
    assert_eq!(
        verify_at(&padded, 0).unwrap_err(),
        SigV4Error::SignatureDoesNotMatch,
        "parsed, then refused for the changed text only"
    );
    let malformed = |value: &str| {
        PRESIGNED_TARGET.replace("X-Amz-Expires=86400", &format!("X-Amz-Expires={value}"))
    };
    for (value, why) in [
        ("-1", "X-Amz-Expires must be non-negative"),
        ("-0", "X-Amz-Expires must be non-negative"),
        (
            "604801",
            "X-Amz-Expires must be less than a week (in seconds) that is 604800",
        ),
        (
            "99999999999999999999",
            "X-Amz-Expires must be less than a week (in seconds) that is 604800",
        ),
        ("", "X-Amz-Expires should be a number"),
        ("-", "X-Amz-Expires should be a number"),
        ("1.5", "X-Amz-Expires should be a number"),
        ("%2B60", "X-Amz-Expires should be a number"),
        ("%2060", "X-Amz-Expires should be a number"),
        ("0x10", "X-Amz-Expires should be a number"),
    ] {
        let err = check("GET", &malformed(value), &host).unwrap_err();
        assert_eq!(
            err,
            SigV4Error::AuthorizationQueryParametersError(why),
            "X-Amz-Expires={value}"
        );
        assert_eq!(
            err.s3_status(),
            (400, S3Code::AuthorizationQueryParametersError)
        );
    }
    // A malformed URL is reported as such even when its lifetime is also zero.
    let zero_bad_date = malformed("0").replace("X-Amz-Date=20130524T000000Z", "X-Amz-Date=2013");
    assert!(matches!(
        check("GET", &zero_bad_date, &host).unwrap_err(),
        SigV4Error::AuthorizationQueryParametersError(_)
    ));
}

/// The rest of the presigned parameters: a repeated one (even spelled with escapes) and
/// a date in any other form than `yyyyMMdd'T'HHmmss'Z'` are malformed.
#[test]
fn repeated_or_misdated_presigned_parameters_are_refused() {
    let host = [("Host", "examplebucket.s3.amazonaws.com")];
    let query_error = |target: &str| {
        matches!(
            check("GET", target, &host).unwrap_err(),
            SigV4Error::AuthorizationQueryParametersError(_)
        )
    };
    for extra in [
        "&X-Amz-Expires=86400",
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
        "&X%2DAmz%2DDate=20130524T000000Z",
        "&X-Amz-Security-Token=a&X-Amz-Security-Token=b",
    ] {
        assert!(
            query_error(&format!("{PRESIGNED_TARGET}{extra}")),
            "{extra}"
        );
    }
    for date in [
        "2013-05-24T00:00:00Z",
        "20130524T000000",
        "20130524T240000Z",
        "20130524t000000z",
        "20130524T000000Z%20",
    ] {
        let target = PRESIGNED_TARGET.replace("20130524T000000Z", date);
        assert!(query_error(&target), "{date}");
    }
}

#[test]
fn tampered_chunks_fail() {
    let auth = authorization(STREAMING_SIGNED, STREAMING_SEED);
    let verified = check(
        "PUT",
        "/examplebucket/chunkObject.txt",
        &streaming_headers(&auth),
    )
    .unwrap();
    let body = chunked_body(&STREAMING_CHUNKS);
    let fails = |body: &[u8]| {
        let mut verifier = verified.chunk_verifier().unwrap();
        feed(&mut verifier, body, 4096).unwrap_err()
    };
    // One flipped data byte in the second chunk.
    let mut flipped = body.clone();
    let at = body.len() - 100;
    flipped[at] = b'b';
    assert_eq!(fails(&flipped), SigV4Error::ChunkSignatureDoesNotMatch);
    // The second chunk dropped, or the chunks reordered.
    assert_eq!(
        fails(&chunked_body(&[STREAMING_CHUNKS[0], STREAMING_CHUNKS[2]])),
        SigV4Error::ChunkSignatureDoesNotMatch
    );
    assert_eq!(
        fails(&chunked_body(&[
            STREAMING_CHUNKS[1],
            STREAMING_CHUNKS[0],
            STREAMING_CHUNKS[2]
        ])),
        SigV4Error::ChunkSignatureDoesNotMatch
    );
    // A malformed chunk header.
    let mut bad_header = body.clone();
    bad_header[0] = b'x';
    assert!(matches!(fails(&bad_header), SigV4Error::MalformedChunk(_)));
    // After a failure the verifier stays failed, even for a correct signature.
    let mut verifier = verified.chunk_verifier().unwrap();
    verifier.update(b"wrong");
    let first = Signature::from_hex(STREAMING_CHUNKS[0].1.as_bytes()).unwrap();
    assert!(verifier.finish_chunk(&first).is_err());
    verifier.update(&vec![b'a'; 65_536]);
    assert!(verifier.finish_chunk(&first).is_err());
    assert_eq!(
        SigV4Error::ChunkSignatureDoesNotMatch.s3_status(),
        (403, S3Code::SignatureDoesNotMatch)
    );
}

/// A pool in another region, with its own key and endpoint.
const POOL_AKID: &str = "POOLKEY0000000000001";
const POOL_SECRET: &str = "pool/secret+never/shown";
const POOL_HOST: &str = "s3.eu-west-1.pool.example:9000";

fn pool_key(date: Date) -> SigningKey {
    SigningKey::derive(POOL_SECRET.as_bytes(), Scope::new(date, "eu-west-1", "s3"))
}

fn pool_lookup(access_key: &str) -> Option<&'static str> {
    (access_key == POOL_AKID).then_some(POOL_SECRET)
}

/// `headers` with Host and the signed headers replaced as the appliance would.
fn apply(headers: &[(String, String)], signed: &Signed) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .filter(|(n, _)| {
            !signed
                .headers()
                .iter()
                .any(|(s, _)| s.eq_ignore_ascii_case(n))
                && !n.eq_ignore_ascii_case("x-amz-security-token")
        })
        .cloned()
        .collect();
    for (name, value) in signed.headers() {
        out.push((name.to_string(), value.to_string()));
    }
    out
}

#[test]
fn a_verified_request_is_re_signed_for_a_pool() {
    let client = get_object();
    let verified = get(&client).unwrap();
    let key = pool_key(verified.time.date());
    let identity = Identity {
        access_key: POOL_AKID,
        key: &key,
    };
    let extra: Vec<&str> = verified.signed_headers.iter().collect();
    let parts = RequestParts::new(
        "GET",
        "/test.txt",
        client.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
    );
    // Re-signed a minute later, as failover would.
    let signed = sign(&parts, &identity, POOL_HOST, &extra, at(60)).unwrap();
    assert_eq!(signed.signed_headers.as_str(), GET_SIGNED);
    assert_eq!(signed.content_sha256, EMPTY);
    assert!(signed
        .authorization
        .starts_with("AWS4-HMAC-SHA256 Credential=POOLKEY0000000000001/20130524/eu-west-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature="));
    let forwarded = apply(&client, &signed);
    let iter = forwarded.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()));
    let pool_view = verify(
        &RequestParts::new("GET", "/test.txt", iter),
        &mut pool_lookup,
        at(60),
        SKEW,
    )
    .unwrap();
    assert_eq!(pool_view.access_key, POOL_AKID);
    assert_eq!(pool_view.scope.region, "eu-west-1");
    // The client's identity no longer verifies the forwarded request.
    let iter = forwarded.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()));
    assert_eq!(
        verify(
            &RequestParts::new("GET", "/test.txt", iter),
            &mut lookup,
            at(60),
            SKEW
        )
        .unwrap_err(),
        SigV4Error::InvalidAccessKeyId
    );
}

#[test]
fn a_presigned_request_is_re_signed_with_a_header() {
    let host = [("Host", "examplebucket.s3.amazonaws.com")];
    check("GET", PRESIGNED_TARGET, &host).unwrap();
    let (path, query) = PRESIGNED_TARGET.split_once('?').unwrap();
    let query = format!("{query}&versionId=v%2B1");
    let stripped = strip_presigned_params(&query);
    assert_eq!(stripped, "versionId=v%2B1");
    let key = pool_key(Date::new(2013, 5, 24).unwrap());
    let identity = Identity {
        access_key: POOL_AKID,
        key: &key,
    };
    let parts = RequestParts {
        method: "GET",
        path,
        query: &stripped,
        headers: header_pairs(&host),
    };
    let signed = sign(&parts, &identity, POOL_HOST, &[], at(3600)).unwrap();
    assert_eq!(signed.content_sha256, "UNSIGNED-PAYLOAD");
    let forwarded: Vec<(&str, &str)> = signed.headers().to_vec();
    let target = format!("{path}?{stripped}");
    let parts = RequestParts::new("GET", &target, header_pairs(&forwarded));
    verify(&parts, &mut pool_lookup, at(3600), SKEW).unwrap();
    // Leaving the presigned parameters in is refused rather than signed.
    let unstripped = RequestParts::new("GET", PRESIGNED_TARGET, header_pairs(&host));
    assert!(matches!(
        sign(&unstripped, &identity, POOL_HOST, &[], at(0)),
        Err(SigV4Error::Unsignable(_))
    ));
}

#[test]
fn a_streaming_upload_is_re_signed_chunk_by_chunk() {
    let auth = authorization(STREAMING_SIGNED, STREAMING_SEED);
    let client: Vec<(String, String)> = streaming_headers(&auth)
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let verified = verify_owned("PUT", "/examplebucket/chunkObject.txt", &client, 0).unwrap();
    let key = pool_key(verified.time.date());
    let identity = Identity {
        access_key: POOL_AKID,
        key: &key,
    };
    let extra: Vec<&str> = verified.signed_headers.iter().collect();
    let parts = RequestParts::new(
        "PUT",
        "/examplebucket/chunkObject.txt",
        client.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
    );
    let signed = sign(&parts, &identity, POOL_HOST, &extra, at(5)).unwrap();
    assert_eq!(signed.signed_headers.as_str(), STREAMING_SIGNED);

    // The relay: verify each client chunk as it passes, re-sign it, write the new body.
    let body = chunked_body(&STREAMING_CHUNKS);
    let mut verifier = verified.chunk_verifier().unwrap();
    let mut signer = signed.chunk_signer(&key);
    let mut rest = &body[..];
    let mut forwarded_body = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let header = ChunkHeader::parse(&rest[..eol]).unwrap();
        let size = usize::try_from(header.size).unwrap();
        let data = &rest[eol + 2..eol + 2 + size];
        verifier.update(data);
        verifier.finish_chunk(&header.signature.unwrap()).unwrap();
        signer.update(data);
        ChunkHeader {
            size: header.size,
            signature: Some(signer.finish_chunk()),
        }
        .write(&mut forwarded_body);
        forwarded_body.extend_from_slice(data);
        forwarded_body.extend_from_slice(b"\r\n");
        rest = &rest[eol + 4 + size..];
        if size == 0 {
            break;
        }
    }
    assert_eq!(
        forwarded_body.len(),
        body.len(),
        "Content-Length still holds"
    );

    // The pool verifies the new head and every new chunk signature.
    let forwarded = apply(&client, &signed);
    let iter = forwarded.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()));
    let pool_view = verify(
        &RequestParts::new("PUT", "/examplebucket/chunkObject.txt", iter),
        &mut pool_lookup,
        at(5),
        SKEW,
    )
    .unwrap();
    let mut pool_verifier = pool_view.chunk_verifier().unwrap();
    let (decoded, _) = feed(&mut pool_verifier, &forwarded_body, 1 << 20).unwrap();
    assert_eq!(decoded, 66_560);
}

#[test]
fn signing_refuses_what_it_cannot_sign() {
    let client = get_object();
    let parts = RequestParts::new(
        "GET",
        "/test.txt",
        client.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
    );
    let yesterday = pool_key(Date::new(2013, 5, 23).unwrap());
    let identity = Identity {
        access_key: POOL_AKID,
        key: &yesterday,
    };
    for (host, extra) in [
        (POOL_HOST, &["range"][..]),
        ("bad host", &[][..]),
        (POOL_HOST, &["bad name"][..]),
        (POOL_HOST, &["content-md5;range"][..]),
    ] {
        let key = if extra == ["range"] {
            yesterday.clone()
        } else {
            pool_key(Date::new(2013, 5, 24).unwrap())
        };
        let identity = Identity {
            access_key: POOL_AKID,
            key: &key,
        };
        let err = sign(&parts, &identity, host, extra, at(0)).unwrap_err();
        assert!(matches!(err, SigV4Error::Unsignable(_)), "{host} {extra:?}");
        assert_eq!(err.s3_status().0, 500);
    }
    // A header name with `;` would be two names in SignedHeaders (the fuzz target's
    // find, policy/fuzz/artifacts-found/sign_verify): refused, not signed.
    let semicolon = [("x-amz-a;x-amz-b", "v")];
    let parts_semicolon = RequestParts::new("PUT", "/", header_pairs(&semicolon));
    let today = pool_key(Date::new(2013, 5, 24).unwrap());
    let today = Identity {
        access_key: POOL_AKID,
        key: &today,
    };
    assert!(matches!(
        sign(&parts_semicolon, &today, POOL_HOST, &[], at(0)),
        Err(SigV4Error::Unsignable(_))
    ));
    // Authorization and the client's security token are never signed.
    let mut with_token = client.clone();
    set(&mut with_token, "x-amz-security-token", "client-session");
    let parts = RequestParts::new(
        "GET",
        "/test.txt",
        with_token.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
    );
    let today = pool_key(Date::new(2013, 5, 24).unwrap());
    let signed = sign(
        &parts,
        &Identity {
            key: &today,
            ..identity
        },
        POOL_HOST,
        &["authorization", "x-amz-security-token", "range"],
        at(0),
    )
    .unwrap();
    assert_eq!(signed.signed_headers.as_str(), GET_SIGNED);
}

#[test]
fn security_tokens_are_reported() {
    let host = [("Host", "examplebucket.s3.amazonaws.com")];
    let verified = check("GET", PRESIGNED_TARGET, &host).unwrap();
    assert_eq!(verified.security_token, None);
    // A token added to a presigned query breaks the signature (it is signed).
    let target = format!("{PRESIGNED_TARGET}&X-Amz-Security-Token=abc");
    assert_eq!(
        check("GET", &target, &host).unwrap_err(),
        SigV4Error::SignatureDoesNotMatch
    );
    // A signed token, in the query or in a header, is returned for the caller to judge.
    let time = Timestamp::parse_amz(EXAMPLE_TIME).unwrap();
    let target = presign(
        "GET",
        "/test.txt",
        "X-Amz-Security-Token=tok%2Fen",
        "examplebucket.s3.amazonaws.com",
        time,
        60,
    );
    let verified = check("GET", &target, &host).unwrap();
    assert_eq!(verified.security_token.as_deref(), Some("tok/en"));
    let mut headers = vec![
        ("Host", "examplebucket.s3.amazonaws.com"),
        ("x-amz-content-sha256", EMPTY),
        ("x-amz-date", EXAMPLE_TIME),
        ("x-amz-security-token", "session"),
    ];
    let auth = client_authorization(
        "GET",
        "/test.txt",
        &headers,
        "host;x-amz-content-sha256;x-amz-date;x-amz-security-token",
        EMPTY,
        time,
    );
    headers.push(("Authorization", &auth));
    let verified = check("GET", "/test.txt", &headers).unwrap();
    assert_eq!(verified.security_token.as_deref(), Some("session"));
}

#[test]
fn repeated_headers_are_signed_as_one_comma_joined_value() {
    let time = Timestamp::parse_amz(EXAMPLE_TIME).unwrap();
    let mut headers = vec![
        ("Host", "examplebucket.s3.amazonaws.com"),
        ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ("x-amz-date", EXAMPLE_TIME),
        ("X-Amz-Meta-Tag", "a"),
        ("x-amz-meta-tag", "  b   c "),
    ];
    let signed = "host;x-amz-content-sha256;x-amz-date;x-amz-meta-tag";
    let auth = client_authorization("PUT", "/k", &headers, signed, "UNSIGNED-PAYLOAD", time);
    headers.push(("Authorization", &auth));
    let verified = check("PUT", "/k", &headers).unwrap();
    assert_eq!(verified.payload, PayloadHash::Unsigned);
    // Swapping the two values changes the joined value and the signature.
    headers.swap(3, 4);
    assert_eq!(
        check("PUT", "/k", &headers).unwrap_err(),
        SigV4Error::SignatureDoesNotMatch
    );
}
