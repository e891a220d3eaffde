#!/usr/bin/env bash
# Fuzzes weir's network-facing parsers (docs/fuzz.md) with libFuzzer through cargo-fuzz,
# on the pinned *stable* toolchain, on a fresh machine. Two fuzz crates, each its own
# workspace with its own Cargo.lock:
#
#   io       io/fuzz: the HTTP/1.1 codec (request heads, response heads, chunked bodies) and
#            the PROXY protocol header parser
#   policy   policy/fuzz: the SigV4 parsers and verifier, and the config loader
#
# Steps:
#   apt      a C++ compiler (libfuzzer-sys builds libFuzzer from source)  (only if missing)
#   cargo    .cache/cargo/bin/cargo-fuzz 0.13.2 (same cache as s3s-fs, scripts/test-deps.sh)
#   build    one `cargo fuzz build --sanitizer none` per crate, every target of it (no -Z
#            flag, no nightly, no RUSTC_BOOTSTRAP: coverage comes from the stable
#            -Cpasses=sancov-module and -Cllvm-args flags), optimised, with debug
#            assertions and overflow checks, into one target folder, target/fuzz (or
#            FUZZ_TARGET_DIR), so what both crates use (libFuzzer itself) is built once
#   run      every target for SECONDS (default 30), up to FUZZ_JOBS at once (default: the
#            number of cores). Each starts by replaying every reproducer kept in
#            <crate>/fuzz/artifacts-found/<target>/ and its checked-in seeds, then fuzzes.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]     (no TARGET: all of them)
# A target is `crate:name` (io:request_head, policy:config) or, where only one crate has
# it, just its name (auth_header, verify, chunked, ...).
# Exits non-zero if any target crashes, panics, times out or runs out of memory; the
# input is written to <crate>/fuzz/artifacts/<target>/ and its libFuzzer log is printed.
# Inputs that found new coverage accumulate in <crate>/fuzz/corpus/<target>/ (git-ignored).
# Logs: target/fuzz/logs/<crate>/<target>.log.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${WEIR_TEST_CACHE:-$ROOT/.cache}"
CARGO_ROOT="$CACHE/cargo"
CARGO_FUZZ_VERSION="0.13.2"
TARGET_DIR="${FUZZ_TARGET_DIR:-$ROOT/target/fuzz}"
ALL_TARGETS=(
  io:request_head io:response_head io:chunked io:proxy_header
  policy:auth_header policy:presigned_query policy:chunk_lines policy:verify
  policy:sign_verify policy:config
)

seconds="${1:-30}"
shift || true
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2; }

# `crate:name`, or a bare name that exactly one crate has.
resolve() {
  local want=$1 t found=()
  for t in "${ALL_TARGETS[@]}"; do
    if [ "$t" = "$want" ] || [ "${t#*:}" = "$want" ]; then found+=("$t"); fi
  done
  if [ ${#found[@]} -ne 1 ]; then
    echo "unknown or ambiguous target $want (have: ${ALL_TARGETS[*]})" >&2
    exit 2
  fi
  echo "${found[0]}"
}
targets=()
if [ $# -eq 0 ]; then
  targets=("${ALL_TARGETS[@]}")
else
  for want in "$@"; do targets+=("$(resolve "$want")"); done
fi
jobs="${FUZZ_JOBS:-$(nproc)}"

crate_dir() { echo "$ROOT/${1%%:*}/fuzz"; }
name_of() { echo "${1#*:}"; }
# The seeds each target starts from: sign_verify shares verify's (AWS's example heads).
seed_dir() {
  case "$1" in
    policy:sign_verify) echo "$(crate_dir "$1")/seeds/verify" ;;
    *) echo "$(crate_dir "$1")/seeds/$(name_of "$1")" ;;
  esac
}
dict_of() {
  case "$1" in
    io:*) echo "$ROOT/io/fuzz/http.dict" ;;
    policy:config) echo "$ROOT/policy/fuzz/config.dict" ;;
    policy:*) echo "$ROOT/policy/fuzz/sigv4.dict" ;;
  esac
}
# Config files are longer than request heads: the example file is 2 kB without comments.
max_len_of() {
  case "$1" in
    policy:config) echo 8192 ;;
    *) echo 4096 ;;
  esac
}
crates=()
for t in "${targets[@]}"; do
  c=${t%%:*}
  [[ " ${crates[*]} " == *" $c "* ]] || crates+=("$c")
done

stage_start=0
stage() { stage_start=$EPOCHREALTIME; echo "==> $*"; }
stage_done() { awk -v a="$stage_start" -v b="$EPOCHREALTIME" 'BEGIN { printf "    done in %.1fs\n", b - a }'; }

