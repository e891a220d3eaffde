//! Browser-form uploads (`POST /bucket`, `multipart/form-data`, a SigV4 POST policy in the
//! fields before the file) through weir with `[auth] mode = "verify"`, in front of s3s-fs
//! 0.14.1 (which takes POST uploads and checks their policy and signature itself). The
//! forms are made by botocore's `generate_presigned_post` with the tenant key
//! (`tests/py/presign_post.py`) and sent by curl `-F`, fields first and the file last, as
//! a browser sends them.
//!
//! The node sits behind a counting [`Relay`], so "never reached storage" is a count of the
//! request lines it saw.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use weir_tests::clients::s3_code;
use weir_tests::clients::{self, curl_sigv4, curl_sigv4_as};
use weir_tests::data::{self, Scratch};
use weir_tests::nodes::{self, S3sFs};
use weir_tests::tcp::Relay;
use weir_tests::weir::{PoolConfig, Weir, WeirConfig};
use weir_tests::{ACCESS_KEY, SECRET_KEY};

const MIB: u64 = 1 << 20;

/// A form's fields before the file, in order.
type Fields = Vec<(String, String)>;

/// The storage site's own identity (the re-signing test's node accepts only this).
const SITE_KEY: (&str, &str) = (
    "FORMSITEACCESSKEY001",
    "form-site-secret-key-0000000000000000000",
);

/// A node behind a relay, weir in front verifying the tenant, which may use bucket
/// `uploads` only.
struct Setup {
    node: S3sFs,
    relay: Relay,
    weir: Weir,
}

/// `resign`: the node knows only [`SITE_KEY`] and weir's pool re-signs with it; else the
/// node knows the tenant key and weir forwards the client's form.
fn start(scratch: &Scratch, resign: bool) -> Setup {
    start_with(scratch, resign, &[])
}

/// [`start`] with more keys for the pool.
fn start_with(scratch: &Scratch, resign: bool, pool_keys: &[&str]) -> Setup {
    let dir = scratch.path();
    let keys = if resign {
        SITE_KEY
    } else {
        (ACCESS_KEY, SECRET_KEY)
    };
    let node = S3sFs::start_with_keys(dir, "site", keys.0, keys.1);
    nodes::seed_as(&[node.endpoint()], "uploads", &[], dir, keys);
    let relay = Relay::start(node.addr());
    std::fs::write(
        dir.join("tenants.secrets"),
        format!("{ACCESS_KEY} = {SECRET_KEY}\n"),
    )
    .expect("write secrets");
    let mut pool = PoolConfig::new("site", &[relay.addr()]);
    for key in pool_keys {
        pool = pool.key(key);
    }
    if resign {
        pool = pool.key(&format!(
            "credentials = {{ access_key = \"{}\", secret = \"{}\" }}",
            SITE_KEY.0, SITE_KEY.1
        ));
    }
    let cfg = WeirConfig::new(&[])
        .upstream("first_byte_timeout = \"10s\"")
        .pool(pool)
        .route(&["bucket = \"*\"", "pools = [\"site\"]"])
        .extra("[auth]\nmode = \"verify\"\nsecrets_file = \"tenants.secrets\"\nskew_max = \"15m\"\n")
        .extra(&format!(
            "[[tenant]]\nname = \"web\"\naccess_keys = [\"{ACCESS_KEY}\"]\nbuckets = [\"uploads\"]\n"
        ));
    let weir = Weir::start(&cfg, dir);
    Setup { node, relay, weir }
}

/// A presigned POST from botocore, signed with the tenant key: (url, fields in order).
fn presign(
    endpoint: &str,
    bucket: &str,
    key: &str,
    extra: &[&str],
    scratch: &Path,
) -> (String, Fields) {
    let mut args = vec!["--endpoint", endpoint, "--bucket", bucket, "--key", key];
    args.extend_from_slice(extra);
    let post = clients::run_py("presign_post.py", args, scratch, Duration::from_secs(60));
    let url = post["url"].as_str().expect("url").to_string();
    let fields = post["fields"]
        .as_object()
        .expect("fields")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string field").to_string()))
        .collect();
    (url, fields)
}

fn set(fields: &mut [(String, String)], name: &str, value: &str) {
    let field = fields
        .iter_mut()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no field {name}"));
    field.1 = value.to_string();
}

