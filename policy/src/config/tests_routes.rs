//! Per-route settings: key-prefix routing (every spelling of a key, listings, bucket-level
//! requests, virtual-host style), per-route and per-rule timeouts, and the shadowing and
//! value checks of the config.

use std::net::IpAddr;
use std::time::Duration;

use super::*;
use crate::classify::{Classified, Denied, Request};
use crate::route::TargetError;

const ROUTES: &str = r#"
[appliance]
virtual_host_suffixes = ["s3.local"]

[upstream]
first_byte_timeout = "30s"
io_timeout = "20s"

[[pool]]
name = "hdd"
nodes = ["127.0.0.1:9001"]

[[pool]]
name = "nvme"
nodes = ["127.0.0.1:9002"]

[[pool]]
name = "lab"
nodes = ["127.0.0.1:9003"]

[[route]]
bucket = "datasets"
key_prefix = "checkpoints/"
pool = "nvme"
first_byte_timeout = "2s"

[[route]]
bucket = "datasets"
pool = "hdd"
io_timeout = "5s"

[[route]]
bucket = "logs-*"
pool = "lab"

[[rule]]
client_cidr = "10.9.0.0/16"
bucket = "datasets"
io_timeout = "1s"

[[rule]]
client_cidr = "10.8.0.0/16"
pool = "lab"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "t.toml")
}

fn config() -> Config {
    parse(ROUTES).unwrap_or_else(|e| panic!("{e}"))
}

fn ask(c: &Config, method: &str, host: &str, target: &str, from: &str) -> Classified {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    c.classify(&Request {
        method,
        host: Some(host),
        path,
        query,
        access_key: None,
        client_ip: from.parse::<IpAddr>().unwrap(),
        client_name: None,
        copy_sources: &[],
    })
}

/// The pool names a request goes to, path-style from an ordinary client.
fn pools_of(c: &Config, method: &str, target: &str) -> Vec<&'static str> {
    let x = ask(c, method, "127.0.0.1:9000", target, "192.0.2.1");
    assert_eq!(x.denied, None, "{target}");
    x.pools.iter().map(|&p| ["hdd", "nvme", "lab"][p]).collect()
}

#[test]
fn keys_under_the_prefix_take_its_route_and_the_rest_the_buckets() {
    let c = config();
    assert_eq!(pools_of(&c, "PUT", "/datasets/checkpoints/a.bin"), ["nvme"]);
    assert_eq!(pools_of(&c, "GET", "/datasets/checkpoints/x/y"), ["nvme"]);
    assert_eq!(pools_of(&c, "GET", "/datasets/train/a.bin"), ["hdd"]);
    assert_eq!(pools_of(&c, "GET", "/datasets/checkpoints"), ["hdd"]);
    assert_eq!(pools_of(&c, "GET", "/datasets/checkpointsX/a"), ["hdd"]);
    assert_eq!(pools_of(&c, "GET", "/logs-1/checkpoints/a"), ["lab"]);
    assert_eq!(
        pools_of(&c, "GET", "/other/checkpoints/a"),
        ["hdd"],
        "pool 0"
    );
    // Multipart carries its key in the path like any object request.
    assert_eq!(
        pools_of(&c, "POST", "/datasets/checkpoints/big?uploads"),
        ["nvme"]
    );
    assert_eq!(
        pools_of(
            &c,
            "PUT",
            "/datasets/checkpoints/big?partNumber=2&uploadId=u1"
        ),
        ["nvme"]
    );
    assert_eq!(
        pools_of(&c, "POST", "/datasets/checkpoints/big?uploadId=u1"),
        ["nvme"]
    );
}

