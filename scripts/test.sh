#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs every tool the tests use (apt packages,
# a Python venv, s3s-fs, SeaweedFS — cached under .cache/), builds with the `ci` profile
# (optimised, thin LTO) and runs unit, property and end-to-end tests. Prints time per stage.
set -euo pipefail
cd "$(dirname "$0")/.."

stage() {
    local name=$1; shift
    local t0=$SECONDS
    echo "=== stage: $name"
    "$@"
    echo "=== stage: $name took $((SECONDS - t0))s"
}

stage deps ./scripts/test-deps.sh
# The end-to-end tests run the `weir` binary of this profile: build it (and everything
# else) before any test starts, so no test runs against a stale binary.
stage build cargo build --profile ci --workspace --bins --tests --locked
# Formatting, lints as errors, no citation a reader of the repository cannot open
# (docs/design.md, "How the code should read"), and no import cycle between the modules
# of a crate (docs/design.md, "Layout and dependency direction").
stage lint bash -c 'cargo fmt --all --check && cargo clippy --workspace --all-targets --locked -- -D warnings && scripts/check-cites.sh && scripts/check-cycles.sh'
stage image bash -c 'scripts/image-deps.sh && firmware-image/build.sh --check'
# --no-fail-fast: one failing test file must not hide the results of the others.
stage test cargo test --profile ci --workspace --locked --no-fail-fast
# The libFuzzer targets of the network-facing parsers (io/fuzz: HTTP heads and chunked
# bodies; policy/fuzz: SigV4 and the config file; stable toolchain, docs/fuzz.md) for 10 s
# each, after replaying every crash found so far: ~5 min cold (cargo-fuzz install and two
# builds), ~1 min with .cache/cargo and target/fuzz kept.
stage fuzz ./scripts/fuzz.sh 10
# The benchmark harness in its smoke mode (every scenario, every peer, ~4 minutes), so it
# never rots; its pages go to a scratch folder, not over the committed results.
stage bench-deps ./scripts/bench-deps.sh
smoke_out=$(mktemp -d -t weir-bench-smoke-XXXXXX)
stage bench-smoke ./target/ci/weir-bench-run --smoke --weir target/ci/weir --out "$smoke_out"
echo "=== all tests passed in ${SECONDS}s"
