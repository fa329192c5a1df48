#!/usr/bin/env bash
# Runs every benchmark of bench/, one after the other; `make bench` builds
# the release binary first.  Each appends its figures to bench/RESULTS.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

benchmarks=(
    bench/cached_read.sh
    bench/catalog_vs_nginx.sh
    bench/flash_sale.sh
    bench/memory.sh
    bench/proxy.sh
)

for b in "${benchmarks[@]}"; do
    printf '\n==== %s ====\n' "$b"
    "$b"
done
