//! The control plane (metrics and admin ports) under attack: a head that never ends, byte
//! drippers, floods of idle connections from many loopback addresses, crowds of pipelined
//! scrapes, a missing or wrong token with a body that never comes, malformed and oversized
//! heads, accepts failing with EMFILE. Meanwhile `/metrics`, `/healthz`, `/readyz` and an
//! authorized `POST /reload` keep answering, with their real content, within a few
//! seconds. And a reload cannot pretend to rotate the admin token. weir runs with its
//! default control caps and deadlines (64 connections per listener, 8 per client address,
//! a 5 s request deadline).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use weir_bench::SimNode;
use weir_tests::data::Scratch;
use weir_tests::ports;
use weir_tests::raw::{exchange, RawReply, ReadUntil};
use weir_tests::sim;
use weir_tests::weir::{Weir, WeirConfig};

/// The admin token of every test here.
const TOKEN: &str = "weir-admin-plane-test-token-0123";
/// How long a probe or scrape may take while the ports are under attack.
const PROBE_WAIT: Duration = Duration::from_secs(3);
/// weir's default `control_head_timeout`.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// weir (one core) in front of one simulator node, with a metrics port and an admin port
/// behind [`TOKEN`].
struct Rig {
    weir: Weir,
    cfg: WeirConfig,
    admin: SocketAddr,
    _nodes: Vec<SimNode>,
    _scratch: Scratch,
}

impl Rig {
    fn start(name: &str) -> Rig {
        let scratch = Scratch::new(name);
        let nodes = sim::start(1, &["bench/small-:4KiB:1"]);
        let admin = ports::free_addr();
        let mut cfg = WeirConfig::new(&sim::addrs(&nodes))
            .appliance(&format!("admin = \"{admin}\""))
            .appliance(&format!("admin_token = \"{TOKEN}\""));
        cfg.cores = 1;
        let weir = Weir::start(&cfg, scratch.path());
        let rig = Rig {
            weir,
            cfg,
            admin,
            _nodes: nodes,
            _scratch: scratch,
        };
        // Before any attack: the node is up, so /readyz says ready.
        let ready = rig.get(rig.metrics(), "/readyz");
        assert_eq!(ready.status(), Some(200), "{}", rig.explain(&ready));
        rig
    }

    fn metrics(&self) -> SocketAddr {
        self.weir.metrics_addr()
    }

    /// `GET path` on `addr` from 127.0.0.1, waiting at most [`PROBE_WAIT`].
    fn get(&self, addr: SocketAddr, path: &str) -> RawReply {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        exchange(
            addr,
            &[request.as_bytes()],
            Duration::ZERO,
            PROBE_WAIT,
            ReadUntil::Response,
        )
    }

    /// `POST /reload` on the admin port with the token.
    fn reload(&self) -> RawReply {
        let request = format!(
            "POST /reload HTTP/1.1\r\nHost: weir\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        exchange(
            self.admin,
            &[request.as_bytes()],
            Duration::ZERO,
            PROBE_WAIT,
            ReadUntil::Response,
        )
    }

    /// Every probe and scrape answers at once, with its real content.
    fn assert_plane_answers(&self, during: &str) {
        let started = Instant::now();
        let metrics = self.get(self.metrics(), "/metrics");
        assert_eq!(
            metrics.status(),
            Some(200),
            "{during}: /metrics: {}",
            self.explain(&metrics)
        );
        let text = String::from_utf8_lossy(&metrics.body()).into_owned();
        assert!(
            text.contains("weir_info{version=") && text.contains("weir_node_state{pool=\"main\""),
            "{during}: /metrics lacks weir_info or the node's state:\n{text}"
        );
        let health = self.get(self.metrics(), "/healthz");
        assert_eq!(
            (health.status(), health.body()),
            (Some(200), b"ok\n".to_vec()),
            "{during}: /healthz: {}",
            self.explain(&health)
        );
        let ready = self.get(self.metrics(), "/readyz");
        assert_eq!(
            (ready.status(), ready.body()),
            (Some(200), b"ready\n".to_vec()),
            "{during}: /readyz: {}",
            self.explain(&ready)
        );
        let reload = self.reload();
        let body = String::from_utf8_lossy(&reload.body()).into_owned();
        assert!(
            reload.status() == Some(200) && body.contains("committed"),
            "{during}: POST /reload: {}",
            self.explain(&reload)
        );
        println!(
            "ADMIN_PLANE {during}: /metrics, /healthz, /readyz and POST /reload answered in {:.2}s",
            started.elapsed().as_secs_f64()
        );
    }

