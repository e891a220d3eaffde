//! An honest reload (docs/operations.md, "Reloading"), end to end: every key of
//! appliance/examples/weir.toml goes through a live reload of one running weir with
//! another valid value. A key that needs a restart (by weir-policy's `RELOAD_KEYS`) is
//! refused with its name in the answer and every core keeps its epoch and config; a live
//! key is committed and every core then serves the new epoch with a config that differs
//! from the one before. After each key the example itself is reloaded again.
//!
//! The keys come from the example file, so a key added there is walked too; a value the
//! walker cannot change fails the test naming the key. Storage is the bench simulator.

use std::net::SocketAddr;

use weir_policy::config::{reload_class, Reload};
use weir_tests::data::Scratch;
use weir_tests::sim;
use weir_tests::weir::{http_request, Weir, WeirConfig};

/// Keys of the example whose value cannot change alone (other keys refer to it, or the
/// example has no second choice), with why. They are still classified (checked below).
const UNWALKED: &[(&str, &str)] = &[
    ("pool[0].name", "[[route]] and the tenants name the pool"),
    ("route[0].pool", "the example has one pool"),
    (
        "class[0].name",
        "renaming needs the tenants' and [defaults]' class too",
    ),
    (
        "class[1].name",
        "renaming needs the tenants' and [defaults]' class too",
    ),
    ("tenant[0].name", "[[rule]] names the tenant"),
    ("tenant[1].name", "[defaults] names the tenant"),
    (
        "pool[0].health.body_match",
        "a body needs method = GET: a second line",
    ),
    (
        "pool[0].health.drain_match",
        "a body needs method = GET: a second line",
    ),
    (
        "auth.mode",
        "verify needs a secrets file the example does not name",
    ),
];

/// One `key = value` line of the file: its key path and where its value is.
struct Line {
    index: usize,
    path: String,
    value: String,
}

/// The example's keys in file order; inline tables (`rate = { … }`) give one per field.
fn keys(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    let mut section = String::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            let n = counts.entry(name.to_owned()).or_insert(0);
            section = format!("{name}[{n}]");
            *n += 1;
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            // `[pool.health]` belongs to the last `[[pool]]`.
            section = match name.split_once('.') {
                Some((array, rest)) if counts.contains_key(array) => {
                    format!("{array}[{}].{rest}", counts[array] - 1)
                }
                _ => name.to_owned(),
            };
            continue;
        }
        let Some((key, value)) = line.split_once(" = ") else {
            panic!("line {}: not `key = value`: {line}", index + 1);
        };
        let path = format!("{section}.{key}");
        if let Some(inner) = value.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
            for field in inner.split(',') {
                let (k, v) = field.trim().split_once(" = ").unwrap_or(("", ""));
                out.push(Line {
                    index,
                    path: format!("{path}.{k}"),
                    value: v.to_owned(),
                });
            }
        } else {
            out.push(Line {
                index,
                path,
                value: value.to_owned(),
            });
        }
    }
    out
}

/// Another valid value for `path` whose value is `value` (TOML text), if the walker
/// knows one.
fn another(path: &str, value: &str) -> Option<String> {
    let leaf = path.rsplit('.').next().unwrap_or(path);
    let named = match (leaf, value) {
        ("cores", "2") => "1",
        ("body_path", _) => "\"copy\"",
        ("bucket_names", _) => "\"legacy\"",
        ("virtual_host_suffixes", _) => "[\"s3.test\"]",
        ("preset", _) => "\"minio\"",
        ("method", _) => "\"GET\"",
        ("path", _) => "\"/healthz\"",
        ("expect_status", _) => "\"2xx\"",
        ("body_match", _) => "\"ok\"",
        ("drain_match", _) => "\"drain\"",
        ("bucket", _) => "\"ml-*\"",
        ("tenant", "\"anonymous\"") => "\"training\"",
        ("tenant", "\"training\"") => "\"anonymous\"",
        ("class", "\"bulk\"") => "\"inference\"",
        ("access_keys", _) => "[\"AKIAIOSFODNN7EXAMPLF\"]",
        ("op", _) => "[\"write\"]",
        ("balance", _) => "\"round_robin\"",
        ("send_client_address", _) => "\"x-forwarded-for\"",
        _ => "",
    };
    if !named.is_empty() {
        return Some(named.to_owned());
    }
    if value == "true" || value == "false" {
        return Some((value == "false").to_string());
    }
    if let Ok(n) = value.parse::<u64>() {
        return Some(if n > 1 { n - 1 } else { n + 1 }.to_string());
    }
    if let Ok(x) = value.parse::<f64>() {
        return Some(format!("{:.2}", x + 0.1));
    }
    if let Some(list) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        // Addresses: the list without its last one, or another port.
        let items: Vec<&str> = list.split(',').map(str::trim).collect();
        if items.len() > 1 {
            return Some(format!("[{}]", items[..items.len() - 1].join(", ")));
        }
        let one = another(path, items[0])?;
        return Some(format!("[{one}]"));
    }
    let text = value.strip_prefix('"')?.strip_suffix('"')?;
    if let Ok(addr) = text.parse::<SocketAddr>() {
        // A port no other address of the file uses.
        return Some(format!("\"{}:1\"", addr.ip()));
    }
    // A size or a duration: its number one step away, same unit.
    let digits = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = (text[..digits].parse::<u64>().ok()?, &text[digits..]);
    let is_size = unit.ends_with("iB");
    let n = if is_size && n > 1 { n - 1 } else { n + 1 };
    Some(format!("\"{n}{unit}\""))
}

