//! AWS's published SigV4 examples for S3 (S3 API reference: "Signature Calculations for
//! the Authorization Header", "… Query Parameters", "… Multiple Chunks" and "… Trailing
//! Headers"), verified and reproduced by re-signing with the same identity.
//!
//! Every example uses access key `AKIAIOSFODNN7EXAMPLE`, secret
//! `wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY`, region `us-east-1` and the time
//! `20130524T000000Z`.

use std::time::{Duration, SystemTime};

use super::canonical::{canonical_request, string_to_sign, CanonicalInput};
use super::crypto::{hex32, sha256};
use super::*;
use crate::s3code::S3Code;

pub(super) const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
pub(super) const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
pub(super) const EXAMPLE_TIME: &str = "20130524T000000Z";
pub(super) const SKEW: Duration = Duration::from_secs(15 * 60);

/// `20130524T000000Z` plus `secs`.
pub(super) fn at(secs: i64) -> SystemTime {
    Timestamp::from_unix_secs(Timestamp::parse_amz(EXAMPLE_TIME).unwrap().unix_secs() + secs)
        .unwrap()
        .to_system_time()
}

pub(super) fn lookup(access_key: &str) -> Option<&'static str> {
    (access_key == AKID).then_some(SECRET)
}

pub(super) fn example_key() -> SigningKey {
    SigningKey::derive(
        SECRET.as_bytes(),
        Scope::new(Date::new(2013, 5, 24).unwrap(), "us-east-1", "s3"),
    )
}

pub(super) fn authorization(signed_headers: &str, signature: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={AKID}/20130524/us-east-1/s3/aws4_request,SignedHeaders={signed_headers},Signature={signature}"
    )
}

