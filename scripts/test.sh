#!/usr/bin/env bash
# The project's test command: sets up what the tests need, then runs every check.
# CI runs exactly this (through .ci/run). Run it from anywhere inside the checkout.
#
# Needs: the Rust toolchain, and ../shared (fixtures, OCSF schemas) beside the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d ../shared/fixtures ]; then
  echo "test.sh: ../shared/fixtures is missing (the shared/ folder sits beside the checkout)" >&2
  exit 2
fi

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests (unit, property, conformance, end-to-end)"
cargo test --workspace --all-targets --locked
