//! Identity at the edge (`docs/identity.md`) with real parts: two s3s-fs "sites" that each
//! accept only their own key pair, weir verifying clients against a tenant secrets file
//! (`[auth] mode = "verify"`) and re-signing every request for the site that serves it
//! (`credentials` per pool). The client only ever knows the tenant key
//! ([`weir_tests::ACCESS_KEY`]); a request weir forwarded unchanged would fail at either
//! site with `InvalidAccessKeyId`, so every 2xx here proves a re-signature.
//!
//! Each site sits behind a counting [`Relay`], so "never touched storage" is a count of
//! request lines the node saw.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use weir_tests::clients::s3_code;
use weir_tests::clients::{self, boto3_suite, curl_sigv4, curl_sigv4_as};
use weir_tests::data::{self, Scratch, SeedObject};
use weir_tests::nodes::{self, S3sFs};
use weir_tests::tcp::Relay;
use weir_tests::transfer::{wait_for, Transfer};
use weir_tests::weir::{PoolConfig, Weir, WeirConfig};
use weir_tests::{ACCESS_KEY, SECRET_KEY};

const MIB: u64 = 1 << 20;

/// Site A's identity (priority 0).
const SITE_A_KEY: (&str, &str) = (
    "SITEAACCESSKEY000001",
    "site-a-secret-key-00000000000000000000000",
);
/// Site B's identity (priority 1), in a `secret_file`.
const SITE_B_KEY: (&str, &str) = (
    "SITEBACCESSKEY000002",
    "site-b-secret-key-00000000000000000000000",
);

/// Two sites, seeded alike, each behind a relay, and weir in front.
struct Sites {
    site_a: S3sFs,
    _site_b: S3sFs,
    /// `None` once a test cut site A's network path.
    relay_a: Option<Relay>,
    relay_b: Relay,
    weir: Weir,
    manifest: std::path::PathBuf,
    objects: Vec<SeedObject>,
}

fn start_sites(scratch: &Scratch, sizes: &[u64]) -> Sites {
    start_sites_with(scratch, sizes, |c| c)
}

/// [`start_sites`] with weir's config amended by `amend` (tenants, appliance keys).
fn start_sites_with(
    scratch: &Scratch,
    sizes: &[u64],
    amend: impl FnOnce(WeirConfig) -> WeirConfig,
) -> Sites {
    let dir = scratch.path();
    let site_a = S3sFs::start_with_keys(dir, "site-a", SITE_A_KEY.0, SITE_A_KEY.1);
    let site_b = S3sFs::start_with_keys(dir, "site-b", SITE_B_KEY.0, SITE_B_KEY.1);
    let objects = data::seed_objects(&scratch.sub("seed"), sizes);
    let manifest = nodes::seed_as(&[site_a.endpoint()], "seeded", &objects, dir, SITE_A_KEY);
    nodes::seed_as(&[site_b.endpoint()], "seeded", &objects, dir, SITE_B_KEY);
    let (relay_a, relay_b) = (Relay::start(site_a.addr()), Relay::start(site_b.addr()));

    let secrets = dir.join("tenants.secrets");
    std::fs::write(
        &secrets,
        format!(
            "# tenant keys\n{ACCESS_KEY} = {SECRET_KEY}\nOTHERTENANT000000001 = \"other-secret\"\n"
        ),
    )
    .expect("write secrets");
    std::fs::write(dir.join("site-b.secret"), format!("{}\n", SITE_B_KEY.1)).expect("write");
    let cfg = WeirConfig::new(&[])
        .upstream("connect_timeout = \"1s\"")
        .upstream("first_byte_timeout = \"5s\"")
        .upstream("io_timeout = \"2s\"")
        .upstream("retry_ratio = 1.0")
        .pool(
            PoolConfig::new("siteA", &[relay_a.addr()])
                .key("priority = 0")
                .key(&format!(
                    "credentials = {{ access_key = \"{}\", secret = \"{}\" }}",
                    SITE_A_KEY.0, SITE_A_KEY.1
                ))
                .health("interval = \"200ms\"")
                .health("fall = 2"),
        )
        .pool(
            PoolConfig::new("siteB", &[relay_b.addr()])
                .key("priority = 1")
                .key(&format!(
                    "credentials = {{ access_key = \"{}\", secret_file = \"site-b.secret\", region = \"us-east-1\" }}",
                    SITE_B_KEY.0
                )),
        )
        .route(&["bucket = \"*\"", "pools = [\"siteA\", \"siteB\"]"])
        .extra("[auth]\nmode = \"verify\"\nsecrets_file = \"tenants.secrets\"\nskew_max = \"15m\"\n");
    let weir = Weir::start(&amend(cfg), dir);
    Sites {
        site_a,
        _site_b: site_b,
        relay_a: Some(relay_a),
        relay_b,
        weir,
        manifest,
        objects,
    }
}

