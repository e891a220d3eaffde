//! Which config keys a live reload cannot take (docs/design.md, "Configuration"): they
//! shape the process itself — its listeners, the control plane's token and caps, the
//! access log, the size of each core's relay pipes — and are read once at start. A reload that changes one is refused with
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
    let changes: [(bool, KeyPath, &'static str); 13] = [
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
            was.pipe_bytes != now.pipe_bytes,
            appliance.key("pipe_bytes"),
            "the relay pipes' size",
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
        (
            was.upgrade_socket != now.upgrade_socket,
            appliance.key("upgrade_socket"),
            "the upgrade socket",
        ),
    ];
    changes
        .into_iter()
        .find(|(changed, _, _)| *changed)
        .map(|(_, key, what)| (key, what))
}

/// Whether a running weir applies a key's new value at a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// New requests (and, where the key says so, open connections) take the new value.
    Live,
    /// Read once at start: a reload that changes it is refused, naming the key.
    Restart,
}

/// Every key of the file and how a reload treats it (docs/operations.md, "Reloading").
/// `[]` stands for any index of an array of tables, `*` for any name of a map. Every key
/// the schema accepts is here exactly once (checked by a test that walks the raw structs).
pub const RELOAD_KEYS: &[(&str, Reload)] = {
    use Reload::{Live, Restart};
    &[
        ("appliance.cores", Restart),
        ("appliance.listen", Restart),
        ("appliance.metrics", Restart),
        ("appliance.body_path", Live),
        ("appliance.pipe_bytes", Restart),
        ("appliance.virtual_host_suffixes", Live),
        ("appliance.bucket_names", Live),
        ("appliance.admin", Restart),
        ("appliance.admin_token", Restart),
        ("appliance.access_log", Restart),
        ("appliance.access_log_lines_max", Restart),
        ("appliance.drain_timeout", Live),
        ("appliance.drain_grace", Live),
        ("appliance.control_connections_max", Restart),
        ("appliance.control_client_ip_connections_max", Restart),
        ("appliance.control_head_timeout", Restart),
        ("appliance.control_connection_timeout", Restart),
        ("appliance.upgrade_socket", Restart),
        ("http.header_bytes_max", Live),
        ("http.headers_count_max", Live),
        ("http.head_timeout", Live),
        ("http.client_idle_timeout", Live),
        ("http.buffered_body_bytes_max", Live),
        ("http.body_bytes_max", Live),
        ("http.body_rate_min", Live),
        ("http.body_rate_window", Live),
        ("http.connections_max", Live),
        ("upstream.connect_timeout", Live),
        ("upstream.first_byte_timeout", Live),
        ("upstream.io_timeout", Live),
        ("upstream.idle_connections_per_node_max", Live),
        ("upstream.pool_idle_timeout", Live),
        ("upstream.retry_ratio", Live),
        ("upstream.retry_floor_per_sec", Live),
        ("upstream.attempts_max", Live),
        ("upstream.resume_max", Live),
        ("upstream.throttle_backoff_base", Live),
        ("upstream.throttle_backoff_max", Live),
        ("upstream.node_concurrency_max", Live),
        ("upstream.node_concurrency_min", Live),
        ("pool[].name", Live),
        ("pool[].nodes", Live),
        ("pool[].priority", Live),
        ("pool[].min_active", Live),
        ("pool[].slow_start", Live),
        ("pool[].balance", Live),
        ("pool[].send_client_address", Live),
        // Read per accepted connection from the running epoch (its `listen` must be one
        // of the listeners, which are restart keys).
        ("client_address[].listen", Live),
        ("client_address[].trusted_proxies", Live),
        ("client_address[].proxy_protocol", Live),
        ("client_address[].header", Live),
        ("pool[].health.preset", Live),
        ("pool[].health.method", Live),
        ("pool[].health.path", Live),
        ("pool[].health.expect_status", Live),
        ("pool[].health.body_match", Live),
        ("pool[].health.drain_match", Live),
        ("pool[].health.interval", Live),
        ("pool[].health.timeout", Live),
        ("pool[].health.rise", Live),
        ("pool[].health.fall", Live),
        ("pool[].health.passive_fall", Live),
        ("pool[].health.degraded_latency", Live),
        ("pool[].credentials.access_key", Live),
        ("pool[].credentials.secret", Live),
        ("pool[].credentials.secret_file", Live),
        ("pool[].credentials.region", Live),
        ("pool[].tls.ca", Live),
        ("pool[].tls.server_name", Live),
        ("pool[].tls.verify", Live),
        ("route[].bucket", Live),
        ("route[].key_prefix", Live),
        ("route[].pool", Live),
        ("route[].pools", Live),
        ("route[].first_byte_timeout", Live),
        ("route[].io_timeout", Live),
        ("defaults.tenant", Live),
        ("defaults.class", Live),
        ("limits.connections_max", Live),
        ("limits.client_ip_connections_max", Live),
        ("limits.client_ip_requests_per_sec", Live),
        ("limits.client_ip_bytes_per_sec", Live),
        ("limits.bucket_requests_per_sec", Live),
        ("limits.bucket_bytes_per_sec", Live),
        ("limits.node_inflight_max", Live),
        ("limits.rebalance_interval", Live),
        ("limits.table_entries_max", Live),
        ("limits.burst", Live),
        ("limits.quantum_bytes_max", Live),
        ("tenant[].name", Live),
        ("tenant[].access_keys", Live),
        ("tenant[].client_names", Live),
        ("tenant[].buckets", Live),
        ("tenant[].pools", Live),
        ("tenant[].default", Live),
        ("tenant[].class", Live),
        ("tenant[].requests_per_sec", Live),
        ("tenant[].bytes_per_sec", Live),
        ("tenant[].upload_bytes_per_sec", Live),
        ("tenant[].download_bytes_per_sec", Live),
        ("tenant[].burst", Live),
        ("tenant[].rate.requests_per_sec", Live),
        ("tenant[].rate.bytes_per_sec", Live),
        ("tenant[].rate.upload_bytes_per_sec", Live),
        ("tenant[].rate.download_bytes_per_sec", Live),
        ("tenant[].rate.burst", Live),
        ("tenant[].inflight_max", Live),
        ("tenant[].pool_credentials.*.access_key", Live),
        ("tenant[].pool_credentials.*.secret", Live),
        ("tenant[].pool_credentials.*.secret_file", Live),
        ("tenant[].pool_credentials.*.region", Live),
        ("tenant[].connections_max", Live),
        ("class[].name", Live),
        ("class[].weight", Live),
        ("class[].latency_sensitive", Live),
        ("class[].queue_max", Live),
        ("class[].queue_timeout", Live),
        ("class[].requests_per_sec", Live),
        ("class[].bytes_per_sec", Live),
        ("class[].upload_bytes_per_sec", Live),
        ("class[].download_bytes_per_sec", Live),
        ("class[].burst", Live),
        ("class[].rate.requests_per_sec", Live),
        ("class[].rate.bytes_per_sec", Live),
        ("class[].rate.upload_bytes_per_sec", Live),
        ("class[].rate.download_bytes_per_sec", Live),
        ("class[].rate.burst", Live),
        ("rule[].tenant", Live),
        ("rule[].bucket", Live),
        ("rule[].op", Live),
        ("rule[].client_cidr", Live),
        ("rule[].pool", Live),
        ("rule[].pools", Live),
        ("rule[].class", Live),
        ("rule[].first_byte_timeout", Live),
        ("rule[].io_timeout", Live),
        ("rule[].requests_per_sec", Live),
        ("rule[].bytes_per_sec", Live),
        ("rule[].upload_bytes_per_sec", Live),
        ("rule[].download_bytes_per_sec", Live),
        ("rule[].burst", Live),
        ("rule[].rate.requests_per_sec", Live),
        ("rule[].rate.bytes_per_sec", Live),
        ("rule[].rate.upload_bytes_per_sec", Live),
        ("rule[].rate.download_bytes_per_sec", Live),
        ("rule[].rate.burst", Live),
        ("auth.mode", Live),
        ("auth.secrets_file", Live),
        ("auth.skew_max", Live),
        ("auth.chunk_bytes_max", Live),
        ("tls.listen", Restart),
        ("tls.certificate[].cert", Live),
        ("tls.certificate[].key", Live),
        ("tls.client_ca", Live),
        ("tls.client_auth", Live),
        ("tls.handshake_timeout", Live),
        ("tls.ktls", Live),
        // The resolver thread reads them from the running epoch at every lookup.
        ("dns.nameservers", Live),
        ("dns.ttl_min", Live),
        ("dns.ttl_max", Live),
        ("dns.timeout", Live),
    ]
};

