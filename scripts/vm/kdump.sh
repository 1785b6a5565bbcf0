#!/usr/bin/env bash
# vmcore as the kdump core collector, end to end, against makedumpfile in the same crash kernel.
#
# Boots a Debian kernel under QEMU (software emulation; 512M, crashkernel=160M, -cpu max,
# which offers 5-level paging) with a busybox initramfs that makes a little page cache and
# user memory, loads a crash kernel (the same kernel) with `kexec -p` and crashes with sysrq
# (guest side: scripts/vm/kdump-guest-init). In the crash kernel, with kdump-tools' and
# kdump-utils' own command lines, found through PATH, onto an ext4 disk on /var/crash:
#     makedumpfile -l --message-level 7 -d 31 /proc/vmcore /var/crash/NAME.kdump
#     makedumpfile -F -l --message-level 7 -d 31 /proc/vmcore | cat > /var/crash/NAME.flat
#     makedumpfile --dump-dmesg /proc/vmcore /var/crash/NAME.dmesg
# first vmcore's static binary through a `makedumpfile` symlink (NAME ours), then Debian's
# makedumpfile (NAME mkd), each timed; then /proc/vmcore is copied raw onto a disk.
# On the host, the checks (each PASS or FAIL):
#   guest       the crash kernel ran and started every collector
#   collector   ours exited 0 through the symlink, and it is vmcore's front end (makedumpfile -v)
#   reference   Debian's makedumpfile exited 0 (same options, same guest)
#   info        vmcore info: a complete kdump file, level 31, lzo, the guest's release
#   config      the release, paging levels and KASLR offset (vmcore info's layout) are the
#               ones asked for, and so is the first kernel's command line
#   dmesg       vmcore dmesg holds "sysrq: Trigger a crash" and "Kernel panic - not syncing:
#               sysrq triggered crash"
#   makedumpfile-reads  Debian's makedumpfile --dump-dmesg reads our file: the panic lines,
#               the same text as vmcore dmesg (vmcore prints caller ids, as makedumpfile
#               1.7.9 does; Debian's 1.7.2 does not: compared without them)
#   libkdumpfile  python3-libkdumpfile reads our file (KDUMP_MACHPHYSADDR, every pfn): as many
#               pages as the header says, each equal to the same page of /proc/vmcore
#   same-dump   ours and makedumpfile's files are byte-identical (cmp); where makedumpfile
#               says it does not support the kernel (Debian's 1.7.2 on 6.12), ours must hold
#               every page its file holds, the same bytes, and each page more must equal
#               memory (they are counted by page type)
#   flattened   our -F stream: Debian's makedumpfile -R makes it ours.kdump; vmcore info reads it
#   rearrange   `makedumpfile -R OUT < ours.flat` through the symlink (an ssh dump server's
#               step) gives ours.kdump
#   guest-dmesg `makedumpfile --dump-dmesg /proc/vmcore FILE` through the symlink in the crash
#               kernel (kdump-tools runs it after the dump): the panic lines, makedumpfile's text
# and prints, per configuration, the dump sizes and the collectors' times in the guest.
#
# Usage: scripts/vm/kdump.sh [--kernel 6.1|6.12|PKG] [--no5lvl] [--nokaslr] [options]
#        scripts/vm/kdump.sh --all      the four configurations, one after the other:
#                                       6.1 5-level KASLR, 6.1 4-level nokaslr,
#                                       6.12 4-level KASLR, 6.12 5-level nokaslr
#        scripts/vm/kdump.sh --matrix   all eight (2 kernels x 2 paging modes x KASLR on/off)
#   --kernel   a series (6.1, 6.12: the newest linux-image-SERIES.*-amd64 apt offers), a
#              comma-separated list of kernel .deb files (another suite's kernel: since 7.x
#              Debian's linux-image is a metapackage, so give linux-binary and linux-modules
#              too; a package name fetches them itself), or a
#              package name; default 6.1 (env VMCORE_VM_KERNEL)
#   --no5lvl   4-level paging (the no5lvl kernel argument)
#   --nokaslr  KASLR off (the nokaslr kernel argument)
#   --mem SIZE, --crashkernel SIZE   guest RAM and reservation (512M, 160M; 384M is too little)
#   --no-elf   do not copy /proc/vmcore to the host (no page-by-page check against memory)
#   --no-flat  no -F runs
#   --out DIR  the run's files (default target/vm/kdump/CONFIG, CONFIG e.g. 6.1-l5-kaslr;
#              with --all, DIR/CONFIG)
#   --keep     keep the disk images (dumps.img, the ext4 disk; vmcore.img, the raw copy)
#   --verify-only  no boot: check again what a previous run left in --out
# Env: VMCORE_VM_CACHE (kernel cache), VMCORE_VM_TIMEOUT (seconds for one boot, default 1800
# here), VMCORE_VM_BINARY (a vmcore binary to use instead of building the static one).
# Needs root on a fresh machine (apt-get: qemu-system-x86 busybox-static makedumpfile
# kexec-tools e2fsprogs python3-libkdumpfile cpio zstd xz-utils). About 75 s a configuration
# on 2 cores (one boot of about 65 s: both kernels and every collector), plus the build.
# Files (per configuration): console.log (both kernels), out/ (the guest's logs, times, exit
# codes; out/first/ the first kernel's), dumps/ (ours.kdump, mkd.kdump, *.flat, *.dmesg),
# host/ (the host-side outputs), summary.tsv.
# Exit: 0 every check passed, 1 a check failed, 2 the harness failed (no kernel, build, boot).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
export VMCORE_VM_TIMEOUT=${VMCORE_VM_TIMEOUT:-1800}

