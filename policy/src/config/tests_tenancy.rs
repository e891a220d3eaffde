//! `[limits]`, `[defaults]`, `[[class]]`, `[[tenant]]` and `[[rule]]`: acceptance, one
//! rejection test per rule (inline TOML, the exact key and line), and classification.

use std::net::IpAddr;
use std::time::Duration;

use super::*;
use crate::classify::{Classified, Request};
use crate::route::OpClass;

/// A valid pool, appended *after* the text under test so the test's line numbers hold.
const POOL: &str = "\n[[pool]]\nname = \"default\"\nnodes = [\"127.0.0.1:9001\"]\n";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "t.toml")
}

/// Parses a fragment followed by a valid pool.
fn parse_with_pool(fragment: &str) -> Config {
    match parse(&format!("{fragment}{POOL}")) {
        Ok(c) => c,
        Err(e) => panic!("rejected {fragment:?}: {e}"),
    }
}

/// Asserts that `fragment` (plus a valid pool) is rejected at `line` and `key`, with
/// `needle` in the message.
#[track_caller]
fn rejects(fragment: &str, line: usize, key: &str, needle: &str) {
    let e = match parse(&format!("{fragment}{POOL}")) {
        Ok(c) => panic!("accepted {fragment:?} as {c:?}"),
        Err(e) => e,
    };
    assert_eq!((e.line, e.key.as_str()), (Some(line), key), "{e}");
    assert!(
        e.message.contains(needle),
        "{e:?} should mention {needle:?}"
    );
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

// === acceptance ===

#[test]
fn only_a_pool_gives_an_implicit_default_tenant_and_class() {
    let c = parse_with_pool("");
    assert_eq!(
        c.tenants,
        [Tenant::implicit_default(Duration::from_millis(100))]
    );
    assert_eq!(c.default_tenant, TenantId(0));
    assert_eq!(c.classes, [Class::implicit_default()]);
    assert_eq!(c.default_class, ClassId(0));
    assert!(c.rules.is_empty());
    assert_eq!(c.limits, Limits::default());
    assert_eq!(c.http.connections_max, c.limits.connections_max);
}

#[test]
fn every_key_set() {
    let text = r#"
[limits]
connections_max = 5000
client_ip_connections_max = 64
client_ip_requests_per_sec = 200
client_ip_bytes_per_sec = "50MiB"
bucket_requests_per_sec = 3000
bucket_bytes_per_sec = 1048576
node_inflight_max = 512
rebalance_interval = "10ms"
table_entries_max = 1024
burst = "250ms"
quantum_bytes_max = "1MiB"
[defaults]
tenant = "anon"
class = "bulk"
[[class]]
name = "inference"
weight = 8
latency_sensitive = true
queue_max = 100
queue_timeout = "500ms"
[[class]]
name = "bulk"
requests_per_sec = 10000
bytes_per_sec = "8GiB"
burst = "1s"
[[tenant]]
name = "training"
access_keys = ["AKIATRAINING", "minio-train"]
class = "bulk"
requests_per_sec = 5000
bytes_per_sec = "4GiB"
upload_bytes_per_sec = "1GiB"
inflight_max = 256
[[tenant]]
name = "anon"
rate = { requests_per_sec = 10, download_bytes_per_sec = "1MiB", burst = "2s" }
[[pool]]
name = "site-a"
nodes = ["10.0.0.1:9000"]
[[pool]]
name = "cloud"
priority = 1
nodes = ["10.1.0.1:9000"]
[[rule]]
tenant = "training"
bucket = "train-*"
op = ["read", "list"]
client_cidr = ["10.0.0.0/8", "fd00::/8"]
pools = ["cloud", "site-a"]
class = "inference"
requests_per_sec = 100
[[rule]]
op = "write"
pool = "cloud"
[[rule]]
client_cidr = "192.0.2.7"
rate = { bytes_per_sec = "10MiB" }
"#;
    let c = parse(text).unwrap();
    let burst = Duration::from_millis(250);
    assert_eq!(
        c.limits,
        Limits {
            connections_max: 5000,
            client_ip_connections_max: Some(64),
            client_ip_rate: RateLimit {
                requests_per_sec: Some(200),
                upload_bytes_per_sec: Some(50 << 20),
                download_bytes_per_sec: Some(50 << 20),
                burst,
            },
            bucket_rate: RateLimit {
                requests_per_sec: Some(3000),
                upload_bytes_per_sec: Some(1 << 20),
                download_bytes_per_sec: Some(1 << 20),
                burst,
            },
            node_inflight_max: Some(512),
            rebalance_interval: Duration::from_millis(10),
            table_entries_max: 1024,
            burst,
            quantum_bytes_max: 1 << 20,
        }
    );
    assert_eq!(c.http.connections_max, 5000, "one value, two spellings");
    assert_eq!(
        c.classes,
        [
            Class {
                name: "inference".into(),
                weight: 8,
                latency_sensitive: true,
                queue_max: 100,
                queue_timeout: Duration::from_millis(500),
                rate: RateLimit::unlimited(burst),
            },
            Class {
                name: "bulk".into(),
                weight: 1,
                latency_sensitive: false,
                queue_max: 1024,
                queue_timeout: Duration::from_secs(1),
                rate: RateLimit {
                    requests_per_sec: Some(10_000),
                    upload_bytes_per_sec: Some(8 << 30),
                    download_bytes_per_sec: Some(8 << 30),
                    burst: Duration::from_secs(1),
                },
            },
        ]
    );
    assert_eq!(c.default_class, ClassId(1));
    assert_eq!(
        c.tenants,
        [
            Tenant {
                client_names: Vec::new(),
                buckets: None,
                pools: None,
                name: "training".into(),
                access_keys: vec!["AKIATRAINING".into(), "minio-train".into()],
                class: Some(ClassId(1)),
                rate: RateLimit {
                    requests_per_sec: Some(5000),
                    upload_bytes_per_sec: Some(1 << 30),
                    download_bytes_per_sec: Some(4 << 30),
                    burst,
                },
                inflight_max: Some(256),
                pool_credentials: Vec::new(),
            },
            Tenant {
                client_names: Vec::new(),
                buckets: None,
                pools: None,
                name: "anon".into(),
                access_keys: vec![],
                class: None,
                rate: RateLimit {
                    requests_per_sec: Some(10),
                    upload_bytes_per_sec: None,
                    download_bytes_per_sec: Some(1 << 20),
                    burst: Duration::from_secs(2),
                },
                inflight_max: None,
                pool_credentials: Vec::new(),
            },
        ]
    );
    assert_eq!(c.default_tenant, TenantId(1));
    assert_eq!(c.tenant_of_key("minio-train"), Some(TenantId(0)));
    assert_eq!(c.tenant_of_key("nobody"), None);
    let r = &c.rules[0];
    assert_eq!(r.tenant, Some(TenantId(0)));
    assert_eq!(r.bucket.as_ref().map(BucketGlob::as_str), Some("train-*"));
    assert_eq!(r.ops, [OpClass::Read, OpClass::List]);
    assert_eq!(r.client_cidrs.len(), 2);
    assert_eq!(r.pools.as_deref(), Some(&[0, 1][..]), "ordered by priority");
    assert_eq!(r.class, Some(ClassId(0)));
    assert_eq!(r.rate.requests_per_sec, Some(100));
    assert_eq!(c.rules[1].ops, [OpClass::Write]);
    assert_eq!(c.rules[1].pools.as_deref(), Some(&[1][..]));
    assert_eq!(c.rules[2].client_cidrs[0].to_string(), "192.0.2.7/32");
    assert_eq!(c.rules[2].rate.upload_bytes_per_sec, Some(10 << 20));
    assert_eq!(
        c.rules[2].rate.burst, burst,
        "the [limits] burst is the default"
    );
}

#[test]
fn the_default_tenant_is_found_in_order_of_precedence() {
    // Marked.
    let c = parse_with_pool("[[tenant]]\nname = \"a\"\n[[tenant]]\nname = \"b\"\ndefault = true\n");
    assert_eq!((c.tenants.len(), c.default_tenant), (2, TenantId(1)));
    // Named "default".
    let c = parse_with_pool("[[tenant]]\nname = \"a\"\n[[tenant]]\nname = \"default\"\n");
    assert_eq!((c.tenants.len(), c.default_tenant), (2, TenantId(1)));
    // Neither: an implicit, unlimited one is appended.
    let c = parse_with_pool("[[tenant]]\nname = \"a\"\nrequests_per_sec = 5\n");
    assert_eq!((c.tenants.len(), c.default_tenant), (2, TenantId(1)));
    assert!(c.tenants[1].rate.is_unlimited());
    // `default = false` is no mark.
    let c = parse_with_pool("[[tenant]]\nname = \"a\"\ndefault = false\n");
    assert_eq!(c.default_tenant, TenantId(1));
}

#[test]
fn http_connections_max_still_works_and_mirrors_limits() {
    let c = parse_with_pool("[http]\nconnections_max = 77\n");
    assert_eq!((c.http.connections_max, c.limits.connections_max), (77, 77));
    let c = parse_with_pool("[limits]\nconnections_max = 88\n");
    assert_eq!((c.http.connections_max, c.limits.connections_max), (88, 88));
}

#[test]
fn the_rate_table_and_inline_keys_are_the_same_schema() {
    let inline = parse_with_pool(
        "[[tenant]]\nname = \"t\"\nrequests_per_sec = 5\nbytes_per_sec = \"1MiB\"\nburst = \"1s\"\n",
    );
    let table = parse_with_pool(
        "[[tenant]]\nname = \"t\"\nrate = { requests_per_sec = 5, bytes_per_sec = \"1MiB\", burst = \"1s\" }\n",
    );
    assert_eq!(inline.tenants, table.tenants);
    // Keys may be split between the two places, each set once.
    let split = parse_with_pool(
        "[[tenant]]\nname = \"t\"\nrequests_per_sec = 5\n[tenant.rate]\nbytes_per_sec = \"1MiB\"\nburst = \"1s\"\n",
    );
    assert_eq!(inline.tenants, split.tenants);
}

// === rejections: [limits] ===

#[test]
fn rejects_bad_limits_keys() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "connections_max = 0",
            "limits.connections_max",
            "0 is outside 1..=1000000",
        ),
        (
            "client_ip_connections_max = 0",
            "limits.client_ip_connections_max",
            "0 is outside 1..=1000000",
        ),
        (
            "client_ip_requests_per_sec = 0",
            "limits.client_ip_requests_per_sec",
            "leave the key out for no limit",
        ),
        (
            "client_ip_bytes_per_sec = \"512B\"",
            "limits.client_ip_bytes_per_sec",
            "512B is outside 1KiB..=1TiB",
        ),
        (
            "bucket_requests_per_sec = 100000001",
            "limits.bucket_requests_per_sec",
            "outside 1..=100000000",
        ),
        (
            "bucket_bytes_per_sec = \"2048GiB\"",
            "limits.bucket_bytes_per_sec",
            "outside 1KiB..=1TiB",
        ),
        (
            "node_inflight_max = 0",
            "limits.node_inflight_max",
            "outside",
        ),
        (
            "rebalance_interval = \"2s\"",
            "limits.rebalance_interval",
            "2s is outside 1ms..=1s",
        ),
        (
            "rebalance_interval = \"0ms\"",
            "limits.rebalance_interval",
            "0ms is outside 1ms..=1s",
        ),
        (
            "table_entries_max = 8",
            "limits.table_entries_max",
            "8 is outside 16..=16777216",
        ),
        ("burst = \"2m\"", "limits.burst", "2m is outside 1ms..=1m"),
        (
            "quantum_bytes_max = \"1KiB\"",
            "limits.quantum_bytes_max",
            "1KiB is outside 4KiB..=64MiB",
        ),
        ("burst = 5", "limits.burst", "needs a unit"),
        (
            "table_entries_max = \"1k\"",
            "limits.table_entries_max",
            "invalid type",
        ),
        ("conections_max = 1", "limits.conections_max", "unknown key"),
    ];
    for &(line, key, needle) in cases {
        rejects(&format!("[limits]\n{line}"), 2, key, needle);
    }
    rejects(
        "limits = 5",
        1,
        "limits",
        "expected a table, found an integer",
    );
    rejects(
        "[http]\nconnections_max = 5\n[limits]\nconnections_max = 6",
        4,
        "limits.connections_max",
        "also set as http.connections_max",
    );
}

