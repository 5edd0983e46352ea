#!/usr/bin/env bash
# stream_vs_download.sh: M29's two input routes side by side. One `spool serve` and two
# engines (one slot each, one codec thread): one with --input-mode download (the input is
# fetched whole, the output written whole, then uploaded) and one with --input-mode stream
# (the input streams through a FIFO into libav and the single output streams from libav
# into its upload). The same uploaded clip (synthesized MPEG-TS, 1280x720 at 30 fps) is
# transcoded to h264-360p, jobs alternating between the engines (each requires its
# engine's tag). Per job: wall time from submission to `completed`, and the most disk the
# engine's work directory held (sampled every 20 ms). The peer is the download route, in
# the same run; the ffmpeg CLI transcoding the same file locally (one thread, the same
# settings) is printed for scale.
# Usage: SPOOL=path ./stream_vs_download.sh [--smoke]
set -euo pipefail
cd "$(dirname "$0")"
spool="${SPOOL:?set SPOOL to the spool binary}"
work="$(pwd)/.work/stream"
rm -rf "$work"; mkdir -p "$work"
smoke=0; [ "${1:-}" = "--smoke" ] && smoke=1
if [ $smoke = 1 ]; then seconds=2; w=320; h=180; rounds=1; else seconds=30; w=1280; h=720; rounds=3; fi
clip="$work/clip.ts"
"$spool" synthesize "$clip" --width $w --height $h --seconds $seconds --fps 30 >/dev/null
export SPOOL_JOIN_TOKEN=stream-bench-join-token-0123456789 SPOOL_ADMIN_KEY=stream-bench-admin-key-0123456789abcdef0123
port=$(python3 ../Tests/External/freeport.py)
pids=()
trap 'for p in "${pids[@]}"; do kill -TERM $p 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT
"$spool" serve --listen 127.0.0.1:$port --data-dir "$work/server" >"$work/serve.log" 2>&1 & pids+=($!)
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/api/v1/ready" >/dev/null && break; sleep 0.1; done
for mode in download stream; do
  "$spool" engine --server "http://127.0.0.1:$port" --data-dir "$work/engine-$mode" --name "$mode" --tag "route-$mode" \
    --input-mode $mode --threads 1 >"$work/engine-$mode.log" 2>&1 & pids+=($!)
done
python3 - "$port" "$clip" "$work" "$rounds" <<'PY'
import os, statistics, subprocess, sys, threading, time, uuid
import requests
port, clip, work, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
base = f"http://127.0.0.1:{port}/api/v1"
s = requests.Session()
s.headers["Authorization"] = "Bearer " + os.environ["SPOOL_ADMIN_KEY"]
with open(clip, "rb") as f:
    r = s.post(base + "/files", data=f, headers={"Content-Type": "video/mp2t"}, timeout=120)
assert r.status_code == 201, r.text
file_id = r.json()["id"]
size = os.path.getsize(clip)
deadline = time.monotonic() + 60
while sum(1 for e in s.get(base + "/engines", timeout=10).json()["data"] if e["state"] == "online") < 2:
    assert time.monotonic() < deadline, "engines did not come online"
    time.sleep(0.2)

def disk(path):
    total = 0
    for root, _, files in os.walk(path):
        for n in files:
            try:
                st = os.lstat(os.path.join(root, n))
                total += st.st_blocks * 512
            except OSError:
                pass
    return total

def job(mode):
    spec = {"input": {"file_id": file_id}, "preset": "h264-360p", "required_capabilities": [f"route-{mode}"]}
    peak, stop = [0], threading.Event()
    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], disk(os.path.join(work, f"engine-{mode}", "work")))
            time.sleep(0.02)
    t = threading.Thread(target=sample, daemon=True); t.start()
    try:
        t0 = time.monotonic()
        r = s.post(base + "/jobs", json=spec, headers={"Idempotency-Key": uuid.uuid4().hex}, timeout=30)
        assert r.status_code == 201, r.text
        jid = r.json()["id"]
        limit = time.monotonic() + 600
        while True:
            st = s.get(f"{base}/jobs/{jid}", timeout=10).json()
            if st["state"] in ("completed", "failed", "cancelled"):
                break
            assert time.monotonic() < limit, f"job {jid} still {st['state']} after 600 s"
            time.sleep(0.05)
        wall = time.monotonic() - t0
    finally:
        stop.set(); t.join()
    assert st["state"] == "completed", st
    return wall, peak[0]

job("download"); job("stream")   # warm-up: pages in libav and the spare workers
res = {"download": [], "stream": []}
for _ in range(rounds):
    for mode in ("download", "stream"):
        res[mode].append(job(mode))
t0 = time.monotonic()
subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-threads", "1", "-i", clip, "-vf", "scale=640:360", "-c:v", "libx264",
                "-threads", "1", "-c:a", "aac", os.path.join(work, "ffmpeg.mp4")], check=True)
ff = time.monotonic() - t0
mib = lambda b: b / (1 << 20)
wd = statistics.median(w for w, _ in res["download"]); ws = statistics.median(w for w, _ in res["stream"])
dd = max(d for _, d in res["download"]); ds = max(d for _, d in res["stream"])
print(f"input {mib(size):.1f} MiB MPEG-TS, job h264-360p, {rounds} rounds each, medians of wall time submit -> completed")
print(f"download route: {wd:.3f} s {[round(w, 3) for w, _ in res['download']]}, work directory peak {mib(dd):.1f} MiB")
print(f"stream route:   {ws:.3f} s {[round(w, 3) for w, _ in res['stream']]}, work directory peak {mib(ds):.1f} MiB")
print(f"stream / download: wall {ws / wd:.2f}x, disk {ds / dd if dd else 0:.2f}x")
print(f"for scale: ffmpeg CLI, the same file to 640x360 locally, one thread: {ff:.3f} s")
PY
grep -h "input streamed\|input downloaded" "$work"/engine-*.log | tail -2 | cut -c1-220
