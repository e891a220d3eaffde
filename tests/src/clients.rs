//! Real S3 clients, run as child processes with a clean, pinned environment: the keys of
//! the test nodes, region us-east-1, path-style addressing, no client retries (tests must
//! see weir's failover, not the client's: docs/design.md, "How we know it works"), no
//! proxies, no AWS_CA_BUNDLE.

use crate::process::{run_checked, run_with_timeout};
use crate::{ACCESS_KEY, REGION, SECRET_KEY};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// Environment variables removed from every client's environment.
const SCRUBBED_ENV: &[&str] = &[
    "AWS_CA_BUNDLE",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// The folder of the Python client scripts (`tests/py`).
pub fn py_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("py")
}

/// Puts the test credentials and client settings into `cmd`'s environment. `scratch` gets
/// the AWS config file (path-style addressing, one attempt, 8 MiB multipart chunks).
pub fn aws_env(cmd: &mut Command, scratch: &Path) {
    let config = scratch.join("aws-config");
    if !config.exists() {
        std::fs::write(
            &config,
            "[default]\n\
             region = us-east-1\n\
             max_attempts = 1\n\
             retry_mode = standard\n\
             s3 =\n    addressing_style = path\n    multipart_threshold = 8MB\n    multipart_chunksize = 8MB\n",
        )
        .expect("write aws config");
    }
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_DEFAULT_REGION", REGION)
        .env("AWS_REGION", REGION)
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("AWS_RETRY_MODE", "standard")
        .env("AWS_CONFIG_FILE", &config)
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            scratch.join("no-credentials-file"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    // A test serving HTTPS with its own CA puts the CA here: boto3, the AWS CLI and the
    // suite's raw requests then verify weir's certificate against it.
    let bundle = scratch.join(CA_BUNDLE_FILE);
    if bundle.exists() {
        cmd.env("AWS_CA_BUNDLE", bundle);
    }
}

/// The file in a test's scratch folder whose CA the clients trust (see [`aws_env`]).
pub const CA_BUNDLE_FILE: &str = "ca-bundle.pem";

/// Runs `tests/py/<script>` with the venv's Python and the client environment; its stdout's
/// last line must be JSON, which is returned. Panics with stderr if it fails.
pub fn run_py<I, S>(script: &str, args: I, scratch: &Path, timeout: Duration) -> serde_json::Value
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_py_as((ACCESS_KEY, SECRET_KEY), script, args, scratch, timeout)
}

/// [`run_py`] with the client signing as `keys` (access key, secret).
pub fn run_py_as<I, S>(
    keys: (&str, &str),
    script: &str,
    args: I,
    scratch: &Path,
    timeout: Duration,
) -> serde_json::Value
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(crate::tools::python());
    cmd.arg(py_dir().join(script)).args(args);
    aws_env(&mut cmd, scratch);
    cmd.env("AWS_ACCESS_KEY_ID", keys.0)
        .env("AWS_SECRET_ACCESS_KEY", keys.1);
    let stdout = run_checked(&format!("python {script}"), &mut cmd, timeout);
    let text = String::from_utf8_lossy(&stdout);
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}); stdout:\n{text}"))
}

