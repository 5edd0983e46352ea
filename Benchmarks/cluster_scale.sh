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
#   Both print the CPU each kind of part spent per request and per job (utime + stime from
#   /proc of each part and its descendants: nginx workers, PostgreSQL backends, sandboxed
#   workers), the figures the note's paper estimate for separate hosts starts from.
# Usage: ./cluster_scale.sh [--smoke]   Environment: SPOOL (default ../.build/release/spool)
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)
spool="${SPOOL:-$here/../.build/release/spool}"
smoke=0; [ "${1:-}" = "--smoke" ] && smoke=1
if [ $smoke = 1 ]; then secs=1; jobs=2; else secs=8; jobs=16; fi
for tool in wrk curl python3; do command -v "$tool" >/dev/null || { echo "missing tool: $tool"; exit 1; }; done
[ -x "$spool" ] || { echo "no spool binary at $spool (build it: make release)"; exit 1; }
work=$(mktemp -d /tmp/spool-cluster-scale-XXXXXX); chmod 711 "$work"   # the postgres user passes through
current=""
cleanup() { [ -n "$current" ] && "$spool" cluster down --data-dir "$current" >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
port=$(python3 ../Tests/External/freeport.py)
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
# cpu: CPU seconds so far of each kind of part (with descendants), one "kind=seconds" per line.
cpu() { python3 - "$current/cluster.json" <<'PY'
import json, os, sys
parts = json.load(open(sys.argv[1]))["parts"]
kids = {}
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            kids.setdefault(int(f[1]), []).append((int(p), int(f[11]) + int(f[12])))
        except (OSError, IndexError):
            pass
def ticks(pid):
    own = 0
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        own = int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])  # with reaped children
    except (OSError, IndexError):
        return 0
    return own + sum(ticks(c) for c, _ in kids.get(pid, []))
hz = os.sysconf("SC_CLK_TCK")
out = {}
for p in parts:
    out[p["kind"]] = out.get(p["kind"], 0) + ticks(p["pid"]) / hz
print(" ".join(f"{k}={v:.2f}" for k, v in sorted(out.items())))
PY
}
# per KIND_BEFORE KIND_AFTER COUNT UNIT: CPU per unit of each kind.
per() { python3 - "$1" "$2" "$3" "$4" <<'PY'
import sys
a = dict(x.split("=") for x in sys.argv[1].split()); b = dict(x.split("=") for x in sys.argv[2].split())
n = float(sys.argv[3]); unit = sys.argv[4]
parts = [f"{k} {(float(b[k]) - float(a[k])) * 1e6 / n:,.0f} µs" for k in sorted(b) if float(b[k]) - float(a.get(k, 0)) > 0]
print(f"  CPU per {unit}: " + ", ".join(parts))
PY
}
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
    before=$(cpu)
    out=$(wrk -t1 -c32 -d${secs}s -H "Authorization: Bearer $key" "$gw/api/v1/jobs/$job")
    after=$(cpu)
    reads+=("$(echo "$out" | awk '/Requests\/sec/{print $2}')")
    total=$(echo "$out" | awk '/requests in/{print $1}')
    echo "GET /api/v1/jobs/{id} through the gateway, $n dispatcher(s): ${reads[-1]} req/s"
    per "$before" "$after" "$total" request
    down
done

rates=()
for n in 1 2; do
    up "jobs-$n" 1 $n
    file=$(api --data-binary @"$clip" "$gw/api/v1/files" | id)
    before=$(cpu)
    start=$(date +%s.%N)
    submit "$file" $jobs >/dev/null
    # One cheap count per 100 ms, so the client's polling costs the services next to nothing.
    count() { api "$gw/api/v1/jobs?state=$1&limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total_count"])'; }
    for _ in $(seq 1 6000); do
        [ "$(count completed)" -ge $((jobs + 0)) ] && break
        [ "$(count failed)" = 0 ] || { echo "a job failed"; exit 1; }
        sleep 0.1
    done
    [ "$(count completed)" -ge "$jobs" ] || { echo "the jobs did not complete"; exit 1; }
    end=$(date +%s.%N)
    rates+=("$(python3 -c "print(f'{$jobs * 60 / ($end - $start):.1f}')")")
    echo "$jobs transcodes (2 s 320x240 → h264-360p) through the gateway, $n engine(s): ${rates[-1]} jobs/min"
    per "$before" "$(cpu)" "$jobs" "job (engine: its own process; the transcodes run in sandboxed workers, see benchmarks 7 and 8)"
    down
done
python3 - "${reads[@]}" "${rates[@]}" <<'PY'
import sys
r1, r2, j1, j2 = (float(x) for x in sys.argv[1:5])
print(f"scale: reads {r1:,.0f} → {r2:,.0f} req/s with a second dispatcher: 2 / 1 = {r2 / r1:.2f}x; "
      f"jobs {j1:.1f} → {j2:.1f} jobs/min with a second engine: 2 / 1 = {j2 / j1:.2f}x (everything on 2 cores)")
PY
