#!/usr/bin/env bash
# The Kinesis source draining a backlog: CORPUS put into a SHARDS-shard stream in moto as a
# CloudWatch Logs subscription puts it (gzip'd JSON, LINES flow-log lines a record), then
# one `flowlog run --once` into a file sink writing ECS (to a file deleted after the run),
# as scripts/bench-sqs.sh does for the SQS source. Reports the records written, the wall
# time, flowlog's CPU (user+sys) and peak RSS.
#
#   scripts/bench-kinesis.sh CORPUS [SHARDS] [LINES]
#
# Uses the release build in $CARGO_TARGET_DIR, and moto server at $FLOWLOG_MOTO_ENDPOINT or
# one started from the test venv. moto serves GetRecords from one Python process: wall
# time says more about moto than about flowlog, which is why CPU per record is the figure.
set -euo pipefail
corpus=$(realpath "$1")
shards=${2:-4}
per_record=${3:-200}
# shellcheck source=scripts/bench-setup.sh
source "$(dirname "$0")/bench-setup.sh"
name="bench-kinesis-$$-$RANDOM"
put=$("$py" "$here/kinesis_fixture.py" put-file "$endpoint" "$name" "$shards" "$corpus" "$per_record")
echo "== $put put on $shards shards"
lines=$("$py" -c 'import json,sys; print(json.loads(sys.argv[1])["lines"])' "$put")
cat > "$work/flowlog.toml" <<TOML
data_dir = "$work/data"
[api]
[sources.stream]
type = "kinesis"
stream_name = "$name"
application_name = "$name"
region = "us-east-1"
endpoint_url = "$endpoint"
[sinks.out]
type = "file"
path = "$work/out.ndjson"
format = "ecs"
TOML
start=$(date +%s.%N)
AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true \
    /usr/bin/time -o "$work/time" -f "%U %S %M" \
    "$bin" run --once --config "$work/flowlog.toml" 2> "$work/log"
end=$(date +%s.%N)
written=$(wc -l < "$work/out.ndjson")
wall=$(awk -v a="$start" -v b="$end" "BEGIN {printf \"%.1f\", b - a}")
read -r user sys rss < <(tail -1 "$work/time")
echo "== 1 process: $written of $lines records written in ${wall} s wall"
awk -v u="$user" -v s="$sys" -v lines="$lines" -v rss="$rss" 'BEGIN {
    printf "   %s+%s s CPU = %.0fk records/s per core, %d MB peak RSS\n", u, s, lines / (u + s) / 1000, rss / 1024 }'
