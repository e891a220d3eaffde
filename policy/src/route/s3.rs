//! S3 addressing (path-style and virtual-host style) and operation classes.

/// Shortest and longest S3 bucket names.
const BUCKET_LEN: std::ops::RangeInclusive<usize> = 3..=63;

/// The bucket and object key a request addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S3Target<'a> {
    /// A valid bucket name (see [`is_bucket_name`]).
    pub bucket: &'a str,
    /// The object key as it appears in the path (still percent-encoded); empty when the
    /// request addresses the bucket itself.
    pub key: &'a str,
}

impl S3Target<'_> {
    /// Whether the request names an object, not just the bucket (input to [`op_class`]).
    pub fn has_key(&self) -> bool {
        !self.key.is_empty()
    }
}

/// Finds the bucket and key a request addresses.
///
/// Virtual-host style applies when `host` (port and a trailing dot ignored, compared
/// case-insensitively) ends with `.` + one of `virtual_host_suffixes`: the labels before
/// the suffix are the bucket, the whole path is the key. Otherwise path-style:
/// `/bucket/key`. `path` is the origin-form request target; anything from `?` on is
/// ignored. `None` when no valid bucket is named (`GET /`, an invalid name), which routes
/// to the first pool.
pub fn s3_target<'a>(
    host: Option<&'a str>,
    path: &'a str,
    virtual_host_suffixes: &[String],
) -> Option<S3Target<'a>> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let rest = path.strip_prefix('/')?;
    if let Some(bucket) = host.and_then(|h| virtual_host_bucket(h, virtual_host_suffixes)) {
        return is_bucket_name(bucket).then_some(S3Target { bucket, key: rest });
    }
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    is_bucket_name(bucket).then_some(S3Target { bucket, key })
}

/// The bucket a request addresses, as [`s3_target`] finds it.
pub fn bucket_of(
    host: Option<&str>,
    path: &str,
    virtual_host_suffixes: &[String],
) -> Option<String> {
    s3_target(host, path, virtual_host_suffixes).map(|t| t.bucket.to_owned())
}

/// The part of `host` before a matching virtual-host suffix, if any (may be invalid as a
/// bucket name; the caller checks). A host equal to a suffix is path-style.
pub fn virtual_host_bucket<'a>(host: &'a str, suffixes: &[String]) -> Option<&'a str> {
    if host.starts_with('[') {
        return None; // an IPv6 literal never carries a bucket
    }
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    suffixes.iter().find_map(|suffix| {
        let suffix = suffix.strip_prefix('.').unwrap_or(suffix);
        let split = host.len().checked_sub(suffix.len() + 1)?;
        let (bucket, dot_suffix) = (host.get(..split)?, host.get(split..)?);
        let tail = dot_suffix.strip_prefix('.')?;
        (!bucket.is_empty() && !suffix.is_empty() && tail.eq_ignore_ascii_case(suffix))
            .then_some(bucket)
    })
}

/// Whether `name` is a valid S3 bucket name by the DNS-compatible rules every S3
/// implementation shares: 3..=63 of `a-z 0-9 . -`, starting and ending with a letter or
/// digit, no `..`, and not shaped like an IPv4 address. Legacy names with upper case or
/// `_` are not accepted; such requests fall to the first pool.
pub fn is_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    BUCKET_LEN.contains(&bytes.len())
        && first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err()
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
/// Names are compared as written: S3 sub-resource names are never percent-encoded.
fn query_has(query: &str, name: &str) -> bool {
    query
        .split('&')
        .any(|pair| pair.split_once('=').map_or(pair, |(n, _)| n) == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn suffixes() -> Vec<String> {
        vec!["s3.example.com".into(), ".s3.local".into()]
    }

    #[test]
    fn path_style() {
        let s = suffixes();
        let t = s3_target(Some("10.0.0.1:9000"), "/rag-docs/a/b.txt", &s).unwrap();
        assert_eq!((t.bucket, t.key), ("rag-docs", "a/b.txt"));
        assert!(t.has_key());
        let t = s3_target(None, "/rag-docs?list-type=2", &s).unwrap();
        assert_eq!((t.bucket, t.key), ("rag-docs", ""));
        assert!(!t.has_key());
        assert_eq!(
            bucket_of(None, "/rag-docs/", &s).as_deref(),
            Some("rag-docs")
        );
        // A host equal to a suffix is the service endpoint: path-style.
        assert_eq!(
            bucket_of(Some("s3.example.com"), "/b1b/k", &s).as_deref(),
            Some("b1b")
        );
    }

    #[test]
    fn virtual_host_style() {
        let s = suffixes();
        let t = s3_target(Some("rag-docs.s3.example.com:9000"), "/a/b.txt", &s).unwrap();
        assert_eq!((t.bucket, t.key), ("rag-docs", "a/b.txt"));
        let t = s3_target(Some("my.bucket.S3.Example.com."), "/", &s).unwrap();
        assert_eq!((t.bucket, t.key), ("my.bucket", ""));
        assert_eq!(
            bucket_of(Some("abc.s3.local"), "/k", &s).as_deref(),
            Some("abc")
        );
        // Not our suffix: path-style even though the host has labels.
        assert_eq!(
            bucket_of(Some("abc.other.com"), "/xyz/k", &s).as_deref(),
            Some("xyz")
        );
        // The suffix must start at a label boundary.
        assert_eq!(
            bucket_of(Some("abcs3.example.com"), "/xyz/k", &s).as_deref(),
            Some("xyz")
        );
        // No suffixes configured: always path-style.
        assert_eq!(
            bucket_of(Some("abc.s3.example.com"), "/xyz/k", &[]).as_deref(),
            Some("xyz")
        );
    }

    #[test]
    fn no_or_invalid_bucket() {
        let s = suffixes();
        for (host, path) in [
            (None, "/"),
            (None, ""),
            (None, "rag/k"),
            (None, "/ab/k"),
            (None, "/Rag/k"),
            (None, "/rag_docs/k"),
            (None, "/-rag/k"),
            (None, "/rag../k"),
            (None, "/192.168.1.1/k"),
            (Some("UPPER.s3.example.com"), "/k"),
            (Some("a..b.s3.example.com"), "/k"),
            (Some("[::1]:9000"), "/"),
        ] {
            assert_eq!(bucket_of(host, path, &s), None, "{host:?} {path}");
        }
        assert!(is_bucket_name(&"a".repeat(63)));
        assert!(!is_bucket_name(&"a".repeat(64)));
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
    }

    proptest! {
        #[test]
        fn classification_never_panics(
            host in proptest::option::of("\\PC{0,40}"),
            path in "\\PC{0,60}",
            method in "\\PC{0,8}",
            query in proptest::option::of("\\PC{0,40}"),
        ) {
            let t = s3_target(host.as_deref(), &path, &suffixes());
            if let Some(t) = t {
                prop_assert!(is_bucket_name(t.bucket));
            }
            let _ = op_class(&method, !path.is_empty(), query.as_deref());
        }
    }
}
