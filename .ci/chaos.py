#!/usr/bin/env python3
"""The chaos run of the distributed mode (`make chaos`; a short form runs in `make test`).

`spool cluster up` starts PostgreSQL, Redis, two dispatchers, the nginx gateway and two
engines on loopback. Through the gateway (TLS with the generated CA), CLIENTS threads
submit JOBS jobs (REAL of them transcoding a 1 s 320x240 clip to h264-360p, the rest a
0.2 s 64x64 clip to a 64x64 H.264: the cheapest real transcode, there being no fake
transcoder in the product), each with an Idempotency-Key of its own, retrying a network
error or a 429/5xx answer with the same key. Meanwhile, in a seeded order, spaced out:
SIGKILL a dispatcher KILLS times and an engine KILLS times (each restarted by `spool
cluster up`, which starts the dead parts again), FLUSHALL Redis once, restart Redis once
(SIGTERM, then up), restart PostgreSQL once (SIGINT: a fast shutdown, then up), kill its
streaming replica once (SIGQUIT: an immediate shutdown, then up), and
SIGSTOP a dispatcher past the queue's visibility (7 s against 5 s: the other takes its
held jobs over), then SIGCONT it (its stale assignments are refused by the epoch fence;
the run counts the refusals its log shows).

Then: every acknowledged job completes, exactly one job exists per key (retries and
replays created nothing more), the real jobs' outputs download and ffprobe reads them.
Prints the client-visible errors by status, and the replica's lag behind the primary as
the dispatchers' /metrics showed it every half second (median, 95th percentile, maximum).
Exit 0 only if all of that holds.

  .ci/chaos.py --spool BIN [--jobs 1000] [--real 20] [--clients 4] [--kills 5] [--seed 1]
"""
import argparse, json, os, queue, random, shutil, signal, socket, subprocess, sys, tempfile, threading, time
from collections import Counter

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "External"))
from spoolproc import free_port  # noqa: E402  (a port below the ephemeral range)

import requests

p = argparse.ArgumentParser()
p.add_argument("--spool", required=True)
p.add_argument("--jobs", type=int, default=1000)
p.add_argument("--real", type=int, default=20)
p.add_argument("--clients", type=int, default=4)
p.add_argument("--kills", type=int, default=5)
p.add_argument("--seed", type=int, default=1)
p.add_argument("--timeout", type=int, default=900, help="seconds for the whole run")
a = p.parse_args()
spool = os.path.abspath(a.spool)
deadline = time.monotonic() + a.timeout
rng = random.Random(a.seed)


def say(*args):
    print("chaos:", *args, flush=True)


work = tempfile.mkdtemp(prefix="spool-chaos-", dir="/tmp")
os.chmod(work, 0o711)  # the postgres user passes through
cluster = os.path.join(work, "cluster")
env = dict(os.environ)
# Short timeouts so the run sees recoveries, not waits: a dead dispatcher's held queue
# deliveries go to the other after 5 s, a dead engine's jobs after 4 s of silence, and
# the reconciler republishes what Redis lost every 2 s.
env.update({"SPOOL_QUEUE_VISIBILITY_SECONDS": "5", "SPOOL_ENGINES_HEARTBEAT_TIMEOUT_SECONDS": "4",
            "SPOOL_QUEUE_RECONCILE_INTERVAL_SECONDS": "2", "SPOOL_LOG_LEVEL": "warning"})
lock = threading.Lock()  # one `spool cluster up` at a time


