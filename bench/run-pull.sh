#!/usr/bin/env bash
# Issue 3's figure: pull and unpack an image from a local registry, store cold.
#   capsa pull                  helper warm, its store emptied before each run
#   podman pull                 its own storage, emptied before each run
#   skopeo copy + umoci unpack  to an OCI layout, then a rootfs
#   floor                       curl of the same blobs to /dev/null, and tar -x
#                               of them into the same file system (floor = sum)
# Images, built here and pushed to the local registry (127.0.0.1:5757):
#   minbase   a Debian bookworm minbase rootfs (debootstrap), one gzip layer
#   random    ~300 MB of incompressible data in 3 gzip layers
# Environment: PULL_RUNS (default 5), PULL_WARMUP (1), PULL_IMAGES ("minbase random"), BENCH_WORK, BENCH_OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

[ "$(id -u)" -eq 0 ] || { echo "run-pull: run as root" >&2; exit 1; }

REGISTRY=127.0.0.1:5757
WORK="${BENCH_WORK:-/tmp/capsa-bench-work}/pull"
RUNS="${PULL_RUNS:-5}"
WARMUP="${PULL_WARMUP:-1}"
mkdir -p "$WORK"
bench_init pull
bash scripts/local-registry.sh start >/dev/null

# --- images: built once, pushed with skopeo from an OCI layout
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
mirror="${mirror:-$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null)}"
if [ ! -x "$WORK/minbase-rootfs/bin/bash" ]; then
  echo "building the minbase rootfs with debootstrap from ${mirror:-the default mirror}"
  rm -rf "$WORK/minbase-rootfs"
  if ! debootstrap --variant=minbase bookworm "$WORK/minbase-rootfs" ${mirror:+"$mirror"} >"$WORK/debootstrap.log" 2>&1; then
    # No mirror: a tree of many small files stands in for it.
    echo "debootstrap failed ($(tail -n 1 "$WORK/debootstrap.log")); using a generated tree of small files"
    rm -rf "$WORK/minbase-rootfs" && mkdir -p "$WORK/minbase-rootfs/bin"
    node -e '
      const fs = require("fs"), path = require("path"), crypto = require("crypto");
      const root = process.argv[1];
      for (let d = 0; d < 300; d++) {
        const dir = path.join(root, "usr", "share", "d" + d);
        fs.mkdirSync(dir, { recursive: true });
        for (let f = 0; f < 22; f++) fs.writeFileSync(path.join(dir, "f" + f), crypto.randomBytes(1 + crypto.randomInt(20000)).toString("base64"));
      }' "$WORK/minbase-rootfs"
    cp /bin/bash "$WORK/minbase-rootfs/bin/bash"
  fi
fi