    fn explain(&self, reply: &RawReply) -> String {
        format!("{:?}; weir log:\n{}", reply.text(), self.weir.log_tail())
    }

    /// A metric's value (summed over the series `filter` keeps).
    fn metric(&self, name: &str, filter: impl Fn(&str) -> bool) -> f64 {
        self.weir.metric_sum(name, filter)
    }
}

/// weir's resident memory, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib * 1024
}

/// A TCP connection to `dst` from `src` (any address of 127/8 is this machine's).
fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from((src, 0)).into())
        .unwrap_or_else(|e| panic!("bind {src}: {e}"));
    socket
        .connect_timeout(&dst.into(), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {src} -> {dst}: {e}"));
    socket.into()
}

/// Whether weir still holds `conn` open (no EOF or reset has arrived).
fn still_open(conn: &TcpStream) -> bool {
    conn.set_nonblocking(true).expect("nonblocking");
    let mut byte = [0u8; 1];
    let open = match (&*conn).read(&mut byte) {
        Ok(0) => false,
        Ok(_) => true, // an answer (weir has not closed yet)
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    };
    conn.set_nonblocking(false).expect("blocking");
    open
}

/// Connections that send one byte of `text` per second (cycling) until `stop`.
fn drippers(
    addr: SocketAddr,
    n: usize,
    text: &'static [u8],
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut conn) = TcpStream::connect(addr) else {
                        return;
                    };
                    for &b in text.iter().cycle() {
                        if stop.load(Ordering::Relaxed) || conn.write_all(&[b]).is_err() {
                            break;
                        }
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            })
        })
        .collect()
}

/// 256 MiB without a newline into the metrics port: weir answers 431 after at most a few
/// KiB, closes, and its memory does not grow with what was sent.
#[test]
fn endless_head_is_cut_short_without_memory_growth() {
    let rig = Rig::start("admin-endless-head");
    let before = rss_bytes(rig.weir.pid());
    let mut conn = TcpStream::connect(rig.metrics()).expect("connect");
    conn.set_write_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let chunk = vec![b'A'; 64 << 10];
    let mut sent: u64 = 0;
    while sent < 256 << 20 {
        match conn.write(&chunk) {
            Ok(n) => sent += n as u64,
            Err(_) => break, // weir closed: what it answered is still readable
        }
    }
    let reply = weir_tests::raw::read_reply(&mut conn, Duration::from_secs(5), ReadUntil::Response);
    let after = rss_bytes(rig.weir.pid());
    println!(
        "ADMIN_PLANE endless head: {sent} bytes written before weir closed; VmRSS {} -> {} KiB",
        before / 1024,
        after / 1024
    );
    assert_eq!(reply.status(), Some(431), "{}", rig.explain(&reply));
    // Socket buffers on both sides take a few MiB; weir itself stopped after 8 KiB and
    // drained at most 64 KiB more.
    assert!(
        sent < 32 << 20,
        "weir took {sent} bytes of a head before closing"
    );
    assert!(
        after < before + (32 << 20),
        "weir's VmRSS grew from {before} to {after} bytes"
    );
    rig.assert_plane_answers("after an endless head");
}

/// Drippers on both ports (one byte per second) do not hold up probes, scrapes or reloads.
#[test]
fn drippers_do_not_block_probes_scrapes_or_reloads() {
    let rig = Rig::start("admin-drippers");
    let stop = Arc::new(AtomicBool::new(false));
    let text: &'static [u8] =
        b"GET /metrics HTTP/1.1\r\nHost: weir\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa";
    let mut threads = drippers(rig.metrics(), 4, text, stop.clone());
    threads.extend(drippers(rig.admin, 4, text, stop.clone()));
    // Let every dripper connect and send its first bytes.
    std::thread::sleep(Duration::from_millis(1500));
    rig.assert_plane_answers("with 8 drippers");
    std::thread::sleep(Duration::from_secs(2));
    rig.assert_plane_answers("with 8 drippers, later");
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
}

