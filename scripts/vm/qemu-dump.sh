#!/usr/bin/env bash
# vmcore on the dumps QEMU writes itself: dump-guest-memory (what `virsh dump --memory-only`
# does), of a live Debian kernel, with and without QEMU's vmcoreinfo device.
#
# Boots a Debian kernel (newest linux-image-6.1.*-amd64 apt offers) twice under QEMU
# (software emulation, -cpu max, 768M, 2 vCPUs) or, with --arch arm64, Debian's arm64 kernel
# (newest linux-image-6.1.*-arm64, 4K pages) under qemu-system-aarch64 (-M virt, -cpu max,
# 1G, 2 vCPUs, console ttyAMA0, Debian's arm64 busybox-static in the initramfs), with a
# busybox initramfs whose scenario loads qemu_fw_cfg (the guest kernel writes its
# VMCOREINFO address through it), writes a marker line to /dev/kmsg, prints the release and
# a READY line on the serial console and sleeps. The host then talks QMP
# (scripts/vm/qemu-dump-qmp.py) on a unix socket: dump-guest-memory, one dump after the
# other, as
#     elf          format elf, paging false
#     elf-paging   format elf, paging true
#     kdump-*      each kdump format query-dump-guest-memory-capability offers (Debian's QEMU
#                  7.2: kdump-zlib only, as makedumpfile's flattened stream)
# and quits QEMU.
#   boot A  with -device vmcoreinfo: the dumps carry the kernel's VMCOREINFO (the ELF note,
#           the kdump sub header)
#   boot B  without it: the dumps carry no VMCOREINFO; the kernel's note still sits
#           page-aligned in guest memory (/sys/kernel/vmcoreinfo says where), for vmcore to
#           find there
# Checks, for every dump (each printed "PASS" or "FAIL" with its reason):
#   info        `vmcore info` exits 0 and `vmcore info --json` has the guest's release and
#               architecture (x86_64, aarch64)
#   source      (boot B) info --json's vmcoreinfo_source is there and is not elf-note or
#               kdump-sub-header: it says where vmcore found the VMCOREINFO
#   dmesg       `vmcore dmesg` has the marker line
#   mem-usage   `vmcore mem-usage` exits 0 and its page-class table is that of the boot's
#               other dumps: total pages and page size equal, each class within 32 pages
#               (VMCORE_VM_TOLERANCE_PAGES). The guest is idle, not frozen, between the
#               dumps (QEMU stops it during each one), yet no class moved by more than 1
#               page (in 4 runs; none in 8 dumps over 70 s; 6.1, 768M): the margin is for
#               other kernels and hosts. elf-paging holds only what some guest page table
#               maps (here 31 pages fewer: firmware-reserved memory at the top of RAM): its
#               total may be smaller by no more than the pages the guest's e820 map (on the
#               console) does not give as usable RAM, and each class may then differ by as
#               many pages more (arm64: QEMU cannot walk an arm64 guest's page tables, its
#               paging dump is the plain one's layout, and the guest prints no e820 map: no
#               pages may be missing)
#   dump        `vmcore dump -l -d 31 FILE OUT` exits 0, Debian's `makedumpfile --dump-dmesg
#               OUT TXT` finds the marker in it, and `vmcore info OUT` has the release
#               (arm64: Debian's arm64 makedumpfile under qemu-user, the one the tests use,
#               target/tmp/peers/makedumpfile-arm64 from scripts/peers/arm64-makedumpfile: the
#               amd64 build does not read arm64 dumps)
#   rearrange   (flattened kdump-* files) `vmcore rearrange FILE PLAIN` writes the same bytes
#               as `makedumpfile -R PLAIN2 < FILE` (the host's: -R does not parse the dump)
# and per boot:
#   vmcoreinfo  `vmcore vmcoreinfo` prints the same text for every dump of the boot
#
# Usage: scripts/vm/qemu-dump.sh [--arch x86_64|arm64] [--kernel 6.1|PKG|DEB,...] [--only A|B]
#                                [--mem SIZE] [--keep DIR | --out DIR] [--verify-only]
#   --arch     the guest's architecture: x86_64 (default; qemu-system-x86_64) or arm64
#              (qemu-system-aarch64 -M virt; env VMCORE_VM_ARCH)
#   --kernel   a series (newest linux-image-SERIES.*-amd64, or -arm64), a package name or a
#              list of .deb files, as kdump.sh takes; default 6.1 (env VMCORE_VM_KERNEL)
#   --only     one boot: A (with -device vmcoreinfo) or B (without)
#   --mem      guest RAM (default 768M, arm64 1G): each ELF dump is about as large
#   --keep DIR the run's files go to DIR and the dumps stay there (about 1.7 GB a boot, arm64
#              2.1 GB)
#   --out DIR  the run's files (default target/vm/qemu-dump, arm64 target/vm/qemu-dump-arm64);
#              the dumps, and the files the checks write from them, are deleted after the checks
#   --verify-only  no boot: check again the dumps a --keep run left in its folder (of the
#              architecture it records in arch.txt)
# Env: VMCORE_VM_CACHE (kernel cache), VMCORE_VM_TIMEOUT (seconds for one boot, its dumps
# included; default 900), VMCORE_VM_BINARY (a vmcore binary to use instead of building the
# static one; with --verify-only, instead of the run's), VMCORE_VM_TOLERANCE_PAGES (above).
# Needs root on a fresh machine (apt-get: qemu-system-x86 busybox-static makedumpfile cpio
# zstd xz-utils python3; arm64: qemu-system-arm instead of the first two, dpkg's arm64
# architecture for the arm64 kernel and busybox-static, qemu-user-static and the arm64
# makedumpfile). About a minute on 2 cores (25 s a boot), plus the build.
# Files: A/ and B/: console.log, qemu.log, qmp.log, dumps.tsv (what QMP said), dumps/ (the
# dumps, with --keep), check/DUMP/ (every command's stdout and stderr); marker.txt, arch.txt.
# Exit: 0 every check passed, 1 a check failed, 2 the harness failed (no kernel, build,
# boot, QEMU wrote no dump).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

