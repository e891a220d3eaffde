//! The access log (docs/operations.md, "Access log" and "Request ids"), with real parts:
//! curl `--aws-sigv4` over s3s-fs (which verifies every signature) for the fields of a
//! PUT, a GET, a ranged GET and a 404; weir-sim nodes that cut bodies mid-way for honest
//! outcomes (a client that leaves, a node that dies, a resume, a drain that cuts); a
//! capturing node for the request id's way to the node and back; file rotation by `mv`
//! with and without SIGUSR1; a full disk (`/dev/full`); and RFC 5424 frames read from a
//! UDP socket the test binds.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_bench::Faults;
use weir_tests::clients::{self, curl_sigv4};
use weir_tests::data::Scratch;
use weir_tests::nodes::S3sFs;
use weir_tests::sim;
use weir_tests::transfer::{wait_for, Transfer};
use weir_tests::weir::{PoolConfig, Weir, WeirConfig};
use weir_tests::{ACCESS_KEY, SECRET_KEY};

const MIB: u64 = 1 << 20;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The access-log line whose `target` is `target` and that `also` accepts, once written.
fn line_for(
    weir: &Weir,
    target: &str,
    also: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_for(
        &format!("an access-log line for {target}"),
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            weir.access_log()
                .into_iter()
                .find(|l| l["target"] == target && also(l))
        },
    )
    .0
}

/// curl `--aws-sigv4` with `extra` arguments, its response head written to `headers`:
/// (status, body).
fn curl(url: &str, dir: &Path, headers: &Path, extra: &[&str]) -> (u16, Vec<u8>) {
    let mut cmd = curl_sigv4();
    cmd.arg("-D").arg(headers).args(extra);
    clients::curl_status_body(cmd, url, dir, Duration::from_secs(30))
}

