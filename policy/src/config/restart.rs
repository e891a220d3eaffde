//! Which config keys a live reload cannot take (docs/design.md, "Configuration"): they
//! shape the process itself — its listeners, the control plane's token and caps, the
//! access log — and are read once at start. A reload that changes one is refused with
//! the key's place in the new file, so that nothing the operator believes took effect
//! silently did not. The number of cores is checked by the appliance, which resolves
//! `cores = 0` against the machine.

use super::{Config, KeyPath};

/// The first key, in the order of the `[appliance]` table, whose change between `old`
/// and `new` needs a restart: its path and what it is, for the refusal.
pub fn restart_needed(old: &Config, new: &Config) -> Option<(KeyPath, &'static str)> {
    let (was, now) = (&old.appliance, &new.appliance);
    let appliance = KeyPath::root().key("appliance");
    let tls_listen = |c: &Config| c.tls.as_ref().map(|t| t.listen.clone()).unwrap_or_default();
    // The control listeners read their caps and deadlines once, at start; so does the
    // admin port its token (a token thought rotated would still open it).
    let (wc, nc) = (&was.control, &now.control);
    let changes: [(bool, KeyPath, &'static str); 11] = [
        (
            was.listen != now.listen,
            appliance.key("listen"),
            "the listen addresses",
        ),
        (
            tls_listen(old) != tls_listen(new),
            KeyPath::root().key("tls").key("listen"),
            "the TLS listen addresses",
        ),
        (
            was.metrics != now.metrics,
            appliance.key("metrics"),
            "the metrics address",
        ),
        (
            was.admin != now.admin,
            appliance.key("admin"),
            "the admin address",
        ),
        (
            was.admin_token != now.admin_token,
            appliance.key("admin_token"),
            "the admin token",
        ),
        (
            was.access_log != now.access_log,
            appliance.key("access_log"),
            "the access log",
        ),
        (
            was.access_log_lines_max != now.access_log_lines_max,
            appliance.key("access_log_lines_max"),
            "the access-log buffer",
        ),
        (
            wc.connections_max != nc.connections_max,
            appliance.key("control_connections_max"),
            "the control listeners' caps and deadlines",
        ),
        (
            wc.client_ip_connections_max != nc.client_ip_connections_max,
            appliance.key("control_client_ip_connections_max"),
            "the control listeners' caps and deadlines",
        ),
        (
            wc.head_timeout != nc.head_timeout,
            appliance.key("control_head_timeout"),
            "the control listeners' caps and deadlines",
        ),
        (
            wc.connection_timeout != nc.connection_timeout,
            appliance.key("control_connection_timeout"),
            "the control listeners' caps and deadlines",
        ),
    ];
    changes
        .into_iter()
        .find(|(changed, _, _)| *changed)
        .map(|(_, key, what)| (key, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[appliance]
listen = ["127.0.0.1:8000"]
metrics = "127.0.0.1:9100"
admin = "127.0.0.1:9200"
access_log = "/tmp/weir-access.log"

[[pool]]
name = "default"
nodes = ["127.0.0.1:9001"]
"#;

    fn config(text: &str) -> Config {
        match Config::from_toml_str(text, "t.toml") {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn changed(from: &str, to: &str) -> Option<(String, &'static str)> {
        let old = config(BASE);
        let new = config(&BASE.replacen(from, to, 1));
        restart_needed(&old, &new).map(|(key, what)| (key.to_string(), what))
    }

    #[test]
    fn each_process_key_is_named_when_it_changes() {
        let cases = [
            (
                "listen = [\"127.0.0.1:8000\"]",
                "listen = [\"127.0.0.1:8001\"]",
                "appliance.listen",
            ),
            (
                "metrics = \"127.0.0.1:9100\"",
                "metrics = \"127.0.0.1:9101\"",
                "appliance.metrics",
            ),
            (
                "admin = \"127.0.0.1:9200\"",
                "admin = \"127.0.0.1:9201\"",
                "appliance.admin",
            ),
            ("weir-access.log", "weir-other.log", "appliance.access_log"),
            (
                "access_log = ",
                "access_log_lines_max = 1024\naccess_log = ",
                "appliance.access_log_lines_max",
            ),
            (
                "access_log = ",
                "control_connections_max = 32\naccess_log = ",
                "appliance.control_connections_max",
            ),
            (
                "access_log = ",
                "control_head_timeout = \"2s\"\naccess_log = ",
                "appliance.control_head_timeout",
            ),
        ];
        for (from, to, key) in cases {
            let got = changed(from, to);
            assert_eq!(got.map(|(k, _)| k).as_deref(), Some(key), "{from} -> {to}");
        }
    }

    #[test]
    fn keys_a_reload_takes_need_no_restart() {
        assert_eq!(changed("", ""), None);
        assert_eq!(
            changed("127.0.0.1:9001", "127.0.0.1:9002"),
            None,
            "pool nodes"
        );
        assert_eq!(
            changed("[[pool]]", "[upstream]\nattempts_max = 2\n\n[[pool]]"),
            None,
            "upstream"
        );
    }
}
