#!/usr/bin/env bash
# The build benchmark: one generated project built by `capsa build` and by
# `podman build`, in one run, round-robin (bench/interleave.js), then the
# result pushed by each to the same local registry.
#
#   cold        --no-cache on both, the base image present
#   no change   the same build again, every step cached
#   late edit   one source file that the late `COPY src/` takes changed
#               (its content alternates each run, so each run is a change)
#   push        the built image to a new repository each run (every blob
#               uploaded); then again to the same one (every blob there)
#   floor       tar of the context to a file + a bare RUN container
#               (crun run of the busybox rootfs: `capsa run --rm`'s floor);
#               for the late edit, tar + sha256sum of the COPY --from layer
#               (and with gzip -6, what a capture from scratch costs)
#
# The project (generated once under $BENCH_WORK/build/project): a manifest
# COPY'd first, a RUN that "installs" what it lists (busybox gzip, sha256sum,
# seq, awk over generated files), lib/ and assets/ COPY'd, a RUN that packs
# and hashes them, src/ (a few hundred files in nested dirs) COPY'd last,
# and a second stage that takes /app from the first into a small image.
# The base image is 127.0.0.1:5757/library/busybox:latest, never the internet.
#
# Environment: BUILD_RUNS (default 5), BUILD_WARMUP (1), BENCH_WORK, BENCH_OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

[ "$(id -u)" -eq 0 ] || { echo "build.sh: run as root" >&2; exit 1; }

REGISTRY=127.0.0.1:5757
BASE=$REGISTRY/library/busybox:latest
WORK="${BENCH_WORK:-/tmp/capsa-bench-work}/build"
RUNS="${BUILD_RUNS:-5}"
WARMUP="${BUILD_WARMUP:-1}"
mkdir -p "$WORK"
BENCH_RUNS=$RUNS BENCH_WARMUP=$WARMUP bench_init build
bash scripts/local-registry.sh start >/dev/null

# --- the project
PROJ="$WORK/project"
if [ ! -f "$PROJ/Dockerfile" ]; then
  rm -rf "$PROJ" && mkdir -p "$PROJ"
  node -e '
    const fs = require("fs"), path = require("path");
    const root = process.argv[1];
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau".split(" ");
    const text = (n) => Array.from({ length: n }, () => words[Math.floor(rnd() * words.length)]).join(" ");
    const put = (p, s) => { fs.mkdirSync(path.dirname(path.join(root, p)), { recursive: true }); fs.writeFileSync(path.join(root, p), s); };
    // a package-like manifest: 40 "dependencies"
    put("manifest.txt", Array.from({ length: 40 }, (_, i) => `dep${i} 1.${i}.0`).join("\n") + "\n");
    // src/: 300 source files in 30 directories, 1-8 kB each
    for (let d = 0; d < 30; d++) for (let f = 0; f < 10; f++)
      put(`src/mod${d}/sub${f % 3}/file${f}.js`, `// module ${d}/${f}\n` + Array.from({ length: 10 + Math.floor(rnd() * 80) }, (_, l) => `export const v${l} = "${text(8)}";`).join("\n") + "\n");
    // lib/: 100 files; assets/: 40 larger text files (20-60 kB)
    for (let f = 0; f < 100; f++) put(`lib/l${f % 10}/lib${f}.js`, text(200 + Math.floor(rnd() * 800)) + "\n");
    for (let f = 0; f < 40; f++) put(`assets/a${f}.txt`, text(3000 + Math.floor(rnd() * 6000)) + "\n");
    put("src/main.js", "// entry\nexport const edit = 0;\n");
    put(".dockerignore", "*.log\n");
  ' "$PROJ"
  cat >"$PROJ/Dockerfile" <<EOF
FROM $BASE AS build
WORKDIR /app
COPY manifest.txt ./
# "install" what the manifest lists: generate, compress and hash each
RUN mkdir -p deps && while read -r name version; do \\
      mkdir -p "deps/\$name" && seq 1 20000 | awk -v n="\$name" '{ print n, \$1, \$1 * 7 % 1000 }' >"deps/\$name/data.txt" && \\
      gzip -6 -k "deps/\$name/data.txt" && sha256sum "deps/\$name/data.txt.gz" >"deps/\$name/SUM" && echo "\$version" >"deps/\$name/VERSION"; \\
    done <manifest.txt && find deps -type f | wc -l
