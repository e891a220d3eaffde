//! Build facts for `weir_build_info` and `weir --version` (docs/metrics.md): the commit
//! the binary was built from, from git when the source is a checkout, `WEIR_BUILD_COMMIT`
//! when a packager sets it, else `unknown` (a source tarball has no `.git`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=WEIR_BUILD_COMMIT");
    let from_env = std::env::var("WEIR_BUILD_COMMIT").ok();
    let commit = from_env
        .filter(|c| is_commit(c))
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=WEIR_GIT_COMMIT={commit}");
    for path in watched() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// A full or abbreviated hex object name: anything else (a hostile or broken env or git)
/// would end up in a metric label.
fn is_commit(s: &str) -> bool {
    (7..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
}

fn git_commit() -> Option<String> {
    git(&["rev-parse", "HEAD"]).filter(|c| is_commit(c))
}

/// The files whose change moves HEAD: HEAD itself (a checkout, in a worktree its own), the
/// branch's ref file, and packed-refs (where `git gc` moves refs). Only existing paths are
/// named: cargo reruns the script on every build for a missing one.
fn watched() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let (Some(git_dir), Some(common)) = (
        git(&["rev-parse", "--absolute-git-dir"]),
        git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]),
    ) else {
        return out;
    };
    let (git_dir, common) = (Path::new(&git_dir), Path::new(&common));
    out.push(git_dir.join("HEAD"));
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
        out.push(git_dir.join(&head_ref));
        out.push(common.join(&head_ref));
    }
    out.push(common.join("packed-refs"));
    out.retain(|p| p.exists());
    out
}
