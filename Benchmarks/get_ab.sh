#!/usr/bin/env bash
# get_ab.sh: two spool binaries against each other on GET /api/v1/jobs/{id}, for telling a
# change from this machine's drift. Each round starts `spool serve` (one loop, pinned to
# core 1, a fresh data directory, one job) and runs wrk -t1 -c64 on core 0; the measure is
# requests per server CPU-second (utime + stime from /proc/PID/stat). Rounds go A B B A, so
# neither binary always runs first (on this VM the second of a pair ran up to 20 % faster).
# With perf and uprobes available it also counts, per request, libc malloc calls and
# swift_task_switch calls: counts, not timing, so they do not drift.
# Usage: ./get_ab.sh OLD_SPOOL NEW_SPOOL [REPETITIONS=3] [SECONDS=4]
set -euo pipefail
a=$1; b=$2; reps=${3:-3}; secs=${4:-4}
for tool in wrk taskset curl python3; do command -v "$tool" >/dev/null || { echo "missing tool: $tool"; exit 1; }; done
work=$(mktemp -d /tmp/spool-get-ab-XXXX)
port=$(python3 "$(dirname "$0")/../Tests/External/freeport.py")
key=getab0123456789abcdef0123456789abcdef01
api=http://127.0.0.1:$port/api/v1
tck=$(getconf CLK_TCK)
pid=
stop() { [ -n "$pid" ] && { kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }; pid=; }
trap 'stop; rm -rf "$work"' EXIT

start() {  # binary -> sets pid and job
    stop
    rm -rf "$work/data"
    SPOOL_ADMIN_KEY=$key taskset -c 1 "$1" serve --listen 127.0.0.1:$port --data-dir "$work/data" --loops 1 >"$work/spool.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do curl -sf "$api/health" >/dev/null && break; sleep 0.1; done
    local file
    file=$(curl -sf -X POST -H "Authorization: Bearer $key" --data-binary "get_ab input" "$api/files" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    job=$(curl -sf -X POST -H "Authorization: Bearer $key" -H "Content-Type: application/json" -H "Idempotency-Key: get-ab" \
        --data "{\"input\":{\"file_id\":\"$file\"},\"preset\":\"h264-720p\"}" "$api/jobs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
}

load() {  # seconds -> prints "requests cpu_seconds user_seconds"
    local c0 c1 u0 u1 out n
    read -r u0 c0 < <(awk '{print $14, $14 + $15}' /proc/$pid/stat)
    out=$(taskset -c 0 wrk -t1 -c64 -d"$1"s -H "Authorization: Bearer $key" "$api/jobs/$job")
    read -r u1 c1 < <(awk '{print $14, $14 + $15}' /proc/$pid/stat)
    if grep -qE "Non-2xx|Socket errors" <<<"$out"; then echo "wrk saw errors:" >&2; echo "$out" >&2; exit 1; fi
    n=$(grep -oE "[0-9]+ requests in" <<<"$out" | cut -d' ' -f1)
    echo "$n $(python3 -c "print(($c1 - $c0) / $tck, ($u1 - $u0) / $tck)")"
}

echo "== GET /api/v1/jobs/{id}: A = $a, B = $b; $reps x (A B B A), wrk -t1 -c64 ${secs}s"
: >"$work/rounds"
for r in $(seq "$reps"); do
    for v in A B B A; do
        bin=$a; [ $v = B ] && bin=$b
        start "$bin"
        read -r n cpu user < <(load "$secs")
        echo "$v $n $cpu $user" | tee -a "$work/rounds" | awk '{printf "  %s: %d requests, server CPU %.2f s (user %.2f s), %.0f requests per server CPU-second\n", $1, $2, $3, $4, $2 / $3}'
    done
done
stop
python3 - "$work/rounds" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {v: statistics.median(int(n) / float(c) for k, n, c, u in rows if k == v) for v in "AB"}
print(f"medians: A {med['A']:.0f}, B {med['B']:.0f} requests per server CPU-second: B / A {med['B'] / med['A']:.3f}")
# The kernel's share of a poll (receive, send, loopback delivery) is the same code for both
# builds, so user time over kernel time compares their user space with the VM's drift
# divided out; user time is counted in ticks, so short rounds are coarse.
share = {v: statistics.median(float(u) / (float(c) - float(u)) for k, n, c, u in rows if k == v) for v in "AB"}
us = {v: statistics.median(float(u) * 1e6 / int(n) for k, n, c, u in rows if k == v) for v in "AB"}
print(f"user time per kernel time: A {share['A']:.3f}, B {share['B']:.3f} (B / A {share['B'] / share['A']:.3f}); "
      f"user microseconds per request: A {us['A']:.2f}, B {us['B']:.2f}")
PY

# Counts per request through uprobes (root, perf with uprobe support). swift_task_switch is
# in libswift_Concurrency.so, or in the binary itself when the runtime is linked in (make
# release; a local symbol there, so probed by its address): each build gets its own probe.
libc=$(ldconfig -p | awk '/libc.so.6 .*x86-64/{print $NF; exit}')
probe_switch() {  # BINARY EVENT
    local lib at; lib=$(ldd "$1" 2>/dev/null | awk '/libswift_Concurrency/{print $3; exit}')
    if [ -n "$lib" ]; then perf probe -q -x "$lib" -a "spoolab:$2=swift_task_switch" 2>/dev/null; return; fi
    at=$(nm "$1" 2>/dev/null | awk '$3 == "swift_task_switch" {print "0x" $1; exit}')
    [ -n "$at" ] && perf probe -q -x "$1" -a "spoolab:$2=$at" 2>/dev/null
}
if command -v perf >/dev/null \
   && { perf probe -q -x "$libc" malloc 2>/dev/null || true; perf probe -q -d 'spoolab:*' 2>/dev/null || true
        probe_switch "$a" switchA && probe_switch "$b" switchB
        perf stat -e probe_libc:malloc,spoolab:switchA,spoolab:switchB true >/dev/null 2>&1; }; then
    for v in A B; do
        bin=$a; [ $v = B ] && bin=$b
        start "$bin"
        perf stat -x, -e probe_libc:malloc,spoolab:switch$v -p "$pid" -o "$work/counts" -- sleep $((secs + 1)) &
        sp=$!
        sleep 0.3
        read -r n _ < <(load "$secs")
        wait $sp
        m=$(grep malloc "$work/counts" | cut -d, -f1); t=$(grep "switch$v" "$work/counts" | cut -d, -f1)
        python3 -c "print(f'$v: malloc {$m / $n:.1f} and swift_task_switch {$t / $n:.1f} per request ($n requests)')"
    done
    perf probe -q -d 'spoolab:*' 2>/dev/null || true
else
    echo "counts skipped: perf with uprobes is not available here"
fi