/// Asserts every `{"name", "expected", "got"}` entry of `report["checks"]` has
/// `expected == got`, and that every name in `required` is among them. Prints the table.
/// All mismatches are reported at once.
pub fn assert_checks(label: &str, report: &serde_json::Value, required: &[&str]) {
    let checks = report["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("{label}: no checks in {report}"));
    let mut failures = Vec::new();
    println!("--- {label}: {} checks", checks.len());
    for check in checks {
        let name = check["name"].as_str().unwrap_or("?");
        let (expected, got) = (&check["expected"], &check["got"]);
        let ok = expected == got;
        println!(
            "  {} {name}: expected {expected}, got {got}",
            if ok { "ok  " } else { "FAIL" }
        );
        if !ok {
            failures.push(format!("{name}: expected {expected}, got {got}"));
        }
    }
    for name in required {
        if !checks.iter().any(|c| c["name"].as_str() == Some(name)) {
            failures.push(format!("{name}: check missing from the report"));
        }
    }
    assert!(
        failures.is_empty(),
        "{label}: {} failed checks:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// Runs the AWS CLI against `endpoint` (`args` start with `s3` or `s3api`); returns stdout,
/// panics on failure.
pub fn aws(endpoint: &str, args: &[&str], scratch: &Path) -> Vec<u8> {
    let mut cmd = Command::new(crate::tools::aws_cli());
    cmd.arg("--endpoint-url").arg(endpoint).args(args);
    if args.first() == Some(&"s3") && matches!(args.get(1), Some(&("cp" | "mv" | "sync"))) {
        cmd.arg("--no-progress");
    }
    aws_env(&mut cmd, scratch);
    run_checked(
        &format!("aws {}", args.join(" ")),
        &mut cmd,
        Duration::from_secs(300),
    )
}

/// Runs s5cmd against `endpoint` with retries off; returns stdout, panics on failure.
pub fn s5cmd<I, S>(endpoint: &str, args: I, scratch: &Path) -> Vec<u8>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(crate::tools::s5cmd());
    cmd.arg("--endpoint-url")
        .arg(endpoint)
        .args(["--retry-count", "0"])
        .args(args);
    aws_env(&mut cmd, scratch);
    run_checked("s5cmd", &mut cmd, Duration::from_secs(300))
}

/// A curl command signing with `--aws-sigv4 "aws:amz:us-east-1:s3"` and the test keys.
/// curl 7.88 sends no `x-amz-content-sha256`, which S3 servers require; it signs the one we
/// add (`UNSIGNED-PAYLOAD`, so a body of unknown length can stream).
pub fn curl_sigv4() -> Command {
    curl_sigv4_as(ACCESS_KEY, SECRET_KEY)
}

/// [`curl_sigv4`] signing with another identity.
pub fn curl_sigv4_as(access_key: &str, secret_key: &str) -> Command {
    let mut cmd = Command::new(crate::tools::curl());
    cmd.args(["-sS", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
        .arg(format!("{access_key}:{secret_key}"))
        .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]);
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost");
    cmd
}

/// Runs a prepared command to completion with a deadline, returning its output whatever
/// its exit status.
pub fn output(cmd: &mut Command, timeout: Duration) -> Output {
    run_with_timeout(cmd, timeout).unwrap_or_else(|e| panic!("{e}"))
}

/// Checks the full boto3 suite must report (tests/py/s3_suite.py, mode `full`).
pub const FULL_SUITE_CHECKS: &[&str] = &[
    "put_etag_md5",
    "get_sha",
    "head_content_length",
    "range_mid_sha",
    "range_mid_status",
    "range_mid_content_range",
    "range_suffix_sha",
    "get_missing_status",
    "list_v2_keys",
    "list_v2_paged_keys",
    "delete_then_head_status",
    "multipart_sha",
    "multipart_etag_suffix",
    "copy_sha",
    "presigned_put_status",
    "presigned_get_sha",
    "presigned_tampered_status",
    "aws_chunked_signed_sha",
    "aws_chunked_trailer_sha",
    "aws_chunked_signed_te_sha",
    "aws_chunked_trailer_te_sha",
    "expect_100_continue_seen",
    "expect_sha",
    "keepalive_requests_ok",
    "keepalive_client_connections",
    "concurrent_8_threads_bad_bodies",
];

/// Checks the read-only suite must report (mode `read`).
pub const READ_SUITE_CHECKS: &[&str] = &[
    "seeded_range_sha",
    "seeded_list_v2_keys",
    "seeded_presigned_get_sha",
    "keepalive_requests_ok",
    "keepalive_client_connections",
    "concurrent_8_threads_bad_bodies",
];

/// Runs tests/py/s3_suite.py in `mode` against `endpoint` and asserts its checks.
pub fn boto3_suite(
    label: &str,
    endpoint: &str,
    bucket: &str,
    mode: &str,
    manifest: Option<&Path>,
    scratch: &Path,
) -> serde_json::Value {
    let mut args: Vec<String> = vec![
        "--endpoint".into(),
        endpoint.into(),
        "--bucket".into(),
        bucket.into(),
        "--prefix".into(),
        format!("{label}/"),
        "--mode".into(),
        mode.into(),
    ];
    if let Some(m) = manifest {
        args.push("--manifest".into());
        args.push(m.to_string_lossy().into_owned());
    }
    let report = run_py("s3_suite.py", &args, scratch, Duration::from_secs(600));
    let required = match mode {
        "full" => FULL_SUITE_CHECKS,
        "read" => READ_SUITE_CHECKS,
        _ => &["keepalive_requests_ok", "keepalive_client_connections"][..],
    };
    assert_checks(label, &report, required);
    report
}

/// Runs a curl `cmd` on `url` with `-o <file> -w %{http_code}` and `--max-time`
/// `max_time`: the status (0 when curl printed none) and the body.
pub fn curl_status_body(
    mut cmd: Command,
    url: &str,
    scratch: &Path,
    max_time: Duration,
) -> (u16, Vec<u8>) {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let body = scratch.join(format!("curl-body-{}-{n}", std::process::id()));
    cmd.arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code}", "--max-time"])
        .arg(max_time.as_secs().to_string())
        .arg(url);
    let out = output(&mut cmd, max_time + Duration::from_secs(10));
    let status = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let bytes = std::fs::read(&body).unwrap_or_default();
    let _ = std::fs::remove_file(&body);
    (status, bytes)
}

/// The `<Code>` of an S3 XML error body (empty when it has none).
pub fn s3_code(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.split("<Code>")
        .nth(1)
        .and_then(|rest| rest.split("</Code>").next())
        .unwrap_or("")
        .to_string()
}
