#!/usr/bin/env bash
# The SQS source draining a backlog: CORPUS cut into OBJECTS gzip'd objects (each with the
# v2 header line, as AWS writes them) put into moto S3, which announces each on an SQS
# queue; then 1 and 2 `flowlog run` processes on that queue (SQS is the lease: no
# coordination) into a file sink writing ECS (to a file deleted after each run). Reports the wall time until the
# queue is empty and every process's CPU (user+sys) and peak RSS.
#
#   scripts/bench-sqs.sh CORPUS [OBJECTS] [WORKERS]
#
# Uses the release build in $CARGO_TARGET_DIR, and moto server at $FLOWLOG_MOTO_ENDPOINT or
# one started from the test venv (~/.cache/flowlog-venv, made by scripts/test.sh). moto is
# a single Python process: on a small machine it is the bottleneck, which is why CPU per
# record, not wall time, is flowlog's figure.
set -euo pipefail
corpus=$(realpath "$1")
objects=${2:-40}
workers=${3:-4}
# shellcheck source=scripts/bench-setup.sh
source "$(dirname "$0")/bench-setup.sh"
lines=$(wc -l < "$corpus")
header="version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status"
split -n "l/$objects" -d -a 4 "$corpus" "$work/part."
for part in "$work"/part.*; do
    { echo "$header"; cat "$part"; } | gzip -1 > "$part.log.gz"
    rm "$part"
done
echo "== $lines lines in $objects gzip'd objects ($(du -sh "$work" | cut -f1))"

for processes in 1 2; do
    name="bench-$processes-$$"
    setup=$("$py" "$here/sqs_fixture.py" setup "$endpoint" "$name")
    url=$("$py" -c 'import json,sys; print(json.loads(sys.argv[1])["queue_url"])' "$setup")
    bucket="$name-direct"
    "$py" -c '
import json, os, sys
work, bucket = sys.argv[1], sys.argv[2]
print(json.dumps([{"bucket": bucket, "key": "AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/12/01/" + f,
                   "file": os.path.join(work, f)} for f in sorted(os.listdir(work)) if f.endswith(".log.gz")]))
' "$work" "$bucket" | "$py" "$here/sqs_fixture.py" put "$endpoint" > /dev/null
    pids_run=()
    start=$(date +%s.%N)
    for i in $(seq 1 "$processes"); do
        cat > "$work/flowlog.$processes.$i.toml" <<TOML
data_dir = "$work/data.$processes.$i"
[api]
[sources.queue]
type = "sqs"
queue_url = "$url"
endpoint_url = "$endpoint"
region = "us-east-1"
s3_force_path_style = true
wait_time_secs = 1
workers = $workers
[sinks.out]
type = "file"
path = "$work/out.$processes.$i.ndjson"
format = "ecs"
TOML
        AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true \
            /usr/bin/time -o "$work/time.$processes.$i" -f "%U %S %M" \
            "$bin" run --config "$work/flowlog.$processes.$i.toml" 2> "$work/log.$processes.$i" &
        pids_run+=($!)
    done
    pids+=("${pids_run[@]}")
    # Drained: nothing visible and nothing in flight (every message deleted).
    until [[ $("$py" "$here/sqs_fixture.py" depth "$endpoint" "$url") == '{"visible": 0, "in_flight": 0}' ]]; do
        sleep 0.2
    done
    end=$(date +%s.%N)
    # SIGTERM to flowlog itself (its parent, time, would die of it and leave flowlog be).
    for p in "${pids_run[@]}"; do pkill -TERM -P "$p"; done
    for p in "${pids_run[@]}"; do wait "$p" || true; done
    written=$(cat "$work"/out.*.ndjson | wc -l)
    rm -f "$work"/out.*.ndjson
    wall=$(awk -v a="$start" -v b="$end" "BEGIN {printf \"%.1f\", b - a}")
    echo "== $processes process(es), $workers workers each: queue drained in ${wall} s wall, $written records written"
    for i in $(seq 1 "$processes"); do
        # (a first line says how the process ended when that was a signal or an error)
        read -r user sys rss < <(tail -1 "$work/time.$processes.$i")
        echo "   process $i: ${user}+${sys} s CPU, $((rss / 1024)) MB peak RSS"
    done
    tail -q -n 1 "$work"/time."$processes".* | awk -v lines="$lines" '{cpu += $1 + $2} END {printf "   all: %.2f s CPU = %.0fk records/s per core\n", cpu, lines / cpu / 1000}'
done
