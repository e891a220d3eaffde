//! Strict parsers for what a client claims: the `Authorization: AWS4-HMAC-SHA256 …`
//! header, the presigned-URL query parameters and `x-amz-content-sha256`.
//!
//! Strict means: exactly the shapes the SDKs send, every limit bounded, nothing guessed.
//! `SignedHeaders` must be lower case, sorted and unique (SigV4 requires it, and a
//! verifier that sorted for the client would sign a list the client never sent).
//! None of these functions panics on any input (property-tested in `tests_fuzz`).

use std::time::Duration;

use super::canonical::{percent_decode, query_params, ALGORITHM};
use super::crypto::Signature;
use super::error::SigV4Error;
use super::key::{Scope, TERMINATOR};
use super::time::{Date, Timestamp};

/// Longest access key id accepted (AWS documents 16..=128 characters).
pub const ACCESS_KEY_LEN_MAX: usize = 128;
/// Longest region name accepted.
pub const REGION_LEN_MAX: usize = 64;
/// Longest service name accepted.
pub const SERVICE_LEN_MAX: usize = 32;
/// Most header names one signature may cover.
pub const SIGNED_HEADERS_MAX: usize = 128;
/// Longest signed header name accepted.
pub const HEADER_NAME_LEN_MAX: usize = 128;
/// Longest lifetime of a presigned URL: seven days, as S3 enforces.
pub const PRESIGNED_EXPIRES_MAX: Duration = Duration::from_secs(604_800);
/// Shortest lifetime of a presigned URL: a URL valid for zero seconds has expired when
/// it is signed, and S3 refuses it as expired.
pub const PRESIGNED_EXPIRES_MIN: Duration = Duration::from_secs(1);

/// `AKID/date/region/service/aws4_request`: who signed, and for which scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The access key id.
    pub access_key: String,
    /// The scope the signing key was derived for.
    pub scope: Scope,
}

impl Credential {
    /// Parses `AKID/YYYYMMDD/region/service/aws4_request`.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let mut parts = text.split('/');
        let (Some(key), Some(date), Some(region), Some(service), Some(term), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err("Credential must be AKID/YYYYMMDD/region/service/aws4_request");
        };
        if key.is_empty() || key.len() > ACCESS_KEY_LEN_MAX || !key.bytes().all(is_key_char) {
            return Err("invalid access key id in Credential");
        }
        let date = Date::parse(date).ok_or("invalid date in Credential; expected YYYYMMDD")?;
        if region.is_empty()
            || region.len() > REGION_LEN_MAX
            || !region
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return Err("invalid region in Credential");
        }
        if service.is_empty()
            || service.len() > SERVICE_LEN_MAX
            || !service
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        {
            return Err("invalid service in Credential");
        }
        if term != TERMINATOR {
            return Err("Credential must end with aws4_request");
        }
        Ok(Self {
            access_key: key.to_string(),
            scope: Scope::new(date, region, service),
        })
    }
}

impl std::fmt::Display for Credential {
    /// `AKID/YYYYMMDD/region/service/aws4_request`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.access_key, self.scope)
    }
}

/// Visible ASCII that cannot confuse the Credential or header syntax.
fn is_key_char(c: u8) -> bool {
    c.is_ascii_graphic() && !matches!(c, b'/' | b',' | b';' | b'=' | b'"' | b'\\')
}

