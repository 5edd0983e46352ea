#!/usr/bin/env bash
# sandbox_cost.sh: what isolating each transcode in a confined child costs (issue 13, M20).
# The same clip (synthesized: 10 s of 1280x720 at 30 fps) goes through two `spool up`
# servers, one engine each, running before the clock starts:
#   A. --sandbox off: the transcode runs inside the engine's process (the peer)
#   B. --sandbox auto: a `spool worker` child in bubblewrap (or the direct child under
#      Landlock where bubblewrap cannot run), rlimits and the seccomp filter
# `spool submit CLIP --preset h264-720p --wait` alternates A B A B; medians of wall time are
# compared (goal: B within 3 % of A), and so is the CPU time each server and its reaped
# children used per job (steadier than wall time on a small machine). The start latency a
# job sees (the engine keeps a spare worker started ahead) and a worker's own start (spawn to
# its first line) come from the engine's log (goal: under 50 ms).
# Usage: SPOOL=path ./sandbox_cost.sh [--smoke]
set -euo pipefail
cd "$(dirname "$0")"
spool="${SPOOL:?set SPOOL to the spool binary}"
work="$(pwd)/.work/sandbox"
rm -rf "$work"; mkdir -p "$work"
smoke=0; [ "${1:-}" = "--smoke" ] && smoke=1
if [ $smoke = 1 ]; then seconds=1; w=320; h=180; rounds=1; else seconds=10; w=1280; h=720; rounds=11; fi
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
# CPU seconds of a server process (utime+stime); a sandboxed worker's own CPU time comes from
# its result line, as the engine logs it (bubblewrap's init does not wait for its payload, so
# the server's children totals never see it).
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }
a=(); b=(); ca=(); cb=()
for r in $(seq 1 $rounds); do
  for i in 0 1; do
    mode=$([ $i = 0 ] && echo off || echo auto); pid=${pids[$i]}
    rm -rf "$work/out"
    c0=$(cpu $pid); t0=$(now); "$spool" submit "$clip" --preset h264-720p --wait -o "$work/out" --data-dir "$work/$mode" >/dev/null 2>&1; t1=$(now); c1=$(cpu $pid)
    [ -s "$work/out/h264-720p.mp4" ] || { echo "round $r ($mode): no output"; tail -20 "$work/$mode.log"; exit 1; }
    t=$(awk "BEGIN { print $t1 - $t0 }"); c=$(awk "BEGIN { print $c1 - $c0 }")
    if [ $mode = off ]; then a+=("$t"); ca+=("$c"); else b+=("$t"); cb+=("$c"); fi
  done
done
confinement=$(grep -m1 -o "WARNING: transcodes are NOT namespaced[^;]*" "$work/auto.log" || echo "bubblewrap")
waits=$(grep -o "sandboxed worker ready after [0-9.]* ms" "$work/auto.log" | grep -o "[0-9.]* ms" | grep -o "[0-9.]*" | tr '\n' ' ')
spawns=$(grep -o "its own start: [0-9.]* ms" "$work/auto.log" | grep -o "[0-9.]* ms" | grep -o "[0-9.]*" | tr '\n' ' ')
# The measured rounds' workers: the last $rounds in the log (the first was the warm-up).
workercpu=$(grep -o "worker CPU [0-9.]* ms" "$work/auto.log" | grep -o "[0-9.]*" | tail -n $rounds | tr '\n' ' ')
echo "command: spool submit $clip --preset h264-720p --wait, against spool up --sandbox off vs --sandbox auto ($confinement)"
python3 - "${a[*]}" "${b[*]}" "${ca[*]}" "${cb[*]}" "$waits" "$spawns" "$workercpu" <<'PY'
import statistics, sys
a, b, ca, cb, waits, spawns, wcpu = ([float(x) for x in arg.split()] for arg in sys.argv[1:8])
if len(wcpu) != len(cb):
    print(f"worker CPU times: {len(wcpu)} in the log for {len(cb)} rounds"); sys.exit(1)
cb = [c + w / 1000 for c, w in zip(cb, wcpu)]
ma, mb = statistics.median(a), statistics.median(b)
mca, mcb = statistics.median(ca), statistics.median(cb)
print(f"in-process (--sandbox off): wall median {ma:.3f} s {a}; CPU median {mca:.2f} s")
print(f"sandboxed (--sandbox auto): wall median {mb:.3f} s {b}; CPU median {mcb:.2f} s (engine + worker)")
print(f"sandboxed / in-process: wall {mb / ma:.3f}x ({100 * (mb - ma) / ma:+.1f} %), CPU {mcb / mca:.3f}x ({100 * (mcb - mca) / mca:+.1f} %) (goal within 3 %)")
if not waits or not spawns:
    print("worker start latency: not in the engine's log"); sys.exit(1)
print(f"worker start latency seen by a job (a spare is started ahead): median {statistics.median(waits):.1f} ms, max {max(waits):.1f} ms (goal under 50 ms)")
print(f"a worker's own start (spawn to ready, bubblewrap + dynamic linking): median {statistics.median(spawns):.1f} ms over {len(spawns)} workers")
PY
