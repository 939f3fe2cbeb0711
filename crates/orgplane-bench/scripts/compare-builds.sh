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
#
# At the end it prints, for each workload and client count, the after/before ratio of ok/s and
# of p99 in every round and their geometric mean. On the shared 2-core machines a single pair
# varies by about 15% either way: the same build against itself (BEFORE = AFTER) gave 1.15x,
# 0.94x and 0.93x in one run. Trust a difference only when the rounds agree on its direction.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BEFORE_BIN_DIR AFTER_BIN_DIR" >&2; exit 2; }
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-8s}
WARMUP=${WARMUP:-2s}
WRITE_CLIENTS=${WRITE_CLIENTS:-64,256}
READ_CLIENTS=${READ_CLIENTS-64}
PIDS=()
RESULTS=$(mktemp /tmp/orgplane-compare-results.XXXXXX)
stop_all() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=(); }
trap 'stop_all; rm -f "$RESULTS"' EXIT
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
    python3 - "$label" "$out" "$RESULTS" <<'PY'
import json, os, sys
label, out, results = sys.argv[1], sys.argv[2], sys.argv[3]
for name in ("writes.json", "reads.json"):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        continue
    for r in json.load(open(path))["runs"]:
        lat, cpu = r["latency"], r["cpu"]
        with open(results, "a") as f:
            f.write(json.dumps({"label": label, "name": r["name"], "clients": r["clients"],
                                "ok_per_s": r["ok_per_s"], "p99_ms": lat["p99_ms"]}) + "\n")
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

python3 - "$RESULTS" <<'PY'
import json, math, sys
from collections import defaultdict
runs = defaultdict(lambda: {"before": [], "after": []})
for line in open(sys.argv[1]):
    r = json.loads(line)
    runs[(r["name"], r["clients"])][r["label"]].append(r)
print("# after / before, per round, and geometric mean")
for (name, clients), by in sorted(runs.items()):
    pairs = list(zip(by["before"], by["after"]))
    for metric in ("ok_per_s", "p99_ms"):
        ratios = [a[metric] / b[metric] for b, a in pairs if b[metric] > 0 and a[metric] > 0]
        if not ratios:
            continue
        mean = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
        shown = " ".join(f"{x:.2f}" for x in ratios)
        print(f"{name:15} {clients:4} clients  {metric:8}  {shown}  mean {mean:.2f}x")
PY
