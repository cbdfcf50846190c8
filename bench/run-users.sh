#!/usr/bin/env bash
# The multi-user figures, in one run: a temporary user of this machine
# (useradd, its own /etc/subuid and /etc/subgid block) and root, side by side:
#   startup   `capsa run --rm busybox true` as root and as the user, through
#             one helper whose socket the user reaches (CAPSA_SOCKET_MODE=0666),
#             and rootless `podman run --rm` as the same user (Debian's podman
#             4.3, uidmap, slirp4netns), crun and the floor as references;
#             hyperfine, medians. Rows that separate where a user's call spends
#             its time: root through the Node CLI (no warm CLI process), and
#             root with --userns auto, the user namespace a user's container
#             always has.
#   network   TCP throughput and connection rate host → container through a
#             published port (-p 127.0.0.1:PORT:5000) into root's Capsa
#             container, the user's Capsa container and the user's rootless
#             podman container, and to both Capsa containers' addresses
#             (bench/netperf.c; round-robin rounds, medians, as run-network.sh).
# Everything runs in a network namespace this script makes (no packet leaves
# it, the host's firewall is not touched); the local registry on the host's
# loopback is reached through bench/relay.js. The user, its files, its
# processes and the namespace are removed at the end, whatever happens.
#
#   sudo bash bench/run-users.sh      BENCH_RUNS (20), BENCH_WARMUP (3), BENCH_NET_RUNS (5), BENCH_MB (256),
#                                     BENCH_CONNS (1000), BENCH_MODE=hyperfine (back to back, not in rounds)
# Figures and what they say: the README, "A user's containers: against root's and rootless podman's".
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run-users: run as root (it creates a user)" >&2; exit 1; }

# --- outside: the namespace and the host half of the registry relay, then
# the rest of this script inside the namespace (nsenter keeps the host's
# /sys, which podman needs for its cgroups; `ip netns exec` would replace it)
if [ "${1:-}" != inside ]; then
  NS="capsa-bench-users-$$"
  WORK="$(mktemp -d /tmp/capsa-bench-users.XXXXXX)"
  chmod 755 "$WORK" # the user reaches the helper's socket, netperf and its home below
  RELAY_PID=""
  outside_cleanup() {
    set +e
    [ -n "$RELAY_PID" ] && kill "$RELAY_PID" 2>/dev/null && wait "$RELAY_PID" 2>/dev/null
    ip netns del "$NS" 2>/dev/null
    rm -rf "$WORK"
  }
  trap outside_cleanup EXIT
  ip netns add "$NS"
  ip -n "$NS" link set lo up
  bash scripts/local-registry.sh start >/dev/null
  node bench/relay.js listen-unix "$WORK/registry.sock" 127.0.0.1 5757 >/dev/null 2>"$WORK/relay-host.log" & RELAY_PID=$!
  for _ in $(seq 50); do [ -S "$WORK/registry.sock" ] && break; sleep 0.1; done
  status=0
  nsenter --net=/run/netns/"$NS" -- env BENCH_USERS_WORK="$WORK" BENCH_USERS_NS="$NS" bash ${BENCH_TRACE:+-x} "$0" inside || status=$?
  exit $status
fi

. bench/lib.sh
WORK="$BENCH_USERS_WORK"
NET_RUNS="${BENCH_NET_RUNS:-5}"
MB="${BENCH_MB:-256}"
CONNS="${BENCH_CONNS:-1000}"
IMAGE=127.0.0.1:5757/library/busybox:latest
NAME="capsab$$"
HOMEDIR="$WORK/home"
XDG="$WORK/xdg"
SOCK="$WORK/run/capsa.sock"
CGROUP_PARENT="capsa-bench-users-$$"
HELPER_PID="" RELAY_PID="" SINK_PID="" TUN_MODE="" MADE_USER=""
PODMAN_FLAGS=(--runtime runc) # crun 1.8 refuses this machine kind's hybrid cgroups (bench/run-startup.sh)

