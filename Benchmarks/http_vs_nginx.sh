#!/usr/bin/env bash
# http_vs_nginx.sh: HTTP server CPU per request, `spool serve` vs nginx, measured in the same run.
#  Both servers answer GET /api/v1/health with the same small JSON body (nginx with a fixed
#  `return 200`, so it does no work beyond HTTP itself). Each server runs one worker pinned to
#  core 1; wrk (1 thread, 64 keep-alive connections) is pinned to core 0. The server's CPU time
#  (utime + stime from /proc/PID/stat, summed over the process and its children, e.g. nginx's
#  master and worker) is read before and after each wrk run. Both servers start once and stay
#  up; each gets a 1-second warm-up, then rounds alternate spool nginx spool nginx and medians
#  are compared. Any non-2xx/3xx response or socket error fails the run.
# Usage: ./http_vs_nginx.sh [--smoke]   (--smoke: 1 round of 2 s, checks the harness works)
# Environment: SPOOL (default ../.build/release/spool), NGINX (default /usr/sbin/nginx).
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)
work="$here/.work"
mkdir -p "$work"
smoke=0; [ "${1:-}" = "--smoke" ] && smoke=1

spool="${SPOOL:-$here/../.build/release/spool}"
nginx="${NGINX:-/usr/sbin/nginx}"
if [ $smoke = 1 ]; then secs=2; rounds=1; else secs=10; rounds=3; fi

for tool in wrk taskset curl python3 pgrep "$nginx"; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool"; exit 1; }
done
[ -x "$spool" ] || { echo "no spool binary at $spool (build it: make release)"; exit 1; }

tck=$(getconf CLK_TCK)
# CPU ticks (utime + stime) of a process plus its direct children (nginx master + workers).
cpu_ticks() {
    local total=0 p
    for p in $1 $(pgrep -P "$1" || true); do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo $total
}
# Steal ticks of the server core (time the hypervisor ran something else): shows noisy rounds.
steal_ticks() { awk '$1 == "cpu1" {print $9}' /proc/stat; }
children() { pgrep -P "$1" | sort -n | tr '\n' ' ' || true; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "server on port $1 did not start"; return 1; }

spool_pid=; nginx_pid=
cleanup() {
    local p
    for p in $spool_pid $nginx_pid; do kill "$p" 2>/dev/null || true; done
    for p in $spool_pid $nginx_pid; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Two free loopback ports below the ephemeral range (distinct; see freeport.py).
read -r spool_port nginx_port < <(python3 ../Tests/External/freeport.py 2)

echo "== HTTP GET /api/v1/health: spool serve vs nginx (1 server core, wrk 1 thread x 64 connections, ${secs}s per round)"

# Spool.
rm -rf "$work/http-data"
echo "spool:  taskset -c 1 $spool serve --listen 127.0.0.1:$spool_port --data-dir $work/http-data --loops 1"
taskset -c 1 "$spool" serve --listen 127.0.0.1:$spool_port --data-dir "$work/http-data" --loops 1 >"$work/spool-serve.log" 2>&1 &
spool_pid=$!
wait_port $spool_port
body=$(curl -sf "http://127.0.0.1:$spool_port/api/v1/health")
case "$body" in *"'"* | *'\'* | *'$'* | "") echo "unexpected health body from spool: '$body'"; exit 1;; esac

# nginx, configured to answer the same path with the body spool just sent.
ngx="$work/nginx"
rm -rf "$ngx"; mkdir -p "$ngx/logs"
cat >"$ngx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $ngx/nginx.pid;
lock_file $ngx/nginx.lock;
error_log $ngx/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    server_tokens off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_temp_path $ngx/client_body;
    proxy_temp_path $ngx/proxy;
    fastcgi_temp_path $ngx/fastcgi;
    uwsgi_temp_path $ngx/uwsgi;
    scgi_temp_path $ngx/scgi;
    server {
        listen 127.0.0.1:$nginx_port;
        location = /api/v1/health {
            default_type application/json;
            return 200 '$body';
        }
    }
}
EOF
echo "nginx:  taskset -c 1 $nginx -p $ngx/ -c $ngx/nginx.conf -e $ngx/logs/error.log   ($("$nginx" -v 2>&1 | sed 's/.*: //'), 1 worker)"
taskset -c 1 "$nginx" -p "$ngx/" -c "$ngx/nginx.conf" -e "$ngx/logs/error.log" >"$work/nginx.log" 2>&1 &
nginx_pid=$!
wait_port $nginx_port
for _ in $(seq 1 100); do [ -n "$(children $nginx_pid)" ] && break; sleep 0.05; done
[ -n "$(children $nginx_pid)" ] || { echo "nginx started no worker"; cat "$work/nginx.log" "$ngx/logs/error.log"; exit 1; }