/// Sends the form with curl: `fields`, then `file` as the `file` part; `extra` curl
/// arguments (`-H "Expect:"`). Returns the status and body.
fn post_form(
    url: &str,
    fields: &[(String, String)],
    file: &Path,
    extra: &[&str],
    scratch: &Path,
) -> (u16, Vec<u8>) {
    let mut cmd = Command::new(weir_tests::tools::curl());
    cmd.args(["-sS", "--noproxy", "*"]);
    for (name, value) in fields {
        cmd.arg("--form-string").arg(format!("{name}={value}"));
    }
    cmd.arg("-F")
        .arg(format!("file=@{};filename=upload.bin", file.display()))
        .args(extra);
    curl_call(cmd, url, scratch)
}

/// curl with `-o body -w %{http_code}`: the status and the body.
fn curl_call(cmd: Command, url: &str, scratch: &Path) -> (u16, Vec<u8>) {
    clients::curl_status_body(cmd, url, scratch, Duration::from_secs(60))
}

/// Form uploads (`POST /uploads`, `POST /private`) the node saw, on any connection.
fn posts_seen(relay: &Relay) -> usize {
    let c = relay.counters();
    c.requests_matching("POST /uploads HTTP/") + c.requests_matching("POST /private HTTP/")
}

/// The object's SHA-256 read back with `cmd` (a signed curl), or the failing status.
fn read_back(cmd: Command, url: &str, scratch: &Path) -> Result<String, u16> {
    match curl_call(cmd, url, scratch) {
        (200, body) => Ok(data::sha256_hex(&body)),
        (status, _) => Err(status),
    }
}

/// A presigned POST made by boto3 for the tenant uploads through weir in verify mode:
/// small and 6 MiB files, with and without `Expect: 100-continue`, a key chosen within the
/// policy's `starts-with`; each object is read back (through weir and from the node) with
/// the SHA-256 sent. Before form uploads were verified, verify mode refused them all as
/// unsigned.
#[test]
fn a_presigned_post_from_boto3_is_verified_and_stored() {
    let scratch = Scratch::new("form-upload");
    let s = start(&scratch, false);
    let dir = scratch.path();
    let endpoint = s.weir.endpoint();
    let cases: [(&str, u64, &[&str]); 4] = [
        ("small", 1000, &["-H", "Expect:"]),
        ("small-expect", 3000, &["-H", "Expect: 100-continue"]),
        ("empty", 0, &["-H", "Expect:"]),
        ("big", 6 * MIB + 7, &[]),
    ];
    for (i, (name, size, curl_args)) in cases.into_iter().enumerate() {
        let file = dir.join(format!("{name}.bin"));
        let sha = data::write_pattern_file(&file, 40 + i as u64, size);
        let (url, mut fields) = presign(
            &endpoint,
            "uploads",
            "incoming/${filename}",
            &[
                "--conditions",
                r#"[["content-length-range", 0, 104857600], ["starts-with", "$Content-Type", ""]]"#,
                "--fields",
                r#"{"Content-Type": "application/octet-stream"}"#,
            ],
            dir,
        );
        assert_eq!(url, format!("{endpoint}/uploads"));
        let key = format!("incoming/{name}.bin");
        set(&mut fields, "key", &key);
        let (status, body) = post_form(&url, &fields, &file, curl_args, dir);
        assert_eq!(
            status,
            204,
            "{name}: {}\n{}",
            String::from_utf8_lossy(&body),
            s.weir.log_tail()
        );
        let through_weir = read_back(curl_sigv4(), &format!("{endpoint}/uploads/{key}"), dir);
        assert_eq!(through_weir, Ok(sha.clone()), "{name} read through weir");
        let direct = read_back(
            curl_sigv4(),
            &format!("{}/uploads/{key}", s.node.endpoint()),
            dir,
        );
        assert_eq!(direct, Ok(sha), "{name} read from the node");
    }
    assert_eq!(posts_seen(&s.relay), 4);
    // weir answered the 100-continue itself: the node never saw an Expect.
    let captured = s.relay.counters().captured();
    let expects = captured
        .iter()
        .map(|c| String::from_utf8_lossy(c).to_ascii_lowercase())
        .filter(|c| c.contains("\r\nexpect:"))
        .count();
    assert_eq!(expects, 0, "Expect reached the node");
    assert_eq!(s.weir.metric_sum("weir_auth_failures_total", |_| true), 0.0);
}

