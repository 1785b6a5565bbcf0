#!/usr/bin/env bash
# `vmcore mem-usage /proc/kcore` on a live Debian kernel, against makedumpfile.
#
# Boots a Debian kernel (newest linux-image-6.1.*-amd64 apt offers) under QEMU (software
# emulation, 5-level paging with -cpu max) with a busybox initramfs holding vmcore (static
# musl build) and Debian's makedumpfile. The guest makes page cache (ext2 on a virtio disk,
# and tmpfs) and user memory, then runs, one right after the other:
#     vmcore mem-usage --json /proc/kcore
#     vmcore mem-usage /proc/kcore
#     makedumpfile --mem-usage /proc/kcore
# On the host: total pages and page size must be equal, and ZERO, FREE and KERN_DATA of
# both vmcore outputs within 2% of makedumpfile's (live memory moves between the runs).
# Also `vmcore symbols /proc/kcore` must list what /proc/kallsyms lists (but modules').
# Prints the tables side by side, and on failure what the differences are made of.
# About 2-4 minutes on 2 cores (one boot of 1.5-2.5 minutes, plus the build).
#
# Usage: scripts/vm/mem-usage.sh [--kernel PKG|SERIES] [--no5lvl] [--mem SIZE] [--out DIR]
#   --kernel   a linux-image package name, a comma-separated list of kernel .deb files (as
#              kdump.sh takes), or a series (6.1, 6.12) for its newest package;
#              default 6.1 (Debian's makedumpfile 1.7.2 predates 6.12: it warns there and
#              may count some classes differently). Env VMCORE_VM_KERNEL does the same.
#   --no5lvl   boot with no5lvl (4-level paging)
#   --mem      guest RAM (default 512M; crashkernel=160M is reserved, which
#              makedumpfile --mem-usage requires)
#   --out      where the run's files go (default target/vm/mem-usage)
#   --compare-only   no boot: compare again the outputs a previous run left in --out
# Env: VMCORE_VM_CACHE (kernel cache, default ~/.cache/vmcore-vm), VMCORE_VM_TIMEOUT
# (seconds, default 900), VMCORE_VM_TOLERANCE (percent, default 2).
# Exit: 0 pass, 1 the tools disagree (or a command failed in the guest), 2 the harness
# failed (no kernel, build failure, the guest did not finish).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

kernel=${VMCORE_VM_KERNEL:-6.1}
out=$VM_REPO/target/vm/mem-usage
mem=512M
append=""
tol=${VMCORE_VM_TOLERANCE:-2}
compare_only=
while [ $# -gt 0 ]; do
  case $1 in
    --kernel) kernel=$2; shift 2 ;;
    --no5lvl) append="$append no5lvl"; shift ;;
    --mem) mem=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --compare-only) compare_only=1; shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
t_start=$(date +%s)
VM_BOOT_SECONDS=0
pkg=

boot_and_run() {
  vm_require_packages qemu-system-x86 busybox-static makedumpfile cpio zstd xz-utils
  case $kernel in
    linux-image-*|*.deb*) pkg=$kernel ;;
    *) pkg=$(vm_kernel_package "$kernel") || vm_die "apt offers no linux-image-$kernel.*-amd64" ;;
  esac
  vm_fetch_kernel "$pkg"
  vm_build_vmcore

  mkdir -p "$out"
  guest=$(mktemp "${TMPDIR:-/tmp}/vmcore-vm-scenario.XXXXXX")
  cat > "$guest" <<'GUEST'
