//! [`Config::from_toml_str`] on arbitrary text: what `weir check-config`, start-up and every
//! reload (`POST /reload`, SIGHUP) run on a file an operator, or whoever can write it,
//! controls.
//!
//! Checked, beyond "never panics":
//! - a rejection names the origin it was given, a line within the text (when it names
//!   one), and a key path whenever the text is valid TOML (only a syntax error may lack
//!   one); it displays as `origin:line: key: message` with a non-empty message;
//! - the same text one line lower (a blank line in front, after any byte-order mark) is
//!   judged the same way: the same config, or the same key and message one line further
//!   down, so lines are counted from the text and not guessed;
//! - an accepted config validates again identically when parsed again from the same text
//!   (which also catches a NaN that slipped through, as NaN never equals itself);
//! - what an accepted [`Config`] promises its users: at least one pool, each with nodes;
//!   routes and rules that point at existing pools, tenants and classes; a default tenant
//!   and class that exist; at least one listen address, none twice; a retry ratio within
//!   0..=1; the two spellings of the connection cap equal.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_policy::config::{Config, ConfigError};

const ORIGIN: &str = "fuzz.toml";

fuzz_target!(|data: &[u8]| {
    // The appliance reads the file as UTF-8 and refuses anything else before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let result = Config::from_toml_str(text, ORIGIN);
    // The blank line goes after a byte-order mark: a mark is one only at the very start.
    let shifted = match text.strip_prefix('\u{feff}') {
        Some(rest) => format!("\u{feff}\n{rest}"),
        None => format!("\n{text}"),
    };
    let lower = Config::from_toml_str(&shifted, ORIGIN);
    match (&result, &lower) {
        (Ok(config), Ok(again)) => {
            assert_eq!(config, again, "a blank first line changed the config");
            accepted(text, config);
        }
        (Err(e), Err(again)) => {
            rejected(text, e);
            assert_eq!(
                (e.line.map(|l| l + 1), &e.key, &e.message),
                (again.line, &again.key, &again.message),
                "a blank first line changed the rejection"
            );
        }
        (one, other) => panic!("a blank first line changed the verdict: {one:?} / {other:?}"),
    }
});

fn rejected(text: &str, e: &ConfigError) {
    assert_eq!(e.origin, ORIGIN);
    assert!(!e.message.is_empty());
    let lines = text.split('\n').count();
    if let Some(line) = e.line {
        assert!(
            (1..=lines).contains(&line),
            "line {line} of a {lines}-line text: {e}"
        );
    }
    if toml::de::DeTable::parse(text).is_ok() {
        assert!(!e.key.is_empty(), "no key for a valid TOML text: {e}");
    }
    let shown = e.to_string();
    let place = match e.line {
        Some(line) => format!("{ORIGIN}:{line}: "),
        None => format!("{ORIGIN}: "),
    };
    assert!(shown.starts_with(&place), "{shown:?}");
    assert!(shown.ends_with(&e.message), "{shown:?}");
}

fn accepted(text: &str, config: &Config) {
    let again = Config::from_toml_str(text, ORIGIN).expect("accepted once, accepted again");
    assert_eq!(&again, config, "the same text validated differently");

    assert!(!config.pools.is_empty());
    for pool in &config.pools {
        assert!(!pool.nodes.is_empty(), "pool {} has no nodes", pool.name);
    }
    for route in &config.routes {
        assert!(!route.pools.is_empty());
        assert!(route.pools.iter().all(|&p| p < config.pools.len()));
    }
    let pool = |p: &usize| *p < config.pools.len();
    let class = |c: &weir_policy::config::ClassId| c.0 < config.classes.len();
    for rule in &config.rules {
        assert!(rule.tenant.is_none_or(|t| t.0 < config.tenants.len()));
        assert!(rule.pools.iter().flatten().all(pool));
        assert!(rule.class.iter().all(class));
    }
    for tenant in &config.tenants {
        assert!(tenant.pools.iter().flatten().all(pool));
        assert!(tenant.class.iter().all(class));
        assert!(tenant.pool_credentials.iter().all(|(p, _)| pool(p)));
    }
    assert!(config.default_tenant.0 < config.tenants.len());
    assert!(!config.classes.is_empty());
    assert!(config.default_class.0 < config.classes.len());
    assert!(!config.appliance.listen.is_empty());
    for (i, addr) in config.appliance.listen.iter().enumerate() {
        assert!(!config.appliance.listen[..i].contains(addr), "{addr} twice");
    }
    assert!((0.0..=1.0).contains(&config.upstream.retry_ratio));
    assert_eq!(config.http.connections_max, config.limits.connections_max);
}
