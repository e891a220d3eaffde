//! Request targets with real parts: weir decides on exactly the bucket the storage node
//! acts on (docs/identity.md, "Request targets"). weir verifies signatures
//! (`[auth] mode = "verify"`) in front of bench simulator nodes that count every request
//! they see; a tenant `lab` may use `lab-*` only, and `bench` is routed to pool `b`.
//!
//! The attacker is the `lab` tenant itself: it holds its own secret, so it signs whatever
//! spelling it sends (and, as in the report, also sends requests signed for
//! `/bench/small-0` under other spellings). Every spelling of `bench` — percent-encoded,
//! `//`, `.`/`..` segments, `\`, an encoded slash, virtual-host names in any case, with a
//! trailing dot or a port — is refused (400 or 403) and no node sees it; the allowed
//! bucket still works, path-style and virtual-host. Nor can a copy source name `bench`.
//! Spellings cannot move `bench` off its route to the first pool, nor past a per-bucket
//! rate limit.
//!
//! The pools re-sign (`credentials`) and the nodes check those signatures, so a
//! virtual-host request reaches the node path-style, with the bucket weir decided on.

use std::time::{Duration, Instant, SystemTime};

use weir_bench::sigv4::{self, Credentials, Signer};
use weir_bench::SimNode;
use weir_tests::data::Scratch;
use weir_tests::raw::{exchange, RawReply, ReadUntil};
use weir_tests::sim;
use weir_tests::weir::{PoolConfig, Weir, WeirConfig};

/// The `lab` tenant: `buckets = ["lab-*"]`.
const LAB: (&str, &str) = (
    "LABTENANTKEY00000001",
    "lab-tenant-secret-0000000000000000000000",
);
/// The `ops` tenant: any bucket.
const OPS: (&str, &str) = (
    "OPSTENANTKEY00000001",
    "ops-tenant-secret-0000000000000000000000",
);
/// The identity weir re-signs with for the nodes (which check it).
const SITE: (&str, &str) = (
    "SITEKEY0000000000001",
    "site-secret-key-000000000000000000000000",
);
/// Virtual-host suffix.
const SUFFIX: &str = "s3.weir.test";
/// Bytes of every synthetic object.
const OBJECT_BYTES: usize = 4096;

/// weir in front of pools `a` (first: where "no bucket" used to go) and `b` (`bench`).
struct Setup {
    weir: Weir,
    node_a: SimNode,
    node_b: SimNode,
}

fn start(scratch: &Scratch, extra: &str) -> Setup {
    let specs = ["bench/small-:4KiB:1", "lab-x/obj-:4KiB:1"];
    let node_a = sim::start(1, &specs).remove(0);
    let node_b = sim::start(1, &specs).remove(0);
    for node in [&node_a, &node_b] {
        node.check_sigv4(SITE.0, SITE.1);
    }
    let dir = scratch.path();
    std::fs::write(
        dir.join("tenants.secrets"),
        format!("{} = {}\n{} = {}\n", LAB.0, LAB.1, OPS.0, OPS.1),
    )
    .expect("write secrets");
    let credentials = format!(
        "credentials = {{ access_key = \"{}\", secret = \"{}\" }}",
        SITE.0, SITE.1
    );
    let cfg = WeirConfig::new(&[])
        .appliance(&format!("virtual_host_suffixes = [\"{SUFFIX}\"]"))
        .pool(sim::control_probe(
            PoolConfig::new("a", &[node_a.addr()]).key(&credentials),
        ))
        .pool(sim::control_probe(
            PoolConfig::new("b", &[node_b.addr()]).key(&credentials),
        ))
        .route(&["bucket = \"bench\"", "pool = \"b\""])
        .extra(&format!(
            r#"
[auth]
mode = "verify"
secrets_file = "tenants.secrets"

[[tenant]]
name = "lab"
access_keys = ["{}"]
buckets = ["lab-*"]

[[tenant]]
name = "ops"
access_keys = ["{}"]
{extra}
"#,
            LAB.0, OPS.0
        ));
    let weir = Weir::start(&cfg, dir);
    Setup {
        weir,
        node_a,
        node_b,
    }
}

impl Setup {
    /// Requests each node has seen.
    fn seen(&self) -> (u64, u64) {
        (self.node_a.stats().requests, self.node_b.stats().requests)
    }

