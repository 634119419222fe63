#!/usr/bin/env bash
# The ordering bars of the README ("Fixing the order"): every mode x both transports, N=8,
# M=100, --wan gcp8 at time scale 0.1, 10 seeds, at 0 %, 1 % and 5 % extra loss. Writes the
# runs as JSON lines and the lab's side-by-side tables to DIR, then checks every bar.
#
#   scripts/order/bars.sh [DIR]        (default: order-bars/; about 10 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-order-bars}
mkdir -p "$dir"
cargo build --release --quiet
for loss in 0 0.01 0.05; do
  echo "loss $loss ..." >&2
  target/release/mpcomm lab --peers 8 --msgs 100 --wan gcp8 --time-scale 0.1 \
    --order all --transport both --runs 10 --wan-loss "$loss" \
    --json > "$dir/runs-loss-$loss.jsonl"
  target/release/mpcomm report "$dir/runs-loss-$loss.jsonl" > "$dir/report-loss-$loss.txt" || true
done
python3 scripts/order/check_bars.py "$dir"/runs-loss-*.jsonl | tee "$dir/bars.txt"
