//! Config acceptance and one rejection test per rule, each with inline TOML and the exact
//! key and line the operator would be pointed at.

use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::health::{ExpectStatus, HealthPreset, ProbeMethod};

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
    assert_eq!(c.appliance.bucket_names, BucketNames::Strict);
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
    assert_eq!(c.pools[0].priority, 0);
    assert_eq!(c.pools[0].min_active, 1);
    assert_eq!(c.pools[0].health, HealthParams::default());
    assert_eq!(c.routes.len(), 1);
    assert_eq!(c.routes[0].bucket.as_str(), "rag-*");
    assert_eq!(c.routes[0].pools, [0]);
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
bucket_names = "legacy"
[http]
header_bytes_max = "32KB"
headers_count_max = 64
head_timeout = "500ms"
client_idle_timeout = "2m"
buffered_body_bytes_max = 0
body_bytes_max = "5GiB"
body_rate_min = 0
body_rate_window = "30s"
connections_max = 1
[upstream]
connect_timeout = "1s"
first_byte_timeout = "1h"
io_timeout = "24h"
idle_connections_per_node_max = 0
pool_idle_timeout = "90s"
retry_ratio = 0.5
retry_floor_per_sec = 0
attempts_max = 1
resume_max = 0
throttle_backoff_base = "10ms"
throttle_backoff_max = "10ms"
node_concurrency_max = 1
node_concurrency_min = 1
[[pool]]
name = "site-a"
nodes = ["10.0.0.11:9000", "[fd00::1]:9000", "node-3.example:9000"]
priority = 5
min_active = 3
slow_start = "0s"
[pool.health]
preset = "objectscale"
path = "/ping?x=1"
expect_status = "2xx"
body_match = "LIVE"
drain_match = ""
interval = "500ms"
timeout = "500ms"
rise = 1
fall = 100
passive_fall = 0
degraded_latency = "3s"
[[pool]]
name = "site_b.2"
nodes = ["10.0.1.11:9000"]
[[route]]
bucket = "logs-20??-*"
pool = "site_b.2"
[[route]]
bucket = "*"
pools = ["site-a", "site_b.2"]
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
            bucket_names: BucketNames::Legacy,
            ..Appliance::default()
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
            body_bytes_max: 5 << 30,
            body_rate_min: 0,
            body_rate_window: Duration::from_secs(30),
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
            retry_ratio: 0.5,
            retry_floor_per_sec: 0,
            attempts_max: 1,
            resume_max: 0,
            throttle_backoff_base: Duration::from_millis(10),
            throttle_backoff_max: Duration::from_millis(10),
            node_concurrency_max: 1,
            node_concurrency_min: 1,
        }
    );
    assert_eq!(c.pools[0].nodes[1].host, "fd00::1");
    assert_eq!(c.pools[0].priority, 5);
    assert_eq!(c.pools[0].min_active, 3);
    assert_eq!(
        c.pools[0].health,
        HealthParams {
            preset: HealthPreset::Objectscale,
            method: ProbeMethod::Get,
            path: "/ping?x=1".into(),
            expect_status: ExpectStatus::Class(2),
            body_match: Some("LIVE".into()),
            drain_match: None,
            interval: Duration::from_millis(500),
            timeout: Duration::from_millis(500),
            rise: 1,
            fall: 100,
            passive_fall: 0,
            degraded_latency: Some(Duration::from_secs(3)),
            slow_start: Duration::ZERO,
        }
    );
    assert_eq!(c.pools[1].priority, 0);
    assert_eq!(c.routes[0].pools, [1]);
    assert_eq!(c.routes[1].pools, [1, 0], "ordered by priority");
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
    assert_eq!(c.route(Some("rag-docs")), [1]);
    assert_eq!(c.route(Some("rag-logs")), [1], "routes are tried in order");
    assert_eq!(c.route(Some("web-logs")), [2]);
    assert_eq!(c.route(Some("other")), [0]);
    assert_eq!(c.route(None), [0]);
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
        ("Rag-*", "'R': bucket names are lower case"),
        ("rag_[0-9]", "'_' cannot occur"),
        ("-rag*", "no valid bucket name matches it"),
    ] {
        let text = format!("{POOL}\n[[route]]\nbucket = \"{glob}\"\npool = \"default\"\n");
        rejects(&text, Some(7), "route[0].bucket", needle);
    }
}

