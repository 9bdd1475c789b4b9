#!/usr/bin/env bash
# Deletes this workspace's build artifacts in the shared target directory that the last
# build did not write: the test binaries and libraries of older sources or of other
# clones (a path dependency's artifacts are keyed by its path, so every fresh clone adds a
# full set, about 1.5 GB). Third-party crates are left alone; they are what a warm CI run
# reuses.
#
#   scripts/prune-target.sh [MINUTES]   # default 120: keep what was written since then
#
# Third-party artifacts accumulate too (a new set whenever a dependency's features or
# version change), and nothing says which are still used: when the directory outgrows
# $FLOWLOG_TARGET_CAP_GB (default 40), the debug profile is deleted whole, and the next
# build is a cold one (about 15 minutes here) instead of the disk filling up. The same
# happens when the disk holding it has less than $FLOWLOG_MIN_FREE_GB free (default 30):
# other builds on the machine (a developer's incremental artifacts, say) fill the same disk,
# and a build that runs out of space fails halfway.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
minutes=${1:-120}
names=$( (cargo metadata --no-deps --format-version 1 --offline
  cargo metadata --no-deps --format-version 1 --offline --manifest-path fuzz/Cargo.toml) |
  python3 -c '
import json, sys
for line in sys.stdin:
    for p in json.loads(line)["packages"]:
        for t in p["targets"]:
            print(t["name"].replace("-", "_"))
            print(t["name"])
' | sort -u)
# The fuzz targets' instrumented builds (scripts/fuzz.sh) live in $target/fuzz.
for profile in debug release fuzz/x86_64-unknown-linux-gnu/release; do
  deps="$target/$profile/deps"
  [ -d "$deps" ] || continue
  for name in $names; do
    find "$deps" -maxdepth 1 -type f -mmin "+$minutes" \
      \( -name "$name-*" -o -name "lib$name-*" \) -delete
  done
  [ -d "$target/$profile/incremental" ] &&
    find "$target/$profile/incremental" -mindepth 1 -maxdepth 1 -type d -mmin "+$minutes" \
      -exec rm -rf {} +
done
cap_gb=${FLOWLOG_TARGET_CAP_GB:-40}
min_free_gb=${FLOWLOG_MIN_FREE_GB:-30}
mkdir -p "$target"
size_gb=$(( $(du -sk "$target" | cut -f1) / 1048576 ))
free_gb=$(( $(df -Pk "$target" | awk 'NR == 2 { print $4 }') / 1048576 ))
if [ -d "$target/debug" ] && { [ "$size_gb" -gt "$cap_gb" ] || [ "$free_gb" -lt "$min_free_gb" ]; }; then
  echo "prune-target: $size_gb GB used (cap $cap_gb), $free_gb GB free (want $min_free_gb): deleting $target/debug"
  rm -rf "$target/debug"
fi
echo "prune-target: $(du -sh "$target" | cut -f1) in $target"