/// An RFC 9110 token character, lower case only.
fn is_lower_token_char(c: u8) -> bool {
    c.is_ascii_lowercase()
        || c.is_ascii_digit()
        || matches!(
            c,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// The validated `;`-separated, lower-case, sorted, unique list of signed header names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders(String);

impl SignedHeaders {
    /// Parses `a;b;c` strictly (see the module docs).
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        if text.is_empty() {
            return Err("SignedHeaders is empty");
        }
        let mut previous: Option<&str> = None;
        for (count, name) in text.split(';').enumerate() {
            if count >= SIGNED_HEADERS_MAX {
                return Err("too many SignedHeaders");
            }
            if name.is_empty()
                || name.len() > HEADER_NAME_LEN_MAX
                || !name.bytes().all(is_lower_token_char)
            {
                return Err("SignedHeaders names must be lower-case header names");
            }
            if previous.is_some_and(|p| p >= name) {
                return Err("SignedHeaders must be sorted and unique");
            }
            previous = Some(name);
        }
        Ok(Self(text.to_string()))
    }

    /// Builds the list from names already lower case, sorted and unique (weir's own).
    pub(crate) fn from_sorted(names: &[&str]) -> Self {
        Self(names.join(";"))
    }

    /// The names, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.0.split(';')
    }

    /// Whether `name` (lower case) is signed.
    pub fn contains(&self, name: &str) -> bool {
        self.iter().any(|n| n == name)
    }

    /// The list as sent: `a;b;c`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What `x-amz-content-sha256` declares about the body: the last line of the canonical
/// request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadHash {
    /// The SHA-256 of the whole body; the storage checks the body against it.
    Sha256([u8; 32]),
    /// `UNSIGNED-PAYLOAD`: the body is not covered by the signature.
    Unsigned,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: `aws-chunked` body, every chunk signed.
    Streaming,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`: signed chunks, then a signed trailer.
    StreamingTrailer,
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: `aws-chunked` body, chunks unsigned, trailer
    /// (a checksum) unsigned.
    StreamingUnsignedTrailer,
}

impl PayloadHash {
    /// Parses an `x-amz-content-sha256` value: a known literal or 64 lower-case hex digits.
    pub fn parse(value: &[u8]) -> Result<Self, SigV4Error> {
        Ok(match value {
            b"UNSIGNED-PAYLOAD" => Self::Unsigned,
            b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD" => Self::Streaming,
            b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER" => Self::StreamingTrailer,
            b"STREAMING-UNSIGNED-PAYLOAD-TRAILER" => Self::StreamingUnsignedTrailer,
            hex => Self::Sha256(
                Signature::from_hex(hex)
                    .ok_or(SigV4Error::InvalidContentSha256)?
                    .0,
            ),
        })
    }

    /// Whether the body is `aws-chunked` with a signature on every chunk.
    pub fn has_chunk_signatures(&self) -> bool {
        matches!(self, Self::Streaming | Self::StreamingTrailer)
    }

    /// Whether the body is `aws-chunked` (signed or not).
    pub fn is_aws_chunked(&self) -> bool {
        matches!(
            self,
            Self::Streaming | Self::StreamingTrailer | Self::StreamingUnsignedTrailer
        )
    }

    /// The header value, as it appears in the canonical request.
    pub fn to_header_value(&self) -> String {
        match self {
            Self::Sha256(hash) => Signature(*hash).to_string(),
            Self::Unsigned => "UNSIGNED-PAYLOAD".into(),
            Self::Streaming => "STREAMING-AWS4-HMAC-SHA256-PAYLOAD".into(),
            Self::StreamingTrailer => "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER".into(),
            Self::StreamingUnsignedTrailer => "STREAMING-UNSIGNED-PAYLOAD-TRAILER".into(),
        }
    }
}

/// A parsed `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHeader {
    /// Who signed and for which scope.
    pub credential: Credential,
    /// The header names the signature covers.
    pub signed_headers: SignedHeaders,
    /// The signature (the seed signature of a streaming upload).
    pub signature: Signature,
}

impl AuthHeader {
    /// Parses an `Authorization` value. Schemes other than `AWS4-HMAC-SHA256` are
    /// [`SigV4Error::UnsupportedAlgorithm`]; anything else wrong is
    /// [`SigV4Error::AuthorizationHeaderMalformed`].
    pub fn parse(value: &[u8]) -> Result<Self, SigV4Error> {
        let malformed = SigV4Error::AuthorizationHeaderMalformed;
        let text = std::str::from_utf8(value).map_err(|_| malformed("not ASCII"))?;
        let text = text.trim_matches([' ', '\t']);
        let (scheme, rest) = text.split_once([' ', '\t']).unwrap_or((text, ""));
        if scheme != ALGORITHM {
            return Err(SigV4Error::UnsupportedAlgorithm);
        }
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let part = part.trim_matches([' ', '\t']);
            let (name, value) = part
                .split_once('=')
                .ok_or(malformed("expected Name=Value components separated by ','"))?;
            let slot = match name {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed,
                "Signature" => &mut signature,
                _ => return Err(malformed("unknown component")),
            };
            if slot.replace(value).is_some() {
                return Err(malformed("repeated component"));
            }
        }
        let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature)
        else {
            return Err(malformed(
                "Credential, SignedHeaders and Signature are required",
            ));
        };
        Ok(Self {
            credential: Credential::parse(credential).map_err(malformed)?,
            signed_headers: SignedHeaders::parse(signed).map_err(malformed)?,
            signature: Signature::from_hex(signature.as_bytes())
                .ok_or(malformed("Signature must be 64 lower-case hex digits"))?,
        })
    }

    /// The header value, as SDKs write it.
    pub fn to_header_value(&self) -> String {
        format!(
            "{ALGORITHM} Credential={}, SignedHeaders={}, Signature={}",
            self.credential,
            self.signed_headers.as_str(),
            self.signature
        )
    }
}

