//! S3 addressing — which bucket and key a request targets — and operation classes.
//!
//! The bucket weir routes, limits, authorises and counts a request by must be the bucket
//! the storage node will act on (docs/identity.md, "Request targets"). Nodes disagree on
//! the corners of a path: some percent-decode the bucket segment, some collapse `//`,
//! some resolve `.` and `..` or read `\` as `/`. So [`s3_target`] canonicalises only
//! where every S3 implementation agrees, and refuses the rest before any node sees it:
//!
//! - path-style `/bucket/key`: the bucket segment is taken as written and must be a
//!   bucket name (see [`BucketNames`]); a percent-encoded byte in it, an empty first
//!   segment (`//bucket/…`) or a name that is not valid is refused, never treated as "no
//!   bucket". Only `/` itself (ListBuckets) names no bucket;
//! - anywhere in the path: a malformed `%` escape, an encoded NUL, and a `.` or `..`
//!   segment (after decoding, with `\` also taken as a separator, whitespace around the
//!   dots and anything from a `;` ignored) are refused: a node that resolves them would
//!   let a key climb into another bucket;
//! - virtual-host style (only with `virtual_host_suffixes`): the Host, case-insensitive,
//!   with an optional port and one trailing dot, must be a plain DNS name or address; the
//!   labels before the longest matching suffix are the bucket, lower-cased (DNS is
//!   case-insensitive) and validated by the strict rules; the whole path is then the key
//!   (the Host wins over a bucket in the path, as in S3). A Host equal to a suffix is the
//!   service endpoint: path-style.
//!
//! The bucket of a copy source (`x-amz-copy-source`), which the node also reads, is held
//! to the path-style rules ([`copy_source_bucket`]). What is refused is a
//! [`TargetError`], answered with a 400 S3 error.

use std::borrow::Cow;

use crate::s3code::S3Code;

/// Shortest S3 bucket name.
const BUCKET_LEN_MIN: usize = 3;
/// Longest DNS-compatible bucket name.
const BUCKET_LEN_MAX: usize = 63;
/// Longest legacy (us-east-1, before 2018) bucket name.
const LEGACY_BUCKET_LEN_MAX: usize = 255;
/// Longest port in a Host field (leading zeros aside, a `u16`).
const PORT_DIGITS_MAX: usize = 5;
/// Longest access key id accepted (AWS documents 16..=128 characters).
const ACCESS_KEY_LEN_MAX: usize = 128;

/// Which bucket names path-style requests may use (`[appliance] bucket_names`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BucketNames {
    /// DNS-compatible names, the rules every S3 implementation shares: 3..=63 of
    /// `a-z 0-9 . -`, starting and ending with a letter or digit, no `..`, and not shaped
    /// like an IPv4 address.
    #[default]
    Strict,
    /// Also the legacy names old us-east-1 buckets may have: 3..=255 of
    /// `A-Z a-z 0-9 . _ -`, starting with a letter or digit. Compared exactly (case
    /// matters: `Data` and `data` are two buckets). Virtual-host names stay strict.
    Legacy,
}

impl BucketNames {
    /// The config spelling (`bucket_names = "strict"`).
    pub fn as_str(self) -> &'static str {
        match self {
            BucketNames::Strict => "strict",
            BucketNames::Legacy => "legacy",
        }
    }

    /// The rules [`BucketNames::as_str`] spells `name`.
    pub fn from_name(name: &str) -> Option<BucketNames> {
        [BucketNames::Strict, BucketNames::Legacy]
            .into_iter()
            .find(|n| n.as_str() == name)
    }

    /// Whether `name` is a bucket name under these rules.
    pub fn is_valid(self, name: &str) -> bool {
        match self {
            BucketNames::Strict => is_bucket_name(name),
            BucketNames::Legacy => is_legacy_bucket_name(name),
        }
    }

    /// The longest name these rules allow.
    pub fn len_max(self) -> usize {
        match self {
            BucketNames::Strict => BUCKET_LEN_MAX,
            BucketNames::Legacy => LEGACY_BUCKET_LEN_MAX,
        }
    }

    /// Whether `b` may occur in a name under these rules.
    pub fn allows_byte(self, b: u8) -> bool {
        match self {
            BucketNames::Strict => {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-')
            }
            BucketNames::Legacy => b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'),
        }
    }
}

/// Why a request's target is refused before any node sees it (answered 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TargetError {
    /// The path does not start with `/`.
    #[error("the request target must start with /")]
    NotOriginForm,
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-encoding in the path")]
    BadEscape,
    /// A percent-encoded byte in the bucket segment: nodes differ on decoding it.
    #[error("the bucket name in the path is percent-encoded; send it as plain characters")]
    EncodedBucket,
    /// An empty first segment (`//bucket/key`): nodes differ on collapsing it.
    #[error("the path starts with an empty segment (//); the bucket would be ambiguous")]
    EmptyBucketSegment,
    /// A `.` or `..` segment: nodes that resolve it would act on another path.
    #[error("the path has a \".\" or \"..\" segment; nodes resolve those differently")]
    DotSegment,
    /// An encoded NUL byte: nodes written in C may cut the path there.
    #[error("the path holds an encoded NUL byte")]
    NulByte,
    /// The bucket segment, or the bucket a virtual-host name gives, is not a valid name.
    #[error("the specified bucket is not valid")]
    InvalidBucketName,
    /// With virtual-host suffixes configured, a Host that is not `name[.][:port]`.
    #[error("the Host field is not a host name with an optional port")]
    BadHost,
    /// `x-amz-copy-source` repeated, not text, or with a `?` that does not start a
    /// trailing `versionId=`: nodes would read different sources.
    #[error("x-amz-copy-source is repeated, not text, or has a query other than versionId")]
    MalformedCopySource,
    /// A browser-form upload (`POST` on the bucket) to a bucket with `key_prefix` routes:
    /// its key is in the body, after routing, so it could land in another pool than the
    /// key's reads (docs/config.md, "Per-route settings").
    #[error(
        "browser-form uploads are not taken for a bucket routed by key prefix; PUT the object"
    )]
    KeyInBody,
}

