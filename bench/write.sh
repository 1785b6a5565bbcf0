#!/usr/bin/env bash
# Benchmark (not a test): `vmcore dump` against makedumpfile on the same inputs. For each
# input, codec (-c zlib, -l lzo, -z zstd), dump level (31, 1) and thread count (1, 2) it
# prints wall time (the fastest of $REPEAT runs, and their median), CPU time (user+sys, of
# the fastest run), peak RSS (the largest) and output size of each tool, then the ratios
# vmcore/makedumpfile (at the same thread count, and against makedumpfile on one thread,
# its fastest mode) and the speedup of 2 threads over 1, and checks the targets of issue 7
# (zlib -d 31 at most 1/3 of makedumpfile's time, lzo and zstd at most 1/2, 2 threads at
# least 1.8x one, output no larger) on the fastest runs. The runs go in rounds, each
# round running every tool and thread count once, so that a slow spell of the machine
# hits all of them alike.
#
# usage: bench/write.sh [DUMP_FILE...]
#
# Without files: the x86_64 fixtures (/work/shared/fixtures/*/vmcore.elf.zst or
# $FIXTURES_DIR, decompressed into $BENCH_DIR) and a synthetic dump of $SYNTH_SIZE
# (default 16G; 0 for none) made by vmcore-synth (a sparse ELF vmcore, kept in $BENCH_DIR
# for the next run).
#
# Environment:
#   MAKEDUMPFILE   other makedumpfile binaries to compare, space-separated (Debian's
#                  `makedumpfile` from PATH is always there when installed)
#   CODECS         default "c l z";  LEVELS  default "31 1";  THREADS  default "1 2"
#   MDF_THREADS    thread counts to run makedumpfile with (default: THREADS); its
#                  --num-threads mode can take ten times its serial time
#   RESULTS        the results file, one line per run (default $BENCH_DIR/results.tsv);
#                  APPEND=1 adds to it
#                  (to report several partial runs together) instead of starting anew
#   SYNTH_SIZE     default 16G;  SYNTH_ARGS  extra vmcore-synth arguments
#   SYNC           1: time each run with an fsync of its output
#   REPEAT         runs of each case, the fastest is reported (default 3): these
#                  machines' CPU time for the same work varies by 10-20% from run to run
#   BENCH_DIR      default /tmp/vmcore-bench;  FIXTURES_DIR
#
# Both tools are timed alike: neither fsyncs its output (kdump scripts sync after), and
# SYNC=1 times each run together with `sync OUT` (an fsync of that file). Inputs are read
# once before timing, so both find them in the page cache. A codec a makedumpfile build
# lacks (Debian's has no zstd: it then writes raw pages) shows as n/a.
#
# Needs: cargo, GNU time (/usr/bin/time), makedumpfile, zstd:
#   apt-get install time makedumpfile zstd
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/vmcore-bench}
FIXTURES_DIR=${FIXTURES_DIR:-$ROOT/../shared/fixtures}
SYNTH_SIZE=${SYNTH_SIZE:-16G}
SYNTH_ARGS=${SYNTH_ARGS:-}
CODECS=${CODECS:-c l z}
LEVELS=${LEVELS:-31 1}
THREADS=${THREADS:-1 2}
REPEAT=${REPEAT:-3}
MDF_THREADS=${MDF_THREADS:-$THREADS}
TIME=/usr/bin/time
export SYNC=${SYNC:-0}

die() {
    echo "write.sh: $*" >&2
    exit 1
}

need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"
}

need cargo "install Rust (https://rustup.rs)"
[ -x "$TIME" ] || die "$TIME not found: apt-get install time"
mkdir -p "$BENCH_DIR"

echo "building vmcore and vmcore-synth (release)" >&2
(cd "$ROOT" && cargo build --release --quiet -p vmcore -p vmcore-synth) || die "build failed"
VMCORE=$ROOT/target/release/vmcore
SYNTH=$ROOT/target/release/vmcore-synth

# --- the makedumpfiles ---------------------------------------------------------------------
MDFS=()
if command -v makedumpfile >/dev/null 2>&1; then
    MDFS+=("$(command -v makedumpfile)")
fi
for m in ${MAKEDUMPFILE:-}; do
    [ -x "$m" ] || die "MAKEDUMPFILE: $m is not executable"
    MDFS+=("$m")
done
[ ${#MDFS[@]} -gt 0 ] || echo "write.sh: no makedumpfile (apt-get install makedumpfile): vmcore alone" >&2

# Whether makedumpfile $1 can write codec $2.
mdf_has() {
    case $2 in
    c) return 0 ;;
    l) "$1" -v 2>&1 | grep -q "lzo.*enabled" ;;
    z) "$1" -v 2>&1 | grep -q "zstd.*enabled" ;;
    p) "$1" -v 2>&1 | grep -q "snappy.*enabled" ;;
    esac
}