#[test]
fn rejects_route_without_pool() {
    let text = format!("{POOL}\n[[route]]\nbucket = \"a*\"\n");
    rejects(&text, Some(6), "route[0]", "missing key `pool` (or `pools`");
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
            "[http]\nbody_bytes_max = 0",
            "http.body_bytes_max",
            "below the minimum",
        ),
        (
            "[http]\nbody_rate_min = \"2GiB\"",
            "http.body_rate_min",
            "above the maximum",
        ),
        (
            "[http]\nbody_rate_window = \"100ms\"",
            "http.body_rate_window",
            "100ms is outside 1s..=10m",
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
fn rejects_bad_admin_and_access_log() {
    rejects_with_pool(
        "[appliance]\nadmin = \"0.0.0.0:9101\"",
        2,
        "appliance.admin",
        "admin_token",
    );
    rejects_with_pool(
        "[appliance]\nadmin_token = \"short\"",
        2,
        "appliance.admin_token",
        "16 to 256",
    );
    rejects_with_pool(
        "[appliance]\naccess_log = \"relative.log\"",
        2,
        "appliance.access_log",
        "absolute",
    );
    rejects_with_pool(
        "[appliance]\naccess_log_lines_max = 0",
        2,
        "appliance.access_log_lines_max",
        "outside",
    );
    rejects_with_pool(
        "[appliance]\ndrain_timeout = \"2h\"",
        2,
        "appliance.drain_timeout",
        "maximum",
    );
    rejects_with_pool(
        "[appliance]\ncores = 1\ndrain_grace = \"61m\"",
        3,
        "appliance.drain_grace",
        "maximum",
    );
    rejects_with_pool(
        "[appliance]\ndrain_grace = 5",
        2,
        "appliance.drain_grace",
        "unit",
    );
}

#[test]
fn drain_grace_defaults_and_takes_zero() {
    let c = parse(&format!("[appliance]{POOL}")).unwrap();
    assert_eq!(c.appliance.drain_grace, Duration::from_secs(5));
    let c = parse(&format!("[appliance]\ndrain_grace = \"0s\"{POOL}")).unwrap();
    assert_eq!(c.appliance.drain_grace, Duration::ZERO);
    let c = parse(&format!("[appliance]\ndrain_grace = \"1500ms\"{POOL}")).unwrap();
    assert_eq!(c.appliance.drain_grace, Duration::from_millis(1500));
}

#[test]
fn control_keys_default_and_parse() {
    let c = parse(&format!("[appliance]{POOL}")).unwrap();
    assert_eq!(
        c.appliance.control,
        Control {
            connections_max: 64,
            client_ip_connections_max: 8,
            head_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(30),
        }
    );
    let text = format!(
        "[appliance]\ncontrol_connections_max = 4\ncontrol_client_ip_connections_max = 2\n\
         control_head_timeout = \"250ms\"\ncontrol_connection_timeout = \"1m\"{POOL}"
    );
    assert_eq!(
        parse(&text).unwrap().appliance.control,
        Control {
            connections_max: 4,
            client_ip_connections_max: 2,
            head_timeout: Duration::from_millis(250),
            connection_timeout: Duration::from_secs(60),
        }
    );
    // A small global cap lowers the per-address default with it.
    let small = format!("[appliance]\ncontrol_connections_max = 3{POOL}");
    assert_eq!(
        parse(&small)
            .unwrap()
            .appliance
            .control
            .client_ip_connections_max,
        3
    );
}

#[test]
fn rejects_bad_control_keys() {
    rejects_with_pool(
        "[appliance]\ncontrol_connections_max = 0",
        2,
        "appliance.control_connections_max",
        "outside 1..=4096",
    );
    rejects_with_pool(
        "[appliance]\ncontrol_connections_max = 10\ncontrol_client_ip_connections_max = 11",
        3,
        "appliance.control_client_ip_connections_max",
        "outside 1..=10",
    );
    rejects_with_pool(
        "[appliance]\ncontrol_head_timeout = \"50ms\"",
        2,
        "appliance.control_head_timeout",
        "outside 100ms..=1m",
    );
    rejects_with_pool(
        "[appliance]\ncontrol_connection_timeout = \"2s\"",
        2,
        "appliance.control_connection_timeout",
        "outside 10s..=1h",
    );
    rejects_with_pool(
        "[appliance]\ncontrol_head_timeout = \"20s\"\ncontrol_connection_timeout = \"15s\"",
        3,
        "appliance.control_connection_timeout",
        "shorter than control_head_timeout (20s)",
    );
}

#[test]
fn admin_off_loopback_is_allowed_with_a_token() {
    let text = "[appliance]\nadmin = \"0.0.0.0:9101\"\nadmin_token = \"0123456789abcdef0123\"\naccess_log = \"stdout\"\n[[pool]]\nname = \"p\"\nnodes = [\"127.0.0.1:1\"]\n";
    let cfg = Config::from_toml_str(text, "t.toml").expect("valid");
    assert_eq!(cfg.appliance.admin, Some("0.0.0.0:9101".parse().unwrap()));
    assert_eq!(cfg.appliance.access_log.as_deref(), Some("stdout"));
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

// === health, failover, retries and throttling ===

/// A pool named "default" with two nodes whose own lines are 1..=3; `extra` follows on
/// line 4 onwards.
fn pool_with(extra: &str) -> String {
    format!("[[pool]]\nname = \"default\"\nnodes = [\"h:1\", \"h:2\"]\n{extra}\n")
}

#[test]
fn pool_defaults() {
    let c = parse(POOL).unwrap();
    let p = &c.pools[0];
    assert_eq!((p.priority, p.min_active), (0, 1));
    let h = &p.health;
    assert_eq!(h.preset, HealthPreset::Generic);
    assert_eq!((h.method, h.path.as_str()), (ProbeMethod::Head, "/"));
    assert_eq!(h.expect_status, ExpectStatus::Any);
    assert_eq!(
        (h.body_match.as_ref(), h.drain_match.as_ref()),
        (None, None)
    );
    assert_eq!(
        (h.interval, h.timeout),
        (Duration::from_secs(2), Duration::from_secs(1))
    );
    assert_eq!((h.rise, h.fall, h.passive_fall), (2, 3, 5));
    assert_eq!(h.degraded_latency, None);
    assert_eq!(h.slow_start, Duration::from_secs(10));
}

#[test]
fn presets_fill_and_keys_override() {
    let c = parse(&pool_with("health = { preset = \"seaweedfs\" }")).unwrap();
    let h = &c.pools[0].health;
    assert_eq!((h.method, h.path.as_str()), (ProbeMethod::Get, "/healthz"));
    assert_eq!(h.expect_status, ExpectStatus::Exact(200));

    let c = parse(&pool_with(
        "health = { preset = \"minio\", expect_status = 204 }",
    ))
    .unwrap();
    let h = &c.pools[0].health;
    assert_eq!(h.path, "/minio/health/live");
    assert_eq!(h.expect_status, ExpectStatus::Exact(204));

    let c = parse(&pool_with("[pool.health]\npreset = \"objectscale\"")).unwrap();
    let h = &c.pools[0].health;
    assert_eq!((h.method, h.path.as_str()), (ProbeMethod::Get, "/?ping"));
    assert_eq!(h.drain_match.as_deref(), Some("MAINTENANCE_MODE"));

    let c = parse(&pool_with(
        "health = { preset = \"objectscale\", drain_match = \"\", method = \"HEAD\", expect_status = \"any\" }",
    ))
    .unwrap();
    let h = &c.pools[0].health;
    assert_eq!(
        (h.method, h.drain_match.as_ref()),
        (ProbeMethod::Head, None)
    );
    assert_eq!(h.expect_status, ExpectStatus::Any);

    // A shorter interval pulls the default timeout down with it.
    let c = parse(&pool_with("health = { interval = \"500ms\" }")).unwrap();
    assert_eq!(c.pools[0].health.timeout, Duration::from_millis(500));
    // "0s" turns slow start and degraded_latency off.
    let c = parse(&pool_with(
        "slow_start = \"0s\"\nhealth = { degraded_latency = \"0s\" }",
    ))
    .unwrap();
    assert_eq!(c.pools[0].health.slow_start, Duration::ZERO);
    assert_eq!(c.pools[0].health.degraded_latency, None);
}

#[test]
fn failover_chain_by_priority_ties_keep_written_order() {
    let text = r#"
[[pool]]
name = "cloud"
nodes = ["c:1"]
priority = 10
[[pool]]
name = "site-a"
nodes = ["a:1", "a:2"]
min_active = 2
[[pool]]
name = "site-b"
nodes = ["b:1"]
[[route]]
bucket = "*"
pools = ["cloud", "site-b", "site-a"]
"#;
    let c = parse(text).unwrap();
    assert_eq!(c.route(Some("x")), [2, 1, 0]);
    assert_eq!(c.route(None), [0], "no bucket: pool 0 alone");
    assert_eq!(c.pools[1].min_active, 2);
}

#[test]
fn rejects_bad_upstream_retry_and_throttle_keys() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "retry_ratio = 1.5",
            "upstream.retry_ratio",
            "1.5 is outside 0.0..=1.0",
        ),
        (
            "retry_ratio = -0.1",
            "upstream.retry_ratio",
            "outside 0.0..=1.0",
        ),
        (
            "retry_ratio = nan",
            "upstream.retry_ratio",
            "outside 0.0..=1.0",
        ),
        (
            "retry_ratio = \"20%\"",
            "upstream.retry_ratio",
            "invalid type: string",
        ),
        (
            "retry_floor_per_sec = 100001",
            "upstream.retry_floor_per_sec",
            "outside 0..=100000",
        ),
        (
            "retry_floor_per_sec = -1",
            "upstream.retry_floor_per_sec",
            "expected a non-negative integer",
        ),
        (
            "attempts_max = 0",
            "upstream.attempts_max",
            "0 is outside 1..=10",
        ),
        (
            "attempts_max = 11",
            "upstream.attempts_max",
            "outside 1..=10",
        ),
        ("resume_max = 101", "upstream.resume_max", "outside 0..=100"),
        (
            "throttle_backoff_base = \"0ms\"",
            "upstream.throttle_backoff_base",
            "below the minimum of 1ms",
        ),
        (
            "throttle_backoff_base = 50",
            "upstream.throttle_backoff_base",
            "needs a unit",
        ),
        (
            "throttle_backoff_max = \"10ms\"",
            "upstream.throttle_backoff_max",
            "10ms is below throttle_backoff_base (50ms)",
        ),
        (
            "node_concurrency_max = 0",
            "upstream.node_concurrency_max",
            "outside 1..=65536",
        ),
        (
            "node_concurrency_max = 65537",
            "upstream.node_concurrency_max",
            "outside 1..=65536",
        ),
        (
            "node_concurrency_min = 0",
            "upstream.node_concurrency_min",
            "outside 1..=65536",
        ),
        (
            "node_concurrency_min = 300",
            "upstream.node_concurrency_min",
            "300 is above node_concurrency_max (256)",
        ),
    ];
    for &(line, key, needle) in cases {
        rejects_with_pool(&format!("[upstream]\n{line}"), 2, key, needle);
    }
    // An explicit small maximum pulls the default minimum down instead of failing.
    let c = parse(&format!("[upstream]\nnode_concurrency_max = 2{POOL}")).unwrap();
    assert_eq!(
        (
            c.upstream.node_concurrency_min,
            c.upstream.node_concurrency_max
        ),
        (2, 2)
    );
}

