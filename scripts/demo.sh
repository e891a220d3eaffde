#!/usr/bin/env bash
# The quick start: builds weir and the simulator, starts three simulated storage nodes and
# weir in front of them, drives a real GET workload through weir and prints live
# throughput, per-node balance, the URL of weir's status page (open it while the load
# runs) and at the end a short summary of weir's counters. Extra arguments go to
# weir-demo (e.g. `--duration 120s` to watch the page longer).
set -euo pipefail
cd "$(dirname "$0")/.."
# A C toolchain for jemalloc and linking, as scripts/test-deps.sh installs it.
if ! { command -v cc && command -v make; } >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential >/dev/null
fi
cargo build --release --locked -p weir -p weir-bench
exec ./target/release/weir-demo --weir ./target/release/weir "$@"
