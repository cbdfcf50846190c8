#!/usr/bin/env bash
# Installs what Capsa, its tests and its benchmarks need on Debian 12 or later,
# as root and without questions, then `npm ci` (which builds the TypeScript
# and the native shim). Idempotent: apt is skipped when every package is
# already installed, so a second run takes seconds.
#
#   CAPSA_SKIP_CODE_SERVER=1   do not install code-server for the UI tests
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  # build: the native shim and node-gyp modules
  build-essential python3 libkrb5-dev
  # a real registry and test image material
  docker-registry busybox-static apache2-utils openssl zstd curl ca-certificates
  # kernel plumbing the runtime and its tests use
  iproute2 iptables nftables procps util-linux libcap2-bin
  # the helper as a service: systemd-socket-activate and systemd-analyze in its tests; useradd (passwd) for tests as another user
  systemd passwd
  # the real docker client the Engine API's tests drive (its daemon and containerd are never started: see policy-rc.d below)
  docker.io
  # reference implementations and oracles for tests and benchmarks
  podman crun runc skopeo umoci hyperfine debootstrap
  # rootless podman, the multi-user benchmark's reference: newuidmap and its userland network
  uidmap slirp4netns
  # UI tests: code-server in Debian's Chromium
  chromium ripgrep
  # scripts
  git tar
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (it installs Debian packages)" >&2
  exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
  [[ "$status" == ii* ]] || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} Debian packages already installed"
else
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Debian's docker-registry package enables a service on :5000, and docker.io
  # a daemon and containerd; tests start their own registries and talk to
  # Capsa's Engine API, so keep package installs from starting services.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created_policy=1
  fi
  trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
  apt-get update -q
  apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
fi

# npm on this machine kind has yes=false, which cancels node-pty's `npx
# node-gyp`; nodedir=/usr stays so node-gyp uses the local headers.
export npm_config_yes=true
export npm_config_audit=false
export npm_config_fund=false
export npm_config_update_notifier=false

lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.capsa-setup-$lock_hash
if [ -f "$stamp" ]; then
  echo "setup: node_modules matches package-lock.json; building"
  npm run build
else
  echo "setup: npm ci"
  npm ci
  touch "$stamp"
fi

if [ "${CAPSA_SKIP_CODE_SERVER:-0}" != 1 ] && [ -f scripts/install-code-server.sh ]; then
  bash scripts/install-code-server.sh
fi

echo "setup: done"
