//! Config acceptance and one rejection test per rule, each with inline TOML and the exact
//! key and line the operator would be pointed at.

use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

/// A valid pool, appended *after* the text under test so the test's line numbers hold.
const POOL: &str = "\n[[pool]]\nname = \"default\"\nnodes = [\"127.0.0.1:9001\"]\n";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "t.toml")
}

/// Asserts that `text` is rejected at `line` and `key`, with `needle` in the message.
#[track_caller]
fn rejects(text: &str, line: Option<usize>, key: &str, needle: &str) {
    let e = match parse(text) {
        Ok(c) => panic!("accepted {text:?} as {c:?}"),
        Err(e) => e,
    };
    assert_eq!(e.origin, "t.toml");
    assert_eq!((e.line, e.key.as_str()), (line, key), "{e}");
    assert!(
        e.message.contains(needle),
        "{e:?} should mention {needle:?}"
    );
}

/// [`rejects`] for a fragment that needs a valid pool around it.
#[track_caller]
fn rejects_with_pool(fragment: &str, line: usize, key: &str, needle: &str) {
    rejects(&format!("{fragment}{POOL}"), Some(line), key, needle);
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

// === acceptance ===

#[test]
fn example_file_parses() {
    let text = include_str!("../../../appliance/examples/weir.toml");
    let c = Config::from_toml_str(text, "weir.toml").unwrap();
    let d_app = Appliance::default();
    assert_eq!(c.appliance.cores, d_app.cores);
    assert_eq!(c.appliance.listen, d_app.listen);
    assert_eq!(c.appliance.metrics, Some(addr("127.0.0.1:9100")));
    assert_eq!(c.appliance.body_path, BodyPath::Splice);
    assert_eq!(c.appliance.pipe_bytes, 1 << 20);
    assert!(c.appliance.virtual_host_suffixes.is_empty());
    // The example documents the defaults: keep the two in step.
    assert_eq!(c.http, Http::default());
    assert_eq!(c.upstream, Upstream::default());
    assert_eq!(c.pools.len(), 1);
    assert_eq!(c.pools[0].name, "default");
    assert_eq!(
        c.pools[0]
            .nodes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["127.0.0.1:9001", "127.0.0.1:9002"]
    );
    assert_eq!(c.routes.len(), 1);
    assert_eq!(c.routes[0].bucket.as_str(), "rag-*");
    assert_eq!(c.routes[0].pool, 0);
}

#[test]
fn only_a_pool_gives_defaults() {
    let c = parse(POOL).unwrap();
    assert_eq!(c.appliance, Appliance::default());
    assert_eq!(c.http, Http::default());
    assert_eq!(c.upstream, Upstream::default());
    assert!(c.routes.is_empty());
}

#[test]
fn every_key_set() {
    let text = r#"
[appliance]
cores = 8
listen = ["0.0.0.0:9000", "[::]:9000"]
metrics = "127.0.0.1:9100"
body_path = "copy"
pipe_bytes = 65536
virtual_host_suffixes = [".S3.Example.com", "s3.local"]
[http]
header_bytes_max = "32KB"
headers_count_max = 64
head_timeout = "500ms"
client_idle_timeout = "2m"
buffered_body_bytes_max = 0
connections_max = 1
[upstream]
connect_timeout = "1s"
first_byte_timeout = "1h"
io_timeout = "24h"
idle_connections_per_node_max = 0
pool_idle_timeout = "90s"
[[pool]]
name = "site-a"
nodes = ["10.0.0.11:9000", "[fd00::1]:9000", "node-3.example:9000"]
[[pool]]
name = "site_b.2"
nodes = ["10.0.1.11:9000"]
[[route]]
bucket = "logs-20??-*"
pool = "site_b.2"
[[route]]
bucket = "*"
pool = "site-a"
"#;
    let c = parse(text).unwrap();
    assert_eq!(
        c.appliance,
        Appliance {
            cores: 8,
            listen: vec![addr("0.0.0.0:9000"), addr("[::]:9000")],
            metrics: Some(addr("127.0.0.1:9100")),
            body_path: BodyPath::Copy,
            pipe_bytes: 65536,
            virtual_host_suffixes: vec!["s3.example.com".into(), "s3.local".into()],
        }
    );
    assert_eq!(
        c.http,
        Http {
            header_bytes_max: 32_000,
            headers_count_max: 64,
            head_timeout: Duration::from_millis(500),
            client_idle_timeout: Duration::from_secs(120),
            buffered_body_bytes_max: 0,
            connections_max: 1,
        }
    );
    assert_eq!(
        c.upstream,
        Upstream {
            connect_timeout: Duration::from_secs(1),
            first_byte_timeout: Duration::from_secs(3600),
            io_timeout: Duration::from_secs(86_400),
            idle_connections_per_node_max: 0,
            pool_idle_timeout: Duration::from_secs(90),
        }
    );
    assert_eq!(c.pools[0].nodes[1].host, "fd00::1");
    assert_eq!(c.routes[0].pool, 1);
    assert_eq!(c.routes[1].pool, 0);
}

#[test]
fn inline_tables_are_the_same_schema() {
    let c = parse("pool = [{ name = \"p\", nodes = [\"h:1\"] }]\nhttp = { connections_max = 5 }\n")
        .unwrap();
    assert_eq!(c.pools[0].name, "p");
    assert_eq!(c.http.connections_max, 5);
}

#[test]
fn routing_first_match_else_first_pool() {
    let text = r#"
[[pool]]
name = "default"
nodes = ["h:1"]
[[pool]]
name = "rag"
nodes = ["h:2"]
[[pool]]
name = "logs"
nodes = ["h:3"]
[[route]]
bucket = "rag-*"
pool = "rag"
[[route]]
bucket = "rag-logs"
pool = "logs"
[[route]]
bucket = "*-logs"
pool = "logs"
"#;
    let c = parse(text).unwrap();
    assert_eq!(c.route(Some("rag-docs")), 1);
    assert_eq!(c.route(Some("rag-logs")), 1, "routes are tried in order");
    assert_eq!(c.route(Some("web-logs")), 2);
    assert_eq!(c.route(Some("other")), 0);
    assert_eq!(c.route(None), 0);
}

// === rejections: structure and pools ===

#[test]
fn rejects_no_pools() {
    rejects("", None, "pool", "at least one [[pool]]");
    rejects(
        "[appliance]\ncores = 2\n",
        None,
        "pool",
        "at least one [[pool]]",
    );
    rejects("pool = []\n", Some(1), "pool", "at least one [[pool]]");
}

#[test]
fn rejects_duplicate_pool_names() {
    let text =
        "[[pool]]\nname = \"a\"\nnodes = [\"h:1\"]\n[[pool]]\nname = \"a\"\nnodes = [\"h:2\"]\n";
    rejects(
        text,
        Some(5),
        "pool[1].name",
        "duplicate pool name \"a\" (also pool[0])",
    );
}

#[test]
fn rejects_bad_pool_name() {
    rejects(
        "[[pool]]\nname = \"a b\"\nnodes = [\"h:1\"]\n",
        Some(2),
        "pool[0].name",
        "not a pool name",
    );
    rejects(
        "[[pool]]\nname = \"\"\nnodes = [\"h:1\"]\n",
        Some(2),
        "pool[0].name",
        "not a pool name",
    );
}

#[test]
fn rejects_empty_nodes() {
    rejects(
        "[[pool]]\nname = \"a\"\nnodes = []\n",
        Some(3),
        "pool[0].nodes",
        "at least one node",
    );
}

#[test]
fn rejects_duplicate_node() {
    let text =
        "[[pool]]\nname = \"a\"\nnodes = [\n  \"Node.example:80\",\n  \"node.EXAMPLE:80\",\n]\n";
    rejects(
        text,
        Some(5),
        "pool[0].nodes[1]",
        "duplicate node node.example:80 (also nodes[0])",
    );
    // The same node in two pools is fine: pools may overlap.
    parse("[[pool]]\nname = \"a\"\nnodes = [\"h:1\"]\n[[pool]]\nname = \"b\"\nnodes = [\"h:1\"]\n")
        .unwrap();
}

#[test]
fn rejects_bad_node_address_with_file_line_and_key() {
    let text = "\
# line 1
[appliance]
cores = 0

[http]
connections_max = 10

[[pool]]
name = \"a\"
nodes = [\"10.0.0.2:9000\"]

[[pool]]
name = \"b\"
nodes = [\"10.0.0.1\"]
";
    let e = Config::from_toml_str(text, "weir.toml").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("weir.toml:14: pool[1].nodes[0]: \"10.0.0.1\" is not host:port"),
        "{e}"
    );
    for (node, needle) in [
        ("10.0.0.1:0", "not in 1..=65535"),
        ("::1:80", "need brackets"),
        ("[::1:80", "bad [IPv6]"),
        ("10.0.0.300:80", "neither an IPv4 address nor a DNS name"),
        ("under_score:80", "neither an IPv4 address nor a DNS name"),
    ] {
        let text = format!("[[pool]]\nname = \"a\"\nnodes = [\"{node}\"]\n");
        rejects(&text, Some(3), "pool[0].nodes[0]", needle);
    }
}

#[test]
fn rejects_missing_required_pool_keys() {
    let text = "[[pool]]\nname = \"a\"\nnodes = [\"h:1\"]\n\n[[pool]]\nnodes = [\"h:2\"]\n";
    rejects(text, Some(5), "pool[1]", "missing key `name`");
    rejects(
        "[[pool]]\nname = \"a\"\n",
        Some(1),
        "pool[0]",
        "missing key `nodes`",
    );
}

#[test]
fn rejects_too_many_pools() {
    let mut text = String::new();
    for i in 0..257 {
        text.push_str(&format!("[[pool]]\nname = \"p{i}\"\nnodes = [\"h:1\"]\n"));
    }
    rejects(&text, Some(1), "pool", "at most 256");
}

// === rejections: routes ===

#[test]
fn rejects_route_to_unknown_pool() {
    let text = format!("{POOL}\n[[route]]\nbucket = \"a*\"\npool = \"nope\"\n");
    rejects(
        &text,
        Some(8),
        "route[0].pool",
        "unknown pool \"nope\" (pools: [\"default\"])",
    );
}

#[test]
fn rejects_bad_glob() {
    for (glob, needle) in [
        ("", "empty pattern"),
        ("Rag-*", "'R' cannot occur"),
        ("rag_[0-9]", "'_' cannot occur"),
    ] {
        let text = format!("{POOL}\n[[route]]\nbucket = \"{glob}\"\npool = \"default\"\n");
        rejects(&text, Some(7), "route[0].bucket", needle);
    }
}

#[test]
fn rejects_route_without_pool() {
    let text = format!("{POOL}\n[[route]]\nbucket = \"a*\"\n");
    rejects(&text, Some(6), "route[0]", "missing key `pool`");
}

// === rejections: bounds ===

#[test]
fn rejects_zero_and_oversized_values() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[appliance]\npipe_bytes = \"2KiB\"",
            "appliance.pipe_bytes",
            "2KiB is below the minimum of 4KiB",
        ),
        (
            "[appliance]\npipe_bytes = \"65MiB\"",
            "appliance.pipe_bytes",
            "65MiB is above the maximum of 64MiB",
        ),
        (
            "[appliance]\npipe_bytes = 0",
            "appliance.pipe_bytes",
            "below the minimum",
        ),
        (
            "[http]\nheader_bytes_max = 0",
            "http.header_bytes_max",
            "0B is below the minimum of 1KiB",
        ),
        (
            "[http]\nheader_bytes_max = \"2MiB\"",
            "http.header_bytes_max",
            "above the maximum of 1MiB",
        ),
        (
            "[http]\nheaders_count_max = 0",
            "http.headers_count_max",
            "0 is outside 1..=1024",
        ),
        (
            "[http]\nheaders_count_max = 5000",
            "http.headers_count_max",
            "outside 1..=1024",
        ),
        (
            "[http]\nbuffered_body_bytes_max = \"1GiB\"",
            "http.buffered_body_bytes_max",
            "above the maximum of 16MiB",
        ),
        (
            "[http]\nconnections_max = 0",
            "http.connections_max",
            "outside 1..=1000000",
        ),
        (
            "[http]\nconnections_max = 1000001",
            "http.connections_max",
            "outside",
        ),
        (
            "[http]\nhead_timeout = \"0s\"",
            "http.head_timeout",
            "0ms is below the minimum of 1ms",
        ),
        (
            "[upstream]\nconnect_timeout = \"0ms\"",
            "upstream.connect_timeout",
            "below the minimum of 1ms",
        ),
        (
            "[upstream]\nidle_connections_per_node_max = 4097",
            "upstream.idle_connections_per_node_max",
            "outside 0..=4096",
        ),
        (
            "[appliance]\ncores = 1025",
            "appliance.cores",
            "1025 is above the maximum of 1024",
        ),
    ];
    for &(fragment, key, needle) in cases {
        rejects_with_pool(fragment, 2, key, needle);
    }
}

