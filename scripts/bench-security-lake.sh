#!/usr/bin/env bash
# What the Security Lake writer costs: CPU seconds (user + sys, the lower of two runs) for
# LINES v2 records from ../shared/bench/gen_flowlogs.py written as OCSF NDJSON (the JSON
# encoder alone), as one OCSF Parquet file (`transform --output-format parquet`), and by
# `flowlog run --once` into the `security_lake` sink on a directory (spool, fsync per batch,
# partitions, sorted zstd objects); records per CPU second for each.
#
#   FLOWLOG_BIN=target/release/flowlog scripts/bench-security-lake.sh [LINES]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${FLOWLOG_BIN:-$here/../target/release/flowlog}
lines=${1:-1000000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 "$here/../../shared/bench/gen_flowlogs.py" "$lines" --seed 11 > "$work/flows.log"

# The lower of two runs of "$@": CPU seconds.
cpu() {
    local best=""
    for _ in 1 2; do
        rm -rf "$work/out" "$work/data" "$work/events.parquet"
        /usr/bin/time -f "%U %S" -o "$work/time" "$@" > /dev/null 2> "$work/stderr" ||
            { cat "$work/stderr" >&2; exit 1; }
        local t
        t=$(awk '{print $1 + $2}' "$work/time")
        if [[ -z "$best" ]] || awk "BEGIN{exit !($t < $best)}"; then best=$t; fi
    done
    echo "$best"
}

cat > "$work/flowlog.toml" <<EOF
data_dir = "$work/data"
[sources.flows]
type = "file"
paths = ["$work/flows.log"]
[sinks.lake]
type = "security_lake"
directory = "$work/out"
source_name = "vpcflow"
region = "us-east-1"
EOF

echo "| job | CPU s | records per CPU s |"
echo "|---|---|---|"
for job in ndjson parquet sink; do
    case $job in
        ndjson) t=$(cpu "$bin" transform --quiet --to ocsf "$work/flows.log") ;;
        parquet) t=$(cpu "$bin" transform --quiet --to ocsf --output-format parquet \
            --output "$work/events.parquet" "$work/flows.log") ;;
        sink) t=$(cpu "$bin" run --once --config "$work/flowlog.toml") ;;
    esac
    echo "| $job | $t | $(awk "BEGIN{printf \"%.0f\", $lines / $t}") |"
done
objects=$(find "$work/out" -name '*.parquet' | wc -l)
bytes=$(du -sb "$work/out" | cut -f1)
echo "sink: $objects objects, $bytes bytes for $lines records"