inside_cleanup() {
  set +e
  if [ -n "$HELPER_PID" ]; then
    ids=$(./bin/capsa ps -aq 2>/dev/null); [ -n "$ids" ] && ./bin/capsa rm -f $ids >/dev/null 2>&1
    kill "$HELPER_PID"; wait "$HELPER_PID" 2>/dev/null
  fi
  if [ -n "$MADE_USER" ]; then
    as_user podman rm -af -t 0 >/dev/null 2>&1
    # podman's pause process (it holds the rootless user namespace), then anything else of the user's, each by its pid
    [ -f "$XDG/libpod/tmp/pause.pid" ] && kill "$(cat "$XDG/libpod/tmp/pause.pid")" 2>/dev/null
    sleep 0.2
    for pid in $(ps -o pid= -u "$UID_"); do kill -9 "$pid" 2>/dev/null; done
    sleep 0.2
    userdel "$NAME" || echo "run-users: userdel $NAME failed: remove it by hand" >&2
    # userdel removes the user's subordinate ids too; a leftover line (an older shadow) goes here
    grep -qs "^$NAME:" /etc/subuid /etc/subgid && sed -i "/^$NAME:/d" /etc/subuid /etc/subgid
  fi
  [ -n "$TUN_MODE" ] && chmod "$TUN_MODE" /dev/net/tun
  # the helper leaves the (empty) cgroup parent it was given
  for d in /sys/fs/cgroup/*/"$CGROUP_PARENT" /sys/fs/cgroup/unified/"$CGROUP_PARENT"; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null
  [ -n "$RELAY_PID" ] && kill "$RELAY_PID" 2>/dev/null
  # the user's rootless storage holds files of its subordinate ids; the outside removes $WORK
}
trap inside_cleanup EXIT

bench_init users
echo "   in network namespace $BENCH_USERS_NS, work $WORK"
node bench/relay.js listen-tcp 127.0.0.1 5757 "$WORK/registry.sock" >/dev/null 2>"$WORK/relay-ns.log" & RELAY_PID=$!
for _ in $(seq 50); do curl -s -o /dev/null --max-time 1 http://127.0.0.1:5757/v2/ && break; sleep 0.1; done
sysctl -qw net.ipv4.ip_forward=1 # this namespace's: published ports are DNAT in the kernel where the host forwards

# --- the user: its own group, a home for podman's rootless storage, one block of subordinate ids
useradd --create-home --home-dir "$HOMEDIR" --shell /usr/sbin/nologin --user-group "$NAME"
MADE_USER=1
UID_=$(id -u "$NAME"); GID_=$(id -g "$NAME")
touch /etc/subuid /etc/subgid
for f in /etc/subuid /etc/subgid; do
  if ! grep -q "^$NAME:" "$f"; then # useradd adds a block only where the file existed and login.defs asks for one
    start=$(awk -F: '{ e = $2 + $3; if (e > m) m = e } END { print (m > 100000 ? m : 100000) }' /etc/subuid /etc/subgid)
    if [ "$f" = /etc/subuid ]; then usermod --add-subuids "$start-$((start + 65535))" "$NAME"; else usermod --add-subgids "$start-$((start + 65535))" "$NAME"; fi
  fi
done
mkdir -m 700 "$XDG" && chown "$NAME:$NAME" "$XDG"
# rootless podman picks vfs when nothing says otherwise here; the kernel's own overlay works for a user (5.13+)
mkdir -p "$HOMEDIR/.config/containers"
printf '[storage]\ndriver = "overlay"\n' >"$HOMEDIR/.config/containers/storage.conf"
chown -R "$NAME:$NAME" "$HOMEDIR/.config"
# slirp4netns opens /dev/net/tun as the user: Debian's udev makes it 0666, this machine kind has it 0600
TUN_MODE=$(stat -c %a /dev/net/tun)
[ "$TUN_MODE" = 666 ] && TUN_MODE="" || chmod 0666 /dev/net/tun
# what every command of the user's starts with: its ids and groups, a clean environment
AS=(setpriv "--reuid=$UID_" "--regid=$GID_" --init-groups -- env -i "PATH=/usr/local/bin:/usr/bin:/bin" "HOME=$HOMEDIR" "USER=$NAME" "LOGNAME=$NAME" "XDG_RUNTIME_DIR=$XDG" "CAPSA_SOCKET=$SOCK" CAPSA_AUTOSTART=0)
as_user() { "${AS[@]}" "$@"; }
# root's timed commands get the same clean environment: this script's may
# carry what slows every Node start (NODE_EXTRA_CA_CERTS parses a CA bundle,
# some 25 ms here), which a user's `env -i` would leave out
AS_ROOT=(env -i "PATH=/usr/local/bin:/usr/bin:/bin" HOME=/root USER=root LOGNAME=root "CAPSA_SOCKET=$SOCK" CAPSA_AUTOSTART=0)
echo "   user $NAME (uid $UID_), subordinate ids $(grep "^$NAME:" /etc/subuid | cut -d: -f2-)"

# --- one helper, as root, its socket open to the user (per-user scoping is the helper's: server/handlers/access.ts)
mkdir -m 755 "$WORK/run"
echo '{ "network": { "bridge": "capsau0", "subnet": "10.97.0.0/16" } }' >"$WORK/config.json"
export CAPSA_ROOT="$WORK/root" CAPSA_SOCKET="$SOCK" CAPSA_CONFIG="$WORK/config.json" CAPSA_SOCKET_MODE=0666 \
  CAPSA_REGISTRY_MIRROR="docker.io=http://127.0.0.1:5757" CAPSA_INSECURE_REGISTRIES=127.0.0.1:5757 CAPSA_AUTOSTART=0 \
  CAPSA_CGROUP_PARENT="$CGROUP_PARENT"
node out/server/main.js --socket "$SOCK" --root "$CAPSA_ROOT" >"$WORK/helper.log" 2>&1 & HELPER_PID=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && [ -S "${SOCK%.sock}-cli.sock" ] && break; sleep 0.1; done
sleep 0.5 # the first warm CLI process loading

# --- the image for each engine from the same registry: root's, the user's name for it, the user's rootless storage
pull_or_die() { local what="$1"; shift; "$@" >"$WORK/pull.log" 2>&1 || { echo "run-users: $what failed: $(tail -n 1 "$WORK/pull.log")" >&2; exit 1; }; }
pull_or_die "capsa pull as root" ./bin/capsa pull -q busybox
pull_or_die "capsa pull as $NAME" as_user ./bin/capsa pull -q busybox
HAVE_PODMAN=""
if command -v podman >/dev/null && as_user podman pull -q --tls-verify=false "$IMAGE" >"$WORK/podman-pull.log" 2>&1; then
  HAVE_PODMAN=1
  echo "   rootless podman: $(as_user podman info --format 'storage {{.Store.GraphDriverName}}, network backend {{.Host.NetworkBackend}}, cgroups {{.Host.CgroupsVersion}} {{.Host.CgroupManager}}' 2>/dev/null), runtime runc"
else
  echo "skip: rootless podman — $(grep -v level=warn "$WORK/podman-pull.log" | tail -n 1 | cut -c1-160)"
fi

# BENCH_USERS_ONLY=FILE: source FILE here instead of the two halves, with the
# user, the helper and AS set up (to look into one figure; cleanup as always)
if [ -n "${BENCH_USERS_ONLY:-}" ]; then
  . "$BENCH_USERS_ONLY"
  exit
fi
. bench/users-startup.sh
. bench/users-network.sh
