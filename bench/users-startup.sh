# Startup half of bench/run-users.sh (sourced inside its namespace, with its
# user, helper and AS wrapper): `… run --rm busybox true`, image present.

# --- references: crun on a bundle of the same image, and the floor (as bench/run-startup.sh)
ROOTFS="$WORK/image/rootfs"
if skopeo copy -q --src-tls-verify=false "docker://$IMAGE" "oci:$WORK/oci:busybox" >"$WORK/skopeo.log" 2>&1 &&
   umoci unpack --image "$WORK/oci:busybox" "$WORK/image" >/dev/null 2>&1; then
  make_bundle crun "$WORK/bundle-crun" "$ROOTFS" >/dev/null 2>&1 || rm -rf "$WORK/bundle-crun"
else
  ROOTFS=""
fi
CRUN=(crun)
if grep -qs . /sys/fs/cgroup/unified/cgroup.controllers; then
  CRUN=(unshare -m sh -c 'umount /sys/fs/cgroup/unified && exec crun "$@"' crun)
fi
gcc -O2 -o "$WORK/floor" bench/floor.c 2>/dev/null || rm -f "$WORK/floor"

# --- the rows. The first is root's ordinary call: the compiled client, served
# by the helper's warm CLI process. A user's call today is served by the Node
# CLI (the warm CLI's socket is root's alone) and its container always has a
# user namespace: the root rows in between pay each of those alone. Every
# row runs in a clean environment (AS_ROOT, AS); the wrapper rows are what
# that costs, taken off in the ratios.
bench_add "root: capsa run --rm" "${AS_ROOT[@]}" ./bin/capsa run --rm busybox true
bench_add "root: capsa run --rm --userns auto" "${AS_ROOT[@]}" ./bin/capsa run --rm --userns auto busybox true
bench_add "root: Node CLI (node bin/capsa.js)" "${AS_ROOT[@]}" node bin/capsa.js run --rm busybox true
bench_add "root: Node CLI, --userns auto" "${AS_ROOT[@]}" node bin/capsa.js run --rm --userns auto busybox true
bench_add "user: capsa run --rm" "${AS[@]}" ./bin/capsa run --rm busybox true
if [ -n "$HAVE_PODMAN" ]; then
  bench_add "user: podman run --rm (rootless, slirp4netns)" "${AS[@]}" podman run --rm "${PODMAN_FLAGS[@]}" "$IMAGE" true
  bench_add "user: podman run --rm --network none" "${AS[@]}" podman run --rm "${PODMAN_FLAGS[@]}" --network none "$IMAGE" true
fi
[ -f "$WORK/bundle-crun/config.json" ] && bench_add "root: crun run" "${AS_ROOT[@]}" "${CRUN[@]}" run --bundle "$WORK/bundle-crun" "capsa-bench-users-$$"
[ -x "$WORK/floor" ] && [ -n "$ROOTFS" ] && bench_add "floor (clone+chroot+exec)" "${AS_ROOT[@]}" "$WORK/floor" "$ROOTFS" /bin/busybox true
bench_add "root: the wrapper alone (env -i, true)" "${AS_ROOT[@]}" true
bench_add "user: the wrapper alone (setpriv + env -i, true)" "${AS[@]}" true
# Round-robin by default (bench/interleave.js: each row once per round, so the
# drifting load of a shared machine hits every row alike, and root's warm CLI
# process is ready again when its turn comes, as for calls a moment apart);
# BENCH_MODE=hyperfine runs each row's calls back to back instead.
if [ "${BENCH_MODE:-rounds}" = hyperfine ]; then
  bench_run
else
  args=()
  for i in "${!BENCH_CMDS[@]}"; do args+=(--command-name "${BENCH_LABELS[$i]}" "${BENCH_CMDS[$i]}"); done
  node bench/interleave.js --runs "$BENCH_RUNS" --warmup "$BENCH_WARMUP" --export-json "$BENCH_DIR/results.json" "${args[@]}" \
    </dev/null 2>"$BENCH_DIR/rounds.log" || { echo "run-users: rounds failed:"; tail -n 5 "$BENCH_DIR/rounds.log"; exit 1; }
  node bench/table.js "$BENCH_DIR/results.json" "startup, round-robin (each command through sh -c)"
fi

