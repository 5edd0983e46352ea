#!/usr/bin/env python3
# plugins_e2e.py: the HandBrake plugin end to end. `spool up --plugin-dir .build/plugins`
# (the plugin built by `make plugins`) on a free loopback port; a synthesized clip submitted
# with `spool submit --require handbrake --wait`: the engine advertises the plugin's
# capabilities, the job runs in the sandboxed worker through HandBrakeCLI, completes, and
# its output is an H.264 + AAC MP4 by ffprobe. A job requiring a HandBrake preset the
# engine does not have waits (no engine can take it) until it is cancelled.
# Bounded: every wait has a deadline.
# Usage: plugins_e2e.py [--binary PATH] [--plugins DIR]
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import requests

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(os.path.dirname(here))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(repo, ".build/debug/spool"))
    ap.add_argument("--plugins", default=os.path.join(repo, ".build/plugins"))
    args = ap.parse_args()
    if not os.path.exists(os.path.join(args.plugins, "handbrake.so")):
        sys.exit(f"plugins_e2e: {args.plugins}/handbrake.so is missing (make plugins)")
    work = tempfile.mkdtemp(prefix="spool-plugins-e2e-")
    data = os.path.join(work, "data")
    log = open(os.path.join(work, "up.log"), "wb")
    up = subprocess.Popen([args.binary, "up", "--listen", "127.0.0.1:0", "--data-dir", data, "--engines", "1",
                           "--plugin-dir", args.plugins], stdout=log, stderr=subprocess.STDOUT)
    ok = False
    try:
        deadline = time.monotonic() + 60
        url = None
        while time.monotonic() < deadline:
            try:
                url = open(os.path.join(data, "server.url")).read().strip()
                if requests.get(url + "/api/v1/health", timeout=2).ok:
                    break
            except (OSError, requests.RequestException):
                pass
            time.sleep(0.1)
        assert url, "spool up did not start"
        key = open(os.path.join(data, "admin.key")).read().strip()
        auth = {"Authorization": "Bearer " + key}
        # The engine registered with the plugin's capabilities.
        caps = []
        while time.monotonic() < deadline and "handbrake" not in caps:
            engines = requests.get(url + "/api/v1/engines", headers=auth, timeout=5).json()["data"]
            caps = [c for e in engines for c in (e.get("capabilities") or {}).get("capabilities", [])]
            time.sleep(0.2)
        assert "handbrake" in caps, f"the engine does not advertise handbrake: {caps}"
        assert any(c.startswith("handbrake-preset:") for c in caps), caps

        clip = os.path.join(work, "clip.mp4")
        subprocess.run([args.binary, "synthesize", clip, "--seconds", "2", "--width", "320", "--height", "180"],
                       check=True, stdout=subprocess.DEVNULL)
        out = os.path.join(work, "out")
        r = subprocess.run([args.binary, "submit", clip, "--preset", "h264-360p", "--require", "handbrake", "--wait",
                            "-o", out, "--data-dir", data], capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, f"spool submit failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
        mp4 = os.path.join(out, "h264-360p.mp4")
        probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", mp4],
                               capture_output=True, text=True, check=True).stdout.split()
        assert probe[:2] == ["h264", "aac"], f"not H.264 + AAC: {probe}"
        # Made by HandBrake, not by the built-in libav transcoder.
        encoder = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags=encoder", "-of", "csv=p=0", mp4],
                                 capture_output=True, text=True, check=True).stdout.strip()
        assert "HandBrake" in encoder, f"the output's encoder tag is {encoder!r}, not HandBrake's"

        # A HandBrake preset no engine has: the job waits, then is cancelled.
        up_r = requests.post(url + "/api/v1/files", headers={**auth, "Content-Type": "application/octet-stream"},
                             data=open(clip, "rb").read(), timeout=30)
        assert up_r.status_code == 201, f"upload: {up_r.status_code} {up_r.text[:300]}"
        r = requests.post(url + "/api/v1/jobs", headers={**auth, "Idempotency-Key": "plugins-e2e-missing-preset"}, timeout=10,
                          json={"input": {"file_id": up_r.json()["id"]}, "preset": "h264-360p",
                                "required_capabilities": ["handbrake", "handbrake-preset:No_Such_Preset"]})
        assert r.status_code == 201, f"submit: {r.status_code} {r.text[:300]}"
        job = r.json()
        time.sleep(3)
        state = requests.get(url + f"/api/v1/jobs/{job['id']}", headers=auth, timeout=5).json()["state"]
        assert state == "pending", f"a job needing a preset nobody has went {state}"
        requests.post(url + f"/api/v1/jobs/{job['id']}/cancel", headers=auth, timeout=5)
        print(f"plugins_e2e: the HandBrake plugin transcoded {os.path.basename(clip)} through spool up ({probe}); "
              f"a job needing a missing HandBrake preset waited")
        ok = True
    finally:
        up.terminate()
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
        log.close()
        if not ok:
            sys.stdout.write(open(os.path.join(work, "up.log"), errors="replace").read()[-4000:])
        shutil.rmtree(work, ignore_errors=True)
    print("plugins_e2e: ok")


if __name__ == "__main__":
    main()