kernel=${VMCORE_VM_KERNEL:-6.1}
arch=${VMCORE_VM_ARCH:-} out='' mem=''
keep='' verify_only=''
boots=(A B)
tol_pages=${VMCORE_VM_TOLERANCE_PAGES:-32}
while [ $# -gt 0 ]; do
  case $1 in
    --arch) arch=$2; shift 2 ;;
    --kernel) kernel=$2; shift 2 ;;
    --only) case $2 in A|B) boots=("$2") ;; *) echo "--only takes A or B" >&2; exit 2 ;; esac; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --keep) keep=1; out=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --verify-only) verify_only=1; shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
arch_given=$arch
case ${arch:-x86_64} in
  x86_64|amd64) arch=x86_64 ;;
  arm64|aarch64) arch=arm64 ;;
  *) echo "--arch takes x86_64 or arm64" >&2; exit 2 ;;
esac
[ -n "$out" ] || out=$VM_REPO/target/vm/qemu-dump$([ "$arch" = x86_64 ] || echo "-$arch")
[ -z "$verify_only" ] || keep=1
mkdir -p "$out"
out=$(cd "$out" && pwd)
# --verify-only: the architecture the run recorded (--arch, when given, must be it)
if [ -n "$verify_only" ] && [ -f "$out/arch.txt" ]; then
  if [ -z "$arch_given" ]; then arch=$(cat "$out/arch.txt")
  elif [ "$arch" != "$(cat "$out/arch.txt")" ]; then vm_die "$out holds a run of arch $(cat "$out/arch.txt"), not $arch"; fi
fi
# per architecture: Debian's name, QEMU's binary and machine, the console, what info --json
# calls it, the default RAM
case $arch in
  x86_64) deb_arch=amd64 qemu=qemu-system-x86_64 machine=() console=ttyS0 vmcore_arch=x86_64; mem=${mem:-768M} ;;
  arm64) deb_arch=arm64 qemu=qemu-system-aarch64 machine=(-M virt) console=ttyAMA0 vmcore_arch=aarch64; mem=${mem:-1G} ;;
  *) vm_die "$out/arch.txt: unknown arch $arch" ;;
esac
# the makedumpfile that reads the dumps' dmesg (arm64: set below)
mkd_dmesg=makedumpfile
t_start=$(date +%s)
py=/usr/bin/python3
qemu_pid='' sock_dir=''