/// curl with `-o body -w %{http_code}`: the status and the body.
fn curl_call(cmd: Command, url: &str, scratch: &Path) -> (u16, Vec<u8>) {
    clients::curl_status_body(cmd, url, scratch, Duration::from_secs(60))
}

/// Request lines the node behind `relay` saw (health probes left out).
fn seen(relay: &Relay) -> usize {
    relay.counters().non_probe_request_lines().len()
}

impl Sites {
    fn seen_a(&self) -> usize {
        self.relay_a.as_ref().map_or(0, seen)
    }
}

/// The boto3 read suite (GET, ranged GET, HEAD, ListObjectsV2, a presigned GET made with
/// the tenant key, keep-alive, concurrency) and curl PUT/GET/HEAD/DELETE with SHA-256
/// checks, all through weir with the tenant key only; site A serves (priority 0), and
/// nothing reached site B.
#[test]
fn tenant_key_reads_and_writes_through_a_site_with_its_own_key() {
    let scratch = Scratch::new("identity-rw");
    let mut s = start_sites(&scratch, &[0, 1, 4096, MIB, 5 * MIB + 17]);
    let b_before = seen(&s.relay_b);
    boto3_suite(
        "identity-read",
        &s.weir.endpoint(),
        "seeded",
        "read",
        Some(&s.manifest),
        scratch.path(),
    );

    // PUT (UNSIGNED-PAYLOAD, spliced body), GET, HEAD, DELETE with curl.
    let file = scratch.path().join("upload.bin");
    let sha = data::write_pattern_file(&file, 77, 3 * MIB + 5);
    let url = format!("{}/seeded/written/by-tenant", s.weir.endpoint());
    let mut put = curl_sigv4();
    put.arg("-T").arg(&file);
    let (status, body) = curl_call(put, &url, scratch.path());
    assert_eq!(status, 200, "PUT: {}", String::from_utf8_lossy(&body));
    let (status, body) = curl_call(curl_sigv4(), &url, scratch.path());
    assert_eq!(status, 200);
    assert_eq!(data::sha256_hex(&body), sha, "GET body");
    let mut head = curl_sigv4();
    head.arg("-I");
    let (status, _) = curl_call(head, &url, scratch.path());
    assert_eq!(status, 200, "HEAD");
    let mut del = curl_sigv4();
    del.args(["-X", "DELETE"]);
    let (status, _) = curl_call(del, &url, scratch.path());
    assert_eq!(status, 204, "DELETE");
    let (status, body) = curl_call(curl_sigv4(), &url, scratch.path());
    assert_eq!((status, s3_code(&body).as_str()), (404, "NoSuchKey"));

    // The object really is on site A, written under site A's identity.
    let direct = format!("{}/seeded/{}", s.site_a.endpoint(), s.objects[3].key);
    let (status, body) = curl_call(
        curl_sigv4_as(SITE_A_KEY.0, SITE_A_KEY.1),
        &direct,
        scratch.path(),
    );
    assert_eq!(status, 200);
    assert_eq!(data::sha256_hex(&body), s.objects[3].sha256);
    // And the tenant key means nothing to the site itself.
    let (status, body) = curl_call(curl_sigv4(), &direct, scratch.path());
    assert_eq!(status, 403, "site A must not know the tenant key");
    let code = s3_code(&body);
    assert!(
        ["InvalidAccessKeyId", "NotSignedUp"].contains(&code.as_str()),
        "{code}"
    );

    assert!(s.seen_a() > 10, "site A served the suite");
    assert_eq!(
        seen(&s.relay_b),
        b_before,
        "site B (priority 1) saw nothing"
    );
    let failures = s.weir.metric_sum("weir_auth_failures_total", |_| true);
    assert_eq!(failures, 0.0, "no request of the tenant was refused");
    s.weir.assert_running();
}

