//! Every transition of the node state machine, on injected time.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

#[allow(clippy::disallowed_methods)] // tests need one real base instant
fn t0() -> Instant {
    Instant::now()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn params() -> HealthParams {
    HealthParams {
        rise: 2,
        fall: 3,
        passive_fall: 5,
        ..HealthParams::default()
    }
}

fn dead() -> ProbeResult {
    ProbeResult::Dead("refused".into())
}

fn ok(latency_ms: u64) -> Observation {
    Observation::Success {
        latency: ms(latency_ms),
    }
}

/// Drives `h` to degraded with a 50% request failure rate.
fn make_degraded(h: &mut NodeHealth, now: Instant) {
    for i in 0..40 {
        let obs = if i % 2 == 0 {
            Observation::Timeout
        } else {
            ok(5)
        };
        h.observe(&obs, now);
        if h.state() == NodeState::Degraded {
            // End on a success so failure streaks start from zero.
            h.observe(&ok(5), now);
            assert_eq!(h.state(), NodeState::Degraded);
            return;
        }
    }
    panic!("not degraded: {:?}", h.state());
}

/// Drives `h` down by failed probes.
fn take_down(h: &mut NodeHealth, now: Instant) {
    for _ in 0..3 {
        h.probe(dead(), now);
    }
    assert_eq!(h.state(), NodeState::Down);
}

#[test]
fn starts_up_with_full_weight() {
    let now = t0();
    let h = NodeHealth::new(&params(), now);
    assert_eq!(h.state(), NodeState::Up);
    assert_eq!(h.weight(now), 1.0);
    assert_eq!(h.latency_ewma(), None);
    assert!(h.last_transition().is_none());
}

#[test]
fn up_to_down_after_fall_failed_probes() {
    let now = t0();
    let mut h = NodeHealth::new(&params(), now);
    assert_eq!(h.probe(dead(), now), None);
    assert_eq!(h.probe(dead(), now + ms(1)), None);
    assert_eq!(h.state(), NodeState::Up);
    let t = h.probe(dead(), now + ms(2)).unwrap();
    assert_eq!((t.from, t.to), (NodeState::Up, NodeState::Down));
    assert!(
        t.reason
            .contains("3 consecutive probes failed (last: refused)"),
        "{}",
        t.reason
    );
    assert_eq!(h.last_transition().map(|(at, _)| at), Some(now + ms(2)));
}

#[test]
fn an_alive_probe_resets_the_fall_count() {
    let now = t0();
    let mut h = NodeHealth::new(&params(), now);
    for _ in 0..10 {
        h.probe(dead(), now);
        h.probe(dead(), now);
        h.probe(ProbeResult::Alive, now);
        h.probe(ProbeResult::Alive, now);
        h.probe(ProbeResult::Alive, now);
    }
    assert_ne!(h.state(), NodeState::Down);
}

#[test]
fn down_to_up_after_rise_alive_probes_with_slow_start() {
    let now = t0();
    let mut h = NodeHealth::new(&params(), now);
    take_down(&mut h, now);
    assert_eq!(h.probe(ProbeResult::Alive, now + ms(2000)), None);
    let t = h.probe(ProbeResult::Alive, now + ms(4000)).unwrap();
    assert_eq!((t.from, t.to), (NodeState::Down, NodeState::Up));
    assert!(t.reason.contains("2 consecutive probes alive"));
    let back = now + ms(4000);
    // Slow start: 0.1 at recovery, linear to 1.0 over 10s.
    assert!((h.weight(back) - 0.1).abs() < 1e-9);
    assert!((h.weight(back + ms(5000)) - 0.55).abs() < 1e-9);
    assert_eq!(h.weight(back + ms(10_000)), 1.0);
    assert_eq!(h.weight(back + ms(99_000)), 1.0);
    assert!(
        (h.weight(back - ms(1000)) - 0.1).abs() < 1e-9,
        "time before recovery"
    );
}

#[test]
fn a_dead_probe_interrupts_rise() {
    let now = t0();
    let mut h = NodeHealth::new(&params(), now);
    take_down(&mut h, now);
    h.probe(ProbeResult::Alive, now);
    h.probe(dead(), now);
    assert_eq!(h.probe(ProbeResult::Alive, now), None);
    assert_eq!(h.state(), NodeState::Down);
    assert!(h.probe(ProbeResult::Alive, now).is_some());
}

#[test]
fn slow_start_zero_means_full_weight() {
    let now = t0();
    let p = HealthParams {
        slow_start: Duration::ZERO,
        ..params()
    };
    let mut h = NodeHealth::new(&p, now);
    take_down(&mut h, now);
    h.probe(ProbeResult::Alive, now);
    h.probe(ProbeResult::Alive, now);
    assert_eq!(h.state(), NodeState::Up);
    assert_eq!(h.weight(now), 1.0);
}

#[test]
fn passive_failures_take_a_node_down() {
    let now = t0();
    let mut h = NodeHealth::new(&params(), now);
    let failures = [
        Observation::ConnectFailed,
        Observation::Reset,
        Observation::Timeout,
        Observation::BadResponse,
    ];
    for (i, f) in failures.iter().enumerate() {
        assert_eq!(h.observe(f, now + ms(i as u64)), None);
    }
    let t = h
        .observe(&Observation::ServerError { status: 500 }, now + ms(9))
        .unwrap();
    assert_eq!((t.from, t.to), (NodeState::Up, NodeState::Down));
    assert!(
        t.reason
            .contains("5 consecutive failed requests (last: status 500)"),
        "{}",
        t.reason
    );
}

#[test]
fn degraded_to_down_by_requests_and_by_probes() {
    let now = t0();
    let mut h = NodeHealth::new(&params(), now);
    make_degraded(&mut h, now);
    for _ in 0..4 {
        assert_eq!(h.observe(&Observation::Reset, now), None);
    }
    let t = h.observe(&Observation::Reset, now).unwrap();
    assert_eq!((t.from, t.to), (NodeState::Degraded, NodeState::Down));

    let mut h = NodeHealth::new(&params(), now);
    make_degraded(&mut h, now);
    h.probe(dead(), now);
    h.probe(dead(), now);
    let t = h.probe(dead(), now).unwrap();
    assert_eq!((t.from, t.to), (NodeState::Degraded, NodeState::Down));
}

#[test]
fn passive_fall_zero_never_takes_a_node_down() {
    let now = t0();
    let p = HealthParams {
        passive_fall: 0,
        ..params()
    };
    let mut h = NodeHealth::new(&p, now);
    for _ in 0..100 {
        h.observe(&Observation::ConnectFailed, now);
    }
    assert_eq!(h.state(), NodeState::Degraded);
}

#[test]
fn a_success_resets_the_passive_count() {
    let now = t0();
    let mut h = NodeHealth::new(&params(), now);
    for _ in 0..50 {
        for _ in 0..4 {
            h.observe(&Observation::Reset, now);
        }
        h.observe(&ok(5), now);
    }
    assert_ne!(h.state(), NodeState::Down);
}

#[test]
fn throttling_is_not_a_failure() {
    let now = t0();
    let mut h = NodeHealth::new(&params(), now);
    for _ in 0..1000 {
        let obs = Observation::Throttled {
            retry_after: Some(ms(100)),
        };
        assert_eq!(h.observe(&obs, now), None);
    }
    assert_eq!(h.state(), NodeState::Up);
    assert_eq!(h.failure_ratio(), 0.0);
}

#[test]
fn not_implemented_is_an_answer_not_a_failure() {
    let now = t0();
    let mut h = NodeHealth::new(&params(), now);
    for status in [501, 505] {
        for _ in 0..20 {
            assert_eq!(h.observe(&Observation::ServerError { status }, now), None);
        }
    }
    assert_eq!(h.state(), NodeState::Up);
    assert!(!Observation::ServerError { status: 501 }.is_failure());
    assert!(Observation::ServerError { status: 502 }.is_failure());
}

#[test]
fn degraded_by_partial_failures_and_back() {
    let now = t0();
    let mut h = NodeHealth::new(&params(), now);
    // One failure in two: the ratio settles near 50%.
    let mut went_degraded = None;
    for i in 0..40 {
        let obs = if i % 2 == 0 {
            Observation::Timeout
        } else {
            ok(5)
        };
        if let Some(t) = h.observe(&obs, now) {
            went_degraded.get_or_insert(t);
        }
    }
    let t = went_degraded.unwrap();
    assert_eq!((t.from, t.to), (NodeState::Up, NodeState::Degraded));
    assert!(t.reason.contains("failure ratio"), "{}", t.reason);
    assert_eq!(h.state(), NodeState::Degraded);
    // Successes bring the ratio below 10%: up again, without slow start.
    let mut back = None;
    for _ in 0..40 {
        back = back.or(h.observe(&ok(5), now));
    }
    let t = back.unwrap();
    assert_eq!((t.from, t.to), (NodeState::Degraded, NodeState::Up));
    assert_eq!(h.weight(now), 1.0);
}

#[test]
fn degraded_recovers_through_probes_without_traffic() {
    let now = t0();
    let mut h = NodeHealth::new(&params(), now);
    make_degraded(&mut h, now);
    let mut alive = 0;
    while h.state() == NodeState::Degraded {
        h.probe(ProbeResult::Alive, now + ms(2000 * alive));
        alive += 1;
        assert!(alive < 40, "stuck degraded");
    }
    assert_eq!(h.state(), NodeState::Up);
}

#[test]
fn a_steady_20_percent_error_rate_stays_up() {
    let now = t0();
    let mut h = NodeHealth::new(&params(), now);
    for i in 0..1000 {
        let obs = if i % 5 == 0 {
            Observation::Reset
        } else {
            ok(5)
        };
        h.observe(&obs, now);
    }
    assert_eq!(h.state(), NodeState::Up);
}

#[test]
fn degraded_by_latency_and_back() {
    let now = t0();
    let p = HealthParams {
        degraded_latency: Some(ms(100)),
        ..params()
    };
    let mut h = NodeHealth::new(&p, now);
    let mut t = None;
    for _ in 0..30 {
        t = t.or(h.observe(&ok(500), now));
    }
    let t = t.unwrap();
    assert_eq!(t.to, NodeState::Degraded);
    assert!(t.reason.contains("latency"), "{}", t.reason);
    // Fast answers again: the EWMA falls below 80ms and the node is up.
    let mut back = None;
    for _ in 0..60 {
        back = back.or(h.observe(&ok(10), now));
    }
    assert_eq!(back.unwrap().to, NodeState::Up);
    assert!(h.latency_ewma().unwrap() < ms(80));
}

#[test]
fn latency_degraded_node_without_traffic_is_retried() {
    let now = t0();
    let p = HealthParams {
        degraded_latency: Some(ms(100)),
        ..params()
    };
    let mut h = NodeHealth::new(&p, now);
    for _ in 0..30 {
        h.observe(&ok(500), now);
    }
    assert_eq!(h.state(), NodeState::Degraded);
    // A probe soon after keeps it degraded: its latency is recent.
    assert_eq!(h.probe(ProbeResult::Alive, now + ms(2000)), None);
    // Three quiet intervals later the old latency is forgotten.
    let t = h.probe(ProbeResult::Alive, now + ms(6000)).unwrap();
    assert_eq!(t.to, NodeState::Up);
    assert_eq!(h.latency_ewma(), None);
}

#[test]
fn latency_ewma_smooths() {
    let now = t0();
    let mut h = NodeHealth::new(&params(), now);
    h.observe(&ok(80), now);
    assert_eq!(h.latency_ewma(), Some(ms(80)));
    h.observe(&ok(0), now);
    assert_eq!(h.latency_ewma(), Some(ms(70)));
    h.observe(
        &Observation::Success {
            latency: Duration::MAX,
        },
        now,
    );
    assert!(
        h.latency_ewma().unwrap() > Duration::from_secs(1_000_000),
        "saturates, no panic"
    );
}

#[test]
fn maintenance_drains_from_every_state() {
    let now = t0();
    for setup in 0..3 {
        let mut h = NodeHealth::new(&params(), now);
        match setup {
            1 => make_degraded(&mut h, now),
            2 => take_down(&mut h, now),
            _ => {}
        }
        let from = h.state();
        let t = h.probe(ProbeResult::Maintenance, now).unwrap();
        assert_eq!((t.from, t.to), (from, NodeState::Draining));
        assert_eq!(t.reason, "probe reports maintenance");
        assert_eq!(
            h.probe(ProbeResult::Maintenance, now),
            None,
            "already draining"
        );
    }
}

#[test]
fn draining_ignores_passive_reports() {
    let now = t0();
    let mut h = NodeHealth::new(&params(), now);
    h.probe(ProbeResult::Maintenance, now);
    for _ in 0..20 {
        assert_eq!(h.observe(&Observation::Reset, now), None);
        assert_eq!(h.observe(&ok(5), now), None);
    }
    assert_eq!(h.state(), NodeState::Draining);
}

#[test]
fn draining_to_up_after_rise_alive_probes() {
    let now = t0();
    let mut h = NodeHealth::new(&params(), now);
    h.probe(ProbeResult::Maintenance, now);
    assert_eq!(h.probe(ProbeResult::Alive, now + ms(2000)), None);
    let t = h.probe(ProbeResult::Alive, now + ms(4000)).unwrap();
    assert_eq!((t.from, t.to), (NodeState::Draining, NodeState::Up));
    assert!(
        (h.weight(now + ms(4000)) - 0.1).abs() < 1e-9,
        "slow start after maintenance"
    );
}

#[test]
fn draining_to_down_after_fall_failed_probes() {
    let now = t0();
    let mut h = NodeHealth::new(&params(), now);
    h.probe(ProbeResult::Maintenance, now);
    assert_eq!(h.probe(dead(), now), None);
    assert_eq!(h.probe(dead(), now), None);
    let t = h.probe(dead(), now).unwrap();
    assert_eq!((t.from, t.to), (NodeState::Draining, NodeState::Down));
}

#[test]
fn down_ignores_passive_reports_and_late_successes() {
    let now = t0();
    let mut h = NodeHealth::new(&params(), now);
    take_down(&mut h, now);
    for _ in 0..50 {
        assert_eq!(h.observe(&ok(1), now), None);
    }
    assert_eq!(h.state(), NodeState::Down);
}

#[test]
fn recovery_forgets_old_evidence() {
    let now = t0();
    let mut h = NodeHealth::new(&params(), now);
    h.observe(&ok(900), now);
    for _ in 0..5 {
        h.observe(&Observation::Timeout, now);
    }
    assert_eq!(h.state(), NodeState::Down);
    h.probe(ProbeResult::Alive, now);
    h.probe(ProbeResult::Alive, now);
    assert_eq!(h.state(), NodeState::Up);
    assert_eq!(h.latency_ewma(), None);
    assert_eq!(h.failure_ratio(), 0.0);
    // One more failure does not take it straight down again.
    assert_eq!(h.observe(&Observation::Timeout, now), None);
}

#[test]
fn state_labels() {
    let labels: Vec<String> = [
        NodeState::Up,
        NodeState::Degraded,
        NodeState::Down,
        NodeState::Draining,
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(labels, ["up", "degraded", "down", "draining"]);
    assert!(NodeState::Degraded.is_routable() && !NodeState::Draining.is_routable());
}

// === probe classification ===

#[test]
fn presets() {
    let cases = [
        (HealthPreset::Generic, "HEAD", "/", ExpectStatus::Any, None),
        (
            HealthPreset::Seaweedfs,
            "GET",
            "/healthz",
            ExpectStatus::Exact(200),
            None,
        ),
        (
            HealthPreset::Minio,
            "GET",
            "/minio/health/live",
            ExpectStatus::Exact(200),
            None,
        ),
        (
            HealthPreset::Objectscale,
            "GET",
            "/?ping",
            ExpectStatus::Exact(200),
            Some("MAINTENANCE_MODE"),
        ),
    ];
    for (preset, method, path, expect, drain) in cases {
        let p = HealthParams::from_preset(preset);
        assert_eq!(p.method.as_str(), method);
        assert_eq!(p.path, path);
        assert_eq!(p.expect_status, expect);
        assert_eq!(p.drain_match.as_deref(), drain);
    }
}

#[test]
fn classify_generic_accepts_any_answer() {
    let p = HealthParams::default();
    for status in [200, 403, 404, 500, 503] {
        assert_eq!(p.classify(status, b""), ProbeResult::Alive);
    }
}

#[test]
fn classify_status_and_body() {
    let mut p = HealthParams::from_preset(HealthPreset::Minio);
    assert_eq!(p.classify(200, b""), ProbeResult::Alive);
    assert_eq!(
        p.classify(503, b""),
        ProbeResult::Dead("probe answered 503, expected 200".into())
    );
    p.body_match = Some("OK".into());
    assert_eq!(p.classify(200, b"all OK"), ProbeResult::Alive);
    assert!(
        matches!(p.classify(200, b"nope"), ProbeResult::Dead(why) if why.contains("lacks \"OK\""))
    );
    p.expect_status = ExpectStatus::Class(2);
    assert_eq!(p.classify(204, b"OK"), ProbeResult::Alive);
    assert!(matches!(p.classify(301, b"OK"), ProbeResult::Dead(_)));
}

#[test]
fn classify_objectscale_maintenance_wins_over_status() {
    let p = HealthParams::from_preset(HealthPreset::Objectscale);
    let body = b"<PingList><PingItem><Name>MAINTENANCE_MODE</Name><Status>ON</Status></PingItem></PingList>";
    assert_eq!(p.classify(503, body), ProbeResult::Maintenance);
    assert_eq!(p.classify(200, body), ProbeResult::Maintenance);
    assert_eq!(
        p.classify(
            200,
            b"<PingList><PingItem><Name>LOAD_FACTOR</Name></PingItem></PingList>"
        ),
        ProbeResult::Alive
    );
}

#[test]
fn expect_status_parsing() {
    assert_eq!(ExpectStatus::parse("any"), Some(ExpectStatus::Any));
    assert_eq!(ExpectStatus::parse("ANY"), Some(ExpectStatus::Any));
    assert_eq!(ExpectStatus::parse("2xx"), Some(ExpectStatus::Class(2)));
    assert_eq!(ExpectStatus::parse("5XX"), Some(ExpectStatus::Class(5)));
    assert_eq!(ExpectStatus::parse("204"), Some(ExpectStatus::Exact(204)));
    for bad in ["6xx", "0xx", "2x", "99", "600", "", "ok", "2xxx"] {
        assert_eq!(ExpectStatus::parse(bad), None, "{bad}");
    }
    assert_eq!(ExpectStatus::Class(2).to_string(), "2xx");
}

// === response classification ===

#[test]
fn classify_responses() {
    let l = ms(7);
    assert_eq!(
        classify_response(200, None, None, l),
        Observation::Success { latency: l }
    );
    assert_eq!(
        classify_response(404, Some("NoSuchKey"), None, l),
        Observation::Success { latency: l }
    );
    assert_eq!(
        classify_response(503, Some("SlowDown"), Some("3"), l),
        Observation::Throttled {
            retry_after: Some(Duration::from_secs(3))
        }
    );
    assert_eq!(
        classify_response(503, None, None, l),
        Observation::Throttled { retry_after: None },
        "a bodiless 503 is S3's slow down"
    );
    assert_eq!(
        classify_response(503, Some("ServiceUnavailable"), None, l),
        Observation::Throttled { retry_after: None }
    );
    assert_eq!(
        classify_response(503, Some("XMinioServerNotInitialized"), None, l),
        Observation::ServerError { status: 503 }
    );
    assert_eq!(
        classify_response(429, None, Some("Wed, 21 Oct 2015 07:28:00 GMT"), l),
        Observation::Throttled { retry_after: None }
    );
    assert_eq!(
        classify_response(400, Some("RequestLimitExceeded"), None, l),
        Observation::Throttled { retry_after: None }
    );
    assert_eq!(
        classify_response(500, Some("InternalError"), None, l),
        Observation::ServerError { status: 500 }
    );
}

#[test]
fn s3_error_codes() {
    let body = b"<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>Please reduce</Message></Error>";
    assert_eq!(s3_error_code(body), Some("SlowDown"));
    assert_eq!(s3_error_code(b"<Code> SlowDown </Code>"), Some("SlowDown"));
    for bad in [
        &b""[..],
        b"<Code></Code>",
        b"<Code>Slow Down</Code>",
        b"<Code>SlowDown",
        b"\xff<Code>\xff</Code>",
    ] {
        assert_eq!(s3_error_code(bad), None);
    }
}

#[test]
fn retry_after_values() {
    assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
    assert_eq!(parse_retry_after(" 5 "), Some(Duration::from_secs(5)));
    assert_eq!(
        parse_retry_after("99999999999999999999999"),
        Some(RETRY_AFTER_MAX)
    );
    for bad in ["", "-1", "1.5", "Wed, 21 Oct 2015 07:28:00 GMT"] {
        assert_eq!(parse_retry_after(bad), None, "{bad}");
    }
}

#[test]
fn observation_failures_map_to_retry_failures() {
    use crate::retry::Failure;
    assert_eq!(ok(1).failure(), None);
    assert_eq!(Observation::ConnectFailed.failure(), Some(Failure::Connect));
    assert_eq!(
        Observation::Reset.failure(),
        Some(Failure::ResetBeforeResponse)
    );
    assert_eq!(
        Observation::Timeout.failure(),
        Some(Failure::TimeoutBeforeResponse)
    );
    assert_eq!(
        Observation::BadResponse.failure(),
        Some(Failure::BadResponse)
    );
    assert_eq!(
        Observation::ServerError { status: 500 }.failure(),
        Some(Failure::ServerError)
    );
    assert_eq!(
        Observation::Throttled { retry_after: None }.failure(),
        Some(Failure::Throttled)
    );
}

fn arb_event() -> impl Strategy<Value = (u8, u64)> {
    (0u8..10, 0u64..3000)
}

proptest! {
    /// Whatever happens, state changes come with a transition, the weight stays in
    /// range, and a node held Down leaves it only through `rise` alive probes.
    #[test]
    fn transitions_are_consistent(events in proptest::collection::vec(arb_event(), 0..300)) {
        let start = t0();
        let mut h = NodeHealth::new(&params(), start);
        let mut now = start;
        let mut alive_streak = 0u32;
        for (kind, step) in events {
            now += ms(step);
            let before = h.state();
            let t = match kind {
                0 => { alive_streak += 1; h.probe(ProbeResult::Alive, now) }
                1 => { alive_streak = 0; h.probe(dead(), now) }
                2 => { alive_streak = 0; h.probe(ProbeResult::Maintenance, now) }
                3 => h.observe(&Observation::ConnectFailed, now),
                4 => h.observe(&Observation::Reset, now),
                5 => h.observe(&Observation::Timeout, now),
                6 => h.observe(&Observation::ServerError { status: 502 }, now),
                7 => h.observe(&Observation::Throttled { retry_after: None }, now),
                _ => h.observe(&ok(step % 200), now),
            };
            match &t {
                Some(t) => {
                    prop_assert_eq!(t.from, before);
                    prop_assert_eq!(t.to, h.state());
                    prop_assert_ne!(t.from, t.to);
                    if matches!(before, NodeState::Down | NodeState::Draining) && t.to == NodeState::Up {
                        prop_assert!(alive_streak >= 2);
                    }
                }
                None => prop_assert_eq!(before, h.state()),
            }
            let w = h.weight(now);
            prop_assert!((SLOW_START_WEIGHT_MIN..=1.0).contains(&w));
            prop_assert!((0.0..=1.0).contains(&h.failure_ratio()));
        }
    }
}

#[test]
fn unconfirmed_failures_alone_never_take_a_node_down() {
    let now = t0();
    let mut h = NodeHealth::new(&params(), now);
    for i in 0..100 {
        assert_eq!(
            h.observe_unconfirmed(&Observation::Reset, now + ms(i)),
            None
        );
    }
    assert_eq!(h.state(), NodeState::Up);
    assert_eq!(h.failure_ratio(), 0.0, "not even degraded");
}

#[test]
fn unconfirmed_failures_add_to_a_running_streak() {
    let now = t0();
    let mut h = NodeHealth::new(&params(), now);
    // One confirmed failure starts the streak; unconfirmed ones then count with it.
    h.observe(&Observation::Reset, now);
    for i in 1..4 {
        assert_eq!(
            h.observe_unconfirmed(&Observation::Timeout, now + ms(i)),
            None
        );
    }
    let t = h.observe_unconfirmed(&Observation::Timeout, now + ms(5));
    assert_eq!(t.map(|t| t.to), Some(NodeState::Down));
    // A success in between resets the streak: unconfirmed ones are ignored again.
    let mut h = NodeHealth::new(&params(), now);
    h.observe(&Observation::Reset, now);
    h.observe(&ok(5), now);
    for i in 0..10 {
        assert_eq!(
            h.observe_unconfirmed(&Observation::Reset, now + ms(i)),
            None
        );
    }
    assert_eq!(h.state(), NodeState::Up);
}
