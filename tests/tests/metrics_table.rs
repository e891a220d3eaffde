//! A live weir's `/metrics` serves exactly the metrics docs/metrics.md lists: after some
//! traffic (one request served, some shed), every `# TYPE` family is a row of the table
//! with the same type, every row has a family, and every series carries exactly the label
//! names the row documents (plus `le` on histogram buckets). The unit tests of
//! `appliance/src/metric_table.rs` hold the code's table to the same rows; this holds what
//! the metrics port assembles from the cores and control listeners to them.

use std::collections::BTreeMap;
use std::time::Duration;
use weir_tests::clients::{curl_sigv4, output};
use weir_tests::data::Scratch;
use weir_tests::sim;
use weir_tests::weir::{Weir, WeirConfig};
use weir_tests::ACCESS_KEY;

/// docs/metrics.md's table: (type, label names) by metric name.
fn documented() -> BTreeMap<String, (String, Vec<String>)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md");
    let text = std::fs::read_to_string(&path).expect("read docs/metrics.md");
    let mut out = BTreeMap::new();
    let row = |l: &&str| l.starts_with("| `weir_") || l.starts_with("| `process_");
    for line in text.lines().filter(row) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 4, "not name | type | labels | meaning: {line}");
        let name = ticked(cells[0]).expect("a `name`").to_string();
        out.insert(name, (cells[1].to_string(), label_names(cells[2])));
    }
    out
}

/// The first code span of `s`.
fn ticked(s: &str) -> Option<&str> {
    s.split_once('`')?.1.split_once('`').map(|(t, _)| t)
}

/// The label names of a labels cell: each comma-separated item outside the parentheses
/// (which hold values) starts with its name as a code span; `—` is none.
fn label_names(cell: &str) -> Vec<String> {
    if cell == "—" {
        return Vec::new();
    }
    let mut items = vec![String::new()];
    let mut depth = 0usize;
    for ch in cell.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => items.push(String::new()),
            c if depth == 0 => items.last_mut().expect("an item").push(c),
            _ => {}
        }
    }
    items
        .iter()
        .map(|i| {
            ticked(i)
                .unwrap_or_else(|| panic!("no `label` in {cell}"))
                .to_string()
        })
        .collect()
}

/// `name{a="x",b="y"} v` → (name, [a, b]); values may hold `,` and escaped quotes.
fn series(line: &str) -> (String, Vec<String>) {
    let Some((name, rest)) = line.split_once('{') else {
        return (line.split(' ').next().unwrap_or("").to_string(), Vec::new());
    };
    let mut labels = Vec::new();
    let mut chars = rest.chars();
    let mut key = String::new();
    while let Some(c) = chars.next() {
        match c {
            '=' => {
                labels.push(std::mem::take(&mut key));
                assert_eq!(chars.next(), Some('"'), "{line}");
                while let Some(v) = chars.next() {
                    match v {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            ',' => {}
            '}' => break,
            c => key.push(c),
        }
    }
    (name.to_string(), labels)
}

#[test]
fn parsers_read_docs_cells_and_series() {
    assert_eq!(
        label_names("`version`, `driver` (`io_uring` / `epoll`), `cores`"),
        ["version", "driver", "cores"]
    );
    assert_eq!(
        series(r#"weir_x{a="1,b=\"2\"",le="+Inf"} 3"#),
        (
            "weir_x".to_string(),
            vec!["a".to_string(), "le".to_string()]
        )
    );
    assert_eq!(series("weir_y 0"), ("weir_y".to_string(), Vec::new()));
}

#[test]
fn a_live_scrape_serves_exactly_the_documented_metrics() {
    let docs = documented();
    assert!(
        docs.len() >= 30,
        "only {} rows in docs/metrics.md",
        docs.len()
    );

    let scratch = Scratch::new("metrics-table");
    let nodes = sim::start(1, &["bench/small-:4KiB:1"]);
    // A tenant limited to 1 request/s: the first request is served, the next ones shed,
    // so the per-tenant families have series too.
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
    let url = format!("{}/bench/small-0", weir.endpoint());
    let mut statuses = BTreeMap::new();
    for _ in 0..4 {
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
    let mut families: BTreeMap<String, (String, usize)> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut problems = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(decl) = line.strip_prefix("# TYPE ") {
            let (name, kind) = decl.split_once(' ').expect("# TYPE name kind");
            if families
                .insert(name.to_string(), (kind.to_string(), 0))
                .is_some()
            {
                problems.push(format!("{name}: two # TYPE lines"));
            }
            current = Some(name.to_string());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, labels) = series(line);
        let Some(family) = current.clone() else {
            problems.push(format!("series before any # TYPE: {line}"));
            continue;
        };
        let Some((kind, documented_labels)) = docs.get(&family) else {
            continue; // reported below, once per family
        };
        let mut want = documented_labels.clone();
        match name.strip_prefix(family.as_str()) {
            Some("_bucket") if kind == "histogram" => want.push("le".to_string()),
            Some("_sum" | "_count") if kind == "histogram" => {}
            Some("") => {}
            _ => problems.push(format!("{name} under # TYPE {family}")),
        }
        if labels != want {
            problems.push(format!("{line}: labels {labels:?}, documented {want:?}"));
        }
        if let Some(f) = families.get_mut(&family) {
            f.1 += 1;
        }
    }
    for (name, (kind, count)) in &families {
        match docs.get(name) {
            None => problems.push(format!("{name} is served but not in docs/metrics.md")),
            Some((doc_kind, _)) if doc_kind != kind => problems.push(format!(
                "{name}: served as {kind}, documented as {doc_kind}"
            )),
            Some(_) if *count == 0 => problems.push(format!("{name}: no series after traffic")),
            Some(_) => {}
        }
    }
    for name in docs.keys() {
        if !families.contains_key(name) {
            problems.push(format!("{name} is documented but not served"));
        }
    }
    println!(
        "metrics table: {} families served, {} documented, {} series",
        families.len(),
        docs.len(),
        families.values().map(|f| f.1).sum::<usize>()
    );
    assert!(problems.is_empty(), "{problems:#?}\n{text}");
}
