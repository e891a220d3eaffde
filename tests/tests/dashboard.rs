//! The Grafana dashboard (`docs/grafana/weir.json`) queries only what weir exports: every
//! metric family named in a panel's query has a `# TYPE` line and samples in a live weir's
//! `/metrics` after some traffic (including a shed request), and every label a query
//! groups by is on that family's samples. And several weirs in one Prometheus are never
//! summed blindly: the dashboard has `job` and `instance` variables, every metric in every
//! query selects them, and the panels of one weir's own state (connections, node views,
//! the process) split by `instance`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use weir_tests::clients::{curl_sigv4, output};
use weir_tests::data::Scratch;
use weir_tests::sim;
use weir_tests::weir::{Weir, WeirConfig};
use weir_tests::ACCESS_KEY;

/// The selector every metric of every query carries.
const SELECTOR: [&str; 2] = ["job=~\"$job\"", "instance=~\"$instance\""];

/// Labels Prometheus adds to every series it scrapes (not in weir's exposition).
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// Families of one weir's own state: summing them over weirs mixes different processes'
/// views, so every aggregation of them keeps `instance`.
const PER_WEIR: [&str; 11] = [
    "weir_connections_active",
    "weir_requests_in_flight",
    "weir_node_state",
    "weir_node_inflight_requests",
    "weir_node_concurrency_limit",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
    "weir_build_info",
];

/// Metric references in a PromQL expression (`weir_*`, `process_*`), each with the
/// inside of its `{…}` selector (empty when it has none).
fn references(expr: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < expr.len() {
        let tail = &expr[at..];
        let Some(i) = ["weir_", "process_"]
            .iter()
            .filter_map(|p| tail.find(p))
            .min()
        else {
            break;
        };
        let start = at + i;
        let word_before = expr[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let name_len = expr[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(expr.len() - start);
        let name = &expr[start..start + name_len];
        at = start + name_len;
        if word_before {
            continue;
        }
        let mut selector = String::new();
        if expr[at..].starts_with('{') {
            if let Some(close) = expr[at..].find('}') {
                selector = expr[at + 1..at + close].to_string();
                at += close + 1;
            }
        }
        out.push((name.to_string(), selector));
    }
    out
}

/// Metric names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    references(expr).into_iter().map(|(n, _)| n).collect()
}

/// The family a sample name belongs to (histogram series carry suffixes).
fn family(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

/// `by (a, b) (… weir_x …)` groupings: the labels and the first metric inside.
fn groupings(expr: &str) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("by (") {
        let tail = &rest[i + 4..];
        let Some(close) = tail.find(')') else { break };
        let labels: Vec<String> = tail[..close]
            .split(',')
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty() && l != "le")
            .collect();
        if let Some(metric) = metric_names(&tail[close..]).into_iter().next() {
            out.push((labels, family(&metric).to_string()));
        }
        rest = &tail[close..];
    }
    out
}

#[test]
fn reference_parser_reads_selectors() {
    let expr = "sum by (instance) (rate(weir_body_bytes_total{job=~\"$job\",path=\"splice\"}[5m])) / process_open_fds + myweir_x";
    assert_eq!(
        references(expr),
        [
            (
                "weir_body_bytes_total".to_string(),
                "job=~\"$job\",path=\"splice\"".to_string()
            ),
            ("process_open_fds".to_string(), String::new()),
        ]
    );
}

#[test]
fn grouping_parser_reads_promql() {
    let expr = "histogram_quantile(0.99, sum by (le, pool, node) (rate(weir_request_duration_seconds_bucket[5m])))";
    assert_eq!(metric_names(expr), ["weir_request_duration_seconds_bucket"]);
    assert_eq!(
        groupings(expr),
        [(
            vec!["pool".to_string(), "node".to_string()],
            "weir_request_duration_seconds".to_string()
        )]
    );
}

