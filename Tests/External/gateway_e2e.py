#!/usr/bin/env python3
# gateway_e2e.py: `spool gateway` (real nginx, TLS 1.3 with the CA it generated) in front of a
# real `spool serve`, checked from outside:
#   1. TLS: the gateway answers over TLS 1.3 to a client trusting DATA/gateway/ca.pem, and a
#      client trusting only the system store refuses its certificate; TLS 1.2 is refused.
#   2. Auth: no key → 401 made by the gateway (the dispatcher's request counter does not
#      move); a wrong key → 401 from the dispatcher; both the standard error JSON. Health
#      needs no key. Anything outside /api/v1/ → 404 JSON, and /metrics is not reachable.
#   3. The API through it: an upload of 3 MiB (streamed; over the gateway's 1 MiB body limit
#      for other endpoints, which gives 413 JSON), a job submitted with an Idempotency-Key and
#      replayed, its event stream (SSE, unbuffered: the first event arrives while the stream
#      stays open), a download with the same bytes.
#   4. Engines through the gateway's plain engine listener: a real `spool engine` registers,
#      leases, streams input and output through nginx, and the job completes with an MP4.
#   5. Rate limit: a burst with one key over its rate gets 429 with the standard error and
#      Retry-After; another key is not affected.
#   SIGHUP renders again and reloads nginx, which keeps serving; SIGTERM stops it (exit 0).
#   6. Retries (a second gateway, one worker): upstreams are a "black hole" that reads each
#      request and closes without answering, and the real dispatcher. GETs and job
#      submissions with an Idempotency-Key that hit the black hole are retried on the
#      dispatcher and succeed, each job created once; a cancel (a POST without a key) that
#      hits it is not retried: 502 JSON, and the job is still pending.
# Bounded: every wait has a deadline; about 20 s on two cores.
# Usage: gateway_e2e.py [--binary PATH]
import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from spoolproc import DEFAULT_BINARY, SpoolServer, error_envelope_problem, free_port, stop_gracefully  # noqa: E402
from engines_e2e import JOIN, Engine, synthesize, wait_until  # noqa: E402


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def check_error(r, status, code=None):
    check(r.status_code == status, f"{r.request.method} {r.url}: expected {status}, got {r.status_code} {r.text[:300]}")
    problem = error_envelope_problem(r.status_code, r.headers, r.content)
    check(problem is None, f"{r.url}: {problem}")
    if code:
        got = r.json()["error"]["code"]
        check(got == code, f"{r.url}: error code {got}, expected {code}")


class Gateway:
    """One `spool gateway` process (nginx in the foreground as its child)."""

    def __init__(self, binary, data_dir, upstreams, extra=()):
        self.binary, self.data_dir = binary, data_dir
        self.port = free_port()
        self.engine_port = free_port()
        self.args = [binary, "gateway", "--data-dir", data_dir, "--listen", f"127.0.0.1:{self.port}",
                     "--engine-listen", f"127.0.0.1:{self.engine_port}"]
        for u in upstreams:
            self.args += ["--upstream", u]
        self.args += list(extra)
        self.log_path = os.path.join(os.path.dirname(data_dir.rstrip("/")), os.path.basename(data_dir) + "-gateway.log")
        self.ca = os.path.join(data_dir, "gateway", "ca.pem")
        self.proc = None

    def url(self, path):
        return f"https://127.0.0.1:{self.port}{path}"

    def start(self, timeout=30):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            check(self.proc.poll() is None, f"spool gateway exited {self.proc.returncode}:\n{self.log()}")
            # Ready: nginx started (the command says so once it spawned it) and a TLS
            # handshake with the CA succeeds (a bare connect could meet something else).
            try:
                with open(self.log_path, "rb") as f:
                    started = b"serving https://" in f.read()
                if started:
                    ctx = ssl.create_default_context(cafile=self.ca)
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1) as raw:
                        with ctx.wrap_socket(raw, server_hostname="127.0.0.1"):
                            pass
                    socket.create_connection(("127.0.0.1", self.engine_port), timeout=1).close()
                    return self
            except (OSError, ssl.SSLError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"the gateway did not listen within {timeout} s:\n{self.log()}")

    def session(self, key=None):
        s = requests.Session()
        s.trust_env = False  # REQUESTS_CA_BUNDLE would override `verify`; no proxies for loopback
        s.verify = self.ca
        if key:
            s.headers["Authorization"] = "Bearer " + key
        return s

    def log(self):
        text = ""
        for path in (self.log_path, os.path.join(self.data_dir, "gateway", "logs", "error.log"),
                     os.path.join(self.data_dir, "gateway", "logs", "setup.log")):
            try:
                with open(path, "rb") as f:
                    text += f"--- {path}\n" + f.read().decode("utf-8", "replace")[-2000:]
            except OSError:
                pass
        return text

    def stop(self, timeout=20):
        return stop_gracefully(self.proc, "spool gateway", timeout)