COPY lib/ ./lib/
COPY assets/ ./assets/
RUN mkdir -p dist && tar -cf - lib assets | gzip -6 >dist/bundle.tar.gz && find lib assets -type f -exec sha256sum {} + >dist/SUMS && wc -l dist/SUMS
COPY src/ ./src/
FROM $BASE
COPY --from=build /app /app
WORKDIR /app
CMD ["sh", "-c", "cat /app/src/main.js"]
EOF
fi
du_ctx=$(du -sh --exclude=Dockerfile "$PROJ" | cut -f1)
files_ctx=$(find "$PROJ" -type f | wc -l)

# --- capsa: its own helper (this tree's out/), root and socket; warm CLI via bin/capsa
export CAPSA_ROOT="${CAPSA_BENCH_ROOT:-$WORK/capsa-root}"
export CAPSA_SOCKET="${CAPSA_BENCH_SOCKET:-/run/capsa/bench-build.sock}"
export CAPSA_CONFIG="$WORK/capsa-config.json"
echo '{}' >"$CAPSA_CONFIG"
bench_capsa_own_helper "$WORK/helper.log"
CAPSA="$PWD/bin/capsa"
"$CAPSA" pull -q "$BASE" >/dev/null

# --- podman: isolated storage, the same base image from the same registry
PODMAN=(podman --root "$WORK/podman/storage" --runroot "$WORK/podman/run" --tmpdir "$WORK/podman/tmp" --events-backend none --cgroup-manager cgroupfs)
P="$(bench_quote "${PODMAN[@]}")"
"${PODMAN[@]}" pull -q --tls-verify=false "$BASE" >/dev/null

# the late-COPY file gets new content before each run: a counter, so never a
# content either cache saw before, and every run is a real change
EDIT="$PROJ/src/main.js"
cat >"$WORK/edit.sh" <<EOF
#!/bin/sh
n=\$((\$(cat "$WORK/edit-counter" 2>/dev/null || echo 0) + 1)); echo \$n >"$WORK/edit-counter"
printf '// entry\nexport const edit = "%s-%s";\n' "$$" "\$n" >"$EDIT"
EOF
chmod +x "$WORK/edit.sh"

CB="$CAPSA build -q -t bench-build/app:latest $PROJ"
PB="$P build -q --layers --tls-verify=false --runtime runc -t bench-build/app:latest $PROJ"
# each tool built once, so that "no change" and "late edit" start from a cache
$CB >/dev/null && $PB >/dev/null

echo "== the project: $files_ctx files, $du_ctx; $(grep -c '^\(COPY\|RUN\)' "$PROJ/Dockerfile") COPY/RUN steps, 2 stages"
names=() prepares=() cmds=()
add() { names+=("$1"); prepares+=("$2"); cmds+=("$3"); }
add "capsa build, cold (--no-cache)" "true" "$CB --no-cache"
add "podman build, cold (--no-cache)" "true" "$PB --no-cache"
add "capsa build, no change" "true" "$CB"
add "podman build, no change" "true" "$PB"
add "capsa build, late COPY file changed" "$WORK/edit.sh" "$CB"
add "podman build, late COPY file changed" "$WORK/edit.sh" "$PB"

# --- push: a new repository each run (every blob goes up), then the same one again
COUNTER="$WORK/push-counter"
echo 0 >"$COUNTER"
next='n=$(($(cat '"$COUNTER"') + 1)); echo $n >'"$COUNTER"
cur='n=$(cat '"$COUNTER"')'
add "capsa push, new repository" "sh -c '$next; $CAPSA tag bench-build/app:latest $REGISTRY/bench-build/capsa-$$-\$n:latest'" \
  "sh -c '$cur; $CAPSA push -q $REGISTRY/bench-build/capsa-$$-\$n:latest'"
add "podman push, new repository" "true" \
  "sh -c '$cur; $P push -q --tls-verify=false bench-build/app:latest docker://$REGISTRY/bench-build/podman-$$-\$n:latest'"
add "capsa push, all blobs there" "true" "sh -c '$cur; $CAPSA push -q $REGISTRY/bench-build/capsa-$$-\$n:latest'"
add "podman push, all blobs there" "true" \
  "sh -c '$cur; $P push -q --tls-verify=false bench-build/app:latest docker://$REGISTRY/bench-build/podman-$$-\$n:latest'"