// === rejections: [defaults] ===

#[test]
fn rejects_bad_defaults() {
    rejects(
        "[[tenant]]\nname = \"a\"\n[defaults]\ntenant = \"b\"",
        4,
        "defaults.tenant",
        "unknown tenant \"b\" (tenants: [\"a\"])",
    );
    rejects(
        "[defaults]\nclass = \"fast\"",
        2,
        "defaults.class",
        "unknown class \"fast\" (classes: [\"default\"])",
    );
    rejects(
        "[defaults]\ntenant = \"a\"\n[[tenant]]\nname = \"a\"\ndefault = true",
        2,
        "defaults.tenant",
        "tenant[0] is marked default = true",
    );
    rejects(
        "[defaults]\ncolor = \"x\"",
        2,
        "defaults.color",
        "unknown key",
    );
    rejects(
        "defaults = []",
        1,
        "defaults",
        "expected a table, found an array",
    );
}

// === rejections: [[class]] ===

#[test]
fn rejects_bad_classes() {
    let cases: &[(&str, &str, &str)] = &[
        ("name = \"a b\"", "class[0].name", "not a class name"),
        ("weight = 0", "class[0].weight", "0 is outside 1..=1000"),
        ("weight = 1001", "class[0].weight", "outside 1..=1000"),
        (
            "queue_max = 1000001",
            "class[0].queue_max",
            "outside 0..=1000000",
        ),
        (
            "queue_timeout = \"0ms\"",
            "class[0].queue_timeout",
            "0ms is outside 1ms..=1m",
        ),
        (
            "queue_timeout = \"2m\"",
            "class[0].queue_timeout",
            "2m is outside 1ms..=1m",
        ),
        (
            "latency_sensitive = \"yes\"",
            "class[0].latency_sensitive",
            "invalid type",
        ),
        (
            "requests_per_sec = 0",
            "class[0].requests_per_sec",
            "outside",
        ),
        ("shares = 800", "class[0].shares", "unknown key `shares`"),
    ];
    for &(line, key, needle) in cases {
        // `name` first for the others, so every case's key is on line 2 or 3.
        if line.starts_with("name") {
            rejects(&format!("[[class]]\n{line}"), 2, key, needle);
        } else {
            rejects(&format!("[[class]]\nname = \"c\"\n{line}"), 3, key, needle);
        }
    }
    rejects(
        "[[class]]\nname = \"c\"\n[[class]]\nname = \"c\"",
        4,
        "class[1].name",
        "duplicate class name \"c\" (also class[0])",
    );
    rejects(
        "[class]\nname = \"c\"",
        1,
        "class",
        "expected an array of tables",
    );
    let many: String = (0..65)
        .map(|i| format!("[[class]]\nname = \"c{i}\"\n"))
        .collect();
    rejects(&many, 1, "class", "65 entries; at most 64");
}

