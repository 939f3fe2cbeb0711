#!/usr/bin/env bash
# A rolling upgrade of a 3-node region under writes, from one build to another.
#
#   crates/orgplane-bench/scripts/rolling-upgrade.sh OLD_BIN_DIR NEW_BIN_DIR
#
# Each BIN_DIR holds that build's `orgplane` (NEW_BIN_DIR also `orgplane-bench`). Starts a region
# of OLD on 127.0.0.1 (fresh data dirs), runs WRITERS create-members writers with request ids
# for DURATION, and after SETTLE stops node 3, 2, then 1 in turn (SIGTERM, waiting for the
# process to end) and starts it with NEW, PAUSE apart. Prints the writers' table (ok count,
# latency, errors by code), each node's count of ERROR log lines and its format-upgrade line,
# then a short linearizable read run against all three. Everything it starts it stops by PID.
#
# Knobs: WRITERS (16), DURATION (70s), SETTLE (12s), PAUSE (15s). Give OLD_BIN_DIR twice for a
# plain rolling restart to compare with.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 OLD_BIN_DIR NEW_BIN_DIR" >&2; exit 2; }
OLD=$1/orgplane; NEW=$2/orgplane; BENCH=$2/orgplane-bench
WRITERS=${WRITERS:-16}; DURATION=${DURATION:-70s}; SETTLE=${SETTLE:-12s}; PAUSE=${PAUSE:-15s}
DIR=$(mktemp -d /tmp/orgplane-rolling.XXXXXX)
# Below Linux's ephemeral range, as in region.sh.
base=$((20000 + RANDOM % 12000))
peers="1=127.0.0.1:$base,2=127.0.0.1:$((base + 1)),3=127.0.0.1:$((base + 2))"
EPS="127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"
declare -A NODE
start_node() { # BIN ID
    "$1" node --region us --node-id "$2" --listen "127.0.0.1:$((base + $2 - 1))" --data-dir "$DIR/node-$2" \
        --peers "$peers" --allow-unauthenticated 2>>"$DIR/node-$2.log" &
    NODE[$2]=$!
}
stop_all() { for p in "${NODE[@]}" ${WRITER:-}; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop_all EXIT

for i in 1 2 3; do start_node "$OLD" "$i"; done
"$BENCH" run --endpoints "$EPS" --region us --workload create-members --clients "$WRITERS" \
    --duration "$DURATION" --warmup 1s --quiet-wait 60s --request-ids >"$DIR/writes.txt" 2>&1 &
WRITER=$!
sleep "$SETTLE"
for i in 3 2 1; do
    echo "$(date -u +%T) node $i: stopping, starting the new build"
    kill "${NODE[$i]}"
    while kill -0 "${NODE[$i]}" 2>/dev/null; do sleep 0.1; done
    start_node "$NEW" "$i"
    sleep "$PAUSE"
done
wait "$WRITER"
WRITER=
tail -2 "$DIR/writes.txt"
for i in 1 2 3; do
    echo "node $i: $(grep -c ' ERROR ' "$DIR/node-$i.log" || true) ERROR lines; $(grep -o 'upgrading the store.s format in place.*' "$DIR/node-$i.log" | head -1)"
done
"$BENCH" run --endpoints "$EPS" --region us --workload get-org --clients 8 --duration 3s --warmup 1s \
    --quiet-wait 30s 2>&1 | tail -1
echo "logs in $DIR"