kernel=${VMCORE_VM_KERNEL:-6.1}
no5lvl= nokaslr= all= mem=512M ck=160M elf=1 flat=1 out= keep= verify_only=
pass_through=()
while [ $# -gt 0 ]; do
  case $1 in
    --kernel) kernel=$2; shift 2 ;;
    --no5lvl) no5lvl=1; shift ;;
    --nokaslr) nokaslr=1; shift ;;
    --all) all=four; shift ;;
    --matrix) all=eight; shift ;;
    --mem) mem=$2; pass_through+=(--mem "$2"); shift 2 ;;
    --crashkernel) ck=$2; pass_through+=(--crashkernel "$2"); shift 2 ;;
    --no-elf) elf=; pass_through+=(--no-elf); shift ;;
    --no-flat) flat=; pass_through+=(--no-flat); shift ;;
    --out) out=$2; shift 2 ;;
    --keep) keep=1; pass_through+=(--keep); shift ;;
    --verify-only) verify_only=1; pass_through+=(--verify-only); shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

# The release a --kernel names: a package's, or the first .deb's (linux-image-REL_VER_ARCH.deb).
kernel_release() {
  local k=$1
  case $k in *.deb*) k=$(basename "${k%%,*}"); k=${k%%_*} ;; esac
  k=${k#linux-image-}
  echo "${k#unsigned-}"
}

config_name() { # SERIES NO5LVL NOKASLR
  local k=$1
  case $k in linux-image-*|*.deb*) k=$(kernel_release "$k"); k=${k%-amd64} ;; esac
  echo "$k-$([ -n "$2" ] && echo l4 || echo l5)-$([ -n "$3" ] && echo nokaslr || echo kaslr)"
}

# ---- the summary table of one or more configurations (their summary.tsv) ----
print_summary() {
  local f
  echo
  printf '%-18s %-22s %12s %12s %9s %9s %9s %9s %11s %7s  %s\n' \
    config kernel "dump ours" "dump mkd" "-d31 ours" "-d31 mkd" "-F ours" "-F mkd" "RSS o/m MiB" checks verdict
  for f in "$@"; do
    if [ -f "$f" ]; then
      awk -F'\t' '{ printf "%-18s %-22s %12s %12s %8ss %8ss %8ss %8ss %11s %7s  %s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 }' "$f"
    else
      printf '%-18s %s\n' "$(basename "$(dirname "$f")")" "(no summary: the run did not finish)"
    fi
  done
  echo "(dump: bytes of the -d 31 lzo file; -d31/-F: seconds of the collector in the crash kernel,"
  echo " busybox time, vmcore first, then makedumpfile 1.7.2 in the same guest; RSS: peak, -d 31 run)"
}

# ---- several configurations: one child run each, sequentially ----
if [ -n "$all" ]; then
  base=${out:-$VM_REPO/target/vm/kdump}
  if [ $all = four ]; then
    configs=("6.1::" "6.1:no5lvl:nokaslr" "6.12:no5lvl:" "6.12::nokaslr")
  else
    configs=()
    for k in 6.1 6.12; do for p in "" no5lvl; do for r in "" nokaslr; do configs+=("$k:$p:$r"); done; done; done
  fi
  t0=$(date +%s)
  if [ -z "$verify_only" ]; then
    # one binary for every configuration (the build folder may change meanwhile)
    vm_build_vmcore
    mkdir -p "$base"
    [ "$VM_VMCORE" = "$base/vmcore" ] || cp "$VM_VMCORE" "$base/vmcore"
    export VMCORE_VM_BINARY=$base/vmcore
  fi
  rcs=() sums=()
  for c in "${configs[@]}"; do
    IFS=: read -r k p r <<< "$c"
    name=$(config_name "$k" "$p" "$r")
    args=(--kernel "$k" --out "$base/$name" "${pass_through[@]}")
    [ -n "$p" ] && args+=(--no5lvl)
    [ -n "$r" ] && args+=(--nokaslr)
    vm_say "==== $name: $0 ${args[*]}"
    set +e
    "$0" "${args[@]}" 2>&1 | tee "$base/$name.log"
    rc=${PIPESTATUS[0]}
    set -e
    vm_say "==== $name: exit $rc"
    rcs+=("$rc"); sums+=("$base/$name/summary.tsv")
  done
  print_summary "${sums[@]}"
  for c in "${configs[@]}"; do
    IFS=: read -r k p r <<< "$c"
    name=$(config_name "$k" "$p" "$r")
    grep -h '^FAIL: \|^vm: ERROR' "$base/$name.log" 2>/dev/null | sed "s/^/$name: /" || true
  done
  echo "took $(( $(date +%s) - t0 ))s"
  worst=0
  for rc in "${rcs[@]}"; do
    if [ "$rc" = 1 ]; then worst=1; elif [ "$rc" != 0 ] && [ $worst = 0 ]; then worst=2; fi
  done
  [ $worst = 0 ] && echo "PASS: all ${#configs[@]} configurations" || echo "FAILED: see above (exit codes ${rcs[*]})"
  exit $worst