/// A policy widened after signing, an expired policy, a key outside the policy's
/// `starts-with`, a bucket outside the tenant's `buckets`, an unknown signer and a file
/// too small for `content-length-range`, and a key that climbs out of the bucket (`..`)
/// are all refused by weir with S3's codes, counted by reason, and the node saw none of
/// them.
#[test]
fn forged_expired_and_out_of_policy_forms_die_at_the_edge() {
    let scratch = Scratch::new("form-upload-refused");
    let s = start(&scratch, false);
    let dir = scratch.path();
    let endpoint = s.weir.endpoint();
    let file = dir.join("small.bin");
    data::write_pattern_file(&file, 7, 10);
    let no_expect: &[&str] = &["-H", "Expect:"];

    let send = |bucket: &str, key: &str, extra: &[&str], tweak: &dyn Fn(&mut Fields)| {
        let (url, mut fields) = presign(&endpoint, bucket, key, extra, dir);
        tweak(&mut fields);
        let (status, body) = post_form(&url, &fields, &file, no_expect, dir);
        (
            status,
            s3_code(&body),
            String::from_utf8_lossy(&body).into_owned(),
        )
    };
    let keep = |_: &mut Fields| {};

    // The key condition widened to any key, the signature kept.
    let (status, code, body) = send("uploads", "incoming/a.bin", &["--widen-key"], &|f| {
        set(f, "key", "elsewhere/a.bin")
    });
    assert_eq!(
        (status, code.as_str()),
        (403, "SignatureDoesNotMatch"),
        "{body}"
    );
    // Expired a minute ago.
    let (status, code, body) = send("uploads", "incoming/b.bin", &["--expires", "-60"], &keep);
    assert_eq!((status, code.as_str()), (403, "AccessDenied"), "{body}");
    assert!(body.contains("Policy expired"), "{body}");
    // A key outside the signed starts-with.
    let (status, code, body) = send("uploads", "incoming/${filename}", &[], &|f| {
        set(f, "key", "elsewhere/c.bin")
    });
    assert_eq!((status, code.as_str()), (403, "AccessDenied"), "{body}");
    assert!(body.contains("Policy Condition failed"), "{body}");
    // A bucket the tenant may not use (the policy is valid for it).
    let (status, code, body) = send("private", "d.bin", &[], &keep);
    assert_eq!((status, code.as_str()), (403, "AccessDenied"), "{body}");
    // A signer weir does not know.
    let (status, code, body) = send("uploads", "e.bin", &[], &|f| {
        let credential = f
            .iter()
            .find(|(n, _)| n == "x-amz-credential")
            .map(|(_, v)| v.replacen(ACCESS_KEY, "UNKNOWNACCESSKEY0000", 1))
            .expect("credential");
        set(f, "x-amz-credential", &credential);
    });
    assert_eq!(
        (status, code.as_str()),
        (403, "InvalidAccessKeyId"),
        "{body}"
    );
    // content-length-range asks for more than the body can hold.
    let (status, code, body) = send(
        "uploads",
        "f.bin",
        &["--conditions", r#"[["content-length-range", 1000, 2000]]"#],
        &keep,
    );
    assert_eq!((status, code.as_str()), (400, "EntityTooSmall"), "{body}");
    // A key that climbs out of the bucket, signed as it is: s3s-fs stores keys as paths
    // and would write into `private`.
    for key in ["../private/g.bin", "incoming/../../private/g.bin"] {
        let (status, code, body) = send("uploads", key, &[], &keep);
        assert_eq!(
            (status, code.as_str()),
            (400, "InvalidArgument"),
            "{key}: {body}"
        );
    }
    assert!(
        !dir.join("site-data/private/g.bin").exists(),
        "the climbing form was stored"
    );

    assert_eq!(posts_seen(&s.relay), 0, "the node saw a refused form");
    let reason = |r: &str| {
        s.weir.metric_sum("weir_auth_failures_total", |l| {
            l.contains(&format!("reason=\"{r}\""))
        })
    };
    assert_eq!(reason("bad_signature"), 1.0);
    assert_eq!(reason("policy_expired"), 1.0);
    assert_eq!(reason("policy_condition"), 2.0);
    assert_eq!(reason("bucket_denied"), 1.0);
    assert_eq!(reason("unknown_key"), 1.0);
    assert_eq!(reason("form_malformed"), 2.0);
}

/// The node accepts only its site's key and weir's pool re-signs: the form signed with
/// the tenant key is re-signed for the site (credential, date, policy, signature,
/// Content-Length) and stored; read back from the node with the site's key, the SHA-256
/// matches. The same form sent to the node directly is refused there.
#[test]
fn a_form_is_resigned_for_a_pool_with_its_own_key() {
    let scratch = Scratch::new("form-upload-resign");
    let s = start(&scratch, true);
    let dir = scratch.path();
    let endpoint = s.weir.endpoint();
    for (i, size) in [4096, 5 * MIB + 3].into_iter().enumerate() {
        let file = dir.join(format!("resigned-{i}.bin"));
        let sha = data::write_pattern_file(&file, 90 + i as u64, size);
        let key = format!("resigned/{i}.bin");
        let (url, fields) = presign(&endpoint, "uploads", &key, &[], dir);

        // Straight to the node, the tenant's signature means nothing (s3s-fs names an
        // unknown key `NotSignedUp`).
        let direct_url = format!("{}/uploads", s.node.endpoint());
        let (status, body) = post_form(&direct_url, &fields, &file, &["-H", "Expect:"], dir);
        let code = s3_code(&body);
        assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
        assert!(
            ["InvalidAccessKeyId", "NotSignedUp"].contains(&code.as_str()),
            "{code}"
        );

        let (status, body) = post_form(&url, &fields, &file, &[], dir);
        assert_eq!(
            status,
            204,
            "{}\n{}",
            String::from_utf8_lossy(&body),
            s.weir.log_tail()
        );
        let stored = read_back(
            curl_sigv4_as(SITE_KEY.0, SITE_KEY.1),
            &format!("{}/uploads/{key}", s.node.endpoint()),
            dir,
        );
        assert_eq!(stored, Ok(sha.clone()), "read from the node with its key");
        let through_weir = read_back(curl_sigv4(), &format!("{endpoint}/uploads/{key}"), dir);
        assert_eq!(through_weir, Ok(sha), "read through weir");
    }
    assert_eq!(posts_seen(&s.relay), 2);
    // What reached the node (the first 64 KiB of each connection) names the site's key
    // in the form, never the tenant's.
    let captured: String = s
        .relay
        .counters()
        .captured()
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let site_field = format!("name=\"x-amz-credential\"\r\n\r\n{}/", SITE_KEY.0);
    assert!(
        captured.contains(&site_field),
        "no re-signed credential field"
    );
    assert!(
        !captured.contains(ACCESS_KEY),
        "the tenant key reached the node"
    );
    assert_eq!(s.weir.metric_sum("weir_auth_failures_total", |_| true), 0.0);
}

/// A form upload tells the node the client weir established, like every other request:
/// the client's own `X-Forwarded-For`, `X-Real-IP` and `Forwarded` never reach the node
/// (its `aws:SourceIp` would read them), whether or not the pool re-signs the form.
#[test]
fn a_form_upload_cannot_spoof_the_client_address() {
    for resign in [false, true] {
        let scratch = Scratch::new(&format!("form-upload-xff-{resign}"));
        let s = start_with(
            &scratch,
            resign,
            &["send_client_address = \"x-forwarded-for\""],
        );
        let dir = scratch.path();
        let file = dir.join("spoof.bin");
        data::write_pattern_file(&file, 7, 4096);
        let (url, fields) = presign(&s.weir.endpoint(), "uploads", "spoof.bin", &[], dir);
        let spoof = [
            "-H",
            "X-Forwarded-For: 6.6.6.6",
            "-H",
            "X-Real-IP: 6.6.6.6",
            "-H",
            "Forwarded: for=6.6.6.6",
        ];
        let (status, body) = post_form(&url, &fields, &file, &spoof, dir);
        assert_eq!(
            status,
            204,
            "{}\n{}",
            String::from_utf8_lossy(&body),
            s.weir.log_tail()
        );
        assert_eq!(posts_seen(&s.relay), 1);
        let captured: String = s
            .relay
            .counters()
            .captured()
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        assert!(
            !captured.contains("6.6.6.6"),
            "resign = {resign}: the spoof reached the node"
        );
        assert!(
            captured.contains("X-Forwarded-For: 127.0.0.1\r\n"),
            "resign = {resign}: the node was not told the client"
        );
    }
}
