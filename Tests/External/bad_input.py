#!/usr/bin/env python3
# bad_input.py: hostile input against every endpoint of a live `spool serve`: malformed JSON,
# wrong types, unknown and duplicate keys, 1 MiB strings, numbers past every range (1e400,
# 2^64, -2^63-1), negative and absurd limits/offsets, tampered cursors, bad ids, and (over a
# raw socket, since requests refuses to send them) invalid UTF-8, control bytes and NUL in
# paths and headers, broken framing. Every answer must be a 4xx, with the standard error JSON
# whenever it has a body; never a 500, never a dropped connection without an answer, and the
# server must still answer /api/v1/health afterwards with nothing logged as a handler failure.
# Usage: bad_input.py [--binary PATH]
import json
import os
import shutil
import socket
import sys
import tempfile
import uuid

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from spoolproc import SpoolServer, error_envelope_problem  # noqa: E402

MiB = 1024 * 1024
failures = []
count = 0


def expect_4xx(label, status, headers, body, allowed=()):
    global count
    count += 1
    if status is None:
        failures.append(f"{label}: no answer (connection closed)")
    elif not 400 <= status < 500 and status not in allowed:
        failures.append(f"{label}: status {status}: {body[:200]!r}")
    else:
        problem = error_envelope_problem(status, headers, body)
        if problem:
            failures.append(f"{label}: {problem}")


def req(s, srv, method, path, label=None, **kw):
    kw.setdefault("timeout", 30)
    try:
        r = s.request(method, srv.url(path), **kw)
    except requests.RequestException as e:
        expect_4xx(label or f"{method} {path[:80]}", None, {}, str(e).encode())
        return None
    expect_4xx(label or f"{method} {path[:80]}", r.status_code, r.headers, r.content)
    return r