// === rejections: [[tenant]] ===

#[test]
fn rejects_bad_tenants() {
    let t = "[[tenant]]\nname = \"t\"\n";
    let cases: &[(&str, &str, &str)] = &[
        (
            "class = \"gold\"",
            "tenant[0].class",
            "unknown class \"gold\"",
        ),
        (
            "inflight_max = 0",
            "tenant[0].inflight_max",
            "0 is outside 1..=1000000",
        ),
        (
            "connections_max = 100",
            "tenant[0].connections_max",
            "use inflight_max",
        ),
        (
            "requests_per_sec = 0",
            "tenant[0].requests_per_sec",
            "outside",
        ),
        (
            "bytes_per_sec = \"100\"",
            "tenant[0].bytes_per_sec",
            "a unit is required",
        ),
        (
            "bytes_per_sec = 100",
            "tenant[0].bytes_per_sec",
            "100B is outside 1KiB",
        ),
        (
            "upload_bytes_per_sec = -1",
            "tenant[0].upload_bytes_per_sec",
            "negative",
        ),
        (
            "burst = \"0ms\"",
            "tenant[0].burst",
            "0ms is outside 1ms..=1m",
        ),
        (
            "rate = 5",
            "tenant[0].rate",
            "expected a table, found an integer",
        ),
        (
            "rate = { request_per_sec = 1 }",
            "tenant[0].rate.request_per_sec",
            "unknown key",
        ),
        (
            "rate = { requests_per_sec = 0 }",
            "tenant[0].rate.requests_per_sec",
            "outside",
        ),
        (
            "access_keys = \"AKIA\"",
            "tenant[0].access_keys",
            "expected an array",
        ),
        ("default = 1", "tenant[0].default", "invalid type"),
        (
            "max_connections = 1",
            "tenant[0].max_connections",
            "unknown key",
        ),
    ];
    for &(line, key, needle) in cases {
        rejects(&format!("{t}{line}"), 3, key, needle);
    }
    rejects(
        &format!("{t}requests_per_sec = 5\nrate = {{ requests_per_sec = 6 }}"),
        4,
        "tenant[0].rate.requests_per_sec",
        "also set as requests_per_sec outside the rate table; set it once",
    );
    rejects(
        &format!("{t}access_keys = [\"OK\", \"a/b\"]"),
        3,
        "tenant[0].access_keys[1]",
        "\"a/b\" is not an access key id",
    );
    rejects(
        &format!("{t}access_keys = [\"K\", \"K\"]"),
        3,
        "tenant[0].access_keys[1]",
        "duplicate access key \"K\" (also in this tenant)",
    );
    rejects(
        &format!("{t}access_keys = [\"K\"]\n[[tenant]]\nname = \"u\"\naccess_keys = [\"K\"]"),
        6,
        "tenant[1].access_keys[0]",
        "duplicate access key \"K\" (also in tenant[0])",
    );
    rejects(
        &format!("{t}[[tenant]]\nname = \"t\""),
        4,
        "tenant[1].name",
        "duplicate tenant name \"t\" (also tenant[0])",
    );
    rejects(
        &format!("{t}default = true\n[[tenant]]\nname = \"u\"\ndefault = true"),
        6,
        "tenant[1].default",
        "only one tenant may be the default (also tenant[0])",
    );
    rejects(
        "[[tenant]]\nname = \"\"",
        2,
        "tenant[0].name",
        "not a tenant name",
    );
    rejects(
        "[[tenant]]\nclass = \"x\"",
        1,
        "tenant[0]",
        "missing key `name`",
    );
}

