#!/usr/bin/env python3
# api_flow.py: a real client (python-requests) through the whole API of a live `spool serve`:
# upload a file (Content-Length and chunked), submit a job with an Idempotency-Key, replay it
# (the same bytes, Idempotent-Replayed: true; another body under the same key is 422), poll it
# with ETag (304) and HEAD, follow its server-sent events while it is cancelled (and resume
# with Last-Event-ID), page through more than 25 jobs by next_page_url (no duplicate, none
# missed, also by offset), download the file whole and by Range (206, 416), delete it, and
# read the request counters on /metrics. Exits non-zero on the first failed check.
# Usage: api_flow.py [--binary PATH]   (default .build/debug/spool)
import hashlib
import json
import os
import queue
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from spoolproc import SpoolServer, error_envelope_problem  # noqa: E402

checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1


def check_error(r, status, code=None):
    check(r.status_code == status, f"{r.request.method} {r.request.path_url}: expected {status}, got {r.status_code}: {r.text[:300]}")
    problem = error_envelope_problem(r.status_code, r.headers, r.content)
    check(problem is None, f"{r.request.method} {r.request.path_url}: {problem}")
    if code:
        check(r.json()["error"]["code"] == code, f"expected error code {code}, got {r.text[:300]}")


def upload(s, srv, data, chunked=False):
    body = (data[i:i + 65536] for i in range(0, len(data), 65536)) if chunked else data
    r = s.post(srv.url("/api/v1/files"), data=body, headers={"Content-Type": "application/octet-stream"})
    check(r.status_code == 201, f"upload: {r.status_code} {r.text[:300]}")
    f = r.json()
    check(f["size"] == len(data), f"upload size {f['size']} != {len(data)}")
    check(f["sha256"] == hashlib.sha256(data).hexdigest(), "upload sha256 differs from the bytes sent")
    return f


def submit(s, srv, body, key):
    raw = json.dumps(body).encode()
    return s.post(srv.url("/api/v1/jobs"), data=raw, headers={"Content-Type": "application/json", "Idempotency-Key": key})


def read_events(resp, out, stop):
    """Parses a text/event-stream into dicts {id, event, data} pushed to `out`."""
    ev = {}
    try:
        for line in resp.iter_lines(chunk_size=1, decode_unicode=False):
            if stop.is_set():
                break
            line = line.decode("utf-8")
            if line == "":
                if ev:
                    out.put(ev)
                ev = {}
            elif line.startswith(":"):
                continue
            else:
                k, _, v = line.partition(":")
                v = v[1:] if v.startswith(" ") else v
                ev[k] = ev[k] + "\n" + v if k == "data" and k in ev else v
    except (requests.RequestException, AttributeError, ValueError):
        pass
    out.put(None)  # end of stream