# shellcheck disable=SC2317 # (run by the EXIT trap)
cleanup() {
  if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
    kill "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
  fi
  [ -z "$sock_dir" ] || rm -rf "$sock_dir"
  rm -f "$out/initrd.cpio.gz"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- the guest ----
build_initrd() {
  local guest
  guest=$(mktemp "${TMPDIR:-/tmp}/vmcore-vm-scenario.XXXXXX")
  printf 'MARKER=%s\n' "$marker" > "$guest"
  cat >> "$guest" <<'GUEST'
# runs in the guest (busybox sh) by lib.sh's guest-init, after it loaded qemu_fw_cfg; never
# returns: the host dumps the running guest through QMP, then quits QEMU
say() { echo "QEMU-DUMP: $*" > /dev/console; }
echo "$MARKER" > /dev/kmsg
say "release $(uname -r)"
say "cmdline $(cat /proc/cmdline)"
if [ -d /sys/firmware/qemu_fw_cfg ]; then
  say "fw_cfg etc/: $(ls /sys/firmware/qemu_fw_cfg/by_name/etc 2>&1 | tr '\n' ' ')"
else
  say "no /sys/firmware/qemu_fw_cfg"
fi
say "/sys/kernel/vmcoreinfo: $(cat /sys/kernel/vmcoreinfo 2>&1)"
say READY
while true; do sleep 3600; done
GUEST
  vm_say "building the initramfs"
  # arm64: Debian's arm64 busybox-static (a static binary: no libraries to copy)
  if [ "$arch" = arm64 ]; then
    vm_fetch_deb busybox-static:arm64
    VM_BUSYBOX=$VM_DEB_ROOT/bin/busybox
  fi
  vm_initrd_new
  vm_initrd_add_modules qemu_fw_cfg
  grep -qx qemu_fw_cfg.ko "$VM_ROOT/lib/modules/order" \
    || vm_say "note: $VM_KVER has no qemu_fw_cfg module (built in, or absent: then boot A's dumps carry no VMCOREINFO)"
  vm_initrd_add_file "$guest" /scenario
  rm -f "$guest"
  vm_initrd_pack "$out/initrd.cpio.gz"
}

# boot_and_dump A|B: boots, waits for READY, dumps through QMP into $out/X/dumps, quits.
boot_and_dump() {
  local b=$1 dir=$out/$1 extra=() start deadline rc=0 st name fmt paging rest
  rm -rf "$dir"; mkdir -p "$dir/dumps"
  [ "$b" = A ] && extra=(-device vmcoreinfo)
  sock_dir=$(mktemp -d /tmp/vmcore-qmp.XXXXXX)   # a short path: unix sockets take 107 bytes
  local append="console=$console panic=1 ${VM_APPEND:-}"
  vm_say "boot $b: $VM_KVER ($qemu${machine[*]:+ ${machine[*]}}, TCG, -cpu ${VM_CPU:-max}, $mem${extra[*]:+, ${extra[*]}}): $append"
  vm_say "console: $dir/console.log"
  start=$(date +%s)
  deadline=$((start + ${VMCORE_VM_TIMEOUT:-900}))
  # nested KVM hangs on these machines: software emulation, multi-threaded
  timeout "${VMCORE_VM_TIMEOUT:-900}" "$qemu" "${machine[@]}" \
    -accel tcg,thread=multi -cpu "${VM_CPU:-max}" -m "$mem" -smp "${VM_SMP:-2}" \
    -nodefaults -display none -serial "file:$dir/console.log" -no-reboot \
    -kernel "$VM_VMLINUZ" -initrd "$out/initrd.cpio.gz" -append "$append" \
    -qmp "unix:$sock_dir/qmp.sock,server=on,wait=off" "${extra[@]}" \
    < /dev/null > "$dir/qemu.log" 2>&1 &
  qemu_pid=$!
  until grep -q 'QEMU-DUMP: READY' "$dir/console.log" 2>/dev/null; do
    if ! kill -0 "$qemu_pid" 2>/dev/null; then
      wait "$qemu_pid" || rc=$?; qemu_pid=
      vm_say "boot $b: QEMU exited ($rc) before the guest was ready:"; cat "$dir/qemu.log" >&2
      tail -30 "$dir/console.log" >&2 2>/dev/null
      vm_die "boot $b failed"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      vm_say "boot $b: no READY after ${VMCORE_VM_TIMEOUT:-900}s; last console lines:"
      tail -30 "$dir/console.log" >&2
      vm_die "boot $b timed out"
    fi
    sleep 1
  done
  vm_say "boot $b: guest ready after $(( $(date +%s) - start ))s"
  tr -d '\r' < "$dir/console.log" | sed -n 's/^QEMU-DUMP: release //p' | head -1 > "$dir/release.txt"
  tr -d '\r' < "$dir/console.log" | sed -n 's/^QEMU-DUMP: \/sys\/kernel\/vmcoreinfo: //p' | head -1 > "$dir/sys_vmcoreinfo.txt"
  # let the guest settle into its sleep
  sleep 3
  "$py" "$here/qemu-dump-qmp.py" "$sock_dir/qmp.sock" "$dir/dumps" \
    "$(( deadline - $(date +%s) ))" > "$dir/dumps.tsv" 2> "$dir/qmp.err" || rc=$?
  mv "$dir/dumps/qmp.log" "$dir/qmp.log" 2>/dev/null || true
  [ $rc = 0 ] || { cat "$dir/qmp.err" >&2; vm_die "boot $b: QMP failed ($rc)"; }
  # QEMU quits on QMP's quit
  local i=0
  while kill -0 "$qemu_pid" 2>/dev/null && [ $i -lt 30 ]; do sleep 1; i=$((i + 1)); done
  kill "$qemu_pid" 2>/dev/null || true
  wait "$qemu_pid" 2>/dev/null || true
  qemu_pid=
  rm -rf "$sock_dir"; sock_dir=
  echo $(( $(date +%s) - start )) > "$dir/seconds.txt"
  while IFS=$'\t' read -r st name fmt paging rest; do
    case $st in
      ok) vm_say "boot $b: $name ($fmt, paging $paging): $(stat -c %s "$dir/dumps/$name") bytes in ${rest}s" ;;
      failed) vm_say "boot $b: QEMU could not write $name ($fmt, paging $paging): $rest"; rc=1 ;;
      skipped) vm_say "boot $b: format $name not tried: $fmt" ;;
    esac
  done < "$dir/dumps.tsv"
  [ $rc = 0 ] || vm_die "boot $b: QEMU failed to write a dump (see $dir/qmp.log)"
  grep -q '^ok' "$dir/dumps.tsv" || vm_die "boot $b: no dump written"
  vm_say "boot $b: done in $(cat "$dir/seconds.txt")s"
}