#[test]
fn rejects_negative_sizes() {
    rejects_with_pool(
        "[appliance]\npipe_bytes = -4096",
        2,
        "appliance.pipe_bytes",
        "must not be negative",
    );
    rejects_with_pool(
        "[http]\nheader_bytes_max = \"-1KiB\"",
        2,
        "http.header_bytes_max",
        "must not be negative",
    );
    rejects_with_pool(
        "[http]\nheader_bytes_max = \"16 kb\"",
        2,
        "http.header_bytes_max",
        "unknown unit \"kb\"",
    );
    rejects_with_pool(
        "[http]\nheader_bytes_max = \"16384\"",
        2,
        "http.header_bytes_max",
        "a unit is required",
    );
}

// === rejections: durations ===

#[test]
fn rejects_durations_without_unit_negative_or_absurd() {
    let cases: &[(&str, &str)] = &[
        ("10", "needs a unit"),
        ("\"10\"", "a unit is required"),
        ("-5", "must not be negative"),
        ("0", "needs a unit"),
        ("\"-5s\"", "must not be negative"),
        ("1.5", "must be a string with a unit"),
        ("\"1.5s\"", "whole number"),
        ("\"25h\"", "longer than the maximum of 24h"),
        ("\"1441m\"", "longer than the maximum of 24h"),
        ("\"2d\"", "unknown unit \"d\""),
        ("true", "invalid type: boolean"),
    ];
    for &(value, needle) in cases {
        let fragment = format!("[upstream]\n\nio_timeout = {value}");
        rejects_with_pool(&fragment, 3, "upstream.io_timeout", needle);
    }
}

