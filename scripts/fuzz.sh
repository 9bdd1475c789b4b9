#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz, libFuzzer with AddressSanitizer) of what reads
# untrusted bytes: `scripts/fuzz.sh [SECONDS] [TARGET...]` runs each target (default: all)
# for SECONDS (default 60), starting from its corpus, and prints a line per target.
#
#   decode      the sniffer and every envelope decoder (gzip, Parquet, CloudWatch Logs,
#               Firehose, Lambda, {"message"} lines, text), split in every way a pipe could
#   format      the format parser and S3 header lines, then the line decoder under them
#   config      ${NAME} interpolation and the configuration loader
#   hec_answer  what a HEC collector answers to a send and to an /ack poll
#   es_answer   what an Elasticsearch cluster answers to a _bulk request
#   otlp_answer what an OTLP receiver answers over gRPC (status trailers, RetryInfo) and HTTP
#   s3_notification  an SQS message body: S3, SNS, EventBridge, Security Lake notifications
#   firehose_request the Firehose endpoint's request path: Content-Encoding and body through
#               the handler's unpacking, bounds and decoding
#
# Corpora live in $FLOWLOG_FUZZ_DIR (default ~/.cache/flowlog-fuzz) and grow from run to
# run; each run first adds seeds made from ../shared/fixtures, the README's configuration
# and protocols.md's answers. A crash leaves its input in fuzz/artifacts/TARGET/ and makes
# the script fail.
#
# Needs a nightly toolchain (cargo fuzz passes -Zsanitizer); without one, the default
# toolchain is told to accept the flags with RUSTC_BOOTSTRAP=1. cargo-fuzz is installed
# from crates.io if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode format config hec_answer es_answer otlp_answer s3_notification firehose_request)

if ! command -v cargo-fuzz > /dev/null; then
  echo "== installing cargo-fuzz"
  cargo install --locked cargo-fuzz@0.13.2
fi
if rustup toolchain list 2> /dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
# Instrumented builds share nothing with the workspace's; keep them beside its target dir.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/flowlog-target}/fuzz"
corpora="${FLOWLOG_FUZZ_DIR:-$HOME/.cache/flowlog-fuzz}/corpus"
python3 scripts/fuzz_seeds.py "$corpora"

status=0
for target in "${targets[@]}"; do
  mkdir -p "fuzz/artifacts/$target"
  log="$(mktemp)"
  # -rss_limit_mb: the decoders promise bounded memory, so using more is a failure too.
  if "${fuzz[@]}" run --fuzz-dir fuzz "$target" "$corpora/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=1024 -max_len=65536 \
      -artifact_prefix="fuzz/artifacts/$target/" -print_final_stats=1 > "$log" 2>&1; then
    result="ok"
  else
    result="FAILED (input in fuzz/artifacts/$target/)"
    status=1
    tail -40 "$log" >&2
  fi
  execs=$(grep -a -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -a -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
  feat=$(grep -a -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
  units=$(find "$corpora/$target" -type f | wc -l)
  echo "fuzz $target: ${seconds}s, $execs executions, coverage $cov edges / $feat features, corpus $units inputs: $result"
  rm -f "$log"
done
exit $status
