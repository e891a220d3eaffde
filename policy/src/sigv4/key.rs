//! Credential scopes and signing keys. A signing key depends only on the secret and the
//! scope (date, region, service), so it is derived once per day per identity and reused
//! for every request and chunk of that day: callers cache [`SigningKey`]s behind
//! [`KeyLookup`].

use std::fmt;

use super::crypto::{hmac, HmacKey, Signature};
use super::time::Date;

/// The fixed last element of every SigV4 credential scope.
pub const TERMINATOR: &str = "aws4_request";

/// The `date/region/service` a signature is valid for (`…/aws4_request`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// The UTC day the request was signed on.
    pub date: Date,
    /// The region, e.g. `us-east-1`.
    pub region: String,
    /// The service, `s3` for everything weir verifies.
    pub service: String,
}

impl Scope {
    /// The scope `date/region/service/aws4_request`.
    pub fn new(date: Date, region: impl Into<String>, service: impl Into<String>) -> Self {
        Self {
            date,
            region: region.into(),
            service: service.into(),
        }
    }
}

impl fmt::Display for Scope {
    /// `YYYYMMDD/region/service/aws4_request`, as it appears in the string to sign.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{TERMINATOR}",
            self.date, self.region, self.service
        )
    }
}

/// A derived SigV4 signing key (`kSigning`) together with the scope it was derived for.
/// Its `Debug` output never shows key material.
#[derive(Clone)]
pub struct SigningKey {
    mac: HmacKey,
    scope: Scope,
}

impl SigningKey {
    /// Derives the key for `scope` from a secret access key:
    /// `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
    pub fn derive(secret: &[u8], scope: Scope) -> Self {
        let mut seed = Vec::with_capacity(4 + secret.len());
        seed.extend_from_slice(b"AWS4");
        seed.extend_from_slice(secret);
        let k_date = hmac(&seed, scope.date.to_string().as_bytes());
        let k_region = hmac(&k_date, scope.region.as_bytes());
        let k_service = hmac(&k_region, scope.service.as_bytes());
        let k_signing = hmac(&k_service, TERMINATOR.as_bytes());
        Self {
            mac: HmacKey::new(&k_signing),
            scope,
        }
    }

    /// The scope this key signs for.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// HMAC of the concatenated `parts` of a string to sign.
    pub(crate) fn sign(&self, parts: &[&[u8]]) -> Signature {
        Signature(self.mac.mac(parts))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Where [`verify`](super::verify) gets the signing key of an access key.
///
/// Implemented for closures `FnMut(&str) -> Option<secret>` (the key is derived on every
/// call); the appliance implements it on its credential table to cache derived keys per
/// (access key, scope).
pub trait KeyLookup {
    /// The signing key of `access_key` for `scope`, or `None` if the key is unknown.
    fn signing_key(&mut self, access_key: &str, scope: &Scope) -> Option<SigningKey>;
}

impl<F, S> KeyLookup for F
where
    F: FnMut(&str) -> Option<S>,
    S: AsRef<[u8]>,
{
    fn signing_key(&mut self, access_key: &str, scope: &Scope) -> Option<SigningKey> {
        let secret = self(access_key)?;
        Some(SigningKey::derive(secret.as_ref(), scope.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_key() {
        let key = SigningKey::derive(
            b"secret",
            Scope::new(Date::new(2013, 5, 24).unwrap(), "us-east-1", "s3"),
        );
        let shown = format!("{key:?}");
        assert!(shown.contains("us-east-1"));
        assert!(!shown.contains("secret"));
        assert_eq!(
            key.scope().to_string(),
            "20130524/us-east-1/s3/aws4_request"
        );
    }
}
