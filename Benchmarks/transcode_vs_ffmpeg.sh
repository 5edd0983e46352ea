#!/usr/bin/env bash
# transcode_vs_ffmpeg.sh: `spool transcode` (libav in-process) vs the ffmpeg command line
# with the same settings, measured in the same run, rounds alternating spool ffmpeg.
#  A. 1080p30 → 720p H.264 (x264 veryfast, CRF 23, High) + AAC 128 kb/s into MP4, with one
#     codec thread and with automatic threads: frames per wall-clock second and peak RSS.
#  B. A 3-rendition ladder (1080p/720p/360p, x264 veryfast CRF 23 capped at 6000/3000/800
#     kb/s, fixed 4 s GOP) from one decode: `spool transcode --preset hls-ladder-h264` (HLS
#     fMP4 output) vs one ffmpeg process with `split=3` and three MP4 outputs.
# The source clip is synthesized by `spool synthesize` (libav), never downloaded.
# Usage: ./transcode_vs_ffmpeg.sh [--smoke]   (--smoke: a 2 s clip, 1 round)
# Environment: SPOOL (default ../.build/release/spool), FFMPEG (default ffmpeg).
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)
work="$here/.work/transcode"
rm -rf "$work"; mkdir -p "$work"
smoke=0; [ "${1:-}" = "--smoke" ] && smoke=1
spool="${SPOOL:-$here/../.build/release/spool}"
ffmpeg="${FFMPEG:-ffmpeg}"
if [ $smoke = 1 ]; then secs=2; rounds=1; else secs=10; rounds=3; fi
fps=30
frames=$((secs * fps))
for tool in "$ffmpeg" /usr/bin/time taskset python3; do command -v "$tool" >/dev/null || { echo "missing tool: $tool"; exit 1; }; done
[ -x "$spool" ] || { echo "no spool binary at $spool"; exit 1; }

src="$work/src-1080p30.mp4"
"$spool" synthesize "$src" --seconds $secs --width 1920 --height 1080 --fps $fps >/dev/null
echo "source: $src ($secs s, 1920x1080 @ $fps fps, synthesized by spool synthesize)"

results="$work/results.txt"; : > "$results"
# run NAME CASE -- command...: records wall seconds and peak RSS (KiB) from GNU time.
run() {
    local name=$1 case=$2; shift 3
    local t="$work/time-$name-$case.txt"
    /usr/bin/time -f "%e %M" -o "$t" "$@" >/dev/null 2>"$work/err-$name-$case.txt" || {
        echo "$name $case failed:"; tail -5 "$work/err-$name-$case.txt"; exit 1; }
    read -r wall rss < "$t"
    echo "$name $case $wall $rss" | tee -a "$results"
}

single_spool() {  # threads
    rm -f "$work/out-spool.mp4"
    run spool "single-t$1" -- "$spool" transcode "$src" "$work/out-spool.mp4" --preset custom --codec h264 \
        --width 1280 --height 720 --crf 23 --speed veryfast --profile high --gop 2 --threads "$1"
}
single_ffmpeg() {  # threads (0 = ffmpeg's default)
    local t=(); [ "$1" != 0 ] && t=(-threads "$1" -filter_threads "$1")
    run ffmpeg "single-t$1" -- "$ffmpeg" -hide_banner -loglevel error -y "${t[@]}" -i "$src" \
        -vf scale=1280:720 -c:v libx264 -preset veryfast -crf 23 -profile:v high -g $((2 * fps)) "${t[@]}" \
        -c:a aac -b:a 128k -movflags +faststart "$work/out-ffmpeg.mp4"
}
ladder_spool() {
    rm -rf "$work/ladder-spool"
    run spool ladder -- "$spool" transcode "$src" "$work/ladder-spool" --preset hls-ladder-h264
}
ladder_ffmpeg() {
    local x=(-c:v libx264 -preset veryfast -crf 23 -g $((4 * fps)) -keyint_min $((4 * fps)) -sc_threshold 0)
    run ffmpeg ladder -- "$ffmpeg" -hide_banner -loglevel error -y -i "$src" \
        -filter_complex "[0:v]split=3[a][b][c];[a]scale=1920:1080[v1];[b]scale=1280:720[v2];[c]scale=640:360[v3]" \
        -map "[v1]" -map 0:a "${x[@]}" -profile:v high -maxrate 6000k -bufsize 12000k -c:a aac -b:a 128k "$work/l1.mp4" \
        -map "[v2]" -map 0:a "${x[@]}" -profile:v high -maxrate 3000k -bufsize 6000k -c:a aac -b:a 128k "$work/l2.mp4" \
        -map "[v3]" -map 0:a "${x[@]}" -profile:v main -maxrate 800k -bufsize 1600k -c:a aac -b:a 128k "$work/l3.mp4"
}

echo "commands: see single_spool/single_ffmpeg/ladder_spool/ladder_ffmpeg in $0"
# Spool first in odd rounds, ffmpeg first in even ones: the VM's speed drifts within a
# run, and the same tool always going second would be favoured by a rising drift.
for r in $(seq 1 $rounds); do
    if [ $((r % 2)) = 1 ]; then
        for t in 1 0; do single_spool $t; single_ffmpeg $t; done
        ladder_spool; ladder_ffmpeg
    else
        for t in 1 0; do single_ffmpeg $t; single_spool $t; done
        ladder_ffmpeg; ladder_spool
    fi
done
# Both outputs really are what was asked: 720p H.264 + AAC, about the same frame count.
probe() { ffprobe -v error -select_streams v:0 -count_packets -show_entries stream=codec_name,width,height,nb_read_packets -of csv=p=0 "$1"; }
echo "spool output:  $(probe "$work/out-spool.mp4")"
echo "ffmpeg output: $(probe "$work/out-ffmpeg.mp4")"

python3 - "$results" "$frames" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
frames = int(sys.argv[2])
def med(name, case, col):
    return statistics.median(float(r[col]) for r in rows if r[0] == name and r[1] == case)
for case, label in [("single-t1", "1080p30 -> 720p, one codec thread"), ("single-t0", "1080p30 -> 720p, automatic threads"), ("ladder", "3-rendition ladder")]:
    sw, fw = med("spool", case, 2), med("ffmpeg", case, 2)
    sr, fr = med("spool", case, 3), med("ffmpeg", case, 3)
    # The speed ratio of each round's pair, then their median and range (a ratio of the
    # medians would pair one round's spool with another round's ffmpeg).
    pairs = [float(f[2]) / float(s[2]) for s, f in zip([r for r in rows if r[0] == "spool" and r[1] == case],
                                                        [r for r in rows if r[0] == "ffmpeg" and r[1] == case])]
    print(f"{label}: spool {frames / sw:6.1f} fps, peak RSS {sr / 1024:6.1f} MiB | ffmpeg {frames / fw:6.1f} fps, peak RSS {fr / 1024:6.1f} MiB"
          f" | spool/ffmpeg: speed {statistics.median(pairs):.2f}x (rounds {min(pairs):.2f}-{max(pairs):.2f}), RSS {sr / fr:.2f}x")
PY
