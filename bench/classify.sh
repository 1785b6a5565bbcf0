#!/usr/bin/env bash
# Benchmark (not a test): pages classified per second by `vmcore dump --dry-run -d 31`
# (struct page scan with makedumpfile's rules, zero-page check included) next to
# `makedumpfile --dry-run -d 31` on the same input, and the ratio.
#
# usage: bench/classify.sh [DUMP...]
# Without arguments: the x86_64 fixtures (decompressed into $BENCH_DIR), plus a synthetic
# dump of $SYNTH_SIZE (default 16G) made by vmcore-synth when it supports --layout.
# Environment: BENCH_DIR (/tmp/vmcore-bench), MAKEDUMPFILE (makedumpfile), SYNTH_SIZE.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/vmcore-bench}
FIXTURES_DIR=${FIXTURES_DIR:-$ROOT/../shared/fixtures}
MAKEDUMPFILE=${MAKEDUMPFILE:-makedumpfile}
SYNTH_SIZE=${SYNTH_SIZE:-16G}
command -v "$MAKEDUMPFILE" >/dev/null || { echo "classify.sh: $MAKEDUMPFILE not found (apt-get install makedumpfile)" >&2; exit 1; }
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --bin vmcore --bin vmcore-synth
VMCORE=$ROOT/target/release/vmcore
mkdir -p "$BENCH_DIR"

files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  for d in "$FIXTURES_DIR"/x86_64-*/; do
    name=$(basename "$d"); out="$BENCH_DIR/$name/vmcore.elf"
    if [ ! -f "$out" ]; then mkdir -p "$BENCH_DIR/$name"; zstd -d -q --long=27 "$d/vmcore.elf.zst" -o "$out"; fi
    files+=("$out")
  done
  synth="$BENCH_DIR/synth-$SYNTH_SIZE.elf"
  if [ ! -f "$synth" ] && "$ROOT/target/release/vmcore-synth" --help 2>/dev/null | grep -q -- --layout; then
    echo "making a $SYNTH_SIZE synthetic dump ($synth)..." >&2
    "$ROOT/target/release/vmcore-synth" "$synth" --size "$SYNTH_SIZE" --seed 1 >/dev/null
  fi
  [ -f "$synth" ] && files+=("$synth")
fi

secs() { /usr/bin/time -f %e "$@" 2>&1 >/dev/null | tail -1; }
printf "%-44s %12s %10s %10s %8s\n" file pages vmcore_s mdf_s ratio
for f in "${files[@]}"; do
  cat "$f" > /dev/null   # warm the page cache for both tools alike
  pages=$("$VMCORE" dump "$f" -d 31 --dry-run --json | sed -n 's/.*"total_pages": \([0-9]*\).*/\1/p')
  v=$(secs "$VMCORE" dump "$f" -d 31 --dry-run)
  m=$(secs "$MAKEDUMPFILE" --dry-run -d 31 -f "$f" "$BENCH_DIR/dry.out")
  ratio=$(awk -v a="$m" -v b="$v" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
  printf "%-44s %12s %10s %10s %8s   (%s pages/s vs %s)\n" "${f#$BENCH_DIR/}" "$pages" "$v" "$m" "$ratio" \
    "$(awk -v p="$pages" -v t="$v" 'BEGIN { printf "%.0f", p / (t > 0 ? t : 1) }')" \
    "$(awk -v p="$pages" -v t="$m" 'BEGIN { printf "%.0f", p / (t > 0 ? t : 1) }')"
done
echo "ratio = makedumpfile time / vmcore time (higher is better for vmcore)"