# runs in the guest (busybox sh), in /out
uname -r > uname.txt
cat /proc/cmdline > cmdline.txt
grep -q ' la57' /proc/cpuinfo && echo yes > la57.txt || echo no > la57.txt
# Free pages on the per-cpu lists are not PageBuddy: both tools count them as kernel data.
# The memory one tool frees as it exits lands there just as the next one starts: keep the
# lists short (pcp high at its floor, a few hundred pages).
echo 100000 > /proc/sys/vm/percpu_pagelist_high_fraction || echo "cannot set percpu_pagelist_high_fraction"
# workload: page cache of a disk file system (ext2 through the ext4 driver: buffer heads,
# so private pages too) and of tmpfs, user memory held by a sleeping shell
mkdir -p /mnt
if mke2fs -q -F /dev/vdb > mkfs.log 2>&1 && mount -t ext4 /dev/vdb /mnt 2>> mkfs.log; then
  i=0; while [ $i -lt 4 ]; do seq $((i*1000000)) $((i*1000000+900000)) > /mnt/f$i; i=$((i+1)); done
  sync; cat /mnt/f* > /dev/null
else
  echo "no ext2 scratch disk: page cache from tmpfs only"
fi
mkdir -p /tmp/cache
i=0; while [ $i -lt 3 ]; do seq $((i*1000000)) $((i*1000000+900000)) > /tmp/cache/f$i; i=$((i+1)); done
rm -f /tmp/cache/f0
(x=$(seq 1 1000000); sleep 100000; echo ${#x}) &
sleep 3
cat /proc/meminfo > meminfo_before.txt
# the three runs, one right after the other (busybox time: seconds and peak RSS in KiB)
time -f '%e %M' -o vmcore_json.time /bin/vmcore mem-usage --json /proc/kcore > vmcore.json 2> vmcore_json.err
echo $? > vmcore_json.rc
time -f '%e %M' -o vmcore_txt.time /bin/vmcore mem-usage /proc/kcore > vmcore.txt 2> vmcore_txt.err
echo $? > vmcore_txt.rc
time -f '%e %M' -o makedumpfile.time makedumpfile --mem-usage /proc/kcore > makedumpfile.txt 2>&1
echo $? > makedumpfile.rc
# for diagnosis
cat /proc/meminfo > meminfo_after.txt
cat /proc/iomem > iomem.txt
head -c 65536 /proc/kcore > kcore_head.bin
time -f '%e %M' -o vmcore_info.time /bin/vmcore info --json /proc/kcore > info.json 2>&1
# the kernel's symbols, as vmcore finds them (kallsyms in VMCOREINFO from 6.0, else this
# kernel's /proc/kallsyms), and as the kernel lists them (module and BPF symbols left out)
/bin/vmcore symbols /proc/kcore > vmcore_symbols.txt 2> vmcore_symbols.err
echo $? > vmcore_symbols.rc
grep -v '\[' /proc/kallsyms | awk '{print $1, $3}' > kallsyms.txt
dmesg > dmesg.txt
true
GUEST

  vm_say "building the initramfs"
  vm_initrd_new
  vm_initrd_add_bin "$VM_VMCORE" vmcore
  vm_initrd_add_bin /usr/bin/makedumpfile
  vm_initrd_add_modules ext4 crc32c_generic
  vm_initrd_add_file "$guest" /scenario
  rm -f "$guest"
  vm_initrd_pack "$out/initrd.cpio.gz"

  VM_MEM=$mem VM_SCRATCH=256M VM_APPEND="crashkernel=160M $append" \
    vm_boot "$out/initrd.cpio.gz" "$out" || { rm -f "$out/initrd.cpio.gz"; exit 2; }
  rm -f "$out/initrd.cpio.gz"
}
[ -n "$compare_only" ] || boot_and_run
o=$out/out
[ -f "$o/status" ] || vm_die "no results in $o"

# ---- compare ----
fails=()
for r in vmcore_json vmcore_txt makedumpfile; do
  rc=$(cat "$o/$r.rc" 2>/dev/null || echo missing)
  [ "$rc" = 0 ] || fails+=("$r exited $rc in the guest")
done
# makedumpfile's table (vmcore's text table has the same layout)
tval() { sed -n "s/^$2[[:space:]]*\([0-9][0-9]*\).*/\1/p" "$1" 2>/dev/null | head -1; }
jval() { grep -o "\"$2\": *[0-9]*" "$1" 2>/dev/null | head -1 | grep -o '[0-9]*$' || true; }
declare -A J T M
for k in ZERO NON_PRI_CACHE PRI_CACHE USER FREE KERN_DATA; do
  J[$k]=$(jval "$o/vmcore.json" "${k,,}")
  T[$k]=$(tval "$o/vmcore.txt" "$k")
  M[$k]=$(tval "$o/makedumpfile.txt" "$k")
done
J[total]=$(jval "$o/vmcore.json" total_pages); J[psize]=$(jval "$o/vmcore.json" page_size)
T[total]=$(tval "$o/vmcore.txt" 'Total pages on system:'); T[psize]=$(tval "$o/vmcore.txt" 'page size:')
M[total]=$(tval "$o/makedumpfile.txt" 'Total pages on system:'); M[psize]=$(tval "$o/makedumpfile.txt" 'page size:')
# USER+FREE: a tool's own memory is USER in its count and FREE in the other's
for x in J T M; do
  declare -n tbl=$x
  # shellcheck disable=SC2154 # (an associative array, through a nameref)
  if [ -n "${tbl[USER]}" ] && [ -n "${tbl[FREE]}" ]; then tbl[userfree]=$(( tbl[USER] + tbl[FREE] )); fi
  unset -n tbl
done

echo
echo "kernel $(cat "$o/uname.txt" 2>/dev/null)${pkg:+ ($pkg)}, cmdline: $(cat "$o/cmdline.txt" 2>/dev/null)"
echo "la57 offered: $(cat "$o/la57.txt" 2>/dev/null); paging levels (vmcore info): $(tr -d ' \n' < "$o/info.json" 2>/dev/null | grep -o '"paging_levels":{"value":"[^"]*"' | sed 's/.*"0x//; s/"//' || echo '?')"
for r in vmcore_json vmcore_txt makedumpfile vmcore_info; do
  [ -f "$o/$r.time" ] && awk -v r="$r" 'NF == 2 { printf "in the guest: %-13s %6.1fs, peak RSS %5.1f MiB\n", r, $1, $2 / 1024 }' "$o/$r.time"
done
echo
# diffbp A B: |A-B| in hundredths of a percent of B
diffbp() { local a=$1 b=$2 d; d=$(( a > b ? a - b : b - a )); if [ "$b" = 0 ]; then [ "$d" = 0 ] && echo 0 || echo 999999; else echo $(( d * 10000 / b )); fi; }
pct() { printf '%d.%02d%%' $(($1 / 100)) $(($1 % 100)); }
printf '%-14s %14s %14s %14s %9s %9s  %s\n' TYPE "vmcore --json" "vmcore table" makedumpfile "json/mkd" "tbl/mkd" check
for k in ZERO NON_PRI_CACHE PRI_CACHE USER FREE KERN_DATA userfree total psize; do
  j=${J[$k]:-}; t=${T[$k]:-}; m=${M[$k]:-}
  case $k in total) label="total pages";; psize) label="page size";; userfree) label="(USER+FREE)";; *) label=$k;; esac
  if [ -z "$j" ] || [ -z "$t" ] || [ -z "$m" ]; then
    printf '%-14s %14s %14s %14s\n' "$label" "${j:--}" "${t:--}" "${m:--}"
    fails+=("$label: missing from an output"); continue
  fi
  dj=$(diffbp "$j" "$m"); dt=$(diffbp "$t" "$m")
  case $k in
    total|psize) check="equal"
      if [ "$j" != "$m" ] || [ "$t" != "$m" ]; then check="NOT EQUAL"; fails+=("$label: vmcore $j (json), $t (table); makedumpfile $m"); fi ;;
    ZERO|FREE|KERN_DATA) check="<= $tol%"
      if [ "$dj" -gt $((tol * 100)) ] || [ "$dt" -gt $((tol * 100)) ]; then
        check="OVER $tol%"; fails+=("$k: vmcore $j (json), $t (table); makedumpfile $m: off by $(pct "$dj"), $(pct "$dt")")
      fi ;;
    *) check="" ;;
  esac
  printf '%-14s %14s %14s %14s %9s %9s  %s\n' "$label" "$j" "$t" "$m" "$(pct "$dj")" "$(pct "$dt")" "$check"