// === rejections: [[rule]] ===

#[test]
fn rejects_bad_rules() {
    let r = "[[rule]]\nclass = \"default\"\n";
    let cases: &[(&str, &str, &str)] = &[
        (
            "tenant = \"nobody\"",
            "rule[0].tenant",
            "unknown tenant \"nobody\" (tenants: [\"default\"])",
        ),
        (
            "bucket = \"Rag-*\"",
            "rule[0].bucket",
            "bad bucket glob \"Rag-*\"",
        ),
        ("op = \"get\"", "rule[0].op[0]", "unknown op \"get\""),
        (
            "op = [\"read\", \"read\"]",
            "rule[0].op[1]",
            "duplicate op \"read\"",
        ),
        ("op = []", "rule[0].op", "at least one op is required"),
        ("op = 5", "rule[0].op", "a string or an array of strings"),
        (
            "client_cidr = \"10.0.0.1/8\"",
            "rule[0].client_cidr[0]",
            "did you mean 10.0.0.0/8?",
        ),
        (
            "client_cidr = [\"10.0.0.0/8\", \"10.0.0.0/8\"]",
            "rule[0].client_cidr[1]",
            "duplicate block",
        ),
        (
            "client_cidr = [\"10.0.0.0/33\"]",
            "rule[0].client_cidr[0]",
            "not in 0..=32",
        ),
        (
            "client_cidr = []",
            "rule[0].client_cidr",
            "at least one block",
        ),
        (
            "pool = \"nowhere\"",
            "rule[0].pool",
            "unknown pool \"nowhere\"",
        ),
        ("pools = []", "rule[0].pools", "at least one pool"),
        (
            "requests_per_sec = 0",
            "rule[0].requests_per_sec",
            "outside",
        ),
        ("priority = 1", "rule[0].priority", "unknown key"),
    ];
    for &(line, key, needle) in cases {
        rejects(&format!("{r}{line}"), 3, key, needle);
    }
    rejects(
        "[[rule]]\nclass = \"nope\"",
        2,
        "rule[0].class",
        "unknown class \"nope\"",
    );
    rejects(
        "[[rule]]\npool = \"default\"\npools = [\"default\"]",
        3,
        "rule[0].pools",
        "set either pool (one) or pools (a failover chain), not both",
    );
    rejects(
        "[[rule]]\nbucket = \"rag-*\"",
        1,
        "rule[0]",
        "the rule sets nothing",
    );
    rejects(
        "rule = { class = \"default\" }",
        1,
        "rule",
        "expected an array of tables",
    );
}

