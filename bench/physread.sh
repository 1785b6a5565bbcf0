#!/usr/bin/env bash
# Benchmark (not a test): sequential and random 4 KiB physical reads of every dumped page,
# through vmcore (examples/physread.rs) and through python3-libkdumpfile
# (bench/physread_libkdumpfile.py), on the same pages in the same order.
#
# usage: bench/physread.sh [DUMP_FILE...]
#
# Without files: the fixtures. /work/shared/fixtures/*/vmcore.elf.zst (or $FIXTURES_DIR)
# are decompressed into ${BENCH_DIR:-/tmp/vmcore-bench}/<name>/vmcore.elf unless already
# there, and for the x86_64 ones d31_zlib.kdump (makedumpfile -c -d 31) and d31_lzo.kdump
# (makedumpfile -l -d 31) are made next to it with Debian's makedumpfile.
#
# Environment: PASSES (default 3) reads of the page list per run, SEED (default 1) of the
# random order, BENCH_DIR, FIXTURES_DIR.
#
# Needs: cargo, /usr/bin/python3 with python3-libkdumpfile, and for the fixtures zstd and
# makedumpfile:  apt-get install python3-libkdumpfile makedumpfile zstd
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/vmcore-bench}
FIXTURES_DIR=${FIXTURES_DIR:-$ROOT/../shared/fixtures}
PASSES=${PASSES:-3}
SEED=${SEED:-1}
PY=/usr/bin/python3
PYBENCH=$ROOT/bench/physread_libkdumpfile.py
INSTALL_HINT="apt-get install python3-libkdumpfile makedumpfile zstd"

die() {
    echo "physread.sh: $*" >&2
    exit 1
}

need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"
}

# --- tools --------------------------------------------------------------------------------
need cargo "install Rust (https://rustup.rs)"
[ -x "$PY" ] || die "$PY not found: $INSTALL_HINT"
"$PY" -c 'import kdumpfile' 2>/dev/null ||
    die "$PY cannot import kdumpfile (python3-libkdumpfile): $INSTALL_HINT"