def flow(srv):
    s = srv.session()
    rng = random.Random(11)

    # 1. Uploads.
    data = bytes(rng.getrandbits(8) for _ in range(3 * 1024 * 1024 + 17))
    f = upload(s, srv, data)
    f2 = upload(s, srv, data[:200_000], chunked=True)
    check(f["id"] != f2["id"], "two uploads got one id")
    print(f"upload: {f['id']} {f['size']} bytes sha256 {f['sha256'][:16]}…; chunked upload {f2['id']} ok")

    # 2. Submit with an Idempotency-Key, replay, reuse with another body.
    key = "flow-" + uuid.uuid4().hex
    body = {"input": {"file_id": f["id"]}, "preset": "h264-720p", "metadata": {"flow": "api_flow"}}
    r1 = submit(s, srv, body, key)
    check(r1.status_code == 201, f"submit: {r1.status_code} {r1.text[:300]}")
    job = r1.json()
    check(job["id"].startswith("job_") and job["state"] == "pending", f"job: {job}")
    check(r1.headers.get("Idempotent-Replayed") in (None, "false"), "a first submission marked as replayed")
    r2 = submit(s, srv, body, key)
    check(r2.status_code == r1.status_code, f"replay status {r2.status_code} != {r1.status_code}")
    check(r2.content == r1.content, "replay body is not byte-identical to the first response")
    check(r2.headers.get("Idempotent-Replayed") == "true", f"replay without Idempotent-Replayed: true ({dict(r2.headers)})")
    r3 = submit(s, srv, dict(body, preset="h264-360p"), key)
    check_error(r3, 422, "idempotency_key_reused")
    r4 = s.post(srv.url("/api/v1/jobs"), json=body)
    check(400 <= r4.status_code < 500, f"submit without Idempotency-Key: {r4.status_code}")
    check_error(r4, r4.status_code)
    print(f"submit: {job['id']} {job['state']}; replay byte-identical with Idempotent-Replayed: true; other body 422")

    # 3. Poll with ETag; HEAD has GET's headers and no body.
    g = s.get(srv.url(f"/api/v1/jobs/{job['id']}"))
    check(g.status_code == 200 and g.json()["id"] == job["id"], f"get job: {g.status_code}")
    etag = g.headers.get("ETag")
    check(etag, "no ETag on GET /jobs/{id}")
    check(g.headers.get("Last-Modified"), "no Last-Modified on GET /jobs/{id}")
    nm = s.get(srv.url(f"/api/v1/jobs/{job['id']}"), headers={"If-None-Match": etag})
    check(nm.status_code == 304 and nm.content == b"", f"If-None-Match: {nm.status_code} {nm.content[:100]!r}")
    h = s.head(srv.url(f"/api/v1/jobs/{job['id']}"))
    check(h.status_code == 200 and h.content == b"", f"HEAD job: {h.status_code}")
    check(h.headers.get("ETag") == etag and h.headers.get("Content-Length") == g.headers.get("Content-Length"), "HEAD headers differ from GET's")
    print(f"poll: ETag {etag}, If-None-Match -> 304, HEAD same headers")

    # 4. Events: follow the stream, cancel, see the state change; then resume after an id.
    stop = threading.Event()
    events = queue.Queue()
    es = s.get(srv.url(f"/api/v1/jobs/{job['id']}/events"), stream=True, timeout=(5, 30))
    check(es.status_code == 200 and es.headers.get("Content-Type", "").startswith("text/event-stream"),
          f"events: {es.status_code} {es.headers.get('Content-Type')}")
    t = threading.Thread(target=read_events, args=(es, events, stop), daemon=True)
    t.start()
    time.sleep(0.2)  # the stream is open; its first event may already be there
    c = s.post(srv.url(f"/api/v1/jobs/{job['id']}/cancel"))
    check(c.status_code == 200 and c.json()["state"] == "cancelled", f"cancel: {c.status_code} {c.text[:300]}")
    seen, deadline = [], time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            ev = events.get(timeout=max(0.05, deadline - time.monotonic()))
        except queue.Empty:
            break
        if ev is None:
            break
        seen.append(ev)
        if "cancelled" in ev.get("data", "") or ev.get("event") == "cancelled":
            break
    stop.set()
    es.close()
    check(any("cancelled" in e.get("data", "") for e in seen), f"no cancelled event on the stream; saw {seen}")
    ids = [e["id"] for e in seen if "id" in e]
    check(ids, f"events carry no id (needed for Last-Event-ID): {seen}")
    if len(ids) >= 2:
        rs = s.get(srv.url(f"/api/v1/jobs/{job['id']}/events"), headers={"Last-Event-ID": ids[0]}, stream=True, timeout=(5, 10))
        q2 = queue.Queue()
        read_events(rs, q2, threading.Event())
        resumed = [e for e in iter(q2.get, None)]
        check(resumed and all(e.get("id") != ids[0] for e in resumed), f"resume after {ids[0]} repeated it: {resumed}")
        check(ids[-1] in [e.get("id") for e in resumed], f"resume after {ids[0]} lost {ids[-1]}: {resumed}")
    rt = s.post(srv.url(f"/api/v1/jobs/{job['id']}/retry"))
    check_error(rt, 409, "invalid_transition")
    print(f"events: {len(seen)} event(s), last {seen[-1]}; cancel seen; retry of a cancelled job 409")

    # 5. Pages: > 25 jobs, every one exactly once by cursor and by offset.
    created = {job["id"]}
    for i in range(30):
        r = submit(s, srv, {"input": {"file_id": f2["id"]}, "preset": "h264-360p"}, f"flow-page-{uuid.uuid4().hex}")
        check(r.status_code == 201, f"submit {i}: {r.status_code} {r.text[:200]}")
        created.add(r.json()["id"])
    seen_ids, pages, url = [], 0, "/api/v1/jobs?limit=7"
    total = None
    while url:
        r = s.get(srv.url(url))
        check(r.status_code == 200, f"page {url}: {r.status_code} {r.text[:300]}")
        p = r.json()
        total = p["total_count"] if total is None else total
        check(p["total_count"] == total, "total_count changed between pages")
        check(len(p["data"]) <= 7, "page larger than its limit")
        seen_ids += [j["id"] for j in p["data"]]
        url = p["next_page_url"]
        pages += 1
        check(pages < 100, "next_page_url never ends")
    check(len(seen_ids) == len(set(seen_ids)), "a job appeared twice across pages")
    check(created <= set(seen_ids), f"pages missed jobs: {sorted(created - set(seen_ids))[:5]}")
    check(len(seen_ids) == total, f"pages gave {len(seen_ids)} jobs, total_count {total}")
    by_offset = []
    for off in range(0, total, 10):
        r = s.get(srv.url(f"/api/v1/jobs?limit=10&offset={off}"))
        check(r.status_code == 200, f"offset page: {r.status_code}")
        by_offset += [j["id"] for j in r.json()["data"]]
    check(by_offset == seen_ids, "offset pages differ from cursor pages")
    pend = s.get(srv.url("/api/v1/jobs?state=cancelled&limit=100")).json()
    check([j["id"] for j in pend["data"]] == [job["id"]] and pend["total_count"] == 1, f"state filter: {pend}")
    check_error(s.get(srv.url("/api/v1/jobs?limit=0")), 422)
    check_error(s.get(srv.url("/api/v1/jobs?limit=101")), 422)
    nxt = s.get(srv.url("/api/v1/jobs?limit=7")).json()["next_page_url"]
    cursor = parse_qs(urlsplit(nxt).query)["cursor"][0]
    for bad in [cursor[:-1] + ("0" if cursor[-1] != "0" else "1"), "x" + cursor, cursor.split(".")[0]]:
        check_error(s.get(srv.url("/api/v1/jobs"), params={"limit": 7, "cursor": bad}), 400)
    check_error(s.get(srv.url("/api/v1/jobs"), params={"limit": 7, "cursor": cursor, "state": "pending"}), 400)
    print(f"pages: {len(seen_ids)} jobs in {pages} pages of 7 by next_page_url, no duplicates; offset pages agree; tampered cursor 400")

    # 6. Downloads: whole, by Range, HEAD, 416; then delete.
    d = s.get(srv.url(f"/api/v1/files/{f['id']}"))
    check(d.status_code == 200 and hashlib.sha256(d.content).hexdigest() == f["sha256"], "whole download differs")
    fe = d.headers.get("ETag")
    check(fe and d.headers.get("Accept-Ranges") == "bytes", "download without ETag / Accept-Ranges")
    a, b = 1_000_003, 2_100_000
    rr = s.get(srv.url(f"/api/v1/files/{f['id']}"), headers={"Range": f"bytes={a}-{b}"})
    check(rr.status_code == 206 and rr.content == data[a:b + 1], f"range: {rr.status_code}, {len(rr.content)} bytes")
    check(rr.headers.get("Content-Range") == f"bytes {a}-{b}/{len(data)}", f"Content-Range {rr.headers.get('Content-Range')}")
    tail = s.get(srv.url(f"/api/v1/files/{f['id']}"), headers={"Range": "bytes=-100"})
    check(tail.status_code == 206 and tail.content == data[-100:], "suffix range differs")
    check_error(s.get(srv.url(f"/api/v1/files/{f['id']}"), headers={"Range": f"bytes={len(data) + 5}-"}), 416)
    hd = s.head(srv.url(f"/api/v1/files/{f['id']}"))
    if d.history:
        # Files in S3: GET redirects to a presigned URL, and HEAD answers as GET would: 302
        # with the file's ETag (the store answers the rest).
        check(hd.status_code == 302 and hd.headers.get("Location") and hd.headers.get("ETag") == d.history[0].headers.get("ETag"),
              f"HEAD file (redirecting): {hd.status_code} {dict(hd.headers)}")
    else:
        check(hd.status_code == 200 and hd.content == b"" and hd.headers.get("Content-Length") == str(len(data)), "HEAD file")
    check(s.get(srv.url(f"/api/v1/files/{f['id']}"), headers={"If-None-Match": fe}).status_code == 304, "file If-None-Match not 304")
    dl = s.delete(srv.url(f"/api/v1/files/{f2['id']}"))
    check(dl.status_code in (200, 204), f"delete: {dl.status_code} {dl.text[:200]}")
    check_error(s.get(srv.url(f"/api/v1/files/{f2['id']}")), 404)
    print(f"download: whole sha256 ok; Range bytes={a}-{b} -> 206 {len(rr.content)} bytes equal; suffix, 416, HEAD, 304; delete then 404")

    # 7. Auth and errors.
    check_error(requests.get(srv.url("/api/v1/jobs")), 401)
    check_error(requests.get(srv.url("/api/v1/jobs"), headers={"Authorization": "Bearer wrong"}), 401)
    check_error(s.get(srv.url("/api/v1/nope")), 404)
    m405 = s.put(srv.url("/api/v1/jobs"))
    check_error(m405, 405)
    check("GET" in m405.headers.get("Allow", ""), "405 without Allow")

    # 8. Keys: an admin makes a tenant key; the tenant sees only its own jobs; revoked, it is refused.
    k = s.post(srv.url("/api/v1/keys"), json={"tenant": "flow-tenant"})
    check(k.status_code == 201 and k.json()["secret"].startswith("spk_"), f"create key: {k.status_code} {k.text[:200]}")
    tk = srv.session(k.json()["secret"])
    check_error(tk.get(srv.url("/api/v1/keys")), 403)
    mine = tk.get(srv.url("/api/v1/jobs")).json()
    check(mine["total_count"] == 0 and mine["data"] == [], f"a new tenant sees jobs: {mine['total_count']}")
    check_error(tk.get(srv.url(f"/api/v1/jobs/{job['id']}")), 404)
    listed = s.get(srv.url("/api/v1/keys?limit=100")).json()["data"]
    check(all("secret" not in x for x in listed) and k.json()["id"] in [x["id"] for x in listed], "key list shows a secret or misses the key")
    check(s.delete(srv.url(f"/api/v1/keys/{k.json()['id']}")).status_code == 204, "revoke")
    check_error(tk.get(srv.url("/api/v1/jobs")), 401)
    print("keys: tenant key made, sees no other tenant's job, no admin routes; revoked -> 401")

    # 9. Metrics: the requests above are counted per route and status.
    m = s.get(srv.url("/metrics"))
    check(m.status_code == 200, f"/metrics: {m.status_code}")
    lines = [l for l in m.text.splitlines() if l and not l.startswith("#")]
    counters = [l for l in lines if "request" in l.split("{")[0] and ("/api/v1/jobs" in l or "jobs" in l)]
    check(counters, f"/metrics has no request counter for the jobs routes; metric names: {sorted({l.split('{')[0].split(' ')[0] for l in lines})[:40]}")
    check(any('status="201"' in l or 'status="304"' in l or 'code="201"' in l for l in lines), "/metrics counts no 201/304 responses")
    print(f"metrics: {len(lines)} samples, e.g. {counters[0]}")


def main():
    work = tempfile.mkdtemp(prefix="spool-flow-")
    srv = SpoolServer(os.path.join(work, "data"), binary=(sys.argv[2] if len(sys.argv) > 2 and sys.argv[1] == "--binary" else None))
    try:
        srv.start()
        flow(srv)
        rc = srv.stop()
        if rc != 0:
            raise AssertionError(f"spool serve exited {rc} after SIGTERM")
        print(f"api_flow: ok ({checks} checks)")
    except AssertionError as e:
        print(f"api_flow: FAILED: {e}\n--- server log\n{srv.log_tail()}")
        srv.kill()
        sys.exit(1)
    finally:
        if srv.alive():
            srv.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
