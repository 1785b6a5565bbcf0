#!/usr/bin/env bash
# Benchmark (not a test): time to extract the kernel log from each fixture, vmcore
# (examples/dmesg.rs: open, know the machine, read the printk ring, render makedumpfile's
# text to a file) next to `makedumpfile --dump-dmesg` on the same file. Whole-process wall
# time, the median of RUNS runs after one warm-up run (page cache warm for both).
#
# usage: bench/dmesg.sh [DUMP_FILE...]
#
# Without files: every fixture's vmcore.elf, and for the x86_64 fixtures also
# d31_zlib.kdump (makedumpfile -c -d 31), decompressed/made into
# ${BENCH_DIR:-/tmp/vmcore-bench}/<name>/ unless already there (as bench/physread.sh).
# makedumpfile is timed on the x86_64 files only: Debian's makedumpfile cannot read the
# arm64 fixtures (it prints "-" there). The last column says whether vmcore's output is
# byte-identical to the fixture's expected/dmesg.txt (upstream makedumpfile 1.7.9).
#
# Environment: RUNS (default 7), BENCH_DIR, FIXTURES_DIR.
# Needs: cargo, zstd, makedumpfile (apt-get install makedumpfile zstd).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/vmcore-bench}
FIXTURES_DIR=${FIXTURES_DIR:-$ROOT/../shared/fixtures}
RUNS=${RUNS:-7}

die() {
    echo "dmesg.sh: $*" >&2
    exit 1
}
command -v cargo >/dev/null || die "cargo not found"
HAVE_MDF=1
command -v makedumpfile >/dev/null || HAVE_MDF=0

# --- inputs: "file expected-or-empty" ------------------------------------------------------
INPUTS=()
if [ $# -gt 0 ]; then
    for f in "$@"; do
        [ -r "$f" ] || die "$f: not a readable file"
        INPUTS+=("$f|")
    done
else
    command -v zstd >/dev/null || die "zstd not found: apt-get install zstd"
    shopt -s nullglob
    for zst in "$FIXTURES_DIR"/*/vmcore.elf.zst; do
        fx=$(dirname "$zst")
        name=$(basename "$fx")
        dir=$BENCH_DIR/$name
        mkdir -p "$dir"
        [ -f "$dir/vmcore.elf" ] || zstd -d -q --long=27 "$zst" -o "$dir/vmcore.elf"
        INPUTS+=("$dir/vmcore.elf|$fx/expected/dmesg.txt")
        if [[ $name == x86_64* ]] && [ $HAVE_MDF = 1 ]; then
            if [ ! -f "$dir/d31_zlib.kdump" ]; then
                makedumpfile -c -d 31 "$dir/vmcore.elf" "$dir/d31_zlib.kdump.tmp" >/dev/null 2>&1
                mv "$dir/d31_zlib.kdump.tmp" "$dir/d31_zlib.kdump"
            fi
            INPUTS+=("$dir/d31_zlib.kdump|$fx/expected/dmesg.txt")
        fi
    done
    shopt -u nullglob
    [ ${#INPUTS[@]} -gt 0 ] || die "no $FIXTURES_DIR/*/vmcore.elf.zst"
fi

cargo build --release --quiet --example dmesg --manifest-path "$ROOT/Cargo.toml"
VMCORE_DMESG=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/dmesg
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# median wall seconds of RUNS runs of "$@" (after a warm-up run)
median_time() {
    rm -f "$TMP/out.txt"
    "$@" >/dev/null 2>&1 || return 1
    local times=() i t0 t1
    for ((i = 0; i < RUNS; i++)); do
        rm -f "$TMP/out.txt"
        t0=$EPOCHREALTIME
        "$@" >/dev/null 2>&1 || return 1
        t1=$EPOCHREALTIME
        times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')")
    done
    printf '%s\n' "${times[@]}" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

is_arm64() {
    [ "$(od -An -tu2 -j18 -N2 "$1" 2>/dev/null | tr -d ' ')" = 183 ]
}

printf '%-40s %11s %13s %17s %7s %10s\n' "file" "vmcore (s)" "of which log" "makedumpfile (s)" "ratio" "identical"
for entry in "${INPUTS[@]}"; do
    f=${entry%%|*}
    expected=${entry#*|}
    label=$(basename "$(dirname "$f")")/$(basename "$f")
    v=$(median_time "$VMCORE_DMESG" "$f" "$TMP/out.txt") || die "$f: vmcore failed"
    # The part spent reading the ring and rendering it (the rest is opening the dump and
    # knowing the machine: layout and kallsyms), median over RUNS in-process timings.
    log_s=$(for ((i = 0; i < RUNS; i++)); do "$VMCORE_DMESG" "$f" "$TMP/vmcore.txt" 2>&1 >/dev/null | tail -1; done |
        sed -E 's/.*"machine_s":([0-9.]+).*"total_s":([0-9.]+).*/\1 \2/' |
        awk '{ printf "%.6f\n", $2 - $1 }' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
    same="-"
    if [ -n "$expected" ] && [ -f "$expected" ]; then
        if cmp -s "$TMP/vmcore.txt" "$expected"; then same=yes; else same=NO; fi
    fi
    m="-"
    ratio="-"
    if [ $HAVE_MDF = 1 ] && ! is_arm64 "$f"; then
        if m=$(median_time makedumpfile --dump-dmesg "$f" "$TMP/out.txt"); then
            ratio=$(awk -v a="$m" -v b="$v" 'BEGIN { printf "%.2fx", a / b }')
        else
            m="failed"
        fi
    fi
    printf '%-40s %11s %13s %17s %7s %10s\n' "$label" "$v" "$log_s" "$m" "$ratio" "$same"
done
echo "(whole-process wall times, median of $RUNS runs each, warm page cache; ratio: makedumpfile / vmcore;"
echo " 'of which log': vmcore's time reading the printk ring and rendering it, the rest is Dump::open + Machine::new)"
