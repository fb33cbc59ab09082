#!/usr/bin/env bash
# Flame graph of the pipeline process (alone: not the fleet, not the broker)
# during a load run, by default scenario 1's `max` pace.
#
#   benches/profile.sh [VISITS] [max|RATE] [DEVICES]
#
# writes benches/profiles/pipeline-VISITS-PACE-DATE.svg (and .txt, the
# run's own output). Needs
# perf (Debian: linux-perf) and inferno (`cargo install inferno`).
set -euo pipefail
visits=${1:-4000}
pace=${2:-max}
devices=${3:-16}
cd "$(dirname "$0")/.."
for tool in perf inferno-collapse-perf inferno-flamegraph; do
    command -v "$tool" >/dev/null || {
        echo "profile.sh: $tool not found (apt-get install -y linux-perf; cargo install inferno)" >&2
        exit 2
    }
done
cargo build --release -p ecg-bench --example load
load="${CARGO_TARGET_DIR:-target}/release/examples/load"
out="benches/profiles/pipeline-${visits}-${pace}-$(date -u +%Y%m%d-%H%M)"
data=$(mktemp /tmp/ecg-profile-XXXXXX.data)
folded=$(mktemp /tmp/ecg-profile-XXXXXX.folded)
trap 'rm -f "$data" "$folded"' EXIT
# DWARF unwinding: the release build keeps no frame pointers.
ECG_BENCH_PROFILER="perf record -F 199 --call-graph dwarf,16384 -o $data --" \
    "$load" "$visits" "$pace" "$devices" | tee "$out.txt"
perf script -i "$data" 2>/dev/null | inferno-collapse-perf >"$folded"
# Frames under 1 px left out: the graph stays small enough to keep.
inferno-flamegraph --minwidth 1 \
    --title "ecg-triage pipeline process, load $visits $pace $devices ($(git rev-parse --short HEAD))" \
    <"$folded" >"$out.svg"
echo "flame graph: $out.svg"