/// The authentication of a presigned URL, from its `X-Amz-*` query parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presigned {
    /// `X-Amz-Credential`, decoded.
    pub credential: Credential,
    /// `X-Amz-Date`: when the URL was signed.
    pub time: Timestamp,
    /// `X-Amz-Expires`: how long after `time` the URL is valid.
    pub expires: Duration,
    /// `X-Amz-SignedHeaders`, decoded.
    pub signed_headers: SignedHeaders,
    /// `X-Amz-Signature`.
    pub signature: Signature,
    /// `X-Amz-Security-Token`, decoded, if present (temporary credentials).
    pub security_token: Option<String>,
}

impl Presigned {
    /// Whether a raw query carries presigned-URL authentication (any of
    /// `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Signature`).
    pub fn is_presigned(raw_query: &str) -> bool {
        query_params(raw_query).flatten().any(|p| {
            matches!(
                p.key.as_ref(),
                b"X-Amz-Algorithm" | b"X-Amz-Credential" | b"X-Amz-Signature"
            )
        })
    }

    /// Parses the presigned parameters of a raw query string. Every failure is
    /// [`SigV4Error::AuthorizationQueryParametersError`] but a foreign algorithm
    /// ([`SigV4Error::UnsupportedAlgorithm`]) and an `X-Amz-Expires` of zero
    /// ([`SigV4Error::Expired`], as S3 answers it).
    pub fn parse(raw_query: &str) -> Result<Self, SigV4Error> {
        let bad = SigV4Error::AuthorizationQueryParametersError;
        let mut values: [Option<String>; 7] = Default::default();
        for param in query_params(raw_query) {
            let param = param.map_err(|_| bad("broken percent-encoding"))?;
            let Some(slot) = super::canonical::PRESIGN_PARAMS
                .iter()
                .position(|name| name.as_bytes() == param.key.as_ref())
            else {
                continue;
            };
            let value = String::from_utf8(param.value.into_owned())
                .map_err(|_| bad("parameter is not UTF-8"))?;
            if values[slot].replace(value).is_some() {
                return Err(bad("repeated X-Amz-* parameter"));
            }
        }
        let [algorithm, credential, date, expires, signed, signature, token] = values;
        let (
            Some(algorithm),
            Some(credential),
            Some(date),
            Some(expires),
            Some(signed),
            Some(signature),
        ) = (algorithm, credential, date, expires, signed, signature)
        else {
            return Err(bad(
                "X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, \
                 X-Amz-SignedHeaders and X-Amz-Expires are required",
            ));
        };
        if algorithm != ALGORITHM {
            return Err(SigV4Error::UnsupportedAlgorithm);
        }
        let expires = presigned_expires(&expires)?;
        let parsed = Self {
            credential: Credential::parse(&credential).map_err(bad)?,
            time: Timestamp::parse_amz(&date).ok_or(bad(
                "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
            ))?,
            expires,
            signed_headers: SignedHeaders::parse(&signed).map_err(bad)?,
            signature: Signature::from_hex(signature.as_bytes())
                .ok_or(bad("X-Amz-Signature must be 64 lower-case hex digits"))?,
            security_token: token,
        };
        // Malformed parameters are reported first; a well-formed URL valid for zero
        // seconds expired when it was signed.
        if parsed.expires < PRESIGNED_EXPIRES_MIN {
            return Err(SigV4Error::Expired);
        }
        Ok(parsed)
    }
}