    /// Sends `method sent` with `Host: host`, signed by `who` for path `signed_path`.
    fn send(
        &self,
        who: (&str, &str),
        method: &str,
        host: &str,
        sent: &str,
        signed_path: &str,
        body: &[u8],
    ) -> RawReply {
        let mut signer = Signer::new(Credentials {
            access_key: who.0.into(),
            secret_key: who.1.into(),
            region: "us-east-1".into(),
        });
        let lines = signer.header_lines(method, signed_path, host, SystemTime::now());
        let length = if body.is_empty() && method != "PUT" {
            String::new()
        } else {
            format!("Content-Length: {}\r\n", body.len())
        };
        let mut request = format!(
            "{method} {sent} HTTP/1.1\r\nHost: {host}\r\n{lines}{length}Connection: close\r\n\r\n"
        )
        .into_bytes();
        request.extend_from_slice(body);
        exchange(
            self.weir.addr(),
            &[&request],
            Duration::ZERO,
            Duration::from_secs(10),
            ReadUntil::Response,
        )
    }

    /// A CopyObject `PUT target` from `source` (`x-amz-copy-source`, signed) by `who`.
    fn copy(&self, who: (&str, &str), target: &str, source: &str) -> RawReply {
        let mut signer = Signer::new(Credentials {
            access_key: who.0.into(),
            secret_key: who.1.into(),
            region: "us-east-1".into(),
        });
        let host = self.weir.addr().to_string();
        let date = sigv4::amz_date(SystemTime::now());
        let authorization = signer.authorization(
            "PUT",
            &sigv4::uri_encode_path(&decode(target)),
            "",
            &[
                ("host", &host),
                ("x-amz-content-sha256", sigv4::UNSIGNED_PAYLOAD),
                ("x-amz-copy-source", source),
                ("x-amz-date", &date),
            ],
            sigv4::UNSIGNED_PAYLOAD,
            &date,
        );
        let request = format!(
            "PUT {target} HTTP/1.1\r\nHost: {host}\r\nx-amz-content-sha256: {}\r\n\
             x-amz-copy-source: {source}\r\nx-amz-date: {date}\r\nAuthorization: {authorization}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            sigv4::UNSIGNED_PAYLOAD
        );
        exchange(
            self.weir.addr(),
            &[request.as_bytes()],
            Duration::ZERO,
            Duration::from_secs(10),
            ReadUntil::Response,
        )
    }

    /// [`Setup::send`], signed for exactly what is sent (the canonical, decoded path:
    /// what a client holding the secret signs for that target).
    fn send_signed_as_sent(
        &self,
        who: (&str, &str),
        method: &str,
        host: &str,
        sent: &str,
        body: &[u8],
    ) -> RawReply {
        self.send(who, method, host, sent, &decode(sent), body)
    }
}

