#!/usr/bin/env python3
"""gen_jobs.py: writes a deterministic JSON array of transcoding "job records" for the JSON
decoding benchmarks, and prints the checksum every harness must reproduce from it.

Usage: gen_jobs.py OUTPUT [TARGET_BYTES]   (TARGET_BYTES defaults to 1,000,000; the file
ends up just under it). The generator is seeded, so the same arguments give the same bytes.

Record fields, in this order: id, state, preset, priority (int 0..9), progress (double),
attempts, created_at, worker (string or null), input {url, bytes (up to 2^40), duration_s},
outputs (1..3 of {rendition, width, height, bitrate, codec}), tags (0..3 strings), note.
Notes carry escapes (\\" \\\\ \\n \\t \\u0001) and non-ASCII UTF-8; about one record in five
is written with every non-ASCII character as a \\uXXXX escape (surrogate pairs for emoji).
About one id in fifty has a non-ASCII suffix, so its unescaped length differs from its
escaped one.

Checksum (unsigned 64-bit, wrapping): for every record, priority + input.bytes + the width
and height of each output, plus the UTF-8 byte length of the unescaped id.
Prints to stdout: records=N checksum=C bytes=B
"""
import json
import random
import sys

SEED = 20261129
MASK = (1 << 64) - 1

STATES = ["queued", "running", "done", "failed"]
PRESETS = ["h264-480p", "h264-720p", "h264-1080p", "hevc-1080p", "hevc-2160p", "av1-1080p", "vp9-720p"]
RENDITIONS = [
    ("240p", 426, 240, 400_000), ("360p", 640, 360, 800_000), ("480p", 854, 480, 1_200_000),
    ("720p", 1280, 720, 2_500_000), ("1080p", 1920, 1080, 5_000_000), ("2160p", 3840, 2160, 16_000_000),
]
CODECS = ["h264", "hevc", "av1", "vp9"]
TAGS = ["urgent", "batch", "archive", "trailer", "live", "4k", "hdr", "retry", "qa", "promo"]
WORKERS = ["worker-a1", "worker-b7", "edge-03", "gpu-12"]
BUCKETS = ["media-in", "raw-uploads", "studio"]
ID_SUFFIXES = ["-réessai", "-再試行", "-ñ"]
NOTE_PARTS = [
    "ok", "re-encode after upload", "source has variable frame rate", "customer said \"asap\"",
    "path C:\\media\\in\\clip.mov", "line one\nline two", "tab\tseparated", "café", "日本の映像",
    "naïve deinterlace", "Ünïcödé title", "clip 🎬 final", "control \u0001 char", "price 5€",
    "Zürich office", "слайд-шоу", "", "see ticket #4411", "back\\slash and \"quote\"",
]


def record(rng, i):
    ident = f"job_{i:06d}"
    if rng.random() < 0.02:
        ident += rng.choice(ID_SUFFIXES)
    state = rng.choice(STATES)
    progress = {"queued": 0.0, "done": 1.0}.get(state, round(rng.random(), 4))
    outputs = []
    for _ in range(rng.randint(1, 3)):
        name, w, h, rate = rng.choice(RENDITIONS)
        outputs.append({"rendition": name, "width": w, "height": h,
                        "bitrate": rate + rng.randint(0, 99) * 1000, "codec": rng.choice(CODECS)})
    day, sec = rng.randint(1, 28), rng.randint(0, 86399)
    return {
        "id": ident,
        "state": state,
        "preset": rng.choice(PRESETS),
        "priority": rng.randint(0, 9),
        "progress": progress,
        "attempts": rng.randint(0, 3),
        "created_at": f"2026-11-{day:02d}T{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}Z",
        "worker": rng.choice(WORKERS) if state == "running" else None,
        "input": {
            "url": f"s3://{rng.choice(BUCKETS)}/in/{i}.mp4",
            "bytes": rng.randint(0, 1 << 40),
            "duration_s": round(rng.uniform(1.0, 7200.0), 3),
        },
        "outputs": outputs,
        "tags": rng.sample(TAGS, rng.randint(0, 3)),
        "note": " ".join(rng.choice(NOTE_PARTS) for _ in range(rng.randint(0, 3))),
    }


def checksum_of(rec):
    total = rec["priority"] + rec["input"]["bytes"] + len(rec["id"].encode("utf-8"))
    for out in rec["outputs"]:
        total += out["width"] + out["height"]
    return total


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: gen_jobs.py OUTPUT [TARGET_BYTES]")
    path = sys.argv[1]
    target = int(sys.argv[2]) if len(sys.argv) == 3 else 1_000_000
    rng = random.Random(SEED)
    pieces, size, checksum = [], len("[\n\n]\n"), 0
    while True:
        rec = record(rng, len(pieces))
        escaped = rng.random() < 0.2
        text = json.dumps(rec, ensure_ascii=escaped, separators=(",", ":"))
        extra = len(text.encode("utf-8")) + (2 if pieces else 0)  # ",\n" between records
        if pieces and size + extra > target:
            break
        pieces.append(text)
        size += extra
        checksum = (checksum + checksum_of(rec)) & MASK
    data = ("[\n" + ",\n".join(pieces) + "\n]\n").encode("utf-8")
    assert len(data) == size
    with open(path, "wb") as f:
        f.write(data)
    print(f"records={len(pieces)} checksum={checksum} bytes={len(data)}")


if __name__ == "__main__":
    main()
