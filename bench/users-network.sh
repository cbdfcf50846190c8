# Network half of bench/run-users.sh (sourced inside its namespace): TCP
# throughput and connection rate from the namespace's host side into a
# container of each engine, with bench/netperf.c as run-network.sh measures
# them. netperf is bind-mounted as its directory (a user's bind of a single
# file failed at the idmap step before the shim's fix of this branch).
mkdir -m 755 "$WORK/np"
cc -static -O2 -o "$WORK/np/netperf" bench/netperf.c
NP="$WORK/np/netperf"
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
wait_port() { for _ in $(seq 50); do "$NP" conn "$1" "$2" 1 >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
declare -A R RAW PATHS
path_add() { PATHS[$1]="$2 $3"; }
# every path once per round, in turn, so a drifting load hits all alike
measure_all() {
  local r key host port
  for r in $(seq "$NET_RUNS"); do
    for key in $(printf '%s\n' "${!PATHS[@]}" | sort); do
      read -r host port <<<"${PATHS[$key]}"
      RAW[$key.tput]+=" $("$NP" send "$host" "$port" "$MB" 2>/dev/null || echo 0)"
      RAW[$key.conn]+=" $("$NP" conn "$host" "$port" "$CONNS" 2>/dev/null || echo 0)"
    done
  done
  for key in "${!PATHS[@]}"; do
    # shellcheck disable=SC2086
    R[$key.tput]=$(median ${RAW[$key.tput]})
    # shellcheck disable=SC2086
    R[$key.conn]=$(median ${RAW[$key.conn]})
  done
}
address_of() { "$@" | sed -n 's/.*"ipAddress": "\(.*\)".*/\1/p' | head -1; }

echo
echo "== network: $NET_RUNS rounds, $MB MiB per stream, $CONNS connections per rate =="
"$NP" sink 7000 & SINK_PID=$!
wait_port 127.0.0.1 7000 && path_add loop 127.0.0.1 7000

SINK_ID=""
sink() { # KEY PORT RUNNER…: a netperf sink container published on 127.0.0.1:PORT; its id in SINK_ID
  local key="$1" port="$2"; shift 2
  SINK_ID=""
  if SINK_ID=$("$@" run -d -v "$WORK/np:/np:ro" -p "127.0.0.1:$port:5000" "${ENGINE_FLAGS[@]}" "$IMG" /np/netperf sink 5000 2>"$WORK/sink-$key.err") &&
     wait_port 127.0.0.1 "$port"; then
    path_add "$key.pub" 127.0.0.1 "$port"
  else
    echo "skip: $key — $(grep -v level=warn "$WORK/sink-$key.err" | tail -n 1 | cut -c1-160)"
    SINK_ID=""
  fi
}
ENGINE_FLAGS=() IMG=busybox
sink root 7201 ./bin/capsa
[ -n "$SINK_ID" ] && path_add root.addr "$(address_of ./bin/capsa inspect "$SINK_ID")" 5000
sink user 7202 as_user ./bin/capsa
[ -n "$SINK_ID" ] && path_add user.addr "$(address_of as_user ./bin/capsa inspect "$SINK_ID")" 5000
PODMAN_NET=""
if [ -n "$HAVE_PODMAN" ]; then
  ENGINE_FLAGS=("${PODMAN_FLAGS[@]}") IMG="$IMAGE"
  sink podman 7203 as_user podman
  [ -n "$SINK_ID" ] && PODMAN_NET=$(as_user podman inspect -f '{{.HostConfig.NetworkMode}}' "$SINK_ID" 2>/dev/null)
  # podman 4.3's slirp4netns publishes ports with rootlesskit's userland proxy unless containers.conf says port_handler=slirp4netns
  handler=$(grep -h -o '^ *port_handler *= *"[a-z0-9]*"' /etc/containers/containers.conf "$HOMEDIR/.config/containers/containers.conf" 2>/dev/null | tail -n 1 | sed 's/.*"\(.*\)"/\1/' || true)
  PODMAN_NET="${PODMAN_NET:-?}, port handler ${handler:-rootlesskit (default)}"
  echo "   rootless podman's container network: $PODMAN_NET"
fi
{ grep -h -i -E 'userland|proxy' "$WORK/helper.log" || true; } | tail -n 3 | sed 's/^/   helper: /'

# a user's published port is a DNAT rule in the kernel as root's is (not a proxy): the rules, with their ports
echo "   nft DNAT rules: $({ nft list table ip capsa 2>/dev/null || true; } | grep -o 'dport 72[0-9]* .*dnat to [0-9.:]*' | sed 's/ counter packets [0-9]* bytes [0-9]*//' | paste -sd ';' -)"
measure_all
kill "$SINK_PID"; SINK_PID=""

echo
echo "| host → container | MiB/s | conn/s |"
echo "|---|---:|---:|"
row() { echo "| $2 | ${R[$1.tput]:-–} | ${R[$1.conn]:-–} |"; }
row root.pub "root's Capsa container, -p 127.0.0.1"
row user.pub "the user's Capsa container, -p 127.0.0.1"
row podman.pub "the user's rootless podman container, -p 127.0.0.1 (${PODMAN_NET:-slirp4netns})"
row root.addr "root's Capsa container's address"
row user.addr "the user's Capsa container's address"
row loop "loopback in the namespace (floor)"
echo
echo "| throughput | ratio | target |"
echo "|---|---:|---:|"
echo "| user ÷ root, -p | $(ratio "${R[user.pub.tput]:-}" "${R[root.pub.tput]:-}") | 1.0 |"
echo "| user ÷ root, container address | $(ratio "${R[user.addr.tput]:-}" "${R[root.addr.tput]:-}") | 1.0 |"
echo "| user capsa ÷ rootless podman, -p | $(ratio "${R[user.pub.tput]:-}" "${R[podman.pub.tput]:-}") | > 1 |"
echo "| connections/s: user capsa ÷ rootless podman, -p | $(ratio "${R[user.pub.conn]:-}" "${R[podman.pub.conn]:-}") | |"
