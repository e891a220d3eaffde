//! A scanned form verified: its signature, then its policy against the fields and the
//! bucket; and a verified form re-signed for a pool.

use super::*;

/// A form upload whose signature and policy checked out.
#[derive(Debug, Clone)]
pub struct VerifiedForm {
    /// The access key id that signed the policy (the request's tenant).
    pub access_key: String,
    /// The credential scope (date, region, service `s3`).
    pub scope: Scope,
    /// The signing time (`x-amz-date`).
    pub time: Timestamp,
    /// The `key` field: the object key (`${filename}` not substituted).
    pub key: String,
    /// The policy's `expiration`.
    pub expiration: Timestamp,
    /// The policy's `content-length-range` bounds on the file, if any (all of them hold).
    pub length_range: Option<(u64, u64)>,
    /// `x-amz-security-token`, if the form has one.
    pub security_token: Option<String>,
    /// The checked policy, kept to re-sign the form.
    pub(super) policy: Policy,
}

impl FormPrefix {
    /// Verifies the form's signature and policy for an upload to `bucket` (the request's,
    /// from its path or virtual host) at `now`; see the module docs for every check.
    pub fn verify<K: KeyLookup + ?Sized>(
        &self,
        bucket: &str,
        keys: &mut K,
        now: SystemTime,
        skew_max: Duration,
    ) -> Result<VerifiedForm, SigV4Error> {
        let v2 = self.field("signature").is_some() || self.field("awsaccesskeyid").is_some();
        let signature = match (self.field("x-amz-signature"), v2) {
            (Some(_), true) => return Err(SigV4Error::MultipleAuthMechanisms),
            (Some(s), false) => s,
            (None, true) => return Err(SigV4Error::UnsupportedAlgorithm),
            (None, false) => return Err(SigV4Error::MissingAuthentication),
        };
        let required =
            |name: &'static str| self.field(name).ok_or(SigV4Error::PostFieldMissing(name));
        let key = required("key")?;
        // The key the node stores under, with `${filename}` put in as S3 does, is held to
        // the path rules: a node that keeps keys as paths resolves `..` in it and would
        // write into another bucket.
        let stored = key.replace("${filename}", self.file_name().unwrap_or_default());
        crate::route::check_key_text(&stored).map_err(|_| {
            SigV4Error::PostFieldInvalid(
                "key: a \".\" or \"..\" segment or a NUL byte; nodes resolve those differently",
            )
        })?;
        let policy_b64 = required("policy")?;
        if required("x-amz-algorithm")? != ALGORITHM {
            return Err(SigV4Error::UnsupportedAlgorithm);
        }
        let credential = Credential::parse(required("x-amz-credential")?)
            .map_err(SigV4Error::PostFieldInvalid)?;
        if credential.scope.service != "s3" {
            return Err(SigV4Error::PostFieldInvalid(
                "x-amz-credential: incorrect service; this endpoint belongs to s3",
            ));
        }
        let time = Timestamp::parse_amz(required("x-amz-date")?).ok_or(
            SigV4Error::PostFieldInvalid("x-amz-date must be YYYYMMDDTHHMMSSZ"),
        )?;
        if credential.scope.date != time.date() {
            return Err(SigV4Error::PostFieldInvalid(
                "the x-amz-credential date is not the x-amz-date date",
            ));
        }
        let now = Timestamp::from_system_time(now).ok_or(SigV4Error::RequestTimeTooSkewed)?;
        if time > now && time.abs_diff_secs(now) > skew_max.as_secs() {
            return Err(SigV4Error::NotYetValid);
        }
        let signing_key = keys
            .signing_key(&credential.access_key, &credential.scope)
            .ok_or(SigV4Error::InvalidAccessKeyId)?;
        let claimed =
            Signature::from_hex(signature.as_bytes()).ok_or(SigV4Error::SignatureDoesNotMatch)?;
        if !signing_key.sign(&[policy_b64.as_bytes()]).ct_eq(&claimed) {
            return Err(SigV4Error::SignatureDoesNotMatch);
        }

        let policy = Policy::decode(policy_b64)?;
        if now >= policy.expiration {
            return Err(SigV4Error::PolicyExpired);
        }
        if self.field("bucket").is_some_and(|b| b != bucket) {
            return Err(SigV4Error::PostFieldInvalid(
                "the bucket field names another bucket than the request",
            ));
        }
        policy.check(self, bucket)?;
        Ok(VerifiedForm {
            access_key: credential.access_key,
            scope: credential.scope,
            time,
            key: key.to_owned(),
            expiration: policy.expiration,
            length_range: policy.length_range(),
            security_token: self.field("x-amz-security-token").map(str::to_owned),
            policy,
        })
    }
}