/// 32 connections from 4 addresses each pipeline 20 scrapes at once: every scrape is
/// answered in order on its connection, and probes and reloads answer meanwhile.
#[test]
fn scrape_flood_is_answered_and_probes_keep_answering() {
    let rig = Rig::start("admin-scrape-flood");
    let metrics = rig.metrics();
    let scrapers: Vec<_> = (0..32u8)
        .map(|i| {
            std::thread::spawn(move || {
                let mut conn = connect_from(Ipv4Addr::new(127, 0, 0, 2 + i % 4), metrics);
                let mut requests = "GET /metrics HTTP/1.1\r\nHost: weir\r\n\r\n".repeat(19);
                requests
                    .push_str("GET /metrics HTTP/1.1\r\nHost: weir\r\nConnection: close\r\n\r\n");
                conn.write_all(requests.as_bytes()).expect("send scrapes");
                conn.set_read_timeout(Some(Duration::from_secs(20)))
                    .expect("timeout");
                let mut bytes = Vec::new();
                let _ = conn.read_to_end(&mut bytes);
                let text = String::from_utf8_lossy(&bytes).into_owned();
                (
                    text.matches("HTTP/1.1 200 OK\r\n").count(),
                    text.matches("\nweir_info{version=").count(),
                )
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    rig.assert_plane_answers("during 32 connections of pipelined scrapes");
    let answered: Vec<(usize, usize)> = scrapers
        .into_iter()
        .map(|t| t.join().expect("scraper"))
        .collect();
    println!("ADMIN_PLANE scrape flood: (answers, metric pages) per connection {answered:?}");
    assert!(
        answered.iter().all(|a| *a == (20, 20)),
        "every connection should get its 20 scrapes: {answered:?}"
    );
}

/// Idle connections from 20 loopback addresses, 10 each, on both ports (400 in all, past
/// every cap): probes from 127.0.0.1 still answer, and weir holds at most its caps of
/// the flood (8 per address, 64 per port), closing the longest idle ones.
#[test]
fn idle_flood_from_many_addresses_leaves_probes_answering() {
    let rig = Rig::start("admin-flood");
    let mut flood: Vec<(SocketAddr, Ipv4Addr, TcpStream)> = Vec::new();
    for port in [rig.metrics(), rig.admin] {
        for host in 2..22u8 {
            let src = Ipv4Addr::new(127, 0, 0, host);
            for i in 0..10 {
                let mut conn = connect_from(src, port);
                // Half idle, half with a head that stops halfway.
                if i % 2 == 1 {
                    let _ = conn.write_all(b"GET /healthz HTTP/1.1\r\nHo");
                }
                flood.push((port, src, conn));
            }
        }
    }
    // Let weir take every connection and make room as it goes.
    std::thread::sleep(Duration::from_millis(500));
    rig.assert_plane_answers("with 400 idle connections from 20 addresses");

    let mut open_per_port = std::collections::HashMap::<SocketAddr, usize>::new();
    let mut open_per_source = std::collections::HashMap::<(SocketAddr, Ipv4Addr), usize>::new();
    for (port, src, conn) in &flood {
        if still_open(conn) {
            *open_per_port.entry(*port).or_default() += 1;
            *open_per_source.entry((*port, *src)).or_default() += 1;
        }
    }
    println!("ADMIN_PLANE flood: still open per port {open_per_port:?}");
    for (port, open) in &open_per_port {
        assert!(
            *open <= 64,
            "{port} holds {open} flood connections (cap 64)"
        );
    }
    for ((port, src), open) in &open_per_source {
        assert!(
            *open <= 8,
            "{port} holds {open} connections from {src} (cap 8)"
        );
    }
    let evicted = rig.metric("weir_control_connections_dropped_total", |l| {
        l.contains("reason=\"evicted\"")
    });
    assert!(
        evicted >= 400.0 - 2.0 * 64.0,
        "weir_control_connections_dropped_total{{reason=\"evicted\"}} = {evicted}"
    );
}

/// The admin port checks the token before anything else (a missing or wrong token with a
/// body that never comes gets 401 at once); malformed heads get 400, oversized 431, a
/// HEAD the head only, a wrong method 405; keep-alive carries several requests.
#[test]
fn token_first_strict_heads_and_keep_alive() {
    let rig = Rig::start("admin-strict");
    let send = |addr: SocketAddr, request: &[u8]| {
        exchange(
            addr,
            &[request],
            Duration::ZERO,
            PROBE_WAIT,
            ReadUntil::Response,
        )
    };
    for auth in ["", "Authorization: Bearer wrong-token-0000000000000000\r\n"] {
        let request = format!(
            "POST /reload HTTP/1.1\r\nHost: weir\r\n{auth}Content-Length: 1073741824\r\n\r\n"
        );
        let reply = send(rig.admin, request.as_bytes());
        assert_eq!(
            reply.status(),
            Some(401),
            "{auth:?}: {}",
            rig.explain(&reply)
        );
        assert!(
            reply
                .first_byte_after
                .is_some_and(|t| t < Duration::from_secs(1)),
            "401 after {:?}",
            reply.first_byte_after
        );
    }
    // With the token, a body the route does not take is refused unread: 413 by length,
    // 411 when chunked.
    for (framing, status) in [
        ("Content-Length: 5", 413),
        ("Transfer-Encoding: chunked", 411),
    ] {
        let request = format!(
            "POST /reload HTTP/1.1\r\nHost: weir\r\nAuthorization: Bearer {TOKEN}\r\n{framing}\r\n\r\n"
        );
        let reply = send(rig.admin, request.as_bytes());
        assert_eq!(
            reply.status(),
            Some(status),
            "{framing}: {}",
            rig.explain(&reply)
        );
    }
    let malformed: [&[u8]; 4] = [
        b"GET /healthz HTTP/1.1\r\nHost: weir\r\nNo colon here\r\n\r\n",
        b"GET /healthz HTTP/1.1\nHost: weir\n\n",
        b"GET /healthz HTTP/1.1\r\n\r\n",
        b"GET healthz HTTP/1.1\r\nHost: weir\r\n\r\n",
    ];
    for request in malformed {
        let reply = send(rig.metrics(), request);
        assert_eq!(
            reply.status(),
            Some(400),
            "{:?}: {}",
            String::from_utf8_lossy(request),
            rig.explain(&reply)
        );
    }
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: weir\r\nX-Big: {}\r\n\r\n",
        "b".repeat(16 << 10)
    );
    let reply = send(rig.metrics(), big.as_bytes());
    assert_eq!(reply.status(), Some(431), "{}", rig.explain(&reply));
    let many = format!(
        "GET /healthz HTTP/1.1\r\nHost: weir\r\n{}\r\n",
        (0..40).map(|i| format!("X-{i}: 1\r\n")).collect::<String>()
    );
    let reply = send(rig.metrics(), many.as_bytes());
    assert_eq!(reply.status(), Some(431), "{}", rig.explain(&reply));

    let head = exchange(
        rig.metrics(),
        &[b"HEAD /healthz HTTP/1.1\r\nHost: weir\r\nConnection: close\r\n\r\n"],
        Duration::ZERO,
        PROBE_WAIT,
        ReadUntil::Close,
    );
    assert_eq!(head.status(), Some(200), "{}", rig.explain(&head));
    assert_eq!(head.header("content-length").as_deref(), Some("3"));
    assert!(head.body().is_empty(), "HEAD got a body: {}", head.text());
    let wrong = send(
        rig.metrics(),
        b"DELETE /healthz HTTP/1.1\r\nHost: weir\r\n\r\n",
    );
    assert_eq!(wrong.status(), Some(405), "{}", rig.explain(&wrong));
    assert_eq!(wrong.header("allow").as_deref(), Some("GET, HEAD"));

    // Two requests on one connection, sent together: both answered, in order.
    let pair = exchange(
        rig.metrics(),
        &[b"GET /healthz HTTP/1.1\r\nHost: weir\r\n\r\nGET /readyz HTTP/1.1\r\nHost: weir\r\nConnection: close\r\n\r\n"],
        Duration::ZERO,
        PROBE_WAIT,
        ReadUntil::Close,
    );
    let text = pair.text();
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\n")
            && text.contains("\r\n\r\nok\nHTTP/1.1 200 OK\r\n")
            && text.ends_with("\r\n\r\nready\n"),
        "keep-alive pair: {text:?}"
    );
    // Still answering after all that.
    rig.assert_plane_answers("after bad heads");
}

/// A client that drips a head one byte per second is cut off by the 5 s request
/// deadline: its socket sees the end well before its head would have been complete.
#[test]
fn dripper_is_cut_at_the_head_deadline() {
    let rig = Rig::start("admin-drip-deadline");
    let mut conn = TcpStream::connect(rig.metrics()).expect("connect");
    conn.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let head = b"GET /healthz HTTP/1.1\r\nHost: weir\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let mut received = Vec::new();
    let mut cut = None;
    // Give up well past the deadline (the old plane waited for the whole 75 s head).
    let give_up = HEAD_TIMEOUT + Duration::from_secs(5);
    'drip: for &b in head.iter() {
        if started.elapsed() > give_up {
            break;
        }
        if conn.write_all(&[b]).is_err() {
            cut = Some(started.elapsed());
            break;
        }
        let second = Instant::now();
        while second.elapsed() < Duration::from_secs(1) {
            let mut buf = [0u8; 512];
            match conn.read(&mut buf) {
                Ok(0) => {
                    cut = Some(started.elapsed());
                    break 'drip;
                }
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => {
                    cut = Some(started.elapsed());
                    break 'drip;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&received).into_owned();
    println!("ADMIN_PLANE dripper cut after {cut:?}; received {text:?}");
    let cut =
        cut.unwrap_or_else(|| panic!("the dripper was never cut off ({} bytes sent)", head.len()));
    assert!(
        cut >= HEAD_TIMEOUT - Duration::from_millis(500)
            && cut < HEAD_TIMEOUT + Duration::from_secs(3),
        "cut after {cut:?}, the deadline is {HEAD_TIMEOUT:?}"
    );
    assert!(
        text.starts_with("HTTP/1.1 408 "),
        "the dripper should get a 408 before the close: {text:?}"
    );
    assert_eq!(
        rig.metric("weir_control_connections_dropped_total", |l| l
            .contains("listener=\"metrics\",reason=\"head_timeout\"")),
        1.0
    );
}

/// weir's open-file limit is lowered below the descriptors it has, so every accept fails
/// with EMFILE while a probe waits in the queue: weir backs off instead of spinning (it
/// burns almost no CPU meanwhile), and once descriptors are back the probe is answered.
#[test]
fn accept_errors_back_off_instead_of_spinning() {
    let rig = Rig::start("admin-emfile");
    let pid = rig.weir.pid() as libc::pid_t;
    let mut saved = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit reads into `saved`, a valid rlimit; no new limit is passed.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut saved) };
    assert_eq!(rc, 0, "read weir's open-file limit");
    // 0, 1 and 2 are always open, so with a soft limit of 3 no new descriptor fits.
    let starved = libc::rlimit {
        rlim_cur: 3,
        rlim_max: saved.rlim_max,
    };
    // SAFETY: prlimit with a valid new limit for weir's pid (our child).
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &starved, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "lower weir's open-file limit");

    let mut probe = TcpStream::connect(rig.metrics()).expect("connect (the kernel queues it)");
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: weir\r\nConnection: close\r\n\r\n")
        .expect("send the probe");
    let cpu_before = rig.weir.cpu_seconds();
    std::thread::sleep(Duration::from_secs(3));
    let cpu = rig.weir.cpu_seconds() - cpu_before;

    // SAFETY: as above, restoring the limit read at the start.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &saved, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "restore weir's open-file limit");
    let reply = weir_tests::raw::read_reply(&mut probe, PROBE_WAIT, ReadUntil::Response);
    println!("ADMIN_PLANE EMFILE: weir used {cpu:.2} CPU-s in 3 s of failing accepts");
    assert!(
        cpu < 0.3,
        "weir used {cpu:.2} CPU seconds in 3 s while every accept failed: a busy loop; log:\n{}",
        rig.weir.log_tail()
    );
    assert_eq!(
        (reply.status(), reply.body()),
        (Some(200), b"ok\n".to_vec()),
        "the queued probe once descriptors were back: {}",
        rig.explain(&reply)
    );
    // The whole log: later lines can push the warning out of the tail; and it is written
    // by weir's logging thread, so give a loaded machine a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !rig.weir.log_text().contains("accept failed; backing off")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        rig.weir.log_text().contains("accept failed; backing off"),
        "no accept warning in the log:\n{}",
        rig.weir.log_tail()
    );
}

/// The control listeners read `admin_token` (and their caps) once, at start: a reload
/// that changes the token is refused — it would otherwise report success while the old
/// token stays in force — and the old token keeps working.
#[test]
fn a_reload_that_rotates_the_admin_token_is_refused() {
    let rig = Rig::start("admin-rotate");
    let rotated = rig
        .cfg
        .clone()
        .appliance("admin_token = \"a-new-token-that-needs-a-restart\"");
    // The later `admin_token` line would be a duplicate key: drop the first one.
    let text = rig
        .weir
        .render(&rotated)
        .replacen(&format!("admin_token = \"{TOKEN}\"\n"), "", 1);
    assert!(text.contains("a-new-token-that-needs-a-restart") && !text.contains(TOKEN));
    rig.weir.write_config_text(&text);
    let reply = rig.reload();
    assert_eq!(reply.status(), Some(400), "{}", rig.explain(&reply));
    assert!(
        String::from_utf8_lossy(&reply.body())
            .contains("appliance.admin_token: the admin token changed: needs a restart"),
        "{}",
        rig.explain(&reply)
    );
    // Back to the running config: the reload commits, with the token still in force.
    rig.weir.write_config(&rig.cfg);
    rig.assert_plane_answers("after a refused token rotation");
}

/// Without an admin token the operator routes on the metrics port trust loopback; a page
/// that rebinds its DNS name to 127.0.0.1 reaches them from the operator's browser as
/// "same origin". Its requests carry its own name in `Host`, and are refused: reads,
/// node control and reloads alike. A reload from another origin's page (a form needs no
/// preflight) is refused too. Named by address, everything answers.
#[test]
fn a_rebound_dns_name_cannot_reach_the_operator_routes() {
    let scratch = Scratch::new("admin-rebinding");
    let nodes = sim::start(1, &["rb/obj-:1KiB:1"]);
    let weir = Weir::start(&WeirConfig::new(&sim::addrs(&nodes)), scratch.path());
    let metrics = weir.metrics_addr();
    let ask = |method: &str, path: &str, host: &str, extra: &str| -> RawReply {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: 0\r\n\
             Connection: close\r\n\r\n"
        );
        exchange(
            metrics,
            &[request.as_bytes()],
            Duration::ZERO,
            PROBE_WAIT,
            ReadUntil::Response,
        )
    };
    let node = sim::addrs(&nodes)[0];
    let rebound = format!("evil.example:{}", metrics.port());
    for (method, path) in [
        ("GET", "/nodes".to_string()),
        ("GET", "/flows".to_string()),
        ("GET", "/config".to_string()),
        ("GET", "/status.json".to_string()),
        ("POST", "/reload".to_string()),
        ("POST", format!("/nodes/disable?pool=main&node={node}")),
    ] {
        let reply = ask(method, &path, &rebound, "");
        assert_eq!(reply.status(), Some(403), "{method} {path} as {rebound}");
    }
    let foreign = ask(
        "POST",
        "/reload",
        &metrics.to_string(),
        "Origin: http://evil.example\r\n",
    );
    assert_eq!(foreign.status(), Some(403), "a reload from another origin");
    // The node was never disabled, and by address the same routes answer.
    let nodes_json = ask("GET", "/nodes", &metrics.to_string(), "");
    assert_eq!(nodes_json.status(), Some(200));
    assert!(
        !String::from_utf8_lossy(&nodes_json.body()).contains("\"disabled\""),
        "{}",
        String::from_utf8_lossy(&nodes_json.body())
    );
    assert_eq!(
        ask(
            "POST",
            "/reload",
            &format!("localhost:{}", metrics.port()),
            ""
        )
        .status(),
        Some(200)
    );
    // Probes and scrapes are not operator routes: any name will do.
    assert_eq!(ask("GET", "/metrics", &rebound, "").status(), Some(200));
    assert_eq!(ask("GET", "/healthz", &rebound, "").status(), Some(200));
}