/// `GET /config`: the coordinator's epoch and each core's (epoch, config).
fn running(weir: &Weir) -> (u64, Vec<(u64, String)>) {
    let (status, body) = http_request(weir.metrics_addr(), "GET", "/config")
        .unwrap_or_else(|e| panic!("GET /config: {e}"));
    assert_eq!(status, 200, "GET /config: {body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("GET /config: JSON");
    let epoch = json["epoch"].as_u64().expect("epoch");
    let cores = json["cores"]
        .as_array()
        .expect("cores")
        .iter()
        .map(|c| {
            (
                c["epoch"].as_u64().expect("core epoch"),
                c["config"].as_str().expect("core config").to_owned(),
            )
        })
        .collect();
    (epoch, cores)
}

#[test]
fn every_key_of_the_example_is_applied_or_refused_by_name() {
    let scratch = Scratch::new("reload-keys");
    let nodes = sim::start(2, &[]);
    let addrs = sim::addrs(&nodes);
    let mut weir = Weir::start(&WeirConfig::new(&addrs), scratch.path());
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../appliance/examples/weir.toml"
    ))
    .expect("read the example");
    // The example on this test's ports and nodes, on two cores.
    let base = example
        .replace("cores = 0", "cores = 2")
        .replace("127.0.0.1:9000", &weir.addr().to_string())
        .replace("127.0.0.1:9100", &weir.metrics_addr().to_string())
        .replace("127.0.0.1:9001", &addrs[0].to_string())
        .replace("127.0.0.1:9002", &addrs[1].to_string());
    weir.write_config_text(&base);
    let (status, body) = weir.reload();
    assert_eq!(status, 200, "the example itself: {body}");
    let lines: Vec<String> = base.lines().map(str::to_owned).collect();
    let (mut epoch, cores) = running(&weir);
    assert_eq!(cores.len(), 2, "both cores answer /config");
    let baseline = cores[0].1.clone();
    let (mut live, mut restart) = (0, 0);
    for key in keys(&base) {
        let class =
            reload_class(&key.path).unwrap_or_else(|| panic!("{} is not in RELOAD_KEYS", key.path));
        if UNWALKED.iter().any(|(k, _)| *k == key.path) {
            continue;
        }
        let new = another(&key.path, &key.value).unwrap_or_else(|| {
            panic!(
                "{} = {}: no other value known; teach `another`",
                key.path, key.value
            )
        });
        let mut changed = lines.clone();
        let line = &lines[key.index];
        let field = key.path.rsplit('.').next().unwrap_or_default();
        let from = format!("{field} = {}", key.value);
        assert!(line.contains(&from), "{}: {line}", key.path);
        changed[key.index] = line.replacen(&from, &format!("{field} = {new}"), 1);
        weir.write_config_text(&(changed.join("\n") + "\n"));
        let (status, body) = weir.reload();
        let (now, cores) = running(&weir);
        let what = format!("{} = {} -> {new}", key.path, key.value);
        match class {
            Reload::Restart => {
                restart += 1;
                let named = key.path.split('[').next().unwrap_or_default();
                assert_eq!(status, 400, "{what}: {body}");
                assert!(
                    body.contains("needs a restart") && body.contains(named),
                    "{what}: the refusal names the key: {body}"
                );
                assert_eq!(now, epoch, "{what}: the epoch moved");
                for (core_epoch, config) in &cores {
                    assert_eq!(*core_epoch, epoch, "{what}: a core moved");
                    assert!(*config == baseline, "{what}: a core's config changed");
                }
                weir.write_config_text(&base);
            }
            Reload::Live => {
                live += 1;
                assert_eq!(status, 200, "{what}: {body}");
                assert!(body.contains("committed"), "{what}: {body}");
                assert_eq!(now, epoch + 1, "{what}: epoch");
                for (core_epoch, config) in &cores {
                    assert_eq!(*core_epoch, epoch + 1, "{what}: a core's epoch");
                    assert!(
                        *config != baseline,
                        "{what}: a core's config did not change"
                    );
                }
                weir.write_config_text(&base);
                let (status, body) = weir.reload();
                assert_eq!(status, 200, "{what}, back: {body}");
                epoch += 2;
                let (_, cores) = running(&weir);
                assert!(
                    cores.iter().all(|(e, c)| *e == epoch && *c == baseline),
                    "{what}, back: every core on the example again"
                );
            }
        }
    }
    println!("RELOAD_KEYS: {live} live keys committed and in effect, {restart} refused by name");
    assert!(live > 50 && restart >= 6, "{live} live, {restart} restart");
    weir.assert_running();
}
