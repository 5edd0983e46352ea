#!/usr/bin/env bash
# alloc_per_request.sh: heap allocations per request on GET /api/v1/jobs/{id}, counted, not
# timed, in the release `spool serve` (one loop): every malloc, calloc and realloc of the
# whole process, through an LD_PRELOAD counter (yardstick/malloc_count.c). wrk polls one job
# over 4 keep-alive connections, as engines or dashboards do:
#  - the fast lane (a job and a key the server has in memory): the budget is 0 per request;
#    the check allows ALLOC_BUDGET (default 0.25) for the process's background work (timers,
#    sweeps) in the window, far below the 1.0 a single allocation per request would add;
#  - the full path beside it (the same poll with a query string, which the lane leaves to
#    the router): printed, and it must count more, which shows the counter sees the server.
# Fails (exit 1) over budget. Used by `make test` (allocation budget) and `make bench`.
# Usage: ./alloc_per_request.sh [SECONDS=2]   (each of the two measured runs)
# Environment: SPOOL (default ../.build/release/spool), CC (default cc), ALLOC_BUDGET.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-2}
spool="${SPOOL:-$(pwd)/../.build/release/spool}"
budget=${ALLOC_BUDGET:-0.25}
for tool in wrk curl python3 "${CC:-cc}"; do command -v "$tool" >/dev/null || { echo "missing tool: $tool"; exit 1; }; done
[ -x "$spool" ] || { echo "no spool binary at $spool (build it: make release)"; exit 1; }
work=$(mktemp -d /tmp/spool-alloc-XXXX)
pid=
cleanup() { [ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/count"
"${CC:-cc}" -O2 -Wall -shared -fPIC -o "$work/malloc_count.so" yardstick/malloc_count.c -lpthread
port=$(python3 ../Tests/External/freeport.py)
key="alloc-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
LD_PRELOAD="$work/malloc_count.so" SPOOL_MALLOC_COUNT_DIR="$work/count" SPOOL_ADMIN_KEY="$key" \
    "$spool" serve --listen 127.0.0.1:$port --data-dir "$work/data" --loops 1 >"$work/spool.log" 2>&1 &
pid=$!
api=http://127.0.0.1:$port/api/v1
for _ in $(seq 200); do curl -sf "$api/health" >/dev/null && break; sleep 0.05; done
file=$(curl -sf -X POST -H "Authorization: Bearer $key" --data-binary "alloc_per_request input" "$api/files" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
job=$(curl -sf -X POST -H "Authorization: Bearer $key" -H "Content-Type: application/json" -H "Idempotency-Key: alloc" \
    --data "{\"input\":{\"file_id\":\"$file\"},\"preset\":\"h264-720p\"}" "$api/jobs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

count() {   # the process's allocations so far
    rm -f "$work/count/count"
    : >"$work/count/request"
    for _ in $(seq 500); do
        [ -s "$work/count/count" ] && { cat "$work/count/count"; return; }
        sleep 0.01
    done
    echo "the allocation counter did not answer (is malloc_count.so preloaded?)" >&2; exit 1
}
per_request() {   # url seconds -> "allocations_per_request requests"
    local before after out n
    before=$(count)
    out=$(wrk -t1 -c4 -d"$2"s -H "Authorization: Bearer $key" "$1")
    after=$(count)
    if grep -qE "Non-2xx|Socket errors" <<<"$out"; then echo "wrk saw errors:" >&2; echo "$out" >&2; exit 1; fi
    n=$(grep -oE "[0-9]+ requests in" <<<"$out" | cut -d' ' -f1)
    python3 -c "print(f'{($after - $before) / $n:.3f} $n')"
}
curl -sf -H "Authorization: Bearer $key" "$api/jobs/$job" >/dev/null   # renders the job into the cache
per_request "$api/jobs/$job" 1 >/dev/null                            # warm: connections' arrays grown
read -r fast n_fast < <(per_request "$api/jobs/$job" "$seconds")
read -r full n_full < <(per_request "$api/jobs/$job?full=1" "$seconds")
echo "GET /api/v1/jobs/{id}, heap allocations per request (whole process; wrk -t1 -c4 ${seconds}s each):"
echo "  fast lane $fast ($n_fast requests)   full path $full ($n_full requests)   budget $budget"
python3 - "$fast" "$full" "$budget" <<'PY'
import sys
fast, full, budget = map(float, sys.argv[1:])
if full < fast + 5:
    sys.exit("the counter does not see the server's allocations")
if fast > budget:
    sys.exit(f"over budget: {fast} allocations per fast-lane request (allowed {budget})")
print("allocation budget: ok")
PY
