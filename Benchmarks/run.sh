#!/usr/bin/env bash
# run.sh: Spool's benchmarks, each printed as a ratio against a peer measured in the same run.
#  1. NOP round trips through the loop: async/await API vs the callback API (same ring).
#  2. Loopback TCP echo: `spool echo` (Spool runtime) vs echo_uring.c, a minimal C liburing
#     echo server compiled here; the same C load generator drives both, pinned to the other
#     core; rounds alternate A B A B and medians are compared.
#  3. HTTP: `spool serve` vs nginx (1 worker, `return 200` with the same body), wrk -c64
#     pinned to the other core; requests per server CPU-second (http_vs_nginx.sh).
#  4. JSON: a ~1 MB array of job records (gen_jobs.py), parse + read the same fields with
#     Spool's JSON module, Foundation's JSONDecoder (JSONBench) and simdjson DOM and On-Demand
#     (yardstick/simdjson_bench.cpp, Debian's libsimdjson-dev); checksums checked first. Then
#     heap allocations per parse (yardstick/malloc_count.c, LD_PRELOAD): the same for the whole
#     list and its first tenth, or the run fails.
#  5. Transcoding: `spool transcode` vs the ffmpeg CLI with the same settings on a synthesized
#     1080p30 clip (720p x264 veryfast CRF 23 + AAC, one and automatic threads; a 3-rendition
#     ladder vs one ffmpeg with split=3): fps and peak RSS (transcode_vs_ffmpeg.sh).
#  6. Dispatch API: GET /api/v1/jobs/{id} vs nginx `return 200` (requests per server
#     CPU-second), POST /api/v1/jobs durable commits/s, a 1 GiB download vs nginx sendfile, a
#     1 GiB upload vs dd conv=fsync (api_vs_nginx.sh); then heap allocations per GET on the
#     fast lane, counted (alloc_per_request.sh: none, or it fails).
#  7. Scheduling: jobs scheduled per second by the fair scheduler with 100 engines asking
#     (SchedulerBench, real SQLite with synchronous=FULL) vs single-row SQLite commits/s on
#     the same disk (Python's sqlite3); the end-to-end time of a short job through
#     `spool up` vs `spool transcode` of the same clip (up_vs_transcode.sh).
#  8. Isolation: a 720p job through `spool up --sandbox auto` (each transcode in a confined
#     `spool worker` child) vs `--sandbox off` (in the engine's process), and the child's
#     start latency (sandbox_cost.sh).
#  9. PostgreSQL: primary-key SELECTs and BEGIN+INSERT+COMMITs per second through Spool's
#     PostgresPool vs libpq in a plain C loop (yardstick/pg_loop.c), same server started here
#     (postgres_vs_libpq.sh).
# 10. Gateway: GET /api/v1/jobs/{id} straight to `spool serve` vs through `spool gateway` (TLS
#     1.3, nginx), both servers on one core, wrk on the other (gateway_overhead.sh).
# 11. Cluster scale: `spool cluster up` (PostgreSQL, Redis, nginx, all on this machine) with
#     1 and 2 dispatchers (GET /api/v1/jobs/{id} through the gateway) and 1 and 2 engines
#     (real transcodes per minute) (cluster_scale.sh; not in the smoke run: four clusters).
# 12. Streamed jobs (M29): one engine downloading inputs first vs one streaming them into
#     libav and the output into its upload: wall time and work-directory disk per job
#     (stream_vs_download.sh; not in the smoke run).
# 13. S3: a 256 MiB object up (multipart, 8 MiB parts, 2 in flight) and down through Spool's
#     S3Storage vs boto3's managed transfer, against one moto server (s3_vs_boto3.sh; not in
#     the smoke run).
# 14. Record cache: GET /api/v1/jobs/{id} with the Redis record cache vs without it, on one
#     dispatcher sharing PostgreSQL and Redis, while jobs change (cache_get.py; not in the
#     smoke run).
# Usage: ./run.sh [--smoke]   (--smoke: tiny sizes, checks the harness works)
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)
work="$here/.work"
mkdir -p "$work"
smoke=0; [ "${1:-}" = "--smoke" ] && smoke=1

