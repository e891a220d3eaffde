#!/usr/bin/env bash
# What open status pages cost weir (docs/operations.md, "Status page"): weir's CPU under a
# small-GET load with no page open, then with five, in alternating rounds. A "page" here is
# what an open page sends weir: GET /status.json?offset=0&limit=50&q= once a second (the
# page's own poll, over keep-alive), so no browser competes with weir for the 2 cores.
#
#   bench/status-page-cost.sh [BIN_DIR] [SECONDS_PER_ROUND] [ROUNDS]
#
# BIN_DIR holds weir, weir-sim and weir-load (default target/release; `cargo build
# --release -p weir -p weir-bench`). Prints each round and the CPU difference, as a share
# of one core and per 10k req/s. Ports 19500-19503 and 19600 on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release}"
SECS="${2:-8}"
ROUNDS="${3:-2}"
PAGES=5
LISTEN=127.0.0.1:19500
ADMIN=127.0.0.1:19600
SPEC="bench/small-:4KiB:64"
TMP="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

"$BIN/weir-sim" --nodes 3 --base-port 19501 --synthetic "$SPEC" >"$TMP/sim.log" 2>&1 &
pids+=($!)
cat >"$TMP/weir.toml" <<TOML
[appliance]
cores = 1
listen = ["$LISTEN"]
admin = "$ADMIN"
[[pool]]
name = "sim"
nodes = ["127.0.0.1:19501", "127.0.0.1:19502", "127.0.0.1:19503"]
TOML
"$BIN/weir" run --config "$TMP/weir.toml" >"$TMP/weir.log" 2>&1 &
WEIR=$!
pids+=($WEIR)
for _ in $(seq 100); do
  curl -fsS "http://$ADMIN/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://$ADMIN/readyz" >/dev/null || { cat "$TMP/weir.log"; exit 1; }

# CPU seconds (user + system) of weir so far, and of its admin listener's thread (which
# answers the pages; the cores' share is one round of questions per refresh).
HZ=$(getconf CLK_TCK)
cpu() { awk -v hz="$HZ" '{ print ($14 + $15) / hz }' "/proc/$WEIR/stat"; }
admin_cpu() {
  local t
  for t in /proc/"$WEIR"/task/*; do
    if [ "$(cat "$t/comm")" = weir-admin ]; then
      awk -v hz="$HZ" '{ print ($14 + $15) / hz }' "$t/stat"
      return
    fi
  done
  echo 0
}

# One round: load for SECS seconds with $1 pages polling; prints "pages req/s cpu%".
round() {
  local pages=$1 pollers=()
  for _ in $(seq "$pages"); do
    # One keep-alive connection per page, one poll a second, like the page.
    (
      args=()
      for _ in $(seq "$((SECS + 2))"); do
        args+=(-o /dev/null "http://$ADMIN/status.json?offset=0&limit=50&q=")
      done
      curl -fsS --rate 60/m "${args[@]}" >/dev/null 2>&1 || true
    ) &
    pollers+=($!)
  done
  sleep 1
  local before t0 after t1 abefore aafter
  before=$(cpu)
  abefore=$(admin_cpu)
  t0=$EPOCHREALTIME
  "$BIN/weir-load" --target "$LISTEN" --keys "$SPEC" --connections 16 --duration "${SECS}s" \
    >"$TMP/load.out" 2>/dev/null
  after=$(cpu)
  aafter=$(admin_cpu)
  t1=$EPOCHREALTIME
  for p in "${pollers[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  local rps
  rps=$(grep -o '[0-9.]* req/s' "$TMP/load.out" | awk '{print $1}')
  awk -v p="$pages" -v r="$rps" -v b="$before" -v a="$after" -v ab="$abefore" -v aa="$aafter" \
    -v t0="$t0" -v t1="$t1" \
    'BEGIN { printf "%d %.0f %.2f %.3f\n", p, r, 100 * (a - b) / (t1 - t0), 100 * (aa - ab) / (t1 - t0) }'
}

echo "weir: 1 core, $SPEC GETs over 16 connections, ${SECS}s rounds; pages = pollers of /status.json"
printf '%-6s %10s %10s %10s\n' pages 'req/s' 'weir CPU%' 'admin CPU%'
results=()
for _ in $(seq "$ROUNDS"); do
  for pages in 0 "$PAGES"; do
    line=$(round "$pages")
    results+=("$line")
    read -r p r c a <<<"$line"
    printf '%-6s %10s %10s %10s\n' "$p" "$r" "$c" "$a"
  done
done
printf '%s\n' "${results[@]}" | awk -v pages="$PAGES" '
  $1 == 0 { n0++; r0 += $2; c0 += $3; a0 += $4 }
  $1 == pages { n1++; r1 += $2; c1 += $3; a1 += $4 }
  END {
    r0 /= n0; c0 /= n0; r1 /= n1; c1 /= n1; a0 /= n0; a1 /= n1
    # CPU per request rate: what the pages add at the same request rate.
    per0 = c0 / r0 * 10000; per1 = c1 / r1 * 10000
    printf "mean: no page %.0f req/s at %.1f%% CPU; %d pages %.0f req/s at %.1f%% CPU\n", r0, c0, pages, r1, c1
    printf "per 10k req/s: %.2f%% vs %.2f%% of a core: pages add %.2f points (%.1f%% more; noise of a shared machine included)\n", per0, per1, per1 - per0, 100 * (per1 - per0) / per0
    printf "admin listener thread: %.3f%% of a core with no page, %.3f%% with %d\n", a0, a1, pages
  }'