#[test]
fn no_spelling_of_a_key_escapes_its_prefix() {
    let c = config();
    for target in [
        "/datasets/checkpoints%2Fa.bin",
        "/datasets/checkpoints%2fa.bin",
        "/datasets/%63heckpoints/a.bin",
        "/datasets//checkpoints/a.bin",
        "/datasets/checkpoints//a.bin",
        "/datasets/checkpoints%5Ca.bin",
        "/datasets/checkpoints\\a.bin",
    ] {
        assert_eq!(pools_of(&c, "GET", target), ["nvme"], "{target}");
    }
    // Dot segments never reach routing: the target is refused (400) first.
    for target in [
        "/datasets/./checkpoints/a.bin",
        "/datasets/x/../checkpoints/a.bin",
        "/datasets/x/%2E%2E/checkpoints/a.bin",
    ] {
        let x = ask(&c, "GET", "127.0.0.1", target, "192.0.2.1");
        assert!(
            matches!(x.denied, Some(crate::classify::Denied::Target(_))),
            "{target}: {x:?}"
        );
    }
}

#[test]
fn virtual_host_style_routes_alike() {
    let c = config();
    let vh = |target: &str| {
        let x = ask(&c, "GET", "datasets.s3.local", target, "192.0.2.1");
        (x.bucket.clone(), x.pools.clone())
    };
    assert_eq!(vh("/checkpoints/a"), (Some("datasets".into()), vec![1]));
    assert_eq!(vh("//checkpoints/a"), (Some("datasets".into()), vec![1]));
    assert_eq!(vh("/train/a"), (Some("datasets".into()), vec![0]));
    assert_eq!(
        vh("/?list-type=2&prefix=checkpoints/"),
        (Some("datasets".into()), vec![1])
    );
}

#[test]
fn a_listing_goes_where_its_prefix_lies_and_bucket_requests_to_the_bucket_route() {
    let c = config();
    let list = |q: &str| pools_of(&c, "GET", &format!("/datasets?{q}"));
    assert_eq!(list("list-type=2&prefix=checkpoints%2F"), ["nvme"]);
    assert_eq!(list("list-type=2&prefix=checkpoints/2024/"), ["nvme"]);
    assert_eq!(list("prefix=checkpoints%2F&delimiter=%2F"), ["nvme"], "V1");
    assert_eq!(list("versions&prefix=checkpoints/"), ["nvme"]);
    assert_eq!(list("uploads&prefix=checkpoints/"), ["nvme"]);
    // Not within the prefix (wider, or another): the bucket's own route.
    assert_eq!(list("list-type=2&prefix=check"), ["hdd"]);
    assert_eq!(list("list-type=2"), ["hdd"]);
    assert_eq!(list("list-type=2&prefix=train/"), ["hdd"]);
    assert_eq!(list("prefix=checkpoints/&prefix=x"), ["hdd"], "ambiguous");
    // Bucket-level requests without a listing prefix: the bucket's route.
    assert_eq!(pools_of(&c, "PUT", "/datasets"), ["hdd"]);
    assert_eq!(pools_of(&c, "HEAD", "/datasets/"), ["hdd"]);
    assert_eq!(pools_of(&c, "POST", "/datasets?delete"), ["hdd"]);
    assert_eq!(
        pools_of(&c, "DELETE", "/datasets?prefix=checkpoints/"),
        ["hdd"]
    );
}

#[test]
fn a_copy_source_is_no_routing_input() {
    let c = config();
    let source: &[u8] = b"/datasets/checkpoints/a.bin";
    let x = c.classify(&Request {
        method: "PUT",
        host: Some("127.0.0.1"),
        path: "/datasets/train/copy.bin",
        query: None,
        access_key: None,
        client_ip: "192.0.2.1".parse().unwrap(),
        client_name: None,
        copy_sources: &[source],
    });
    assert_eq!((x.pools, x.route), (vec![0], Some(1)));
}