impl TargetError {
    /// The S3 error code to answer with (status 400).
    pub fn s3_code(self) -> S3Code {
        match self {
            TargetError::InvalidBucketName => S3Code::InvalidBucketName,
            TargetError::BadHost | TargetError::MalformedCopySource => S3Code::InvalidArgument,
            TargetError::KeyInBody => S3Code::InvalidRequest,
            _ => S3Code::InvalidURI,
        }
    }

    /// The `reason` label the refusal is counted under.
    pub fn metric_reason(self) -> &'static str {
        match self {
            TargetError::InvalidBucketName => "invalid_bucket_name",
            _ => "ambiguous_target",
        }
    }
}

/// The bucket and object key a request addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Target<'a> {
    /// The bucket, canonical: valid under the configured [`BucketNames`], lower case when
    /// it came from the Host.
    pub bucket: Cow<'a, str>,
    /// The object key as it appears in the path (still percent-encoded); empty when the
    /// request addresses the bucket itself.
    pub key: &'a str,
    /// Whether the bucket came from the Host (virtual-host style).
    pub virtual_host: bool,
}

impl S3Target<'_> {
    /// Whether the request names an object, not just the bucket (input to [`op_class`]).
    pub fn has_key(&self) -> bool {
        !self.key.is_empty()
    }
}

/// Finds the bucket and key a request addresses, or why it is refused (see the module
/// docs). `path` is the origin-form request target; anything from `?` on is ignored.
/// `Ok(None)`: the service root (`GET /`, ListBuckets), which names no bucket.
pub fn s3_target<'a>(
    host: Option<&str>,
    path: &'a str,
    virtual_host_suffixes: &[String],
    names: BucketNames,
) -> Result<Option<S3Target<'a>>, TargetError> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let rest = path.strip_prefix('/').ok_or(TargetError::NotOriginForm)?;
    check_segments(rest)?;
    if let Some(bucket) = host_bucket(host, virtual_host_suffixes)? {
        return Ok(Some(S3Target {
            bucket,
            key: rest,
            virtual_host: true,
        }));
    }
    if rest.is_empty() {
        return Ok(None);
    }
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(TargetError::EmptyBucketSegment);
    }
    if bucket.contains('%') {
        return Err(TargetError::EncodedBucket);
    }
    if !names.is_valid(bucket) {
        return Err(TargetError::InvalidBucketName);
    }
    Ok(Some(S3Target {
        bucket: Cow::Borrowed(bucket),
        key,
        virtual_host: false,
    }))
}

/// The bucket an `x-amz-copy-source` value (CopyObject, UploadPartCopy) names: the node
/// reads that bucket too, so it is held to the path-style rules — `[/]bucket/key`, the
/// bucket segment plain and valid under `names`, the key free of dot segments — and
/// anything else is refused like an ambiguous target. A `?` is allowed only to start a
/// trailing `versionId=`: nodes differ on where a source ends (some split only at
/// `?versionId=` and keep any other `?…` in the key), so the whole value, `?` and all,
/// must hold no dot segment either.
pub fn copy_source_bucket(value: &str, names: BucketNames) -> Result<&str, TargetError> {
    let source = value.strip_prefix('/').unwrap_or(value);
    check_segments(source)?;
    let source = match source.split_once('?') {
        None => source,
        Some((source, version)) => {
            let id = version
                .strip_prefix("versionId=")
                .ok_or(TargetError::MalformedCopySource)?;
            if id.is_empty() || id.contains(['?', '&']) {
                return Err(TargetError::MalformedCopySource);
            }
            source
        }
    };
    let (bucket, key) = source.split_once('/').unwrap_or((source, ""));
    if bucket.is_empty() {
        return Err(TargetError::EmptyBucketSegment);
    }
    if bucket.contains('%') {
        return Err(TargetError::EncodedBucket);
    }
    if !names.is_valid(bucket) || key.is_empty() {
        return Err(TargetError::InvalidBucketName);
    }
    Ok(bucket)
}

/// Checks an object key given as text, not percent-encoded (a form upload's `key`
/// field, with any `${filename}` already put in): the path rules of [`s3_target`] — no
/// NUL, no dot segment — since a node that stores keys as paths resolves `..` in them
/// and would write into another bucket.
pub fn check_key_text(key: &str) -> Result<(), TargetError> {
    check_segment_bytes(key.bytes().map(Ok))
}