class BlackHole:
    """A dispatcher that reads each request (head and Content-Length body) and closes
    without answering; it records each request's method, path and X-Request-Id."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.seen = []
        self.lock = threading.Lock()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.swallow, args=(conn,), daemon=True).start()

    def swallow(self, conn):
        conn.settimeout(5)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            need = int(headers.get("content-length", "0"))
            while len(body) < need:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                body += chunk
            with self.lock:
                self.seen.append((method, path, headers.get("x-request-id", "")))
        except (OSError, ValueError):
            pass
        finally:
            conn.close()

    def requests_seen(self):
        with self.lock:
            return list(self.seen)

    def close(self):
        self.sock.close()


def request_count(server):
    """Requests the dispatcher has answered, from its own /metrics (straight, not through the gateway)."""
    text = requests.get(server.url("/metrics"), timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("spool_http_requests_total{") and "metrics" not in line.split("}")[0]:
            total += float(line.rsplit(" ", 1)[1])
    return total


def tls_and_auth(gw, server, admin_key):
    # 1. TLS 1.3 with the generated CA; the system store does not know it; TLS 1.2 refused.
    ctx = ssl.create_default_context(cafile=gw.ca)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            check(tls.version() == "TLSv1.3", f"TLS version {tls.version()}")
    try:
        system = requests.Session()
        system.trust_env = False
        system.get(gw.url("/api/v1/health"), timeout=5)
        raise AssertionError("a client without the gateway's CA accepted its certificate")
    except requests.exceptions.SSLError:
        pass
    old = ssl.create_default_context(cafile=gw.ca)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as raw:
            with old.wrap_socket(raw, server_hostname="127.0.0.1"):
                raise AssertionError("the gateway accepted TLS 1.2")
    except ssl.SSLError:
        pass
    anon = gw.session()
    check(anon.get(gw.url("/api/v1/health"), timeout=5).status_code == 200, "health through the gateway")

    # 2. No key: the gateway's 401; the dispatcher sees nothing. A wrong key: the dispatcher's 401.
    before = request_count(server)
    for _ in range(3):
        r = anon.get(gw.url("/api/v1/jobs"), timeout=5)
        check_error(r, 401, "unauthorized")
        check("Bearer" in r.headers.get("WWW-Authenticate", ""), f"401 without WWW-Authenticate: {r.headers}")
    check_error(anon.post(gw.url("/api/v1/jobs"), json={}, timeout=5), 401, "unauthorized")
    check_error(gw.session("not-a-key").get(gw.url("/api/v1/jobs"), headers={"Authorization": "Basic eDp5"}, timeout=5), 401)
    after = request_count(server)
    check(after == before, f"requests without a key reached the dispatcher ({before} → {after})")
    check_error(gw.session("wrong-key-0123456789").get(gw.url("/api/v1/jobs"), timeout=5), 401, "unauthorized")
    check(request_count(server) > after, "a wrong key was answered without asking the dispatcher")
    admin = gw.session(admin_key)
    check_error(admin.get(gw.url("/metrics"), timeout=5), 404, "not_found")
    check_error(admin.get(gw.url("/"), timeout=5), 404, "not_found")
    print("gateway: TLS 1.3 with the generated CA (TLS 1.2 and unknown CAs refused); no key → gateway 401, dispatcher untouched; wrong key → dispatcher 401; /metrics not exposed")


def api_through(gw, server, admin_key, work, binary):
    admin = gw.session(admin_key)
    # 3. A 3 MiB upload streams through; the same body elsewhere is over the gateway's limit.
    data = os.urandom(3 * 1024 * 1024 + 5)
    r = admin.post(gw.url("/api/v1/files"), data=data, headers={"Content-Type": "application/octet-stream"}, timeout=30)
    check(r.status_code == 201, f"upload through the gateway: {r.status_code} {r.text[:300]}")
    blob = r.json()
    check(blob["size"] == len(data), f"upload size {blob['size']}")
    check_error(admin.post(gw.url("/api/v1/keys"), data=data, headers={"Content-Type": "application/json"}, timeout=30), 413, "payload_too_large")
    got = admin.get(gw.url(f"/api/v1/files/{blob['id']}"), timeout=30)
    check(got.status_code == 200 and got.content == data, f"download through the gateway: {got.status_code}, {len(got.content)} bytes")

    key = "gw-" + uuid.uuid4().hex
    body = {"input": {"file_id": blob["id"]}, "preset": "h264-360p"}
    r1 = admin.post(gw.url("/api/v1/jobs"), json=body, headers={"Idempotency-Key": key}, timeout=10)
    check(r1.status_code == 201, f"submit through the gateway: {r1.status_code} {r1.text[:300]}")
    r2 = admin.post(gw.url("/api/v1/jobs"), json=body, headers={"Idempotency-Key": key}, timeout=10)
    check(r2.status_code == 201 and r2.content == r1.content, "a replay through the gateway did not return the first response")
    job_id = r1.json()["id"]

    # The event stream: the first event arrives while the stream is still open (unbuffered).
    first = {}
    es = admin.get(gw.url(f"/api/v1/jobs/{job_id}/events"), headers={"Last-Event-ID": "0"}, stream=True, timeout=(5, 10))
    check(es.status_code == 200 and es.headers.get("Content-Type", "").startswith("text/event-stream"),
          f"events through the gateway: {es.status_code} {es.headers}")
    started = time.monotonic()
    for line in es.iter_lines(decode_unicode=True):
        if line and line.startswith("event: "):
            first["type"] = line[7:]
            break
    first["seconds"] = time.monotonic() - started
    es.close()
    check(first.get("type") == "JobCreated" and first["seconds"] < 5, f"first event through the gateway: {first}")
    admin.post(gw.url(f"/api/v1/jobs/{job_id}/cancel"), timeout=10)

    # 4. A real engine through the gateway's engine listener transcodes a job.
    clip = os.path.join(work, "clip.mp4")
    synthesize(binary, clip, 160, 90, 1)
    with open(clip, "rb") as f:
        r = admin.post(gw.url("/api/v1/files"), data=f, headers={"Content-Type": "video/mp4"}, timeout=30)
    check(r.status_code == 201, r.text)
    r = admin.post(gw.url("/api/v1/jobs"), json={"input": {"file_id": r.json()["id"]}, "preset": "h264-360p"},
                   headers={"Idempotency-Key": uuid.uuid4().hex}, timeout=10)
    check(r.status_code == 201, r.text)
    job_id = r.json()["id"]
    engine = Engine(binary, f"http://127.0.0.1:{gw.engine_port}", os.path.join(work, "engine"), os.path.join(work, "engine.log"), "gw-e1").start()
    try:
        def done():
            j = admin.get(gw.url(f"/api/v1/jobs/{job_id}"), timeout=10).json()
            check(j["state"] not in ("failed", "cancelled"), f"job ended badly: {j}")
            return j if j["state"] == "completed" else None
        j = wait_until("the job to complete through the gateway", done, 90)
        out = admin.get(gw.url(j["result"]["outputs"][0]["url"]), timeout=30)
        check(out.status_code == 200 and out.content[4:8] == b"ftyp", f"output through the gateway: {out.status_code} {out.content[:16]}")
    finally:
        rc = engine.stop()
        check(rc == 0, f"engine exited {rc}:\n{engine.log()}")
    # The CLI through the gateway over TLS: trusting the gateway's CA it works; trusting
    # only the system's store it is refused before anything is sent.
    cli = subprocess.run([binary, "jobs", "show", job_id, "--server", gw.url(""), "--ca-file", gw.ca, "--key", admin_key],
                         capture_output=True, text=True, timeout=60)
    check(cli.returncode == 0 and "completed" in cli.stdout, f"spool jobs show over TLS: rc {cli.returncode}: {cli.stdout[-300:]} {cli.stderr[-300:]}")
    cli = subprocess.run([binary, "jobs", "list", "--server", gw.url(""), "--key", admin_key], capture_output=True, text=True, timeout=60)
    check(cli.returncode != 0 and "not trusted" in cli.stderr, f"spool jobs list to an untrusted gateway: rc {cli.returncode}: {cli.stderr[-300:]}")
    # Only engine endpoints on the engine listener.
    check_error(requests.get(f"http://127.0.0.1:{gw.engine_port}/api/v1/jobs", headers={"Authorization": "Bearer " + admin_key}, timeout=5), 404)
    print(f"gateway: 3 MiB upload and download streamed, 413 over the body limit elsewhere, submit replayed, first SSE event in {first['seconds']:.2f} s, an engine through the engine listener completed a transcode ({len(out.content)} bytes), the CLI over TLS trusting the gateway's CA")
    return blob["id"]


def rate_limit(gw, admin_key):
    # 5. A key created for the burst: 20 r/s with a burst of 20 in this gateway.
    admin = gw.session(admin_key)
    r = admin.post(gw.url("/api/v1/keys"), json={"tenant": "burst"}, timeout=10)
    check(r.status_code == 201, r.text)
    burst = gw.session(r.json()["secret"])
    statuses = []
    limited = None
    for _ in range(80):
        r = burst.get(gw.url("/api/v1/jobs?limit=1"), timeout=5)
        statuses.append(r.status_code)
        if r.status_code == 429 and limited is None:
            limited = r
    check(limited is not None, f"no 429 in a burst of 80: {statuses}")
    check_error(limited, 429, "rate_limited")
    check(limited.headers.get("Retry-After") == "1", f"429 without Retry-After: {limited.headers}")
    check(set(statuses) <= {200, 429}, f"statuses in the burst: {statuses}")
    check(admin.get(gw.url("/api/v1/jobs?limit=1"), timeout=5).status_code == 200, "another key was limited by this one's burst")
    print(f"gateway: a burst of 80 → {statuses.count(200)} × 200, {statuses.count(429)} × 429 (standard error, Retry-After: 1); another key unaffected")


def retries(binary, work, server, admin_key, file_id):
    # 6. Upstreams: the black hole and the dispatcher; one worker; never marked down.
    hole = BlackHole()
    gw = Gateway(binary, os.path.join(work, "data-retry"), [f"127.0.0.1:{hole.port}", f"127.0.0.1:{server.port}"],
                 ["--workers", "1", "--max-fails", "100"]).start()
    try:
        admin = gw.session(admin_key)
        for _ in range(6):
            r = admin.get(gw.url("/api/v1/version"), timeout=10)
            check(r.status_code == 200, f"GET retried past the black hole: {r.status_code} {r.text[:200]}")
        gets = [s for s in hole.requests_seen() if s[0] == "GET"]
        check(gets, "no GET reached the black hole: the test proves nothing")

        jobs = {}
        for i in range(6):
            key = f"retry-{uuid.uuid4().hex}"
            r = admin.post(gw.url("/api/v1/jobs"), json={"input": {"file_id": file_id}, "preset": "h264-360p"},
                           headers={"Idempotency-Key": key, "X-Request-Id": key}, timeout=10)
            check(r.status_code == 201, f"submission with a key, retried past the black hole: {r.status_code} {r.text[:200]}")
            jobs[key] = r.json()["id"]
        swallowed = [s for s in hole.requests_seen() if s[0] == "POST" and s[2] in jobs]
        check(swallowed, "no keyed submission reached the black hole: the test proves nothing")
        for key, job_id in jobs.items():
            r = admin.post(gw.url("/api/v1/jobs"), json={"input": {"file_id": file_id}, "preset": "h264-360p"},
                           headers={"Idempotency-Key": key}, timeout=10)
            check(r.status_code == 201 and r.json()["id"] == job_id, f"a retried submission made a second job: {r.status_code} {r.text[:200]}")

        outcomes = []
        for job_id in list(jobs.values()):
            rid = "cancel-" + uuid.uuid4().hex
            r = admin.post(gw.url(f"/api/v1/jobs/{job_id}/cancel"), headers={"X-Request-Id": rid}, timeout=10)
            hit = any(s[2] == rid for s in hole.requests_seen())
            outcomes.append((hit, r.status_code))
            state = admin.get(gw.url(f"/api/v1/jobs/{job_id}"), timeout=10).json()["state"]
            if hit:
                check_error(r, 502, "unavailable")
                check(state == "pending", f"a cancel the black hole swallowed was sent again: the job is {state}")
            else:
                check(r.status_code == 200 and state == "cancelled", f"cancel: {r.status_code} {r.text[:200]}, job {state}")
        check(any(hit for hit, _ in outcomes), f"no cancel reached the black hole: the test proves nothing ({outcomes})")
        print(f"gateway: {len(gets)} GETs and {len(swallowed)} keyed submissions swallowed by a dead dispatcher were retried on the live one "
              f"(each job created once); {sum(1 for h, _ in outcomes if h)} keyless POSTs it swallowed got 502 and were not sent again")
    except (AssertionError, requests.RequestException, OSError):
        print(gw.log())
        raise
    finally:
        gw.stop()
        hole.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.environ.get("SPOOL", DEFAULT_BINARY))
    args = ap.parse_args()
    if not shutil.which("nginx") and not os.access("/usr/sbin/nginx", os.X_OK):
        sys.exit("gateway_e2e: nginx is not installed (make deps installs it)")
    work = tempfile.mkdtemp(prefix="spool-gateway-e2e-")
    server = SpoolServer(os.path.join(work, "data"), binary=args.binary, env={"SPOOL_JOIN_TOKEN": JOIN})
    gw = None
    ok = False
    try:
        server.start()
        gw = Gateway(args.binary, os.path.join(work, "data-gw"), [f"127.0.0.1:{server.port}"],
                     ["--rate-per-key", "20", "--burst-per-key", "20"]).start()
        tls_and_auth(gw, server, server.admin_key)
        file_id = api_through(gw, server, server.admin_key, work, args.binary)
        rate_limit(gw, server.admin_key)
        # SIGHUP: rendered again, nginx reloaded, still serving with the same CA.
        gw.proc.send_signal(signal.SIGHUP)
        wait_until("the gateway to reload", lambda: b"reloaded nginx" in open(gw.log_path, "rb").read(), 20)
        check(gw.session().get(gw.url("/api/v1/health"), timeout=5).status_code == 200, "health after SIGHUP")
        print("gateway: SIGHUP rendered the configuration again and reloaded nginx; still serving")
        rc = gw.stop()
        check(rc == 0, f"spool gateway exited {rc} after SIGTERM:\n{gw.log()}")
        retries(args.binary, work, server, server.admin_key, file_id)
        ok = True
        print("gateway_e2e: ok")
    except (AssertionError, RuntimeError, requests.RequestException, OSError) as e:
        print(f"gateway_e2e: FAILED: {e!r}")
        print("--- server log (tail)")
        print(server.log_tail(40))
        if gw:
            print(gw.log())
    finally:
        if gw:
            try:
                gw.stop()
            except RuntimeError:
                pass
        if server.alive():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
