#!/usr/bin/env bash
# The helper's memory under hostile input: peak and settled RSS across oversized
# inputs, each beside its limit (server/limits.ts), and image/list's answer
# time while 6 clients load FIFOs that never write (bench/hostile-memory.js).
# Environment: BENCH_OUT (results directory, default /tmp/capsa-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run-hostile: run as root" >&2; exit 1; }
out="${BENCH_OUT:-/tmp/capsa-bench}/hostile"
mkdir -p "$out"
echo "== bench hostile =="
node bench/hostile-memory.js | tee "$out/table.txt"
node bench/hostile-memory.js --json > "$out/results.json"
