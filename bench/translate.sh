#!/usr/bin/env bash
# Benchmark (not a test): page-table translations per second over every direct-map page of
# each x86_64 fixture (examples/translate.rs), first pass TLB-cold, then warm.
# usage: bench/translate.sh [DUMP_FILE...]   (default: the x86_64 fixtures, decompressed
# into ${BENCH_DIR:-/tmp/vmcore-bench} as bench/physread.sh does)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/vmcore-bench}
FIXTURES_DIR=${FIXTURES_DIR:-$ROOT/../shared/fixtures}
cargo build --release --quiet --example translate --manifest-path "$ROOT/Cargo.toml"
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  for d in "$FIXTURES_DIR"/x86_64-*/; do
    name=$(basename "$d"); out="$BENCH_DIR/$name/vmcore.elf"
    if [ ! -f "$out" ]; then
      mkdir -p "$BENCH_DIR/$name"
      zstd -d -q --long=27 "$d/vmcore.elf.zst" -o "$out"
    fi
    files+=("$out")
  done
fi
for f in "${files[@]}"; do
  "$ROOT/target/release/examples/translate" "$f" --passes 3
done