# make_image NAME LAYER_DIR…: gzip each directory as a layer, push NAME:latest.
make_image() {
  local name="$1"; shift
  local layout="$WORK/layout-$name"
  if skopeo inspect --tls-verify=false "docker://$REGISTRY/bench/$name:latest" >/dev/null 2>&1; then return; fi
  rm -rf "$layout" && mkdir -p "$layout/blobs/sha256"
  local layers=()
  for dir in "$@"; do
    tar --numeric-owner --xattrs -C "$dir" -cf - . | gzip -6 >"$layout/layer.tmp"
    local hex; hex=$(sha256sum "$layout/layer.tmp" | cut -d' ' -f1)
    local diff; diff=$(gzip -dc "$layout/layer.tmp" | sha256sum | cut -d' ' -f1)
    mv "$layout/layer.tmp" "$layout/blobs/sha256/$hex"
    layers+=("$hex:$diff")
  done
  node -e '
    const fs = require("fs"), crypto = require("crypto"), path = require("path");
    const [layout, ...layers] = process.argv.slice(1);
    const put = (buf) => { const hex = crypto.createHash("sha256").update(buf).digest("hex"); fs.writeFileSync(path.join(layout, "blobs/sha256", hex), buf); return { digest: "sha256:" + hex, size: buf.length }; };
    const arch = { x64: "amd64", arm64: "arm64" }[process.arch] || process.arch;
    const config = Buffer.from(JSON.stringify({ architecture: arch, os: "linux", created: "2024-01-01T00:00:00Z", config: { Cmd: ["/bin/bash"] },
      rootfs: { type: "layers", diff_ids: layers.map((l) => "sha256:" + l.split(":")[1]) } }));
    const cfg = put(config);
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...cfg },
      layers: layers.map((l) => { const hex = l.split(":")[0]; return { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: "sha256:" + hex, size: fs.statSync(path.join(layout, "blobs/sha256", hex)).size }; }) }));
    const m = put(manifest);
    fs.writeFileSync(path.join(layout, "index.json"), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", ...m, annotations: { "org.opencontainers.image.ref.name": "latest" } }] }));
    fs.writeFileSync(path.join(layout, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  ' "$layout" "${layers[@]}"
  skopeo copy -q --dest-tls-verify=false "oci:$layout:latest" "docker://$REGISTRY/bench/$name:latest"
}

make_image minbase "$WORK/minbase-rootfs"
if [ ! -d "$WORK/random-src/2" ]; then
  for i in 0 1 2; do
    mkdir -p "$WORK/random-src/$i"
    for f in $(seq 0 9); do head -c 10M /dev/urandom >"$WORK/random-src/$i/data$f"; done
  done
fi
make_image random "$WORK/random-src/0" "$WORK/random-src/1" "$WORK/random-src/2"

# --- the blobs each image's layers are, for the floor
blobs_of() { # NAME → "digest" lines of its layers
  skopeo inspect --raw --tls-verify=false "docker://$REGISTRY/bench/$1:latest" | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => { for (const l of JSON.parse(s).layers) console.log(l.digest); });'
}

# --- capsa: its own root and socket; the helper is started once and stays warm
export CAPSA_ROOT="${CAPSA_BENCH_ROOT:-$WORK/capsa-root}"
export CAPSA_SOCKET="${CAPSA_BENCH_SOCKET:-/run/capsa/bench-pull.sock}"
export CAPSA_CONFIG="$WORK/capsa-config.json"
echo '{}' >"$CAPSA_CONFIG"
bench_capsa_own_helper "$WORK/helper.log"

PODMAN=(podman --root "$WORK/podman/storage" --runroot "$WORK/podman/run" --events-backend none)

for name in ${PULL_IMAGES:-minbase random}; do
  image="$REGISTRY/bench/$name:latest"
  names=() cmds=() prepares=()
  add() { names+=("$1"); prepares+=("$2"); cmds+=("$3"); }

  if ./bin/capsa pull -q "$image" >"$WORK/check.log" 2>&1; then
    add "capsa pull" "./bin/capsa image prune -a -f" "./bin/capsa pull -q $image"
  else
    bench_skip "capsa pull" "$(tail -n 1 "$WORK/check.log")"
  fi
  if "${PODMAN[@]}" pull -q --tls-verify=false "$image" >"$WORK/check.log" 2>&1; then
    add "podman pull" "$(bench_quote "${PODMAN[@]}") rmi -a -f" "$(bench_quote "${PODMAN[@]}") pull -q --tls-verify=false $image"
  else
    bench_skip "podman pull" "$(tail -n 1 "$WORK/check.log")"
  fi
  umoci_dir="$WORK/umoci-$name"
  add "skopeo copy + umoci unpack" "sh -c 'rm -rf $umoci_dir && mkdir -p $umoci_dir'" \
    "sh -c 'skopeo copy -q --src-tls-verify=false docker://$image oci:$umoci_dir/oci:latest && umoci unpack --image $umoci_dir/oci:latest $umoci_dir/bundle >/dev/null'"

  # The floor: the same blobs over the same HTTP, and tar -x of them here.
  floor_dir="$WORK/floor-$name"
  mkdir -p "$floor_dir/blobs"
  # The same tar -x into a directory of a random name under a parent with
  # ext4's TOPDIR flag, as Capsa's store unpacks each layer (server/image/libc.ts
  # setTopDir): the kernel then places it away from the inodes the previous
  # run just freed. Shown so that what Capsa gains from placement is not
  # taken for speed of its own.
  mkdir -p "$floor_dir/top" && chattr +T "$floor_dir/top" 2>/dev/null || true
  curl_cmd="" tar_cmd="" top_cmd='d=$(mktemp -d '"$floor_dir"'/top/r.XXXXXX); '
  for d in $(blobs_of "$name"); do
    url="http://$REGISTRY/v2/bench/$name/blobs/$d"
    [ -s "$floor_dir/blobs/${d#sha256:}" ] || curl -sf "$url" -o "$floor_dir/blobs/${d#sha256:}"
    curl_cmd+="curl -sf $url -o /dev/null; "
    tar_cmd+="tar --numeric-owner -xzf $floor_dir/blobs/${d#sha256:} -C $floor_dir/root; "
    top_cmd+="tar --numeric-owner -xzf $floor_dir/blobs/${d#sha256:} -C \$d; "
  done
  add "floor: curl to /dev/null" "true" "sh -c '$curl_cmd'"
  add "floor: tar -x" "sh -c 'rm -rf $floor_dir/root && mkdir $floor_dir/root'" "sh -c '$tar_cmd'"
  add "floor: tar -x, spread (TOPDIR)" "sh -c 'rm -rf $floor_dir/top/r.*'" "sh -c '$top_cmd'"

  args=()
  for i in "${!cmds[@]}"; do args+=(--command-name "${names[$i]}" --prepare "${prepares[$i]}" "${cmds[$i]}"); done
  json="$BENCH_DIR/results-$name.json"
  echo "== $name: $(du -sh "$WORK/$( [ "$name" = minbase ] && echo minbase-rootfs || echo random-src )" | cut -f1), $(find "$WORK/$( [ "$name" = minbase ] && echo minbase-rootfs || echo random-src )" | wc -l) entries"
  # round-robin, not hyperfine's one tool after the other: each tool gets the same machine
  node bench/interleave.js --warmup "$WARMUP" --runs "$RUNS" --export-json "$json" "${args[@]}" </dev/null 2>"$BENCH_DIR/rounds-$name.log" || {
    echo "bench pull $name: failed:"; tail -n 20 "$BENCH_DIR/rounds-$name.log"; exit 1; }
  node bench/table.js "$json" "pull $name"
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).results;
    const m = (n) => r.find((x) => x.command === n)?.median;
    const floor = m("floor: curl to /dev/null") + m("floor: tar -x");
    const spread = m("floor: curl to /dev/null") + m("floor: tar -x, spread (TOPDIR)");
    console.log(`\nfloor (curl + tar -x): ${floor.toFixed(2)} s; with tar -x spread as Capsa places layers: ${spread.toFixed(2)} s`);
    for (const n of ["capsa pull", "podman pull", "skopeo copy + umoci unpack"]) if (m(n) !== undefined) console.log(`${n}: ${m(n).toFixed(2)} s = ${(m(n) / floor).toFixed(2)}x floor, ${(m(n) / spread).toFixed(2)}x the spread floor`);
    if (m("capsa pull") && m("podman pull")) console.log(`capsa / podman: ${(m("capsa pull") / m("podman pull")).toFixed(2)}`);
  ' "$json"
  rm -rf "$umoci_dir" "$floor_dir/root" "$floor_dir"/top/r.*
done
