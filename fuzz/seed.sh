#!/usr/bin/env bash
# Seeds the fuzz corpora (fuzz/corpus/TARGET, git-ignored) with real inputs of each format,
# made here rather than committed: the heads of a small synthetic machine's dump as an ELF
# vmcore, as kdump-compressed files (every codec) and as flattened streams, and its
# VMCOREINFO text. A whole dump is too big for libFuzzer to mutate usefully; its first
# 64 KiB hold every header, note and table the parsers read.
#
# usage: fuzz/seed.sh        (then: RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET, see README.md)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CORPUS=$ROOT/fuzz/corpus
HEAD=65536
cd "$ROOT"
cargo build --release -q -p vmcore -p vmcore-synth
BIN=$ROOT/target/release
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

mkdir -p "$CORPUS"/{elf,kdump,flat,vmcoreinfo,model,rearrange,symbol_list}
# model: the first byte picks one of its four machines; no patches.
for m in 0 1 2 3; do printf "\\x0$m" >"$CORPUS/model/machine-$m"; done
"$BIN/vmcore-synth" --size 64M --layout x86_64-6.1-l4 --messages 50 "$WORK/m.elf"
head -c $HEAD "$WORK/m.elf" >"$CORPUS/elf/synth-6.1"
for codec in zlib lzo snappy zstd none; do
    "$BIN/vmcore-synth" --size 64M --layout x86_64-6.1-l4 --messages 50 --format kdump --codec $codec "$WORK/m.$codec"
    head -c $HEAD "$WORK/m.$codec" >"$CORPUS/kdump/synth-6.1-$codec"
done
"$BIN/vmcore" dump -q -F -l -d 31 "$WORK/m.elf" >"$WORK/m.flat"
head -c $HEAD "$WORK/m.flat" >"$CORPUS/flat/synth-6.1-lzo"
# rearrange: streams cut short inside their pages, a kdump file's and an ELF file's.
cp "$CORPUS/flat/synth-6.1-lzo" "$CORPUS/rearrange/synth-6.1-lzo"
"$BIN/vmcore" dump -q -F -E -d 31 "$WORK/m.elf" >"$WORK/m-elf.flat"
head -c $HEAD "$WORK/m-elf.flat" >"$CORPUS/rearrange/synth-6.1-elf"
"$BIN/vmcore" vmcoreinfo "$WORK/m.elf" >"$CORPUS/vmcoreinfo/synth-6.1"
# symbol_list: the machine's VMCOREINFO, a NUL, its symbols as a System.map: image
# addresses (the top bit set: negative to the shell) less the KASLR offset.
offset=$(sed -n 's/^KERNELOFFSET=//p' "$CORPUS/vmcoreinfo/synth-6.1")
{ cat "$CORPUS/vmcoreinfo/synth-6.1"; printf '\0'
  "$BIN/vmcore" symbols --types "$WORK/m.elf" |
    while read -r a t n; do
      if (( 0x$a < 0 )); then a=$(printf '%016x' $((0x$a - 0x${offset:-0}))); fi
      printf '%s %s %s\n' "$a" "$t" "$n"
    done
} >"$CORPUS/symbol_list/synth-6.1"
for t in elf kdump flat vmcoreinfo model rearrange symbol_list; do
    echo "$t: $(ls "$CORPUS/$t" | wc -l) seeds"
done
