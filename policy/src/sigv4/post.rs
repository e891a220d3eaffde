//! Browser-form uploads: `POST /bucket` with a `multipart/form-data` body whose fields
//! carry the identity (S3's "Browser-Based Uploads Using POST (AWS Signature Version 4)").
//! There is no `Authorization` header and no presigned query; the fields that precede the
//! file hold a POST policy (`policy`: base64 JSON with an `expiration` and `conditions`)
//! and its signature (`x-amz-algorithm`, `x-amz-credential`, `x-amz-date`,
//! `x-amz-signature` = hex HMAC-SHA256 of the base64 policy under the derived signing key).
//! Browsers and the SDKs' presigned-post helpers (botocore's `generate_presigned_post`)
//! send them.
//!
//! The appliance drives it per request:
//! 1. [`form_boundary`] tells a form upload from anything else by its `Content-Type`;
//! 2. [`scan`] reads the body's first bytes strictly (RFC 7578 / RFC 2046: CRLF framing, no
//!    preamble) up to the file part's headers, at most [`PREFIX_BYTES_MAX`] (S3 reads no
//!    more before the file) — fields after the file part are never read, as S3 ignores
//!    them;
//! 3. [`FormPrefix::verify`] checks the signature and then the policy against the fields
//!    and the request's bucket at `now`;
//! 4. for a pool that re-signs, [`VerifiedForm::resign`] rewrites the prefix with the
//!    pool's identity: `x-amz-credential`, `x-amz-date`, the policy's conditions on them,
//!    `policy` and `x-amz-signature` (the file and the closing boundary are untouched).
//!
//! What is checked, as S3 does: field names case-insensitively, each at most once (a
//! repeated field is refused: weir and the storage must read the same value); SigV4 only
//! (`AWSAccessKeyId`/`signature` SigV2 forms are refused, as weir refuses SigV2
//! everywhere; a form with neither is anonymous); the credential's service `s3` and date
//! equal to `x-amz-date`'s; `x-amz-date` not later than `now + skew_max`; the signature,
//! in constant time; the policy's `expiration` after `now`; every condition (`eq`,
//! `starts-with`, `{"field": "value"}`; `bucket` is matched against the request's bucket);
//! and every field but `x-amz-signature`, `policy`, `file` and `x-ignore-*` named by a
//! condition. The policy is parsed strictly: unknown elements or operators, repeated keys
//! and non-string values are refused, so the policy weir re-signs is the one it checked.
//!
//! Not checked here: `content-length-range` against the file's size (the file is relayed,
//! not read; the storage checks it, and [`VerifiedForm::check_room`] refuses a body too
//! short to reach the minimum), and `x-amz-security-token` (returned in
//! [`VerifiedForm::security_token`]; weir holds long-term keys only and refuses it).

use std::fmt;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::canonical::ALGORITHM;
use super::crypto::Signature;
use super::error::SigV4Error;
use super::key::{KeyLookup, Scope};
use super::parse::Credential;
use super::sign::Identity;
use super::time::Timestamp;

/// The most body bytes read before the file's content: S3 reads 20 KiB of fields before
/// the file and answers `MaxPostPreDataLengthExceeded` beyond.
pub const PREFIX_BYTES_MAX: usize = 20 * 1024;
/// RFC 2046: a boundary is 1 to 70 characters.
const BOUNDARY_LEN_MAX: usize = 70;
/// Header lines one part may have (browsers send two).
const PART_HEADERS_MAX: usize = 8;
/// The most characters of a client's condition or field name quoted back in an error.
const QUOTED_CHARS_MAX: usize = 200;
/// Fields no policy condition need name (S3's "Creating a POST Policy"), besides
/// `x-ignore-*`.
const UNCOVERED_FIELDS: [&str; 3] = ["x-amz-signature", "policy", "file"];

/// The boundary of a `multipart/form-data` `Content-Type` value; `Ok(None)` for any other
/// type. A form type without a valid boundary (RFC 2046: 1 to 70 of `bchars`, not ending
/// in a space) or with two is malformed.
pub fn form_boundary(content_type: &[u8]) -> Result<Option<String>, SigV4Error> {
    let Ok(text) = std::str::from_utf8(content_type) else {
        return Ok(None);
    };
    let mut params = text.split(';');
    let media = params.next().unwrap_or_default().trim_matches(is_ows);
    if !media.eq_ignore_ascii_case("multipart/form-data") {
        return Ok(None);
    }
    let bad = SigV4Error::MalformedPostRequest("no valid boundary in Content-Type");
    let mut boundary = None;
    for param in params {
        let param = param.trim_matches(is_ows);
        if param.is_empty() {
            continue;
        }
        let (name, value) = param.split_once('=').ok_or(bad.clone())?;
        if !name
            .trim_end_matches(is_ows)
            .eq_ignore_ascii_case("boundary")
        {
            continue;
        }
        let value = value.trim_start_matches(is_ows);
        let value = match value.strip_prefix('"') {
            Some(quoted) => quoted.strip_suffix('"').ok_or(bad.clone())?,
            None => value,
        };
        if boundary.is_some() || !is_boundary(value) {
            return Err(bad);
        }
        boundary = Some(value.to_owned());
    }
    boundary.map(Some).ok_or(bad)
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// RFC 2046 `boundary := 0*69<bchars> bcharsnospace`.
fn is_boundary(b: &str) -> bool {
    (1..=BOUNDARY_LEN_MAX).contains(&b.len())
        && !b.ends_with(' ')
        && b.bytes().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'\''
                        | b'('
                        | b')'
                        | b'+'
                        | b'_'
                        | b','
                        | b'-'
                        | b'.'
                        | b'/'
                        | b':'
                        | b'='
                        | b'?'
                        | b' '
                )
        })
}

/// One form field before the file part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The name, as sent (S3 compares names case-insensitively).
    pub name: String,
    /// The value.
    pub value: String,
    /// Where the value is in the scanned bytes (what a re-signature replaces).
    value_at: Range<usize>,
}

/// The fields before a form's file part, and where the file's content starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormPrefix {
    fields: Vec<Field>,
    file_start: usize,
    file_name: Option<String>,
    boundary_len: usize,
}

impl FormPrefix {
    /// The offset of the file's first byte: the prefix is the body's bytes before it.
    pub fn file_start(&self) -> usize {
        self.file_start
    }

    /// The fields before the file, in order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The value of field `name` (ASCII case-insensitive).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value.as_str())
    }

    /// The file part's `filename`, if it has one.
    pub fn file_name(&self) -> Option<&str> {
        self.file_name.as_deref()
    }

    /// The most file bytes a body of `content_length` bytes can hold after this prefix:
    /// the rest ends with at least `CRLF--boundary--`.
    pub fn file_bytes_max(&self, content_length: u64) -> Option<u64> {
        let closing = self.boundary_len as u64 + 6;
        content_length.checked_sub(self.file_start as u64 + closing)
    }
}

/// Scans the start of a form's body (`buf`, the bytes read so far) for the fields before
/// the file part. `Ok(None)`: read more. `complete`: `buf` is the whole body, so a form
/// that has not reached its file part is malformed. Only the first [`PREFIX_BYTES_MAX`]
/// bytes are read; a prefix longer than that is refused.
pub fn scan(buf: &[u8], boundary: &str, complete: bool) -> Result<Option<FormPrefix>, SigV4Error> {
    if !is_boundary(boundary) {
        return Err(SigV4Error::MalformedPostRequest("invalid boundary"));
    }
    let window = &buf[..buf.len().min(PREFIX_BYTES_MAX)];
    match scan_window(window, boundary.as_bytes())? {
        Some(prefix) => Ok(Some(prefix)),
        None if buf.len() >= PREFIX_BYTES_MAX => {
            Err(SigV4Error::PostPreDataTooLarge { resigned: false })
        }
        None if complete => Err(SigV4Error::MalformedPostRequest(
            "the body ends before the file part",
        )),
        None => Ok(None),
    }
}