// === rejections: addresses ===

#[test]
fn rejects_duplicate_listen_addresses() {
    let fragment =
        "[appliance]\nlisten = [\n  \"0.0.0.0:9000\",\n  \"[::]:9000\",\n  \"0.0.0.0:9000\",\n]";
    rejects_with_pool(
        fragment,
        5,
        "appliance.listen[2]",
        "duplicate listen address 0.0.0.0:9000 (also listen[0])",
    );
}

#[test]
fn rejects_bad_listen_and_metrics() {
    rejects_with_pool(
        "[appliance]\nlisten = []",
        2,
        "appliance.listen",
        "at least one",
    );
    rejects_with_pool(
        "[appliance]\nlisten = [\"localhost:9000\"]",
        2,
        "appliance.listen[0]",
        "is not ip:port",
    );
    rejects_with_pool(
        "[appliance]\nlisten = [\"0.0.0.0:0\"]",
        2,
        "appliance.listen[0]",
        "port 0",
    );
    rejects_with_pool(
        "[appliance]\nmetrics = \"9100\"",
        2,
        "appliance.metrics",
        "is not ip:port",
    );
    rejects_with_pool(
        "[appliance]\nlisten = [\"127.0.0.1:9000\"]\nmetrics = \"127.0.0.1:9000\"",
        3,
        "appliance.metrics",
        "also a listen address",
    );
}

