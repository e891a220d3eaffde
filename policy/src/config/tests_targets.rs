//! Request targets in classification: the bucket every decision uses is the one the node
//! acts on, spelling variants are refused, and bucket globs can only name canonical
//! buckets (docs/identity.md, "Request targets").

use std::net::IpAddr;

use proptest::prelude::*;

use super::*;
use crate::classify::{Classified, Denied, Request, TargetError};

/// Pools `a` (first: what "no bucket" used to fall to) and `b` (serves `bench`), a tenant
/// `lab` limited to `lab-*` and a tenant `ops` limited to nothing.
const CONFIG: &str = r#"
[appliance]
virtual_host_suffixes = ["s3.weir.test"]

[[pool]]
name = "a"
nodes = ["127.0.0.1:9001"]

[[pool]]
name = "b"
nodes = ["127.0.0.1:9002"]

[[route]]
bucket = "bench"
pool = "b"

[[tenant]]
name = "lab"
access_keys = ["LABKEY"]
buckets = ["lab-*"]

[[tenant]]
name = "ops"
access_keys = ["OPSKEY"]
"#;

fn config() -> Config {
    Config::from_toml_str(CONFIG, "t.toml").unwrap()
}

fn classify(c: &Config, key: &str, method: &str, host: &str, path: &str) -> Classified {
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={key}/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=x"
    );
    c.classify(&Request {
        method,
        host: Some(host),
        path,
        query: None,
        access_key: crate::classify::access_key(Some(&auth), None),
        client_ip: IpAddr::from([10, 0, 0, 1]),
        client_name: None,
        copy_sources: &[],
    })
}

/// Every spelling of `bench/small-0` the attack tried, path-style and virtual-host.
const BENCH_SPELLINGS: &[(&str, &str)] = &[
    ("weir.test", "/bench/small-0"),
    ("weir.test", "/%62ench/small-0"),
    ("weir.test", "/%62%65%6e%63%68/small-0"),
    ("weir.test", "//bench/small-0"),
    ("weir.test", "///bench/small-0"),
    ("weir.test", "/./bench/small-0"),
    ("weir.test", "/lab-x/../bench/small-0"),
    ("weir.test", "/lab-x/%2e%2e/bench/small-0"),
    ("weir.test", "/lab-x/..%2Fbench/small-0"),
    ("weir.test", "/lab-x\\..\\bench/small-0"),
    ("weir.test", "/bench%2Fsmall-0"),
    ("weir.test", "/BENCH/small-0"),
    ("weir.test", "/bench./small-0"),
    ("weir.test", "/bench;x/small-0"),
    ("BENCH.s3.weir.test", "/small-0"),
    ("bench.s3.weir.test.", "/small-0"),
    ("bench.s3.weir.test:9000", "/small-0"),
    ("Bench.S3.Weir.Test.:9000", "/small-0"),
    ("bench.s3.weir.test..", "/small-0"),
    ("%62ench.s3.weir.test", "/small-0"),
    ("bench.s3.weir.test:x", "/small-0"),
];

#[test]
fn no_spelling_of_a_bucket_escapes_the_tenant_policy() {
    let c = config();
    for &(host, path) in BENCH_SPELLINGS {
        for method in ["GET", "PUT", "DELETE", "HEAD"] {
            let x = classify(&c, "LABKEY", method, host, path);
            match x.denied {
                Some(Denied::Target(_)) => assert_eq!(x.bucket, None),
                Some(Denied::Bucket) => assert_eq!(x.bucket.as_deref(), Some("bench")),
                other => panic!("{method} {host} {path}: {other:?}, bucket {:?}", x.bucket),
            }
        }
    }
    // The allowed bucket, both ways.
    let ok = classify(&c, "LABKEY", "GET", "weir.test", "/lab-x/obj-0");
    assert_eq!((ok.denied, ok.bucket.as_deref()), (None, Some("lab-x")));
    let ok = classify(&c, "LABKEY", "GET", "LAB-X.s3.weir.test.:1", "/obj-0");
    assert_eq!((ok.denied, ok.bucket.as_deref()), (None, Some("lab-x")));
    // Named both ways, the Host wins (as in S3) and the path is the key.
    let both = classify(&c, "LABKEY", "GET", "lab-x.s3.weir.test", "/bench/small-0");
    assert_eq!((both.denied, both.bucket.as_deref()), (None, Some("lab-x")));
    assert_eq!(both.op, crate::route::OpClass::Read);
    let both = classify(&c, "LABKEY", "GET", "bench.s3.weir.test", "/lab-x/obj-0");
    assert_eq!(
        (both.denied, both.bucket.as_deref()),
        (Some(Denied::Bucket), Some("bench"))
    );
    // ListBuckets names no bucket and is no bucket access.
    let root = classify(&c, "LABKEY", "GET", "weir.test", "/");
    assert_eq!((root.denied, root.bucket), (None, None));
}