done
echo
# from the TYPE line on; makedumpfile's warnings (before it) are printed after
table() { sed -n '/^TYPE/,$p' "$1" | expand | sed 's/[[:space:]]*$//'; }
paste -d '\n' <(table "$o/vmcore.txt") <(table "$o/makedumpfile.txt") \
  | awk 'BEGIN { printf "%-90s| %s\n", "vmcore mem-usage /proc/kcore", "makedumpfile --mem-usage /proc/kcore" }
         NR % 2 { l = $0; next } { printf "%-90s| %s\n", l, $0 }'
sed '/^TYPE/,$d; /^$/d; s/^/makedumpfile said: /' "$o/makedumpfile.txt"
for f in vmcore_json.err vmcore_txt.err; do
  [ -s "$o/$f" ] && { echo "---- $f:"; cat "$o/$f"; }
done

# The symbols: vmcore's list equals the kernel's own (as sets: the order of names at one
# address differs).
if [ -f "$o/vmcore_symbols.rc" ]; then
  src=$(tr -d '\n' < "$o/info.json" | grep -o '"symbols_from": *"[^"]*"' | sed 's/.*: *"//; s/"$//' || true)
  if [ "$(cat "$o/vmcore_symbols.rc")" != 0 ]; then
    fails+=("vmcore symbols /proc/kcore exited $(cat "$o/vmcore_symbols.rc"): $(head -2 "$o/vmcore_symbols.err" | tr '\n' ' ')")
  elif cmp -s <(sort -u "$o/vmcore_symbols.txt") <(sort -u "$o/kallsyms.txt"); then
    echo "symbols: vmcore's $(wc -l < "$o/vmcore_symbols.txt") equal /proc/kallsyms' (from ${src:-?})"
  else
    n=$(comm -3 <(sort -u "$o/vmcore_symbols.txt") <(sort -u "$o/kallsyms.txt") | wc -l)
    fails+=("symbols: vmcore's $(wc -l < "$o/vmcore_symbols.txt") and /proc/kallsyms' $(wc -l < "$o/kallsyms.txt") differ in $n lines (from ${src:-?})")
  fi