fi

# ---- one configuration ----
kernel_has_5level() { [ "$(cat "$out/kernel-5level.txt" 2>/dev/null)" != no ]; }
name=$(config_name "$kernel" "$no5lvl" "$nokaslr")
out=${out:-$VM_REPO/target/vm/kdump/$name}
mkdir -p "$out"
out=$(cd "$out" && pwd)
t_start=$(date +%s)
VM_BOOT_SECONDS=0
pkg=

boot_and_capture() {
  vm_require_packages qemu-system-x86 busybox-static makedumpfile kexec-tools cpio zstd xz-utils \
    e2fsprogs python3-libkdumpfile
  case $kernel in
    linux-image-*|*.deb*) pkg=$kernel ;;
    *) pkg=$(vm_kernel_package "$kernel") || vm_die "apt offers no linux-image-$kernel.*-amd64" ;;
  esac
  vm_fetch_kernel "$pkg"
  vm_build_vmcore
  rm -rf "$out/out" "$out/dumps" "$out/host" "$out/summary.tsv"
  # A CPU with la57 runs 4-level kernels built without it (Ubuntu's 4.15 and 5.4; 6.16
  # dropped CONFIG_X86_5LEVEL, PGTABLE_LEVELS says it everywhere).
  local config
  for config in "$VM_KDIR/boot/config-$VM_KVER" "$VM_MODDIR/config" unknown; do [ -f "$config" ] && break; done
  if [ -f "$config" ]; then grep -q '^CONFIG_PGTABLE_LEVELS=5' "$config" && echo yes || echo no; else echo unknown; fi \
    > "$out/kernel-5level.txt"
  # this run's binary, for the guest and the host checks (the build folder may change meanwhile)
  [ "$VM_VMCORE" = "$out/vmcore" ] || cp "$VM_VMCORE" "$out/vmcore"
  VM_VMCORE=$out/vmcore

  vm_say "building the crash kernel's initramfs"
  vm_initrd_new
  vm_initrd_add_bin /usr/bin/makedumpfile
  # vmcore in its own folder, run as makedumpfile through a symlink (PATH=/opt/vmcore/bin:...)
  vm_initrd_add_bin "$VM_VMCORE" vmcore
  mkdir -p "$VM_ROOT/opt/vmcore/bin"
  mv "$VM_ROOT/bin/vmcore" "$VM_ROOT/opt/vmcore/bin/vmcore"
  vm_initrd_add_symlink vmcore /opt/vmcore/bin/makedumpfile
  vm_initrd_add_modules ext4 crc32c_generic
  vm_initrd_add_file "$here/kdump-guest-init" /scenario
  [ -n "$flat" ] || : > "$VM_ROOT/no-flat"
  vm_initrd_pack "$out/capture.cpio.gz"

  vm_say "building the first kernel's initramfs"
  vm_initrd_new
  vm_initrd_add_bin /usr/sbin/kexec
  vm_initrd_add_file "$out/capture.cpio.gz" /capture.img
  vm_initrd_add_file "$VM_VMLINUZ" /vmlinuz
  vm_initrd_add_file "$here/kdump-guest-init" /scenario
  vm_initrd_pack "$out/initrd.cpio.gz"
  rm -f "$out/capture.cpio.gz"

  # /dev/vdb: ext4 for /var/crash (inode tables and journal written here, so that the guest
  # does no lazy init while the collectors run; no metadata_csum: no crc32c needed)
  local disks=("$out/dumps.img")
  rm -f "$out/dumps.img" "$out/vmcore.img"
  truncate -s 512M "$out/dumps.img"
  mkfs.ext4 -q -F -O ^metadata_csum -E lazy_itable_init=0,lazy_journal_init=0 "$out/dumps.img" \
    || vm_die "mkfs.ext4 failed"
  if [ -n "$elf" ]; then truncate -s 1G "$out/vmcore.img"; disks+=("$out/vmcore.img"); fi

  local append="crashkernel=$ck"
  [ -n "$no5lvl" ] && append="$append no5lvl"
  [ -n "$nokaslr" ] && append="$append nokaslr"
  # Before 4.12 KASLR was opt-in (Ubuntu's 4.4).
  if [ -z "$nokaslr" ] && [ "$(printf '%s\n' "$VM_KVER" 4.12 | sort -V | head -1)" != 4.12 ]; then
    append="$append kaslr"
  fi
  VM_MEM=$mem VM_APPEND=$append vm_boot_disks "$out/initrd.cpio.gz" "$out" "${disks[@]}" \
    || { rm -f "$out/initrd.cpio.gz"; [ -n "$keep" ] || rm -f "$out/dumps.img" "$out/vmcore.img"; exit 2; }
  rm -f "$out/initrd.cpio.gz"
  echo "$pkg" > "$out/package.txt"
  echo "$VM_BOOT_SECONDS" > "$out/guest_seconds.txt"

  mkdir -p "$out/dumps"
  local f
  for f in ours.kdump mkd.kdump ours.flat mkd.flat ours.dmesg mkd.dmesg; do
    debugfs -R "dump /$f $out/dumps/$f" "$out/dumps.img" > /dev/null 2>&1 || true
    # debugfs leaves an empty file for a name the disk does not have
    [ -s "$out/dumps/$f" ] || rm -f "$out/dumps/$f"
  done
  [ -n "$keep" ] || rm -f "$out/dumps.img"
}

