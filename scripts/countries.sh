#!/usr/bin/env bash
# Regenerates crates/enrich/data/countries.csv (country names and continents for databases
# that carry only a country code, such as DB-IP lite) from the npm package countries-list.
set -euo pipefail
cd "$(dirname "$0")/.."
version=3.4.1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "countries-list@$version" >/dev/null && tar xzf countries-list-*.tgz)
python3 - "$work/package/countries.min.json" "$version" > crates/enrich/data/countries.csv <<'PY'
import json, sys
countries = json.load(open(sys.argv[1]))
print("# ISO 3166-1 alpha-2 code, English name, continent code. Generated from the npm package")
print(f"# countries-list {sys.argv[2]} (MIT, https://github.com/annexare/Countries) by scripts/countries.sh.")
print("code,name,continent")
for code in sorted(countries):
    name = countries[code]["name"]
    assert "," not in name and '"' not in name, name
    print(f"{code},{name},{countries[code]['continent']}")
PY
