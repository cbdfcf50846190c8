#!/usr/bin/env bash
# A local registry for the demo, CI and benchmarks: Debian's docker-registry
# on 127.0.0.1:5757, stored under /var/lib/capsa-demo-registry, seeded with
# busybox as docker.io's library/busybox:latest would be found.
#
#   bash scripts/local-registry.sh start|stop|status
#
# Idempotent: `start` leaves a running registry alone and seeds only what is
# missing; `stop` on a stopped registry does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

ADDR="${CAPSA_DEMO_REGISTRY_ADDR:-127.0.0.1:5757}"
ROOT="${CAPSA_DEMO_REGISTRY_ROOT:-/var/lib/capsa-demo-registry}"
PIDFILE="$ROOT/registry.pid"
LOG="$ROOT/registry.log"
URL="http://$ADDR"

running_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid
  pid=$(cat "$PIDFILE")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # A recycled PID is not our registry.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "docker-registry serve $ROOT/config.yml" || return 1
  echo "$pid"
}

answers() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$URL/v2/" || true)
  [ "$code" = 200 ]
}

start() {
  command -v docker-registry >/dev/null || { echo "local-registry: docker-registry is not installed (bash scripts/setup.sh)" >&2; exit 1; }
  mkdir -p "$ROOT/data"
  if pid=$(running_pid); then
    echo "local-registry: already running at $URL (pid $pid)"
  else
    if answers; then
      echo "local-registry: something else answers at $URL; stop it or set CAPSA_DEMO_REGISTRY_ADDR" >&2
      exit 1
    fi
    cat >"$ROOT/config.yml" <<YAML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $ROOT/data
  delete:
    enabled: true
http:
  addr: $ADDR
YAML
    # Its own session, detached from this shell and from any terminal.
    setsid docker-registry serve "$ROOT/config.yml" </dev/null >>"$LOG" 2>&1 &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 100); do
      answers && break
      if ! running_pid >/dev/null; then
        echo "local-registry: docker-registry exited; its log:" >&2
        tail -n 20 "$LOG" >&2
        exit 1
      fi
      sleep 0.1
    done
    answers || { echo "local-registry: no answer from $URL/v2/ after 10 s" >&2; exit 1; }
    echo "local-registry: started at $URL (pid $(cat "$PIDFILE")), data in $ROOT/data"
  fi
  if [ ! -f out/test/helpers/oci.js ]; then
    # Type errors elsewhere in the tree do not stop tsc from emitting JS.
    npx tsc -p . >/dev/null || [ -f out/test/helpers/oci.js ]
  fi
  node scripts/seed-registry.js "$URL" library/busybox:latest
}

stop() {
  if pid=$(running_pid); then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "local-registry: stopped (pid $pid)"
  else
    echo "local-registry: not running"
  fi
  rm -f "$PIDFILE"
}

status() {
  if pid=$(running_pid); then
    local digest
    digest=$(curl -sI --max-time 2 -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
      "$URL/v2/library/busybox/manifests/latest" | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}')
    echo "local-registry: running at $URL (pid $pid); library/busybox:latest ${digest:-not seeded}"
  else
    echo "local-registry: not running"
    return 3
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
