#!/usr/bin/env bash
# Two builds of orgplane side by side on the same load, alternately, in one run.
#
#   crates/orgplane-bench/scripts/compare-builds.sh BEFORE_BIN_DIR AFTER_BIN_DIR
#
# Each BIN_DIR holds that build's `orgplane` and `orgplane-bench` (for example a worktree's
# target/release). For each of ROUNDS rounds and each build in turn: a 3-process region on
# 127.0.0.1 (fresh data dirs), durable writes (create-members) at WRITE_CLIENTS sent to the
# leader, then linearizable reads (get-org) at READ_CLIENTS spread over the nodes; one line per
# run. Everything it starts it stops by PID.
#
# Knobs: ROUNDS (2), DURATION (8s), WARMUP (2s), WRITE_CLIENTS (64,256), READ_CLIENTS (64; empty
# skips the reads).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BEFORE_BIN_DIR AFTER_BIN_DIR" >&2; exit 2; }
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-8s}
WARMUP=${WARMUP:-2s}
WRITE_CLIENTS=${WRITE_CLIENTS:-64,256}
READ_CLIENTS=${READ_CLIENTS-64}
PIDS=()
stop_all() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=(); }
trap stop_all EXIT
# shellcheck source=region.sh
source "$(dirname "$0")/region.sh"

one_build() { # LABEL BIN_DIR
    local label=$1 bin=$2 out
    out=$(mktemp -d /tmp/orgplane-compare.XXXXXX)
    start_region "$bin" "$out"
    local bench=("$bin/orgplane-bench" run --endpoints "$EPS" --region us --duration "$DURATION" --warmup "$WARMUP" --quiet-wait 60s)
    "${bench[@]}" --workload create-members --target-leader --clients "$WRITE_CLIENTS" --json "$out/writes.json" >"$out/writes.txt" 2>&1
    if [ -n "$READ_CLIENTS" ]; then
        "${bench[@]}" --workload get-org --clients "$READ_CLIENTS" --json "$out/reads.json" >"$out/reads.txt" 2>&1
    fi
    stop_all
    python3 - "$label" "$out" <<'PY'
import json, os, sys
label, out = sys.argv[1], sys.argv[2]
for name in ("writes.json", "reads.json"):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        continue
    for r in json.load(open(path))["runs"]:
        lat, cpu = r["latency"], r["cpu"]
        print(f'{label:7} {r["name"]:15} {r["clients"]:4} clients  {r["ok_per_s"]:9.1f} ok/s  '
              f'p50 {lat["p50_ms"]:7.2f} ms  p99 {lat["p99_ms"]:7.2f} ms  errors {sum(r["errors"].values())}  '
              f'node cores {cpu["other_cores"]:.2f}')
PY
    rm -rf "$out"
}

for round in $(seq "$ROUNDS"); do
    echo "# round $round"
    one_build before "$1"
    one_build after "$2"
done