if [ -z "$verify_only" ]; then
  boot_and_capture
else
  if [ -x "$out/vmcore" ] && [ -z "${VMCORE_VM_BINARY:-}" ]; then VM_VMCORE=$out/vmcore; else vm_build_vmcore; fi
  pkg=$(cat "$out/package.txt" 2>/dev/null || true)
  VM_BOOT_SECONDS=$(cat "$out/guest_seconds.txt" 2>/dev/null || echo 0)
fi
o=$out/out
d=$out/dumps
h=$out/host
[ -f "$o/status" ] || vm_die "no results in $o"
rm -rf "$h"; mkdir -p "$h"
vmcore=$VM_VMCORE
py=/usr/bin/python3

# ---- checks (every failure is handled: no errexit from here on) ----
set +e +o pipefail
vm_say "vmcore: $vmcore ($("$vmcore" --version 2>&1 | head -1), sha256 $(sha256sum < "$vmcore" | cut -c1-16))"
check() { vm_check "$@"; }
rc_of() { cat "$o/$1.rc" 2>/dev/null || echo missing; }
# tfield NAME N: field N of NAME.time (elapsed, user, system seconds, peak RSS KiB, minor page
# faults); busybox time
# puts "Command exited with non-zero status N" before them
tfield() { awk -v n="$2" '$1 ~ /^[0-9.]+$/ && NF >= 4 { v = $n } END { print v }' "$o/$1.time" 2>/dev/null; }
sz() { stat -c %s "$1" 2>/dev/null || echo -; }
# jget FILE KEY...: a value of a JSON object (nested keys), "" when absent
jget() { "$py" - "$@" <<'PY' 2>/dev/null || true
import json, sys
try:
    v = json.load(open(sys.argv[1]))
    for k in sys.argv[2:]:
        v = v[k]
    print(str(v).lower() if isinstance(v, bool) else v)
except Exception:
    pass
PY
}
panic1="sysrq: Trigger a crash"
panic2="Kernel panic - not syncing: sysrq triggered crash"
# Before 4.19 (Ubuntu's 4.15) sysrq-c oopses on a NULL pointer, and the oops goes to the
# crash kernel without a panic line.
panic2_old="BUG: unable to handle kernel NULL pointer dereference"
has_panic() { grep -qF "$panic1" "$1" 2>/dev/null && grep -qF -e "$panic2" -e "$panic2_old" "$1" 2>/dev/null; }
npanic() { if [ -f "$1" ]; then grep -cF -e "$panic1" -e "$panic2" -e "$panic2_old" "$1" || true; else echo "0 (no file)"; fi; }
cmpmsg() {
  if [ ! -f "$1" ]; then echo "no $(basename "$1")"; elif [ ! -f "$2" ]; then echo "no $(basename "$2")"
  else cmp "$1" "$2" 2>&1 | head -1; fi
}
# same_log VMCORE_OUT MAKEDUMPFILE_OUT: equal, or equal once the caller ids ("[      T1] ", which
# newer makedumpfile prints, and vmcore does as 1.7.9 does) are taken out of vmcore's lines, and
# the continuation lines' indent (the prefix's width) is shortened by as much (11 columns)
same_log() {
  [ -f "$1" ] || { echo "no $(basename "$1")"; return 1; }
  [ -f "$2" ] || { echo "no $(basename "$2")"; return 1; }
  cmp -s "$1" "$2" && { echo identical; return 0; }
  sed -E 's/^(\[ *[0-9]+\.[0-9]+\]) \[ *[TC][0-9]+\]/\1/; s/^ {11}( {15})/\1/' "$1" | cmp -s - "$2" \
    && { echo "the same once vmcore's caller ids are left out (makedumpfile 1.7.2 prints none)"; return 0; }
  echo "different: $(cmpmsg "$1" "$2")"; return 1
}
excerpt() { # the console lines around the crash kernel's KDUMP lines, for a failure report
  grep -n 'KDUMP:\|Kernel panic\|BUG\|Oops\|Out of memory\|not syncing' "$out/console.log" | tail -25
}