# Measuring runs build release; the smoke run (make test) checks the harness and the
# outputs' checksums only, so it builds debug, which compiles in a fraction of the time.
# spool's release build is `make release` (its flags link the Swift runtime in; other
# flags would recompile every module of it for the next `make release`, and back).
config=release; [ $smoke = 1 ] && config=${BENCH_CONFIG:-debug}
echo "== building ($config)"
if [ "$config" = release ]; then make -C .. --no-print-directory release >/dev/null
else (cd .. && swift build -c "$config" --product spool >/dev/null); fi
swift build -c $config --product RingBench >/dev/null
swift build -c $config --product JSONBench >/dev/null
cc -O2 -Wall -o "$work/echo_uring" yardstick/echo_uring.c -luring
cc -O2 -Wall -o "$work/echo_load" yardstick/echo_load.c
spool="$here/../.build/$config/spool"
ringbench="$(swift build -c $config --show-bin-path)/RingBench"
jsonbench="$(swift build -c $config --show-bin-path)/JSONBench"
g++ -O3 -std=c++17 -o "$work/simdjson_bench" yardstick/simdjson_bench.cpp -lsimdjson
cc -O2 -Wall -shared -fPIC -o "$work/malloc_count.so" yardstick/malloc_count.c -lpthread

if [ $smoke = 1 ]; then ops=20000; rounds=1; secs=1; echo_rounds=1; else ops=1000000; rounds=5; secs=5; echo_rounds=3; fi

echo
echo "== 1. NOP round trips: async API vs callback API"
echo "command: RingBench nop --ops $ops --rounds $rounds --inflight 64"
taskset -c 0 "$ringbench" nop --ops $ops --rounds $rounds --inflight 64 2>/dev/null

echo
echo "== 1b. Heap allocations on the async await path (perf uprobe on libc malloc)"
probe_ok() { perf stat -e probe_libc:malloc true >/dev/null 2>&1; }
if command -v perf >/dev/null && { probe_ok || { perf probe -q -x "$(ldconfig -p | awk '/libc.so.6 .*x86-64/{print $NF; exit}')" malloc >/dev/null 2>&1; probe_ok; }; }; then
    count() { perf stat -x, -e probe_libc:malloc "$ringbench" nop --only async --ops "$1" 2>&1 >/dev/null | grep malloc | cut -d, -f1; }
    small=$(count 64000); large=$(count 640000)
    echo "mallocs: $small for 64,000 async NOPs, $large for 640,000: $(python3 -c "print(round(($large - $small) / 576000, 4))") per operation"
else
    echo "skipped: perf with uprobes is not available here"
fi

echo
echo "== 2. Loopback echo: spool echo vs C liburing yardstick (64 connections, 4 KiB messages, ${secs}s per round)"
tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "server on port $1 did not start"; return 1; }

round() {  # name port cmd... -> prints "name trips bytes seconds cpu_seconds"
    local name=$1 port=$2; shift 2
    taskset -c 0 "$@" >/dev/null 2>&1 &
    local pid=$!
    wait_port "$port"
    local c0; c0=$(cpu_ticks $pid)
    local out; out=$(taskset -c 1 "$work/echo_load" "$port" 64 4096 "$secs")
    local c1; c1=$(cpu_ticks $pid)
    kill $pid; wait $pid 2>/dev/null || true
    local trips bytes s
    trips=$(echo "$out" | sed -E 's/.*round_trips=([0-9]+).*/\1/')
    s=$(echo "$out" | sed -E 's/.*seconds=([0-9.]+).*/\1/')
    echo "$name $trips $s $(awk -v a="$c0" -v b="$c1" -v t="$tck" 'BEGIN{printf "%.2f", (b - a) / t}')"
}

results="$work/echo-results.txt"; : > "$results"
port=17100
# Each round is a pair, in A B / B A order by turns: this VM's speed drifts within a run,
# and whichever server goes second in every pair would be favoured by a rising drift.
for r in $(seq 1 $echo_rounds); do
    port=$((port + 2))
    if [ $((r % 2)) = 1 ]; then
        round spool $port "$spool" echo --listen 127.0.0.1:$port | tee -a "$results"
        round c-liburing $((port + 1)) "$work/echo_uring" $((port + 1)) | tee -a "$results"
    else
        round c-liburing $((port + 1)) "$work/echo_uring" $((port + 1)) | tee -a "$results"
        round spool $port "$spool" echo --listen 127.0.0.1:$port | tee -a "$results"
    fi