if [ -z "$verify_only" ]; then
  if [ "$arch" = arm64 ]; then
    # the arm64 kernel and busybox-static are Debian's arm64 packages
    vm_require_packages qemu-system-arm makedumpfile cpio zstd xz-utils python3
    case $kernel in *.deb*) ;; *) vm_add_foreign_arch arm64 ;; esac
  else
    vm_require_packages qemu-system-x86 busybox-static makedumpfile cpio zstd xz-utils python3
  fi
  case $kernel in
    linux-image-*|*.deb*) pkg=$kernel ;;
    *) pkg=$(vm_kernel_package "$kernel" "$deb_arch") || vm_die "apt offers no linux-image-$kernel.*-$deb_arch" ;;
  esac
  # another architecture's package: apt's PKG:ARCH
  case $pkg in *.deb*|*:*) ;; *) [ "$deb_arch" = amd64 ] || pkg=$pkg:$deb_arch ;; esac
  vm_fetch_kernel "$pkg"
  vm_build_vmcore
  # this run's binary (the build folder may change meanwhile)
  [ "$VM_VMCORE" = "$out/vmcore" ] || cp "$VM_VMCORE" "$out/vmcore"
  vmcore=$out/vmcore
  echo "$pkg" > "$out/package.txt"
  echo "$arch" > "$out/arch.txt"
  marker="vmcore-qemu-dump-marker-$(date +%s)-$$"
  echo "$marker" > "$out/marker.txt"
  build_initrd
  for b in "${boots[@]}"; do boot_and_dump "$b"; done
  rm -f "$out/initrd.cpio.gz"
else
  # the binary of the run that wrote the dumps, unless VMCORE_VM_BINARY names another
  if [ -n "${VMCORE_VM_BINARY:-}" ] || [ ! -x "$out/vmcore" ]; then vm_build_vmcore; vmcore=$VM_VMCORE
  else vmcore=$out/vmcore; fi
  pkg=$(cat "$out/package.txt" 2>/dev/null || echo '?')
  marker=$(cat "$out/marker.txt" 2>/dev/null) || vm_die "no $out/marker.txt: not a qemu-dump.sh --keep folder"
  for b in "${boots[@]}"; do
    [ -f "$out/$b/dumps.tsv" ] || vm_die "no $out/$b/dumps.tsv: boot $b was not run"
  done