// === classification ===

const CLASSIFY: &str = r#"
[appliance]
virtual_host_suffixes = ["s3.local"]
[[pool]]
name = "default"
nodes = ["h:1"]
[[pool]]
name = "rag"
nodes = ["h:2"]
[[pool]]
name = "lab"
nodes = ["h:3"]
[[class]]
name = "bulk"
[[class]]
name = "inference"
weight = 8
[[tenant]]
name = "training"
access_keys = ["AKIATRAIN"]
[[tenant]]
name = "rag"
access_keys = ["AKIARAG"]
class = "inference"
[[route]]
bucket = "rag-*"
pool = "rag"
[[rule]]
tenant = "training"
op = "write"
class = "inference"
[[rule]]
client_cidr = "10.9.0.0/16"
bucket = "lab-*"
pool = "lab"
[[rule]]
op = ["delete", "multipart"]
requests_per_sec = 10
"#;

fn classify(c: &Config, auth: Option<&str>, method: &str, path: &str, from: &str) -> Classified {
    c.classify(&Request {
        method,
        host: Some("s3.local"),
        path,
        query: None,
        access_key: crate::classify::access_key(auth, None),
        client_ip: ip(from),
        client_name: None,
        copy_sources: &[],
    })
}

fn sigv4(key: &str) -> String {
    format!("AWS4-HMAC-SHA256 Credential={key}/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0")
}