/// Checks every segment of the decoded path (without its leading `/`): escapes well
/// formed, no NUL, no dot segment. `\` separates segments too, and a segment is a dot
/// segment when its part before any `;` is one or two dots with only ASCII whitespace
/// around them — what some node resolves as `.` or `..`.
fn check_segments(rest: &str) -> Result<(), TargetError> {
    let bytes = rest.as_bytes();
    let mut i = 0;
    let decoded = std::iter::from_fn(|| {
        let b = match *bytes.get(i)? {
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|&c| crate::percent::hex_value(c));
                let lo = bytes.get(i + 2).and_then(|&c| crate::percent::hex_value(c));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Some(Err(TargetError::BadEscape));
                };
                i += 3;
                hi << 4 | lo
            }
            b => {
                i += 1;
                b
            }
        };
        Some(Ok(b))
    });
    check_segment_bytes(decoded)
}

/// The segment rules of [`check_segments`] over decoded bytes.
fn check_segment_bytes(
    bytes: impl Iterator<Item = Result<u8, TargetError>>,
) -> Result<(), TargetError> {
    /// What the current segment's part before `;` holds so far.
    #[derive(Clone, Copy)]
    struct Segment {
        dots: u8,
        other: bool,
        params: bool,
    }
    const FRESH: Segment = Segment {
        dots: 0,
        other: false,
        params: false,
    };
    let is_dot_segment = |s: Segment| !s.other && (1..=2).contains(&s.dots);
    let mut seg = FRESH;
    for b in bytes {
        match b? {
            0 => return Err(TargetError::NulByte),
            b'/' | b'\\' => {
                if is_dot_segment(seg) {
                    return Err(TargetError::DotSegment);
                }
                seg = FRESH;
            }
            _ if seg.params => {}
            b';' => seg.params = true,
            b'.' => seg.dots = seg.dots.saturating_add(1),
            b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r' => {}
            _ => seg.other = true,
        }
    }
    if is_dot_segment(seg) {
        return Err(TargetError::DotSegment);
    }
    Ok(())
}

/// The bucket a virtual-host name gives: `Ok(None)` without suffixes, without a Host,
/// for an IP literal, or when no suffix matches (or the Host is a suffix itself).
fn host_bucket<'a>(
    host: Option<&str>,
    suffixes: &[String],
) -> Result<Option<Cow<'a, str>>, TargetError> {
    let Some(host) = host.filter(|_| !suffixes.is_empty()) else {
        return Ok(None);
    };
    let Some(name) = host_name(host)? else {
        return Ok(None);
    };
    let matched = suffixes
        .iter()
        .map(|s| s.strip_prefix('.').unwrap_or(s))
        .filter(|s| !s.is_empty())
        .filter_map(|suffix| {
            if name.eq_ignore_ascii_case(suffix) {
                return Some((suffix.len(), None));
            }
            let split = name.len().checked_sub(suffix.len() + 1)?;
            let (label, dot_suffix) = (name.get(..split)?, name.get(split..)?);
            let tail = dot_suffix.strip_prefix('.')?;
            tail.eq_ignore_ascii_case(suffix)
                .then_some((suffix.len(), Some(label)))
        })
        .max_by_key(|(len, _)| *len);
    let Some((_, Some(label))) = matched else {
        return Ok(None);
    };
    let bucket = label.to_ascii_lowercase();
    if !is_bucket_name(&bucket) {
        return Err(TargetError::InvalidBucketName);
    }
    Ok(Some(Cow::Owned(bucket)))
}

/// The name part of a Host field (port and one trailing dot removed), `None` for an IP
/// literal (`[…]`), which never carries a bucket. Refused: anything but `A-Z a-z 0-9 - _ .`
/// in the name, an empty label, a port that is not a 16-bit number of at most 5 digits.
fn host_name(host: &str) -> Result<Option<&str>, TargetError> {
    if host.starts_with('[') {
        return Ok(None);
    }
    let name = match host.split_once(':') {
        Some((name, port)) => {
            let digits = port.bytes().all(|b| b.is_ascii_digit());
            if !digits || port.len() > PORT_DIGITS_MAX || port.parse::<u16>().is_err() {
                return Err(TargetError::BadHost);
            }
            name
        }
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let clean = !name.is_empty()
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !clean {
        return Err(TargetError::BadHost);
    }
    Ok(Some(name))
}

/// Whether `name` is a valid S3 bucket name by the DNS-compatible rules every S3
/// implementation shares ([`BucketNames::Strict`]).
pub fn is_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    (BUCKET_LEN_MIN..=BUCKET_LEN_MAX).contains(&bytes.len())
        && first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes.iter().all(|&b| BucketNames::Strict.allows_byte(b))
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err()
}

/// Whether `name` is a valid legacy bucket name ([`BucketNames::Legacy`]).
fn is_legacy_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (BUCKET_LEN_MIN..=LEGACY_BUCKET_LEN_MAX).contains(&bytes.len())
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.iter().all(|&b| BucketNames::Legacy.allows_byte(b))
}

/// What kind of S3 operation a request is, for routing, limits and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpClass {
    /// GetObject, HeadObject (including `?partNumber` part reads), SelectObjectContent.
    Read,
    /// PutObject, CopyObject, object ACL/tagging writes, browser POST uploads.
    Write,
    /// ListObjects(V2), ListObjectVersions: a GET on the bucket.
    List,
    /// DeleteObject, DeleteObjects (`POST ?delete`), DeleteBucket.
    Delete,
    /// Anything with `?uploads` or `?uploadId`: create, upload part, complete, abort, list.
    Multipart,
    /// Bucket configuration, HeadBucket, CORS preflight, unknown methods.
    Other,
}