/// [`scan`] within `buf`: `Ok(None)` whenever the bytes run out, an error only for what
/// more bytes cannot fix.
fn scan_window(buf: &[u8], boundary: &[u8]) -> Result<Option<FormPrefix>, SigV4Error> {
    let malformed = SigV4Error::MalformedPostRequest;
    let mut dash_boundary = Vec::with_capacity(boundary.len() + 4);
    dash_boundary.extend_from_slice(b"\r\n--");
    dash_boundary.extend_from_slice(boundary);
    let delimiter = &dash_boundary[..];
    let first = &delimiter[2..];
    // No preamble: the body starts with the first boundary line.
    if buf.len() < first.len() {
        return if first.starts_with(buf) {
            Ok(None)
        } else {
            Err(malformed("the body does not start with --boundary"))
        };
    }
    if &buf[..first.len()] != first {
        return Err(malformed("the body does not start with --boundary"));
    }
    let mut pos = first.len();
    let mut fields: Vec<Field> = Vec::new();
    loop {
        // After a boundary: CRLF and a part, or `--` and the end of the form.
        match buf.get(pos..pos + 2) {
            None => return Ok(None),
            Some(b"\r\n") => pos += 2,
            Some(b"--") => return Err(SigV4Error::PostFileMissing),
            Some(_) => return Err(malformed("a boundary line must end with CRLF")),
        }
        let Some((part, after)) = part_headers(buf, pos)? else {
            return Ok(None);
        };
        pos = after;
        if part.name.eq_ignore_ascii_case("file") {
            return Ok(Some(FormPrefix {
                fields,
                file_start: pos,
                file_name: part.file_name,
                boundary_len: boundary.len(),
            }));
        }
        if part.file_name.is_some() {
            // A second file input before `file`: S3 takes exactly one file.
            return Err(SigV4Error::PostFileMissing);
        }
        let Some(len) = find(&buf[pos..], delimiter) else {
            return Ok(None);
        };
        let value = std::str::from_utf8(&buf[pos..pos + len])
            .map_err(|_| malformed("a field value is not UTF-8"))?;
        if fields
            .iter()
            .any(|f| f.name.eq_ignore_ascii_case(&part.name))
        {
            return Err(malformed("a form field appears more than once"));
        }
        fields.push(Field {
            name: part.name,
            value: value.to_owned(),
            value_at: pos..pos + len,
        });
        pos += len + delimiter.len();
    }
}

/// What a part's headers say.
struct PartHeaders {
    name: String,
    file_name: Option<String>,
}

/// Parses the header block of the part starting at `pos`: `Ok(Some((headers, offset of
/// its content)))`, `Ok(None)` when the block is not complete yet.
fn part_headers(buf: &[u8], mut pos: usize) -> Result<Option<(PartHeaders, usize)>, SigV4Error> {
    let malformed = SigV4Error::MalformedPostRequest;
    let mut disposition: Option<PartHeaders> = None;
    let mut lines = 0;
    loop {
        let Some(eol) = buf[pos..].iter().position(|&c| c == b'\n') else {
            return Ok(None);
        };
        let line = buf[pos..pos + eol]
            .strip_suffix(b"\r")
            .ok_or(malformed("a part header line must end with CRLF"))?;
        pos += eol + 1;
        if line.is_empty() {
            break;
        }
        lines += 1;
        if lines > PART_HEADERS_MAX || line.contains(&b'\r') {
            return Err(malformed("malformed part headers"));
        }
        let line =
            std::str::from_utf8(line).map_err(|_| malformed("a part header is not UTF-8"))?;
        let (name, value) = line
            .split_once(':')
            .ok_or(malformed("a part header line without ':'"))?;
        if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
            return Err(malformed("a part header name is not a token"));
        }
        let value = value.trim_matches(is_ows);
        if name.eq_ignore_ascii_case("content-disposition") {
            if disposition.is_some() {
                return Err(malformed("a part with two Content-Disposition headers"));
            }
            disposition = Some(content_disposition(value)?);
        } else if name.eq_ignore_ascii_case("content-transfer-encoding")
            && !["7bit", "8bit", "binary"]
                .iter()
                .any(|e| value.eq_ignore_ascii_case(e))
        {
            // The storage would decode it, weir would not: both must read the same value.
            return Err(malformed("a part with a Content-Transfer-Encoding"));
        }
    }
    let part = disposition.ok_or(malformed("a part without Content-Disposition"))?;
    Ok(Some((part, pos)))
}

/// `form-data; name="…"[; filename="…"]` (RFC 7578 §4.2); other parameters are ignored.
fn content_disposition(value: &str) -> Result<PartHeaders, SigV4Error> {
    let bad = SigV4Error::MalformedPostRequest("malformed Content-Disposition");
    let (kind, mut rest) = value.split_at(value.find(';').unwrap_or(value.len()));
    if !kind.trim_matches(is_ows).eq_ignore_ascii_case("form-data") {
        return Err(SigV4Error::MalformedPostRequest(
            "a part whose Content-Disposition is not form-data",
        ));
    }
    let (mut name, mut file_name) = (None, None);
    loop {
        rest = rest.trim_start_matches(is_ows);
        if rest.is_empty() {
            break;
        }
        rest = rest
            .strip_prefix(';')
            .ok_or(bad.clone())?
            .trim_start_matches(is_ows);
        if rest.is_empty() {
            break;
        }
        let eq = rest.find('=').ok_or(bad.clone())?;
        let param = rest[..eq].trim_end_matches(is_ows);
        rest = rest[eq + 1..].trim_start_matches(is_ows);
        let value = match rest.strip_prefix('"') {
            Some(quoted) => {
                let (value, after) = quoted_string(quoted).ok_or(bad.clone())?;
                // Field names never need an escape, and nodes differ on reading one
                // (`"fil\e"` is `file` to weir and `fil\e` to others): refused, so weir
                // and the node see the same fields.
                if param.eq_ignore_ascii_case("name")
                    && quoted[..quoted.len() - after.len()].contains('\\')
                {
                    return Err(SigV4Error::MalformedPostRequest(
                        "a field name with a backslash escape",
                    ));
                }
                rest = after;
                value
            }
            None => {
                let end = rest.find([';', ' ', '\t']).unwrap_or(rest.len());
                let (token, after) = rest.split_at(end);
                rest = after;
                token.to_owned()
            }
        };
        let slot = if param.eq_ignore_ascii_case("name") {
            &mut name
        } else if param.eq_ignore_ascii_case("filename") {
            &mut file_name
        } else {
            continue;
        };
        if slot.replace(value).is_some() {
            return Err(bad);
        }
    }
    let name = name.filter(|n| !n.is_empty() && !n.chars().any(char::is_control));
    Ok(PartHeaders {
        name: name.ok_or(SigV4Error::MalformedPostRequest(
            "a part without a field name",
        ))?,
        file_name,
    })
}

/// The content of a quoted-string whose opening quote is gone (`\x` is `x`), and the
/// text after its closing quote.
fn quoted_string(text: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &text[i + 1..])),
            '\\' => out.push(chars.next()?.1),
            c => out.push(c),
        }
    }
    None
}

