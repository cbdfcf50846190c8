#!/usr/bin/env bash
# exec into a running container, and what a running container costs:
#   capsa exec CONTAINER true       the CLI as a whole process, helper warm
#   protocol exec                   capsa/container/exec on a warm connection (bench/protocol-run.js)
#   podman exec CONTAINER true      the same image, pulled from the same local registry (runc)
#   monitor RSS vs conmon RSS       VmRSS of capsa's per-container monitor and of podman's conmon
# A tool that fails is skipped with a line saying why; the rest still run.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

[ "$(id -u)" -eq 0 ] || { echo "run-exec: run as root" >&2; exit 1; }

REGISTRY=127.0.0.1:5757
IMAGE=$REGISTRY/library/busybox:latest
bench_init exec
bash scripts/local-registry.sh start >/dev/null

bench_capsa_env "$REGISTRY"
CAPSA_CTR="capsa-bench-exec-$$"
PODMAN_CTR="capsa-bench-exec-$$"
cleanup() {
  ./bin/capsa rm -f "$CAPSA_CTR" >/dev/null 2>&1 || true
  podman rm -f -t 0 "$PODMAN_CTR" >/dev/null 2>&1 || true
  bench_capsa_stop
}
trap cleanup EXIT

vmrss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo "?"; }

capsa_monitor=""
if ./bin/capsa run -d --name "$CAPSA_CTR" busybox sleep 3600 </dev/null >/dev/null 2>"$BENCH_DIR/capsa-run.log"; then
  bench_add "capsa exec" ./bin/capsa exec "$CAPSA_CTR" true
  id=$(./bin/capsa inspect "$CAPSA_CTR" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s)[0].Id))')
  capsa_monitor=$(node -e 'console.log(require(process.argv[1]).monitorPid)' "$CAPSA_ROOT/containers/$id/state.json")
else
  bench_skip "capsa exec" "cannot run a container: $(tail -n 1 "$BENCH_DIR/capsa-run.log")"
fi

PODMAN=(podman run -d --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
conmon=""
if command -v podman >/dev/null && podman pull -q --tls-verify=false "$IMAGE" >"$BENCH_DIR/podman-pull.log" 2>&1 &&
  "${PODMAN[@]}" --name "$PODMAN_CTR" "$IMAGE" sleep 3600 >"$BENCH_DIR/podman-run.log" 2>&1; then
  bench_add "podman exec" podman exec "$PODMAN_CTR" true
  conmon=$(podman inspect --format '{{.State.ConmonPid}}' "$PODMAN_CTR")
else
  bench_skip "podman exec" "cannot run a podman container: $(tail -n 1 "$BENCH_DIR/podman-run.log" 2>/dev/null)"
fi

bench_run || true

if [ -n "$capsa_monitor" ]; then
  echo
  node bench/protocol-run.js --exec "$CAPSA_CTR" -n "$BENCH_RUNS" true | head -n 1 || echo "skip: protocol exec"
fi
echo
echo "memory of a running container's monitor (VmRSS):"
[ -n "$capsa_monitor" ] && echo "  capsa monitor  $(vmrss "$capsa_monitor") kB"
[ -n "$conmon" ] && echo "  podman conmon  $(vmrss "$conmon") kB"
true
