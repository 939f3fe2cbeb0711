# Sourced by the bench scripts: start_region BIN_DIR DATA_DIR starts a 3-node region of
# BIN_DIR/orgplane on 127.0.0.1 (data and logs under DATA_DIR), appends the node PIDs to the
# caller's PIDS array and sets EPS to the nodes' endpoints (HOST:PORT,...).
start_region() {
    local bin=$1 dir=$2 base peers i
    # Below Linux's ephemeral range (32768-60999 by default): a port in it can be held by some
    # client socket of a previous run (TIME_WAIT), and the node then fails to listen.
    base=$((20000 + RANDOM % 12000))
    peers="1=127.0.0.1:$base,2=127.0.0.1:$((base + 1)),3=127.0.0.1:$((base + 2))"
    for i in 1 2 3; do
        "$bin/orgplane" node --region us --node-id "$i" --listen "127.0.0.1:$((base + i - 1))" \
            --data-dir "$dir/node-$i" --peers "$peers" --allow-unauthenticated 2>"$dir/node-$i.log" &
        PIDS+=($!)
    done
    EPS="127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"
}