/// `X-Amz-Expires` as S3 reads it: a decimal number of seconds, at most
/// [`PRESIGNED_EXPIRES_MAX`]. A sign, a fraction, spaces or a value beyond the week are
/// malformed (400 `AuthorizationQueryParametersError`, with S3's wording). Zero passes
/// here; [`Presigned::parse`] refuses it as expired once the rest is well formed.
fn presigned_expires(text: &str) -> Result<Duration, SigV4Error> {
    let bad = SigV4Error::AuthorizationQueryParametersError;
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad("X-Amz-Expires should be a number"));
    }
    if text.starts_with('-') {
        return Err(bad("X-Amz-Expires must be non-negative"));
    }
    // Leading zeros are a number too; anything longer than the bound's digits is too big.
    let significant = digits.trim_start_matches('0');
    let secs: u64 = if significant.is_empty() {
        0
    } else if significant.len() > 7 {
        u64::MAX
    } else {
        significant
            .parse()
            .map_err(|_| bad("X-Amz-Expires should be a number"))?
    };
    let expires = Duration::from_secs(secs);
    if expires > PRESIGNED_EXPIRES_MAX {
        return Err(bad(
            "X-Amz-Expires must be less than a week (in seconds) that is 604800",
        ));
    }
    Ok(expires)
}