def spool_run(*args, check=True):
    r = subprocess.run([spool, *args], env=env, capture_output=True, text=True, timeout=300)
    if check and r.returncode != 0:
        raise SystemExit(f"chaos: spool {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def manifest():
    with open(os.path.join(cluster, "cluster.json")) as f:
        return json.load(f)


def part(name):
    return next(p for p in manifest()["parts"] if p["name"] == name)


def gone(pid, within=30):
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return True
        time.sleep(0.05)
    return False


failed = []
try:
    gateway = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    spool_run("cluster", "up", "--data-dir", cluster, "--dispatchers", "2", "--engines", "2", "--gateway", gateway,
              "--rate-per-key", "100000", "--rate-per-address", "100000")
    m = manifest()
    say(f"cluster up in {time.monotonic() - started:.1f} s: {', '.join(p['name'] for p in m['parts'])}")
    base = m["gateway_url"] + "/api/v1"
    key = open(m["admin_key_file"]).read().strip()
    session_local = threading.local()

    def session():
        if not hasattr(session_local, "s"):
            s = requests.Session()
            s.trust_env = False
            s.verify = m["ca_certificate"]
            s.headers["Authorization"] = "Bearer " + key
            session_local.s = s
        return session_local.s

    errors = Counter()

    def call(method, path, retry_on=(429, 500, 502, 503, 504), **kw):
        """One request retried on a network error or a retryable status, as a client would."""
        while time.monotonic() < deadline:
            try:
                r = session().request(method, base + path, timeout=30, **kw)
            except requests.RequestException as e:
                with lock_errors:
                    errors["network: " + type(e).__name__] += 1
                time.sleep(0.2)
                continue
            if r.status_code in retry_on:
                with lock_errors:
                    errors[str(r.status_code)] += 1
                time.sleep(0.2)
                continue
            return r
        raise SystemExit(f"chaos: {method} {path} did not succeed before the deadline")

    lock_errors = threading.Lock()
    clips = {}
    for name, w, h, secs in [("tiny", 64, 64, "0.2"), ("real", 320, 240, "1")]:
        path = os.path.join(work, name + ".mp4")
        spool_run("synthesize", path, "--width", str(w), "--height", str(h), "--seconds", secs, "--fps", "25")
        with open(path, "rb") as f:
            body = f.read()
        r = call("POST", "/files", data=body, headers={"Content-Type": "video/mp4"})
        assert r.status_code == 201, r.text
        clips[name] = r.json()["id"]

    specs = []
    real = set(rng.sample(range(a.jobs), min(a.real, a.jobs)))
    for i in range(a.jobs):
        if i in real:
            spec = {"input": {"file_id": clips["real"]}, "preset": "h264-360p"}
        else:
            spec = {"input": {"file_id": clips["tiny"]}, "custom": {"codec": "h264", "width": 64, "height": 64, "crf": 35}}
        specs.append((f"chaos-{a.seed}-{i}", json.dumps(spec), i in real))

    events_plan = (["kill dispatcher"] * a.kills + ["kill engine"] * a.kills
                   + ["flushall", "restart redis", "restart postgres", "kill replica", "pause dispatcher"])
    acknowledged = {}  # key -> job id
    todo = queue.Queue()
    for s in specs:
        todo.put(s)

    # Submissions are paced to last about as long as the chaos does, so events meet them.
    pace = (len(events_plan) * 1.25 + 2) * a.clients / max(1, a.jobs)

    def client():
        while True:
            time.sleep(pace)
            try:
                k, body, _ = todo.get_nowait()
            except queue.Empty:
                return
            r = call("POST", "/jobs", data=body, headers={"Content-Type": "application/json", "Idempotency-Key": k})
            if r.status_code not in (200, 201):
                failed.append(f"submission {k}: {r.status_code} {r.text[:200]}")
                continue
            with lock_errors:
                acknowledged[k] = r.json()["id"]

    # The chaos: a seeded order of events, spaced over the submissions.
    events = list(events_plan)
    rng.shuffle(events)
    done_events = []

    def chaos():
        for e in events:
            time.sleep(rng.uniform(0.5, 2.0))
            try:
                chaos_event(e)
            except Exception as x:  # noqa: BLE001 - a broken event fails the run, and the rest go on
                failed.append(f"{e}: {type(x).__name__}: {x}")

    def chaos_event(e):
        with lock:
            if e == "kill dispatcher":
                victim = part(rng.choice(["dispatcher-1", "dispatcher-2"]))
                os.kill(victim["pid"], signal.SIGKILL)
            elif e == "kill engine":
                victim = part(rng.choice(["engine-1", "engine-2"]))
                os.kill(victim["pid"], signal.SIGKILL)
            elif e == "flushall":
                r = part("redis")
                pw = open(os.path.join(cluster, "secrets", "redis.password")).read().strip()
                out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", r["address"].split(":")[1], "--no-auth-warning",
                                      "-a", pw, "FLUSHALL"], capture_output=True, text=True)
                if "OK" not in out.stdout:
                    failed.append(f"FLUSHALL: {out.stdout} {out.stderr}")
                done_events.append(e)
                return
            elif e == "pause dispatcher":
                victim = part(rng.choice(["dispatcher-1", "dispatcher-2"]))
                os.kill(victim["pid"], signal.SIGSTOP)
                time.sleep(7)
                os.kill(victim["pid"], signal.SIGCONT)
                done_events.append(f"{e} ({victim['name']}, 7 s)")
                return
            elif e == "restart redis":
                victim = part("redis")
                os.kill(victim["pid"], signal.SIGTERM)
            elif e == "kill replica":
                victim = part("postgres-replica")
                os.kill(victim["pid"], signal.SIGQUIT)
            else:
                victim = part("postgres")
                os.kill(victim["pid"], signal.SIGINT)
            if not gone(victim["pid"]):
                failed.append(f"{e}: pid {victim['pid']} did not end")
            r = spool_run("cluster", "up", "--data-dir", cluster, check=False)
            if r.returncode != 0:
                failed.append(f"{e}: spool cluster up did not restart it: {r.stderr[-1500:]}")
            done_events.append(f"{e} ({victim['name']})")

    # The replica's lag as each dispatcher sees it, sampled until the submissions end.
    lag_samples = []  # (seconds, bytes)
    sampling = threading.Event()

    def sample_lag():
        plain = requests.Session()
        plain.trust_env = False
        while not sampling.is_set():
            for d in [p for p in manifest()["parts"] if p["kind"] == "dispatcher"]:
                try:
                    text = plain.get(f"http://{d['address']}/metrics", timeout=2).text
                except requests.RequestException:
                    continue
                secs = [float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith("spool_db_replica_lag_seconds{")]
                size = [float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith("spool_db_replica_lag_bytes{")]
                if secs and size:
                    lag_samples.append((secs[0], size[0]))
            sampling.wait(0.5)

    submit_started = time.monotonic()
    sampler = threading.Thread(target=sample_lag)
    sampler.start()
    threads = [threading.Thread(target=client) for _ in range(a.clients)]
    chaos_thread = threading.Thread(target=chaos)
    chaos_thread.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    submitted = time.monotonic() - submit_started
    chaos_thread.join()
    sampling.set()
    sampler.join()
    if lag_samples:
        def summary(values, unit):
            v = sorted(values)
            return (f"median {v[len(v) // 2]:{unit}}, p95 {v[min(len(v) - 1, int(len(v) * 0.95))]:{unit}}, "
                    f"max {v[-1]:{unit}}")
        say(f"replica lag under the submissions ({len(lag_samples)} samples): seconds {summary([x[0] for x in lag_samples], '.3f')}; "
            f"bytes {summary([x[1] for x in lag_samples], '.0f')}")
    else:
        failed.append("no dispatcher reported a replica lag on /metrics")
    say(f"{len(acknowledged)} of {a.jobs} submissions acknowledged in {submitted:.1f} s by {a.clients} clients; "
        f"events: {', '.join(done_events)}")

    # Every acknowledged job completes.
    ids = set(acknowledged.values())
    if len(ids) != len(acknowledged):
        failed.append(f"{len(acknowledged)} keys acknowledged but only {len(ids)} distinct jobs")
    waiting = set(ids)
    states = {}
    while waiting and time.monotonic() < deadline:
        done = set()
        url = "/jobs?limit=100&state=completed"
        while url:
            r = call("GET", url)
            if r.status_code != 200:
                raise SystemExit(f"chaos: listing jobs: {r.status_code} {r.text[:300]}")
            page = r.json()
            done |= {j["id"] for j in page["data"]}
            url = (page.get("next_page_url") or "").split("/api/v1", 1)[-1] if page.get("next_page_url") else None
        waiting -= done
        if waiting:
            for j in list(waiting)[:50]:
                st = call("GET", f"/jobs/{j}").json()
                states[j] = st["state"]
                if st["state"] in ("failed", "cancelled"):
                    failed.append(f"job {j} ended {st['state']}: {st.get('reason')}")
                    waiting.discard(j)
            time.sleep(1)
    if waiting:
        failed.append(f"{len(waiting)} jobs not completed before the deadline, e.g. "
                      + ", ".join(f"{j} {states.get(j, '?')}" for j in list(waiting)[:5]))
    total = call("GET", "/jobs?limit=1").json()["total_count"]
    if total != a.jobs:
        failed.append(f"{total} jobs exist for {a.jobs} keys")

    # The real jobs' outputs are valid media.
    checked = 0
    attempts = Counter()
    for k, body, is_real in specs:
        j = acknowledged.get(k)
        if not j:
            continue
        job = call("GET", f"/jobs/{j}").json()
        attempts[job["attempts"]] += 1
        if not is_real or job["state"] != "completed":
            continue
        out = job["result"]["outputs"][0]
        r = call("GET", f"/files/{out['file_id']}")
        path = os.path.join(work, out["file_id"] + ".mp4")
        with open(path, "wb") as f:
            f.write(r.content)
        probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", path],
                               capture_output=True, text=True)
        if probe.returncode != 0 or "h264" not in probe.stdout:
            failed.append(f"job {j}: its output is not valid H.264 media: {probe.stderr[:200]}")
        checked += 1
    fenced = 0
    logs = os.path.join(cluster, "logs")
    for name in os.listdir(logs):
        if name.startswith("dispatcher-"):
            with open(os.path.join(logs, name), errors="replace") as f:
                fenced += f.read().count("stale assignment refused")
    say(f"stale assignments refused by the epoch fence (dispatcher logs): {fenced}")
    elapsed = time.monotonic() - started
    say(f"{a.jobs - len(waiting)} jobs completed, {checked} real outputs checked with ffprobe, "
        f"attempts per job {dict(sorted(attempts.items()))}, {elapsed:.0f} s in all")
    say("client-visible errors by status (each retried with the same key): "
        + (", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or "none"))
finally:
    r = subprocess.run([spool, "cluster", "down", "--data-dir", cluster], env=env, capture_output=True, text=True)
    if failed:
        logs = os.path.join(cluster, "logs")
        for name in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
            with open(os.path.join(logs, name), errors="replace") as f:
                tail = f.read()[-1500:]
            print(f"--- {name} (end)\n{tail}", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)

if failed:
    for f in failed[:30]:
        say("FAILED:", f)
    sys.exit(1)
say("ok: every acknowledged job completed exactly once")
