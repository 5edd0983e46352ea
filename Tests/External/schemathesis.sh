#!/usr/bin/env bash
# schemathesis.sh: schemathesis (PyPI) against the live `spool serve`, driven by the server's
# own /api/v1/openapi.json: examples, coverage (boundary and invalid values of every
# parameter and body), fuzzing and stateful phases (links: upload -> get/delete, submit ->
# get/cancel, create key -> revoke), with the admin bearer key. Checks: not_a_server_error
# (no 5xx from any input) and response_schema_conformance (every documented answer,
# 4xx error envelopes included, matches its schema). Bounded: SCHEMATHESIS_EXAMPLES examples
# per operation (default 40), a fixed seed, and a 10-minute hard limit. The event stream is
# left out (it stays open while its job runs; api_flow.py follows it).
# Usage: Tests/External/schemathesis.sh   (needs .build/debug/spool; SPOOL=PATH for another)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
spool="${SPOOL:-$root/.build/debug/spool}"
[ -x "$spool" ] || { echo "no spool binary at $spool (build it: swift build --product spool)"; exit 1; }
python=$("$root/Tests/External/venv.sh")
st="$(dirname "$python")/st"
examples="${SCHEMATHESIS_EXAMPLES:-40}"
seed="${SCHEMATHESIS_SEED:-11}"

work=$(mktemp -d /tmp/spool-schemathesis.XXXXXX)
port=$("$python" "$root/Tests/External/freeport.py")
key="schemathesis-admin-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
SPOOL_ADMIN_KEY="$key" "$spool" serve --listen "127.0.0.1:$port" --data-dir "$work/data" >"$work/serve.log" 2>&1 &
pid=$!
cleanup() {
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$port/api/v1/health" >/dev/null && break
    kill -0 "$pid" 2>/dev/null || { echo "spool serve exited at start:"; cat "$work/serve.log"; exit 1; }
    sleep 0.05
done

echo "schemathesis $("$st" --version 2>&1 | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1) against http://127.0.0.1:$port/api/v1/openapi.json ($examples examples per operation, seed $seed)"
# Two passes: every operation but key revocation, then revocation alone (which may revoke
# the very key schemathesis runs with: its links find key ids in GET /keys).
rc=0
for pass in "--exclude-operation-id revokeKey" "--include-operation-id revokeKey --phases coverage,fuzzing"; do
    echo "--- pass: $pass"
    # shellcheck disable=SC2086 # $pass is several words on purpose
    timeout 600 "$st" run "http://127.0.0.1:$port/api/v1/openapi.json" $pass \
        --checks not_a_server_error,response_schema_conformance \
        --header "Authorization: Bearer $key" \
        --exclude-path-regex '/events$' \
        --max-examples "$examples" --seed "$seed" \
        --request-timeout 20 --workers 1 \
        --generation-database none \
        --suppress-health-check all \
        --no-color \
        || rc=$?
done
# The server must have survived it all and still stop cleanly.
if ! curl -sf "http://127.0.0.1:$port/api/v1/health" >/dev/null; then echo "spool serve no longer answers /api/v1/health"; rc=1; fi
if grep -E "handler failed|Fatal error" "$work/serve.log" | head -5; then echo "the server logged a handler failure"; rc=1; fi
kill -TERM "$pid"; src=0; wait "$pid" || src=$?
[ "$src" = 0 ] || { echo "spool serve exited $src after SIGTERM"; rc=1; }
if [ "$rc" != 0 ]; then echo "schemathesis: FAILED (exit $rc)"; tail -30 "$work/serve.log"; exit 1; fi
echo "schemathesis: ok"