#[test]
fn the_decision_carries_the_effective_timeouts() {
    let c = config();
    let t = |target: &str, from: &str| {
        let x = ask(&c, "GET", "127.0.0.1", target, from);
        (
            x.route,
            x.timeouts.first_byte.as_secs(),
            x.timeouts.io.as_secs(),
        )
    };
    // The route's where set, else [upstream]'s.
    assert_eq!(t("/datasets/checkpoints/a", "192.0.2.1"), (Some(0), 2, 20));
    assert_eq!(t("/datasets/train/a", "192.0.2.1"), (Some(1), 30, 5));
    assert_eq!(t("/logs-1/a", "192.0.2.1"), (Some(2), 30, 20));
    assert_eq!(t("/other/a", "192.0.2.1"), (None, 30, 20));
    // A rule's timeout overrides the route's; the route still gives the chain.
    assert_eq!(t("/datasets/checkpoints/a", "10.9.0.1"), (Some(0), 2, 1));
    // A rule that gives the chain: no route, [upstream]'s timeouts.
    assert_eq!(t("/datasets/checkpoints/a", "10.8.0.1"), (None, 30, 20));
}

#[test]
fn route_timeouts_parse_with_units() {
    let c = config();
    assert_eq!(
        c.routes[0].timeouts,
        RouteTimeouts {
            first_byte: Some(Duration::from_secs(2)),
            io: None
        }
    );
    assert_eq!(
        c.routes[0].key_prefix.as_ref().map(|p| p.as_str()),
        Some("checkpoints/")
    );
    assert_eq!(c.rules[0].timeouts.io, Some(Duration::from_secs(1)));
}

/// Asserts `text` is refused at `line` and `key` with `needle` in the message.
#[track_caller]
fn rejects(text: &str, line: usize, key: &str, needle: &str) {
    let e = match parse(text) {
        Ok(_) => panic!("accepted {text}"),
        Err(e) => e,
    };
    assert_eq!((e.line, e.key.as_str()), (Some(line), key), "{e}");
    assert!(e.message.contains(needle), "{e}: should mention {needle:?}");
}

const POOLS: &str = "[[pool]]\nname = \"hdd\"\nnodes = [\"127.0.0.1:9001\"]\n\
                     [[pool]]\nname = \"nvme\"\nnodes = [\"127.0.0.1:9002\"]\n";

#[test]
fn a_prefix_route_after_its_whole_bucket_is_refused() {
    // Lines: 1-6 pools, 7 [[route]], 8 bucket, 9 pool, 10 [[route]], 11 bucket, 12 key_prefix.
    let shadowed = |first: &str, second_bucket: &str| {
        format!(
            "{POOLS}[[route]]\nbucket = \"{first}\"\npool = \"hdd\"\n\
             [[route]]\nbucket = \"{second_bucket}\"\nkey_prefix = \"checkpoints/\"\npool = \"nvme\"\n"
        )
    };
    for (first, second) in [
        ("datasets", "datasets"),
        ("*", "datasets"),
        ("data*", "datasets"),
        ("d*", "d*"),
        ("**", "x-*"),
    ] {
        rejects(
            &shadowed(first, second),
            12,
            "route[1].key_prefix",
            "never matches: route[0]",
        );
    }
    // Another bucket, or a glob that is not known to cover: accepted.
    for (first, second) in [("other", "datasets"), ("data-*", "d*")] {
        assert!(
            parse(&shadowed(first, second)).is_ok(),
            "{first} then {second}"
        );
    }
    // The right order is accepted.
    let ok = format!(
        "{POOLS}[[route]]\nbucket = \"datasets\"\nkey_prefix = \"checkpoints/\"\npool = \"nvme\"\n\
         [[route]]\nbucket = \"datasets\"\npool = \"hdd\"\n"
    );
    assert!(parse(&ok).is_ok());
}

#[test]
fn a_longer_prefix_after_a_shorter_one_is_refused() {
    let text = format!(
        "{POOLS}[[route]]\nbucket = \"datasets\"\nkey_prefix = \"ck/\"\npool = \"hdd\"\n\
         [[route]]\nbucket = \"datasets\"\nkey_prefix = \"ck/fast/\"\npool = \"nvme\"\n"
    );
    rejects(&text, 13, "route[1].key_prefix", "key_prefix = \"ck/\"");
    let reversed = format!(
        "{POOLS}[[route]]\nbucket = \"datasets\"\nkey_prefix = \"ck/fast/\"\npool = \"nvme\"\n\
         [[route]]\nbucket = \"datasets\"\nkey_prefix = \"ck/\"\npool = \"hdd\"\n"
    );
    assert!(parse(&reversed).is_ok());
}

