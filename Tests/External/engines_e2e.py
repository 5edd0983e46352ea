#!/usr/bin/env python3
# engines_e2e.py: the real `spool serve` and three real `spool engine` processes on loopback,
# transcoding real (synthesized) media in-process with libav.
#   1. fleet: 30 jobs from 3 tenants weighted 3:2:1, all submitted before the engines start:
#      all complete, every output is an MP4 of the right size, and while all three tenants
#      had jobs waiting each got its weight's share of the assignments (within 10 %; the
#      order is read from the global ids of the JobAssigned events, replayed per job).
#   2. kill -9 an engine mid-job: the job completes on another engine under a newer lease
#      epoch once the dead engine's heartbeats stop; the dead engine, restarted with its data
#      directory, keeps its id and changes nothing about that job.
#   3. SIGTERM an engine with a job running: the job finishes on it, then the engine exits
#      0 and is offline; no job lost.
#   4. (a second server, 30 s heartbeat timeout) kill -9 an engine mid-job and start it again
#      at once: it reloads the job from its local queue (DATA/engine.sqlite) and finishes
#      it itself, under the same lease epoch (the server never had to take it back). Then
#      two SIGTERMs mid-job: the job is cancelled and given back (pending, no attempt
#      counted), the engine exits 0, and the job completes once the engine is back.
#   With --redis the same scenarios run with the dispatchers' job queue on Redis Streams (a
#   redis-server started here), plus:
#   5. Redis loses everything: six jobs submitted while no engine runs, the dispatcher
#      SIGKILLed, FLUSHALL and a restart of Redis without persistence, the dispatcher
#      started again: its reconciler publishes the six again and, once engines start,
#      every job completes.
#   6. An engine started 2 s before its server keeps asking and registers once the server
#      answers; one with a wrong join token stops at once (401).
#   With --s3 the files live in an S3-compatible bucket (moto's server, started here): the
#   fleet scenario runs with engines fetching their inputs from presigned URLs (the
#   dispatcher answers 307), writing their outputs with presigned PUTs (the streaming
#   engine e0 excepted: its output streams through the dispatcher), and outputs read back
#   through the 302 of GET /files/{id}; the bucket then holds every input and output, and
#   the data directory no file.
# Bounded: every wait has a deadline; about a minute on two cores.
# Usage: engines_e2e.py [--binary PATH] [--redis | --s3]
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from spoolproc import RedisServer, SpoolServer, free_port, start_s3  # noqa: E402

JOIN = "engines-e2e-join-token-0123456789"
# The job queue's settings for every server started here (--redis adds the Redis URL), and
# the storage's (--s3).
QUEUE_ENV = {}


def bucket_keys(url):
    import boto3
    s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="e2e", aws_secret_access_key="e2e-secret")
    return [o["Key"] for o in s3.list_objects_v2(Bucket="spool-e2e").get("Contents", [])]


class Engine:
    def __init__(self, binary, server, data_dir, log_path, name, extra=()):
        self.binary, self.server, self.data_dir, self.log_path, self.name = binary, server, data_dir, log_path, name
        self.extra = list(extra)
        self.proc = None

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "engine", "--server", self.server, "--join-token", JOIN,
                                      "--data-dir", self.data_dir, "--name", self.name, "--threads", "1"] + self.extra,
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def engine_id(self, timeout=20):
        deadline = time.monotonic() + timeout
        path = os.path.join(self.data_dir, "engine.json")
        while time.monotonic() < deadline:
            try:
                with open(path) as f:
                    return json.load(f)["engine_id"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.05)
        raise AssertionError(f"engine {self.name} did not register; log:\n{self.log()}")

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-3000:]
        except OSError:
            return "(no log)"

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"engine {self.name} did not stop within {timeout} s; log:\n{self.log()}")
        return self.proc.returncode if self.proc else None