/// A header's value from a head curl wrote with `-D`.
fn header_of(headers: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(headers).unwrap_or_default();
    text.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

fn secs(line: &serde_json::Value, field: &str) -> f64 {
    line[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is not a number: {line}"))
}

/// A PUT, a GET, a ranged GET and a 404 through weir to s3s-fs, signed by curl: each line
/// names its S3 operation, key, access key, user agent, pool and node by name, the S3
/// error code of the 404, the time split, and the request id the client got back; no
/// line holds a secret or a signature, and weir's own log has no colour codes.
#[test]
fn s3_requests_are_logged_with_their_fields() {
    let _serial = serial();
    let scratch = Scratch::new("access-log-fields");
    let dir = scratch.path();
    let node = S3sFs::start(dir, "s3s");
    let cfg = WeirConfig::new(&[]).pool(PoolConfig::new("edge-pool", &[node.addr()]));
    let weir = Weir::start_logged(&cfg, dir);
    let endpoint = weir.endpoint();
    let headers = dir.join("headers.txt");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let file = dir.join("object.bin");
    std::fs::write(&file, &data).expect("write object");

    let (status, _) = curl(&format!("{endpoint}/logs"), dir, &headers, &["-X", "PUT"]);
    assert_eq!(status, 200, "create bucket");
    let (status, _) = curl(
        &format!("{endpoint}/logs/dir/obj"),
        dir,
        &headers,
        &["-T", &file.display().to_string()],
    );
    assert_eq!(status, 200, "PUT");
    let (status, body) = curl(&format!("{endpoint}/logs/dir/obj"), dir, &headers, &[]);
    assert_eq!((status, body == data), (200, true), "GET");
    let get_id = header_of(&headers, "x-request-id").expect("the GET's answer has X-Request-Id");
    let (status, body) = curl(
        &format!("{endpoint}/logs/dir/obj"),
        dir,
        &headers,
        &["-H", "Range: bytes=100-199"],
    );
    assert_eq!((status, &body[..]), (206, &data[100..200]), "ranged GET");
    let (status, body) = curl(&format!("{endpoint}/logs/missing"), dir, &headers, &[]);
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let missing_id = header_of(&headers, "x-request-id").expect("the 404 has X-Request-Id");

    let log = wait_for(
        "five access-log lines",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let log = weir.access_log();
            (log.len() >= 5).then_some(log)
        },
    )
    .0;
    println!("ACCESS LOG\n{log:#?}");
    let node_name = node.addr().to_string();
    let by_op = |op: &str| -> Vec<&serde_json::Value> {
        log.iter().filter(|l| l["operation"] == op).collect()
    };
    assert_eq!(by_op("CreateBucket").len(), 1, "{log:#?}");
    let put = by_op("PutObject");
    assert_eq!(put.len(), 1, "{log:#?}");
    assert_eq!(put[0]["bytes_up"].as_u64(), Some(data.len() as u64));
    let gets = by_op("GetObject");
    assert_eq!(gets.len(), 3, "GET, ranged GET, 404: {log:#?}");
    for l in log.iter() {
        assert_eq!(l["access_key"], ACCESS_KEY, "{l}");
        assert!(
            l["user_agent"]
                .as_str()
                .is_some_and(|ua| ua.starts_with("curl/")),
            "{l}"
        );
        assert_eq!(l["pool"], "edge-pool", "{l}");
        assert_eq!(l["node"], node_name.as_str(), "{l}");
        assert_eq!(
            (l["outcome"].as_str(), l["ended_by"].as_str()),
            (Some("complete"), Some("node")),
            "{l}"
        );
        let (queue, connect, first, total) = (
            secs(l, "queue_seconds"),
            secs(l, "connect_seconds"),
            secs(l, "first_byte_seconds"),
            secs(l, "duration_seconds"),
        );
        assert!(
            0.0 <= queue && queue <= first && connect <= first && first <= total,
            "queue {queue} connect {connect} first byte {first} total {total}: {l}"
        );
        let text = l.to_string();
        assert!(
            !text.contains(SECRET_KEY) && !text.contains("Signature="),
            "{text}"
        );
    }
    let get = gets
        .iter()
        .find(|l| l["status"] == 200)
        .expect("the GET's line");
    assert_eq!(get["key"], "dir/obj", "{get}");
    assert_eq!(get["bucket"], "logs", "{get}");
    assert_eq!(
        get["request_id"],
        get_id.as_str(),
        "the id the client got is logged"
    );
    assert_eq!(get["bytes_expected"].as_u64(), Some(data.len() as u64));
    assert_eq!(get["bytes_down"].as_u64(), Some(data.len() as u64));
    assert_eq!(get["error_code"], serde_json::Value::Null);
    let ranged = gets
        .iter()
        .find(|l| l["status"] == 206)
        .expect("ranged GET's line");
    assert_eq!(
        (
            ranged["bytes_down"].as_u64(),
            ranged["bytes_expected"].as_u64()
        ),
        (Some(100), Some(100)),
        "{ranged}"
    );
    let missing = gets
        .iter()
        .find(|l| l["status"] == 404)
        .expect("404's line");
    assert_eq!(missing["key"], "missing", "{missing}");
    assert_eq!(missing["error_code"], "NoSuchKey", "{missing}");
    assert_eq!(missing["request_id"], missing_id.as_str(), "{missing}");

    // weir's own log goes to a file here: no terminal, so no ANSI colour codes.
    let own = std::fs::read(dir.join("weir.log")).expect("weir.log");
    assert!(
        own.len() > 100,
        "weir logged nothing: {}",
        String::from_utf8_lossy(&own)
    );
    assert!(
        !own.contains(&0x1b),
        "ESC in weir's log:\n{}",
        String::from_utf8_lossy(&own)
    );
}

/// A node that records every request head it gets and answers `hello`.
struct CapturingNode {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl CapturingNode {
    fn start() -> CapturingNode {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = heads.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_string();
                            buf.drain(..end + 4);
                            seen.lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(head.clone());
                            let mut answer = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\
                                              x-amz-request-id: NODE-RID-7\r\n\r\nhello";
                            if head.starts_with("HEAD ") {
                                answer = &answer[..answer.len() - 5];
                            }
                            if conn.write_all(answer.as_bytes()).is_err() {
                                return;
                            }
                        }
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        CapturingNode { addr, heads }
    }

    /// The `X-Request-Id` of the last request for `target`.
    fn id_for(&self, target: &str) -> Option<String> {
        let heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        heads
            .iter()
            .rev()
            .find(|h| h.starts_with(&format!("GET {target} ")))
            .map(|h| {
                h.lines()
                    .filter_map(|l| l.split_once(':'))
                    .filter(|(n, _)| n.trim().eq_ignore_ascii_case("x-request-id"))
                    .map(|(_, v)| v.trim().to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            })
    }
}

/// One GET from loopback address `from`, with `extra` header lines: the raw response.
fn get_from(from: &str, to: SocketAddr, target: &str, extra: &str) -> String {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let local: SocketAddr = format!("{from}:0").parse().expect("address");
    socket.bind(&local.into()).expect("bind a loopback source");
    socket
        .connect_timeout(&to.into(), Duration::from_secs(5))
        .expect("connect");
    let mut conn: TcpStream = socket.into();
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        conn,
        "GET {target} HTTP/1.1\r\nHost: weir\r\nConnection: close\r\n{extra}\r\n"
    )
    .expect("send");
    let mut out = Vec::new();
    let _ = conn.read_to_end(&mut out);
    String::from_utf8_lossy(&out).to_string()
}

fn response_header(response: &str, name: &str) -> Option<String> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// One id follows a request: weir makes one (or takes a trusted proxy's), the node gets
/// it in `X-Request-Id`, the client gets it back, and the log line carries it with the
/// node's own `x-amz-request-id`. An untrusted client's id is replaced, and so is one
/// hidden from the node by naming it in `Connection`.
#[test]
fn a_request_id_follows_the_request_to_the_node_and_back() {
    let _serial = serial();
    let scratch = Scratch::new("access-log-request-id");
    let node = CapturingNode::start();
    let mut cfg = WeirConfig::new(&[node.addr]);
    cfg = cfg.extra(
        "[[client_address]]\nlisten = [\"${listen}\"]\ntrusted_proxies = [\"127.0.0.1/32\"]\nheader = \"x-forwarded-for\"\n",
    );
    let weir = Weir::start_logged(&cfg, scratch.path());

    // weir's own id.
    let answer = get_from("127.0.0.1", weir.addr(), "/bkt/own", "");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let id = response_header(&answer, "x-request-id").expect("X-Request-Id in the answer");
    assert_eq!(
        node.id_for("/bkt/own"),
        Some(id.clone()),
        "the node got the same id"
    );
    let line = line_for(&weir, "/bkt/own", |_| true);
    assert_eq!(line["request_id"], id.as_str(), "{line}");
    assert_eq!(line["node_request_id"], "NODE-RID-7", "{line}");

    // A trusted proxy's id is kept end to end.
    let answer = get_from(
        "127.0.0.1",
        weir.addr(),
        "/bkt/trusted",
        "X-Request-Id: trace-4711.a\r\n",
    );
    assert_eq!(
        response_header(&answer, "x-request-id").as_deref(),
        Some("trace-4711.a")
    );
    assert_eq!(node.id_for("/bkt/trusted").as_deref(), Some("trace-4711.a"));
    let line = line_for(&weir, "/bkt/trusted", |_| true);
    assert_eq!(line["request_id"], "trace-4711.a", "{line}");

    // An untrusted client's id (127.0.0.2 is outside trusted_proxies) is replaced, even
    // when it asks for the header to be dropped on the way as hop-by-hop.
    let answer = get_from(
        "127.0.0.2",
        weir.addr(),
        "/bkt/untrusted",
        "X-Request-Id: forged\r\nConnection: close, X-Request-Id\r\n",
    );
    let id = response_header(&answer, "x-request-id").expect("X-Request-Id");
    assert_ne!(id, "forged");
    assert_eq!(
        node.id_for("/bkt/untrusted"),
        Some(id.clone()),
        "one id, weir's"
    );
    let line = line_for(&weir, "/bkt/untrusted", |_| true);
    assert_eq!(line["request_id"], id.as_str(), "{line}");
}

/// weir over simulator nodes (1 s io timeout: a stalled body is given up quickly).
fn sim_config(nodes: &[SocketAddr]) -> WeirConfig {
    WeirConfig::new(&[])
        .upstream("io_timeout = \"1s\"")
        .pool(sim::control_probe(PoolConfig::new("sims", nodes)))
}

/// A client that reads 1 MiB of a 64 MiB GET and leaves is not a plain 200; a GET whose
/// every node dies mid-body ends `node_failed` after its resumes; a GET resumed once is
/// complete, with its resume counted and weir's log line about it naming the nodes by
/// address and carrying the request id.
#[test]
fn outcomes_are_honest() {
    let _serial = serial();
    let scratch = Scratch::new("access-log-outcomes");
    let nodes = sim::start(2, &["bench/obj-:64MiB:1"]);
    let addrs = sim::addrs(&nodes);
    let weir = Weir::start_logged(&sim_config(&addrs), scratch.path());

    // The client leaves after 1 MiB.
    let mut conn = TcpStream::connect(weir.addr()).expect("connect");
    write!(conn, "GET /bench/obj-0 HTTP/1.1\r\nHost: weir\r\n\r\n").expect("send");
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    while got < MIB as usize {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    drop(conn);
    let line = line_for(&weir, "/bench/obj-0", |_| true);
    println!("CLIENT ABORT {line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["outcome"], "client_aborted", "{line}");
    assert_eq!(line["ended_by"], "client", "{line}");
    assert_eq!(line["bytes_expected"].as_u64(), Some(64 * MIB), "{line}");
    assert!(line["bytes_down"].as_u64() < Some(64 * MIB), "{line}");
    assert_eq!(line["operation"], "GetObject");
    assert!(
        line["node_request_id"]
            .as_str()
            .is_some_and(|id| id.len() == 16),
        "weir-sim's x-amz-request-id: {line}"
    );

    // Every node resets 8 MiB into the body: resumed, then failed.
    for n in &nodes {
        n.set_faults(Faults {
            reset_after_bytes: Some(8 * MIB),
            ..Faults::default()
        });
    }
    let out = Transfer::get(&format!("{}/bench/obj-0", weir.endpoint()), None)
        .wait(Duration::from_secs(60));
    assert!(!out.ok, "the GET cannot complete: {out:?}");
    let line = line_for(&weir, "/bench/obj-0", |l| l["outcome"] != "client_aborted");
    println!("NODE FAILED {line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["outcome"], "node_failed", "{line}");
    assert_eq!(line["ended_by"], "node", "{line}");
    assert!(line["resumes"].as_u64() >= Some(1), "{line}");
    assert!(line["bytes_down"].as_u64() < Some(64 * MIB), "{line}");

    // One node resets: a GET it serves is resumed on the other and completes.
    nodes[1].set_faults(Faults::default());
    let resumed = wait_for(
        "a GET resumed from the faulty node",
        Duration::from_secs(60),
        Duration::from_millis(10),
        || {
            let out = Transfer::get(&format!("{}/bench/obj-0", weir.endpoint()), None)
                .wait(Duration::from_secs(60));
            assert!(out.ok && out.bytes == 64 * MIB, "{out:?}");
            weir.access_log()
                .into_iter()
                .find(|l| l["outcome"] == "complete" && l["resumes"].as_u64() >= Some(1))
        },
    )
    .0;
    println!("RESUMED {resumed}");
    assert_eq!(resumed["bytes_down"].as_u64(), Some(64 * MIB), "{resumed}");
    assert_eq!(
        resumed["node"],
        addrs[1].to_string().as_str(),
        "served by the healthy node"
    );
    let own = std::fs::read_to_string(scratch.path().join("weir.log")).expect("weir.log");
    let id = resumed["request_id"].as_str().unwrap_or("?");
    let said = own
        .lines()
        .find(|l| l.contains("resumed GET on another node") && l.contains(id))
        .unwrap_or_else(|| panic!("no log line about resuming {id}:\n{own}"));
    assert!(
        said.contains(&addrs[0].to_string()) && said.contains(&addrs[1].to_string()),
        "node addresses, not indices: {said}"
    );
    assert!(
        !said.contains("pool: 0") && !said.contains("NodeId"),
        "{said}"
    );
}

/// A transfer the drain timeout cuts is logged (`ended_by: drain`) before weir exits.
#[test]
fn a_request_cut_by_the_drain_timeout_is_logged() {
    let _serial = serial();
    let scratch = Scratch::new("access-log-drain");
    let nodes = sim::start(1, &["bench/obj-:64MiB:1"]);
    // A slow reader: io_timeout well above its pauses, so only the drain cuts it.
    let cfg = WeirConfig::new(&[])
        .upstream("io_timeout = \"10s\"")
        .pool(sim::control_probe(PoolConfig::new(
            "sims",
            &sim::addrs(&nodes),
        )))
        .appliance("drain_grace = \"0s\"")
        .appliance("drain_timeout = \"1s\"");
    let mut weir = Weir::start_logged(&cfg, scratch.path());
    let slow = Transfer::get(&format!("{}/bench/obj-0", weir.endpoint()), Some(2 * MIB));
    wait_for(
        "the GET to be under way",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || {
            weir.flows()
                .iter()
                .any(|f| f["bytes_down"].as_u64().unwrap_or(0) > MIB)
                .then_some(())
        },
    );
    let log_path = weir.access_log_path().expect("logged").to_path_buf();
    weir.signal(libc::SIGTERM);
    let status = weir.wait_exit(Duration::from_secs(20)).expect("weir exits");
    assert!(status.success(), "{status:?}");
    let out = slow.wait(Duration::from_secs(30));
    assert!(
        !out.ok,
        "a 64 MiB GET at 2 MB/s cannot finish in 1 s: {out:?}"
    );
    let text = std::fs::read_to_string(&log_path).expect("access log");
    println!("DRAIN LOG\n{text}");
    let line: serde_json::Value = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|l: &serde_json::Value| l["target"] == "/bench/obj-0")
        .expect("the cut GET has a line");
    assert_eq!(line["ended_by"], "drain", "{line}");
    assert_eq!(line["outcome"], "drain_cut", "{line}");
    assert!(line["bytes_down"].as_u64() < Some(64 * MIB), "{line}");
}

fn small_gets(weir: &Weir, tag: &str, n: usize) {
    for i in 0..n {
        let answer = get_from(
            "127.0.0.1",
            weir.addr(),
            &format!("/bench/small-0?{tag}={i}"),
            "",
        );
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "{}",
            &answer[..answer.len().min(200)]
        );
    }
}

fn lines_in(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `mv` then SIGUSR1: the next lines go to a new file at the path; `mv` without a signal:
/// weir notices within a second and reopens too. No line is lost or written twice.
#[test]
fn the_file_is_reopened_after_rotation() {
    let _serial = serial();
    let scratch = Scratch::new("access-log-rotate");
    let nodes = sim::start(1, &["bench/small-:4KiB:1"]);
    let weir = Weir::start_logged(&sim_config(&sim::addrs(&nodes)), scratch.path());
    let path = weir.access_log_path().expect("logged").to_path_buf();
    let (first, second) = (
        scratch.path().join("access.log.1"),
        scratch.path().join("access.log.2"),
    );

    small_gets(&weir, "a", 5);
    wait_for(
        "5 lines",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || (lines_in(&path).len() == 5).then_some(()),
    );
    std::fs::rename(&path, &first).expect("mv");
    weir.signal(libc::SIGUSR1);
    std::thread::sleep(Duration::from_millis(200));
    small_gets(&weir, "b", 4);
    wait_for(
        "4 lines in the new file",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || (lines_in(&path).len() == 4).then_some(()),
    );

    std::fs::rename(&path, &second).expect("mv again");
    std::thread::sleep(Duration::from_millis(1500));
    small_gets(&weir, "c", 3);
    wait_for(
        "3 lines in the newest file",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || (lines_in(&path).len() == 3).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(300));
    // Sorted: two cores' lines interleave by collection, not by request.
    let tags = |p: &Path| -> Vec<String> {
        let mut tags: Vec<String> = lines_in(p)
            .iter()
            .map(|l| {
                l["target"]
                    .as_str()
                    .unwrap_or("")
                    .split('?')
                    .nth(1)
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        tags.sort();
        tags
    };
    assert_eq!(tags(&first), ["a=0", "a=1", "a=2", "a=3", "a=4"]);
    assert_eq!(tags(&second), ["b=0", "b=1", "b=2", "b=3"]);
    assert_eq!(tags(&path), ["c=0", "c=1", "c=2"]);
    assert_eq!(
        weir.metric_sum("weir_access_log_lines_lost_total", |_| true),
        0.0
    );
}

/// A log target that cannot take lines (`/dev/full`: every write fails with ENOSPC)
/// counts each lost line; requests are served all the same.
#[test]
fn lines_lost_to_a_full_disk_are_counted() {
    let _serial = serial();
    let scratch = Scratch::new("access-log-full");
    let nodes = sim::start(1, &["bench/small-:4KiB:1"]);
    let cfg = sim_config(&sim::addrs(&nodes)).appliance("access_log = \"/dev/full\"");
    let weir = Weir::start(&cfg, scratch.path());
    small_gets(&weir, "full", 6);
    wait_for(
        "6 lost lines counted",
        Duration::from_secs(5),
        Duration::from_millis(100),
        || (weir.metric_sum("weir_access_log_lines_lost_total", |_| true) == 6.0).then_some(()),
    );
}

/// `access_log = "syslog:udp://…"`: each line is one RFC 5424 datagram — PRI local0.info,
/// VERSION 1, an RFC 3339 UTC timestamp, the host name, APP-NAME weir, weir's pid,
/// MSGID access, no structured data — whose MSG is the JSON line.
#[test]
fn syslog_frames_are_rfc5424() {
    let _serial = serial();
    let scratch = Scratch::new("access-log-syslog");
    let nodes = sim::start(1, &["bench/small-:4KiB:1"]);
    let sink = UdpSocket::bind("127.0.0.1:0").expect("bind syslog sink");
    sink.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let cfg = sim_config(&sim::addrs(&nodes)).appliance(&format!(
        "access_log = \"syslog:udp://{}\"",
        sink.local_addr().expect("addr")
    ));
    let weir = Weir::start(&cfg, scratch.path());
    small_gets(&weir, "sys", 2);
    let mut frames = Vec::new();
    let mut buf = vec![0u8; 65536];
    while frames.len() < 2 {
        let n = sink.recv(&mut buf).expect("a syslog datagram within 5 s");
        frames.push(String::from_utf8(buf[..n].to_vec()).expect("UTF-8 frame"));
    }
    for (i, frame) in frames.iter().enumerate() {
        println!("SYSLOG {frame}");
        let parts: Vec<&str> = frame.splitn(8, ' ').collect();
        assert_eq!(parts.len(), 8, "{frame}");
        assert_eq!(parts[0], "<134>1", "PRI local0.info, VERSION 1: {frame}");
        let ts = parts[1].as_bytes();
        assert!(
            ts.len() == 27
                && ts[4] == b'-'
                && ts[7] == b'-'
                && ts[10] == b'T'
                && ts[13] == b':'
                && ts[19] == b'.'
                && ts[26] == b'Z',
            "RFC 3339 timestamp: {}",
            parts[1]
        );
        assert!(
            !parts[2].is_empty() && parts[2].bytes().all(|b| b.is_ascii_graphic()),
            "{frame}"
        );
        assert_eq!(parts[3], "weir", "{frame}");
        assert_eq!(parts[4], weir.pid().to_string(), "{frame}");
        assert_eq!(parts[5], "access", "{frame}");
        assert_eq!(parts[6], "-", "{frame}");
        let json: serde_json::Value = serde_json::from_str(parts[7]).expect("MSG is JSON");
        assert_eq!(json["target"], format!("/bench/small-0?sys={i}"), "{frame}");
        assert_eq!(json["status"], 200);
    }
}
