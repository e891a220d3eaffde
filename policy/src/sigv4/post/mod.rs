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

mod base64;
mod policy;
#[cfg(test)]
mod tests;
mod verify;

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

pub use base64::base64_decode;
use base64::base64_encode;
use policy::Policy;
pub use verify::VerifiedForm;

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