/// A 48 MiB GET in flight and a stream of small GETs; site A's node is SIGKILLed. The big
/// GET is resumed on site B (re-signed, Range rewritten) and arrives whole; the small
/// GETs move to site B (retried, re-signed). The client sees no error.
#[test]
fn site_a_killed_under_load_traffic_continues_on_site_b() {
    let scratch = Scratch::new("identity-failover");
    let mut s = start_sites(&scratch, &[4096, 64 * 1024, 48 * MIB]);
    let big = s.objects[2].clone();
    let big_url = format!("{}/seeded/{}", s.weir.endpoint(), big.key);
    // Slow enough that most of the body is still at the site when it dies (socket
    // buffers on loopback hold several MiB).
    let transfer = Transfer::get(&big_url, Some(6 * MIB));

    let endpoint = s.weir.endpoint();
    let small: Vec<SeedObject> = s.objects[..2].to_vec();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let scratch_path = scratch.path().to_path_buf();
    let loader = std::thread::spawn(move || {
        let mut results = Vec::new();
        let mut i = 0usize;
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            let obj = &small[i % small.len()];
            let url = format!("{endpoint}/seeded/{}", obj.key);
            let (status, body) = curl_call(curl_sigv4(), &url, &scratch_path);
            results.push((status, data::sha256_hex(&body) == obj.sha256));
            i += 1;
        }
        results
    });

    // Kill only once the big GET is provably streaming from site A: on a loaded machine
    // (CI runs several tests at once) curl can take longer than any fixed sleep to start,
    // and a GET that has not begun when site A dies is retried, not resumed.
    let site_a_relay = s.relay_a.as_ref().map(|r| r.addr().to_string());
    let target = format!("/seeded/{}", big.key);
    let (flow, _) = wait_for(
        "the big GET to stream 2 MiB from site A",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || {
            s.weir
                .flows()
                .into_iter()
                .find(|f| f["target"].as_str() == Some(target.as_str()))
                .filter(|f| f["bytes_down"].as_u64().unwrap_or(0) > 2 * MIB)
        },
    );
    assert_eq!(
        flow["node"].as_str().map(str::to_string),
        site_a_relay,
        "the big GET is served by site A before the kill: {flow}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let a_before_kill = s.seen_a();
    let b_before_kill = seen(&s.relay_b);
    // SAFETY: kill(2) touches no memory of ours; the pid is our own child's.
    let rc = unsafe { libc::kill(s.site_a.pid() as i32, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill site A");
    // And its network path: on loopback tens of MiB of the body sit in socket buffers
    // between the dead node and weir, which would finish the GET without weir noticing.
    // The relay going away cuts every connection to site A, as a site outage does.
    drop(s.relay_a.take());
    let killed = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let results = loader.join().expect("loader thread");
    let outcome = transfer.wait(Duration::from_secs(60));

    assert!(
        outcome.ok,
        "big GET failed: {outcome:?}\nweir log:\n{}",
        s.weir.log_tail()
    );
    assert_eq!(outcome.sha256, big.sha256, "big GET body");
    assert_eq!(outcome.bytes, big.size);
    let bad: Vec<_> = results
        .iter()
        .filter(|(st, ok)| *st != 200 || !ok)
        .collect();
    println!(
        "small GETs: {} ({} failed); site A saw {a_before_kill} before the kill; site B {} → {}; {:.1}s after kill",
        results.len(),
        bad.len(),
        b_before_kill,
        seen(&s.relay_b),
        killed.elapsed().as_secs_f64()
    );
    assert!(results.len() >= 5, "the load ran: {results:?}");
    assert!(bad.is_empty(), "client errors after the kill: {bad:?}");
    assert!(a_before_kill > 0, "site A served before the kill");
    assert!(seen(&s.relay_b) > b_before_kill, "site B took over");
    let resumed = s
        .weir
        .metric_sum("weir_resumes_total", |l| l.contains("outcome=\"resumed\""));
    assert!(resumed >= 1.0, "the big GET was resumed on site B");
    s.weir.assert_running();
}

/// Forged, unknown-key, unsigned, skewed and temporary-credential requests are answered
/// by weir with S3's codes, counted by reason, and never reach either site.
#[test]
fn forged_unknown_and_skewed_requests_die_at_the_edge() {
    let scratch = Scratch::new("identity-refused");
    let mut s = start_sites(&scratch, &[4096]);
    let url = format!("{}/seeded/{}", s.weir.endpoint(), s.objects[0].key);
    let (a0, b0) = (s.seen_a(), seen(&s.relay_b));

    let cases: Vec<(&str, Command, u16, &str)> = vec![
        (
            "wrong secret",
            curl_sigv4_as(ACCESS_KEY, "not-the-secret"),
            403,
            "SignatureDoesNotMatch",
        ),
        (
            "unknown key",
            curl_sigv4_as("UNKNOWNACCESSKEY0001", SECRET_KEY),
            403,
            "InvalidAccessKeyId",
        ),
        (
            "site key is not a tenant key",
            curl_sigv4_as(SITE_A_KEY.0, SITE_A_KEY.1),
            403,
            "InvalidAccessKeyId",
        ),
        ("unsigned", unsigned_curl(), 403, "AccessDenied"),
    ];
    for (what, cmd, status, code) in cases {
        let (got, body) = curl_call(cmd, &url, scratch.path());
        assert_eq!(
            (got, s3_code(&body).as_str()),
            (status, code),
            "{what}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // A valid signature by the tenant key, made with a clock six years back.
    let (got, body) = signed_at_2020(&url);
    assert_eq!(
        (got, s3_code(&body).as_str()),
        (403, "RequestTimeTooSkewed"),
        "skewed: {}",
        String::from_utf8_lossy(&body)
    );
    // Temporary credentials: refused whether curl signs the token (InvalidToken) or not
    // (an unsigned x-amz-* header: AccessDenied).
    let mut token = curl_sigv4();
    token.args(["-H", "x-amz-security-token: FwoGZXIvYXdzEXAMPLE"]);
    let (got, body) = curl_call(token, &url, scratch.path());
    let code = s3_code(&body);
    assert_eq!(
        got,
        403,
        "session token: {}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        ["InvalidToken", "AccessDenied"].contains(&code.as_str()),
        "{code}"
    );
    // A PUT with a body and a bad signature: refused before the body is read.
    let file = scratch.path().join("put.bin");
    data::write_pattern_file(&file, 5, MIB);
    let mut put = curl_sigv4_as(ACCESS_KEY, "not-the-secret");
    put.arg("-T").arg(&file);
    let (got, body) = curl_call(
        put,
        &format!("{}/seeded/forged-put", s.weir.endpoint()),
        scratch.path(),
    );
    assert_eq!(
        (got, s3_code(&body).as_str()),
        (403, "SignatureDoesNotMatch")
    );

    assert_eq!(s.seen_a(), a0, "site A saw a refused request");
    assert_eq!(seen(&s.relay_b), b0, "site B saw a refused request");
    let reason = |r: &str| {
        s.weir.metric_sum("weir_auth_failures_total", |l| {
            l.contains(&format!("reason=\"{r}\""))
        })
    };
    assert_eq!(reason("bad_signature"), 2.0);
    assert_eq!(reason("unknown_key"), 2.0);
    assert_eq!(reason("unsigned"), 1.0);
    assert_eq!(reason("skewed"), 1.0);
    assert_eq!(reason("security_token") + reason("headers_not_signed"), 1.0);
    // The tenant's own request still works afterwards.
    let (got, body) = curl_call(curl_sigv4(), &url, scratch.path());
    assert_eq!(got, 200);
    assert_eq!(data::sha256_hex(&body), s.objects[0].sha256);
    s.weir.assert_running();
}

/// Streaming-signed uploads (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`, `aws-chunked`) through
/// weir verifying the tenant's chunk chain and writing site A's: the full boto3 suite
/// (its aws-chunked PUTs with Content-Length and inside Transfer-Encoding: chunked,
/// multipart, presigned PUT, 100-continue) passes, and the objects on site A have the
/// bytes sent. A body changed after signing and a chunk larger than `chunk_bytes_max`
/// are refused with S3's codes, counted, and leave no object on the site (its request is
/// reset before the final chunk; the pure checks have unit tests in policy's `stream.rs`).
#[test]
fn streaming_signed_uploads_are_verified_and_resigned_chunk_by_chunk() {
    let scratch = Scratch::new("identity-streaming");
    let s = start_sites(&scratch, &[4096]);
    boto3_suite(
        "identity-full",
        &s.weir.endpoint(),
        "seeded",
        "full",
        None,
        scratch.path(),
    );
    let put = |key: &str, size: u64, chunk: u64, extra: &[&str]| -> (u16, String, String) {
        let mut args = vec![
            s.weir.endpoint(),
            "seeded".into(),
            key.into(),
            size.to_string(),
            chunk.to_string(),
            "signed".into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let r = clients::run_py(
            "chunked_put.py",
            &args,
            scratch.path(),
            Duration::from_secs(120),
        );
        (
            r["status"].as_u64().unwrap_or(0) as u16,
            r["body"].as_str().unwrap_or("").to_owned(),
            r["sha256"].as_str().unwrap_or("").to_owned(),
        )
    };
    let on_site_a = |key: &str| {
        curl_call(
            curl_sigv4_as(SITE_A_KEY.0, SITE_A_KEY.1),
            &format!("{}/seeded/{key}", s.site_a.endpoint()),
            scratch.path(),
        )
    };

    // Good uploads: Content-Length and Transfer-Encoding: chunked, several chunk sizes.
    for (key, size, chunk, te) in [
        ("stream/cl-64k", 5 * MIB + 333, 64 << 10, false),
        ("stream/te-128k", 3 * MIB + 1, 128 << 10, true),
        ("stream/cl-8k", 200_000, 8 << 10, false),
        ("stream/empty", 0, 64 << 10, false),
    ] {
        let extra: &[&str] = if te { &["--te"] } else { &[] };
        let (status, body, sha) = put(key, size, chunk, extra);
        assert_eq!(status, 200, "{key}: {body}");
        let (status, got) = on_site_a(key);
        assert_eq!(status, 200, "{key} on site A");
        assert_eq!(got.len() as u64, size, "{key} length on site A");
        assert_eq!(data::sha256_hex(&got), sha, "{key} bytes on site A");
    }
    let a_before = s.seen_a();

    // A bit flipped in the third chunk after signing: 403, the first two chunks went
    // out, the upload never completed.
    let (status, body, _) = put(
        "stream/tampered",
        2 * MIB,
        64 << 10,
        &["--tamper-at", "140000"],
    );
    assert_eq!(
        (status, s3_code(body.as_bytes()).as_str()),
        (403, "SignatureDoesNotMatch"),
        "{body}"
    );
    // Inside Transfer-Encoding: chunked too.
    let (status, body, _) = put(
        "stream/tampered-te",
        MIB,
        64 << 10,
        &["--te", "--tamper-at", "5"],
    );
    assert_eq!(
        (status, s3_code(body.as_bytes()).as_str()),
        (403, "SignatureDoesNotMatch"),
        "{body}"
    );
    // A 2 MiB chunk: larger than the default chunk_bytes_max (1 MiB) weir holds.
    let (status, body, _) = put("stream/huge-chunk", 3 * MIB, 2 * MIB, &[]);
    assert_eq!(
        (status, s3_code(body.as_bytes()).as_str()),
        (400, "InvalidRequest"),
        "{body}"
    );
    for key in ["stream/tampered", "stream/tampered-te", "stream/huge-chunk"] {
        let (status, body) = on_site_a(key);
        assert_eq!(
            (status, s3_code(&body).as_str()),
            (404, "NoSuchKey"),
            "{key} must not exist on site A"
        );
    }
    // A refused upload's head went out before its body was checked, and the request was
    // reset mid-body: site A sees at most that head (the reset may beat the relay's
    // forwarding), never a retry.
    assert!(
        s.seen_a() - a_before <= 3,
        "request lines site A saw: {}",
        s.seen_a() - a_before
    );
    let reason = |r: &str| {
        s.weir.metric_sum("weir_auth_failures_total", |l| {
            l.contains(&format!("reason=\"{r}\""))
        })
    };
    assert_eq!(reason("bad_chunk_signature"), 2.0);
    assert_eq!(reason("chunk_too_large"), 1.0);
    let mut weir = s.weir;
    weir.assert_running();
}

/// Per-tenant identities (`[[tenant]] pool_credentials`): a third site C accepts only its
/// own key and its pool has no `credentials`, so only a tenant holding a site-C identity
/// is served there. Tenant `main` has one (read from a file), tenant `other` has none:
/// `main` reads and writes on site C; `other`'s request reaches site C under its own
/// signature and is refused by the site itself. Site A and B's pool identities are
/// untouched for the tenant without its own.
#[test]
fn a_tenant_with_its_own_identity_for_a_pool_is_resigned_with_it() {
    const SITE_C_KEY: (&str, &str) = (
        "SITECACCESSKEY000003",
        "site-c-secret-key-00000000000000000000000",
    );
    let scratch = Scratch::new("identity-tenant-creds");
    let dir = scratch.path();
    let site_c = S3sFs::start_with_keys(dir, "site-c", SITE_C_KEY.0, SITE_C_KEY.1);
    let objects = data::seed_objects(&scratch.sub("seed-c"), &[70_000]);
    nodes::seed_as(&[site_c.endpoint()], "seeded", &objects, dir, SITE_C_KEY);
    let relay_c = Relay::start(site_c.addr());
    std::fs::write(dir.join("main-at-c.secret"), SITE_C_KEY.1).expect("write");
    let tenants = format!(
        "[[tenant]]\nname = \"main\"\naccess_keys = [\"{ACCESS_KEY}\"]\n\
         pool_credentials = {{ siteC = {{ access_key = \"{}\", secret_file = \"main-at-c.secret\" }} }}\n\
         [[tenant]]\nname = \"other\"\naccess_keys = [\"OTHERTENANT000000001\"]\n\
         [[rule]]\nbucket = \"seeded\"\npools = [\"siteC\"]\n",
        SITE_C_KEY.0
    );
    let s = start_sites_with(&scratch, &[4096], |c| {
        c.pool(PoolConfig::new("siteC", &[relay_c.addr()]).key("priority = 0"))
            .extra(&tenants)
    });
    let url = format!("{}/seeded/{}", s.weir.endpoint(), objects[0].key);

    // Tenant main: served by site C under its own site-C identity.
    let (status, body) = curl_call(curl_sigv4(), &url, dir);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(data::sha256_hex(&body), objects[0].sha256);
    // GETs of the seeded object site C saw (over whole connections: a pooled connection
    // carries several requests). The relay counts a line as it forwards it, so the count
    // can trail the answer.
    let object_gets = format!("GET /seeded/{}", objects[0].key);
    let settle = |n: usize, what: &str| {
        wait_for(
            what,
            Duration::from_secs(5),
            Duration::from_millis(20),
            || (relay_c.counters().requests_matching(&object_gets) == n).then_some(()),
        )
    };
    settle(1, "site C to have seen main's GET");

    // Tenant other: no identity for site C (and the pool has none), so site C gets the
    // client's own signature and refuses it; a 403 is an answer, not a failure to fail
    // over from, so the client sees site C's refusal.
    let (status, body) = curl_call(
        curl_sigv4_as("OTHERTENANT000000001", "other-secret"),
        &url,
        dir,
    );
    let code = s3_code(&body);
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(
        ["InvalidAccessKeyId", "NotSignedUp"].contains(&code.as_str()),
        "site C's own refusal, got {code}"
    );
    assert_eq!(
        s.weir.metric_sum("weir_auth_failures_total", |_| true),
        0.0,
        "weir refused nothing: the refusal is site C's"
    );
    settle(2, "site C to have seen the other tenant's GET");

    // Tenant main writes to site C under its own identity (last: the relay's line count
    // is exact only for requests that follow no body on their connection).
    let file = dir.join("up.bin");
    let sha = data::write_pattern_file(&file, 9, 300_000);
    let mut put = curl_sigv4();
    put.arg("-T").arg(&file);
    let put_url = format!("{}/seeded/by-main", s.weir.endpoint());
    let (status, body) = curl_call(put, &put_url, dir);
    assert_eq!(status, 200, "PUT: {}", String::from_utf8_lossy(&body));
    let (status, body) = curl_call(
        curl_sigv4_as(SITE_C_KEY.0, SITE_C_KEY.1),
        &format!("{}/seeded/by-main", site_c.endpoint()),
        dir,
    );
    assert_eq!(status, 200, "the object is on site C");
    assert_eq!(data::sha256_hex(&body), sha);
    let mut weir = s.weir;
    weir.assert_running();
}

/// The secrets file is re-read on reload: a key added to it works after `POST /reload`, a
/// key removed from it stops working, and a broken file is refused (named by file and
/// line, the secret not quoted) while the keys already loaded keep working.
#[test]
fn reload_rereads_the_secrets_file() {
    let scratch = Scratch::new("identity-reload");
    let s = start_sites(&scratch, &[4096]);
    let url = format!("{}/seeded/{}", s.weir.endpoint(), s.objects[0].key);
    let secrets = scratch.path().join("tenants.secrets");
    const NEW: (&str, &str) = (
        "ROTATEDTENANTKEY0001",
        "rotated-secret-000000000000000000000000",
    );
    let status_as =
        |keys: (&str, &str)| curl_call(curl_sigv4_as(keys.0, keys.1), &url, scratch.path()).0;
    assert_eq!(status_as((ACCESS_KEY, SECRET_KEY)), 200);
    assert_eq!(status_as(NEW), 403, "not yet in the secrets file");

    // Rotate: the new key in, the old one out.
    std::fs::write(&secrets, format!("{} = {}\n", NEW.0, NEW.1)).expect("write secrets");
    let (code, body) = s.weir.reload();
    assert_eq!(code, 200, "reload: {body}");
    assert_eq!(status_as(NEW), 200, "the added key works after the reload");
    assert_eq!(
        status_as((ACCESS_KEY, SECRET_KEY)),
        403,
        "the removed key no longer works"
    );

    // A broken file: refused, and the running keys stay.
    std::fs::write(
        &secrets,
        format!("{} = {}\nBROKEN = has a space\n", NEW.0, NEW.1),
    )
    .expect("write secrets");
    let (code, body) = s.weir.reload();
    assert_ne!(code, 200, "a broken secrets file must not load: {body}");
    assert!(body.contains("tenants.secrets:2"), "{body}");
    assert!(
        !body.contains("has a space"),
        "the secret leaked into the reply: {body}"
    );
    assert_eq!(status_as(NEW), 200, "the loaded keys keep working");
    let log = std::fs::read_to_string(scratch.path().join("weir.log")).unwrap_or_default();
    for secret in [SECRET_KEY, NEW.1, SITE_A_KEY.1, SITE_B_KEY.1, "has a space"] {
        assert!(!log.contains(secret), "a secret reached weir's log");
    }
}

fn unsigned_curl() -> Command {
    let mut cmd = Command::new(weir_tests::tools::curl());
    cmd.arg("-sS").env("NO_PROXY", "127.0.0.1,localhost");
    cmd
}

/// GET `url` signed by botocore with the tenant key at 2020-01-01T00:00:00Z (curl
/// cannot sign for another time); returns the status and body.
fn signed_at_2020(url: &str) -> (u16, Vec<u8>) {
    const SCRIPT: &str = r#"
import datetime, sys, urllib.error, urllib.request
import botocore.auth, botocore.awsrequest, botocore.credentials
botocore.auth.get_current_datetime = lambda: datetime.datetime(2020, 1, 1, 0, 0, 0)
url, ak, sk = sys.argv[1:4]
req = botocore.awsrequest.AWSRequest(method="GET", url=url)
botocore.auth.S3SigV4Auth(botocore.credentials.Credentials(ak, sk), "s3", "us-east-1").add_auth(req)
headers = dict(req.prepare().headers)
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    r = opener.open(urllib.request.Request(url, headers=headers), timeout=30)
    status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
sys.stdout.write("%d\n" % status)
sys.stdout.write(body.decode("utf-8", "replace"))
"#;
    let mut cmd = Command::new(weir_tests::tools::python());
    cmd.args(["-c", SCRIPT, url, ACCESS_KEY, SECRET_KEY])
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("AWS_CA_BUNDLE");
    let out = clients::output(&mut cmd, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (status, body) = text.split_once('\n').unwrap_or((&text, ""));
    assert!(
        out.status.success(),
        "botocore signer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (status.trim().parse().unwrap_or(0), body.as_bytes().to_vec())
}

/// Access policy at the edge: a tenant limited to `pools = ["siteB"]` is served by site B
/// although site A is preferred and up (the chain is cut to what it may use); a tenant
/// limited to `buckets = ["public-*"]` asking for another bucket gets `AccessDenied`,
/// counted, and neither site sees the request.
#[test]
fn tenant_access_policy_cuts_pools_and_denies_buckets() {
    let scratch = Scratch::new("identity-policy");
    let extra = format!(
        "[[tenant]]\nname = \"main\"\naccess_keys = [\"{ACCESS_KEY}\"]\npools = [\"siteB\"]\n\
         [[tenant]]\nname = \"other\"\naccess_keys = [\"OTHERTENANT000000001\"]\nbuckets = [\"public-*\"]\n"
    );
    let mut s = start_sites_with(&scratch, &[4096], |c| c.extra(&extra));
    let url = format!("{}/seeded/{}", s.weir.endpoint(), s.objects[0].key);
    let (a0, b0) = (s.seen_a(), seen(&s.relay_b));

    let (status, body) = curl_call(curl_sigv4(), &url, scratch.path());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(data::sha256_hex(&body), s.objects[0].sha256);
    assert_eq!(
        (s.seen_a(), seen(&s.relay_b)),
        (a0, b0 + 1),
        "tenant main (pools = [siteB]) was served by site B, not the preferred site A"
    );

    let (status, body) = curl_call(
        curl_sigv4_as("OTHERTENANT000000001", "other-secret"),
        &url,
        scratch.path(),
    );
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert_eq!(s3_code(&body), "AccessDenied");
    assert_eq!(
        (s.seen_a(), seen(&s.relay_b)),
        (a0, b0 + 1),
        "the denied request reached no site"
    );
    let denied = s.weir.metric_sum("weir_auth_failures_total", |l| {
        l.contains("reason=\"bucket_denied\"")
    });
    assert_eq!(denied, 1.0, "counted as bucket_denied");
    s.weir.assert_running();
}

/// A virtual-host addressed GET (`seeded.s3.weir.test` Host, signed by the client for that
/// Host) is verified at the edge and re-signed path-style for site A (`/seeded/<key>`,
/// the node's Host): the body arrives whole, and site A saw a path-style request line.
#[test]
fn a_virtual_host_request_is_resigned_path_style_for_the_site() {
    let scratch = Scratch::new("identity-vhost");
    let mut s = start_sites_with(&scratch, &[64 * 1024], |c| {
        c.appliance("virtual_host_suffixes = [\"s3.weir.test\"]")
    });
    let port = s.weir.addr().port();
    let key = s.objects[0].key.clone();
    let url = format!("http://seeded.s3.weir.test:{port}/{key}");
    let mut cmd = curl_sigv4();
    cmd.arg("--resolve")
        .arg(format!("seeded.s3.weir.test:{port}:127.0.0.1"));
    let (status, body) = curl_call(cmd, &url, scratch.path());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(data::sha256_hex(&body), s.objects[0].sha256, "body");
    let lines = s
        .relay_a
        .as_ref()
        .map(|r| r.counters().non_probe_request_lines())
        .unwrap_or_default();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("GET /seeded/{key} "))),
        "site A saw the request path-style: {lines:?}"
    );
    let failures = s.weir.metric_sum("weir_auth_failures_total", |_| true);
    assert_eq!(failures, 0.0, "nothing refused");
    s.weir.assert_running();
}