impl VerifiedForm {
    /// Refuses a form whose file can hold at most `file_bytes_max` bytes (from the body's
    /// `Content-Length`, [`FormPrefix::file_bytes_max`]) when the policy's
    /// `content-length-range` needs more: the storage would refuse it after the upload.
    pub fn check_room(&self, file_bytes_max: Option<u64>) -> Result<(), SigV4Error> {
        let Some(room) = file_bytes_max else {
            return Err(SigV4Error::MalformedPostRequest(
                "Content-Length is too short for the form to end",
            ));
        };
        match self.length_range {
            Some((min, _)) if room < min => Err(SigV4Error::EntityTooSmall),
            _ => Ok(()),
        }
    }

    /// The prefix (`bytes[..prefix.file_start()]`, the bytes `prefix` was scanned from)
    /// re-signed as `identity` at `now`: `x-amz-credential` and `x-amz-date` are the
    /// identity's, the policy's conditions on them say so (as `eq`), and `policy` and
    /// `x-amz-signature` are replaced; every other byte is kept. The expiration and every
    /// other condition stay, so the storage enforces the client's policy. Errors: a key
    /// for another day (weir's), a session-token form (refused before), or a prefix that
    /// grows beyond [`PREFIX_BYTES_MAX`].
    pub fn resign(
        &self,
        prefix: &FormPrefix,
        bytes: &[u8],
        identity: &Identity<'_>,
        now: SystemTime,
    ) -> Result<Vec<u8>, SigV4Error> {
        let time = Timestamp::from_system_time(now)
            .ok_or(SigV4Error::Unsignable("time outside years 1970..=9999"))?;
        let scope = identity.key.scope();
        if scope.date != time.date() {
            return Err(SigV4Error::Unsignable("the signing key is for another day"));
        }
        if self.security_token.is_some() {
            return Err(SigV4Error::Unsignable(
                "a form with x-amz-security-token cannot be re-signed",
            ));
        }
        let Some(prefix_bytes) = bytes.get(..prefix.file_start) else {
            return Err(SigV4Error::Unsignable(
                "the form's bytes are not the scanned ones",
            ));
        };
        let credential = Credential {
            access_key: identity.access_key.to_owned(),
            scope: scope.clone(),
        }
        .to_string();
        let date = time.to_string();
        let policy = base64_encode(self.policy.resigned_json(&credential, &date).as_bytes());
        let signature = identity.key.sign(&[policy.as_bytes()]).hex();
        let mut replaced: Vec<(&Range<usize>, &[u8])> = prefix
            .fields
            .iter()
            .filter_map(|f| {
                let new: &[u8] = match f.name.to_ascii_lowercase().as_str() {
                    "x-amz-credential" => credential.as_bytes(),
                    "x-amz-date" => date.as_bytes(),
                    "policy" => policy.as_bytes(),
                    "x-amz-signature" => &signature,
                    _ => return None,
                };
                Some((&f.value_at, new))
            })
            .collect();
        replaced.sort_by_key(|(at, _)| at.start);
        let mut out = Vec::with_capacity(prefix_bytes.len() + 512);
        let mut from = 0;
        for (at, new) in replaced {
            out.extend_from_slice(&prefix_bytes[from..at.start]);
            out.extend_from_slice(new);
            from = at.end;
        }
        out.extend_from_slice(&prefix_bytes[from..]);
        if out.len() > PREFIX_BYTES_MAX {
            return Err(SigV4Error::PostPreDataTooLarge { resigned: true });
        }
        Ok(out)
    }
}