# --- inputs -------------------------------------------------------------------------------
FILES=()
if [ $# -gt 0 ]; then
    for f in "$@"; do
        [ -r "$f" ] || die "$f: not a readable file"
        FILES+=("$f")
    done
else
    need zstd "$INSTALL_HINT"
    need makedumpfile "$INSTALL_HINT"
    shopt -s nullglob
    zsts=("$FIXTURES_DIR"/*/vmcore.elf.zst)
    shopt -u nullglob
    [ ${#zsts[@]} -gt 0 ] || die "no $FIXTURES_DIR/*/vmcore.elf.zst"
    for zst in "${zsts[@]}"; do
        name=$(basename "$(dirname "$zst")")
        dir=$BENCH_DIR/$name
        mkdir -p "$dir"
        if [ ! -s "$dir/vmcore.elf" ]; then
            echo "decompressing $name/vmcore.elf" >&2
            zstd -q -d --long=27 -f "$zst" -o "$dir/vmcore.elf.tmp"
            mv "$dir/vmcore.elf.tmp" "$dir/vmcore.elf"
        fi
        FILES+=("$dir/vmcore.elf")
        case $name in
        x86_64*)
            for codec in zlib:-c lzo:-l; do
                out=$dir/d31_${codec%%:*}.kdump
                if [ ! -s "$out" ]; then
                    echo "makedumpfile ${codec#*:} -d 31 $name/vmcore.elf $name/${out##*/}" >&2
                    rm -f "$out.tmp"
                    makedumpfile "${codec#*:}" -d 31 "$dir/vmcore.elf" "$out.tmp" >"$dir/makedumpfile.log" 2>&1 ||
                        die "makedumpfile ${codec#*:} -d 31 failed, see $dir/makedumpfile.log"
                    mv "$out.tmp" "$out"
                fi
                FILES+=("$out")
            done
            ;;
        esac
    done
fi

# --- build --------------------------------------------------------------------------------
echo "building examples/physread (release)" >&2
(cd "$ROOT" && cargo build --quiet --release --example physread) || die "cargo build --release --example physread failed"
EXAMPLE=$ROOT/target/release/examples/physread
[ -x "$EXAMPLE" ] || die "$EXAMPLE not built"

# --- run ----------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/physread.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# field JSON KEY
field() {
    "$PY" -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
}

short() {
    case $1 in
    "$BENCH_DIR"/*) echo "${1#"$BENCH_DIR"/}" ;;
    *) echo "$1" ;;
    esac
}

W=4
for f in "${FILES[@]}"; do
    n=$(short "$f")
    [ ${#n} -gt $W ] && W=${#n}
done
ROWS=()
NOTES=()
FAILED=0
for f in "${FILES[@]}"; do
    name=$(short "$f")
    cat "$f" >/dev/null # both tools start from a warm page cache
    pfns=$WORK/pfns.txt
    samples=$WORK/samples.bin
    lkdf_ok=1
    for mode in seq random; do
        extra=()
        [ "$mode" = seq ] && extra=(--list-pfns "$pfns" --sample-out "$samples")
        if ! vm=$("$EXAMPLE" "$f" --mode "$mode" --seed "$SEED" --passes "$PASSES" "${extra[@]}" 2>"$WORK/err"); then
            NOTES+=("$name: vmcore failed: $(tail -n 3 "$WORK/err")")
            FAILED=1
            break
        fi
        echo "$vm" >&2
        vm_pages=$(field "$vm" pages)
        vm_rate=$(field "$vm" pages_per_sec)
        partial=$(field "$vm" partial_pages_skipped)
        if [ "$mode" = seq ] && [ "$partial" != 0 ]; then
            NOTES+=("$name: $partial page(s) 'Dumped' but only partly inside the dump's segments left out (a 4 KiB read of them fails in vmcore)")
        fi
        lk_rate=
        if [ $lkdf_ok = 1 ]; then
            verify=()
            [ "$mode" = seq ] && verify=(--verify "$samples")
            if lk=$("$PY" "$PYBENCH" "$f" --mode "$mode" --seed "$SEED" --passes "$PASSES" --pfns "$pfns" "${verify[@]}" 2>"$WORK/err"); then
                echo "$lk" >&2
                lk_rate=$(field "$lk" pages_per_sec)
                if [ "$(field "$lk" checksum)" != "$(field "$vm" checksum)" ]; then
                    NOTES+=("$name $mode: CHECKSUM MISMATCH vmcore $(field "$vm" checksum) libkdumpfile $(field "$lk" checksum)")
                    FAILED=1
                fi
            else
                lkdf_ok=0
                NOTES+=("$name: libkdumpfile skipped: $(tail -n 3 "$WORK/err" | tr '\n' ' ')")
            fi
        fi
        if [ -n "$lk_rate" ]; then
            ROWS+=("$(printf '%-*s %-6s %9s %14.0f %14.0f %7.2f' "$W" "$name" "$mode" "$vm_pages" "$vm_rate" "$lk_rate" \
                "$(awk -v a="$vm_rate" -v b="$lk_rate" 'BEGIN { print a / b }')")")
        else
            ROWS+=("$(printf '%-*s %-6s %9s %14.0f %14s %7s' "$W" "$name" "$mode" "$vm_pages" "$vm_rate" - -)")
        fi
    done
done

echo
echo "4 KiB physical reads of every dumped page, $PASSES pass(es), random seed $SEED; pages = reads timed"
printf '%-*s %-6s %9s %14s %14s %7s\n' "$W" file mode pages "vmcore pg/s" "libkdumpf pg/s" ratio
for r in "${ROWS[@]}"; do echo "$r"; done
if [ ${#NOTES[@]} -gt 0 ]; then
    echo
    for n in "${NOTES[@]}"; do echo "note: $n"; done
fi
echo
echo "ratio = vmcore / libkdumpfile. libkdumpfile is driven from Python: ~1 us of interpreter"
echo "overhead per read is in its numbers (the checksum is computed in a separate untimed pass)."
exit $FAILED
