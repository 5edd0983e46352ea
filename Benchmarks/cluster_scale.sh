#!/usr/bin/env bash
# cluster_scale.sh: what a second dispatcher and a second engine add, on this machine, with
# the real distributed parts (`spool cluster up`: PostgreSQL, Redis, nginx, all on the same
# two cores, so this measures contention as much as scale; the note's paper estimate
# carries the figures to separate hosts).
#   1. GET /api/v1/jobs/{id} through the gateway (TLS 1.3, keep-alive, wrk -t1 -c32) with 1
#      and with 2 dispatchers behind it: req/s, and 2 / 1.
#   2. Jobs completed per minute with 1 and with 2 engines: JOBS real transcodes of a
#      synthesized 2 s 320x240 clip (h264-360p) submitted through the gateway at once, timed
#      from the first submission to the last completion: jobs/min, and 2 / 1.
# Usage: ./cluster_scale.sh [--smoke]   Environment: SPOOL (default ../.build/release/spool)
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)
spool="${SPOOL:-$here/../.build/release/spool}"
smoke=0; [ "${1:-}" = "--smoke" ] && smoke=1
if [ $smoke = 1 ]; then secs=1; jobs=2; else secs=8; jobs=16; fi
for tool in wrk curl python3; do command -v "$tool" >/dev/null || { echo "missing tool: $tool"; exit 1; }; done
[ -x "$spool" ] || { echo "no spool binary at $spool (build it: swift build -c release --product spool)"; exit 1; }
work=$(mktemp -d /tmp/spool-cluster-scale-XXXXXX); chmod 711 "$work"   # the postgres user passes through
current=""
cleanup() { [ -n "$current" ] && "$spool" cluster down --data-dir "$current" >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
clip="$work/clip.mp4"
"$spool" synthesize "$clip" --width 320 --height 240 --seconds 2 --fps 25 >/dev/null
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
up() { # up NAME DISPATCHERS ENGINES
    current="$work/$1"
    "$spool" cluster up --data-dir "$current" --dispatchers "$2" --engines "$3" --gateway 127.0.0.1:$port \
        --rate-per-key 1000000 --rate-per-address 1000000 > "$work/$1.up.log" 2>&1 || { cat "$work/$1.up.log"; exit 1; }
    gw=$(field "$current/cluster.json" gateway_url); ca=$(field "$current/cluster.json" ca_certificate)
    key=$(cat "$current/admin.key")
}
down() { "$spool" cluster down --data-dir "$current" >/dev/null 2>&1; current=""; }
api() { curl -sf --cacert "$ca" -H "Authorization: Bearer $key" "$@"; }
id() { python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }
submit() { # submit FILE_ID N → job ids
    for i in $(seq 1 "$2"); do
        api -H "Idempotency-Key: scale-$i-$RANDOM$RANDOM" -H "Content-Type: application/json" \
            -d "{\"input\":{\"file_id\":\"$1\"},\"preset\":\"h264-360p\"}" "$gw/api/v1/jobs" | id
    done
}

reads=()
for n in 1 2; do
    up "reads-$n" $n 0
    file=$(api --data-binary @"$clip" "$gw/api/v1/files" | id)
    job=$(submit "$file" 1)
    reads+=("$(wrk -t1 -c32 -d${secs}s -H "Authorization: Bearer $key" "$gw/api/v1/jobs/$job" | awk '/Requests\/sec/{print $2}')")
    echo "GET /api/v1/jobs/{id} through the gateway, $n dispatcher(s): ${reads[-1]} req/s"
    down
done

rates=()
for n in 1 2; do
    up "jobs-$n" 1 $n
    file=$(api --data-binary @"$clip" "$gw/api/v1/files" | id)
    start=$(date +%s.%N)
    ids=$(submit "$file" $jobs)
    for j in $ids; do
        for _ in $(seq 1 1200); do
            s=$(api "$gw/api/v1/jobs/$j" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
            [ "$s" = completed ] && break
            [ "$s" = failed ] && { echo "job $j failed"; exit 1; }
            sleep 0.1
        done
        [ "$s" = completed ] || { echo "job $j did not complete"; exit 1; }
    done
    end=$(date +%s.%N)
    rates+=("$(python3 -c "print(f'{$jobs * 60 / ($end - $start):.1f}')")")
    echo "$jobs transcodes (2 s 320x240 → h264-360p) through the gateway, $n engine(s): ${rates[-1]} jobs/min"
    down
done
python3 - "${reads[@]}" "${rates[@]}" <<'PY'
import sys
r1, r2, j1, j2 = (float(x) for x in sys.argv[1:5])
print(f"scale: reads {r1:,.0f} → {r2:,.0f} req/s with a second dispatcher: 2 / 1 = {r2 / r1:.2f}x; "
      f"jobs {j1:.1f} → {j2:.1f} jobs/min with a second engine: 2 / 1 = {j2 / j1:.2f}x (everything on 2 cores)")
PY
