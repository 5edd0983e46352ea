#!/usr/bin/env bash
# sandbox_cost.sh: what isolating each transcode in a confined child costs (issue 13, M20).
# The same clip (synthesized: 10 s of 1280x720 at 30 fps) goes through two `spool up`
# servers, one engine each, running before the clock starts:
#   A. --sandbox off: the transcode runs inside the engine's process (the peer)
#   B. --sandbox auto: a `spool worker` child in bubblewrap (or the direct child under
#      Landlock where bubblewrap cannot run), rlimits and the seccomp filter
# `spool submit CLIP --preset h264-720p --wait` alternates A B A B; medians of wall time are
# compared (goal: B within 3 % of A). The child's start latency (spawn to the worker's
# first line, as the engine logs it) is reported too (goal: under 50 ms).
# Usage: SPOOL=path ./sandbox_cost.sh [--smoke]
set -euo pipefail
cd "$(dirname "$0")"
spool="${SPOOL:?set SPOOL to the spool binary}"
work="$(pwd)/.work/sandbox"
rm -rf "$work"; mkdir -p "$work"
smoke=0; [ "${1:-}" = "--smoke" ] && smoke=1
if [ $smoke = 1 ]; then seconds=1; w=320; h=180; rounds=1; else seconds=10; w=1280; h=720; rounds=5; fi
clip="$work/clip.mp4"
"$spool" synthesize "$clip" --width $w --height $h --seconds $seconds --fps 30 >/dev/null
pids=()
trap 'for p in "${pids[@]}"; do kill -TERM $p 2>/dev/null; done; wait 2>/dev/null || true' EXIT
for mode in off auto; do
  "$spool" up --listen 127.0.0.1:0 --data-dir "$work/$mode" --engines 1 --sandbox $mode >"$work/$mode.log" 2>&1 &
  pids+=($!)
done
for mode in off auto; do
  for _ in $(seq 1 300); do [ -s "$work/$mode/server.url" ] && curl -sf "$(cat "$work/$mode/server.url")/api/v1/health" >/dev/null && break; sleep 0.1; done
  # A warm-up job each: registered, paged in.
  "$spool" submit "$clip" --preset h264-720p --wait -o "$work/warm-$mode" --data-dir "$work/$mode" >/dev/null 2>&1
done
now() { date +%s.%N; }
a=(); b=()
for r in $(seq 1 $rounds); do
  for mode in off auto; do
    rm -rf "$work/out"
    t0=$(now); "$spool" submit "$clip" --preset h264-720p --wait -o "$work/out" --data-dir "$work/$mode" >/dev/null 2>&1; t1=$(now)
    [ -s "$work/out/h264-720p.mp4" ] || { echo "round $r ($mode): no output"; tail -20 "$work/$mode.log"; exit 1; }
    t=$(awk "BEGIN { print $t1 - $t0 }")
    if [ $mode = off ]; then a+=("$t"); else b+=("$t"); fi
  done
done
confinement=$(grep -m1 -o "WARNING: transcodes are NOT namespaced[^;]*" "$work/auto.log" || echo "bubblewrap")
starts=$(grep -o "sandboxed worker started in [0-9.]* ms" "$work/auto.log" | grep -o "[0-9.]* ms" | grep -o "[0-9.]*" | tr '\n' ' ')
echo "command: spool submit $clip --preset h264-720p --wait, against spool up --sandbox off vs --sandbox auto ($confinement)"
python3 - "${a[*]}" "${b[*]}" "$starts" <<'PY'
import statistics, sys
a = [float(x) for x in sys.argv[1].split()]; b = [float(x) for x in sys.argv[2].split()]
starts = [float(x) for x in sys.argv[3].split()]
ma, mb = statistics.median(a), statistics.median(b)
print(f"in-process (--sandbox off): median {ma:.3f} s {a}")
print(f"sandboxed (--sandbox auto): median {mb:.3f} s {b}")
print(f"sandboxed / in-process: {mb / ma:.3f}x time, {100 * (mb - ma) / ma:+.1f} % (goal within 3 %)")
if starts:
    print(f"worker start latency: median {statistics.median(starts):.1f} ms over {len(starts)} jobs, max {max(starts):.1f} ms (goal under 50 ms)")
else:
    print("worker start latency: not in the engine's log"); sys.exit(1)
PY