#[test]
fn rejects_bad_pool_failover_keys() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "priority = 1001",
            "pool[0].priority",
            "1001 is outside 0..=1000",
        ),
        (
            "priority = -1",
            "pool[0].priority",
            "expected a non-negative integer",
        ),
        ("min_active = 0", "pool[0].min_active", "0 is outside 1..=2"),
        ("min_active = 3", "pool[0].min_active", "3 is outside 1..=2"),
        (
            "slow_start = \"10\"",
            "pool[0].slow_start",
            "a unit is required",
        ),
        (
            "slow_start = \"25h\"",
            "pool[0].slow_start",
            "longer than the maximum of 24h",
        ),
        (
            "health = \"minio\"",
            "pool[0].health",
            "expected a table, found a string",
        ),
    ];
    for &(extra, key, needle) in cases {
        rejects(&pool_with(extra), Some(4), key, needle);
    }
}

#[test]
fn pool_balance_key() {
    use crate::balance::Algorithm;
    assert_eq!(parse(POOL).unwrap().pools[0].balance, Algorithm::P2c);
    for (name, algorithm) in Algorithm::ALL {
        let c = parse(&pool_with(&format!("balance = \"{name}\""))).unwrap();
        assert_eq!(c.pools[0].balance, algorithm);
    }
    let e = parse(&pool_with("balance = \"roundrobin\"")).unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with(
            "t.toml:4: pool[0].balance: unknown balance algorithm \"roundrobin\" (expected \
             one of \"p2c\", "
        ),
        "{text}"
    );
    // The names come from the algorithms: a new one is listed without touching this.
    for (name, _) in Algorithm::ALL {
        assert!(text.contains(&format!("\"{name}\"")), "{text}");
    }
    rejects(
        &pool_with("balance = 2"),
        Some(4),
        "pool[0].balance",
        "a string",
    );
}

