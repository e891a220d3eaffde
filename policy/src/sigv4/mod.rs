//! AWS Signature Version 4 for S3, without I/O and without a clock: weir's identity at the
//! edge (`docs/identity.md`). This module owns the SigV4 rules; the appliance owns the
//! secrets, the wire and the time, and drives it per request:
//!
//! 1. **Verify** a client request against a tenant's secret: [`verify`] with a
//!    borrowed [`RequestParts`] view of the parsed head, a [`KeyLookup`] (access key →
//!    [`SigningKey`], cached per day by the caller), `now` and the skew bound. Header
//!    (`Authorization: AWS4-HMAC-SHA256 …`) and presigned-URL (`X-Amz-*` query)
//!    requests are both accepted; the result, [`Verified`], says who signed, the scope,
//!    the declared payload ([`PayloadHash`]) and the seed signature. Failures are
//!    [`SigV4Error`]s that map to the S3 error to answer ([`SigV4Error::s3_status`]).
//! 2. **Streaming bodies** (`aws-chunked`, `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`):
//!    [`Verified::chunk_verifier`] gives a [`ChunkVerifier`] that checks each chunk's
//!    signature as its bytes pass ([`chunk`] explains the chain and what a proxy must do
//!    on a mismatch). `STREAMING-UNSIGNED-PAYLOAD-TRAILER` bodies carry no signatures.
//! 3. **Re-sign** for a pool's identity and Host: [`sign`] produces the new
//!    `Authorization`, `X-Amz-Date` and the `x-amz-content-sha256` to send, keeping the
//!    client's declared payload hash so a header-signed body still moves by splice; a
//!    streaming upload's chunks are re-signed with [`Signed::chunk_signer`].
//!
//! What is checked, and why:
//! - the `Authorization` header and presigned parameters are parsed strictly ([`parse`]);
//!   only `AWS4-HMAC-SHA256` with service `s3` is accepted (SigV2 and SigV4a are not);
//! - the credential date must be the request date, `host` must be signed, and every
//!   `x-amz-*` header present must be signed, as S3 requires (an unsigned
//!   `x-amz-copy-source` could otherwise be swapped in flight). Like S3, an unsigned
//!   `x-amz-content-sha256` is tolerated: its value is the canonical request's last
//!   line, so the signature covers it anyway (and `x-amzn-trace-id`, which load
//!   balancers add unsigned, is not `x-amz-*`);
//! - header-signed requests must be within `skew_max` of `now`; presigned URLs must be
//!   used between `X-Amz-Date - skew_max` and `X-Amz-Date + X-Amz-Expires` (≤ 7 days);
//! - the canonical request is built the S3 way (`canonical.rs`: no path normalisation,
//!   single encoding, decode-then-re-encode of the wire form) and the signature compared
//!   in constant time.
//!
//! Not checked here: that the body hashes to the declared `x-amz-content-sha256` (the
//! body is spliced, not read; the storage checks it and answers
//! `XAmzContentSHA256Mismatch`, and the re-signed request keeps the declared hash), the
//! region (returned in [`Verified::scope`] for the caller to compare with its own) and
//! `X-Amz-Security-Token` (returned; weir holds long-term keys only, so the caller
//! should refuse requests that carry one).
//!
//! Tests: AWS's published S3 examples (GET Object, PUT Object, GET Bucket Lifecycle,
//! List Objects, the presigned URL and the streaming and streaming-trailer uploads) in
//! `tests_aws`; tampering, expiry, skew and malformed input in `tests_verify`; and a
//! proptest "fuzz" of every parser (no panic on arbitrary bytes, round trips, sign →
//! verify on random requests) in `tests_fuzz`, standing in for a `cargo fuzz` target.

mod canonical;
pub mod chunk;
mod crypto;
mod error;
mod key;
pub mod parse;
pub mod post;
mod sign;
mod stream;
mod time;

#[cfg(test)]
mod tests_aws;
#[cfg(test)]
mod tests_fuzz;
#[cfg(test)]
mod tests_verify;

use std::time::{Duration, SystemTime};

