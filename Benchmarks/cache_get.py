#!/usr/bin/env python3
# cache_get.py: benchmark 14. GET /api/v1/jobs/{id} on a dispatcher sharing PostgreSQL and
# Redis (the distributed mode), with the Redis record cache (cache.ttl_seconds = 30) vs
# without it (0), the same server binary, database server and load: wrk (-t1 -c16, one
# core) asks for random ids of JOBS jobs while a writer cancels one of them every 50 ms
# (each cancel invalidates that job's entry). Rounds alternate cache / no cache; prints per
# round requests/s and latency (p50, p99 from wrk --latency), the cache's hit ratio from
# /metrics (spool_cache_lookups), then the medians and the ratios.
# Usage: cache_get.py --spool BIN [--smoke]
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "Tests", "External"))
import requests  # noqa: E402
from spoolproc import PostgresServer, RedisServer, SpoolServer  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--spool", required=True)
p.add_argument("--smoke", action="store_true")
a = p.parse_args()
jobs_n, seconds, rounds = (40, 2, 1) if a.smoke else (500, 10, 3)


def parse_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    v = float(m.group(1))
    return v / 1000 if m.group(2) == "us" else (v * 1000 if m.group(2) == "s" else v)


def one_round(primary, redis, cache, n):
    work = tempfile.mkdtemp(prefix="spool-cache-bench-", dir="/tmp")
    tag = f"b{n}_{'c' if cache else 'n'}"
    env = {"SPOOL_DATABASE_URL": primary.create_database(tag), "SPOOL_QUEUE_URL": redis.url, "SPOOL_QUEUE_KEY_PREFIX": tag,
           "SPOOL_CACHE_TTL_SECONDS": "30" if cache else "0", "SPOOL_LOG_LEVEL": "warning", "SPOOL_LOOPS": "1"}
    srv = SpoolServer(os.path.join(work, "data"), binary=os.path.abspath(a.spool), env=env).start()
    try:
        s = srv.session()
        f = s.post(srv.url("/api/v1/files"), data=b"input bytes", headers={"Content-Type": "application/octet-stream"}).json()["id"]
        ids = []
        for i in range(jobs_n):
            r = s.post(srv.url("/api/v1/jobs"), json={"input": {"file_id": f}, "preset": "h264-720p"},
                       headers={"Idempotency-Key": f"bench-{i}"})
            ids.append(r.json()["id"])
        script = os.path.join(work, "get.lua")
        with open(script, "w") as out:
            out.write("ids = {" + ",".join(f'"{i}"' for i in ids) + "}\n")
            out.write('request = function()\n  return wrk.format("GET", "/api/v1/jobs/" .. ids[math.random(#ids)], '
                      f'{{["Authorization"] = "Bearer {srv.admin_key}"}})\nend\n')
        stop = threading.Event()

        def writer():
            w = srv.session()
            k = 0
            while not stop.is_set() and k < len(ids):
                w.post(srv.url(f"/api/v1/jobs/{ids[k]}/cancel"))
                k += 1
                stop.wait(0.05)

        t = threading.Thread(target=writer)
        t.start()
        out = subprocess.run(["taskset", "-c", "0", "wrk", "-t1", "-c16", f"-d{seconds}s", "--latency", "-s", script, srv.base],
                             capture_output=True, text=True, check=True).stdout
        stop.set()
        t.join()
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        p50 = parse_ms(re.search(r"\s50%\s+(\S+)", out).group(1))
        p99 = parse_ms(re.search(r"\s99%\s+(\S+)", out).group(1))
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        metrics = requests.get(srv.url("/metrics"), timeout=5).text
        looked = {m.group(1): float(m.group(2)) for m in re.finditer(r'spool_cache_lookups\{result="(\w+)"\} ([\d.e+]+)', metrics)}
        hits, misses = looked.get("hit", 0), looked.get("miss", 0)
        ratio = hits / (hits + misses) if hits + misses else 0.0
        return rps, p50, p99, ratio, int(errors.group(1)) if errors else 0
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)


def main():
    for tool in ["wrk", "taskset"]:
        if not shutil.which(tool):
            sys.exit(f"cache_get: {tool} is missing")
    work = tempfile.mkdtemp(prefix="spool-cache-svc-", dir="/tmp")
    os.chmod(work, 0o711)
    primary = redis = None
    results = {True: [], False: []}
    try:
        primary = PostgresServer(os.path.join(work, "pg")).start()
        redis = RedisServer(os.path.join(work, "redis")).start()
        for n in range(rounds):
            for cache in (True, False):
                rps, p50, p99, ratio, errors = one_round(primary, redis, cache, n)
                results[cache].append((rps, p50, p99, ratio))
                print(f"round {n + 1} {'cache   ' if cache else 'no cache'}: {rps:9.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
                      + (f"  hit ratio {ratio:.3f}" if cache else "") + (f"  ({errors} non-2xx)" if errors else ""), flush=True)
                if errors:
                    sys.exit("cache_get: some GETs failed")
    finally:
        if redis:
            redis.stop()
        if primary:
            primary.stop()
        shutil.rmtree(work, ignore_errors=True)
    med = {c: [statistics.median(x[i] for x in results[c]) for i in range(4)] for c in results}
    print(f"median with the cache:    {med[True][0]:.0f} req/s, p50 {med[True][1]:.2f} ms, p99 {med[True][2]:.2f} ms, hit ratio {med[True][3]:.3f}")
    print(f"median without the cache: {med[False][0]:.0f} req/s, p50 {med[False][1]:.2f} ms, p99 {med[False][2]:.2f} ms")
    print(f"cache / no cache: throughput {med[True][0] / med[False][0]:.2f}x, p50 latency {med[True][1] / med[False][1]:.2f}x, "
          f"p99 latency {med[True][2] / med[False][2]:.2f}x")


if __name__ == "__main__":
    main()
