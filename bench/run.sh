#!/usr/bin/env bash
# Runs every benchmark (bench/run-*.sh) in turn; one failing does not stop the others.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
for script in bench/run-*.sh; do
  bash "$script" || { echo "bench: $script failed"; status=1; }
done
exit $status
