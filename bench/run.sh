#!/usr/bin/env bash
# Runs the standard benchmark scenarios of docs/benchmarks.md on loopback: builds voxgate
# (release), then `voxgate bench scenarios`, which starts its own emulator and gateway processes
# for each scenario, and writes the tables into docs/benchmarks.md (between its bench markers).
# Extra arguments go to `voxgate bench scenarios` (see `voxgate bench scenarios --help`), e.g.
#   bench/run.sh --sizes 100,1000 --duration 30 --churn-slots 0
#   sudo bench/run.sh --autogroup-nice -15        # on a machine shared with other work
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin voxgate
bin="${CARGO_TARGET_DIR:-target}/release/voxgate"
# Thousands of sockets: voxgate raises its own soft limit to the hard limit; say so if that is low.
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt 16384 ]; then
    echo "bench/run.sh: the hard open-files limit is $(ulimit -Hn); 5000 sessions need about 11000" >&2
fi
exec "$bin" bench scenarios --markdown docs/benchmarks.md "$@"
