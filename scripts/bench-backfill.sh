#!/usr/bin/env bash
# `flowlog backfill` throughput: CORPUS (v2 lines, as ../shared/bench/gen_flowlogs.py writes
# them) cut into OBJECTS gzip'd objects with the header line, laid out as AWS writes them
# (AWSLogs/<account>/vpcflowlogs/<region>/YYYY/MM/DD/), then backfilled into a file sink
# writing ECS (deleted after each run):
#   1. from a local copy of the tree;
#   2. the same with a --where every record passes (what evaluating a predicate costs), and
#      with a selective one ("dstport = 22 AND action = 'REJECT'");
#   3. from moto's S3 (the same objects, put with boto3).
# Two rounds, one after the other.
# Reports each run's wall time and flowlog's CPU (user+sys), and records per second per core
# of flowlog's CPU (records read / CPU seconds).
#
#   scripts/bench-backfill.sh CORPUS [OBJECTS] [PARALLEL]
#
# Uses the release build in $CARGO_TARGET_DIR, and moto server at $FLOWLOG_MOTO_ENDPOINT or
# one started from the test venv (~/.cache/flowlog-venv, made by scripts/test.sh). moto is
# one Python process serving every GET: wall time on it measures moto; CPU is flowlog's.
set -euo pipefail
corpus=$(realpath "$1")
objects=${2:-40}
parallel=${3:-4}
# shellcheck source=scripts/bench-setup.sh
source "$(dirname "$0")/bench-setup.sh"

# The day the corpus's records start on, from its first line's `start`.
first_start=$(head -1 "$corpus" | awk '{print $11}')
day=$(date -u -d "@$first_start" +%Y/%m/%d)
since=$(date -u -d "@$first_start" +%Y-%m-%d)
until=$(date -u -d "@$((first_start + 3 * 86400))" +%Y-%m-%d)
folder="$work/tree/AWSLogs/123456789012/vpcflowlogs/us-east-1/$day"
mkdir -p "$folder"
lines=$(wc -l < "$corpus")
header="version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status"
split -n "l/$objects" -d -a 4 "$corpus" "$work/part."
i=0
for part in "$work"/part.*; do
    stamp=$(date -u -d "@$((first_start + i * 300))" +%Y%m%dT%H%MZ)
    name=$(printf '123456789012_vpcflowlogs_us-east-1_fl-0bench_%s_%08x.log.gz' "$stamp" "$i")
    { echo "$header"; cat "$part"; } | gzip -1 > "$folder/$name"
    rm "$part"
    i=$((i + 1))
done
echo "== $lines lines in $objects gzip'd objects ($(du -sh "$work/tree" | cut -f1)), --parallel $parallel, $(nproc) cores"

bucket="bench-backfill-$$"
"$py" - "$endpoint" "$bucket" "$work/tree" <<'EOF'
import boto3, os, sys
endpoint, bucket, root = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
s3.create_bucket(Bucket=bucket)
for top, _, files in os.walk(root):
    for f in files:
        path = os.path.join(top, f)
        s3.upload_file(path, bucket, os.path.relpath(path, root))
EOF

cat > "$work/flowlog.toml" <<EOF
data_dir = "$work/data"
[sinks.out]
type = "file"
path = "$work/out.ndjson"
format = "ecs"
sync = false
EOF

run() {
    local label=$1; shift
    rm -rf "$work/data" "$work/out.ndjson"
    local start end
    start=$(date +%s.%N)
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true \
        /usr/bin/time -f "%U %S %M" -o "$work/time" \
        "$bin" backfill "$@" --since "$since" --until "$until" --config "$work/flowlog.toml" \
        --parallel "$parallel" --quiet --summary-json "$work/summary.json"
    end=$(date +%s.%N)
    read -r user sys rss < "$work/time"
    local records delivered
    records=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["records_read"])' "$work/summary.json")
    delivered=$(wc -l < "$work/out.ndjson")
    awk -v l="$label" -v w="$(echo "$end - $start" | bc)" -v u="$user" -v s="$sys" -v r="$records" \
        -v d="$delivered" -v m="$rss" 'BEGIN {
        cpu = u + s
        printf "%-22s wall %6.2f s  cpu %6.2f s (user %.2f sys %.2f)  %d records read, %d delivered  %.0f records/s per core  peak RSS %d MiB\n",
            l, w, cpu, u, s, r, d, r / cpu, m / 1024 }'
}

for round in 1 2; do
    echo "-- round $round"
    run "local" "$work/tree/"
    # Keeps every record: what evaluating the predicate costs.
    run "local --where all" "$work/tree/" --where "version = 2 AND start >= '2000-01-01'"
    run "local --where sshrej" "$work/tree/" --where "dstport = 22 AND action = 'REJECT'"
    run "moto S3" "s3://$bucket/" --endpoint-url "$endpoint" --aws-region us-east-1 --s3-force-path-style
done