done
python3 - "$results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
def series(name):
    rs = [r for r in rows if r[0] == name]
    return [int(r[1]) / float(r[2]) for r in rs], [int(r[1]) / max(float(r[3]), 1e-9) for r in rs]
s_rates, s_cpus = series("spool"); c_rates, c_cpus = series("c-liburing")
print(f"spool echo:        {statistics.median(s_rates):10.0f} round trips/s, {statistics.median(s_cpus):10.0f} round trips per server CPU-second")
print(f"C liburing echo:   {statistics.median(c_rates):10.0f} round trips/s, {statistics.median(c_cpus):10.0f} round trips per server CPU-second")
# The ratio of each round's pair, then their median and spread (not a ratio of medians,
# which pairs one round's spool with another round's yardstick).
pairs = [s / c for s, c in zip(s_cpus, c_cpus)]
rates = [s / c for s, c in zip(s_rates, c_rates)]
print(f"spool / C yardstick: per server CPU-second {statistics.median(pairs):.2f}x (rounds {min(pairs):.2f}-{max(pairs):.2f}), "
      f"throughput {statistics.median(rates):.2f}x")
PY

echo
echo "== 3. HTTP: spool serve vs nginx, requests per server CPU-second"
if [ $smoke = 1 ]; then SPOOL="$spool" ./http_vs_nginx.sh --smoke; else SPOOL="$spool" ./http_vs_nginx.sh; fi

echo
echo "== 4. JSON: 1 MB of job records; Spool vs Foundation JSONDecoder vs simdjson DOM and On-Demand"
gen=$(python3 yardstick/gen_jobs.py "$work/jobs.json")
echo "$gen"
checksum=$(echo "$gen" | sed -E 's/.*checksum=([0-9]+).*/\1/')
if [ $smoke = 1 ]; then iters=20; else iters=300; fi
echo "command: JSONBench $work/jobs.json $checksum $iters; simdjson_bench $work/jobs.json $iters (both on core 0)"
spool_out=$(taskset -c 0 "$jsonbench" "$work/jobs.json" "$checksum" $iters)
echo "$spool_out"
simd_out=$(taskset -c 0 "$work/simdjson_bench" "$work/jobs.json" $iters 2>/dev/null)
echo "simdjson (On-Demand, then DOM): $simd_out"
simd_ck=$(echo "$simd_out" | sed -E 's/.*checksum=([0-9]+).*/\1/')
[ "$simd_ck" = "$checksum" ] || { echo "simdjson checksum $simd_ck != $checksum"; exit 1; }
python3 - "$spool_out" "$simd_out" <<'PY'
import re, sys
spool = float(re.search(r"spool_median_us=([0-9.]+)", sys.argv[1]).group(1))
simd = float(re.search(r" median_us=([0-9.]+)", sys.argv[2]).group(1))
dom = float(re.search(r"dom_median_us=([0-9.]+)", sys.argv[2]).group(1))
print(f"spool / simdjson DOM: {dom / spool:.2f}x (goal >= 0.75x)")
print(f"spool / simdjson On-Demand: {simd / spool:.2f}x (reported)")
PY
# Heap allocations per parse, counted by an LD_PRELOAD interposer: the same for the whole
# list and for its first tenth, or this fails (in the smoke run too).
echo "command: LD_PRELOAD=malloc_count.so JSONBENCH_COUNT_ALLOCATIONS=1 JSONBench $work/jobs.json $checksum"
LD_PRELOAD="$work/malloc_count.so" JSONBENCH_COUNT_ALLOCATIONS=1 "$jsonbench" "$work/jobs.json" "$checksum"

echo
echo "== 5. Transcoding: spool transcode vs the ffmpeg CLI, same settings"
if [ $smoke = 1 ]; then SPOOL="$spool" ./transcode_vs_ffmpeg.sh --smoke; else SPOOL="$spool" ./transcode_vs_ffmpeg.sh; fi

echo
echo "== 6. Dispatch API: spool serve vs nginx and dd"
if [ $smoke = 1 ]; then SPOOL="$spool" ./api_vs_nginx.sh --smoke; else SPOOL="$spool" ./api_vs_nginx.sh; fi
# Counted, not timed; a release build's count (a debug build allocates in unspecialized
# generic code), so not in the smoke run: make test runs it on its own release build.
if [ $smoke = 0 ]; then SPOOL="$spool" ./alloc_per_request.sh; fi