#[test]
fn classification_tenant_rule_class_and_pools() {
    let c = parse(CLASSIFY).unwrap();
    let train = sigv4("AKIATRAIN");
    let rag = sigv4("AKIARAG");

    // Tenant from the key; no rule matches a read; the route picks the pool; the
    // tenant has no class: the default (first) class.
    let x = classify(&c, Some(&train), "GET", "/rag-docs/a", "10.0.0.1");
    assert_eq!(x.tenant, TenantId(0));
    assert_eq!(
        (x.bucket.as_deref(), x.op),
        (Some("rag-docs"), OpClass::Read)
    );
    assert_eq!(
        (x.rule, x.class, x.pools.as_slice()),
        (None, ClassId(0), &[1][..])
    );

    // A write by training: rule 0 (class only; pools from the route table).
    let x = classify(&c, Some(&train), "PUT", "/rag-docs/a", "10.0.0.1");
    assert_eq!(
        (x.rule, x.class, x.pools.as_slice()),
        (Some(0), ClassId(1), &[1][..])
    );

    // The tenant's own class applies without a rule.
    let x = classify(&c, Some(&rag), "GET", "/other/a", "10.0.0.1");
    assert_eq!(
        (x.tenant, x.class, x.pools.as_slice()),
        (TenantId(1), ClassId(1), &[0][..])
    );

    // Client block and bucket glob both hold: rule 1's pool wins over the route table;
    // an IPv4-mapped client address matches an IPv4 block.
    let x = classify(&c, None, "GET", "/lab-data/k", "::ffff:10.9.1.2");
    assert_eq!((x.rule, x.pools.as_slice()), (Some(1), &[2][..]));
    assert_eq!(x.client_ip, ip("10.9.1.2"));
    let x = classify(&c, None, "GET", "/lab-data/k", "10.8.1.2");
    assert_eq!(x.rule, None);

    // Unknown and absent keys fall into the implicit default tenant.
    let x = classify(
        &c,
        Some(&sigv4("AKIAUNKNOWN")),
        "DELETE",
        "/b1b/k",
        "10.0.0.1",
    );
    assert_eq!(x.tenant, c.default_tenant);
    assert_eq!(c.tenants[x.tenant.0].name, DEFAULT_TENANT_NAME);
    assert_eq!((x.op, x.rule), (OpClass::Delete, Some(2)));
    let x = classify(&c, None, "GET", "/", "10.0.0.1");
    assert_eq!(
        (x.tenant, x.bucket, x.op),
        (c.default_tenant, None, OpClass::List)
    );

    // Virtual-host style; presigned URL key.
    let x = c.classify(&Request {
        method: "GET",
        host: Some("rag-x.s3.local"),
        path: "/k",
        query: Some("X-Amz-Credential=AKIARAG%2F20240101%2Fr%2Fs3%2Faws4_request"),
        access_key: crate::classify::access_key(
            None,
            Some("X-Amz-Credential=AKIARAG%2F20240101%2Fr%2Fs3%2Faws4_request"),
        ),
        client_ip: ip("10.0.0.1"),
        client_name: None,
        copy_sources: &[],
    });
    assert_eq!(
        (x.tenant, x.bucket.as_deref()),
        (TenantId(1), Some("rag-x"))
    );
    assert_eq!(x.pools, [1]);
}

