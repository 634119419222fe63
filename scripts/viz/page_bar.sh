#!/bin/sh
# The run page's bar (issue 13): rendering 16 peers x 1000 messages takes under 2 s and the
# whole process stays under 10 MB peak RSS. Makes the logs with `mpcomm lab` (fan-out, back to
# back, kept in a temporary directory), then times `mpcomm compare --logs ... --html` with
# GNU time (apt-get install time) and prints one line: seconds, peak RSS in KiB, PASS/FAIL.
#
# Usage: scripts/viz/page_bar.sh [PEERS] [MSGS] [ORDER]   (defaults 16 1000 none)
# Needs target/release/mpcomm (cargo build --release).
set -eu
peers=${1:-16}
msgs=${2:-1000}
order=${3:-none}
bin=${MPCOMM:-target/release/mpcomm}
[ -x "$bin" ] || { echo "no $bin: run cargo build --release" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "no /usr/bin/time: apt-get install time" >&2; exit 2; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$bin" lab --peers "$peers" --msgs "$msgs" --interval 0 --transport fanout --order "$order" \
    --seed 7 --log-dir "$dir/logs" >/dev/null 2>&1
/usr/bin/time -v "$bin" compare --logs "$dir"/logs/*.mplog --html "$dir/page.html" \
    >/dev/null 2>"$dir/time"
secs=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$dir/time" |
    awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$dir/time")
logs=$(ls "$dir"/logs/*.mplog | wc -l)
verdict=$(awk -v s="$secs" -v r="$rss" 'BEGIN { print (s < 2 && r < 10240) ? "PASS" : "FAIL" }')
echo "page $peers x $msgs ($order, $logs logs): ${secs} s, peak RSS ${rss} KiB, page $(wc -c <"$dir/page.html") bytes: $verdict"
[ "$verdict" = PASS ]