def wait_until(what, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def synthesize(binary, path, width, height, seconds):
    subprocess.run([binary, "synthesize", path, "--width", str(width), "--height", str(height), "--seconds", str(seconds), "--fps", "30"],
                   check=True, stdout=subprocess.DEVNULL)


def upload(session, server, path):
    with open(path, "rb") as f:
        r = session.post(server.url("/api/v1/files"), data=f, headers={"Content-Type": "video/mp4"}, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def submit(session, server, file_id, preset="h264-360p", key=None):
    body = {"input": {"file_id": file_id}, "preset": preset}
    r = session.post(server.url("/api/v1/jobs"), json=body, headers={"Idempotency-Key": key or os.urandom(12).hex()}, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def job(session, server, job_id):
    r = session.get(server.url(f"/api/v1/jobs/{job_id}"), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def assigned_event_id(session, server, job_id):
    """The global id of the job's first JobAssigned event (replayed from its event stream)."""
    r = session.get(server.url(f"/api/v1/jobs/{job_id}/events"), headers={"Last-Event-ID": "0"}, timeout=30)
    assert r.status_code == 200, r.text
    event_id, event_type = None, None
    for line in r.text.splitlines():
        if line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("event: "):
            event_type = line[7:]
        elif line == "":
            if event_type == "JobAssigned" and event_id is not None:
                return event_id
            event_id, event_type = None, None
    raise AssertionError(f"no JobAssigned event replayed for {job_id}:\n{r.text[:2000]}")


def check_output(session, server, j):
    outputs = j["result"]["outputs"]
    assert len(outputs) == 1 and outputs[0]["name"] == "h264-360p.mp4", outputs
    r = session.get(server.url(outputs[0]["url"]), timeout=30)
    assert r.status_code == 200 and len(r.content) > 1000, (r.status_code, len(r.content))
    assert r.content[4:8] == b"ftyp", r.content[:16]


def fleet(binary, work, server, admin):
    clip = os.path.join(work, "small.mp4")
    synthesize(binary, clip, 320, 180, 1)
    weights = {"a": 3, "b": 2, "c": 1}
    sessions, jobs = {}, {}
    for tenant in weights:
        r = admin.post(server.url("/api/v1/keys"), json={"tenant": tenant}, timeout=10)
        assert r.status_code == 201, r.text
        sessions[tenant] = server.session(r.json()["secret"])
    for tenant, s in sessions.items():
        file_id = upload(s, server, clip)
        for _ in range(10):
            jobs[submit(s, server, file_id)] = tenant
    # Engine e0 streams its inputs into the transcode (M29); the others download them first.
    engines = [Engine(binary, server.base, os.path.join(work, f"engine-{i}"), os.path.join(work, f"engine-{i}.log"), f"e{i}",
                      ["--input-mode", "stream"] if i == 0 else []).start()
               for i in range(3)]
    try:
        def all_done():
            states = [job(admin, server, j)["state"] for j in jobs]
            bad = [s for s in states if s in ("failed", "cancelled")]
            assert not bad, f"jobs ended badly: {bad}"
            return all(s == "completed" for s in states)
        wait_until("30 jobs to complete", all_done, 300)
        for j in jobs:
            check_output(admin, server, job(admin, server, j))
        order = [jobs[j] for j in sorted(jobs, key=lambda j: assigned_event_id(admin, server, j))]
        counts, window = {}, 0
        for tenant in order:
            counts[tenant] = counts.get(tenant, 0) + 1
            window += 1
            if counts[tenant] == 10:
                break
        for tenant, w in weights.items():
            share, expected = counts.get(tenant, 0) / window, w / sum(weights.values())
            assert abs(share - expected) <= expected * 0.1 + 1e-9, f"tenant {tenant}: share {share:.3f}, weight share {expected:.3f}; order {order}"
        streamed = engines[0].log().count("input streamed")
        assert streamed > 0, f"engine e0 (--input-mode stream) streamed no input; log:\n{engines[0].log()}"
        print(f"fleet: 30 jobs completed on 3 engines ({streamed} with the input streamed); assignment order {''.join(order)}; "
              f"contended window {window}: {counts}")
    finally:
        for e in engines:
            rc = e.stop()
            assert rc == 0, f"engine {e.name} exited {rc}; log:\n{e.log()}"


def kill_mid_job(binary, work, server, admin):
    clip = os.path.join(work, "long.mp4")
    synthesize(binary, clip, 640, 360, 8)
    engines = [Engine(binary, server.base, os.path.join(work, f"k-engine-{i}"), os.path.join(work, f"k-engine-{i}.log"), f"k{i}").start()
               for i in range(2)]
    try:
        ids = {e.engine_id(): e for e in engines}
        job_id = submit(admin, server, upload(admin, server, clip))
        j = wait_until("the job to be transcoding", lambda: (lambda x: x if x["state"] == "transcoding" else None)(job(admin, server, job_id)), 60)
        victim = ids[j["engine_id"]]
        first_epoch = j["lease_epoch"]
        victim.stop(signal.SIGKILL)
        done = wait_until("the job to complete elsewhere",
                          lambda: (lambda x: x if x["state"] in ("completed", "failed") else None)(job(admin, server, job_id)), 120)
        assert done["state"] == "completed", done
        assert done["lease_epoch"] > first_epoch and done["engine_id"] != j["engine_id"], (first_epoch, done)
        check_output(admin, server, done)
        # The dead engine comes back with its data directory: same id, nothing of that job changes.
        victim.start()
        assert victim.engine_id() == j["engine_id"]
        wait_until("the restarted engine to be online",
                   lambda: admin.get(server.url(f"/api/v1/engines/{j['engine_id']}"), timeout=10).json()["state"] == "online", 30)
        time.sleep(1.5)
        again = job(admin, server, job_id)
        assert again["state"] == "completed" and again["lease_epoch"] == done["lease_epoch"] and again["result"] == done["result"], again
        print(f"kill -9: job moved from epoch {first_epoch} to {done['lease_epoch']} on another engine and completed; the restarted engine kept its id")
    finally:
        for e in engines:
            e.stop(timeout=60)


def sigterm_drains(binary, work, server, admin):
    clip = os.path.join(work, "long.mp4")
    e = Engine(binary, server.base, os.path.join(work, "t-engine"), os.path.join(work, "t-engine.log"), "t").start()
    engine_id = e.engine_id()
    job_id = submit(admin, server, upload(admin, server, clip))
    wait_until("the job to be transcoding", lambda: job(admin, server, job_id)["state"] == "transcoding", 60)
    rc = e.stop(signal.SIGTERM, timeout=120)
    assert rc == 0, f"engine exited {rc} after SIGTERM; log:\n{e.log()}"
    j = job(admin, server, job_id)
    assert j["state"] == "completed", j
    assert j["lease_epoch"] == 1, f"the job was not finished by the draining engine: {j}"
    check_output(admin, server, j)
    state = admin.get(server.url(f"/api/v1/engines/{engine_id}"), timeout=10).json()["state"]
    assert state == "offline", state
    print("SIGTERM: the running job finished on the draining engine, which then went offline and exited 0")


def restart_resumes(binary, work):
    server = SpoolServer(os.path.join(work, "data2"), binary=binary, log_path=os.path.join(work, "serve2.log"),
                         env={"SPOOL_JOIN_TOKEN": JOIN, "SPOOL_ENGINES_HEARTBEAT_TIMEOUT_SECONDS": "30",
                              # A server of its own (its own database): its own queue keys too.
                              **QUEUE_ENV, "SPOOL_QUEUE_KEY_PREFIX": "second"})
    server.start()
    try:
        admin = server.session()
        clip = os.path.join(work, "long.mp4")
        e = Engine(binary, server.base, os.path.join(work, "r-engine"), os.path.join(work, "r-engine.log"), "r").start()
        engine_id = e.engine_id()
        job_id = submit(admin, server, upload(admin, server, clip))
        j = wait_until("the job to be transcoding", lambda: (lambda x: x if x["state"] == "transcoding" else None)(job(admin, server, job_id)), 60)
        e.stop(signal.SIGKILL)
        e.start()
        done = wait_until("the job to complete", lambda: (lambda x: x if x["state"] in ("completed", "failed") else None)(job(admin, server, job_id)), 120)
        assert done["state"] == "completed", done
        assert done["engine_id"] == engine_id and done["lease_epoch"] == j["lease_epoch"], (j, done)
        assert "resumed from the local queue" in e.log(), e.log()
        check_output(admin, server, done)
        print(f"restart: the killed engine came back, resumed job {job_id} from its local queue and completed it under epoch {done['lease_epoch']}")
        # Two stop signals: the running job is cancelled and given back (no attempt counted).
        # Its clip is long enough that it cannot finish between the signals (the 8-second
        # one transcodes in about a second on a fast machine: CI saw it complete there).
        longer = os.path.join(work, "longer.mp4")
        synthesize(binary, longer, 640, 360, 40)
        second = submit(admin, server, upload(admin, server, longer))
        wait_until("the second job to be transcoding", lambda: job(admin, server, second)["state"] == "transcoding", 60)
        e.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        e.proc.send_signal(signal.SIGTERM)
        e.proc.wait(30)
        assert e.proc.returncode == 0, f"engine exited {e.proc.returncode} after two signals; log:\n{e.log()}"
        back = job(admin, server, second)
        assert back["state"] == "pending" and back["attempts"] == 0 and back["reason"].startswith("requeued"), back
        e.start()
        done2 = wait_until("the given-back job to complete", lambda: (lambda x: x if x["state"] == "completed" else None)(job(admin, server, second)), 120)
        assert done2["lease_epoch"] == back["lease_epoch"] + 1, done2
        rc = e.stop()
        assert rc == 0, f"engine exited {rc}"
        print("second signal: the running job was cancelled and given back without an attempt, then completed after the restart")
    finally:
        server.stop()


def waits_for_its_server(binary, work):
    """An engine started before its server keeps asking (a restarting dispatcher is not a
    reason to give up) and registers once the server answers; a wrong join token, a
    refusal, ends its start at once."""
    port = free_port()
    e = Engine(binary, f"http://127.0.0.1:{port}", os.path.join(work, "w-engine"), os.path.join(work, "w-engine.log"), "w").start()
    time.sleep(2)
    assert e.proc.poll() is None, f"the engine gave up while its server was down; log:\n{e.log()}"
    assert "registration: cannot reach the server" in e.log(), e.log()
    server = SpoolServer(os.path.join(work, "data3"), binary=binary, port=port, log_path=os.path.join(work, "serve3.log"),
                         env={"SPOOL_JOIN_TOKEN": JOIN, **QUEUE_ENV, "SPOOL_QUEUE_KEY_PREFIX": "third"})
    server.start()
    try:
        engine_id = e.engine_id(timeout=30)
        assert e.stop() == 0, e.log()
        bad = subprocess.run([binary, "engine", "--server", server.base, "--join-token", "not-the-token-" + "x" * 20,
                              "--data-dir", os.path.join(work, "x-engine"), "--name", "x"], capture_output=True, text=True, timeout=30)
        assert bad.returncode != 0 and "registration refused (401)" in bad.stdout + bad.stderr, (bad.returncode, bad.stdout, bad.stderr)
        print(f"waits: an engine started 2 s before its server registered once it answered ({engine_id}); a wrong token ends the start at once")
    finally:
        server.stop()


def redis_loss(binary, work, server, admin, redis):
    clip = os.path.join(work, "loss.mp4")
    synthesize(binary, clip, 160, 90, 1)
    file_id = upload(admin, server, clip)
    ids = [submit(admin, server, file_id) for _ in range(6)]
    # The dispatcher dies holding them (SIGKILL), Redis loses everything, both come back.
    server.kill()
    assert redis.command("FLUSHALL") == b"+OK"
    redis.restart()
    assert redis.command("DBSIZE") == b":0", "a restart without persistence starts empty"
    server.start()
    assert "reconciler: published 6 pending job(s)" in server.log_tail(200), "the reconciler's first pass publishes them"
    engines = [Engine(binary, server.base, os.path.join(work, f"loss-engine-{i}"), os.path.join(work, f"loss-engine-{i}.log"), f"l{i}").start()
               for i in range(2)]
    try:
        wait_until("6 jobs to complete after Redis lost its data",
                   lambda: all(job(admin, server, j)["state"] == "completed" for j in ids), 120)
        for j in ids:
            check_output(admin, server, job(admin, server, j))
        print("redis loss: dispatcher SIGKILLed, Redis flushed and restarted empty; the reconciler published the 6 pending jobs again and all completed")
    finally:
        for e in engines:
            rc = e.stop()
            assert rc == 0, f"engine {e.name} exited {rc}; log:\n{e.log()}"


def check_bucket(url, work, admin, server):
    keys = bucket_keys(url)
    listed = admin.get(server.url("/api/v1/files?limit=100"), timeout=10).json()
    assert listed["total_count"] == len(keys) == 33, (listed["total_count"], len(keys))
    assert all(k.startswith("files-file_") for k in keys), keys[:5]
    local = os.path.join(work, "data", "files", "objects")
    assert not os.path.isdir(local) or not os.listdir(local), "files were stored in the data directory"
    logs = [open(os.path.join(work, f"engine-{i}.log"), encoding="utf-8", errors="replace").read() for i in range(3)]
    direct = sum(log.count("written to the store directly") for log in logs)
    streamed = sum(log.count("streams into its upload") for log in logs)
    # e0 streams its single output through the dispatcher (chunked); e1 and e2 write theirs
    # into the bucket with presigned URLs, so those bytes never pass the dispatcher.
    assert direct + streamed == 30 and direct > 0, f"{direct} outputs written directly, {streamed} streamed through the dispatcher"
    print(f"s3: the bucket holds the {len(keys)} files (3 inputs, 30 outputs), the data directory none; "
          f"{direct} outputs went into the bucket with presigned URLs, {streamed} streamed through the dispatcher")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=None)
    ap.add_argument("--redis", action="store_true", help="the job queue on Redis Streams (a redis-server started here)")
    ap.add_argument("--s3", action="store_true", help="files in an S3 bucket (moto's server started here)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="spool-engines-e2e-")
    redis = None
    s3 = None
    if args.s3:
        s3_url, s3 = start_s3("spool-e2e")
        QUEUE_ENV.update({"SPOOL_STORAGE_BACKEND": "s3", "SPOOL_STORAGE_S3_ENDPOINT": s3_url, "SPOOL_STORAGE_S3_BUCKET": "spool-e2e",
                          "SPOOL_STORAGE_S3_ACCESS_KEY_ID": "e2e", "SPOOL_STORAGE_S3_SECRET_ACCESS_KEY": "e2e-secret",
                          "SPOOL_STORAGE_S3_PREFIX": "files-", "SPOOL_STORAGE_S3_PART_MIB": "5"})
    if args.redis:
        redis = RedisServer(os.path.join(work, "redis")).start()
        QUEUE_ENV.update({"SPOOL_QUEUE_URL": redis.url, "SPOOL_QUEUE_RECONCILE_INTERVAL_SECONDS": "1"})
    server = SpoolServer(os.path.join(work, "data"), binary=args.binary, log_path=os.path.join(work, "serve.log"),
                         env={"SPOOL_JOIN_TOKEN": JOIN, "SPOOL_ENGINES_HEARTBEAT_TIMEOUT_SECONDS": "3",
                              "SPOOL_SCHEDULER_TENANT_WEIGHTS": "a=3,b=2,c=1", **QUEUE_ENV})
    binary = server.binary
    ok = False
    try:
        server.start()
        admin = server.session()
        fleet(binary, work, server, admin)
        if s3:
            check_bucket(s3_url, work, admin, server)
        else:
            kill_mid_job(binary, work, server, admin)
            sigterm_drains(binary, work, server, admin)
            if redis:
                redis_loss(binary, work, server, admin, redis)
            restart_resumes(binary, work)
            waits_for_its_server(binary, work)
        rc = server.stop()
        assert rc == 0, f"spool serve exited {rc}"
        ok = True
        print("engines_e2e: ok")
    except AssertionError as e:
        print(f"engines_e2e: FAILED: {e}")
        print("--- server log (tail)")
        print(server.log_tail(60))
        for name in sorted(os.listdir(work)):
            if name.endswith(".log") and "engine" in name:
                print(f"--- {name} (tail)")
                with open(os.path.join(work, name), "rb") as f:
                    print(f.read().decode("utf-8", "replace")[-1500:])
    finally:
        if server.alive():
            server.kill()
        if redis:
            redis.stop()
        if s3:
            s3.stop()
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