echo
release=$(cat "$o/first/uname.txt" 2>/dev/null || echo '?')
echo "== $name: $release${pkg:+ ($pkg)}"
echo "first kernel:  $(cat "$o/first/cmdline.txt" 2>/dev/null)"
echo "crash kernel:  $(cat "$o/crash_cmdline.txt" 2>/dev/null)"
echo "/proc/vmcore:  $(cat "$o/vmcore_size.txt" 2>/dev/null) bytes; ours: $(head -1 "$o/ours_version.txt" 2>/dev/null)"
echo "               makedumpfile: $(head -1 "$o/mkd_version.txt" 2>/dev/null)"
echo

# guest
ok=1 why="both kernels ran, every collector was started"
if [ "$(cat "$o/mode.txt" 2>/dev/null)" != capture ]; then
  ok=0; why="the crash kernel did not run the capture (first kernel: $(cat "$o/failed.txt" 2>/dev/null))"
elif [ "$(cat "$o/status")" != 0 ] || [ -f "$o/failed.txt" ]; then
  ok=0; why="the capture failed in the guest: $(cat "$o/failed.txt" 2>/dev/null) status $(cat "$o/status")"
fi
check guest $ok "$why"
[ $ok = 1 ] || { excerpt; }

# ours, through the symlink
r=$(rc_of ours)
if [ "$r" = 0 ] && [ -s "$d/ours.kdump" ] && grep -q 'vmcore' "$o/ours_version.txt" 2>/dev/null; then
  check collector 1 "makedumpfile -l --message-level 7 -d 31 /proc/vmcore /var/crash/ours.kdump through /opt/vmcore/bin/makedumpfile -> vmcore: exit 0, $(stat -c %s "$d/ours.kdump") bytes"
else
  check collector 0 "ours exited $r ($(head -1 "$o/ours_version.txt" 2>/dev/null)); its stderr: $(tr '\r' '\n' < "$o/ours.log" 2>/dev/null | grep -v '^ *$' | tail -5 | tr '\n' '|')"
fi
r=$(rc_of mkd)
if [ "$r" = 0 ] && [ -s "$d/mkd.kdump" ]; then
  check reference 1 "Debian's makedumpfile, same options, same guest: exit 0, $(stat -c %s "$d/mkd.kdump") bytes"
else
  check reference 0 "Debian's makedumpfile exited $r: $(tr '\r' '\n' < "$o/mkd.log" 2>/dev/null | grep -v '^ *$' | tail -5 | tr '\n' '|')"
fi