def raw(srv, data, label, allowed=()):
    """Sends bytes as they are and reads the answer: (status, headers dict, body)."""
    global count
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as c:
        try:
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer and close before reading everything
        buf = b""
        try:
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    if not buf:
        expect_4xx(label, None, {}, b"")
        return
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split(b" ")[1])
    except (IndexError, ValueError):
        count += 1
        failures.append(f"{label}: unparsable status line {lines[0][:80]!r}")
        return
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.decode("latin-1").strip().title()] = v.decode("latin-1").strip()
    if "Content-Length" in headers:
        body = body[:int(headers["Content-Length"])]
    elif headers.get("Transfer-Encoding", "").lower() == "chunked":
        out, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            n = int(size_line.split(b";")[0] or b"0", 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    expect_4xx(label, status, headers, body, allowed)


def main():
    binary = sys.argv[2] if len(sys.argv) > 2 and sys.argv[1] == "--binary" else None
    work = tempfile.mkdtemp(prefix="spool-bad-")
    srv = SpoolServer(os.path.join(work, "data"), binary=binary)
    srv.start()
    try:
        run(srv)
    except Exception as e:  # noqa: BLE001 - report and fail
        failures.append(f"harness: {type(e).__name__}: {e}")
    alive = srv.alive()
    try:
        health = requests.get(srv.url("/api/v1/health"), timeout=5).status_code if alive else None
    except requests.RequestException:
        health = None
    rc = srv.stop() if alive else srv.proc.returncode
    log = open(srv.log_path, "rb").read().decode("utf-8", "replace")
    if not alive or health != 200:
        failures.append(f"server not alive after the bad input (alive {alive}, health {health}, exit {rc})")
    if rc != 0:
        failures.append(f"spool serve exited {rc} after SIGTERM")
    for line in log.splitlines():
        if "handler failed" in line or "Fatal error" in line or "internal error" in line:
            failures.append(f"server log: {line[:300]}")
    if failures:
        print(f"bad_input: FAILED: {len(failures)} of {count} answers wrong:")
        for f in failures[:60]:
            print("  " + f)
        print("--- server log\n" + srv.log_tail())
        print(f"kept: {work}")
        sys.exit(1)
    shutil.rmtree(work, ignore_errors=True)
    print(f"bad_input: ok ({count} hostile requests, every answer a 4xx with the standard error; server alive)")


def run(srv):
    global count
    s = srv.session()
    # Something real to point at, so validation (not a 404) is what answers.
    f = s.post(srv.url("/api/v1/files"), data=b"x" * 1000, headers={"Content-Type": "application/octet-stream"}).json()
    good = {"input": {"file_id": f["id"]}, "preset": "h264-720p"}
    j = s.post(srv.url("/api/v1/jobs"), json=good, headers={"Idempotency-Key": "bad-setup"}).json()
    fid, jid = f["id"], j["id"]
    big = "a" * MiB

    def post_job(body, label, key=None, ctype="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req(s, srv, "POST", "/api/v1/jobs", label, data=data,
            headers={"Content-Type": ctype, "Idempotency-Key": key or "bad-" + uuid.uuid4().hex})

    # Malformed JSON (400 invalid_json) on every JSON endpoint.
    malformed = [b"", b"{", b"}", b"[1,2", b'{"input":', b"nul", b"tru", b'{"a":1,}', b"{'a':1}", b'{"a":1}{"b":2}',
                 b'{"a" 1}', b"\xef\xbb\xbf{}", b'{"a":"\xff\xfe"}', b'{"a":"\\ud800"}', b'{"a":"\\x41"}', b'{"a":"\x01"}',
                 b"NaN", b"[Infinity]", b"-", b"01", b"1.", b".5", b"[" * 100_000 + b"]" * 100_000, b"\x00",
                 b'{"input":{"file_id":"' + fid.encode() + b'"},"preset":"h264-720p"', b"\xff" * 64]
    for i, body in enumerate(malformed):
        post_job(body, f"POST /jobs malformed #{i} {body[:20]!r}")
        req(s, srv, "POST", "/api/v1/keys", f"POST /keys malformed #{i}", data=body, headers={"Content-Type": "application/json"})
    # Wrong types, unknown and duplicate keys, values out of range.
    wrong = [[], 1, "job", None, {"input": fid, "preset": "h264-720p"}, {"input": {"file_id": 7}, "preset": "h264-720p"},
             {"input": {"file_id": fid}, "preset": 7}, {"input": {"file_id": fid}, "preset": None},
             {"input": {"file_id": fid}, "preset": "no-such-preset"}, {"input": {"file_id": fid}},
             {"input": {"file_id": fid, "extra": 1}, "preset": "h264-720p"}, dict(good, bogus=True),
             dict(good, priority="high"), dict(good, priority=-1), dict(good, priority=1000), dict(good, priority=1.5),
             dict(good, ttl_seconds=-1), dict(good, ttl_seconds="1h"), dict(good, ttl_seconds=0),
             dict(good, metadata=[1]), dict(good, metadata={"a": 1}), dict(good, metadata="x"),
             dict(good, required_capabilities="gpu"), dict(good, required_capabilities=[1]),
             dict(good, webhook_url=12), dict(good, webhook_url="not a url"), dict(good, webhook_url="file:///etc/passwd"),
             dict(good, outputs="x"), dict(good, outputs=[]), dict(good, outputs=[{"preset": 1}]), dict(good, outputs=[{"bogus": 1}]),
             {"input": {"file_id": "file_" + "Z" * 26}, "preset": "h264-720p"}, {"input": {"file_id": "../../etc/passwd"}, "preset": "h264-720p"},
             {"input": {"file_id": fid}, "preset": big}, dict(good, metadata={"k": big}), {"input": {"file_id": big}, "preset": "h264-720p"},
             dict(good, metadata={str(i): "v" for i in range(10_000)})]
    for i, body in enumerate(wrong):
        post_job(body, f"POST /jobs wrong #{i} {json.dumps(body)[:60]}")
    for num in [b"1e400", b"-1e400", b"18446744073709551616", b"-9223372036854775809", b"1e-400", b"9" * 400, b"1E+2", b"0x10", b"+1", b"1.0e0"]:
        body = b'{"input":{"file_id":"' + fid.encode() + b'"},"preset":"h264-720p","priority":' + num + b"}"
        post_job(body, f"POST /jobs priority {num[:20]!r}")
        body = b'{"input":{"file_id":"' + fid.encode() + b'"},"preset":"h264-720p","ttl_seconds":' + num + b"}"
        post_job(body, f"POST /jobs ttl {num[:20]!r}")
    dup = b'{"input":{"file_id":"' + fid.encode() + b'"},"preset":"h264-720p","preset":"h264-360p"}'
    post_job(dup, "POST /jobs duplicate key")
    post_job(b'{"input":{"file_id":"' + fid.encode() + b'","file_id":"' + fid.encode() + b'"},"preset":"h264-720p"}', "duplicate nested key")
    post_job(b'{"input":{"file_id":"' + fid.encode() + b'"},"preset":"h264-720p","\\u0070reset":"x"}', "duplicate escaped key")
    # Idempotency-Key: missing, empty, huge, reused with another body.
    req(s, srv, "POST", "/api/v1/jobs", "no Idempotency-Key", json=good)
    req(s, srv, "POST", "/api/v1/jobs", "empty Idempotency-Key", json=good, headers={"Idempotency-Key": ""})
    req(s, srv, "POST", "/api/v1/jobs", "64 KiB Idempotency-Key", json=good, headers={"Idempotency-Key": "k" * 65536})
    req(s, srv, "POST", "/api/v1/jobs", "reused key", json=dict(good, preset="h264-360p"), headers={"Idempotency-Key": "bad-setup"})
    # Keys (admin).
    for body in [{}, {"tenant": 1}, {"tenant": ""}, {"tenant": big}, {"tenant": "t", "admin": "yes"}, {"tenant": "t", "bogus": 1},
                 {"tenant": "a/b"}, {"tenant": "t\u0000"}, []]:
        req(s, srv, "POST", "/api/v1/keys", f"POST /keys {json.dumps(body)[:40]}", json=body)
    # Query parameters of every list.
    for path in ["/api/v1/jobs", "/api/v1/files", "/api/v1/engines", "/api/v1/keys"]:
        for q in ["limit=-1", "limit=0", "limit=101", "limit=1e400", "limit=18446744073709551616", "limit=abc", "limit=",
                  "limit=1.5", "offset=-5", "offset=18446744073709551616", "offset=x", "cursor=garbage", "cursor=" + "a" * 4096,
                  "cursor=job_00000000000000000000000000.0000000000000000", "limit=5&offset=1&cursor=x", "limit=%ff", "limit=%00"]:
            req(s, srv, "GET", f"{path}?{q}")
    for q in ["state=bogus", "state=PENDING", "state=%ff", "tenant=" + "t" * 10000]:
        req(s, srv, "GET", f"/api/v1/jobs?{q}")
    # Ids: wrong shape, wrong kind, encoded slashes, NUL, overlong, invalid percent-encoding.
    ids = ["x", "job_" + "Z" * 26, "job_" + "8" * 26, "file_" + "0" * 26, "%00", "%ff%fe", "..%2f..%2fetc%2fpasswd", "a" * 8000,
           "job_0000000000000000000000000%00", "%C0%AF", "%", "job_%"]
    for i in ids:
        for path in [f"/api/v1/jobs/{i}", f"/api/v1/jobs/{i}/cancel", f"/api/v1/jobs/{i}/retry", f"/api/v1/jobs/{i}/events",
                     f"/api/v1/files/{i}", f"/api/v1/engines/{i}", f"/api/v1/keys/{i}"]:
            method = "POST" if path.endswith(("cancel", "retry")) else ("DELETE" if "/keys/" in path else "GET")
            req(s, srv, method, path)
        req(s, srv, "DELETE", f"/api/v1/files/{i}")
        req(s, srv, "HEAD", f"/api/v1/jobs/{i}")
    # Headers with odd values requests can send.
    for h in [{"Range": "bytes=abc"}, {"Range": "bytes=99999999999999999999-"}, {"Range": "bytes=5000-"}, {"If-None-Match": "x" * 8000}]:
        r = s.get(srv.url(f"/api/v1/files/{fid}"), headers=h, timeout=30)
        count += 1
        # With S3 storage the download is a redirect to the store: what the store answers
        # there is the store's (its own error format), so only a 5xx counts against it.
        from_store = bool(r.history) and not r.url.startswith(srv.base)
        if r.status_code >= 500 or (r.status_code >= 400 and not from_store and error_envelope_problem(r.status_code, r.headers, r.content)):
            failures.append(f"GET file with {list(h)[0]}: {r.status_code} {r.content[:100]!r}")
    # Events of a finished job end; a junk Last-Event-ID is refused or ignored, never a 500.
    s.post(srv.url(f"/api/v1/jobs/{jid}/cancel"))
    for lei in ["x" * 5000, "-1", "18446744073709551616", "\u00ff"]:
        try:
            r = s.get(srv.url(f"/api/v1/jobs/{jid}/events"), headers={"Last-Event-ID": lei.encode("utf-8")}, timeout=10)
            count += 1
            if r.status_code >= 500 or (r.status_code >= 400 and error_envelope_problem(r.status_code, r.headers, r.content)):
                failures.append(f"events with Last-Event-ID {lei[:20]!r}: {r.status_code} {r.content[:100]!r}")
        except requests.RequestException as e:
            failures.append(f"events with Last-Event-ID {lei[:20]!r}: {e}")
    # Auth: none, wrong, huge, wrong scheme.
    for h in [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic YTpi"}, {"Authorization": "Bearer " + "k" * 60000},
              {"Authorization": "Bearer"}, {"Authorization": ""}]:
        for m, p in [("GET", "/api/v1/jobs"), ("POST", "/api/v1/jobs"), ("POST", "/api/v1/files"), ("GET", f"/api/v1/jobs/{jid}"),
                     ("GET", "/api/v1/keys"), ("GET", "/api/v1/engines")]:
            req(requests, srv, m, p, f"{m} {p} auth {str(h)[:40]}", headers=h, data=b"{}")
    # Wrong methods.
    for m, p in [("PUT", "/api/v1/jobs"), ("DELETE", "/api/v1/jobs"), ("PATCH", f"/api/v1/jobs/{jid}"), ("PUT", "/api/v1/files"),
                 ("GET", f"/api/v1/jobs/{jid}/cancel"), ("POST", "/api/v1/engines"), ("POST", "/api/v1/health")]:
        req(s, srv, m, p)
    # Raw bytes: bad UTF-8 and control bytes in the target and in headers; broken framing.
    auth = b"Authorization: Bearer " + srv.admin_key.encode() + b"\r\n"
    targets = [b"/api/v1/jobs/\xff\xfe", b"/api/v1/jobs/job_\xc0\xaf", b"/api/v1/\x01jobs", b"/api/v1/jobs\x00", b"/api/v1/jobs?limit=\xff",
               b"/api/v1/files/\xed\xa0\x80", b"/api/v1/jobs/%ff", b"/api/v1/jobs/a b", b"/api/v1/jobs\t", b"/" + b"a" * 70000]
    for t in targets:
        raw(srv, b"GET " + t + b" HTTP/1.1\r\nHost: x\r\n" + auth + b"Connection: close\r\n\r\n", f"raw target {t[:30]!r}")
    headers = [b"Idempotency-Key: \xff\xfe\r\n", b"Idempotency-Key: a\x01b\r\n", b"Idempotency-Key: a\x00b\r\n", b"Idempotency-Key: \x7f\r\n",
               b"X-Bad: \xc3\x28\r\n", b"X-Bad\x01: v\r\n", b"Bad Header: v\r\n", b": empty-name\r\n", b"Authorization: Bearer \xff\r\n",
               b"Content-Length: -1\r\n", b"Content-Length: 18446744073709551616\r\n", b"Content-Length: 2\r\nContent-Length: 3\r\n",
               b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n", b"Transfer-Encoding: gzip\r\n", b"X-Long: " + b"v" * 70000 + b"\r\n"]
    for h in headers:
        raw(srv, b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\n" + auth + h + b"Content-Type: application/json\r\nConnection: close\r\n"
            + (b"" if b"Content-Length" in h or b"Transfer-Encoding" in h else b"Content-Length: 2\r\n") + b"\r\n{}", f"raw header {h[:30]!r}")
    raw(srv, b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\n" + auth + b"Idempotency-Key: k\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        "raw bad chunk size")
    raw(srv, b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\n" + auth + b"Idempotency-Key: k2\r\nContent-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{\"a\xff",
        "raw bad UTF-8 body")
    raw(srv, b"GET /api/v1/jobs HTTP/9.9\r\nHost: x\r\n\r\n", "raw HTTP/9.9", allowed=(505,))  # the one right answer
    raw(srv, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, "raw TLS hello")
    raw(srv, b"GET\r\n\r\n", "raw short request line")


if __name__ == "__main__":
    main()
