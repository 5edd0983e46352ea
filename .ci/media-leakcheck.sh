#!/usr/bin/env bash
# Runs MediaTests under AddressSanitizer + LeakSanitizer (own build dir, .build-asan, which
# builds only MediaTests and its dependencies) and fails if any leak's allocation stack goes
# through Media or libav. Known leaks outside
# Spool are listed and ignored: libx265's SAO buffers (x265 3.5) and the one-time
# initialisation of GPU drivers that libav loads while probing hardware devices.
set -euo pipefail
cd "$(dirname "$0")/.."
SWIFT=${SWIFT:-swift}
# Only MediaTests and the targets it depends on (see the end of Package.swift).
export SPOOL_ONLY_TESTS=MediaTests
$SWIFT build --build-tests --build-path .build-asan --sanitize=address
log=.build-asan/media-leakcheck.log
# Only the MediaTests target: a bare "MediaTests" also matched CLITests.FuzzedMediaTests,
# which runs 240 child `spool` processes whose leaks this log never sees (minutes of CI).
ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0 \
  $SWIFT test --skip-build --build-path .build-asan --sanitize=address --disable-swift-testing --filter '^MediaTests\.' >"$log" 2>&1 || true
grep -E "Executed [0-9]+ tests" "$log" | tail -1
if grep -q "ERROR: AddressSanitizer" "$log"; then grep -A30 "ERROR: AddressSanitizer" "$log" | head -40; echo "media-leakcheck: memory error"; exit 1; fi
if grep -qE "Executed 0 tests" "$log" || ! grep -qE "Executed [0-9]+ tests, with 0 failures" "$log"; then echo "media-leakcheck: tests failed (see $log)"; exit 1; fi
ours=$(awk '
  /^(Direct|Indirect) leak/ { blk = $0; next }
  /^$/ {
    if (blk != "" && blk ~ /Sources\/Media|libavformat|libavcodec|libavutil|libswscale|libswresample|clibav/ \
        && blk !~ /x265::|av_hwdevice_ctx_create/) { n++; print blk > "/dev/stderr" }
    blk = ""; next }
  { if (blk != "") blk = blk "\n" $0 }
  END { print n + 0 }' "$log")
echo "leaks through Media/libav: $ours (full report: $log)"
[ "$ours" = 0 ]
