#!/usr/bin/env bash
# gateway_overhead.sh: GET /api/v1/jobs/{id} (bearer key, a real job) straight to `spool serve`
# (one loop) and through `spool gateway` (nginx, one worker, TLS 1.3 with the generated CA,
# rate limits out of the way), both servers pinned to core 1 and wrk (keep-alive, -c32) on
# core 0; rounds alternate, medians. The ratio is what the gateway's TLS and proxying cost on
# one core shared with the dispatcher.
# Usage: ./gateway_overhead.sh [--smoke]   Environment: SPOOL (default ../.build/release/spool)
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)
spool="${SPOOL:-$here/../.build/release/spool}"
smoke=0; [ "${1:-}" = "--smoke" ] && smoke=1
if [ $smoke = 1 ]; then secs=2; rounds=1; else secs=8; rounds=3; fi
for tool in wrk taskset curl python3; do command -v "$tool" >/dev/null || { echo "missing tool: $tool"; exit 1; }; done
[ -x "$spool" ] || { echo "no spool binary at $spool (build it: make release)"; exit 1; }
work="$here/.work/gateway"; rm -rf "$work"; mkdir -p "$work"
key=spool-gateway-bench-admin-key-0123456789abcdef
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "nothing listens on $1"; return 1; }
read -r p g < <(python3 ../Tests/External/freeport.py 2)
SPOOL_ADMIN_KEY=$key taskset -c 1 "$spool" serve --listen 127.0.0.1:$p --data-dir "$work/data" --loops 1 > "$work/serve.log" 2>&1 &
serve=$!
taskset -c 1 "$spool" gateway --data-dir "$work/gw" --listen 127.0.0.1:$g --upstream 127.0.0.1:$p --workers 1 \
    --rate-per-key 1000000 --burst-per-key 1000000 --rate-per-address 1000000 --burst-per-address 1000000 > "$work/gateway.log" 2>&1 &
gateway=$!
trap 'kill -TERM $gateway $serve 2>/dev/null; wait $gateway $serve 2>/dev/null || true' EXIT
wait_port $p; wait_port $g
auth="Authorization: Bearer $key"
file=$(curl -sf -H "$auth" --data-binary @"$0" http://127.0.0.1:$p/api/v1/files | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
job=$(curl -sf -H "$auth" -H "Idempotency-Key: bench-1" -H "Content-Type: application/json" \
    -d "{\"input\":{\"file_id\":\"$file\"},\"preset\":\"h264-360p\"}" http://127.0.0.1:$p/api/v1/jobs | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
direct=http://127.0.0.1:$p/api/v1/jobs/$job; through=https://127.0.0.1:$g/api/v1/jobs/$job
[ "$(curl -sf --cacert "$work/gw/gateway/ca.pem" -H "$auth" "$through")" = "$(curl -sf -H "$auth" "$direct")" ] || { echo "the gateway answered differently"; exit 1; }
echo "command: wrk -t1 -c32 -d${secs}s -H '$auth' URL   (URL: $direct, then $through)"
d=(); t=()
for r in $(seq 1 $rounds); do
    d+=("$(taskset -c 0 wrk -t1 -c32 -d${secs}s -H "$auth" "$direct" | awk '/Requests\/sec/{print $2}')")
    t+=("$(taskset -c 0 wrk -t1 -c32 -d${secs}s -H "$auth" "$through" | awk '/Requests\/sec/{print $2}')")
    echo "round $r: direct ${d[-1]} req/s, through the gateway ${t[-1]} req/s"
done
python3 - "${d[@]}" "${t[@]}" <<'PY'
import statistics, sys
v = [float(x) for x in sys.argv[1:]]; n = len(v) // 2
a, b = statistics.median(v[:n]), statistics.median(v[n:])
print(f"GET /api/v1/jobs/{{id}}: direct {a:,.0f} req/s, through spool gateway (TLS 1.3, nginx) {b:,.0f} req/s: gateway / direct {b / a:.2f}x (one core for both servers)")
PY