/// The query without the presigned-URL parameters (`X-Amz-Algorithm`, `-Credential`,
/// `-Date`, `-Expires`, `-SignedHeaders`, `-Signature`, `-Security-Token`), other
/// parameters kept byte for byte: the query to forward when re-signing a presigned
/// request with an `Authorization` header.
pub fn strip_presigned_params(raw_query: &str) -> String {
    let mut out = String::with_capacity(raw_query.len());
    for segment in raw_query.split('&').filter(|s| !s.is_empty()) {
        let key = segment.split_once('=').map_or(segment, |(k, _)| k);
        let is_auth = percent_decode(key.as_bytes()).is_some_and(|k| {
            super::canonical::PRESIGN_PARAMS
                .iter()
                .any(|name| name.as_bytes() == k.as_ref())
        });
        if !is_auth {
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(segment);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";

    fn malformed(value: &str) -> SigV4Error {
        AuthHeader::parse(value.as_bytes()).unwrap_err()
    }

    #[test]
    fn authorization_parses_and_round_trips() {
        let auth = AuthHeader::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(auth.credential.access_key, "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(
            auth.credential.scope.to_string(),
            "20130524/us-east-1/s3/aws4_request"
        );
        assert!(auth.signed_headers.contains("range"));
        assert!(!auth.signed_headers.contains("rang"));
        assert_eq!(auth.to_header_value(), GOOD);
        // Without spaces after the commas (as some SDKs write it), and in another order.
        let compact = "AWS4-HMAC-SHA256 Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41,Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date";
        assert_eq!(AuthHeader::parse(compact.as_bytes()).unwrap(), auth);
    }

    #[test]
    fn authorization_rejects_every_malformation() {
        let cases = [
            GOOD.replace("Credential=", "Credentials="),
            GOOD.replace("/aws4_request", "/aws5_request"),
            GOOD.replace("/20130524/", "/2013-05-24/"),
            GOOD.replace("/20130524/", "/20130532/"),
            GOOD.replace("us-east-1/s3", "us-east-1/S3"),
            GOOD.replace("us-east-1/", ""),
            GOOD.replace("AKIAIOSFODNN7EXAMPLE", ""),
            GOOD.replace("host;range", "range;host"),
            GOOD.replace("host;range", "host;host"),
            GOOD.replace("host;range", "Host;range"),
            GOOD.replace("host;range", "host;;range"),
            GOOD.replace(
                "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date",
                "SignedHeaders=",
            ),
            GOOD.replace("f0e8", "F0E8"),
            GOOD.replace("f0e8", "f0e"),
            GOOD.replace("f0e8", "g0e8"),
            GOOD.replace(", Signature=", ", Signature=f0e8, Signature="),
            GOOD.replace(
                ", Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
                "",
            ),
            format!("{GOOD},"),
            format!("{GOOD}, Foo=bar"),
            "AWS4-HMAC-SHA256".to_string(),
            "AWS4-HMAC-SHA256 ".to_string(),
        ];
        for case in cases {
            assert!(
                matches!(
                    malformed(&case),
                    SigV4Error::AuthorizationHeaderMalformed(_)
                ),
                "{case}: {:?}",
                malformed(&case)
            );
        }
        for scheme in [
            "AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=",
            "AWS4-ECDSA-P256-SHA256 Credential=AKID/20130524/s3/aws4_request, SignedHeaders=host, Signature=00",
            "Bearer abc",
            "",
            "AWS4-HMAC-SHA256Credential=x",
        ] {
            assert_eq!(malformed(scheme), SigV4Error::UnsupportedAlgorithm, "{scheme}");
        }
        assert!(matches!(
            AuthHeader::parse(b"AWS4-HMAC-SHA256 \xff"),
            Err(SigV4Error::AuthorizationHeaderMalformed(_))
        ));
    }

    const PRESIGNED: &str = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

    #[test]
    fn presigned_parses() {
        assert!(Presigned::is_presigned(PRESIGNED));
        assert!(!Presigned::is_presigned("prefix=J&max-keys=2"));
        let p = Presigned::parse(PRESIGNED).unwrap();
        assert_eq!(p.credential.access_key, "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(p.expires, Duration::from_secs(86_400));
        assert_eq!(p.time.to_string(), "20130524T000000Z");
        assert_eq!(p.signed_headers.as_str(), "host");
        assert_eq!(p.security_token, None);
        let literal_slashes = PRESIGNED.replace("%2F", "/");
        assert_eq!(Presigned::parse(&literal_slashes).unwrap(), p);
        let with_token = format!("{PRESIGNED}&X-Amz-Security-Token=a%2Bb%3D");
        assert_eq!(
            Presigned::parse(&with_token)
                .unwrap()
                .security_token
                .as_deref(),
            Some("a+b=")
        );
    }

    #[test]
    fn presigned_rejects_every_malformation() {
        let bad = |q: &str| {
            let e = Presigned::parse(q).unwrap_err();
            assert!(
                matches!(e, SigV4Error::AuthorizationQueryParametersError(_)),
                "{q}: {e:?}"
            );
        };
        bad(&PRESIGNED.replace("&X-Amz-Expires=86400", ""));
        bad(&PRESIGNED.replace("X-Amz-Expires=86400", "X-Amz-Expires=604801"));
        bad(&PRESIGNED.replace("X-Amz-Expires=86400", "X-Amz-Expires=-1"));
        bad(&PRESIGNED.replace("X-Amz-Expires=86400", "X-Amz-Expires=1e3"));
        bad(&PRESIGNED.replace("X-Amz-Expires=86400", "X-Amz-Expires=99999999999999999999"));
        bad(&PRESIGNED.replace("20130524T000000Z", "2013-05-24T00:00:00Z"));
        bad(&PRESIGNED.replace("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=x%3Bhost"));
        bad(&PRESIGNED.replace("aws4_request", "aws4"));
        bad(&PRESIGNED.replace("X-Amz-Signature=aeee", "X-Amz-Signature=AEEE"));
        bad(&PRESIGNED.replace("%2Fus-east-1", "%2Gus-east-1"));
        bad(&format!("{PRESIGNED}&X-Amz-Date=20130524T000000Z"));
        assert_eq!(
            Presigned::parse(&PRESIGNED.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256")),
            Err(SigV4Error::UnsupportedAlgorithm)
        );
        assert!(Presigned::parse(
            &PRESIGNED.replace("X-Amz-Expires=86400", "X-Amz-Expires=604800")
        )
        .is_ok());
    }

    #[test]
    fn payload_hash_is_strict() {
        assert_eq!(
            PayloadHash::parse(b"UNSIGNED-PAYLOAD"),
            Ok(PayloadHash::Unsigned)
        );
        let hex = b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let parsed = PayloadHash::parse(hex).unwrap();
        assert_eq!(parsed.to_header_value().as_bytes(), hex);
        for bad in [
            &b"unsigned-payload"[..],
            b"E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            b"STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
            b"",
        ] {
            assert_eq!(
                PayloadHash::parse(bad),
                Err(SigV4Error::InvalidContentSha256)
            );
        }
        for literal in [
            PayloadHash::Unsigned,
            PayloadHash::Streaming,
            PayloadHash::StreamingTrailer,
            PayloadHash::StreamingUnsignedTrailer,
        ] {
            assert_eq!(
                PayloadHash::parse(literal.to_header_value().as_bytes()),
                Ok(literal)
            );
        }
    }

    #[test]
    fn stripping_keeps_other_params_verbatim() {
        let q = format!("versionId=a%2Bb&{PRESIGNED}&X-Amz-Security-Token=t&x-id=GetObject");
        assert_eq!(strip_presigned_params(&q), "versionId=a%2Bb&x-id=GetObject");
        assert_eq!(strip_presigned_params(PRESIGNED), "");
    }
}
