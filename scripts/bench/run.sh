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
#   mpcomm-mcast / probe-mcast   the multicast mesh: every peer joins one group on 127.0.0.1 and
#                                sends each datagram once to it (mpcomm: the --transport multicast
#                                path, with its unicast socket for one-peer messages)
#   mpcomm-base-*                the same with the bench_peer binary BASE (a build of another
#                                commit), run in the same repetitions: before/after comparisons
# MODE=latency: paced instead, one datagram every INTERVAL_US µs per peer (default 1000,
# MSGS default 2000), and the one-way latency of the cross-peer deliveries (see the doc comments
# of examples/bench_peer.rs and mmsg_probe.c: delivery clock_gettime - send time in the payload):
#   mpcomm-lat, mpcomm-mcast-lat, probe-lat, probe-mcast-lat  the two meshes, as above
#   probe-oneway-lat             C, one sender -> one receiver, one destination per datagram
# All traffic on 127.0.0.1, all datagrams SIZE bytes of UDP payload. The tool order rotates every
# repetition so no tool always runs first. Prints medians and per-repetition ratios.
#
# Usage: scripts/bench/run.sh   (env: REPS=7 PEERS=2 MSGS=200000 SIZE=64 SECS=2 OUT=target/bench
#                              MODE=rate|latency INTERVAL_US=1000 BASE=path TOOLS="a b ..."
#                              PAIRS="mpcomm-mmsg/probe-mmsg ...")
# MSGS is per peer: mesh runs deliver PEERS*PEERS*MSGS datagrams, the C one-way run MSGS; iperf2
# and sockperf run SECS seconds.
# Needs: cargo, gcc, iperf (Debian `iperf` = iperf2) and sockperf: apt-get install -y iperf sockperf
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=${REPS:-7}
PEERS=${PEERS:-2}
MODE=${MODE:-rate}
INTERVAL_US=${INTERVAL_US:-1000}
if [ "$MODE" = latency ]; then MSGS=${MSGS:-2000}; else MSGS=${MSGS:-200000}; fi
BASE=${BASE:-}
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