# --- the floor: what a build cannot avoid (pack the context; start one RUN container)
ROOTFS="$WORK/busybox-rootfs"
if [ ! -x "$ROOTFS/rootfs/bin/busybox" ]; then
  rm -rf "$WORK/oci" "$ROOTFS"
  skopeo copy -q --src-tls-verify=false "docker://$BASE" "oci:$WORK/oci:busybox"
  umoci unpack --image "$WORK/oci:busybox" "$ROOTFS" >/dev/null
fi
add "floor: tar of the context" "true" "tar -C $PROJ -cf $WORK/floor.tar ."
# what a late edit cannot avoid at the least: the final stage's COPY --from layer (the stage's /app,
# which changed) read and hashed once as a tar; gzip -6 of it on top is what capturing it anew costs
FROM_LAYER=$(for d in "$CAPSA_ROOT"/layers/sha256/*/; do [ -d "$d/app/deps" ] && [ -d "$d/app/src" ] && [ ! -e "$d/bin" ] && echo "$d" && break; done)
if [ -n "$FROM_LAYER" ]; then
  add "floor: tar + sha256sum of the COPY --from layer" "true" "sh -c 'tar -C $FROM_LAYER -cf - . | sha256sum >/dev/null'"
  add "floor: tar + gzip -6 + sha256sum of it" "true" "sh -c 'tar -C $FROM_LAYER -cf - . | gzip -6 | sha256sum >/dev/null'"
fi
if command -v crun >/dev/null; then
  BUNDLE=$(make_bundle crun "$WORK/bundle-crun" "$ROOTFS/rootfs")
  # crun refuses a hybrid cgroup hierarchy: as run-startup.sh, in a mount namespace without cgroup2
  add "floor: bare RUN container (crun run true)" "true" \
    "unshare -m sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; crun run --bundle $BUNDLE bench-build-crun-\$\$ >/dev/null'"
fi
add "capsa run --rm busybox true" "true" "$CAPSA run --rm --network none $BASE true"

args=()
for i in "${!cmds[@]}"; do args+=(--command-name "${names[$i]}" --prepare "${prepares[$i]}" "${cmds[$i]}"); done
json="$BENCH_DIR/results.json"
node bench/interleave.js --warmup "$WARMUP" --runs "$RUNS" --export-json "$json" "${args[@]}" </dev/null 2>"$BENCH_DIR/rounds.log" || {
  echo "bench build: failed:"; tail -n 20 "$BENCH_DIR/rounds.log"; exit 1; }
node bench/table.js "$json" build
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).results;
  const m = (n) => r.find((x) => x.command === n)?.median;
  const f = (s) => (s >= 1 ? `${s.toFixed(2)} s` : `${(s * 1000).toFixed(0)} ms`);
  console.log("\n| build / push | capsa | podman | capsa ÷ podman | target |\n|---|---:|---:|---:|---|");
  const rows = [["cold (--no-cache)", "build, cold (--no-cache)", "≤ 1"], ["no change", "build, no change", "≤ 0.2"],
    ["late COPY file changed", "build, late COPY file changed", "≤ 0.2"], ["push, new repository", "push, new repository", "≤ 1"],
    ["push, all blobs there", "push, all blobs there", ""]];
  for (const [label, key, target] of rows) {
    const c = m("capsa " + key), p = m("podman " + key);
    if (c === undefined || p === undefined) continue;
    console.log(`| ${label} | ${f(c)} | ${f(p)} | ${(c / p).toFixed(2)} (${(p / c).toFixed(1)}× faster) | ${target} |`);
  }
  const fl = m("floor: tar of the context"), fr = m("floor: bare RUN container (crun run true)");
  if (fl !== undefined) console.log(`\nfloor: tar of the context ${f(fl)}${fr !== undefined ? `, a bare RUN container ${f(fr)}, sum ${f(fl + fr)}` : ""}`);
  const ft = m("floor: tar + sha256sum of the COPY --from layer"), fz = m("floor: tar + gzip -6 + sha256sum of it");
  if (ft !== undefined) console.log(`floor of the late edit: tar + sha256sum of the COPY --from layer ${f(ft)}${fz !== undefined ? ` (with gzip -6: ${f(fz)})` : ""}`);
' "$json"
# the repositories this run pushed are left in the local registry (it is the tests' own)