# medians (ms) by label, from the export, less the row's wrapper
ms() { jq -r --arg c "$1" '.results[] | select(.command == $c) | .median * 1000 | . * 10 | round / 10' "$BENCH_DIR/results.json"; }
ratio() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else printf "–" }'; }
diff_ms() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a != "" && b != "") printf "%.1f", a - b; else printf "–" }'; }
W_ROOT=$(ms "root: the wrapper alone (env -i, true)")
W_USER=$(ms "user: the wrapper alone (setpriv + env -i, true)")
root_ms() { diff_ms "$(ms "$1")" "$W_ROOT"; }
user_ms() { diff_ms "$(ms "$1")" "$W_USER"; }
S_ROOT=$(root_ms "root: capsa run --rm")
S_ROOT_NS=$(root_ms "root: capsa run --rm --userns auto")
S_NODE=$(root_ms "root: Node CLI (node bin/capsa.js)")
S_NODE_NS=$(root_ms "root: Node CLI, --userns auto")
S_CRUN=$(root_ms "root: crun run")
S_FLOOR=$(root_ms "floor (clone+chroot+exec)")
S_USER=$(user_ms "user: capsa run --rm")
S_PODMAN=$(user_ms "user: podman run --rm (rootless, slirp4netns)")
S_PODMAN_NONE=$(user_ms "user: podman run --rm --network none")
echo
echo "startup, medians less each row's wrapper (root's ${W_ROOT:-?} ms, the user's ${W_USER:-?} ms):"
echo
echo "| startup | medians | ratio | target |"
echo "|---|---:|---:|---:|"
echo "| user ÷ root, capsa run --rm | ${S_USER} ms ÷ ${S_ROOT} ms | $(ratio "$S_USER" "$S_ROOT") | ≤ 1.1 |"
echo "| rootless podman ÷ user capsa | ${S_PODMAN} ms ÷ ${S_USER} ms | $(ratio "$S_PODMAN" "$S_USER") | ≥ 10 |"
echo "| rootless podman --network none ÷ user capsa | ${S_PODMAN_NONE} ms ÷ ${S_USER} ms | $(ratio "$S_PODMAN_NONE" "$S_USER") | |"
echo "| user ÷ root on the same path (Node CLI, --userns auto) | ${S_USER} ms ÷ ${S_NODE_NS} ms | $(ratio "$S_USER" "$S_NODE_NS") | |"
echo "| references: crun run, floor | ${S_CRUN} ms, ${S_FLOOR} ms | | |"
echo
echo "where a user's call spends its time (differences of those medians):"
echo
echo "| part | ms |"
echo "|---|---:|"
echo "| Node CLI instead of the warm CLI process (root: Node CLI − capsa run --rm) | $(diff_ms "$S_NODE" "$S_ROOT") |"
echo "| user namespace, warm CLI (root: --userns auto − without) | $(diff_ms "$S_ROOT_NS" "$S_ROOT") |"
echo "| user namespace, Node CLI (root: --userns auto − without) | $(diff_ms "$S_NODE_NS" "$S_NODE") |"
echo "| the rest: being a user (user − root's Node CLI with --userns auto) | $(diff_ms "$S_USER" "$S_NODE_NS") |"

# --- the helper's and the kernel's part alone: on a warm connection, request →
# exit (bench/protocol-run.js, no CLI process at all), root's and the user's,
# three passes in turn, so that a drifting load hits all three alike
declare -A PR
for pass in 1 2 3; do
  PR[root]+=" $("${AS_ROOT[@]}" node bench/protocol-run.js -n "$BENCH_RUNS" busybox true 2>/dev/null | tail -n 1 | jq .median || echo)"
  PR[rootns]+=" $("${AS_ROOT[@]}" node bench/protocol-run.js -n "$BENCH_RUNS" --userns auto busybox true 2>/dev/null | tail -n 1 | jq .median || echo)"
  PR[user]+=" $("${AS[@]}" node bench/protocol-run.js -n "$BENCH_RUNS" busybox true 2>/dev/null | tail -n 1 | jq .median || echo)"
done
pmed() { printf '%s\n' $1 | sort -n | awk '{ v[NR] = $1 } END { if (NR) printf "%.1f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
P_ROOT=$(pmed "${PR[root]}") P_ROOT_NS=$(pmed "${PR[rootns]}") P_USER=$(pmed "${PR[user]}")
echo
echo "through the protocol, request → exit on a warm connection (median of 3 passes' medians of $BENCH_RUNS runs):"
echo
echo "| protocol run --rm busybox true | ms | user ÷ this |"
echo "|---|---:|---:|"
echo "| root | ${P_ROOT:-–} | $(ratio "$P_USER" "$P_ROOT") |"
echo "| root, --userns auto | ${P_ROOT_NS:-–} | $(ratio "$P_USER" "$P_ROOT_NS") |"
echo "| user | ${P_USER:-–} | |"