# Every runner prints: dgrams_per_s=X delivered=D sent=S [cpu_ns_per_dgram=C recv_per_call=R
# lat_p50_us=.. lat_p99_us=..]
field() { tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
kv_line() { # from a bench_peer / probe line
  local k out=""
  for k in dgrams_per_s delivered sent cpu_ns_per_dgram recv_per_call lat_p50_us lat_p99_us; do
    out+="$k=$(field "$k" <<<"$1") "
  done
  echo "${out% }"
}
run_mpcomm() { kv_line "$(timeout 120 "$BENCH" --peers "$PEERS" --msgs "$MSGS" --size "$SIZE" "$@")"; }
run_base() { kv_line "$(timeout 120 "$BASE" --peers "$PEERS" --msgs "$MSGS" --size "$SIZE" "$@")"; }
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

if [ -n "${TOOLS:-}" ]; then
  read -r -a TOOLS <<<"$TOOLS"
elif [ "$MODE" = latency ]; then
  TOOLS=(mpcomm-lat mpcomm-mcast-lat probe-lat probe-mcast-lat probe-oneway-lat)
  [ -n "$BASE" ] && TOOLS+=(mpcomm-base-lat mpcomm-base-mcast-lat)
else
  TOOLS=(mpcomm-mmsg mpcomm-mcast mpcomm-single probe-mmsg probe-mcast probe-single probe-procs-mmsg
    probe-oneway-mmsg)
  [ -n "$BASE" ] && TOOLS+=(mpcomm-base-mmsg mpcomm-base-mcast)
  have iperf && TOOLS+=(iperf2)
  have sockperf && TOOLS+=(sockperf)
fi
if [ -z "${PAIRS:-}" ]; then
  if [ "$MODE" = latency ]; then
    PAIRS="mpcomm-lat/probe-lat mpcomm-mcast-lat/probe-mcast-lat mpcomm-lat/probe-oneway-lat"
    [ -n "$BASE" ] && PAIRS+=" mpcomm-base-lat/probe-lat mpcomm-base-mcast-lat/probe-mcast-lat"
  else
    PAIRS="mpcomm-mmsg/probe-mmsg mpcomm-mcast/probe-mcast"
    [ -n "$BASE" ] && PAIRS+=" mpcomm-base-mmsg/probe-mmsg mpcomm-base-mcast/probe-mcast"
  fi
fi
PACE=(--interval-us "$INTERVAL_US")

run_tool() {
  case $1 in
    mpcomm-mmsg) run_mpcomm ;;
    mpcomm-single) run_mpcomm --no-mmsg ;;
    mpcomm-mcast) run_mpcomm --multicast ;;
    mpcomm-base-mmsg) run_base ;;
    mpcomm-base-mcast) run_base --multicast ;;
    probe-mcast) run_probe --multicast ;;
    mpcomm-lat) run_mpcomm "${PACE[@]}" ;;
    mpcomm-mcast-lat) run_mpcomm --multicast "${PACE[@]}" ;;
    mpcomm-base-lat) run_base "${PACE[@]}" ;;
    mpcomm-base-mcast-lat) run_base --multicast "${PACE[@]}" ;;
    probe-lat) run_probe "${PACE[@]}" ;;
    probe-mcast-lat) run_probe --multicast "${PACE[@]}" ;;
    probe-oneway-lat) run_probe --oneway "${PACE[@]}" ;;
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
echo "runs: MODE=$MODE REPS=$REPS PEERS=$PEERS MSGS=$MSGS SIZE=$SIZE SECS=$SECS INTERVAL_US=$INTERVAL_US; raw lines in $RESULTS"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min) at the end"
# Medians per tool, and the median over repetitions of (tool / mpcomm-mmsg of the same repetition).
awk '
function median(a, k,   i, j, t) {
  if (k == 0) return 0
  for (i = 2; i <= k; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
  return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
}
{
  split("", v)
  for (f = 1; f <= NF; f++) { split($f, kv, "="); v[kv[1]] = kv[2] }
  rate[v["tool"], v["rep"]] = v["dgrams_per_s"]
  loss[v["tool"], v["rep"]] = v["sent"] > 0 ? 100 * (1 - v["delivered"] / v["sent"]) : 0
  cpu[v["tool"], v["rep"]] = v["cpu_ns_per_dgram"]
  p50[v["tool"], v["rep"]] = v["lat_p50_us"]
  p99[v["tool"], v["rep"]] = v["lat_p99_us"]
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
    printf "%-18s %13.0f %9.0f %9.0f %8.2f %8s %5.1f%%", name, median(a, k), lo, hi, median(q, kr),
      kc ? sprintf("%.0f", median(c, kc)) : "n/a", median(l, kl)
    k5 = 0; k9 = 0
    for (r = 1; r <= reps; r++) {
      if (p50[name, r] != "") m5[++k5] = p50[name, r] + 0
      if (p99[name, r] != "") m9[++k9] = p99[name, r] + 0
    }
    if (mode == "latency" && k5) printf "  lat p50 %.1f us p99 %.1f us", median(m5, k5), median(m9, k9)
    printf "\n"
  }
  np = split(pairs, pl, " ")
  if (np) print "pairs (median over repetitions of the per-repetition figure):"
  for (p = 1; p <= np; p++) {
    split(pl[p], ab, "/"); kq = 0; kd = 0; k9 = 0
    for (r = 1; r <= reps; r++) {
      if (!((ab[1], r) in rate) || !((ab[2], r) in rate)) continue
      if (rate[ab[2], r] > 0) q[++kq] = rate[ab[1], r] / rate[ab[2], r]
      if (p50[ab[1], r] != "" && p50[ab[2], r] + 0 > 0) {
        d[++kd] = p50[ab[1], r] - p50[ab[2], r]; m9[++k9] = p99[ab[1], r] / p99[ab[2], r]
      }
    }
    printf "  %-40s rate ratio %.3f", pl[p], median(q, kq)
    if (kd) printf "  p50 difference %+.1f us  p99 ratio %.2f", median(d, kd), median(m9, k9)
    printf "  (%d reps)\n", kq
  }
  if (mode != "latency") print "ratio*: median over repetitions of (rate / mpcomm-mmsg rate of the same repetition)"
  print "cpu ns*: median user+system CPU per delivered datagram of the benchmark process(es)"
}' pairs="$PAIRS" mode="$MODE" "$RESULTS" | tee "$OUT/summary.txt"
