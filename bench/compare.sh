#!/usr/bin/env bash
# Compares two voxgate binaries (e.g. a commit and the one before it) in one run: each gets its own
# emulator and gateway on loopback, started side by side, and `voxgate bench` (from the second
# binary) drives them in turn with the same load — OLD, NEW, OLD, NEW, … — so that both see the
# same machine. Prints each run's figures and the NEW ÷ OLD ratio of gateway CPU per session-minute
# of each pair, then the median ratio.
#   bench/compare.sh OLD_BIN NEW_BIN [PAIRS] [SESSIONS] [DURATION]     (defaults: 3 2000 30)
# e.g. git worktree add /tmp/old HEAD~1 && (cd /tmp/old && cargo build --release --bin voxgate)
#      bench/compare.sh /tmp/old/target/release/voxgate target/release/voxgate
set -euo pipefail
old=$1 new=$2 pairs=${3:-3} sessions=${4:-2000} duration=${5:-30}
out=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT

# start NAME BIN: an emulator and a gateway in front of it; sets ${NAME}_url/_gw/_emu.
start() {
    local name=$1 bin=$2 addr
    "$bin" emulator --listen 127.0.0.1:0 >"$out/$name.emulator.out" 2>"$out/$name.emulator.log" &
    pids+=($!)
    printf -v "${name}_emu" %s $!
    addr=$(listening "$out/$name.emulator.out")
    RUST_LOG=warn VOXGATE_RECOGNIZER__BACKEND=google VOXGATE_GOOGLE__AUTH=none \
    VOXGATE_GOOGLE__ENDPOINT="http://$addr" \
    VOXGATE_SERVER__CONNECTION_RATE_PER_IP=1e9 VOXGATE_SERVER__CONNECTION_BURST_PER_IP=1000000 \
    VOXGATE_SESSION__MAX_SESSIONS_PER_IP=1000000 \
        "$bin" serve --config /dev/null --listen 127.0.0.1:0 >"$out/$name.gateway.out" 2>"$out/$name.gateway.log" &
    pids+=($!)
    printf -v "${name}_gw" %s $!
    printf -v "${name}_url" %s "ws://$(listening "$out/$name.gateway.out")/v1/listen"
}

# listening FILE: the address a voxgate process printed ("listening on ADDR"), waiting for it.
listening() {
    local addr=""
    for _ in $(seq 100); do
        addr=$(sed -n 's/^listening on //p' "$1")
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || { echo "bench/compare.sh: no address in $1" >&2; exit 1; }
    echo "$addr"
}

# run NAME: one bench run against NAME's gateway; prints its CPU per session-minute.
run() {
    local name=$1 url gw emu
    url=${name}_url gw=${name}_gw emu=${name}_emu
    "$new" bench --url "${!url}" --sessions "$sessions" --duration "$duration" \
        --server-pid "${!gw}" --emulator-pid "${!emu}" >"$out/$name.$2.txt" 2>&1
    grep -E "sessions failed|transcript errors|added   |server   pid|emulator pid|machine" "$out/$name.$2.txt" |
        sed "s/^/$name /" >&2
    awk '/server   pid/ { for (i = 1; i <= NF; i++) if ($i == "per") print $(i - 2) }' "$out/$name.$2.txt"
}

start old "$old"
start new "$new"
ratios=()
for pair in $(seq "$pairs"); do
    o=$(run old "$pair")
    n=$(run new "$pair")
    r=$(awk -v o="$o" -v n="$n" 'BEGIN { printf "%.3f", n / o }')
    echo "pair $pair: old $o, new $n CPU-s per session-minute; new / old $r"
    ratios+=("$r")
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
echo "median new / old: $median ($pairs pairs, $sessions sessions × ${duration} s; reports in $out)"