/// Verifies `target` with `headers` at the example time.
pub(super) fn check(
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Result<Verified, SigV4Error> {
    let parts = RequestParts::new(method, target, header_pairs(headers));
    verify(&parts, &mut lookup, at(0), SKEW)
}

/// Re-signs with the example identity at the example time, as the appliance would for
/// a pool, and returns the new signature.
fn resign(method: &str, target: &str, headers: &[(&str, &str)], extra: &[&str]) -> Signed {
    let key = example_key();
    let parts = RequestParts::new(method, target, header_pairs(headers));
    let host = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        .unwrap()
        .1;
    sign(
        &parts,
        &Identity {
            access_key: AKID,
            key: &key,
        },
        host,
        extra,
        at(0),
    )
    .unwrap()
}

/// The hex SHA-256 of the canonical request (the last line of the string to sign).
fn canonical_hash(
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    signed: &str,
    payload: &str,
) -> String {
    let parts = RequestParts::new(method, target, header_pairs(headers));
    let values: Vec<(&str, Vec<&[u8]>)> = signed
        .split(';')
        .map(|name| (name, parts.values(name).collect()))
        .collect();
    let canonical = canonical_request(&CanonicalInput {
        method,
        raw_path: parts.path,
        raw_query: parts.query,
        presigned: false,
        headers: &values,
        signed_headers: signed,
        payload,
    })
    .unwrap();
    let sts = string_to_sign(
        Timestamp::parse_amz(EXAMPLE_TIME).unwrap(),
        example_key().scope(),
        &canonical,
    );
    String::from_utf8(sts[sts.len() - 64..].to_vec()).unwrap()
}

const EMPTY: &str = EMPTY_SHA256_HEX;

#[test]
fn get_object() {
    let signed = "host;range;x-amz-content-sha256;x-amz-date";
    let sig = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";
    let auth = authorization(signed, sig);
    let headers = [
        ("Host", "examplebucket.s3.amazonaws.com"),
        ("Authorization", auth.as_str()),
        ("Range", "bytes=0-9"),
        ("x-amz-content-sha256", EMPTY),
        ("x-amz-date", EXAMPLE_TIME),
    ];
    assert_eq!(
        canonical_hash("GET", "/test.txt", &headers, signed, EMPTY),
        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
    );
    let verified = check("GET", "/test.txt", &headers).unwrap();
    assert_eq!(verified.access_key, AKID);
    assert_eq!(verified.scope.region, "us-east-1");
    assert_eq!(verified.time.to_string(), EXAMPLE_TIME);
    assert_eq!(verified.seed_signature.to_string(), sig);
    assert_eq!(verified.payload, PayloadHash::Sha256(sha256(b"")));
    assert!(verified.signed_headers.contains("range"));
    assert_eq!(verified.presigned_expires, None);
    assert!(verified.chunk_verifier().is_none());

    let resigned = resign("GET", "/test.txt", &headers, &["range"]);
    assert_eq!(resigned.signature.to_string(), sig);
    assert_eq!(resigned.signed_headers.as_str(), signed);
}

#[test]
fn put_object() {
    let body = b"Welcome to Amazon S3.";
    let hash = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";
    assert_eq!(&hex32(&sha256(body))[..], hash.as_bytes());
    let signed = "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class";
    let sig = "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd";
    let auth = authorization(signed, sig);
    let headers = [
        ("Host", "examplebucket.s3.amazonaws.com"),
        ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
        ("Authorization", auth.as_str()),
        ("x-amz-date", EXAMPLE_TIME),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("x-amz-content-sha256", hash),
    ];
    assert_eq!(
        canonical_hash("PUT", "/test%24file.text", &headers, signed, hash),
        "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d"
    );
    // The key may arrive with `$` encoded or not; both canonicalise to `%24`.
    for target in ["/test%24file.text", "/test$file.text"] {
        let verified = check("PUT", target, &headers).unwrap();
        assert_eq!(verified.payload, PayloadHash::Sha256(sha256(body)));
    }
    // Re-signing signs x-amz-storage-class by itself (an x-amz-* header) and keeps
    // the declared body hash.
    let resigned = resign("PUT", "/test$file.text", &headers, &["date"]);
    assert_eq!(resigned.signature.to_string(), sig);
    assert_eq!(resigned.content_sha256, hash);
}

#[test]
fn get_bucket_lifecycle() {
    let signed = "host;x-amz-content-sha256;x-amz-date";
    let sig = "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543";
    let auth = authorization(signed, sig);
    let headers = [
        ("Host", "examplebucket.s3.amazonaws.com"),
        ("Authorization", auth.as_str()),
        ("x-amz-date", EXAMPLE_TIME),
        ("x-amz-content-sha256", EMPTY),
    ];
    assert_eq!(
        canonical_hash("GET", "/?lifecycle", &headers, signed, EMPTY),
        "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca"
    );
    check("GET", "/?lifecycle", &headers).unwrap();
    assert_eq!(
        resign("GET", "/?lifecycle", &headers, &[])
            .signature
            .to_string(),
        sig
    );
}

#[test]
fn list_objects() {
    let signed = "host;x-amz-content-sha256;x-amz-date";
    let sig = "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7";
    let auth = authorization(signed, sig);
    let headers = [
        ("Host", "examplebucket.s3.amazonaws.com"),
        ("Authorization", auth.as_str()),
        ("x-amz-date", EXAMPLE_TIME),
        ("x-amz-content-sha256", EMPTY),
    ];
    assert_eq!(
        canonical_hash("GET", "/?max-keys=2&prefix=J", &headers, signed, EMPTY),
        "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7"
    );
    // Query order on the wire does not matter: the canonical query is sorted.
    check("GET", "/?max-keys=2&prefix=J", &headers).unwrap();
    check("GET", "/?prefix=J&max-keys=2", &headers).unwrap();
    assert_eq!(
        resign("GET", "/?prefix=J&max-keys=2", &headers, &[])
            .signature
            .to_string(),
        sig
    );
}

pub(super) const PRESIGNED_TARGET: &str = "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

#[test]
fn presigned_get_object() {
    let headers = [("Host", "examplebucket.s3.amazonaws.com")];
    let parts = RequestParts::new("GET", PRESIGNED_TARGET, header_pairs(&headers));
    // Valid from the signing time to 24 hours later.
    for secs in [0, 3600, 86_400] {
        let verified = verify(&parts, &mut lookup, at(secs), SKEW).unwrap();
        assert_eq!(verified.payload, PayloadHash::Unsigned);
        assert_eq!(
            verified.presigned_expires,
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(
            verified.seed_signature.to_string(),
            "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }
    let expired = verify(&parts, &mut lookup, at(86_401), SKEW).unwrap_err();
    assert_eq!(expired, SigV4Error::Expired);
    assert_eq!(expired.s3_status(), (403, S3Code::AccessDenied));
    assert_eq!(expired.to_string(), "request has expired");
    // Early by less than the skew bound is fine; earlier is not.
    verify(&parts, &mut lookup, at(-900), SKEW).unwrap();
    assert_eq!(
        verify(&parts, &mut lookup, at(-901), SKEW).unwrap_err(),
        SigV4Error::NotYetValid
    );
}

/// The streaming example's head, with the seed signature.
pub(super) fn streaming_headers(auth: &str) -> [(&str, &str); 9] {
    [
        ("Host", "s3.amazonaws.com"),
        ("x-amz-date", EXAMPLE_TIME),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("Authorization", auth),
        ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
        ("Content-Encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", "66560"),
        ("Content-Length", "66824"),
        ("User-Agent", "not signed, not x-amz-*"),
    ]
}

pub(super) const STREAMING_SIGNED: &str = "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class";
pub(super) const STREAMING_SEED: &str =
    "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
pub(super) const STREAMING_CHUNKS: [(usize, &str); 3] = [
    (
        65_536,
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    ),
    (
        1024,
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    ),
    (
        0,
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
    ),
];

/// The example's `aws-chunked` body: the chunks of `a`s with their signatures.
pub(super) fn chunked_body(chunks: &[(usize, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for &(size, sig) in chunks {
        ChunkHeader {
            size: size as u64,
            signature: Some(Signature::from_hex(sig.as_bytes()).unwrap()),
        }
        .write(&mut body);
        body.extend(std::iter::repeat_n(b'a', size));
        body.extend_from_slice(b"\r\n");
    }
    body
}

/// A minimal `aws-chunked` reader over a complete body, feeding `verifier` in pieces of
/// at most `piece` bytes as a relay would. Returns the decoded length and the remaining
/// (trailer) bytes.
pub(super) fn feed(
    verifier: &mut ChunkVerifier,
    body: &[u8],
    piece: usize,
) -> Result<(usize, Vec<u8>), SigV4Error> {
    let mut rest = body;
    let mut decoded = 0;
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let header = ChunkHeader::parse(&rest[..eol])?;
        rest = &rest[eol + 2..];
        let size = usize::try_from(header.size).unwrap();
        for data in rest[..size].chunks(piece.max(1)) {
            verifier.update(data);
        }
        verifier.finish_chunk(&header.signature.unwrap())?;
        decoded += size;
        rest = &rest[size..];
        if size == 0 {
            return Ok((decoded, rest.to_vec()));
        }
        assert_eq!(&rest[..2], b"\r\n");
        rest = &rest[2..];
    }
}

#[test]
fn streaming_put_object() {
    let auth = authorization(STREAMING_SIGNED, STREAMING_SEED);
    let headers = streaming_headers(&auth);
    let verified = check("PUT", "/examplebucket/chunkObject.txt", &headers).unwrap();
    assert_eq!(verified.payload, PayloadHash::Streaming);
    assert_eq!(verified.seed_signature.to_string(), STREAMING_SEED);

    let body = chunked_body(&STREAMING_CHUNKS);
    assert_eq!(body.len(), 66_824, "the example's Content-Length");
    for piece in [1, 4096, 65_536, body.len()] {
        let mut verifier = verified.chunk_verifier().unwrap();
        let (decoded, rest) = feed(&mut verifier, &body, piece).unwrap();
        assert_eq!(decoded, 66_560);
        assert_eq!(rest, b"\r\n");
    }

    // Re-signing with the same identity reproduces the seed and every chunk signature.
    let resigned = resign(
        "PUT",
        "/examplebucket/chunkObject.txt",
        &headers,
        &[
            "content-encoding",
            "Content-Length",
            "x-amz-decoded-content-length",
        ],
    );
    assert_eq!(resigned.signature.to_string(), STREAMING_SEED);
    assert_eq!(
        resigned.content_sha256,
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    );
    let mut signer = resigned.chunk_signer(&example_key());
    for (size, sig) in STREAMING_CHUNKS {
        signer.update(&vec![b'a'; size][..size / 2]);
        signer.update(&vec![b'a'; size][size / 2..]);
        assert_eq!(signer.finish_chunk().to_string(), sig);
    }
}

pub(super) const TRAILER_SIGNED: &str = "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer";
pub(super) const TRAILER_SEED: &str =
    "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e";
pub(super) const TRAILER_CHUNKS: [(usize, &str); 3] = [
    (
        65_536,
        "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
    ),
    (
        1024,
        "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
    ),
    (
        0,
        "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
    ),
];
pub(super) const TRAILER_SIGNATURE: &str =
    "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435";

#[test]
fn streaming_put_object_with_trailer() {
    let auth = authorization(TRAILER_SIGNED, TRAILER_SEED);
    let headers = [
        ("Host", "s3.amazonaws.com"),
        ("x-amz-date", EXAMPLE_TIME),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("Authorization", auth.as_str()),
        (
            "x-amz-content-sha256",
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        ),
        ("Content-Encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", "66560"),
        ("x-amz-trailer", "x-amz-checksum-crc32c"),
    ];
    let verified = check("PUT", "/examplebucket/chunkObject.txt", &headers).unwrap();
    assert_eq!(verified.payload, PayloadHash::StreamingTrailer);

    let mut body = chunked_body(&TRAILER_CHUNKS);
    body.truncate(body.len() - 2); // the last chunk's CRLF: the trailer section follows
    body.extend_from_slice(
        format!(
            "x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:{TRAILER_SIGNATURE}\r\n\r\n"
        )
        .as_bytes(),
    );
    let mut verifier = verified.chunk_verifier().unwrap();
    let (decoded, trailer) = feed(&mut verifier, &body, 1000).unwrap();
    assert_eq!(decoded, 66_560);
    let mut lines = trailer
        .split(|&c| c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let TrailerLine::Header { name, value } = TrailerLine::parse(lines.next().unwrap()).unwrap()
    else {
        panic!("expected the checksum trailer");
    };
    let TrailerLine::Signature(claimed) = TrailerLine::parse(lines.next().unwrap()).unwrap() else {
        panic!("expected the trailer signature");
    };
    verifier.verify_trailer([(name, value)], &claimed).unwrap();

    // A changed checksum fails.
    let mut verifier = verified.chunk_verifier().unwrap();
    feed(&mut verifier, &body, 1000).unwrap();
    assert_eq!(
        verifier.verify_trailer([(name, &b"AAAAAA=="[..])], &claimed),
        Err(SigV4Error::ChunkSignatureDoesNotMatch)
    );

    // And the signer reproduces the chain and the trailer signature.
    let resigned = resign(
        "PUT",
        "/examplebucket/chunkObject.txt",
        &headers,
        &["content-encoding", "x-amz-decoded-content-length"],
    );
    assert_eq!(resigned.signature.to_string(), TRAILER_SEED);
    let mut signer = resigned.chunk_signer(&example_key());
    for (size, sig) in TRAILER_CHUNKS {
        signer.update(&vec![b'a'; size]);
        assert_eq!(signer.finish_chunk().to_string(), sig);
    }
    assert_eq!(
        signer
            .sign_trailer([(&b"x-amz-checksum-crc32c"[..], &b"sOO8/Q=="[..])])
            .to_string(),
        TRAILER_SIGNATURE
    );
}

/// A client-side signer for tests: the `Authorization` value for `target` with
/// `headers`, signing exactly `signed` (sorted, lower case) at `time` with the example
/// identity; `payload` is the hashed-payload line.
pub(super) fn client_authorization(
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    signed: &str,
    payload: &str,
    time: Timestamp,
) -> String {
    let key = SigningKey::derive(
        SECRET.as_bytes(),
        Scope::new(time.date(), "us-east-1", "s3"),
    );
    let parts = RequestParts::new(method, target, header_pairs(headers));
    let values: Vec<(&str, Vec<&[u8]>)> = signed
        .split(';')
        .map(|name| (name, parts.values(name).collect()))
        .collect();
    let canonical = canonical_request(&CanonicalInput {
        method,
        raw_path: parts.path,
        raw_query: parts.query,
        presigned: false,
        headers: &values,
        signed_headers: signed,
        payload,
    })
    .unwrap();
    let signature = key.sign(&[&string_to_sign(time, key.scope(), &canonical)]);
    format!(
        "AWS4-HMAC-SHA256 Credential={AKID}/{}, SignedHeaders={signed}, Signature={signature}",
        key.scope()
    )
}

/// A client-side presigner for tests: `path?query` plus the `X-Amz-*` parameters
/// (and `extra_params`, raw) signed at `time` for `expires_secs`, signing `host` only.
pub(super) fn presign(
    method: &str,
    path: &str,
    extra_params: &str,
    host: &str,
    time: Timestamp,
    expires_secs: u64,
) -> String {
    let key = SigningKey::derive(
        SECRET.as_bytes(),
        Scope::new(time.date(), "us-east-1", "s3"),
    );
    let mut query = format!(
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={AKID}%2F{}&X-Amz-Date={time}&X-Amz-Expires={expires_secs}&X-Amz-SignedHeaders=host",
        key.scope().to_string().replace('/', "%2F")
    );
    if !extra_params.is_empty() {
        query = format!("{extra_params}&{query}");
    }
    let host_value = [host.as_bytes()];
    let canonical = canonical_request(&CanonicalInput {
        method,
        raw_path: path,
        raw_query: &query,
        presigned: true,
        headers: &[("host", host_value.to_vec())],
        signed_headers: "host",
        payload: "UNSIGNED-PAYLOAD",
    })
    .unwrap();
    let signature = key.sign(&[&string_to_sign(time, key.scope(), &canonical)]);
    format!("{path}?{query}&X-Amz-Signature={signature}")
}

#[test]
fn the_test_presigner_reproduces_the_aws_example() {
    let time = Timestamp::parse_amz(EXAMPLE_TIME).unwrap();
    assert_eq!(
        presign(
            "GET",
            "/test.txt",
            "",
            "examplebucket.s3.amazonaws.com",
            time,
            86_400
        ),
        PRESIGNED_TARGET
    );
}
