#!/usr/bin/env bash
# orgplane's region side by side with a 3-member etcd, on this machine, in one run.
#
#   crates/orgplane-bench/scripts/vs-etcd.sh
#
# 1. runs ../shared/anchors/etcd-bench.sh with CLUSTERS=3 (etcd's own benchmark tool; it waits
#    for a quiet machine and prints its table; results in $ETCD_WORK/results.tsv);
# 2. starts a 3-node orgplane region (release build, three `orgplane node` processes on
#    127.0.0.1, data in a temp dir) and runs orgplane-bench with the same shape of load:
#    durable writes at 64 and 256 clients sent to the leader (like etcd's --target-leader puts)
#    and linearizable reads at 64 clients spread over all nodes;
# 3. prints orgplane / etcd ratios: writes/s at 64 and 256 clients, p99 write latency at 64,
#    linearizable reads/s at 64. Everything it starts it stops by PID.
#
# Knobs: DURATION (default 10s), WARMUP (2s), ANCHORS (path to etcd-bench.sh), ETCD_WORK.
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$PWD
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
ANCHORS=${ANCHORS:-$ROOT/../shared/anchors/etcd-bench.sh}
ETCD_WORK=${ETCD_WORK:-/tmp/etcd-anchors}
OUT=$(mktemp -d /tmp/orgplane-vs-etcd.XXXXXX)
PIDS=()
stop_all() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop_all EXIT
# shellcheck source=region.sh
source "$ROOT/crates/orgplane-bench/scripts/region.sh"

[ -f "$ANCHORS" ] || { echo "vs-etcd: no anchor script at $ANCHORS" >&2; exit 1; }
echo "vs-etcd: building orgplane and orgplane-bench (release)" >&2
cargo build --release -q -p orgplane -p orgplane-bench

echo "vs-etcd: etcd, 3 members (about 8 minutes)" >&2
CLUSTERS=3 WORK="$ETCD_WORK" CHECK_PERF=0 bash "$ANCHORS" | tee "$OUT/etcd.txt" >&2

echo "vs-etcd: orgplane, 3 nodes" >&2
start_region "$ROOT/target/release" "$OUT"
BENCH=("$ROOT/target/release/orgplane-bench" run --endpoints "$EPS" --region us --duration "$DURATION" --warmup "$WARMUP" --quiet-wait 120s)
"${BENCH[@]}" --workload create-members --target-leader --clients 64,256 --json "$OUT/writes.json" >&2
"${BENCH[@]}" --workload get-org --clients 64 --json "$OUT/reads.json" >&2

python3 - "$ETCD_WORK/results.tsv" "$OUT/writes.json" "$OUT/reads.json" <<'PY'
import json, sys
etcd = {}
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    if len(f) >= 6 and f[0] == "3node":
        etcd[f[1]] = {"rps": float(f[3]) if f[3] != "NA" else 0.0, "p99": float(f[5])}
def runs(path):
    return {r["clients"]: r for r in json.load(open(path))["runs"]}
w, r = runs(sys.argv[2]), runs(sys.argv[3])
rows = [
    ("durable writes/s, 64 clients", w[64]["ok_per_s"], etcd["put-64"]["rps"]),
    ("durable writes/s, 256 clients", w[256]["ok_per_s"], etcd["put-256"]["rps"]),
    ("p99 write latency ms, 64 clients", w[64]["latency"]["p99_ms"], etcd["put-64"]["p99"]),
    ("linearizable reads/s, 64 clients", r[64]["ok_per_s"], etcd["getl-64"]["rps"]),
]
print(f"{'measure':36} {'orgplane':>10} {'etcd':>10} {'ratio':>7}")
for name, ours, theirs in rows:
    ratio = ours / theirs if theirs else float("nan")
    print(f"{name:36} {ours:10.1f} {theirs:10.1f} {ratio:6.2f}x")
PY
echo "vs-etcd: raw outputs in $OUT" >&2