/// The offset of the first `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

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
    policy: Policy,
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

/// One POST policy condition.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    /// The field equals `value`: `{"field": "value"}` (`object`) or `["eq", "$field", …]`.
    Eq {
        field: String,
        value: String,
        object: bool,
    },
    /// The field starts with `prefix` (`""`: any value): `["starts-with", "$field", …]`.
    StartsWith { field: String, prefix: String },
    /// The file's size in bytes: `["content-length-range", min, max]`.
    LengthRange { min: u64, max: u64 },
}

impl Condition {
    /// The field the condition is on (`None` for the file's size).
    fn field(&self) -> Option<&str> {
        match self {
            Condition::Eq { field, .. } | Condition::StartsWith { field, .. } => Some(field),
            Condition::LengthRange { .. } => None,
        }
    }

    /// The condition as policy JSON.
    fn to_json(&self) -> Value {
        match self {
            Condition::Eq {
                field,
                value,
                object: true,
            } => {
                let mut map = serde_json::Map::new();
                map.insert(field.clone(), Value::String(value.clone()));
                Value::Object(map)
            }
            Condition::Eq { field, value, .. } => {
                serde_json::json!(["eq", format!("${field}"), value])
            }
            Condition::StartsWith { field, prefix } => {
                serde_json::json!(["starts-with", format!("${field}"), prefix])
            }
            Condition::LengthRange { min, max } => {
                serde_json::json!(["content-length-range", min, max])
            }
        }
    }

    /// The condition as S3 quotes a failed one (`["eq", "$key", "a"]`), shortened.
    fn quoted(&self) -> String {
        let json = match self {
            Condition::Eq { field, value, .. } => {
                serde_json::json!(["eq", format!("${field}"), value])
            }
            other => other.to_json(),
        };
        shorten(json.to_string())
    }
}

fn shorten(mut text: String) -> String {
    if let Some((i, _)) = text.char_indices().nth(QUOTED_CHARS_MAX) {
        text.truncate(i);
        text.push('…');
    }
    text
}

/// A decoded POST policy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Policy {
    /// `expiration` as sent (kept verbatim when re-signing).
    expiration_text: String,
    expiration: Timestamp,
    conditions: Vec<Condition>,
}

impl Policy {
    /// Decodes the `policy` field: base64 (standard, padded) of UTF-8 JSON.
    fn decode(b64: &str) -> Result<Policy, SigV4Error> {
        let json = base64_decode(b64).ok_or(SigV4Error::InvalidPolicyDocument(
            "the policy is not base64",
        ))?;
        let raw: RawPolicy = serde_json::from_slice(&json)
            .map_err(|_| SigV4Error::InvalidPolicyDocument("Invalid JSON."))?;
        if let Some(problem) = raw.problem {
            return Err(SigV4Error::InvalidPolicyDocument(problem));
        }
        let expiration_text = raw.expiration.ok_or(SigV4Error::InvalidPolicyDocument(
            "Policy missing expiration.",
        ))?;
        let expiration = Timestamp::parse_iso8601(&expiration_text).ok_or(
            SigV4Error::InvalidPolicyDocument("Invalid 'expiration' value."),
        )?;
        let raw_conditions = raw.conditions.ok_or(SigV4Error::InvalidPolicyDocument(
            "Policy missing conditions.",
        ))?;
        let mut conditions = Vec::with_capacity(raw_conditions.len());
        for raw in raw_conditions {
            raw.into_conditions(&mut conditions)?;
        }
        Ok(Policy {
            expiration_text,
            expiration,
            conditions,
        })
    }

    /// The tightest `content-length-range` (every one must hold).
    fn length_range(&self) -> Option<(u64, u64)> {
        self.conditions.iter().fold(None, |acc, c| match (c, acc) {
            (Condition::LengthRange { min, max }, None) => Some((*min, *max)),
            (Condition::LengthRange { min, max }, Some((lo, hi))) => {
                Some(((*min).max(lo), (*max).min(hi)))
            }
            _ => acc,
        })
    }

    /// Every condition holds for the form's fields (`bucket`: the request's bucket), and
    /// every field is named by a condition.
    fn check(&self, form: &FormPrefix, bucket: &str) -> Result<(), SigV4Error> {
        let value = |field: &str| {
            if field.eq_ignore_ascii_case("bucket") {
                Some(bucket)
            } else {
                form.field(field)
            }
        };
        for condition in &self.conditions {
            let holds = match condition {
                Condition::Eq {
                    field, value: want, ..
                } => value(field) == Some(want.as_str()),
                Condition::StartsWith { field, prefix } => value(field)
                    .unwrap_or_default()
                    .starts_with(prefix.as_str()),
                Condition::LengthRange { .. } => true,
            };
            if !holds {
                return Err(SigV4Error::PolicyConditionFailed(condition.quoted()));
            }
        }
        for field in &form.fields {
            let name = field.name.to_ascii_lowercase();
            if UNCOVERED_FIELDS.contains(&name.as_str()) || name.starts_with("x-ignore-") {
                continue;
            }
            let named = self
                .conditions
                .iter()
                .any(|c| c.field().is_some_and(|f| f.eq_ignore_ascii_case(&name)));
            if !named {
                return Err(SigV4Error::PolicyExtraField(shorten(field.name.clone())));
            }
        }
        Ok(())
    }

    /// The policy JSON re-signed for `credential` at `date`: conditions on
    /// `x-amz-credential` and `x-amz-date` become `eq` the new values, in place.
    fn resigned_json(&self, credential: &str, date: &str) -> String {
        let conditions: Vec<Value> = self
            .conditions
            .iter()
            .map(|c| {
                let new = match c.field() {
                    Some(f) if f.eq_ignore_ascii_case("x-amz-credential") => Some(credential),
                    Some(f) if f.eq_ignore_ascii_case("x-amz-date") => Some(date),
                    _ => None,
                };
                match (new, c.field()) {
                    (Some(value), Some(field)) => Condition::Eq {
                        field: field.to_owned(),
                        value: value.to_owned(),
                        object: true,
                    }
                    .to_json(),
                    _ => c.to_json(),
                }
            })
            .collect();
        serde_json::json!({
            "expiration": self.expiration_text,
            "conditions": conditions,
        })
        .to_string()
    }
}

/// The policy's top level as sent; `problem` is set for what JSON allows but a policy
/// does not (an unknown or repeated element).
struct RawPolicy {
    expiration: Option<String>,
    conditions: Option<Vec<RawCondition>>,
    problem: Option<&'static str>,
}

impl<'de> Deserialize<'de> for RawPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PolicyVisitor;
        impl<'de> Visitor<'de> for PolicyVisitor {
            type Value = RawPolicy;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a POST policy object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawPolicy, A::Error> {
                let mut raw = RawPolicy {
                    expiration: None,
                    conditions: None,
                    problem: None,
                };
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "expiration" if raw.expiration.is_none() => {
                            raw.expiration = Some(map.next_value()?);
                        }
                        "conditions" if raw.conditions.is_none() => {
                            raw.conditions = Some(map.next_value()?);
                        }
                        "expiration" | "conditions" => {
                            map.next_value::<IgnoredAny>()?;
                            raw.problem = Some("a policy element appears twice.");
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            raw.problem = Some("Unexpected policy element.");
                        }
                    }
                }
                Ok(raw)
            }
        }
        d.deserialize_map(PolicyVisitor)
    }
}

