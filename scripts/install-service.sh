#!/usr/bin/env bash
# Installs the Capsa helper as a systemd service started by its socket:
#
#   sudo scripts/install-service.sh            install, enable and start capsa.socket
#   scripts/install-service.sh --dest DIR      only write the units into DIR (no systemctl)
#
# The units are packaging/systemd/capsa.{socket,service}, with the node
# binary and the helper's entry (dist/server.js when bundled, else
# out/server/main.js) of this checkout filled in.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
dest=/etc/systemd/system
enable=1
while [ $# -gt 0 ]; do
  case "$1" in
    --dest) dest="$2"; enable=0; shift 2 ;;
    --dest=*) dest="${1#--dest=}"; enable=0; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "install-service: unknown argument $1" >&2; exit 2 ;;
  esac
done

node="$(command -v node || true)"
[ -n "$node" ] || { echo "install-service: node is not on PATH" >&2; exit 1; }
if [ -f "$here/dist/server.js" ]; then helper="$here/dist/server.js"
elif [ -f "$here/out/server/main.js" ]; then helper="$here/out/server/main.js"
else echo "install-service: build first (npm run build): neither dist/server.js nor out/server/main.js exists" >&2; exit 1
fi
case "$helper" in *[[:space:]]*) echo "install-service: the helper's path has spaces: $helper" >&2; exit 1 ;; esac

if [ "$enable" = 1 ] && [ "$(id -u)" -ne 0 ]; then
  echo "install-service: run as root (sudo $0)" >&2
  exit 1
fi
mkdir -p "$dest"
install -m 0644 "$here/packaging/systemd/capsa.socket" "$dest/capsa.socket"
sed -e "s|@NODE@|$node|g" -e "s|@HELPER@|$helper|g" -e "s|@DOCS@|$here/docs/ARCHITECTURE.md|g" \
  "$here/packaging/systemd/capsa.service" >"$dest/capsa.service"
chmod 0644 "$dest/capsa.service"
echo "install-service: wrote $dest/capsa.socket and $dest/capsa.service ($node $helper)"
if [ "$enable" = 1 ]; then
  systemctl daemon-reload
  systemctl enable --now capsa.socket
  echo "install-service: capsa.socket is enabled; the helper starts on the first connection to /run/capsa/capsa.sock"
fi