# --- inputs ---------------------------------------------------------------------------------
FILES=()
if [ $# -gt 0 ]; then
    for f in "$@"; do
        [ -r "$f" ] || die "$f: not a readable file"
        FILES+=("$f")
    done
else
    shopt -s nullglob
    for zst in "$FIXTURES_DIR"/x86_64*/vmcore.elf.zst; do
        need zstd "apt-get install zstd"
        name=$(basename "$(dirname "$zst")")
        out=$BENCH_DIR/$name/vmcore.elf
        if [ ! -s "$out" ]; then
            mkdir -p "$BENCH_DIR/$name"
            echo "decompressing $zst" >&2
            zstd -q -d --long=27 -o "$out.tmp" "$zst" && mv "$out.tmp" "$out"
        fi
        FILES+=("$out")
    done
    shopt -u nullglob
    if [ "$SYNTH_SIZE" != 0 ]; then
        out=$BENCH_DIR/synth-$SYNTH_SIZE.elf
        if [ ! -s "$out" ]; then
            echo "making a $SYNTH_SIZE synthetic dump with vmcore-synth ($out)" >&2
            rm -f "$out.tmp"
            # shellcheck disable=SC2086
            "$SYNTH" --size "$SYNTH_SIZE" $SYNTH_ARGS "$out.tmp" >&2 && mv "$out.tmp" "$out"
        fi
        FILES+=("$out")
    fi
fi
[ ${#FILES[@]} -gt 0 ] || die "no inputs (no fixtures found and SYNTH_SIZE=0)"

# --- runs -----------------------------------------------------------------------------------
OUT=$BENCH_DIR/out
RES=${RESULTS:-$BENCH_DIR/results.tsv}
[ "${APPEND:-0}" = 1 ] || : >"$RES"

# run_once TOOL_LABEL INPUT CODEC LEVEL THREADS -- COMMAND...: runs COMMAND once and
# appends it to $RES: input codec level threads tool wall cpu rss_kib bytes
run_once() {
    local label=$1 input=$2 codec=$3 level=$4 threads=$5
    shift 6
    local t w u s m t0 t1
    t=$(mktemp)
    rm -f "$OUT"
    # Wall time to the nanosecond (GNU time's %e has 10 ms steps: the fixtures' lzo runs
    # take 40-200 ms, so their ratios came in steps of 5-25%).
    t0=$(date +%s%N)
    if ! "$TIME" -f "%U %S %M" -o "$t" "$@" >/dev/null 2>"$t.err"; then
        echo "write.sh: $label failed on $input:" >&2
        tail -3 "$t.err" >&2
        rm -f "$t" "$t.err" "$OUT"
        return
    fi
    t1=$(date +%s%N)
    read -r u s m < <(tail -1 "$t")
    w=$(awk "BEGIN{printf \"%.4f\", ($t1 - $t0) / 1e9}")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(basename "$(dirname "$input")")/$(basename "$input")" \
        "$codec" "$level" "$threads" "$label" "$w" "$(awk "BEGIN{print $u + $s}")" "$m" "$(stat -c %s "$OUT")" >>"$RES"
    rm -f "$t" "$t.err" "$OUT"
}

for input in "${FILES[@]}"; do
    echo "warming the page cache with $input" >&2
    cat "$input" >/dev/null
    for codec in $CODECS; do
        for level in $LEVELS; do
            for ((round = 1; round <= REPEAT; round++)); do
                echo "  -$codec -d $level, round $round of $REPEAT" >&2
                for threads in $THREADS; do
                    run_once vmcore "$input" "$codec" "$level" "$threads" -- \
                        sh -c 'out=$1; shift; "$@" && { [ "$SYNC" != 1 ] || sync "$out"; }' sh "$OUT" \
                        "$VMCORE" dump "$input" "$OUT" "-$codec" -d "$level" --threads "$threads" -q
                    case " $MDF_THREADS " in *" $threads "*) ;; *) continue ;; esac
                    for m in "${MDFS[@]}"; do
                        label="makedumpfile:$m"
                        if ! mdf_has "$m" "$codec"; then
                            if [ "$round" = 1 ]; then
                                printf '%s\t%s\t%s\t%s\t%s\tn/a\tn/a\tn/a\tn/a\n' \
                                    "$(basename "$(dirname "$input")")/$(basename "$input")" "$codec" "$level" \
                                    "$threads" "$label" >>"$RES"
                            fi
                            continue
                        fi
                        targs=()
                        [ "$threads" -gt 1 ] && targs=(--num-threads "$threads")
                        run_once "$label" "$input" "$codec" "$level" "$threads" -- \
                            sh -c 'out=$1; shift; "$@" && { [ "$SYNC" != 1 ] || sync "$out"; }' sh "$OUT" \
                            "$m" "-$codec" -d "$level" "${targs[@]}" "$input" "$OUT"
                    done
                done
            done
        done
    done
done

# --- report ---------------------------------------------------------------------------------
python3 - "$RES" <<'EOF'
import sys
from collections import defaultdict

rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
def num(x):
    try:
        return float(x)
    except ValueError:
        return None
# Every run of a case; then per case: the fastest run's wall and cpu, the largest RSS, the
# size (the same every run), and the median wall.
runs = defaultdict(list)
tools = []
for inp, codec, level, threads, tool, wall, cpu, rss, size in rows:
    runs[(inp, codec, level, threads, tool)].append((num(wall), num(cpu), num(rss), num(size)))
    if tool not in tools:
        tools.append(tool)
res = {}
median = {}
for key, rs in runs.items():
    timed = sorted((r for r in rs if r[0] is not None), key=lambda r: r[0])
    if not timed:
        res[key] = rs[0]
        median[key] = None
        continue
    fastest = timed[0]
    res[key] = (fastest[0], fastest[1], max(r[2] for r in timed), fastest[3])
    walls = [r[0] for r in timed]
    mid = len(walls) // 2
    median[key] = walls[mid] if len(walls) % 2 else (walls[mid - 1] + walls[mid]) / 2
name = {"c": "zlib", "l": "lzo", "z": "zstd", "p": "snappy"}
def fmt(v, f):
    return "n/a" if v is None else f % v
print("| input | codec | -d | thr | tool | wall s | median s | cpu s | peak RSS MiB | size MiB | time vs mdf | time vs mdf 1 thr | size vs mdf | 2 thr speedup |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
checks = []
for (inp, codec, level, threads, tool), (wall, cpu, rss, size) in res.items():
    mdf = next((res[(inp, codec, level, threads, t)] for t in tools
                if t != "vmcore" and (inp, codec, level, threads, t) in res and res[(inp, codec, level, threads, t)][0]), None)
    # makedumpfile's best is one thread (its --num-threads is slower): the time to beat.
    mdf1 = next((res[(inp, codec, level, "1", t)] for t in tools
                 if t != "vmcore" and (inp, codec, level, "1", t) in res and res[(inp, codec, level, "1", t)][0]), None)
    rt = rt1 = rs = None
    if tool == "vmcore" and mdf:
        rt = wall / mdf[0] if wall and mdf[0] else None
    if tool == "vmcore" and mdf1:
        rt1 = wall / mdf1[0] if wall and mdf1[0] else None
        rs = size / mdf1[3] if size and mdf1[3] else None
    sp = None
    one = res.get((inp, codec, level, "1", tool))
    if threads != "1" and one and one[0] and wall:
        sp = one[0] / wall
    print(f"| {inp} | {name.get(codec, codec)} | {level} | {threads} | {tool.split('/')[-1]} | {fmt(wall, '%.3f')} | "
          f"{fmt(median[(inp, codec, level, threads, tool)], '%.3f')} | {fmt(cpu, '%.2f')} | {fmt(rss and rss / 1024, '%.1f')} | {fmt(size and size / 2**20, '%.1f')} | "
          f"{fmt(rt, '%.2f')} | {fmt(rt1, '%.2f')} | {fmt(rs, '%.3f')} | {fmt(sp, '%.2f')} |")
    if tool == "vmcore":
        if level == "31" and rt1 is not None:
            limit = 1 / 3 if codec == "c" else 1 / 2
            checks.append((f"{inp} {name[codec]} -d 31, {threads} thr: time {rt1:.2f} of makedumpfile's on one thread",
                           rt1 <= limit, f"<= {limit:.2f}"))
        if rs is not None:
            checks.append((f"{inp} {name[codec]} -d {level}, {threads} thr: size {rs:.3f} of makedumpfile's", rs <= 1.0, "<= 1"))
        if sp is not None:
            checks.append((f"{inp} {name[codec]} -d {level}: 2 threads {sp:.2f}x one", sp >= 1.8, ">= 1.8"))
print()
print("targets:")
for what, ok, target in checks:
    print(f"  {'ok  ' if ok else 'MISS'} {what} (target {target})")
EOF
echo "raw results: $RES" >&2
