#!/usr/bin/env bash
# Issue 2's figure: start a container that runs `true`, image present.
#   capsa run --rm busybox true     helper warm, image pulled
#   podman run --rm                  the same image, pulled from the same local registry
#   crun run / runc run              a bundle of the same rootfs (umoci unpack)
#   floor                            clone(NEWNS|NEWPID|NEWUTS|NEWIPC|NEWNET) + chroot + exec
#   protocol run                     capsa/container/run on a warm connection, request -> exit
#                                    notification (bench/protocol-run.js), what the editor pays;
#                                    with the default bridge and with --network none
# Where a run's time goes: `capsa run --rm --debug-timings busybox true` (docs/ARCHITECTURE.md).
# A tool that fails is skipped with a line saying why; the rest still run.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

[ "$(id -u)" -eq 0 ] || { echo "run-startup: run as root" >&2; exit 1; }

REGISTRY=127.0.0.1:5757
IMAGE=$REGISTRY/library/busybox:latest
WORK="${BENCH_WORK:-/tmp/capsa-bench-work}/startup"
mkdir -p "$WORK"

bench_init startup
bash scripts/local-registry.sh start >/dev/null

# --- the rootfs, unpacked by umoci from the same image the others pull
if [ ! -x "$WORK/image/rootfs/bin/busybox" ]; then
  rm -rf "$WORK/oci" "$WORK/image"
  skopeo copy -q --src-tls-verify=false "docker://$IMAGE" "oci:$WORK/oci:busybox"
  umoci unpack --image "$WORK/oci:busybox" "$WORK/image" >/dev/null
fi
ROOTFS="$WORK/image/rootfs"

# --- crun and runc: each its own spec, adjusted to run `true` without a terminal (lib.sh make_bundle)
for rt in crun runc; do
  if command -v "$rt" >/dev/null; then
    declare "BUNDLE_${rt}=$(make_bundle "$rt" "$WORK/bundle-$rt" "$ROOTFS")"
  fi
done

# --- the floor
FLOOR="$WORK/floor"
if ! gcc -O2 -o "$FLOOR" bench/floor.c 2>"$WORK/floor.log"; then
  bench_skip floor "gcc failed: $(tail -n 1 "$WORK/floor.log")"
  FLOOR=""
fi

# --- capsa: its own root and socket, the local registry as docker.io's mirror
bench_capsa_env "$REGISTRY"
trap bench_capsa_stop EXIT
if [ -x bin/capsa ] && ./bin/capsa pull busybox </dev/null >"$WORK/capsa-pull.log" 2>&1; then
  bench_add "capsa run --rm" ./bin/capsa run --rm busybox true
  bench_add "capsa run --rm --network none" ./bin/capsa run --rm --network none busybox true
else
  bench_skip "capsa run --rm" "cannot pull busybox: $(grep -v '^\s*$' "$WORK/capsa-pull.log" 2>/dev/null | tail -n 1 | cut -c1-160)"
fi

# crun 1.8 refuses a hybrid cgroup hierarchy (v1 controllers plus a cgroup2
# that has one, as on this machine kind: hugetlb). Where that is so, crun runs
# in a mount namespace without the cgroup2 mount (about 1 ms of unshare+sh).
CRUN=(crun)
if grep -qs . /sys/fs/cgroup/unified/cgroup.controllers; then
  CRUN=(unshare -m sh -c 'umount /sys/fs/cgroup/unified && exec crun "$@"' crun)
fi

# --- podman, the same image from the same registry. Its default rlimits
# (nofile 1048576) need CAP_SYS_RESOURCE, which this machine kind's root lacks,
# and its default runtime is crun (see above): use runc and modest limits.
PODMAN=(podman run --rm --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
if command -v podman >/dev/null && podman pull -q --tls-verify=false "$IMAGE" >"$WORK/podman-pull.log" 2>&1; then
  bench_add "podman run --rm" "${PODMAN[@]}" "$IMAGE" true
  bench_add "podman run --rm --network none" "${PODMAN[@]}" --network none "$IMAGE" true
else
  bench_skip "podman run --rm" "cannot pull $IMAGE: $(tail -n 1 "$WORK/podman-pull.log" 2>/dev/null)"
fi

[ -n "${BUNDLE_crun:-}" ] && bench_add "crun run" "${CRUN[@]}" run --bundle "$BUNDLE_crun" "capsa-bench-crun-$$"
[ -n "${BUNDLE_runc:-}" ] && bench_add "runc run" runc run --bundle "$BUNDLE_runc" "capsa-bench-runc-$$"
[ -n "$FLOOR" ] && bench_add "floor (clone+chroot+exec)" "$FLOOR" "$ROOTFS" /bin/busybox true

bench_run

# --- what the editor pays: request -> process exited, on a warm connection
# to the helper (no CLI process start), as the extension's client does
if [ -x bin/capsa ] && [ -f out/server/cli/client.js ]; then
  echo
  node bench/protocol-run.js -n "$BENCH_RUNS" busybox true | head -n 1 || echo "skip: protocol run — see above"
  node bench/protocol-run.js -n "$BENCH_RUNS" --network none busybox true | head -n 1 || echo "skip: protocol run --network none — see above"
fi

# --- the whole CLI process again, with calls half a second apart, as a person
# or a script that does something between calls makes them. The table above
# runs calls back to back: each capsa call there waits for the helper's next
# warm CLI process (native/client/client.c, server/warmclipool.ts) to finish its
# Node start-up (~130 ms of CPU), begun when the previous call came in.
SPACED=()
[[ " ${BENCH_LABELS[*]} " == *" capsa run --rm "* ]] && SPACED+=(--command-name "capsa run --rm, 0.5 s apart" "./bin/capsa run --rm busybox true")
[[ " ${BENCH_LABELS[*]} " == *" podman run --rm "* ]] && SPACED+=(--command-name "podman run --rm, 0.5 s apart" "$(bench_quote "${PODMAN[@]}" "$IMAGE" true)")
if [ ${#SPACED[@]} -gt 0 ]; then
  hyperfine -N --style basic --prepare 'sleep 0.5' --runs "$BENCH_RUNS" --export-json "$BENCH_DIR/spaced.json" \
    "${SPACED[@]}" </dev/null >"$BENCH_DIR/spaced.log" 2>&1 &&
    node bench/table.js "$BENCH_DIR/spaced.json" "calls 0.5 s apart" || { echo "spaced runs failed:"; tail -n 5 "$BENCH_DIR/spaced.log"; }
fi
