#!/usr/bin/env bash
# The tool itself, both transports over N, is measured by `mpcomm bench` (README, Performance).
# This script is the lower-level comparison of the fan-out datagram path with C (docs/perf.md).
#
# Side-by-side loopback benchmark of the datagram path, every tool in every repetition:
#   mpcomm-mmsg / mpcomm-single  examples/bench_peer.rs, real Driver+Machine, PEERS peers (threads),
#                                recvmmsg/sendmmsg on / off (the MPCOMM_NO_MMSG switch, as --no-mmsg)
#   probe-mmsg / probe-single    scripts/bench/mmsg_probe.c, same shape in C (threads)
#   probe-procs-mmsg             the same with processes instead of threads
#   probe-oneway-mmsg            C, one sender -> one receiver (the shape of iperf2/sockperf)
#   iperf2, sockperf             one UDP flow, client -> server, unlimited rate
# All traffic on 127.0.0.1, all datagrams SIZE bytes of UDP payload. The tool order rotates every
# repetition so no tool always runs first. Prints medians and per-repetition ratios.
#
# Usage: scripts/bench/run.sh   (env: REPS=7 PEERS=2 MSGS=200000 SIZE=64 SECS=2 OUT=target/bench)
# MSGS is per peer: mesh runs deliver PEERS*PEERS*MSGS datagrams, the C one-way run MSGS; iperf2
# and sockperf run SECS seconds.
# Needs: cargo, gcc, iperf (Debian `iperf` = iperf2) and sockperf: apt-get install -y iperf sockperf
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=${REPS:-7}
PEERS=${PEERS:-2}
MSGS=${MSGS:-200000}
SIZE=${SIZE:-64}
SECS=${SECS:-2}
OUT=${OUT:-target/bench}
PORT=${PORT:-5399}
mkdir -p "$OUT"
RESULTS="$OUT/results.txt"
: >"$RESULTS"

cargo build --release --quiet --example bench_peer
BENCH=target/release/examples/bench_peer
gcc -O2 -Wall -pthread -o "$OUT/mmsg_probe" scripts/bench/mmsg_probe.c
PROBE="$OUT/mmsg_probe"
have() { command -v "$1" >/dev/null; }
have iperf || echo "note: iperf (iperf2) missing, skipped: apt-get install -y iperf" >&2
have sockperf || echo "note: sockperf missing, skipped: apt-get install -y sockperf" >&2

# Wait (bounded: 5 s) until something listens on UDP $1.
wait_udp() {
  for _ in $(seq 50); do
    ss -Hlun "sport = :$1" | grep -q . && return 0
    sleep 0.1
  done
  echo "nothing listens on udp/$1 after 5 s" >&2
  return 1
}

# Every runner prints: dgrams_per_s=X delivered=D sent=S [cpu_ns_per_dgram=C recv_per_call=R]
field() { tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
kv_line() { # from a bench_peer / probe line
  local k out=""
  for k in dgrams_per_s delivered sent cpu_ns_per_dgram recv_per_call; do
    out+="$k=$(field "$k" <<<"$1") "
  done
  echo "${out% }"
}
run_mpcomm() { kv_line "$(timeout 120 "$BENCH" --peers "$PEERS" --msgs "$MSGS" --size "$SIZE" "$@")"; }
run_probe() { kv_line "$(timeout 120 "$PROBE" --peers "$PEERS" --msgs "$MSGS" --size "$SIZE" "$@")"; }

run_iperf() {
  local log="$OUT/iperf_server.csv" port=$((PORT + 1))
  timeout 60 iperf -s -u -B 127.0.0.1 -p "$port" -l "$SIZE" -y C >"$log" 2>&1 &
  local server=$!
  wait_udp "$port"
  timeout 60 iperf -c 127.0.0.1 -u -p "$port" -l "$SIZE" -b 100G -t "$SECS" -y C >"$OUT/iperf_client.csv" 2>&1
  # The server writes its report when the client's final datagram arrives; give it 5 s at most.
  for _ in $(seq 50); do grep -q , "$log" && break; sleep 0.1; done
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  # CSV: ...,interval,bytes,bits/s,jitter,lost,total,...
  awk -F, -v size="$SIZE" 'NF >= 12 { split($7, iv, "-"); secs = iv[2] - iv[1];
    got = $8 / size; printf "dgrams_per_s=%.0f delivered=%d sent=%d\n", got / secs, got, $12; exit }' "$log"
}

