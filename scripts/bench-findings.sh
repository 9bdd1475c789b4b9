#!/usr/bin/env bash
# What delivering detection findings costs: `flowlog run --once` with `[detect]` on a corpus
# of N vertical port scans (25 ports each, one finding each), the findings imported into the
# Security Hub test peer, beside the same run with the findings written to a file, and a run
# whose threshold (26 ports) makes no finding at all. Records go to a file in all three. CPU
# is flowlog's own (the peer runs in its own process); the run without findings is the
# baseline: what is above it is making and delivering the findings.
#
#   scripts/bench-findings.sh [SCANNERS]      (default 20000)
#
# Uses the release build in $CARGO_TARGET_DIR.
set -euo pipefail
n=${1:-20000}
here=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$here/target}
cargo build --release -q -p flowlog -p flowlog-test-receivers --bins
bin=$target/release/flowlog
work=$(mktemp -d)
trap 'rm -rf "$work"; [[ -n "${rpid:-}" ]] && kill "$rpid" 2>/dev/null || true' EXIT

# The peer's credentials, as its source names them.
peer_src=$here/tests/receivers/src/security_hub.rs
constant() { sed -n "s/^pub const $1: &str = \"\(.*\)\";/\1/p" "$peer_src"; }
export AWS_ACCESS_KEY_ID=$(constant ACCESS_KEY_ID)
export AWS_SECRET_ACCESS_KEY=$(constant SECRET_ACCESS_KEY)
export AWS_SESSION_TOKEN=$(constant SESSION_TOKEN)
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_PROFILE AWS_ENDPOINT_URL

python3 - "$n" > "$work/scans.log" <<'PY'
import sys
n = int(sys.argv[1])
out = sys.stdout
for i in range(n):
    src = f"10.{1 + i // 40000}.{i // 200 % 200}.{i % 200 + 1}"
    start = 1763800000 + i // 100
    for port in range(1, 26):
        out.write(f"2 123456789012 eni-{i:08x} {src} 10.0.3.9 40000 {port} 6 1 44 "
                  f"{start} {start + 30} REJECT OK\n")
PY
echo "== $n scans, $(wc -l < "$work/scans.log") lines"

config() { # $1 = label, $2 = the findings sink's settings, $3 = the scan threshold
    cat > "$work/$1.toml" <<TOML
data_dir = "$work/data.$1"
[api]
[sources.scans]
type = "file"
paths = ["$work/scans.log"]
[detect]
findings = ["findings"]
[detect.vertical_scan]
min_ports = ${3:-20}
min_privileged_ports = 0
[detect.admin_ports]
enabled = false
[detect.outbound_dns]
enabled = false
[sinks.records]
type = "file"
path = "$work/records.$1.ndjson"
[sinks.findings]
$2
TOML
}

config none "type = \"file\"
path = \"$work/none.ndjson\"" 26
/usr/bin/time -f "no finding (baseline): %e s wall, %U+%S s CPU, %M KB peak RSS" \
    "$bin" run --once --config "$work/none.toml"

config file "type = \"file\"
path = \"$work/findings.ndjson\""
/usr/bin/time -f "findings to a file: %e s wall, %U+%S s CPU, %M KB peak RSS" \
    "$bin" run --once --config "$work/file.toml"
echo "$(wc -l < "$work/findings.ndjson") findings written"

mkfifo "$work/ctl"
"$target/release/security-hub-receiver" < "$work/ctl" > "$work/url" 2> "$work/receiver.log" &
rpid=$!
exec 9> "$work/ctl"
while [[ ! -s "$work/url" ]]; do sleep 0.1; done
config hub "type = \"security_hub\"
endpoint_url = \"$(cat "$work/url")\"
region = \"us-east-1\""
/usr/bin/time -f "findings to Security Hub: %e s wall, %U+%S s CPU, %M KB peak RSS" \
    "$bin" run --once --config "$work/hub.toml"
exec 9>&-
wait "$rpid" || true
tail -1 "$work/receiver.log"
