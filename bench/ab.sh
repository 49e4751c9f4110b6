#!/usr/bin/env bash
# Paired A/B timing of two builds of xtask on one bench-worker workload: the two binaries run
# alternately (which goes first alternates too), so this host's drift of tens of percent over
# minutes hits both sides alike; prints each round's samples/s and new/old, then the median.
#
#   cp target/release/xtask /tmp/xtask-old   # build the baseline first
#   … change, cargo build --release -p xtask …
#   bench/ab.sh /tmp/xtask-old target/release/xtask 8 --model multiband_anc --global-batch 1 --steps 500 --bf16
#   bench/ab.sh OLD NEW 8 --model lstm_attention --global-batch 256 --steps 40 --bf16 --infer
set -euo pipefail
if [ $# -lt 4 ]; then
    sed -n '2,9p' "$0" >&2
    exit 2
fi
old=$1 new=$2 rounds=$3
shift 3
rate() {
    local bin=$1
    shift
    RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-2} "$bin" bench-worker "$@" |
        python3 -c 'import json, sys; print(json.loads(sys.stdin.read().splitlines()[-1])["samples_per_s"])'
}
ratios=()
for r in $(seq "$rounds"); do
    if [ $((r % 2)) = 1 ]; then o=$(rate "$old" "$@"); n=$(rate "$new" "$@")
    else n=$(rate "$new" "$@"); o=$(rate "$old" "$@"); fi
    ratio=$(python3 -c "print(f'{$n / $o:.3f}')")
    ratios+=("$ratio")
    printf 'round %d: old %.0f  new %.0f samples/s  new/old %s\n' "$r" "$o" "$n" "$ratio"
done
python3 -c "import statistics, sys; v = sorted(map(float, sys.argv[1:])); print(f'median new/old {statistics.median(v):.3f} [{v[0]:.3f}–{v[-1]:.3f}] over {len(v)} rounds')" "${ratios[@]}"