/// The percent-decoded path (what SigV4 canonicalises before re-encoding).
fn decode(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) if b[i] == b'%' => {
                out.push(byte);
                i += 3;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `<Code>` of an S3 XML error body.
fn s3_code(reply: &RawReply) -> String {
    let text = String::from_utf8_lossy(&reply.body()).into_owned();
    text.split("<Code>")
        .nth(1)
        .and_then(|rest| rest.split("</Code>").next())
        .unwrap_or("")
        .to_string()
}

/// Every spelling of bucket `bench` that the attack tried: (Host, target). `None` as the
/// Host means weir's own address (path-style).
fn bench_spellings() -> Vec<(Option<String>, &'static str)> {
    let path_style = [
        "/%62ench/small-0",
        "/%62%65%6E%63%68/small-0",
        "//bench/small-0",
        "/./bench/small-0",
        "/lab-x/../bench/small-0",
        "/lab-x/%2e%2e/bench/small-0",
        "/lab-x/..%2Fbench/small-0",
        "/lab-x\\..\\bench/small-0",
        "/bench%2Fsmall-0",
        "/BENCH/small-0",
        "/bench/small-0",
    ];
    let mut out: Vec<(Option<String>, &'static str)> =
        path_style.into_iter().map(|p| (None, p)).collect();
    for host in [
        format!("BENCH.{SUFFIX}"),
        format!("bench.{SUFFIX}."),
        format!("bench.{SUFFIX}:9000"),
        format!("Bench.{}.:9000", SUFFIX.to_ascii_uppercase()),
        format!("bench.{SUFFIX}.."),
    ] {
        out.push((Some(host.clone()), "/small-0"));
        // The bucket the tenant may use in the path: the Host names the bucket.
        out.push((Some(host), "/lab-x/obj-0"));
    }
    out
}

/// The reported attack and its class: `lab`, limited to `lab-*`, sends GET, PUT and
/// DELETE for `bench/small-0` under every spelling, signed as sent and signed for
/// `/bench/small-0`. Every one is refused with 400 or 403, no node sees any of them, and
/// the refusals are counted; `lab-x` works path-style and virtual-host.
#[test]
fn no_spelling_of_a_bucket_escapes_the_tenant_policy() {
    let scratch = Scratch::new("targets-policy");
    let mut s = start(&scratch, "");
    let weir_host = s.weir.addr().to_string();

    let mut served = Vec::new();
    for (host, sent) in bench_spellings() {
        let host = host.unwrap_or_else(|| weir_host.clone());
        for method in ["GET", "PUT", "DELETE"] {
            let body: &[u8] = if method == "PUT" { b"overwritten" } else { b"" };
            for (how, reply) in [
                (
                    "signed as sent",
                    s.send_signed_as_sent(LAB, method, &host, sent, body),
                ),
                (
                    "signed for /bench/small-0",
                    s.send(LAB, method, &host, sent, "/bench/small-0", body),
                ),
            ] {
                let status = reply.status();
                if !matches!(status, Some(400 | 403)) {
                    served.push(format!(
                        "{method} {sent} Host: {host} ({how}): {status:?} {}",
                        s3_code(&reply)
                    ));
                }
            }
        }
    }
    // CopyObject reads a second bucket: naming bench there, in any spelling, is refused.
    for source in [
        "bench/small-0",
        "/bench/small-0",
        "/bench/small-0?versionId=1",
        "%62ench/small-0",
        "//bench/small-0",
        "lab-x/../bench/small-0",
        "lab-x/%2e%2e/bench/small-0",
        "BENCH/small-0",
        // Nodes that split only at `?versionId=` read the rest as key.
        "lab-x/x?/../../bench/small-0",
        "lab-x/x?/%2e%2e/%2e%2e/bench/small-0",
        "lab-x/x?partNumber=1/../../bench/small-0",
    ] {
        let reply = s.copy(LAB, "/lab-x/stolen", source);
        if !matches!(reply.status(), Some(400 | 403)) {
            served.push(format!(
                "copy from {source}: {:?} {}",
                reply.status(),
                s3_code(&reply)
            ));
        }
    }
    assert_eq!(
        s.seen(),
        (0, 0),
        "no node may see a spelling of bench: {served:#?}"
    );
    assert!(served.is_empty(), "served: {served:#?}");

    // Refused as ambiguous (400) or as bench (403), each counted.
    let counted = |reason: &str| {
        s.weir.metric_sum("weir_auth_failures_total", |l| {
            l.contains(&format!("reason=\"{reason}\""))
        })
    };
    assert!(
        counted("ambiguous_target") >= 10.0,
        "{}",
        s.weir.metrics_text()
    );
    assert!(counted("invalid_bucket_name") >= 1.0);
    assert!(counted("bucket_denied") >= 10.0);
    let reply = s.send_signed_as_sent(LAB, "GET", &weir_host, "/%62ench/small-0", b"");
    assert_eq!(
        (reply.status(), s3_code(&reply).as_str()),
        (Some(400), "InvalidURI")
    );
    let reply = s.send_signed_as_sent(LAB, "GET", &format!("BENCH.{SUFFIX}"), "/small-0", b"");
    assert_eq!(
        (reply.status(), s3_code(&reply).as_str()),
        (Some(403), "AccessDenied")
    );

    // The control: lab's own bucket, path-style and virtual-host (any case, trailing dot,
    // port), reaches pool a and is served with the object's bytes.
    let before = s.seen();
    for (host, target) in [
        (weir_host.clone(), "/lab-x/obj-0"),
        (format!("lab-x.{SUFFIX}"), "/obj-0"),
        (format!("LAB-X.{SUFFIX}.:80"), "/obj-0"),
    ] {
        let reply = s.send_signed_as_sent(LAB, "GET", &host, target, b"");
        assert_eq!(
            reply.status(),
            Some(200),
            "{host} {target}: {}",
            reply.text()
        );
        assert_eq!(reply.body().len(), OBJECT_BYTES, "{host} {target}");
    }
    let reply = s.send_signed_as_sent(LAB, "PUT", &weir_host, "/lab-x/new-0", b"0123456789");
    assert_eq!(reply.status(), Some(200), "{}", reply.text());
    let reply = s.copy(LAB, "/lab-x/copied", "/lab-x/obj-0");
    assert_eq!(
        reply.status(),
        Some(200),
        "a copy within lab-x: {}",
        reply.text()
    );
    assert_eq!(
        s.seen(),
        (before.0 + 5, before.1),
        "lab-x is served by pool a"
    );

    // Named both ways, the Host wins (as in S3): the path is a key inside lab-x, and the
    // node is asked for exactly that (re-signed path-style), never for bench/small-0.
    for host in [format!("lab-x.{SUFFIX}"), format!("Lab-X.{SUFFIX}")] {
        let reply = s.send_signed_as_sent(LAB, "GET", &host, "/bench/small-0", b"");
        assert_eq!(
            (reply.status(), s3_code(&reply).as_str()),
            (Some(404), "NoSuchKey"),
            "{host}: {}",
            reply.text()
        );
    }
    assert_eq!(s.seen(), (before.0 + 7, before.1));
    assert_eq!(
        s.node_a.stats().sigv4_failures,
        0,
        "every forwarded head was re-signed"
    );
    s.weir.assert_running();
}

/// `bench` is routed to pool `b`: no spelling moves it to pool `a` (the first pool, where
/// a target without a valid bucket used to go). The `ops` tenant may use any bucket.
#[test]
fn no_spelling_of_a_bucket_escapes_its_route() {
    let scratch = Scratch::new("targets-route");
    let mut s = start(&scratch, "");
    let weir_host = s.weir.addr().to_string();
    let mut answers = Vec::new();
    for (host, sent) in bench_spellings() {
        if sent == "/lab-x/obj-0" {
            continue; // that is lab-x, not bench, for every Host that is refused or bench
        }
        let host = host.unwrap_or_else(|| weir_host.clone());
        let reply = s.send_signed_as_sent(OPS, "GET", &host, sent, b"");
        answers.push((host, sent, reply.status()));
    }
    let (a, b) = s.seen();
    assert_eq!(a, 0, "pool a saw a spelling of bench: {answers:#?}");
    // What was served was served by b, as bench/small-0: the canonical path-style
    // request and the virtual-host names (any case, a trailing dot, a port).
    let served: Vec<_> = answers.iter().filter(|a| a.2 == Some(200)).collect();
    assert_eq!(served.len() as u64, b, "{answers:#?}");
    assert_eq!(b, 5, "{answers:#?}");
    for (host, sent, status) in &answers {
        assert!(
            matches!(status, Some(200 | 400)),
            "{host} {sent}: {status:?}"
        );
    }
    s.weir.assert_running();
}

/// A per-bucket rate (`bucket_requests_per_sec`) holds for `bench` however it is spelled:
/// a stream of GETs cycling through the spellings reaches the storage (both pools
/// together) no faster than the rate allows.
#[test]
fn no_spelling_of_a_bucket_escapes_its_rate_limit() {
    const RATE: f64 = 4.0;
    let scratch = Scratch::new("targets-rate");
    let mut s = start(
        &scratch,
        &format!(
            "\n[limits]\nbucket_requests_per_sec = {RATE}\nburst = \"250ms\"\n\n\
             [[class]]\nname = \"short\"\nqueue_timeout = \"100ms\"\n"
        ),
    );
    let weir_host = s.weir.addr().to_string();
    let spellings: Vec<(String, &str)> = bench_spellings()
        .into_iter()
        .filter(|(_, sent)| *sent != "/lab-x/obj-0")
        .map(|(h, sent)| (h.unwrap_or_else(|| weir_host.clone()), sent))
        .collect();
    let started = Instant::now();
    let mut statuses = std::collections::BTreeMap::<Option<u16>, u64>::new();
    for round in 0..6 {
        if round > 0 {
            // Spread over time, so the bound is a rate and not just the burst.
            std::thread::sleep(Duration::from_millis(250));
        }
        for (host, sent) in &spellings {
            let reply = s.send_signed_as_sent(OPS, "GET", host, sent, b"");
            *statuses.entry(reply.status()).or_default() += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (a, b) = s.seen();
    // rate × time + the burst (1 token) + one request per core (2) + 1 for rounding.
    let bound = (RATE * elapsed + RATE * 0.25 + 3.0).floor() as u64;
    println!(
        "RATE: {} requests over {elapsed:.2}s, nodes saw a={a} b={b}, bound {bound}; statuses {statuses:?}",
        6 * spellings.len()
    );
    assert!(
        a + b <= bound,
        "storage saw {} > {bound}: {statuses:?}",
        a + b
    );
    assert!(
        b >= 1,
        "the canonical spelling is served at the rate: {statuses:?}"
    );
    assert!(
        statuses.get(&Some(503)).copied().unwrap_or(0) > 0,
        "over the rate, SlowDown: {statuses:?}"
    );
    s.weir.assert_running();
}

/// A request signed by `who` with its credentials laid out as an attacker may: the
/// header-signed form with a tab after the scheme and no spaces (the verifier reads it),
/// and `query` (raw, already canonical: one parameter) signed with it; or, `presigned`,
/// a presigned URL with `query` in front of its parameters.
fn crafted(
    s: &Setup,
    who: (&str, &str),
    method: &str,
    path: &str,
    query: &str,
    presigned: bool,
    body: &[u8],
) -> RawReply {
    let host = s.weir.addr().to_string();
    let now = SystemTime::now();
    let date = sigv4::amz_date(now);
    let scope = format!("{}/us-east-1/s3/aws4_request", &date[..8]);
    let key = sigv4::signing_key(who.1, &date[..8], "us-east-1", "s3");
    let uri = sigv4::uri_encode_path(path);
    let length = if body.is_empty() && method != "PUT" {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    let request = if presigned {
        let mut params = [
            query.to_string(),
            "X-Amz-Algorithm=AWS4-HMAC-SHA256".to_string(),
            format!("X-Amz-Credential={}%2F{}", who.0, scope.replace('/', "%2F")),
            format!("X-Amz-Date={date}"),
            "X-Amz-Expires=300".to_string(),
            "X-Amz-SignedHeaders=host".to_string(),
        ];
        let sent = params.join("&");
        params.sort();
        let canonical = sigv4::canonical_request(
            method,
            &uri,
            &params.join("&"),
            &[("host", &host)],
            "host",
            sigv4::UNSIGNED_PAYLOAD,
        );
        let signature = sigv4::request_signature(&key, &date, &scope, &canonical);
        format!(
            "{method} {path}?{sent}&X-Amz-Signature={signature} HTTP/1.1\r\nHost: {host}\r\n\
             {length}Connection: close\r\n\r\n"
        )
    } else {
        let headers = [
            ("host", host.as_str()),
            ("x-amz-content-sha256", sigv4::UNSIGNED_PAYLOAD),
            ("x-amz-date", date.as_str()),
        ];
        let signed = "host;x-amz-content-sha256;x-amz-date";
        let canonical = sigv4::canonical_request(
            method,
            &uri,
            query,
            &headers,
            signed,
            sigv4::UNSIGNED_PAYLOAD,
        );
        let signature = sigv4::request_signature(&key, &date, &scope, &canonical);
        let target = if query.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{query}")
        };
        format!(
            "{method} {target} HTTP/1.1\r\nHost: {host}\r\nx-amz-content-sha256: {}\r\n\
             x-amz-date: {date}\r\nAuthorization: AWS4-HMAC-SHA256\tCredential={}/{scope},\
             SignedHeaders={signed},Signature={signature}\r\n{length}Connection: close\r\n\r\n",
            sigv4::UNSIGNED_PAYLOAD,
            who.0
        )
    };
    let mut request = request.into_bytes();
    request.extend_from_slice(body);
    exchange(
        s.weir.addr(),
        &[&request],
        Duration::ZERO,
        Duration::from_secs(10),
        ReadUntil::Response,
    )
}

/// With verification on, the tenant is the key whose signature weir verified, however the
/// request lays out or repeats credentials: `lab` signs requests for `bench` with a tab
/// after the scheme, with `ops`'s key id in the query (`x-amz-credential`,
/// `AWSAccessKeyId`), and as presigned URLs with `ops`'s key id in front. Every one is
/// 403 AccessDenied (bucket_denied) and no node sees it. The same requests signed by
/// `ops` are served: the layouts verify, so nothing but the tenant decides.
#[test]
fn the_tenant_is_the_key_that_signed() {
    let scratch = Scratch::new("targets-signer");
    let mut s = start(&scratch, "");
    let others = [
        ("", false),
        ("x-amz-credential=OPSTENANTKEY00000001%2Fx", false),
        ("AWSAccessKeyId=OPSTENANTKEY00000001", false),
        ("x-amz-credential=OPSTENANTKEY00000001%2Fx", true),
        ("AWSAccessKeyId=OPSTENANTKEY00000001", true),
    ];
    let mut wrong = Vec::new();
    for &(query, presigned) in &others {
        for method in ["GET", "PUT", "DELETE"] {
            let body: &[u8] = if method == "PUT" {
                b"owned-by-lab"
            } else {
                b""
            };
            if presigned && method != "GET" {
                continue;
            }
            let reply = crafted(&s, LAB, method, "/bench/small-0", query, presigned, body);
            let got = (reply.status(), s3_code(&reply));
            if got != (Some(403), "AccessDenied".to_string()) {
                wrong.push(format!("{method} {query:?} presigned={presigned}: {got:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "lab reached bench: {wrong:#?}");
    assert_eq!(s.seen(), (0, 0), "no node may see lab's requests for bench");
    let denied = s.weir.metric_sum("weir_auth_failures_total", |l| {
        l.contains("reason=\"bucket_denied\"")
    });
    assert_eq!(denied, 11.0, "{}", s.weir.metrics_text());

    // The control: ops signs the same layouts, and they are served from pool b.
    for &(query, presigned) in &others {
        let reply = crafted(&s, OPS, "GET", "/bench/small-0", query, presigned, b"");
        assert_eq!(
            (reply.status(), reply.body().len()),
            (Some(200), OBJECT_BYTES),
            "ops {query:?} presigned={presigned}: {}",
            reply.text()
        );
    }
    assert_eq!(s.seen(), (0, others.len() as u64));
    s.weir.assert_running();
}

/// Operation rules count what the node does: `POST /bucket?%64elete` is DeleteObjects to
/// the node, so it is a `delete` to weir (metrics and `op` rules), not `other`: the
/// node-side request counts name it so.
#[test]
fn an_encoded_subresource_name_is_the_operation_it_names() {
    let scratch = Scratch::new("targets-op");
    let mut s = start(&scratch, "");
    let host = s.weir.addr().to_string();
    let body = b"<Delete><Object><Key>obj-0</Key></Object></Delete>";
    let mut statuses = Vec::new();
    for sent in [
        "/lab-x?delete",
        "/lab-x?%64elete",
        "/lab-x?%64%65%6C%65%74%65",
    ] {
        let (path, query) = sent.split_once('?').expect("a query");
        let mut signer = Signer::new(Credentials {
            access_key: LAB.0.into(),
            secret_key: LAB.1.into(),
            region: "us-east-1".into(),
        });
        let date = sigv4::amz_date(SystemTime::now());
        // SigV4 canonicalises the query name decoded and re-encoded: `delete=`.
        let authorization = signer.authorization(
            "POST",
            path,
            "delete=",
            &[
                ("host", &host),
                ("x-amz-content-sha256", sigv4::UNSIGNED_PAYLOAD),
                ("x-amz-date", &date),
            ],
            sigv4::UNSIGNED_PAYLOAD,
            &date,
        );
        let mut request = format!(
            "POST {path}?{query} HTTP/1.1\r\nHost: {host}\r\nx-amz-content-sha256: {}\r\n\
             x-amz-date: {date}\r\nAuthorization: {authorization}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            sigv4::UNSIGNED_PAYLOAD,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        let reply = exchange(
            s.weir.addr(),
            &[&request],
            Duration::ZERO,
            Duration::from_secs(10),
            ReadUntil::Response,
        );
        statuses.push((sent, reply.status()));
    }
    // The node acts on all three spellings alike: the same answer to each.
    assert!(
        statuses[0].1.is_some() && statuses.iter().all(|s| s.1 == statuses[0].1),
        "{statuses:?}"
    );
    let ops = |op: &str| {
        s.weir.metric_sum("weir_node_requests_total", |l| {
            l.contains(&format!("op=\"{op}\""))
        })
    };
    assert_eq!(
        (ops("delete"), ops("other")),
        (3.0, 0.0),
        "{}",
        s.weir.metrics_text()
    );
    s.weir.assert_running();
}
