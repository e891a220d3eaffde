//! `Limiter` and `Caps` on injected time: admission, waits and refusals, byte quanta,
//! keyed tables, the usage → rebalance → grant round trip, and properties.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::classify::{Classified, Request};
use crate::config::{ClassId, Config, TenantId};

#[allow(clippy::disallowed_methods)] // tests need one real base instant
fn t0() -> Instant {
    Instant::now()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config(extra: &str) -> Config {
    let text = format!(
        "{extra}\n[[pool]]\nname = \"p\"\nnodes = [\"h:1\", \"h:2\"]\n[[pool]]\nname = \"q\"\nnodes = [\"h:3\"]\n"
    );
    match Config::from_toml_str(&text, "t.toml") {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

/// A GET of `path` by the tenant owning `key` (or no key) from `client`.
fn req(c: &Config, key: Option<&str>, path: &str, client: &str) -> Classified {
    let auth = key.map(|k| format!("AWS {k}:sig"));
    c.classify(&Request {
        method: "GET",
        host: None,
        path,
        query: None,
        access_key: crate::classify::access_key(auth.as_deref(), None),
        client_ip: client.parse().unwrap(),
        client_name: None,
        copy_sources: &[],
    })
}

/// Requests that wait on a shared limit alone (a bucket rate, no tenant rate) queue one
/// behind the other: each sees the charges of those admitted before it.
#[test]
fn waiters_on_a_shared_limit_alone_get_successive_slots() {
    let cfg = config(
        "[limits]\nbucket_requests_per_sec = 10\nburst = \"100ms\"\n\
         [[class]]\nname = \"c\"\nqueue_timeout = \"1s\"\n",
    );
    let now = t0();
    let mut l = Limiter::new(&cfg, 1, now);
    let c = req(&cfg, None, "/b1b/k", "10.0.0.1");
    assert_eq!(l.admit(&c, c.client_ip, now), Admit::Go);
    for i in 1..=4 {
        assert_eq!(
            l.admit(&c, c.client_ip, now),
            Admit::Wait {
                until: now + ms(100 * i),
                class: ClassId(0)
            },
            "request {i}"
        );
    }
}

/// A bucket's rate is keyed on the canonical bucket: a virtual-host spelling (any case,
/// trailing dot, port) spends the same tokens as the path-style one, and spellings that
/// could escape it are refused at classification, before admission.
#[test]
fn a_bucket_rate_holds_whatever_the_spelling() {
    let cfg = config(
        "[appliance]\nvirtual_host_suffixes = [\"s3.test\"]\n\
         [limits]\nbucket_requests_per_sec = 10\nburst = \"100ms\"\n\
         [[class]]\nname = \"c\"\nqueue_timeout = \"250ms\"\n",
    );
    let now = t0();
    let mut l = Limiter::new(&cfg, 1, now);
    let at = |host: &str, path: &str| {
        cfg.classify(&Request {
            method: "GET",
            host: Some(host),
            path,
            query: None,
            access_key: crate::classify::access_key(None, None),
            client_ip: "10.0.0.1".parse().unwrap(),
            client_name: None,
            copy_sources: &[],
        })
    };
    let spellings = [
        ("weir.test", "/bench/k"),
        ("BENCH.s3.test", "/k"),
        ("bench.s3.test.", "/k"),
        ("Bench.S3.Test:9000", "/k"),
    ];
    let mut verdicts = Vec::new();
    for (host, path) in spellings {
        let c = at(host, path);
        assert_eq!(
            (c.bucket.as_deref(), c.denied),
            (Some("bench"), None),
            "{host} {path}"
        );
        verdicts.push(l.admit(&c, c.client_ip, now));
    }
    assert_eq!(verdicts[0], Admit::Go);
    assert!(matches!(verdicts[1], Admit::Wait { until, .. } if until == now + ms(100)));
    assert!(matches!(verdicts[2], Admit::Wait { until, .. } if until == now + ms(200)));
    assert!(
        matches!(verdicts[3], Admit::Reject { .. }),
        "{:?}",
        verdicts[3]
    );
    for (host, path) in [
        ("weir.test", "/%62ench/k"),
        ("weir.test", "//bench/k"),
        ("weir.test", "/./bench/k"),
    ] {
        let c = at(host, path);
        assert!(
            matches!(c.denied, Some(crate::classify::Denied::Target(_))),
            "{path}"
        );
        assert_eq!(c.bucket, None);
    }
}

const TENANT_10: &str = r#"
[[class]]
name = "c"
queue_timeout = "500ms"
[[tenant]]
name = "t"
access_keys = ["K"]
requests_per_sec = 10
burst = "100ms"
"#;

#[test]
fn admits_then_queues_then_refuses() {
    let cfg = config(TENANT_10);
    let now = t0();
    let mut l = Limiter::new(&cfg, 1, now);
    let c = req(&cfg, Some("K"), "/b1b/k", "10.0.0.1");
    // Burst of one request (100ms at 10/s).
    assert_eq!(l.admit(&c, c.client_ip, now), Admit::Go);
    // The next ones wait 100ms, 200ms, ... up to the class's 500ms.
    for i in 1..=5 {
        assert_eq!(
            l.admit(&c, c.client_ip, now),
            Admit::Wait {
                until: now + ms(100 * i),
                class: ClassId(0)
            }
        );
    }
    let Admit::Reject {
        reason,
        retry_after,
    } = l.admit(&c, c.client_ip, now)
    else {
        panic!("should refuse")
    };
    assert_eq!(reason, RejectReason::Rate(Scope::Tenant));
    assert_eq!(reason.label(), "tenant_rate");
    assert_eq!(
        retry_after,
        Duration::from_secs(1),
        "rounded up, at least 1s"
    );
    // A refusal spends nothing: 600ms later the queue has drained exactly.
    assert_eq!(l.admit(&c, c.client_ip, now + ms(600)), Admit::Go);
}

#[test]
fn unknown_keys_and_unlimited_tenants_always_go() {
    let cfg = config(TENANT_10);
    let now = t0();
    let mut l = Limiter::new(&cfg, 4, now);
    let anon = req(&cfg, Some("NOBODY"), "/b1b/k", "10.0.0.1");
    assert_eq!(anon.tenant, cfg.default_tenant);
    for _ in 0..1000 {
        assert_eq!(l.admit(&anon, anon.client_ip, now), Admit::Go);
    }
    assert!(!l.shapes_bytes(&anon, Dir::Down));
    assert_eq!(
        l.bytes(&anon, Dir::Down, 1 << 30, now),
        ByteGrant::Go(1 << 30)
    );
    assert!(
        l.usage(now).is_empty(),
        "nothing limited, nothing to report"
    );
}

#[test]
fn a_refunded_wait_gives_its_place_back() {
    let cfg = config(TENANT_10);
    let now = t0();
    let mut l = Limiter::new(&cfg, 1, now);
    let c = req(&cfg, Some("K"), "/b1b/k", "10.0.0.1");
    assert_eq!(l.admit(&c, c.client_ip, now), Admit::Go);
    assert!(matches!(l.admit(&c, c.client_ip, now), Admit::Wait { .. }));
    l.refund_request(&c, c.client_ip, now);
    assert_eq!(
        l.admit(&c, c.client_ip, now),
        Admit::Wait {
            until: now + ms(100),
            class: ClassId(0)
        }
    );
}

#[test]
fn each_client_ip_and_bucket_has_its_own_limit() {
    let cfg = config(
        "[limits]\nclient_ip_requests_per_sec = 10\nbucket_requests_per_sec = 10\nburst = \"100ms\"\ntable_entries_max = 16\n[[class]]\nname = \"c\"\nqueue_timeout = \"1ms\"\n",
    );
    let now = t0();
    let mut l = Limiter::new(&cfg, 1, now);
    let a = req(&cfg, None, "/bucket-a/k", "10.0.0.1");
    let b = req(&cfg, None, "/bucket-b/k", "10.0.0.2");
    let a2 = req(&cfg, None, "/bucket-c/k", "::ffff:10.0.0.1");
    assert_eq!(l.admit(&a, a.client_ip, now), Admit::Go);
    assert_eq!(l.admit(&b, b.client_ip, now), Admit::Go);
    // Same client (IPv4-mapped spelling), another bucket: the client's limit refuses.
    assert!(matches!(
        l.admit(&a2, a2.client_ip, now),
        Admit::Reject {
            reason: RejectReason::Rate(Scope::ClientIp),
            ..
        }
    ));
    // Another client, same bucket: the bucket's limit refuses.
    let a3 = req(&cfg, None, "/bucket-a/k", "10.0.0.3");
    assert!(matches!(
        l.admit(&a3, a3.client_ip, now),
        Admit::Reject {
            reason: RejectReason::Rate(Scope::Bucket),
            ..
        }
    ));
    // A request naming no bucket passes the bucket limits.
    let root = req(&cfg, None, "/", "10.0.0.4");
    assert_eq!(l.admit(&root, root.client_ip, now), Admit::Go);
    // Four clients; three buckets (a refused request still made its bucket's entry).
    assert_eq!(l.table_entries(), (4, 3));
    // Tables are bounded (least recently used first out)...
    for i in 0..40u8 {
        let c = req(&cfg, None, "/", &format!("10.1.0.{i}"));
        let _ = l.admit(&c, c.client_ip, now);
    }
    assert_eq!(l.table_entries().0, 16);
    // ...and entries equal to fresh ones are forgotten.
    let later = now + Duration::from_secs(5);
    let _ = l.usage(later);
    assert_eq!(l.table_entries(), (0, 0));
}

#[test]
fn a_rule_limit_is_shared_by_everything_it_decides() {
    let cfg = config(
        "[[class]]\nname = \"c\"\nqueue_timeout = \"1ms\"\n[[rule]]\nbucket = \"hot-*\"\nrequests_per_sec = 10\nburst = \"100ms\"\n",
    );
    let now = t0();
    let mut l = Limiter::new(&cfg, 1, now);
    let a = req(&cfg, None, "/hot-a/k", "10.0.0.1");
    let b = req(&cfg, None, "/hot-b/k", "10.0.0.2");
    let cold = req(&cfg, None, "/cold/k", "10.0.0.3");
    assert_eq!(a.rule, Some(0));
    assert_eq!(l.admit(&a, a.client_ip, now), Admit::Go);
    assert!(matches!(
        l.admit(&b, b.client_ip, now),
        Admit::Reject {
            reason: RejectReason::Rate(Scope::Rule),
            ..
        }
    ));
    assert_eq!(l.admit(&cold, cold.client_ip, now), Admit::Go);
}

#[test]
fn a_tenant_over_its_own_limit_queues_behind_others_at_a_shared_limit() {
    // Class limit 20/s (5 saved up) shared by two tenants, each limited to 10/s on its
    // own. Had A's waiting requests booked the class at once, they would have taken its
    // 5 tokens and B would wait.
    let cfg = config(
        r#"
[[class]]
name = "c"
requests_per_sec = 20
burst = "250ms"
queue_timeout = "2s"
[[tenant]]
name = "a"
access_keys = ["A"]
requests_per_sec = 10
burst = "100ms"
[[tenant]]
name = "b"
access_keys = ["B"]
requests_per_sec = 10
burst = "100ms"
"#,
    );
    let now = t0();
    let mut l = Limiter::new(&cfg, 1, now);
    let a = req(&cfg, Some("A"), "/x1x/k", "10.0.0.1");
    let b = req(&cfg, Some("B"), "/x1x/k", "10.0.0.2");
    // A's burst: one goes, the rest wait for A's own tokens (100ms apart).
    assert_eq!(l.admit(&a, a.client_ip, now), Admit::Go);
    for _ in 0..10 {
        assert!(matches!(l.admit(&a, a.client_ip, now), Admit::Wait { .. }));
    }
    // B, within its own limit, is not queued behind A's waiting requests at the class.
    assert_eq!(l.admit(&b, b.client_ip, now), Admit::Go);
}

#[test]
fn byte_quanta_shape_a_transfer_to_its_rate() {
    let cfg = config(
        "[limits]\nquantum_bytes_max = \"64KiB\"\n[[tenant]]\nname = \"t\"\naccess_keys = [\"K\"]\ndownload_bytes_per_sec = \"1MiB\"\nburst = \"100ms\"\n",
    );
    let start = t0();
    let mut l = Limiter::new(&cfg, 1, start);
    let c = req(&cfg, Some("K"), "/b1b/k", "10.0.0.1");
    assert!(l.shapes_bytes(&c, Dir::Down));
    assert!(!l.shapes_bytes(&c, Dir::Up));
    assert_eq!(l.bytes(&c, Dir::Up, 1 << 30, start), ByteGrant::Go(1 << 30));
    assert_eq!(l.bytes(&c, Dir::Down, 0, start), ByteGrant::Go(0));
    // Quanta of about 10ms at 1MiB/s, never more than wanted.
    assert_eq!(l.bytes(&c, Dir::Down, 100, start), ByteGrant::Go(100));
    let mut now = start;
    let mut moved = 0u64;
    while now < start + Duration::from_secs(10) {
        match l.bytes(&c, Dir::Down, 1 << 30, now) {
            ByteGrant::Go(n) => {
                assert!(n <= 64 << 10);
                moved += n;
            }
            ByteGrant::Wait(d) => {
                assert!(d > Duration::ZERO && d <= ms(10));
                now += d;
            }
        }
    }
    // 10s at 1MiB/s plus the burst (100ms) plus one quantum, give or take one quantum.
    let expect = 10.0 * 1048576.0 + 104857.6;
    assert!(
        (moved as f64 - expect).abs() <= 20_000.0,
        "{moved} vs {expect}"
    );
    // Granted but not moved: given back.
    let before = l.bytes(&c, Dir::Down, 1 << 30, now + Duration::from_secs(1));
    let ByteGrant::Go(n) = before else {
        panic!("a full bucket grants")
    };
    l.return_bytes(&c, Dir::Down, n, now + Duration::from_secs(1));
    assert_eq!(
        l.bytes(&c, Dir::Down, 1 << 30, now + Duration::from_secs(1)),
        ByteGrant::Go(n)
    );
}

#[test]
fn shares_follow_the_demand_through_usage_and_grants() {
    let cfg = config(TENANT_10);
    let now = t0();
    let cores = 4;
    let mut limiters: Vec<Limiter> = (0..cores).map(|_| Limiter::new(&cfg, cores, now)).collect();
    let c = req(&cfg, Some("K"), "/b1b/k", "10.0.0.1");
    // All demand on core 2, 1000 asks per second for a second; rebalance every 5ms.
    let mut admitted = 0;
    let mut t = now;
    for tick in 0..1000u64 {
        if !matches!(limiters[2].admit(&c, c.client_ip, t), Admit::Reject { .. }) {
            admitted += 1;
        }
        if tick % 5 == 0 {
            let reports: Vec<Vec<KeyUsage>> = limiters.iter_mut().map(|l| l.usage(t)).collect();
            let grants = rebalance_keys(&reports);
            assert_eq!(grants.len(), cores);
            for (l, g) in limiters.iter_mut().zip(&grants) {
                l.apply(g, t);
            }
        }
        t += ms(1);
    }
    // 10/s for 1s, plus the burst and what waits within the 500ms queue timeout: far
    // more than core 2's even share (2.5/s) would give.
    assert!((12..=17).contains(&admitted), "{admitted}");
    let report = limiters[2].usage(t);
    let tenant = report
        .iter()
        .find(|u| u.id.key == LimitKey::Tenant(TenantId(0)))
        .unwrap();
    assert!(tenant.usage.rate_per_sec > 9.0, "{tenant:?}");
    assert_eq!(tenant.id.key.scope(), Scope::Tenant);
    assert_eq!(tenant.global_rate_per_sec, 10.0);
}

#[test]
fn reject_reasons_have_distinct_labels() {
    let reasons = [
        RejectReason::Rate(Scope::Tenant),
        RejectReason::Rate(Scope::Class),
        RejectReason::Rate(Scope::Rule),
        RejectReason::Rate(Scope::ClientIp),
        RejectReason::Rate(Scope::Bucket),
        RejectReason::Cap(CapScope::Connections),
        RejectReason::Cap(CapScope::ClientIpConnections),
        RejectReason::Cap(CapScope::TenantInflight),
        RejectReason::Cap(CapScope::NodeInflight),
        RejectReason::QueueFull,
        RejectReason::QueueTimeout,
    ];
    let mut labels: Vec<&str> = reasons.iter().map(RejectReason::label).collect();
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(labels.len(), reasons.len());
}

// === caps ===

const CAPS: &str = r#"
[limits]
connections_max = 4
client_ip_connections_max = 2
node_inflight_max = 3
table_entries_max = 16
[[tenant]]
name = "t"
access_keys = ["K"]
inflight_max = 2
"#;

#[test]
fn connection_caps_global_and_per_client() {
    let cfg = config(CAPS);
    let mut caps = Caps::new(&cfg, 1, 0);
    let a: IpAddr = "10.0.0.1".parse().unwrap();
    let a_mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
    let b: IpAddr = "10.0.0.2".parse().unwrap();
    assert_eq!(caps.connect(a), Ok(()));
    assert_eq!(caps.connect(a_mapped), Ok(()));
    assert_eq!(
        caps.connect(a),
        Err(RejectReason::Cap(CapScope::ClientIpConnections))
    );
    assert_eq!(caps.connections(), 2, "a refused client holds nothing");
    assert_eq!(caps.connect(b), Ok(()));
    assert_eq!(caps.connect(b), Ok(()));
    let c: IpAddr = "10.0.0.3".parse().unwrap();
    assert_eq!(
        caps.connect(c),
        Err(RejectReason::Cap(CapScope::Connections))
    );
    caps.disconnect(a);
    assert_eq!(caps.connect(c), Ok(()));
}

#[test]
fn a_reload_carries_open_connections_over() {
    let cfg = config(CAPS);
    let mut old = Caps::new(&cfg, 1, 0);
    let a: IpAddr = "10.0.0.1".parse().unwrap();
    let b: IpAddr = "10.0.0.2".parse().unwrap();
    for ip in [a, a, b] {
        assert_eq!(old.connect(ip), Ok(()));
    }
    let mut new = Caps::new(&cfg, 1, 0);
    new.carry_connections(&old);
    assert_eq!(new.connections(), 3);
    assert_eq!(
        new.connect(a),
        Err(RejectReason::Cap(CapScope::ClientIpConnections)),
        "a's two connections still count after the reload"
    );
    assert_eq!(new.connect(b), Ok(()));
    assert_eq!(
        new.connect(b),
        Err(RejectReason::Cap(CapScope::Connections))
    );
    // Connections opened before the reload close on the new caps.
    new.disconnect(a);
    assert_eq!(new.connect(a), Ok(()));
}

#[test]
fn tenant_and_node_inflight_caps() {
    let cfg = config(CAPS);
    let mut caps = Caps::new(&cfg, 1, 0);
    let t = TenantId(0);
    assert_eq!(caps.start_request(t), Ok(()));
    assert_eq!(caps.start_request(t), Ok(()));
    assert_eq!(
        caps.start_request(t),
        Err(RejectReason::Cap(CapScope::TenantInflight))
    );
    caps.end_request(t);
    assert_eq!(caps.start_request(t), Ok(()));
    // The implicit default tenant has no cap.
    for _ in 0..100 {
        assert_eq!(caps.start_request(cfg.default_tenant), Ok(()));
    }
    for _ in 0..3 {
        assert!(caps.node_has_room(0, 1));
        assert_eq!(caps.start_node(0, 1), Ok(()));
    }
    assert!(!caps.node_has_room(0, 1));
    assert_eq!(
        caps.start_node(0, 1),
        Err(RejectReason::Cap(CapScope::NodeInflight))
    );
    assert_eq!(
        caps.start_node(1, 0),
        Ok(()),
        "another node has its own cap"
    );
    caps.end_node(0, 1);
    assert_eq!(caps.start_node(0, 1), Ok(()));
    // Unknown indices are not capped (and never panic).
    assert_eq!(caps.start_node(9, 9), Ok(()));
    caps.end_node(9, 9);
}

#[test]
fn a_full_client_table_admits_untracked() {
    let cfg = config(CAPS);
    let mut caps = Caps::new(&cfg, 1, 0);
    caps.apply(&[CapGrant {
        key: CapKey::Connections,
        share: 1000,
    }]);
    for i in 0..16u8 {
        assert_eq!(caps.connect(IpAddr::from([10, 0, 1, i])), Ok(()));
    }
    // Table full: a 17th client is admitted, not tracked.
    for _ in 0..5 {
        assert_eq!(caps.connect(IpAddr::from([10, 0, 2, 1])), Ok(()));
    }
}

#[test]
fn cap_room_moves_to_the_core_that_needs_it() {
    let cfg = config(CAPS);
    let cores = 2;
    let mut caps: Vec<Caps> = (0..cores).map(|c| Caps::new(&cfg, cores, c)).collect();
    let t = TenantId(0);
    // Tenant cap 2: one per core to start with; all requests land on core 1, which keeps
    // asking.
    assert_eq!(caps[1].start_request(t), Ok(()));
    let mut held = 1;
    for _ in 0..4 {
        if caps[1].start_request(t).is_ok() {
            held += 1;
        }
        let reports: Vec<Vec<CapReport>> = caps.iter().map(Caps::usage).collect();
        let grants = rebalance_cap_keys(&reports);
        for (c, g) in caps.iter_mut().zip(&grants) {
            c.apply(g);
        }
    }
    assert_eq!(held, 2, "core 1 got the other core's room");
    assert!(caps[1].start_request(t).is_err());
    assert!(caps[0].start_request(t).is_err(), "the cap is global: 2");
}

// === properties ===

proptest! {
    /// One core, any arrival pattern: requests let go (at once or at `until`) within any
    /// window never exceed rate × window + burst, and a refusal spends nothing.
    #[test]
    fn admissions_never_exceed_rate_plus_burst(
        arrivals in proptest::collection::vec((0u64..30, 1usize..8), 1..200),
    ) {
        let cfg = config(TENANT_10);
        let start = t0();
        let mut l = Limiter::new(&cfg, 1, start);
        let c = req(&cfg, Some("K"), "/b1b/k", "10.0.0.1");
        let mut now = start;
        let mut go_times: Vec<Instant> = Vec::new();
        for (gap_ms, n) in arrivals {
            now += ms(gap_ms);
            for _ in 0..n {
                match l.admit(&c, c.client_ip, now) {
                    Admit::Go => go_times.push(now),
                    Admit::Wait { until, .. } => {
                        prop_assert!(until > now && until <= now + ms(500));
                        go_times.push(until);
                    }
                    Admit::Reject { retry_after, .. } => {
                        prop_assert!(retry_after >= Duration::from_secs(1));
                    }
                }
            }
        }
        go_times.sort_unstable();
        // Any window [go_times[i], go_times[j]] holds j - i + 1 requests: at most the
        // burst (1 token) plus 10/s over its length.
        for i in 0..go_times.len() {
            for j in i..go_times.len() {
                let span = (go_times[j] - go_times[i]).as_secs_f64();
                let allowed = 1.0 + 10.0 * span + 1e-6;
                prop_assert!((j - i + 1) as f64 <= allowed, "{} in {span}s", j - i + 1);
            }
        }
    }

    /// Arbitrary requests through classification and admission never panic.
    #[test]
    fn classification_and_admission_never_panic(
        method in "[A-Z]{0,7}",
        path in "/\\PC{0,40}",
        query in proptest::option::of("\\PC{0,40}"),
        auth in proptest::option::of("\\PC{0,60}"),
        ip in any::<[u8; 16]>(),
        want in any::<u64>(),
        dt in 0u64..10_000,
    ) {
        static CFG: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
        let cfg = CFG.get_or_init(|| config(
            "[limits]\nclient_ip_requests_per_sec = 5\nbucket_bytes_per_sec = \"1MiB\"\n[[rule]]\nop = \"write\"\nrequests_per_sec = 3\n",
        ));
        let start = t0();
        let mut l = Limiter::new(cfg, 3, start);
        let c = cfg.classify(&Request {
            method: &method,
            host: None,
            path: &path,
            query: query.as_deref(),
            access_key: crate::classify::access_key(auth.as_deref(), query.as_deref()),
            client_ip: IpAddr::from(ip),
            client_name: None,
            copy_sources: &[],
        });
        prop_assert!(!c.pools.is_empty());
        let now = start + ms(dt);
        let _ = l.admit(&c, c.client_ip, now);
        let _ = l.bytes(&c, Dir::Up, want, now);
        let _ = l.bytes(&c, Dir::Down, want, now);
        let reports = vec![l.usage(now), Vec::new(), Vec::new()];
        let grants = rebalance_keys(&reports);
        l.apply(&grants[0], now);
    }
}