#[test]
fn rules_without_a_bucket_condition_match_requests_without_a_bucket() {
    let c = parse_with_pool("[[rule]]\nop = \"list\"\nrequests_per_sec = 5\n[[rule]]\nbucket = \"*\"\nclass = \"default\"\n");
    let x = classify(&c, None, "GET", "/", "10.0.0.1");
    assert_eq!(x.rule, Some(0));
    let x = classify(&c, None, "HEAD", "/", "10.0.0.1");
    assert_eq!(x.rule, None, "bucket = \"*\" needs a bucket");
}

#[test]
fn example_file_tenancy() {
    let text = include_str!("../../../appliance/examples/weir.toml");
    let c = Config::from_toml_str(text, "weir.toml").unwrap();
    // The example shows the defaults of [limits]: keep the two in step.
    assert_eq!(c.limits, Limits::default());
    assert_eq!(c.http.connections_max, Limits::default().connections_max);
    let names = |v: Vec<&str>| v.into_iter().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        c.classes.iter().map(|x| x.name.clone()).collect::<Vec<_>>(),
        names(vec!["inference", "bulk"])
    );
    assert_eq!(c.classes[0].queue_max, 1024);
    assert_eq!(c.classes[0].queue_timeout, Duration::from_secs(1));
    assert_eq!(c.default_class, ClassId(1));
    assert_eq!(
        c.tenants.len(),
        2,
        "anonymous is the default: no implicit tenant"
    );
    assert_eq!(c.tenants[c.default_tenant.0].name, "anonymous");
    assert_eq!(c.tenant_of_key("AKIAIOSFODNN7EXAMPLE"), Some(TenantId(0)));
    assert_eq!(c.tenants[0].rate.download_bytes_per_sec, Some(4 << 30));
    assert_eq!(c.tenants[1].rate.burst, Duration::from_secs(1));
    assert_eq!(c.rules.len(), 1);
    assert_eq!(c.rules[0].ops, [OpClass::Write, OpClass::Multipart]);
}

#[test]
fn a_verified_client_certificate_names_the_tenant_before_any_access_key() {
    let c = parse_with_pool(
        "[[tenant]]\nname = \"job-a\"\nclient_names = [\"Job-A.clients.test\"]\n\
         [[tenant]]\nname = \"keyed\"\naccess_keys = [\"AKIAKEYED\"]\n",
    );
    let job_a = c.tenants.iter().position(|t| t.name == "job-a").unwrap();
    let keyed = c.tenants.iter().position(|t| t.name == "keyed").unwrap();
    let auth = sigv4("AKIAKEYED");
    let with_name = |name: Option<&str>, auth: Option<&str>| {
        c.classify(&Request {
            method: "GET",
            host: Some("s3.local"),
            path: "/b/k",
            query: None,
            access_key: crate::classify::access_key(auth, None),
            client_ip: ip("10.0.0.1"),
            client_name: name,
            copy_sources: &[],
        })
        .tenant
        .0
    };
    // The certificate decides (names compare case-insensitively), even against a key.
    assert_eq!(with_name(Some("job-a.clients.test"), Some(&auth)), job_a);
    // An unlisted certificate name leaves the key to decide.
    assert_eq!(with_name(Some("other.test"), Some(&auth)), keyed);
    assert_eq!(with_name(None, Some(&auth)), keyed);
    // A request cannot claim the certificate's tenant through its access key.
    let forged = sigv4("tls:job-a.clients.test");
    assert_eq!(with_name(None, Some(&forged)), c.default_tenant.0);
}

#[test]
fn rejects_bad_client_names() {
    rejects(
        "[[tenant]]\nname = \"a\"\nclient_names = [\"has space\"]\n",
        3,
        "tenant[0].client_names[0]",
        "not a certificate DNS name",
    );
    rejects(
        "[[tenant]]\nname = \"a\"\nclient_names = [\"x.test\"]\n\
         [[tenant]]\nname = \"b\"\nclient_names = [\"X.test\"]\n",
        6,
        "tenant[1].client_names[0]",
        "duplicate client name",
    );
}

