#!/usr/bin/env bash
# The seed demo, `capsa run -it busybox sh`, on a machine without internet:
# a local registry (Debian's docker-registry on 127.0.0.1:5757, seeded with a
# busybox image built from Debian's busybox-static) acts as Capsa's mirror
# for docker.io. The demo keeps its own root and socket, so it never mixes
# with a helper configured otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "demo: the Capsa helper creates namespaces and mounts, so run this as root (sudo npm run demo)" >&2
  exit 1
fi
[ -x native/build/capsa-shim ] && [ -f out/server/cli/main.js ] || npm run build

bash scripts/local-registry.sh start

export CAPSA_ROOT=${CAPSA_ROOT:-/var/lib/capsa-demo}
export CAPSA_SOCKET=${CAPSA_SOCKET:-/run/capsa/demo.sock}
export CAPSA_REGISTRY_MIRROR=${CAPSA_REGISTRY_MIRROR:-docker.io=http://127.0.0.1:5757}

if [ -t 0 ] && [ -t 1 ]; then
  echo "Starting: capsa run -it --rm busybox sh   (try: pwd; ls -l; ps -e; hostname; ip a; exit 3)"
  exec ./bin/capsa run -it --rm busybox sh
fi

# Not on a terminal (CI, a pipe): the same shell, fed the demo's commands.
echo "+ capsa run -i --rm busybox sh   (stdin is not a terminal: running the demo's commands)"
set +e
printf '%s\n' 'echo "$ pwd"; pwd' 'echo "$ ls -l"; ls -l' 'echo "$ ps -e"; ps -e' \
  'echo "$ hostname"; hostname' 'echo "$ ip a"; ip a' 'echo "$ exit 3"; exit 3' |
  ./bin/capsa run -i --rm busybox sh
code=$?
echo "capsa run exited with status $code"
[ "$code" -eq 3 ]
