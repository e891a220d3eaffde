//! Re-signing a request for another identity (a pool's access key, region and Host),
//! so failover can cross sites that do not share credentials (`docs/identity.md`).
//!
//! The appliance calls [`sign`] with the head it will forward (client headers, the raw
//! path and the query it will send), then replaces `Host`, `X-Amz-Date`,
//! `x-amz-content-sha256` and `Authorization` with [`Signed::headers`] and drops the
//! client's `X-Amz-Security-Token`. The declared payload hash is kept, so a header-signed
//! body (hash or `UNSIGNED-PAYLOAD`) still moves by splice and the storage still checks
//! it; a presigned request (strip its query parameters first with
//! [`strip_presigned_params`](super::strip_presigned_params)) becomes a header-signed
//! `UNSIGNED-PAYLOAD` one; a streaming upload gets a new seed signature, and its chunks
//! new signatures from [`Signed::chunk_signer`] (same length, so `Content-Length` holds).
//!
//! Signed: `host`, `x-amz-date`, `x-amz-content-sha256`, every `x-amz-*` header the
//! request carries (S3 refuses unsigned ones) and the `extra_signed` names present
//! (pass the client's `SignedHeaders` to keep e.g. `range`, `content-md5` covered).
//! `authorization` and `x-amz-security-token` are never signed.

use std::time::SystemTime;

use super::canonical::{canonical_request, string_to_sign, CanonicalInput};
use super::chunk::ChunkSigner;
use super::crypto::Signature;
use super::error::SigV4Error;
use super::key::SigningKey;
use super::parse::{AuthHeader, Credential, PayloadHash, Presigned, SignedHeaders};
use super::time::Timestamp;
use super::{HeaderIter, RequestParts};

/// The identity to sign as: an access key and its signing key for today's scope.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'k> {
    /// The pool's access key id.
    pub access_key: &'k str,
    /// The pool's signing key; its scope gives the date, region and service.
    pub key: &'k SigningKey,
}

/// A freshly signed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The new `Authorization` value.
    pub authorization: String,
    /// The new `X-Amz-Date` value.
    pub amz_date: String,
    /// The `x-amz-content-sha256` to send (the client's, or `UNSIGNED-PAYLOAD`).
    pub content_sha256: String,
    /// The `Host` the signature covers.
    pub host: String,
    /// The header names signed.
    pub signed_headers: SignedHeaders,
    /// The new signature: the seed of a streaming upload's new chunk chain.
    pub signature: Signature,
    /// The signing time.
    pub time: Timestamp,
}

impl Signed {
    /// The headers to set on the forwarded request, each replacing any of that name.
    pub fn headers(&self) -> [(&'static str, &str); 4] {
        [
            ("Host", &self.host),
            ("X-Amz-Date", &self.amz_date),
            ("x-amz-content-sha256", &self.content_sha256),
            ("Authorization", &self.authorization),
        ]
    }

    /// A chunk signer continuing this signature, for a streaming upload; `key` is the
    /// one the request was signed with.
    pub fn chunk_signer(&self, key: &SigningKey) -> ChunkSigner {
        ChunkSigner::new(key.clone(), self.time, self.signature)
    }
}

/// Signs `parts` as `identity` for `host` at `now` (see the module docs for what is
/// signed). Errors are weir's own: a key derived for another day, a malformed header
/// name in `extra_signed`, a host with control characters, presigned query parameters
/// left in the query, or an invalid client `x-amz-content-sha256`.
pub fn sign<'a, H: HeaderIter<'a>>(
    parts: &RequestParts<'a, H>,
    identity: &Identity<'_>,
    host: &str,
    extra_signed: &[&str],
    now: SystemTime,
) -> Result<Signed, SigV4Error> {
    let time = Timestamp::from_system_time(now)
        .ok_or(SigV4Error::Unsignable("time outside years 1970..=9999"))?;
    let scope = identity.key.scope();
    if scope.date != time.date() {
        return Err(SigV4Error::Unsignable("the signing key is for another day"));
    }
    if host.is_empty() || host.bytes().any(|c| !c.is_ascii_graphic()) {
        return Err(SigV4Error::Unsignable("invalid host"));
    }
    if Presigned::is_presigned(parts.query) {
        return Err(SigV4Error::Unsignable(
            "presigned parameters must be stripped from the query",
        ));
    }
    let content_sha256 = match parts.single("x-amz-content-sha256") {
        Ok(Some(value)) => PayloadHash::parse(value)?,
        Ok(None) => PayloadHash::Unsigned,
        Err(()) => return Err(SigV4Error::InvalidContentSha256),
    }
    .to_header_value();
    let amz_date = time.to_string();

    let names = names_to_sign(parts, extra_signed)?;
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let signed_headers = SignedHeaders::from_sorted(&name_refs);
    let header_values: Vec<(&str, Vec<&[u8]>)> = name_refs
        .iter()
        .map(|&name| {
            let values = match name {
                "host" => vec![host.as_bytes()],
                "x-amz-date" => vec![amz_date.as_bytes()],
                "x-amz-content-sha256" => vec![content_sha256.as_bytes()],
                _ => parts.values(name).collect(),
            };
            (name, values)
        })
        .collect();
    let canonical = canonical_request(&CanonicalInput {
        method: parts.method,
        raw_path: parts.path,
        raw_query: parts.query,
        presigned: false,
        headers: &header_values,
        signed_headers: signed_headers.as_str(),
        payload: &content_sha256,
    })?;
    let signature = identity
        .key
        .sign(&[&string_to_sign(time, scope, &canonical)]);
    let authorization = AuthHeader {
        credential: Credential {
            access_key: identity.access_key.to_string(),
            scope: scope.clone(),
        },
        signed_headers: signed_headers.clone(),
        signature,
    }
    .to_header_value();
    Ok(Signed {
        authorization,
        amz_date,
        content_sha256,
        host: host.to_string(),
        signed_headers,
        signature,
        time,
    })
}

/// The sorted, unique, lower-case names to sign.
/// Whether `name` is one header name as `SignedHeaders` lists it (a `;` would make it
/// two: `x-amz-a;x-amz-b` parses as a valid list, found by the `sign_verify` fuzz target).
fn is_one_name(name: &str) -> bool {
    !name.contains(';') && SignedHeaders::parse(name).is_ok()
}

fn names_to_sign<'a, H: HeaderIter<'a>>(
    parts: &RequestParts<'a, H>,
    extra_signed: &[&str],
) -> Result<Vec<String>, SigV4Error> {
    const NEVER: [&str; 2] = ["authorization", "x-amz-security-token"];
    let mut names: Vec<String> = ["host", "x-amz-content-sha256", "x-amz-date"]
        .map(String::from)
        .to_vec();
    for extra in extra_signed {
        let name = extra.to_ascii_lowercase();
        if !is_one_name(&name) {
            return Err(SigV4Error::Unsignable("invalid header name to sign"));
        }
        if !NEVER.contains(&name.as_str()) && parts.values(&name).next().is_some() {
            names.push(name);
        }
    }
    for (name, _) in parts.headers.clone() {
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        if name.starts_with("x-amz-") && !NEVER.contains(&name.as_str()) {
            if !is_one_name(&name) {
                return Err(SigV4Error::Unsignable("invalid x-amz-* header name"));
            }
            names.push(name);
        }
    }
    names.sort_unstable();
    names.dedup();
    if names.len() > super::parse::SIGNED_HEADERS_MAX {
        return Err(SigV4Error::Unsignable("too many headers to sign"));
    }
    Ok(names)
}
