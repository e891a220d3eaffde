//! weir in front of a hostile storage node (`weir_bench::hostile`): a node that sends 1xx
//! floods, cuts bodies with an RST, answers uploads early, sends oversized and malformed
//! heads and wrong `Content-Length`s, writes bytes on idle pooled connections, and closes
//! on a "query of death" — and a client that holds node slots with slow uploads.
//!
//! What is checked, every time: the exact bytes each client received (every body is the
//! synthetic pattern of its own path, unique per request), the statuses, how each client
//! connection ended (a framed end, FIN or RST: a cut body must never end cleanly), what the
//! nodes received (their records), and weir's view of the nodes (`/nodes`, metrics).
//! weir runs on one core where a test needs an upstream connection to be reused, so a
//! desync would show in the very next request.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use weir_bench::hostile::attack::{self, AttackConfig, Held};
use weir_bench::hostile::script::{pattern_bytes, Malformed};
use weir_bench::hostile::{early_answer_body, HostileNode, HostileOptions, SMUGGLED_BODY};
use weir_tests::data::Scratch;
use weir_tests::hostile::{
    self, exchange, exchange_upload, expected, is_pattern_prefix, request, End, Exchange,
};
use weir_tests::weir::{Weir, WeirConfig};

/// How long a client waits for an answer weir should give at once.
const WAIT: Duration = Duration::from_secs(10);

/// weir in front of hostile nodes.
struct Rig {
    nodes: Vec<HostileNode>,
    weir: Weir,
    _scratch: Scratch,
}

impl Rig {
    /// `n` hostile nodes (`options`) behind a one-core weir, `tweak`ed.
    fn start(
        name: &str,
        n: usize,
        options: &HostileOptions,
        tweak: impl FnOnce(&mut WeirConfig),
    ) -> Rig {
        let scratch = Scratch::new(name);
        let nodes = hostile::start_with(n, options);
        let mut cfg = WeirConfig::new(&hostile::addrs(&nodes));
        cfg.cores = 1;
        tweak(&mut cfg);
        let weir = Weir::start(&cfg, scratch.path());
        Rig {
            nodes,
            weir,
            _scratch: scratch,
        }
    }

    fn get(&self, target: &str, minor: u8) -> Exchange {
        self.get_with(target, minor, &[])
    }

    fn get_with(&self, target: &str, minor: u8, extra: &[String]) -> Exchange {
        exchange(
            self.weir.addr(),
            &request("GET", target, minor, extra),
            false,
            WAIT,
        )
    }

    /// GETs `target` (a well-behaved object) on a new client connection and checks that
    /// the answer is exactly its own body.
    fn innocent_get(&self, target: &str, context: &str) {
        let ex = self.get(target, 1);
        assert_eq!(
            ex.status(),
            Some(200),
            "{context}: innocent GET {target}: {}; weir log:\n{}",
            ex.summary(),
            self.weir.log_tail()
        );
        assert!(
            !contains(&ex.raw, SMUGGLED_BODY),
            "{context}: innocent GET {target} received the node's smuggled response: {}",
            ex.summary()
        );
        assert_eq!(ex.end, End::Framed, "{context}: {target}: {}", ex.summary());
        assert!(
            ex.body == expected(target),
            "{context}: innocent GET {target} got {} bytes that are not its own body: {}",
            ex.body.len(),
            ex.summary()
        );
    }

    /// How many times the nodes received a request for exactly `target`.
    fn received(&self, target: &str) -> usize {
        self.nodes
            .iter()
            .map(|n| n.received().iter().filter(|r| r.target == target).count())
            .sum()
    }

