#!/bin/bash
# `make cluster`: `spool cluster up` with the defaults (PostgreSQL, Redis, 2 dispatchers,
# the nginx gateway on 127.0.0.1:8443, 2 engines) in .build/cluster, or the one already
# running there; then one job through the gateway with curl over TLS with the generated
# CA: a synthesized 720p clip is uploaded, an HLS ladder submitted with an Idempotency-Key
# and followed until it completes. The cluster keeps running afterwards:
#   spool cluster status --data-dir .build/cluster      spool cluster down --data-dir .build/cluster
#   .ci/cluster.sh SPOOL_BIN
set -u
spool="$1"
dir=.build/cluster
mkdir -p "$dir"
if ! "$spool" cluster status --data-dir "$dir" >/dev/null 2>&1; then
  "$spool" cluster up --data-dir "$dir" 2>/dev/null || { echo "cluster: spool cluster up failed (logs in $dir/logs)"; exit 1; }
fi
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d[sys.argv[2]])' "$1" "$2"; }
gw=$(field "$dir/cluster.json" gateway_url)
ca=$(field "$dir/cluster.json" ca_certificate)
key=$(cat "$(field "$dir/cluster.json" admin_key_file)")
api() { curl -sS --fail-with-body --cacert "$ca" -H "Authorization: Bearer $key" "$@"; }
get() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval("d" + sys.argv[1]))' "$1"; }
clip="$dir/clip.mp4"
"$spool" synthesize "$clip" --width 1280 --height 720 --seconds 4 --fps 30 >/dev/null || { echo "cluster: synthesize failed"; exit 1; }
file=$(api --data-binary @"$clip" -H "Content-Type: video/mp4" "$gw/api/v1/files") || { echo "cluster: upload failed: $file"; exit 1; }
fid=$(echo "$file" | get '["id"]')
echo "cluster: uploaded $fid through $gw"
job=$(api -H "Idempotency-Key: make-cluster-$(date +%s%N)" -H "Content-Type: application/json" \
  -d "{\"input\":{\"file_id\":\"$fid\"},\"preset\":\"hls-ladder-h264\"}" "$gw/api/v1/jobs") || { echo "cluster: submit failed: $job"; exit 1; }
jid=$(echo "$job" | get '["id"]')
echo "cluster: submitted $jid (hls-ladder-h264)"
state=""
for _ in $(seq 1 600); do
  now=$(api "$gw/api/v1/jobs/$jid") || { echo "cluster: $now"; exit 1; }
  state=$(echo "$now" | get '["state"]')
  [ "$state" = completed ] || [ "$state" = failed ] || [ "$state" = cancelled ] && break
  sleep 0.5
done
[ "$state" = completed ] || { echo "cluster: job $jid ended $state: $now"; exit 1; }
echo "cluster: $jid completed with $(echo "$now" | get '["result"]["outputs"].__len__()') output files"
echo "cluster: ok; still running: spool cluster status|down --data-dir $dir"