#[test]
fn no_spelling_of_a_bucket_escapes_its_route() {
    let c = config();
    for &(host, path) in BENCH_SPELLINGS {
        let x = classify(&c, "OPSKEY", "GET", host, path);
        match x.denied {
            Some(Denied::Target(_)) => {}
            None => assert_eq!(
                (x.bucket.as_deref(), x.pools.as_slice()),
                (Some("bench"), &[1][..]),
                "{host} {path}"
            ),
            other => panic!("{host} {path}: {other:?}"),
        }
    }
    let root = classify(&c, "OPSKEY", "GET", "weir.test", "/");
    assert_eq!((root.denied, root.pools), (None, vec![0]));
}

/// CopyObject and UploadPartCopy make the node read a second bucket, named in
/// `x-amz-copy-source`: it is held to the same rules and the tenant must be allowed it.
#[test]
fn a_copy_source_is_a_bucket_the_tenant_must_be_allowed() {
    let c = config();
    let copy = |key: &str, sources: &[&[u8]]| {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={key}/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=x"
        );
        c.classify(&Request {
            method: "PUT",
            host: Some("weir.test"),
            path: "/lab-x/copy",
            query: None,
            access_key: crate::classify::access_key(Some(&auth), None),
            client_ip: IpAddr::from([10, 0, 0, 1]),
            client_name: None,
            copy_sources: sources,
        })
        .denied
    };
    use TargetError::*;
    let cases: &[(&[&[u8]], Option<Denied>)] = &[
        (&[b"lab-x/obj-0"], None),
        (&[b"/lab-x/obj-0?versionId=3"], None),
        (&[b"bench/small-0"], Some(Denied::CopySourceBucket)),
        (
            &[b"/bench/small-0?versionId=3"],
            Some(Denied::CopySourceBucket),
        ),
        (&[b"%62ench/small-0"], Some(Denied::Target(EncodedBucket))),
        (
            &[b"//bench/small-0"],
            Some(Denied::Target(EmptyBucketSegment)),
        ),
        (
            &[b"lab-x/../bench/small-0"],
            Some(Denied::Target(DotSegment)),
        ),
        (
            &[b"lab-x/%2E%2E/bench/small-0"],
            Some(Denied::Target(DotSegment)),
        ),
        (&[b"BENCH/small-0"], Some(Denied::Target(InvalidBucketName))),
        (
            &[b"lab-x/obj-0", b"bench/small-0"],
            Some(Denied::Target(MalformedCopySource)),
        ),
        (&[b"lab-x/\xff"], Some(Denied::Target(MalformedCopySource))),
    ];
    for &(sources, want) in cases {
        assert_eq!(copy("LABKEY", sources), want, "{sources:?}");
    }
    // A tenant allowed every bucket may copy from bench; ambiguity is refused for all.
    assert_eq!(copy("OPSKEY", &[b"bench/small-0"]), None);
    assert_eq!(
        copy("OPSKEY", &[b"%62ench/small-0"]),
        Some(Denied::Target(EncodedBucket))
    );
    assert_eq!(
        Denied::CopySourceBucket.label(),
        Denied::Bucket.label(),
        "counted as bucket_denied"
    );
}

