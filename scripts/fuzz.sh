#!/usr/bin/env bash
# Fuzzes weir-policy's SigV4 parsers and verifier (policy/fuzz, docs/fuzz.md) with
# libFuzzer through cargo-fuzz, on the pinned *stable* toolchain, on a fresh machine:
#
#   apt      a C++ compiler (libfuzzer-sys builds libFuzzer from source)  (only if missing)
#   cargo    .cache/cargo/bin/cargo-fuzz 0.13.2 (same cache as s3s-fs, scripts/test-deps.sh)
#   build    every target: `cargo fuzz build --sanitizer none` (no -Z flag, no nightly,
#            no RUSTC_BOOTSTRAP: coverage comes from the stable -Cpasses=sancov-module and
#            -Cllvm-args flags), optimised, with debug assertions and overflow checks
#   run      every target for SECONDS (default 30), up to FUZZ_JOBS at once (default: the
#            number of cores), from the checked-in seeds (AWS's published examples) plus
#            every reproducer under policy/fuzz/artifacts-found/<target>/
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]     (no TARGET: all of them)
# Exits non-zero if any target crashes, panics, times out or runs out of memory; the
# input is written to policy/fuzz/artifacts/<target>/ and its libFuzzer log is printed.
# Inputs that found new coverage accumulate in policy/fuzz/corpus/<target>/ (git-ignored).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${WEIR_TEST_CACHE:-$ROOT/.cache}"
CARGO_ROOT="$CACHE/cargo"
FUZZ="$ROOT/policy/fuzz"
CARGO_FUZZ_VERSION="0.13.2"
ALL_TARGETS=(auth_header presigned_query chunk_lines verify sign_verify)

seconds="${1:-30}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2; }
for t in "${targets[@]}"; do
  [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || { echo "unknown target $t (have: ${ALL_TARGETS[*]})" >&2; exit 2; }
done
jobs="${FUZZ_JOBS:-$(nproc)}"

# The seeds each target starts from: the request-head targets share AWS's example heads.
seed_dir() {
  case "$1" in
    sign_verify) echo "$FUZZ/seeds/verify" ;;
    *) echo "$FUZZ/seeds/$1" ;;
  esac
}

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

# --- 3. build ---------------------------------------------------------------------------------
host=$(rustc -vV | sed -n 's/^host: //p')
build_flags=(--sanitizer none --release --debug-assertions --target "$host")
stage "build ${targets[*]} (${build_flags[*]})"
cd "$FUZZ"
# cargo-fuzz has no --locked: refuse here if Cargo.lock would have to change.
cargo metadata --locked --format-version 1 >/dev/null
for t in "${targets[@]}"; do
  cargo fuzz build "${build_flags[@]}" "$t"
done
stage_done

# --- 4. run -----------------------------------------------------------------------------------
bin_dir="$FUZZ/target/$host/release"
logs="$FUZZ/target/fuzz-logs"
mkdir -p "$logs"
run_target() {
  local t=$1
  local dirs=("$FUZZ/corpus/$t" "$(seed_dir "$t")")
  [ -d "$FUZZ/artifacts-found/$t" ] && dirs+=("$FUZZ/artifacts-found/$t")
  mkdir -p "$FUZZ/corpus/$t" "$FUZZ/artifacts/$t"
  local rc=0
  "$bin_dir/$t" "${dirs[@]}" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
    -dict="$FUZZ/sigv4.dict" -print_final_stats=1 \
    -artifact_prefix="$FUZZ/artifacts/$t/" >"$logs/$t.log" 2>&1 || rc=$?
  echo "$rc" >"$logs/$t.rc"
}
stage "run ${#targets[@]} targets for ${seconds}s each, $jobs at a time (logs: $logs)"
running=0
for t in "${targets[@]}"; do
  rm -f "$logs/$t.rc"
  run_target "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait
failed=()
printf '    %-16s %12s %10s %7s %7s %7s\n' target runs "exec/s" cov ft corpus
for t in "${targets[@]}"; do
  log="$logs/$t.log"
  stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -n1; }
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n1 || true)
  field() { awk -v k="$1:" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }' <<<"$last"; }
  printf '    %-16s %12s %10s %7s %7s %7s\n' "$t" "$(stat number_of_executed_units)" \
    "$(stat average_exec_per_sec)" "$(field cov)" "$(field ft)" "$(field corp | cut -d/ -f1)"
  [ "$(cat "$logs/$t.rc" 2>/dev/null || echo 1)" = 0 ] || failed+=("$t")
done
stage_done

if [ ${#failed[@]} -gt 0 ]; then
  for t in "${failed[@]}"; do
    echo "=== $t FAILED (whole log: $logs/$t.log):" >&2
    grep -E -A12 'panicked at' "$logs/$t.log" | head -n 40 >&2 || true
    grep -E 'ERROR: libFuzzer|^SUMMARY|Test unit written' "$logs/$t.log" >&2 || tail -n 20 "$logs/$t.log" >&2
  done
  echo "fuzzing found a failure in: ${failed[*]} (inputs under $FUZZ/artifacts/)" >&2
  echo "replay one: $bin_dir/<target> <input>   keep it as a regression: policy/fuzz/artifacts-found/<target>/" >&2
  exit 1
fi
echo "no crash in ${targets[*]} (${seconds}s each)"
