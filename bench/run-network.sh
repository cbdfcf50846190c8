#!/usr/bin/env bash
# Issue 5's figures, all inside a network namespace this script makes (no
# packet leaves it): TCP throughput (one stream of $MB MiB) and connection
# rate ($CONNS sequential connect/close) with bench/netperf.c,
#   host → container through a published port (-p 127.0.0.1:HP:5000)
#   container → container on one bridge
#   container → a published port through the host's address (hairpin DNAT)
# for Capsa and for podman's rootful bridge (netavark), with plain loopback in
# the namespace as the floor; $RUNS rounds, each measuring every path once
# (round-robin, so a drifting load hits all alike), medians, ratio to podman.
# Plus the in-helper cost of a bridge attachment (bench/network-setup.js).
# Not a timed test: bounded (RUNS × a few transfers of MB MiB), prints a
# Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run-network: run as root" >&2; exit 1; }
MB="${BENCH_MB:-512}"
CONNS="${BENCH_CONNS:-2000}"
RUNS="${BENCH_RUNS:-5}"
NS="capsa-bench-$$"
WORK="$(mktemp -d /tmp/capsa-bench-net.XXXXXX)"
IMAGE=127.0.0.1:5757/library/busybox:latest
HELPER_PID=""
PODMAN=(podman run --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
cleanup() {
  set +e
  if [ -n "$HELPER_PID" ]; then
    ids=$(capsa ps -aq); [ -n "$ids" ] && capsa rm -f $ids >/dev/null
    kill "$HELPER_PID"; wait "$HELPER_PID" 2>/dev/null
  fi
  [ -n "${SINK_PID:-}" ] && kill "$SINK_PID" 2>/dev/null
  nsenter --net=/run/netns/"$NS" -- podman rm -f -t 0 bench-srv >/dev/null 2>&1
  ip netns del "$NS" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
[ -n "${BENCH_DEBUG:-}" ] && trap 'cat "$WORK/helper.log" >&2; cleanup' EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
in_ns() { ip netns exec "$NS" "$@"; }
# podman needs the host's /sys (its cgroups), which `ip netns exec` replaces
in_ns_sys() { nsenter --net=/run/netns/"$NS" -- "$@"; }
capsa() { in_ns env "${ENVS[@]}" node bin/capsa "$@"; }
# netperf in a fresh container of each tool (the client end of container → container)
capsa_np() { capsa run --rm -v "$NP:/np:ro" "$IMAGE" /np "$@"; }
podman_np() { in_ns_sys "${PODMAN[@]}" --rm -v "$NP:/np:ro" "$IMAGE" /np "$@"; }
cc -static -O2 -o "$WORK/netperf" bench/netperf.c
NP="$WORK/netperf"

# median of the numbers given
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
wait_port() { for _ in $(seq 50); do in_ns "$NP" conn "$1" "$2" 1 >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
declare -A R      # KEY.tput / KEY.conn -> median
declare -A RAW    # the same, every run's figure
declare -A PATHS  # KEY -> "host port runner…" (runner empty: the namespace)
# path KEY HOST PORT [runner…]: a path to measure; all are measured together at the end
path_add() { local key="$1"; shift; PATHS[$key]="$*"; }
# one run of throughput and connection rate on every path, round-robin
# (capsa, then podman, path by path), so that a drifting load hits both alike
measure_all() {
  local r key run host port
  for r in $(seq "$RUNS"); do
    for key in $(printf '%s\n' "${!PATHS[@]}" | sort); do
      read -r host port run <<<"${PATHS[$key]}"
      # shellcheck disable=SC2086
      if [ -z "$run" ]; then run="in_ns $NP"; fi
      RAW[$key.tput]+=" $($run send "$host" "$port" "$MB" || echo 0)"
      RAW[$key.conn]+=" $($run conn "$host" "$port" "$CONNS" || echo 0)"
    done
  done
  for key in "${!PATHS[@]}"; do
    # shellcheck disable=SC2086
    R[$key.tput]=$(median ${RAW[$key.tput]})
    # shellcheck disable=SC2086
    R[$key.conn]=$(median ${RAW[$key.conn]})
  done
}

echo "== network bench: $RUNS runs, $MB MiB per stream, $CONNS connections per rate, in namespace $NS =="

# --- floor: loopback inside the namespace
ip netns exec "$NS" "$NP" sink 7000 & SINK_PID=$!
wait_port 127.0.0.1 7000
path_add loop 127.0.0.1 7000

# --- Capsa. The registry is on the host's loopback, out of the namespace's
# reach: a first helper outside pulls into the root, then one inside takes over.
bash scripts/local-registry.sh start >/dev/null
# podman's default network is 10.88.0.0/16 too, in the same namespace: Capsa's goes elsewhere
echo '{ "network": { "subnet": "10.98.0.0/16" } }' > "$WORK/config.json"
ENVS=(CAPSA_ROOT="$WORK/root" CAPSA_SOCKET="$WORK/capsa.sock" CAPSA_CONFIG="$WORK/config.json" CAPSA_INSECURE_REGISTRIES=127.0.0.1:5757 CAPSA_CGROUP_PARENT="capsa-bench-$$")
start_helper() { "$@" env "${ENVS[@]}" node out/server/main.js 2>>"$WORK/helper.log" & HELPER_PID=$!; for _ in $(seq 100); do [ -S "$WORK/capsa.sock" ] && return; sleep 0.1; done; }
start_helper
env "${ENVS[@]}" node bin/capsa pull -q "$IMAGE" >/dev/null
kill "$HELPER_PID"; wait "$HELPER_PID" 2>/dev/null || true; rm -f "$WORK/capsa.sock"
start_helper nsenter --net=/run/netns/"$NS" --
in_ns sysctl -qw net.ipv4.ip_forward=1
if capsa run -d --name sink -v "$NP:/np:ro" -p 127.0.0.1:7001:5000 -p 0.0.0.0:7003:5000 "$IMAGE" /np sink 5000 >/dev/null 2>"$WORK/err"; then
  wait_port 127.0.0.1 7001
  ip=$(capsa inspect sink | sed -n 's/.*"ipAddress": "\(.*\)".*/\1/p' | head -1)
  path_add capsa.pub 127.0.0.1 7001
  path_add capsa.c2c "$ip" 5000 capsa_np
  path_add capsa.hair 10.98.0.1 7003 capsa_np
  path_add capsa.addr "$ip" 5000
else
  echo "capsa skipped: $(head -1 "$WORK/err")"
fi

# --- podman's rootful bridge (netavark: nftables DNAT, and no userland
# proxy): pulled on the host, run in the namespace, so its bridge and rules
# land there too. Flags as in bench/run-startup.sh.
if command -v podman >/dev/null && podman pull -q --tls-verify=false "$IMAGE" >"$WORK/perr" 2>&1 &&
   in_ns_sys "${PODMAN[@]}" -d --name bench-srv -v "$NP:/np:ro" -p 127.0.0.1:7002:5000 -p 0.0.0.0:7004:5000 "$IMAGE" /np sink 5000 >/dev/null 2>"$WORK/perr"; then
  wait_port 127.0.0.1 7002
  pip=$(in_ns_sys podman inspect -f '{{.NetworkSettings.IPAddress}}' bench-srv)
  pgw=$(in_ns_sys podman inspect -f '{{.NetworkSettings.Gateway}}' bench-srv)
  path_add podman.pub 127.0.0.1 7002
  path_add podman.c2c "$pip" 5000 podman_np
  path_add podman.hair "$pgw" 7004 podman_np
  path_add podman.addr "$pip" 5000
else
  echo "podman skipped: $(tail -1 "$WORK/perr" 2>/dev/null || echo 'podman not usable')"
fi

measure_all
kill "$SINK_PID"; SINK_PID=""

# --- the table: medians, and Capsa's throughput as a fraction of podman's
# (≥ 0.83 is "within 1.2×"), its connection rate likewise
ratio() { awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else printf "–" }'; }
echo
echo "| path | Capsa MiB/s | podman MiB/s | Capsa ÷ podman | Capsa conn/s | podman conn/s | Capsa ÷ podman |"
echo "|---|---:|---:|---:|---:|---:|---:|"
row() {
  echo "| $2 | ${R[capsa.$1.tput]:-–} | ${R[podman.$1.tput]:-–} | $(ratio "${R[capsa.$1.tput]:-}" "${R[podman.$1.tput]:-}") | ${R[capsa.$1.conn]:-–} | ${R[podman.$1.conn]:-–} | $(ratio "${R[capsa.$1.conn]:-}" "${R[podman.$1.conn]:-}") |"
}
row pub "host → container, -p 127.0.0.1 (DNAT)"
row c2c "container → container, bridge"
row addr "host → container address, bridge"
row hair "container → host's published port (hairpin DNAT)"
echo "| loopback in the namespace (floor) | ${R[loop.tput]} | | | ${R[loop.conn]} | | |"
echo

# --- the helper's own cost of a bridge attachment (netns, veth, address, route, files)
unshare -n node bench/network-setup.js 100
