#!/usr/bin/env bash
# postgres_vs_libpq.sh: Spool's PostgresPool (libpq on the blocking pool) against libpq in a
# plain C loop (yardstick/pg_loop.c), same statements, same server: a PostgreSQL 15 started
# here with initdb + pg_ctl on a free loopback port (as the postgres user when run as root),
# default durability (fsync and synchronous_commit on). Rounds alternate C, Swift; medians.
# Prints statements/s: primary-key SELECT and BEGIN+INSERT+COMMIT, one caller, and (Swift
# only) 8 callers on 8 connections; the ratios Swift/C for one caller.
# Usage: SPOOL_POSTGRES_BENCH=path/to/PostgresBench ./postgres_vs_libpq.sh [--smoke]
set -euo pipefail
cd "$(dirname "$0")"
# The server's directory is outside the checkout: the postgres user (as which the server
# runs when we are root) may not be able to enter the checkout's parents.
work=$(mktemp -d /tmp/spool-pgbench-XXXXXX)
smoke=0; [ "${1:-}" = "--smoke" ] && smoke=1
if [ $smoke = 1 ]; then ops=200; rounds=1; else ops=5000; rounds=3; fi
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg=(); [ "$(id -u)" = 0 ] && as_pg=(runuser -u postgres --)
[ "$(id -u)" = 0 ] && chown postgres "$work"
port=$(python3 ../Tests/External/freeport.py)
(cd / && "${as_pg[@]}" "$bin/initdb" -D "$work/data" -U spool -A trust -E UTF8 --no-instructions >/dev/null)
(cd / && "${as_pg[@]}" "$bin/pg_ctl" -D "$work/data" -l "$work/server.log" -w -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$work" start >/dev/null)
trap '(cd / && "${as_pg[@]}" "$bin/pg_ctl" -D "$work/data" -m fast -w stop >/dev/null 2>&1); rm -rf "$work"' EXIT
url="postgres://spool@127.0.0.1:$port/postgres"
cc -O2 -Wall -o "$work/pg_loop" yardstick/pg_loop.c -I/usr/include/postgresql -lpq
bench=${SPOOL_POSTGRES_BENCH:?set SPOOL_POSTGRES_BENCH to the PostgresBench binary}
echo "command: pg_loop $url $ops bench_c  /  PostgresBench --url $url --ops $ops"
c_lines=(); s_lines=()
for r in $(seq 1 $rounds); do
    c_lines+=("$("$work/pg_loop" "$url" $ops bench_c)")
    s_lines+=("$("$bench" --url "$url" --ops $ops --table bench_swift)")
    echo "round $r: ${c_lines[-1]} | ${s_lines[-1]}"
done
python3 - "$rounds" "${c_lines[@]}" "${s_lines[@]}" <<'PY'
import statistics, sys
n = int(sys.argv[1]); lines = sys.argv[2:]
def parse(l): return {k: int(v) for k, v in (p.split("=") for p in l.split()[1:])}
c = [parse(l) for l in lines[:n]]; s = [parse(l) for l in lines[n:]]
med = lambda rows, k: statistics.median(r[k] for r in rows)
for k in ("select_c1", "insert_c1"):
    print(f"{k}: Spool PostgresPool {med(s, k):,.0f}/s vs C libpq loop {med(c, k):,.0f}/s: ratio {med(s, k) / med(c, k):.2f}")
print(f"8 callers on 8 connections (Spool): select {med(s, 'select_c8'):,.0f}/s, insert+commit {med(s, 'insert_c8'):,.0f}/s")
PY
