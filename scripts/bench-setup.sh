# Sourced by the benchmark scripts that need moto: the release build (or $FLOWLOG_BIN), a work directory
# removed on exit, and moto server at $FLOWLOG_MOTO_ENDPOINT or one started from the test
# venv (~/.cache/flowlog-venv, made by scripts/test.sh). Sets bin, py, work, endpoint and
# pids (processes killed on exit; a script may add its own).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
target=${CARGO_TARGET_DIR:-$here/../target}
# FLOWLOG_BIN: a binary built already (skips the release build).
if [[ -z "${FLOWLOG_BIN:-}" ]]; then
    cargo build --release -q -p flowlog
fi
bin=${FLOWLOG_BIN:-$target/release/flowlog}
venv=${FLOWLOG_VENV:-$HOME/.cache/flowlog-venv}
py=$venv/bin/python
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do pkill -P "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
if [[ -z "${FLOWLOG_MOTO_ENDPOINT:-}" ]]; then
    port=$((20000 + RANDOM % 10000))
    "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" > "$work/moto.log" 2>&1 &
    pids+=($!)
    FLOWLOG_MOTO_ENDPOINT="http://127.0.0.1:$port"
    until curl -s -o /dev/null "$FLOWLOG_MOTO_ENDPOINT/moto-api/"; do sleep 0.2; done
fi
endpoint=$FLOWLOG_MOTO_ENDPOINT