    /// How many nodes received `target` at least once.
    fn nodes_reached(&self, target: &str) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.received().iter().any(|r| r.target == target))
            .count()
    }

    fn upstream_errors(&self) -> f64 {
        self.weir.metric_sum("weir_upstream_errors_total", |_| true)
    }

    /// No node is down (up or degraded both still take traffic).
    fn assert_no_node_down(&self, context: &str) {
        for node in &self.nodes {
            let state = self.weir.node_state(node.addr());
            assert!(
                matches!(state.as_deref(), Some("up" | "degraded")),
                "{context}: node {} is {state:?}: /nodes {:?}",
                node.addr(),
                self.weir.nodes()
            );
        }
        let down = self
            .weir
            .metric_sum("weir_node_state", |l| l.contains("state=\"down\""));
        assert_eq!(down, 0.0, "{context}: weir_node_state shows a node down");
    }

    fn assert_nodes_up(&self, context: &str) {
        for node in &self.nodes {
            assert_eq!(
                self.weir.node_state(node.addr()).as_deref(),
                Some("up"),
                "{context}: node {} is not up: /nodes {:?}",
                node.addr(),
                self.weir.nodes()
            );
        }
        let down = self
            .weir
            .metric_sum("weir_node_state", |l| !l.contains("state=\"up\""));
        assert_eq!(
            down, 0.0,
            "{context}: weir_node_state shows a node in another state than up"
        );
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The client these tests use, straight at the hostile node: it tells interim answers from
/// the final one, FIN from RST, and a short body from a whole one — so what the tests
/// below see through weir is weir's doing.
#[test]
fn the_hostile_node_does_what_the_tests_rely_on() {
    let nodes = hostile::start(1);
    let node = nodes[0].addr();
    let get =
        |target: &str, minor: u8| exchange(node, &request("GET", target, minor, &[]), false, WAIT);
    let target = "/hostile/interim/direct?codes=103,102&size=3000";
    let ex = get(target, 1);
    assert_eq!(ex.interim_statuses(), vec![103, 102], "{}", ex.summary());
    assert_eq!((ex.status(), ex.end), (Some(200), End::Framed));
    assert!(ex.body == expected(target));
    for target in [
        "/hostile/close_delimited_reset/direct?bytes=100KiB",
        "/hostile/length_reset/direct?size=1MiB&bytes=100KiB",
        "/hostile/chunked_reset/direct?bytes=100KiB",
    ] {
        let ex = get(target, 1);
        assert_eq!(ex.end, End::Reset, "{target}: {}", ex.summary());
        assert_eq!(ex.body.len(), 100 << 10, "{target}");
        assert!(is_pattern_prefix(target, &ex.body), "{target}");
    }
    let target = "/hostile/wrong_length_short/direct?size=256KiB&sent=100KiB";
    let ex = get(target, 1);
    assert_eq!(
        (ex.end, ex.body.len()),
        (End::Eof, 100 << 10),
        "{}",
        ex.summary()
    );
    let target = "/hostile/interim_flood/direct?every_ms=0&count=300&size=10";
    let ex = get(target, 1);
    assert_eq!(
        (ex.interim.len(), ex.status()),
        (300, Some(200)),
        "{}",
        ex.summary()
    );
    let target = "/hostile/early_answer/direct?after=1MiB&close=rst";
    let head = request("PUT", target, 1, &["Content-Length: 33554432".to_string()]);
    let ex = exchange_upload(node, &head, vec![0u8; 32 << 20], WAIT);
    assert_eq!(ex.status(), Some(400), "{}", ex.summary());
    assert_eq!(ex.body, early_answer_body());
}

/// 103 + 102 and then 200: an HTTP/1.1 client receives both interim answers (the 103 with
/// its `Link` fields) and then exactly its body; an HTTP/1.0 client only the final answer;
/// the next request, on another client connection and the same pooled upstream
/// connection, gets its own body. Several rounds, every body unique.
#[test]
fn interim_answers_reach_http11_clients_and_never_desync() {
    let rig = Rig::start("hostile-interim", 1, &HostileOptions::default(), |_| {});
    for round in 0..5u64 {
        let target = format!(
            "/hostile/interim/r{round}?codes=103,102&size={}",
            1000 + 777 * round
        );
        let ex = rig.get(&target, 1);
        assert_eq!(
            ex.interim_statuses(),
            vec![103, 102],
            "round {round}: HTTP/1.1 client: {}",
            ex.summary()
        );
        let links = ex.interim[0].fields_named("link");
        assert_eq!(
            links.len(),
            2,
            "round {round}: the 103's Link fields: {}",
            ex.interim[0].text
        );
        assert!(links[0].contains("rel=preload"), "{}", ex.interim[0].text);
        assert_eq!(ex.status(), Some(200), "round {round}: {}", ex.summary());
        assert_eq!(ex.end, End::Framed, "round {round}: {}", ex.summary());
        assert!(
            ex.body == expected(&target),
            "round {round}: HTTP/1.1 client got {} bytes that are not its body",
            ex.body.len()
        );

        let target10 = format!(
            "/hostile/interim/r{round}-http10?codes=103,102&size={}",
            2000 + 333 * round
        );
        let ex = rig.get(&target10, 0);
        assert!(
            ex.interim.is_empty(),
            "round {round}: an HTTP/1.0 client must not get interim answers: {}",
            ex.summary()
        );
        assert_eq!(ex.status(), Some(200), "round {round}: {}", ex.summary());
        assert!(
            matches!(ex.end, End::Framed | End::Eof),
            "round {round}: HTTP/1.0: {}",
            ex.summary()
        );
        assert!(
            ex.body == expected(&target10),
            "round {round}: HTTP/1.0 client got {} bytes that are not its body",
            ex.body.len()
        );

        rig.innocent_get(
            &format!("/data/after-interim-{round}?size={}", 500 + 91 * round),
            &format!("round {round}"),
        );
    }
    for round in 0..5u64 {
        let target = format!("/data/after-interim-{round}?size={}", 500 + 91 * round);
        assert_eq!(rig.received(&target), 1, "{target} reached the node once");
    }
}

/// An interim answer every 300 ms, forever: with `first_byte_timeout = "2s"` the client
/// gets a 504 `GatewayTimeout` — the interim answers do not restart the deadline.
#[test]
fn an_endless_interim_flood_ends_in_a_gateway_timeout() {
    let rig = Rig::start("hostile-flood", 1, &HostileOptions::default(), |cfg| {
        cfg.upstream.push("first_byte_timeout = \"2s\"".into());
    });
    let started = Instant::now();
    let ex = rig.get("/hostile/interim_flood/forever?every_ms=300", 1);
    assert_eq!(
        ex.status(),
        Some(504),
        "after {:.1} s: {}; weir log:\n{}",
        started.elapsed().as_secs_f64(),
        ex.summary(),
        rig.weir.log_tail()
    );
    assert_eq!(
        ex.s3_code().as_deref(),
        Some("GatewayTimeout"),
        "{}",
        ex.summary()
    );
    let after = ex.final_after.expect("a final answer");
    // One 2 s deadline for the whole wait: interim answers every 300 ms cannot restart it
    // (restarted, it would never end), so at most 2 s / 300 ms of them come before the 504.
    assert!(
        after < Duration::from_secs(5),
        "the 504 came after {after:?}"
    );
    assert!(
        ex.interim.len() <= 10,
        "{} interim answers",
        ex.interim.len()
    );
    rig.innocent_get("/data/after-flood?size=777", "after the flood");
}

/// Ten thousand interim answers at once, then a 200: weir stops relaying them after a
/// bound and answers 502.
#[test]
fn a_burst_of_interim_answers_is_cut_at_a_bound() {
    let rig = Rig::start("hostile-burst", 1, &HostileOptions::default(), |cfg| {
        cfg.upstream.push("first_byte_timeout = \"5s\"".into());
    });
    let ex = rig.get(
        "/hostile/interim_flood/burst?every_ms=0&count=10000&size=100",
        1,
    );
    assert!(
        ex.interim.len() <= 100,
        "weir relayed {} interim answers; {}",
        ex.interim.len(),
        ex.summary()
    );
    assert_eq!(
        ex.status(),
        Some(502),
        "{}; weir log:\n{}",
        ex.summary(),
        rig.weir.log_tail()
    );
    assert!(
        ex.s3_code().is_some(),
        "502 is not an S3 XML error: {}",
        ex.summary()
    );
    rig.innocent_get("/data/after-burst?size=1234", "after the burst");
}

/// A body cut by the node's RST never ends cleanly at the client: a close-delimited body
/// (curl fails too), a chunked body de-chunked for an HTTP/1.0 client, a Content-Length
/// body that cannot be resumed. Every byte that did arrive is the node's, in place.
#[test]
fn bodies_cut_by_a_reset_reset_the_client() {
    let rig = Rig::start("hostile-cut", 1, &HostileOptions::default(), |_| {});
    let cases: [(&str, u8); 4] = [
        ("/hostile/close_delimited_reset/c1?bytes=256KiB", 1),
        ("/hostile/chunked_reset/c2?bytes=256KiB", 0),
        ("/hostile/length_reset/c3?size=1MiB&bytes=256KiB", 1),
        ("/hostile/length_reset/c4?size=1MiB&bytes=256KiB", 0),
    ];
    for (target, minor) in cases {
        let ex = rig.get(target, minor);
        assert_eq!(ex.status(), Some(200), "{target}: {}", ex.summary());
        assert_eq!(
            ex.end,
            End::Reset,
            "{target} (HTTP/1.{minor}): the client connection must be reset, not ended: {}",
            ex.summary()
        );
        assert!(
            ex.body.len() <= 256 << 10 && is_pattern_prefix(target, &ex.body),
            "{target}: {} bytes that are not the node's bytes in place",
            ex.body.len()
        );
    }
    // A chunked body to an HTTP/1.1 client keeps its framing: it must not look complete.
    let target = "/hostile/chunked_reset/c5?bytes=256KiB";
    let ex = rig.get(target, 1);
    assert_ne!(ex.end, End::Framed, "{target}: {}", ex.summary());
    assert!(is_pattern_prefix(target, &ex.body));
    // curl reads a close-delimited body until the close: a reset is its only way to know.
    let url = format!(
        "{}/hostile/close_delimited_reset/c6?bytes=256KiB",
        rig.weir.endpoint()
    );
    let (code, bytes) = hostile::curl_get(&url, WAIT);
    assert!(
        code == 56 || code == 18,
        "curl exited {code} after {} bytes: the cut body looked complete",
        bytes.len()
    );
    rig.innocent_get("/data/after-cuts?size=4321", "after the cut bodies");
}

/// The node answers a 32 MiB PUT with a final 400 after 1 MiB and closes (with an RST, and
/// after draining the rest): the client gets that 400 with the node's own body, and the
/// node is not counted as failing. (32 MiB: more than the socket buffers between weir and
/// the node hold, so weir is still sending when the node's RST comes.)
#[test]
fn an_early_answer_to_an_upload_reaches_the_client() {
    let rig = Rig::start("hostile-early", 1, &HostileOptions::default(), |_| {});
    let body = weir_tests::data::pattern(7, 32 << 20);
    for close in ["rst", "drain"] {
        let errors_before = rig.upstream_errors();
        let target = format!("/hostile/early_answer/e-{close}?after=1MiB&close={close}");
        let head = request(
            "PUT",
            &target,
            1,
            &[format!("Content-Length: {}", body.len())],
        );
        let ex = exchange_upload(rig.weir.addr(), &head, body.clone(), WAIT);
        assert_eq!(
            ex.status(),
            Some(400),
            "close={close}: {}; weir log:\n{}",
            ex.summary(),
            rig.weir.log_tail()
        );
        assert_eq!(
            ex.body,
            early_answer_body(),
            "close={close}: not the node's body: {}",
            ex.summary()
        );
        let got = rig.nodes[0].received_for(&target);
        assert_eq!(
            got.len(),
            1,
            "close={close}: the upload reached the node once"
        );
        assert_eq!(got[0].answered, Some(400));
        assert!(!got[0].body_complete && got[0].body_bytes >= 1 << 20);
        assert_eq!(
            rig.upstream_errors(),
            errors_before,
            "close={close}: a node's answer was counted as an upstream error"
        );
        rig.assert_nodes_up(&format!("close={close}"));
    }
    rig.innocent_get("/data/after-early?size=2000", "after the early answers");
}

/// Oversized and malformed response heads get a 502 (S3 XML) — except the two breakages
/// RFC 9112 lets a proxy repair (a space before a field's colon, a NUL in a value), which
/// may instead be answered with exactly the node's body; a body shorter than its
/// `Content-Length` resets the client; a body longer than it never reaches the next
/// request.
#[test]
fn broken_response_heads_and_lengths() {
    let rig = Rig::start("hostile-heads", 1, &HostileOptions::default(), |cfg| {
        // The node is broken on purpose: keep it in the pool for every case.
        cfg.main_health.push("passive_fall = 0".into());
    });
    let mut targets = vec!["/hostile/oversized_head/o?head_bytes=64KiB".to_string()];
    for kind in Malformed::ALL {
        targets.push(format!(
            "/hostile/malformed_head/m-{0}?kind={0}",
            kind.name()
        ));
    }
    let repairable = [Malformed::SpaceBeforeColon, Malformed::Nul]
        .map(|k| format!("/hostile/malformed_head/m-{0}?kind={0}", k.name()));
    let mut wrong = Vec::new();
    for target in &targets {
        let ex = rig.get(target, 1);
        let rejected = ex.status() == Some(502) && ex.s3_code().is_some() && ex.end != End::Timeout;
        let repaired = repairable.contains(target)
            && ex.status() == Some(200)
            && ex.end == End::Framed
            && ex.body == pattern_bytes(target, weir_bench::hostile::script::DEFAULT_SIZE_BYTES);
        if repaired {
            continue;
        }
        if !rejected {
            wrong.push(format!("{target}: {}", ex.summary()));
        }
        assert!(
            !contains(&ex.raw, &pattern_bytes(target, 64)),
            "{target}: the body of a malformed answer reached the client: {}",
            ex.summary()
        );
    }
    assert!(
        wrong.is_empty(),
        "broken heads not answered with an S3 XML 502:\n{}",
        wrong.join("\n")
    );

    let short = "/hostile/wrong_length_short/s?size=256KiB&sent=100KiB";
    let ex = rig.get(short, 1);
    assert_eq!(ex.status(), Some(200), "{}", ex.summary());
    assert_eq!(
        ex.end,
        End::Reset,
        "a body shorter than its Content-Length must reset the client: {}",
        ex.summary()
    );
    assert!(ex.body.len() <= 100 << 10 && is_pattern_prefix(short, &ex.body));

    for round in 0..3 {
        let long = format!("/hostile/wrong_length_long/l{round}?size={}", 5000 + round);
        let ex = rig.get(&long, 1);
        assert_eq!(ex.status(), Some(200), "{}", ex.summary());
        assert!(ex.body == expected(&long), "{long}: {}", ex.summary());
        rig.innocent_get(
            &format!("/data/after-long-{round}?size={}", 3000 + round),
            &format!("after {long}"),
        );
    }
}

/// After a complete keep-alive answer the node writes a whole fake response on the idle
/// connection; the next request never receives it.
#[test]
fn bytes_on_an_idle_pooled_connection_never_reach_the_next_request() {
    let rig = Rig::start("hostile-idle", 1, &HostileOptions::default(), |_| {});
    for round in 0..3 {
        let target = format!(
            "/hostile/idle_bytes/i{round}?size={}&delay_ms=100",
            2000 + round
        );
        let ex = rig.get(&target, 1);
        assert_eq!(ex.status(), Some(200), "{}", ex.summary());
        assert!(ex.body == expected(&target), "{target}: {}", ex.summary());
        std::thread::sleep(Duration::from_millis(400));
        rig.innocent_get(
            &format!("/data/after-idle-{round}?size={}", 3000 + round),
            &format!("after {target}"),
        );
    }
    let unsolicited: u64 = rig.nodes[0]
        .connections()
        .iter()
        .map(|c| c.unsolicited_bytes)
        .sum();
    assert!(unsolicited > 0, "the node never wrote its idle bytes");
}

/// A request with 70 header fields makes every node close without answering. Sent 20
/// times between innocent requests to three such nodes: no node is taken down, every
/// innocent request gets its own body, and each poison request reached at most two nodes.
#[test]
fn a_query_of_death_takes_no_node_down() {
    let options = HostileOptions {
        close_over_headers: Some(64),
    };
    let rig = Rig::start("hostile-poison", 3, &options, |cfg| cfg.cores = 2);
    let poison_fields: Vec<String> = (0..70).map(|i| format!("X-Poison-{i}: {i}")).collect();
    let mut poison_answers = Vec::new();
    for i in 0..20 {
        let target = format!("/data/poison-{i}?size=100");
        let ex = rig.get_with(&target, 1, &poison_fields);
        poison_answers.push(ex.status());
        assert!(
            matches!(ex.status(), Some(500..=599)),
            "poison {i} must get weir's own 5xx (no node answers it): {}",
            ex.summary()
        );
        rig.innocent_get(
            &format!("/data/innocent-{i}?size={}", 1000 + i),
            &format!("after poison {i}"),
        );
    }
    for i in 0..20 {
        let target = format!("/data/poison-{i}?size=100");
        let (reached, sent) = (rig.nodes_reached(&target), rig.received(&target));
        // The first one cannot be known for poison before a node has seen it. Two
        // attempts at most, plus one resend to the same node when the first met a
        // kept-alive connection the node closed (docs/design.md: a stale connection).
        let least = usize::from(i == 0);
        assert!(
            (least..=2).contains(&reached) && sent <= 3,
            "poison request {i} reached {reached} node(s) in {sent} sends, want {least} to 2 \
             nodes and at most 3 sends (answers: {poison_answers:?})"
        );
    }
    rig.assert_no_node_down("after 20 poison requests");
}

/// With `node_inflight_max = 8`, 64 PUTs that send their head and then a body byte a
/// second must not keep innocent GETs and PUTs from being served, and weir must cut them;
/// the node never stores a partial object.
#[test]
fn slow_uploads_do_not_pin_node_slots() {
    /// The slow uploads must all be cut (their sockets closed by weir) within this.
    const CUT_BOUND: Duration = Duration::from_secs(30);
    const SLOW: usize = 64;
    let rig = Rig::start("hostile-slow", 1, &HostileOptions::default(), |cfg| {
        cfg.cores = 2;
        cfg.extra.push_str("\n[limits]\nnode_inflight_max = 8\n");
    });
    let mut config = AttackConfig::new(rig.weir.addr(), CUT_BOUND);
    config.slow_bodies = SLOW;
    config.slow_body_every = Duration::from_secs(1);
    // Half small enough for weir to buffer, half that must stream.
    config.slow_body_bytes = vec![4 << 10, 1 << 20];
    config.put_prefix = "/data/slow-".into();
    config.stop_when_all_closed = true;
    let stop = AtomicBool::new(false);
    let (report, innocents) = std::thread::scope(|scope| {
        let attack = scope.spawn(|| attack::run(&config, &stop));
        // Let the slow uploads take what they can take.
        std::thread::sleep(Duration::from_secs(2));
        let mut failures = Vec::new();
        for i in 0..10u64 {
            let target = format!("/data/innocent-get-{i}?size={}", 4000 + i);
            let ex = rig.get(&target, 1);
            if ex.status() != Some(200) || ex.body != expected(&target) {
                failures.push(format!("GET {target}: {}", ex.summary()));
            }
        }
        for i in 0..5u64 {
            let target = format!("/data/innocent-put-{i}");
            let body = weir_tests::data::pattern(100 + i, 10_000 + i as usize);
            let head = request(
                "PUT",
                &target,
                1,
                &[format!("Content-Length: {}", body.len())],
            );
            let ex = exchange_upload(rig.weir.addr(), &head, body.clone(), WAIT);
            let stored = rig.nodes[0].stored(&target);
            if ex.status() != Some(200) || stored.as_deref() != Some(&body[..]) {
                failures.push(format!(
                    "PUT {target}: {}; node stored {:?} bytes",
                    ex.summary(),
                    stored.map(|b| b.len())
                ));
            }
        }
        let report = attack.join().expect("attack thread").expect("attack run");
        (report, failures)
    });
    assert!(
        innocents.is_empty(),
        "innocent requests failed beside {SLOW} slow uploads:\n{}\nweir log:\n{}",
        innocents.join("\n"),
        rig.weir.log_tail()
    );
    let slow = report.held(Held::SlowBody).expect("slow bodies ran");
    assert_eq!(slow.connect_failed, 0, "{}", report.human());
    assert_eq!(
        (slow.closed_by_server, slow.open_at_end),
        (SLOW as u64, 0),
        "every slow upload must be cut by weir within {CUT_BOUND:?}: {}",
        report.human()
    );
    for i in 0..SLOW {
        let key = format!("data/slow-{i}");
        assert!(
            rig.nodes[0].stored(&key).is_none(),
            "the node stored the partial upload {key}"
        );
    }
    let complete: Vec<_> = rig.nodes[0]
        .received_for("/data/slow-")
        .into_iter()
        .filter(|r| r.body_complete)
        .collect();
    assert!(complete.is_empty(), "complete slow uploads: {complete:?}");
}