#[test]
fn tenant_buckets_and_pools_decide_access() {
    let c = parse(
        "[[pool]]\nname = \"onprem\"\nnodes = [\"10.0.0.1:9000\"]\npriority = 0\n\
         [[pool]]\nname = \"cloud\"\nnodes = [\"10.0.0.2:9000\"]\npriority = 1\n\
         [[route]]\nbucket = \"*\"\npools = [\"onprem\", \"cloud\"]\n\
         [[route]]\nbucket = \"cloud-*\"\npool = \"cloud\"\n\
         [[tenant]]\nname = \"lab\"\naccess_keys = [\"AKIALAB\"]\nbuckets = [\"lab-*\", \"shared\"]\npools = [\"onprem\"]\n",
    )
    .unwrap();
    let auth = sigv4("AKIALAB");
    let at = |path: &str| {
        c.classify(&Request {
            method: "GET",
            host: Some("s3.local"),
            path,
            query: None,
            access_key: crate::classify::access_key(Some(&auth), None),
            client_ip: ip("10.0.0.9"),
            client_name: None,
            copy_sources: &[],
        })
    };
    let ok = at("/lab-1/k");
    assert_eq!(
        (ok.denied, ok.pools.clone()),
        (None, vec![0]),
        "chain cut to onprem"
    );
    assert_eq!(at("/shared/k").denied, None);
    assert_eq!(at("/other/k").denied, Some(crate::classify::Denied::Bucket));
    // No bucket (ListBuckets): not a bucket access.
    assert_eq!(at("/").denied, None);
    // A bucket only pools the tenant may not use serve.
    let c2 = parse(
        "[[pool]]\nname = \"onprem\"\nnodes = [\"10.0.0.1:9000\"]\n\
         [[pool]]\nname = \"cloud\"\nnodes = [\"10.0.0.2:9000\"]\n\
         [[route]]\nbucket = \"cloud-*\"\npool = \"cloud\"\n\
         [[tenant]]\nname = \"lab\"\naccess_keys = [\"AKIALAB\"]\npools = [\"onprem\"]\n",
    )
    .unwrap();
    let d = c2.classify(&Request {
        method: "GET",
        host: Some("s3.local"),
        path: "/cloud-x/k",
        query: None,
        access_key: crate::classify::access_key(Some(&auth), None),
        client_ip: ip("10.0.0.9"),
        client_name: None,
        copy_sources: &[],
    });
    assert_eq!(d.denied, Some(crate::classify::Denied::Pool));
    assert!(
        !d.pools.is_empty(),
        "the chain stays non-empty even when denied"
    );
}

#[test]
fn rejects_bad_tenant_access_lists() {
    rejects(
        "[[tenant]]\nname = \"a\"\nbuckets = []\n",
        3,
        "tenant[0].buckets",
        "deny every bucket",
    );
    rejects(
        "[[tenant]]\nname = \"a\"\npools = [\"nope\"]\n",
        3,
        "tenant[0].pools[0]",
        "nope",
    );
}

#[test]
fn tenant_pool_credentials_parse_and_are_checked() {
    let c = parse_with_pool(
        "[[tenant]]\nname = \"a\"\naccess_keys = [\"TENANTA\"]\n\
         pool_credentials = { default = { access_key = \"A-AT-DEFAULT\", secret_file = \"a.secret\", region = \"eu-west-1\" } }\n",
    );
    let t = &c.tenants[0];
    assert_eq!(t.pool_credentials.len(), 1);
    let (pool, creds) = &t.pool_credentials[0];
    assert_eq!(c.pools[*pool].name, "default");
    assert_eq!(creds.access_key, "A-AT-DEFAULT");
    assert_eq!(creds.region, "eu-west-1");
    rejects(
        "[[tenant]]\nname = \"a\"\npool_credentials = { nope = { access_key = \"K\", secret = \"s\" } }\n",
        3,
        "tenant[0].pool_credentials.nope",
        "no pool named \"nope\"",
    );
    rejects(
        "[[tenant]]\nname = \"a\"\npool_credentials = { default = { access_key = \"K\" } }\n",
        3,
        "tenant[0].pool_credentials.default",
        "secret",
    );
    rejects(
        "[[tenant]]\nname = \"a\"\npool_credentials = \"x\"\n",
        3,
        "tenant[0].pool_credentials",
        "expected a table",
    );
}