pub use canonical::ALGORITHM;
pub use chunk::{ChunkHeader, ChunkSigner, ChunkVerifier, TrailerLine};
pub use crypto::{Signature, EMPTY_SHA256_HEX};
pub use error::SigV4Error;
pub use key::{KeyLookup, Scope, SigningKey};
pub use parse::{
    strip_presigned_params, AuthHeader, Credential, PayloadHash, Presigned, SignedHeaders,
};
pub use sign::{sign, Identity, Signed};
pub use stream::ChunkStream;
pub use time::{Date, Timestamp};

use canonical::{canonical_request, string_to_sign, CanonicalInput};

/// The header iterators [`RequestParts`] accepts: (name, value) byte pairs, restartable
/// by cloning, e.g. `head.headers.iter().map(|h| (h.name.as_bytes(), &h.value[..]))`.
pub trait HeaderIter<'a>: Iterator<Item = (&'a [u8], &'a [u8])> + Clone {}

impl<'a, T: Iterator<Item = (&'a [u8], &'a [u8])> + Clone> HeaderIter<'a> for T {}

/// A borrowed view of a request head: everything SigV4 reads, nothing copied.
#[derive(Debug, Clone)]
pub struct RequestParts<'a, H> {
    /// The method, as sent (`GET`).
    pub method: &'a str,
    /// The raw, percent-encoded path of the request target (before `?`).
    pub path: &'a str,
    /// The raw query after `?`, empty when there is none.
    pub query: &'a str,
    /// The header fields in order, names in any case, values without surrounding
    /// whitespace.
    pub headers: H,
}

impl<'a, H: HeaderIter<'a>> RequestParts<'a, H> {
    /// The parts of a request with origin-form `target` (`/path?query`).
    pub fn new(method: &'a str, target: &'a str, headers: H) -> Self {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Self {
            method,
            path,
            query,
            headers,
        }
    }

    /// Every value of header `name` (ASCII case-insensitive), in order.
    fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.headers
            .clone()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// The value of header `name` when it appears at most once; `Err(())` when repeated.
    fn single(&self, name: &str) -> Result<Option<&'a [u8]>, ()> {
        let mut values = self.values(name);
        let first = values.next();
        match values.next() {
            Some(_) => Err(()),
            None => Ok(first),
        }
    }
}

/// (name, value) pairs as a [`HeaderIter`], for callers that hold headers as strings.
pub fn header_pairs<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl HeaderIter<'a> {
    pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()))
}

/// A request whose signature checked out.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The access key id that signed.
    pub access_key: String,
    /// The credential scope (date, region, service `s3`).
    pub scope: Scope,
    /// The signed request time (`X-Amz-Date`, `Date`, or the presigned `X-Amz-Date`).
    pub time: Timestamp,
    /// The header names the signature covers (`range` among them means the request
    /// cannot be changed on resume: docs/design.md, "Failure is a normal state").
    pub signed_headers: SignedHeaders,
    /// The request signature: the seed of a streaming upload's chunk chain.
    pub seed_signature: Signature,
    /// The declared `x-amz-content-sha256` (`UNSIGNED-PAYLOAD` for presigned URLs).
    pub payload: PayloadHash,
    /// `Some(X-Amz-Expires)` for a presigned URL, `None` for a header-signed request.
    pub presigned_expires: Option<Duration>,
    /// `X-Amz-Security-Token` (header or query), if the client sent one.
    pub security_token: Option<String>,
    /// The key that verified the request, to verify its chunks with.
    pub signing_key: SigningKey,
}

impl Verified {
    /// A verifier for the chunk signatures of a `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`
    /// upload; `None` when the payload has no chunk signatures.
    pub fn chunk_verifier(&self) -> Option<ChunkVerifier> {
        self.payload
            .has_chunk_signatures()
            .then(|| ChunkVerifier::new(self.signing_key.clone(), self.time, self.seed_signature))
    }
}

/// What the client claims, before the signature is checked.
struct Claim {
    credential: Credential,
    signed_headers: SignedHeaders,
    signature: Signature,
    time: Timestamp,
    payload: PayloadHash,
    presigned_expires: Option<Duration>,
    security_token: Option<String>,
}