# --- 1. a C++ compiler ------------------------------------------------------------------------
stage "C++ compiler"
if ! command -v c++ >/dev/null 2>&1; then
  echo "    installing: g++"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
fi
echo "    $(c++ --version | head -n1)"
stage_done

# --- 2. cargo-fuzz ----------------------------------------------------------------------------
stage "cargo-fuzz $CARGO_FUZZ_VERSION ($CARGO_ROOT)"
export PATH="$CARGO_ROOT/bin:$PATH"
have=$(cargo-fuzz --version 2>/dev/null | head -n1 | awk '{print $2}' || true)
if [ "$have" != "$CARGO_FUZZ_VERSION" ]; then
  log="$CACHE/cargo-fuzz-install.log"
  mkdir -p "$CACHE"
  echo "    building (about a minute on 2 cores), log: $log"
  if ! cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked \
    --root "$CARGO_ROOT" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    exit 1
  fi
else
  echo "    cached"
fi
echo "    $(cargo fuzz --version | head -n1)"
stage_done

# --- 3. build: one cargo-fuzz build per crate, all of its targets -------------------------------
# At opt-level 1: CI runs each target for seconds, so build time counts more than speed
# (instrumented builds of both crates at opt-level 3 took over 12 minutes on 2 cores).
host=$(rustc -vV | sed -n 's/^host: //p')
build_flags=(--sanitizer none --release --debug-assertions --target "$host"
  --target-dir "$TARGET_DIR")
for c in "${crates[@]}"; do
  stage "build $c/fuzz (${build_flags[*]})"
  # cargo-fuzz has no --locked: refuse here if Cargo.lock would have to change.
  (cd "$ROOT/$c/fuzz" && cargo metadata --locked --format-version 1 >/dev/null &&
    CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
      cargo fuzz build "${build_flags[@]}")
  stage_done
done

# --- 4. run -----------------------------------------------------------------------------------
bin_of() { echo "$TARGET_DIR/$host/release/$(name_of "$1")"; }
log_of() { echo "$TARGET_DIR/logs/${1%%:*}/$(name_of "$1")"; }
run_target() {
  local t=$1 dir name
  dir=$(crate_dir "$t")
  name=$(name_of "$t")
  # Reproducers first: libFuzzer runs every input of every folder before it mutates any.
  local dirs=("$dir/corpus/$name" "$(seed_dir "$t")")
  [ -d "$dir/artifacts-found/$name" ] && dirs+=("$dir/artifacts-found/$name")
  mkdir -p "$dir/corpus/$name" "$dir/artifacts/$name" "$(dirname "$(log_of "$t")")"
  local rc=0
  "$(bin_of "$t")" "${dirs[@]}" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len_of "$t")" \
    -dict="$(dict_of "$t")" -print_final_stats=1 \
    -artifact_prefix="$dir/artifacts/$name/" >"$(log_of "$t").log" 2>&1 || rc=$?
  echo "$rc" >"$(log_of "$t").rc"
}
stage "run ${#targets[@]} targets for ${seconds}s each, $jobs at a time (logs: $TARGET_DIR/logs)"
running=0
for t in "${targets[@]}"; do
  rm -f "$(log_of "$t").rc"
  run_target "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait
failed=()
printf '    %-24s %12s %10s %7s %7s %7s\n' target runs "exec/s" cov ft corpus
for t in "${targets[@]}"; do
  log="$(log_of "$t").log"
  stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -n1; }
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n1 || true)
  field() { awk -v k="$1:" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }' <<<"$last"; }
  printf '    %-24s %12s %10s %7s %7s %7s\n' "$t" "$(stat number_of_executed_units)" \
    "$(stat average_exec_per_sec)" "$(field cov)" "$(field ft)" "$(field corp | cut -d/ -f1)"
  [ "$(cat "$(log_of "$t").rc" 2>/dev/null || echo 1)" = 0 ] || failed+=("$t")
done
stage_done

if [ ${#failed[@]} -gt 0 ]; then
  for t in "${failed[@]}"; do
    log="$(log_of "$t").log"
    echo "=== $t FAILED (whole log: $log):" >&2
    grep -E -A12 'panicked at' "$log" | head -n 40 >&2 || true
    grep -E 'ERROR: libFuzzer|^SUMMARY|Test unit written' "$log" >&2 || tail -n 20 "$log" >&2
  done
  echo "fuzzing found a failure in: ${failed[*]} (inputs under <crate>/fuzz/artifacts/<target>/)" >&2
  echo "replay one: $TARGET_DIR/$host/release/<target> <input>" >&2
  echo "keep it as a regression: <crate>/fuzz/artifacts-found/<target>/" >&2
  exit 1
fi
echo "no crash in ${targets[*]} (${seconds}s each)"
