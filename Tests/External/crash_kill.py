#!/usr/bin/env python3
# crash_kill.py: crash consistency of the real `spool serve`. Four client threads submit jobs
# (each with a unique Idempotency-Key, repeated in the job's metadata) and upload files of
# random sizes (1 byte to 4 MiB, Content-Length or chunked) while the server is killed with
# SIGKILL at 20 random moments (seeded; the seed is printed and `--seed N` replays the
# schedule, though not the threads' interleaving). After each kill, before the restart:
# `PRAGMA integrity_check` and `foreign_key_check` on DATA/spool.sqlite are ok and no temporary
# or partial file is visible in the files area. After each restart: every job and file that
# was acknowledged (a 2xx reached the client) is there, every file's bytes hash to the
# sha256 it was acknowledged with, every submission whose answer was lost is sent again with
# its key (it must be created once or replayed), and listing all jobs finds no key twice.
# Up to 1,000 jobs; bounded to about 3 minutes.
# Usage: crash_kill.py [--seed N] [--kills 20] [--jobs 1000] [--binary PATH]
import argparse
import hashlib
import json
import os
import random
import re
import shutil
import sqlite3
import sys
import tempfile
import threading
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from spoolproc import SpoolServer  # noqa: E402

class Ledger:
    """What the clients know: acknowledged jobs and files, and submissions whose answer was lost."""

    def __init__(self):
        self.lock = threading.Lock()
        self.jobs = {}        # idempotency key -> job id (acknowledged)
        self.files = {}       # file id -> (sha256, size) (acknowledged)
        self.uncertain = {}   # idempotency key -> request body bytes (sent, no answer)
        self.submitted = 0
        self.errors = []      # client-visible failures that are not the kill (a 5xx, a bad body)


def random_size(rng):
    return int(2 ** rng.uniform(0, 22))  # 1 B .. 4 MiB, log-uniform


def worker(tid, srv, ledger, rng, stop, jobs_max):
    """Jobs until this round's quota (`jobs_max`, a running total), uploads throughout."""
    s = srv.session()
    while not stop.is_set():
        with ledger.lock:
            file_ids = list(ledger.files)
            quota_left = ledger.submitted < jobs_max
        if not file_ids or rng.random() < (0.15 if quota_left else 1.0):
            size = random_size(rng)
            data = rng.randbytes(size)
            chunked = rng.random() < 0.3
            body = (data[i:i + 262144] for i in range(0, len(data), 262144)) if chunked else data
            try:
                r = s.post(srv.url("/api/v1/files"), data=body, headers={"Content-Type": "application/octet-stream"}, timeout=30)
            except requests.RequestException:
                continue  # the kill: unacknowledged
            if r.status_code == 201:
                f = r.json()
                if f.get("sha256") != hashlib.sha256(data).hexdigest() or f.get("size") != size:
                    ledger.errors.append(f"upload acknowledged with wrong size/sha256: {f}")
                with ledger.lock:
                    ledger.files[f["id"]] = (hashlib.sha256(data).hexdigest(), size)
            elif r.status_code >= 500 and r.status_code != 507:
                ledger.errors.append(f"upload: {r.status_code} {r.text[:200]}")
            continue
        with ledger.lock:
            if ledger.submitted >= jobs_max:
                continue
            ledger.submitted += 1
            n = ledger.submitted
        key = f"crash-{tid}-{n}-{rng.getrandbits(48):012x}"
        body = json.dumps({"input": {"file_id": rng.choice(file_ids)}, "preset": "h264-360p",
                           "priority": rng.randint(0, 9), "metadata": {"marker": key}}).encode()
        with ledger.lock:
            ledger.uncertain[key] = body
        try:
            r = s.post(srv.url("/api/v1/jobs"), data=body, headers={"Content-Type": "application/json", "Idempotency-Key": key}, timeout=30)
        except requests.RequestException:
            continue  # stays uncertain
        with ledger.lock:
            if r.status_code in (200, 201):
                ledger.jobs[key] = r.json()["id"]
                del ledger.uncertain[key]
            else:
                ledger.errors.append(f"submit {key}: {r.status_code} {r.text[:200]}")
                del ledger.uncertain[key]