#[test]
fn rejects_bad_virtual_host_suffixes() {
    rejects_with_pool(
        "[appliance]\nvirtual_host_suffixes = [\"s3.example.com\", \"bad_suffix.com\"]",
        2,
        "appliance.virtual_host_suffixes[1]",
        "not a DNS name",
    );
    rejects_with_pool(
        "[appliance]\nvirtual_host_suffixes = [\"s3.local\", \".S3.LOCAL\"]",
        2,
        "appliance.virtual_host_suffixes[1]",
        "duplicate suffix",
    );
}

// === rejections: unknown keys and wrong types (from the parser) ===

#[test]
fn rejects_unknown_keys_anywhere() {
    let cases: &[(&str, usize, &str)] = &[
        ("bogus = 1", 1, "bogus"),
        ("[bogus]\nx = 1", 1, "bogus"),
        (
            "[appliance]\ncores = 1\nadmin = \"127.0.0.1:9101\"",
            3,
            "appliance.admin",
        ),
        ("[http]\nheader_bytes = 1024", 2, "http.header_bytes"),
        (
            "[upstream]\nconect_timeout = \"1s\"",
            2,
            "upstream.conect_timeout",
        ),
        (
            "[[route]]\nbucket = \"a\"\npool = \"default\"\nclass = \"x\"",
            4,
            "route[0].class",
        ),
    ];
    for &(fragment, line, key) in cases {
        rejects_with_pool(fragment, line, key, "unknown key");
    }
    let text = "[[pool]]\nname = \"a\"\nnodes = [\"h:1\"]\npriority = 0\n";
    rejects(text, Some(4), "pool[0].priority", "unknown key `priority`");
}