#[test]
fn refusals_say_why() {
    let c = config();
    let why = |host: &str, path: &str| match classify(&c, "OPSKEY", "GET", host, path).denied {
        Some(Denied::Target(e)) => Some(e),
        _ => None,
    };
    assert_eq!(
        why("weir.test", "/%62ench/small-0"),
        Some(TargetError::EncodedBucket)
    );
    assert_eq!(
        why("weir.test", "//bench/small-0"),
        Some(TargetError::EmptyBucketSegment)
    );
    assert_eq!(
        why("weir.test", "/./bench/small-0"),
        Some(TargetError::DotSegment)
    );
    assert_eq!(
        why("weir.test", "/BENCH/small-0"),
        Some(TargetError::InvalidBucketName)
    );
    assert_eq!(
        why("ab.s3.weir.test", "/k"),
        Some(TargetError::InvalidBucketName)
    );
    assert_eq!(
        why("bench.s3.weir.test..", "/k"),
        Some(TargetError::BadHost)
    );
    let refused = classify(&c, "OPSKEY", "GET", "weir.test", "/%62ench/small-0");
    assert_eq!(refused.denied.map(Denied::label), Some("ambiguous_target"));
    let refused = classify(&c, "OPSKEY", "GET", "weir.test", "/BENCH/small-0");
    assert_eq!(
        refused.denied.map(Denied::label),
        Some("invalid_bucket_name")
    );
}

#[test]
fn legacy_bucket_names_are_routed_exactly() {
    let text = CONFIG.replace("[appliance]\n", "[appliance]\nbucket_names = \"legacy\"\n")
        + "\n[[route]]\nbucket = \"Legacy_*\"\npool = \"b\"\n";
    let c = Config::from_toml_str(&text, "t.toml").unwrap();
    assert_eq!(c.appliance.bucket_names, BucketNames::Legacy);
    let x = classify(&c, "OPSKEY", "GET", "weir.test", "/Legacy_1/k");
    assert_eq!(
        (x.denied, x.bucket.as_deref(), x.pools.as_slice()),
        (None, Some("Legacy_1"), &[1][..])
    );
    // Another case is another bucket, not the route's.
    let x = classify(&c, "OPSKEY", "GET", "weir.test", "/legacy_1/k");
    assert_eq!(
        (x.bucket.as_deref(), x.pools.as_slice()),
        (Some("legacy_1"), &[0][..])
    );
    // Still refused: encoded bytes, and virtual-host names that are not DNS names.
    let x = classify(&c, "OPSKEY", "GET", "weir.test", "/Legacy%5F1/k");
    assert_eq!(x.denied, Some(Denied::Target(TargetError::EncodedBucket)));
    let x = classify(&c, "OPSKEY", "GET", "Legacy_1.s3.weir.test", "/k");
    assert_eq!(
        x.denied,
        Some(Denied::Target(TargetError::InvalidBucketName))
    );
}

#[test]
fn globs_that_name_no_canonical_bucket_are_config_errors() {
    let rejects = |fragment: &str, line: usize, key: &str, needle: &str| {
        let text = format!("[[pool]]\nname = \"a\"\nnodes = [\"127.0.0.1:9001\"]\n{fragment}");
        let e = Config::from_toml_str(&text, "t.toml").unwrap_err();
        assert_eq!(e.origin, "t.toml");
        assert_eq!((e.line, e.key.as_str()), (Some(line), key), "{e}");
        assert!(
            e.message.contains(needle),
            "{e:?} should mention {needle:?}"
        );
    };
    rejects(
        "[[route]]\nbucket = \"Bench\"\npool = \"a\"\n",
        5,
        "route[0].bucket",
        "lower case",
    );
    rejects(
        "[[route]]\nbucket = \"%62ench\"\npool = \"a\"\n",
        5,
        "route[0].bucket",
        "'%' cannot occur",
    );
    rejects(
        "[[route]]\nbucket = \"-bench*\"\npool = \"a\"\n",
        5,
        "route[0].bucket",
        "no valid bucket name matches",
    );
    rejects(
        "[[route]]\nbucket = \"be\"\npool = \"a\"\n",
        5,
        "route[0].bucket",
        "no valid bucket name matches",
    );
    rejects(
        "[[tenant]]\nname = \"lab\"\nbuckets = [\"lab-*\", \"LAB-*\"]\n",
        6,
        "tenant[0].buckets[1]",
        "lower case",
    );
    rejects(
        "[[tenant]]\nname = \"lab\"\nbuckets = [\"lab..*\"]\n",
        6,
        "tenant[0].buckets[0]",
        "no valid bucket name matches",
    );
    rejects(
        "[[rule]]\nbucket = \"x_*\"\nclass = \"default\"\n",
        5,
        "rule[0].bucket",
        "'_' cannot occur",
    );
    rejects(
        "[[rule]]\nbucket = \"10.0.0.1\"\nclass = \"default\"\n",
        5,
        "rule[0].bucket",
        "IPv4",
    );
    rejects(
        "[appliance]\nbucket_names = \"relaxed\"\n",
        5,
        "appliance.bucket_names",
        "neither \"strict\" nor \"legacy\"",
    );
}