/// How a reload treats the key at `path` as a config error names it
/// (`pool[0].health.interval`, `tls.listen[1]`); `None` for a key the schema lacks.
pub fn reload_class(path: &str) -> Option<Reload> {
    let mut segments: Vec<String> = Vec::new();
    for segment in path.split('.') {
        // `pool[3]` → `pool[]`; a trailing index of a scalar array (`listen[1]`) goes.
        let (name, indexed) = match segment.find('[') {
            Some(i) => (&segment[..i], true),
            None => (segment, false),
        };
        segments.push(if indexed {
            format!("{name}[]")
        } else {
            name.to_owned()
        });
    }
    let lookup = |segments: &[String]| {
        RELOAD_KEYS.iter().find_map(|(pattern, class)| {
            let p: Vec<&str> = pattern.split('.').collect();
            let hit = p.len() == segments.len()
                && p.iter().zip(segments).all(|(p, s)| *p == "*" || *p == s);
            hit.then_some(*class)
        })
    };
    lookup(&segments).or_else(|| {
        let last = segments.last_mut()?;
        let bare = last.strip_suffix("[]")?.to_owned();
        *last = bare;
        lookup(&segments)
    })
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
                "pipe_bytes = \"2MiB\"\naccess_log = ",
                "appliance.pipe_bytes",
            ),
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
            assert_eq!(
                reload_class(key),
                Some(Reload::Restart),
                "{key} in RELOAD_KEYS"
            );
        }
    }

    /// The table and the check agree: every restart key of the table but `cores` (which
    /// the appliance checks as resolved) is one `restart_needed` names.
    #[test]
    fn the_table_restart_keys_are_the_checked_ones() {
        let restart: Vec<&str> = RELOAD_KEYS
            .iter()
            .filter(|(_, c)| *c == Reload::Restart)
            .map(|(k, _)| *k)
            .collect();
        let source = include_str!("restart.rs");
        let body = &source[..source.find("pub enum Reload").unwrap_or(0)];
        for key in restart {
            let name = key.rsplit('.').next().unwrap_or(key);
            assert!(
                key == "appliance.cores" || body.contains(&format!("key(\"{name}\")")),
                "{key} is a restart key that restart_needed never names"
            );
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
        assert_eq!(
            changed("access_log = ", "drain_timeout = \"5s\"\naccess_log = "),
            None,
            "drain_timeout"
        );
    }
}
