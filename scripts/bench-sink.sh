#!/usr/bin/env bash
# Throughput of `flowlog run` into a sink's test receiver (no faults, gzip on), beside
# `flowlog transform --to <fmt>` on the same file, and peak memory while the receiver is
# down for a while (backpressure, not buffering). CPU is flowlog's own (the receiver runs
# in its own process).
#
#   scripts/bench-sink.sh hec|elasticsearch|otlp|sumo|loki CORPUS [FORMAT] [DOWN_SECS]
#
# CORPUS: a flow-log file (e.g. from ../shared/bench/gen_flowlogs.py); FORMAT: ecs (default),
# line (HEC, Sumo Logic, Loki), ocsf, cim (HEC, Sumo Logic, Loki) or raw (Elasticsearch); for otlp the protocol: grpc (default),
# http/protobuf or http/json (transform then runs --to ecs, the reference); DOWN_SECS: run the
# memory test with the receiver answering 503 (OTLP: UNAVAILABLE) for that
# long first (default 0: skip it). Uses the release build in $CARGO_TARGET_DIR, built with
# the cargo features in $FLOWLOG_FEATURES (e.g. `isal`) when set. $FLOWLOG_BIN names another
# flowlog binary to measure (e.g. one built from an older commit) against the same receiver.
set -euo pipefail
sink=$1
corpus=$(realpath "$2")
format=${3:-ecs}
[[ $sink == otlp && $format == ecs ]] && format=grpc
down=${4:-0}
target=${CARGO_TARGET_DIR:-$(dirname "$0")/../target}
cargo build --release -q -p flowlog -p flowlog-test-receivers --bins \
    ${FLOWLOG_FEATURES:+--features "$FLOWLOG_FEATURES"}
bin=${FLOWLOG_BIN:-$target/release/flowlog}
case $sink in
  hec) receiver_bin=$target/release/hec-receiver ;;
  elasticsearch) receiver_bin=$target/release/es-receiver ;;
  otlp) receiver_bin=$target/release/otlp-receiver ;;
  sumo) receiver_bin=$target/release/sumo-receiver ;;
  loki) receiver_bin=$target/release/loki-receiver ;;
  *) echo "bench-sink.sh: the sink is hec, elasticsearch, otlp, sumo or loki, not $sink" >&2; exit 2 ;;
esac
lines=$(wc -l < "$corpus")
work=$(mktemp -d)
trap 'rm -rf "$work"; [[ -n "${rpid:-}" ]] && kill "$rpid" 2>/dev/null || true' EXIT

to=$format; [[ $to == line ]] && to=raw; [[ $sink == otlp ]] && to=ecs
echo "== transform --to $to ($lines lines)"
/usr/bin/time -f "transform: %e s wall, %U+%S s CPU, %M KB peak RSS" \
    "$bin" transform --to "$to" --quiet "$corpus" > /dev/null

sink_settings() { # $1 = the receiver's URL
    if [[ $sink == hec ]]; then
        printf '[sinks.hec]\ntype = "splunk_hec"\nendpoint = "%s"\ntoken = "test-token"\nformat = "%s"\n' "$1" "$format"
    elif [[ $sink == loki ]]; then
        printf '[sinks.loki]\ntype = "loki"\nendpoint = "%s"\nformat = "%s"\n' "$1" "$format"
    elif [[ $sink == sumo ]]; then
        printf '[sinks.sumo]\ntype = "sumo_logic"\nendpoint = "%s"\nformat = "%s"\n' "$1" "$format"
    elif [[ $sink == otlp ]]; then
        printf '[sinks.otel]\ntype = "otlp"\nendpoint = "%s"\nprotocol = "%s"\n' "$1" "$format"
    else
        printf '[sinks.elastic]\ntype = "elasticsearch"\nendpoints = ["%s"]\nauth = { api_key = "test-id:test-key" }\nformat = "%s"\n' "$1" "$format"
    fi
}

run_once() { # $1 = receiver args, $2 = label
    mkfifo "$work/ctl.$2"
    "$receiver_bin" $1 < "$work/ctl.$2" > "$work/url.$2" 2> "$work/receiver.$2" &
    rpid=$!
    exec 9> "$work/ctl.$2"
    while [[ ! -s "$work/url.$2" ]]; do sleep 0.1; done
    cat > "$work/flowlog.$2.toml" <<TOML
data_dir = "$work/data.$2"
[api]
[sources.corpus]
type = "file"
paths = ["$corpus"]
$(sink_settings "$(cat "$work/url.$2")")
TOML
    /usr/bin/time -f "run ($2): %e s wall, %U+%S s CPU, %M KB peak RSS" \
        "$bin" run --config "$work/flowlog.$2.toml"
    exec 9>&-
    wait "$rpid" || true
    tail -1 "$work/receiver.$2"
}
echo "== run into the $sink receiver, format $format"
run_once "" plain
if [[ $down != 0 ]]; then
    echo "== the same with the receiver answering 503 for the first $down s"
    run_once "--down-secs $down" down
fi