/// A condition as sent: an object of exact matches, an array, or something else.
enum RawCondition {
    Object(Vec<(String, Value)>),
    Array(Vec<Value>),
    Other,
}

impl<'de> Deserialize<'de> for RawCondition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ConditionVisitor;
        impl<'de> Visitor<'de> for ConditionVisitor {
            type Value = RawCondition;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a POST policy condition")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawCondition, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    entries.push(entry);
                }
                Ok(RawCondition::Object(entries))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawCondition, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Value>()? {
                    items.push(item);
                }
                Ok(RawCondition::Array(items))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawCondition, E> {
                Ok(RawCondition::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawCondition, E> {
                Ok(RawCondition::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawCondition, E> {
                Ok(RawCondition::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawCondition, E> {
                Ok(RawCondition::Other)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<RawCondition, E> {
                Ok(RawCondition::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawCondition, E> {
                Ok(RawCondition::Other)
            }
        }
        d.deserialize_any(ConditionVisitor)
    }
}

impl RawCondition {
    /// Appends the conditions this one says (an object may hold several exact matches).
    fn into_conditions(self, out: &mut Vec<Condition>) -> Result<(), SigV4Error> {
        let invalid = SigV4Error::InvalidPolicyDocument("Invalid Condition.");
        match self {
            RawCondition::Object(entries) => {
                if entries.is_empty() {
                    return Err(invalid);
                }
                for (i, (field, value)) in entries.iter().enumerate() {
                    let Value::String(value) = value else {
                        return Err(invalid);
                    };
                    if entries[..i].iter().any(|(f, _)| f == field) || field.is_empty() {
                        return Err(invalid);
                    }
                    out.push(Condition::Eq {
                        field: field.clone(),
                        value: value.clone(),
                        object: true,
                    });
                }
                Ok(())
            }
            RawCondition::Array(items) => {
                let [Value::String(op), a, b] = &items[..] else {
                    return Err(invalid);
                };
                let condition = if op.eq_ignore_ascii_case("content-length-range") {
                    let (min, max) = (
                        length(a).ok_or(invalid.clone())?,
                        length(b).ok_or(invalid.clone())?,
                    );
                    if min > max {
                        return Err(invalid);
                    }
                    Condition::LengthRange { min, max }
                } else {
                    let (Value::String(field), Value::String(value)) = (a, b) else {
                        return Err(invalid);
                    };
                    let field = field
                        .strip_prefix('$')
                        .filter(|f| !f.is_empty())
                        .ok_or(invalid.clone())?
                        .to_owned();
                    let value = value.clone();
                    if op.eq_ignore_ascii_case("eq") {
                        Condition::Eq {
                            field,
                            value,
                            object: false,
                        }
                    } else if op.eq_ignore_ascii_case("starts-with") {
                        Condition::StartsWith {
                            field,
                            prefix: value,
                        }
                    } else {
                        return Err(invalid);
                    }
                };
                out.push(condition);
                Ok(())
            }
            RawCondition::Other => Err(invalid),
        }
    }
}

/// A byte count in a `content-length-range`: a non-negative integer, or one in a string.
fn length(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4).
fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(BASE64[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard, padded base64 (RFC 4648 §4); `None` for anything else (no
/// whitespace, no non-zero bits after the last byte). Shared with the admin plane's
/// `Basic` credentials.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        Some(u32::from(v))
    }
    let b = text.as_bytes();
    if !b.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    for (i, quad) in b.chunks_exact(4).enumerate() {
        let last = i + 1 == b.len() / 4;
        let pad = match quad {
            [_, _, b'=', b'='] if last => 2,
            [_, _, _, b'='] if last => 1,
            _ => 0,
        };
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = (n << 6) | sextet(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        // Bits a shorter encoding would not have set must be zero (canonical form).
        if bytes[3 - pad..].iter().any(|&x| x != 0) {
            return None;
        }
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::key::SigningKey;
    use super::super::time::Date;
    use super::*;
    use crate::s3code::S3Code;
    use proptest::prelude::*;

    const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const SKEW: Duration = Duration::from_secs(900);
    const BOUNDARY: &str = "----weirFormBoundary7MA4YWxkTrZu0gW";

    /// AWS's example POST policy ("Example: Browser-Based Upload using HTTP POST (Using
    /// AWS Signature Version 4)"), with the CRLF line ends its base64 was made from.
    const AWS_POLICY: &str = "{ \"expiration\": \"2015-12-30T12:00:00.000Z\",\r\n  \"conditions\": [\r\n    {\"bucket\": \"sigv4examplebucket\"},\r\n    [\"starts-with\", \"$key\", \"user/user1/\"],\r\n    {\"acl\": \"public-read\"},\r\n    {\"success_action_redirect\": \"http://sigv4examplebucket.s3.amazonaws.com/successful_upload.html\"},\r\n    [\"starts-with\", \"$Content-Type\", \"image/\"],\r\n    {\"x-amz-meta-uuid\": \"14365123651274\"},\r\n    {\"x-amz-server-side-encryption\": \"AES256\"},\r\n    [\"starts-with\", \"$x-amz-meta-tag\", \"\"],\r\n\r\n    {\"x-amz-credential\": \"AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request\"},\r\n    {\"x-amz-algorithm\": \"AWS4-HMAC-SHA256\"},\r\n    {\"x-amz-date\": \"20151229T000000Z\" }\r\n  ]\r\n}";
    /// The example's base64 policy, as published.
    const AWS_POLICY_B64: &str = "eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEyLTMwVDEyOjAwOjAwLjAwMFoiLA0KICAiY29uZGl0aW9ucyI6IFsNCiAgICB7ImJ1Y2tldCI6ICJzaWd2NGV4YW1wbGVidWNrZXQifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAidXNlci91c2VyMS8iXSwNCiAgICB7ImFjbCI6ICJwdWJsaWMtcmVhZCJ9LA0KICAgIHsic3VjY2Vzc19hY3Rpb25fcmVkaXJlY3QiOiAiaHR0cDovL3NpZ3Y0ZXhhbXBsZWJ1Y2tldC5zMy5hbWF6b25hd3MuY29tL3N1Y2Nlc3NmdWxfdXBsb2FkLmh0bWwifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRDb250ZW50LVR5cGUiLCAiaW1hZ2UvIl0sDQogICAgeyJ4LWFtei1tZXRhLXV1aWQiOiAiMTQzNjUxMjM2NTEyNzQifSwNCiAgICB7IngtYW16LXNlcnZlci1zaWRlLWVuY3J5cHRpb24iOiAiQUVTMjU2In0sDQogICAgWyJzdGFydHMtd2l0aCIsICIkeC1hbXotbWV0YS10YWciLCAiIl0sDQoNCiAgICB7IngtYW16LWNyZWRlbnRpYWwiOiAiQUtJQUlPU0ZPRE5ON0VYQU1QTEUvMjAxNTEyMjkvdXMtZWFzdC0xL3MzL2F3czRfcmVxdWVzdCJ9LA0KICAgIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwNCiAgICB7IngtYW16LWRhdGUiOiAiMjAxNTEyMjlUMDAwMDAwWiIgfQ0KICBdDQp9";
    /// The example's published signature.
    const AWS_SIGNATURE: &str = "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e";

    fn lookup(access_key: &str) -> Option<&'static str> {
        (access_key == AKID).then_some(SECRET)
    }

    /// `2015-12-29T00:00:00Z` (the example's x-amz-date) plus `secs`.
    fn at(secs: i64) -> SystemTime {
        Timestamp::from_unix_secs(
            Timestamp::parse_amz("20151229T000000Z")
                .unwrap()
                .unix_secs()
                + secs,
        )
        .unwrap()
        .to_system_time()
    }

    /// The example form's fields, in its order (before the file).
    fn aws_fields() -> Vec<(String, String)> {
        [
            ("key", "user/user1/${filename}"),
            ("acl", "public-read"),
            (
                "success_action_redirect",
                "http://sigv4examplebucket.s3.amazonaws.com/successful_upload.html",
            ),
            ("Content-Type", "image/jpeg"),
            ("x-amz-meta-uuid", "14365123651274"),
            ("x-amz-server-side-encryption", "AES256"),
            (
                "X-Amz-Credential",
                "AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request",
            ),
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            ("X-Amz-Date", "20151229T000000Z"),
            ("x-amz-meta-tag", ""),
            ("Policy", AWS_POLICY_B64),
            ("X-Amz-Signature", AWS_SIGNATURE),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
    }

    /// A multipart body: `fields`, then the file part with `file`, then `after` fields.
    fn body(fields: &[(String, String)], file: &[u8], after: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in fields {
            out.extend_from_slice(
                format!(
                    "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        out.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"photo.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(file);
        for (name, value) in after {
            out.extend_from_slice(
                format!(
                    "\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}"
                )
                .as_bytes(),
            );
        }
        out.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
        out
    }

    fn scanned(bytes: &[u8]) -> FormPrefix {
        scan(bytes, BOUNDARY, true).unwrap().unwrap()
    }

    fn verify_at(
        fields: &[(String, String)],
        bucket: &str,
        now: SystemTime,
    ) -> Result<VerifiedForm, SigV4Error> {
        scanned(&body(fields, b"\xff\xd8 jpeg", &[])).verify(bucket, &mut lookup, now, SKEW)
    }

    fn set(fields: &mut Vec<(String, String)>, name: &str, value: &str) {
        match fields
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(f) => f.1 = value.to_string(),
            None => fields.push((name.to_string(), value.to_string())),
        }
    }

    /// Signs `policy` JSON with the example key on the example day: (base64, signature).
    fn signed(policy: &str) -> (String, String) {
        let b64 = base64_encode(policy.as_bytes());
        let key = SigningKey::derive(
            SECRET.as_bytes(),
            Scope::new(Date::new(2015, 12, 29).unwrap(), "us-east-1", "s3"),
        );
        let sig = key.sign(&[b64.as_bytes()]).to_string();
        (b64, sig)
    }

    /// The example form with its policy's conditions replaced by `conditions` (JSON
    /// array items), plus the signature fields, re-signed.
    fn form_with(conditions: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let policy = format!(
            "{{\"expiration\": \"2015-12-30T12:00:00Z\", \"conditions\": [{conditions}, \
             {{\"x-amz-credential\": \"{AKID}/20151229/us-east-1/s3/aws4_request\"}}, \
             {{\"x-amz-algorithm\": \"AWS4-HMAC-SHA256\"}}, {{\"x-amz-date\": \"20151229T000000Z\"}}]}}"
        );
        let (b64, sig) = signed(&policy);
        let mut fields: Vec<(String, String)> = extra
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        for (n, v) in [
            (
                "x-amz-credential",
                format!("{AKID}/20151229/us-east-1/s3/aws4_request"),
            ),
            ("x-amz-algorithm", "AWS4-HMAC-SHA256".into()),
            ("x-amz-date", "20151229T000000Z".into()),
            ("policy", b64),
            ("x-amz-signature", sig),
        ] {
            fields.push((n.to_string(), v));
        }
        fields
    }

    #[test]
    fn aws_example_policy_and_signature() {
        assert_eq!(base64_encode(AWS_POLICY.as_bytes()), AWS_POLICY_B64);
        assert_eq!(
            base64_decode(AWS_POLICY_B64).as_deref(),
            Some(AWS_POLICY.as_bytes())
        );
        let (_, sig) = signed(AWS_POLICY);
        assert_eq!(sig, AWS_SIGNATURE);

        let v = verify_at(&aws_fields(), "sigv4examplebucket", at(0)).unwrap();
        assert_eq!(v.access_key, AKID);
        assert_eq!(v.scope.to_string(), "20151229/us-east-1/s3/aws4_request");
        assert_eq!(v.key, "user/user1/${filename}");
        assert_eq!(v.expiration.to_string(), "20151230T120000Z");
        assert_eq!(v.length_range, None);
        assert_eq!(v.security_token, None);
        // Valid up to the last second before the expiration.
        let last = 36 * 3600 - 1;
        assert!(verify_at(&aws_fields(), "sigv4examplebucket", at(last)).is_ok());
    }

    #[test]
    fn expiry_skew_and_signature_are_enforced() {
        let fields = aws_fields();
        let bucket = "sigv4examplebucket";
        assert_eq!(
            verify_at(&fields, bucket, at(36 * 3600)).unwrap_err(),
            SigV4Error::PolicyExpired
        );
        // x-amz-date more than skew_max ahead of weir's clock.
        assert_eq!(
            verify_at(&fields, bucket, at(-901)).unwrap_err(),
            SigV4Error::NotYetValid
        );
        assert!(verify_at(&fields, bucket, at(-900)).is_ok());
        // A tampered policy (one base64 character) or signature.
        let mut tampered = fields.clone();
        set(
            &mut tampered,
            "policy",
            &AWS_POLICY_B64.replacen("eyAi", "eyBi", 1),
        );
        assert_eq!(
            verify_at(&tampered, bucket, at(0)).unwrap_err(),
            SigV4Error::SignatureDoesNotMatch
        );
        let mut tampered = fields.clone();
        set(
            &mut tampered,
            "x-amz-signature",
            &AWS_SIGNATURE.replace('8', "9"),
        );
        assert_eq!(
            verify_at(&tampered, bucket, at(0)).unwrap_err(),
            SigV4Error::SignatureDoesNotMatch
        );
        set(
            &mut tampered,
            "x-amz-signature",
            &AWS_SIGNATURE.to_uppercase(),
        );
        assert_eq!(
            verify_at(&tampered, bucket, at(0)).unwrap_err(),
            SigV4Error::SignatureDoesNotMatch
        );
        // Another key id, and the example key signing a policy it did not sign.
        let mut other = fields.clone();
        set(
            &mut other,
            "x-amz-credential",
            "AKIDUNKNOWN000000000/20151229/us-east-1/s3/aws4_request",
        );
        assert_eq!(
            verify_at(&other, bucket, at(0)).unwrap_err(),
            SigV4Error::InvalidAccessKeyId
        );
        let mut region = fields.clone();
        set(
            &mut region,
            "x-amz-credential",
            &format!("{AKID}/20151229/eu-west-1/s3/aws4_request"),
        );
        assert_eq!(
            verify_at(&region, bucket, at(0)).unwrap_err(),
            SigV4Error::SignatureDoesNotMatch
        );
        let mut date = fields.clone();
        set(&mut date, "x-amz-date", "20151230T000000Z");
        assert!(matches!(
            verify_at(&date, bucket, at(0)).unwrap_err(),
            SigV4Error::PostFieldInvalid(_)
        ));
    }

    #[test]
    fn a_key_that_climbs_out_of_the_bucket_is_refused() {
        let bucket = "sigv4examplebucket";
        for key in [
            "../bench/x",
            "user/user1/../../bench/x",
            "user/user1/..\\x",
            "a/./b",
            "a\0b",
        ] {
            let mut fields = aws_fields();
            set(&mut fields, "key", key);
            assert!(
                matches!(
                    verify_at(&fields, bucket, at(0)),
                    Err(SigV4Error::PostFieldInvalid(m)) if m.starts_with("key:")
                ),
                "{key:?}"
            );
        }
        // `${filename}` is put in before the check: the file name cannot climb either.
        let text = String::from_utf8(body(&aws_fields(), b"x", &[])).unwrap();
        let climbing = text.replacen("filename=\"photo.jpg\"", "filename=\"../../bench/x\"", 1);
        assert!(matches!(
            scanned(climbing.as_bytes()).verify(bucket, &mut lookup, at(0), SKEW),
            Err(SigV4Error::PostFieldInvalid(m)) if m.starts_with("key:")
        ));
        // Dots inside a segment are a name, not a climb.
        let mut fields = aws_fields();
        set(&mut fields, "key", "user/user1/..photo..jpg");
        assert!(!matches!(
            verify_at(&fields, bucket, at(0)),
            Err(SigV4Error::PostFieldInvalid(_))
        ));
    }

    #[test]
    fn the_policy_conditions_hold_for_the_fields() {
        let bucket = "sigv4examplebucket";
        // A key outside the policy's starts-with.
        let mut fields = aws_fields();
        set(&mut fields, "key", "user/user2/photo.jpg");
        let err = verify_at(&fields, bucket, at(0)).unwrap_err();
        assert_eq!(
            err,
            SigV4Error::PolicyConditionFailed(r#"["starts-with","$key","user/user1/"]"#.into())
        );
        assert_eq!(err.s3_status(), (403, S3Code::AccessDenied));
        assert_eq!(
            err.to_string(),
            r#"Invalid according to Policy: Policy Condition failed: ["starts-with","$key","user/user1/"]"#
        );
        // An exact match (object form) that does not hold; Content-Type starts-with.
        let mut fields = aws_fields();
        set(&mut fields, "acl", "private");
        assert_eq!(
            verify_at(&fields, bucket, at(0)).unwrap_err(),
            SigV4Error::PolicyConditionFailed(r#"["eq","$acl","public-read"]"#.into())
        );
        let mut fields = aws_fields();
        set(&mut fields, "content-type", "text/html");
        assert!(matches!(
            verify_at(&fields, bucket, at(0)).unwrap_err(),
            SigV4Error::PolicyConditionFailed(_)
        ));
        // The bucket condition is the request's bucket; a bucket field must agree.
        assert_eq!(
            verify_at(&aws_fields(), "otherbucket", at(0)).unwrap_err(),
            SigV4Error::PolicyConditionFailed(r#"["eq","$bucket","sigv4examplebucket"]"#.into())
        );
        // A field no condition names; x-ignore- fields need none.
        let mut fields = aws_fields();
        set(&mut fields, "x-amz-meta-extra", "1");
        assert_eq!(
            verify_at(&fields, bucket, at(0)).unwrap_err(),
            SigV4Error::PolicyExtraField("x-amz-meta-extra".into())
        );
        let mut fields = aws_fields();
        set(&mut fields, "x-ignore-anything", "1");
        assert!(verify_at(&fields, bucket, at(0)).is_ok());
        // "starts-with" "" matches any value, and a missing field.
        let mut fields = aws_fields();
        fields.retain(|(n, _)| n != "x-amz-meta-tag");
        assert!(verify_at(&fields, bucket, at(0)).is_ok());

        // ["eq", …], case-insensitive field names, content-length-range, bucket field.
        let fields = form_with(
            r#"["eq", "$Key", "exact/key"], ["content-length-range", 10, 20], {"bucket": "b1"}, ["starts-with", "$bucket", "b"]"#,
            &[("key", "exact/key"), ("BUCKET", "b1")],
        );
        let v = verify_at(&fields, "b1", at(0)).unwrap();
        assert_eq!(v.length_range, Some((10, 20)));
        assert_eq!(
            verify_at(&fields, "b2", at(0)).unwrap_err(),
            SigV4Error::PostFieldInvalid("the bucket field names another bucket than the request")
        );
        let mut wrong = fields.clone();
        set(&mut wrong, "key", "exact/key2");
        assert_eq!(
            verify_at(&wrong, "b1", at(0)).unwrap_err(),
            SigV4Error::PolicyConditionFailed(r#"["eq","$Key","exact/key"]"#.into())
        );
        // Every content-length-range holds: the tightest one counts.
        let fields = form_with(
            r#"["content-length-range", 10, 20], ["content-length-range", "15", "30"], ["starts-with", "$key", ""]"#,
            &[("key", "k")],
        );
        let v = verify_at(&fields, "b1", at(0)).unwrap();
        assert_eq!(v.length_range, Some((15, 20)));
        assert_eq!(v.check_room(Some(14)), Err(SigV4Error::EntityTooSmall));
        assert_eq!(v.check_room(Some(15)), Ok(()));
        assert!(v.check_room(None).is_err());
    }

    #[test]
    fn policy_documents_are_parsed_strictly() {
        for (policy, why) in [
            ("not json", "Invalid JSON."),
            (r#"{"conditions": []}"#, "Policy missing expiration."),
            (
                r#"{"expiration": "2015-12-30T12:00:00Z"}"#,
                "Policy missing conditions.",
            ),
            (
                r#"{"expiration": "tomorrow", "conditions": []}"#,
                "Invalid 'expiration' value.",
            ),
            (
                r#"{"expiration": "2015-12-30T12:00:00Z", "expiration": "2099-12-30T12:00:00Z", "conditions": []}"#,
                "a policy element appears twice.",
            ),
            (
                r#"{"expiration": "2015-12-30T12:00:00Z", "conditions": [], "x": 1}"#,
                "Unexpected policy element.",
            ),
            (
                r#"{"expiration": "2015-12-30T12:00:00Z", "conditions": [["ends-with", "$key", "x"]]}"#,
                "Invalid Condition.",
            ),
            (
                r#"{"expiration": "2015-12-30T12:00:00Z", "conditions": [["eq", "key", "x"]]}"#,
                "Invalid Condition.",
            ),
            (
                r#"{"expiration": "2015-12-30T12:00:00Z", "conditions": [["eq", "$key"]]}"#,
                "Invalid Condition.",
            ),
            (
                r#"{"expiration": "2015-12-30T12:00:00Z", "conditions": [{"key": 1}]}"#,
                "Invalid Condition.",
            ),
            (
                r#"{"expiration": "2015-12-30T12:00:00Z", "conditions": [{"key": "a", "key": "b"}]}"#,
                "Invalid Condition.",
            ),
            (
                r#"{"expiration": "2015-12-30T12:00:00Z", "conditions": [{}]}"#,
                "Invalid Condition.",
            ),
            (
                r#"{"expiration": "2015-12-30T12:00:00Z", "conditions": ["key"]}"#,
                "Invalid Condition.",
            ),
            (
                r#"{"expiration": "2015-12-30T12:00:00Z", "conditions": [["content-length-range", 5, 1]]}"#,
                "Invalid Condition.",
            ),
            (
                r#"{"expiration": "2015-12-30T12:00:00Z", "conditions": [["content-length-range", -1, 1]]}"#,
                "Invalid Condition.",
            ),
        ] {
            assert_eq!(
                Policy::decode(&base64_encode(policy.as_bytes())),
                Err(SigV4Error::InvalidPolicyDocument(why)),
                "{policy}"
            );
        }
        for not_base64 in ["e30", "e30=\n", "e3 0=", "e31="] {
            assert_eq!(
                Policy::decode(not_base64),
                Err(SigV4Error::InvalidPolicyDocument(
                    "the policy is not base64"
                )),
                "{not_base64:?}"
            );
        }
        // An object may hold several exact matches.
        let p = Policy::decode(&base64_encode(
            br#"{"expiration": "2015-12-30T12:00:00Z", "conditions": [{"acl": "private", "key": "k"}]}"#,
        ))
        .unwrap();
        assert_eq!(p.conditions.len(), 2);
    }

    #[test]
    fn signed_v2_and_anonymous_forms_are_refused() {
        let v2 = vec![
            ("key".to_string(), "k".to_string()),
            ("AWSAccessKeyId".to_string(), AKID.to_string()),
            ("policy".to_string(), "e30=".to_string()),
            ("signature".to_string(), "abc=".to_string()),
        ];
        assert_eq!(
            verify_at(&v2, "b", at(0)).unwrap_err(),
            SigV4Error::UnsupportedAlgorithm
        );
        let anonymous = vec![("key".to_string(), "k".to_string())];
        assert_eq!(
            verify_at(&anonymous, "b", at(0)).unwrap_err(),
            SigV4Error::MissingAuthentication
        );
        let mut both = aws_fields();
        set(&mut both, "AWSAccessKeyId", AKID);
        assert_eq!(
            verify_at(&both, "sigv4examplebucket", at(0)).unwrap_err(),
            SigV4Error::MultipleAuthMechanisms
        );
        let mut no_key = aws_fields();
        no_key.retain(|(n, _)| n != "key");
        assert_eq!(
            verify_at(&no_key, "sigv4examplebucket", at(0)).unwrap_err(),
            SigV4Error::PostFieldMissing("key")
        );
        let mut sigv4a = aws_fields();
        set(&mut sigv4a, "x-amz-algorithm", "AWS4-ECDSA-P256-SHA256");
        assert_eq!(
            verify_at(&sigv4a, "sigv4examplebucket", at(0)).unwrap_err(),
            SigV4Error::UnsupportedAlgorithm
        );
        let mut token = aws_fields();
        set(&mut token, "x-amz-security-token", "FQoG");
        // The token field is named by no condition of the example policy.
        assert_eq!(
            verify_at(&token, "sigv4examplebucket", at(0)).unwrap_err(),
            SigV4Error::PolicyExtraField("x-amz-security-token".into())
        );
        let fields = form_with(
            r#"{"x-amz-security-token": "FQoG"}, ["starts-with", "$key", ""]"#,
            &[("key", "k"), ("x-amz-security-token", "FQoG")],
        );
        let v = verify_at(&fields, "b", at(0)).unwrap();
        assert_eq!(v.security_token.as_deref(), Some("FQoG"));
    }

    #[test]
    fn only_the_fields_before_the_file_count() {
        let bytes = body(
            &aws_fields(),
            b"data\r\n--not-the-boundary\r\n",
            &[
                ("submit", "Upload"),
                ("x-amz-meta-late", "1"),
                ("key", "elsewhere"),
            ],
        );
        let prefix = scanned(&bytes);
        assert_eq!(prefix.fields().len(), 12);
        assert_eq!(prefix.file_name(), Some("photo.jpg"));
        assert_eq!(
            &bytes[prefix.file_start()..prefix.file_start() + 4],
            b"data"
        );
        let v = prefix
            .verify("sigv4examplebucket", &mut lookup, at(0), SKEW)
            .unwrap();
        assert_eq!(v.key, "user/user1/${filename}");
        // The file's room: the body minus the prefix and CRLF--boundary--.
        let whole = scanned(&body(&aws_fields(), b"0123456789", &[]));
        let len = body(&aws_fields(), b"0123456789", &[]).len() as u64;
        assert_eq!(whole.file_bytes_max(len), Some(10 + 2));
        assert_eq!(whole.file_bytes_max(whole.file_start() as u64), None);
    }

    #[test]
    fn scanning_is_incremental_and_bounded() {
        let bytes = body(&aws_fields(), b"file", &[]);
        let whole = scanned(&bytes);
        for cut in 0..whole.file_start() {
            assert_eq!(
                scan(&bytes[..cut], BOUNDARY, false),
                Ok(None),
                "cut at {cut}"
            );
            assert!(scan(&bytes[..cut], BOUNDARY, true).is_err(), "cut at {cut}");
        }
        assert_eq!(
            scan(&bytes[..whole.file_start()], BOUNDARY, false),
            Ok(Some(whole.clone()))
        );
        // 20 KiB of fields before the file is too much, however it is read.
        let mut big = aws_fields();
        set(&mut big, "x-ignore-padding", &"p".repeat(PREFIX_BYTES_MAX));
        let bytes = body(&big, b"file", &[]);
        assert_eq!(
            scan(&bytes, BOUNDARY, true),
            Err(SigV4Error::PostPreDataTooLarge { resigned: false })
        );
        assert_eq!(
            scan(&bytes[..PREFIX_BYTES_MAX - 1], BOUNDARY, false),
            Ok(None)
        );
        assert_eq!(
            SigV4Error::PostPreDataTooLarge { resigned: false }.s3_status(),
            (400, S3Code::MaxPostPreDataLengthExceeded)
        );
        // Just under the bound is fine.
        let mut fits = vec![("key".to_string(), "k".to_string())];
        let overhead = body(&fits, b"", &[]).len() - 2 - BOUNDARY.len() - 6;
        let field_overhead = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"x-ignore-p\"\r\n\r\n\r\n"
        )
        .len();
        set(
            &mut fits,
            "x-ignore-p",
            &"p".repeat(PREFIX_BYTES_MAX - overhead - field_overhead),
        );
        let bytes = body(&fits, b"", &[]);
        assert_eq!(scanned(&bytes).file_start(), PREFIX_BYTES_MAX);
    }

    #[test]
    fn malformed_forms_are_refused() {
        let malformed = |bytes: &[u8]| scan(bytes, BOUNDARY, true);
        let good = body(&aws_fields(), b"file", &[]);
        let text = String::from_utf8(good.clone()).unwrap();
        // Bare LF: in a part header, after a boundary line, ending the header block.
        for (from, to) in [
            ("form-data; name=\"acl\"\r\n", "form-data; name=\"acl\"\n"),
            (
                &format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"key\""),
                &format!("--{BOUNDARY}\nContent-Disposition: form-data; name=\"key\""),
            ),
            ("name=\"acl\"\r\n\r\n", "name=\"acl\"\r\n\n"),
        ] {
            let bad = text.replacen(from, to, 1);
            assert!(
                matches!(
                    malformed(bad.as_bytes()),
                    Err(SigV4Error::MalformedPostRequest(_))
                ),
                "{to:?}"
            );
        }
        // A duplicate field, by case-insensitive name.
        let bad = text.replacen("name=\"acl\"", "name=\"KEY\"", 1);
        assert_eq!(
            malformed(bad.as_bytes()),
            Err(SigV4Error::MalformedPostRequest(
                "a form field appears more than once"
            ))
        );
        // A preamble, a missing Content-Disposition, a transfer encoding, no file.
        let bad = format!("preamble\r\n{text}");
        assert!(malformed(bad.as_bytes()).is_err());
        let bad = text.replacen(
            "Content-Disposition: form-data; name=\"acl\"",
            "Content-Type: text/plain",
            1,
        );
        assert!(malformed(bad.as_bytes()).is_err());
        let bad = text.replacen(
            "name=\"acl\"\r\n",
            "name=\"acl\"\r\nContent-Transfer-Encoding: base64\r\n",
            1,
        );
        assert_eq!(
            malformed(bad.as_bytes()),
            Err(SigV4Error::MalformedPostRequest(
                "a part with a Content-Transfer-Encoding"
            ))
        );
        let no_file = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk\r\n--{BOUNDARY}--\r\n"
        );
        assert_eq!(
            malformed(no_file.as_bytes()),
            Err(SigV4Error::PostFileMissing)
        );
        let two_files = text.replacen("name=\"acl\"", "name=\"other\"; filename=\"a\"", 1);
        assert_eq!(
            malformed(two_files.as_bytes()),
            Err(SigV4Error::PostFileMissing)
        );
        // Boundary followed by something else than CRLF or --.
        let bad = text.replacen(
            &format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"acl\""),
            &format!("--{BOUNDARY}  \r\nContent-Disposition: form-data; name=\"acl\""),
            1,
        );
        assert!(malformed(bad.as_bytes()).is_err());
        // An escape in a field name is refused: nodes read it differently.
        let escaped = text.replacen("name=\"acl\"", "name=\"a\\cl\"", 1);
        assert_eq!(
            malformed(escaped.as_bytes()),
            Err(SigV4Error::MalformedPostRequest(
                "a field name with a backslash escape"
            ))
        );
        // A quoted file name with an escape, a token name, and a trailing ';' are fine.
        let ok = text.replacen("name=\"acl\"", "name=acl;", 1).replacen(
            "filename=\"photo.jpg\"",
            "filename=\"a\\\"b.jpg\"",
            1,
        );
        let p = scanned(ok.as_bytes());
        assert_eq!(p.file_name(), Some("a\"b.jpg"));
        assert_eq!(p.field("acl"), Some("public-read"));
    }

    #[test]
    fn content_type_boundaries() {
        let b = |ct: &str| form_boundary(ct.as_bytes());
        assert_eq!(
            b("multipart/form-data; boundary=abc"),
            Ok(Some("abc".into()))
        );
        assert_eq!(
            b("Multipart/Form-Data;charset=utf-8; BOUNDARY=\"a b'c\""),
            Ok(Some("a b'c".into()))
        );
        assert_eq!(b("application/octet-stream"), Ok(None));
        assert_eq!(b("multipart/mixed; boundary=abc"), Ok(None));
        for bad in [
            "multipart/form-data",
            "multipart/form-data; boundary=",
            "multipart/form-data; boundary=\"abc",
            "multipart/form-data; boundary=ab\"c",
            "multipart/form-data; boundary=abc; boundary=abc",
            "multipart/form-data; boundary=\"abc \"",
            &format!("multipart/form-data; boundary={}", "x".repeat(71)),
            "multipart/form-data; boundary",
        ] {
            assert!(b(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_resigned_form_verifies_with_the_new_identity_and_keeps_the_rest() {
        let bytes = body(&aws_fields(), b"JPEGDATA", &[]);
        let prefix = scanned(&bytes);
        let verified = prefix
            .verify("sigv4examplebucket", &mut lookup, at(0), SKEW)
            .unwrap();
        let now = at(3600);
        let pool_key = SigningKey::derive(
            b"pool-secret",
            Scope::new(Date::new(2015, 12, 29).unwrap(), "eu-west-1", "s3"),
        );
        let identity = Identity {
            access_key: "POOLKEY000000000001",
            key: &pool_key,
        };
        let new_prefix = verified.resign(&prefix, &bytes, &identity, now).unwrap();
        let mut new_bytes = new_prefix.clone();
        new_bytes.extend_from_slice(&bytes[prefix.file_start()..]);
        let again = scanned(&new_bytes);
        assert_eq!(again.file_start(), new_prefix.len());
        assert_eq!(
            again.field("x-amz-credential"),
            Some("POOLKEY000000000001/20151229/eu-west-1/s3/aws4_request")
        );
        assert_eq!(again.field("x-amz-date"), Some("20151229T010000Z"));
        // Every other field, and the file, as the client sent them.
        for (name, value) in aws_fields() {
            if ![
                "x-amz-credential",
                "x-amz-date",
                "policy",
                "x-amz-signature",
            ]
            .contains(&name.to_ascii_lowercase().as_str())
            {
                assert_eq!(again.field(&name), Some(value.as_str()), "{name}");
            }
        }
        assert_eq!(
            &new_bytes[again.file_start()..again.file_start() + 8],
            b"JPEGDATA"
        );
        let mut pool = |k: &str| (k == "POOLKEY000000000001").then_some("pool-secret");
        let v = again
            .verify("sigv4examplebucket", &mut pool, now, SKEW)
            .unwrap();
        assert_eq!(v.access_key, "POOLKEY000000000001");
        assert_eq!(v.expiration, verified.expiration);
        // The client's key no longer verifies it, and the conditions still bind: the
        // re-signed policy is the client's (a key outside user/user1/ still fails).
        assert_eq!(
            again
                .verify("sigv4examplebucket", &mut lookup, now, SKEW)
                .unwrap_err(),
            SigV4Error::InvalidAccessKeyId
        );
        assert_eq!(v.policy.conditions.len(), verified.policy.conditions.len());
        assert!(v.policy.conditions.contains(&Condition::StartsWith {
            field: "key".into(),
            prefix: "user/user1/".into()
        }));
        // A key for another day, and a prefix that would outgrow 20 KiB, are refused.
        assert!(matches!(
            verified.resign(&prefix, &bytes, &identity, at(86_400)),
            Err(SigV4Error::Unsignable(_))
        ));
        let long = "P".repeat(128);
        // (x-ignore- fields need no condition.)
        let mut near = aws_fields();
        let base = body(&near, b"", &[]).len();
        set(
            &mut near,
            "x-ignore-pad",
            &"p".repeat(PREFIX_BYTES_MAX - base - 80),
        );
        let bytes = body(&near, b"", &[]);
        let prefix = scanned(&bytes);
        let verified = prefix
            .verify("sigv4examplebucket", &mut lookup, at(0), SKEW)
            .unwrap();
        let long_id = Identity {
            access_key: &long,
            key: &pool_key,
        };
        assert_eq!(
            verified.resign(&prefix, &bytes, &long_id, now),
            Err(SigV4Error::PostPreDataTooLarge { resigned: true })
        );
        assert!(verified.resign(&prefix, &bytes, &identity, now).is_ok());
    }

    #[test]
    fn base64_round_trips() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let enc = base64_encode(&data);
            assert_eq!(base64_decode(&enc), Some(data), "{enc}");
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_decode("Zm9=vYmFy"), None);
        assert_eq!(base64_decode("Zm9"), None);
    }

    proptest! {
        #[test]
        fn scan_and_boundary_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), cut in 0usize..400) {
            let _ = form_boundary(&bytes);
            let _ = scan(&bytes, BOUNDARY, cut % 2 == 0);
            // Near-valid input: a real form cut and corrupted at one byte.
            let mut form = body(&aws_fields(), b"x", &[]);
            let i = cut.min(form.len() - 1);
            form[i] = bytes.first().copied().unwrap_or(b'\n');
            if let Ok(Some(p)) = scan(&form, BOUNDARY, true) {
                let _ = p.verify("sigv4examplebucket", &mut lookup, at(0), SKEW);
            }
            let _ = base64_decode(&String::from_utf8_lossy(&bytes));
        }
    }
}
