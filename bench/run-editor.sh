#!/usr/bin/env bash
# Issue 6's figure: Run in Container, from invoking it to the script's first
# output line, cold (image not present: pull, create, exec) and warm (exec in
# the running workspace container), next to podman run --rm -v with the same
# image from the same local registry. Medians; not a timed test.
#   COLD_RUNS (default 5), WARM_RUNS (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run-editor: run as root" >&2; exit 1; }
REGISTRY=127.0.0.1:5757
bash scripts/local-registry.sh start >/dev/null
[ -f out/server/main.js ] || npx tsc -p .
exec node bench/editor-run.js "$REGISTRY/library/busybox:latest" "${COLD_RUNS:-5}" "${WARM_RUNS:-10}"
