# Side-by-side benchmarks with hyperfine. Source it, then:
#
#   bench_init startup                       # names the run, makes $BENCH_DIR
#   bench_add "capsa run --rm"  ./bin/capsa run --rm busybox true
#   bench_add "crun run"        crun run --bundle "$B" bench-crun
#   bench_run                                # hyperfine, JSON export, table
#
# bench_add runs the command once first: a tool that fails is skipped with a
# clear line and the others still run. Commands are argv (run without a shell,
# hyperfine -N), so quote as for exec.
#
# Environment: BENCH_RUNS (default 20), BENCH_WARMUP (3), BENCH_OUT (results
# directory, default /tmp/capsa-bench).

BENCH_RUNS="${BENCH_RUNS:-20}"
BENCH_WARMUP="${BENCH_WARMUP:-3}"
BENCH_OUT="${BENCH_OUT:-/tmp/capsa-bench}"
BENCH_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

bench_init() {
  BENCH_NAME="$1"
  BENCH_DIR="$BENCH_OUT/$BENCH_NAME"
  mkdir -p "$BENCH_DIR"
  BENCH_LABELS=()
  BENCH_CMDS=()
  BENCH_SKIPPED=()
  command -v hyperfine >/dev/null || { echo "bench: hyperfine is not installed (bash scripts/setup.sh)" >&2; return 1; }
  echo "== bench $BENCH_NAME (runs $BENCH_RUNS, warmup $BENCH_WARMUP) =="
}

# Quotes argv into one command line for hyperfine.
bench_quote() {
  local out="" a
  for a in "$@"; do out+="$(printf '%q' "$a") "; done
  printf '%s' "${out% }"
}

bench_add() {
  local label="$1"; shift
  local log="$BENCH_DIR/check-$(( ${#BENCH_LABELS[@]} + ${#BENCH_SKIPPED[@]} )).log"
  if "$@" </dev/null >"$log" 2>&1; then
    BENCH_LABELS+=("$label")
    BENCH_CMDS+=("$(bench_quote "$@")")
  else
    local code=$?
    local why
    why=$(grep -v '^\s*$' "$log" | tail -n 1 | cut -c1-160)
    echo "skip: $label — exited $code${why:+: $why}"
    BENCH_SKIPPED+=("$label")
  fi
}

# Reports a tool that could not even be prepared.
bench_skip() {
  echo "skip: $1 — $2"
  BENCH_SKIPPED+=("$1")
}

bench_run() {
  if [ ${#BENCH_CMDS[@]} -eq 0 ]; then
    echo "bench $BENCH_NAME: nothing to measure"
    return 1
  fi
  local json="$BENCH_DIR/results.json" args=() i
  for i in "${!BENCH_CMDS[@]}"; do
    args+=(--command-name "${BENCH_LABELS[$i]}" "${BENCH_CMDS[$i]}")
  done
  hyperfine -N --style basic --warmup "$BENCH_WARMUP" --runs "$BENCH_RUNS" \
    --export-json "$json" "${args[@]}" </dev/null >"$BENCH_DIR/hyperfine.log" 2>&1 || {
    echo "bench $BENCH_NAME: hyperfine failed:"; tail -n 20 "$BENCH_DIR/hyperfine.log"; return 1; }
  node "$BENCH_LIB_DIR/table.js" "$json" "$BENCH_NAME"
}

# Capsa's side of a benchmark: its own root and socket (CAPSA_BENCH_ROOT,
# CAPSA_BENCH_SOCKET), the local registry REGISTRY as docker.io's mirror. The
# first capsa call starts a helper if none runs; bench_capsa_stop stops it
# again then, and leaves alone a helper that was there before.
bench_capsa_env() { # REGISTRY
  export CAPSA_ROOT="${CAPSA_BENCH_ROOT:-/var/lib/capsa-bench}"
  export CAPSA_SOCKET="${CAPSA_BENCH_SOCKET:-/run/capsa/bench.sock}"
  export CAPSA_REGISTRY_MIRROR="docker.io=http://$1"
  BENCH_HAD_HELPER=$(bench_capsa_helper_pid)
}

bench_capsa_helper_pid() {
  pgrep -f -- "(server/main|dist/server)\.js --socket $CAPSA_SOCKET --root $CAPSA_ROOT\$" || true
}

bench_capsa_stop() {
  local pid
  if [ -z "$BENCH_HAD_HELPER" ]; then
    pid=$(bench_capsa_helper_pid)
    [ -n "$pid" ] && kill $pid
  fi
  true
}

# A helper of this tree's own (out/) on CAPSA_SOCKET and CAPSA_ROOT, its
# stderr in LOG, killed when the script exits; returns once it listens.
bench_capsa_own_helper() { # LOG
  node out/server/main.js --socket "$CAPSA_SOCKET" --root "$CAPSA_ROOT" 2>"$1" &
  BENCH_HELPER_PID=$!
  trap 'kill "$BENCH_HELPER_PID" 2>/dev/null; true' EXIT
  for _ in $(seq 100); do [ -S "$CAPSA_SOCKET" ] && break; sleep 0.1; done
}

# A bundle of RUNTIME's own spec in DIR, adjusted to run `true` on ROOTFS
# without a terminal (the crun and runc references); prints DIR.
make_bundle() { # RUNTIME DIR ROOTFS
  local dir="$2"
  rm -rf "$dir" && mkdir -p "$dir"
  (cd "$dir" && "$1" spec >/dev/null)
  node -e '
    const fs = require("fs");
    const [file, rootfs] = process.argv.slice(1);
    const spec = JSON.parse(fs.readFileSync(file, "utf8"));
    spec.process.terminal = false;
    spec.process.args = ["/bin/true"];
    spec.root = { path: rootfs, readonly: true };
    spec.hostname = "bench";
    fs.writeFileSync(file, JSON.stringify(spec, null, 2));
  ' "$dir/config.json" "$3"
  echo "$dir"
}