#[test]
fn rejects_bad_health_keys() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "preset = \"ceph\"",
            "pool[0].health.preset",
            "unknown variant `ceph`",
        ),
        (
            "method = \"POST\"",
            "pool[0].health.method",
            "unknown variant `POST`",
        ),
        (
            "method = \"get\"",
            "pool[0].health.method",
            "unknown variant `get`",
        ),
        (
            "path = \"healthz\"",
            "pool[0].health.path",
            "must start with '/'",
        ),
        (
            "path = \"/a b\"",
            "pool[0].health.path",
            "is not a request target",
        ),
        (
            "expect_status = 700",
            "pool[0].health.expect_status",
            "700 is not a status",
        ),
        (
            "expect_status = \"3yy\"",
            "pool[0].health.expect_status",
            "\"3yy\" is not a status",
        ),
        (
            "expect_status = true",
            "pool[0].health.expect_status",
            "invalid type: boolean",
        ),
        (
            "method = \"HEAD\"\nbody_match = \"OK\"",
            "pool[0].health.method",
            "HEAD cannot be used with body_match",
        ),
        (
            "preset = \"objectscale\"\nmethod = \"HEAD\"",
            "pool[0].health.method",
            "HEAD cannot be used with drain_match (set by the key or by preset \"objectscale\")",
        ),
        (
            "interval = \"50ms\"",
            "pool[0].health.interval",
            "50ms is below the minimum of 100ms",
        ),
        (
            "interval = \"0s\"",
            "pool[0].health.interval",
            "below the minimum of 1ms",
        ),
        (
            "timeout = \"3s\"",
            "pool[0].health.timeout",
            "3s is longer than interval (2s)",
        ),
        ("rise = 0", "pool[0].health.rise", "0 is outside 1..=100"),
        ("fall = 101", "pool[0].health.fall", "outside 1..=100"),
        (
            "passive_fall = 10001",
            "pool[0].health.passive_fall",
            "outside 0..=10000",
        ),
        (
            "degraded_latency = \"5\"",
            "pool[0].health.degraded_latency",
            "a unit is required",
        ),
    ];
    for &(keys, key, needle) in cases {
        // The health table starts on line 4; the key at fault is on line 5 or later.
        let text = pool_with(&format!("[pool.health]\n{keys}"));
        let line = 5 + keys.matches('\n').count();
        // Cross-key rules point at `method`, which is on line 5 when it comes first.
        let line = if key.ends_with(".method") && keys.starts_with("method") {
            5
        } else {
            line
        };
        rejects(&text, Some(line), key, needle);
    }
    let long = "x".repeat(4097);
    rejects(
        &pool_with(&format!("health = {{ body_match = \"{long}\" }}")),
        Some(4),
        "pool[0].health.body_match",
        "4097 bytes; at most 4096",
    );
}