/// Path segments and Hosts that probe every rule.
const SEGMENTS: &[&str] = &[
    "bench", "lab-x", "small-0", "BENCH", "%62ench", "", ".", "..", "%2e%2e", "a%2Fb", "\\",
    "..;x", "%00", "%zz", "x;y", "ab",
];
const HOSTS: &[&str] = &[
    "weir.test",
    "s3.weir.test",
    "bench.s3.weir.test",
    "BENCH.s3.weir.test.:80",
    "bench.s3.weir.test..",
    "lab-x.s3.weir.test",
    "ab.s3.weir.test",
    "[::1]:80",
];

fn decode(raw: &str) -> Option<Vec<u8>> {
    let b = raw.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

proptest! {
    /// `classify` never yields "no bucket" for a target a node maps to a bucket: unless
    /// it refuses the target, a request that some node (AWS-like: decode, split; or the
    /// simulator's: slashes trimmed) reads as bucket B is classified as B, and only the
    /// service root is classified as no bucket.
    #[test]
    fn classify_never_yields_no_bucket_for_a_bucket_target(
        host in proptest::sample::select(HOSTS),
        segments in proptest::collection::vec(proptest::sample::select(SEGMENTS), 0..4),
        method in proptest::sample::select(&["GET", "PUT", "DELETE", "HEAD", "POST"][..]),
        key in proptest::sample::select(&["LABKEY", "OPSKEY", "NOKEY"][..]),
    ) {
        static CFG: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
        let c = CFG.get_or_init(config);
        let path = format!("/{}", segments.join("/"));
        let x = classify(c, key, method, host, &path);
        if matches!(x.denied, Some(Denied::Target(_))) {
            return Ok(());
        }
        let vhost = host.split(':').next().unwrap_or("").trim_end_matches('.').to_ascii_lowercase();
        let vhost = vhost.strip_suffix(".s3.weir.test").map(str::to_owned);
        let nodes_see: Vec<Option<Vec<u8>>> = match &vhost {
            Some(b) => vec![Some(b.clone().into_bytes())],
            None => {
                let aws = decode(&path[1..]).map(|d| d.split(|&c| c == b'/').next().unwrap_or(&[]).to_vec());
                let sim = decode(path.trim_start_matches('/')).map(|d| d.split(|&c| c == b'/').next().unwrap_or(&[]).to_vec());
                vec![aws, sim]
            }
        };
        for sees in nodes_see.into_iter().flatten() {
            if sees.is_empty() {
                prop_assert_eq!(x.bucket.as_deref(), None, "{} {}", host, path);
            } else {
                prop_assert_eq!(x.bucket.as_deref().map(str::as_bytes), Some(&sees[..]), "{} {}", host, path);
            }
        }
        if x.bucket.is_none() {
            prop_assert!(path == "/" && vhost.is_none(), "{} {}: no bucket", host, path);
        }
        if x.bucket.as_deref() == Some("bench") {
            prop_assert_eq!(x.pools.as_slice(), &[1][..]);
        }
    }
}