fi

# arm64: Debian's arm64 makedumpfile reads the dumps' dmesg (the amd64 one cannot); the
# wrapper the tests use, installed once (as root) by scripts/peers/arm64-makedumpfile
if [ "$arch" = arm64 ]; then
  mkd_dmesg=$("$VM_REPO/scripts/peers/arm64-makedumpfile") || vm_die "no arm64 makedumpfile (scripts/peers/arm64-makedumpfile)"
  case $mkd_dmesg in /*) ;; *) mkd_dmesg=$VM_REPO/$mkd_dmesg ;; esac
  [ -x "$mkd_dmesg" ] || vm_die "no arm64 makedumpfile at $mkd_dmesg"
fi

# ---- checks (every failure is handled: no errexit from here on) ----
set +e +o pipefail
vm_say "vmcore: $vmcore ($("$vmcore" --version 2>&1 | head -1), sha256 $(sha256sum < "$vmcore" | cut -c1-16))"
[ "$mkd_dmesg" = makedumpfile ] || vm_say "makedumpfile --dump-dmesg: $mkd_dmesg"
check() { vm_check "$@"; }
# run DIR TAG CMD...: stdout into DIR/TAG.out, stderr into DIR/TAG.err; its exit status
run() {
  local d=$1 tag=$2; shift 2
  timeout 600 "$@" > "$d/$tag.out" 2> "$d/$tag.err"
}
# said FILE: the first lines of a command's stderr, on one line
said() { grep -v '^ *$' "$1" 2>/dev/null | head -2 | cut -c1-240 | tr '\n' '|' | sed 's/|$//'; }
# jget FILE KEY...: a value of a JSON object (nested keys); "" when absent, "null" when null
jget() { "$py" - "$@" <<'PY' 2>/dev/null || true
import json, sys
try:
    v = json.load(open(sys.argv[1]))
    for k in sys.argv[2:]:
        v = v[k]
    print("null" if v is None else str(v).lower() if isinstance(v, bool) else v)
except Exception:
    pass
PY
}
# the page-class table of `vmcore mem-usage` (makedumpfile's layout): CLASS PAGES lines
mu_classes="ZERO NON_PRI_CACHE PRI_CACHE USER FREE KERN_DATA"
mu_table() {
  awk -v classes="$mu_classes" '
    BEGIN { n = split(classes, c, " "); for (i = 1; i <= n; i++) want[c[i]] = 1 }
    ($1 in want) && $2 ~ /^[0-9]+$/ { print $1, $2 }
    /^page size:/ { print "PAGE_SIZE", $3 }
    /^Total pages on system:/ { print "TOTAL", $5 }' "$1"
}
mu_get() { awk -v k="$2" '$1 == k { print $2 }' "$1" 2>/dev/null; }
# usable_pages CONSOLE PAGES PAGE_SIZE: pages below PAGES that the guest's e820 map says are
# usable RAM (the kernel's boot log on the console)
usable_pages() {
  local a b s e n=0 ps=${3:-4096}
  while read -r a b; do
    s=$(( (a + ps - 1) / ps )); e=$(( (b + 1) / ps ))
    [ "$e" -le "$2" ] || e=$2
    [ "$e" -le "$s" ] || n=$(( n + e - s ))
  done < <(tr -d '\r' < "$1" | sed -n 's/.*BIOS-e820: \[mem \(0x[0-9a-f]*\)-\(0x[0-9a-f]*\)\] usable.*/\1 \2/p')
  echo $n
}
is_flattened() { [ "$(head -c 12 "$1" 2>/dev/null | tr -d '\0')" = makedumpfile ]; }