run_sockperf() {
  local log="$OUT/sockperf_server.txt" port=$((PORT + 2))
  timeout -s INT 60 sockperf sr -i 127.0.0.1 -p "$port" >"$log" 2>&1 &
  local server=$!
  wait_udp "$port"
  local client
  client=$(timeout 60 sockperf tp -i 127.0.0.1 -p "$port" -m "$SIZE" -t "$SECS" 2>&1)
  kill -INT "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  local sent secs got
  sent=$(sed -n 's/.*Total of \([0-9]*\) messages sent in \([0-9.]*\) sec.*/\1/p' <<<"$client")
  secs=$(sed -n 's/.*Total of \([0-9]*\) messages sent in \([0-9.]*\) sec.*/\2/p' <<<"$client")
  got=$(sed -n 's/.*Total \([0-9]*\) messages received.*/\1/p' "$log")
  awk -v g="$got" -v s="$secs" -v n="$sent" 'BEGIN { printf "dgrams_per_s=%.0f delivered=%d sent=%d\n", g / s, g, n }'
}

TOOLS=(mpcomm-mmsg mpcomm-single probe-mmsg probe-single probe-procs-mmsg probe-oneway-mmsg)
have iperf && TOOLS+=(iperf2)
have sockperf && TOOLS+=(sockperf)

run_tool() {
  case $1 in
    mpcomm-mmsg) run_mpcomm ;;
    mpcomm-single) run_mpcomm --no-mmsg ;;
    probe-mmsg) run_probe ;;
    probe-single) run_probe --no-mmsg ;;
    probe-procs-mmsg) run_probe --procs ;;
    probe-oneway-mmsg) run_probe --oneway ;;
    iperf2) run_iperf ;;
    sockperf) run_sockperf ;;
  esac
}

n=${#TOOLS[@]}
for rep in $(seq "$REPS"); do
  for i in $(seq 0 $((n - 1))); do
    tool=${TOOLS[$(((i + rep) % n))]}
    line="tool=$tool rep=$rep $(run_tool "$tool")"
    echo "$line" | tee -a "$RESULTS"
  done
done

echo
echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), kernel $(uname -r)"
echo "runs: REPS=$REPS PEERS=$PEERS MSGS=$MSGS SIZE=$SIZE SECS=$SECS; raw lines in $RESULTS"
# Medians per tool, and the median over repetitions of (tool / mpcomm-mmsg of the same repetition).
awk '
function median(a, k,   i, j, t) {
  for (i = 2; i <= k; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
  return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
}
{
  split("", v)
  for (f = 1; f <= NF; f++) { split($f, kv, "="); v[kv[1]] = kv[2] }
  rate[v["tool"], v["rep"]] = v["dgrams_per_s"]
  loss[v["tool"], v["rep"]] = v["sent"] > 0 ? 100 * (1 - v["delivered"] / v["sent"]) : 0
  cpu[v["tool"], v["rep"]] = v["cpu_ns_per_dgram"]
  if (!(v["tool"] in seen)) { seen[v["tool"]] = 1; order[++nt] = v["tool"] }
  if (v["rep"] + 0 > reps) reps = v["rep"] + 0
}
END {
  printf "%-18s %13s %9s %9s %8s %8s %6s\n", "tool", "median dgr/s", "min", "max", "ratio*", "cpu ns*", "loss"
  for (t = 1; t <= nt; t++) {
    name = order[t]; k = 0; kr = 0; kl = 0; kc = 0; lo = ""; hi = ""
    for (r = 1; r <= reps; r++) {
      if (!((name, r) in rate)) continue
      x = rate[name, r] + 0; a[++k] = x; l[++kl] = loss[name, r] + 0
      if (cpu[name, r] != "") c[++kc] = cpu[name, r] + 0
      if (lo == "" || x < lo) lo = x
      if (hi == "" || x > hi) hi = x
      b = rate["mpcomm-mmsg", r] + 0; if (b > 0) q[++kr] = x / b
    }
    printf "%-18s %13.0f %9.0f %9.0f %8.2f %8s %5.1f%%\n", name, median(a, k), lo, hi, median(q, kr),
      kc ? sprintf("%.0f", median(c, kc)) : "n/a", median(l, kl)
  }
  print "ratio*: median over repetitions of (rate / mpcomm-mmsg rate of the same repetition)"
  print "cpu ns*: median user+system CPU per delivered datagram of the benchmark process(es)"
}' "$RESULTS" | tee "$OUT/summary.txt"
