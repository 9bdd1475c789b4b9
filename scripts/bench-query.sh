#!/usr/bin/env bash
# `flowlog query` beside DuckDB (PyPI `duckdb`, in the test venv) on the same records: LINES
# v2 lines from ../shared/bench/gen_flowlogs.py, as plain text, as gzip text (with the header
# line, as S3 objects are) and as Parquet the way AWS writes it (typed columns). Three
# queries each: a filter and a count, a group-by with sums, a top-N.
#
# CPU seconds (user+sys, every thread) are what is compared: flowlog's whole process
# (start-up included) against DuckDB's query alone (after Python and DuckDB are loaded).
# Each figure is the lower of two runs, one after the other. Both print their row counts,
# which must agree.
#
#   scripts/bench-query.sh [LINES]      (default 1000000)
#
# Uses the release build in $CARGO_TARGET_DIR, or $FLOWLOG_BIN.
set -euo pipefail
lines=${1:-1000000}
here=$(cd "$(dirname "$0")" && pwd)
target=${CARGO_TARGET_DIR:-$here/../target}
if [[ -z "${FLOWLOG_BIN:-}" ]]; then
    cargo build --release -q -p flowlog
fi
bin=${FLOWLOG_BIN:-$target/release/flowlog}
py=${FLOWLOG_VENV:-$HOME/.cache/flowlog-venv}/bin/python
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 "$here/../../shared/bench/gen_flowlogs.py" "$lines" --seed 11 > "$work/flows.log"
{ echo "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status"
  cat "$work/flows.log"; } | gzip -6 > "$work/flows.log.gz"
"$py" "$here/duckdb_peer.py" parquet "$work/flows.log" "$work/flows.parquet"

queries=(
    "SELECT count(*) AS n FROM flows WHERE action = 'REJECT' AND dstport IN (22, 3389)"
    "SELECT interface_id, action, count(*) AS flows, sum(packets) AS packets, sum(bytes) AS bytes FROM flows GROUP BY interface_id, action"
    "SELECT srcaddr, dstaddr, sum(bytes) AS bytes FROM flows WHERE log_status = 'OK' GROUP BY srcaddr, dstaddr ORDER BY bytes DESC LIMIT 20"
)
names=("filter + count" "group-by, sums" "top-N")

# The lower of two runs of flowlog: "cpu rows".
flowlog_cpu() {
    local best="" rows
    for _ in 1 2; do
        /usr/bin/time -f "%U %S" -o "$work/time" "$bin" query "$1" "$2" --format csv > "$work/out.csv"
        rows=$(( $(wc -l < "$work/out.csv") - 1 ))
        cpu=$(awk '{print $1 + $2}' "$work/time")
        if [[ -z "$best" ]] || awk "BEGIN{exit !($cpu < $best)}"; then best=$cpu; fi
    done
    echo "$best $rows"
}

duckdb_cpu() {
    local best="" rows
    for _ in 1 2; do
        read -r cpu rows < <("$py" "$here/duckdb_peer.py" cpu "$2" "$1" |
            "$py" -c 'import json, sys; d = json.load(sys.stdin); print(d["cpu"], d["rows"])')
        if [[ -z "$best" ]] || awk "BEGIN{exit !($cpu < $best)}"; then best=$cpu; fi
    done
    echo "$best $rows"
}

printf '%s lines; %s, %s, %s bytes (text, gzip, Parquet)\n' "$lines" \
    "$(stat -c %s "$work/flows.log")" "$(stat -c %s "$work/flows.log.gz")" \
    "$(stat -c %s "$work/flows.parquet")"
echo "| input | query | flowlog CPU s | DuckDB CPU s | DuckDB / flowlog | rows |"
echo "|---|---|---|---|---|---|"
for input in flows.log flows.log.gz flows.parquet; do
    for i in 0 1 2; do
        read -r f_cpu f_rows < <(flowlog_cpu "${queries[$i]}" "$work/$input")
        read -r d_cpu d_rows < <(duckdb_cpu "${queries[$i]}" "$work/$input")
        ratio=$(awk "BEGIN{printf \"%.2f\", $d_cpu / $f_cpu}")
        rows="$f_rows"
        [[ "$f_rows" == "$d_rows" ]] || rows="$f_rows (DuckDB: $d_rows)"
        echo "| $input | ${names[$i]} | $f_cpu | $d_cpu | ${ratio}x | $rows |"
    done
done
