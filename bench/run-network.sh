#!/usr/bin/env bash
# Issue 5's figures, all inside a network namespace this script makes (no
# packet leaves it): TCP throughput of one stream of $MB MiB
#   host → container through a published port (127.0.0.1:HP → eth0)
#   container → container on one bridge
# for Capsa and for podman's rootful bridge (netavark, DNAT), with plain
# loopback in the namespace as the floor; plus the in-helper cost of the
# bridge setup and teardown (bench/network-setup.js).
# Not a timed test: bounded (a few transfers of $MB MiB), prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run-network: run as root" >&2; exit 1; }
MB="${BENCH_MB:-256}"
NS="capsa-bench-$$"
WORK="$(mktemp -d /tmp/capsa-bench-net.XXXXXX)"
IMAGE=127.0.0.1:5757/library/busybox:latest
HELPER_PID=""
cleanup() {
  set +e
  if [ -n "$HELPER_PID" ]; then
    ids=$(capsa ps -aq); [ -n "$ids" ] && capsa rm -f $ids >/dev/null
    kill "$HELPER_PID"; wait "$HELPER_PID" 2>/dev/null
  fi
  ip netns exec "$NS" podman rm -f -t 0 bench-srv bench-cli >/dev/null 2>&1
  ip netns del "$NS" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
[ -n "${BENCH_DEBUG:-}" ] && trap 'cat "$WORK/helper.log" >&2; cleanup' EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
in_ns() { ip netns exec "$NS" "$@"; }
capsa() { in_ns env "${ENVS[@]}" node bin/capsa "$@"; }
row() { printf '%-44s %10s\n' "$1" "$2"; }

# seconds → MiB/s for $MB MiB
rate() { awk -v mb="$MB" -v s="$1" 'BEGIN { printf "%.0f MiB/s", mb / s }'; }
# times `dd | nc HOST PORT` in the namespace (the sink is already listening)
send_from_ns() { local t0 t1; t0=$(date +%s.%N); in_ns sh -c "dd if=/dev/zero bs=1M count=$MB 2>/dev/null | busybox nc $1 $2"; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'; }
wait_port() { for _ in $(seq 50); do in_ns sh -c "busybox nc -z $1 $2" 2>/dev/null && return 0; sleep 0.1; done; return 1; }

echo "== network bench: $MB MiB per transfer, one TCP stream, in namespace $NS =="

# --- floor: loopback inside the namespace
in_ns sh -c 'busybox nc -l -p 7000 >/dev/null' & sleep 0.3
row "loopback (nc → nc, floor)" "$(rate "$(send_from_ns 127.0.0.1 7000)")"
wait

# --- Capsa. The registry is on the host's loopback, out of the namespace's
# reach: a first helper outside pulls into the root, then one inside takes over.
bash scripts/local-registry.sh start >/dev/null
echo '{}' > "$WORK/config.json"
ENVS=(CAPSA_ROOT="$WORK/root" CAPSA_SOCKET="$WORK/capsa.sock" CAPSA_CONFIG="$WORK/config.json" CAPSA_INSECURE_REGISTRIES=127.0.0.1:5757)
start_helper() { "$@" env "${ENVS[@]}" node out/server/main.js 2>>"$WORK/helper.log" & HELPER_PID=$!; for _ in $(seq 100); do [ -S "$WORK/capsa.sock" ] && return; sleep 0.1; done; }
start_helper
env "${ENVS[@]}" node bin/capsa pull -q "$IMAGE" >/dev/null
kill "$HELPER_PID"; wait "$HELPER_PID" 2>/dev/null || true; rm -f "$WORK/capsa.sock"
start_helper nsenter --net=/run/netns/"$NS" --
if capsa run -d --name sink -p 127.0.0.1:7001:5000 "$IMAGE" sh -c 'while true; do nc -l -p 5000 >/dev/null; done' >/dev/null 2>"$WORK/err"; then
  wait_port 127.0.0.1 7001
  row "capsa: host → container (-p, userland proxy)" "$(rate "$(send_from_ns 127.0.0.1 7001)")"
  ip=$(capsa inspect sink | sed -n 's/.*"ipAddress": "\(.*\)".*/\1/p' | head -1)
  out=$(capsa run --rm "$IMAGE" sh -c "time -p sh -c 'dd if=/dev/zero bs=1M count=$MB 2>/dev/null | nc $ip 5000'" 2>&1 | sed -n 's/^real //p')
  row "capsa: container → container (bridge)" "$(rate "$out")"
  row "capsa: host → container by address (bridge)" "$(rate "$(send_from_ns "$ip" 5000)")"
else
  row "capsa" "skipped: $(head -1 "$WORK/err")"
fi

# --- podman rootful bridge (netavark): its bridge and rules land in this namespace too
if command -v podman >/dev/null && in_ns podman pull -q --tls-verify=false "$IMAGE" >/dev/null 2>&1 &&
   in_ns podman run -d --name bench-srv -p 127.0.0.1:7002:5000 "$IMAGE" sh -c 'while true; do nc -l -p 5000 >/dev/null; done' >/dev/null 2>"$WORK/perr"; then
  wait_port 127.0.0.1 7002
  row "podman: host → container (-p, DNAT)" "$(rate "$(send_from_ns 127.0.0.1 7002)")"
  pip=$(in_ns podman inspect -f '{{.NetworkSettings.IPAddress}}' bench-srv)
  out=$(in_ns podman run --rm "$IMAGE" sh -c "time -p sh -c 'dd if=/dev/zero bs=1M count=$MB 2>/dev/null | nc $pip 5000'" 2>&1 | sed -n 's/^real //p')
  row "podman: container → container (bridge)" "$(rate "$out")"
else
  row "podman" "skipped: $(head -1 "$WORK/perr" 2>/dev/null || echo 'podman not usable')"
fi

# --- the helper's own cost of a bridge attachment (netns, veth, address, route, files)
unshare -n node bench/network-setup.js 100
