#!/usr/bin/env bash
# up_vs_transcode.sh: the end-to-end cost of the system around a transcode. The same clip
# (synthesized: 10 s of 1280x720 at 30 fps) is transcoded to the h264-360p preset
#   A. locally: `spool transcode CLIP OUT --preset h264-360p`
#   B. through `spool up` (dispatcher + one engine, running before the clock starts):
#      `spool submit CLIP --preset h264-360p --wait -o DIR` (upload, submit, lease, input
#      download, transcode, output upload, completion, SSE, download)
# Rounds alternate A B A B; medians of wall time are compared. Goal: B within 10 % of A.
# Usage: SPOOL=path ./up_vs_transcode.sh [--smoke]
set -euo pipefail
cd "$(dirname "$0")"
spool="${SPOOL:?set SPOOL to the spool binary}"
work="$(pwd)/.work/up"
rm -rf "$work"; mkdir -p "$work"
smoke=0; [ "${1:-}" = "--smoke" ] && smoke=1
if [ $smoke = 1 ]; then seconds=1; w=320; h=180; rounds=1; else seconds=10; w=1280; h=720; rounds=5; fi
clip="$work/clip.mp4"
"$spool" synthesize "$clip" --width $w --height $h --seconds $seconds --fps 30 >/dev/null
"$spool" up --listen 127.0.0.1:0 --data-dir "$work/data" --engines 1 >"$work/up.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do [ -s "$work/data/server.url" ] && curl -sf "$(cat "$work/data/server.url")/api/v1/health" >/dev/null && break; sleep 0.1; done
url=$(cat "$work/data/server.url")
# One warm-up job, so the engine has registered and everything is paged in.
"$spool" submit "$clip" --preset h264-360p --wait -o "$work/warm" --data-dir "$work/data" >/dev/null 2>&1
now() { date +%s.%N; }
a=(); b=()
for r in $(seq 1 $rounds); do
  rm -f "$work/local.mp4"
  t0=$(now); "$spool" transcode "$clip" "$work/local.mp4" --preset h264-360p >/dev/null 2>&1; t1=$(now)
  a+=("$(awk "BEGIN { print $t1 - $t0 }")")
  rm -rf "$work/out"
  t0=$(now); "$spool" submit "$clip" --preset h264-360p --wait -o "$work/out" --data-dir "$work/data" >/dev/null 2>&1; t1=$(now)
  b+=("$(awk "BEGIN { print $t1 - $t0 }")")
  [ -s "$work/out/h264-360p.mp4" ] || { echo "round $r: no output from spool up"; cat "$work/up.log"; exit 1; }
done
echo "command: spool transcode $clip OUT --preset h264-360p   vs   spool submit $clip --preset h264-360p --wait -o DIR (spool up at $url, 1 engine)"
python3 - "${a[*]}" "${b[*]}" <<'PY'
import statistics, sys
a = [float(x) for x in sys.argv[1].split()]; b = [float(x) for x in sys.argv[2].split()]
ma, mb = statistics.median(a), statistics.median(b)
print(f"spool transcode: median {ma:.3f} s {a}")
print(f"spool up + submit --wait: median {mb:.3f} s {b}")
print(f"end-to-end overhead: {100 * (mb - ma) / ma:+.1f} % (goal under 10 %)")
PY