nbody=$(curl -sf "http://127.0.0.1:$nginx_port/api/v1/health")
[ "$nbody" = "$body" ] || { echo "bodies differ: spool '$body' nginx '$nbody'"; exit 1; }
for s in "spool $spool_port" "nginx $nginx_port"; do
    set -- $s
    curl -s -o /dev/null -w "response $1: HTTP %{http_code}, %{size_header} header bytes, %{size_download} body bytes\n" "http://127.0.0.1:$2/api/v1/health"
done
echo "body: $body"

url_of() { if [ "$1" = spool ]; then echo "http://127.0.0.1:$spool_port/api/v1/health"; else echo "http://127.0.0.1:$nginx_port/api/v1/health"; fi; }
pid_of() { if [ "$1" = spool ]; then echo $spool_pid; else echo $nginx_pid; fi; }
echo "command: taskset -c 0 wrk -t1 -c64 -d${secs}s --latency URL"

# wrk run against one server; fails on errors; with a tag, appends a result row.
# Row: name round requests requests_per_s p50_ms cpu_seconds
measure() {
    local name=$1 d=$2 tag=$3 pid url k0 k1 c0 c1 s0 s1 out file
    pid=$(pid_of "$name"); url=$(url_of "$name")
    kill -0 "$pid" 2>/dev/null || { echo "$name server (pid $pid) is gone"; exit 1; }
    k0=$(children "$pid"); c0=$(cpu_ticks "$pid"); s0=$(steal_ticks)
    out=$(taskset -c 0 wrk -t1 -c64 -d"${d}s" --latency "$url")
    c1=$(cpu_ticks "$pid"); s1=$(steal_ticks); k1=$(children "$pid")
    file="$work/wrk-$name-$tag.txt"
    echo "$out" >"$file"
    [ "$k0" = "$k1" ] || { echo "$name: child processes changed during the run ($k0-> $k1); CPU figure would be wrong"; exit 1; }
    if grep -q "Non-2xx or 3xx responses" <<<"$out"; then
        echo "$name: FAILED, wrk saw error responses:"; echo "$out"; exit 1
    fi
    if grep -q "Socket errors" <<<"$out" && grep "Socket errors" <<<"$out" | grep -qE '[1-9]'; then
        echo "$name: FAILED, wrk reports socket errors:"; grep "Socket errors" <<<"$out"; echo "$out"; exit 1
    fi
    python3 - "$name" "$tag" "$file" "$c0" "$c1" "$tck" "$((s1 - s0))" <<'PY'
import re, sys
name, tag, path, c0, c1, tck, steal = sys.argv[1:]
text = open(path).read()
m = re.search(r"(\d+) requests in ([0-9.]+)(us|ms|s|m)", text)
rps = re.search(r"Requests/sec:\s*([0-9.]+)", text)
p50 = re.search(r"^\s*50%\s+([0-9.]+)(us|ms|s|m)\b", text, re.M)
if not (m and rps and p50):
    sys.exit(f"{name}: cannot parse wrk output:\n{text}")
requests = int(m.group(1))
if requests == 0:
    sys.exit(f"{name}: wrk completed no requests:\n{text}")
scale = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}
p50_ms = float(p50.group(1)) * scale[p50.group(2)]
cpu = (int(c1) - int(c0)) / int(tck)
if tag == "warmup":
    print(f"  warm-up {name:5s}: {float(rps.group(1)):9.0f} req/s")
    sys.exit(0)
per_cpu = requests / max(cpu, 1e-9)
print(f"  round {tag} {name:5s}: {float(rps.group(1)):9.0f} req/s, p50 {p50_ms:7.3f} ms, "
      f"{requests:9d} requests, server CPU {cpu:6.2f} s, {per_cpu:9.0f} requests per server CPU-second"
      f" (core 1 steal {int(steal) / int(tck):.2f} s)")
with open(path.rsplit("/", 1)[0] + "/http-results.txt", "a") as f:
    f.write(f"{name} {tag} {requests} {rps.group(1)} {p50_ms} {cpu}\n")
PY
}

: >"$work/http-results.txt"
measure spool 1 warmup
measure nginx 1 warmup
for r in $(seq 1 $rounds); do
    measure spool $secs $r
    measure nginx $secs $r
done

python3 - "$work/http-results.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
def stats(name):
    rs = [r for r in rows if r[0] == name]
    rate = statistics.median(float(r[3]) for r in rs)
    p50 = statistics.median(float(r[4]) for r in rs)
    per_cpu = statistics.median(int(r[2]) / max(float(r[5]), 1e-9) for r in rs)
    return rate, p50, per_cpu
s_rate, s_p50, s_cpu = stats("spool"); n_rate, n_p50, n_cpu = stats("nginx")
print(f"median spool: {s_rate:10.0f} req/s, p50 {s_p50:.3f} ms, {s_cpu:10.0f} requests per server CPU-second")
print(f"median nginx: {n_rate:10.0f} req/s, p50 {n_p50:.3f} ms, {n_cpu:10.0f} requests per server CPU-second")
print(f"spool / nginx: per server CPU-second {s_cpu / n_cpu:.2f}x (goal >= 1.2x), throughput {s_rate / n_rate:.2f}x")
PY