#[test]
fn bad_values_name_their_key_and_line() {
    let route =
        |line: &str| format!("{POOLS}[[route]]\nbucket = \"datasets\"\npool = \"nvme\"\n{line}\n");
    rejects(
        &route("key_prefix = \"\""),
        10,
        "route[0].key_prefix",
        "empty prefix",
    );
    rejects(
        &route("key_prefix = \"a%2Fb\""),
        10,
        "route[0].key_prefix",
        "'%'",
    );
    rejects(
        &route("key_prefix = \"/a\""),
        10,
        "route[0].key_prefix",
        "leading",
    );
    rejects(
        &route("key_prefix = \"a/../b/\""),
        10,
        "route[0].key_prefix",
        "\"..\"",
    );
    rejects(
        &route("first_byte_timeout = \"0s\""),
        10,
        "route[0].first_byte_timeout",
        "below the minimum",
    );
    rejects(
        &route("io_timeout = \"5 parsecs\""),
        10,
        "route[0].io_timeout",
        "",
    );
    rejects(&route("key_prefx = \"a/\""), 10, "route[0].key_prefx", "");
    let rule = format!("{POOLS}[[rule]]\nbucket = \"datasets\"\nio_timeout = \"0ms\"\n");
    rejects(&rule, 9, "rule[0].io_timeout", "below the minimum");
}

#[test]
fn a_rule_with_only_a_timeout_sets_something() {
    let text = format!("{POOLS}[[rule]]\nbucket = \"datasets\"\nfirst_byte_timeout = \"500ms\"\n");
    let c = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.rules[0].timeouts.first_byte,
        Some(Duration::from_millis(500))
    );
}

#[test]
fn without_prefix_routes_no_key_is_read() {
    let text = format!("{POOLS}[[route]]\nbucket = \"datasets\"\npool = \"nvme\"\n");
    let c = parse(&text).unwrap();
    assert!(!c.routes_by_key());
    assert_eq!(c.route(Some("datasets")), [1]);
    assert_eq!(c.route_index(Some("datasets"), None), Some(0));
    assert!(config().routes_by_key());
}

/// A browser-form upload (PostObject: `POST /bucket`, key in the form body) names its key
/// where routing cannot see it: let through, it would put `checkpoints/x` into the
/// bucket's pool while every GET of that key goes to the prefix route's pool.
#[test]
fn a_form_upload_to_a_bucket_with_prefix_routes_is_refused() {
    let c = config();
    for target in ["/datasets", "/datasets/", "/datasets?"] {
        let x = ask(&c, "POST", "127.0.0.1:9000", target, "192.0.2.1");
        assert_eq!(
            x.denied,
            Some(Denied::Target(TargetError::KeyInBody)),
            "{target}"
        );
    }
    // Virtual-host style alike.
    let x = ask(&c, "POST", "datasets.s3.local", "/", "192.0.2.1");
    assert_eq!(x.denied, Some(Denied::Target(TargetError::KeyInBody)));
    // Other bucket-level POSTs carry no new key (documented: `?delete` goes to the
    // bucket's route), and a bucket without prefix routes takes forms as before.
    assert_eq!(pools_of(&c, "POST", "/datasets?delete"), ["hdd"]);
    assert_eq!(pools_of(&c, "POST", "/logs-1"), ["lab"]);
    assert_eq!(pools_of(&c, "POST", "/other"), ["hdd"]);
    // A rule that decides the pools decides them for the key's reads too.
    let x = ask(&c, "POST", "127.0.0.1:9000", "/datasets", "10.8.0.1");
    assert_eq!(x.denied, None);
}