check_boot() {
  local b=$1 dir=$out/$1 f c name st fmt paging rest release rel src ok why a
  local names=() ref='' ref_paging='' missing nonram note rt k v r line mr ir rr mline orel lo hi allowed first sum
  release=$(cat "$dir/release.txt" 2>/dev/null)
  [ -n "$release" ] || release=${VM_KVER:-?}
  echo
  echo "== boot $b ($([ "$b" = A ] && echo "with -device vmcoreinfo" || echo "without -device vmcoreinfo")): guest $release ($arch), package ${pkg:-?}"
  echo "   QEMU $(awk -F'\t' '$1 == "version" { print $2 " (" $3 ")" }' "$dir/dumps.tsv")$(awk -F'\t' '$1 == "target" { print ", target " $2 }' "$dir/dumps.tsv"); formats offered: $(awk -F'\t' '$1 == "formats" { print $2 }' "$dir/dumps.tsv")"
  echo "   /sys/kernel/vmcoreinfo in the guest: $(cat "$dir/sys_vmcoreinfo.txt" 2>/dev/null)"
  while IFS=$'\t' read -r st name fmt paging rest; do
    [ "$st" = ok ] || continue
    f=$dir/dumps/$name
    [ -f "$f" ] || vm_die "boot $b: no $f (the dumps stay only with --keep)"
    names+=("$name")
    mkdir -p "$dir/check/$name"; echo "$paging" > "$dir/check/$name/paging.txt"
    echo "   $name: format $fmt, paging $paging, $(stat -c %s "$f") bytes$(is_flattened "$f" && echo ", a flattened stream"), written in ${rest}s"
  done < "$dir/dumps.tsv"
  [ ${#names[@]} -gt 0 ] || vm_die "boot $b: no dumps to check"

  for name in "${names[@]}"; do
    f=$dir/dumps/$name
    c=$dir/check/$name
    find "$c" -mindepth 1 ! -name paging.txt -delete

    # info
    r=0; run "$c" info "$vmcore" info "$f" || r=$?
    run "$c" info-json "$vmcore" info --json "$f"
    rel=$(jget "$c/info-json.out" release)
    src=$(jget "$c/info-json.out" vmcoreinfo_source)
    a=$(jget "$c/info-json.out" arch)
    if [ $r = 0 ] && [ "$rel" = "$release" ] && [ "$a" = "$vmcore_arch" ]; then
      check "$b $name info" 1 "$(jget "$c/info-json.out" format), $a, release $rel, vmcoreinfo_source ${src:-(no such field)}"
      # vmcore's warnings (QEMU 7.2's kdump header has a wrong phys_base: it reads the
      # kernel's decimal NUMBER(phys_base) as hex, or writes 0 without VMCOREINFO)
      grep -i 'warning' "$c/info.err" | sort -u | sed "s/^/     $name: /"
    else
      check "$b $name info" 0 "vmcore info exit $r, --json release ${rel:-(none)} (the guest's: $release), arch ${a:-(none)} (the guest's: $vmcore_arch); $(said "$c/info.err")"
    fi
    if [ "$b" = B ]; then
      case $src in
        ""|null) check "$b $name source" 0 "info --json vmcoreinfo_source is ${src:-absent}: vmcore found no VMCOREINFO" ;;
        elf-note|kdump-sub-header) check "$b $name source" 0 "vmcoreinfo_source $src, but the dump carries no VMCOREINFO" ;;
        *) check "$b $name source" 1 "vmcoreinfo_source $src (the guest's /sys/kernel/vmcoreinfo: $(cat "$dir/sys_vmcoreinfo.txt" 2>/dev/null))" ;;
      esac
    fi

    # dmesg
    r=0; run "$c" dmesg "$vmcore" dmesg "$f" || r=$?
    line=$(grep -F "$marker" "$c/dmesg.out" | head -1)
    if [ $r = 0 ] && [ -n "$line" ]; then
      check "$b $name dmesg" 1 "$(wc -l < "$c/dmesg.out") lines, with \"$line\""
    else
      check "$b $name dmesg" 0 "vmcore dmesg exit $r, $(wc -l < "$c/dmesg.out") lines, marker ${line:+found}${line:-missing}; $(said "$c/dmesg.err")"
    fi

    # mem-usage (compared across the boot's dumps below)
    r=0; run "$c" mem-usage "$vmcore" mem-usage "$f" || r=$?
    echo $r > "$c/mem-usage.rc"
    mu_table "$c/mem-usage.out" > "$c/mem-usage.tsv"
    if [ $r = 0 ] && [ "$(wc -l < "$c/mem-usage.tsv")" = 8 ]; then
      if [ "$(cat "$c/paging.txt")" != true ]; then [ -n "$ref" ] || ref=$name; else [ -n "$ref_paging" ] || ref_paging=$name; fi
    fi

    # dump -l -d 31, read by makedumpfile and vmcore
    rm -f "$c/d31.kdump" "$c/d31-dmesg.txt"
    r=0; run "$c" dump "$vmcore" dump -q -l -d 31 "$f" "$c/d31.kdump" || r=$?
    if [ $r = 0 ] && [ -s "$c/d31.kdump" ]; then
      mr=0 ir=0
      run "$c" d31-mkd-dmesg "$mkd_dmesg" --dump-dmesg "$c/d31.kdump" "$c/d31-dmesg.txt" || mr=$?
      mline=$(grep -F "$marker" "$c/d31-dmesg.txt" 2>/dev/null | head -1)
      run "$c" d31-info "$vmcore" info --json "$c/d31.kdump" || ir=$?
      orel=$(jget "$c/d31-info.out" release)
      ok=1 why="vmcore dump -l -d 31: $(stat -c %s "$c/d31.kdump") bytes, $(jget "$c/d31-info.out" dumpable_pages) pages;"
      if [ $mr = 0 ] && [ -n "$mline" ]; then why="$why makedumpfile --dump-dmesg finds the marker;"
      else ok=0; why="$why makedumpfile --dump-dmesg exit $mr, marker ${mline:+found}${mline:-missing} ($(said "$c/d31-mkd-dmesg.err"));"; fi
      if [ $ir = 0 ] && [ "$orel" = "$release" ]; then why="$why vmcore info: $orel"
      else ok=0; why="$why vmcore info exit $ir, release ${orel:-(none)} ($(said "$c/d31-info.err"))"; fi
      check "$b $name dump" $ok "$why"
    else
      check "$b $name dump" 0 "vmcore dump -l -d 31 exit $r; $(said "$c/dump.err")"
    fi

    # rearrange: a flattened stream, as makedumpfile -R makes it a file
    case $name in kdump*)
      if is_flattened "$f"; then
        rm -f "$c/rearranged.kdump" "$c/mkd-R.kdump"
        rr=0 mr=0
        run "$c" rearrange "$vmcore" rearrange -q "$f" "$c/rearranged.kdump" || rr=$?
        # shellcheck disable=SC2016 # (the inner shell's arguments)
        run "$c" mkd-R sh -c 'makedumpfile -R "$1" < "$2"' sh "$c/mkd-R.kdump" "$f" || mr=$?
        if [ $rr = 0 ] && [ $mr = 0 ] && cmp -s "$c/rearranged.kdump" "$c/mkd-R.kdump"; then
          check "$b $name rearrange" 1 "vmcore rearrange and makedumpfile -R write the same $(stat -c %s "$c/rearranged.kdump") bytes"
        else
          check "$b $name rearrange" 0 "vmcore rearrange exit $rr ($(said "$c/rearrange.err")), makedumpfile -R exit $mr ($(said "$c/mkd-R.err")): $(cmp "$c/rearranged.kdump" "$c/mkd-R.kdump" 2>&1 | head -1)"
        fi
      else
        echo "   ($name is not a flattened stream: no rearrange check)"
      fi ;;
    esac

    # vmcoreinfo (compared across the boot's dumps below)
    r=0; run "$c" vmcoreinfo "$vmcore" vmcoreinfo "$f" || r=$?
    echo $r > "$c/vmcoreinfo.rc"
  done

  # mem-usage: every dump's table against the first one's that vmcore read (not a paging
  # one's, unless vmcore read no other)
  [ -n "$ref" ] || ref=$ref_paging
  echo
  printf '   %-15s' "mem-usage pages"
  for name in "${names[@]}"; do printf ' %12s' "$name"; done
  printf ' %10s  %s\n' "max diff" "allowed"
  for k in $mu_classes TOTAL PAGE_SIZE; do
    printf '   %-15s' "$k"
    lo='' hi=''
    for name in "${names[@]}"; do
      v=$(mu_get "$dir/check/$name/mem-usage.tsv" "$k")
      printf ' %12s' "${v:--}"
      [ -n "$v" ] || continue
      { [ -z "$lo" ] || [ "$v" -lt "$lo" ]; } && lo=$v
      { [ -z "$hi" ] || [ "$v" -gt "$hi" ]; } && hi=$v
    done
    v=$([ -n "$ref" ] && mu_get "$dir/check/$ref/mem-usage.tsv" "$k")
    case $k in TOTAL|PAGE_SIZE) allowed=0 ;; *) allowed=$tol_pages ;; esac
    printf ' %10s  %s\n' "$([ -n "$lo" ] && echo $((hi - lo)) || echo -)" "$allowed"
  done
  for name in "${names[@]}"; do
    c=$dir/check/$name
    r=$(cat "$c/mem-usage.rc")
    if [ "$r" != 0 ] || [ "$(wc -l < "$c/mem-usage.tsv")" != 8 ]; then
      check "$b $name mem-usage" 0 "vmcore mem-usage exit $r, $(wc -l < "$c/mem-usage.tsv") of 8 table lines; $(said "$c/mem-usage.err")"
      continue
    fi
    if [ "$name" = "$ref" ]; then
      check "$b $name mem-usage" 1 "the table read ($(mu_get "$c/mem-usage.tsv" TOTAL) pages); the other dumps are compared with it"
      continue
    fi
    # QEMU's paging dump holds only the memory some guest page table maps: it may lack pages
    # that are not RAM to the kernel (e820 reserved ranges and holes below the end of RAM)
    missing=0 note=''
    rt=$(mu_get "$dir/check/$ref/mem-usage.tsv" TOTAL)
    if [ "$(cat "$c/paging.txt")" = true ] && [ "$(cat "$dir/check/$ref/paging.txt")" != true ]; then
      missing=$(( rt - $(mu_get "$c/mem-usage.tsv" TOTAL) ))
      nonram=$(usable_pages "$dir/console.log" "$rt" "$(mu_get "$c/mem-usage.tsv" PAGE_SIZE)")
      if [ "$nonram" -gt 0 ]; then nonram=$((rt - nonram)); else nonram=0; fi   # no e820 map: none
      if [ $missing -lt 0 ]; then missing=0
      elif [ $missing -gt 0 ]; then
        note=" (a paging dump holds only what some page table maps: $missing pages fewer than $ref; $nonram of $ref's $rt pages are not usable RAM in the guest's e820 map)"
        [ $missing -le $nonram ] || missing=0   # more than that is not allowed
      fi
    fi
    why=$(awk -v n="$tol_pages" -v m="$missing" -v r="$ref" '
      NR == FNR { ref[$1] = $2; next }
      { d = $2 - ref[$1]; if (d < 0) d = -d
        a = $1 == "PAGE_SIZE" ? 0 : $1 == "TOTAL" ? m : n + m
        if (d > a) printf "%s %s (%s: %s, allowed +-%d); ", $1, $2, r, ref[$1], a }' \
      "$dir/check/$ref/mem-usage.tsv" "$c/mem-usage.tsv")
    if [ -z "$why" ]; then
      check "$b $name mem-usage" 1 "the table is $ref's: each class within $tol_pages pages${note:+, plus the $missing pages it lacks}$note"
    else
      check "$b $name mem-usage" 0 "differs from $ref's: ${why%; }$note"
    fi
  done

  # vmcoreinfo: the same text from every dump
  ok=1 why=""
  first=
  for name in "${names[@]}"; do
    c=$dir/check/$name
    r=$(cat "$c/vmcoreinfo.rc")
    if [ "$r" != 0 ] || [ ! -s "$c/vmcoreinfo.out" ]; then
      ok=0; why="$why $name: exit $r, $(said "$c/vmcoreinfo.err");"; continue
    fi
    sum=$(sha256sum < "$c/vmcoreinfo.out" | cut -c1-12)
    why="$why $name: $(wc -l < "$c/vmcoreinfo.out") lines, sha256 $sum;"
    if [ -z "$first" ]; then first=$name
    elif ! cmp -s "$dir/check/$first/vmcoreinfo.out" "$c/vmcoreinfo.out"; then ok=0; why="$why (not $first's text);"; fi
  done
  why=${why%;}
  [ $ok = 0 ] || why=" the same text:$why"
  check "$b vmcoreinfo" $ok "${why# }"
}

for b in "${boots[@]}"; do
  check_boot "$b"
  if [ -z "$keep" ]; then
    rm -rf "$out/$b/dumps"
    rm -f "$out/$b"/check/*/d31.kdump "$out/$b"/check/*/rearranged.kdump "$out/$b"/check/*/mkd-R.kdump
  fi
done

echo
for b in "${boots[@]}"; do
  echo "boot $b: $(cat "$out/$b/seconds.txt" 2>/dev/null)s from QEMU's start to its quit"
done
echo "files: $out$([ -n "$keep" ] && echo " (dumps kept in */dumps/)" || echo " (dumps deleted)")"
echo "took $(( $(date +%s) - t_start ))s"
vm_verdict "vmcore reads QEMU's dump-guest-memory dumps ($arch), boot ${boots[*]}" "QEMU dump-guest-memory ($arch)"