impl OpClass {
    /// Every class, in the order the docs list them.
    pub const ALL: [OpClass; 6] = [
        OpClass::Read,
        OpClass::Write,
        OpClass::List,
        OpClass::Delete,
        OpClass::Multipart,
        OpClass::Other,
    ];

    /// The lower-case name used in config (`op = "read"`) and as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            OpClass::Read => "read",
            OpClass::Write => "write",
            OpClass::List => "list",
            OpClass::Delete => "delete",
            OpClass::Multipart => "multipart",
            OpClass::Other => "other",
        }
    }

    /// The class named `name` as [`OpClass::as_str`] spells it.
    pub fn from_name(name: &str) -> Option<OpClass> {
        OpClass::ALL.into_iter().find(|op| op.as_str() == name)
    }
}

/// Bucket sub-resources whose GET/PUT/DELETE read or change bucket configuration, not
/// objects; a GET on the bucket with one of these is not a listing.
const BUCKET_CONFIG_SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "policy",
    "policyStatus",
    "publicAccessBlock",
    "replication",
    "requestPayment",
    "tagging",
    "versioning",
    "website",
];

/// Classifies a request from its method (case-sensitive, as HTTP methods are), whether the
/// path names an object key, and the raw query string (without `?`).
///
/// `partNumber` alone (GetObject of one part of a completed upload) is a Read; it is
/// Multipart only together with `uploadId` (UploadPart), which the `uploadId` rule covers.
/// A GET on the service root (ListBuckets) also reads as List: it names no key either.
pub fn op_class(method: &str, path_has_key: bool, query: Option<&str>) -> OpClass {
    let query = query.unwrap_or("");
    let has = |name: &str| query_has(query, name);
    if has("uploads") || has("uploadId") {
        return OpClass::Multipart;
    }
    let bucket_config = || BUCKET_CONFIG_SUBRESOURCES.iter().any(|s| has(s));
    match (method, path_has_key) {
        ("GET" | "HEAD", true) => OpClass::Read,
        ("GET", false) if bucket_config() => OpClass::Other,
        ("GET", false) => OpClass::List,
        ("PUT", true) => OpClass::Write,
        ("DELETE", true) => OpClass::Delete,
        ("DELETE", false) if bucket_config() => OpClass::Other,
        ("DELETE", false) => OpClass::Delete,
        ("POST", false) if has("delete") => OpClass::Delete,
        ("POST", false) if query.is_empty() => OpClass::Write,
        ("POST", true) if has("select") => OpClass::Read,
        _ => OpClass::Other,
    }
}

/// Whether the query string has a parameter called `name` (with or without a value).
/// Names are compared decoded, as nodes read them: `?%64elete` is DeleteObjects to the
/// node, so it must be `delete` to every rule that counts operations.
fn query_has(query: &str, name: &str) -> bool {
    query.split('&').any(|pair| {
        let raw = pair.split_once('=').map_or(pair, |(n, _)| n);
        crate::percent::decode(raw.as_bytes()).is_some_and(|n| *n == *name.as_bytes())
    })
}