fi

# Where the pages are, from the guest's /proc/kcore program headers and /proc/iomem: what a
# total, a ZERO or a KERN_DATA that differ are made of.
ps=${M[psize]:-4096}
ram=0 max_pfn=0 image=0 crash=0
if [ -f "$o/kcore_head.bin" ]; then
  rd() { od -A n -t "x$2" -j "$1" -N "$2" "$o/kcore_head.bin" | tr -d ' '; }
  phoff=$((0x$(rd 32 8))); phentsize=$((0x$(rd 54 2))); phnum=$((0x$(rd 56 2)))
  echo
  echo "guest memory, from /proc/kcore's PT_LOADs and /proc/iomem:"
  for ((i = 0; i < phnum; i++)); do
    h=$((phoff + phentsize * i))
    [ "$(rd $h 4)" = 00000001 ] || continue
    va=$(rd $((h + 16)) 8); pa=$(rd $((h + 24)) 8); sz=$((0x$(rd $((h + 40)) 8)))
    [ "$pa" = ffffffffffffffff ] && continue
    n=$(( (0x$pa + sz) / ps - 0x$pa / ps ))
    if [[ $va > ffffffff7fffffff ]]; then
      image=$((image + n)); printf '  kernel image     %8d pages: PT_LOAD 0x%s -> phys 0x%x, in the direct map too\n' $n "$va" $((0x$pa))
    else
      ram=$((ram + n)); end=$(( (0x$pa + sz) / ps )); [ $end -gt $max_pfn ] && max_pfn=$end
    fi
  done
  printf '  direct-map RAM   %8d pages, max pfn %d\n' $ram $max_pfn
  while read -r r; do
    n=$(( (0x${r#*-} + 1 - 0x${r%-*}) / ps )); crash=$((crash + n))
    printf '  Crash kernel     %8d pages: phys 0x%s-0x%s\n' $n "${r%-*}" "${r#*-}"
  done < <(sed -n 's/^ *\([0-9a-f]*-[0-9a-f]*\) : Crash kernel$/\1/p' "$o/iomem.txt" 2>/dev/null)
  echo "  RAM - Crash kernel + kernel image: $((ram - crash + image))"
fi
# what the differences are made of, where the numbers say so
hints=()
if [ ${#fails[@]} -gt 0 ] && [ -n "${M[total]}" ] && [ -n "${T[total]}" ] && [ $ram -gt 0 ]; then
  [ "${M[total]}" = $((ram - crash + image)) ] && [ "${M[total]}" != "${T[total]}" ] &&
    hints+=("makedumpfile's total is RAM - Crash kernel + the kernel-image PT_LOAD counted a second time ($ram - $crash + $image)")
  [ "${T[total]}" = $max_pfn ] && [ $((ram + image)) -gt $max_pfn ] &&
    hints+=("vmcore's total is the max pfn ($max_pfn): RAM + kernel image ($((ram + image))) exceeds it, and the memory hole is clamped at 0")
  if [ $crash -gt 0 ] && [ -n "${T[ZERO]}" ] && [ "$(diffbp "${T[ZERO]}" "${M[ZERO]}")" -gt $((tol * 100)) ]; then
    z=$((T[ZERO] - crash)); [ $z -lt 0 ] && z=0
    [ "$(diffbp $z "${M[ZERO]}")" -le $((tol * 100)) ] &&
      hints+=("vmcore's ZERO minus the Crash kernel pages ($z) is within $(pct "$(diffbp $z "${M[ZERO]}")") of makedumpfile's: vmcore counts the (zero) crashkernel reservation, makedumpfile cuts it out of /proc/kcore's RAM")
  fi
  if [ -n "${T[KERN_DATA]}" ] && [ "$(diffbp "${T[KERN_DATA]}" "${M[KERN_DATA]}")" -gt $((tol * 100)) ]; then
    k=$((T[KERN_DATA] + M[total] - T[total] + T[ZERO] - M[ZERO]))
    [ "$(diffbp $k "${M[KERN_DATA]}")" -le $((tol * 100)) ] &&
      hints+=("with makedumpfile's total and ZERO, vmcore's KERN_DATA would be $k, within $(pct "$(diffbp $k "${M[KERN_DATA]}")") of makedumpfile's: KERN_DATA differs only through the total and ZERO")
  fi
  if [ "$(diffbp "${T[FREE]}" "${M[FREE]}")" -gt $((tol * 100)) ] && [ "$(diffbp "${T[userfree]}" "${M[userfree]}")" -le $((tol * 100)) ]; then
    hints+=("USER+FREE agree within $(pct "$(diffbp "${T[userfree]}" "${M[userfree]}")"): vmcore's FREE is lower by its own memory while it runs (its USER is $((T[USER] - M[USER])) pages above makedumpfile's)")
  fi
fi
echo
echo "files: $out (console.log; out/: the outputs, kcore_head.bin, info.json, meminfo, iomem, dmesg)"
echo "took $(( $(date +%s) - t_start ))s (guest ${VM_BOOT_SECONDS}s)"
if [ ${#fails[@]} = 0 ]; then
  echo "PASS: vmcore mem-usage agrees with makedumpfile on live $(cat "$o/uname.txt")"
  exit 0
fi
for f in "${fails[@]}"; do echo "FAIL: $f"; done
for h in "${hints[@]}"; do echo "  why: $h"; done
echo "FAILED: vmcore mem-usage and makedumpfile disagree on live $(cat "$o/uname.txt" 2>/dev/null)"
exit 1