FILE_ID = re.compile(r"^file_[0-7][0-9A-HJKMNP-TV-Z]{25}$")


def check_data_dir(data_dir, problems):
    """Offline checks with the server dead: SQLite integrity; in DATA/files/objects only
    complete objects named by file id (uploads in progress live in DATA/files/tmp, private)."""
    db = os.path.join(data_dir, "spool.sqlite")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        ic = con.execute("PRAGMA integrity_check").fetchall()
        if ic != [("ok",)]:
            problems.append(f"integrity_check: {ic[:5]}")
        fk = con.execute("PRAGMA foreign_key_check").fetchall()
        if fk:
            problems.append(f"foreign_key_check: {fk[:5]}")
    finally:
        con.close()
    objects_dir = os.path.join(data_dir, "files", "objects")
    names = os.listdir(objects_dir) if os.path.isdir(objects_dir) else []
    for n in names:
        if not FILE_ID.match(n) or not os.path.isfile(os.path.join(objects_dir, n)):
            problems.append(f"not a complete object in files/objects after the kill: {n}")
    tmp_dir = os.path.join(data_dir, "files", "tmp")
    left = len(os.listdir(tmp_dir)) if os.path.isdir(tmp_dir) else 0
    return len(names), left


def check_objects_after_restart(s, srv, data_dir, problems):
    """After a restart: interrupted uploads' temp files are gone, and the objects on disk are
    exactly the files the server lists (no orphan, none missing)."""
    tmp_dir = os.path.join(data_dir, "files", "tmp")
    left = os.listdir(tmp_dir) if os.path.isdir(tmp_dir) else []
    if left:
        problems.append(f"temp files still in files/tmp after the restart: {left[:5]}")
    listed, url = set(), "/api/v1/files?limit=100"
    while url:
        r = s.get(srv.url(url), timeout=30)
        if r.status_code != 200:
            raise AssertionError(f"list files: {r.status_code} {r.text[:200]}")
        p = r.json()
        listed |= {f["id"] for f in p["data"]}
        url = p["next_page_url"]
    on_disk = set(os.listdir(os.path.join(data_dir, "files", "objects")))
    if on_disk != listed:
        problems.append(f"objects on disk and files listed differ: {len(on_disk - listed)} orphan(s) {sorted(on_disk - listed)[:3]}, "
                        f"{len(listed - on_disk)} missing {sorted(listed - on_disk)[:3]}")
    return len(listed)


def list_all_jobs(s, srv):
    out, url = [], "/api/v1/jobs?limit=100"
    while url:
        r = s.get(srv.url(url), timeout=30)
        if r.status_code != 200:
            raise AssertionError(f"list jobs: {r.status_code} {r.text[:200]}")
        p = r.json()
        out += p["data"]
        url = p["next_page_url"]
    return out


