#!/usr/bin/env bash
# What [detect] and [transform.reduce] cost in `flowlog run` into the HEC receiver (ECS,
# gzip), and what reduction saves: the same corpus run plain, with the detection rules,
# with the reduction, and with both; flowlog's own CPU (user+sys) for each, and the
# events and bytes the receiver took.
#
#   scripts/bench-detect.sh CORPUS [REDUCE]
#
# CORPUS: a flow-log file (../shared/bench/gen_flowlogs.py, or scripts/long_lived_flows.py);
# REDUCE: the [transform.reduce] table's body (default: aggregate = true, window_secs = 600).
# Uses the release build in $CARGO_TARGET_DIR, or $FLOWLOG_BIN (a flowlog built already,
# with hec-receiver beside it).
set -euo pipefail
corpus=$(realpath "$1")
reduce=${2:-$'aggregate = true\nwindow_secs = 600'}
target=${CARGO_TARGET_DIR:-$(dirname "$0")/../target}
if [[ -z "${FLOWLOG_BIN:-}" ]]; then
    cargo build --release -q -p flowlog -p flowlog-test-receivers --bins
fi
bin=${FLOWLOG_BIN:-$target/release/flowlog}
receiver_bin=$(dirname "$bin")/hec-receiver
work=$(mktemp -d)
trap 'rm -rf "$work"; [[ -n "${rpid:-}" ]] && kill "$rpid" 2>/dev/null || true' EXIT
echo "== $(wc -l < "$corpus") lines of $corpus"

run_once() { # $1 = label, $2 = configuration after the source
    mkfifo "$work/ctl.$1"
    "$receiver_bin" < "$work/ctl.$1" > "$work/url.$1" 2> "$work/receiver.$1" &
    rpid=$!
    exec 9> "$work/ctl.$1"
    while [[ ! -s "$work/url.$1" ]]; do sleep 0.1; done
    cat > "$work/flowlog.$1.toml" <<TOML
data_dir = "$work/data.$1"
[api]
[sources.corpus]
type = "file"
paths = ["$corpus"]
$2
[sinks.hec]
type = "splunk_hec"
endpoint = "$(cat "$work/url.$1")"
token = "test-token"
format = "ecs"
TOML
    /usr/bin/time -f "run ($1): %U+%S s CPU, %e s wall, %M KB peak RSS" \
        "$bin" run --once --log-level warn --config "$work/flowlog.$1.toml"
    exec 9>&-
    wait "$rpid" || true
    echo "receiver ($1): $(tail -1 "$work/receiver.$1")"
}

alerts=$'[sinks.alerts]\ntype = "file"\n'"path = \"$work/alerts.ndjson\""
run_once plain ""
run_once detect $'[detect]\nfindings = ["alerts"]\n'"$alerts"
echo "findings: $(wc -l < "$work/alerts.ndjson")"
rm -f "$work/alerts.ndjson"
run_once reduce $'[transform.reduce]\n'"$reduce"
run_once detect+reduce $'[detect]\nfindings = ["alerts"]\n[transform.reduce]\n'"$reduce"$'\n'"$alerts"