if [ -s "$d/ours.kdump" ]; then
  # vmcore info
  irc=0; "$vmcore" info --json "$d/ours.kdump" > "$h/info.json" 2> "$h/info.err" || irc=$?
  "$vmcore" info "$d/ours.kdump" > "$h/info.txt" 2>&1 || true
  fmt=$(jget "$h/info.json" format); rel=$(jget "$h/info.json" release)
  lvl=$(jget "$h/info.json" dump_level); comp=$(jget "$h/info.json" compression)
  inc=$(jget "$h/info.json" incomplete); dumpable=$(jget "$h/info.json" dumpable_pages)
  if [ $irc = 0 ] && [ "$fmt" = kdump ] && [ "$rel" = "$release" ] && [ "$lvl" = 31 ] && [ "$comp" = lzo ] && [ "$inc" = false ]; then
    check info 1 "vmcore info: kdump, $rel, level 31, lzo, complete, $dumpable dumpable pages"
  else
    check info 0 "vmcore info exit $irc: format $fmt, release $rel (guest $release), level $lvl, $comp, incomplete $inc; $(head -3 "$h/info.err" | tr '\n' '|')"
  fi
  # the configuration asked for, as the dump says
  levels=$(jget "$h/info.json" layout paging_levels value); kaslr=$(jget "$h/info.json" layout kaslr_offset value)
  want_levels=0x5
  { [ -n "$no5lvl" ] || [ "$(cat "$o/first/la57.txt" 2>/dev/null)" != yes ] || ! kernel_has_5level; } && want_levels=0x4
  cmdline=$(cat "$o/first/cmdline.txt" 2>/dev/null)
  ok=1 why="release $release, paging levels $levels, KASLR offset $kaslr"
  case $kernel in
    linux-image-*|*.deb*) [ "$release" = "$(kernel_release "$kernel")" ] || ok=0 ;;
    *) case $release in "$kernel".*) ;; *) ok=0 ;; esac ;;
  esac
  [ "$levels" = "$want_levels" ] || { ok=0; why="$why (want $want_levels levels)"; }
  if [ -n "$nokaslr" ]; then [ "$kaslr" = 0x0 ] || { ok=0; why="$why (want 0 with nokaslr)"; }
  else case $kaslr in 0x0|"") ok=0; why="$why (want a KASLR offset)" ;; esac; fi
  case " $cmdline " in *" no5lvl "*) [ -n "$no5lvl" ] || ok=0 ;; *) [ -z "$no5lvl" ] || ok=0 ;; esac
  case " $cmdline " in *" nokaslr "*) [ -n "$nokaslr" ] || ok=0 ;; *) [ -z "$nokaslr" ] || ok=0 ;; esac
  check config $ok "$why"

  # vmcore dmesg, and makedumpfile --dump-dmesg of our file
  drc=0; "$vmcore" dmesg "$d/ours.kdump" > "$h/vmcore_dmesg.txt" 2> "$h/vmcore_dmesg.err" || drc=$?
  if [ $drc = 0 ] && has_panic "$h/vmcore_dmesg.txt"; then
    check dmesg 1 "vmcore dmesg: $(wc -l < "$h/vmcore_dmesg.txt") lines, with \"$panic1\" and \"$panic2\""
  else
    check dmesg 0 "vmcore dmesg exit $drc, panic lines $(npanic "$h/vmcore_dmesg.txt"); $(head -3 "$h/vmcore_dmesg.err" | tr '\n' '|')"
  fi
  rm -f "$h/mkd_dmesg.txt"
  mrc=0; makedumpfile --dump-dmesg "$d/ours.kdump" "$h/mkd_dmesg.txt" > "$h/mkd_dmesg.log" 2>&1 || mrc=$?
  same=$(same_log "$h/vmcore_dmesg.txt" "$h/mkd_dmesg.txt" 2>&1); src=$?
  if [ $mrc = 0 ] && has_panic "$h/mkd_dmesg.txt" && [ $src = 0 ]; then
    check makedumpfile-reads 1 "makedumpfile --dump-dmesg ours.kdump: exit 0, the panic lines; vmcore dmesg: $same"
  else
    check makedumpfile-reads 0 "makedumpfile --dump-dmesg ours.kdump: exit $mrc, panic lines $(npanic "$h/mkd_dmesg.txt"); vmcore dmesg: $same; $(tail -3 "$h/mkd_dmesg.log" | tr '\n' '|')"
  fi

  # python3-libkdumpfile, every page, against makedumpfile's file and the raw /proc/vmcore
  pargs=("$d/ours.kdump")
  [ -s "$d/mkd.kdump" ] && pargs+=(--ref "$d/mkd.kdump")
  [ -s "$out/vmcore.img" ] && [ "$(rc_of elf)" = 0 ] && pargs+=(--elf "$out/vmcore.img")
  # the struct pages (vmemmap, read by vmcore from the dump), to say what the pages only ours
  # holds are
  vmemmap=$(jget "$h/info.json" layout vmemmap_base value); maxpfn=$(jget "$h/info.json" max_pfn)
  "$vmcore" vmcoreinfo "$d/ours.kdump" > "$h/vmcoreinfo.txt" 2>/dev/null
  spage=$(sed -n 's/^SIZE(page)=//p' "$h/vmcoreinfo.txt"); omap=$(sed -n 's/^OFFSET(page._mapcount)=//p' "$h/vmcoreinfo.txt")
  # the word whose bit 0 marks a tail page (compound_head; compound_info since 7.1)
  ohead=$(sed -n 's/^OFFSET(page.compound_\(head\|info\))=//p' "$h/vmcoreinfo.txt" | head -1)
  if [ -n "$vmemmap" ] && [ -n "$maxpfn" ] && [ -n "$spage" ] && [ -n "$omap" ] && [ -s "$d/mkd.kdump" ] \
     && "$vmcore" read "$d/ours.kdump" "$vmemmap" $((maxpfn * spage)) --zero-excluded > "$h/memmap.bin" 2> /dev/null; then
    pargs+=(--memmap "$h/memmap.bin" "$spage" "$omap" "${ohead:-8}")
  fi
  prc=0; "$py" "$here/kdump-pages.py" "${pargs[@]}" > "$h/pages.json" 2> "$h/pages.err" || prc=$?
  rm -f "$h/memmap.bin"
  pfmt=$(jget "$h/pages.json" format); prel=$(jget "$h/pages.json" release); pages=$(jget "$h/pages.json" pages)
  emis=$(jget "$h/pages.json" elf_mismatch); eabs=$(jget "$h/pages.json" elf_absent); epages=$(jget "$h/pages.json" elf_pages)
  ok=1 why="libkdumpfile reads ours.kdump ($pfmt, $prel): $pages pages through KDUMP_MACHPHYSADDR"
  { [ $prc = 0 ] && [ "$pfmt" = diskdump ] && [ "$prel" = "$release" ] && [ "$pages" = "$dumpable" ]; } \
    || { ok=0; why="$why; exit $prc, want $dumpable pages (vmcore info); $(tail -2 "$h/pages.err" | tr '\n' '|')"; }
  if [ -n "$emis" ]; then
    why="$why, all equal to /proc/vmcore's"
    { [ "$emis" = 0 ] && [ "$eabs" = 0 ]; } || { ok=0; why="$why: NO, $emis differ (first $(jget "$h/pages.json" first_elf_mismatch)), $eabs not in /proc/vmcore"; }
  else
    why="$why (no /proc/vmcore copy to compare with)"
  fi
  check libkdumpfile $ok "$why"

  # the same dump as makedumpfile's
  if [ -s "$d/mkd.kdump" ]; then
    only_ours=$(jget "$h/pages.json" only_ours); only_ref=$(jget "$h/pages.json" only_ref)
    rmis=$(jget "$h/pages.json" ref_mismatch); rpages=$(jget "$h/pages.json" ref_pages)
    types=$("$py" -c 'import json, sys
t = json.load(open(sys.argv[1])).get("only_ours_types") or {}
print(", ".join("%d %s" % (n, k) for k, n in sorted(t.items(), key=lambda x: -x[1])))' "$h/pages.json" 2>/dev/null)
    if cmp -s "$d/ours.kdump" "$d/mkd.kdump"; then
      check same-dump 1 "ours.kdump and mkd.kdump are byte-identical (cmp)"
    elif cat "$o/mkd.log" "$o/mkd.out" 2>/dev/null | grep -q 'kernel version is not supported' && [ "$only_ref" = 0 ] && [ "$rmis" = 0 ] \
         && [ "$emis" = 0 ] && [ "$eabs" = 0 ]; then
      check same-dump 1 "NOT byte-identical ($(cmp "$d/ours.kdump" "$d/mkd.kdump" 2>&1 | head -1 | sed 's/.*differ: //')), but makedumpfile says \"The kernel version is not supported\": ours holds all $rpages pages of its file, the same bytes, and $only_ours more (first $(jget "$h/pages.json" first_only_ours)${types:+; they are: $types}), each equal to memory"
    else
      check same-dump 0 "ours.kdump and mkd.kdump differ ($(cmp "$d/ours.kdump" "$d/mkd.kdump" 2>&1 | head -1)): pages ours $pages, makedumpfile $rpages, only in ours $only_ours (first $(jget "$h/pages.json" first_only_ours)${types:+: $types}), only in makedumpfile's $only_ref (first $(jget "$h/pages.json" first_only_ref)), different bytes $rmis (first $(jget "$h/pages.json" first_ref_mismatch))"
    fi
  fi

  # flattened: the -F stream, made into a file by Debian's makedumpfile -R, is the direct run's file
  if [ -n "$flat" ] && [ "$(cat "$o/mode.txt" 2>/dev/null)" = capture ]; then
    ok=1 why="makedumpfile -F ... | cat > ours.flat through the symlink: exit $(rc_of ours_flat), $(sz "$d/ours.flat") bytes;"
    { [ "$(rc_of ours_flat)" = 0 ] && [ -s "$d/ours.flat" ]; } || ok=0
    rm -f "$h/ours.flat.R"; : > "$h/R.debian.log"
    [ -f "$d/ours.flat" ] && makedumpfile -R "$h/ours.flat.R" < "$d/ours.flat" > "$h/R.debian.log" 2>&1
    if cmp -s "$h/ours.flat.R" "$d/ours.kdump"; then why="$why makedumpfile -R gives ours.kdump;"
    else ok=0; why="$why makedumpfile -R: $(cmpmsg "$h/ours.flat.R" "$d/ours.kdump"), $(tail -1 "$h/R.debian.log");"; fi
    rm -f "$h/mkd.flat.R"
    [ -f "$d/mkd.flat" ] && makedumpfile -R "$h/mkd.flat.R" < "$d/mkd.flat" > /dev/null 2>&1
    if cmp -s "$h/mkd.flat.R" "$d/mkd.kdump"; then why="$why (makedumpfile's own: -R gives mkd.kdump);"
    else why="$why (makedumpfile's own -F: $(cmpmsg "$h/mkd.flat.R" "$d/mkd.kdump"));"; fi
    frc=0; "$vmcore" info --json "$d/ours.flat" > "$h/info_flat.json" 2> "$h/info_flat.err" || frc=$?
    if [ $frc = 0 ] && [ "$(jget "$h/info_flat.json" dumpable_pages)" = "$dumpable" ]; then why="$why vmcore info reads the stream"
    else ok=0; why="$why vmcore info ours.flat: exit $frc $(head -1 "$h/info_flat.err")"; fi
    check flattened $ok "$why"
    # kdump-tools' ssh dumps are rearranged by makedumpfile -R on the server: vmcore's, through
    # the symlink
    mkdir -p "$h/bin"; ln -sfn "$vmcore" "$h/bin/makedumpfile"
    rm -f "$h/ours.flat.R.vmcore"
    rrc=0; : > "$h/R.vmcore.log"
    if [ -f "$d/ours.flat" ]; then "$h/bin/makedumpfile" -R "$h/ours.flat.R.vmcore" < "$d/ours.flat" > "$h/R.vmcore.log" 2>&1 || rrc=$?
    else rrc="(no ours.flat)"; fi
    if [ "$rrc" = 0 ] && cmp -s "$h/ours.flat.R.vmcore" "$d/ours.kdump"; then
      check rearrange 1 "makedumpfile -R ours.flat.R < ours.flat through the symlink: exit 0, gives ours.kdump"
    else
      check rearrange 0 "makedumpfile -R OUT < ours.flat through the symlink: exit $rrc, $(cmpmsg "$h/ours.flat.R.vmcore" "$d/ours.kdump"); it said: $(grep -v '^ *$' "$h/R.vmcore.log" | head -2 | tr '\n' '|')"
    fi
    rm -f "$h/ours.flat.R" "$h/ours.flat.R.vmcore" "$h/mkd.flat.R"
  fi
fi

# in-guest --dump-dmesg through the symlink
r=$(rc_of ours_dmesg)
same=$(same_log "$d/ours.dmesg" "$d/mkd.dmesg" 2>&1); src=$?
if [ "$r" = 0 ] && has_panic "$d/ours.dmesg" && [ $src = 0 ]; then
  check guest-dmesg 1 "makedumpfile --dump-dmesg /proc/vmcore /var/crash/ours.dmesg through the symlink: exit 0, the panic lines; against makedumpfile's: $same"
else
  check guest-dmesg 0 "makedumpfile --dump-dmesg /proc/vmcore /var/crash/ours.dmesg through the symlink: exit $r (makedumpfile's: $(rc_of mkd_dmesg)), panic lines $(npanic "$d/ours.dmesg"); against makedumpfile's: $same; it said: $(grep -v '^ *$' "$o/ours_dmesg.log" 2>/dev/null | grep -v '^Command exited' | head -2 | tr '\n' '|')"
fi

# ---- times and sizes ----
echo
printf '%-32s %9s %8s %8s %8s %8s %12s\n' "in the crash kernel" "elapsed s" "user s" "sys s" "RSS MiB" "faults" "output bytes"
for r in ours mkd ours_flat mkd_flat ours_dmesg mkd_dmesg elf; do
  [ -f "$o/$r.time" ] || continue
  case $r in
    ours|mkd) f=$d/$r.kdump ;; ours_flat|mkd_flat) f=$d/${r%_flat}.flat ;; *_dmesg) f=$d/${r%_dmesg}.dmesg ;; elf) f=$out/vmcore.img ;;
  esac
  [ $r = elf ] && s=$(cat "$o/vmcore_size.txt" 2>/dev/null) || s=$(sz "$f")
  label=$r; case $r in ours) label="vmcore (symlink) -l -d 31" ;; mkd) label="makedumpfile -l -d 31" ;;
    ours_flat) label="vmcore (symlink) -F -l -d 31" ;; mkd_flat) label="makedumpfile -F -l -d 31" ;;
    ours_dmesg) label="vmcore (symlink) --dump-dmesg" ;; mkd_dmesg) label="makedumpfile --dump-dmesg" ;; elf) label="cat /proc/vmcore" ;; esac
  awk -v l="$label" -v s="$s" -v rc="$(rc_of "$r")" '$1 ~ /^[0-9.]+$/ && NF >= 4 { v = $0 }
    END { split(v, f, " "); printf "%-32s %9s %8s %8s %8.1f %8s %12s%s\n", l, f[1], f[2], f[3], f[4] / 1024, f[5] == "" ? "-" : f[5], s, rc == 0 ? "" : "  exit " rc }' "$o/$r.time"
done
rss() { local k; k=$(tfield "$1" 4); [ -n "$k" ] && awk -v k="$k" 'BEGIN { printf "%.0f", k / 1024 }' || echo -; }
verdict=PASS; [ ${#VM_FAILS[@]} = 0 ] || verdict=FAIL
printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$release" "$(sz "$d/ours.kdump")" "$(sz "$d/mkd.kdump")" \
  "$(tfield ours 1)" "$(tfield mkd 1)" "$(tfield ours_flat 1)" "$(tfield mkd_flat 1)" "$(rss ours)/$(rss mkd)" \
  "$VM_PASSED/$VM_TOTAL" "$verdict" > "$out/summary.tsv"
print_summary "$out/summary.tsv"
[ -n "$keep" ] || rm -f "$out/vmcore.img"
echo
echo "files: $out (console.log; out/: the guest's logs and times; dumps/; host/)"
echo "took $(( $(date +%s) - t_start ))s (guest ${VM_BOOT_SECONDS}s)"
vm_verdict "$name: vmcore is a working kdump collector" "$name"