#[test]
fn rejects_bad_failover_routes() {
    let route = |body: &str| format!("{}[[route]]\nbucket = \"*\"\n{body}\n", pool_with(""));
    // pool_with("") is 4 lines (the extra line is empty), the route header line 5.
    rejects(
        &route("pools = []"),
        Some(7),
        "route[0].pools",
        "at least one pool",
    );
    rejects(
        &route("pools = [\"default\", \"nope\"]"),
        Some(7),
        "route[0].pools[1]",
        "unknown pool \"nope\"",
    );
    rejects(
        &route("pools = [\"default\", \"default\"]"),
        Some(7),
        "route[0].pools[1]",
        "duplicate pool \"default\" (also pools[0])",
    );
    rejects(
        &route("pool = \"default\"\npools = [\"default\"]"),
        Some(8),
        "route[0].pools",
        "not both",
    );
    rejects(
        &route("pools = \"default\""),
        Some(7),
        "route[0].pools",
        "expected an array",
    );
}

// === rejections: unknown keys and wrong types (from the parser) ===

#[test]
fn rejects_unknown_keys_anywhere() {
    let cases: &[(&str, usize, &str)] = &[
        ("bogus = 1", 1, "bogus"),
        ("[bogus]\nx = 1", 1, "bogus"),
        (
            "[appliance]\ncores = 1\nadmin_port = \"127.0.0.1:9101\"",
            3,
            "appliance.admin_port",
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
    let text = "[[pool]]\nname = \"a\"\nnodes = [\"h:1\"]\nweight = 0\n";
    rejects(text, Some(4), "pool[0].weight", "unknown key `weight`");
    let text = "[[pool]]\nname = \"a\"\nnodes = [\"h:1\"]\nhealth = { intervall = \"1s\" }\n";
    rejects(
        text,
        Some(4),
        "pool[0].health.intervall",
        "unknown key `intervall`",
    );
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

#[test]
fn tls_listener_and_pool_tls_parse() {
    let c = parse(
        "[appliance]\nlisten = [\"127.0.0.1:9000\"]\n\
         [tls]\nlisten = [\"0.0.0.0:9443\"]\nclient_ca = \"clients.pem\"\nclient_auth = \"optional\"\nhandshake_timeout = \"3s\"\nktls = false\n\
         [[tls.certificate]]\ncert = \"a.pem\"\nkey = \"a.key\"\n\
         [[pool]]\nname = \"cloud\"\nnodes = [\"s3.example.com:443\"]\n\
         tls = { ca = \"ca.pem\", server_name = \"s3.example.com\" }\n",
    )
    .unwrap();
    let tls = c.tls.expect("[tls]");
    assert_eq!(tls.listen, vec![addr("0.0.0.0:9443")]);
    assert_eq!(tls.certificates.len(), 1);
    assert_eq!(tls.client_auth, super::ClientAuth::Optional);
    assert_eq!(tls.handshake_timeout, std::time::Duration::from_secs(3));
    assert!(!tls.ktls);
    let pool_tls = c.pools[0].tls.as_ref().expect("pool tls");
    assert!(pool_tls.verify);
    assert_eq!(pool_tls.server_name.as_deref(), Some("s3.example.com"));
    // Defaults: no [tls], no pool tls.
    let plain = parse(POOL).unwrap();
    assert!(plain.tls.is_none() && plain.pools[0].tls.is_none());
}

#[test]
fn rejects_bad_tls() {
    let cert = "[[tls.certificate]]\ncert = \"a.pem\"\nkey = \"a.key\"\n";
    rejects_with_pool(
        "[tls]\nktls = true\n",
        1,
        "tls.listen",
        "at least one listen",
    );
    rejects_with_pool(
        "[tls]\nlisten = [\"0.0.0.0:9443\"]\n",
        1,
        "tls.certificate",
        "at least one [[tls.certificate]]",
    );
    rejects_with_pool(
        &format!("[tls]\nlisten = [\"127.0.0.1:9000\"]\n{cert}"),
        2,
        "tls.listen[0]",
        "also a plain-HTTP",
    );
    rejects_with_pool(
        &format!("[tls]\nlisten = [\"0.0.0.0:9443\"]\nclient_auth = \"required\"\n{cert}"),
        3,
        "tls.client_auth",
        "needs tls.client_ca",
    );
    rejects_with_pool(
        &format!("[tls]\nlisten = [\"0.0.0.0:9443\"]\nhandshake_timeout = \"5m\"\n{cert}"),
        3,
        "tls.handshake_timeout",
        "outside",
    );
    rejects_with_pool(
        "[tls]\nlisten = [\"0.0.0.0:9443\"]\n[[tls.certificate]]\ncert = \"\"\nkey = \"k\"\n",
        4,
        "tls.certificate[0].cert",
        "empty path",
    );
    rejects(
        "[[pool]]\nname = \"p\"\nnodes = [\"n:443\"]\ntls = { verify = false, ca = \"x.pem\" }\n",
        Some(4),
        "pool[0].tls.verify",
        "ignores ca",
    );
    rejects(
        "[[pool]]\nname = \"p\"\nnodes = [\"n:443\"]\ntls = { server_name = \"bad name\" }\n",
        Some(4),
        "pool[0].tls.server_name",
        "not a DNS name",
    );
    rejects(
        "[[pool]]\nname = \"a\"\nnodes = [\"n:443\"]\ntls = {}\n\
         [[pool]]\nname = \"b\"\nnodes = [\"n:443\"]\n",
        Some(5),
        "pool[1].tls",
        "spoken to one way",
    );
}