echo
echo "== 7. Scheduling: jobs scheduled per second (100 engines, fair scheduler) and spool up vs spool transcode"
if [ $smoke = 1 ]; then
  echo "SchedulerBench: not built in the smoke run (it compiles the dispatcher's whole dependency graph here; make bench runs it)"
  SPOOL="$spool" ./up_vs_transcode.sh --smoke
else
  swift build -c release --product SchedulerBench >/dev/null
  schedbench="$(swift build -c release --show-bin-path)/SchedulerBench"
  sched_out=$(taskset -c 0 "$schedbench" "$work/sched" 3000)
  echo "$sched_out"
  yard=$(python3 - "$work" <<'PY'
import os, sqlite3, sys, time
path = os.path.join(sys.argv[1], "sched-yardstick.sqlite")
for p in (path, path + "-wal", path + "-shm"):
    if os.path.exists(p): os.remove(p)
con = sqlite3.connect(path, isolation_level=None)
con.execute("PRAGMA journal_mode=WAL"); con.execute("PRAGMA synchronous=FULL")
con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT UNIQUE, body TEXT)")
n, end = 0, time.monotonic() + 5
t0 = time.monotonic()
while time.monotonic() < end:
    con.execute("BEGIN"); con.execute("INSERT INTO t (k, body) VALUES (?, ?)", (f"k{n}", "x" * 300)); con.execute("COMMIT"); n += 1
print(f"{n / (time.monotonic() - t0):.0f}")
con.close(); os.remove(path)
PY
)
  python3 - "$sched_out" "$yard" <<'PY'
import re, sys
jps = float(re.search(r"jobs_per_second=([0-9.]+)", sys.argv[1]).group(1)); yard = float(sys.argv[2])
print(f"yardstick: {yard:.0f} single-row SQLite commits/s (WAL, synchronous=FULL, same disk): scheduled jobs / commits {jps / yard:.2f}x (each assignment is one durable commit)")
PY
  SPOOL="$spool" ./up_vs_transcode.sh
fi

echo
echo "== 8. Isolation: each transcode in a sandboxed child vs in the engine's process"
if [ $smoke = 1 ]; then SPOOL="$spool" ./sandbox_cost.sh --smoke; else SPOOL="$spool" ./sandbox_cost.sh; fi

echo
echo "== 9. PostgreSQL: Spool's PostgresPool (libpq on the blocking pool) vs a C libpq loop"
swift build -c $config --product PostgresBench >/dev/null
pgbench_bin="$(swift build -c $config --show-bin-path)/PostgresBench"
if [ $smoke = 1 ]; then SPOOL_POSTGRES_BENCH="$pgbench_bin" ./postgres_vs_libpq.sh --smoke; else SPOOL_POSTGRES_BENCH="$pgbench_bin" ./postgres_vs_libpq.sh; fi

echo
echo "== 10. Gateway: GET /api/v1/jobs/{id} straight to spool serve vs through spool gateway (TLS 1.3, nginx)"
if [ $smoke = 1 ]; then SPOOL="$spool" ./gateway_overhead.sh --smoke; else SPOOL="$spool" ./gateway_overhead.sh; fi

if [ $smoke = 0 ]; then
  echo
  echo "== 11. Cluster scale: 1 vs 2 dispatchers (reads through the gateway), 1 vs 2 engines (jobs per minute)"
  SPOOL="$spool" ./cluster_scale.sh

  echo
  echo "== 12. Streamed jobs: the stream route vs the download route (wall time, work-directory disk)"
  SPOOL="$spool" ./stream_vs_download.sh

  echo
  echo "== 13. S3: Spool's S3Storage vs boto3 (same moto server, 256 MiB up and down)"
  swift build -c release --product S3Bench >/dev/null
  S3BENCH="$(swift build -c release --show-bin-path)/S3Bench" ./s3_vs_boto3.sh

  echo
  echo "== 14. Record cache: GET /api/v1/jobs/{id} with the Redis record cache vs without it (PostgreSQL + Redis)"
  "$(../Tests/External/venv.sh)" ./cache_get.py --spool "$spool"
fi