/// Verifies the SigV4 signature of a request (header-signed or presigned) at `now`.
///
/// `keys` turns an access key and scope into a signing key; `skew_max` bounds how far a
/// header-signed request's time may be from `now` (S3 uses 15 minutes) and how early a
/// presigned URL may be used. See the module docs for every check made.
pub fn verify<'a, H, K>(
    parts: &RequestParts<'a, H>,
    keys: &mut K,
    now: SystemTime,
    skew_max: Duration,
) -> Result<Verified, SigV4Error>
where
    H: HeaderIter<'a>,
    K: KeyLookup + ?Sized,
{
    let authorization = parts.single("authorization").map_err(|()| {
        SigV4Error::AuthorizationHeaderMalformed("more than one Authorization header")
    })?;
    let presigned = Presigned::is_presigned(parts.query);
    let claim = match (authorization, presigned) {
        (Some(_), true) => return Err(SigV4Error::MultipleAuthMechanisms),
        (Some(value), false) => header_claim(parts, value)?,
        (None, true) => presigned_claim(parts)?,
        (None, false) => return Err(unsigned_error(parts.query)),
    };
    check_scope(&claim, presigned)?;
    check_time(&claim, now, skew_max)?;
    check_all_amz_headers_signed(parts, &claim.signed_headers)?;

    let key = keys
        .signing_key(&claim.credential.access_key, &claim.credential.scope)
        .ok_or(SigV4Error::InvalidAccessKeyId)?;
    let header_values: Vec<(&str, Vec<&[u8]>)> = claim
        .signed_headers
        .iter()
        .map(|name| (name, parts.values(name).collect()))
        .collect();
    let payload = claim.payload.to_header_value();
    let canonical = canonical_request(&CanonicalInput {
        method: parts.method,
        raw_path: parts.path,
        raw_query: parts.query,
        presigned,
        headers: &header_values,
        signed_headers: claim.signed_headers.as_str(),
        payload: &payload,
    })?;
    let expected = key.sign(&[&string_to_sign(claim.time, key.scope(), &canonical)]);
    if !expected.ct_eq(&claim.signature) {
        return Err(SigV4Error::SignatureDoesNotMatch);
    }
    Ok(Verified {
        access_key: claim.credential.access_key,
        scope: claim.credential.scope,
        time: claim.time,
        signed_headers: claim.signed_headers,
        seed_signature: claim.signature,
        payload: claim.payload,
        presigned_expires: claim.presigned_expires,
        security_token: claim.security_token,
        signing_key: key,
    })
}

/// The claim of an `Authorization`-header request.
fn header_claim<'a, H: HeaderIter<'a>>(
    parts: &RequestParts<'a, H>,
    authorization: &[u8],
) -> Result<Claim, SigV4Error> {
    let auth = AuthHeader::parse(authorization)?;
    let time = match parts.single("x-amz-date") {
        Ok(Some(value)) => std::str::from_utf8(value)
            .ok()
            .and_then(Timestamp::parse_amz)
            .ok_or(SigV4Error::MissingDate)?,
        Ok(None) => match parts.single("date") {
            Ok(Some(value)) => std::str::from_utf8(value)
                .ok()
                .and_then(Timestamp::parse_http_date)
                .ok_or(SigV4Error::MissingDate)?,
            _ => return Err(SigV4Error::MissingDate),
        },
        Err(()) => return Err(SigV4Error::MissingDate),
    };
    let payload = match parts.single("x-amz-content-sha256") {
        Ok(Some(value)) => PayloadHash::parse(value)?,
        Ok(None) => return Err(SigV4Error::MissingContentSha256),
        Err(()) => return Err(SigV4Error::InvalidContentSha256),
    };
    Ok(Claim {
        credential: auth.credential,
        signed_headers: auth.signed_headers,
        signature: auth.signature,
        time,
        payload,
        presigned_expires: None,
        security_token: security_token_header(parts)?,
    })
}

