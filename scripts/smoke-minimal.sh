#!/usr/bin/env bash
# The smallest useful flowlog: local files and stdin in, Splunk HEC and files out, no AWS
# SDK anywhere. Builds it (debug), checks that no AWS SDK crate (and no DataFusion) is in
# its tree, the pipeline's or the fuzz targets', and runs it: a file source into a file sink, and stdin
# through `transform`.
# Part of the test command, so the feature set cannot rot.
set -euo pipefail
# A failing command inside $(...) stops the script too (the crate trees below).
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
features="source-file,source-directory,source-stdin,sink-splunk-hec,sink-file"

# A crate tree, one name per line; a tree cargo cannot give (a stale lock file) stops the
# script rather than passing the checks below unread.
tree() {
  cargo tree --locked "$@" -e normal --prefix none
}

# (Each tree is taken into a variable first: a failure inside an `if` would not stop.)
for package in flowlog-pipeline flowlog-source flowlog-sink flowlog-component; do
  crates=$(tree -p "$package")
  if grep -q '^aws-sdk-' <<< "$crates"; then
    echo "smoke: $package depends on an AWS SDK crate" >&2
    cargo tree --locked -p "$package" -e normal -i aws-smithy-runtime >&2 || true
    exit 1
  fi
done
minimal=$(tree -p flowlog --no-default-features --features "$features")
# (aws-lc is the TLS library's cryptography, not AWS's SDK.)
if grep -v '^aws-lc-' <<< "$minimal" | grep -q '^aws-'; then
  echo "smoke: the build with only $features has an AWS SDK crate in it" >&2
  exit 1
fi
fuzz_tree=$(tree --manifest-path fuzz/Cargo.toml)
pipeline_tree=$(tree -p flowlog-pipeline)
# DataFusion (the `sql` feature) is built only into the binary that asks for it.
for name in pipeline fuzz minimal; do
  tree_var="${name}_tree"
  [ "$name" = minimal ] && tree_var=minimal
  if grep -q '^datafusion' <<< "${!tree_var}"; then
    echo "smoke: DataFusion is in the $name tree" >&2
    exit 1
  fi
done
# The fuzz targets build what they exercise (scripts/fuzz.sh compiles it with sanitizer
# instrumentation, where an AWS SDK crate costs minutes).
if grep -v '^aws-lc-' <<< "$fuzz_tree" | grep -q '^aws-'; then
  echo "smoke: the fuzz targets' build has an AWS SDK crate in it" >&2
  exit 1
fi
# The Elasticsearch sink as the fuzz targets build it: `aws_sigv4` refused, naming the feature.
cargo test --locked -q -p flowlog-sink-elasticsearch --no-default-features --lib

cargo build --locked -p flowlog --no-default-features --features "$features"
bin="${CARGO_TARGET_DIR:-target}/debug/flowlog"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/flowlog.toml" <<TOML
data_dir = "$work/data"

[api]

[sources.archive]
type = "file"
paths = ["$PWD/examples/s3-vpc-flow-v5.log.gz"]

[sinks.out]
type = "file"
path = "$work/out.ndjson"
format = "ecs"
TOML
mkdir -p "$work/data"
"$bin" check --config "$work/flowlog.toml" > "$work/check.txt"
"$bin" run --config "$work/flowlog.toml" 2> "$work/run.log"
expected=$(gzip -dc examples/s3-vpc-flow-v5.log.gz | tail -n +2 | grep -c .)
got=$(grep -c '"event"' "$work/out.ndjson")
if [ "$got" -ne "$expected" ]; then
  echo "smoke: the file sink has $got records of $expected" >&2
  cat "$work/run.log" >&2
  exit 1
fi
transformed=$(gzip -dc examples/s3-vpc-flow-v5.log.gz | "$bin" transform --to ecs | grep -c .)
[ "$transformed" -eq "$expected" ] || { echo "smoke: transform gave $transformed of $expected" >&2; exit 1; }

# A kind left out of the build is refused, naming it and the kinds this build has.
printf '[sources.q]\ntype = "sqs"\nqueue_url = "https://sqs.us-east-1.amazonaws.com/1/q"\n' >> "$work/flowlog.toml"
if "$bin" check --config "$work/flowlog.toml" > "$work/sqs.txt" 2>&1; then
  echo "smoke: a build without the SQS source accepted an sqs source" >&2
  exit 1
fi
grep -q 'unknown variant `sqs`, expected one of `file`, `directory`, `stdin`' "$work/sqs.txt" ||
  { echo "smoke: the refusal does not name the kinds this build has:" >&2; cat "$work/sqs.txt" >&2; exit 1; }
echo "smoke: the build with $features delivered $got records; $(du -h "$bin" | cut -f1) debug binary"
