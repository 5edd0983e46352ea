#!/bin/bash
# The main job of `make demo`, as a newcomer runs it: `spool up` (a dispatch server and one
# engine in one process, on the embedded default: SQLite + local disk) starts in the
# background on a free loopback port; `spool synthesize` makes a short 720p clip with libav;
# `spool submit` uploads it, submits an HLS ladder job with a quality report (with an
# Idempotency-Key), follows its progress over SSE and downloads the outputs; then the
# server gets SIGTERM (the engine drains, the server stops, exit 0). Exit 0 only if the job
# completed and its master playlist arrived.
#   .ci/demo.sh SPOOL_BIN
set -u
spool="$1"
data=.build/demo-data
out=.build/demo-output
clip=.build/demo-clip.mp4
rm -rf "$data" "$out" "$clip"; mkdir -p "$data"
log="$data/up.log"
"$spool" up --listen 127.0.0.1:0 --data-dir "$data" --engines 1 >"$log" 2>&1 &
pid=$!
fail() { echo "demo: FAILED: $*"; echo "--- spool up log"; cat "$log"; kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; exit 1; }
# The server writes DATA/server.url once it listens (the port is the kernel's choice).
url=""
for _ in $(seq 1 300); do
  [ -s "$data/server.url" ] && url=$(cat "$data/server.url") && curl -sf "$url/api/v1/health" >/dev/null && break
  url=""
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
done
[ -n "$url" ] || fail "spool up did not start serving"
echo "spool up: serving $url/api/v1 with one engine (log: $log)"
"$spool" synthesize "$clip" --width 1280 --height 720 --seconds 6 --fps 30 || fail "synthesize"
"$spool" submit "$clip" --preset hls-ladder-h264 --quality --wait -o "$out" --data-dir "$data" --timeout 600 \
  || fail "the job did not complete"
[ -s "$out/master.m3u8" ] || fail "no master playlist in $out"
echo "outputs: $(find "$out" -type f | wc -l) files in $out; play $out/master.m3u8"
"$spool" jobs list --data-dir "$data" --limit 5 || fail "jobs list"
kill -TERM $pid; wait $pid; rc=$?
[ $rc = 0 ] || fail "spool up exited $rc after SIGTERM"
grep -q '^spool: stopped' "$log" || fail "spool up did not report a graceful stop"
echo "demo: ok"