/// The claim of a presigned-URL request.
fn presigned_claim<'a, H: HeaderIter<'a>>(
    parts: &RequestParts<'a, H>,
) -> Result<Claim, SigV4Error> {
    let p = Presigned::parse(parts.query)?;
    let payload = match parts.single("x-amz-content-sha256") {
        Ok(Some(value)) => PayloadHash::parse(value)?,
        Ok(None) => PayloadHash::Unsigned,
        Err(()) => return Err(SigV4Error::InvalidContentSha256),
    };
    let security_token = match p.security_token {
        Some(token) => Some(token),
        None => security_token_header(parts)?,
    };
    Ok(Claim {
        credential: p.credential,
        signed_headers: p.signed_headers,
        signature: p.signature,
        time: p.time,
        payload,
        presigned_expires: Some(p.expires),
        security_token,
    })
}

fn security_token_header<'a, H: HeaderIter<'a>>(
    parts: &RequestParts<'a, H>,
) -> Result<Option<String>, SigV4Error> {
    let bad = SigV4Error::AuthorizationHeaderMalformed("invalid x-amz-security-token header");
    match parts.single("x-amz-security-token") {
        Ok(Some(value)) => std::str::from_utf8(value)
            .map(|v| Some(v.to_string()))
            .map_err(|_| bad),
        Ok(None) => Ok(None),
        Err(()) => Err(bad),
    }
}

/// Why an unsigned request is refused: SigV2 presigned URLs are unsupported, the rest
/// is anonymous.
fn unsigned_error(raw_query: &str) -> SigV4Error {
    let v2 = canonical::query_params(raw_query)
        .flatten()
        .any(|p| p.key.as_ref() == b"AWSAccessKeyId");
    if v2 {
        SigV4Error::UnsupportedAlgorithm
    } else {
        SigV4Error::MissingAuthentication
    }
}

/// Service `s3`, the credential date equal to the request date, `host` signed.
fn check_scope(claim: &Claim, presigned: bool) -> Result<(), SigV4Error> {
    let malformed = if presigned {
        SigV4Error::AuthorizationQueryParametersError
    } else {
        SigV4Error::AuthorizationHeaderMalformed
    };
    if claim.credential.scope.service != "s3" {
        return Err(malformed("incorrect service; this endpoint belongs to s3"));
    }
    if claim.credential.scope.date != claim.time.date() {
        return Err(malformed(
            "invalid credential date; it is not the same as the request date",
        ));
    }
    if !claim.signed_headers.contains("host") {
        return Err(malformed("host must be a signed header"));
    }
    Ok(())
}

/// Header-signed: within `skew_max` of `now`. Presigned: not before
/// `time - skew_max`, not after `time + expires`.
fn check_time(claim: &Claim, now: SystemTime, skew_max: Duration) -> Result<(), SigV4Error> {
    let skew_secs = skew_max.as_secs();
    let Some(now) = Timestamp::from_system_time(now) else {
        return Err(SigV4Error::RequestTimeTooSkewed);
    };
    match claim.presigned_expires {
        None if now.abs_diff_secs(claim.time) > skew_secs => Err(SigV4Error::RequestTimeTooSkewed),
        None => Ok(()),
        Some(_) if claim.time > now && claim.time.abs_diff_secs(now) > skew_secs => {
            Err(SigV4Error::NotYetValid)
        }
        Some(expires) if now > claim.time && now.abs_diff_secs(claim.time) > expires.as_secs() => {
            Err(SigV4Error::Expired)
        }
        Some(_) => Ok(()),
    }
}

/// Every `x-amz-*` header present must be signed, but `x-amz-content-sha256` (see the
/// module docs).
fn check_all_amz_headers_signed<'a, H: HeaderIter<'a>>(
    parts: &RequestParts<'a, H>,
    signed: &SignedHeaders,
) -> Result<(), SigV4Error> {
    for (name, _) in parts.headers.clone() {
        let is_amz = name.len() >= 6 && name[..6].eq_ignore_ascii_case(b"x-amz-");
        if !is_amz || name.eq_ignore_ascii_case(b"x-amz-content-sha256") {
            continue;
        }
        let covered = signed
            .iter()
            .any(|s| s.as_bytes().eq_ignore_ascii_case(name));
        if !covered {
            return Err(SigV4Error::HeadersNotSigned);
        }
    }
    Ok(())
}