#[test]
fn rejects_wrong_types() {
    let cases: &[(&str, usize, &str, &str)] = &[
        (
            "[appliance]\ncores = \"4\"",
            2,
            "appliance.cores",
            "invalid type: string",
        ),
        (
            "[appliance]\ncores = -1",
            2,
            "appliance.cores",
            "invalid value: integer `-1`, expected a non-negative integer",
        ),
        (
            "[appliance]\nlisten = \"127.0.0.1:9000\"",
            2,
            "appliance.listen",
            "expected an array",
        ),
        (
            "[appliance]\nlisten = [9000]",
            2,
            "appliance.listen[0]",
            "invalid type: integer",
        ),
        (
            "[appliance]\nbody_path = \"zerocopy\"",
            2,
            "appliance.body_path",
            "unknown variant `zerocopy`",
        ),
        (
            "[appliance]\npipe_bytes = 1.5",
            2,
            "appliance.pipe_bytes",
            "invalid type: floating point",
        ),
        (
            "[http]\nheaders_count_max = \"128\"",
            2,
            "http.headers_count_max",
            "invalid type: string",
        ),
        (
            "appliance = 1",
            1,
            "appliance",
            "expected a table, found an integer",
        ),
        (
            "[[appliance]]\ncores = 1",
            1,
            "appliance",
            "expected a table, found an array",
        ),
        (
            "http = [1, 2]",
            1,
            "http",
            "expected a table, found an array",
        ),
        (
            "[[route]]\nbucket = \"a\"\npool = \"default\"\n[route]",
            4,
            "route",
            "duplicate key",
        ),
    ];
    for &(fragment, line, key, needle) in cases {
        rejects_with_pool(fragment, line, key, needle);
    }
    rejects(
        "pool = \"default\"\n",
        Some(1),
        "pool",
        "expected an array of tables ([[pool]]), found a string",
    );
    rejects(
        "pool = [[\"a\", [\"h:1\"]]]\n",
        Some(1),
        "pool[0]",
        "expected a table, found an array",
    );
    rejects(
        "[[pool]]\nname = 5\nnodes = [\"h:1\"]\n",
        Some(2),
        "pool[0].name",
        "invalid type: integer",
    );
    rejects(
        "[[pool]]\nname = \"a\"\nnodes = [\"h:1\", 2]\n",
        Some(3),
        "pool[0].nodes[1]",
        "invalid type: integer",
    );
}

#[test]
fn rejects_syntax_errors_with_line() {
    let e = parse("[appliance]\ncores = 1\nlisten = [\"a\"\n\n[http]\n").unwrap_err();
    assert!(e.line.is_some_and(|l| l >= 3), "{e}");
    let e = parse("[http]\nconnections_max = 1 2\n").unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    let e = parse("[http]\nconnections_max = 1\n[http]\n").unwrap_err();
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.to_string().starts_with("t.toml:3: "), "{e}");
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = parse(&text);
    }

    #[test]
    fn arbitrary_toml_like_text_never_panics(
        text in "(\\[\\[?(pool|route|http|appliance|upstream)\\]\\]?\n|[a-z_]{1,12} = (\"[a-z0-9:.*]{0,12}\"|-?[0-9]{1,6}|\\[\"[0-9.:]{0,12}\"\\])\n){0,12}"
    ) {
        let _ = parse(&text);
    }
}
