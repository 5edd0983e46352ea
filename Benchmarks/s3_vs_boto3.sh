#!/usr/bin/env bash
# s3_vs_boto3.sh: S3 transfers through Spool's S3Storage (S3Bench) vs boto3's managed
# transfer (upload_fileobj / download_fileobj, the same part size and concurrency), both
# against one moto S3 server started here on loopback (moto from Tests/External's venv),
# rounds alternating. Both sides hold the object in memory. moto is Python: it bounds both
# sides, so the ratio says whether Spool's client costs more than boto3's, not what a real
# store would sustain; MiB per CPU-second of each client process is the client's own cost.
# Prints per round, the medians and the ratios.
# Usage: S3BENCH=path ./s3_vs_boto3.sh [--smoke]
set -euo pipefail
cd "$(dirname "$0")"
bench="${S3BENCH:?set S3BENCH to the S3Bench binary}"
smoke=0; [ "${1:-}" = "--smoke" ] && smoke=1
if [ $smoke = 1 ]; then mib=16; rounds=1; else mib=256; rounds=3; fi
py=$(../Tests/External/venv.sh)
port=$("$py" ../Tests/External/freeport.py)
work="$(pwd)/.work/s3"; rm -rf "$work"; mkdir -p "$work"
"$py" -c "
import logging, sys, time
logging.getLogger('werkzeug').setLevel(logging.ERROR)
from moto.server import ThreadedMotoServer
s = ThreadedMotoServer(ip_address='127.0.0.1', port=$port, verbose=False); s.start()
import boto3
boto3.client('s3', endpoint_url='http://127.0.0.1:$port', region_name='us-east-1', aws_access_key_id='bench', aws_secret_access_key='bench').create_bucket(Bucket='bench')
open('$work/ready', 'w').close()
while True: time.sleep(3600)
" >"$work/moto.log" 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null || true; wait 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do [ -f "$work/ready" ] && break; sleep 0.1; done
[ -f "$work/ready" ] || { echo "moto did not start:"; cat "$work/moto.log"; exit 1; }
for r in $(seq 1 $rounds); do
  "$bench" --endpoint "http://127.0.0.1:$port" --bucket bench --key-id bench --secret bench --mib $mib --part-mib 8 --parts-in-flight 2 \
    | sed "s/^/spool $r /" >> "$work/results"
  "$py" - "$port" "$mib" "$r" >> "$work/results" <<'PY'
import io, sys, time
import boto3
from boto3.s3.transfer import TransferConfig
port, mib, r = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench")
cfg = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20, max_concurrency=2)
x = 0x9E3779B97F4A7C15
block = bytearray(1 << 20)
for i in range(len(block)):
    x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
    block[i] = (x >> 33) & 0xFF
data = bytes(block) * mib
import resource
def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime
t, c = time.monotonic(), cpu(); s3.upload_fileobj(io.BytesIO(data), "bench", "boto", Config=cfg); up, up_cpu = time.monotonic() - t, cpu() - c
out = io.BytesIO()
t, c = time.monotonic(), cpu()
s3.download_fileobj("bench", "boto", out, Config=cfg)
assert out.getvalue() == data, "boto3 read back other bytes"
down, down_cpu = time.monotonic() - t, cpu() - c
s3.delete_object(Bucket="bench", Key="boto")
print(f"boto3 {r} upload_mib_s {mib / up} download_mib_s {mib / down} upload_mib_per_cpu_s {mib / up_cpu} download_mib_per_cpu_s {mib / down_cpu}")
PY
done
python3 - "$work/results" "$mib" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
def col(who, what):
    return [float(r[r.index(what) + 1]) for r in rows if r[0] == who]
for what, unit in (("upload_mib_s", "MiB/s"), ("download_mib_s", "MiB/s"),
                   ("upload_mib_per_cpu_s", "MiB per client CPU-s"), ("download_mib_per_cpu_s", "MiB per client CPU-s")):
    s, b = col("spool", what), col("boto3", what)
    ms, mb = statistics.median(s), statistics.median(b)
    print(f"{what.split('_')[0]:>8} {sys.argv[2]} MiB, {unit}: spool {ms:7.1f} (rounds {', '.join(f'{v:.1f}' for v in s)})  "
          f"boto3 {mb:7.1f} (rounds {', '.join(f'{v:.1f}' for v in b)})  ratio {ms / mb:.2f}x")
PY