def verify(srv, ledger, problems, rnd):
    s = srv.session()
    # Lost answers: the same key and body again: created now, or the first answer replayed.
    for key, body in list(ledger.uncertain.items()):
        r = s.post(srv.url("/api/v1/jobs"), data=body, headers={"Content-Type": "application/json", "Idempotency-Key": key}, timeout=30)
        if r.status_code not in (200, 201):
            problems.append(f"resubmit {key}: {r.status_code} {r.text[:200]}")
            continue
        ledger.jobs[key] = r.json()["id"]
        del ledger.uncertain[key]
    for key, jid in ledger.jobs.items():
        r = s.get(srv.url(f"/api/v1/jobs/{jid}"), timeout=30)
        if r.status_code != 200:
            problems.append(f"acknowledged job {jid} ({key}): {r.status_code} after restart {rnd}")
    for fid, (sha, size) in ledger.files.items():
        r = s.get(srv.url(f"/api/v1/files/{fid}"), timeout=60)
        if r.status_code != 200:
            problems.append(f"acknowledged file {fid}: {r.status_code} after restart {rnd}")
        elif len(r.content) != size or hashlib.sha256(r.content).hexdigest() != sha:
            problems.append(f"file {fid}: {len(r.content)} bytes, sha256 differs from the acknowledged one (restart {rnd})")
    files_listed = check_objects_after_restart(s, srv, srv.data_dir, problems)
    jobs = list_all_jobs(s, srv)
    ids = [j["id"] for j in jobs]
    if len(ids) != len(set(ids)):
        problems.append("a job id is listed twice")
    markers = [(j.get("metadata") or {}).get("marker") for j in jobs]
    known = [m for m in markers if m]
    if len(known) != len(set(known)):
        dup = sorted({m for m in known if known.count(m) > 1})
        problems.append(f"jobs exist twice for keys {dup[:5]}")
    if len(jobs) != len(ledger.jobs):
        problems.append(f"{len(jobs)} jobs listed, {len(ledger.jobs)} submissions acknowledged")
    return len(jobs), files_listed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=int(os.environ.get("SPOOL_CRASH_SEED", random.SystemRandom().getrandbits(32))))
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--binary")
    args = ap.parse_args()
    print(f"crash_kill: seed {args.seed} (replay the schedule with --seed {args.seed}); {args.kills} kills, up to {args.jobs} jobs")
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="spool-crash-")
    data_dir = os.path.join(work, "data")
    srv = SpoolServer(data_dir, binary=args.binary)
    ledger = Ledger()
    problems = []
    started = time.monotonic()
    try:
        srv.start()
        for rnd in range(1, args.kills + 1):
            stop = threading.Event()
            # The jobs spread over the rounds; the kill lands while they are being submitted.
            quota = ledger.submitted + -(-(args.jobs - ledger.submitted) // (args.kills - rnd + 1))
            threads = [threading.Thread(target=worker, args=(t, srv, ledger, random.Random(rng.getrandbits(64)), stop, quota))
                       for t in range(args.threads)]
            for t in threads:
                t.start()
            delay = rng.uniform(0.02, 0.6)
            time.sleep(delay)
            srv.kill()
            stop.set()
            for t in threads:
                t.join(60)
            objects, temps = check_data_dir(data_dir, problems)
            srv.start()
            listed, files_listed = verify(srv, ledger, problems, rnd)
            print(f"kill {rnd:2d} after {delay:4.2f}s: acknowledged {len(ledger.jobs)} jobs, {len(ledger.files)} files; "
                  f"after restart {listed} jobs, {files_listed} files listed; at the kill {objects} objects, "
                  f"{temps} interrupted upload(s) in files/tmp; {'ok' if not problems else 'PROBLEMS'}")
            if problems or ledger.errors:
                break
            if time.monotonic() - started > 170:
                print("time bound reached; stopping early")
                break
        rc = srv.stop()
        if rc != 0:
            problems.append(f"spool serve exited {rc} after SIGTERM")
    except (AssertionError, RuntimeError, requests.RequestException) as e:
        problems.append(str(e))
    finally:
        if srv.alive():
            srv.kill()
    problems += ledger.errors
    took = time.monotonic() - started
    if problems:
        print(f"crash_kill: FAILED (seed {args.seed}) after {took:.0f} s:")
        for p in problems[:30]:
            print("  " + p)
        print("--- server log\n" + srv.log_tail())
        print(f"data directory kept: {work}")
        sys.exit(1)
    shutil.rmtree(work, ignore_errors=True)
    print(f"crash_kill: ok (seed {args.seed}): {len(ledger.jobs)} jobs, {len(ledger.files)} files, "
          f"{args.kills} SIGKILLs, every acknowledgement kept, no duplicate, in {took:.0f} s")


if __name__ == "__main__":
    main()