#[test]
fn every_dashboard_query_names_an_exported_metric() {
    let scratch = Scratch::new("dashboard");
    let nodes = sim::start(1, &["bench/small-:4KiB:1"]);
    let cfg = WeirConfig::new(&sim::addrs(&nodes)).extra(&format!(
        r#"
[defaults]
class = "strict"

[[class]]
name = "strict"
queue_timeout = "10ms"

[[tenant]]
name = "team"
access_keys = ["{ACCESS_KEY}"]
rate = {{ requests_per_sec = 1, burst = "1s" }}
"#
    ));
    let weir = Weir::start(&cfg, scratch.path());
    // One request goes through, the ones right after it are shed (1/s).
    let url = format!("{}/bench/small-0", weir.endpoint());
    let mut statuses = BTreeMap::new();
    for _ in 0..5 {
        let mut cmd = curl_sigv4();
        cmd.args(["-o", "/dev/null", "-w", "%{http_code}"])
            .arg(&url);
        let out = output(&mut cmd, Duration::from_secs(30));
        *statuses
            .entry(String::from_utf8_lossy(&out.stdout).to_string())
            .or_insert(0) += 1;
    }
    assert!(
        statuses.get("200").is_some_and(|n| *n >= 1)
            && statuses.get("503").is_some_and(|n| *n >= 1),
        "statuses {statuses:?}"
    );

    let text = weir.metrics_text();
    let mut typed = BTreeSet::new();
    let mut samples: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().unwrap_or("").to_string());
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            samples
                .entry(family(name).to_string())
                .or_default()
                .push(line.to_string());
        }
    }

    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/grafana/weir.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read dashboard"))
            .expect("dashboard is JSON");
    let mut queried = BTreeSet::new();
    let mut problems = Vec::new();
    let panels = dash["panels"].as_array().expect("panels");
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or("");
            for name in metric_names(expr) {
                let fam = family(&name).to_string();
                if !typed.contains(&fam) {
                    problems.push(format!("{}: {fam} is not exported", panel["title"]));
                } else if !samples.contains_key(&fam) {
                    problems.push(format!("{}: {fam} has no samples", panel["title"]));
                }
                queried.insert(fam);
            }
            for (name, selector) in references(expr) {
                for want in SELECTOR {
                    if !selector.split(',').any(|m| m.trim() == want) {
                        problems.push(format!(
                            "{}: {name} has no {want} in {{{selector}}}",
                            panel["title"]
                        ));
                    }
                }
            }
            let groups = groupings(expr);
            for name in metric_names(expr) {
                let fam = family(&name);
                if PER_WEIR.contains(&fam)
                    && !groups
                        .iter()
                        .any(|(labels, g)| g == fam && labels.iter().any(|l| l == "instance"))
                {
                    problems.push(format!(
                        "{}: {fam} is one weir's own state, aggregated without `by (instance, …)`: {expr}",
                        panel["title"]
                    ));
                }
            }
            for (labels, fam) in groups {
                let lines = samples.get(&fam).cloned().unwrap_or_default();
                for label in labels
                    .into_iter()
                    .filter(|l| !TARGET_LABELS.contains(&l.as_str()))
                {
                    if !lines.iter().any(|l| l.contains(&format!("{label}=\""))) {
                        problems.push(format!("{}: {fam} has no label {label}", panel["title"]));
                    }
                }
            }
        }
    }
    println!(
        "dashboard: {} panels query {} metric families: {:?}",
        panels.len(),
        queried.len(),
        queried
    );
    let vars: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter(|v| v["type"] == "query")
        .filter_map(|v| v["name"].as_str())
        .collect();
    for var in TARGET_LABELS {
        if !vars.contains(&var) {
            problems.push(format!("no `{var}` template variable (have {vars:?})"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    // What an operator reads first: a metric behind each row of the dashboard
    // (docs/operations.md, "Live views").
    for needed in [
        "weir_body_bytes_total",
        "weir_request_duration_seconds",
        "weir_node_state",
        "weir_upstream_throttled_total",
        "weir_shed_requests_total",
        "weir_resumes_total",
        "weir_pool_request_duration_seconds",
        "weir_pool_upstream_first_byte_seconds",
        "weir_tls_handshake_failures_total",
        "weir_build_info",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            queried.contains(needed),
            "the dashboard does not show {needed}"
        );
    }
}