/// Whether `key` is a plausible access key id: 1..=128 printable ASCII characters other
/// than the separators of the credential syntaxes (`/ , = % :`). Config validation uses
/// the same test, so every configured key can be recognised.
pub fn is_access_key(key: &str) -> bool {
    (1..=ACCESS_KEY_LEN_MAX).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b',' | b'=' | b'%' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn key_syntax() {
        assert!(is_access_key("AKIAIOSFODNN7EXAMPLE"));
        assert!(is_access_key("minio-user_1.x+y~z"));
        assert!(is_access_key(&"A".repeat(128)));
        for bad in [
            "",
            "a/b",
            "a,b",
            "a=b",
            "a%b",
            "a:b",
            "a b",
            "é",
            &"A".repeat(129),
        ] {
            assert!(!is_access_key(bad), "{bad:?}");
        }
    }

    fn suffixes() -> Vec<String> {
        vec!["s3.example.com".into(), "s3.local".into()]
    }

    /// The bucket (or `""` for none) of a target, or the refusal.
    fn bucket(host: Option<&str>, path: &str, names: BucketNames) -> Result<String, TargetError> {
        s3_target(host, path, &suffixes(), names)
            .map(|t| t.map(|t| t.bucket.into_owned()).unwrap_or_default())
    }

    fn strict(host: Option<&str>, path: &str) -> Result<String, TargetError> {
        bucket(host, path, BucketNames::Strict)
    }

    #[test]
    fn path_style() {
        let s = suffixes();
        let t = s3_target(
            Some("10.0.0.1:9000"),
            "/rag-docs/a/b.txt",
            &s,
            BucketNames::Strict,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (t.bucket.as_ref(), t.key, t.virtual_host),
            ("rag-docs", "a/b.txt", false)
        );
        assert!(t.has_key());
        let t = s3_target(None, "/rag-docs?list-type=2", &s, BucketNames::Strict)
            .unwrap()
            .unwrap();
        assert_eq!((t.bucket.as_ref(), t.key), ("rag-docs", ""));
        assert!(!t.has_key());
        assert_eq!(strict(None, "/rag-docs/").as_deref(), Ok("rag-docs"));
        // A host equal to a suffix is the service endpoint: path-style.
        assert_eq!(
            strict(Some("s3.example.com"), "/b1b/k").as_deref(),
            Ok("b1b")
        );
        assert_eq!(strict(Some("S3.Local.:80"), "/b1b/k").as_deref(), Ok("b1b"));
        // Keys keep their spelling: encoded bytes, empty segments, backslashes, dots
        // inside names are the key's business.
        let t = s3_target(
            None,
            "/b1b//a%20b\\c/.hidden/x..y/...",
            &s,
            BucketNames::Strict,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (t.bucket.as_ref(), t.key),
            ("b1b", "/a%20b\\c/.hidden/x..y/...")
        );
        // The service root names no bucket.
        assert_eq!(s3_target(None, "/", &s, BucketNames::Strict), Ok(None));
        assert_eq!(
            s3_target(None, "/?x-id=ListBuckets", &s, BucketNames::Strict),
            Ok(None)
        );
        assert_eq!(
            s3_target(Some("s3.local"), "/", &s, BucketNames::Strict),
            Ok(None)
        );
    }

    #[test]
    fn virtual_host_style() {
        let s = suffixes();
        let t = s3_target(
            Some("rag-docs.s3.example.com:9000"),
            "/a/b.txt",
            &s,
            BucketNames::Strict,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (t.bucket.as_ref(), t.key, t.virtual_host),
            ("rag-docs", "a/b.txt", true)
        );
        let t = s3_target(
            Some("My.Bucket.S3.Example.com."),
            "/",
            &s,
            BucketNames::Strict,
        )
        .unwrap()
        .unwrap();
        assert_eq!((t.bucket.as_ref(), t.key), ("my.bucket", ""));
        // Case, a trailing dot and a port do not change the bucket.
        for host in [
            "bench.s3.local",
            "BENCH.s3.local",
            "bench.S3.LOCAL.",
            "Bench.s3.local:9000",
            "bench.s3.local.:1",
        ] {
            assert_eq!(strict(Some(host), "/k").as_deref(), Ok("bench"), "{host}");
        }
        // Both ways: the Host wins, the whole path is the key.
        let t = s3_target(
            Some("lab-x.s3.local"),
            "/bench/small-0",
            &s,
            BucketNames::Strict,
        )
        .unwrap()
        .unwrap();
        assert_eq!((t.bucket.as_ref(), t.key), ("lab-x", "bench/small-0"));
        // Not our suffix, or not at a label boundary: path-style.
        assert_eq!(
            strict(Some("abc.other.com"), "/xyz/k").as_deref(),
            Ok("xyz")
        );
        assert_eq!(
            strict(Some("abcs3.example.com"), "/xyz/k").as_deref(),
            Ok("xyz")
        );
        // No suffixes configured: always path-style, whatever the Host.
        let none = s3_target(
            Some("abc.s3.example.com"),
            "/xyz/k",
            &[],
            BucketNames::Strict,
        );
        assert_eq!(none.unwrap().unwrap().bucket, "xyz");
        let odd = s3_target(Some("a%62c..x:y"), "/xyz/k", &[], BucketNames::Strict);
        assert_eq!(odd.unwrap().unwrap().bucket, "xyz");
        // IP literals never carry a bucket.
        assert_eq!(strict(Some("[::1]:9000"), "/xyz/k").as_deref(), Ok("xyz"));
        assert_eq!(strict(Some("10.0.0.1"), "/").as_deref(), Ok(""));
    }

    #[test]
    fn the_longest_matching_suffix_wins() {
        let s: Vec<String> = vec!["s3.local".into(), "eu.s3.local".into()];
        let b = |host: &str| {
            s3_target(Some(host), "/pp1/k", &s, BucketNames::Strict)
                .map(|t| t.map(|t| t.bucket.into_owned()))
        };
        assert_eq!(b("data.eu.s3.local"), Ok(Some("data".into())));
        // The longer suffix is a service endpoint, not bucket "eu".
        assert_eq!(b("eu.s3.local"), Ok(Some("pp1".into())));
        assert_eq!(b("data.s3.local"), Ok(Some("data".into())));
    }

    #[test]
    fn ambiguous_targets_are_refused() {
        use TargetError::*;
        let cases: &[(Option<&str>, &str, TargetError)] = &[
            (None, "", NotOriginForm),
            (None, "bench/k", NotOriginForm),
            (None, "/%62ench/small-0", EncodedBucket),
            (None, "/bench%2Fsmall-0", EncodedBucket),
            (None, "/bench%2fx/small-0", EncodedBucket),
            (None, "/%42ENCH/k", EncodedBucket),
            (None, "//bench/small-0", EmptyBucketSegment),
            (None, "//", EmptyBucketSegment),
            (None, "/./bench/small-0", DotSegment),
            (None, "/../bench/small-0", DotSegment),
            (None, "/lab-x/../bench/small-0", DotSegment),
            (None, "/lab-x/%2e%2e/bench/small-0", DotSegment),
            (None, "/lab-x/%2E./bench/small-0", DotSegment),
            (None, "/lab-x/..%2fbench/small-0", DotSegment),
            (None, "/lab-x/a%2F..%2F..%2Fbench/small-0", DotSegment),
            (None, "/lab-x/..\\bench/small-0", DotSegment),
            (None, "/lab-x/k\\..\\..\\bench", DotSegment),
            (None, "/lab-x/%5c..%5cbench", DotSegment),
            (None, "/lab-x/..;x/bench/small-0", DotSegment),
            (None, "/lab-x/%20..%20/bench/small-0", DotSegment),
            (None, "/lab-x/.", DotSegment),
            (None, "/lab-x/..", DotSegment),
            (None, "/lab-x/k/.", DotSegment),
            (None, "/.", DotSegment),
            (Some("lab-x.s3.local"), "/../bench/small-0", DotSegment),
            (None, "/lab-x/%zz", BadEscape),
            (None, "/lab-x/%4", BadEscape),
            (None, "/lab-x/a%", BadEscape),
            (None, "/lab-x/a%00b", NulByte),
            (None, "/Bench/k", InvalidBucketName),
            (None, "/rag_docs/k", InvalidBucketName),
            (None, "/ab/k", InvalidBucketName),
            (None, "/-rag/k", InvalidBucketName),
            (None, "/rag../k", InvalidBucketName),
            (None, "/192.168.1.1/k", InvalidBucketName),
            (None, "/bench;x/small-0", InvalidBucketName),
            (None, "/bench\\small-0", InvalidBucketName),
            (None, "/lab-x\\..\\bench/small-0", DotSegment),
            (None, "/...", InvalidBucketName),
            (Some("UPPER_CASE.s3.local"), "/k", InvalidBucketName),
            (Some("a..b.s3.example.com"), "/k", BadHost),
            (Some("ab.s3.local"), "/k", InvalidBucketName),
            (Some("%62ench.s3.local"), "/k", BadHost),
            (Some("bench.s3.local.."), "/k", BadHost),
            (Some(".s3.local"), "/k", BadHost),
            (Some("bench.s3.local:"), "/k", BadHost),
            (Some("bench.s3.local:90000"), "/k", BadHost),
            (Some("bench.s3.local:80:80"), "/k", BadHost),
            (Some("bench.s3.local:8o"), "/k", BadHost),
            (Some("bench.s3.local;x"), "/k", BadHost),
        ];
        for &(host, path, want) in cases {
            assert_eq!(strict(host, path), Err(want), "{host:?} {path}");
        }
        assert!(is_bucket_name(&"a".repeat(63)));
        assert!(!is_bucket_name(&"a".repeat(64)));
    }

    #[test]
    fn copy_sources_name_their_bucket_plainly() {
        fn strict(v: &str) -> Result<&str, TargetError> {
            copy_source_bucket(v, BucketNames::Strict)
        }
        assert_eq!(strict("bench/small-0"), Ok("bench"));
        assert_eq!(strict("/bench/small-0"), Ok("bench"));
        assert_eq!(strict("/bench/dir/a%20b?versionId=3"), Ok("bench"));
        assert_eq!(strict("%62ench/small-0"), Err(TargetError::EncodedBucket));
        assert_eq!(
            strict("//bench/small-0"),
            Err(TargetError::EmptyBucketSegment)
        );
        assert_eq!(
            strict("lab-x/../bench/small-0"),
            Err(TargetError::DotSegment)
        );
        assert_eq!(
            strict("/lab-x/%2e%2e/bench/small-0"),
            Err(TargetError::DotSegment)
        );
        assert_eq!(strict("BENCH/small-0"), Err(TargetError::InvalidBucketName));
        assert_eq!(strict("bench"), Err(TargetError::InvalidBucketName));
        assert_eq!(strict("bench/"), Err(TargetError::InvalidBucketName));
        assert_eq!(strict(""), Err(TargetError::EmptyBucketSegment));
        // A node that splits only at `?versionId=` reads the rest as key: no climb hides
        // behind a `?`, and no other query is taken.
        assert_eq!(
            strict("lab-x/x?/../../bench/small-0"),
            Err(TargetError::DotSegment)
        );
        assert_eq!(
            strict("lab-x/x?/%2e%2e/%2E%2E/bench/small-0"),
            Err(TargetError::DotSegment)
        );
        assert_eq!(
            strict("lab-x/x?partNumber=1"),
            Err(TargetError::MalformedCopySource)
        );
        assert_eq!(
            strict("lab-x/x?versionId="),
            Err(TargetError::MalformedCopySource)
        );
        assert_eq!(
            strict("lab-x/x?versionId=1?versionId=2"),
            Err(TargetError::MalformedCopySource)
        );
        assert_eq!(
            copy_source_bucket("Old_Data/k", BucketNames::Legacy),
            Ok("Old_Data")
        );
    }

    #[test]
    fn refusals_map_to_s3_codes_and_reasons() {
        assert_eq!(TargetError::EncodedBucket.s3_code(), S3Code::InvalidURI);
        assert_eq!(TargetError::DotSegment.s3_code(), S3Code::InvalidURI);
        assert_eq!(
            TargetError::InvalidBucketName.s3_code(),
            S3Code::InvalidBucketName
        );
        assert_eq!(TargetError::BadHost.s3_code(), S3Code::InvalidArgument);
        assert_eq!(
            TargetError::EmptyBucketSegment.metric_reason(),
            "ambiguous_target"
        );
        assert_eq!(
            TargetError::InvalidBucketName.metric_reason(),
            "invalid_bucket_name"
        );
    }

    #[test]
    fn legacy_names_are_taken_exactly_in_the_path_only() {
        let legacy = |host: Option<&str>, path: &str| bucket(host, path, BucketNames::Legacy);
        assert_eq!(legacy(None, "/My_Bucket/k").as_deref(), Ok("My_Bucket"));
        assert_eq!(legacy(None, "/192.168.1.1/k").as_deref(), Ok("192.168.1.1"));
        assert_eq!(legacy(None, "/bench/k").as_deref(), Ok("bench"));
        assert_eq!(
            legacy(None, &format!("/{}/k", "A".repeat(255))).map(|b| b.len()),
            Ok(255)
        );
        for bad in ["/_x/k", "/ab/k", "/a%41b/k", "/a b/k", "/a;b/k", "/a~b/k"] {
            assert!(legacy(None, bad).is_err(), "{bad}");
        }
        assert_eq!(
            legacy(None, &format!("/{}/k", "A".repeat(256))),
            Err(TargetError::InvalidBucketName)
        );
        // Virtual-host names are DNS names: lower-cased and strict.
        assert_eq!(legacy(Some("Bench.s3.local"), "/k").as_deref(), Ok("bench"));
        assert_eq!(
            legacy(Some("my_bucket.s3.local"), "/k"),
            Err(TargetError::InvalidBucketName)
        );
        assert_eq!(BucketNames::from_name("legacy"), Some(BucketNames::Legacy));
        assert_eq!(BucketNames::from_name("Strict"), None);
    }

    /// What a storage node makes of a request: refuses it, serves the service root, or
    /// acts on a bucket.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum NodeSees {
        Refused,
        Service,
        Bucket(String),
    }

    fn decode(raw: &str) -> Option<String> {
        crate::percent::decode(raw.as_bytes()).map(|d| String::from_utf8_lossy(&d).into_owned())
    }

    fn first_segment(path: &str) -> NodeSees {
        if path.is_empty() {
            return NodeSees::Service;
        }
        match path.split('/').next().unwrap_or("") {
            "" => NodeSees::Refused,
            b => NodeSees::Bucket(b.to_owned()),
        }
    }

    /// Node models for path-style requests, each an S3 server or front end seen in the
    /// wild: AWS-like (decode, then split), the bench simulator (leading slashes trimmed,
    /// then decoded), one that never decodes, and ones that resolve dot segments after
    /// decoding (`path.Clean`-like, with `\` as `/`, with `;` parameters and whitespace
    /// stripped from segments).
    fn path_models(path: &str) -> Vec<NodeSees> {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        let Some(rest) = path.strip_prefix('/') else {
            return vec![NodeSees::Refused];
        };
        let decoded = decode(rest);
        let aws = decoded.as_deref().map_or(NodeSees::Refused, first_segment);
        let sim = decode(rest.trim_start_matches('/'))
            .as_deref()
            .map_or(NodeSees::Refused, first_segment);
        let raw = first_segment(rest);
        let clean = |strip: bool| {
            let Some(d) = decoded.as_deref() else {
                return NodeSees::Refused;
            };
            let mut stack: Vec<&str> = Vec::new();
            for seg in d.split(['/', '\\']) {
                let core = if strip {
                    seg.split(';').next().unwrap_or("").trim()
                } else {
                    seg
                };
                match core {
                    "" => {}
                    "." => {}
                    ".." => {
                        stack.pop();
                    }
                    _ => stack.push(if strip { core } else { seg }),
                }
            }
            stack
                .first()
                .map_or(NodeSees::Service, |b| NodeSees::Bucket((*b).to_owned()))
        };
        vec![aws, sim, raw, clean(false), clean(true)]
    }

    /// A node resolving the same virtual-host suffixes: port and trailing dots dropped,
    /// lower-cased, longest suffix.
    fn host_model(host: &str, suffixes: &[String]) -> Option<NodeSees> {
        let name = host.rsplit_once(':').map_or(host, |(n, _)| n);
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        suffixes
            .iter()
            .filter_map(|s| {
                if name == *s {
                    return Some((s.len(), NodeSees::Service));
                }
                name.strip_suffix(s.as_str())
                    .and_then(|l| l.strip_suffix('.'))
                    .map(|l| (s.len(), NodeSees::Bucket(l.to_owned())))
            })
            .max_by_key(|(len, _)| *len)
            .and_then(|(_, sees)| match sees {
                NodeSees::Service => None,
                b => Some(b),
            })
    }

    /// Path segments that probe every rule, and plain ones.
    const SEGMENTS: &[&str] = &[
        "bench",
        "lab-x",
        "small-0",
        "Bench",
        "lab_x",
        "ab",
        "a.b",
        "1.2.3.4",
        "",
        ".",
        "..",
        "...",
        "%2e",
        "%2E%2e",
        ". ",
        "%20..",
        "..;x",
        ";",
        "x;y",
        "%62ench",
        "bench%2F..",
        "%2f",
        "a%2Fb",
        "\\",
        "%5c",
        "a\\..",
        "..\\b",
        "%00",
        "%zz",
        "%",
        "~",
    ];
    const HOSTS: &[&str] = &[
        "weir.test",
        "s3.local",
        "S3.LOCAL.",
        "bench.s3.local",
        "BENCH.s3.local",
        "bench.s3.local.",
        "bench.s3.local..",
        "bench.s3.local:9000",
        "lab-x.S3.Local:1",
        "bad_name.s3.local",
        "%62ench.s3.local",
        "a.b.s3.local",
        "ab.s3.local",
        "[::1]:9000",
        "10.0.0.1:9000",
        "x.eu.s3.local",
        "eu.s3.local",
        "bench.s3.local:",
    ];

    fn target_path() -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(SEGMENTS), 0..5)
            .prop_map(|segs| format!("/{}", segs.join("/")))
    }

    proptest! {
        /// Whatever weir decides is what every node model decides, or weir refuses: a
        /// target that some node maps to a bucket never reads as "no bucket", and never
        /// as another bucket.
        #[test]
        fn weir_decides_the_bucket_every_node_acts_on(
            host in proptest::option::of(proptest::sample::select(HOSTS)),
            path in target_path(),
            legacy in any::<bool>(),
        ) {
            let suffixes: Vec<String> = vec!["s3.local".into(), "eu.s3.local".into()];
            let names = if legacy { BucketNames::Legacy } else { BucketNames::Strict };
            let decided = s3_target(host, &path, &suffixes, names);
            let vhost = host.and_then(|h| host_model(h, &suffixes));
            match decided {
                Err(_) => {}
                Ok(Some(t)) if t.virtual_host => {
                    prop_assert_eq!(vhost, Some(NodeSees::Bucket(t.bucket.clone().into_owned())));
                    prop_assert!(is_bucket_name(&t.bucket));
                }
                Ok(t) => {
                    prop_assert_eq!(vhost, None, "a node resolving the Host sees a bucket");
                    let want = t.map_or(NodeSees::Service, |t| NodeSees::Bucket(t.bucket.into_owned()));
                    if let NodeSees::Bucket(b) = &want {
                        prop_assert!(names.is_valid(b));
                    }
                    for (i, sees) in path_models(&path).into_iter().enumerate() {
                        prop_assert!(
                            sees == want || sees == NodeSees::Refused,
                            "model {} sees {:?}, weir decided {:?}", i, sees, want
                        );
                    }
                }
            }
        }

        #[test]
        fn classification_never_panics(
            host in proptest::option::of("\\PC{0,40}"),
            path in "\\PC{0,60}",
            method in "\\PC{0,8}",
            query in proptest::option::of("\\PC{0,40}"),
        ) {
            for names in [BucketNames::Strict, BucketNames::Legacy] {
                if let Ok(Some(t)) = s3_target(host.as_deref(), &path, &suffixes(), names) {
                    prop_assert!(names.is_valid(&t.bucket));
                }
            }
            let _ = op_class(&method, !path.is_empty(), query.as_deref());
        }
    }

    #[test]
    fn op_classes() {
        use OpClass::*;
        let cases: &[(&str, bool, Option<&str>, OpClass)] = &[
            ("GET", true, None, Read),
            ("HEAD", true, None, Read),
            ("GET", true, Some("partNumber=2"), Read),
            ("GET", true, Some("x-id=GetObject"), Read),
            ("GET", false, None, List),
            ("GET", false, Some("list-type=2&prefix=a%2F"), List),
            ("GET", false, Some("versions"), List),
            ("GET", false, Some("location"), Other),
            ("GET", false, Some("uploads"), Multipart),
            ("HEAD", false, None, Other),
            ("PUT", true, None, Write),
            ("PUT", true, Some("x-id=CopyObject"), Write),
            ("PUT", true, Some("partNumber=1&uploadId=abc"), Multipart),
            ("PUT", false, None, Other),
            ("POST", true, Some("uploads"), Multipart),
            ("POST", true, Some("uploadId=abc"), Multipart),
            ("POST", false, Some("delete"), Delete),
            ("POST", false, None, Write),
            ("POST", true, Some("select&select-type=2"), Read),
            ("POST", true, Some("restore"), Other),
            ("DELETE", true, None, Delete),
            ("DELETE", true, Some("uploadId=abc"), Multipart),
            ("DELETE", false, None, Delete),
            ("DELETE", false, Some("policy"), Other),
            ("OPTIONS", true, None, Other),
            ("get", true, None, Other),
        ];
        for &(method, has_key, query, want) in cases {
            assert_eq!(
                op_class(method, has_key, query),
                want,
                "{method} {has_key} {query:?}"
            );
        }
    }

    #[test]
    fn op_names_round_trip() {
        for op in OpClass::ALL {
            assert_eq!(OpClass::from_name(op.as_str()), Some(op));
        }
        assert_eq!(OpClass::from_name("Read"), None);
    }

    #[test]
    fn query_names_are_whole() {
        assert!(!query_has("uploadsx=1", "uploads"));
        assert!(!query_has("prefix=uploads", "uploads"));
        assert!(query_has("a=1&uploads=", "uploads"));
        // Encoded names are what the node decodes them to.
        assert!(query_has("%64elete", "delete"));
        assert!(query_has("upload%73=", "uploads"));
        assert!(query_has("%75%70%6C%6F%61%64%49%64=7", "uploadId"));
        assert!(!query_has("%64elet", "delete"));
        assert!(!query_has("%6", "delete"));
        assert_eq!(op_class("POST", false, Some("%64elete")), OpClass::Delete);
    }
}
